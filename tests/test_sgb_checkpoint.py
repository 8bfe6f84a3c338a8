"""Importing a maskrcnn_benchmark / Scene-Graph-Benchmark detector checkpoint.

The SGB key names and shapes are written here from SGB's code and config
(``maskrcnn_benchmark/modeling/backbone/resnet.py``, ``fpn.py``, ``rpn/rpn.py``,
``rpn/anchor_generator.py``, ``roi_heads/box_head/roi_box_feature_extractors.py``,
``roi_box_predictors.py``; ``configs/e2e_relation_X_101_32_8_FPN_1x.yaml``), not from
basgg's mapping. Full-size tensors are meta tensors (no memory) or stride-0 views of one
number (a full-size file of a few hundred kB).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from basgg.config import Config
from basgg.models.detector_builder import detector_from_config
from basgg.models.sgb_checkpoint import map_sgb_state_dict, strip_module_prefix
from basgg.models.sgb_detector import SGBDetector, build_sgb_detector
from basgg.training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, atomic_save
from basgg.training.detector_files import (
    SGB_DETECTOR_SETTINGS,
    detector_file_config,
    read_detector_file,
    sgb_detector_config,
)
from basgg.training.detector_training import load_detector, sync_detector_config

VG_CLASSES = 151
BN_BUFFERS = ("weight", "bias", "running_mean", "running_var")


def sgb_key_shapes(
    num_classes: int = VG_CLASSES,
    blocks: tuple[int, ...] = (3, 4, 23, 3),  # R-101-FPN
    groups: int = 32,  # NUM_GROUPS
    width: int = 8,  # WIDTH_PER_GROUP
    fpn: int = 256,  # BACKBONE_OUT_CHANNELS
    mlp: int = 4096,  # MLP_HEAD_DIM
    anchors: int = 4,  # one size x 4 ASPECT_RATIOS per level
) -> dict[str, tuple[int, ...]]:
    """Every key of SGB's relation-config detector state dict and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}

    def frozen_bn(prefix: str, channels: int) -> None:
        for buffer in BN_BUFFERS:
            shapes[f"{prefix}.{buffer}"] = (channels,)

    shapes["backbone.body.stem.conv1.weight"] = (64, 3, 7, 7)  # STEM_OUT_CHANNELS 64
    frozen_bn("backbone.body.stem.bn1", 64)
    in_channels = 64
    for stage, count in enumerate(blocks, 1):
        bottleneck = groups * width * 2 ** (stage - 1)
        out = 256 * 2 ** (stage - 1)  # RES2_OUT_CHANNELS 256
        for block in range(count):
            prefix = f"backbone.body.layer{stage}.{block}"
            block_in = in_channels if block == 0 else out
            if block == 0:  # in_channels != out_channels
                shapes[f"{prefix}.downsample.0.weight"] = (out, block_in, 1, 1)
                frozen_bn(f"{prefix}.downsample.1", out)
            shapes[f"{prefix}.conv1.weight"] = (bottleneck, block_in, 1, 1)
            frozen_bn(f"{prefix}.bn1", bottleneck)
            shapes[f"{prefix}.conv2.weight"] = (bottleneck, bottleneck // groups, 3, 3)
            frozen_bn(f"{prefix}.bn2", bottleneck)
            shapes[f"{prefix}.conv3.weight"] = (out, bottleneck, 1, 1)
            frozen_bn(f"{prefix}.bn3", out)
        in_channels = out
    for index, channels in enumerate((256, 512, 1024, 2048), 1):
        shapes[f"backbone.fpn.fpn_inner{index}.weight"] = (fpn, channels, 1, 1)
        shapes[f"backbone.fpn.fpn_inner{index}.bias"] = (fpn,)
        shapes[f"backbone.fpn.fpn_layer{index}.weight"] = (fpn, fpn, 3, 3)
        shapes[f"backbone.fpn.fpn_layer{index}.bias"] = (fpn,)
    for level in range(5):  # BufferList of cell anchors, one per ANCHOR_STRIDE
        shapes[f"rpn.anchor_generator.cell_anchors.{level}"] = (anchors, 4)
    shapes["rpn.head.conv.weight"] = (fpn, fpn, 3, 3)  # RPN_MID_CHANNEL 256
    shapes["rpn.head.conv.bias"] = (fpn,)
    shapes["rpn.head.cls_logits.weight"] = (anchors, fpn, 1, 1)
    shapes["rpn.head.cls_logits.bias"] = (anchors,)
    shapes["rpn.head.bbox_pred.weight"] = (4 * anchors, fpn, 1, 1)
    shapes["rpn.head.bbox_pred.bias"] = (4 * anchors,)
    shapes["roi_heads.box.feature_extractor.fc6.weight"] = (mlp, fpn * 7 * 7)
    shapes["roi_heads.box.feature_extractor.fc6.bias"] = (mlp,)
    shapes["roi_heads.box.feature_extractor.fc7.weight"] = (mlp, mlp)
    shapes["roi_heads.box.feature_extractor.fc7.bias"] = (mlp,)
    shapes["roi_heads.box.predictor.cls_score.weight"] = (num_classes, mlp)
    shapes["roi_heads.box.predictor.cls_score.bias"] = (num_classes,)
    shapes["roi_heads.box.predictor.bbox_pred.weight"] = (4 * num_classes, mlp)
    shapes["roi_heads.box.predictor.bbox_pred.bias"] = (4 * num_classes,)
    return shapes


ATTRIBUTE_HEAD = {  # ATTRIBUTE_ON: its own FPN2MLP extractor and predictor (201 attributes)
    "roi_heads.attribute.feature_extractor.fc6.weight": (2048, 256 * 49),
    "roi_heads.attribute.feature_extractor.fc7.weight": (2048, 2048),
    "roi_heads.attribute.predictor.cls_score.weight": (201, 2048),
}


def meta_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def numbered_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Key i holds the value i everywhere (a stride-0 view: no memory, tiny files)."""
    return {
        key: torch.tensor([float(index)]).expand(shape)
        for index, (key, shape) in enumerate(shapes.items())
    }


@pytest.fixture(scope="module")
def sgb_meta_detector() -> SGBDetector:
    with torch.device("meta"):
        return build_sgb_detector(num_classes=VG_CLASSES)


def test_sgb_key_list_loads_strictly(sgb_meta_detector: SGBDetector) -> None:
    shapes = sgb_key_shapes()
    model_state = sgb_meta_detector.state_dict()
    assert len(shapes) == len(model_state) == 555
    mapped, unused = map_sgb_state_dict(meta_state(shapes), model_state, source="sgb.pth")
    assert unused == [] and set(mapped) == set(model_state)
    sgb_meta_detector.load_state_dict(mapped, strict=True, assign=True)
    parameters = sum(value.numel() for value in mapped.values())
    assert 160e6 < parameters < 165e6  # ResNeXt-101 32x8d FPN + 2 x 4096 MLP, 151 classes
    # a few mappings spelled out
    assert tuple(mapped["rcnn.rpn.head.conv.0.0.weight"].shape) == (256, 256, 3, 3)
    assert tuple(mapped["rcnn.backbone.body.conv1.weight"].shape) == (64, 3, 7, 7)
    assert tuple(mapped["rcnn.roi_heads.box_head.fc6.weight"].shape) == (4096, 12544)


def test_attribute_head_is_listed_unused(sgb_meta_detector: SGBDetector) -> None:
    state = meta_state({**sgb_key_shapes(), **ATTRIBUTE_HEAD})
    _, unused = map_sgb_state_dict(state, sgb_meta_detector.state_dict(), source="sgb.pth")
    assert sorted(unused) == sorted(ATTRIBUTE_HEAD)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("drop", "missing 'backbone.body.layer3.17.conv2.weight'"),
        ("extra", "unexpected 'roi_heads.mask.predictor.weight'"),
        (
            "shape",
            "backbone.fpn.fpn_inner4.weight has shape (256, 1024, 1, 1), "
            "SGB's detector needs (256, 2048, 1, 1)",
        ),
    ],
)
def test_wrong_keys_are_named(sgb_meta_detector: SGBDetector, change: str, message: str) -> None:
    shapes = sgb_key_shapes()
    if change == "drop":
        del shapes["backbone.body.layer3.17.conv2.weight"]
    elif change == "extra":
        shapes["roi_heads.mask.predictor.weight"] = (3,)
    else:
        shapes["backbone.fpn.fpn_inner4.weight"] = (256, 1024, 1, 1)
    with pytest.raises(ValueError, match="^checkpoints/sgb.pth: ") as error:
        map_sgb_state_dict(
            meta_state(shapes), sgb_meta_detector.state_dict(), source="checkpoints/sgb.pth"
        )
    assert message in str(error.value)
    if change == "shape":  # a misshapen key is not reported missing as well
        assert "missing" not in str(error.value)


def _write_sgb_file(
    path: Path, shapes: dict[str, tuple[int, ...]], *, legacy: bool = False
) -> dict[str, torch.Tensor]:
    state = numbered_state(shapes)
    torch.save(
        {
            "model": {f"module.{key}": value for key, value in state.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]},
            "scheduler": {"milestones": [30000, 45000], "gamma": 0.1, "last_epoch": 50000},
            "iteration": 50000,
        },
        path,
        _use_new_zipfile_serialization=not legacy,  # PyTorch 1.4 (SGB's) wrote the legacy one
    )
    return state


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_module_prefixed_sgb_file_loads_as_sgb_detector(tmp_path: Path, legacy: bool) -> None:
    shapes = sgb_key_shapes()
    state = _write_sgb_file(tmp_path / "model_final.pth", shapes, legacy=legacy)
    assert (tmp_path / "model_final.pth").stat().st_size < 2_000_000
    names = ["__background__", *(f"object{index}" for index in range(1, VG_CLASSES))]
    detector, object_names = load_detector(tmp_path / "model_final.pth", object_names=names)
    assert isinstance(detector, SGBDetector) and object_names == names
    assert not detector.training
    assert not any(t.is_meta for t in [*detector.parameters(), *detector.buffers()])
    loaded = detector.state_dict()
    for sgb_key, basgg_key in [
        (
            "roi_heads.box.predictor.cls_score.weight",
            "rcnn.roi_heads.box_predictor.cls_score.weight",
        ),
        ("rpn.head.conv.bias", "rcnn.rpn.head.conv.0.0.bias"),
        ("backbone.body.stem.bn1.running_var", "rcnn.backbone.body.bn1.running_var"),
        ("backbone.fpn.fpn_layer2.weight", "rcnn.backbone.fpn.fpn_layer2.weight"),
    ]:
        assert torch.equal(loaded[basgg_key], state[sgb_key])
    heads = detector.rcnn.roi_heads
    assert (heads.score_thresh, heads.nms_thresh, heads.detections_per_img) == (0.01, 0.3, 80)
    assert detector.rcnn.transform.min_size == (600,) and detector.rcnn.transform.max_size == 1000


def test_class_count_must_match_the_dataset(tmp_path: Path) -> None:
    _write_sgb_file(tmp_path / "sgb.pth", sgb_key_shapes())
    five = ["__background__", "cat", "dog", "man", "tree"]
    with pytest.raises(CheckpointError, match=r"sgb.pth: the detector was trained on 150 object"):
        load_detector(tmp_path / "sgb.pth", object_names=five)


def test_sgb_file_with_a_missing_key_names_it_and_the_file(tmp_path: Path) -> None:
    shapes = sgb_key_shapes()
    del shapes["rpn.head.bbox_pred.bias"]
    _write_sgb_file(tmp_path / "broken.pth", shapes)
    with pytest.raises(CheckpointError, match=r"broken.pth: .*missing 'rpn.head.bbox_pred.bias'"):
        load_detector(tmp_path / "broken.pth")


def test_file_kinds(tmp_path: Path) -> None:
    _write_sgb_file(tmp_path / "sgb.pth", sgb_key_shapes())
    kind, contents = read_detector_file(tmp_path / "sgb.pth")
    assert kind == "sgb" and contents["iteration"] == 50000
    assert all(key.startswith(("backbone.", "rpn.", "roi_heads.")) for key in contents["model"])
    torch.save({"model": {"fc.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: neither a basgg detector checkpoint"):
        read_detector_file(tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"text.pth: cannot read .*weights_only=True"):
        read_detector_file(tmp_path / "text.pth")


def test_sgb_file_sets_the_detector_config(tmp_path: Path) -> None:
    _write_sgb_file(tmp_path / "sgb.pth", sgb_key_shapes())
    config = Config()
    config.MODEL.DETECTOR.NMS_THRESH = 0.25  # a run setting: the relation run keeps its own
    sync_detector_config(config, detector_file_config(tmp_path / "sgb.pth"), source="sgb.pth")
    settings = config.MODEL.DETECTOR
    assert settings.ARCHITECTURE == "sgb" and settings.BACKBONE == "resnext101_32x8d"
    assert settings.ANCHOR_SIZES == [32, 64, 128, 256, 512] and settings.NMS_THRESH == 0.25
    with torch.device("meta"):
        detector = detector_from_config(config, num_classes=VG_CLASSES, backbone_weights=None)
    assert isinstance(detector, SGBDetector) and detector.rcnn.roi_heads.nms_thresh == 0.25
    assert sgb_detector_config().MODEL.DETECTOR.REPRESENTATION_SIZE == 4096
    assert SGB_DETECTOR_SETTINGS["ASPECT_RATIOS"][0] == pytest.approx(0.23232838)


def test_sgb_architecture_needs_sgb_backbone() -> None:
    config = sgb_detector_config()
    config.MODEL.DETECTOR.BACKBONE = "resnet50"
    with pytest.raises(ValueError, match="MODEL.DETECTOR.BACKBONE is 'resnet50'"):
        detector_from_config(config, num_classes=5, backbone_weights=None)


def test_module_prefix_is_stripped_only_when_every_key_has_it() -> None:
    assert list(strip_module_prefix({"module.a": 1, "module.b": 2})) == ["a", "b"]
    assert list(strip_module_prefix({"module.a": 1, "b": 2})) == ["module.a", "b"]


def test_tiny_sgb_detector_detects_after_loading_sgb_keys() -> None:
    """SGB key names of a tiny model load into the tiny detector and it runs end to end."""
    torch.manual_seed(0)
    sizes = dict(
        fpn_channels=8,
        representation_size=16,
        block_counts=(1, 1, 1, 1),
        groups=2,
        width_per_group=4,
        min_size=64,
        max_size=96,
    )
    source = build_sgb_detector(num_classes=5, score_thresh=0.0, **sizes)
    target = build_sgb_detector(num_classes=5, score_thresh=0.0, **sizes)
    shapes = sgb_key_shapes(num_classes=5, blocks=(1, 1, 1, 1), groups=2, width=4, fpn=8, mlp=16)
    # SGB-named copy of the source's weights (the mapping read backwards, key by key)
    source_state = source.state_dict()
    probe, _ = map_sgb_state_dict(meta_state(shapes), target.state_dict(), source="tiny")
    backwards = dict(zip(probe, shapes, strict=True))
    sgb_state = {backwards[key]: source_state[key] for key in probe}
    mapped, _ = map_sgb_state_dict(sgb_state, target.state_dict(), source="tiny")
    target.load_state_dict(mapped, strict=True)
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    expected, found = source.detect([image])[0], target.detect([image])[0]
    assert len(found) > 0 and torch.equal(found.boxes, expected.boxes)
    # clipped to size - 1 in the detector's 64 x 96 input, then scaled back to 40 x 60
    assert found.boxes[:, 2].max() <= 95 * 60 / 96 + 1e-4
    assert found.boxes[:, 3].max() <= 63 * 40 / 64 + 1e-4
    assert bool((found.scores[:-1] >= found.scores[1:]).all())  # best first


def test_basgg_checkpoint_saved_before_the_architecture_key_stays_basgg(tmp_path: Path) -> None:
    config = Config()
    detector_section = {"BACKBONE": "efficientnet_lite0", "FPN_CHANNELS": 64}
    atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "model": {},
            "model_info": {"kind": "detector"},
            "config": {"MODEL": {"DETECTOR": detector_section}},
        },
        tmp_path / "old.pth",
    )
    config.MODEL.DETECTOR.ARCHITECTURE = "sgb"
    sync_detector_config(config, detector_file_config(tmp_path / "old.pth"), source="old.pth")
    assert config.MODEL.DETECTOR.ARCHITECTURE == "basgg"
    assert config.MODEL.DETECTOR.FPN_CHANNELS == 64
