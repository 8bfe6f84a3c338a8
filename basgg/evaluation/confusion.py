"""Predicate confusion matrix of BA-SGG's Semantic Adjustment (predcls only).

For every (prediction row, GT row) pair with the same (subject index, object index), all rows
and no K cut or IoU test: ``C[gt_predicate, 1 + argmax_{c>=1} P[c]] += 1``. Row = ground
truth, column = prediction; row 0 and column 0 stay 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from basgg.evaluation.matching import foreground_argmax, join_equal, row_codes
from basgg.structures import SceneGraph


def confusion_increments(
    gt_predicates: np.ndarray, predicted_predicates: np.ndarray, num_predicates: int
) -> np.ndarray:
    """(P + 1, P + 1) int64 counts of (GT predicate, predicted predicate) pairs."""
    size = int(num_predicates)
    codes = np.asarray(gt_predicates, np.int64) * size + np.asarray(predicted_predicates, np.int64)
    return np.bincount(codes, minlength=size * size).astype(np.int64).reshape(size, size)


def image_confusion(
    ground_truth: SceneGraph, prediction: SceneGraph, num_predicates: int
) -> np.ndarray:
    """(P + 1, P + 1) confusion counts of one image (duplicate GT rows each count)."""
    if prediction.predicate_scores is None:
        raise ValueError(f"image_id {prediction.image_id}: field predicate_scores is missing")
    gt_pairs = ground_truth.relation_pairs.cpu().numpy()  # (M, 2)
    row_pairs = prediction.relation_pairs.cpu().numpy()  # (R, 2)
    codes = row_codes(
        [
            np.concatenate([row_pairs[:, 0], gt_pairs[:, 0]]),
            np.concatenate([row_pairs[:, 1], gt_pairs[:, 1]]),
        ]
    )
    rows, gts = join_equal(codes[: len(row_pairs)], codes[len(row_pairs) :])
    scores = prediction.predicate_scores.detach().cpu().numpy()[rows]  # (H, P + 1)
    return confusion_increments(
        ground_truth.predicates.cpu().numpy()[gts], foreground_argmax(scores), num_predicates
    )


class PredicateConfusion:
    """Accumulates the predcls confusion matrix over images.

    Args:
        num_predicates: predicate classes including background (51 for VG150).
    """

    def __init__(self, *, num_predicates: int) -> None:
        self.num_predicates = int(num_predicates)
        self.counts = np.zeros((self.num_predicates, self.num_predicates), dtype=np.int64)

    def update(
        self, ground_truths: Sequence[SceneGraph], predictions: Sequence[SceneGraph]
    ) -> None:
        """Add the counts of a list of (ground truth, predcls prediction) images."""
        if len(ground_truths) != len(predictions):
            raise ValueError(
                f"{len(ground_truths)} ground truths but {len(predictions)} predictions"
            )
        for ground_truth, prediction in zip(ground_truths, predictions, strict=True):
            self.counts += image_confusion(ground_truth, prediction, self.num_predicates)

    def compute(self) -> np.ndarray:
        """(P + 1, P + 1) int64 counts."""
        return self.counts.copy()
