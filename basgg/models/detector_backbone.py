"""Feature-pyramid backbones for the detector: a classification trunk cut into stride stages.

Every backbone of :data:`basgg.models.backbone.BACKBONE_NAMES` works: the trunk's layers are
grouped by output stride (probed on a small image), the stride-8/16/32 stage outputs feed a
torchvision :class:`~torchvision.ops.FeaturePyramidNetwork` (plus a max-pooled stride-64
level). BatchNorm never uses batch statistics (detection batches are too small): in the
frozen stages it is folded into the preceding convolution, in the fine-tuned ones it becomes
a :class:`~torchvision.ops.misc.FrozenBatchNorm2d`. Weights come only from the state
dict handed in; nothing is downloaded.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from basgg.models.backbone import (
    BACKBONE_NAMES,
    EFFICIENTNET_LITE_NORMALISATION,
    IMAGENET_NORMALISATION,
    TORCHVISION_BACKBONES,
    load_without_head,
    torchvision_layers,
)
from basgg.models.efficientnet_lite import EfficientNetLite0

PYRAMID_STRIDES = (8, 16, 32)  # trunk stages fed to the FPN; a pooled stride-64 level is added
POOL_LEVEL = "pool"
_PROBE_SIZE = 64


def build_pyramid_backbone(
    name: str,
    *,
    weights: dict[str, Tensor] | None,
    trainable_layers: int,
    fpn_channels: int,
) -> tuple[BackboneWithFPN, tuple[tuple[float, ...], tuple[float, ...]]]:
    """A trunk with an FPN on its stride-8/16/32 stages, and its input normalisation.

    Args:
        name: one of :data:`basgg.models.backbone.BACKBONE_NAMES`.
        weights: state dict of the whole classification model (classifier entries optional),
            e.g. from :func:`basgg.pretrained.load_backbone_weights`; None keeps the random
            initialisation.
        trainable_layers: how many stride stages, counted from the stride-32 one, are
            fine-tuned (0: the whole trunk is frozen; the FPN always trains).
        fpn_channels: channels of every pyramid level.

    Returns:
        The backbone (pyramid levels ``"0"``, ``"1"``, ``"2"`` at strides 8, 16, 32 and
        ``"pool"`` at 64) and the (mean, std) of 0..255 RGB input it expects.

    Raises:
        ValueError: an unknown name, weights that do not fit, or ``trainable_layers`` out of
            range.
    """
    if name == "efficientnet_lite0":
        model = EfficientNetLite0()
        layers = model.layers()
        normalisation = EFFICIENTNET_LITE_NORMALISATION
    elif name in TORCHVISION_BACKBONES:
        model = TORCHVISION_BACKBONES[name](weights=None)
        layers = torchvision_layers(model)
        normalisation = IMAGENET_NORMALISATION
    else:
        raise ValueError(f"unknown detector backbone '{name}'; choose one of {BACKBONE_NAMES}")
    if weights is not None:
        load_without_head(model, weights, name=name)
    stages = stride_stages(layers)
    if not 0 <= trainable_layers <= len(stages):
        raise ValueError(
            f"trainable_layers must be in [0, {len(stages)}] for backbone '{name}' "
            f"(its stride stages: {list(stages)}), got {trainable_layers}"
        )
    missing = [stride for stride in PYRAMID_STRIDES if f"stride{stride}" not in stages]
    if missing:
        raise ValueError(f"backbone '{name}' has no stage of output stride {missing}")
    frozen = len(stages) - trainable_layers
    probe = torch.randn(2, 3, _PROBE_SIZE, _PROBE_SIZE, generator=torch.Generator().manual_seed(0))
    body = nn.Sequential()
    for position, (key, (stage, _)) in enumerate(stages.items()):
        if position < frozen:
            stage, probe = fold_batch_norm(stage, probe)
        else:
            probe = stage.eval()(probe)
        body.add_module(key, stage.requires_grad_(position >= frozen))
    freeze_batch_norm(body)  # the trainable stages keep separate, frozen BatchNorms
    pyramid = ChannelsLastPyramid(
        body,
        return_layers={
            f"stride{stride}": str(level) for level, stride in enumerate(PYRAMID_STRIDES)
        },
        in_channels_list=[stages[f"stride{stride}"][1] for stride in PYRAMID_STRIDES],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    return pyramid.to(memory_format=torch.channels_last), normalisation


class ChannelsLastPyramid(BackboneWithFPN):
    """A :class:`BackboneWithFPN` that runs in channels-last memory format (faster CPU
    convolutions, same values up to float rounding)."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) normalised images -> pyramid levels, shallow first."""
        return super().forward(x.contiguous(memory_format=torch.channels_last))


def pyramid_level_names() -> list[str]:
    """Names of the pyramid levels RoIs are pooled from (the stride-64 one is RPN-only)."""
    return [str(level) for level in range(len(PYRAMID_STRIDES))]


@torch.no_grad()
def stride_stages(layers: list[nn.Module]) -> OrderedDict[str, tuple[nn.Sequential, int]]:
    """Group consecutive trunk layers by output stride, probed on a 64x64 image.

    Returns:
        ``"stride<S>" -> (the layers of that output stride, their output channels)``,
        shallow first.
    """
    x = torch.zeros(1, 3, _PROBE_SIZE, _PROBE_SIZE)
    grouped: OrderedDict[str, list] = OrderedDict()
    for layer in layers:
        layer.eval()
        x = layer(x)
        key = f"stride{_PROBE_SIZE // x.shape[-1]}"
        grouped.setdefault(key, [[], 0])
        grouped[key][0].append(layer)
        grouped[key][1] = int(x.shape[1])
        if _PROBE_SIZE // x.shape[-1] > max(PYRAMID_STRIDES):
            raise ValueError(f"trunk layer {type(layer).__name__} goes past stride 32")
    return OrderedDict(
        (key, (nn.Sequential(*members), channels)) for key, (members, channels) in grouped.items()
    )


@torch.no_grad()
def fold_batch_norm(stage: nn.Module, probe: Tensor) -> tuple[nn.Module, Tensor]:
    """Fold each BatchNorm of a frozen ``stage`` into the convolution registered just before
    it (exact for a frozen stage, and faster: no separate scale and shift).

    The pairing follows registration order, which is the data flow of every supported trunk;
    the folded copy is used only if it gives ``stage``'s output on ``probe``.

    Returns:
        The folded copy (or ``stage`` itself) and ``stage``'s output on ``probe``.
    """
    stage.eval()
    reference = stage(probe)
    folded = _fold_pairs(copy.deepcopy(stage))
    tolerance = 1e-4 * float(reference.abs().max()) + 1e-6
    if torch.allclose(folded(probe), reference, rtol=1e-3, atol=tolerance):
        return folded, reference
    return stage, reference


def _fold_pairs(module: nn.Module) -> nn.Module:
    previous_name, previous = None, None
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            setattr(module, previous_name, fuse_conv_bn_eval(previous, child))
            setattr(module, name, nn.Identity())
        else:
            _fold_pairs(child)
        previous_name, previous = name, child
    return module


def freeze_batch_norm(module: nn.Module) -> int:
    """Replace every ``BatchNorm2d`` inside ``module`` by a ``FrozenBatchNorm2d`` holding the
    same statistics and affine parameters (eps kept); returns how many were replaced."""
    replaced = 0
    for child_name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, child_name, frozen)
            replaced += 1
        else:
            replaced += freeze_batch_norm(child)
    return replaced
