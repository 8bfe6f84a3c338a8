"""BA-SGG stage 2 on top of the ordinary training loop: what changes, in one place.

Stage 1 is ``MODEL.PRETRAINED_MODEL_CKPT ''`` with both flags False. Stage 2 runs the same
``basgg train`` with the stage-1 checkpoint and the flags:

- ``WITH_CLEAN_CLASSIFIER`` (BPL): the model is built as in stage 1, loads the checkpoint,
  builds the clean classifier copies (everything else frozen, only ``*_clean`` trains) and the
  train split is under-sampled (:mod:`basgg.data.balanced`).
- ``WITH_TRANSFER_CLASSIFIER`` (SA): the logits go through ``A = adjustment_matrix(C)`` with
  C read from ``CONFUSION_MATRIX_FILE`` (written by ``basgg confmat``). Without the clean
  branch (the SA-only ablation) every stage-1 parameter keeps training.

The checkpoint records the stage: ``model_info["clean_branch"]`` and the ``adjustment``
buffer in the weights, so :func:`prepare_for_checkpoint` rebuilds the same model to load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from basgg.config import Config
from basgg.data.balanced import BalancedSelection
from basgg.data.vocabulary import Vocabulary
from basgg.evaluation import rank_relations
from basgg.models import SceneGraphModel, build_model
from basgg.models.predicate_classifier import adjustment_matrix
from basgg.training.caches import SplitData
from basgg.training.checkpoint import check_model_fits, load_model_weights
from basgg.training.feature_cache import FeatureCache
from basgg.training.feature_storage import FeatureSubset

CKPT_KEY = "MODEL.PRETRAINED_MODEL_CKPT"
CLEAN_KEY = "MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER"
TRANSFER_KEY = "MODEL.ROI_RELATION_HEAD.WITH_TRANSFER_CLASSIFIER"
MATRIX_KEY = "MODEL.ROI_RELATION_HEAD.CONFUSION_MATRIX_FILE"
ADJUSTMENT_SUFFIX = "classifier.adjustment"


HEAD = "MODEL.ROI_RELATION_HEAD."
# BA-SGG stage 2 on SynthVG (23 predicates): K scaled from VG150's 15 of 50 to 7 of 23; the cap
# N is the scaling rule (-1: a quarter of the median head-predicate count); 2.5 epochs of the
# balanced split (2,362 images on default SynthVG).
STAGE_TWO_OVERRIDES = [
    HEAD + "WITH_CLEAN_CLASSIFIER", "True",
    HEAD + "WITH_TRANSFER_CLASSIFIER", "True",
    HEAD + "BPL_NUM_HEAD_PREDICATES", "7",
    HEAD + "BPL_MAX_PER_PREDICATE", "-1",
    "SOLVER.MAX_ITER", "750",
    "SOLVER.VAL_PERIOD", "250",
    "SOLVER.CHECKPOINT_PERIOD", "250",
]  # fmt: skip


def is_stage_two(config: Config) -> bool:
    """Whether either BA-SGG flag is on."""
    head = config.MODEL.ROI_RELATION_HEAD
    return bool(head.WITH_CLEAN_CLASSIFIER or head.WITH_TRANSFER_CLASSIFIER)


def check_stage_two_inputs(config: Config) -> None:
    """Raise ValueError naming the key when a stage-2 flag lacks what it needs."""
    head = config.MODEL.ROI_RELATION_HEAD
    if not is_stage_two(config):
        return
    flag = CLEAN_KEY if head.WITH_CLEAN_CLASSIFIER else TRANSFER_KEY
    checkpoint = config.MODEL.PRETRAINED_MODEL_CKPT
    if not checkpoint:
        raise ValueError(
            f"BA-SGG stage 2 ({flag} True) needs the stage-1 checkpoint in {CKPT_KEY} (it "
            "is empty); train stage 1 first"
        )
    if not Path(checkpoint).is_file():
        raise ValueError(f"{CKPT_KEY}: {checkpoint}: stage-1 checkpoint file not found")
    if head.WITH_TRANSFER_CLASSIFIER:
        matrix = head.CONFUSION_MATRIX_FILE
        if not matrix:
            raise ValueError(
                f"BA-SGG stage 2 ({TRANSFER_KEY} True) needs the stage-1 confusion matrix in "
                f"{MATRIX_KEY} (it is empty); make it with basgg confmat"
            )
        if not Path(matrix).is_file():
            raise ValueError(f"{MATRIX_KEY}: {matrix}: confusion matrix file not found")


def read_confusion_matrix(path: str | Path, num_predicates: int) -> np.ndarray:
    """The (P + 1, P + 1) counts saved by ``basgg confmat``, checked against the vocabulary."""
    matrix = np.load(path, allow_pickle=False)
    if matrix.shape != (num_predicates, num_predicates):
        raise ValueError(
            f"{MATRIX_KEY}: {path}: shape {matrix.shape}, expected "
            f"({num_predicates}, {num_predicates}) for this dataset's predicates"
        )
    return matrix


def setup_stage_two(
    config: Config, model: SceneGraphModel, *, model_info: dict[str, Any]
) -> list[nn.Parameter]:
    """Turn a freshly built (stage-1 shaped) model into the stage-2 model ``config`` asks for.

    Loads ``MODEL.PRETRAINED_MODEL_CKPT``, then enables the clean branch (BPL flag) and sets
    the adjustment matrix (SA flag). Returns the parameters that train.

    Args:
        config: the resolved configuration with at least one stage-2 flag.
        model: the model as stage 1 builds it.
        model_info: :func:`basgg.training.setup.model_info` of ``model`` before any change.
    """
    check_stage_two_inputs(config)
    head_config = config.MODEL.ROI_RELATION_HEAD
    load_model_weights(config.MODEL.PRETRAINED_MODEL_CKPT, model, model_info=model_info)
    head = model.relation_head
    if head_config.WITH_CLEAN_CLASSIFIER:
        head.enable_clean_branch()
        if model.relation_features is not None:  # the detector-feature layers freeze too
            model.relation_features.requires_grad_(False)
    if head_config.WITH_TRANSFER_CLASSIFIER:
        num_predicates = int(head.classifier.num_predicates)
        confusion = read_confusion_matrix(head_config.CONFUSION_MATRIX_FILE, num_predicates)
        head.set_adjustment(adjustment_matrix(confusion))
    return trainable_parameters(model)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters that require gradients (stage 2 with BPL: the clean branch only)."""
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def prepare_for_checkpoint(model: SceneGraphModel, checkpoint: dict[str, Any]) -> None:
    """Give ``model`` the stage-2 parts a checkpoint holds, so its weights load.

    The clean branch is enabled when ``model_info["clean_branch"]`` is true; an adjustment
    placeholder (identity, overwritten by the load) is set when the weights hold one.
    """
    head = model.relation_head
    if checkpoint["model_info"].get("clean_branch") and not head.clean_branch_enabled:
        head.enable_clean_branch()
    if any(key.endswith(ADJUSTMENT_SUFFIX) for key in checkpoint["model"]):
        size = int(head.classifier.num_predicates)
        head.set_adjustment(torch.eye(size))


def build_trained_model(
    config: Config, checkpoint: dict[str, Any], path: str | Path, *, vocabulary: Vocabulary
) -> SceneGraphModel:
    """The model ``config`` describes with the weights of ``checkpoint`` (read from ``path``).

    Statistics and word vectors are built as zero placeholders of the right shapes (the
    checkpoint holds the trained values); a BA-SGG stage-2 checkpoint first gets its clean
    branch and adjustment matrix so that its weights load.

    Raises:
        CheckpointError: naming ``path`` when the weights do not fit the described model.
    """
    num_objects, num_predicates = vocabulary.num_objects, vocabulary.num_predicates
    model = build_model(
        config,
        vocabulary=vocabulary,
        frequency_bias_init=torch.zeros(num_objects * num_objects, num_predicates),
        object_word_vectors=torch.zeros(num_objects, config.MODEL.ROI_RELATION_HEAD.EMBED_DIM),
        backbone_weights=None,
        rank_relations=rank_relations,
    )
    prepare_for_checkpoint(model, checkpoint)
    info = {
        **model.describe(),
        "object_names": list(vocabulary.objects),
        "predicate_names": list(vocabulary.predicates),
    }
    check_model_fits(checkpoint, Path(path), model=model, model_info=info)
    model.load_state_dict(checkpoint["model"])
    return model


def balanced_train_split(
    config: Config, split: SplitData
) -> tuple[SplitData, BalancedSelection | None]:
    """The train split under Balanced Predicate Learning when ``WITH_CLEAN_CLASSIFIER`` is on.

    The dataset is filtered in place; the kept images' inputs and cached features are taken
    from ``split`` (BPL keeps every box, so no feature is extracted again). Without the flag,
    ``split`` and ``None`` come back unchanged.
    """
    head = config.MODEL.ROI_RELATION_HEAD
    dataset = split.dataset
    if not head.WITH_CLEAN_CLASSIFIER or dataset.split != "train":
        return split, None
    before = dataset.h5_indices
    selection = dataset.balance_predicates(
        num_head=head.BPL_NUM_HEAD_PREDICATES,
        max_per_predicate=head.BPL_MAX_PER_PREDICATE,
        scale_fraction=head.BPL_SCALE_FRACTION,
    )
    positions = np.flatnonzero(np.isin(before, dataset.h5_indices))  # (n_kept,) file order
    features = split.features
    if not isinstance(features, FeatureCache):  # detector pyramids or online features
        cache = FeatureSubset(features, positions.tolist())
    else:
        cache = features.subset(positions.tolist())  # rows as stored
    inputs = [split.inputs[int(i)] for i in positions]
    logits = None
    if split.detector_logits is not None:  # SGDet: the proposals' detector logits
        logits = [split.detector_logits[int(i)] for i in positions]
    kept = SplitData(
        name=split.name, dataset=dataset, inputs=inputs, features=cache, detector_logits=logits
    )
    return kept, selection
