"""The split caches of a run: frozen-backbone features and SGDet detections, computed once.

:func:`prepare_split` gives a split's model inputs with their cached features (and, in SGDet,
first the frozen detector's proposals through :func:`prepare_detections`); both caches go
through :func:`computed_once` (the main process computes and saves, the others read). The
file formats live in :mod:`basgg.training.feature_cache` and
:mod:`basgg.training.detection_cache`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor
from tqdm import tqdm

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from basgg.config import Config
from basgg.data.vg150 import VG150Dataset
from basgg.data.vg150_checks import load_image
from basgg.models import SceneGraphModel
from basgg.structures import Mode, SceneGraph
from basgg.training.detection_cache import (
    SplitDetections,
    detect_split,
    detection_cache_path,
    read_detections,
    save_detections,
)
from basgg.training.distributed import (
    DistributedContext,
    all_gather_object,
    barrier,
    broadcast_object,
    shard,
)
from basgg.training.feature_cache import (
    FeatureCache,
    cache_path,
    extract_features,
    inputs_digest,
    join_feature_caches,
    read_feature_cache,
    save_feature_cache,
    state_dict_sha256,
)
from basgg.training.feature_storage import (
    OnlineFrozenFeatures,
    OnlinePyramids,
    choose_storage,
    extract_pyramids,
    frozen_cache_bytes,
    pyramid_cache_bytes,
    read_pyramid_cache,
    transform_sizes,
)

T = TypeVar("T")


@dataclass
class SplitData:
    """One split, ready for the loop: the dataset, the model inputs and their features.

    Attributes:
        name: "train", "val" or "test".
        dataset: the VG150 split (for "train", ``dataset[i]`` gives the training target).
        inputs: per image, the graph whose boxes the features were extracted for (PredCls,
            SGCls: the evaluation ground truth for "val" and "test"; SGDet: the proposals).
        features: the features of ``inputs``: a :class:`FeatureCache`, or any source with
            ``num_objects`` and ``take(indices)`` (:mod:`basgg.training.feature_storage`).
        ground_truths: SGDet "val"/"test": the evaluation ground truths (else ``None``:
            ``inputs`` are the ground truths).
        detector_logits: SGDet: per image (N_i, C + 1) detector class logits of ``inputs``.
    """

    name: str
    dataset: VG150Dataset
    inputs: list[SceneGraph]
    features: FeatureCache | Any
    ground_truths: list[SceneGraph] | None = None
    detector_logits: list[Tensor] | None = None

    def ground_truth(self, index: int) -> SceneGraph:
        """The evaluation ground truth of image ``index``."""
        return self.inputs[index] if self.ground_truths is None else self.ground_truths[index]

    def logits(self, index: int) -> Tensor | None:
        """(N_i, C + 1) detector logits of image ``index`` (SGDet), else ``None``."""
        return None if self.detector_logits is None else self.detector_logits[index]


@contextlib.contextmanager
def computing(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` (``fcntl.flock``) while this process computes ``path``.

    Another process that wants the same missing file (e.g. a training that needs the val
    features a side process is extracting) waits here, then reads the file instead of
    computing it a second time. The lock file is removed once ``path`` is written; a killed
    holder's lock is dropped by the operating system. Without ``fcntl`` (Windows) this only
    creates the folder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
            if path.exists():
                lock.unlink(missing_ok=True)  # waiters hold the same (unlinked) file
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def computed_once(
    path: Path,
    *,
    read: Callable[[], T | None],
    compute: Callable[[], T],
    save: Callable[[T, Path], object],
    context: DistributedContext,
    what: str,
) -> T:
    """A cached value: the main process reads ``path`` (``read`` gives None for a missing,
    corrupt or foreign file) or computes and saves it; the others then read the file.

    Raises:
        ValueError: naming ``path`` when the file the main process wrote cannot be read.
    """
    value = None
    if context.is_main:
        value = read() if path.exists() else None
        if value is None:
            with computing(path):  # or wait for another process computing it, and read it
                value = read() if path.exists() else None
                if value is None:
                    if path.exists():
                        warnings.warn(
                            f"{path}: unreadable {what}, computing it again", stacklevel=3
                        )
                    value = compute()
                    save(value, path)
    barrier(context)
    if value is None:
        value = read()
        if value is None:
            raise ValueError(f"{path}: {what} written by the main process is unreadable")
    return value


def load_split_image(dataset: VG150Dataset, index: int) -> Tensor:
    """uint8 (3, H, W) image of item ``index``."""
    return load_image(
        dataset.image_path(index),
        row=int(dataset.h5_indices[index]),
        image_id=dataset.image_ids[index],
        json_size=dataset.image_size(index),
        warn=True,
    )


def feature_cache_dir(config: Config) -> Path:
    """``FEATURE_CACHE_DIR``, or ``OUTPUT_DIR/feature_cache``."""
    return Path(config.FEATURE_CACHE_DIR or Path(config.OUTPUT_DIR) / "feature_cache")


def prepare_split(
    config: Config,
    model: SceneGraphModel,
    dataset: VG150Dataset,
    *,
    context: DistributedContext,
    progress: bool = True,
    ground_truth_inputs: bool = False,
) -> SplitData:
    """The split's model inputs and cached features (extracted on a cache miss).

    Train inputs are the training targets' boxes (or, with ``ground_truth_inputs``, the
    evaluation ground truths, every box kept); val/test inputs are the evaluation ground
    truths. In SGDet the inputs are the frozen detector's proposals
    (:func:`prepare_detections`). The main process extracts and saves; the others then read
    the file.
    """
    split = dataset.split
    ground_truths, logits = None, None
    if ground_truth_inputs:
        inputs = [dataset.ground_truth(index) for index in range(len(dataset))]
    else:
        inputs = [_input_graph(dataset, index) for index in range(len(dataset))]
    if config.mode is Mode.SGDET and not ground_truth_inputs:
        detections = prepare_detections(
            config, model, dataset, inputs, context=context, progress=progress
        )
        if split != "train":
            ground_truths = inputs
        inputs, logits = detections.graphs, detections.logits
    features = split_features(config, model, dataset, inputs, context=context, progress=progress)
    return SplitData(
        name=split,
        dataset=dataset,
        inputs=inputs,
        features=features,
        ground_truths=ground_truths,
        detector_logits=logits,
    )


def split_features(
    config: Config,
    model: SceneGraphModel,
    dataset: VG150Dataset,
    inputs: list[SceneGraph],
    *,
    context: DistributedContext,
    progress: bool = True,
) -> object:
    """The feature source of a split's ``inputs``, as ``MODEL.FEATURE_STORAGE`` chooses
    (:mod:`basgg.training.feature_storage`): a cache (read, or extracted after its size was
    checked against the free disk space) or online features."""
    if model.relation_features is not None:
        return _pyramid_features(config, model, dataset, inputs, context=context, progress=progress)
    split = dataset.split
    paths = [dataset.image_path(index) for index in range(len(dataset))]
    extractor = model.feature_extractor
    path = cache_path(
        feature_cache_dir(config),
        split,
        graphs=inputs,
        image_paths=paths,
        extractor=extractor,
        backbone_name=config.MODEL.BACKBONE.NAME,
    )

    def extract(indices: range | None = None) -> FeatureCache:
        indices = range(len(inputs)) if indices is None else indices
        bar = tqdm(
            total=len(indices),
            desc=f"features {split}",
            disable=not (progress and context.is_main),
            dynamic_ncols=True,
        )
        cache = extract_features(
            extractor,
            [inputs[index] for index in indices],
            lambda position: load_split_image(dataset, indices[position]),
            batch_size=config.MODEL.BACKBONE.BATCH_SIZE,
            progress=bar.update,
        )
        bar.close()
        return cache

    load = partial(load_split_image, dataset)
    if not path.exists():
        needed = frozen_cache_bytes([graph.num_objects for graph in inputs], extractor)
        storage = choose_storage(
            config.MODEL.FEATURE_STORAGE,
            device=context.device,
            needed=needed,
            directory=path.parent,
            what=f"frozen-trunk features of {split}",
        )
        if broadcast_object(storage, context) == "online":
            return OnlineFrozenFeatures(extractor, load, inputs)
    if context.enabled:
        return sharded_feature_cache(path, num_images=len(inputs), extract=extract, context=context)
    return computed_once(
        path,
        read=lambda: read_feature_cache(path, num_images=len(inputs)),
        compute=extract,
        save=save_feature_cache,
        context=context,
        what="feature cache",
    )


def sharded_feature_cache(
    path: Path,
    *,
    num_images: int,
    extract: Callable[[range], FeatureCache],
    context: DistributedContext,
) -> FeatureCache:
    """A feature cache that every process helps extract (several processes, one file).

    When the main process finds no readable cache at ``path``, each process extracts its
    contiguous share of the images (:func:`shard`); the others write theirs into
    ``<path>.part<rank>of<world>``, the main process joins its own (kept in memory) and
    those parts in rank order into ``path`` (the same file one process would write) and
    removes them; then every process reads ``path``.

    Raises:
        ValueError: naming ``path`` when the joined file cannot be read back.
    """
    names = all_gather_object(path.name, context)
    if len(set(names)) > 1:  # a different extractor or different inputs in some process
        raise ValueError(
            f"{path.parent}: the processes would write different feature caches {names}; "
            "their backbones or inputs differ (seed random weights with SEED)"
        )
    cache = None
    if context.is_main and path.exists():
        cache = read_feature_cache(path, num_images=num_images)
        if cache is None:
            warnings.warn(f"{path}: unreadable feature cache, computing it again", stacklevel=2)
    if not broadcast_object(cache is not None, context):
        world = context.world_size

        def part_path(rank: int) -> Path:
            return path.with_name(f"{path.name}.part{rank}of{world}")

        share = extract(shard(num_images, context))
        if not context.is_main:  # the main process keeps its own share in memory
            # parts live seconds, read back by this run only: no fsync
            save_feature_cache(share, part_path(context.rank), durable=False)
        barrier(context)
        if context.is_main:
            parts = [share]
            for rank in range(1, world):
                count = len(shard(num_images, replace(context, rank=rank)))
                part = read_feature_cache(part_path(rank), num_images=count)
                if part is None:
                    raise ValueError(f"{part_path(rank)}: feature cache part is unreadable")
                parts.append(part)
            save_feature_cache(join_feature_caches(parts), path)
            for rank in range(1, world):
                part_path(rank).unlink(missing_ok=True)
        barrier(context)
    if cache is None:
        cache = read_feature_cache(path, num_images=num_images)
        if cache is None:
            raise ValueError(f"{path}: feature cache written by the main process is unreadable")
    return cache


def _pyramid_features(
    config: Config,
    model: SceneGraphModel,
    dataset: VG150Dataset,
    inputs: list[SceneGraph],
    *,
    context: DistributedContext,
    progress: bool,
) -> object:
    """The detector-feature source: cached pyramid levels or online pyramids."""
    split = dataset.split
    pyramid = model.feature_pyramid
    load = partial(load_split_image, dataset)
    num_objects = [graph.num_objects for graph in inputs]
    paths = [dataset.image_path(index) for index in range(len(dataset))]
    key = {
        "inputs": inputs_digest(inputs, paths),
        "pyramid": state_dict_sha256(pyramid),
        "levels": pyramid.level_names,
    }
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = feature_cache_dir(config) / f"pyramids_{split}_{name}"
    online = OnlinePyramids(pyramid, load, num_objects, amp=config.SOLVER.AMP)
    cached = read_pyramid_cache(path, num_images=len(inputs)) if context.is_main else None
    if cached is None and context.is_main:
        probe = pyramid([load(0)])[0] if len(inputs) else None
        needed = 0
        if probe is not None:
            min_size, max_size = transform_sizes(pyramid)
            needed = pyramid_cache_bytes(
                [graph.image_size for graph in inputs],
                channels=int(next(iter(probe.levels.values())).shape[0]),
                strides=list(probe.strides.values()),
                min_size=min_size,
                max_size=max_size,
            )
        storage = choose_storage(
            config.MODEL.FEATURE_STORAGE,
            device=context.device,
            needed=needed,
            directory=path.parent,
            what=f"detector pyramid features of {split}",
        )
        print(
            f"detector features of {split}: {storage} (a cache would take {needed / 1e9:.2f} "
            f"GB for {len(inputs)} images)",
            flush=True,
        )
        if storage == "cache":
            bar = tqdm(total=len(inputs), desc=f"pyramids {split}", disable=not progress)
            cached = extract_pyramids(
                pyramid,
                inputs,
                load,
                path,
                batch_size=config.MODEL.BACKBONE.BATCH_SIZE,
                progress=bar.update,
            )
            bar.close()
    storage = broadcast_object("cache" if cached is not None else "online", context)
    if storage == "online":
        return online
    return cached if cached is not None else read_pyramid_cache(path, num_images=len(inputs))


def prepare_detections(
    config: Config,
    model: SceneGraphModel,
    dataset: VG150Dataset,
    graphs: list[SceneGraph],
    *,
    context: DistributedContext,
    progress: bool = True,
) -> SplitDetections:
    """SGDet proposals of a split from the model's frozen detector (cached like features).

    ``graphs`` are the split's ground truths (train: the training targets, whose boxes are
    added to the proposals, at most ``MODEL.DETECTOR.DETECTIONS_PER_IMG`` boxes in all).
    """
    split = dataset.split
    paths = [dataset.image_path(index) for index in range(len(dataset))]
    ground_truths = graphs if split == "train" else None
    max_boxes = config.MODEL.DETECTOR.DETECTIONS_PER_IMG
    path = detection_cache_path(
        feature_cache_dir(config),
        split,
        model=model,
        ground_truths=ground_truths,
        image_graphs=graphs,
        image_paths=paths,
        max_boxes=max_boxes,
    )

    def detect() -> SplitDetections:
        bar = tqdm(
            total=len(graphs), desc=f"detections {split}", disable=not progress, dynamic_ncols=True
        )
        detections = detect_split(
            model,
            [graph.image_id for graph in graphs],
            lambda index: load_split_image(dataset, index),
            ground_truths=ground_truths,
            max_boxes=max_boxes,
            batch_size=config.MODEL.BACKBONE.BATCH_SIZE,
            progress=bar.update,
        )
        bar.close()
        return detections

    detections = computed_once(
        path,
        read=lambda: read_detections(path, num_images=len(graphs)),
        compute=detect,
        save=save_detections,
        context=context,
        what="detection cache",
    )
    return detections


def _input_graph(dataset: VG150Dataset, index: int) -> SceneGraph:
    if dataset.split != "train":
        return dataset.ground_truth(index)
    with torch.random.fork_rng(devices=[]):
        _, target = dataset[index]
    return target
