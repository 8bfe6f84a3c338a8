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
import os

from basgg.config import Config, load_config
from basgg.output_lock import is_main_process
from basgg.training.launch import default_world_size, launch
from basgg.training.runs import train
from basgg.training.setup import resolve_config_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML file of config overrides, or a packaged one: synthvg_predcls.yaml"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--resume-anyway",
        action="store_true",
        help="resume OUTPUT_DIR/model_last.pth even though the config differs from the one it "
        "was trained with (default: refuse, naming the differing keys)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="training processes on this machine, started without torchrun (0: one per GPU, "
        "or per usable CPU core); they share each global batch, so the result is that of one "
        "process (docs/speed.md: when it pays on a CPU)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY VALUE",
        help="config overrides, e.g. SOLVER.MAX_ITER 100",
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(resolve_config_path(args.config), args.overrides)
    if args.nproc < 0:
        raise ValueError(f"--nproc must be >= 0, got {args.nproc}")
    device = config.MODEL.DEVICE
    processes = args.nproc or default_world_size(device, config.SOLVER.IMS_PER_BATCH)
    if processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--nproc: already running under torchrun; use one or the other")
    launch(
        train_and_report,
        (config, not args.no_progress, args.resume_anyway),
        world_size=processes,
        device=device,
    )
    return 0


def train_and_report(config: Config, progress: bool, resume_anyway: bool) -> None:
    """Train, then (main process) print the best validation score."""
    state = train(config, progress=progress, resume_anyway=resume_anyway)
    if state.best_iteration >= 0 and is_main_process():
        metric = config.SOLVER.BEST_METRIC
        print(
            f"best val {metric} {100 * state.best_metric:.2f} at iteration {state.best_iteration}",
            flush=True,
        )
