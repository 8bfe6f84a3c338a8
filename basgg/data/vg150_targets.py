"""The evaluation targets of VG150-format splits as packed numpy arrays, without torch.

``basgg eval`` reads the ground truth of the scored split and of the train split here, in
one pass over the files and vectorised over images. The values are those of
:meth:`basgg.data.vg150.VG150Dataset.ground_truth` (every box decoded and clipped, every raw
relation row), bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from basgg.boxes import cxcywh_to_xyxy
from basgg.data.vg150_checks import (
    check_h5_arrays,
    image_relation_rows,
    read_checked_vocabulary,
    read_h5_arrays,
    read_image_data,
)
from basgg.data.vg150_format import SPECIFIC_PREDICATES, SPLIT_TEST, SPLIT_TRAIN, VG150Files
from basgg.data.vocabulary import Vocabulary
from basgg.packed import PackedGraphs


def select_split_rows(
    arrays: dict[str, np.ndarray],
    *,
    split: str,
    val_size: int,
    num_images: int,
    filter_empty_rels: bool,
) -> np.ndarray:
    """h5 rows of a split in file order, before the train-only filters (doc §6, steps 1-5)."""
    candidate = arrays["split"] == (SPLIT_TEST if split == "test" else SPLIT_TRAIN)  # (N_img,)
    candidate &= arrays["img_to_first_box"] >= 0
    if filter_empty_rels:
        candidate &= arrays["img_to_first_rel"] >= 0
    rows = np.flatnonzero(candidate)
    if num_images > -1:
        rows = rows[:num_images]
    if split == "val":
        return rows[:val_size]
    if split == "train":
        return rows[val_size:]
    return rows


def read_split_targets(
    files: VG150Files, *, splits: Sequence[str], val_size: int = 5000
) -> tuple[dict[str, PackedGraphs], Vocabulary]:
    """Ground truth of each split in ``splits`` (the VG150Dataset defaults: images without
    relations dropped, no non-overlap filter), and the vocabulary; the files are read once.
    """
    if val_size < 0:
        raise ValueError(f"val_size must be >= 0, got {val_size}")
    vocabulary = read_checked_vocabulary(files.dict_path)
    arrays = read_h5_arrays(files.roidb_path)
    all_ids, all_widths, all_heights = read_image_data(files.image_data_path, len(arrays["split"]))
    check_h5_arrays(arrays, files.roidb_path, vocabulary, all_ids)
    targets = {}
    for split in splits:
        rows = select_split_rows(
            arrays, split=split, val_size=val_size, num_images=-1, filter_empty_rels=True
        )
        targets[split] = _pack_rows(arrays, rows, all_ids, all_widths, all_heights)
    return targets, vocabulary


def _pack_rows(
    arrays: dict[str, np.ndarray],
    rows: np.ndarray,
    all_ids: np.ndarray,
    all_widths: np.ndarray,
    all_heights: np.ndarray,
) -> PackedGraphs:
    first_box, last_box = arrays["img_to_first_box"][rows], arrays["img_to_last_box"][rows]
    box_owner, box_rows = image_relation_rows(first_box, last_box)  # (O,)
    rel_owner, rel_rows = image_relation_rows(
        arrays["img_to_first_rel"][rows], arrays["img_to_last_rel"][rows]
    )  # (R,)
    widths, heights = all_widths[rows], all_heights[rows]  # (I,)
    # decode_vg_boxes, one scale and clip range per image, repeated per object
    xyxy = cxcywh_to_xyxy(arrays["boxes_1024"][box_rows]).astype(np.float32)  # (O, 4)
    scale = (np.maximum(widths, heights) / 1024.0).astype(np.float32)[box_owner]  # (O,)
    xyxy = xyxy * scale[:, None]
    x_max = (widths - 1).astype(np.float32)[box_owner][:, None]
    y_max = (heights - 1).astype(np.float32)[box_owner][:, None]
    xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], np.float32(0), x_max)
    xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], np.float32(0), y_max)
    pairs = arrays["relationships"][rel_rows] - first_box[rel_owner][:, None]  # (R, 2)
    specific = arrays.get(SPECIFIC_PREDICATES)
    n_objects = np.bincount(box_owner, minlength=len(rows))
    n_relations = np.bincount(rel_owner, minlength=len(rows))
    return PackedGraphs(
        image_ids=all_ids[rows].astype(np.int64),
        image_sizes=np.stack([heights, widths], axis=1).astype(np.int64),
        object_offsets=np.concatenate([[0], np.cumsum(n_objects)]).astype(np.int64),
        relation_offsets=np.concatenate([[0], np.cumsum(n_relations)]).astype(np.int64),
        boxes=np.ascontiguousarray(xyxy, dtype=np.float32),
        labels=arrays["labels"][box_rows, 0].astype(np.int64),
        relation_pairs=pairs.astype(np.int64),
        predicates=arrays["predicates"][rel_rows, 0].astype(np.int64),
        specific_predicates=None if specific is None else specific[rel_rows, 0].astype(np.int64),
    )


def relation_counts(targets: PackedGraphs, num_predicates: int) -> np.ndarray:
    """(P + 1,) int64 predicate counts over a split's evaluation targets."""
    return np.bincount(targets.predicates, minlength=num_predicates).astype(np.int64)
