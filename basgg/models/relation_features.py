"""Relation features from the detector, as Scene-Graph-Benchmark computes them.

Scene-Graph-Benchmark (SGB) feeds its relation heads with the VG-trained Faster R-CNN's own
features. Two parts, split by what trains:

* **Frozen** (:class:`DetectorPyramid`): the detector's input transform, trunk and FPN.
  Their output for one image is an :class:`ImagePyramid`: the pyramid levels the box head
  pools from. It can be cached per image or computed in each step ("online").
* **Trainable** (:class:`RelationFeatureExtractor`), all starting from the detector:

  - object features: the detector's multi-level RoIAlign (level chosen by box size), then a
    copy of its box head (fc6, fc7), as SGB's ``box_feature_extractor``;
  - union features: SGB's ``RelationFeatureExtractor``. The union box of each pair is pooled
    from *every* level (``POOLING_ALL_LEVELS``: the levels are concatenated on channels and
    reduced back by a 3x3 convolution + ReLU, as SGB's ``Pooler(cat_all_levels=True)``), a
    two-channel rectangle mask of the subject and object boxes (side ``4 * resolution - 1``,
    boxes drawn in *image* coordinates, as SGB) runs through two convolutions to the same
    (C, resolution, resolution) shape and is added, then another copy of the box head.

Boxes arrive in the pixels of the dataset image (the :class:`~basgg.structures.SceneGraph`'s)
and are scaled to the detector's input pixels. Everything runs on any device; under CUDA
autocast the convolutions and MLPs run in float16.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from basgg.boxes import union_boxes

RECT_CHANNELS_DIVISOR = 2  # rect conv: 2 -> C / 2 -> C channels, as SGB
BATCH_NORM_MOMENTUM = 0.01  # SGB's rect-conv BatchNorm momentum


@dataclass
class ImagePyramid:
    """The frozen detector's pyramid levels for one image.

    Attributes:
        levels: level name -> (C, h_l, w_l), cropped to the image (no batch padding).
        strides: level name -> stride of that level in detector-input pixels.
        scale: (scale_y, scale_x) from dataset-image pixels to detector-input pixels.
        input_size: (height, width) of the image as the detector saw it (unpadded).
    """

    levels: dict[str, Tensor]
    strides: dict[str, int]
    scale: tuple[float, float]
    input_size: tuple[int, int]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ImagePyramid:
        """A copy with every level on ``device`` (and in ``dtype`` when given)."""
        levels = {name: level.to(device, dtype) for name, level in self.levels.items()}
        return ImagePyramid(levels, dict(self.strides), self.scale, self.input_size)

    def num_values(self) -> int:
        """Number of stored feature values (sum over levels of C * h * w)."""
        return sum(level.numel() for level in self.levels.values())


class DetectorPyramid(nn.Module):
    """The frozen front of a detector: uint8 images -> one :class:`ImagePyramid` each.

    Args:
        transform: the detector's input transform (resize, normalise, batch with padding),
            a torchvision ``GeneralizedRCNNTransform``-like module returning (ImageList, _).
        backbone: trunk + FPN, (B, 3, H, W) -> OrderedDict of levels.
        level_names: the levels the box head pools from (the others, e.g. the RPN-only
            stride-64 level, are dropped).

    Always in eval mode, no gradients.
    """

    def __init__(
        self, *, transform: nn.Module, backbone: nn.Module, level_names: Sequence[str]
    ) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.level_names = list(level_names)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> DetectorPyramid:
        """Stay in eval mode: the trunk and FPN are frozen."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(iter(self.backbone.parameters())).device

    @torch.no_grad()
    def forward(self, images: Sequence[Tensor]) -> list[ImagePyramid]:
        """The pyramids of uint8 (3, H_i, W_i) images, on the backbone's device."""
        device = self.device
        floats = [image.to(device, torch.float32) for image in images]
        image_list, _ = self.transform(floats)
        features = self.backbone(image_list.tensors)  # name -> (B, C, h, w)
        padded = image_list.tensors.shape[-2:]
        strides = {name: _stride(padded, features[name].shape[-2:]) for name in self.level_names}
        pyramids = []
        for index, (image, size) in enumerate(zip(images, image_list.image_sizes, strict=True)):
            height, width = int(size[0]), int(size[1])
            levels = {
                name: features[name][
                    index,
                    :,
                    : math.ceil(height / strides[name]),
                    : math.ceil(width / strides[name]),
                ].float()
                for name in self.level_names
            }
            scale = (height / int(image.shape[-2]), width / int(image.shape[-1]))
            pyramids.append(ImagePyramid(levels, strides, scale, (height, width)))
        return pyramids


class RelationFeatureExtractor(nn.Module):
    """Trainable object and union features over frozen pyramids (SGB's relation features).

    Args:
        box_roi_pool: the detector's multi-level RoIAlign (torchvision
            ``MultiScaleRoIAlign``-like: ``featmap_names``, ``output_size``,
            ``sampling_ratio``; called as ``pool(levels, boxes, image_sizes)``).
        box_head: the detector's box head, (K, C, P, P) -> (K, D); copied twice (object and
            union heads), the copies train.
        in_channels: C, channels of every pyramid level.
        pool_all_levels: pool union boxes from every level and reduce (SGB's
            ``POOLING_ALL_LEVELS``); False pools each union box from its own level.
        aligned: RoIAlign half-pixel alignment of the all-levels union pooling (SGB: False).

    ``object_dim`` and ``union_dim`` are D, the box head's output size.
    """

    def __init__(
        self,
        *,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        in_channels: int,
        pool_all_levels: bool = True,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.object_pool = copy.deepcopy(box_roi_pool)
        self.level_names = [str(name) for name in box_roi_pool.featmap_names]
        output_size = box_roi_pool.output_size
        self.resolution = int(output_size[0] if isinstance(output_size, Sequence) else output_size)
        self.sampling_ratio = int(box_roi_pool.sampling_ratio)
        self.aligned = aligned
        self.in_channels = in_channels
        self.pool_all_levels = pool_all_levels
        self.object_head = copy.deepcopy(box_head).requires_grad_(True)
        self.union_head = copy.deepcopy(box_head).requires_grad_(True)
        self.union_reduce = None
        if pool_all_levels:
            conv = nn.Conv2d(in_channels * len(self.level_names), in_channels, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            self.union_reduce = nn.Sequential(conv, nn.ReLU(inplace=True))
        self.rect_size = 4 * self.resolution - 1
        half = in_channels // RECT_CHANNELS_DIVISOR
        self.rect_conv = nn.Sequential(
            nn.Conv2d(2, half, kernel_size=7, stride=2, padding=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(half, momentum=BATCH_NORM_MOMENTUM),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            nn.Conv2d(half, in_channels, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(in_channels, momentum=BATCH_NORM_MOMENTUM),
        )
        with torch.no_grad():
            probe = torch.zeros(1, in_channels, self.resolution, self.resolution)
            probe = probe.to(next(iter(box_head.parameters())).device)
            self.object_dim = self.union_dim = int(box_head(probe).shape[-1])

    def load_box_head(self, box_head: nn.Module) -> None:
        """Start both heads from ``box_head``'s weights (a trained detector's)."""
        self.object_head.load_state_dict(box_head.state_dict())
        self.union_head.load_state_dict(box_head.state_dict())

    def forward(
        self, pyramids: Sequence[ImagePyramid], boxes: Sequence[Tensor], pairs: Sequence[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Object features of every box and union features of the given pairs, per image.

        Args:
            pyramids: per image, its frozen pyramid.
            boxes: per image (N_i, 4) xyxy in dataset-image pixels.
            pairs: per image (R_i, 2) (subject, object) indices into ``boxes[i]``.

        Returns:
            Per image (N_i, object_dim) and (R_i, union_dim), on the pyramids' device.
        """
        if not len(pyramids) == len(boxes) == len(pairs):
            raise ValueError(
                f"pyramids, boxes and pairs: expected equal lengths, got "
                f"{len(pyramids)}, {len(boxes)}, {len(pairs)}"
            )
        if not pyramids:
            return [], []
        device = next(iter(pyramids[0].levels.values())).device
        levels, sizes = _batched_levels(pyramids, self.level_names, device)
        scaled = [
            _to_input_pixels(b.to(device), p.scale) for b, p in zip(boxes, pyramids, strict=True)
        ]
        pairs = [image_pairs.to(device).long() for image_pairs in pairs]
        object_counts = [len(b) for b in scaled]
        pair_counts = [len(p) for p in pairs]
        objects = self._objects(levels, scaled, sizes, object_counts)
        unions = self._unions(levels, pyramids, scaled, pairs, pair_counts)
        return objects, unions

    def _objects(
        self,
        levels: OrderedDict,
        boxes: list[Tensor],
        sizes: list[tuple[int, int]],
        counts: list[int],
    ) -> list[Tensor]:
        if sum(counts) == 0:
            return [torch.zeros((0, self.object_dim), device=boxes[0].device) for _ in counts]
        pooled = self.object_pool(levels, boxes, sizes)  # (sum N_i, C, P, P)
        return list(self.object_head(pooled).split(counts))  # (sum N_i, D)

    def _unions(
        self,
        levels: OrderedDict,
        pyramids: Sequence[ImagePyramid],
        boxes: list[Tensor],
        pairs: list[Tensor],
        counts: list[int],
    ) -> list[Tensor]:
        device = boxes[0].device
        if sum(counts) == 0:
            return [torch.zeros((0, self.union_dim), device=device) for _ in counts]
        subjects = [b[p[:, 0]] for b, p in zip(boxes, pairs, strict=True)]
        objects = [b[p[:, 1]] for b, p in zip(boxes, pairs, strict=True)]
        unions = [union_boxes(s, o) for s, o in zip(subjects, objects, strict=True)]
        sizes = [pyramid.input_size for pyramid in pyramids]
        if self.union_reduce is not None:
            strides = pyramids[0].strides
            pooled = torch.cat(
                [
                    roi_align(
                        levels[name],
                        unions,
                        output_size=self.resolution,
                        spatial_scale=1.0 / strides[name],
                        sampling_ratio=self.sampling_ratio,
                        aligned=self.aligned,
                    )
                    for name in self.level_names
                ],
                dim=1,
            )  # (R, L * C, P, P)
            visual = self.union_reduce(pooled)  # (R, C, P, P)
        else:
            visual = self.object_pool(levels, unions, sizes)  # (R, C, P, P)
        masks = torch.cat(
            [
                rectangle_masks(s, o, size, self.rect_size)
                for s, o, size in zip(subjects, objects, sizes, strict=True)
            ]
        )  # (R, 2, S, S)
        rect = self.rect_conv(masks.to(visual.dtype))  # (R, C, P, P)
        return list(self.union_head(visual + rect.to(visual.dtype)).split(counts))


def rectangle_masks(
    subject_boxes: Tensor, object_boxes: Tensor, image_size: tuple[int, int], size: int
) -> Tensor:
    """SGB's two-channel box rectangles: each box drawn on a ``size`` x ``size`` grid of the
    whole image.

    A box scaled to the grid (x by ``size / W``, y by ``size / H``) covers the cells
    ``floor(x1) <= x <= ceil(x2)`` and ``floor(y1) <= y <= ceil(y2)`` (ends included).

    Args:
        subject_boxes: (R, 4) xyxy in pixels of an image of ``image_size`` (height, width).
        object_boxes: (R, 4) likewise.
        image_size: (height, width).
        size: grid side S (SGB: 4 * pooler resolution - 1 = 27).

    Returns:
        (R, 2, S, S) float32 of 0/1: channel 0 the subject, 1 the object; rows are y.
    """
    height, width = float(image_size[0]), float(image_size[1])
    cells = torch.arange(size, device=subject_boxes.device)  # (S,)
    factors = subject_boxes.new_tensor([size / width, size / height, size / width, size / height])
    channels = []
    for boxes in (subject_boxes, object_boxes):
        grid = boxes.float() * factors  # (R, 4)
        low, high = grid[:, :2].floor().long(), grid[:, 2:].ceil().long()  # (R, 2)
        inside_x = (cells >= low[:, 0, None]) & (cells <= high[:, 0, None])  # (R, S)
        inside_y = (cells >= low[:, 1, None]) & (cells <= high[:, 1, None])  # (R, S)
        channels.append(inside_y[:, :, None] & inside_x[:, None, :])  # (R, S, S)
    return torch.stack(channels, dim=1).float()


def _stride(padded: Sequence[int], level: Sequence[int]) -> int:
    """Stride of a level: the power of two nearest to padded height / level height."""
    return int(2 ** round(math.log2(int(padded[0]) / int(level[0]))))


def _to_input_pixels(boxes: Tensor, scale: tuple[float, float]) -> Tensor:
    """(N, 4) xyxy from dataset-image pixels to detector-input pixels."""
    factors = boxes.new_tensor([scale[1], scale[0], scale[1], scale[0]], dtype=torch.float32)
    return boxes.float() * factors


def _batched_levels(
    pyramids: Sequence[ImagePyramid], names: Sequence[str], device: torch.device
) -> tuple[OrderedDict, list[tuple[int, int]]]:
    """Stack each level over images (zero-padded to the largest) -> name -> (B, C, h, w)."""
    levels: OrderedDict[str, Tensor] = OrderedDict()
    for name in names:
        maps = [pyramid.levels[name] for pyramid in pyramids]
        height = max(int(level.shape[-2]) for level in maps)
        width = max(int(level.shape[-1]) for level in maps)
        batch = maps[0].new_zeros((len(maps), maps[0].shape[0], height, width), device=device)
        for index, level in enumerate(maps):
            batch[index, :, : level.shape[-2], : level.shape[-1]] = level.to(device)
        levels[name] = batch
    sizes = [pyramid.input_size for pyramid in pyramids]
    return levels, sizes
