"""Box conversions and the IoU conventions of Scene-Graph-Benchmark.pytorch.

VG150 stores boxes as ``boxes_1024`` rows ``[cx, cy, w, h]`` on the integer grid of the image
rescaled to longer side 1024. :func:`decode_vg_grid` is the one decoder of that grid (the
loader, the non-overlap filter, the statistics and the converter all go through it);
:func:`decode_vg_boxes` adds Scene-Graph-Benchmark's scale to the image and its clip;
:func:`encode_vg_boxes` is the one encoder, its inverse on the grid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by the functions that use it
    from torch import Tensor

BOX_SCALE = 1024  # the longer image side of the stored grid


def decode_vg_grid(boxes_1024: np.ndarray) -> np.ndarray:
    """``[cx, cy, w, h]`` -> ``[x1, y1, x1 + w, y1 + h]`` on the 1024 grid, in the stored dtype.

    As Scene-Graph-Benchmark's ``load_graphs``: ``x1 = cx - w / 2`` is computed in floating
    point and assigned into the stored array, so for an integer (int32) array it is truncated
    toward zero (``cx = 10, w = 5``: 7.5 -> 7; ``cx = 2, w = 7``: -1.5 -> -1); then
    ``x2 = x1 + w`` in that dtype. A floating-point array keeps the halves.
    """
    boxes = np.array(boxes_1024, copy=True)  # (N, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes_1024 must have shape (N, 4), got {boxes.shape}")
    corner = boxes[:, :2].astype(np.float64) - boxes[:, 2:].astype(np.float64) / 2  # (N, 2)
    if np.issubdtype(boxes.dtype, np.integer):
        corner = np.trunc(corner)  # what numpy's float -> int assignment does
    boxes[:, :2] = corner.astype(boxes.dtype)
    boxes[:, 2:] = boxes[:, :2] + boxes[:, 2:]
    return boxes


def decode_vg_boxes(
    boxes_1024: np.ndarray,
    width: int | np.ndarray,
    height: int | np.ndarray,
    *,
    clip_to_last_pixel: bool = True,
    dtype: type = np.float32,
) -> np.ndarray:
    """Decode stored ``boxes_1024`` rows to xyxy pixels of a ``width`` x ``height`` image.

    Scene-Graph-Benchmark's loader: :func:`decode_vg_grid`, then ``grid / 1024 * max(W, H)``
    in float64, cast to ``dtype`` (float32 as its ``BoxList``), then x clipped to
    ``[0, W - 1]`` and y to ``[0, H - 1]``. ``clip_to_last_pixel=False`` clips to the image
    extent ``[0, W] x [0, H]`` instead (the JSON export, so that re-encoding is exact).
    ``width`` and ``height`` are one image's, or (N,) arrays giving each row its image's.
    """
    width = np.asarray(width, dtype=np.int64)
    height = np.asarray(height, dtype=np.int64)
    longer = np.maximum(width, height).astype(np.float64)
    if longer.ndim:
        longer, width, height = longer[:, None], width[:, None], height[:, None]  # (N, 1)
    scaled = decode_vg_grid(boxes_1024).astype(np.float64) / BOX_SCALE * longer
    boxes = scaled.astype(dtype)  # (N, 4)
    last = 1 if clip_to_last_pixel else 0
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width - last)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height - last)
    return boxes


def encode_vg_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """VG150 ``boxes_1024`` (int32 ``[cx, cy, w, h]``) of xyxy pixel boxes (x2 exclusive).

    At scale ``s = 1024 / max(W, H)``: ``x1 = floor(s * x1)`` (at least 0), ``w = ceil(s * x2
    - x1)`` (at least 1), likewise y; then ``cx = x1 + ceil(w / 2)``, the centre whose
    truncated ``cx - w / 2`` is ``x1`` again (:func:`decode_vg_grid`, as Scene-Graph-Benchmark
    decodes). So a box on the grid decodes back exactly, in basgg and in Scene-Graph-Benchmark,
    and any other box decodes to the smallest grid box containing it (sides moved outward by
    less than one grid step).
    """
    scale = BOX_SCALE / max(width, height)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale  # (N, 4) at 1024 scale
    x1 = np.maximum(np.floor(boxes[:, 0] + 1e-6), 0)
    y1 = np.maximum(np.floor(boxes[:, 1] + 1e-6), 0)
    w = np.maximum(np.ceil(boxes[:, 2] - x1 - 1e-6), 1)
    h = np.maximum(np.ceil(boxes[:, 3] - y1 - 1e-6), 1)
    out = np.stack([x1 + np.ceil(w / 2), y1 + np.ceil(h / 2), w, h], axis=1)  # (N, 4)
    return out.astype(np.int32)


def box_iou_plus_one(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> np.ndarray:
    """Pairwise IoU with inclusive-pixel ("+1") widths, in float32. (N, 4) x (M, 4) -> (N, M)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    one = np.float32(1)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)  # (N,)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)  # (M,)
    left_top = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    right_bottom = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = np.clip(right_bottom - left_top + one, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def intersection_area(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise intersection area without the +1 convention. (N, 4) x (M, 4) -> (N, M)."""
    import torch

    left_top = torch.maximum(a[:, None, :2], b[None, :, :2])
    right_bottom = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (right_bottom - left_top).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def union_boxes(subject: Tensor, object_: Tensor) -> Tensor:
    """Smallest box covering each (subject, object) box pair. (R, 4) x (R, 4) -> (R, 4)."""
    import torch

    return torch.cat(
        [
            torch.minimum(subject[:, :2], object_[:, :2]),
            torch.maximum(subject[:, 2:], object_[:, 2:]),
        ],
        dim=1,
    )
