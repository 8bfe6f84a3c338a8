"""Where relation features come from: a cache on disk or the image in each step.

``MODEL.FEATURE_STORAGE`` chooses:

* ``cache``: the frozen part of the features is computed once per image and stored under
  ``FEATURE_CACHE_DIR``. For the frozen-trunk features (``FEATURE_EXTRACTOR
  FrozenBackbone``) that is the object and union vectors themselves
  (:mod:`basgg.training.feature_cache`); for the detector's relation features
  (``RelationFeatureExtractor``) the pooling, convolutions and MLPs train, so the cache holds
  the frozen detector's pyramid levels (:class:`PyramidCache`), whose size does not depend on
  the number of pairs.
* ``online``: nothing is stored; each step reads its images and runs the frozen part
  (:class:`OnlinePyramids`, :class:`OnlineFrozenFeatures`). This is the GPU path and the
  only one at VG150 scale with the detector's features.
* ``auto`` (default): online on CUDA; on a CPU the cache, unless the disk cannot hold it.

Before a cache is extracted its size is estimated (:func:`pyramid_cache_bytes`,
:func:`frozen_cache_bytes`); :func:`check_cache_fits` refuses a cache the disk cannot hold
with the size needed, the free space and the key that switches to online features.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from basgg.models.features import FrozenFeatureExtractor
from basgg.models.relation_features import DetectorPyramid, ImagePyramid
from basgg.models.sampling import all_ordered_pairs
from basgg.structures import SceneGraph

STORAGE_KEY = "MODEL.FEATURE_STORAGE"
STORAGES = ("auto", "cache", "online")
PYRAMID_FORMAT = 1
PYRAMID_DTYPE = np.float16
FREE_SPACE_MARGIN = 1 << 30  # bytes left free on the disk after a cache is written
GB = 1e9


class CacheTooLargeError(ValueError):
    """A feature cache that the disk cannot hold."""


def free_bytes(path: str | Path) -> int:
    """Free bytes on the disk that holds ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_cache_fits(needed: int, directory: str | Path, *, what: str) -> None:
    """Raise :class:`CacheTooLargeError` unless ``needed`` bytes (plus a 1 GiB margin) fit."""
    free = free_bytes(directory)
    if needed + FREE_SPACE_MARGIN > free:
        raise CacheTooLargeError(
            f"{what}: the cache needs {needed / GB:.2f} GB in {directory} but the disk has "
            f"{free / GB:.2f} GB free (1 GiB is kept free). Set {STORAGE_KEY} online to "
            f"compute features in each step without a cache (or FEATURE_CACHE_DIR to a "
            f"bigger disk)"
        )


def choose_storage(
    setting: str, *, device: torch.device, needed: int, directory: str | Path, what: str
) -> str:
    """ "cache" or "online" for a ``MODEL.FEATURE_STORAGE`` setting (see the module doc).

    Raises:
        CacheTooLargeError: ``setting`` is "cache" and the disk cannot hold ``needed`` bytes.
    """
    if setting not in STORAGES:
        raise ValueError(f"{STORAGE_KEY}: {setting!r} is not one of {STORAGES}")
    if setting == "online":
        return "online"
    if setting == "auto":
        if device.type == "cuda":
            return "online"
        try:
            check_cache_fits(needed, directory, what=what)
        except CacheTooLargeError:
            return "online"
        return "cache"
    check_cache_fits(needed, directory, what=what)
    return "cache"


def frozen_cache_bytes(num_objects: Sequence[int], extractor: FrozenFeatureExtractor) -> int:
    """Exact float16 bytes of a frozen-trunk cache: one object row per box and one union row
    per ordered pair of each image."""
    counts = np.asarray(num_objects, dtype=np.int64)
    rows = counts.sum() * extractor.object_dim + (counts * (counts - 1)).sum() * extractor.union_dim
    return int(rows) * 2


def detector_input_size(
    image_size: tuple[int, int], *, min_size: int, max_size: int
) -> tuple[int, int]:
    """(height, width) the detector's transform resizes an image to (torchvision's rule:
    shorter side to ``min_size``, longer side at most ``max_size``)."""
    height, width = image_size
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return int(math.floor(height * scale)), int(math.floor(width * scale))


def pyramid_cache_bytes(
    image_sizes: Sequence[tuple[int, int]],
    *,
    channels: int,
    strides: Sequence[int],
    min_size: int,
    max_size: int,
    bytes_per_value: int = 2,
) -> int:
    """Bytes of a pyramid cache: per image, C x sum over levels of ceil(h / s) x ceil(w / s)
    at the detector's input size, ``bytes_per_value`` each (float16: 2)."""
    total = 0
    for size in image_sizes:
        height, width = detector_input_size(size, min_size=min_size, max_size=max_size)
        total += sum(math.ceil(height / s) * math.ceil(width / s) for s in strides)
    return total * channels * bytes_per_value


def transform_sizes(pyramid: DetectorPyramid) -> tuple[int, int]:
    """(min_size, max_size) of a torchvision-style detector transform."""
    min_size = pyramid.transform.min_size
    min_size = int(min_size[-1] if isinstance(min_size, Sequence) else min_size)
    return min_size, int(pyramid.transform.max_size)


class PyramidCache:
    """Frozen pyramid levels of a split, stored as one flat float16 file (memory-mapped).

    Each image's levels are flattened one after another; an index (JSON) gives every image's
    offset, per-level shapes, scale and input size.
    """

    def __init__(self, path: Path, index: dict) -> None:
        self.path = path
        self.index = index
        self.num_objects = torch.tensor(index["num_objects"], dtype=torch.int64)
        self._values = np.memmap(path, dtype=PYRAMID_DTYPE, mode="r") if index["size"] else None

    def __len__(self) -> int:
        return len(self.index["images"])

    def pyramid(self, index: int) -> ImagePyramid:
        """The stored pyramid of image ``index`` (float32, CPU)."""
        entry = self.index["images"][index]
        offset, levels = entry["offset"], {}
        for name, shape in zip(self.index["levels"], entry["shapes"], strict=True):
            count = int(np.prod(shape))
            values = np.asarray(self._values[offset : offset + count], dtype=np.float32)
            levels[name] = torch.from_numpy(values).view(*shape)
            offset += count
        strides = dict(zip(self.index["levels"], self.index["strides"], strict=True))
        return ImagePyramid(levels, strides, tuple(entry["scale"]), tuple(entry["input_size"]))

    def take(self, indices: Sequence[int]) -> tuple[list[ImagePyramid], list[None]]:
        """Per image its pyramid (the model computes objects and unions from it), and None."""
        return [self.pyramid(index) for index in indices], [None] * len(indices)


def pyramid_cache_files(path: Path) -> tuple[Path, Path]:
    """(values file, index file) of the cache ``path`` names."""
    return path.with_suffix(".f16"), path.with_suffix(".json")


@torch.no_grad()
def extract_pyramids(
    pyramid: DetectorPyramid,
    graphs: Sequence[SceneGraph],
    load_image: Callable[[int], Tensor],
    path: Path,
    *,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> PyramidCache:
    """Run the frozen pyramid over every image and write the cache at ``path`` (the values
    stream to a temporary file, renamed when complete, then the index is written)."""
    values_path, index_path = pyramid_cache_files(path)
    values_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=values_path.parent, suffix=".tmp")
    entries, offset, levels, strides = [], 0, list(pyramid.level_names), None
    try:
        with os.fdopen(handle, "wb") as stream:
            for start in range(0, len(graphs), batch_size):
                indices = range(start, min(start + batch_size, len(graphs)))
                for image_pyramid in pyramid([load_image(i) for i in indices]):
                    strides = [image_pyramid.strides[name] for name in levels]
                    shapes = [list(image_pyramid.levels[name].shape) for name in levels]
                    for name in levels:
                        array = image_pyramid.levels[name].cpu().numpy().astype(PYRAMID_DTYPE)
                        stream.write(array.tobytes())
                    entries.append(
                        {
                            "offset": offset,
                            "shapes": shapes,
                            "scale": list(image_pyramid.scale),
                            "input_size": list(image_pyramid.input_size),
                        }
                    )
                    offset += image_pyramid.num_values()
                if progress is not None:
                    progress(len(indices))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, values_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    index = {
        "format": PYRAMID_FORMAT,
        "levels": levels,
        "strides": strides or [],
        "size": offset,
        "num_objects": [graph.num_objects for graph in graphs],
        "images": entries,
    }
    _write_json(index, index_path)
    return PyramidCache(values_path, index)


def read_pyramid_cache(path: Path, *, num_images: int) -> PyramidCache | None:
    """The cache at ``path``; None when missing, incomplete, foreign or of another length."""
    values_path, index_path = pyramid_cache_files(path)
    try:
        index = json.loads(index_path.read_text())
        if index.get("format") != PYRAMID_FORMAT or len(index["images"]) != num_images:
            return None
        if values_path.stat().st_size != index["size"] * np.dtype(PYRAMID_DTYPE).itemsize:
            return None
        return PyramidCache(values_path, index)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class OnlinePyramids:
    """Pyramids computed from the images in each step (``FEATURE_STORAGE online``).

    Args:
        pyramid: the model's frozen :class:`DetectorPyramid` (on the model's device).
        load_image: image index -> uint8 (3, H, W).
        num_objects: N_i of each image's input graph.
        amp: run the trunk under float16 autocast (CUDA only).
    """

    def __init__(
        self,
        pyramid: DetectorPyramid,
        load_image: Callable[[int], Tensor],
        num_objects: Sequence[int],
        *,
        amp: bool = False,
    ) -> None:
        self.pyramid = pyramid
        self.load_image = load_image
        self.num_objects = torch.tensor(list(num_objects), dtype=torch.int64)
        self.amp = amp

    def take(self, indices: Sequence[int]) -> tuple[list[ImagePyramid], list[None]]:
        device = self.pyramid.device
        on_cuda = device.type == "cuda"
        with torch.autocast(
            device_type=device.type, dtype=torch.float16, enabled=self.amp and on_cuda
        ):
            pyramids = self.pyramid([self.load_image(index) for index in indices])
        return pyramids, [None] * len(indices)


class OnlineFrozenFeatures:
    """Frozen-trunk object and union features computed from the images in each step."""

    def __init__(
        self,
        extractor: FrozenFeatureExtractor,
        load_image: Callable[[int], Tensor],
        graphs: Sequence[SceneGraph],
    ) -> None:
        self.extractor = extractor
        self.load_image = load_image
        self.graphs = list(graphs)
        self.num_objects = torch.tensor([g.num_objects for g in graphs], dtype=torch.int64)

    def take(self, indices: Sequence[int]) -> tuple[list[Tensor], list[Tensor]]:
        graphs = [self.graphs[index] for index in indices]
        objects, unions = self.extractor(
            [self.load_image(index) for index in indices],
            [graph.boxes for graph in graphs],
            [all_ordered_pairs(graph.num_objects) for graph in graphs],
        )
        return [o.cpu() for o in objects], [u.cpu() for u in unions]


def _write_json(value: dict, path: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(value, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class FeatureSubset:
    """The images ``positions`` of another feature source, renumbered 0..n-1 (BPL's split)."""

    def __init__(self, source: object, positions: Sequence[int]) -> None:
        self.source = source
        self.positions = [int(position) for position in positions]
        self.num_objects = source.num_objects[torch.tensor(self.positions, dtype=torch.int64)]

    def take(self, indices: Sequence[int]) -> tuple[list, list]:
        return self.source.take([self.positions[index] for index in indices])
