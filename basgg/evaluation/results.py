"""Evaluation results and their aggregation from per-image counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from basgg.structures import Mode

# Per-image arrays kept by the evaluator (E = images scored, Q = (image, predicate) pairs
# present, nK = number of K values). Everything else is re-aggregated from these.
PER_IMAGE_FIELDS: dict[str, str] = {
    "stream_index": "(E,) position of the image in the evaluated stream",
    "image_id": "(E,) dataset image id",
    "num_gt": "(E,) M, ground-truth relation rows with duplicates",
    "hits": "(E, nK) |H_K|, rows hit by the first K ranked rows",
    "ng_hits": "(E, nK) |H^ng_K|, rows hit by the first K no-graph-constraint entries",
    "zero_shot_count": "(E,) |Z|, zero-shot ground-truth rows",
    "zero_shot_hits": "(E, nK) |Z & H_K|",
    "ng_zero_shot_hits": "(E, nK) |Z & H^ng_K|",
    "accuracy_hits": "(E, nK) rows hit by the first K rows on ground-truth index pairs",
    "specific_count": "(E,) rows whose specific predicate differs from the annotated one",
    "specific_hits": "(E,) of those, rows whose matched prediction says the specific one",
    "pair_count": "(E,) distinct ground-truth (subject, object) index pairs",
    "pair_hits": "(E, nK) of those, pairs located by the first K rows, any predicate",
    "information": "(E, nK) float, summed information of the first K rows' predicates",
    "informative_count": "(E,) informative triplets given for the image (Neau et al.)",
    "informative_hits": "(E, nK) of those, matched by the first K rows",
    "predicate_image": "(Q,) index into the (E,) arrays",
    "predicate": "(Q,) predicate class",
    "predicate_count": "(Q,) n_p, rows of that predicate in that image",
    "predicate_hits": "(Q, nK) h_p under the graph constraint",
    "ng_predicate_hits": "(Q, nK) h_p without the graph constraint",
}


@dataclass
class EvaluationResult:
    """Metrics of one evaluation run.

    Attributes:
        mode: the task scored.
        ks: the K values.
        metrics: fractions (not x100) keyed "R@50", "ngR@50", "mR@50", "ngmR@50", "zR@50",
            "ngzR@50", "A@50", "F@50", "mR@50/head", "ngmR@50/tail", "PairR@50", "IR@50"
            (InformativeRecall), "specific_predicate_recall"; and "RI@50", the mean summed
            information in nats (not a fraction). Undefined values (no image to average) are
            NaN.
        per_predicate_recall: K -> (P + 1,) R_p@K (entry 0, background, is 0).
        per_predicate_ng_recall: K -> (P + 1,) the same without graph constraint.
        per_image: the per-image counts (see ``PER_IMAGE_FIELDS``).
        counts: "images", "images_scored", "images_skipped", "zero_shot_images".
        confusion: (P + 1, P + 1) int64 predicate confusion counts (predcls only).
        predicate_names: names with background at 0, when known.
        predicate_groups: head / body / tail predicate indices, when given.
    """

    mode: Mode
    ks: tuple[int, ...]
    metrics: dict[str, float]
    per_predicate_recall: dict[int, np.ndarray]
    per_predicate_ng_recall: dict[int, np.ndarray]
    per_image: dict[str, np.ndarray]
    counts: dict[str, int]
    confusion: np.ndarray | None = None
    predicate_names: tuple[str, ...] | None = None
    predicate_groups: dict[str, list[int]] | None = field(default=None)

    def to_dict(self, *, include_per_image: bool = False) -> dict:
        """A JSON-ready dict; NaN becomes ``None``."""
        out: dict = {
            "mode": self.mode.value,
            "ks": list(self.ks),
            "metrics": {key: _json_float(value) for key, value in self.metrics.items()},
            "counts": dict(self.counts),
            "per_predicate_recall": _per_predicate(self.per_predicate_recall, self.predicate_names),
            "per_predicate_ng_recall": _per_predicate(
                self.per_predicate_ng_recall, self.predicate_names
            ),
        }
        if self.predicate_groups is not None:
            out["predicate_groups"] = {k: list(v) for k, v in self.predicate_groups.items()}
        if self.confusion is not None:
            out["confusion"] = self.confusion.tolist()
        if include_per_image:
            out["per_image"] = {key: value.tolist() for key, value in self.per_image.items()}
        return out


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _per_predicate(recalls: dict[int, np.ndarray], names: Sequence[str] | None) -> dict:
    out = {}
    for k, values in recalls.items():
        keys = names if names is not None else [str(i) for i in range(len(values))]
        out[str(k)] = {str(name): float(v) for name, v in list(zip(keys, values, strict=True))[1:]}
    return out


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def harmonic_mean(recall: float, mean_recall: float) -> float:
    """F@K = 2 R mR / (R + mR), 0 when both are 0 (NaN propagates)."""
    if recall + mean_recall == 0:
        return 0.0
    return 2 * recall * mean_recall / (recall + mean_recall)


def per_predicate_recall(
    per_image: dict[str, np.ndarray], hits_key: str, num_predicates: int, k_index: int
) -> np.ndarray:
    """(P + 1,) R_p: mean over images containing p of h_p / n_p; 0 when p never occurs."""
    predicate = per_image["predicate"]
    fraction = per_image[hits_key][:, k_index] / per_image["predicate_count"]  # (Q,)
    totals = np.bincount(predicate, weights=fraction, minlength=num_predicates)
    images = np.bincount(predicate, minlength=num_predicates)
    recall = np.zeros(num_predicates, dtype=np.float64)
    present = images > 0
    recall[present] = totals[present] / images[present]
    recall[0] = 0.0
    return recall


def aggregate(
    per_image: dict[str, np.ndarray],
    *,
    mode: Mode,
    ks: Sequence[int],
    num_predicates: int,
    zero_shot: bool,
    specific: bool,
    predicate_groups: dict[str, list[int]] | None = None,
    information: bool = False,
    informative: bool = False,
) -> tuple[dict[str, float], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Final metrics from per-image counts (doc section 5).

    Args:
        per_image: arrays as in ``PER_IMAGE_FIELDS``.
        mode: the task (A@K is left out in sgdet).
        ks: the K values, in the order of the (.., nK) columns.
        num_predicates: P + 1, background included; mR divides by P.
        zero_shot: whether a zero-shot list was given (adds zR and ngzR).
        specific: whether the ground truth carried specific predicates.
        predicate_groups: head / body / tail indices, for part recalls.
        information: whether a predicate information table was given (adds RI).
        informative: whether informative triplets were given (adds IR).

    Returns:
        ``(metrics, per_predicate_recall, per_predicate_ng_recall)``.
    """
    metrics: dict[str, float] = {}
    recall_by_k: dict[int, np.ndarray] = {}
    ng_recall_by_k: dict[int, np.ndarray] = {}
    num_gt = per_image["num_gt"].astype(np.float64)
    has_zero_shot = per_image["zero_shot_count"] > 0
    foreground = num_predicates - 1
    scored = len(num_gt) > 0  # no scored image: every recall is undefined ("-"), not 0
    for column, k in enumerate(ks):
        recall = _mean(per_image["hits"][:, column] / num_gt)
        ng_recall = _mean(per_image["ng_hits"][:, column] / num_gt)
        recall_by_k[k] = per_predicate_recall(per_image, "predicate_hits", num_predicates, column)
        ng_recall_by_k[k] = per_predicate_recall(
            per_image, "ng_predicate_hits", num_predicates, column
        )
        mean_recall = float(recall_by_k[k][1:].sum()) / foreground if scored else math.nan
        ng_mean_recall = float(ng_recall_by_k[k][1:].sum()) / foreground if scored else math.nan
        metrics[f"R@{k}"] = recall
        metrics[f"ngR@{k}"] = ng_recall
        metrics[f"mR@{k}"] = mean_recall
        metrics[f"ngmR@{k}"] = ng_mean_recall
        if zero_shot:
            count = per_image["zero_shot_count"][has_zero_shot]
            metrics[f"zR@{k}"] = _mean(per_image["zero_shot_hits"][has_zero_shot, column] / count)
            metrics[f"ngzR@{k}"] = _mean(
                per_image["ng_zero_shot_hits"][has_zero_shot, column] / count
            )
        if mode is not Mode.SGDET:
            total = num_gt.sum()
            hits = per_image["accuracy_hits"][:, column].sum()
            metrics[f"A@{k}"] = float(hits / total) if total else math.nan
        metrics[f"F@{k}"] = harmonic_mean(recall, mean_recall)
        metrics[f"PairR@{k}"] = _mean(per_image["pair_hits"][:, column] / per_image["pair_count"])
        if information:
            metrics[f"RI@{k}"] = _mean(per_image["information"][:, column])
        if informative:
            given = per_image["informative_count"] > 0
            metrics[f"IR@{k}"] = _mean(
                per_image["informative_hits"][given, column] / per_image["informative_count"][given]
            )
        for name, members in (predicate_groups or {}).items():
            members = np.asarray(members, dtype=np.int64)
            metrics[f"mR@{k}/{name}"] = _mean(recall_by_k[k][members]) if scored else math.nan
            metrics[f"ngmR@{k}/{name}"] = _mean(ng_recall_by_k[k][members]) if scored else math.nan
    if specific:
        total = per_image["specific_count"].sum()
        hits = per_image["specific_hits"].sum()
        metrics["specific_predicate_recall"] = float(hits / total) if total else math.nan
    return metrics, recall_by_k, ng_recall_by_k
