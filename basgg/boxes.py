"""Box conversions and the IoU conventions of Scene-Graph-Benchmark.pytorch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by the functions that use it
    from torch import Tensor


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """VG150 ``boxes_1024`` decoding: ``[cx, cy, w, h]`` -> ``[x1, y1, x1 + w, y1 + h]``.

    The arithmetic runs in the input dtype, as Scene-Graph-Benchmark does in place on the
    h5 array (integer input truncates ``w / 2`` toward zero).
    """
    boxes = np.array(boxes, copy=True)  # (N, 4)
    half = boxes[:, 2:] / 2
    if np.issubdtype(boxes.dtype, np.integer):
        half = np.trunc(half).astype(boxes.dtype)
    boxes[:, :2] = boxes[:, :2] - half
    boxes[:, 2:] = boxes[:, :2] + boxes[:, 2:]
    return boxes


def encode_vg_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """VG150 encoding of xyxy pixel boxes (x2 exclusive, as decoding gives) at longer side 1024.

    Exact inverse of :func:`decode_vg_boxes` for boxes whose coordinates are on the
    1024-scale integer grid; otherwise the nearest grid box.
    """
    scale = 1024.0 / max(width, height)
    boxes = np.asarray(boxes, dtype=np.float64) * scale  # (N, 4) at 1024 scale
    x1 = np.floor(boxes[:, 0] + 1e-6)
    y1 = np.floor(boxes[:, 1] + 1e-6)
    w = np.maximum(np.ceil(boxes[:, 2] - x1 - 1e-6), 1)
    h = np.maximum(np.ceil(boxes[:, 3] - y1 - 1e-6), 1)
    # x1 = cx - trunc(w / 2)  =>  cx = x1 + w // 2
    out = np.stack([x1 + np.floor(w / 2), y1 + np.floor(h / 2), w, h], axis=1)
    return out.astype(np.int32)


def decode_vg_boxes(boxes_1024: np.ndarray, width: int, height: int) -> np.ndarray:
    """Decode stored ``boxes_1024`` rows to float32 xyxy pixels of a ``width`` x ``height`` image.

    Follows Scene-Graph-Benchmark's loader: convert in the stored dtype, scale by
    ``max(W, H) / 1024``, clip x to ``[0, W - 1]`` and y to ``[0, H - 1]``.
    """
    xyxy = cxcywh_to_xyxy(boxes_1024).astype(np.float32)  # (N, 4) at 1024 scale
    xyxy = xyxy * np.float32(max(width, height) / 1024.0)
    xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, width - 1)
    xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, height - 1)
    return xyxy


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
