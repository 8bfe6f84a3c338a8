"""SGDet inputs: the frozen detector's detections per image, computed once and cached.

The detector never trains during relation training, so its detections of a split are a
function of the images, the detector weights and the post-processing settings. They are
saved as one tensor file named by a sha256 of all three (like the feature cache) and read
with ``torch.load(weights_only=True)``.

Training proposals follow Scene-Graph-Benchmark's ``ADD_GTBOX_TO_PROPOSAL_IN_TRAIN``: the
image's ground-truth boxes (scored 1, with the detector's logits for them) come first, then
the detections, minus near-copies of a ground-truth box (same label, IoU >= 0.9: they would
add duplicate pairs, not information), up to ``max_boxes`` in all. Val and test inputs are the
detections alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from basgg.boxes import box_iou_plus_one
from basgg.models.sgg_model import SceneGraphModel
from basgg.structures import SceneGraph
from basgg.training.checkpoint import atomic_save
from basgg.training.feature_cache import inputs_digest, state_dict_sha256

DETECTION_CACHE_FORMAT = 1
DUPLICATE_IOU = 0.9


@dataclass
class SplitDetections:
    """Per image, the boxes given to the relation head and the detector logits of each.

    Attributes:
        graphs: relation-free graphs: boxes, labels (1..C) and ``object_scores``.
        logits: (N_i, C + 1) float32 detector class logits of the same boxes.
    """

    graphs: list[SceneGraph]
    logits: list[Tensor]


def merge_ground_truth(
    ground_truth: SceneGraph,
    ground_truth_logits: Tensor,
    detections: SceneGraph,
    detection_logits: Tensor,
    *,
    max_boxes: int,
    duplicate_iou: float = DUPLICATE_IOU,
) -> tuple[SceneGraph, Tensor]:
    """Training proposals: every ground-truth box, then the detections (best first) that are
    not a same-label copy (IoU >= ``duplicate_iou``) of one, up to ``max_boxes`` boxes (never
    fewer than the ground-truth boxes).

    Returns:
        The proposal graph (ground-truth boxes scored 1) and its (M, C + 1) logits.
    """
    keep = torch.ones(detections.num_objects, dtype=torch.bool)
    if detections.num_objects and ground_truth.num_objects:
        ious = torch.from_numpy(box_iou_plus_one(detections.boxes, ground_truth.boxes))  # (D, G)
        same_label = detections.labels[:, None] == ground_truth.labels[None, :]  # (D, G)
        keep = ~((ious >= duplicate_iou) & same_label).any(dim=1)
    order = torch.argsort(detections.object_scores, descending=True, stable=True)
    kept = order[keep[order]][: max(max_boxes - ground_truth.num_objects, 0)]  # (K,)
    graph = SceneGraph(
        boxes=torch.cat([ground_truth.boxes.float(), detections.boxes[kept]]),
        labels=torch.cat([ground_truth.labels, detections.labels[kept]]),
        relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
        predicates=torch.zeros(0, dtype=torch.int64),
        image_size=ground_truth.image_size,
        image_id=ground_truth.image_id,
        object_scores=torch.cat(
            [torch.ones(ground_truth.num_objects), detections.object_scores[kept]]
        ),
    )
    return graph, torch.cat([ground_truth_logits.float(), detection_logits[kept].float()])


@torch.no_grad()
def detect_split(
    model: SceneGraphModel,
    image_ids: Sequence[int],
    load_image: Callable[[int], Tensor],
    *,
    ground_truths: Sequence[SceneGraph] | None = None,
    max_boxes: int = 80,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> SplitDetections:
    """Run the model's frozen detector over every image once.

    Args:
        model: an SGDet model (its ``detector`` is used).
        image_ids: per image, its dataset id.
        load_image: image index -> uint8 (3, H, W).
        ground_truths: training split: per image, the ground-truth boxes added to the
            proposals (:func:`merge_ground_truth`); ``None`` for val and test.
        max_boxes: most proposals per training image.
        batch_size: images per detector call.
        progress: called with the number of images done after each call.
    """
    detector = model.detector
    if detector is None:
        raise ValueError("detect_split: the model has no detector (only sgdet models do)")
    device = next(iter(detector.parameters())).device
    graphs: list[SceneGraph] = []
    logits: list[Tensor] = []
    for start in range(0, len(image_ids), batch_size):
        indices = list(range(start, min(start + batch_size, len(image_ids))))
        images = [load_image(index).to(device) for index in indices]
        detected, detected_logits = model.detect(images, image_ids=[image_ids[i] for i in indices])
        if ground_truths is None:
            graphs.extend(detected)
            logits.extend(detected_logits)
        else:
            truths = [ground_truths[index] for index in indices]
            truth_logits = detector.classify_boxes(images, [t.boxes.to(device) for t in truths])
            for truth, truth_logit, graph, graph_logit in zip(
                truths, truth_logits, detected, detected_logits, strict=True
            ):
                merged = merge_ground_truth(
                    truth, truth_logit.cpu(), graph, graph_logit, max_boxes=max_boxes
                )
                graphs.append(merged[0])
                logits.append(merged[1])
        if progress is not None:
            progress(len(indices))
    return SplitDetections(graphs=graphs, logits=logits)


def detection_cache_path(
    cache_dir: str | Path,
    split: str,
    *,
    model: SceneGraphModel,
    ground_truths: Sequence[SceneGraph] | None,
    image_graphs: Sequence[SceneGraph],
    image_paths: Sequence[Path],
    max_boxes: int,
) -> Path:
    """``cache_dir/detections_<split>_<sha256 of images, detector and settings>.pt``.

    ``image_graphs`` identify the images (ids and, with their files' sizes and times, the
    pixels); the detector's post-processing settings are part of its digest.
    """
    detector = model.detector
    if detector is None:
        raise ValueError("detection_cache_path: the model has no detector")
    heads, transform = detector.rcnn.roi_heads, detector.rcnn.transform
    settings = {
        "score_thresh": float(heads.score_thresh),
        "nms_thresh": float(heads.nms_thresh),
        "detections_per_img": int(heads.detections_per_img),
        "min_size": list(transform.min_size),
        "max_size": int(transform.max_size),
    }
    key = {
        "format": DETECTION_CACHE_FORMAT,
        "images": inputs_digest(image_graphs, image_paths),
        "detector": state_dict_sha256(detector),
        "settings": settings,
        "ground_truth": (
            inputs_digest(ground_truths, image_paths) if ground_truths is not None else None
        ),
        "max_boxes": max_boxes,
    }
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir) / f"detections_{split}_{name}.pt"


def save_detections(detections: SplitDetections, path: str | Path) -> Path:
    """Write flat tensors with per-image counts, atomically."""
    graphs = detections.graphs
    num_classes = detections.logits[0].shape[1] if detections.logits else 0
    state = {
        "format": DETECTION_CACHE_FORMAT,
        "counts": torch.tensor([g.num_objects for g in graphs], dtype=torch.int64),
        "boxes": torch.cat([g.boxes for g in graphs]) if graphs else torch.zeros((0, 4)),
        "labels": (
            torch.cat([g.labels for g in graphs]) if graphs else torch.zeros(0, dtype=torch.int64)
        ),
        "scores": torch.cat([g.object_scores for g in graphs]) if graphs else torch.zeros(0),
        "logits": (torch.cat(detections.logits) if graphs else torch.zeros((0, num_classes))),
        "image_ids": torch.tensor([g.image_id for g in graphs], dtype=torch.int64),
        "image_sizes": torch.tensor([g.image_size for g in graphs], dtype=torch.int64),
    }
    return atomic_save(state, path)


def read_detections(path: str | Path, *, num_images: int) -> SplitDetections | None:
    """Read a detection cache; ``None`` when it is unreadable or not for ``num_images``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != DETECTION_CACHE_FORMAT:
            return None
        counts = state["counts"].tolist()
        if len(counts) != num_images:
            return None
        graphs = []
        for boxes, labels, scores, image_id, size in zip(
            state["boxes"].split(counts),
            state["labels"].split(counts),
            state["scores"].split(counts),
            state["image_ids"].tolist(),
            state["image_sizes"].tolist(),
            strict=True,
        ):
            graphs.append(
                SceneGraph(
                    boxes=boxes.float(),
                    labels=labels.long(),
                    relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
                    predicates=torch.zeros(0, dtype=torch.int64),
                    image_size=(size[0], size[1]),
                    image_id=image_id,
                    object_scores=scores.float(),
                )
            )
        logits = [part.float() for part in state["logits"].split(counts)]
    except Exception:  # a corrupt or foreign file is recomputed, never trusted
        return None
    return SplitDetections(graphs=graphs, logits=logits)
