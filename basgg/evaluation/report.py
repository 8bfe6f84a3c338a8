"""Reports of an evaluation: the printed table, metrics.json and PNG plots (matplotlib Agg).

matplotlib is imported when a plot is drawn, not with this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from basgg.evaluation.metrics import SGEvaluator
from basgg.evaluation.predictions import open_predictions, validate_predictions
from basgg.evaluation.results import EvaluationResult
from basgg.packed import PackedGraphs
from basgg.structures import Mode, SceneGraph

TABLE_ROWS = ("R", "ngR", "mR", "ngmR", "zR", "ngzR", "A", "F")
GROUP_COLORS = {"head": "#c0392b", "body": "#2980b9", "tail": "#27ae60"}


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cell(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def format_table(result: EvaluationResult) -> str:
    """The metrics as papers print them: one row per metric, one column per K, x100."""
    counts = result.counts
    lines = [
        f"mode {result.mode.value}: {counts['images']} images, {counts['images_scored']} scored, "
        f"{counts['images_skipped']} skipped (M = 0 or R = 0)"
    ]
    header = f"{'':<16}" + "".join(f"{'@' + str(k):>9}" for k in result.ks)
    lines.append(header)
    rows = [(name, name) for name in TABLE_ROWS]
    groups = list(result.predicate_groups or {})
    for prefix in ("mR", "ngmR"):
        rows += [(f"{prefix} {group}", f"{prefix}@{{k}}/{group}") for group in groups]
    for label, pattern in rows:
        keys = [pattern.format(k=k) if "{k}" in pattern else f"{pattern}@{k}" for k in result.ks]
        if not any(key in result.metrics for key in keys):
            continue
        cells = "".join(f"{_cell(result.metrics.get(key)):>9}" for key in keys)
        lines.append(f"{label:<16}{cells}")
    if result.predicate_groups:
        sizes = " / ".join(f"{len(v)} {k}" for k, v in result.predicate_groups.items())
        lines.append(f"predicate groups: {sizes}")
    if "zR@" + str(result.ks[0]) in result.metrics:
        lines.append(f"zero-shot images: {counts['zero_shot_images']}")
    if "informative_recall" in result.metrics:
        lines.append(f"informative recall: {_cell(result.metrics['informative_recall'])}")
    return "\n".join(lines)


def plot_per_predicate_recall(
    result: EvaluationResult, path: Path, predicate_order: Sequence[int] | None = None
) -> None:
    """Bars of R_p@K for every K (largest K behind), predicates in ``predicate_order``."""
    num_predicates = len(next(iter(result.per_predicate_recall.values())))
    order = list(predicate_order) if predicate_order is not None else range(1, num_predicates)
    names = result.predicate_names or tuple(str(i) for i in range(num_predicates))
    group_of = {p: g for g, members in (result.predicate_groups or {}).items() for p in members}
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(8.0, 0.28 * len(order)), 4.5))
    x = np.arange(len(order))
    for shade, k in enumerate(sorted(result.ks, reverse=True)):
        values = result.per_predicate_recall[k][list(order)]
        alpha = 0.35 + 0.65 * (shade + 1) / len(result.ks)
        axis.bar(x, 100 * values, width=0.8, color="#34495e", alpha=alpha, label=f"R@{k}")
    axis.set_xticks(x)
    axis.set_xticklabels([names[p] for p in order], rotation=90, fontsize=7)
    for label, p in zip(axis.get_xticklabels(), order, strict=True):
        label.set_color(GROUP_COLORS.get(group_of.get(p, ""), "black"))
    k_max = max(result.ks)
    axis.set_ylabel("per-predicate recall (%)")
    title = f"{result.mode.value}: mR@{k_max} = {_cell(result.metrics[f'mR@{k_max}'])}"
    if predicate_order is not None:
        title += ", predicates by training frequency"
    if group_of:
        title += " (names: head red, body blue, tail green)"
    axis.set_title(title)
    axis.set_xlim(-0.6, len(order) - 0.4)
    axis.set_ylim(0, 100)
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_confusion(
    confusion: np.ndarray,
    path: Path,
    names: Sequence[str] | None = None,
    predicate_order: Sequence[int] | None = None,
    title: str = "predcls predicate confusion (row-normalised)",
) -> None:
    """Heatmap of the row-normalised predcls confusion matrix (row = ground truth)."""
    order = list(predicate_order) if predicate_order is not None else range(1, len(confusion))
    counts = confusion[np.ix_(order, order)].astype(np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    labels = [names[p] if names is not None else str(p) for p in order]
    size = max(6.0, 0.2 * len(order))
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(rates, cmap="viridis", vmin=0, vmax=1)
    axis.set_xticks(range(len(order)))
    axis.set_yticks(range(len(order)))
    axis.set_xticklabels(labels, rotation=90, fontsize=6)
    axis.set_yticklabels(labels, fontsize=6)
    axis.set_xlabel("predicted predicate")
    axis.set_ylabel("ground-truth predicate")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(
    result: EvaluationResult,
    out_dir: str | Path,
    *,
    predicate_order: Sequence[int] | None = None,
    extra: dict | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write metrics.json, per_image.npz, the per-predicate recall PNG and, in predcls, the
    confusion matrix (.npy counts and PNG heatmap); ``plot=False`` leaves out the PNGs.
    Returns the written paths by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out_dir / "metrics.json", "per_image": out_dir / "per_image.npz"}
    content = result.to_dict()
    content.update(extra or {})
    paths["metrics"].write_text(json.dumps(content, indent=1) + "\n")
    np.savez(paths["per_image"], **result.per_image)  # small; compressing costs more than it saves
    if plot:
        paths["per_predicate_recall"] = out_dir / "per_predicate_recall.png"
        plot_per_predicate_recall(result, paths["per_predicate_recall"], predicate_order)
    if result.confusion is not None:
        paths["confusion"] = out_dir / "confusion_matrix.npy"
        np.save(paths["confusion"], result.confusion)
    if result.confusion is not None and plot:
        paths["confusion_plot"] = out_dir / "confusion_matrix.png"
        plot_confusion(
            result.confusion, paths["confusion_plot"], result.predicate_names, predicate_order
        )
    return paths


def evaluate_file(
    predictions_path: str | Path,
    ground_truths: Sequence[SceneGraph] | PackedGraphs,
    *,
    predicate_names: Sequence[str],
    ks: Sequence[int] = (20, 50, 100),
    zero_shot_triplets: np.ndarray | None = None,
    predicate_groups: dict[str, list[int]] | None = None,
    mode: Mode | None = None,
    out_dir: str | Path | None = None,
    predicate_order: Sequence[int] | None = None,
    extra: dict | None = None,
    plot: bool = True,
) -> EvaluationResult:
    """Read a predictions file, check it against ``ground_truths`` and score it.

    The score matrix is read one batch of images at a time, so memory stays bounded.

    Args:
        predictions_path: the HDF5 predictions file.
        ground_truths: the dataset split's evaluation targets, in file order.
        predicate_names: the dataset's predicate names, background at 0.
        ks: the K values.
        zero_shot_triplets: (T, 3) rows (sub_class, obj_class, predicate), or None.
        predicate_groups: head / body / tail indices for part recalls.
        mode: the task to score; default the file's own mode.
        out_dir: when given, write the report files there (:func:`write_report`).
        predicate_order: predicate indices for the plots, most frequent first.
        extra: more entries for metrics.json (e.g. where the zero-shot list came from).
        plot: draw the PNG plots in ``out_dir``.
    """
    if not isinstance(ground_truths, PackedGraphs):
        ground_truths = PackedGraphs.from_graphs(ground_truths)
    with open_predictions(predictions_path) as predictions:
        validate_predictions(
            predictions,
            ground_truths,
            num_predicates=len(predicate_names),
            predicate_names=predicate_names,
        )
        evaluator = SGEvaluator(
            mode=mode or predictions.mode,
            num_predicates=len(predicate_names),
            ks=ks,
            zero_shot_triplets=zero_shot_triplets,
            predicate_groups=predicate_groups,
            predicate_names=predicate_names,
        )
        evaluator.update_packed(ground_truths, predictions.packed)
        split = predictions.split
    result = evaluator.compute()
    if out_dir is not None:
        info = {"predictions": str(predictions_path), "split": split, **(extra or {})}
        write_report(result, out_dir, predicate_order=predicate_order, extra=info, plot=plot)
    return result
