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
from pathlib import Path

import numpy as np
import torch

from basgg.commands.test import find_checkpoint, load_trained_model
from basgg.config import Config, load_config
from basgg.evaluation.confusion import PredicateConfusion
from basgg.evaluation.hierarchy import predicate_hierarchy, write_hierarchy
from basgg.evaluation.report import plot_confusion
from basgg.structures import Mode
from basgg.threads import apply_threads
from basgg.training.checkpoint import read_checkpoint
from basgg.training.distributed import DistributedContext
from basgg.training.inference import predict_split
from basgg.training.setup import (
    build_dataset,
    prepare_split,
    resolve_config_path,
)

MATRIX_FILE = "confusion_matrix.npy"
HEATMAP_FILE = "confusion_matrix.png"


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


def compute_confusion_matrix(
    config: Config, *, checkpoint: str | None = None, progress: bool = True
) -> Path:
    """Count the stage-1 model's train-split confusions; returns the ``.npy`` path."""
    apply_threads(config.NUM_THREADS)
    if config.mode is not Mode.PREDCLS:
        raise ValueError(
            "MODEL.ROI_RELATION_HEAD.USE_GT_BOX / USE_GT_OBJECT_LABEL: the confusion matrix "
            "is computed in PredCls (both True)"
        )
    head = config.MODEL.ROI_RELATION_HEAD
    if head.WITH_CLEAN_CLASSIFIER or head.WITH_TRANSFER_CLASSIFIER:
        raise ValueError(
            "MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER / WITH_TRANSFER_CLASSIFIER: the "
            "confusion matrix comes from the stage-1 model (both False)"
        )
    path = find_checkpoint(config, checkpoint)
    state = read_checkpoint(path)
    if state["model_info"].get("clean_branch"):
        raise ValueError(f"{path}: a stage-2 checkpoint; the confusion matrix needs stage 1")
    device = torch.device(config.MODEL.DEVICE)
    dataset = build_dataset(config, "train")
    vocabulary = dataset.vocabulary
    model = load_trained_model(config, path, vocabulary=vocabulary, device=device)
    context = DistributedContext(device=device)
    data = prepare_split(
        config, model, dataset, context=context, progress=progress, ground_truth_inputs=True
    )
    predictions = predict_split(
        model,
        data,
        range(len(data.inputs)),
        batch_size=config.TEST.IMS_PER_BATCH,
        progress=progress,
    )
    confusion = PredicateConfusion(num_predicates=vocabulary.num_predicates)
    confusion.update(data.inputs, predictions)  # the ground truths, every raw row
    counts = confusion.compute()  # (P + 1, P + 1)
    output_dir = Path(config.OUTPUT_DIR)
    output_dir.mkdir(parents=True, exist_ok=True)
    matrix_path = output_dir / MATRIX_FILE
    np.save(matrix_path, counts)
    plot_confusion(
        counts,
        output_dir / HEATMAP_FILE,
        names=vocabulary.predicates,
        title="stage-1 PredCls confusion on train (row-normalised)",
    )
    write_hierarchy(predicate_hierarchy(counts, vocabulary.predicates), output_dir)
    return matrix_path
