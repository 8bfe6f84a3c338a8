"""Flatten a batch of packed (ground truth, prediction) images into the arrays scored.

The mode override of Scene-Graph-Benchmark happens here: in predcls the predicted boxes,
labels and object scores are replaced by the ground-truth boxes, the ground-truth labels and
1.0; in sgcls and sgdet the predicted ones are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from basgg.packed import PackedGraphs, range_rows
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


def check_prediction(
    prediction: SceneGraph, index: int, mode: Mode, num_predicates: int, num_gt_objects: int
) -> None:
    """Raise ``ValueError`` naming image ``index`` and the field if ``prediction`` cannot be
    scored in ``mode`` against a ground truth of ``num_gt_objects`` objects."""
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


def check_packed_predictions(
    ground_truths: PackedGraphs,
    predictions: PackedGraphs,
    *,
    mode: Mode,
    num_predicates: int,
    first_index: int,
) -> None:
    """:func:`check_prediction` on every image of a packed batch at once."""

    def where(image: int) -> str:
        image_id = int(predictions.image_ids[image])
        return f"prediction of image {first_index + image} (image_id {image_id})"

    if len(predictions) == 0:
        return
    if predictions.predicate_scores is None:
        raise ValueError(f"{where(0)}: field predicate_scores is missing")
    width = predictions.num_predicate_columns
    if width != num_predicates:
        raise ValueError(
            f"{where(0)}: field predicate_scores has {width} columns, expected "
            f"{num_predicates} (predicate classes including background)"
        )
    if mode is not Mode.PREDCLS and predictions.object_scores is None:
        raise ValueError(f"{where(0)}: field object_scores is missing (needed in {mode.value})")
    if mode is Mode.PREDCLS and len(predictions.relation_pairs):
        row_image = np.repeat(np.arange(len(predictions)), predictions.num_relations)  # (R,)
        limit = ground_truths.num_objects[row_image]  # (R,)
        pairs = predictions.relation_pairs
        bad = np.flatnonzero(np.maximum(pairs[:, 0], pairs[:, 1]) >= limit)
        if len(bad):
            image = int(row_image[bad[0]])
            r0, r1 = predictions.relation_offsets[image : image + 2]
            highest = int(predictions.relation_pairs[r0:r1].max())
            raise ValueError(
                f"{where(image)}: field relation_pairs refers to object {highest} but the "
                f"ground truth has {int(limit[bad[0]])} objects (predcls scores the "
                "ground-truth boxes)"
            )


def build_batch(
    ground_truths: PackedGraphs,
    predictions: PackedGraphs,
    *,
    mode: Mode,
    num_predicates: int,
    first_index: int,
) -> tuple[ImageBatch, np.ndarray]:
    """Flatten a batch of images (packed, offsets from 0); images with M = 0 or R = 0 are
    left out.

    Returns:
        The batch and the (S,) stream indices of the skipped images.
    """
    check_packed_predictions(
        ground_truths, predictions, mode=mode, num_predicates=num_predicates,
        first_index=first_index,
    )  # fmt: skip
    num_gt_all = ground_truths.num_relations  # (I,)
    num_rows_all = predictions.num_relations  # (I,)
    keep = (num_gt_all > 0) & (num_rows_all > 0)  # (I,)
    images = np.flatnonzero(keep)  # (B,)
    skipped = np.flatnonzero(~keep) + first_index
    everything = len(images) == len(keep)

    def take(offsets: np.ndarray, array: object) -> np.ndarray:
        if everything:
            return np.asarray(array[offsets[0] : offsets[-1]])
        rows = range_rows(offsets, images)  # ascending
        if len(rows) == 0:
            return np.asarray(array[0:0])
        span = np.asarray(array[rows[0] : rows[-1] + 1])  # one read, also from an h5py dataset
        return span if len(span) == len(rows) else span[rows - rows[0]]

    gt_objects, gt_relations = ground_truths.object_offsets, ground_truths.relation_offsets
    objects, relations = predictions.object_offsets, predictions.relation_offsets
    n_gt_objects = np.diff(gt_objects)[images]  # (B,)
    num_gt = num_gt_all[images]  # (B,)
    num_rows = num_rows_all[images]  # (B,)
    gt_boxes = take(gt_objects, ground_truths.boxes).astype(np.float32, copy=False)
    gt_labels = take(gt_objects, ground_truths.labels).astype(np.int64, copy=False)
    if mode is Mode.PREDCLS:
        n_objects = n_gt_objects
        boxes, labels = gt_boxes, gt_labels
        sigma = np.ones(len(gt_labels), np.float32)
    else:
        n_objects = np.diff(objects)[images]
        boxes = take(objects, predictions.boxes).astype(np.float32, copy=False)
        labels = take(objects, predictions.labels).astype(np.int64, copy=False)
        sigma = take(objects, predictions.object_scores).astype(np.float32, copy=False)
    gt_pair = take(gt_relations, ground_truths.relation_pairs).astype(np.int64, copy=False)
    row_pair = take(relations, predictions.relation_pairs).astype(np.int64, copy=False)
    gt_predicate = take(gt_relations, ground_truths.predicates).astype(np.int64, copy=False)
    specific = None
    if ground_truths.specific_predicates is not None:
        specific = take(gt_relations, ground_truths.specific_predicates).astype(np.int64)
    scores = take(relations, predictions.predicate_scores).astype(np.float32, copy=False)

    size = len(images)
    gt_object_offset = np.repeat(np.cumsum(n_gt_objects) - n_gt_objects, num_gt)  # (G,)
    object_offset = np.repeat(np.cumsum(n_objects) - n_objects, num_rows)  # (Rt,)
    row_image = np.repeat(np.arange(size, dtype=np.int64), num_rows)  # (Rt,)
    row_start = np.repeat(np.cumsum(num_rows) - num_rows, num_rows)  # (Rt,)
    batch = ImageBatch(
        stream_index=images.astype(np.int64) + first_index,
        image_ids=ground_truths.image_ids[images].astype(np.int64),
        num_gt=num_gt.astype(np.int64),
        gt_image=np.repeat(np.arange(size, dtype=np.int64), num_gt),
        gt_sub=gt_pair[:, 0] + gt_object_offset,
        gt_obj=gt_pair[:, 1] + gt_object_offset,
        gt_sub_local=gt_pair[:, 0],
        gt_obj_local=gt_pair[:, 1],
        gt_predicate=gt_predicate,
        gt_specific=specific,
        gt_boxes=gt_boxes,
        gt_labels=gt_labels,
        object_boxes=boxes,
        object_labels=labels,
        object_sigma=sigma,
        row_image=row_image,
        row_position=np.arange(len(row_image), dtype=np.int64) - row_start,
        row_sub=row_pair[:, 0] + object_offset,
        row_obj=row_pair[:, 1] + object_offset,
        row_sub_local=row_pair[:, 0],
        row_obj_local=row_pair[:, 1],
        row_scores=scores.reshape(-1, num_predicates),
    )
    return batch, skipped.astype(np.int64)
