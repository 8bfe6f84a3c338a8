"""The VG150 dataset as Scene-Graph-Benchmark.pytorch reads it: splits, filters and targets.

See ``docs/vg150-format.md``. The h5 arrays are read once at construction and the file is
closed, so DataLoader workers can fork.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from basgg.boxes import decode_vg_boxes, decode_vg_grid
from basgg.data.balanced import BalancedSelection, balance_predicates
from basgg.data.vg150_checks import (
    VG150Error,
    check_h5_arrays,
    image_relation_rows,
    load_image,
    read_checked_vocabulary,
    read_h5_arrays,
    read_image_data,
    vg150_error,
)
from basgg.data.vg150_format import SPECIFIC_PREDICATES, VG150Files
from basgg.data.vg150_targets import select_split_rows
from basgg.structures import SceneGraph

SPLITS = ("train", "val", "test")
VG150_NUM_IMAGES = 108_073
VG150_SPLIT_SIZES = {"train": 57_723, "val": 5_000, "test": 26_446}

__all__ = ["SPLITS", "VG150Annotation", "VG150Dataset", "VG150Error"]


class VG150Annotation(NamedTuple):
    """One image's stored annotation, before decoding to pixels.

    Attributes:
        stored_boxes: (N, 4) ``boxes_1024`` rows, ``[cx, cy, w, h]`` in the stored integer dtype.
        labels: (N,) int64 object classes.
        relations: (R, 3) int64 (subject, object, predicate) raw rows, subject and object local
            to the image; non-overlapping rows are gone if the split applies that filter.
        specific_predicates: (R,) int64 or ``None`` when the h5 has no such dataset.
    """

    stored_boxes: np.ndarray
    labels: np.ndarray
    relations: np.ndarray
    specific_predicates: np.ndarray | None


class VG150Dataset(Dataset):
    """VG150-format scene graphs, with Scene-Graph-Benchmark's splits and filters.

    Args:
        files: paths of the h5, the dicts JSON, image_data.json and the image folder.
        split: ``"train"``, ``"val"`` (the first ``val_size`` train-flag images) or ``"test"``.
        val_size: number of train-flag images carved out as val.
        num_images: keep only the first ``num_images`` candidate images (before the val cut);
            -1 keeps all.
        filter_empty_rels: drop images without relations.
        filter_duplicate_rels: train only: each load keeps one random predicate per pair
            (drawn with torch's global RNG).
        filter_non_overlap: train only: keep relations whose boxes overlap (IoU+1 > 0 at
            1024 scale) and drop images left without any.
        load_images: load the JPEGs; also drops images whose file is missing.
        image_transform: joint transform ``(image, graph) -> (image, graph)`` applied to loaded
            images and their training target.
    """

    def __init__(
        self,
        files: VG150Files,
        *,
        split: str,
        val_size: int = 5000,
        num_images: int = -1,
        filter_empty_rels: bool = True,
        filter_duplicate_rels: bool = True,
        filter_non_overlap: bool = False,
        load_images: bool = True,
        image_transform: Callable | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        self.files = files
        self.split = split
        self.load_images = load_images
        self.image_transform = image_transform
        self.filter_duplicate_rels = filter_duplicate_rels and split == "train"
        self.filter_non_overlap = filter_non_overlap and split == "train"
        self.vocabulary = read_checked_vocabulary(files.dict_path)
        arrays = read_h5_arrays(files.roidb_path)
        num_h5_images = len(arrays["split"])
        all_ids, all_widths, all_heights = read_image_data(files.image_data_path, num_h5_images)
        check_h5_arrays(arrays, files.roidb_path, self.vocabulary, all_ids)
        self._arrays = arrays
        self._relation_kept = np.ones(len(arrays["relationships"]), dtype=bool)  # (N_rel,)

        rows = select_split_rows(
            arrays,
            split=split,
            val_size=val_size,
            num_images=num_images,
            filter_empty_rels=filter_empty_rels,
        )
        defaults = (val_size, num_images, filter_empty_rels) == (5000, -1, True)
        if num_h5_images == VG150_NUM_IMAGES and defaults and not self.filter_non_overlap:
            if len(rows) != VG150_SPLIT_SIZES[split]:
                raise vg150_error(
                    files.roidb_path,
                    "split",
                    f"VG150 {split} split has {len(rows)} images, expected "
                    f"{VG150_SPLIT_SIZES[split]}",
                )
        if self.filter_non_overlap:
            rows = self._filter_non_overlap(rows)
        if load_images:
            rows = self._drop_missing_images(rows, all_ids)
        self.h5_indices = rows  # (n,)
        self.image_ids = [int(image_id) for image_id in all_ids[rows]]
        self._widths = all_widths[rows]  # (n,)
        self._heights = all_heights[rows]  # (n,)
        self._size_checked: set[int] = set()

    def __len__(self) -> int:
        return len(self.h5_indices)

    def image_path(self, index: int) -> Path:
        """Path of the image file of item ``index``."""
        return self.files.image_path(self.image_ids[index])

    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) of item ``index`` from image_data.json."""
        return int(self._heights[index]), int(self._widths[index])

    def annotation(self, index: int) -> VG150Annotation:
        """The stored annotation of item ``index`` (no decoding, no filtering but non-overlap)."""
        arrays, row = self._arrays, int(self.h5_indices[index])
        first_box, last_box = arrays["img_to_first_box"][row], arrays["img_to_last_box"][row]
        objects = slice(first_box, last_box + 1)
        first_rel, last_rel = arrays["img_to_first_rel"][row], arrays["img_to_last_rel"][row]
        rows = np.arange(first_rel, last_rel + 1) if first_rel >= 0 else np.zeros(0, np.int64)
        rows = rows[self._relation_kept[rows]]  # (R,)
        relations = np.concatenate(
            [arrays["relationships"][rows] - first_box, arrays["predicates"][rows]], axis=1
        ).astype(np.int64)  # (R, 3)
        specific = arrays.get(SPECIFIC_PREDICATES)
        return VG150Annotation(
            stored_boxes=arrays["boxes_1024"][objects].copy(),
            labels=arrays["labels"][objects, 0].astype(np.int64),
            relations=relations,
            specific_predicates=None if specific is None else specific[rows, 0].astype(np.int64),
        )

    def ground_truth(self, index: int) -> SceneGraph:
        """The evaluation target: every box kept (clipped), every raw relation row."""
        annotation = self.annotation(index)
        height, width = self.image_size(index)
        boxes = decode_vg_boxes(annotation.stored_boxes, width, height)  # (N, 4)
        return _scene_graph(annotation, boxes, (height, width), self.image_ids[index])

    def __getitem__(self, index: int) -> tuple[Tensor | None, SceneGraph]:
        """The image (uint8 (3, H, W), or ``None``) and the training target."""
        image = self._load_image(index) if self.load_images else None
        graph = self.target(index)
        if image is not None and self.image_transform is not None:
            image, graph = self.image_transform(image, graph)
        return image, graph

    def target(self, index: int, *, generator: torch.Generator | None = None) -> SceneGraph:
        """The training target of item ``index`` (no image, no image transform): with
        ``filter_duplicate_rels``, one relation per (subject, object) pair drawn with
        ``generator`` (default: torch's global RNG)."""
        annotation = self.annotation(index)
        if self.filter_duplicate_rels:
            chosen = one_row_per_pair(annotation.relations[:, :2], generator=generator)
            annotation = _take_relations(annotation, chosen)
        height, width = self.image_size(index)
        boxes = decode_vg_boxes(annotation.stored_boxes, width, height)  # (N, 4)
        kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # (N,)
        if not kept.all():
            new_index = np.cumsum(kept) - 1  # (N,)
            pairs = annotation.relations[:, :2]
            related = np.flatnonzero(kept[pairs].all(axis=1))
            annotation = _take_relations(annotation, related)
            relations = annotation.relations.copy()
            relations[:, :2] = new_index[relations[:, :2]]
            annotation = annotation._replace(
                stored_boxes=annotation.stored_boxes[kept],
                labels=annotation.labels[kept],
                relations=relations,
            )
            boxes = boxes[kept]
        return _scene_graph(annotation, boxes, (height, width), self.image_ids[index])

    def relation_counts(self) -> np.ndarray:
        """(P + 1,) int64 predicate counts over this split's evaluation targets."""
        arrays = self._arrays
        rows = self.h5_indices
        _, relation_rows = image_relation_rows(
            arrays["img_to_first_rel"][rows], arrays["img_to_last_rel"][rows]
        )
        relation_rows = relation_rows[self._relation_kept[relation_rows]]
        predicates = arrays["predicates"][relation_rows, 0].astype(np.int64)
        return np.bincount(predicates, minlength=self.vocabulary.num_predicates)

    def balance_predicates(
        self, *, num_head: int, max_per_predicate: int, scale_fraction: float
    ) -> BalancedSelection:
        """BA-SGG Balanced Predicate Learning on this train split (``basgg.data.balanced``).

        Caps each of the ``num_head`` most frequent predicates at ``max_per_predicate`` rows
        (-1: scaled) in file order, then drops images left without relations; boxes stay.
        """
        if self.split != "train":
            raise ValueError(f"balance_predicates: only the train split, not {self.split!r}")
        arrays = self._arrays
        owners, relation_rows = image_relation_rows(
            arrays["img_to_first_rel"][self.h5_indices], arrays["img_to_last_rel"][self.h5_indices]
        )
        live = self._relation_kept[relation_rows]  # (M,)
        owners, relation_rows = owners[live], relation_rows[live]
        selection = balance_predicates(
            arrays["predicates"][relation_rows, 0],
            num_head=num_head,
            max_per_predicate=max_per_predicate,
            scale_fraction=scale_fraction,
        )
        self._relation_kept = self._relation_kept.copy()
        self._relation_kept[relation_rows[~selection.kept]] = False
        per_image = np.bincount(owners[selection.kept], minlength=len(self.h5_indices))
        keep = per_image > 0  # (n,)
        self.h5_indices = self.h5_indices[keep]
        self.image_ids = [image_id for image_id, k in zip(self.image_ids, keep, strict=True) if k]
        self._widths = self._widths[keep]
        self._heights = self._heights[keep]
        return selection

    def _load_image(self, index: int) -> Tensor:
        row = int(self.h5_indices[index])
        image = load_image(
            self.image_path(index),
            row=row,
            image_id=self.image_ids[index],
            json_size=self.image_size(index),
            warn=row not in self._size_checked,
        )
        self._size_checked.add(row)
        return image

    def _filter_non_overlap(self, rows: np.ndarray) -> np.ndarray:
        arrays = self._arrays
        xyxy = decode_vg_grid(arrays["boxes_1024"]).astype(np.int64)  # (N_obj, 4) at 1024
        pairs = arrays["relationships"]  # (N_rel, 2) global object rows
        self._relation_kept = overlaps_plus_one(xyxy[pairs[:, 0]], xyxy[pairs[:, 1]])
        owners, relation_rows = image_relation_rows(
            arrays["img_to_first_rel"][rows], arrays["img_to_last_rel"][rows]
        )
        kept_per_image = np.bincount(
            owners, weights=self._relation_kept[relation_rows], minlength=len(rows)
        )
        return rows[kept_per_image > 0]

    def _drop_missing_images(self, rows: np.ndarray, all_ids: np.ndarray) -> np.ndarray:
        image_dir = self.files.image_dir_path
        if not image_dir.is_dir():
            raise vg150_error(image_dir, "image_dir", "image folder missing")
        on_disk = {entry.name for entry in os.scandir(image_dir)}
        present = np.array([f"{image_id}.jpg" in on_disk for image_id in all_ids[rows]], bool)
        if not present.all():
            missing = all_ids[rows[~present]]
            warnings.warn(
                f"{image_dir}: {len(missing)} image(s) of the {self.split} split missing on disk "
                f"and dropped (image_id {missing[:5].tolist()}...)",
                stacklevel=3,
            )
        return rows[present]


def overlaps_plus_one(subject: np.ndarray, object_: np.ndarray) -> np.ndarray:
    """Row-wise: do integer xyxy boxes intersect under the +1 convention (IoU+1 > 0)?"""
    width = np.minimum(subject[:, 2], object_[:, 2]) - np.maximum(subject[:, 0], object_[:, 0])
    height = np.minimum(subject[:, 3], object_[:, 3]) - np.maximum(subject[:, 1], object_[:, 1])
    return (width + 1 > 0) & (height + 1 > 0)  # (R,)


def one_row_per_pair(pairs: np.ndarray, *, generator: torch.Generator | None = None) -> np.ndarray:
    """Indices of rows keeping one random row per (subject, object) pair, in first-seen order.

    The choice is uniform among a pair's rows, drawn with ``generator`` (default: torch's
    global RNG).
    """
    if len(pairs) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first_seen, group = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    group = group.reshape(-1)  # (R,)
    keys = torch.rand(len(pairs), dtype=torch.float64, generator=generator).numpy()  # (R,)
    order = np.lexsort((keys, group))  # by group, then key: the last of each group wins
    last_of_group = np.flatnonzero(np.r_[group[order][1:] != group[order][:-1], True])
    chosen = order[last_of_group]  # (G,) one row per group, groups in sorted-pair order
    return chosen[np.argsort(first_seen, kind="stable")]


def _take_relations(annotation: VG150Annotation, rows: np.ndarray) -> VG150Annotation:
    specific = annotation.specific_predicates
    return annotation._replace(
        relations=annotation.relations[rows],
        specific_predicates=None if specific is None else specific[rows],
    )


def _scene_graph(
    annotation: VG150Annotation, boxes: np.ndarray, image_size: tuple[int, int], image_id: int
) -> SceneGraph:
    specific = annotation.specific_predicates
    return SceneGraph(
        boxes=torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)),
        labels=torch.from_numpy(annotation.labels),
        relation_pairs=torch.from_numpy(np.ascontiguousarray(annotation.relations[:, :2])),
        predicates=torch.from_numpy(np.ascontiguousarray(annotation.relations[:, 2])),
        image_size=image_size,
        image_id=image_id,
        specific_predicates=None if specific is None else torch.from_numpy(specific),
    )
