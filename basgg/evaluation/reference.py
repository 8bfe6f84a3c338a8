"""A plain per-image, per-triplet implementation of the evaluation protocol: the test oracle.

Written directly from the protocol text (shared docs, ``evaluation-protocol.md``) with Python
loops and scalar float32 arithmetic, and independent of the vectorised code in
:mod:`basgg.evaluation.metrics`. It is slow; use it on small inputs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from basgg.structures import Mode, SceneGraph

ONE = np.float32(1)


@dataclass
class ReferenceResult:
    """Metrics (same keys as :class:`EvaluationResult`), per-predicate recall, confusion."""

    metrics: dict[str, float]
    per_predicate_recall: dict[int, list[float]]
    confusion: np.ndarray | None


def iou_plus_one(a: np.ndarray, b: np.ndarray) -> np.float32:
    """IoU of two xyxy boxes with inclusive-pixel widths, computed in float32 scalars."""
    a = [np.float32(v) for v in a]
    b = [np.float32(v) for v in b]
    area_a = (a[2] - a[0] + ONE) * (a[3] - a[1] + ONE)
    area_b = (b[2] - b[0] + ONE) * (b[3] - b[1] + ONE)
    inter_w = max(np.float32(0), min(a[2], b[2]) - max(a[0], b[0]) + ONE)
    inter_h = max(np.float32(0), min(a[3], b[3]) - max(a[1], b[1]) + ONE)
    inter = inter_w * inter_h
    return inter / (area_a + area_b - inter)


def best_foreground(row: np.ndarray) -> int:
    """argmax over columns 1.. of one score row; the first (lowest) index wins ties."""
    best = 1
    for c in range(2, len(row)):
        if row[c] > row[best]:
            best = c
    return best


def _hits(triplet, gt, iou_threshold: float = 0.5) -> bool:
    """Same three labels and IoU+1 >= 0.5 on both boxes (object indices never compared)."""
    (label_s, predicate, label_o, box_s, box_o), (gt_s, gt_p, gt_o, gt_box_s, gt_box_o) = (
        triplet,
        gt,
    )
    if (label_s, predicate, label_o) != (gt_s, gt_p, gt_o):
        return False
    return bool(iou_plus_one(box_s, gt_box_s) >= iou_threshold) and bool(
        iou_plus_one(box_o, gt_box_o) >= iou_threshold
    )


def _hit_set(triplets: list, gts: list, k: int) -> set[int]:
    """Indices of GT rows hit by at least one of the first k triplets."""
    return {j for j, gt in enumerate(gts) if any(_hits(t, gt) for t in triplets[:k])}


class _Tally:
    """The per-image lists of the protocol, filled image by image."""

    def __init__(self, ks: Sequence[int], num_predicates: int) -> None:
        self.recall = {k: [] for k in ks}
        self.ng_recall = {k: [] for k in ks}
        self.zero_recall = {k: [] for k in ks}
        self.ng_zero_recall = {k: [] for k in ks}
        self.collect = {k: [[] for _ in range(num_predicates)] for k in ks}
        self.ng_collect = {k: [[] for _ in range(num_predicates)] for k in ks}
        self.accuracy_hits = {k: 0 for k in ks}
        self.accuracy_count = 0
        self.specific_total = 0
        self.specific_hits = 0
        self.any_specific = False
        self.pair_recall = {k: [] for k in ks}
        self.information = {k: [] for k in ks}


def _scored_objects(gt: SceneGraph, prediction: SceneGraph, mode: Mode):
    """Boxes, labels and sigma the rows are read with (the predcls override)."""
    if mode is Mode.PREDCLS:
        return gt.boxes.numpy(), gt.labels.tolist(), [np.float64(1.0)] * gt.num_objects
    sigma = [np.float32(v) for v in prediction.object_scores.numpy()]
    return prediction.boxes.numpy(), prediction.labels.tolist(), sigma


def _no_graph_constraint_order(pairs: list, scores: np.ndarray, sigma: list, mode: Mode):
    """(row, predicate) of the top 100 entries of sigma_s * sigma_o * P[c], c >= 1.

    float64 in predcls (sigma = 1.0 as float64), float32 otherwise; ties by the row-major
    flat index ``r * P + c - 1`` (a stable sort).
    """
    num_foreground = scores.shape[1] - 1
    entries = []
    for r, (s, o) in enumerate(pairs):
        pair_sigma = sigma[s] * sigma[o]
        for c in range(1, num_foreground + 1):
            probability = np.float64(scores[r, c]) if mode is Mode.PREDCLS else scores[r, c]
            entries.append((pair_sigma * probability, r * num_foreground + c - 1, r, c))
    entries.sort(key=lambda entry: (-entry[0], entry[1]))
    return [(r, c) for _, _, r, c in entries[:100]]


def _score_image(
    tally: _Tally,
    gt: SceneGraph,
    prediction: SceneGraph,
    mode: Mode,
    ks: Sequence[int],
    zero_shot: set | None,
    information: np.ndarray | None = None,
) -> None:
    """Append one scored image (M > 0 and R > 0) to the tally."""
    gt_rels = _relations(gt)
    pairs = [tuple(pair) for pair in prediction.relation_pairs.tolist()]
    scores = prediction.predicate_scores.numpy().astype(np.float32)
    gt_boxes, gt_labels = gt.boxes.numpy(), gt.labels.tolist()
    boxes, labels, sigma = _scored_objects(gt, prediction, mode)
    gts = [(gt_labels[s], p, gt_labels[o], gt_boxes[s], gt_boxes[o]) for s, o, p in gt_rels]
    m = len(gts)
    ranked = [
        (labels[s], best_foreground(scores[r]), labels[o], boxes[s], boxes[o])
        for r, (s, o) in enumerate(pairs)
    ]
    ng_ranked = [
        (labels[pairs[r][0]], c, labels[pairs[r][1]], boxes[pairs[r][0]], boxes[pairs[r][1]])
        for r, c in _no_graph_constraint_order(pairs, scores, sigma, mode)
    ]
    gt_pair_set = {(s, o) for s, o, _ in gt_rels}
    on_gt_pairs = [t for t, pair in zip(ranked, pairs, strict=True) if pair in gt_pair_set]
    zero_rows = []
    if zero_shot is not None:
        zero_rows = [
            j for j, (s, o, p) in enumerate(gt_rels) if (gt_labels[s], gt_labels[o], p) in zero_shot
        ]
    tally.accuracy_count += m
    for k in ks:
        for hits_k, recalls, zeros, lists in (
            (_hit_set(ranked, gts, k), tally.recall, tally.zero_recall, tally.collect),
            (_hit_set(ng_ranked, gts, k), tally.ng_recall, tally.ng_zero_recall, tally.ng_collect),
        ):
            recalls[k].append(len(hits_k) / m)
            if zero_rows:
                zeros[k].append(sum(j in hits_k for j in zero_rows) / len(zero_rows))
            for p in sorted({p for _, _, p in gt_rels}):
                rows_p = [j for j, (_, _, q) in enumerate(gt_rels) if q == p]
                lists[k][p].append(sum(j in hits_k for j in rows_p) / len(rows_p))
        tally.accuracy_hits[k] += len(_hit_set(on_gt_pairs, gts, k))
        # PairR: distinct GT index pairs located (both boxes matched) by the first k rows
        distinct = {(s, o): j for j, (s, o, _) in reversed(list(enumerate(gt_rels)))}
        located = [
            j
            for j in distinct.values()
            if any(_hits(_any_predicate(t, gts[j]), gts[j]) for t in ranked[:k])
        ]
        tally.pair_recall[k].append(len(located) / len(distinct))
        if information is not None:
            tally.information[k].append(sum(float(information[t[1]]) for t in ranked[:k]))
    if gt.specific_predicates is not None:
        specific = gt.specific_predicates.tolist()
        for j, (s, o, p) in enumerate(gt_rels):
            if specific[j] == p:
                continue
            tally.specific_total += 1
            row = _informative_row(mode, pairs, (s, o), gts[j], labels, boxes)
            if row is not None and best_foreground(scores[row]) == specific[j]:
                tally.specific_hits += 1


def _relations(graph: SceneGraph) -> list[tuple[int, int, int]]:
    pairs, predicates = graph.relation_pairs.tolist(), graph.predicates.tolist()
    return [(s, o, p) for (s, o), p in zip(pairs, predicates, strict=True)]


def _image_confusion(gt: SceneGraph, prediction: SceneGraph, confusion: np.ndarray) -> None:
    """Add C[p_j, argmax] for every (row, GT row) on the same index pair (no K, no IoU)."""
    scores = prediction.predicate_scores.numpy()
    for r, (s, o) in enumerate(prediction.relation_pairs.tolist()):
        for gs, go, gp in _relations(gt):
            if (s, o) == (gs, go):
                confusion[gp, best_foreground(scores[r])] += 1


def reference_evaluate(
    ground_truths: Sequence[SceneGraph],
    predictions: Sequence[SceneGraph],
    *,
    mode: Mode,
    num_predicates: int,
    ks: Sequence[int] = (20, 50, 100),
    zero_shot_triplets: np.ndarray | None = None,
    predicate_groups: dict[str, list[int]] | None = None,
    predicate_information: np.ndarray | None = None,
) -> ReferenceResult:
    """Score predictions image by image, exactly as the protocol text describes."""
    mode = Mode(mode)
    zero_shot = None
    if zero_shot_triplets is not None:
        zero_shot = {tuple(int(v) for v in row) for row in np.asarray(zero_shot_triplets)}
    tally = _Tally(ks, num_predicates)
    confusion = np.zeros((num_predicates, num_predicates), dtype=np.int64)
    for gt, prediction in zip(ground_truths, predictions, strict=True):
        tally.any_specific |= gt.specific_predicates is not None
        if mode is Mode.PREDCLS:
            _image_confusion(gt, prediction, confusion)
        if gt.num_relations == 0 or prediction.num_relations == 0:
            continue  # images with M = 0 or R = 0 are skipped
        _score_image(tally, gt, prediction, mode, ks, zero_shot, predicate_information)
    metrics, per_predicate = _final_metrics(
        tally, mode, ks, num_predicates, zero_shot is not None, predicate_groups
    )
    for k in ks:
        metrics[f"PairR@{k}"] = _mean(tally.pair_recall[k])
        if predicate_information is not None:
            metrics[f"RI@{k}"] = _mean(tally.information[k])
    return ReferenceResult(
        metrics=metrics,
        per_predicate_recall=per_predicate,
        confusion=confusion if mode is Mode.PREDCLS else None,
    )


def _final_metrics(
    tally: _Tally,
    mode: Mode,
    ks: Sequence[int],
    num_predicates: int,
    zero_shot: bool,
    predicate_groups: dict[str, list[int]] | None,
):
    num_foreground = num_predicates - 1
    metrics: dict[str, float] = {}
    per_predicate: dict[int, list[float]] = {}
    for k in ks:
        metrics[f"R@{k}"] = _mean(tally.recall[k])
        metrics[f"ngR@{k}"] = _mean(tally.ng_recall[k])
        per_predicate[k] = [0.0] + [
            _mean(tally.collect[k][p], 0.0) for p in range(1, num_predicates)
        ]
        ng_per_predicate = [0.0] + [
            _mean(tally.ng_collect[k][p], 0.0) for p in range(1, num_predicates)
        ]
        metrics[f"mR@{k}"] = sum(per_predicate[k][1:]) / num_foreground
        metrics[f"ngmR@{k}"] = sum(ng_per_predicate[1:]) / num_foreground
        if zero_shot:
            metrics[f"zR@{k}"] = _mean(tally.zero_recall[k])
            metrics[f"ngzR@{k}"] = _mean(tally.ng_zero_recall[k])
        if mode is not Mode.SGDET:
            count = tally.accuracy_count
            metrics[f"A@{k}"] = tally.accuracy_hits[k] / count if count else float("nan")
        r, mr = metrics[f"R@{k}"], metrics[f"mR@{k}"]
        metrics[f"F@{k}"] = 0.0 if r + mr == 0 else 2 * r * mr / (r + mr)
        for name, members in (predicate_groups or {}).items():
            metrics[f"mR@{k}/{name}"] = _mean([per_predicate[k][p] for p in members])
            metrics[f"ngmR@{k}/{name}"] = _mean([ng_per_predicate[p] for p in members])
    if tally.any_specific:
        total = tally.specific_total
        metrics["specific_predicate_recall"] = (
            tally.specific_hits / total if total else float("nan")
        )
    return metrics, per_predicate


def _informative_row(mode: Mode, pairs: list, gt_pair: tuple, gt: tuple, labels, boxes):
    """The highest-ranked row that locates the GT relation (same index pair, or in sgdet
    the same labels with IoU+1 >= 0.5 on both boxes); None if no row does."""
    for r, (s, o) in enumerate(pairs):
        if mode is not Mode.SGDET:
            if (s, o) == gt_pair:
                return r
        elif (
            labels[s] == gt[0]
            and labels[o] == gt[2]
            and iou_plus_one(boxes[s], gt[3]) >= 0.5
            and iou_plus_one(boxes[o], gt[4]) >= 0.5
        ):
            return r
    return None


def _any_predicate(triplet: tuple, gt: tuple) -> tuple:
    """``triplet`` with the GT row's predicate: PairR ignores the predicate."""
    return (triplet[0], gt[1], *triplet[2:])


def _mean(values: list[float], empty: float = float("nan")) -> float:
    return sum(values) / len(values) if values else empty
