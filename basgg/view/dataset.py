"""Site data from predictions files and their VG150-format dataset split.

Scores each predictions file with the evaluator ``basgg eval`` uses (same checks, same
zero-shot list, same predicate groups), and keeps, per image, the fate of every triplet
(:func:`basgg.evaluation.outcomes.triplet_outcomes`), so the site and ``basgg eval`` agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from basgg.data.predicate_groups import predicate_groups
from basgg.data.vg150 import VG150Dataset
from basgg.data.vg150_format import VG150Files
from basgg.evaluation import (
    EvaluationResult,
    SGEvaluator,
    load_zero_shot_file,
    read_predictions,
    validate_predictions,
    zero_shot_triplets,
)
from basgg.evaluation.hierarchy import predicate_hierarchy
from basgg.evaluation.matching import ranking_scores
from basgg.evaluation.outcomes import ImageOutcome, triplet_outcomes
from basgg.evaluation.predictions import PredictionsFile, read_predictions_header
from basgg.structures import Mode, SceneGraph

DEFAULT_VAL_SIZE = 5000
KS = (20, 50, 100)


@dataclass
class ModelRun:
    """One predictions file, scored."""

    name: str
    predictions: PredictionsFile
    result: EvaluationResult
    outcomes: list[ImageOutcome]


def model_name(path: Path) -> str:
    """A short name for a predictions file: ``run/inference/test/predictions.h5`` -> ``run``."""
    parts = Path(path).resolve().parts
    if Path(path).stem == "predictions" and "inference" in parts:
        at = len(parts) - 1 - parts[::-1].index("inference")
        if at > 0:
            return parts[at - 1]
    return Path(path).stem


class DatasetSource:
    """Everything the site shows for predictions files on a VG150-format split.

    Args:
        predictions: one or two predictions files (the second is the comparison).
        data: the dataset folder (standard file names) or its files.
        names: a display name per file (default: from the paths).
        split: the split predicted; default the first file's ``split`` attribute.
        val_size: train-flag images carved out as val; default as recorded in the file.
        zero_shot: a zero-shot triplet file; default the split's triplets absent from train.
        hierarchy: a ``hierarchy.json`` of ``basgg confmat``; default, in predcls, the one read
            off the first model's test confusion.
        top_k: predicted triplets shown per image and model.
    """

    def __init__(
        self,
        predictions: Sequence[Path],
        data: Path | VG150Files,
        *,
        names: Sequence[str] | None = None,
        split: str | None = None,
        val_size: int | None = None,
        zero_shot: Path | None = None,
        hierarchy: Path | None = None,
        top_k: int = 20,
    ) -> None:
        paths = [Path(p) for p in predictions]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: predictions file not found")
        header = read_predictions_header(paths[0])
        if val_size is None:
            recorded = header.get("val_size")
            val_size = DEFAULT_VAL_SIZE if recorded is None else int(recorded)
        split = split or str(header.get("split", "test"))
        files = data if isinstance(data, VG150Files) else VG150Files(Path(data))
        self.dataset = VG150Dataset(files, split=split, val_size=val_size, load_images=False)
        train = VG150Dataset(files, split="train", val_size=val_size, load_images=False)
        self.ground_truths = [self.dataset.ground_truth(i) for i in range(len(self.dataset))]
        vocabulary = self.dataset.vocabulary
        self.vocabulary = vocabulary
        self.train_counts = train.relation_counts()
        if zero_shot is not None:
            self.zero_shot = load_zero_shot_file(zero_shot)
        else:
            train_graphs = (train.ground_truth(i) for i in range(len(train)))
            self.zero_shot = zero_shot_triplets(train_graphs, self.ground_truths)
        self.groups = predicate_groups(vocabulary.predicates, self.train_counts)
        self.top_k = int(top_k)
        self.split = split
        self.data_dir = Path(files.root)
        names = list(names or [])
        self.models = [
            self._score(path, names[i] if i < len(names) else model_name(path))
            for i, path in enumerate(paths)
        ]
        self.hierarchy, self.hierarchy_source = self._hierarchy(hierarchy)
        self._zero_shot_codes = {tuple(row) for row in self.zero_shot.tolist()}

    @property
    def num_images(self) -> int:
        return len(self.ground_truths)

    def _score(self, path: Path, name: str) -> ModelRun:
        predictions = read_predictions(path)
        names = self.vocabulary.predicates
        validate_predictions(
            predictions, self.ground_truths, num_predicates=len(names), predicate_names=names
        )
        evaluator = SGEvaluator(
            mode=predictions.mode,
            num_predicates=len(names),
            ks=KS,
            zero_shot_triplets=self.zero_shot,
            predicate_groups=self.groups,
            predicate_names=names,
        )
        graphs = predictions.graphs  # built once: the property builds every image
        evaluator.update(self.ground_truths, graphs)
        outcomes = triplet_outcomes(
            self.ground_truths,
            graphs,
            mode=predictions.mode,
            num_predicates=len(names),
            k_max=max(KS),
            top=self.top_k,
        )
        return ModelRun(name, predictions, evaluator.compute(), outcomes)

    def _hierarchy(self, path: Path | None) -> tuple[dict | None, str]:
        if path is not None:
            try:
                content = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(f"{path}: cannot read the predicate hierarchy ({error})") from None
            if not isinstance(content, dict):
                raise ValueError(f"{path}: a predicate hierarchy maps general predicates to lists")
            return content, str(path)
        first = self.models[0].result
        if first.confusion is None:
            return None, ""
        hierarchy = predicate_hierarchy(first.confusion, self.vocabulary.predicates)
        return hierarchy, f"read off {self.models[0].name}'s test confusion matrix"

    def image_path(self, index: int) -> Path | None:
        return self.dataset.image_path(index)

    def image_name(self, index: int) -> str:
        return str(self.ground_truths[index].image_id)

    def summary(self) -> dict[str, Any]:
        """Vocabularies, metrics per model, per-predicate recall, confusion, hierarchy."""
        models = []
        for run in self.models:
            content = run.result.to_dict()
            models.append(
                {
                    "name": run.name,
                    "file": str(run.predictions.path),
                    "mode": run.predictions.mode.value,
                    "metrics": content["metrics"],
                    "counts": content["counts"],
                    "per_predicate_recall": {
                        str(k): _rounded(v) for k, v in run.result.per_predicate_recall.items()
                    },
                    "confusion": content.get("confusion"),
                }
            )
        test_counts = np.zeros(self.vocabulary.num_predicates, np.int64)
        for graph in self.ground_truths:
            test_counts += np.bincount(
                graph.predicates.numpy(), minlength=self.vocabulary.num_predicates
            )
        return {
            "kind": "dataset",
            "dataset": str(self.data_dir),
            "split": self.split,
            "mode": self.models[0].predictions.mode.value,
            "ks": list(KS),
            "objects": list(self.vocabulary.objects),
            "predicates": list(self.vocabulary.predicates),
            "models": models,
            "predicate_train_counts": self.train_counts.tolist(),
            "predicate_split_counts": test_counts.tolist(),
            "predicate_groups": self.groups,
            "hierarchy": self.hierarchy,
            "hierarchy_source": self.hierarchy_source,
            "zero_shot_triplets": len(self.zero_shot),
            "has_specific": any(g.specific_predicates is not None for g in self.ground_truths),
        }

    def index_row(self, index: int) -> dict[str, Any]:
        """The grid's entry of one image: counts, per-model hits at each K, what it holds."""
        gt = self.ground_truths[index]
        labels = gt.labels.numpy()
        predicates = gt.predicates.numpy()
        hits = []
        for run in self.models:
            first = run.outcomes[index].gt_first_hit
            hits.append([int(((first >= 0) & (first < k)).sum()) for k in KS])
        return {
            "i": index,
            "name": self.image_name(index),
            "n": int(gt.num_relations),
            "z": int(self._zero_shot_mask(gt).sum()),
            "h": hits,
            "p": sorted(set(predicates.tolist())),
            "c": sorted(set(labels.tolist())),
        }

    def _zero_shot_mask(self, gt: SceneGraph) -> np.ndarray:
        labels = gt.labels.numpy()
        pairs = gt.relation_pairs.numpy()
        predicates = gt.predicates.numpy()
        return np.array(
            [
                (int(labels[s]), int(labels[o]), int(p)) in self._zero_shot_codes
                for (s, o), p in zip(pairs, predicates, strict=True)
            ],
            dtype=bool,
        )

    def record(self, index: int) -> dict[str, Any]:
        """The image page's data: GT objects and triplets (with their fate per model) and
        each model's top-k triplets (with their outcome)."""
        gt = self.ground_truths[index]
        height, width = gt.image_size
        specific = gt.specific_predicates
        specific = specific.numpy() if specific is not None else gt.predicates.numpy()
        zero_shot = self._zero_shot_mask(gt)
        firsts = [run.outcomes[index].gt_first_hit for run in self.models]
        gt_rows = [
            [int(s), int(o), int(p), int(sp), int(z), [int(f[j]) for f in firsts]]
            for j, ((s, o), p, sp, z) in enumerate(
                zip(gt.relation_pairs.numpy(), gt.predicates.numpy(), specific, zero_shot,
                    strict=True)
            )
        ]  # fmt: skip
        return {
            "i": index,
            "name": self.image_name(index),
            "w": int(width),
            "h": int(height),
            "objects": _objects(gt.labels.numpy(), gt.boxes.numpy()),
            "gt": gt_rows,
            "models": [self._model_record(run, index) for run in self.models],
        }

    def _model_record(self, run: ModelRun, index: int) -> dict[str, Any]:
        prediction = run.predictions.packed.graph(index)
        outcome = run.outcomes[index]
        mode = run.predictions.mode
        shown = len(outcome.row_status)
        pairs = prediction.relation_pairs.numpy()[:shown]
        scores_matrix = prediction.predicate_scores.numpy()[:shown]
        if mode is Mode.PREDCLS:
            sigma = np.ones(prediction.num_objects, np.float32)
            objects = None  # the ground-truth objects
        else:
            sigma = prediction.object_scores.numpy()
            objects = _objects(prediction.labels.numpy(), prediction.boxes.numpy(), sigma)
        scores = significant(ranking_scores(scores_matrix, sigma, pairs))
        rows = [
            [int(s), int(o), int(p), score, int(status), int(matched)]
            for (s, o), p, score, status, matched in zip(
                pairs, outcome.row_predicates, scores, outcome.row_status, outcome.row_gt,
                strict=True,
            )
        ]  # fmt: skip
        return {"objects": objects, "rows": rows}


def _objects(labels: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None = None) -> list:
    """``[label, x1, y1, x2, y2(, score)]`` per object, boxes to 0.1 pixel."""
    boxes = np.round(np.asarray(boxes, np.float64), 1).tolist()
    rows = [[int(label), *box] for label, box in zip(labels.tolist(), boxes, strict=True)]
    if scores is not None:
        for row, score in zip(rows, significant(scores), strict=True):
            row.append(score)
    return rows


def significant(values: np.ndarray, digits: int = 4) -> list[float]:
    """``values`` rounded to ``digits`` significant digits (short in JSON), as floats."""
    values = np.asarray(values, np.float64)
    magnitude = np.floor(np.log10(np.abs(np.where(values == 0, 1.0, values))))
    scale = 10.0 ** (digits - 1 - magnitude)
    return (np.round(values * scale) / scale).tolist()


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in values]
