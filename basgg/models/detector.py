"""The SGDet object detector: torchvision Faster R-CNN with an FPN on a pluggable backbone.

Images are uint8 (3, H, W) 0..255 RGB tensors, as everywhere in basgg; the detector resizes
(shorter side ``min_size``, longer side at most ``max_size``) and normalises them itself, and
gives boxes back in the input image's pixels. :func:`build_detector` takes plain arguments;
:func:`detector_from_config` is the only detector code that reads a config. Loading a trained
checkpoint (file I/O) is :func:`basgg.training.detector_training.load_detector`.

Each detection also carries the box-head class logits of the proposal it came from: the
detector runs its own post-processing (the same rules as torchvision's ``RoIHeads``: softmax,
per-class boxes, score threshold, tiny-box removal, per-class NMS, top ``detections_per_img``)
while keeping the proposal index of every kept box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import MultiScaleRoIAlign, batched_nms, clip_boxes_to_image

from basgg.models.detector_backbone import (
    PYRAMID_STRIDES,
    build_pyramid_backbone,
    pyramid_level_names,
)
from basgg.structures import SceneGraph

DETECTOR_KIND = "detector"
ROI_POOL_SIZE = 7
ROI_SAMPLING_RATIO = 2
MIN_BOX_SIDE = 1e-2  # detections with a thinner side are dropped (as torchvision does)
DEFAULT_ANCHOR_SIZES = (32, 64, 128, 256)  # one per pyramid level, strides 8, 16, 32, 64
DEFAULT_ASPECT_RATIOS = (0.5, 1.0, 2.0)


@dataclass
class Detections:
    """The detections of one image, best first.

    Attributes:
        boxes: (N, 4) float32 xyxy in the input image's pixels.
        labels: (N,) int64 object classes 1..C.
        scores: (N,) float32 softmax score of that label.
        class_logits: (N, C + 1) float32 box-head logits of the proposal each detection came
            from (column 0 is background).
    """

    boxes: Tensor
    labels: Tensor
    scores: Tensor
    class_logits: Tensor

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: torch.device | str) -> Detections:
        """A copy with every tensor on ``device``."""
        moved = {item.name: getattr(self, item.name).to(device) for item in fields(self)}
        return replace(self, **moved)

    def as_scene_graph(self, image_size: tuple[int, int], image_id: int = -1) -> SceneGraph:
        """A relation-free :class:`SceneGraph` of these boxes, labels and scores (CPU)."""
        return SceneGraph(
            boxes=self.boxes.detach().float().cpu(),
            labels=self.labels.detach().cpu(),
            relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
            predicates=torch.zeros((0,), dtype=torch.int64),
            image_size=image_size,
            image_id=image_id,
            object_scores=self.scores.detach().float().cpu(),
        )


class Detector(nn.Module):
    """Faster R-CNN + FPN taking uint8 images and :class:`SceneGraph` targets.

    Args:
        rcnn: the torchvision model (its transform normalises 0..255 input).
        num_classes: C + 1, background included.
        backbone_name: the trunk's name, recorded in checkpoints.
    """

    def __init__(self, *, rcnn: FasterRCNN, num_classes: int, backbone_name: str) -> None:
        super().__init__()
        self.rcnn = rcnn
        self.num_classes = num_classes
        self.backbone_name = backbone_name

    @property
    def device(self) -> torch.device:
        """Where the parameters are."""
        return next(self.parameters()).device

    def describe(self) -> dict[str, Any]:
        """What a checkpoint's weights must match (plain values)."""
        return {
            "kind": DETECTOR_KIND,
            "backbone": self.backbone_name,
            "num_classes": self.num_classes,
        }

    def forward(
        self, images: list[Tensor], targets: list[SceneGraph] | None = None
    ) -> dict[str, Tensor]:
        """Training losses ``loss_objectness``, ``loss_rpn_box_reg`` (RPN), ``loss_classifier``
        and ``loss_box_reg`` (box head) of uint8 (3, H, W) ``images`` and their targets (every
        box of each graph is an object to detect). Needs training mode; see :meth:`detect`."""
        if not self.training:
            raise ValueError("Detector.forward computes training losses: call train() first")
        if targets is None or len(targets) != len(images):
            raise ValueError("Detector.forward needs one target SceneGraph per image")
        device = self.device
        torch_targets = []
        for index, target in enumerate(targets):
            self._check_target(index, target)
            torch_targets.append(
                {"boxes": target.boxes.to(device).float(), "labels": target.labels.to(device)}
            )
        return self.rcnn(self._float_images(images), torch_targets)

    @torch.no_grad()
    def detect(self, images: Sequence[Tensor]) -> list[Detections]:
        """Detections of uint8 (3, H, W) ``images`` (in eval mode; the mode is restored),
        sorted by score, at most ``detections_per_img`` each, on the model's device."""
        if not images:
            return []
        was_training = self.training
        self.eval()
        try:
            original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
            image_list, _ = self.rcnn.transform(self._float_images(images))
            features = self.rcnn.backbone(image_list.tensors)
            proposals, _ = self.rcnn.rpn(image_list, features)
            class_logits, box_regression = self._box_head(
                features, proposals, image_list.image_sizes
            )
            detections = self._select_detections(
                class_logits, box_regression, proposals, image_list.image_sizes
            )
        finally:
            self.train(was_training)
        for detection, size, original in zip(
            detections, image_list.image_sizes, original_sizes, strict=True
        ):
            detection.boxes = resize_boxes(detection.boxes, list(size), list(original))
        return detections

    @torch.no_grad()
    def classify_boxes(self, images: Sequence[Tensor], boxes: Sequence[Tensor]) -> list[Tensor]:
        """(N_i, C + 1) box-head logits of the given xyxy ``boxes`` (input pixels) of each
        uint8 image, in eval mode (e.g. ground-truth boxes added to SGDet proposals)."""
        if len(images) != len(boxes):
            raise ValueError(f"classify_boxes: {len(images)} images but {len(boxes)} box sets")
        if not images:
            return []
        was_training = self.training
        self.eval()
        try:
            original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
            image_list, _ = self.rcnn.transform(self._float_images(images))
            scaled = [
                resize_boxes(
                    image_boxes.to(self.device).float().reshape(-1, 4), list(original), list(size)
                )
                for image_boxes, original, size in zip(
                    boxes, original_sizes, image_list.image_sizes, strict=True
                )
            ]
            features = self.rcnn.backbone(image_list.tensors)
            class_logits, _ = self._box_head(features, scaled, image_list.image_sizes)
        finally:
            self.train(was_training)
        return list(class_logits.float().split([len(image_boxes) for image_boxes in scaled]))

    def _float_images(self, images: Sequence[Tensor]) -> list[Tensor]:
        device = self.device
        for index, image in enumerate(images):
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"images[{index}]: expected a (3, H, W) RGB tensor, got {tuple(image.shape)}"
                )
        return [image.to(device, torch.float32) for image in images]

    def _check_target(self, index: int, target: SceneGraph) -> None:
        boxes, labels = target.boxes, target.labels
        where = f"targets[{index}] (image_id {target.image_id})"
        if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"{where}: labels must be in 1..{self.num_classes - 1}, got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )
        degenerate = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])  # (N,)
        if bool(degenerate.any()) or not bool(torch.isfinite(boxes).all()):
            row = int(torch.nonzero(degenerate | ~torch.isfinite(boxes).all(1))[0])
            raise ValueError(
                f"{where}: boxes row {row} is empty or not finite: {boxes[row].tolist()}"
            )

    def _box_head(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """(sum N_i, C + 1) class logits and (sum N_i, 4 (C + 1)) box deltas of ``boxes``."""
        heads = self.rcnn.roi_heads
        pooled = heads.box_roi_pool(features, boxes, image_sizes)  # (sum N_i, D, 7, 7)
        return heads.box_predictor(heads.box_head(pooled))

    def _select_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[Detections]:
        heads = self.rcnn.roi_heads
        counts = [len(image_proposals) for image_proposals in proposals]
        decoded = heads.box_coder.decode(box_regression, proposals)  # (P, C + 1, 4)
        probabilities = F.softmax(class_logits, -1)  # (P, C + 1)
        results = []
        for boxes, scores, logits, size in zip(
            decoded.split(counts),
            probabilities.split(counts),
            class_logits.split(counts),
            image_sizes,
            strict=True,
        ):
            boxes = clip_boxes_to_image(boxes, size)[:, 1:].reshape(-1, 4)  # (P_i * C, 4)
            scores = scores[:, 1:].reshape(-1)  # (P_i * C,)
            num_foreground = self.num_classes - 1
            widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            candidates = torch.nonzero(
                (scores > heads.score_thresh) & (widths >= MIN_BOX_SIDE) & (heights >= MIN_BOX_SIDE)
            ).squeeze(1)  # (K,)
            labels = candidates % num_foreground + 1  # (K,)
            kept = batched_nms(boxes[candidates], scores[candidates], labels, heads.nms_thresh)
            kept = candidates[kept[: heads.detections_per_img]]  # (N,) best first
            results.append(
                Detections(
                    boxes=boxes[kept].float(),  # float32 under autocast too
                    labels=kept % num_foreground + 1,
                    scores=scores[kept].float(),
                    class_logits=logits[kept // num_foreground].float(),
                )
            )
        return results


def build_detector(
    *,
    backbone_name: str,
    num_classes: int,
    backbone_weights: dict[str, Tensor] | None,
    trainable_layers: int,
    fpn_channels: int,
    representation_size: int,
    min_size: int,
    max_size: int,
    rpn_pre_nms_top_n_train: int,
    rpn_post_nms_top_n_train: int,
    rpn_pre_nms_top_n_test: int,
    rpn_post_nms_top_n_test: int,
    box_batch_size_per_image: int,
    score_thresh: float,
    nms_thresh: float,
    detections_per_img: int,
    anchor_sizes: Sequence[int] = DEFAULT_ANCHOR_SIZES,
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
) -> Detector:
    """A Faster R-CNN + FPN detector of ``num_classes`` classes (background included).

    Args:
        backbone_name: a :data:`basgg.models.backbone.BACKBONE_NAMES` trunk.
        num_classes: C + 1.
        backbone_weights: the trunk's ImageNet state dict, or None (random trunk).
        trainable_layers: stride stages fine-tuned, from the deepest (0: frozen trunk).
        fpn_channels: channels of the pyramid levels.
        representation_size: width of the box head's two fully connected layers.
        min_size: shorter image side after resizing.
        max_size: cap on the longer side after resizing.
        rpn_pre_nms_top_n_train: RPN proposals per level kept before NMS, training.
        rpn_post_nms_top_n_train: RPN proposals per image kept after NMS, training.
        rpn_pre_nms_top_n_test: as above, inference.
        rpn_post_nms_top_n_test: as above, inference.
        box_batch_size_per_image: proposals sampled per image for the box-head loss.
        score_thresh: detections need a class score above this.
        nms_thresh: per-class NMS IoU.
        detections_per_img: most detections kept per image.
        anchor_sizes: anchor side per pyramid level (strides 8, 16, 32, 64).
        aspect_ratios: anchor height/width ratios, the same on every level.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too: needs >= 2, got {num_classes}")
    levels = len(PYRAMID_STRIDES) + 1
    if len(anchor_sizes) != levels:
        raise ValueError(
            f"anchor_sizes needs one size per pyramid level ({levels}: strides "
            f"{[*PYRAMID_STRIDES, 2 * PYRAMID_STRIDES[-1]]}), got {list(anchor_sizes)}"
        )
    backbone, (pixel_mean, pixel_std) = build_pyramid_backbone(
        backbone_name,
        weights=backbone_weights,
        trainable_layers=trainable_layers,
        fpn_channels=fpn_channels,
    )
    anchors = AnchorGenerator(
        sizes=tuple((int(size),) for size in anchor_sizes),
        aspect_ratios=(tuple(float(ratio) for ratio in aspect_ratios),) * levels,
    )
    rcnn = FasterRCNN(
        backbone,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(pixel_mean),  # 0..255 units: images are not divided by 255
        image_std=list(pixel_std),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        box_roi_pool=MultiScaleRoIAlign(
            pyramid_level_names(), output_size=ROI_POOL_SIZE, sampling_ratio=ROI_SAMPLING_RATIO
        ),
        box_head=TwoMLPHead(fpn_channels * ROI_POOL_SIZE**2, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes),
        box_score_thresh=score_thresh,
        box_nms_thresh=nms_thresh,
        box_detections_per_img=detections_per_img,
        box_batch_size_per_image=box_batch_size_per_image,
    )
    return Detector(rcnn=rcnn, num_classes=num_classes, backbone_name=backbone_name)
