"""Every config value has its range checked when the config loads, with the key named."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from basgg.cli import main
from basgg.config import Config, ConfigError, all_keys, load_config
from basgg.config_ranges import RULES
from basgg.training.setup import PACKAGED_CONFIGS


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("SOLVER.MAX_ITER", "-5", "an integer >= 0"),
        ("MODEL.ROI_RELATION_HEAD.BATCH_SIZE_PER_IMAGE", "0", "a positive integer"),
        ("SOLVER.LOG_PERIOD", "0", "a positive integer"),
        ("TEST.IMS_PER_BATCH", "0", "a positive integer"),
        ("SOLVER.IMS_PER_BATCH", "0", "a positive integer"),
        ("SOLVER.BASE_LR", "nan", "a number in (0, inf)"),
        ("SOLVER.BASE_LR", "inf", "a number in (0, inf)"),
        ("SOLVER.BASE_LR", "-0.1", "a number in (0, inf)"),
        ("MODEL.ROI_RELATION_HEAD.POSITIVE_FRACTION", "2.0", "a number in [0, 1]"),
        ("SOLVER.CHECKPOINT_PERIOD", "-1", "an integer >= 0"),
        ("SOLVER.VAL_PERIOD", "-1", "an integer >= 0"),
        ("MODEL.DEVICE", "banana", "cpu, cuda, cuda:N or mps"),
        ("MODEL.DEVICE", "cuda:x", "cpu, cuda, cuda:N or mps"),
        ("TEST.TOP_KS", "[]", "a non-empty list"),
        ("TEST.TOP_KS", "20,0", "a non-empty list, each item a positive integer"),
        ("MODEL.ROI_RELATION_HEAD.CONTEXT_DROPOUT_RATE", "1.0", "a number in [0, 1)"),
        ("SOLVER.WEIGHT_DECAY", "nan", "a number in [0, inf)"),
        ("SEED", "-1", "an integer in [0, 2**32)"),
        ("DATASETS.VAL_SIZE", "-3", "an integer >= 0"),
        ("TEST.MAX_VAL_IMAGES", "0", "-1 (all) or a positive integer"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(key: str, value: str, expected: str):
    with pytest.raises(ConfigError) as error:
        load_config(None, [key, value])
    assert f"config key {key!r} expects {expected}" in str(error.value)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:3", "mps"])
def test_known_devices_are_accepted(device: str) -> None:
    assert load_config(None, ["MODEL.DEVICE", device]).MODEL.DEVICE == device


def test_values_from_a_yaml_file_are_checked_and_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  VAL_PERIOD: -1\n")
    with pytest.raises(ConfigError, match="'SOLVER.VAL_PERIOD' expects") as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_negative_max_iter_exits_2_and_writes_no_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    assert main(["train", "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "-5"]) == 2
    assert "'SOLVER.MAX_ITER' expects an integer >= 0" in capsys.readouterr().err
    assert not out.exists()


def test_defaults_and_packaged_configs_are_in_range() -> None:
    load_config(None)
    for path in sorted(PACKAGED_CONFIGS.glob("*.yaml")):
        load_config(path)


def test_every_numeric_key_has_a_range_rule() -> None:
    def numeric_keys(node: object, prefix: str = "") -> list[str]:
        keys = []
        hints = typing.get_type_hints(type(node))
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)
            if dataclasses.is_dataclass(value):
                keys += numeric_keys(value, f"{prefix}{field.name}.")
            elif hints[field.name] in (int, float) or typing.get_origin(hints[field.name]) in (
                list,
                tuple,
            ):
                keys.append(prefix + field.name)
        return keys

    assert [key for key in numeric_keys(Config()) if key not in RULES] == []
    assert [key for key in RULES if key not in all_keys()] == []  # no rule for a stale key
