"""``basgg train --config FILE [KEY VALUE ...]``: train a relation model, resuming when it can.

The resolved config is saved as ``OUTPUT_DIR/config.yaml``. If ``OUTPUT_DIR/model_last.pth``
exists the run resumes from it (model, optimiser, schedule, RNG states and position in the
data) and continues exactly as an uninterrupted run would. Otherwise, when
``MODEL.PRETRAINED_MODEL_CKPT`` is set, the model starts from that checkpoint's weights.

Outputs in ``OUTPUT_DIR``: ``model_last.pth`` (every ``SOLVER.CHECKPOINT_PERIOD`` iterations
and at the end), ``model_best.pth`` (best ``SOLVER.BEST_METRIC`` on val, default mR@50),
``model_final.pth`` (the weights at the end), ``train_log.csv``, ``val_log.csv``, the
frequency statistics and the feature caches. Under ``torchrun`` every process trains on its
share of each global batch of ``SOLVER.IMS_PER_BATCH`` images.
"""

from __future__ import annotations

import argparse

from basgg.config import load_config
from basgg.training.runs import train
from basgg.training.setup import resolve_config_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML file of config overrides, or a packaged one: synthvg_predcls.yaml"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY VALUE",
        help="config overrides, e.g. SOLVER.MAX_ITER 100",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(resolve_config_path(args.config), args.overrides)
    state = train(config, progress=not args.no_progress)
    if state.best_iteration >= 0:
        metric = config.SOLVER.BEST_METRIC
        print(
            f"best val {metric} {100 * state.best_metric:.2f} at iteration {state.best_iteration}"
        )
    return 0
