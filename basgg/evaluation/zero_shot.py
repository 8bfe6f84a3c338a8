"""Zero-shot triplet lists: (sub_class, obj_class, predicate) rows never seen in training."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from basgg.packed import PackedGraphs
from basgg.structures import SceneGraph


def graph_triplets(graphs: Iterable[SceneGraph] | PackedGraphs) -> np.ndarray:
    """(T, 3) unique (sub_class, obj_class, predicate) rows of the relations of ``graphs``."""
    if isinstance(graphs, PackedGraphs):
        owner = np.repeat(graphs.object_offsets[:-1], graphs.num_relations)  # (R,)
        labels = graphs.labels
        table = np.stack(
            [
                labels[graphs.relation_pairs[:, 0] + owner],
                labels[graphs.relation_pairs[:, 1] + owner],
                graphs.relation_predicates(),
            ],
            axis=1,
        )
        return np.unique(table.astype(np.int64).reshape(-1, 3), axis=0)
    parts = []
    for graph in graphs:
        if graph.num_relations == 0:
            continue
        labels = graph.labels.cpu().numpy()
        pairs = graph.relation_pairs.cpu().numpy()  # (R, 2)
        parts.append(
            np.stack(
                [labels[pairs[:, 0]], labels[pairs[:, 1]], graph.predicates.cpu().numpy()], axis=1
            )
        )
    if not parts:
        return np.zeros((0, 3), dtype=np.int64)
    return np.unique(np.concatenate(parts).astype(np.int64), axis=0)


def zero_shot_triplets(
    train_ground_truths: Iterable[SceneGraph] | PackedGraphs,
    test_ground_truths: Iterable[SceneGraph] | PackedGraphs,
) -> np.ndarray:
    """(T, 3) int64 triplets present in the test graphs and absent from the train graphs.

    Columns are (sub_class, obj_class, predicate), the order of SGB's
    ``zeroshot_triplet.pytorch``; rows are unique and sorted.
    """
    train = graph_triplets(train_ground_truths)
    test = graph_triplets(test_ground_truths)
    if len(train) == 0 or len(test) == 0:
        return test
    seen = _rows_in(test, train)
    return test[~seen]


def _rows_in(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(N,) whether each row of ``rows`` is a row of ``table``."""
    both = np.concatenate([rows, table])
    _, inverse = np.unique(both, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return np.isin(inverse[: len(rows)], inverse[len(rows) :])


def load_zero_shot_file(path: str | Path) -> np.ndarray:
    """Read a zero-shot list: SGB's legacy ``zeroshot_triplet.pytorch`` or a ``.npy``.

    The torch file is read with ``weights_only=True`` (one int tensor of shape (T, 3)).

    Returns:
        (T, 3) int64 rows (sub_class, obj_class, predicate).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: zero-shot triplet file not found")
    try:
        if path.suffix == ".npy":
            table = np.load(path, allow_pickle=False)
        else:
            import torch

            loaded = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(loaded, torch.Tensor):
                raise ValueError(f"holds a {type(loaded).__name__}, expected one tensor")
            table = loaded.long().numpy()
    except (OSError, RuntimeError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the zero-shot triplets ({error})") from error
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] != 3 or not np.issubdtype(table.dtype, np.integer):
        raise ValueError(
            f"{path}: zero-shot triplets must be an integer array of shape (T, 3), "
            f"got {table.dtype} {table.shape}"
        )
    return table.astype(np.int64)
