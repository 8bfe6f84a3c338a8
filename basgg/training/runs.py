"""Whole runs from a resolved config: training, evaluation of a checkpoint, BA-SGG's
stage-1 confusion matrix. The commands (``basgg train`` / ``test`` / ``confmat`` / ``demo``)
and the benchmarks only parse arguments and call these.

:func:`train` runs (or resumes) the training a config describes: the resolved config is saved
as ``OUTPUT_DIR/config.yaml``; ``OUTPUT_DIR/model_last.pth`` resumes exactly; otherwise
``MODEL.PRETRAINED_MODEL_CKPT`` gives the starting weights. :func:`evaluate_checkpoint`
predicts a split with the weights :func:`find_checkpoint` finds and writes
``OUTPUT_DIR/inference/<split>/predictions.h5`` and the report beside it.
:func:`compute_confusion_matrix` counts the stage-1 PredCls model's train-split confusions
(``docs/evaluation-protocol.md`` section 8) into ``OUTPUT_DIR/confusion_matrix.npy`` (+ heatmap
and predicate hierarchy).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from basgg.atomic import atomic_output
from basgg.config import Config, save_config
from basgg.data.vocabulary import Vocabulary
from basgg.evaluation import EvaluationResult, rank_relations, write_predictions, write_report
from basgg.evaluation.confusion import PredicateConfusion
from basgg.evaluation.hierarchy import predicate_hierarchy, write_hierarchy
from basgg.evaluation.report import plot_confusion
from basgg.models import SceneGraphModel, build_model, uses_detector
from basgg.models.concurrent_branches import enable_concurrent_branches
from basgg.output_lock import holding_output_dir, output_lock
from basgg.structures import Mode
from basgg.threads import apply_threads, is_automatic
from basgg.training.caches import SplitData, prepare_split
from basgg.training.checkpoint import (
    BEST_CHECKPOINT,
    FINAL_CHECKPOINT,
    LAST_CHECKPOINT,
    CheckpointError,
    check_model_fits,
    load_model_weights,
    read_checkpoint,
    restore_rng_state,
)
from basgg.training.detector_files import detector_file_config
from basgg.training.detector_training import load_detector, sync_detector_config
from basgg.training.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    broadcast_model,
    group_exists,
    init_distributed,
    shard,
    shutdown_distributed,
    use_global_batch_norm,
)
from basgg.training.feature_cache import FeatureCache
from basgg.training.logs import TrainingLog
from basgg.training.loop import (
    TrainingSettings,
    TrainingState,
    check_metric_name,
    restore_training_state,
    save_training_checkpoint,
    train_one_stage,
)
from basgg.training.resume import check_resume_config
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
    seed_everything,
    split_zero_shot_triplets,
    word_vectors,
)
from basgg.training.split_scoring import predict_shared, predict_split
from basgg.training.stages import (
    balanced_train_split,
    build_trained_model,
    check_stage_two_inputs,
    is_stage_two,
    setup_stage_two,
)

PREDICTIONS_FILE = "predictions.h5"
MATRIX_FILE = "confusion_matrix.npy"
HEATMAP_FILE = "confusion_matrix.png"


def train(
    config: Config,
    *,
    progress: bool = True,
    resume_anyway: bool = False,
    val_at_first_validation: bool = False,
) -> TrainingState:
    """Run (or resume) the training ``config`` describes; returns the final state.

    The main process holds OUTPUT_DIR (:func:`basgg.output_lock.output_lock`) for the whole
    run. A resume whose config differs from the checkpoint's is refused unless
    ``resume_anyway`` (:mod:`basgg.training.resume`). ``val_at_first_validation``: prepare
    the val split (its features) at the first validation instead of before the first
    iteration, for a caller that has another process extracting them meanwhile (the
    demo); the training waits for that process's file rather than extracting it again.
    """
    check_stage(config, training=True)
    check_stage_two_inputs(config)
    launched = group_exists()  # a launcher's group outlives this run
    context = init_distributed(config.MODEL.DEVICE)
    threads, source = apply_threads(config.NUM_THREADS)
    if context.is_main:
        processes = f", {context.world_size} processes" if context.enabled else ""
        print(f"CPU threads per process: {threads} ({source}){processes}", flush=True)
    try:
        lock = output_lock(config.OUTPUT_DIR, "basgg train") if context.is_main else nullcontext()
        with lock:
            return _train(
                config,
                context,
                progress=progress,
                resume_anyway=resume_anyway,
                threads_source=source,
                val_at_first_validation=val_at_first_validation,
            )
    finally:
        if not launched:
            shutdown_distributed()


def single_thread_over_cache(
    split: SplitData,
    context: DistributedContext,
    threads_source: str,
    *,
    model: nn.Module | None = None,
    announce: bool = False,
) -> None:
    """On a CPU, run the training iterations (or predictions) over a split's cached features
    with one thread, when the thread count is automatic; where a core is then left idle,
    the ``model``'s independent branches (the LSTM directions) take it.

    They are hundreds of small operations, where a second thread costs more in
    synchronisation than it saves: the demo's Motifs step took 107 ms with 2 threads and
    55 ms with one (docs/speed.md). Two independent parts of the step, each on a thread of
    its own, do pay (:mod:`basgg.models.concurrent_branches`): they are turned on here,
    where the automatic count gave this process at least two cores. Feature extraction,
    before, keeps every thread; more cores pay through more processes (``basgg train
    --nproc``). A count set by ``NUM_THREADS``, ``BASGG_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` is kept (and no branch runs concurrently), and so are the threads
    of online features or detector caches (convolutions in every step).
    """
    if not is_automatic(threads_source) or not isinstance(split.features, FeatureCache):
        return
    if context.device.type != "cpu" or torch.get_num_threads() == 1:
        return
    torch.set_num_threads(1)
    # the automatic count was this process's share of the cores (>= 2 here): one goes idle
    concurrent = model is not None and enable_concurrent_branches(model) > 0
    if context.is_main and announce:
        branches = ", LSTM directions on 2 threads" if concurrent else ""
        print(
            f"training iterations: 1 CPU thread per process{branches} (automatic: faster "
            "for this step than several; --nproc N trains in N processes)",
            flush=True,
        )


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


def _train(
    config: Config,
    context: DistributedContext,
    *,
    progress: bool,
    resume_anyway: bool,
    threads_source: str = "",
    val_at_first_validation: bool = False,
) -> TrainingState:
    solver = config.SOLVER
    check_metric_name(solver.BEST_METRIC, config.TEST.TOP_KS, "SOLVER.BEST_METRIC")
    if solver.SCHEDULE.TYPE == "WarmupReduceLROnPlateau":
        check_metric_name(solver.SCHEDULE.METRIC, config.TEST.TOP_KS, "SOLVER.SCHEDULE.METRIC")
    output_dir = Path(config.OUTPUT_DIR)
    sgdet = uses_detector(config)  # SGDet or the detector's relation features
    if sgdet:  # build the detector its checkpoint holds
        source = detector_checkpoint(config)
        sync_detector_config(config, detector_file_config(source), source=source)
    last = output_dir / LAST_CHECKPOINT
    resumed = read_checkpoint(last) if last.exists() else None
    if resumed is not None:
        differences = check_resume_config(resumed.get("config"), config, last, anyway=resume_anyway)
        if differences and context.is_main:
            print(f"resuming despite config differences: {'; '.join(differences)}")
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
    if sgdet and config.MODEL.PRETRAINED_DETECTOR_CKPT:  # stage 2 keeps its trained heads
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
    val_split: SplitData | Callable[[], SplitData] | None = None
    if val_dataset is not None and len(val_dataset):
        val_split = partial(
            prepare_split, config, model, val_dataset, context=context, progress=progress
        )
        if not val_at_first_validation:
            val_split = val_split()

    single_thread_over_cache(train_split, context, threads_source, model=model, announce=True)
    parameters = [p for p in parameters if p.requires_grad]
    optimizer, schedule, scaler = build_optimization(config, model, context.device)
    use_amp = scaler.is_enabled()
    state = TrainingState()
    if resumed is not None:
        checkpoint = resumed
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
        if sgdet and config.MODEL.PRETRAINED_DETECTOR_CKPT:  # the detector the inputs came from
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


def extract_split_features(
    config: Config,
    splits: tuple[str, ...] = ("train", "val", "test"),
    *,
    progress: bool = True,
    context: DistributedContext | None = None,
) -> list[str]:
    """Fill the frozen-trunk feature caches of ``splits`` ahead of the runs that read them
    (training reads train and val, ``basgg test`` test, ``basgg confmat`` train); returns the
    splits it prepared. With a process group (``context``) every process must call this;
    each extracts its share (:func:`basgg.training.caches.sharded_feature_cache`).

    Nothing is done where features are not a frozen-trunk cache (SGDet proposals, the
    detector's features): those runs extract what they need themselves.
    """
    apply_threads(config.NUM_THREADS)
    context = context or DistributedContext(device=torch.device(config.MODEL.DEVICE))
    if config.mode is Mode.SGDET or uses_detector(config):
        return []
    train_dataset = build_dataset(config, "train")
    vocabulary = train_dataset.vocabulary
    num_objects, num_predicates = vocabulary.num_objects, vocabulary.num_predicates
    seed_everything(config.SEED)  # the weights training builds (random ones included)
    model = build_model(
        config,
        vocabulary=vocabulary,
        frequency_bias_init=torch.zeros(num_objects * num_objects, num_predicates),
        object_word_vectors=torch.zeros(num_objects, config.MODEL.ROI_RELATION_HEAD.EMBED_DIM),
        backbone_weights=backbone_weights(config),
        rank_relations=rank_relations,
    ).to(context.device)
    prepared = []
    for split in splits:
        if split == "val" and config.DATASETS.VAL_SIZE <= 0:
            continue
        dataset = train_dataset if split == "train" else build_dataset(config, split)
        if len(dataset):
            prepare_split(config, model, dataset, context=context, progress=progress)
            prepared.append(split)
    return prepared


def find_checkpoint(config: Config, checkpoint: str | None = None) -> Path:
    """The checkpoint ``basgg test`` uses: ``checkpoint``; ``OUTPUT_DIR/model_best.pth``,
    ``model_final.pth`` or ``model_last.pth`` (the first that exists); else
    ``MODEL.PRETRAINED_MODEL_CKPT``."""
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


@holding_output_dir("basgg test")
def evaluate_checkpoint(
    config: Config,
    *,
    checkpoint: str | None = None,
    split: str = "test",
    progress: bool = True,
    context: DistributedContext | None = None,
) -> tuple[EvaluationResult, Path] | None:
    """Predict and score ``split``; returns the evaluation result and the predictions path.

    With a process group (``context``, e.g. from :mod:`basgg.training.launch`) every process
    must call this: they share the feature extraction and the predictions, the main process
    writes and scores them and gets the result (the others ``None``).
    """
    check_stage(config)
    _, threads_source = apply_threads(config.NUM_THREADS)
    path = find_checkpoint(config, checkpoint)
    device = torch.device(config.MODEL.DEVICE)
    context = context or DistributedContext(device=device)
    dataset = build_dataset(config, split)
    vocabulary = dataset.vocabulary
    model = load_trained_model(config, path, vocabulary=vocabulary, device=context.device)
    data = prepare_split(config, model, dataset, context=context, progress=progress)
    single_thread_over_cache(data, context, threads_source, model=model)
    use_amp = config.SOLVER.AMP and context.device.type == "cuda"
    predictions = predict_shared(
        model,
        data,
        range(len(data.inputs)),
        context=context,
        batch_size=config.TEST.IMS_PER_BATCH,
        amp=use_amp,
        progress=progress,
    )
    if predictions is None:  # not the main process: wait until the main one wrote the files
        barrier(context)
        return None
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
        "information": config.TEST.INFORMATION_FILE
        or "-ln of the train split's predicate frequencies",
        "informative": config.TEST.INFORMATIVE_FILE or None,
    }
    write_report(result, out_dir, predicate_order=order.tolist(), extra=extra)
    barrier(context)
    return result, predictions_path


@holding_output_dir("basgg confmat")
def compute_confusion_matrix(
    config: Config,
    *,
    checkpoint: str | None = None,
    progress: bool = True,
    context: DistributedContext | None = None,
) -> Path:
    """Count the stage-1 model's train-split confusions; returns the ``.npy`` path.

    With a process group (``context``) every process must call this: each counts its share of
    the images, the main process sums the counts and writes the files.
    """
    _, threads_source = apply_threads(config.NUM_THREADS)
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
    context = context or DistributedContext(device=torch.device(config.MODEL.DEVICE))
    dataset = build_dataset(config, "train")
    vocabulary = dataset.vocabulary
    model = load_trained_model(config, path, vocabulary=vocabulary, device=context.device)
    data = prepare_split(
        config, model, dataset, context=context, progress=progress, ground_truth_inputs=True
    )
    single_thread_over_cache(data, context, threads_source, model=model)
    share = list(shard(len(data.inputs), context))
    predictions = predict_split(
        model,
        data,
        share,
        batch_size=config.TEST.IMS_PER_BATCH,
        progress=progress and context.is_main,
    )
    confusion = PredicateConfusion(num_predicates=vocabulary.num_predicates)
    confusion.update([data.inputs[i] for i in share], predictions)  # every raw GT row
    counts = all_reduce_sum(torch.from_numpy(confusion.compute()), context).numpy()  # (P+1, P+1)
    output_dir = Path(config.OUTPUT_DIR)
    matrix_path = output_dir / MATRIX_FILE
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_output(matrix_path) as temporary:
            np.save(temporary, counts)
        plot_confusion(
            counts,
            output_dir / HEATMAP_FILE,
            names=vocabulary.predicates,
            title="stage-1 PredCls confusion on train (row-normalised)",
        )
        write_hierarchy(predicate_hierarchy(counts, vocabulary.predicates), output_dir)
    barrier(context)  # the other processes return once the files exist
    return matrix_path
