"""Scene-graph evaluation with Scene-Graph-Benchmark.pytorch's metrics, quirks included.

Imports only :mod:`basgg.structures`, :mod:`basgg.packed` and :mod:`basgg.boxes` (never data
or models), so saved predictions are scored without a model. The names below are loaded on
first use, so importing one submodule (e.g. ``basgg.evaluation.metrics``) loads only that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "EvaluationResult": "results",
    "PredicateConfusion": "confusion",
    "PredictionsFile": "predictions",
    "SGEvaluator": "metrics",
    "aggregate": "results",
    "evaluate": "metrics",
    "evaluate_file": "report",
    "format_table": "report",
    "image_confusion": "confusion",
    "load_zero_shot_file": "zero_shot",
    "open_predictions": "predictions",
    "rank_relations": "matching",
    "ranking_scores": "matching",
    "read_predictions": "predictions",
    "validate_predictions": "predictions",
    "write_predictions": "predictions",
    "write_report": "report",
    "zero_shot_triplets": "zero_shot",
}
__all__ = [
    "EvaluationResult",
    "PredicateConfusion",
    "PredictionsFile",
    "SGEvaluator",
    "aggregate",
    "evaluate",
    "evaluate_file",
    "format_table",
    "image_confusion",
    "load_zero_shot_file",
    "open_predictions",
    "rank_relations",
    "ranking_scores",
    "read_predictions",
    "validate_predictions",
    "write_predictions",
    "write_report",
    "zero_shot_triplets",
]

if TYPE_CHECKING:
    from basgg.evaluation.confusion import PredicateConfusion, image_confusion
    from basgg.evaluation.matching import rank_relations, ranking_scores
    from basgg.evaluation.metrics import SGEvaluator, evaluate
    from basgg.evaluation.predictions import (
        PredictionsFile,
        open_predictions,
        read_predictions,
        validate_predictions,
        write_predictions,
    )
    from basgg.evaluation.report import evaluate_file, format_table, write_report
    from basgg.evaluation.results import EvaluationResult, aggregate
    from basgg.evaluation.zero_shot import load_zero_shot_file, zero_shot_triplets


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'basgg.evaluation' has no attribute {name!r}")
    module = importlib.import_module(f"basgg.evaluation.{_EXPORTS[name]}")
    return getattr(module, name)
