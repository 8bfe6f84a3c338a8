"""Scene-graph evaluation with Scene-Graph-Benchmark.pytorch's metrics, quirks included.

Imports only :mod:`basgg.structures` and :mod:`basgg.boxes` (never data or models), so saved
predictions are scored without a model.
"""

from basgg.evaluation.confusion import PredicateConfusion, image_confusion
from basgg.evaluation.information import (
    load_information_file,
    load_informative_file,
    predicate_information,
)
from basgg.evaluation.matching import rank_relations, ranking_scores
from basgg.evaluation.metrics import SGEvaluator, evaluate
from basgg.evaluation.predictions import (
    PredictionsFile,
    read_predictions,
    validate_predictions,
    write_predictions,
)
from basgg.evaluation.report import evaluate_file, format_table, write_report
from basgg.evaluation.results import EvaluationResult, aggregate
from basgg.evaluation.zero_shot import load_zero_shot_file, zero_shot_triplets

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
    "load_information_file",
    "load_informative_file",
    "load_zero_shot_file",
    "predicate_information",
    "rank_relations",
    "ranking_scores",
    "read_predictions",
    "validate_predictions",
    "write_predictions",
    "write_report",
    "zero_shot_triplets",
]
