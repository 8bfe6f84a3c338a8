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
from pathlib import Path

from basgg.config import Config, load_config, save_config
from basgg.data.vocabulary import Vocabulary
from basgg.evaluation import rank_relations
from basgg.models import SceneGraphModel, build_model, uses_detector
from basgg.training.checkpoint import (
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    check_model_fits,
    load_model_weights,
    read_checkpoint,
    restore_rng_state,
)
from basgg.training.detector_training import load_detector
from basgg.training.distributed import (
    DistributedContext,
    broadcast_model,
    init_distributed,
    shutdown_distributed,
    use_global_batch_norm,
)
from basgg.training.logs import TrainingLog
from basgg.training.loop import (
    TrainingSettings,
    TrainingState,
    check_metric_name,
    restore_training_state,
    save_training_checkpoint,
    train_one_stage,
)
from basgg.training.setup import (
    backbone_weights,
    build_dataset,
    build_optimization,
    check_stage,
    checkpoint_extra,
    detector_checkpoint,
    frequency_table,
    make_evaluator_factory,
    model_info,
    prepare_split,
    resolve_config_path,
    seed_everything,
    sync_detector_config,
    word_vectors,
)
from basgg.training.stages import (
    balanced_train_split,
    check_stage_two_inputs,
    is_stage_two,
    setup_stage_two,
)


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


def train(config: Config, *, progress: bool = True) -> TrainingState:
    """Run (or resume) the training ``config`` describes; returns the final state."""
    check_stage(config, training=True)
    check_stage_two_inputs(config)
    context = init_distributed(config.MODEL.DEVICE)
    try:
        return _train(config, context, progress=progress)
    finally:
        shutdown_distributed()


def _load_detector_weights(
    config: Config, model: SceneGraphModel, vocabulary: Vocabulary, *, feature_heads: bool = True
) -> None:
    """Give the model the weights of ``MODEL.PRETRAINED_DETECTOR_CKPT`` (SGDet's detector,
    the detector features' trunk and, with ``feature_heads``, their starting box head).

    Raises:
        CheckpointError: naming the file when it is not a detector checkpoint or its classes
            are not the dataset's objects.
    """
    detector, _ = load_detector(
        Path(config.MODEL.PRETRAINED_DETECTOR_CKPT), object_names=vocabulary.objects
    )
    model.load_detector(detector, feature_heads=feature_heads)


def _train(config: Config, context: DistributedContext, *, progress: bool) -> TrainingState:
    solver = config.SOLVER
    check_metric_name(solver.BEST_METRIC, config.TEST.TOP_KS, "SOLVER.BEST_METRIC")
    if solver.SCHEDULE.TYPE == "WarmupReduceLROnPlateau":
        check_metric_name(solver.SCHEDULE.METRIC, config.TEST.TOP_KS, "SOLVER.SCHEDULE.METRIC")
    output_dir = Path(config.OUTPUT_DIR)
    with_detector = uses_detector(config)  # SGDet or the detector's relation features
    if with_detector:  # build the detector its checkpoint holds
        source = detector_checkpoint(config)
        sync_detector_config(config, read_checkpoint(source)["config"], source=source)
    seed_everything(config.SEED)  # the same initial weights in every process
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir / "config.yaml")
    train_dataset = build_dataset(config, "train")
    train_counts = train_dataset.relation_counts()  # before BPL: the predicate groups
    val_dataset = build_dataset(config, "val") if config.DATASETS.VAL_SIZE > 0 else None
    vocabulary = train_dataset.vocabulary
    model = build_model(
        config,
        vocabulary=vocabulary,
        frequency_bias_init=frequency_table(config, context),
        object_word_vectors=word_vectors(config, vocabulary.objects),
        backbone_weights=backbone_weights(config),
        rank_relations=rank_relations,
    )
    parameters = list(model.parameters())
    if is_stage_two(config):
        parameters = setup_stage_two(config, model, model_info=model_info(model, vocabulary))
    if with_detector and config.MODEL.PRETRAINED_DETECTOR_CKPT:  # stage 2 keeps its heads
        _load_detector_weights(config, model, vocabulary, feature_heads=not is_stage_two(config))
    model.to(context.device)
    broadcast_model(model, context)
    if context.enabled:
        use_global_batch_norm(model.relation_head)
    seed_everything(config.SEED, context.rank)
    info = model_info(model, vocabulary)
    train_split = prepare_split(config, model, train_dataset, context=context, progress=progress)
    train_split, selection = balanced_train_split(config, train_split)  # BA-SGG BPL
    if selection is not None and context.is_main:
        print(selection.describe() + f"; {len(train_split.inputs)} train images", flush=True)
    val_split = None
    if val_dataset is not None and len(val_dataset):
        val_split = prepare_split(config, model, val_dataset, context=context, progress=progress)

    parameters = [p for p in parameters if p.requires_grad]
    optimizer, schedule, scaler = build_optimization(config, parameters, context.device)
    use_amp = scaler.is_enabled()
    state = TrainingState()
    last = output_dir / LAST_CHECKPOINT
    if last.exists():
        checkpoint = read_checkpoint(last)
        check_model_fits(checkpoint, last, model=model, model_info=info)
        model.load_state_dict(checkpoint["model"])
        state = restore_training_state(
            checkpoint, optimizer=optimizer, schedule=schedule, scaler=scaler
        )
        rng = checkpoint["rng"]
        restore_rng_state(rng[context.rank] if len(rng) == context.world_size else rng[0])
        if context.is_main:
            print(f"resuming from {last} at iteration {state.iteration}")
    elif config.MODEL.PRETRAINED_MODEL_CKPT and not is_stage_two(config):
        load_model_weights(config.MODEL.PRETRAINED_MODEL_CKPT, model, model_info=info)
        if with_detector and config.MODEL.PRETRAINED_DETECTOR_CKPT:  # the inputs' detector
            _load_detector_weights(config, model, vocabulary, feature_heads=False)

    settings = TrainingSettings(
        max_iter=solver.MAX_ITER,
        batch_size=solver.IMS_PER_BATCH,
        seed=config.SEED,
        grad_clip=solver.GRAD_NORM_CLIP,
        amp=use_amp,
        val_period=solver.VAL_PERIOD,
        checkpoint_period=solver.CHECKPOINT_PERIOD,
        best_metric=solver.BEST_METRIC,
        schedule_metric=solver.SCHEDULE.METRIC,
        val_batch_size=config.TEST.IMS_PER_BATCH,
        max_val_images=config.TEST.MAX_VAL_IMAGES,
        log_period=solver.LOG_PERIOD,
        output_dir=output_dir,
        checkpoint_extra=checkpoint_extra(config, vocabulary, model_info=info),
        progress=progress,
    )
    log = TrainingLog(output_dir, resume_iteration=state.iteration) if context.is_main else None
    try:
        state = train_one_stage(
            model,
            train_split,
            val=val_split,
            make_evaluator=make_evaluator_factory(config, vocabulary, train_counts=train_counts),
            optimizer=optimizer,
            schedule=schedule,
            scaler=scaler,
            parameters=parameters,
            settings=settings,
            state=state,
            context=context,
            log=log,
        )
    finally:
        if log is not None:
            log.close()
    save_training_checkpoint(
        output_dir / FINAL_CHECKPOINT,
        model,
        optimizer=None,
        schedule=None,
        scaler=None,
        state=state,
        settings=settings,
        context=context,
    )
    return state
