"""``basgg test --config FILE [KEY VALUE ...]``: predict the test split and score it.

The weights come from, in this order: ``--checkpoint FILE``; ``OUTPUT_DIR/model_best.pth``,
``model_final.pth`` or ``model_last.pth`` (the first that exists); else
``MODEL.PRETRAINED_MODEL_CKPT``. The checkpoint holds the whole model (backbone included),
so no pretrained asset is needed. Writes ``OUTPUT_DIR/inference/<split>/predictions.h5``
(readable by ``basgg eval``) and the evaluation report beside it, and prints the metrics table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from basgg.config import Config, load_config
from basgg.data.vocabulary import Vocabulary
from basgg.evaluation import format_table, write_predictions, write_report
from basgg.models import SceneGraphModel, uses_detector
from basgg.training.checkpoint import (
    BEST_CHECKPOINT,
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    CheckpointError,
    read_checkpoint,
)
from basgg.training.distributed import DistributedContext
from basgg.training.inference import predict_split
from basgg.training.setup import (
    build_dataset,
    check_stage,
    make_evaluator_factory,
    prepare_split,
    resolve_config_path,
    split_zero_shot_triplets,
    sync_detector_config,
)
from basgg.training.stages import build_trained_model

PREDICTIONS_FILE = "predictions.h5"


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


def find_checkpoint(config: Config, checkpoint: str | None = None) -> Path:
    """The checkpoint ``basgg test`` uses (see the module docstring)."""
    if checkpoint:
        return Path(checkpoint)
    output_dir = Path(config.OUTPUT_DIR)
    for name in (BEST_CHECKPOINT, FINAL_CHECKPOINT, LAST_CHECKPOINT):
        if (output_dir / name).is_file():
            return output_dir / name
    if config.MODEL.PRETRAINED_MODEL_CKPT:
        return Path(config.MODEL.PRETRAINED_MODEL_CKPT)
    raise CheckpointError(
        f"{output_dir}: no {BEST_CHECKPOINT}, {FINAL_CHECKPOINT} or {LAST_CHECKPOINT}, and "
        "MODEL.PRETRAINED_MODEL_CKPT is empty; train first or pass --checkpoint"
    )


def load_trained_model(
    config: Config, path: Path, *, vocabulary: Vocabulary, device: torch.device
) -> SceneGraphModel:
    """The model ``config`` describes, with the weights of the checkpoint at ``path``.

    Statistics and word vectors are built as zero placeholders of the right shapes (the
    checkpoint holds the trained values); a BA-SGG stage-2 checkpoint first gets its clean
    branch and adjustment matrix so that its weights load.
    """
    checkpoint = read_checkpoint(path)
    if uses_detector(config):  # the checkpoint's detector architecture
        sync_detector_config(config, checkpoint.get("config", {}), source=str(path))
    return build_trained_model(config, checkpoint, path, vocabulary=vocabulary).to(device)


def evaluate_checkpoint(
    config: Config, *, checkpoint: str | None = None, split: str = "test", progress: bool = True
):
    """Predict and score ``split``; returns the evaluation result and the predictions path."""
    check_stage(config)
    path = find_checkpoint(config, checkpoint)
    device = torch.device(config.MODEL.DEVICE)
    context = DistributedContext(device=device)
    dataset = build_dataset(config, split)
    vocabulary = dataset.vocabulary
    model = load_trained_model(config, path, vocabulary=vocabulary, device=device)
    data = prepare_split(config, model, dataset, context=context, progress=progress)
    use_amp = config.SOLVER.AMP and device.type == "cuda"
    predictions = predict_split(
        model,
        data,
        range(len(data.inputs)),
        batch_size=config.TEST.IMS_PER_BATCH,
        amp=use_amp,
        progress=progress,
    )
    out_dir = Path(config.OUTPUT_DIR) / "inference" / split
    predictions_path = out_dir / PREDICTIONS_FILE
    write_predictions(
        predictions_path,
        predictions,
        mode=config.mode,
        predicate_names=vocabulary.predicates,
        split=split,
        val_size=config.DATASETS.VAL_SIZE,
    )
    train = build_dataset(config, "train")
    train_counts = train.relation_counts()
    ground_truths = [data.ground_truth(index) for index in range(len(data.inputs))]
    zero_shot, zero_shot_source = split_zero_shot_triplets(config, train, ground_truths)
    make_evaluator = make_evaluator_factory(
        config, vocabulary, train_counts=train_counts, zero_shot=zero_shot
    )
    evaluator = make_evaluator()
    evaluator.update(ground_truths, predictions)
    result = evaluator.compute()
    order = np.argsort(-train_counts[1:], kind="stable") + 1  # most frequent first
    extra = {
        "checkpoint": str(path),
        "split": split,
        "zero_shot": f"{len(zero_shot)} triplets: {zero_shot_source}",
    }
    write_report(result, out_dir, predicate_order=order.tolist(), extra=extra)
    return result, predictions_path
