"""Detector runs (``basgg train-detector``): train the SGDet detector, or score a checkpoint.

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

import json
import os
import time
from pathlib import Path

from basgg.config import Config, save_config
from basgg.data.vocabulary import Vocabulary
from basgg.models.detector import Detector
from basgg.models.detector_builder import detector_from_config
from basgg.threads import apply_threads
from basgg.training.checkpoint import (
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    CheckpointError,
    check_model_fits,
    read_checkpoint,
    restore_rng_state,
)
from basgg.training.detector_files import SGB_KIND, read_detector_file
from basgg.training.detector_training import (
    DETECTOR_METRIC,
    DetectorTrainingLog,
    detector_backbone_weights,
    detector_model_info,
    detector_settings_summary,
    evaluate_detector,
    load_detector,
    train_detector_loop,
)
from basgg.training.distributed import DistributedContext, init_distributed
from basgg.training.loop import (
    TrainingSettings,
    TrainingState,
    restore_training_state,
    save_training_checkpoint,
)
from basgg.training.setup import (
    build_dataset,
    build_optimization,
    checkpoint_extra,
    seed_everything,
)

METRICS_FILE = "detector_metrics.json"


def train_detector(config: Config, *, progress: bool = True) -> dict:
    """Run (or resume) the detector training ``config`` describes, then score the final
    weights on test; returns (and writes) the metrics."""
    solver = config.SOLVER
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("basgg train-detector runs in one process; do not start it with torchrun")
    context = init_distributed(config.MODEL.DEVICE)
    apply_threads(config.NUM_THREADS)
    output_dir = Path(config.OUTPUT_DIR)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, output_dir / "config.yaml")
    seed_everything(config.SEED)
    train_dataset = build_dataset(config, "train")
    val_dataset = build_dataset(config, "val") if config.DATASETS.VAL_SIZE > 0 else None
    vocabulary = train_dataset.vocabulary
    detector = detector_from_config(
        config,
        num_classes=vocabulary.num_objects,
        backbone_weights=detector_backbone_weights(config),
    ).to(context.device)
    info = detector_model_info(detector, vocabulary.objects)
    parameters = [weight for weight in detector.parameters() if weight.requires_grad]
    optimizer, schedule, scaler = build_optimization(config, parameters, context.device)
    use_amp = scaler.is_enabled()
    state = TrainingState()
    last = output_dir / LAST_CHECKPOINT
    if last.exists():
        checkpoint = read_checkpoint(last)
        check_model_fits(checkpoint, last, model=detector, model_info=info)
        detector.load_state_dict(checkpoint["model"])
        state = restore_training_state(
            checkpoint, optimizer=optimizer, schedule=schedule, scaler=scaler
        )
        restore_rng_state(checkpoint["rng"][0])
        print(f"resuming from {last} at iteration {state.iteration}")
    elif config.MODEL.PRETRAINED_DETECTOR_CKPT:
        path = Path(config.MODEL.PRETRAINED_DETECTOR_CKPT)
        kind, pretrained = read_detector_file(path)
        if kind == SGB_KIND:
            raise CheckpointError(
                f"{path}: a Scene-Graph-Benchmark detector; basgg train-detector does not "
                f"fine-tune it (score it with --eval-only --checkpoint {path})"
            )
        check_model_fits(pretrained, path, model=detector, model_info=info)
        detector.load_state_dict(pretrained["model"])
    settings = TrainingSettings(
        max_iter=solver.MAX_ITER,
        batch_size=solver.IMS_PER_BATCH,
        seed=config.SEED,
        grad_clip=solver.GRAD_NORM_CLIP,
        amp=use_amp,
        val_period=solver.VAL_PERIOD if val_dataset is not None and len(val_dataset) else 0,
        checkpoint_period=solver.CHECKPOINT_PERIOD,
        best_metric=DETECTOR_METRIC,
        schedule_metric=DETECTOR_METRIC,
        val_batch_size=config.TEST.IMS_PER_BATCH,
        max_val_images=config.TEST.MAX_VAL_IMAGES,
        log_period=solver.LOG_PERIOD,
        output_dir=output_dir,
        checkpoint_extra=checkpoint_extra(config, vocabulary, model_info=info),
        progress=progress,
    )
    if progress:
        print(
            f"detector: {detector_settings_summary(config.MODEL.DETECTOR)}; "
            f"{len(train_dataset)} train images, {sum(weight.numel() for weight in parameters):,} "
            "trainable parameters"
        )
    log = DetectorTrainingLog(output_dir, resume_iteration=state.iteration)
    start = time.perf_counter()
    start_iteration = state.iteration
    try:
        state = train_detector_loop(
            detector,
            train_dataset,
            val=val_dataset,
            optimizer=optimizer,
            schedule=schedule,
            scaler=scaler,
            parameters=parameters,
            settings=settings,
            state=state,
            log=log,
        )
    finally:
        log.close()
    train_seconds = time.perf_counter() - start
    save_training_checkpoint(
        output_dir / FINAL_CHECKPOINT,
        detector,
        optimizer=None,
        schedule=None,
        scaler=None,
        state=state,
        settings=settings,
        context=DistributedContext(device=context.device),
    )
    metrics = score_on_test(config, detector, vocabulary, progress=progress, amp=use_amp)
    metrics["checkpoint"] = str(output_dir / FINAL_CHECKPOINT)
    metrics["iterations"] = state.iteration
    metrics["train_seconds_this_run"] = round(train_seconds, 1)
    metrics["iterations_this_run"] = state.iteration - start_iteration
    if state.best_iteration >= 0:
        metrics["val_best"] = {
            DETECTOR_METRIC: state.best_metric,
            "iteration": state.best_iteration,
        }
    return write_metrics(config, metrics)


def evaluate_detector_checkpoint(
    config: Config, checkpoint: Path, *, progress: bool = True
) -> dict:
    """Score a trained detector checkpoint on the config's test split; returns (and writes)
    the metrics. The architecture and classes come from the checkpoint."""
    context = init_distributed(config.MODEL.DEVICE)
    apply_threads(config.NUM_THREADS)
    dataset = build_dataset(config, "test")
    detector, _ = load_detector(
        checkpoint, device=context.device, object_names=dataset.vocabulary.objects
    )
    use_amp = config.SOLVER.AMP and context.device.type == "cuda"
    metrics = score_on_test(config, detector, dataset.vocabulary, progress=progress, amp=use_amp)
    metrics["checkpoint"] = str(checkpoint)
    return write_metrics(config, metrics)


def score_on_test(
    config: Config, detector: Detector, vocabulary: Vocabulary, *, progress: bool, amp: bool
) -> dict:
    """Test mAP@50 and per-class AP (by name), with the images scored and the time taken."""
    dataset = build_dataset(config, "test")
    start = time.perf_counter()
    result = evaluate_detector(
        detector, dataset, batch_size=config.TEST.IMS_PER_BATCH, amp=amp, progress=progress
    )
    return {
        "test": {
            DETECTOR_METRIC: result.mean_ap,
            "AP50_per_class": result.named(vocabulary.objects),
            "ground_truth_boxes_per_class": {
                vocabulary.objects[label]: count
                for label, count in sorted(result.num_ground_truth.items())
            },
            "images": len(dataset),
            "seconds": round(time.perf_counter() - start, 1),
        },
        "device": str(detector.device),
    }


def write_metrics(config: Config, metrics: dict) -> dict:
    """Write ``OUTPUT_DIR/detector_metrics.json``; returns ``metrics``."""
    path = Path(config.OUTPUT_DIR) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
