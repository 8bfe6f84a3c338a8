"""Building blocks shared by the context encoders: label logits and embeddings, box geometry
per batch, per-class label NMS, and the Xavier initialiser of Scene-Graph-Benchmark.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basgg.boxes import box_iou_plus_one
from basgg.models.features import box_geometry
from basgg.structures import Mode

ONEHOT_FILL = 1000.0


def onehot_logits(labels: Tensor, num_classes: int, fill: float = ONEHOT_FILL) -> Tensor:
    """(N,) labels -> (N, C) logits that are ``fill`` at the label and ``-fill`` elsewhere."""
    logits = torch.full((labels.shape[0], num_classes), -fill, device=labels.device)
    return logits.scatter(1, labels.long().view(-1, 1), fill)


def foreground_argmax(logits: Tensor) -> Tensor:
    """(N, C) logits -> (N,) best class among 1..C-1 (background never chosen)."""
    return logits[:, 1:].argmax(dim=1) + 1


def initial_label_embedding(
    embedding: nn.Embedding, *, mode: Mode, object_labels: Tensor | None, prior: Tensor
) -> Tensor:
    """Label embedding fed to an object context, (N, D).

    PredCls embeds the given labels. Otherwise it is the expectation of the embedding under
    ``softmax(prior)``, the detector's class distribution (see :func:`prior_logits`).
    """
    if mode is Mode.PREDCLS:
        return embedding(object_labels)
    return F.softmax(prior, dim=1) @ embedding.weight


def prior_logits(
    *, num_objects: int, object_count: int, detector_logits: Tensor | None, device: torch.device
) -> Tensor:
    """Detached detector logits, or uniform (all-zero) logits when there are none. (N, C).

    Scene-Graph-Benchmark's SGCls uses the box head's logits on the ground-truth boxes; with
    cached features and no such logits, the prior is uniform.
    """
    if detector_logits is not None:
        return detector_logits.detach()
    return torch.zeros(object_count, num_objects, device=device)


def batch_box_geometry(
    boxes: Tensor, image_sizes: list[tuple[int, int]], object_counts: list[int]
) -> Tensor:
    """Scene-Graph-Benchmark's 9-d box encoding for every object of the batch. (N, 9)."""
    parts = [
        box_geometry(image_boxes, image_size)
        for image_boxes, image_size in zip(boxes.split(object_counts), image_sizes, strict=True)
    ]
    return torch.cat(parts, dim=0).to(boxes.dtype) if parts else boxes.new_zeros(0, 9)


def nms_object_labels(logits: Tensor, boxes: Tensor, threshold: float) -> Tensor:
    """SGDet test-time labels: greedy per-class NMS over the class distribution of one image.

    Repeatedly takes the most confident (box, class) left, gives the box that class,
    removes that class from every box overlapping it with IoU (+1) >= ``threshold`` and
    retires the box. Boxes are class-agnostic here (Scene-Graph-Benchmark uses its
    per-class regressed boxes). (n, C) logits, (n, 4) boxes -> (n,) labels in 1..C-1.
    """
    count = logits.shape[0]
    labels = torch.zeros(count, dtype=torch.long, device=logits.device)
    if count == 0:
        return labels
    probabilities = F.softmax(logits.detach().float(), dim=1).cpu()  # (n, C)
    probabilities[:, 0] = -1.0
    overlaps = torch.from_numpy(box_iou_plus_one(boxes.detach().cpu(), boxes.detach().cpu()))
    is_overlap = overlaps >= threshold  # (n, n)
    num_classes = probabilities.shape[1]
    for _ in range(count):
        flat = int(probabilities.argmax())
        box, label = divmod(flat, num_classes)
        labels[box] = label
        probabilities[is_overlap[box], label] = 0.0
        probabilities[box] = -1.0
    return labels


def batch_nms_labels(
    logits: Tensor, boxes: Tensor, object_counts: list[int], threshold: float
) -> Tensor:
    """:func:`nms_object_labels` image by image; (N, C), (N, 4) -> (N,)."""
    per_image = zip(logits.split(object_counts), boxes.split(object_counts), strict=True)
    labels = [
        nms_object_labels(image_logits, image_boxes, threshold)
        for image_logits, image_boxes in per_image
    ]
    return torch.cat(labels) if labels else logits.new_zeros(0, dtype=torch.long)


def xavier_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer with Xavier-normal weights and zero bias (SGB's ``layer_init``)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.xavier_normal_(layer.weight, gain=1.0)
    nn.init.zeros_(layer.bias)
    return layer
