"""Training and scoring the SGDet detector, and loading a trained one.

The loop follows :mod:`basgg.training.loop`'s conventions and reuses its checkpoint,
schedule, log and batch-order code: the batch of iteration ``i`` is a function of
(seed, i) (:func:`basgg.training.distributed.batch_items`), each image's horizontal flip is
drawn from a generator seeded by (seed, stream position), the sampling of anchors and
proposals uses torch's global generator, whose state ``model_last.pth`` holds with the
optimiser, schedule and scaler, so a run killed and restarted continues exactly as an
uninterrupted one. One process (no ``torchrun``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from basgg.config import Config, ConfigError, DetectorConfig, set_value
from basgg.data.vg150 import VG150Dataset
from basgg.evaluation.detection_map import DetectionEvaluator, DetectionResult
from basgg.models.detector import DETECTOR_KIND, Detector
from basgg.models.detector_builder import detector_from_config
from basgg.pretrained import AssetError, load_backbone_weights
from basgg.structures import SceneGraph
from basgg.training.caches import load_split_image
from basgg.training.checkpoint import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    CheckpointError,
    check_model_fits,
)
from basgg.training.detector_files import SGB_KIND, load_sgb_detector, read_detector_file
from basgg.training.distributed import DistributedContext, mix_seed
from basgg.training.logs import TrainingLog
from basgg.training.loop import (
    TrainingSettings,
    TrainingState,
    run_iterations,
    save_training_checkpoint,
)
from basgg.training.schedule import LearningRateSchedule
from basgg.training.setup import RANDOM
from basgg.training.split_scoring import autocast

DETECTOR_METRIC = "mAP@50"
DETECTOR_LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
DETECTOR_TRAIN_COLUMNS = ("iteration", "lr", "loss", *DETECTOR_LOSSES, "seconds")
_SHORT_NAMES = {"loss_classifier": "cls", "loss_box_reg": "box", "loss_objectness": "obj",
                "loss_rpn_box_reg": "rpn"}  # fmt: skip
_FLIP_STREAM = 7  # mix_seed stream of the flip draws


# ----------------------------------------------------------------------------- loading


def detector_backbone_weights(config: Config) -> dict[str, Tensor] | None:
    """The trunk state dict of ``MODEL.DETECTOR.BACKBONE_WEIGHTS`` ("" = the installed
    package's, a file, "random" = None)."""
    settings = config.MODEL.DETECTOR
    if settings.BACKBONE_WEIGHTS == RANDOM:
        return None
    try:
        return load_backbone_weights(settings.BACKBONE, settings.BACKBONE_WEIGHTS or None)
    except AssetError as error:
        raise ValueError(
            f"MODEL.DETECTOR.BACKBONE_WEIGHTS: {error} (or set it to random)"
        ) from error


def detector_model_info(detector: Detector, object_names: Sequence[str]) -> dict[str, Any]:
    """What a detector checkpoint's weights fit: kind, backbone, class count and names."""
    return {**detector.describe(), "object_names": list(object_names)}


def load_detector(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    object_names: Sequence[str] | None = None,
) -> tuple[Detector, list[str]]:
    """A detector checkpoint as a built detector (eval mode) and its object names (index 0
    background). Needs no asset: a ``basgg train-detector`` checkpoint gives the
    architecture in its ``MODEL.DETECTOR`` config and every weight in its ``model``; a
    Scene-Graph-Benchmark checkpoint is SGB's detector
    (:func:`basgg.training.detector_files.load_sgb_detector`; names are ``object_names``).

    Args:
        path: the checkpoint file.
        device: where the detector goes.
        object_names: when given, the classes the caller needs; other classes are an error.

    Raises:
        CheckpointError: naming ``path``: missing, corrupt, not a detector checkpoint, weights
            that do not fit its own description, or classes other than ``object_names``.
    """
    kind, state = read_detector_file(path)
    if kind == SGB_KIND:
        return load_sgb_detector(path, state, device=device, object_names=object_names)
    info = state["model_info"]
    if info.get("kind") != DETECTOR_KIND:
        raise CheckpointError(
            f"{path}: not a detector checkpoint (model_info kind {info.get('kind')!r}); "
            "train one with basgg train-detector"
        )
    names = list(info.get("object_names") or [])
    num_classes = int(info.get("num_classes", -1))
    if len(names) != num_classes:
        raise CheckpointError(
            f"{path}: model_info says {num_classes} classes but lists {len(names)} object names"
        )
    if object_names is not None and list(object_names) != names:
        raise CheckpointError(
            f"{path}: the detector was trained on {num_classes - 1} object classes "
            f"({', '.join(names[1:4])}, ...), which differ from the {len(object_names) - 1} "
            f"needed here ({', '.join(list(object_names)[1:4])}, ...)"
        )
    config = Config()
    sync_detector_config(config, state.get("config"), source=str(path), keep=())
    detector = detector_from_config(config, num_classes=num_classes, backbone_weights=None)
    check_model_fits(state, path, model=detector, model_info=detector_model_info(detector, names))
    detector.load_state_dict(state["model"])
    return detector.to(device).eval(), names


# MODEL.DETECTOR fields a relation run sets for itself; the others are the trained
# detector's architecture and always come from its checkpoint
DETECTOR_RUN_SETTINGS = ("SCORE_THRESH", "NMS_THRESH", "DETECTIONS_PER_IMG")


def sync_detector_config(
    config: Config,
    saved_config: dict | None,
    *,
    source: str,
    keep: Sequence[str] = DETECTOR_RUN_SETTINGS,
) -> None:
    """Copy the detector architecture (every ``MODEL.DETECTOR`` field but those in ``keep``)
    from a checkpoint's saved config into ``config``, so the model built from ``config`` has
    the checkpoint's detector shapes. The one way back from a checkpoint to a ``Config``.

    Raises:
        CheckpointError: naming ``source`` when the saved config has no usable
            ``MODEL.DETECTOR`` section.
    """
    saved = (saved_config or {}).get("MODEL", {}).get("DETECTOR")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{source}: the checkpoint's config has no MODEL.DETECTOR section")
    try:
        for key, value in saved.items():
            if key not in keep:
                set_value(config, f"MODEL.DETECTOR.{key}", value, source=source, from_text=False)
    except ConfigError as error:
        raise CheckpointError(f"{source}: {error}") from None


# ----------------------------------------------------------------------------- data


def flip_horizontal(image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror a (3, H, W) image and its (N, 4) xyxy boxes (x2 exclusive) left to right."""
    width = image.shape[-1]
    flipped = torch.stack(
        [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
    )  # (N, 4)
    return image.flip(-1), flipped


def detection_target(dataset: VG150Dataset, index: int) -> SceneGraph:
    """Every box of ``ground_truth(index)`` with a positive width and height, no relations."""
    truth = dataset.ground_truth(index)
    boxes = truth.boxes
    kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # (N,)
    return SceneGraph(
        boxes=boxes[kept].float(),
        labels=truth.labels[kept],
        relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
        predicates=torch.zeros((0,), dtype=torch.int64),
        image_size=truth.image_size,
        image_id=truth.image_id,
    )


def load_image_at_json_size(dataset: VG150Dataset, index: int) -> Tensor:
    """uint8 (3, H, W) image of item ``index`` at the image_data.json size its boxes use
    (resized, after the loader's warning, when the file's size differs)."""
    image = load_split_image(dataset, index)
    size = dataset.image_size(index)
    if tuple(image.shape[-2:]) == size:
        return image
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def load_training_batch(
    dataset: VG150Dataset, items: Sequence[tuple[int, int]], *, seed: int
) -> tuple[list[Tensor], list[SceneGraph]]:
    """uint8 images and detection targets of ``(stream position, index)`` items, each
    flipped with probability 1/2 by a generator seeded with (seed, position)."""
    images, targets = [], []
    for position, index in items:
        image, target = load_image_at_json_size(dataset, index), detection_target(dataset, index)
        generator = torch.Generator().manual_seed(mix_seed(seed, position, _FLIP_STREAM))
        if bool(torch.rand((), generator=generator) < 0.5):
            image, target.boxes = flip_horizontal(image, target.boxes)
        images.append(image)
        targets.append(target)
    return images, targets


# ----------------------------------------------------------------------------- evaluation


def evaluate_detector(
    detector: Detector,
    dataset: VG150Dataset,
    *,
    batch_size: int = 8,
    max_images: int = -1,
    amp: bool = False,
    progress: bool = False,
) -> DetectionResult:
    """mAP@50 of ``detector`` on the first ``max_images`` images of ``dataset`` (-1: all),
    against every ground-truth box."""
    count = len(dataset) if max_images < 0 else min(max_images, len(dataset))
    evaluator = DetectionEvaluator(iou_threshold=0.5)
    bar = tqdm(total=count, desc=f"detect {dataset.split}", disable=not progress, leave=False)
    for start in range(0, count, batch_size):
        indices = range(start, min(start + batch_size, count))
        images = [load_image_at_json_size(dataset, index) for index in indices]
        truths = [dataset.ground_truth(index) for index in indices]
        with autocast(detector.device, amp):
            detections = detector.detect(images)
        evaluator.update(
            truths,
            [
                found.as_scene_graph(truth.image_size, truth.image_id)
                for found, truth in zip(detections, truths, strict=True)
            ],
        )
        bar.update(len(indices))
    bar.close()
    return evaluator.compute()


# ----------------------------------------------------------------------------- training


class DetectorTrainingLog(TrainingLog):
    """:class:`TrainingLog` whose ``train_log.csv`` has the detector's loss columns."""

    def __init__(self, output_dir: str | Path, *, resume_iteration: int = 0) -> None:
        super().__init__(
            output_dir, resume_iteration=resume_iteration, train_columns=DETECTOR_TRAIN_COLUMNS
        )


def train_step(
    detector: Detector,
    images: list[Tensor],
    targets: list[SceneGraph],
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    parameters: list[nn.Parameter],
    grad_clip: float,
    amp: bool,
) -> dict[str, float]:
    """One SGD step on a batch; returns each loss and their sum ``loss``."""
    with autocast(detector.device, amp):
        losses = detector(images, targets)
    total = sum(losses[name].float() for name in DETECTOR_LOSSES)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.unscale_(optimizer)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(parameters, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    values = {name: float(losses[name].detach()) for name in DETECTOR_LOSSES}
    values["loss"] = sum(values.values())
    return values


def train_detector_loop(
    detector: Detector,
    train: VG150Dataset,
    *,
    val: VG150Dataset | None,
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    scaler: torch.amp.GradScaler,
    parameters: list[nn.Parameter],
    settings: TrainingSettings,
    state: TrainingState,
    log: TrainingLog | None = None,
) -> TrainingState:
    """Train from ``state.iteration`` to ``settings.max_iter`` (or the plateau schedule's
    stop), validating mAP@50 every ``val_period`` and writing ``model_last.pth`` every
    ``checkpoint_period`` and at the end."""
    context = DistributedContext(device=detector.device)

    def step(items: Sequence[tuple[int, int]]) -> dict[str, float]:
        images, targets = load_training_batch(train, items, seed=settings.seed)
        return train_step(
            detector,
            images,
            targets,
            optimizer=optimizer,
            scaler=scaler,
            parameters=parameters,
            grad_clip=settings.grad_clip,
            amp=settings.amp,
        )

    def run_validation() -> None:
        validate(detector, val, schedule=schedule, settings=settings, state=state, log=log)

    return run_iterations(
        detector,
        num_items=len(train),
        step=step,
        validate=run_validation if val is not None else None,
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        settings=settings,
        state=state,
        context=context,
        log=log,
        description="train detector",
        postfix=lambda values: {
            _SHORT_NAMES[name]: f"{values[name]:.3f}" for name in DETECTOR_LOSSES
        },
    )


def validate(
    detector: Detector,
    val: VG150Dataset,
    *,
    schedule: LearningRateSchedule,
    settings: TrainingSettings,
    state: TrainingState,
    log: TrainingLog | None,
) -> float:
    """Score val, feed the schedule, save ``model_best.pth`` on a new best; returns mAP@50."""
    result = evaluate_detector(
        detector,
        val,
        batch_size=settings.val_batch_size,
        max_images=settings.max_val_images,
        amp=settings.amp,
    )
    value = result.mean_ap if math.isfinite(result.mean_ap) else 0.0
    schedule.record_validation(value)
    improved = state.best_metric is None or value > state.best_metric
    if improved:
        state.best_metric, state.best_iteration = value, state.iteration
    state.last_metrics = {DETECTOR_METRIC: value}
    if log is not None:
        log.validation(state.iteration, state.last_metrics, best=improved)
    if improved:
        _save(detector, settings, state, path=settings.output_dir / BEST_CHECKPOINT)
    return value


def _save(
    detector: Detector,
    settings: TrainingSettings,
    state: TrainingState,
    *,
    path: Path | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: LearningRateSchedule | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    save_training_checkpoint(
        path or settings.output_dir / LAST_CHECKPOINT,
        detector,
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        state=state,
        settings=settings,
        context=DistributedContext(device=detector.device),
    )


def detector_settings_summary(settings: DetectorConfig) -> str:
    """One line describing the detector's architecture, for logs."""
    return (
        f"{settings.BACKBONE} FPN{settings.FPN_CHANNELS}, box head {settings.REPRESENTATION_SIZE}, "
        f"images {settings.MIN_SIZE}/{settings.MAX_SIZE}, {settings.TRAINABLE_LAYERS} trainable "
        f"stages, anchors {settings.ANCHOR_SIZES}"
    )
