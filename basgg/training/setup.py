"""Everything ``basgg train`` and ``basgg test`` build from a config before the loop runs.

Datasets, frequency statistics, word vectors, backbone weights, the model and the feature
caches. Only code here, the commands and :func:`basgg.models.build_model` read the config.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from basgg.config import Config, config_to_dict, set_value
from basgg.data.statistics import frequency_bias_init, load_or_compute_statistics
from basgg.data.vg150 import VG150Dataset
from basgg.data.vg150_checks import load_image
from basgg.data.vg150_format import VG150Files
from basgg.data.vocabulary import Vocabulary
from basgg.evaluation import SGEvaluator, load_zero_shot_file, zero_shot_triplets
from basgg.models import SceneGraphModel, uses_detector
from basgg.models.features import class_word_vectors
from basgg.predicate_groups import predicate_groups
from basgg.pretrained import AssetError, load_backbone_weights, load_glove
from basgg.structures import Mode, SceneGraph
from basgg.training.detection_cache import (
    SplitDetections,
    detect_split,
    detection_cache_path,
    read_detections,
    save_detections,
)
from basgg.training.distributed import DistributedContext, barrier, broadcast_object, mix_seed
from basgg.training.feature_cache import (
    FeatureCache,
    SplitData,
    cache_path,
    computed_once,
    extract_features,
    inputs_digest,
    read_feature_cache,
    save_feature_cache,
    state_dict_sha256,
)
from basgg.training.feature_storage import (
    OnlineFrozenFeatures,
    OnlinePyramids,
    choose_storage,
    extract_pyramids,
    frozen_cache_bytes,
    pyramid_cache_bytes,
    read_pyramid_cache,
    transform_sizes,
)
from basgg.training.schedule import LearningRateSchedule

RANDOM = "random"
RANDOM_WORD_STD = 0.1


def checkpoint_extra(config: Config, vocabulary: Vocabulary, *, model_info: dict) -> dict:
    """The plain values every checkpoint of a run carries besides its weights: what the
    weights fit, the resolved config and both vocabularies (so the file alone rebuilds the
    model)."""
    return {
        "model_info": model_info,
        "config": config_to_dict(config),
        "vocabulary": {
            "objects": list(vocabulary.objects),
            "predicates": list(vocabulary.predicates),
        },
    }


def model_info(model: SceneGraphModel, vocabulary: Vocabulary) -> dict:
    """What a checkpoint's weights must match (see :func:`check_model_fits`)."""
    return {
        **model.describe(),
        "object_names": list(vocabulary.objects),
        "predicate_names": list(vocabulary.predicates),
    }


PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def resolve_config_path(path: str | None) -> Path | None:
    """``path`` itself when it exists, else the packaged config of that name (e.g.
    ``synthvg_predcls.yaml`` from ``basgg/configs``), else ``path`` (reading it reports it)."""
    if path is None or Path(path).is_file():
        return None if path is None else Path(path)
    packaged = PACKAGED_CONFIGS / Path(path).name
    return packaged if packaged.is_file() else Path(path)


DETECTOR_KEY = "MODEL.PRETRAINED_DETECTOR_CKPT"
# MODEL.DETECTOR fields a relation run sets for itself; the others are the trained
# detector's architecture and always come from its checkpoint
DETECTOR_RUN_SETTINGS = ("SCORE_THRESH", "NMS_THRESH", "DETECTIONS_PER_IMG")


def check_stage(config: Config, *, training: bool = False) -> None:
    """Refuse what a command cannot run: SGDet or detector-feature training without a
    trained detector."""
    if not uses_detector(config) or not training:
        return
    detector = config.MODEL.PRETRAINED_DETECTOR_CKPT
    stage_one = config.MODEL.PRETRAINED_MODEL_CKPT
    if detector:
        if not Path(detector).is_file():
            raise ValueError(f"{DETECTOR_KEY}: {detector}: detector checkpoint not found")
    elif not stage_one:
        user = (
            "SGDet (MODEL.ROI_RELATION_HEAD.USE_GT_BOX False)"
            if config.mode is Mode.SGDET
            else "MODEL.ROI_RELATION_HEAD.FEATURE_EXTRACTOR RelationFeatureExtractor"
        )
        raise ValueError(
            f"{user} needs a trained detector in {DETECTOR_KEY} (it is empty); train one "
            f"with basgg train-detector"
        )


def sync_detector_config(config: Config, saved_config: dict, *, source: str) -> None:
    """Copy the detector architecture (every ``MODEL.DETECTOR`` field but the run settings
    :data:`DETECTOR_RUN_SETTINGS`) from a checkpoint's saved config, so the model built from
    ``config`` has the checkpoint's detector shapes."""
    saved = saved_config.get("MODEL", {}).get("DETECTOR")
    if not isinstance(saved, dict):
        raise ValueError(f"{source}: the checkpoint's config has no MODEL.DETECTOR section")
    for key, value in saved.items():
        if key not in DETECTOR_RUN_SETTINGS:
            set_value(config, f"MODEL.DETECTOR.{key}", value, source=source, from_text=False)


def detector_checkpoint(config: Config) -> str:
    """The checkpoint an SGDet training run takes its detector from:
    ``MODEL.PRETRAINED_DETECTOR_CKPT`` when set, else the model of ``PRETRAINED_MODEL_CKPT``
    (BA-SGG stage 2 starting from a stage-1 SGDet model)."""
    return config.MODEL.PRETRAINED_DETECTOR_CKPT or config.MODEL.PRETRAINED_MODEL_CKPT


def build_optimization(
    config: Config, parameters: list[torch.nn.Parameter], device: torch.device
) -> tuple[torch.optim.SGD, LearningRateSchedule, torch.amp.GradScaler]:
    """SGD over ``parameters``, its warm-up schedule and the AMP gradient scaler (enabled
    with ``SOLVER.AMP`` on CUDA only), from ``SOLVER``."""
    solver = config.SOLVER
    optimizer = torch.optim.SGD(
        parameters, lr=solver.BASE_LR, momentum=solver.MOMENTUM, weight_decay=solver.WEIGHT_DECAY
    )
    schedule = LearningRateSchedule(
        optimizer,
        base_lr=solver.BASE_LR,
        schedule_type=solver.SCHEDULE.TYPE,
        warmup_iters=solver.WARMUP_ITERS,
        warmup_start=solver.WARMUP_FACTOR,
        steps=solver.STEPS,
        gamma=solver.GAMMA,
        patience=solver.SCHEDULE.PATIENCE,
        threshold=solver.SCHEDULE.THRESHOLD,
        cooldown=solver.SCHEDULE.COOLDOWN,
        factor=solver.SCHEDULE.FACTOR,
        max_decay_step=solver.SCHEDULE.MAX_DECAY_STEP,
    )
    use_amp = solver.AMP and device.type == "cuda"
    return optimizer, schedule, torch.amp.GradScaler(device.type, enabled=use_amp)


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed torch, numpy and Python's ``random`` (each process differently)."""
    torch.manual_seed(mix_seed(seed, rank, 2))
    np.random.seed(mix_seed(seed, rank, 3) % 2**32)
    random.seed(mix_seed(seed, rank, 4))


def dataset_files(config: Config) -> VG150Files:
    """The dataset paths of ``DATASETS``."""
    datasets = config.DATASETS
    return VG150Files(
        root=Path(datasets.DATA_DIR),
        roidb_file=datasets.ROIDB_FILE,
        dict_file=datasets.DICT_FILE,
        image_file=datasets.IMAGE_FILE,
        image_dir=datasets.IMAGE_DIR,
    )


def build_dataset(config: Config, split: str) -> VG150Dataset:
    """A split with the config's filters; images are read by the feature cache only."""
    datasets = config.DATASETS
    dataset = VG150Dataset(
        dataset_files(config),
        split=split,
        val_size=datasets.VAL_SIZE,
        num_images=datasets.NUM_IMAGES,
        filter_empty_rels=datasets.FILTER_EMPTY_RELS,
        filter_duplicate_rels=datasets.FILTER_DUPLICATE_RELS,
        filter_non_overlap=datasets.FILTER_NON_OVERLAP and config.mode is Mode.SGDET,
        load_images=True,  # drops images missing on disk, as every split must
    )
    dataset.load_images = False  # targets only; images come through load_split_image
    return dataset


def load_split_image(dataset: VG150Dataset, index: int) -> Tensor:
    """uint8 (3, H, W) image of item ``index``."""
    return load_image(
        dataset.image_path(index),
        row=int(dataset.h5_indices[index]),
        image_id=dataset.image_ids[index],
        json_size=dataset.image_size(index),
        warn=True,
    )


def frequency_table(config: Config, context: DistributedContext) -> Tensor:
    """(C * C, P + 1) frequency-bias initialisation from the train split (cached in
    OUTPUT_DIR; the main process computes it first)."""
    datasets = config.DATASETS

    def compute() -> Tensor:
        statistics = load_or_compute_statistics(
            dataset_files(config),
            Path(config.OUTPUT_DIR),
            val_size=datasets.VAL_SIZE,
            num_images=datasets.NUM_IMAGES,
        )
        return frequency_bias_init(statistics)

    table = compute() if context.is_main else None
    barrier(context)
    return table if table is not None else compute()


def word_vectors(config: Config, names: tuple[str, ...]) -> Tensor:
    """(C, EMBED_DIM) class word vectors from ``GLOVE_PATH`` ("" = the GloVe package,
    "random" = seeded random vectors)."""
    dim = config.MODEL.ROI_RELATION_HEAD.EMBED_DIM
    if config.GLOVE_PATH == RANDOM:
        generator = torch.Generator().manual_seed(mix_seed(config.SEED, 5))
        return torch.randn(len(names), dim, generator=generator) * RANDOM_WORD_STD
    try:
        vectors = load_glove(config.GLOVE_PATH or None, dim=dim)
    except AssetError as error:
        raise ValueError(f"GLOVE_PATH: {error} (or set GLOVE_PATH random)") from error
    return class_word_vectors(names, vectors)


def backbone_weights(config: Config) -> dict[str, Tensor] | None:
    """The backbone state dict of ``MODEL.BACKBONE.WEIGHTS`` ("random": None)."""
    backbone = config.MODEL.BACKBONE
    if backbone.WEIGHTS == RANDOM:
        return None
    try:
        return load_backbone_weights(backbone.NAME, backbone.WEIGHTS or None)
    except AssetError as error:
        raise ValueError(f"MODEL.BACKBONE.WEIGHTS: {error} (or set it to random)") from error


def make_evaluator_factory(
    config: Config,
    vocabulary: Vocabulary,
    *,
    train_counts: np.ndarray | None,
    zero_shot: np.ndarray | None = None,
) -> Callable[[], SGEvaluator]:
    """A function returning a fresh evaluator for the config's mode and K values, with
    head/body/tail groups from the train split's predicate counts and optional zero-shot
    triplets."""
    groups = None
    if train_counts is not None:
        groups = predicate_groups(vocabulary.predicates, train_counts)

    def make() -> SGEvaluator:
        return SGEvaluator(
            mode=config.mode,
            num_predicates=vocabulary.num_predicates,
            ks=config.TEST.TOP_KS,
            zero_shot_triplets=zero_shot,
            predicate_groups=groups,
            predicate_names=vocabulary.predicates,
        )

    return make


def split_zero_shot_triplets(
    config: Config, train: VG150Dataset, ground_truths: list[SceneGraph]
) -> tuple[np.ndarray, str]:
    """``DATASETS.ZERO_SHOT_FILE``, or the split's triplets never seen in train (as
    ``basgg eval`` does); returns the triplets and where they came from."""
    if config.DATASETS.ZERO_SHOT_FILE:
        return load_zero_shot_file(config.DATASETS.ZERO_SHOT_FILE), config.DATASETS.ZERO_SHOT_FILE
    train_graphs = (train.ground_truth(i) for i in range(len(train)))
    return zero_shot_triplets(train_graphs, ground_truths), "triplets absent from train"


def feature_cache_dir(config: Config) -> Path:
    """``FEATURE_CACHE_DIR``, or ``OUTPUT_DIR/feature_cache``."""
    return Path(config.FEATURE_CACHE_DIR or Path(config.OUTPUT_DIR) / "feature_cache")


def prepare_split(
    config: Config,
    model: SceneGraphModel,
    dataset: VG150Dataset,
    *,
    context: DistributedContext,
    progress: bool = True,
    ground_truth_inputs: bool = False,
) -> SplitData:
    """The split's model inputs and cached features (extracted on a cache miss).

    Train inputs are the training targets' boxes (or, with ``ground_truth_inputs``, the
    evaluation ground truths, every box kept); val/test inputs are the evaluation ground
    truths. In SGDet the inputs are the frozen detector's proposals
    (:func:`prepare_detections`). The main process extracts and saves; the others then read
    the file.
    """
    split = dataset.split
    ground_truths, logits = None, None
    if ground_truth_inputs:
        inputs = [dataset.ground_truth(index) for index in range(len(dataset))]
    else:
        inputs = [_input_graph(dataset, index) for index in range(len(dataset))]
    if config.mode is Mode.SGDET and not ground_truth_inputs:
        detections = prepare_detections(
            config, model, dataset, inputs, context=context, progress=progress
        )
        if split != "train":
            ground_truths = inputs
        inputs, logits = detections.graphs, detections.logits
    features = split_features(config, model, dataset, inputs, context=context, progress=progress)
    return SplitData(
        name=split,
        dataset=dataset,
        inputs=inputs,
        features=features,
        ground_truths=ground_truths,
        detector_logits=logits,
    )


def split_features(
    config: Config,
    model: SceneGraphModel,
    dataset: VG150Dataset,
    inputs: list[SceneGraph],
    *,
    context: DistributedContext,
    progress: bool = True,
) -> object:
    """The feature source of a split's ``inputs``, as ``MODEL.FEATURE_STORAGE`` chooses
    (:mod:`basgg.training.feature_storage`): a cache (read, or extracted after its size was
    checked against the free disk space) or online features."""
    if model.relation_features is not None:
        return _pyramid_features(config, model, dataset, inputs, context=context, progress=progress)
    split = dataset.split
    paths = [dataset.image_path(index) for index in range(len(dataset))]
    extractor = model.feature_extractor
    path = cache_path(
        feature_cache_dir(config),
        split,
        graphs=inputs,
        image_paths=paths,
        extractor=extractor,
        backbone_name=config.MODEL.BACKBONE.NAME,
    )

    def extract() -> FeatureCache:
        bar = tqdm(
            total=len(inputs), desc=f"features {split}", disable=not progress, dynamic_ncols=True
        )
        cache = extract_features(
            extractor,
            inputs,
            lambda index: load_split_image(dataset, index),
            batch_size=config.MODEL.BACKBONE.BATCH_SIZE,
            progress=bar.update,
        )
        bar.close()
        return cache

    load = partial(load_split_image, dataset)
    if not path.exists():
        needed = frozen_cache_bytes([graph.num_objects for graph in inputs], extractor)
        storage = choose_storage(
            config.MODEL.FEATURE_STORAGE,
            device=context.device,
            needed=needed,
            directory=path.parent,
            what=f"frozen-trunk features of {split}",
        )
        if storage == "online":
            return OnlineFrozenFeatures(extractor, load, inputs)
    return computed_once(
        path,
        read=lambda: read_feature_cache(path, num_images=len(inputs)),
        compute=extract,
        save=save_feature_cache,
        context=context,
        what="feature cache",
    )


def _pyramid_features(
    config: Config,
    model: SceneGraphModel,
    dataset: VG150Dataset,
    inputs: list[SceneGraph],
    *,
    context: DistributedContext,
    progress: bool,
) -> object:
    """The detector-feature source: cached pyramid levels or online pyramids."""
    split = dataset.split
    pyramid = model.feature_pyramid
    load = partial(load_split_image, dataset)
    num_objects = [graph.num_objects for graph in inputs]
    paths = [dataset.image_path(index) for index in range(len(dataset))]
    key = {
        "inputs": inputs_digest(inputs, paths),
        "pyramid": state_dict_sha256(pyramid),
        "levels": pyramid.level_names,
    }
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = feature_cache_dir(config) / f"pyramids_{split}_{name}"
    online = OnlinePyramids(pyramid, load, num_objects, amp=config.SOLVER.AMP)
    cached = read_pyramid_cache(path, num_images=len(inputs)) if context.is_main else None
    if cached is None and context.is_main:
        probe = pyramid([load(0)])[0] if len(inputs) else None
        needed = 0
        if probe is not None:
            min_size, max_size = transform_sizes(pyramid)
            needed = pyramid_cache_bytes(
                [graph.image_size for graph in inputs],
                channels=int(next(iter(probe.levels.values())).shape[0]),
                strides=list(probe.strides.values()),
                min_size=min_size,
                max_size=max_size,
            )
        storage = choose_storage(
            config.MODEL.FEATURE_STORAGE,
            device=context.device,
            needed=needed,
            directory=path.parent,
            what=f"detector pyramid features of {split}",
        )
        print(
            f"detector features of {split}: {storage} (a cache would take {needed / 1e9:.2f} "
            f"GB for {len(inputs)} images)",
            flush=True,
        )
        if storage == "cache":
            bar = tqdm(total=len(inputs), desc=f"pyramids {split}", disable=not progress)
            cached = extract_pyramids(
                pyramid,
                inputs,
                load,
                path,
                batch_size=config.MODEL.BACKBONE.BATCH_SIZE,
                progress=bar.update,
            )
            bar.close()
    storage = broadcast_object("cache" if cached is not None else "online", context)
    if storage == "online":
        return online
    return cached if cached is not None else read_pyramid_cache(path, num_images=len(inputs))


def prepare_detections(
    config: Config,
    model: SceneGraphModel,
    dataset: VG150Dataset,
    graphs: list[SceneGraph],
    *,
    context: DistributedContext,
    progress: bool = True,
) -> SplitDetections:
    """SGDet proposals of a split from the model's frozen detector (cached like features).

    ``graphs`` are the split's ground truths (train: the training targets, whose boxes are
    added to the proposals, at most ``MODEL.DETECTOR.DETECTIONS_PER_IMG`` boxes in all).
    """
    split = dataset.split
    paths = [dataset.image_path(index) for index in range(len(dataset))]
    ground_truths = graphs if split == "train" else None
    max_boxes = config.MODEL.DETECTOR.DETECTIONS_PER_IMG
    path = detection_cache_path(
        feature_cache_dir(config),
        split,
        model=model,
        ground_truths=ground_truths,
        image_graphs=graphs,
        image_paths=paths,
        max_boxes=max_boxes,
    )

    def detect() -> SplitDetections:
        bar = tqdm(
            total=len(graphs), desc=f"detections {split}", disable=not progress, dynamic_ncols=True
        )
        detections = detect_split(
            model,
            [graph.image_id for graph in graphs],
            lambda index: load_split_image(dataset, index),
            ground_truths=ground_truths,
            max_boxes=max_boxes,
            batch_size=config.MODEL.BACKBONE.BATCH_SIZE,
            progress=bar.update,
        )
        bar.close()
        return detections

    detections = computed_once(
        path,
        read=lambda: read_detections(path, num_images=len(graphs)),
        compute=detect,
        save=save_detections,
        context=context,
        what="detection cache",
    )
    return detections


def _input_graph(dataset: VG150Dataset, index: int) -> SceneGraph:
    if dataset.split != "train":
        return dataset.ground_truth(index)
    with torch.random.fork_rng(devices=[]):
        _, target = dataset[index]
    return target
