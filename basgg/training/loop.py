"""The plain training loop (every stage runs it) and evaluation over cached features.

:func:`train_one_stage` trains from ``start_iteration`` to ``max_iter``: each iteration reads
the cached features of its images (no backbone pass), samples pairs, steps SGD over the
parameters it is given (a stage chooses them), validates every ``val_period`` iterations,
keeps the best checkpoint and writes ``model_last.pth`` every ``checkpoint_period``. Batch
order and every random draw of data loading and pair sampling are functions of
(seed, position in the stream of images), and the checkpoint holds the optimiser, schedule,
scaler and RNG states, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from basgg.evaluation import SGEvaluator
from basgg.models.sgg_model import SceneGraphModel
from basgg.structures import SceneGraph
from basgg.training.caches import SplitData
from basgg.training.checkpoint import (
    BEST_CHECKPOINT,
    CHECKPOINT_FORMAT,
    LAST_CHECKPOINT,
    atomic_save,
    capture_rng_state,
)
from basgg.training.distributed import (
    DistributedContext,
    all_gather_object,
    all_reduce_sum,
    barrier,
    batch_items,
    broadcast_object,
    mix_seed,
    sum_gradients,
)
from basgg.training.logs import TrainingLog
from basgg.training.schedule import LearningRateSchedule
from basgg.training.split_scoring import autocast, evaluate

METRIC_PATTERN = re.compile(r"^(R|mR|ngR|ngmR|A|F)@(\d+)$")
LOSS_NAMES = ("loss_relation", "loss_object", "loss_tree")


@dataclass
class TrainingSettings:
    """What :func:`train_one_stage` needs beyond the model, data and optimiser.

    Attributes:
        max_iter: train until this many iterations are done.
        batch_size: images per iteration over all processes (``SOLVER.IMS_PER_BATCH``).
        seed: fixes the image order and every random draw of data loading and sampling.
        grad_clip: largest gradient norm (0: no clipping).
        amp: use float16 autocast and a gradient scaler (CUDA only).
        val_period: iterations between validations (0: never).
        checkpoint_period: iterations between ``model_last.pth`` writes (0: only at the end).
        best_metric: validation metric selecting ``model_best.pth`` (higher is better).
        schedule_metric: validation metric fed to the plateau schedule.
        val_batch_size: images per prediction batch in validation.
        max_val_images: validate on the first images only (-1: all).
        log_period: iterations between CSV log rows.
        output_dir: where checkpoints and logs go.
        checkpoint_extra: plain values stored in every checkpoint (config, vocabulary,
            model_info).
        progress: show a tqdm bar (main process only).
    """

    max_iter: int
    batch_size: int
    seed: int = 0
    grad_clip: float = 5.0
    amp: bool = False
    val_period: int = 0
    checkpoint_period: int = 0
    best_metric: str = "mR@50"
    schedule_metric: str = "R@100"
    val_batch_size: int = 8
    max_val_images: int = -1
    log_period: int = 20
    output_dir: Path = Path(".")
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)
    progress: bool = True


@dataclass
class TrainingState:
    """Where a run stands: iterations done and the best validation so far."""

    iteration: int = 0
    best_metric: float | None = None
    best_iteration: int = -1
    last_metrics: dict[str, float] = field(default_factory=dict)


def check_metric_name(name: str, ks: Sequence[int], key: str) -> None:
    """Raise ``ValueError`` unless ``name`` is like ``mR@50`` with K among ``ks``."""
    match = METRIC_PATTERN.match(name)
    if match is None or int(match.group(2)) not in ks:
        raise ValueError(
            f"{key}: {name!r} is not a validation metric; use R@K, mR@K, ngR@K, ngmR@K, A@K "
            f"or F@K with K in TEST.TOP_KS {list(ks)}"
        )


@dataclass
class TrainingBatch:
    """One process's share of a batch: targets, cached features and sampling generators.

    ``proposals`` and ``detector_logits`` are the SGDet inputs (``None`` otherwise).
    """

    targets: list[SceneGraph]
    object_features: list[torch.Tensor]
    union_features: list[torch.Tensor]
    generators: list[torch.Generator]
    proposals: list[SceneGraph] | None = None
    detector_logits: list[torch.Tensor] | None = None


def load_batch(split: SplitData, items: Sequence[tuple[int, int]], *, seed: int) -> TrainingBatch:
    """Training targets, cached features and pair-sampling generators of ``items``.

    Each ``(position, index)`` loads its target with a generator seeded by (seed, position),
    so the duplicate-relation choice is reproducible, and gets a pair-sampling generator
    seeded likewise.
    """
    sgdet = split.detector_logits is not None
    batch = TrainingBatch(
        targets=[],
        object_features=[],
        union_features=[],
        generators=[],
        proposals=[] if sgdet else None,
        detector_logits=[] if sgdet else None,
    )
    for position, index in items:
        choice = torch.Generator().manual_seed(mix_seed(seed, position, 0))
        target = split.dataset.target(index, generator=choice)  # torch's global RNG untouched
        boxes = split.inputs[index] if sgdet else target
        if boxes.num_objects != int(split.features.num_objects[index]):
            raise ValueError(
                f"train image {index} (image_id {target.image_id}): {boxes.num_objects} boxes "
                f"but the feature cache has {int(split.features.num_objects[index])}"
            )
        batch.targets.append(target)
        batch.generators.append(torch.Generator().manual_seed(mix_seed(seed, position, 1)))
        if sgdet:
            batch.proposals.append(split.inputs[index])
            batch.detector_logits.append(split.detector_logits[index])
    batch.object_features, batch.union_features = split.features.take([index for _, index in items])
    return batch


def train_step(
    model: SceneGraphModel,
    split: SplitData,
    items: Sequence[tuple[int, int]],
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    parameters: list[nn.Parameter],
    settings: TrainingSettings,
    context: DistributedContext,
) -> dict[str, float]:
    """One SGD step on this process's share of a global batch; returns the batch's losses.

    Each loss is weighted by this process's share of what it averages over (pairs,
    objects, images), and gradients are summed over processes, so the step equals the
    one-process step on the whole global batch.
    """
    batch = load_batch(split, items, seed=settings.seed)
    with autocast(context.device, settings.amp):
        losses, counts = model.training_losses(
            batch.targets,
            batch.object_features,
            batch.union_features,
            generators=batch.generators,
            proposals=batch.proposals,
            detector_logits=batch.detector_logits,
        )
    names = [name for name in LOSS_NAMES if name in losses]
    local = torch.tensor([float(counts[name]) for name in names], dtype=torch.float64)
    total_counts = all_reduce_sum(local.clone(), context).clamp(min=1.0)
    weights = (local / total_counts).tolist()
    total = sum(losses[name].float() * weight for name, weight in zip(names, weights, strict=True))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    sum_gradients(parameters, context)
    scaler.unscale_(optimizer)
    if settings.grad_clip > 0:
        nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    reported = torch.tensor(
        [
            float(losses[name].detach()) * weight
            for name, weight in zip(names, weights, strict=True)
        ],
        dtype=torch.float64,
    )
    reported = all_reduce_sum(reported, context).tolist()
    values = dict(zip(names, reported, strict=True))
    values["loss"] = sum(reported)
    return values


def train_one_stage(
    model: SceneGraphModel,
    train: SplitData,
    *,
    val: SplitData | Callable[[], SplitData] | None,
    make_evaluator: Callable[[], SGEvaluator],
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    scaler: torch.amp.GradScaler,
    parameters: list[nn.Parameter],
    settings: TrainingSettings,
    state: TrainingState,
    context: DistributedContext,
    log: TrainingLog | None = None,
) -> TrainingState:
    """Train ``parameters`` from ``state.iteration`` to ``settings.max_iter``.

    Args:
        model: the model (its frozen parts stay frozen: only ``parameters`` step).
        train: the training split with cached features.
        val: the validation split, a function giving it (called at the first validation,
            e.g. while another process still extracts its features), or ``None`` (no
            validation, no best checkpoint).
        make_evaluator: a fresh evaluator for each validation.
        optimizer: over ``parameters``.
        schedule: sets the rate before each step; fed the validation metric.
        scaler: gradient scaler (disabled unless mixed precision runs).
        parameters: what trains in this stage.
        settings: see :class:`TrainingSettings`.
        state: iterations done and best metric so far (restored when resuming).
        context: the process group.
        log: CSV (and TensorBoard) log, main process only.

    Returns:
        The final state. ``model_last.pth`` holds it on disk.
    """

    def step(items: Sequence[tuple[int, int]]) -> dict[str, float]:
        return train_step(
            model,
            train,
            items,
            optimizer=optimizer,
            scaler=scaler,
            parameters=parameters,
            settings=settings,
            context=context,
        )

    val_split: list[SplitData] = [] if val is None or callable(val) else [val]

    def validate() -> None:
        if not val_split:
            val_split.append(val())  # type: ignore[misc]
        validate_and_select(
            model,
            val_split[0],
            make_evaluator=make_evaluator,
            schedule=schedule,
            settings=settings,
            state=state,
            context=context,
            log=log,
            optimizer=optimizer,
            scaler=scaler,
        )

    return run_iterations(
        model,
        num_items=len(train.inputs),
        step=step,
        validate=validate if val is not None else None,
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        settings=settings,
        state=state,
        context=context,
        log=log,
    )


def run_iterations(
    model: nn.Module,
    *,
    num_items: int,
    step: Callable[[Sequence[tuple[int, int]]], dict[str, float]],
    validate: Callable[[], object] | None,
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    scaler: torch.amp.GradScaler,
    settings: TrainingSettings,
    state: TrainingState,
    context: DistributedContext,
    log: TrainingLog | None = None,
    description: str = "train",
    postfix: Callable[[dict[str, float]], dict[str, str]] | None = None,
) -> TrainingState:
    """The plain loop every training in basgg runs (relation stages and the detector).

    From ``state.iteration`` to ``settings.max_iter`` (or the plateau schedule's stop): set the
    rate, take this process's share of the iteration's global batch (a function of the seed
    and the position in the image stream), call ``step`` on it, log the window's mean losses
    every ``log_period``, ``validate`` every ``val_period`` and write ``model_last.pth``
    every ``checkpoint_period`` and at the end.

    Args:
        model: what ``step`` trains (put in train mode; saved in checkpoints).
        num_items: training images.
        step: ``(position, index)`` items -> the batch's losses (with ``"loss"``, the total).
        validate: scores val, feeds the schedule, keeps the best checkpoint; None: never.
        description: the progress bar's label.
        postfix: losses -> extra fields shown on the progress bar.
    """
    model.train()
    bar = tqdm(
        total=settings.max_iter,
        initial=state.iteration,
        disable=not (settings.progress and context.is_main),
        desc=description,
        dynamic_ncols=True,
    )
    window: dict[str, list[float]] = {}
    start_time = time.perf_counter()
    while state.iteration < settings.max_iter and not schedule.should_stop:
        iteration = state.iteration
        rate = schedule.apply(iteration)
        items = batch_items(
            iteration,
            num_items=num_items,
            batch_size=settings.batch_size,
            seed=settings.seed,
            context=context,
        )
        values = step(items)
        if not all(math.isfinite(value) for value in values.values()):
            raise FloatingPointError(f"iteration {iteration}: non-finite loss {values}")
        state.iteration = iteration + 1
        for name, value in values.items():
            window.setdefault(name, []).append(value)
        bar.update(1)
        extra = postfix(values) if postfix is not None else {}
        bar.set_postfix(loss=f"{values['loss']:.4f}", **extra, lr=f"{rate:.2e}", refresh=False)
        if log is not None and (
            state.iteration % settings.log_period == 0 or state.iteration == settings.max_iter
        ):
            means = {name: sum(v) / len(v) for name, v in window.items()}
            log.training(state.iteration, rate, means, time.perf_counter() - start_time)
            window.clear()
        if (
            validate is not None
            and settings.val_period
            and state.iteration % settings.val_period == 0
        ):
            validate()
            model.train()
        if settings.checkpoint_period and state.iteration % settings.checkpoint_period == 0:
            save_training_checkpoint(
                settings.output_dir / LAST_CHECKPOINT,
                model,
                optimizer=optimizer,
                schedule=schedule,
                scaler=scaler,
                state=state,
                settings=settings,
                context=context,
            )
    bar.close()
    save_training_checkpoint(
        settings.output_dir / LAST_CHECKPOINT,
        model,
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        state=state,
        settings=settings,
        context=context,
    )
    return state


def validate_and_select(
    model: SceneGraphModel,
    val: SplitData,
    *,
    make_evaluator: Callable[[], SGEvaluator],
    schedule: LearningRateSchedule,
    settings: TrainingSettings,
    state: TrainingState,
    context: DistributedContext,
    log: TrainingLog | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> dict[str, float]:
    """Validate (every process predicts a share, the main process scores), feed the schedule,
    save ``model_best.pth`` on a new best."""
    metrics: dict[str, float] | None = None
    result = evaluate(
        model,
        val,
        make_evaluator() if context.is_main else None,  # type: ignore[arg-type]
        batch_size=settings.val_batch_size,
        max_images=settings.max_val_images,
        amp=settings.amp,
        context=context,
    )
    if result is not None:
        metrics = {key: float(value) for key, value in result.metrics.items()}
    metrics = broadcast_object(metrics, context)  # type: ignore[assignment]
    schedule.record_validation(_finite(metrics.get(settings.schedule_metric)))
    value = _finite(metrics.get(settings.best_metric))
    improved = state.best_metric is None or value > state.best_metric
    if improved:
        state.best_metric, state.best_iteration = value, state.iteration
    state.last_metrics = metrics
    if log is not None:
        log.validation(state.iteration, metrics, best=improved)
    if improved:
        save_training_checkpoint(
            settings.output_dir / BEST_CHECKPOINT,
            model,
            optimizer=None,
            schedule=None,
            scaler=None,
            state=state,
            settings=settings,
            context=context,
        )
    return metrics


def _finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else 0.0


def save_training_checkpoint(
    path: Path,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None,
    schedule: LearningRateSchedule | None,
    scaler: torch.amp.GradScaler | None,
    state: TrainingState,
    settings: TrainingSettings,
    context: DistributedContext,
) -> None:
    """Write a checkpoint atomically from the main process (weights only when
    ``optimizer`` is None); every process waits for it. ``rng`` lists each process's states."""
    rng_states = all_gather_object(capture_rng_state(), context) if optimizer is not None else []
    if context.is_main:
        checkpoint: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "iteration": state.iteration,
            "best_metric": state.best_metric,
            "best_iteration": state.best_iteration,
            "metrics": dict(state.last_metrics),
            **settings.checkpoint_extra,
        }
        if optimizer is not None:
            checkpoint["optimizer"] = optimizer.state_dict()
            checkpoint["schedule"] = schedule.state_dict() if schedule is not None else {}
            checkpoint["scaler"] = scaler.state_dict() if scaler is not None else {}
            checkpoint["rng"] = rng_states
        atomic_save(checkpoint, path)
    barrier(context)


def restore_training_state(
    checkpoint: dict[str, Any],
    *,
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    scaler: torch.amp.GradScaler,
) -> TrainingState:
    """Load the optimiser, schedule and scaler states of a ``model_last.pth`` checkpoint
    (the caller loads the model and the RNG states)."""
    saved_groups = len(checkpoint["optimizer"].get("param_groups", []))
    if saved_groups != len(optimizer.param_groups):
        raise ValueError(
            f"the checkpoint's optimizer has {saved_groups} parameter group(s), this run "
            f"{len(optimizer.param_groups)} (SGB's weight and bias groups; checkpoints of "
            "basgg before them had one): resume is not possible, start a fresh OUTPUT_DIR "
            "or start from its weights with MODEL.PRETRAINED_MODEL_CKPT"
        )
    optimizer.load_state_dict(checkpoint["optimizer"])
    schedule.load_state_dict(checkpoint["schedule"])
    if checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    return TrainingState(
        iteration=int(checkpoint["iteration"]),
        best_metric=checkpoint.get("best_metric"),
        best_iteration=int(checkpoint.get("best_iteration", -1)),
        last_metrics=dict(checkpoint.get("metrics") or {}),
    )
