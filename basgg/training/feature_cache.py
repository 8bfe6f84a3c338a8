"""Frozen-backbone features, extracted once per image and cached in memory and on disk.

The backbone never trains, so a training step needs only each image's object features (one
row per box) and union features (one row per ordered pair i != j, in
:func:`basgg.models.sampling.all_ordered_pairs` order). They are extracted once per split and
saved as one tensor file named by a sha256 of

* the inputs: image ids, the boxes given to the extractor, and each image file's size and
  modification time;
* the extractor: the backbone's name and a digest of its weights, and the pooling settings.

so a changed dataset, backbone or setting never reads stale features. Files are read with
``torch.load(weights_only=True, mmap=True)``: pages are read from disk as steps need them, so
a large split does not have to fit in memory. Features are stored as float16 (half the size;
the heads compute in float32).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from basgg.models.features import FrozenFeatureExtractor
from basgg.models.sampling import all_ordered_pairs
from basgg.structures import SceneGraph
from basgg.training.checkpoint import atomic_save

CACHE_FORMAT = 1
STORAGE_DTYPE = torch.float16


@dataclass
class FeatureCache:
    """The cached features of one split, flat with per-image offsets.

    Attributes:
        object_features: (sum N_i, object_dim) float16, the boxes of image i in order.
        union_features: (sum N_i (N_i - 1), union_dim) float16, image i's ordered pairs
            in :func:`all_ordered_pairs` order.
        num_objects: (n,) int64 N_i.
        object_start: (n,) first object row of each image, for a cache that views another
            one's rows (:meth:`subset`); ``None``: images packed in order, as stored.
        pair_start: (n,) first union row of each image, likewise.
    """

    object_features: Tensor
    union_features: Tensor
    num_objects: Tensor
    object_start: Tensor | None = None
    pair_start: Tensor | None = None

    def __post_init__(self) -> None:
        counts = self.num_objects.long()
        pair_counts = counts * (counts - 1)
        if self.object_start is None or self.pair_start is None:
            self._object_start = torch.cumsum(counts, 0) - counts  # (n,)
            self._pair_start = torch.cumsum(pair_counts, 0) - pair_counts  # (n,)
            if int(counts.sum()) != self.object_features.shape[0]:
                raise ValueError("feature cache: object rows do not match num_objects")
            if int(pair_counts.sum()) != self.union_features.shape[0]:
                raise ValueError("feature cache: union rows do not match num_objects")
            return
        self._object_start, self._pair_start = self.object_start.long(), self.pair_start.long()
        if len(counts) and (
            int((self._object_start + counts).max()) > self.object_features.shape[0]
            or int((self._pair_start + pair_counts).max()) > self.union_features.shape[0]
        ):
            raise ValueError("feature cache: an image's rows run past the stored rows")

    def __len__(self) -> int:
        return int(self.num_objects.shape[0])

    def objects(self, index: int) -> Tensor:
        """(N_i, object_dim) float32 object features of image ``index``."""
        return self._object_rows(index).float()

    def unions(self, index: int) -> Tensor:
        """(N_i (N_i - 1), union_dim) float32 union features of every ordered pair."""
        return self._union_rows(index).float()

    def subset(self, indices: Sequence[int]) -> FeatureCache:
        """The images ``indices`` in that order, a view of this cache's rows (nothing is
        copied: BA-SGG's balanced stage-2 split over a VG150-sized cache is instant)."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return FeatureCache(
            object_features=self.object_features,
            union_features=self.union_features,
            num_objects=self.num_objects[index].clone(),
            object_start=self._object_start[index],
            pair_start=self._pair_start[index],
        )

    def packed(self) -> FeatureCache:
        """This cache with its images' rows packed in order (a copy when it is a view)."""
        if self.object_start is None or self.pair_start is None:
            return self
        images = range(len(self))
        objects = [self._object_rows(i) for i in images]
        unions = [self._union_rows(i) for i in images]
        return FeatureCache(
            object_features=torch.cat(objects) if objects else self.object_features[:0].clone(),
            union_features=torch.cat(unions) if unions else self.union_features[:0].clone(),
            num_objects=self.num_objects.clone(),
        )

    def _object_rows(self, index: int) -> Tensor:
        """Image ``index``'s object rows as stored (a view)."""
        start, count = int(self._object_start[index]), int(self.num_objects[index])
        return self.object_features[start : start + count]

    def _union_rows(self, index: int) -> Tensor:
        """Image ``index``'s union rows as stored (a view)."""
        count, start = int(self.num_objects[index]), int(self._pair_start[index])
        return self.union_features[start : start + count * (count - 1)]

    def take(self, indices: Sequence[int]) -> tuple[list[Tensor], list[Tensor]]:
        """Object and union features of each image of ``indices`` (the interface every
        feature source of a :class:`SplitData` has)."""
        return [self.objects(i) for i in indices], [self.unions(i) for i in indices]

    def state(self) -> dict:
        """What :func:`save_feature_cache` writes (the rows packed in order)."""
        cache = self.packed()
        return {
            "format": CACHE_FORMAT,
            "object_features": cache.object_features,
            "union_features": cache.union_features,
            "num_objects": cache.num_objects,
        }


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict: every name and the bytes of every tensor."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


def extractor_digest(extractor: FrozenFeatureExtractor, *, backbone_name: str) -> dict:
    """What the extractor's output depends on: name, weights digest and pooling settings."""
    return {
        "backbone": backbone_name,
        "weights_sha256": state_dict_sha256(extractor),
        "object_pool": extractor.object_pool,
        "union_pool": extractor.union_pool,
        "rect_size": extractor.rect_size,
        "longer_side": extractor.longer_side,
        "sampling_ratio": extractor.sampling_ratio,
    }


def inputs_digest(graphs: Sequence[SceneGraph], image_paths: Sequence[Path]) -> str:
    """sha256 of the image ids, the boxes and each image file's size and modification time."""
    digest = hashlib.sha256()
    for graph, path in zip(graphs, image_paths, strict=True):
        stat = Path(path).stat()
        digest.update(f"{graph.image_id}:{stat.st_size}:{stat.st_mtime_ns}:".encode())
        digest.update(graph.boxes.to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_path(
    cache_dir: str | Path,
    split: str,
    *,
    graphs: Sequence[SceneGraph],
    image_paths: Sequence[Path],
    extractor: FrozenFeatureExtractor,
    backbone_name: str,
) -> Path:
    """``cache_dir/features_<split>_<sha256 of inputs and extractor>.pt``."""
    key = {
        "format": CACHE_FORMAT,
        "inputs": inputs_digest(graphs, image_paths),
        "extractor": extractor_digest(extractor, backbone_name=backbone_name),
    }
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir) / f"features_{split}_{name}.pt"


@torch.no_grad()
def extract_features(
    extractor: FrozenFeatureExtractor,
    graphs: Sequence[SceneGraph],
    load_image: Callable[[int], Tensor],
    *,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> FeatureCache:
    """Run the extractor over every image once.

    Args:
        extractor: the frozen feature extractor.
        graphs: per image, the graph whose boxes are the model's input boxes.
        load_image: image index -> uint8 (3, H, W).
        batch_size: images per extractor call.
        progress: called with the number of images done after each call.
    """
    object_parts, union_parts = [], []
    for start in range(0, len(graphs), batch_size):
        indices = range(start, min(start + batch_size, len(graphs)))
        images = [load_image(i) for i in indices]
        boxes = [graphs[i].boxes for i in indices]
        pairs = [all_ordered_pairs(graphs[i].num_objects) for i in indices]
        objects, unions = extractor(images, boxes, pairs)
        object_parts.extend(o.to("cpu", STORAGE_DTYPE) for o in objects)
        union_parts.extend(u.to("cpu", STORAGE_DTYPE) for u in unions)
        if progress is not None:
            progress(len(indices))
    object_dim, union_dim = extractor.object_dim, extractor.union_dim
    return FeatureCache(
        object_features=_concatenate(object_parts, object_dim),
        union_features=_concatenate(union_parts, union_dim),
        num_objects=torch.tensor([g.num_objects for g in graphs], dtype=torch.int64),
    )


def _concatenate(parts: list[Tensor], width: int) -> Tensor:
    if not parts:
        return torch.zeros((0, width), dtype=STORAGE_DTYPE)
    return torch.cat([part.reshape(-1, width) for part in parts])


def join_feature_caches(parts: Sequence[FeatureCache]) -> FeatureCache:
    """The caches of consecutive image ranges as one cache, images in order."""
    parts = [part.packed() for part in parts]
    return FeatureCache(
        object_features=torch.cat([part.object_features for part in parts]),
        union_features=torch.cat([part.union_features for part in parts]),
        num_objects=torch.cat([part.num_objects for part in parts]),
    )


def save_feature_cache(cache: FeatureCache, path: str | Path, *, durable: bool = True) -> Path:
    """Write atomically (temporary file, fsync unless not ``durable``, rename)."""
    return atomic_save(cache.state(), path, durable=durable)


def read_feature_cache(path: str | Path, *, num_images: int) -> FeatureCache | None:
    """Read a cache file; ``None`` when it is unreadable or not for ``num_images`` images."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        cache = FeatureCache(
            object_features=state["object_features"],
            union_features=state["union_features"],
            num_objects=state["num_objects"],
        )
    except Exception:  # a corrupt or foreign file is recomputed, never trusted
        return None
    if state.get("format") != CACHE_FORMAT or len(cache) != num_images:
        return None
    return cache
