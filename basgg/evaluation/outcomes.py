"""Per-triplet outcomes of an evaluation: which GT rows are recalled at K, what each row hit.

The evaluator (:mod:`basgg.evaluation.metrics`) keeps only per-image counts; a results viewer
needs the same decision for every triplet. This module makes it with the evaluator's own
building blocks (``build_batch``, ``triplet_hits``, ``first_hit_positions``), under the
graph constraint, so that ``(gt_first_hit < K).sum()`` of an image is exactly the evaluator's
``per_image["hits"]`` for that image and K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from basgg.evaluation.batch import build_batch
from basgg.evaluation.matching import (
    NO_HIT,
    first_hit_positions,
    foreground_argmax,
    triplet_hits,
)
from basgg.packed import PackedGraphs
from basgg.structures import Mode, SceneGraph

BATCH_IMAGES = 512

# outcome of a predicted row
UNMATCHED = 0
RIGHT_PAIR = 1  # subject and object match a GT row (labels, IoU+1 >= 0.5), predicate differs
MATCHED = 2  # the whole triplet matches a GT row


@dataclass
class ImageOutcome:
    """What the evaluator decided for one image's triplets.

    Attributes:
        gt_first_hit: (G,) int64 rank (0-based) of the best-ranked row hitting each GT row
            among the first ``k_max`` rows, or -1 when none does. GT row j is recalled at K
            exactly when ``0 <= gt_first_hit[j] < K``.
        row_status: (T,) int64 outcome of each of the first T = min(top, R) rows:
            ``MATCHED``, ``RIGHT_PAIR`` or ``UNMATCHED``.
        row_gt: (T,) int64 the lowest-index GT row the row matches (``MATCHED``) or whose pair
            it has (``RIGHT_PAIR``), -1 otherwise.
        row_predicates: (T,) int64 the predicate each row is scored with (foreground argmax).
    """

    gt_first_hit: np.ndarray
    row_status: np.ndarray
    row_gt: np.ndarray
    row_predicates: np.ndarray


def triplet_outcomes(
    ground_truths: Sequence[SceneGraph],
    predictions: Sequence[SceneGraph],
    *,
    mode: Mode,
    num_predicates: int,
    k_max: int = 100,
    top: int = 20,
) -> list[ImageOutcome]:
    """One :class:`ImageOutcome` per image, in order (rows already ranked best first).

    Args:
        ground_truths: the dataset split's targets.
        predictions: one ranked prediction per image.
        mode: the task (predcls scores the ground-truth boxes and labels).
        num_predicates: predicate classes including background.
        k_max: the largest K of the recalls (GT rows are looked up in this many rows).
        top: how many of the best rows get a ``row_status``.
    """
    mode = Mode(mode)
    outcomes: list[ImageOutcome | None] = [None] * len(ground_truths)
    packed_truths = PackedGraphs.from_graphs(ground_truths)
    packed_predictions = PackedGraphs.from_graphs(predictions)
    for start in range(0, len(ground_truths), BATCH_IMAGES):
        stop = min(start + BATCH_IMAGES, len(ground_truths))
        batch, _ = build_batch(
            packed_truths.images(start, stop),
            packed_predictions.images(start, stop),
            mode=mode,
            num_predicates=num_predicates,
            first_index=start,
        )
        for index, outcome in _batch_outcomes(batch, k_max, top).items():
            outcomes[index] = outcome
    for index, outcome in enumerate(outcomes):
        if outcome is None:  # skipped by the evaluator: no GT row or no predicted row
            rows = min(top, predictions[index].num_relations)
            predicates = predictions[index].predicates[:rows].cpu().numpy().astype(np.int64)
            outcomes[index] = ImageOutcome(
                gt_first_hit=np.full(ground_truths[index].num_relations, -1, np.int64),
                row_status=np.zeros(rows, np.int64),
                row_gt=np.full(rows, -1, np.int64),
                row_predicates=predicates,
            )
    return outcomes  # type: ignore[return-value]


def _batch_outcomes(batch, k_max: int, top: int) -> dict[int, ImageOutcome]:
    """Outcomes of the scored images of one batch, keyed by stream index."""
    if batch.size == 0:
        return {}
    gt_triplets, gt_boxes = batch.gt_triplets()  # (G, 4), (G, 8)
    num_gt = len(gt_triplets)
    rows = np.flatnonzero(batch.row_position < max(k_max, top))  # rows in rank order
    predicates = foreground_argmax(batch.row_scores[rows])  # (E,)
    positions = batch.row_position[rows]
    triplets, boxes = batch.row_triplets(rows, predicates)
    entry, gt = triplet_hits(triplets, boxes, gt_triplets, gt_boxes)
    in_k = positions[entry] < k_max
    first = first_hit_positions(positions, entry[in_k], gt[in_k], num_gt)  # (G,)
    first = np.where(first == NO_HIT, -1, first)

    status = np.zeros(len(rows), np.int64)
    matched_gt = np.full(len(rows), -1, np.int64)
    pair_triplets, pair_gt_triplets = triplets.copy(), gt_triplets.copy()
    pair_triplets[:, 2] = 0
    pair_gt_triplets[:, 2] = 0
    pair_entry, pair_gt = triplet_hits(pair_triplets, boxes, pair_gt_triplets, gt_boxes)
    _lowest(matched_gt, pair_entry, pair_gt)
    status[pair_entry] = RIGHT_PAIR
    triplet_gt = np.full(len(rows), -1, np.int64)
    _lowest(triplet_gt, entry, gt)
    hit = triplet_gt >= 0
    status[hit] = MATCHED
    matched_gt[hit] = triplet_gt[hit]

    gt_start = np.r_[0, np.cumsum(batch.num_gt)]  # (B + 1,) first GT row of each image
    shown = np.flatnonzero(positions < top)  # rows are grouped by image, in rank order
    bounds = np.searchsorted(batch.row_image[rows[shown]], np.arange(batch.size + 1))
    out = {}
    for image in range(batch.size):
        gt_rows = slice(gt_start[image], gt_start[image + 1])
        mine = shown[bounds[image] : bounds[image + 1]]
        local_gt = np.where(matched_gt[mine] >= 0, matched_gt[mine] - gt_start[image], -1)
        out[int(batch.stream_index[image])] = ImageOutcome(
            gt_first_hit=first[gt_rows].copy(),
            row_status=status[mine],
            row_gt=local_gt,
            row_predicates=predicates[mine],
        )
    return out


def _lowest(target: np.ndarray, entry: np.ndarray, gt: np.ndarray) -> None:
    """``target[e]`` = the lowest GT index hit by entry e (entries not hit are left as is)."""
    if len(entry) == 0:
        return
    values = np.full(len(target), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(values, entry, gt)
    found = values != np.iinfo(np.int64).max
    target[found] = values[found]
