"""``basgg train-detector --config FILE [KEY VALUE ...]``: train the SGDet detector.

Trains ``MODEL.DETECTOR`` (Faster R-CNN + FPN) on every ground-truth box of the train split
with ``SOLVER.*`` (SGD, warm-up, the schedule, gradient clipping, AMP on CUDA), validating
mAP@50 on val every ``SOLVER.VAL_PERIOD`` iterations (``SOLVER.BEST_METRIC`` and
``SOLVER.SCHEDULE.METRIC`` are not used: the detector's one metric is mAP@50). As ``basgg
train`` does, it resumes from ``OUTPUT_DIR/model_last.pth`` when that exists; otherwise it
starts from ``MODEL.PRETRAINED_DETECTOR_CKPT`` when set, else from the backbone's ImageNet
weights (``MODEL.DETECTOR.BACKBONE_WEIGHTS``).

Outputs in ``OUTPUT_DIR``: ``config.yaml``, ``model_last.pth``, ``model_best.pth`` (best val
mAP@50), ``model_final.pth``, ``train_log.csv``, ``val_log.csv`` and
``detector_metrics.json`` (test mAP@50 of the final weights, per-class AP, run facts).
``--eval-only`` scores a trained detector (``--checkpoint``, default
``OUTPUT_DIR/model_final.pth``) on the test split. One process; no ``torchrun``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from basgg.config import load_config
from basgg.training.checkpoint import FINAL_CHECKPOINT
from basgg.training.detector_runs import (
    METRICS_FILE,
    evaluate_detector_checkpoint,
    train_detector,
)
from basgg.training.detector_training import DETECTOR_METRIC
from basgg.training.setup import resolve_config_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML file of config overrides, or a packaged one: synthvg_detector.yaml"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--eval-only", action="store_true", help="only score a trained detector on the test split"
    )
    parser.add_argument(
        "--checkpoint", help="with --eval-only: the detector (default OUTPUT_DIR/model_final.pth)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY VALUE",
        help="config overrides, e.g. SOLVER.MAX_ITER 100",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(resolve_config_path(args.config), args.overrides)
    progress = not args.no_progress
    if args.eval_only:
        checkpoint = Path(args.checkpoint or Path(config.OUTPUT_DIR) / FINAL_CHECKPOINT)
        metrics = evaluate_detector_checkpoint(config, checkpoint, progress=progress)
    else:
        if args.checkpoint:
            raise ValueError("--checkpoint goes with --eval-only")
        metrics = train_detector(config, progress=progress)
    print(f"test {DETECTOR_METRIC} {100 * metrics['test'][DETECTOR_METRIC]:.2f}")
    print(f"metrics: {Path(config.OUTPUT_DIR) / METRICS_FILE}")
    return 0
