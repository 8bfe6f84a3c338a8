"""Relation models. :func:`build_model` is the only code on the model side that reads a config.

Everything a model needs from files (backbone weights, word vectors, frequency statistics)
comes in as tensors; modules take plain keyword arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from torch import Tensor

from basgg.models.backbone import build_backbone
from basgg.models.detector import Detector
from basgg.models.detector_builder import detector_from_config
from basgg.models.features import FrozenFeatureExtractor
from basgg.models.heads import HEADS, HeadSpec, build_head, head_spec, register_head
from basgg.models.relation_features import DetectorPyramid, RelationFeatureExtractor
from basgg.models.relation_head import RelationHead
from basgg.models.sgg_model import Ranker, SceneGraphModel
from basgg.structures import Mode

if TYPE_CHECKING:  # annotations only: models never import the config module at run time
    from basgg.config import Config

__all__ = [
    "HEADS",
    "HeadSpec",
    "SceneGraphModel",
    "build_feature_extractor",
    "build_head",
    "build_model",
    "build_relation_features",
    "register_head",
    "uses_detector",
]
DETECTOR_FEATURES = "RelationFeatureExtractor"


def uses_detector(config: Config) -> bool:
    """Whether the model needs a trained detector: SGDet, or the detector's features."""
    head = config.MODEL.ROI_RELATION_HEAD
    return config.mode is Mode.SGDET or head.FEATURE_EXTRACTOR == DETECTOR_FEATURES


def build_relation_features(
    detector: Detector, *, pool_all_levels: bool
) -> tuple[DetectorPyramid, RelationFeatureExtractor]:
    """SGB's relation features on ``detector``: its frozen transform + trunk + FPN, and the
    trainable extractor starting from its box head (see :mod:`basgg.models.relation_features`).

    Uses only ``detector.rcnn.transform``, ``.backbone`` (with ``out_channels``),
    ``.roi_heads.box_roi_pool`` and ``.roi_heads.box_head``.
    """
    rcnn = detector.rcnn
    heads = rcnn.roi_heads
    pyramid = DetectorPyramid(
        transform=rcnn.transform,
        backbone=rcnn.backbone,
        level_names=heads.box_roi_pool.featmap_names,
    )
    extractor = RelationFeatureExtractor(
        box_roi_pool=heads.box_roi_pool,
        box_head=heads.box_head,
        in_channels=int(rcnn.backbone.out_channels),
        pool_all_levels=pool_all_levels,
    )
    return pyramid, extractor


class Names(Protocol):
    """A vocabulary: object and predicate names, ``__background__`` at index 0 of both."""

    objects: Sequence[str]
    predicates: Sequence[str]


def build_feature_extractor(
    config: Config, *, backbone_weights: dict[str, Tensor] | None
) -> FrozenFeatureExtractor:
    """The frozen extractor of ``config.MODEL.BACKBONE`` (``backbone_weights`` None: random)."""
    settings = config.MODEL.BACKBONE
    backbone = build_backbone(settings.NAME, weights=backbone_weights, stride=settings.STRIDE)
    return FrozenFeatureExtractor(
        backbone=backbone,
        object_pool=settings.OBJECT_POOL,
        union_pool=settings.UNION_POOL,
        rect_size=settings.RECT_SIZE,
        longer_side=settings.IMAGE_SIZE or None,
        batch_size=settings.BATCH_SIZE,
    )


def build_relation_head(
    config: Config,
    *,
    mode: Mode,
    num_objects: int,
    num_predicates: int,
    object_dim: int,
    union_dim: int,
    frequency_bias_init: Tensor,
    object_word_vectors: Tensor,
    union_shared_dim: int = 0,
) -> RelationHead:
    """The head named by ``MODEL.ROI_RELATION_HEAD.PREDICTOR`` with its config sizes (the
    shared ones, then the keys its :class:`~basgg.models.heads.HeadSpec` lists)."""
    head = config.MODEL.ROI_RELATION_HEAD
    spec = head_spec(head.PREDICTOR)
    context_options = {keyword: _read_key(head, key) for keyword, key in spec.config_keys.items()}
    return build_head(
        head.PREDICTOR,
        mode=mode,
        num_objects=num_objects,
        num_predicates=num_predicates,
        object_dim=object_dim,
        union_dim=union_dim,
        object_word_vectors=object_word_vectors,
        frequency_bias_init=frequency_bias_init,
        hidden_dim=head.CONTEXT_HIDDEN_DIM,
        pooling_dim=head.CONTEXT_POOLING_DIM,
        frequency_bias_dropout=head.FREQUENCY_BIAS_DROPOUT,
        union_shared_dim=union_shared_dim,
        **context_options,
    )


def _read_key(section: object, dotted_key: str) -> object:
    """``section.A.B`` for ``"A.B"``."""
    value = section
    for part in dotted_key.split("."):
        value = getattr(value, part)
    return value


def build_model(
    config: Config,
    *,
    vocabulary: Names,
    frequency_bias_init: Tensor,
    object_word_vectors: Tensor,
    backbone_weights: dict[str, Tensor] | None = None,
    rank_relations: Ranker | None = None,
) -> SceneGraphModel:
    """Build the scene-graph model a :class:`basgg.config.Config` describes.

    In SGDet the model includes a frozen detector built from ``MODEL.DETECTOR`` with random
    weights, and with ``FEATURE_EXTRACTOR RelationFeatureExtractor`` the detector's frozen
    trunk + FPN and the trainable relation features (load a trained detector with
    :meth:`SceneGraphModel.load_detector`).

    Args:
        config: the resolved configuration (``MODEL.*`` is read).
        vocabulary: object and predicate names (class counts C and P + 1).
        frequency_bias_init: (C * C, P + 1) from :func:`basgg.data.statistics.frequency_bias_init`.
        object_word_vectors: (C, EMBED_DIM) class word vectors.
        backbone_weights: the backbone's state dict (None: random weights).
        rank_relations: the evaluator's ranking, :func:`basgg.evaluation.rank_relations`.
    """
    mode = config.mode
    relation_config = config.MODEL.ROI_RELATION_HEAD
    detector = extractor = pyramid = relation_features = None
    if uses_detector(config):  # weights come from the trained detector's checkpoint
        detector = detector_from_config(
            config, num_classes=len(vocabulary.objects), backbone_weights=None
        )
    if relation_config.FEATURE_EXTRACTOR == DETECTOR_FEATURES:
        pyramid, relation_features = build_relation_features(
            detector, pool_all_levels=relation_config.POOLING_ALL_LEVELS
        )
        object_dim, union_dim = relation_features.object_dim, relation_features.union_dim
        union_shared_dim = 0
    else:
        extractor = build_feature_extractor(config, backbone_weights=backbone_weights)
        object_dim, union_dim = extractor.object_dim, extractor.union_dim
        union_shared_dim = extractor.union_visual_dim  # the same for (s, o) and (o, s)
    head = build_relation_head(
        config,
        mode=mode,
        num_objects=len(vocabulary.objects),
        num_predicates=len(vocabulary.predicates),
        object_dim=object_dim,
        union_dim=union_dim,
        frequency_bias_init=frequency_bias_init,
        object_word_vectors=object_word_vectors,
        union_shared_dim=union_shared_dim,
    )
    if mode is not Mode.SGDET:  # only the pyramid (trunk + FPN) of the detector is kept
        detector = None
    return SceneGraphModel(
        mode=mode,
        relation_head=head,
        feature_extractor=extractor,
        detector=detector,
        rank_relations=rank_relations,
        pairs_per_image=relation_config.BATCH_SIZE_PER_IMAGE,
        positive_fraction=relation_config.POSITIVE_FRACTION,
        feature_pyramid=pyramid,
        relation_features=relation_features,
    )
