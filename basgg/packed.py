"""Many images' scene graphs as flat numpy arrays addressed by offsets (no torch).

This is the layout of the VG150 h5 file and of the predictions file: per-image rows are
concatenated in dataset order and image i owns rows ``offsets[i]:offsets[i + 1]``. The
evaluator scores whole batches of images straight from these arrays, without building one
:class:`~basgg.structures.SceneGraph` per image; :meth:`PackedGraphs.graph` gives one image as
a ``SceneGraph`` when a caller wants it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from basgg.structures import SceneGraph


@dataclass
class PackedGraphs:
    """Scene graphs of I images, flattened. O objects, R relation rows in all.

    Attributes:
        image_ids: (I,) int64 dataset image ids.
        image_sizes: (I, 2) int64 (height, width).
        object_offsets: (I + 1,) int64; objects of image i are rows ``[o[i], o[i + 1])``.
        relation_offsets: (I + 1,) int64; relation rows of image i are ``[r[i], r[i + 1])``.
        boxes: (O, 4) float32 xyxy pixels.
        labels: (O,) int64 object classes.
        relation_pairs: (R, 2) int64 (subject, object) indices within the image.
        predicates: (R,) int64, or None for predictions (read as each row's foreground argmax).
        object_scores: (O,) float32, predictions only (None: not given).
        predicate_scores: (R, P + 1) float32, predictions only. Any array that numpy-slices
            along rows works, e.g. an open ``h5py.Dataset`` read batch by batch.
        specific_predicates: (R,) int64 true specific predicates, ground truth only.
    """

    image_ids: np.ndarray
    image_sizes: np.ndarray
    object_offsets: np.ndarray
    relation_offsets: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    relation_pairs: np.ndarray
    predicates: np.ndarray | None = None
    object_scores: np.ndarray | None = None
    predicate_scores: Any = None
    specific_predicates: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_objects(self) -> np.ndarray:
        """(I,) objects per image."""
        return np.diff(self.object_offsets)

    @property
    def num_relations(self) -> np.ndarray:
        """(I,) relation rows per image."""
        return np.diff(self.relation_offsets)

    @property
    def num_predicate_columns(self) -> int | None:
        """Width of ``predicate_scores`` (P + 1), or None without scores."""
        return None if self.predicate_scores is None else int(self.predicate_scores.shape[1])

    def relation_predicates(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(rows,) the predicates of relation rows ``[start, stop)`` (argmax when not stored)."""
        if self.predicates is not None:
            return self.predicates[start:stop]
        scores = np.asarray(self.predicate_scores[start:stop], dtype=np.float32)
        return np.argmax(scores[:, 1:], axis=1).astype(np.int64) + 1

    def images(self, start: int, stop: int) -> PackedGraphs:
        """Images ``[start, stop)`` as their own ``PackedGraphs`` (offsets start at 0)."""
        o0, o1 = int(self.object_offsets[start]), int(self.object_offsets[stop])
        r0, r1 = int(self.relation_offsets[start]), int(self.relation_offsets[stop])

        def rows(array: Any, first: int, last: int) -> Any:
            return None if array is None else array[first:last]

        return PackedGraphs(
            image_ids=self.image_ids[start:stop],
            image_sizes=self.image_sizes[start:stop],
            object_offsets=self.object_offsets[start : stop + 1] - o0,
            relation_offsets=self.relation_offsets[start : stop + 1] - r0,
            boxes=self.boxes[o0:o1],
            labels=self.labels[o0:o1],
            relation_pairs=self.relation_pairs[r0:r1],
            predicates=rows(self.predicates, r0, r1),
            object_scores=rows(self.object_scores, o0, o1),
            predicate_scores=rows(self.predicate_scores, r0, r1),
            specific_predicates=rows(self.specific_predicates, r0, r1),
        )

    def graph(self, index: int) -> SceneGraph:
        """Image ``index`` as a :class:`~basgg.structures.SceneGraph` (imports torch)."""
        import torch

        from basgg.structures import SceneGraph

        o0, o1 = int(self.object_offsets[index]), int(self.object_offsets[index + 1])
        r0, r1 = int(self.relation_offsets[index]), int(self.relation_offsets[index + 1])

        def tensor(array: Any, first: int, last: int, dtype: type) -> Any:
            if array is None:
                return None
            return torch.from_numpy(np.ascontiguousarray(array[first:last], dtype=dtype))

        return SceneGraph(
            boxes=tensor(self.boxes, o0, o1, np.float32),
            labels=tensor(self.labels, o0, o1, np.int64),
            relation_pairs=tensor(self.relation_pairs, r0, r1, np.int64),
            predicates=torch.from_numpy(self.relation_predicates(r0, r1).astype(np.int64)),
            image_size=(int(self.image_sizes[index][0]), int(self.image_sizes[index][1])),
            image_id=int(self.image_ids[index]),
            object_scores=tensor(self.object_scores, o0, o1, np.float32),
            predicate_scores=tensor(self.predicate_scores, r0, r1, np.float32),
            specific_predicates=tensor(self.specific_predicates, r0, r1, np.int64),
        )

    def graphs(self) -> list[SceneGraph]:
        """Every image as a ``SceneGraph``."""
        return [self.graph(i) for i in range(len(self))]

    @classmethod
    def from_graphs(cls, graphs: Sequence[SceneGraph]) -> PackedGraphs:
        """Pack ``SceneGraph`` objects; a score field is kept only if every graph has it."""

        def numpy(tensor: Any) -> np.ndarray:
            return tensor.detach().cpu().numpy()

        def cat(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray | None:
            parts = [getattr(graph, name) for graph in graphs]
            if any(part is None for part in parts):
                return None
            if not parts:
                return np.zeros(shape, dtype)
            return np.concatenate([numpy(part) for part in parts]).astype(dtype, copy=False)

        width = next(
            (g.predicate_scores.shape[1] for g in graphs if g.predicate_scores is not None), 0
        )
        n_objects = [graph.num_objects for graph in graphs]
        n_relations = [graph.num_relations for graph in graphs]
        return cls(
            image_ids=np.array([graph.image_id for graph in graphs], dtype=np.int64),
            image_sizes=np.array([graph.image_size for graph in graphs], np.int64).reshape(-1, 2),
            object_offsets=np.concatenate([[0], np.cumsum(n_objects)]).astype(np.int64),
            relation_offsets=np.concatenate([[0], np.cumsum(n_relations)]).astype(np.int64),
            boxes=cat("boxes", (0, 4), np.float32),
            labels=cat("labels", (0,), np.int64),
            relation_pairs=cat("relation_pairs", (0, 2), np.int64),
            predicates=cat("predicates", (0,), np.int64),
            object_scores=cat("object_scores", (0,), np.float32),
            predicate_scores=cat("predicate_scores", (0, width), np.float32),
            specific_predicates=cat("specific_predicates", (0,), np.int64),
        )


def range_rows(offsets: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Row indices of ``images`` (ascending) under ``offsets``, concatenated in image order."""
    starts, stops = offsets[images], offsets[images + 1]
    counts = stops - starts  # (K,)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = np.repeat(starts - (np.cumsum(counts) - counts), counts)  # (total,)
    return np.arange(total, dtype=np.int64) + shift
