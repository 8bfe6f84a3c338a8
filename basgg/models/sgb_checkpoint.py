"""Key-by-key mapping of a maskrcnn_benchmark / Scene-Graph-Benchmark detector state dict
onto :func:`basgg.models.sgb_detector.build_sgb_detector`'s module.

Every key of the SGB state dict is either mapped (:data:`SGB_KEY_RULES`, by prefix) or
listed as intentionally unused (:data:`SGB_UNUSED_PREFIXES`); any other key, a model key
the file does not fill, or a shape that differs is a ``ValueError`` that names the key and
the file. No file I/O here: :mod:`basgg.training.detector_files` reads the file.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

MODULE_PREFIX = "module."  # saved from a DistributedDataParallel-wrapped model
SGB_CLASS_SCORE_KEY = "roi_heads.box.predictor.cls_score.weight"
SGB_STEM_PREFIX = "backbone.body.stem."

# SGB key prefix -> key prefix in basgg's SGBDetector (module: rcnn = torchvision FasterRCNN)
SGB_KEY_RULES: tuple[tuple[str, str], ...] = (
    ("backbone.body.stem.conv1.", "rcnn.backbone.body.conv1."),
    ("backbone.body.stem.bn1.", "rcnn.backbone.body.bn1."),  # FrozenBatchNorm buffers
    ("backbone.body.layer", "rcnn.backbone.body.layer"),  # layer1..4 bottlenecks
    ("backbone.fpn.", "rcnn.backbone.fpn."),  # fpn_inner1..4, fpn_layer1..4
    ("rpn.anchor_generator.cell_anchors.", "rcnn.rpn.anchor_generator.cell_anchors."),
    ("rpn.head.conv.", "rcnn.rpn.head.conv.0.0."),  # torchvision wraps the 3x3 conv twice
    ("rpn.head.cls_logits.", "rcnn.rpn.head.cls_logits."),
    ("rpn.head.bbox_pred.", "rcnn.rpn.head.bbox_pred."),
    ("roi_heads.box.feature_extractor.fc", "rcnn.roi_heads.box_head.fc"),  # fc6, fc7
    ("roi_heads.box.predictor.", "rcnn.roi_heads.box_predictor."),  # cls_score, bbox_pred
)

# keys an SGB file may hold that the detector does not use, and why
SGB_UNUSED_PREFIXES: dict[str, str] = {
    "roi_heads.attribute.": "attribute head (ATTRIBUTE_ON), not used by relation training",
    "roi_heads.relation.": "relation head of an SGB relation checkpoint (basgg trains its own)",
}


def strip_module_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` without a ``module.`` prefix, when every key has it (SGB's rule)."""
    if state and all(key.startswith(MODULE_PREFIX) for key in state):
        return {key[len(MODULE_PREFIX) :]: value for key, value in state.items()}
    return dict(state)


def is_sgb_state_dict(state: object) -> bool:
    """Whether ``state`` (a checkpoint's ``model`` entry) is a maskrcnn_benchmark
    detector's: a mapping with SGB's ResNet stem keys (``module.`` prefix or not)."""
    if not isinstance(state, Mapping) or not state:
        return False
    return any(
        isinstance(key, str) and key.removeprefix(MODULE_PREFIX).startswith(SGB_STEM_PREFIX)
        for key in state
    )


def sgb_num_classes(state: Mapping[str, Tensor], *, source: str) -> int:
    """C + 1, the detector's classes (background included), from its class-score layer."""
    weight = state.get(SGB_CLASS_SCORE_KEY)
    if weight is None or weight.dim() != 2:
        raise ValueError(f"{source}: missing {SGB_CLASS_SCORE_KEY!r} (the box classifier)")
    return int(weight.shape[0])


def sgb_to_basgg_key(key: str) -> str | None:
    """The basgg key an SGB key maps to, or None (unused or unknown)."""
    for sgb_prefix, basgg_prefix in SGB_KEY_RULES:
        if key.startswith(sgb_prefix):
            return basgg_prefix + key[len(sgb_prefix) :]
    return None


def map_sgb_state_dict(
    state: Mapping[str, Tensor], model_state: Mapping[str, Tensor], *, source: str
) -> tuple[dict[str, Tensor], list[str]]:
    """SGB's ``state`` (``module.`` prefix already stripped) as a state dict of the model
    whose ``state_dict()`` is ``model_state``; floating tensors take the model's dtype.

    Returns:
        The mapped state dict (exactly ``model_state``'s keys) and the SGB keys left
        unused on purpose (:data:`SGB_UNUSED_PREFIXES`).

    Raises:
        ValueError: starting with ``source``, naming every key that is unknown, missing
            (a model key no SGB key fills) or of another shape (both shapes).
    """
    mapped: dict[str, Tensor] = {}
    unused, unknown, misshapen = [], [], []
    for key, value in state.items():
        if any(key.startswith(prefix) for prefix in SGB_UNUSED_PREFIXES):
            unused.append(key)
            continue
        target = sgb_to_basgg_key(key)
        if target is None or target not in model_state:
            unknown.append(key)
            continue
        expected = model_state[target]
        if tuple(value.shape) != tuple(expected.shape):
            misshapen.append(
                f"{key} has shape {tuple(value.shape)}, SGB's detector needs "
                f"{tuple(expected.shape)} ({target})"
            )
            continue
        mapped[target] = value.to(expected.dtype) if value.is_floating_point() else value
    missing = [
        key for key in model_state if key not in mapped and not _filled_but_misshapen(key, state)
    ]
    problems = []
    if misshapen:
        problems.append("; ".join(misshapen))
    if missing:
        problems.append(f"missing {_preview([_sgb_name(key) for key in missing])}")
    if unknown:
        problems.append(
            f"unexpected {_preview(unknown)} (not part of SGB's X-101-FPN detector, nor "
            f"under {', '.join(SGB_UNUSED_PREFIXES)})"
        )
    if problems:
        raise ValueError(f"{source}: not SGB's detector layout: " + "; ".join(problems))
    return mapped, unused


def _filled_but_misshapen(model_key: str, state: Mapping[str, Tensor]) -> bool:
    return _sgb_name(model_key) in state


def _sgb_name(model_key: str) -> str:
    """The SGB key that fills ``model_key`` (the model key itself if none does)."""
    for sgb_prefix, basgg_prefix in SGB_KEY_RULES:
        if model_key.startswith(basgg_prefix):
            candidate = sgb_prefix + model_key[len(basgg_prefix) :]
            if sgb_to_basgg_key(candidate) == model_key:
                return candidate
    return model_key


def _preview(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(repr(key) for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
