"""``basgg confmat --config FILE [KEY VALUE ...]``: BA-SGG's stage-1 predicate confusion matrix.

Runs the trained stage-1 PredCls model (weights found as ``basgg test`` finds them) in eval
mode over the **train** split and counts, for every ground-truth relation,
``C[gt_predicate, 1 + argmax(scores[1:])]`` on its (subject, object) pair
(``docs/evaluation-protocol.md`` §8). Writes ``OUTPUT_DIR/confusion_matrix.npy`` (int64, row =
ground truth, column = prediction; the file for ``MODEL.ROI_RELATION_HEAD.CONFUSION_MATRIX_FILE``)
and ``confusion_matrix.png`` (row-normalised heatmap), plus the predicate hierarchy read off the
matrix (``hierarchy.json`` / ``hierarchy.png``: each general predicate with the informative
ones it absorbs).
"""

from __future__ import annotations

import argparse

from basgg.config import load_config
from basgg.training.runs import HEATMAP_FILE, compute_confusion_matrix
from basgg.training.setup import resolve_config_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML file of config overrides, or a packaged one: synthvg_predcls.yaml"
    )
    parser.add_argument("--checkpoint", help="stage-1 weights (default: as basgg test)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE", help="config overrides")


def run(args: argparse.Namespace) -> int:
    config = load_config(resolve_config_path(args.config), args.overrides)
    path = compute_confusion_matrix(
        config, checkpoint=args.checkpoint, progress=not args.no_progress
    )
    print(f"confusion matrix: {path}\nheatmap: {path.with_name(HEATMAP_FILE)}")
    return 0
