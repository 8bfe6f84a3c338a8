"""Concatenate a batch of (ground truth, prediction) images into flat arrays for scoring.

The mode override of Scene-Graph-Benchmark happens here: in predcls the predicted boxes,
labels and object scores are replaced by the ground-truth boxes, the ground-truth labels and
1.0; in sgcls and sgdet the predicted ones are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from basgg.structures import Mode, SceneGraph


@dataclass
class ImageBatch:
    """Images of one batch that are scored (M > 0 and R > 0), flattened.

    Object and relation indices (``*_sub``, ``*_obj``) are global into the batch's object
    arrays; ``*_image`` columns give the image's position within the batch (0..B-1).
    """

    stream_index: np.ndarray  # (B,) position of each image in the update() stream
    image_ids: np.ndarray  # (B,)
    num_gt: np.ndarray  # (B,) M, duplicates counted
    gt_image: np.ndarray  # (G,)
    gt_sub: np.ndarray  # (G,) global index into gt_boxes / gt_labels
    gt_obj: np.ndarray  # (G,)
    gt_sub_local: np.ndarray  # (G,) index within the image
    gt_obj_local: np.ndarray  # (G,)
    gt_predicate: np.ndarray  # (G,)
    gt_specific: np.ndarray | None  # (G,) true specific predicate, when known
    gt_boxes: np.ndarray  # (No_gt, 4) float32
    gt_labels: np.ndarray  # (No_gt,)
    object_boxes: np.ndarray  # (No, 4) float32, the boxes the predictions are scored with
    object_labels: np.ndarray  # (No,)
    object_sigma: np.ndarray  # (No,) float32
    row_image: np.ndarray  # (Rt,)
    row_position: np.ndarray  # (Rt,) rank of the row within its image
    row_sub: np.ndarray  # (Rt,) global index into object_*
    row_obj: np.ndarray  # (Rt,)
    row_sub_local: np.ndarray  # (Rt,)
    row_obj_local: np.ndarray  # (Rt,)
    row_scores: np.ndarray  # (Rt, P + 1) float32

    @property
    def size(self) -> int:
        return len(self.stream_index)

    def gt_triplets(self) -> tuple[np.ndarray, np.ndarray]:
        """``(triplets (G, 4) = (image, sub_label, predicate, obj_label), boxes (G, 8))``."""
        triplets = np.stack(
            [
                self.gt_image,
                self.gt_labels[self.gt_sub],
                self.gt_predicate,
                self.gt_labels[self.gt_obj],
            ],
            axis=1,
        )
        boxes = np.concatenate([self.gt_boxes[self.gt_sub], self.gt_boxes[self.gt_obj]], axis=1)
        return triplets, boxes

    def row_triplets(self, rows: np.ndarray, predicates: np.ndarray) -> tuple[np.ndarray, ...]:
        """Triplets (E, 4) and boxes (E, 8) of relation rows ``rows`` read as ``predicates``."""
        sub, obj = self.row_sub[rows], self.row_obj[rows]
        triplets = np.stack(
            [self.row_image[rows], self.object_labels[sub], predicates, self.object_labels[obj]],
            axis=1,
        )
        boxes = np.concatenate([self.object_boxes[sub], self.object_boxes[obj]], axis=1)
        return triplets, boxes


def _numpy(tensor: object) -> np.ndarray:
    return tensor.detach().cpu().numpy()  # type: ignore[union-attr]


def _check_prediction(
    prediction: SceneGraph, index: int, mode: Mode, num_predicates: int, num_gt_objects: int
) -> None:
    where = f"prediction of image {index} (image_id {prediction.image_id})"
    if prediction.predicate_scores is None:
        raise ValueError(f"{where}: field predicate_scores is missing")
    width = prediction.predicate_scores.shape[1]
    if width != num_predicates:
        raise ValueError(
            f"{where}: field predicate_scores has {width} columns, expected {num_predicates} "
            "(predicate classes including background)"
        )
    if mode is not Mode.PREDCLS and prediction.object_scores is None:
        raise ValueError(f"{where}: field object_scores is missing (needed in {mode.value})")
    if mode is Mode.PREDCLS and prediction.num_relations:
        highest = int(prediction.relation_pairs.max())
        if highest >= num_gt_objects:
            raise ValueError(
                f"{where}: field relation_pairs refers to object {highest} but the ground "
                f"truth has {num_gt_objects} objects (predcls scores the ground-truth boxes)"
            )


def build_batch(
    ground_truths: Sequence[SceneGraph],
    predictions: Sequence[SceneGraph],
    *,
    mode: Mode,
    num_predicates: int,
    first_index: int,
) -> tuple[ImageBatch, np.ndarray]:
    """Flatten a batch; images with M = 0 or R = 0 are left out.

    Returns:
        The batch and the (S,) stream indices of the skipped images.
    """
    kept, skipped = [], []
    for offset, (gt, prediction) in enumerate(zip(ground_truths, predictions, strict=True)):
        index = first_index + offset
        _check_prediction(prediction, index, mode, num_predicates, gt.num_objects)
        if gt.num_relations == 0 or prediction.num_relations == 0:
            skipped.append(index)
            continue
        gt_boxes = _numpy(gt.boxes).astype(np.float32, copy=False)
        gt_labels = _numpy(gt.labels)
        if mode is Mode.PREDCLS:
            boxes, labels = gt_boxes, gt_labels
            sigma = np.ones(len(gt_labels), np.float32)
        else:
            boxes = _numpy(prediction.boxes).astype(np.float32, copy=False)
            labels = _numpy(prediction.labels)
            sigma = _numpy(prediction.object_scores).astype(np.float32, copy=False)
        specific = None if gt.specific_predicates is None else _numpy(gt.specific_predicates)
        kept.append((index, gt, prediction, gt_boxes, gt_labels, boxes, labels, sigma, specific))
    return _concatenate(kept, num_predicates), np.asarray(skipped, dtype=np.int64)


def _concatenate(kept: list, num_predicates: int) -> ImageBatch:
    n_gt_objects = np.array([len(item[4]) for item in kept], dtype=np.int64)  # (B,)
    n_objects = np.array([len(item[6]) for item in kept], dtype=np.int64)  # (B,)
    gt_pairs = [_numpy(item[1].relation_pairs) for item in kept]
    row_pairs = [_numpy(item[2].relation_pairs) for item in kept]
    num_gt = np.array([len(p) for p in gt_pairs], dtype=np.int64)  # (B,)
    num_rows = np.array([len(p) for p in row_pairs], dtype=np.int64)  # (B,)
    gt_object_offset = np.repeat(np.cumsum(n_gt_objects) - n_gt_objects, num_gt)  # (G,)
    object_offset = np.repeat(np.cumsum(n_objects) - n_objects, num_rows)  # (Rt,)
    row_image = np.repeat(np.arange(len(kept), dtype=np.int64), num_rows)  # (Rt,)
    row_start = np.repeat(np.cumsum(num_rows) - num_rows, num_rows)

    def cat(parts: list[np.ndarray], shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(shape, dtype)

    gt_pair = cat(gt_pairs, (0, 2), np.int64)  # (G, 2)
    row_pair = cat(row_pairs, (0, 2), np.int64)  # (Rt, 2)
    specific = None
    if any(item[8] is not None for item in kept):
        specific = cat(
            [item[8] if item[8] is not None else _numpy(item[1].predicates) for item in kept],
            (0,),
            np.int64,
        )
    return ImageBatch(
        stream_index=np.array([item[0] for item in kept], dtype=np.int64),
        image_ids=np.array([item[1].image_id for item in kept], dtype=np.int64),
        num_gt=num_gt,
        gt_image=np.repeat(np.arange(len(kept), dtype=np.int64), num_gt),
        gt_sub=gt_pair[:, 0] + gt_object_offset,
        gt_obj=gt_pair[:, 1] + gt_object_offset,
        gt_sub_local=gt_pair[:, 0],
        gt_obj_local=gt_pair[:, 1],
        gt_predicate=cat([_numpy(item[1].predicates) for item in kept], (0,), np.int64),
        gt_specific=specific,
        gt_boxes=cat([item[3] for item in kept], (0, 4), np.float32),
        gt_labels=cat([item[4] for item in kept], (0,), np.int64),
        object_boxes=cat([item[5] for item in kept], (0, 4), np.float32),
        object_labels=cat([item[6] for item in kept], (0,), np.int64),
        object_sigma=cat([item[7] for item in kept], (0,), np.float32),
        row_image=row_image,
        row_position=np.arange(len(row_image), dtype=np.int64) - row_start,
        row_sub=row_pair[:, 0] + object_offset,
        row_obj=row_pair[:, 1] + object_offset,
        row_sub_local=row_pair[:, 0],
        row_obj_local=row_pair[:, 1],
        row_scores=cat(
            [_numpy(item[2].predicate_scores) for item in kept], (0, num_predicates), np.float32
        ),
    )
