"""Resuming checks the configuration: a run continues only the run it started.

``OUTPUT_DIR/model_last.pth`` carries the resolved configuration it was trained with. A
resume compares it with the new one and refuses, naming each differing key, unless told to
continue anyway (``basgg train --resume-anyway``). Keys that do not change what is learned
may differ freely (:data:`RESUME_FREE_KEYS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from basgg.config import Config, config_to_dict

# keys that may change between a run and its resume: where things are, how often to report
RESUME_FREE_KEYS = frozenset(
    {
        "OUTPUT_DIR",
        "FEATURE_CACHE_DIR",
        "MODEL.DEVICE",
        "SOLVER.MAX_ITER",
        "SOLVER.CHECKPOINT_PERIOD",
        "SOLVER.LOG_PERIOD",
        "TEST.IMS_PER_BATCH",
    }
)


class ResumeConfigError(ValueError):
    """The new configuration differs from the one the checkpoint was trained with."""


def config_differences(saved: dict[str, Any], config: Config) -> list[str]:
    """``KEY: A in the checkpoint, B now`` for each key whose value differs.

    A key the saved config lacks (written by an older basgg) counts as its default; keys in
    :data:`RESUME_FREE_KEYS` are ignored.
    """
    current = _flat(config_to_dict(config))
    defaults = _flat(config_to_dict(Config()))
    saved_flat = _flat(saved)
    differences = []
    for key, value in current.items():
        if key in RESUME_FREE_KEYS:
            continue
        before = saved_flat.get(key, defaults[key])
        if _normal(before) != _normal(value):
            differences.append(f"{key}: {before!r} in the checkpoint, {value!r} now")
    return differences


def check_resume_config(
    saved: dict[str, Any] | None, config: Config, checkpoint: str | Path, *, anyway: bool
) -> list[str]:
    """Raise :class:`ResumeConfigError` naming the differing keys (unless ``anyway``);
    returns the differences."""
    differences = config_differences(saved or {}, config)
    if differences and not anyway:
        raise ResumeConfigError(
            f"{checkpoint}: cannot resume: the config differs from the one this run was "
            f"started with ({'; '.join(differences)}). Use another OUTPUT_DIR for a new run, "
            "or pass --resume-anyway to continue this one with the new values"
        )
    return differences


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normal(item) for item in value]
    return value
