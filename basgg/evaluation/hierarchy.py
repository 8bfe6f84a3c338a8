"""The predicate hierarchy BA-SGG reads off a stage-1 confusion matrix.

A *general* predicate absorbs an *informative* one when the stage-1 model, shown a pair whose
ground truth is the informative predicate, predicts the general one for a large share of such
pairs ("parked on" -> "on"), and the general predicate is the more frequent of the two (its
ground-truth row holds more relations). Each informative predicate is attached to the general
predicate that absorbs the largest share of it, which makes the hierarchy a forest of depth
one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from basgg import atomic  # noqa: E402

DEFAULT_MIN_SHARE = 0.15


def predicate_hierarchy(
    confusion: np.ndarray,
    predicate_names: Sequence[str],
    *,
    min_share: float = DEFAULT_MIN_SHARE,
) -> dict[str, list[dict[str, float | str]]]:
    """General predicates and the informative ones they absorb.

    Args:
        confusion: (P + 1, P + 1) counts, row = ground truth, column = stage-1 prediction
            (``basgg confmat``'s matrix); row and column 0 (background) are ignored.
        predicate_names: names with background at index 0.
        min_share: smallest share of an informative predicate's pairs predicted as the
            general one for the link to count; the general predicate must also have more
            ground-truth relations than the informative one.

    Returns:
        ``{general: [{"predicate": name, "share": s}, ...]}`` ordered by the general
        predicate's total absorbed share, children by share (both descending).
    """
    counts = np.asarray(confusion, dtype=np.float64)[1:, 1:]  # (P, P)
    if counts.shape != (len(predicate_names) - 1,) * 2:
        raise ValueError(
            f"confusion matrix of shape {np.shape(confusion)} does not fit "
            f"{len(predicate_names)} predicate names"
        )
    totals = counts.sum(axis=1)  # (P,) ground-truth relations of each predicate
    shares = counts / np.maximum(totals[:, None], 1.0)  # (P, P) row-stochastic
    more_frequent = totals[None, :] > totals[:, None]  # (P, P) [p, g]: g is more frequent
    shares = np.where(more_frequent, shares, 0.0)  # also zeroes the diagonal
    parent = shares.argmax(axis=1)  # (P,) the strongest absorber of each predicate
    strongest = shares[np.arange(len(parent)), parent]
    children: dict[int, list[tuple[int, float]]] = {}
    for child in np.flatnonzero(strongest >= min_share):
        children.setdefault(int(parent[child]), []).append((int(child), float(strongest[child])))
    ordered = sorted(children.items(), key=lambda item: -sum(share for _, share in item[1]))
    return {
        predicate_names[general + 1]: [
            {"predicate": predicate_names[child + 1], "share": round(share, 4)}
            for child, share in sorted(members, key=lambda m: -m[1])
        ]
        for general, members in ordered
    }


def write_hierarchy(
    hierarchy: dict[str, list[dict[str, float | str]]], out_dir: Path, *, stem: str = "hierarchy"
) -> dict[str, Path]:
    """Write ``<stem>.json`` and ``<stem>.png`` (general predicates left, children right)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "png": out_dir / f"{stem}.png"}
    atomic.write_text(paths["json"], json.dumps(hierarchy, indent=1) + "\n")
    rows = sum(max(len(members), 1) for members in hierarchy.values()) or 1
    figure, axes = plt.subplots(figsize=(7.0, 0.35 * rows + 1.2))
    axes.set_xlim(0, 1)
    axes.set_ylim(rows + 0.5, -0.5)
    axes.axis("off")
    row = 0
    for general, members in hierarchy.items():
        centre = row + (len(members) - 1) / 2
        axes.text(0.18, centre, general, ha="center", va="center", fontsize=10,
                  bbox={"boxstyle": "round", "facecolor": "#d8e4f0"})  # fmt: skip
        for offset, member in enumerate(members):
            y = row + offset
            axes.annotate("", xy=(0.62, y), xytext=(0.3, centre),
                          arrowprops={"arrowstyle": "->", "color": "0.4"})  # fmt: skip
            axes.text(0.64, y, f"{member['predicate']}  ({100 * float(member['share']):.0f}%)",
                      ha="left", va="center", fontsize=9)  # fmt: skip
        row += max(len(members), 1)
    title = "general predicate -> informative predicates it absorbs\n"
    title += "(share of their pairs the stage-1 model labels general)"
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    atomic.save_figure(figure, paths["png"], dpi=120)
    return paths
