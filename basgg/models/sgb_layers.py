"""The layers where maskrcnn_benchmark (Scene-Graph-Benchmark's detector code) computes
something other than torchvision, rewritten from its formulas.

Each one replaces a torchvision part of :class:`~torchvision.models.detection.FasterRCNN`
so that a detector checkpoint trained by SGB gives the same outputs here:

- :class:`FrozenBatchNorm2dNoEps`: ``scale = weight / sqrt(running_var)`` with **no**
  epsilon (torchvision adds 1e-5).
- :class:`SGBFeaturePyramid`: FPN with SGB's layer names (``fpn_inner1..4``,
  ``fpn_layer1..4``), top-down by nearest x2 upsampling, plus ``LastLevelMaxPool``.
- :class:`SGBBoxCoder`: box deltas with the "+1" width convention, ``x2 = cx + w/2 - 1``
  and ``bbox_xform_clip = log(1000 / 16)``; :func:`clip_boxes_sgb` clips to ``size - 1``.
- :func:`nms_plus_one`: NMS whose IoU counts ``x2 - x1 + 1`` pixels.
- :func:`sgb_cell_anchors` / :class:`SGBAnchorGenerator`: Detectron's anchors (rounded
  widths around the centre of the first ``stride x stride`` cell), fixed strides per level.
- :class:`SGBRoIPooler`: legacy RoIAlign (``aligned=False``, sampling ratio 2) with fixed
  scales 1/4..1/32 and the FPN level of a box from its "+1" area.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import MultiScaleRoIAlign, batched_nms, nms, roi_align
from torchvision.ops.misc import FrozenBatchNorm2d

BBOX_XFORM_CLIP = math.log(1000.0 / 16)
CANONICAL_SCALE = 224  # FPN paper eq. (1): a 224x224 box maps to level 4
CANONICAL_LEVEL = 4
LEVEL_EPS = 1e-6
POOL_LEVEL = "pool"


class FrozenBatchNorm2dNoEps(FrozenBatchNorm2d):
    """maskrcnn_benchmark's FrozenBatchNorm2d: ``x * w / sqrt(var) + (b - mean * w /
    sqrt(var))`` per channel, without epsilon. Buffers ``weight``, ``bias``,
    ``running_mean``, ``running_var``."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=0.0)


class SGBFeaturePyramid(nn.Module):
    """maskrcnn_benchmark's FPN + ``LastLevelMaxPool``.

    Args:
        in_channels_list: channels of the trunk stages, shallow first (C2..C5).
        out_channels: channels of every pyramid level.

    ``forward`` takes the stage outputs (shallow first) and returns levels ``"0"`` ..
    ``"3"`` (strides 4..32 for a ResNet) and ``"pool"`` (max-pool, kernel 1, stride 2, of
    the coarsest level).
    """

    def __init__(self, in_channels_list: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.num_levels = len(in_channels_list)
        for index, in_channels in enumerate(in_channels_list, 1):
            inner = nn.Conv2d(in_channels, out_channels, 1)
            layer = nn.Conv2d(out_channels, out_channels, 3, padding=1)
            for conv in (inner, layer):  # Caffe2's XavierFill
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.zeros_(conv.bias)
            self.add_module(f"fpn_inner{index}", inner)
            self.add_module(f"fpn_layer{index}", layer)

    def forward(self, stages: Sequence[Tensor]) -> OrderedDict[str, Tensor]:
        """(B, C_l, H_l, W_l) stage outputs -> pyramid levels, finest first."""
        last = getattr(self, f"fpn_inner{self.num_levels}")(stages[-1])
        results = [getattr(self, f"fpn_layer{self.num_levels}")(last)]
        for index in range(self.num_levels - 1, 0, -1):
            top_down = F.interpolate(last, scale_factor=2, mode="nearest")
            last = getattr(self, f"fpn_inner{index}")(stages[index - 1]) + top_down
            results.insert(0, getattr(self, f"fpn_layer{index}")(last))
        levels = OrderedDict((str(index), level) for index, level in enumerate(results))
        levels[POOL_LEVEL] = F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0)
        return levels


class SGBBackbone(nn.Module):
    """Trunk + FPN: ``body`` (images -> C2..C5) then ``fpn``; ``out_channels`` for
    torchvision's heads."""

    def __init__(self, body: nn.Module, fpn: SGBFeaturePyramid, out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.out_channels = out_channels

    def forward(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """(B, 3, H, W) normalised images -> OrderedDict of levels ``"0"``..``"3"``,
        ``"pool"``."""
        return self.fpn(self.body(images))


class SGBBoxCoder(BoxCoder):
    """maskrcnn_benchmark's BoxCoder: widths ``x2 - x1 + 1``, decoded ``x2 = cx + w/2 - 1``,
    ``dw``/``dh`` clamped at ``log(1000 / 16)``. Same interface as torchvision's."""

    def __init__(self, weights: tuple[float, float, float, float]) -> None:
        super().__init__(weights, bbox_xform_clip=BBOX_XFORM_CLIP)

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """(N, 4) deltas turning ``proposals`` into ``reference_boxes``."""
        wx, wy, ww, wh = self.weights
        widths = proposals[:, 2] - proposals[:, 0] + 1
        heights = proposals[:, 3] - proposals[:, 1] + 1
        ctr_x, ctr_y = proposals[:, 0] + 0.5 * widths, proposals[:, 1] + 0.5 * heights
        gt_widths = reference_boxes[:, 2] - reference_boxes[:, 0] + 1
        gt_heights = reference_boxes[:, 3] - reference_boxes[:, 1] + 1
        gt_x = reference_boxes[:, 0] + 0.5 * gt_widths
        gt_y = reference_boxes[:, 1] + 0.5 * gt_heights
        return torch.stack(
            (
                wx * (gt_x - ctr_x) / widths,
                wy * (gt_y - ctr_y) / heights,
                ww * torch.log(gt_widths / widths),
                wh * torch.log(gt_heights / heights),
            ),
            dim=1,
        )

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """(N, 4 K) boxes from (N, 4 K) deltas relative to (N, 4) ``boxes``."""
        boxes = boxes.to(rel_codes.dtype)
        widths = boxes[:, 2] - boxes[:, 0] + 1  # (N,)
        heights = boxes[:, 3] - boxes[:, 1] + 1
        ctr_x, ctr_y = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx, dy = rel_codes[:, 0::4] / wx, rel_codes[:, 1::4] / wy  # (N, K)
        dw = torch.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        dh = torch.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)
        pred_x = dx * widths[:, None] + ctr_x[:, None]
        pred_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        decoded = torch.stack(
            (
                pred_x - 0.5 * pred_w,
                pred_y - 0.5 * pred_h,
                pred_x + 0.5 * pred_w - 1,
                pred_y + 0.5 * pred_h - 1,
            ),
            dim=2,
        )  # (N, K, 4)
        return decoded.flatten(1)


def clip_boxes_sgb(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp (..., 4) xyxy boxes to x in [0, width - 1], y in [0, height - 1] (``size`` is
    (height, width)), as ``BoxList.clip_to_image``."""
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width - 1)
    y = boxes[..., 1::2].clamp(min=0, max=height - 1)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def _plus_one(boxes: Tensor) -> Tensor:
    # torchvision's IoU of (x1, y1, x2 + 1, y2 + 1) is maskrcnn_benchmark's "+1" IoU
    return boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


def nms_plus_one(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Indices kept by NMS with maskrcnn_benchmark's "+1" IoU, best first."""
    return nms(_plus_one(boxes.float()), scores.float(), threshold)


def batched_nms_plus_one(boxes: Tensor, scores: Tensor, groups: Tensor, threshold: float) -> Tensor:
    """:func:`nms_plus_one` within each group (class or level), best first."""
    return batched_nms(_plus_one(boxes.float()), scores.float(), groups, threshold)


def sgb_cell_anchors(stride: int, size: float, aspect_ratios: Sequence[float]) -> Tensor:
    """(A, 4) float32 anchors of one level at the first cell, Detectron's rule.

    The ``stride x stride`` cell ``[0, 0, stride - 1, stride - 1]`` is reshaped to each
    height/width ratio ``r`` keeping its area (``w = round(sqrt(stride^2 / r))``,
    ``h = round(w r)``, half to even), then scaled by ``size / stride`` about its centre
    ``(stride - 1) / 2``; corners are ``centre -+ (side - 1) / 2``.
    """
    ratios = torch.tensor(list(aspect_ratios), dtype=torch.float64)
    centre = 0.5 * (stride - 1)
    widths = torch.round(torch.sqrt(stride * stride / ratios))  # (A,)
    heights = torch.round(widths * ratios)
    scale = float(size) / stride
    widths, heights = widths * scale, heights * scale
    anchors = torch.stack(
        (
            centre - 0.5 * (widths - 1),
            centre - 0.5 * (heights - 1),
            centre + 0.5 * (widths - 1),
            centre + 0.5 * (heights - 1),
        ),
        dim=1,
    )
    return anchors.float()


class _Buffers(nn.Module):
    """Buffers named ``"0"``, ``"1"``, ... (state-dict keys ``cell_anchors.0`` etc.)."""

    def __init__(self, tensors: Sequence[Tensor]) -> None:
        super().__init__()
        for index, tensor in enumerate(tensors):
            self.register_buffer(str(index), tensor)

    def __getitem__(self, index: int) -> Tensor:
        return getattr(self, str(index))

    def __len__(self) -> int:
        return len(self._buffers)


class SGBAnchorGenerator(nn.Module):
    """Anchors of every pyramid level, one size per level, fixed strides (the RPN's
    ``anchor_generator``: ``forward(image_list, features)`` -> per image (sum A H W, 4)).

    Args:
        sizes: anchor size per level.
        strides: stride per level (SGB: 4, 8, 16, 32, 64).
        aspect_ratios: height / width ratios, the same on every level.
    """

    def __init__(
        self, sizes: Sequence[int], strides: Sequence[int], aspect_ratios: Sequence[float]
    ) -> None:
        super().__init__()
        if len(sizes) != len(strides):
            raise ValueError(f"one anchor size per stride: {list(sizes)} vs {list(strides)}")
        self.strides = [int(stride) for stride in strides]
        self.cell_anchors = _Buffers(
            [
                sgb_cell_anchors(s, size, aspect_ratios)
                for s, size in zip(strides, sizes, strict=True)
            ]
        )

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per feature-map position, per level."""
        return [len(self.cell_anchors[index]) for index in range(len(self.cell_anchors))]

    def grid_anchors(self, grid_sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
        """Per level (H W A, 4): position-major, anchor-minor, rows then columns."""
        anchors = []
        for index, ((height, width), stride) in enumerate(
            zip(grid_sizes, self.strides, strict=True)
        ):
            base = self.cell_anchors[index]  # (A, 4)
            xs = torch.arange(0, width * stride, stride, dtype=torch.float32, device=base.device)
            ys = torch.arange(0, height * stride, stride, dtype=torch.float32, device=base.device)
            shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=-1).reshape(-1, 1, 4)
            anchors.append((shifts + base.reshape(1, -1, 4)).reshape(-1, 4))
        return anchors

    def forward(self, image_list: ImageList, features: list[Tensor]) -> list[Tensor]:
        """The same anchors for every image of the batch, levels concatenated."""
        grids = [tuple(int(side) for side in feature.shape[-2:]) for feature in features]
        anchors = torch.cat(self.grid_anchors(grids)).to(features[0].dtype)
        return [anchors for _ in range(len(image_list.image_sizes))]


def sgb_levels(boxes: Tensor, num_levels: int = 4, first_level: int = 2) -> Tensor:
    """(N,) pyramid level index (0 = finest pooled level) of (N, 4) boxes in input pixels:
    ``clamp(floor(4 + log2(sqrt(area) / 224 + 1e-6)), 2, 5) - 2`` with the "+1" area."""
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    levels = torch.floor(
        CANONICAL_LEVEL + torch.log2(torch.sqrt(area) / CANONICAL_SCALE + LEVEL_EPS)
    )
    levels = levels.clamp(min=first_level, max=first_level + num_levels - 1)
    return levels.to(torch.int64) - first_level


class SGBRoIPooler(MultiScaleRoIAlign):
    """maskrcnn_benchmark's ``Pooler``: each box pooled from its :func:`sgb_levels` level
    with legacy RoIAlign (``aligned=False``) at the fixed scale of that level.

    Args:
        featmap_names: the pooled levels, finest first (``"0"``..``"3"``).
        scales: their scales (1/4, 1/8, 1/16, 1/32).
        output_size: pooled side (7).
        sampling_ratio: samples per bin side (2).

    Called as torchvision's: ``pooler(features, boxes, image_sizes)`` -> (sum N_i, C, P, P);
    ``image_sizes`` is not needed (the scales are fixed).
    """

    def __init__(
        self,
        featmap_names: Sequence[str],
        *,
        scales: Sequence[float],
        output_size: int,
        sampling_ratio: int,
    ) -> None:
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        if len(scales) != len(featmap_names):
            raise ValueError(f"one scale per level: {list(scales)} vs {list(featmap_names)}")
        self.fixed_scales = [float(scale) for scale in scales]
        self.first_level = int(round(-math.log2(self.fixed_scales[0])))

    def levels(self, boxes: Tensor) -> Tensor:
        """(N,) level index of (N, 4) boxes."""
        return sgb_levels(boxes, len(self.fixed_scales), self.first_level)

    def forward(
        self,
        x: dict[str, Tensor],
        boxes: list[Tensor],
        image_shapes: list[tuple[int, int]] | None = None,
    ) -> Tensor:
        """(sum N_i, C, P, P) features of each image's (N_i, 4) xyxy boxes (input pixels)."""
        features = [x[name] for name in self.featmap_names]
        concat = torch.cat(boxes).to(features[0].dtype)  # (N, 4)
        image_index = torch.cat(
            [
                torch.full((len(b), 1), i, dtype=concat.dtype, device=concat.device)
                for i, b in enumerate(boxes)
            ]
        )
        rois = torch.cat([image_index, concat], dim=1)  # (N, 5)
        levels = self.levels(concat)
        size = self.output_size[0] if isinstance(self.output_size, Sequence) else self.output_size
        result = features[0].new_zeros((len(rois), features[0].shape[1], size, size))
        for level, (feature, scale) in enumerate(zip(features, self.fixed_scales, strict=True)):
            chosen = torch.nonzero(levels == level).squeeze(1)
            if len(chosen):
                result[chosen] = roi_align(
                    feature,
                    rois[chosen],
                    output_size=size,
                    spatial_scale=scale,
                    sampling_ratio=self.sampling_ratio,
                    aligned=False,
                ).to(result.dtype)
        return result
