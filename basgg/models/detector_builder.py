"""The one builder of a detector from a ``MODEL.DETECTOR`` config section: basgg's Faster
R-CNN on a pluggable backbone (:mod:`basgg.models.detector`) or Scene-Graph-Benchmark's
X-101-32x8d FPN detector (:mod:`basgg.models.sgb_detector`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from basgg.models.detector import Detector, build_detector
from basgg.models.sgb_detector import SGB_BACKBONE, build_sgb_detector


def detector_from_config(
    config: Any, *, num_classes: int, backbone_weights: dict[str, Tensor] | None
) -> Detector:
    """The detector ``config.MODEL.DETECTOR`` describes, with ``num_classes`` = C + 1
    (``ARCHITECTURE`` ``sgb``: Scene-Graph-Benchmark's, :mod:`basgg.models.sgb_detector`;
    its trunk weights come from the SGB checkpoint, not ``backbone_weights``)."""
    settings = config.MODEL.DETECTOR
    if settings.ARCHITECTURE == "sgb":
        return sgb_detector_from_settings(settings, num_classes=num_classes)
    return build_detector(
        backbone_name=settings.BACKBONE,
        num_classes=num_classes,
        backbone_weights=backbone_weights,
        trainable_layers=settings.TRAINABLE_LAYERS,
        **_shared_settings(settings),
    )


def sgb_detector_from_settings(settings: Any, *, num_classes: int) -> Detector:
    """SGB's detector (:func:`basgg.models.sgb_detector.build_sgb_detector`) with the sizes
    and thresholds of a ``MODEL.DETECTOR`` section; its ``BACKBONE`` must be SGB's."""
    if settings.BACKBONE != SGB_BACKBONE:
        raise ValueError(
            f"MODEL.DETECTOR.ARCHITECTURE sgb is SGB's {SGB_BACKBONE} FPN detector; "
            f"MODEL.DETECTOR.BACKBONE is {settings.BACKBONE!r}"
        )
    return build_sgb_detector(num_classes=num_classes, **_shared_settings(settings))


def _shared_settings(settings: Any) -> dict[str, Any]:
    """The builder keywords both architectures take from a ``MODEL.DETECTOR`` section."""
    return {
        "fpn_channels": settings.FPN_CHANNELS,
        "representation_size": settings.REPRESENTATION_SIZE,
        "min_size": settings.MIN_SIZE,
        "max_size": settings.MAX_SIZE,
        "rpn_pre_nms_top_n_train": settings.RPN_PRE_NMS_TOP_N_TRAIN,
        "rpn_post_nms_top_n_train": settings.RPN_POST_NMS_TOP_N_TRAIN,
        "rpn_pre_nms_top_n_test": settings.RPN_PRE_NMS_TOP_N_TEST,
        "rpn_post_nms_top_n_test": settings.RPN_POST_NMS_TOP_N_TEST,
        "box_batch_size_per_image": settings.BOX_BATCH_SIZE_PER_IMAGE,
        "score_thresh": settings.SCORE_THRESH,
        "nms_thresh": settings.NMS_THRESH,
        "detections_per_img": settings.DETECTIONS_PER_IMG,
        "anchor_sizes": settings.ANCHOR_SIZES,
        "aspect_ratios": settings.ASPECT_RATIOS,
    }
