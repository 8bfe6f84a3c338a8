"""What the runs build from a config before the loop: datasets, frequency statistics, word
vectors, backbone weights, the optimiser and schedule, evaluators, zero-shot triplets.

The split caches (features, SGDet detections) are in :mod:`basgg.training.caches`. Only the
training layer, the commands and the ``build_*`` functions of the model side read the config.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from basgg.config import Config, SolverConfig, config_to_dict
from basgg.data.predicate_groups import predicate_groups
from basgg.data.statistics import frequency_bias_init, load_or_compute_statistics
from basgg.data.vg150 import VG150Dataset
from basgg.data.vg150_format import VG150Files
from basgg.data.vocabulary import Vocabulary
from basgg.evaluation import (
    SGEvaluator,
    load_information_file,
    load_informative_file,
    load_zero_shot_file,
    predicate_information,
    zero_shot_triplets,
)
from basgg.models import SceneGraphModel, uses_detector
from basgg.models.features import class_word_vectors
from basgg.models.heads import head_spec
from basgg.pretrained import AssetError, load_backbone_weights, load_glove
from basgg.structures import Mode, SceneGraph
from basgg.training.distributed import DistributedContext, barrier, mix_seed
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


def check_stage(config: Config, *, training: bool = False) -> None:
    """Refuse what a command cannot run: an unregistered head, SGDet or detector-feature
    training without a trained detector."""
    head_spec(config.MODEL.ROI_RELATION_HEAD.PREDICTOR)
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


def detector_checkpoint(config: Config) -> str:
    """The checkpoint an SGDet training run takes its detector from:
    ``MODEL.PRETRAINED_DETECTOR_CKPT`` when set, else the model of ``PRETRAINED_MODEL_CKPT``
    (BA-SGG stage 2 starting from a stage-1 SGDet model)."""
    return config.MODEL.PRETRAINED_DETECTOR_CKPT or config.MODEL.PRETRAINED_MODEL_CKPT


def parameter_groups(
    named_parameters: Sequence[tuple[str, torch.nn.Parameter]], solver: SolverConfig
) -> list[dict[str, Any]]:
    """SGB's parameter groups (``maskrcnn_benchmark/solver/build.py``, ``rl_factor =
    IMS_PER_BATCH``): weights at ``BASE_LR x IMS_PER_BATCH`` with ``WEIGHT_DECAY``; every
    parameter whose name contains ``"bias"`` (as SGB tests it: the frequency-bias table too)
    at ``BASE_LR x BIAS_LR_FACTOR x IMS_PER_BATCH`` with ``WEIGHT_DECAY_BIAS``. Parameters
    that need no gradient are left out; so are empty groups."""
    rate = solver.BASE_LR * solver.IMS_PER_BATCH
    weights = [p for name, p in named_parameters if p.requires_grad and "bias" not in name]
    biases = [p for name, p in named_parameters if p.requires_grad and "bias" in name]
    groups = [
        {"params": weights, "lr": rate, "weight_decay": solver.WEIGHT_DECAY},
        {
            "params": biases,
            "lr": rate * solver.BIAS_LR_FACTOR,
            "weight_decay": solver.WEIGHT_DECAY_BIAS,
        },
    ]
    return [group for group in groups if group["params"]]


def build_optimization(
    config: Config, model: torch.nn.Module, device: torch.device
) -> tuple[torch.optim.SGD, LearningRateSchedule, torch.amp.GradScaler]:
    """SGD over ``model``'s parameters that need gradients, grouped as SGB groups them
    (:func:`parameter_groups`), its schedule and the AMP gradient scaler (enabled with
    ``SOLVER.AMP`` on CUDA only), from ``SOLVER``."""
    solver = config.SOLVER
    groups = parameter_groups(list(model.named_parameters()), solver)
    if not groups:
        raise ValueError("the model has no parameter to train (all have requires_grad=False)")
    optimizer = torch.optim.SGD(groups, lr=solver.BASE_LR, momentum=solver.MOMENTUM)
    schedule = LearningRateSchedule(
        optimizer,
        base_lr=solver.BASE_LR * solver.IMS_PER_BATCH,
        schedule_type=solver.SCHEDULE.TYPE,
        warmup_iters=solver.WARMUP_ITERS,
        warmup_start=solver.WARMUP_FACTOR,
        warmup_method=solver.WARMUP_METHOD,
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
    """(C, EMBED_DIM) class word vectors from ``GLOVE_PATH`` ("" = ``GLOVE_DIR``'s
    ``glove.6B.<EMBED_DIM>d.txt`` when set, else the GloVe package; "random" = seeded random
    vectors)."""
    dim = config.MODEL.ROI_RELATION_HEAD.EMBED_DIM
    if config.GLOVE_PATH == RANDOM:
        generator = torch.Generator().manual_seed(mix_seed(config.SEED, 5))
        return torch.randn(len(names), dim, generator=generator) * RANDOM_WORD_STD
    path = config.GLOVE_PATH or None
    if path is None and config.GLOVE_DIR:
        path = str(Path(config.GLOVE_DIR) / f"glove.6B.{dim}d.txt")
    try:
        vectors = load_glove(path, dim=dim)
    except AssetError as error:
        key = "GLOVE_PATH" if config.GLOVE_PATH or not config.GLOVE_DIR else "GLOVE_DIR"
        raise ValueError(f"{key}: {error} (or set GLOVE_PATH random)") from error
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
    information, informative = extra_metric_inputs(config, vocabulary, train_counts)

    def make() -> SGEvaluator:
        return SGEvaluator(
            mode=config.mode,
            num_predicates=vocabulary.num_predicates,
            ks=config.TEST.TOP_KS,
            zero_shot_triplets=zero_shot,
            predicate_groups=groups,
            predicate_names=vocabulary.predicates,
            predicate_information=information,
            informative_triplets=informative,
        )

    return make


def extra_metric_inputs(
    config: Config, vocabulary: Vocabulary, train_counts: np.ndarray | None
) -> tuple[np.ndarray | None, dict[int, np.ndarray] | None]:
    """The RI@K information table (``TEST.INFORMATION_FILE``, else -ln of the train split's
    predicate frequencies) and the InformativeRecall@K triplets (``TEST.INFORMATIVE_FILE``)."""
    test = config.TEST
    information = None
    if test.INFORMATION_FILE:
        information = load_information_file(test.INFORMATION_FILE, vocabulary.predicates)
    elif train_counts is not None and train_counts[1:].sum() > 0:
        information = predicate_information(train_counts)
    informative = None
    if test.INFORMATIVE_FILE:
        informative = load_informative_file(
            test.INFORMATIVE_FILE, vocabulary.objects, vocabulary.predicates
        )
    return information, informative


def split_zero_shot_triplets(
    config: Config, train: VG150Dataset, ground_truths: list[SceneGraph]
) -> tuple[np.ndarray, str]:
    """``DATASETS.ZERO_SHOT_FILE``, or the split's triplets never seen in train (as
    ``basgg eval`` does); returns the triplets and where they came from."""
    if config.DATASETS.ZERO_SHOT_FILE:
        return load_zero_shot_file(config.DATASETS.ZERO_SHOT_FILE), config.DATASETS.ZERO_SHOT_FILE
    train_graphs = (train.ground_truth(i) for i in range(len(train)))
    return zero_shot_triplets(train_graphs, ground_truths), "triplets absent from train"
