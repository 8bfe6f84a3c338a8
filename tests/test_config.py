"""Configuration: SGB-style KEY VALUE overrides, typing, suggestions, save/load."""

from __future__ import annotations

import pytest

from basgg.config import Config, ConfigError, all_keys, apply_overrides, load_config, save_config
from basgg.structures import Mode

SEED_STAGE_1 = [
    "MODEL.PRETRAINED_MODEL_CKPT", "",
    "MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER", "False",
    "MODEL.ROI_RELATION_HEAD.WITH_TRANSFER_CLASSIFIER", "False",
]  # fmt: skip
SEED_STAGE_2 = [
    "MODEL.PRETRAINED_MODEL_CKPT", "outputs/general/model_final.pth",
    "MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER", "True",
    "MODEL.ROI_RELATION_HEAD.WITH_TRANSFER_CLASSIFIER", "True",
]  # fmt: skip


def test_seed_stage_lines_work_verbatim() -> None:
    stage1 = load_config(overrides=SEED_STAGE_1)
    head = stage1.MODEL.ROI_RELATION_HEAD
    assert stage1.MODEL.PRETRAINED_MODEL_CKPT == ""
    assert head.WITH_CLEAN_CLASSIFIER is False and head.WITH_TRANSFER_CLASSIFIER is False
    stage2 = load_config(overrides=SEED_STAGE_2)
    head = stage2.MODEL.ROI_RELATION_HEAD
    assert stage2.MODEL.PRETRAINED_MODEL_CKPT == "outputs/general/model_final.pth"
    assert head.WITH_CLEAN_CLASSIFIER is True and head.WITH_TRANSFER_CLASSIFIER is True


def test_quoted_empty_string_as_typed_inside_other_quotes() -> None:
    config = apply_overrides(Config(), ["MODEL.PRETRAINED_MODEL_CKPT", "''"])
    assert config.MODEL.PRETRAINED_MODEL_CKPT == ""


@pytest.mark.parametrize(
    ("key", "value", "attribute", "expected"),
    [
        ("SOLVER.IMS_PER_BATCH", "8", ("SOLVER", "IMS_PER_BATCH"), 8),
        ("SOLVER.BASE_LR", "1e-3", ("SOLVER", "BASE_LR"), 0.001),
        ("SOLVER.MAX_ITER", "200", ("SOLVER", "MAX_ITER"), 200),
        ("OUTPUT_DIR", "outputs/x", ("OUTPUT_DIR",), "outputs/x"),
        ("DATASETS.DATA_DIR", "/data/vg", ("DATASETS", "DATA_DIR"), "/data/vg"),
        ("solver.base_lr", "0.5", ("SOLVER", "BASE_LR"), 0.5),
        ("MODEL.ROI_RELATION_HEAD.PREDICTOR", "VCTreePredictor",
         ("MODEL", "ROI_RELATION_HEAD", "PREDICTOR"), "VCTreePredictor"),
    ],
)  # fmt: skip
def test_override_converts_type(
    key: str, value: str, attribute: tuple[str, ...], expected: object
) -> None:
    node: object = apply_overrides(Config(), [key, value])
    for name in attribute:
        node = getattr(node, name)
    assert node == expected and type(node) is type(expected)


def test_mode_from_the_two_flags() -> None:
    head = "MODEL.ROI_RELATION_HEAD."
    assert Config().mode is Mode.PREDCLS
    assert apply_overrides(Config(), [head + "USE_GT_OBJECT_LABEL", "False"]).mode is Mode.SGCLS
    sgdet = [head + "USE_GT_OBJECT_LABEL", "False", head + "USE_GT_BOX", "False"]
    assert apply_overrides(Config(), sgdet).mode is Mode.SGDET
    with pytest.raises(ValueError, match="USE_GT_OBJECT_LABEL"):
        _ = apply_overrides(Config(), [head + "USE_GT_BOX", "False"]).mode


def test_unknown_key_names_it_and_suggests_the_closest() -> None:
    typo = "MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASIFIER"
    with pytest.raises(ConfigError) as error:
        apply_overrides(Config(), [typo, "True"])
    message = str(error.value)
    assert typo in message and "command line" in message
    assert "did you mean 'MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER'" in message


def test_missing_section_prefix_suggests_full_key() -> None:
    with pytest.raises(ConfigError, match="did you mean 'SOLVER.BASE_LR'"):
        apply_overrides(Config(), ["BASE_LR", "0.1"])


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("SOLVER.MAX_ITER", "ten", "expects an integer"),
        ("SOLVER.MAX_ITER", "1.5", "expects an integer"),
        ("SOLVER.BASE_LR", "fast", "expects a number"),
        ("MODEL.ROI_RELATION_HEAD.USE_GT_BOX", "maybe", "expects True or False"),
        ("MODEL", "x", "is a section"),
    ],
)
def test_wrong_value_type_is_an_error_naming_the_key(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as error:
        apply_overrides(Config(), [key, value])
    assert repr(key) in str(error.value)


def test_odd_number_of_override_words() -> None:
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        apply_overrides(Config(), ["SOLVER.MAX_ITER"])


def test_yaml_file_then_overrides_and_round_trip(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.002\n  MAX_ITER: 300\nmodel:\n  device: cuda\n")
    config = load_config(path, ["SOLVER.MAX_ITER", "400"])
    assert (config.SOLVER.BASE_LR, config.SOLVER.MAX_ITER, config.MODEL.DEVICE) == (
        0.002,
        400,
        "cuda",
    )
    saved = save_config(config, tmp_path / "out" / "config.yaml")
    assert load_config(saved) == config


def test_yaml_errors_name_the_file(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  MAX_ITERS: 3\n")
    with pytest.raises(ConfigError, match=r"SOLVER\.MAX_ITERS.*bad\.yaml.*did you mean"):
        load_config(path)
    path.write_text("SOLVER:\n  MAX_ITER: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("SOLVER:\n  MAX_ITER: 2.5\n")
    with pytest.raises(ConfigError, match="expects an integer"):
        load_config(path)


def test_all_keys_lists_the_familiar_names() -> None:
    keys = set(all_keys())
    for key in (
        "MODEL.PRETRAINED_MODEL_CKPT",
        "MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER",
        "MODEL.ROI_RELATION_HEAD.WITH_TRANSFER_CLASSIFIER",
        "MODEL.ROI_RELATION_HEAD.USE_GT_BOX",
        "MODEL.ROI_RELATION_HEAD.USE_GT_OBJECT_LABEL",
        "MODEL.ROI_RELATION_HEAD.PREDICTOR",
        "SOLVER.IMS_PER_BATCH",
        "SOLVER.BASE_LR",
        "SOLVER.MAX_ITER",
        "OUTPUT_DIR",
        "DATASETS.DATA_DIR",
    ):
        assert key in keys
