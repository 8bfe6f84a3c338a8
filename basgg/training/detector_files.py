"""Detector checkpoint files of two kinds, told apart by their content:

- ``basgg``: written by ``basgg train-detector`` (:mod:`basgg.training.checkpoint`);
- ``sgb``: a maskrcnn_benchmark / Scene-Graph-Benchmark detector checkpoint, e.g. SGB's
  released ``pretrained_faster_rcnn/model_final.pth``: a dict with the state dict under
  ``model`` (keys possibly prefixed ``module.``), and ``optimizer``, ``scheduler``,
  ``iteration`` entries that are not used. Its architecture is SGB's X-101-32x8d FPN
  (:mod:`basgg.models.sgb_detector`), its class count that of its box classifier.

Both are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from basgg.config import Config, set_value
from basgg.models.detector import Detector
from basgg.models.detector_builder import detector_from_config
from basgg.models.sgb_checkpoint import (
    is_sgb_state_dict,
    map_sgb_state_dict,
    sgb_num_classes,
    strip_module_prefix,
)
from basgg.models.sgb_detector import (
    SGB_ANCHOR_SIZES,
    SGB_ASPECT_RATIOS,
    SGB_BACKBONE,
    SGB_DETECTIONS_PER_IMG,
    SGB_FPN_CHANNELS,
    SGB_MAX_SIZE,
    SGB_MIN_SIZE,
    SGB_MLP_HEAD_DIM,
    SGB_NMS_THRESH,
    SGB_ROI_BATCH_SIZE,
    SGB_RPN_POST_NMS_TOP_N,
    SGB_RPN_PRE_NMS_TOP_N,
    SGB_SCORE_THRESH,
)
from basgg.training.checkpoint import CheckpointError, read_checkpoint

BASGG_KIND, SGB_KIND = "basgg", "sgb"

# MODEL.DETECTOR of SGB's configs/e2e_relation_X_101_32_8_FPN_1x.yaml (+ defaults.py)
SGB_DETECTOR_SETTINGS: dict[str, Any] = {
    "ARCHITECTURE": "sgb",
    "BACKBONE": SGB_BACKBONE,
    "BACKBONE_WEIGHTS": "random",  # every weight comes from the SGB checkpoint
    "TRAINABLE_LAYERS": 0,
    "FPN_CHANNELS": SGB_FPN_CHANNELS,
    "REPRESENTATION_SIZE": SGB_MLP_HEAD_DIM,
    "MIN_SIZE": SGB_MIN_SIZE,
    "MAX_SIZE": SGB_MAX_SIZE,
    "RPN_PRE_NMS_TOP_N_TRAIN": SGB_RPN_PRE_NMS_TOP_N,
    "RPN_POST_NMS_TOP_N_TRAIN": SGB_RPN_POST_NMS_TOP_N,
    "RPN_PRE_NMS_TOP_N_TEST": SGB_RPN_PRE_NMS_TOP_N,
    "RPN_POST_NMS_TOP_N_TEST": SGB_RPN_POST_NMS_TOP_N,
    "BOX_BATCH_SIZE_PER_IMAGE": SGB_ROI_BATCH_SIZE,
    "SCORE_THRESH": SGB_SCORE_THRESH,
    "NMS_THRESH": SGB_NMS_THRESH,
    "DETECTIONS_PER_IMG": SGB_DETECTIONS_PER_IMG,
    "ANCHOR_SIZES": list(SGB_ANCHOR_SIZES),
    "ASPECT_RATIOS": list(SGB_ASPECT_RATIOS),
}


def read_detector_file(path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(kind, contents)`` of a detector checkpoint: ``("basgg", checkpoint)`` (as
    :func:`read_checkpoint` gives it) or ``("sgb", {"model": state dict without the
    module. prefix, ...})``.

    Raises:
        CheckpointError: naming ``path``: missing, unreadable with ``weights_only=True``,
            or neither kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path}: cannot read the checkpoint with torch.load(weights_only=True) "
            f"(truncated, corrupt, or holding objects other than tensors and plain values): "
            f"{reason}"
        ) from None
    if isinstance(state, dict) and "model_info" in state:
        return BASGG_KIND, read_checkpoint(path)
    if isinstance(state, dict) and is_sgb_state_dict(state.get("model")):
        return SGB_KIND, {**state, "model": strip_module_prefix(state["model"])}
    raise CheckpointError(
        f"{path}: neither a basgg detector checkpoint (no 'model_info') nor a "
        "maskrcnn_benchmark / Scene-Graph-Benchmark one (no 'model' state dict with "
        "'backbone.body.stem.' keys)"
    )


def sgb_detector_config(base: Config | None = None) -> Config:
    """``base`` (or the defaults) with ``MODEL.DETECTOR`` set to SGB's detector."""
    config = base if base is not None else Config()
    for key, value in SGB_DETECTOR_SETTINGS.items():
        set_value(config, f"MODEL.DETECTOR.{key}", value, source="SGB", from_text=False)
    return config


def detector_file_config(path: str | Path) -> dict[str, Any]:
    """The nested config a detector file describes its architecture with: a basgg
    checkpoint's saved ``config``, or ``{"MODEL": {"DETECTOR": SGB's settings}}``."""
    kind, state = read_detector_file(path)
    if kind == SGB_KIND:
        return {"MODEL": {"DETECTOR": dict(SGB_DETECTOR_SETTINGS)}}
    saved = state.get("config") or {}
    detector = (saved.get("MODEL") or {}).get("DETECTOR")
    if isinstance(detector, dict) and "ARCHITECTURE" not in detector:  # saved before the key
        saved = {
            **saved,
            "MODEL": {**saved["MODEL"], "DETECTOR": {**detector, "ARCHITECTURE": "basgg"}},
        }
    return saved


def load_sgb_detector(
    path: str | Path,
    state: dict[str, Any],
    *,
    device: str | torch.device = "cpu",
    object_names: Sequence[str] | None = None,
) -> tuple[Detector, list[str]]:
    """SGB's detector holding the weights of an SGB checkpoint (``state`` from
    :func:`read_detector_file`), in eval mode, and object names (``object_names`` when
    given, else ``__background__``, ``class_1``, ...).

    Raises:
        CheckpointError: naming ``path`` and the key: a key missing, unexpected or of
            another shape, or a class count other than ``len(object_names)``.
    """
    weights = state["model"]
    try:
        num_classes = sgb_num_classes(weights, source=str(path))
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    if object_names is not None and len(object_names) != num_classes:
        raise CheckpointError(
            f"{path}: the detector was trained on {num_classes - 1} object classes, which "
            f"differ from the {len(object_names) - 1} needed here "
            f"({', '.join(list(object_names)[1:4])}, ...)"
        )
    names = (
        list(object_names)
        if object_names is not None
        else ["__background__", *(f"class_{index}" for index in range(1, num_classes))]
    )
    with torch.device("meta"):  # no initialisation: every weight comes from the file
        detector = detector_from_config(
            sgb_detector_config(), num_classes=num_classes, backbone_weights=None
        )
    try:
        mapped, _ = map_sgb_state_dict(weights, detector.state_dict(), source=str(path))
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    detector.load_state_dict(mapped, strict=True, assign=True)
    return detector.to(device).eval(), names
