"""Head / body / tail groups of predicates, from training-split frequency."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from basgg.data.vocabulary import (
    BACKGROUND,
    VG150_BODY_PREDICATES,
    VG150_HEAD_PREDICATES,
    VG150_PREDICATES,
)

HEAD, BODY, TAIL = "head", "body", "tail"
HEAD_SHARE = 0.5
BODY_SHARE = 0.9


def predicate_groups(
    predicate_names: Sequence[str], train_counts: Sequence[int] | np.ndarray
) -> dict[str, list[int]]:
    """Split foreground predicates (indices 1..P) into head, body and tail.

    For the VG150 vocabulary this is PySGG's published split (4 / 12 / 34), so part recalls
    compare with published numbers. For any other vocabulary the rule is: sort predicates by
    training count (descending, ties by index); the head is the shortest prefix holding at
    least 50% of the training relations, the body extends it to at least 90%, the rest is
    the tail.

    Args:
        predicate_names: names with ``__background__`` at index 0.
        train_counts: (P + 1,) relation count of each predicate in the training split.
    """
    names = list(predicate_names)
    if names[0] != BACKGROUND:
        raise ValueError(f"predicate_names[0] must be {BACKGROUND!r}")
    if tuple(names[1:]) == VG150_PREDICATES:
        head = [names.index(n) for n in VG150_HEAD_PREDICATES]
        body = [names.index(n) for n in VG150_BODY_PREDICATES]
        tail = [i for i in range(1, len(names)) if i not in head and i not in body]
        return {HEAD: sorted(head), BODY: sorted(body), TAIL: tail}
    counts = np.asarray(train_counts, dtype=np.float64)[1:]  # (P,)
    if counts.shape[0] != len(names) - 1:
        raise ValueError(f"{len(names) - 1} predicates but {counts.shape[0]} counts")
    order = np.argsort(-counts, kind="stable")  # most frequent first
    share = np.cumsum(counts[order]) / max(counts.sum(), 1.0)
    n_head = int(np.searchsorted(share, HEAD_SHARE - 1e-12)) + 1
    n_body = max(int(np.searchsorted(share, BODY_SHARE - 1e-12)) + 1, n_head)
    groups = {
        HEAD: order[:n_head] + 1,
        BODY: order[n_head:n_body] + 1,
        TAIL: order[n_body:] + 1,
    }
    return {name: sorted(int(i) for i in indices) for name, indices in groups.items()}
