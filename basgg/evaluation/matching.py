"""Pure functions for triplet ranking and matching (Scene-Graph-Benchmark conventions).

Everything here is vectorised over concatenated arrays; an integer *group* column (usually
the image) keeps images apart, so one call serves a whole batch of images.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from basgg.structures import Mode, SceneGraph

IOU_THRESHOLD = 0.5
NO_HIT = np.iinfo(np.int64).max  # first-hit position of a ground-truth row nobody hits
PAD_LIMIT = 1 << 24  # largest padded (groups x rows) matrix used for per-group thresholds
_LOW_32 = np.int64(0xFFFFFFFF)


def foreground_argmax(predicate_scores: np.ndarray) -> np.ndarray:
    """Best foreground predicate of each row, 1..P; ties go to the lowest index.

    Args:
        predicate_scores: (R, P + 1) scores, column 0 being background.
    """
    return np.argmax(predicate_scores[:, 1:], axis=1).astype(np.int64) + 1  # (R,)


def ranking_scores(
    predicate_scores: np.ndarray, object_scores: np.ndarray, relation_pairs: np.ndarray
) -> np.ndarray:
    """Float32 triplet score ``max_{c>=1} P[c] * sigma_sub * sigma_obj`` of each row. (R,)"""
    scores = np.asarray(predicate_scores, dtype=np.float32)  # (R, P + 1)
    sigma = np.asarray(object_scores, dtype=np.float32)  # (N,)
    pairs = np.asarray(relation_pairs, dtype=np.int64)  # (R, 2)
    if scores.shape[0] == 0:
        return np.zeros((0,), np.float32)
    return scores[:, 1:].max(axis=1) * sigma[pairs[:, 0]] * sigma[pairs[:, 1]]


def rank_relations(prediction: SceneGraph, *, mode: Mode | None = None) -> SceneGraph:
    """Reorder a prediction's relation rows best first, as the evaluator expects.

    The score is the float32 ``max_{c>=1} P[c] * sigma_sub * sigma_obj``; the sort is stable
    and descending, so tied rows keep the order they were emitted in. In predcls (or when
    the prediction has no ``object_scores``) sigma is 1.

    Args:
        prediction: a graph with ``predicate_scores``.
        mode: the task; ``Mode.PREDCLS`` forces sigma = 1.
    """
    import torch

    if prediction.predicate_scores is None:
        raise ValueError("rank_relations: the prediction has no predicate_scores")
    scores = prediction.predicate_scores.detach().cpu().numpy()
    if mode is Mode.PREDCLS or prediction.object_scores is None:
        sigma = np.ones(prediction.num_objects, np.float32)
    else:
        sigma = prediction.object_scores.detach().cpu().numpy()
    pairs = prediction.relation_pairs.cpu().numpy()
    order = np.argsort(-ranking_scores(scores, sigma, pairs), kind="stable")  # (R,)
    index = torch.from_numpy(order).to(prediction.relation_pairs.device)
    extra = {}
    if prediction.specific_predicates is not None:
        extra["specific_predicates"] = prediction.specific_predicates[index]
    return replace(
        prediction,
        relation_pairs=prediction.relation_pairs[index],
        predicates=prediction.predicates[index],
        predicate_scores=prediction.predicate_scores[index],
        **extra,
    )


def aligned_iou_plus_one(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of row i of ``a`` with row i of ``b``, "+1" widths, float32. (N, 4) x (N, 4) -> (N,)

    The arithmetic is the one of :func:`basgg.boxes.box_iou_plus_one`, in the same order, so
    the values are bit-identical to the pairwise version.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    one = np.float32(1)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)  # (N,)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)  # (N,)
    left_top = np.maximum(a[:, :2], b[:, :2])  # (N, 2)
    right_bottom = np.minimum(a[:, 2:], b[:, 2:])  # (N, 2)
    wh = np.clip(right_bottom - left_top + one, 0, None)  # (N, 2)
    inter = wh[:, 0] * wh[:, 1]
    return inter / (area_a + area_b - inter)


def row_codes(columns: list[np.ndarray]) -> np.ndarray:
    """One int64 code per row of non-negative integer columns; equal rows get equal codes."""
    code = np.zeros(len(columns[0]), dtype=np.int64)
    bound = 1
    for column in columns:
        column = np.asarray(column, dtype=np.int64)
        if column.size and column.min() < 0:
            raise ValueError("row_codes: columns must be non-negative")
        width = int(column.max()) + 1 if column.size else 1
        if bound * width >= 2**62:  # compress what we have so far to dense ranks
            _, code = np.unique(code, return_inverse=True)
            code = code.astype(np.int64).reshape(-1)
            bound = int(code.max()) + 1 if code.size else 1
        code = code * width + column
        bound *= width
    return code


def join_equal(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i, j) with ``left[i] == right[j]`` (many-to-many), i ascending.

    Args:
        left: (A,) int64 codes.
        right: (B,) int64 codes.

    Returns:
        ``(left_index, right_index)``, two (H,) int64 arrays.
    """
    order = np.argsort(right, kind="stable")  # (B,)
    sorted_right = right[order]
    low = np.searchsorted(sorted_right, left, side="left")  # (A,)
    high = np.searchsorted(sorted_right, left, side="right")  # (A,)
    counts = high - low
    left_index = np.repeat(np.arange(len(left), dtype=np.int64), counts)  # (H,)
    starts = np.repeat(low - (np.cumsum(counts) - counts), counts)
    right_index = order[starts + np.arange(len(left_index), dtype=np.int64)]
    return left_index, right_index


def triplet_hits(
    entry_triplets: np.ndarray,
    entry_boxes: np.ndarray,
    gt_triplets: np.ndarray,
    gt_boxes: np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Every (entry, GT row) hit: equal group and labels, IoU+1 >= threshold on both boxes.

    Matching is many-to-many and index-free: object indices are never compared.

    Args:
        entry_triplets: (E, 4) int64 ``(group, sub_label, predicate, obj_label)``.
        entry_boxes: (E, 8) float32 subject box then object box.
        gt_triplets: (G, 4) int64, same columns.
        gt_boxes: (G, 8) float32.
        iou_threshold: inclusive IoU threshold.

    Returns:
        ``(entry_index, gt_index)``, two (H,) int64 arrays.
    """
    codes = row_codes([np.concatenate([entry_triplets[:, i], gt_triplets[:, i]]) for i in range(4)])
    entry_index, gt_index = join_equal(codes[: len(entry_triplets)], codes[len(entry_triplets) :])
    if len(entry_index) == 0:
        return entry_index, gt_index
    sub_iou = aligned_iou_plus_one(entry_boxes[entry_index, :4], gt_boxes[gt_index, :4])
    obj_iou = aligned_iou_plus_one(entry_boxes[entry_index, 4:], gt_boxes[gt_index, 4:])
    hit = (sub_iou >= iou_threshold) & (obj_iou >= iou_threshold)
    return entry_index[hit], gt_index[hit]


def first_hit_positions(
    entry_positions: np.ndarray, entry_index: np.ndarray, gt_index: np.ndarray, num_gt: int
) -> np.ndarray:
    """For each GT row, the smallest position of an entry hitting it (``NO_HIT`` if none).

    GT row j is in H_K exactly when ``first_hit_positions(...)[j] < K``.

    Args:
        entry_positions: (E,) int64 rank of each entry within its image's list.
        entry_index: (H,) hit entries, from :func:`triplet_hits`.
        gt_index: (H,) hit GT rows.
        num_gt: number of GT rows G.
    """
    first = np.full(num_gt, NO_HIT, dtype=np.int64)  # (G,)
    np.minimum.at(first, gt_index, entry_positions[entry_index])
    return first


def positions_in_group(groups: np.ndarray) -> np.ndarray:
    """Rank of each element among the elements of its group, for a sorted ``groups``. (E,)"""
    n = len(groups)
    if n == 0:
        return np.zeros((0,), np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])  # first index of each run
    run_lengths = np.diff(np.r_[starts, n])
    return np.arange(n, dtype=np.int64) - np.repeat(starts, run_lengths)


def monotonic_float_keys(values: np.ndarray) -> np.ndarray:
    """int64 keys ordering float32 values like the floats themselves (-0.0 equals 0.0). (E,)"""
    values = np.asarray(values, dtype=np.float32) + np.float32(0)  # turns -0.0 into 0.0
    bits = values.view(np.int32).astype(np.int64)
    return np.where(bits < 0, bits ^ np.int64(0x7FFFFFFF), bits)


def top_entries_keys(values: np.ndarray, flat_index: np.ndarray) -> np.ndarray:
    """int64 sort keys: larger value first, then lower flat index first (a stable order)."""
    return (monotonic_float_keys(values) << np.int64(32)) | (_LOW_32 - flat_index)


def flat_index_from_key(keys: np.ndarray) -> np.ndarray:
    """Inverse of the index part of :func:`top_entries_keys`. (E,)"""
    return _LOW_32 - (keys & _LOW_32)


def kth_largest_per_group(
    values: np.ndarray, groups: np.ndarray, positions: np.ndarray, num_groups: int, k: int
) -> np.ndarray:
    """(num_groups,) k-th largest value of each group; -inf for groups with fewer than k.

    Args:
        values: (E,) float32.
        groups: (E,) sorted group of each value.
        positions: (E,) rank of each value within its group (0, 1, ...).
        num_groups: number of groups.
        k: which largest value.
    """
    sizes = np.bincount(groups, minlength=num_groups)
    out = np.full(num_groups, -np.inf, dtype=np.float32)
    full = sizes >= k
    if not full.any():
        return out
    width = int(sizes.max())
    if num_groups * width <= PAD_LIMIT:
        padded = np.full((num_groups, width), -np.inf, dtype=np.float32)  # (groups, width)
        padded[groups, positions] = values
        kth = np.partition(padded, width - k, axis=1)[:, width - k]
        out[full] = kth[full]
        return out
    order = np.lexsort((-values, groups))
    ranks = positions_in_group(groups[order])
    at_k = order[ranks == k - 1]
    out[groups[at_k]] = values[at_k]
    return out


def top_entries_per_image(
    foreground_scores: np.ndarray,
    pair_sigma: np.ndarray,
    row_image: np.ndarray,
    row_position: np.ndarray,
    num_images: int,
    top: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top ``top`` (row, predicate) entries of each image by ``sigma_s * sigma_o * P[c]``.

    Order: score descending, ties by the row-major flat index ``row * P + c - 1`` ascending
    (a stable sort). Only rows whose best entry reaches the image's ``top``-th best row score
    can contribute (``top`` rows each hold an entry at least that large), and only their
    entries at least that large, so most of the (R, P) matrix is never expanded.

    Args:
        foreground_scores: (Rt, P) float32 ``P[:, 1:]`` of the rows of every image.
        pair_sigma: (Rt,) float32 ``sigma_sub * sigma_obj`` of each row.
        row_image: (Rt,) sorted image of each row.
        row_position: (Rt,) rank of each row within its image.
        num_images: number of images.
        top: entries kept per image.

    Returns:
        ``(rows, predicates, positions)``, each (E,), images in order, predicates 1..P.
    """
    num_foreground = foreground_scores.shape[1]
    row_best = pair_sigma * foreground_scores.max(axis=1, initial=-np.inf)  # (Rt,)
    threshold = kth_largest_per_group(row_best, row_image, row_position, num_images, top)
    candidates = np.flatnonzero(row_best >= threshold[row_image])
    values = pair_sigma[candidates, None] * foreground_scores[candidates]  # (C, P) float32
    keep_row, keep_column = np.nonzero(values >= threshold[row_image[candidates], None])
    rows = candidates[keep_row]
    flat_index = row_position[rows] * num_foreground + keep_column
    keys = top_entries_keys(values[keep_row, keep_column], flat_index)
    order = np.lexsort((~keys, row_image[rows]))  # image, then key descending
    rows, columns = rows[order], keep_column[order]
    positions = positions_in_group(row_image[rows])
    kept = positions < top
    return rows[kept], columns[kept].astype(np.int64) + 1, positions[kept]
