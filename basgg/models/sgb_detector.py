"""Scene-Graph-Benchmark's VG detector (ResNeXt-101-32x8d FPN) as a basgg :class:`Detector`.

The architecture and settings of SGB's ``configs/e2e_relation_X_101_32_8_FPN_1x.yaml`` on
top of maskrcnn_benchmark's defaults, built from torchvision parts (a
:class:`~torchvision.models.detection.FasterRCNN` inside :class:`SGBDetector`) with the
maskrcnn_benchmark computations of :mod:`basgg.models.sgb_layers` where they differ:

- trunk: torchvision's ResNeXt bottleneck (stride in the 3x3, ``STRIDE_IN_1X1 False``),
  blocks (3, 4, 23, 3), 32 groups of width 8, FrozenBatchNorm without epsilon; FPN 256
  channels with nearest upsampling and ``LastLevelMaxPool``;
- input (:class:`SGBTransform`): shorter side 600, longer side at most 1000 with
  maskrcnn_benchmark's integer size rule, pixel values rounded to integers after resizing
  (SGB resizes 8-bit PIL images), BGR 0..255 minus ``PIXEL_MEAN``, ``PIXEL_STD`` 1, batch
  padded to a multiple of 32;
- RPN: anchor sizes 32..512 at strides 4..64 with neural-motifs' aspect ratios,
  Detectron anchors, "+1" box coding (weights 1), per level top 6000 by objectness,
  clip, NMS 0.7 ("+1" IoU), top 1000 per level, then top 1000 per image;
- box head: legacy RoIAlign 7x7 (sampling ratio 2, scales 1/4..1/32, level by "+1" area),
  fc6/fc7 4096 (torchvision ``TwoMLPHead``: ``box_head``), class logits and per-class
  deltas (weights 10, 10, 5, 5);
- detections (:func:`sgb_select_detections`): softmax, per-class boxes clipped, score
  > 0.01, per-class "+1" NMS at 0.3 (at most 300 per class), ``NMS_FILTER_DUPLICATES``
  (one detection per proposal: its best surviving class), at most 80 per image.

Training losses (``Detector.forward``) are torchvision's; SGB's detector is used frozen.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.models.resnet import Bottleneck, ResNet

from basgg.models.detector import Detections, Detector
from basgg.models.sgb_layers import (
    FrozenBatchNorm2dNoEps,
    SGBAnchorGenerator,
    SGBBackbone,
    SGBBoxCoder,
    SGBFeaturePyramid,
    SGBRoIPooler,
    batched_nms_plus_one,
    clip_boxes_sgb,
    nms_plus_one,
)

SGB_BACKBONE = "resnext101_32x8d"
SGB_BLOCK_COUNTS = (3, 4, 23, 3)  # ResNet-101
SGB_GROUPS = 32
SGB_WIDTH_PER_GROUP = 8
SGB_FPN_CHANNELS = 256
SGB_MLP_HEAD_DIM = 4096
SGB_PIXEL_MEAN = (102.9801, 115.9465, 122.7717)  # BGR, 0..255
SGB_PIXEL_STD = (1.0, 1.0, 1.0)
SGB_SIZE_DIVISIBILITY = 32
SGB_MIN_SIZE, SGB_MAX_SIZE = 600, 1000
SGB_ANCHOR_SIZES = (32, 64, 128, 256, 512)
SGB_ANCHOR_STRIDES = (4, 8, 16, 32, 64)
SGB_ASPECT_RATIOS = (0.23232838, 0.63365731, 1.28478321, 3.15089189)  # neural-motifs
SGB_RPN_PRE_NMS_TOP_N = 6000  # per level, train and test (relation config)
SGB_RPN_POST_NMS_TOP_N = 1000  # per level and per image (FPN_POST_NMS_TOP_N)
SGB_RPN_NMS_THRESH = 0.7
SGB_POOLER_SCALES = (0.25, 0.125, 0.0625, 0.03125)
SGB_POOLER_RESOLUTION = 7
SGB_POOLER_SAMPLING_RATIO = 2
SGB_BOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
SGB_SCORE_THRESH = 0.01
SGB_NMS_THRESH = 0.3
SGB_POST_NMS_PER_CLASS = 300
SGB_DETECTIONS_PER_IMG = 80
SGB_ROI_BATCH_SIZE = 256


def sgb_resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """(height, width) maskrcnn_benchmark's ``Resize`` gives an image: shorter side
    ``min_size`` unless the longer would pass ``max_size`` (then the shorter is
    ``round(max_size * short / long)``), the other side truncated to an integer."""
    size = min_size
    short, long = float(min(width, height)), float(max(width, height))
    if long / short * size > max_size:
        size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


class SGBTransform(GeneralizedRCNNTransform):
    """SGB's input pipeline for float 0..255 RGB (3, H, W) images: resize
    (:func:`sgb_resized_size`, bilinear with antialiasing, rounded to integers as SGB's
    8-bit images are), RGB -> BGR, minus ``image_mean``, divided by ``image_std``, padded
    to a multiple of ``size_divisible``. Target boxes are scaled with the image."""

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """The batched input and the targets in its pixels."""
        mean = torch.tensor(self.image_mean, dtype=torch.float32)[:, None, None]  # (3, 1, 1)
        std = torch.tensor(self.image_std, dtype=torch.float32)[:, None, None]
        prepared, sizes = [], []
        targets = [dict(target) for target in targets] if targets is not None else None
        for index, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(f"images[{index}]: expected (3, H, W), got {tuple(image.shape)}")
            height, width = int(image.shape[-2]), int(image.shape[-1])
            size = sgb_resized_size(height, width, self.min_size[0], self.max_size)
            image = image.float()
            if size != (height, width):
                image = (
                    F.interpolate(
                        image[None], size=size, mode="bilinear", align_corners=False, antialias=True
                    )[0]
                    .round()
                    .clamp(0, 255)
                )
            image = (image.flip(0) - mean.to(image.device)) / std.to(image.device)  # BGR
            prepared.append(image)
            sizes.append(size)
            if targets is not None and "boxes" in targets[index]:
                targets[index]["boxes"] = resize_boxes(
                    targets[index]["boxes"], [height, width], list(size)
                )
        batch = self.batch_images(prepared, size_divisible=self.size_divisible)
        return ImageList(batch, sizes), targets


class SGBRegionProposalNetwork(RegionProposalNetwork):
    """torchvision's RPN with maskrcnn_benchmark's proposal selection: per image and level,
    the ``pre_nms_top_n`` best anchors by objectness, decoded, clipped to ``size - 1``,
    "+1" NMS, the best ``post_nms_top_n``; then the best ``post_nms_top_n`` of the image."""

    def filter_proposals(
        self,
        proposals: Tensor,
        objectness: Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image (K, 4) proposals and (K,) objectness probabilities, best first."""
        num_images = proposals.shape[0]
        objectness = objectness.detach().float().reshape(num_images, -1)  # (N, A_total)
        final_boxes, final_scores = [], []
        for image in range(num_images):
            boxes_per_level, scores_per_level = [], []
            for start, count in zip(
                torch.tensor([0, *num_anchors_per_level]).cumsum(0).tolist(),
                num_anchors_per_level,
                strict=False,
            ):
                scores = objectness[image, start : start + count].sigmoid()
                scores, top = scores.topk(min(self.pre_nms_top_n(), count), sorted=True)
                boxes = clip_boxes_sgb(proposals[image, start + top].float(), image_shapes[image])
                kept = nms_plus_one(boxes, scores, self.nms_thresh)[: self.post_nms_top_n()]
                boxes_per_level.append(boxes[kept])
                scores_per_level.append(scores[kept])
            boxes, scores = torch.cat(boxes_per_level), torch.cat(scores_per_level)
            scores, best = scores.topk(min(self.post_nms_top_n(), len(scores)), sorted=True)
            final_boxes.append(boxes[best])
            final_scores.append(scores)
        return final_boxes, final_scores


def sgb_select_detections(
    boxes: Tensor,
    scores: Tensor,
    *,
    score_thresh: float,
    nms_thresh: float,
    per_class_limit: int,
    detections_per_img: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """SGB's ``PostProcessor.filter_results`` with ``NMS_FILTER_DUPLICATES`` for one image.

    Args:
        boxes: (P, C + 1, 4) per-class boxes of the P proposals, clipped.
        scores: (P, C + 1) softmax scores (column 0 background).

    Per class j >= 1: the proposals scoring above ``score_thresh``, "+1" NMS at
    ``nms_thresh``, the best ``per_class_limit``. Each proposal then keeps the best of the
    classes where it survived (one detection per proposal); when more than
    ``detections_per_img`` remain, those scoring at least the ``detections_per_img``-th
    best score are kept (ties may keep more, as SGB's ``kthvalue``).

    Returns:
        (K,) proposal indices, (K,) labels in 1..C and (K,) scores, best score first.
    """
    proposal, label = torch.nonzero(scores[:, 1:] > score_thresh, as_tuple=True)
    label = label + 1
    candidate_scores = scores[proposal, label]  # (M,)
    kept = batched_nms_plus_one(boxes[proposal, label], candidate_scores, label, nms_thresh)
    kept = kept[_rank_within_group(label[kept]) < per_class_limit]  # best first per class
    survived = torch.zeros_like(scores)
    survived[proposal[kept], label[kept]] = candidate_scores[kept]
    best, best_label = survived.max(dim=1)  # (P,)
    index = torch.nonzero(best > 0).squeeze(1)  # proposal order
    best, best_label = best[index], best_label[index]
    if len(index) > detections_per_img > 0:
        threshold = torch.kthvalue(best.cpu(), len(index) - detections_per_img + 1).values
        chosen = torch.nonzero(best >= threshold.to(best.device)).squeeze(1)
        index, best, best_label = index[chosen], best[chosen], best_label[chosen]
    order = torch.argsort(best, descending=True, stable=True)
    return index[order], best_label[order], best[order]


def _rank_within_group(groups: Tensor) -> Tensor:
    """(M,) position of each element among the earlier elements of its group."""
    sorted_groups, permutation = torch.sort(groups, stable=True)
    counts = torch.bincount(sorted_groups)
    starts = torch.cumsum(counts, 0) - counts  # first position of each group
    ranks = torch.empty_like(groups)
    ranks[permutation] = torch.arange(len(groups), device=groups.device) - starts[sorted_groups]
    return ranks


class SGBDetector(Detector):
    """A :class:`Detector` whose detections follow SGB's post-processing
    (:func:`sgb_select_detections`); see the module docstring for the architecture."""

    def __init__(self, *, rcnn: FasterRCNN, num_classes: int, per_class_limit: int) -> None:
        super().__init__(rcnn=rcnn, num_classes=num_classes, backbone_name=SGB_BACKBONE)
        self.per_class_limit = per_class_limit

    def _select_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[Detections]:
        heads = self.rcnn.roi_heads
        counts = [len(image_proposals) for image_proposals in proposals]
        decoded = heads.box_coder.decode(box_regression.float(), proposals)  # (P, C + 1, 4)
        probabilities = F.softmax(class_logits.float(), -1)  # (P, C + 1)
        results = []
        for boxes, scores, logits, size in zip(
            decoded.split(counts),
            probabilities.split(counts),
            class_logits.split(counts),
            image_sizes,
            strict=True,
        ):
            boxes = clip_boxes_sgb(boxes, size)
            index, labels, kept_scores = sgb_select_detections(
                boxes,
                scores,
                score_thresh=heads.score_thresh,
                nms_thresh=heads.nms_thresh,
                per_class_limit=self.per_class_limit,
                detections_per_img=heads.detections_per_img,
            )
            results.append(
                Detections(
                    boxes=boxes[index, labels].float(),
                    labels=labels,
                    scores=kept_scores.float(),
                    class_logits=logits[index].float(),
                )
            )
        return results


class SGBResNetBody(nn.Module):
    """The trunk of a torchvision ResNet without its classifier: stem ``conv1``, ``bn1``,
    max-pool, ``layer1``..``layer4``; returns the four stage outputs (strides 4..32)."""

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = (
            resnet.conv1,
            resnet.bn1,
            resnet.relu,
            resnet.maxpool,
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1,
            resnet.layer2,
            resnet.layer3,
            resnet.layer4,
        )

    def forward(self, images: Tensor) -> list[Tensor]:
        """(B, 3, H, W) -> [C2, C3, C4, C5]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(x)
        return stages


def build_sgb_detector(
    *,
    num_classes: int,
    fpn_channels: int = SGB_FPN_CHANNELS,
    representation_size: int = SGB_MLP_HEAD_DIM,
    min_size: int = SGB_MIN_SIZE,
    max_size: int = SGB_MAX_SIZE,
    rpn_pre_nms_top_n_train: int = SGB_RPN_PRE_NMS_TOP_N,
    rpn_post_nms_top_n_train: int = SGB_RPN_POST_NMS_TOP_N,
    rpn_pre_nms_top_n_test: int = SGB_RPN_PRE_NMS_TOP_N,
    rpn_post_nms_top_n_test: int = SGB_RPN_POST_NMS_TOP_N,
    box_batch_size_per_image: int = SGB_ROI_BATCH_SIZE,
    score_thresh: float = SGB_SCORE_THRESH,
    nms_thresh: float = SGB_NMS_THRESH,
    detections_per_img: int = SGB_DETECTIONS_PER_IMG,
    anchor_sizes: Sequence[int] = SGB_ANCHOR_SIZES,
    aspect_ratios: Sequence[float] = SGB_ASPECT_RATIOS,
    block_counts: Sequence[int] = SGB_BLOCK_COUNTS,
    groups: int = SGB_GROUPS,
    width_per_group: int = SGB_WIDTH_PER_GROUP,
) -> SGBDetector:
    """SGB's detector with ``num_classes`` classes (background included), random weights.

    The defaults are SGB's; ``block_counts``, ``groups`` and ``width_per_group`` exist for
    small test models. Build it under ``torch.device("meta")`` to skip the initialisation
    when a checkpoint's weights will be assigned (``load_state_dict(..., assign=True)``).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too: needs >= 2, got {num_classes}")
    if len(anchor_sizes) != len(SGB_ANCHOR_STRIDES):
        raise ValueError(
            f"anchor_sizes needs one size per pyramid level (strides {list(SGB_ANCHOR_STRIDES)}),"
            f" got {list(anchor_sizes)}"
        )
    resnet = ResNet(
        Bottleneck,
        list(block_counts),
        groups=groups,
        width_per_group=width_per_group,
        norm_layer=FrozenBatchNorm2dNoEps,
    )
    stage_channels = [64 * Bottleneck.expansion * 2**index for index in range(4)]
    backbone = SGBBackbone(
        SGBResNetBody(resnet), SGBFeaturePyramid(stage_channels, fpn_channels), fpn_channels
    )
    anchors = SGBAnchorGenerator(anchor_sizes, SGB_ANCHOR_STRIDES, aspect_ratios)
    rpn_head = RPNHead(fpn_channels, anchors.num_anchors_per_location()[0])
    level_names = [str(index) for index in range(len(SGB_POOLER_SCALES))]
    rcnn = FasterRCNN(
        backbone,
        rpn_head=rpn_head,
        box_roi_pool=SGBRoIPooler(
            level_names,
            scales=SGB_POOLER_SCALES,
            output_size=SGB_POOLER_RESOLUTION,
            sampling_ratio=SGB_POOLER_SAMPLING_RATIO,
        ),
        box_head=TwoMLPHead(fpn_channels * SGB_POOLER_RESOLUTION**2, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes),
        box_score_thresh=score_thresh,
        box_nms_thresh=nms_thresh,
        box_detections_per_img=detections_per_img,
        box_fg_iou_thresh=0.5,
        box_bg_iou_thresh=0.3,
        box_batch_size_per_image=box_batch_size_per_image,
        box_positive_fraction=0.5,
        bbox_reg_weights=SGB_BOX_REG_WEIGHTS,
    )
    rcnn.transform = SGBTransform(
        min_size,
        max_size,
        list(SGB_PIXEL_MEAN),
        list(SGB_PIXEL_STD),
        size_divisible=SGB_SIZE_DIVISIBILITY,
    )
    rcnn.rpn = SGBRegionProposalNetwork(
        anchors,
        rpn_head,
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
        nms_thresh=SGB_RPN_NMS_THRESH,
    )
    rcnn.rpn.box_coder = SGBBoxCoder((1.0, 1.0, 1.0, 1.0))
    rcnn.roi_heads.box_coder = SGBBoxCoder(SGB_BOX_REG_WEIGHTS)
    return SGBDetector(rcnn=rcnn, num_classes=num_classes, per_class_limit=SGB_POST_NMS_PER_CLASS)
