"""The fast, vectorised scene-graph evaluator: R, ngR, mR, ngmR, zR, ngzR, A, F @ K.

It reproduces Scene-Graph-Benchmark.pytorch's ``sgg_eval.py`` (see
``docs/evaluation-protocol.md`` in the shared docs): rows are read in the order given, the
matching is index-free and many-to-many with IoU+1 >= 0.5, images with no ground-truth
relation or no predicted row are skipped. Work is vectorised over batches of images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from basgg.evaluation.batch import ImageBatch, build_batch, check_prediction
from basgg.evaluation.confusion import confusion_increments
from basgg.evaluation.matching import (
    first_hit_positions,
    foreground_argmax,
    join_equal,
    positions_in_group,
    row_codes,
    top_entries_per_image,
    triplet_hits,
)
from basgg.evaluation.results import EvaluationResult, aggregate
from basgg.packed import PackedGraphs
from basgg.structures import Mode, SceneGraph

NO_GRAPH_CONSTRAINT_TOP = 100  # SGB keeps the top 100 (pair, predicate) entries
BATCH_IMAGES = 512


class SGEvaluator:
    """Accumulates per-image counts over ``update()`` calls; ``compute()`` gives the metrics.

    Besides SGB's metrics it reports, when ground truths carry ``specific_predicates``,
    ``informative_recall``: over the scored images' GT rows whose specific predicate differs
    from the annotated one, the fraction whose locating row (the highest-ranked row on the
    same index pair; in sgdet the highest-ranked row with matching labels and IoU+1 >= 0.5 on
    both boxes) has the specific predicate as its foreground argmax. In predcls it also
    fills the predicate confusion matrix (``EvaluationResult.confusion``).

    Args:
        mode: the task; predcls scores the ground-truth boxes and labels with sigma = 1.
        num_predicates: predicate classes including background (51 for VG150).
        ks: the K values.
        zero_shot_triplets: (T, 3) int rows (sub_class, obj_class, predicate), or None.
        predicate_groups: head / body / tail predicate indices, for part recalls.
        predicate_names: names with background at index 0, for reports.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_predicates: int,
        ks: Sequence[int] = (20, 50, 100),
        zero_shot_triplets: np.ndarray | None = None,
        predicate_groups: dict[str, list[int]] | None = None,
        predicate_names: Sequence[str] | None = None,
    ) -> None:
        self.mode = Mode(mode)
        self.num_predicates = int(num_predicates)
        if self.num_predicates < 2:
            raise ValueError(f"num_predicates must count background too, got {num_predicates}")
        self.ks = tuple(int(k) for k in ks)
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive integers, got {ks}")
        self.zero_shot_triplets = None
        if zero_shot_triplets is not None:
            table = np.asarray(zero_shot_triplets, dtype=np.int64)
            if table.ndim != 2 or table.shape[1] != 3:
                raise ValueError(f"zero_shot_triplets: expected shape (T, 3), got {table.shape}")
            self.zero_shot_triplets = table
        self.predicate_groups = predicate_groups
        self.predicate_names = None if predicate_names is None else tuple(predicate_names)
        if self.predicate_names is not None and len(self.predicate_names) != self.num_predicates:
            raise ValueError(
                f"predicate_names has {len(self.predicate_names)} names, expected "
                f"{self.num_predicates}"
            )
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        self._parts: list[dict[str, np.ndarray]] = []
        self._num_images = 0
        self._num_skipped = 0
        self._has_specific = False
        size = self.num_predicates
        self._confusion = np.zeros((size, size), dtype=np.int64)

    def update(
        self, ground_truths: Sequence[SceneGraph], predictions: Sequence[SceneGraph]
    ) -> None:
        """Score a list of images; ``predictions[i]`` rows must already be ranked best first."""
        if len(ground_truths) != len(predictions):
            raise ValueError(
                f"{len(ground_truths)} ground truths but {len(predictions)} predictions"
            )
        for index, (gt, prediction) in enumerate(zip(ground_truths, predictions, strict=True)):
            check_prediction(
                prediction, self._num_images + index, self.mode, self.num_predicates,
                gt.num_objects,
            )  # fmt: skip
        self.update_packed(
            PackedGraphs.from_graphs(ground_truths), PackedGraphs.from_graphs(predictions)
        )

    def update_packed(self, ground_truths: PackedGraphs, predictions: PackedGraphs) -> None:
        """Score images given as packed arrays (e.g. straight from a predictions file).

        ``predictions.predicate_scores`` may be an open ``h5py.Dataset``: it is read one
        batch of images at a time, so memory stays bounded on large files.
        """
        if len(ground_truths) != len(predictions):
            raise ValueError(
                f"{len(ground_truths)} ground truths but {len(predictions)} predictions"
            )
        for start in range(0, len(ground_truths), BATCH_IMAGES):
            stop = min(start + BATCH_IMAGES, len(ground_truths))
            batch, skipped = build_batch(
                ground_truths.images(start, stop),
                predictions.images(start, stop),
                mode=self.mode,
                num_predicates=self.num_predicates,
                first_index=self._num_images + start,
            )
            self._num_skipped += len(skipped)
            if batch.gt_specific is not None:
                self._has_specific = True
            if batch.size:
                self._parts.append(self._score(batch))
        self._num_images += len(ground_truths)

    def compute(self) -> EvaluationResult:
        """The metrics of every image seen since the last ``reset()``."""
        per_image = self._per_image()
        metrics, recall, ng_recall = aggregate(
            per_image,
            mode=self.mode,
            ks=self.ks,
            num_predicates=self.num_predicates,
            zero_shot=self.zero_shot_triplets is not None,
            informative=self._has_specific,
            predicate_groups=self.predicate_groups,
        )
        counts = {
            "images": self._num_images,
            "images_scored": len(per_image["num_gt"]),
            "images_skipped": self._num_skipped,
            "zero_shot_images": int((per_image["zero_shot_count"] > 0).sum()),
        }
        return EvaluationResult(
            mode=self.mode,
            ks=self.ks,
            metrics=metrics,
            per_predicate_recall=recall,
            per_predicate_ng_recall=ng_recall,
            per_image=per_image,
            counts=counts,
            confusion=self._confusion.copy() if self.mode is Mode.PREDCLS else None,
            predicate_names=self.predicate_names,
            predicate_groups=self.predicate_groups,
        )

    def _per_image(self) -> dict[str, np.ndarray]:
        n_k = len(self.ks)
        if not self._parts:
            empty_k = np.zeros((0, n_k), np.int64)
            empty = np.zeros((0,), np.int64)
            return {
                key: (empty_k if key.endswith("hits") and key != "informative_hits" else empty)
                for key in _FIELDS
            }
        per_image = {key: np.concatenate([part[key] for part in self._parts]) for key in _FIELDS}
        offsets = np.cumsum([0] + [len(part["num_gt"]) for part in self._parts[:-1]])
        per_image["predicate_image"] = np.concatenate(
            [
                part["predicate_image"] + offset
                for part, offset in zip(self._parts, offsets, strict=True)
            ]
        )
        return per_image

    def _score(self, batch: ImageBatch) -> dict[str, np.ndarray]:
        gt_triplets, gt_boxes = batch.gt_triplets()
        num_gt = len(gt_triplets)
        k_max = max(self.ks)

        rows = np.flatnonzero(batch.row_position < k_max)
        first = self._first_hits(
            batch,
            rows,
            foreground_argmax(batch.row_scores[rows]),
            batch.row_position[rows],
            gt_triplets,
            gt_boxes,
        )
        # float32 products; in predcls sigma = 1 so they equal SGB's float64 ones exactly
        # (1.0 * 1.0 * x is exact), and the order of the entries is the same
        sigma = batch.object_sigma
        ng_rows, ng_predicates, ng_positions = top_entries_per_image(
            batch.row_scores[:, 1:],
            sigma[batch.row_sub] * sigma[batch.row_obj],  # (Rt,) float32
            batch.row_image,
            batch.row_position,
            batch.size,
            NO_GRAPH_CONSTRAINT_TOP,
        )
        ng_first = self._first_hits(
            batch, ng_rows, ng_predicates, ng_positions, gt_triplets, gt_boxes
        )
        part = {
            "stream_index": batch.stream_index,
            "image_id": batch.image_ids,
            "num_gt": batch.num_gt,
            "hits": self._per_image_hits(batch, first, None),
            "ng_hits": self._per_image_hits(batch, ng_first, None),
        }
        zero_shot = self._zero_shot_mask(batch, gt_triplets)
        part["zero_shot_count"] = np.bincount(batch.gt_image[zero_shot], minlength=batch.size)
        part["zero_shot_hits"] = self._per_image_hits(batch, first, zero_shot)
        part["ng_zero_shot_hits"] = self._per_image_hits(batch, ng_first, zero_shot)
        part.update(self._predicate_counts(batch, first, ng_first))

        pair_rows, pair_gts = self._index_pair_matches(batch)
        flagged = np.unique(pair_rows)  # rows on a ground-truth index pair, in rank order
        flagged_predicates = foreground_argmax(batch.row_scores[flagged])
        flagged_positions = positions_in_group(batch.row_image[flagged])
        in_top = flagged_positions < k_max
        accuracy_first = self._first_hits(
            batch,
            flagged[in_top],
            flagged_predicates[in_top],
            flagged_positions[in_top],
            gt_triplets,
            gt_boxes,
        )
        part["accuracy_hits"] = self._per_image_hits(batch, accuracy_first, None)
        if self.mode is Mode.PREDCLS:
            row_predicates = flagged_predicates[np.searchsorted(flagged, pair_rows)]
            self._confusion += confusion_increments(
                batch.gt_predicate[pair_gts], row_predicates, self.num_predicates
            )
        part.update(self._informative(batch, pair_rows, pair_gts, gt_boxes, num_gt))
        return part

    def _first_hits(
        self,
        batch: ImageBatch,
        rows: np.ndarray,
        predicates: np.ndarray,
        positions: np.ndarray,
        gt_triplets: np.ndarray,
        gt_boxes: np.ndarray,
    ) -> np.ndarray:
        triplets, boxes = batch.row_triplets(rows, predicates)
        entry_index, gt_index = triplet_hits(triplets, boxes, gt_triplets, gt_boxes)
        return first_hit_positions(positions, entry_index, gt_index, len(gt_triplets))

    def _per_image_hits(
        self, batch: ImageBatch, first: np.ndarray, mask: np.ndarray | None
    ) -> np.ndarray:
        """(B, nK) number of (masked) GT rows with a first hit before K."""
        columns = []
        for k in self.ks:
            hit = first < k if mask is None else (first < k) & mask
            columns.append(np.bincount(batch.gt_image[hit], minlength=batch.size))
        return np.stack(columns, axis=1).astype(np.int64)

    def _zero_shot_mask(self, batch: ImageBatch, gt_triplets: np.ndarray) -> np.ndarray:
        """(G,) whether each GT row's (sub_class, obj_class, predicate) is zero-shot."""
        if self.zero_shot_triplets is None or len(gt_triplets) == 0:
            return np.zeros(len(gt_triplets), dtype=bool)
        table = self.zero_shot_triplets
        codes = row_codes(
            [
                np.concatenate([gt_triplets[:, 1], table[:, 0]]),
                np.concatenate([gt_triplets[:, 3], table[:, 1]]),
                np.concatenate([gt_triplets[:, 2], table[:, 2]]),
            ]
        )
        return np.isin(codes[: len(gt_triplets)], codes[len(gt_triplets) :])

    def _predicate_counts(
        self, batch: ImageBatch, first: np.ndarray, ng_first: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Sparse (image, predicate) rows with n_p and h_p for each K."""
        code = batch.gt_image * self.num_predicates + batch.gt_predicate  # (G,)
        unique, inverse = np.unique(code, return_inverse=True)
        inverse = inverse.reshape(-1)

        def hits(positions: np.ndarray) -> np.ndarray:
            columns = [
                np.bincount(inverse, weights=positions < k, minlength=len(unique)) for k in self.ks
            ]
            return np.stack(columns, axis=1).astype(np.int64)

        return {
            "predicate_image": unique // self.num_predicates,
            "predicate": unique % self.num_predicates,
            "predicate_count": np.bincount(inverse, minlength=len(unique)).astype(np.int64),
            "predicate_hits": hits(first),
            "ng_predicate_hits": hits(ng_first),
        }

    def _index_pair_matches(self, batch: ImageBatch) -> tuple[np.ndarray, np.ndarray]:
        """All (row, GT row) with equal (subject, object) index pair; empty in sgdet."""
        if self.mode is Mode.SGDET:
            return np.zeros((0,), np.int64), np.zeros((0,), np.int64)
        n_rows = len(batch.row_image)
        codes = row_codes(
            [
                np.concatenate([batch.row_image, batch.gt_image]),
                np.concatenate([batch.row_sub_local, batch.gt_sub_local]),
                np.concatenate([batch.row_obj_local, batch.gt_obj_local]),
            ]
        )
        return join_equal(codes[:n_rows], codes[n_rows:])

    def _informative(
        self,
        batch: ImageBatch,
        pair_rows: np.ndarray,
        pair_gts: np.ndarray,
        gt_boxes: np.ndarray,
        num_gt: int,
    ) -> dict[str, np.ndarray]:
        """Per-image counts of informative GT rows and of those predicted specifically."""
        zeros = np.zeros(batch.size, dtype=np.int64)
        if batch.gt_specific is None:
            return {"informative_count": zeros, "informative_hits": zeros.copy()}
        informative = batch.gt_specific != batch.gt_predicate  # (G,)
        if self.mode is Mode.SGDET:
            targets = np.flatnonzero(informative)
            gt_triplets = np.stack(
                [
                    batch.gt_image[targets],
                    batch.gt_labels[batch.gt_sub[targets]],
                    np.zeros(len(targets), np.int64),
                    batch.gt_labels[batch.gt_obj[targets]],
                ],
                axis=1,
            )
            all_rows = np.arange(len(batch.row_image), dtype=np.int64)
            triplets, boxes = batch.row_triplets(all_rows, np.zeros(len(all_rows), np.int64))
            row_index, target_index = triplet_hits(triplets, boxes, gt_triplets, gt_boxes[targets])
            pair_rows, pair_gts = row_index, targets[target_index]
        best_row = first_hit_positions(
            np.arange(len(batch.row_image), dtype=np.int64), pair_rows, pair_gts, num_gt
        )  # (G,) highest-ranked matching row
        found = np.flatnonzero(informative & (best_row < len(batch.row_image)))
        said = foreground_argmax(batch.row_scores[best_row[found]])
        hit = found[said == batch.gt_specific[found]]
        return {
            "informative_count": np.bincount(batch.gt_image[informative], minlength=batch.size),
            "informative_hits": np.bincount(batch.gt_image[hit], minlength=batch.size),
        }


_FIELDS = (
    "stream_index",
    "image_id",
    "num_gt",
    "hits",
    "ng_hits",
    "zero_shot_count",
    "zero_shot_hits",
    "ng_zero_shot_hits",
    "accuracy_hits",
    "informative_count",
    "informative_hits",
    "predicate_image",
    "predicate",
    "predicate_count",
    "predicate_hits",
    "ng_predicate_hits",
)


def evaluate(
    ground_truths: Sequence[SceneGraph], predictions: Sequence[SceneGraph], **kwargs: object
) -> EvaluationResult:
    """Score ``predictions`` against ``ground_truths`` in one call.

    Keyword arguments are those of :class:`SGEvaluator` (``mode`` and ``num_predicates``
    are required).
    """
    evaluator = SGEvaluator(**kwargs)  # type: ignore[arg-type]
    evaluator.update(ground_truths, predictions)
    return evaluator.compute()
