"""BA-SGG Balanced Predicate Learning (BPL): under-sample head predicates of the train split.

A pure function over the train split's relation rows (see ``docs/vg150-format.md`` §9):

1. Head set H = the ``num_head`` predicates with the most training rows (stable ranking: ties
   go to the lower predicate index).
2. Walk the rows in file order (images in h5 order, each image's rows in file order). A row of a
   head predicate is kept while fewer than ``max_per_predicate`` rows of it were kept; every
   other row is kept.
3. Images left without a kept row are dropped by the caller; boxes are never touched.

VG150 uses K = 15 and N = 2000 (405,860 rows become 55,750). On a smaller dataset N is
scaled by :func:`scaled_cap`: ``max(1, round(fraction * median head-predicate count))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VG150_NUM_HEAD_PREDICATES = 15
VG150_MAX_PER_PREDICATE = 2000
DEFAULT_SCALE_FRACTION = 0.25


@dataclass(frozen=True)
class BalancedSelection:
    """The outcome of :func:`balance_predicates`.

    Attributes:
        kept: (R,) bool, True for every relation row that stays.
        head_predicates: the K head predicates, most frequent first.
        max_per_predicate: the cap N that was applied.
        rows_before: number of rows given.
        rows_after: number of rows kept.
    """

    kept: np.ndarray
    head_predicates: tuple[int, ...]
    max_per_predicate: int
    rows_before: int
    rows_after: int

    def describe(self) -> str:
        """One log line: K, N and the row counts."""
        return (
            f"balanced predicate learning: {len(self.head_predicates)} head predicates "
            f"{list(self.head_predicates)} capped at {self.max_per_predicate} rows each; "
            f"{self.rows_before} -> {self.rows_after} train relation rows"
        )


def head_predicates(predicates: np.ndarray, num_head: int) -> np.ndarray:
    """The ``num_head`` most frequent predicates of ``predicates`` (R,), most frequent first.

    Only predicates that occur are ranked; ties go to the lower predicate index.
    """
    if num_head < 0:
        raise ValueError(f"num_head must be >= 0, got {num_head}")
    counts = np.bincount(predicates.astype(np.int64), minlength=1)  # (P + 1,)
    counts[0] = 0
    order = np.argsort(-counts, kind="stable")  # most frequent first
    order = order[counts[order] > 0]
    return order[:num_head]


def scaled_cap(predicates: np.ndarray, heads: np.ndarray, fraction: float) -> int:
    """The scaled cap N: ``max(1, round(fraction * median count of the head predicates))``."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if len(heads) == 0:
        return 1
    counts = np.bincount(predicates.astype(np.int64), minlength=int(heads.max()) + 1)
    return max(1, int(round(fraction * float(np.median(counts[heads])))))


def balance_predicates(
    predicates: np.ndarray,
    *,
    num_head: int = VG150_NUM_HEAD_PREDICATES,
    max_per_predicate: int = VG150_MAX_PER_PREDICATE,
    scale_fraction: float = DEFAULT_SCALE_FRACTION,
) -> BalancedSelection:
    """Select BPL's rows among the train split's relation rows, given in file order.

    Args:
        predicates: (R,) int predicate of every train relation row, in file order.
        num_head: K, the number of head predicates (ranked by their count in ``predicates``).
        max_per_predicate: N, the rows kept per head predicate; -1 = :func:`scaled_cap`.
        scale_fraction: the fraction used when ``max_per_predicate`` is -1.

    Returns:
        the kept mask and what was applied.
    """
    predicates = np.asarray(predicates, dtype=np.int64)  # (R,)
    heads = head_predicates(predicates, num_head)
    if max_per_predicate == -1:
        max_per_predicate = scaled_cap(predicates, heads, scale_fraction)
    elif max_per_predicate < 0:
        raise ValueError(f"max_per_predicate must be >= 0 or -1, got {max_per_predicate}")
    kept = np.ones(len(predicates), dtype=bool)  # (R,)
    for predicate in heads:
        rows = np.flatnonzero(predicates == predicate)  # file order
        kept[rows[max_per_predicate:]] = False
    return BalancedSelection(
        kept=kept,
        head_predicates=tuple(int(p) for p in heads),
        max_per_predicate=int(max_per_predicate),
        rows_before=len(predicates),
        rows_after=int(kept.sum()),
    )
