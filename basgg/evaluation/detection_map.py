"""Object-detection mean average precision at one IoU threshold, as COCO computes it.

Per class: in each image the detections of that class, best score first (at most
``max_detections``), are matched greedily to the ground-truth boxes of that class: each
detection takes the unmatched ground truth it overlaps most if that IoU is at least the
threshold (plain IoU, :func:`torchvision.ops.box_iou`), and each ground truth is matched at
most once. Detections of all images are then ranked by score (stable), the precision curve
is made non-increasing from the right, and AP is the mean of the precision at the 101 recall
levels 0, 0.01, ..., 1 (0 where the recall is never reached). mAP is the mean AP over the
classes that have ground truth in the split; a class with ground truth and no detection has
AP 0, detections of classes without ground truth are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou

from basgg.structures import SceneGraph

RECALL_LEVELS = np.linspace(0.0, 1.0, 101)  # COCO's 101 recall thresholds


@dataclass
class DetectionResult:
    """mAP and its parts.

    Attributes:
        mean_ap: mean AP over the classes with ground truth (NaN when there is none).
        average_precision: class -> AP, for every class with ground truth.
        num_ground_truth: class -> ground-truth boxes in the split.
        iou_threshold: the IoU a match needs.
    """

    mean_ap: float
    average_precision: dict[int, float]
    num_ground_truth: dict[int, int]
    iou_threshold: float = 0.5

    @property
    def metric_name(self) -> str:
        """``mAP@50`` for threshold 0.5."""
        return f"mAP@{round(100 * self.iou_threshold)}"

    def named(self, class_names: Sequence[str]) -> dict[str, float]:
        """Per-class AP keyed by ``class_names[label]``."""
        return {class_names[label]: ap for label, ap in sorted(self.average_precision.items())}


@dataclass
class _ClassRecord:
    scores: list[np.ndarray] = field(default_factory=list)  # per image, (D_i,) best first
    true_positive: list[np.ndarray] = field(default_factory=list)  # per image, (D_i,) bool
    num_ground_truth: int = 0


class DetectionEvaluator:
    """Accumulates images with :meth:`update`, then :meth:`compute` gives the mAP.

    Args:
        iou_threshold: the IoU a detection needs to match a ground truth (0.5: mAP@50).
        max_detections: detections per image and class that count, best first (COCO: 100).
    """

    def __init__(self, *, iou_threshold: float = 0.5, max_detections: int = 100) -> None:
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self._classes: dict[int, _ClassRecord] = {}

    def update(
        self, ground_truths: Sequence[SceneGraph], predictions: Sequence[SceneGraph]
    ) -> None:
        """Add images: ground-truth graphs and predicted graphs (boxes, labels and
        ``object_scores``), in the same order and the same pixels."""
        if len(ground_truths) != len(predictions):
            raise ValueError(
                f"{len(ground_truths)} ground-truth graphs but {len(predictions)} predictions"
            )
        for index, (truth, prediction) in enumerate(zip(ground_truths, predictions, strict=True)):
            if prediction.object_scores is None:
                raise ValueError(
                    f"predictions[{index}] (image_id {prediction.image_id}): object_scores is "
                    "missing; detections need a score"
                )
            self._add_image(truth, prediction)

    def _add_image(self, truth: SceneGraph, prediction: SceneGraph) -> None:
        gt_boxes, gt_labels = truth.boxes.float().cpu(), truth.labels.cpu()
        pred_boxes, pred_labels = prediction.boxes.float().cpu(), prediction.labels.cpu()
        pred_scores = prediction.object_scores.float().cpu()
        for label in torch.unique(torch.cat([gt_labels, pred_labels])).tolist():
            record = self._classes.setdefault(int(label), _ClassRecord())
            truths = gt_boxes[gt_labels == label]  # (G, 4)
            record.num_ground_truth += len(truths)
            scores = pred_scores[pred_labels == label].numpy().astype(np.float64)
            order = np.argsort(-scores, kind="mergesort")[: self.max_detections]  # (D,)
            boxes = pred_boxes[pred_labels == label][torch.from_numpy(order)]  # (D, 4)
            record.scores.append(scores[order])
            record.true_positive.append(greedy_matches(boxes, truths, self.iou_threshold))

    def compute(self) -> DetectionResult:
        """AP per class with ground truth, and their mean."""
        average_precision, counts = {}, {}
        for label, record in sorted(self._classes.items()):
            if record.num_ground_truth == 0:
                continue
            counts[label] = record.num_ground_truth
            average_precision[label] = average_precision_101(
                np.concatenate(record.scores),
                np.concatenate(record.true_positive),
                record.num_ground_truth,
            )
        mean = float(np.mean(list(average_precision.values()))) if average_precision else math.nan
        return DetectionResult(
            mean_ap=mean,
            average_precision=average_precision,
            num_ground_truth=counts,
            iou_threshold=self.iou_threshold,
        )


def greedy_matches(boxes: torch.Tensor, truths: torch.Tensor, iou_threshold: float) -> np.ndarray:
    """(D,) bool: whether each detection (best first) matches a ground truth of ``truths``.

    A detection takes the unmatched ground truth of highest IoU (the first on ties) if that
    IoU is at least ``iou_threshold``.
    """
    matched_detection = np.zeros(len(boxes), dtype=bool)  # (D,)
    if len(boxes) == 0 or len(truths) == 0:
        return matched_detection
    overlaps = box_iou(boxes, truths).numpy()  # (D, G)
    free = np.ones(len(truths), dtype=bool)  # (G,)
    for detection, row in enumerate(overlaps):
        candidates = np.where(free & (row >= iou_threshold), row, -1.0)  # (G,)
        best = int(np.argmax(candidates))
        if candidates[best] >= 0:
            free[best] = False
            matched_detection[detection] = True
    return matched_detection


def average_precision_101(
    scores: np.ndarray, true_positive: np.ndarray, num_ground_truth: int
) -> float:
    """COCO's 101-point interpolated AP of detections ``scores`` (D,) with match flags
    ``true_positive`` (D,) against ``num_ground_truth`` > 0 boxes."""
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    hits = true_positive[order].astype(np.float64)  # (D,)
    true_positives = np.cumsum(hits)
    false_positives = np.cumsum(1.0 - hits)
    recall = true_positives / num_ground_truth  # (D,)
    precision = true_positives / np.maximum(true_positives + false_positives, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # non-increasing envelope
    reached = np.searchsorted(recall, RECALL_LEVELS, side="left")  # (101,)
    at_level = np.where(
        reached < len(precision), precision[np.minimum(reached, len(precision) - 1)], 0.0
    )
    return float(at_level.mean())
