"""Per-image counts of the metrics the field reports beside SGB's: PairRecall@K, RI@K and
InformativeRecall@K. Vectorised over a batch of images like the rest of the evaluator.

- **PairRecall@K** (sgbench): a ground-truth (subject, object) index pair is located when one
  of the first K ranked rows has both boxes matched (equal labels, IoU+1 >= 0.5, SGB's
  matching), whatever its predicate. Per image: located distinct pairs / distinct pairs.
- **RI@K** (the BA-SGG code's "amount of information" recall): per image, the summed
  information of the foreground-argmax predicates of the first K ranked rows; no matching.
- **InformativeRecall@K** (Neau et al., PRL 2025; SGG-Benchmark): per image with informative
  triplets, the share of them matched by one of the first K rows' (subject label, argmax
  predicate, object label) triplets. basgg matches triplets exactly (equal classes);
  SGG-Benchmark compares sentence embeddings (cosine > 0.8), of which exact equality is the
  similarity-1 case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from basgg.evaluation.batch import ImageBatch
from basgg.evaluation.matching import (
    NO_HIT,
    first_hit_positions,
    join_equal,
    row_codes,
    triplet_hits,
)


def _per_image_counts(
    image: np.ndarray, first: np.ndarray, ks: Sequence[int], size: int
) -> np.ndarray:
    """(B, nK) how many entries of each image have ``first < K``."""
    columns = [np.bincount(image[first < k], minlength=size) for k in ks]
    return np.stack(columns, axis=1).astype(np.int64)


def pair_counts(
    batch: ImageBatch,
    rows: np.ndarray,
    positions: np.ndarray,
    gt_boxes: np.ndarray,
    ks: Sequence[int],
) -> dict[str, np.ndarray]:
    """PairRecall counts: ``pair_count`` (B,) and ``pair_hits`` (B, nK).

    Args:
        batch: the batch.
        rows: (E,) ranked rows considered (those before the largest K).
        positions: (E,) their rank within their image.
        gt_boxes: (G, 8) subject and object box of each GT row.
        ks: the K values.
    """
    codes = row_codes([batch.gt_image, batch.gt_sub_local, batch.gt_obj_local])
    _, targets = np.unique(codes, return_index=True)  # (U,) one GT row per distinct pair
    zeros_gt = np.zeros(len(targets), np.int64)
    gt_pairs = np.stack(
        [
            batch.gt_image[targets],
            batch.gt_labels[batch.gt_sub[targets]],
            zeros_gt,
            batch.gt_labels[batch.gt_obj[targets]],
        ],
        axis=1,
    )  # (U, 4) the predicate column is ignored (0)
    row_pairs, row_boxes = batch.row_triplets(rows, np.zeros(len(rows), np.int64))
    entry_index, target_index = triplet_hits(row_pairs, row_boxes, gt_pairs, gt_boxes[targets])
    first = first_hit_positions(positions, entry_index, target_index, len(targets))  # (U,)
    image = batch.gt_image[targets]
    return {
        "pair_count": np.bincount(image, minlength=batch.size).astype(np.int64),
        "pair_hits": _per_image_counts(image, first, ks, batch.size),
    }


def information_sums(
    batch: ImageBatch,
    rows: np.ndarray,
    predicates: np.ndarray,
    positions: np.ndarray,
    information: np.ndarray,
    ks: Sequence[int],
) -> dict[str, np.ndarray]:
    """RI: ``information`` (B, nK), the summed information of each image's first K rows.

    Args:
        rows, predicates, positions: (E,) ranked rows, their argmax predicate, their rank.
        information: (P + 1,) information of each predicate (nats).
    """
    values = information[predicates]  # (E,)
    image = batch.row_image[rows]
    columns = [
        np.bincount(image, weights=np.where(positions < k, values, 0.0), minlength=batch.size)
        for k in ks
    ]
    return {"information": np.stack(columns, axis=1).astype(np.float64)}


def informative_counts(
    batch: ImageBatch,
    rows: np.ndarray,
    predicates: np.ndarray,
    positions: np.ndarray,
    informative: Mapping[int, np.ndarray],
    ks: Sequence[int],
) -> dict[str, np.ndarray]:
    """InformativeRecall counts: ``informative_count`` (B,) and ``informative_hits`` (B, nK).

    Args:
        rows, predicates, positions: (E,) ranked rows, their argmax predicate, their rank.
        informative: image id -> (T, 3) int (subject class, predicate, object class); -1 for
            a triplet that names a class outside the vocabulary (counted, never matched).
        ks: the K values.
    """
    tables = [informative.get(int(image_id)) for image_id in batch.image_ids]
    sizes = np.array([0 if t is None else len(t) for t in tables], dtype=np.int64)  # (B,)
    target_image = np.repeat(np.arange(batch.size, dtype=np.int64), sizes)  # (T,)
    present = [t for t in tables if t is not None and len(t)]
    targets = np.concatenate(present).astype(np.int64) if present else np.zeros((0, 3), np.int64)
    valid = np.flatnonzero((targets >= 0).all(axis=1))  # the others never match
    triplets, _ = batch.row_triplets(rows, predicates)  # (E, 4) image, sub, predicate, obj
    n_rows = len(triplets)
    codes = row_codes(
        [
            np.concatenate([triplets[:, 0], target_image[valid]]),
            np.concatenate([triplets[:, 1], targets[valid, 0]]),
            np.concatenate([triplets[:, 2], targets[valid, 1]]),
            np.concatenate([triplets[:, 3], targets[valid, 2]]),
        ]
    )
    entry_index, valid_index = join_equal(codes[:n_rows], codes[n_rows:])
    first = np.full(len(targets), NO_HIT, dtype=np.int64)  # (T,)
    first[valid] = first_hit_positions(positions, entry_index, valid_index, len(valid))
    return {
        "informative_count": sizes,
        "informative_hits": _per_image_counts(target_image, first, ks, batch.size),
    }
