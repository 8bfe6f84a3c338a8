"""``basgg test --config FILE [KEY VALUE ...]``: predict the test split and score it.

The weights come from, in this order: ``--checkpoint FILE``; ``OUTPUT_DIR/model_best.pth``,
``model_final.pth`` or ``model_last.pth`` (the first that exists); else
``MODEL.PRETRAINED_MODEL_CKPT``. The checkpoint holds the whole model (backbone included),
so no pretrained asset is needed. Writes ``OUTPUT_DIR/inference/<split>/predictions.h5``
(readable by ``basgg eval``) and the evaluation report beside it, and prints the metrics table.
"""

from __future__ import annotations

import argparse

from basgg.config import load_config
from basgg.evaluation import format_table
from basgg.training.runs import evaluate_checkpoint
from basgg.training.setup import resolve_config_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML file of config overrides, or a packaged one: synthvg_predcls.yaml"
    )
    parser.add_argument("--checkpoint", help="weights to test (default: see above)")
    parser.add_argument("--split", default="test", choices=("test", "val"), help="split to score")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY VALUE", help="config overrides, e.g. TEST.TOP_KS 20,50"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(resolve_config_path(args.config), args.overrides)
    result, predictions_path = evaluate_checkpoint(
        config, checkpoint=args.checkpoint, split=args.split, progress=not args.no_progress
    )
    print(f"predictions: {predictions_path}")
    print(format_table(result))
    return 0
