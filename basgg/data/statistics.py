"""Frequency statistics of the train split (the frequency-bias initialisation) and their cache.

Follows Scene-Graph-Benchmark's ``get_VG_statistics`` (``docs/vg150-format.md`` §8), including
its quirk: relations whose boxes do not overlap are dropped in every mode.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from basgg.atomic import atomic_output
from basgg.boxes import decode_vg_grid
from basgg.data.vg150 import VG150Dataset, overlaps_plus_one
from basgg.data.vg150_format import VG150Files

CACHE_VERSION = 1
FREQUENCY_EPSILON = 1e-3


@dataclass
class FrequencyStatistics:
    """Counts over the train split.

    Attributes:
        foreground: (C, C, P) int64 ``fg[s, o, p]`` relation rows of subject class ``s``,
            object class ``o`` and predicate ``p``; ``fg[:, :, 0]`` holds ``background``.
        background: (C, C) int64 ordered overlapping GT box pairs of each class pair, plus 1.
        object_counts: (C,) int64 GT boxes per class (index 0 is 0).
        predicate_counts: (P,) int64 GT relation rows per predicate (index 0 is 0).
    """

    foreground: np.ndarray
    background: np.ndarray
    object_counts: np.ndarray
    predicate_counts: np.ndarray


def compute_frequency_statistics(
    dataset: VG150Dataset, *, filter_non_overlap: bool = True
) -> FrequencyStatistics:
    """Count the frequency statistics over a train split's raw relation rows.

    Args:
        dataset: the train split (val excluded); duplicate rows are counted whatever its
            ``filter_duplicate_rels``.
        filter_non_overlap: drop relations whose boxes do not overlap (IoU+1 > 0 at 1024
            scale) and images left without any, as Scene-Graph-Benchmark does in every mode.
    """
    if dataset.split != "train":
        raise ValueError(f"frequency statistics come from the train split, got {dataset.split!r}")
    num_objects = dataset.vocabulary.num_objects
    num_predicates = dataset.vocabulary.num_predicates
    foreground = np.zeros((num_objects, num_objects, num_predicates), dtype=np.int64)
    background = np.zeros((num_objects, num_objects), dtype=np.int64)
    object_counts = np.zeros(num_objects, dtype=np.int64)
    for index in range(len(dataset)):
        annotation = dataset.annotation(index)
        boxes = decode_vg_grid(annotation.stored_boxes).astype(np.int64)  # (N, 4) at 1024
        relations = annotation.relations  # (R, 3)
        if filter_non_overlap:
            pairs = relations[:, :2]
            relations = relations[overlaps_plus_one(boxes[pairs[:, 0]], boxes[pairs[:, 1]])]
            if len(relations) == 0:
                continue
        labels = annotation.labels  # (N,)
        np.add.at(
            foreground, (labels[relations[:, 0]], labels[relations[:, 1]], relations[:, 2]), 1
        )
        subjects, objects = background_pairs(boxes)
        np.add.at(background, (labels[subjects], labels[objects]), 1)
        object_counts += np.bincount(labels, minlength=num_objects)
    predicate_counts = foreground.sum(axis=(0, 1))
    background += 1
    foreground[:, :, 0] = background
    return FrequencyStatistics(foreground, background, object_counts, predicate_counts)


def background_pairs(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs i != j of xyxy boxes with positive intersection area (no +1).

    If no pair overlaps, every ordered pair i != j.
    """
    left_top = np.maximum(boxes[:, None, :2], boxes[None, :, :2])  # (N, N, 2)
    right_bottom = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])  # (N, N, 2)
    overlapping = (right_bottom - left_top > 0).all(axis=2)  # (N, N)
    np.fill_diagonal(overlapping, False)
    if not overlapping.any():
        overlapping = ~np.eye(len(boxes), dtype=bool)
    subjects, objects = np.nonzero(overlapping)
    return subjects, objects


def frequency_bias_init(stats: FrequencyStatistics) -> torch.Tensor:
    """(C * C, P) float32 ``log(fg / fg.sum(2) + 1e-3)``; row ``s * C + o`` is the pair (s, o)."""
    foreground = stats.foreground.astype(np.float64)  # (C, C, P)
    distribution = foreground / foreground.sum(axis=2, keepdims=True)
    log_distribution = np.log(distribution + FREQUENCY_EPSILON)
    num_pairs = foreground.shape[0] * foreground.shape[1]
    return torch.from_numpy(log_distribution.reshape(num_pairs, -1).astype(np.float32))


def statistics_cache_path(
    files: VG150Files, cache_dir: Path, *, val_size: int, num_images: int = -1
) -> Path:
    """Cache file named by a sha256 of the three annotation files and the parameters."""
    digest = hashlib.sha256()
    for path in files.all_paths():
        with open(path, "rb") as stream:
            for chunk in iter(lambda stream=stream: stream.read(1 << 20), b""):
                digest.update(chunk)
    parameters = {
        "version": CACHE_VERSION,
        "val_size": val_size,
        "num_images": num_images,
        "filter_empty_rels": True,
        "filter_duplicate_rels": False,
        "filter_non_overlap": True,
    }
    digest.update(json.dumps(parameters, sort_keys=True).encode())
    return Path(cache_dir) / f"frequency_statistics_{digest.hexdigest()}.npz"


def load_or_compute_statistics(
    files: VG150Files, cache_dir: Path, *, val_size: int, num_images: int = -1
) -> FrequencyStatistics:
    """The train split's statistics, read from the cache when it matches the files.

    A cache file that cannot be read is recomputed with a warning.
    """
    path = statistics_cache_path(files, cache_dir, val_size=val_size, num_images=num_images)
    if path.exists():
        try:
            return _read_cache(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            warnings.warn(
                f"{path}: unreadable statistics cache, recomputing ({error})", stacklevel=2
            )
    dataset = VG150Dataset(
        files,
        split="train",
        val_size=val_size,
        num_images=num_images,
        filter_duplicate_rels=False,
        filter_non_overlap=True,
        load_images=False,
    )
    stats = compute_frequency_statistics(dataset, filter_non_overlap=True)
    _write_cache(path, stats)
    return stats


def _read_cache(path: Path) -> FrequencyStatistics:
    with np.load(path, allow_pickle=False) as archive:
        stats = FrequencyStatistics(
            **{f.name: archive[f.name] for f in fields(FrequencyStatistics)}
        )
    num_objects, _, num_predicates = stats.foreground.shape
    expected = {
        "background": (num_objects, num_objects),
        "object_counts": (num_objects,),
        "predicate_counts": (num_predicates,),
    }
    for name, shape in expected.items():
        if getattr(stats, name).shape != shape:
            raise ValueError(f"{name} has shape {getattr(stats, name).shape}, expected {shape}")
    if not np.array_equal(stats.foreground[:, :, 0], stats.background):
        raise ValueError("foreground[:, :, 0] differs from background")
    return stats


def _write_cache(path: Path, stats: FrequencyStatistics) -> None:
    with atomic_output(path) as temporary:
        np.savez(temporary, **{f.name: getattr(stats, f.name) for f in fields(stats)})
