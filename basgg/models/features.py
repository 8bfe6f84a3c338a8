"""Frozen relation-model inputs: RoI object and union-box features, box geometry, word vectors.

The backbone is frozen during relation training, so :class:`FrozenFeatureExtractor` is meant to
run once per image and have its outputs cached. Its vectors are compact on purpose: with the
default EfficientNet-Lite0 stride-16 backbone (112 channels) and 2x2 pooling, an object is
448 floats and a pair 576 floats (448 visual + 2 x 8 x 8 box masks).

The values are moderate post-BatchNorm activations and box fractions in [0, 1], so a cache
may store them as float16 (half the bytes) without harm.

Union vector layout, ``(R, union_dim)``::

    [0, union_visual_dim)                      RoIAlign over the union box, (C, P, P) flattened
    [union_visual_dim, + rect_size**2)          subject box mask, (S, S) row-major (y, then x)
    [union_visual_dim + rect_size**2, end)      object box mask, (S, S) row-major

so ``union[:, union_visual_dim:].view(R, 2, S, S)`` gives the two-channel "rect" input of
Neural Motifs / Scene-Graph-Benchmark (their trainable convolution belongs to the heads).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torchvision.ops import roi_align

from basgg.boxes import union_boxes
from basgg.models.backbone import Backbone

BOX_GEOMETRY_DIM = 9
PAIR_GEOMETRY_DIM = 10
BACKGROUND_NAME = "__background__"
UNKNOWN_WORD_STD = 0.1
MIN_BOX_SIZE = 1.0  # pixels; thinner boxes are widened so RoIAlign always samples them


class WordVectors(Protocol):
    """What :func:`class_word_vectors` needs of a table (:class:`basgg.pretrained.WordVectors`)."""

    @property
    def dim(self) -> int: ...

    def get(self, word: str) -> np.ndarray | None: ...


class FrozenFeatureExtractor(nn.Module):
    """Per-object and per-pair feature vectors from a frozen backbone.

    Args:
        backbone: the frozen feature-map network.
        object_pool: RoIAlign output size P_o for object boxes; object_dim = C * P_o**2.
        union_pool: RoIAlign output size P_u for union boxes; union_visual_dim = C * P_u**2.
        rect_size: side S of the subject/object box masks appended to each union vector
            (0 appends none); union_dim = union_visual_dim + 2 * S**2.
        longer_side: resize every image (up or down) so its longer side has this many pixels;
            boxes are scaled to match. None keeps the native size.
        batch_size: most images of equal (resized) size run through the backbone together.
        max_batch_pixels: most pixels in one backbone pass (at least one image): bigger
            batches spill CPU caches and run slower per image (the default gives 4 images
            of 320 x 240 and 1 of 592 x 444).
        sampling_ratio: RoIAlign samples per bin side; <= 0 adapts to the box size, so every
            bin averages the whole region it covers.

    Every RoIAlign uses ``aligned=True`` (pixel centres at half-integers) and the exact stride
    of the backbone as spatial scale. The module is frozen: ``train()`` keeps it in eval mode.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        object_pool: int = 2,
        union_pool: int = 2,
        rect_size: int = 8,
        longer_side: int | None = None,
        batch_size: int = 8,
        max_batch_pixels: int = 320 * 240 * 4,
        sampling_ratio: int = -1,
    ) -> None:
        super().__init__()
        if object_pool < 1 or union_pool < 1 or rect_size < 0 or batch_size < 1:
            raise ValueError(
                "object_pool, union_pool and batch_size must be >= 1 and rect_size >= 0, got "
                f"{object_pool}, {union_pool}, {batch_size}, {rect_size}"
            )
        self.backbone = backbone
        self.object_pool = object_pool
        self.union_pool = union_pool
        self.rect_size = rect_size
        self.longer_side = longer_side
        self.batch_size = batch_size
        self.max_batch_pixels = max_batch_pixels
        self.sampling_ratio = sampling_ratio
        self.object_dim = backbone.out_channels * object_pool**2
        self.union_visual_dim = backbone.out_channels * union_pool**2
        self.union_dim = self.union_visual_dim + 2 * rect_size**2
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenFeatureExtractor:
        """Stay in eval mode whatever ``mode`` says: the extractor is frozen."""
        return super().train(False)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) an image of this size is given to the backbone at."""
        if self.longer_side is None:
            return height, width
        scale = self.longer_side / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def images_per_batch(self, height: int, width: int) -> int:
        """Images of this (resized) size per backbone pass."""
        return max(1, min(self.batch_size, self.max_batch_pixels // (height * width)))

    @torch.no_grad()
    def forward(
        self, images: list[Tensor], boxes: list[Tensor], pairs: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Features of every box and every (subject, object) pair of each image.

        Args:
            images: uint8 (3, H_i, W_i) RGB images.
            boxes: (N_i, 4) xyxy boxes in pixels of image i.
            pairs: (R_i, 2) int64 (subject, object) indices into ``boxes[i]``.

        Returns:
            Per image, (N_i, object_dim) object features and (R_i, union_dim) union features,
            float32 on the backbone's device.
        """
        _check_inputs(images, boxes, pairs)
        device = self.backbone.pixel_mean.device
        boxes = [_widen(image_boxes.to(device, torch.float32)) for image_boxes in boxes]
        pairs = [image_pairs.to(device) for image_pairs in pairs]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(self.resized_size(*image.shape[-2:]), []).append(index)
        object_features: list[Tensor] = [torch.empty(0)] * len(images)
        union_features: list[Tensor] = [torch.empty(0)] * len(images)
        for size, members in groups.items():
            per_batch = self.images_per_batch(*size)
            for start in range(0, len(members), per_batch):
                chunk = members[start : start + per_batch]
                chunk_objects, chunk_unions = self._extract_batch(
                    [images[i] for i in chunk], [boxes[i] for i in chunk],
                    [pairs[i] for i in chunk], size,
                )  # fmt: skip
                for i, image_objects, image_unions in zip(
                    chunk, chunk_objects, chunk_unions, strict=True
                ):
                    object_features[i], union_features[i] = image_objects, image_unions
        return object_features, union_features

    def _extract_batch(
        self, images: list[Tensor], boxes: list[Tensor], pairs: list[Tensor], size: tuple[int, int]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """One backbone pass over images that all resize to ``size``; boxes already widened."""
        device = self.backbone.pixel_mean.device
        batch = torch.stack([_resize(image.to(device), size) for image in images])
        feature_map = self.backbone(batch)  # (B, C, h, w)
        scaled = [
            image_boxes * _box_scale(image, size, device)
            for image, image_boxes in zip(images, boxes, strict=True)
        ]
        # (s, o) and (o, s) have the same union box: pool each unordered pair once
        unordered = [unordered_pairs(image_pairs) for image_pairs in pairs]
        unions = [
            union_boxes(image_boxes[image_pairs[:, 0]], image_boxes[image_pairs[:, 1]])
            for image_boxes, (image_pairs, _) in zip(scaled, unordered, strict=True)
        ]
        objects = self._pool(feature_map, scaled, self.object_pool)
        visual = [
            pooled[rows]  # (R_i, union_visual_dim)
            for pooled, (_, rows) in zip(
                self._pool(feature_map, unions, self.union_pool), unordered, strict=True
            )
        ]
        return objects, [
            self._with_masks(image_visual, image_boxes, image_pairs)
            for image_visual, image_boxes, image_pairs in zip(visual, boxes, pairs, strict=True)
        ]

    def _pool(self, feature_map: Tensor, boxes: list[Tensor], pool: int) -> list[Tensor]:
        """RoIAlign each image's (K_i, 4) boxes -> list of (K_i, C * pool**2)."""
        pooled = roi_align(
            feature_map,
            boxes,
            output_size=pool,
            spatial_scale=1.0 / self.backbone.stride,
            sampling_ratio=self.sampling_ratio,
            aligned=True,
        )  # (sum K_i, C, pool, pool)
        return list(pooled.flatten(1).split([len(b) for b in boxes]))

    def _with_masks(self, visual: Tensor, boxes: Tensor, pairs: Tensor) -> Tensor:
        if self.rect_size == 0:
            return visual
        masks = rect_masks(boxes[pairs[:, 0]], boxes[pairs[:, 1]], self.rect_size)  # (R, 2, S, S)
        return torch.cat([visual, masks.flatten(1)], dim=1)


def unordered_pairs(pairs: Tensor) -> tuple[Tensor, Tensor]:
    """(R, 2) ordered pairs -> (U, 2) unordered pairs (lower index first) and (R,) the row
    of each ordered pair among them, so that ``unordered[rows]`` is each pair, up to order."""
    if len(pairs) == 0:
        return pairs.view(0, 2), pairs.new_zeros(0)
    low, high = pairs.min(dim=1).values, pairs.max(dim=1).values  # (R,)
    width = int(high.max()) + 1
    keys, rows = torch.unique(low * width + high, return_inverse=True)  # (U,), (R,)
    return torch.stack([keys // width, keys % width], dim=1), rows


def rect_masks(subject_boxes: Tensor, object_boxes: Tensor, size: int) -> Tensor:
    """Rasterise each subject and object box on a ``size`` x ``size`` grid over their union box.

    Each cell holds the fraction of its area the box covers (1 inside, fractional on the
    edges), so the masks are exact at any resolution.

    Args:
        subject_boxes: (R, 4) xyxy.
        object_boxes: (R, 4) xyxy.
        size: grid side S.

    Returns:
        (R, 2, S, S) float32: channel 0 the subject, channel 1 the object; rows are y.
    """
    union = union_boxes(subject_boxes, object_boxes)  # (R, 4)
    steps = torch.arange(size + 1, dtype=torch.float32, device=union.device) / size  # (S + 1,)
    channels = []
    for box in (subject_boxes, object_boxes):
        coverage = []
        for axis in (1, 0):  # y, then x
            low, high = union[:, axis], union[:, axis + 2]  # (R,)
            extent = (high - low).clamp(min=1e-6)
            edges = low[:, None] + extent[:, None] * steps  # (R, S + 1)
            overlap = torch.minimum(box[:, axis + 2, None], edges[:, 1:]) - torch.maximum(
                box[:, axis, None], edges[:, :-1]
            )  # (R, S)
            coverage.append(overlap.clamp(min=0) / (extent[:, None] / size))
        channels.append(coverage[0][:, :, None] * coverage[1][:, None, :])  # (R, S, S)
    return torch.stack(channels, dim=1)


def box_geometry(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Normalised box layout, the 9 numbers Neural Motifs feeds its object context.

    Widths use Motifs' inclusive-pixel convention ``w = x2 - x1 + 1`` and centres are
    ``x1 + w / 2``.

    Args:
        boxes: (N, 4) xyxy pixels.
        image_size: (height, width) of the image.

    Returns:
        (N, 9) ``[x1/W, y1/H, x2/W, y2/H, w/W, h/H, w*h/(W*H), cx/W, cy/H]``.
    """
    height, width = float(image_size[0]), float(image_size[1])
    boxes = boxes.float()
    wh = boxes[:, 2:] - boxes[:, :2] + 1.0  # (N, 2)
    center = boxes[:, :2] + 0.5 * wh  # (N, 2)
    size = boxes.new_tensor([width, height])
    area = (wh[:, 0] * wh[:, 1] / (width * height))[:, None]  # (N, 1)
    return torch.cat([boxes[:, :2] / size, boxes[:, 2:] / size, wh / size, area, center / size], 1)


def pair_geometry(
    subject_boxes: Tensor, object_boxes: Tensor, image_size: tuple[int, int]
) -> Tensor:
    """Relative layout of each (subject, object) box pair.

    Widths, areas and intersections use the inclusive-pixel ``+ 1`` convention.

    Args:
        subject_boxes: (R, 4) xyxy pixels.
        object_boxes: (R, 4) xyxy pixels.
        image_size: (height, width) of the image.

    Returns:
        (R, 10): ``[dx/w_s, dy/h_s, log(w_o/w_s), log(h_o/h_s), dx/W, dy/H, IoU,
        intersection/area_s, intersection/area_o, union-box area/(W*H)]`` where
        ``dx, dy`` is the object centre minus the subject centre.
    """
    height, width = float(image_size[0]), float(image_size[1])
    subject_boxes, object_boxes = subject_boxes.float(), object_boxes.float()
    subject_wh = subject_boxes[:, 2:] - subject_boxes[:, :2] + 1.0  # (R, 2)
    object_wh = object_boxes[:, 2:] - object_boxes[:, :2] + 1.0  # (R, 2)
    delta = (object_boxes[:, :2] + 0.5 * object_wh) - (subject_boxes[:, :2] + 0.5 * subject_wh)
    inter_wh = (
        torch.minimum(subject_boxes[:, 2:], object_boxes[:, 2:])
        - torch.maximum(subject_boxes[:, :2], object_boxes[:, :2])
        + 1.0
    ).clamp(min=0)  # (R, 2)
    intersection = inter_wh[:, 0] * inter_wh[:, 1]  # (R,)
    subject_area = subject_wh[:, 0] * subject_wh[:, 1]
    object_area = object_wh[:, 0] * object_wh[:, 1]
    iou = intersection / (subject_area + object_area - intersection)
    union_wh = union_boxes(subject_boxes, object_boxes)
    union_wh = union_wh[:, 2:] - union_wh[:, :2] + 1.0  # (R, 2)
    columns = [
        delta / subject_wh,
        torch.log(object_wh / subject_wh),
        delta / delta.new_tensor([width, height]),
        torch.stack(
            [
                iou,
                intersection / subject_area,
                intersection / object_area,
                union_wh[:, 0] * union_wh[:, 1] / (width * height),
            ],
            dim=1,
        ),
    ]
    return torch.cat(columns, dim=1)


def class_word_vectors(
    names: Sequence[str], vectors: WordVectors, *, unknown_std: float = UNKNOWN_WORD_STD
) -> Tensor:
    """Word-vector matrix of class names (the Motifs/VCTree label embedding initialisation).

    A name is lower-cased and split on spaces; its vector is the mean of the vectors of the
    tokens the table knows. ``"__background__"`` and names with no known token get a
    deterministic random vector ``N(0, unknown_std**2)`` seeded by the CRC-32 of the name, so
    the same name always gets the same vector.

    Args:
        names: C class names (e.g. the vocabulary with background at index 0).
        vectors: the word-vector table (:class:`basgg.pretrained.WordVectors`).
        unknown_std: standard deviation of the random vectors.

    Returns:
        (C, D) float32.
    """
    rows = []
    for name in names:
        known = [] if name == BACKGROUND_NAME else _known_token_vectors(name, vectors)
        if known:
            rows.append(torch.stack(known).mean(dim=0))
        else:
            generator = torch.Generator().manual_seed(zlib.crc32(name.encode("utf8")))
            rows.append(torch.randn(vectors.dim, generator=generator) * unknown_std)
    if not rows:
        return torch.zeros((0, vectors.dim))
    return torch.stack(rows)  # (C, D)


def _known_token_vectors(name: str, vectors: WordVectors) -> list[Tensor]:
    found = (vectors.get(token) for token in name.lower().split())
    return [torch.from_numpy(vector) for vector in found if vector is not None]


def _check_inputs(images: list[Tensor], boxes: list[Tensor], pairs: list[Tensor]) -> None:
    if not len(images) == len(boxes) == len(pairs):
        raise ValueError(
            f"images, boxes and pairs: expected equal lengths, got "
            f"{len(images)}, {len(boxes)}, {len(pairs)}"
        )
    for index, (image, image_boxes, image_pairs) in enumerate(
        zip(images, boxes, pairs, strict=True)
    ):
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"image {index}, images: expected uint8 (3, H, W), "
                f"got {image.dtype} {tuple(image.shape)}"
            )
        if image_boxes.ndim != 2 or image_boxes.shape[1] != 4:
            raise ValueError(
                f"image {index}, boxes: expected (N, 4), got {tuple(image_boxes.shape)}"
            )
        if not bool(torch.isfinite(image_boxes).all()):
            raise ValueError(f"image {index}, boxes: coordinates must be finite")
        if image_pairs.ndim != 2 or image_pairs.shape[1] != 2 or image_pairs.is_floating_point():
            raise ValueError(
                f"image {index}, pairs: expected integer (R, 2), "
                f"got {image_pairs.dtype} {tuple(image_pairs.shape)}"
            )
        count = len(image_boxes)
        if len(image_pairs) and (int(image_pairs.min()) < 0 or int(image_pairs.max()) >= count):
            raise ValueError(
                f"image {index}, pairs: indices must lie in [0, {count}), got "
                f"[{int(image_pairs.min())}, {int(image_pairs.max())}]"
            )


def _widen(boxes: Tensor) -> Tensor:
    """Make every box at least :data:`MIN_BOX_SIZE` wide and high (grown to the right/bottom)."""
    return torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + MIN_BOX_SIZE)], 1)


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """uint8 (3, H, W) -> float32 (3, *size), bilinear with antialiasing when shrinking."""
    image = image.float()
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(
        image[None], size=size, mode="bilinear", antialias=True, align_corners=False
    )[0]


def _box_scale(image: Tensor, size: tuple[int, int], device: torch.device) -> Tensor:
    """(4,) factors taking xyxy boxes of ``image`` to an image resized to ``size``."""
    scale_y, scale_x = size[0] / image.shape[-2], size[1] / image.shape[-1]
    return torch.tensor([scale_x, scale_y, scale_x, scale_y], device=device)
