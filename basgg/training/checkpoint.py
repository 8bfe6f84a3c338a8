"""Checkpoints: atomic writes, ``weights_only`` reads, and clear errors for the wrong file.

A checkpoint is a dict of tensors and plain values only (so ``torch.load(weights_only=True)``
reads it)::

    format      CHECKPOINT_FORMAT
    model       the model's state_dict
    model_info  what the weights fit: predictor, mode, class counts and names (plain values)
    iteration   iterations done
    optimizer, schedule, scaler   training state (absent in weights-only files)
    rng         torch, CUDA, numpy and Python random states
    config      the resolved configuration as a nested dict
    vocabulary  {"objects": [...], "predicates": [...]} (index 0 = background)
    metrics     the last validation metrics, if any
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from basgg.atomic import atomic_output

CHECKPOINT_FORMAT = 1
LAST_CHECKPOINT = "model_last.pth"
BEST_CHECKPOINT = "model_best.pth"
FINAL_CHECKPOINT = "model_final.pth"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model."""


def atomic_save(state: dict, path: str | Path, *, durable: bool = True) -> Path:
    """Write ``state`` with ``torch.save`` to a temporary file, fsync it (unless not
    ``durable``: a file only this run reads back), then rename it.

    A reader never sees a half-written ``path``: either the old file or the new one. A
    temporary file left by a killed writer is removed at the next save of the same name.
    """
    path = Path(path)
    with atomic_output(path, durable=durable) as temporary:
        torch.save(state, temporary)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``.

    Raises:
        CheckpointError: naming ``path`` when it is missing, truncated, corrupt, holds
            objects other than tensors and plain values, or is not a basgg checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path}: cannot read the checkpoint (truncated, corrupt or not a basgg "
            f"checkpoint): {reason}"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "model_info" not in state:
        raise CheckpointError(f"{path}: not a basgg checkpoint (no 'model' and 'model_info')")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {state.get('format')!r}, this basgg reads "
            f"format {CHECKPOINT_FORMAT}"
        )
    return state


def check_model_fits(
    state: dict[str, Any], path: str | Path, *, model: nn.Module, model_info: dict[str, Any]
) -> None:
    """Raise :class:`CheckpointError` naming ``path`` and each difference if the weights
    in ``state`` were made for another model (head, mode, classes or layer shapes)."""
    saved = state["model_info"]
    differences = [
        f"{key} {saved.get(key)!r} in the checkpoint, {value!r} here"
        for key, value in model_info.items()
        if key not in ("object_names", "predicate_names") and saved.get(key) != value
    ]
    for key in ("object_names", "predicate_names"):
        if key in model_info and saved.get(key) != model_info[key] and not differences:
            first = _first_difference(saved.get(key) or [], model_info[key])
            differences.append(f"{key} differ ({first})")
    if not differences:
        differences = _state_differences(state["model"], model.state_dict())
    if differences:
        raise CheckpointError(
            f"{path}: the checkpoint does not fit this model: " + "; ".join(differences)
        )


def _first_difference(saved: list[str], current: list[str]) -> str:
    for index, (a, b) in enumerate(zip(saved, current, strict=False)):
        if a != b:
            return f"index {index}: {a!r} in the checkpoint, {b!r} here"
    return f"{len(saved)} names in the checkpoint, {len(current)} here"


def _state_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    differences = []
    missing = [key for key in current if key not in saved]
    unexpected = [key for key in saved if key not in current]
    if missing:
        differences.append(f"missing weights {_preview(missing)}")
    if unexpected:
        differences.append(f"unexpected weights {_preview(unexpected)}")
    for key, tensor in current.items():
        if key in saved and tuple(saved[key].shape) != tuple(tensor.shape):
            differences.append(
                f"{key} has shape {tuple(saved[key].shape)} in the checkpoint, "
                f"{tuple(tensor.shape)} here"
            )
    return differences


def _preview(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_model_weights(
    path: str | Path, model: nn.Module, *, model_info: dict[str, Any]
) -> dict[str, Any]:
    """Read ``path``, check it fits, load its weights into ``model``; returns the checkpoint."""
    state = read_checkpoint(path)
    check_model_fits(state, path, model=model, model_info=model_info)
    model.load_state_dict(state["model"])
    return state


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and Python random states, as tensors and plain values."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
