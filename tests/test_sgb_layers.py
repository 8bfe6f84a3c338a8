"""SGB's detector layers compute what maskrcnn_benchmark computes.

Every expected value is worked out by hand in the comments from maskrcnn_benchmark's
formulas (layers/batch_norm.py, backbone/resnet.py and fpn.py, poolers.py + the legacy
ROIAlign kernel, box_coder.py, rpn/anchor_generator.py and inference.py,
box_head/inference.py, data/transforms), on tiny widths so each test takes milliseconds.
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops import roi_align
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.transforms import functional as tf

from basgg.models.sgb_detector import (
    SGBRegionProposalNetwork,
    SGBTransform,
    sgb_resized_size,
    sgb_select_detections,
)
from basgg.models.sgb_layers import (
    FrozenBatchNorm2dNoEps,
    SGBAnchorGenerator,
    SGBBoxCoder,
    SGBFeaturePyramid,
    SGBRoIPooler,
    clip_boxes_sgb,
    nms_plus_one,
    sgb_cell_anchors,
    sgb_levels,
)


def _frozen(num: int, weight: float, bias: float, mean: float, var: float) -> nn.Module:
    norm = FrozenBatchNorm2dNoEps(num)
    norm.weight.fill_(weight)
    norm.bias.fill_(bias)
    norm.running_mean.fill_(mean)
    norm.running_var.fill_(var)
    return norm


def test_frozen_batch_norm_has_no_epsilon() -> None:
    # scale = 2 / sqrt(4) = 1, shift = 1 - 3 * 1 = -2: 5 -> 3 exactly
    assert _frozen(1, 2.0, 1.0, 3.0, 4.0)(torch.full((1, 1, 1, 1), 5.0)).item() == 3.0
    # var 1e-6: scale 1 / 1e-3 = 1000, so 1 -> 1000; torchvision's eps 1e-5 would give 301.5
    norm = _frozen(1, 1.0, 0.0, 0.0, 1e-6)
    assert norm(torch.ones(1, 1, 1, 1)).item() == pytest.approx(1000.0, rel=1e-6)
    with_eps = FrozenBatchNorm2d(1)
    with_eps.load_state_dict(norm.state_dict())
    assert with_eps(torch.ones(1, 1, 1, 1)).item() == pytest.approx(1 / math.sqrt(1.1e-5), 1e-5)


def test_resnext_bottleneck_has_its_stride_in_the_3x3() -> None:
    # one input channel, width 1, 4 output channels; conv1 and conv3 are all-ones 1x1 convs,
    # conv2 an all-ones 3x3 (a 3x3 neighbourhood sum), the shortcut weight 0; every norm is
    # an identity written with weight w and var w^2 (exact only without epsilon)
    block = Bottleneck(
        1,
        1,
        stride=2,
        groups=1,
        base_width=64,
        norm_layer=FrozenBatchNorm2dNoEps,
        downsample=nn.Sequential(nn.Conv2d(1, 4, 1, stride=2, bias=False), _frozen(4, 1, 0, 0, 1)),
    )
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    for conv in (block.conv1, block.conv2, block.conv3):
        nn.init.ones_(conv.weight)
    nn.init.zeros_(block.downsample[0].weight)
    block.bn1, block.bn2, block.bn3 = (
        _frozen(1, 3, 0, 0, 9),
        _frozen(1, 2, 0, 0, 4),
        _frozen(4, 1, 0, 0, 1),
    )
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # 3x3 sums (zero padding) centred on (0,0), (0,2), (2,0), (2,2) of
    # [[0,1,2,3],[4,5,6,7],[8,9,10,11],[12,13,14,15]]: 0+1+4+5, 1+2+3+5+6+7,
    # 4+5+8+9+12+13, 5+6+7+9+10+11+13+14+15; a stride in the 1x1 would give 20 everywhere
    expected = torch.tensor([[10.0, 24.0], [51.0, 90.0]])
    out = block.eval()(x)
    assert out.shape == (1, 4, 2, 2)
    for channel in range(4):
        assert torch.equal(out[0, channel], expected)


def test_fpn_top_down_is_nearest_upsampling_plus_last_level_max_pool() -> None:
    fpn = SGBFeaturePyramid([1, 1, 1, 1], 1)
    for name, module in fpn.named_children():
        nn.init.zeros_(module.weight)
        nn.init.zeros_(module.bias)
        if name.startswith("fpn_inner"):
            module.weight.data.fill_(1.0)  # lateral 1x1: identity
        else:
            module.weight.data[0, 0, 1, 1] = 1.0  # 3x3 output conv: identity
    c5 = torch.full((1, 1, 1, 1), 8.0)
    c4 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    c3, c2 = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 8, 8)
    levels = fpn([c2, c3, c4, c5])
    assert list(levels) == ["0", "1", "2", "3", "pool"]
    # P4 = C4 + up(C5) = [[9, 10], [11, 12]]; P3, P2 repeat each value in 2x2, 4x4 blocks
    assert torch.equal(levels["2"][0, 0], torch.tensor([[9.0, 10.0], [11.0, 12.0]]))
    assert torch.equal(levels["1"][0, 0, :2, 2:], torch.full((2, 2), 10.0))
    assert torch.equal(levels["0"][0, 0, 4:, 4:], torch.full((4, 4), 12.0))
    assert torch.equal(levels["pool"], c5)  # max-pool kernel 1 stride 2 of P5 (1x1)
    # the max-pool of a 3x3 level keeps the corners and the middle of the edges at stride 2
    odd = torch.arange(9.0).reshape(1, 1, 3, 3)
    three = SGBFeaturePyramid([1], 1)
    nn.init.zeros_(three.fpn_layer1.weight)
    three.fpn_layer1.weight.data[0, 0, 1, 1] = 1.0
    nn.init.ones_(three.fpn_inner1.weight)
    nn.init.zeros_(three.fpn_inner1.bias)
    nn.init.zeros_(three.fpn_layer1.bias)
    assert torch.equal(three([odd])["pool"][0, 0], torch.tensor([[0.0, 2.0], [6.0, 8.0]]))


def test_roi_align_is_the_legacy_unaligned_one() -> None:
    # f(y, x) = 10 y + x is linear, so a bin's value is f at the mean of its 2x2 samples
    feature = (10 * torch.arange(4.0)[:, None] + torch.arange(4.0)[None]).reshape(1, 1, 4, 4)
    pooled = roi_align(feature, torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]]), 1, 1.0, 2, aligned=False)
    assert pooled.item() == pytest.approx(11.0)  # samples at 0.5, 1.5 -> mean 1: f(1, 1)
    # aligned=True would shift by half a pixel: samples at 0, 1 -> f(0.5, 0.5) = 5.5
    assert roi_align(
        feature, torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]]), 1, 1.0, 2, aligned=True
    ).item() == pytest.approx(5.5)
    # a box thinner than one pixel is widened to 1x1: samples at 1.25, 1.75 -> f(1.5, 1.5)
    thin = roi_align(feature, torch.tensor([[0, 1.0, 1.0, 1.2, 1.2]]), 1, 1.0, 2, aligned=False)
    assert thin.item() == pytest.approx(16.5)


def _bilinear(feature: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """maskrcnn_benchmark's ROIAlign sample (csrc/cpu/ROIAlign_cpu.cpp), per channel."""
    height, width = feature.shape[-2:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(feature.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    return (
        (1 - ly) * (1 - lx) * feature[:, y_low, x_low]
        + (1 - ly) * lx * feature[:, y_low, x_high]
        + ly * (1 - lx) * feature[:, y_high, x_low]
        + ly * lx * feature[:, y_high, x_high]
    )


def _reference_roi_align(
    feature: torch.Tensor, box: torch.Tensor, scale: float, size: int, samples: int
) -> torch.Tensor:
    x1, y1, x2, y2 = (float(v) * scale for v in box)
    bin_h, bin_w = max(y2 - y1, 1.0) / size, max(x2 - x1, 1.0) / size
    out = torch.zeros(feature.shape[0], size, size)
    for ph in range(size):
        for pw in range(size):
            values = [
                _bilinear(
                    feature,
                    y1 + ph * bin_h + (iy + 0.5) * bin_h / samples,
                    x1 + pw * bin_w + (ix + 0.5) * bin_w / samples,
                )
                for iy in range(samples)
                for ix in range(samples)
            ]
            out[:, ph, pw] = torch.stack(values).mean(0)
    return out


def test_pooler_matches_the_legacy_kernel_on_random_inputs() -> None:
    generator = torch.Generator().manual_seed(0)
    pooler = SGBRoIPooler(["0", "1"], scales=[1 / 4, 1 / 8], output_size=3, sampling_ratio=2)
    features = {"0": torch.randn(2, 2, 10, 12, generator=generator)}
    features["1"] = torch.randn(2, 2, 5, 6, generator=generator)
    boxes = [
        torch.tensor(
            [
                [0.0, 0.0, 20.0, 15.0],
                [30.0, 20.0, 47.0, 39.0],
                [-6.0, -9.0, 3.0, 2.0],
                [-10.0, -10.0, 130.0, 110.0],
            ]  # sqrt(141 x 121) = 130.6: the stride-8 level
        ),
        torch.tensor([[10.0, 4.0, 11.0, 5.0], [40.0, 30.0, 60.0, 50.0]]),  # past the edges
    ]
    pooled = pooler(features, boxes, [(40, 48), (40, 48)])
    assert sgb_levels(torch.cat(boxes), num_levels=2).tolist() == [0, 0, 0, 1, 0, 0]
    row = 0
    for image, image_boxes in enumerate(boxes):
        for box in image_boxes:
            level = int(sgb_levels(box[None], num_levels=2)[0])
            feature = features[str(level)][image]
            expected = _reference_roi_align(feature, box, [1 / 4, 1 / 8][level], 3, 2)
            torch.testing.assert_close(pooled[row], expected, rtol=1e-5, atol=1e-6)
            row += 1


def test_pooler_level_uses_the_plus_one_area() -> None:
    boxes = torch.tensor(
        [
            [0.0, 0.0, 223.0, 223.0],  # sqrt area 224: floor(4 + log2(1 + 1e-6)) = 4 -> index 2
            [0.0, 0.0, 111.0, 111.0],  # 112: floor(4 - 0.999997) = 3 -> 1 (111 without +1 -> 0)
            [0.0, 0.0, 110.0, 110.0],  # 111: floor(2.987) = 2 -> 0
            [0.0, 0.0, 10.0, 10.0],  # tiny: clamped to level 2 -> 0
            [0.0, 0.0, 999.0, 999.0],  # 1000: floor(6.16) = 6, clamped to 5 -> 3
        ]
    )
    assert sgb_levels(boxes).tolist() == [2, 1, 0, 0, 3]
    # each level is a constant map (level index + 1): the pooled value shows the level used
    pooler = SGBRoIPooler(
        ["0", "1", "2", "3"], scales=[1 / 4, 1 / 8, 1 / 16, 1 / 32], output_size=2, sampling_ratio=2
    )
    features = {
        str(i): torch.full((1, 3, 400 // 2**i, 400 // 2**i), float(i + 1)) for i in range(4)
    }
    pooled = pooler(features, [boxes[:3]], [(1000, 1000)])
    assert pooled.shape == (3, 3, 2, 2)
    assert pooled.mean(dim=(1, 2, 3)).tolist() == [3.0, 2.0, 1.0]


def test_box_decoding_with_weights_10_10_5_5_and_clip() -> None:
    coder = SGBBoxCoder((10.0, 10.0, 5.0, 5.0))
    proposal = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # width 10 (+1), centre (5, 5)
    # dx = 1/10, dy = 2/10, dw = (5 ln 2)/5, dh = 0: centre (6, 7), size 20 x 10
    deltas = torch.tensor([[1.0, 2.0, 5 * math.log(2.0), 0.0]])
    decoded = coder.decode_single(deltas, proposal)
    # x1 = 6 - 10, y1 = 7 - 5, x2 = 6 + 10 - 1, y2 = 7 + 5 - 1
    assert decoded[0].tolist() == pytest.approx([-4.0, 2.0, 15.0, 11.0])
    assert clip_boxes_sgb(decoded, (12, 12))[0].tolist() == pytest.approx([0.0, 2.0, 11.0, 11.0])
    # dw = 50 / 5 = 10 is clamped to log(1000 / 16): width 10 * 62.5 = 625 about centre 5
    wide = coder.decode_single(torch.tensor([[0.0, 0.0, 50.0, 0.0]]), proposal)[0]
    assert wide.tolist() == pytest.approx([5 - 312.5, 0.0, 5 + 312.5 - 1, 9.0])
    # encode is its inverse (and per-class columns decode side by side)
    target = torch.tensor([[3.0, 1.0, 20.0, 8.0]])
    codes = coder.encode_single(target, proposal)
    assert (
        coder.decode_single(codes.repeat(1, 2), proposal).reshape(2, 4).tolist()
        == [pytest.approx(target[0].tolist())] * 2
    )


def test_nms_counts_plus_one_pixels() -> None:
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    scores = torch.tensor([0.9, 0.8])
    # "+1" IoU: intersection 5 x 10 = 50, areas 100 -> 1/3 >= 0.3 (plain IoU 36 / 126 = 0.29)
    assert nms_plus_one(boxes, scores, 0.3).tolist() == [0]
    assert nms_plus_one(boxes, scores, 0.34).tolist() == [0, 1]


def test_anchors_follow_detectron() -> None:
    # stride 4, size 32, ratio 1: cell [0, 0, 3, 3] (centre 1.5) scaled x8: 32 x 32
    assert sgb_cell_anchors(4, 32, [1.0]).tolist() == [[-14.0, -14.0, 17.0, 17.0]]
    # stride 16, size 32: ratio 0.5 -> w = round(sqrt(512)) = 23, h = round(11.5) = 12 (half
    # to even), x2 -> 46 x 24 about 7.5; ratio 2 -> w = round(sqrt(128)) = 11, h = 22 -> 22 x 44
    assert sgb_cell_anchors(16, 32, [0.5, 2.0]).tolist() == [
        [-15.0, -4.0, 30.0, 19.0],
        [-3.0, -14.0, 18.0, 29.0],
    ]
    # neural-motifs' 0.23232838 at stride 4, size 32: w = round(sqrt(68.87)) = 8,
    # h = round(1.86) = 2, x8 -> 64 x 16 about 1.5
    assert sgb_cell_anchors(4, 32, [0.23232838]).tolist() == [[-30.0, -6.0, 33.0, 9.0]]
    generator = SGBAnchorGenerator([32, 64], [4, 8], [1.0])
    level_4, level_8 = generator.grid_anchors([(1, 2), (1, 1)])
    assert level_4.tolist() == [[-14.0, -14.0, 17.0, 17.0], [-10.0, -14.0, 21.0, 17.0]]
    assert level_8.tolist() == [[-28.0, -28.0, 35.0, 35.0]]  # [0, 0, 7, 7] x8 about 3.5


def test_rpn_selects_per_level_then_per_image() -> None:
    rpn = SGBRegionProposalNetwork(
        SGBAnchorGenerator([32], [4], [1.0]),
        nn.Identity(),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=8,
        positive_fraction=0.5,
        pre_nms_top_n={"training": 10, "testing": 10},
        post_nms_top_n={"training": 2, "testing": 2},
        nms_thresh=0.3,
    ).eval()
    proposals = torch.tensor(
        [[[0.0, 0, 9, 9], [5, 0, 14, 9], [5, 0, 14, 9], [15, 2, 30, 12]]]  # levels 0, 0, 1, 1
    )
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    boxes, scores = rpn.filter_proposals(proposals, logits, [(10, 20)], [2, 2])
    # level 0: the second box overlaps the first by 1/3 ("+1") and goes; level 1 keeps both,
    # the last clipped to x <= 19, y <= 9; the image keeps its best two
    assert boxes[0].tolist() == [[0.0, 0, 9, 9], [5, 0, 14, 9]]
    assert scores[0].tolist() == pytest.approx(
        [torch.sigmoid(torch.tensor(v)).item() for v in (2.0, 0.0)]
    )
    rpn._post_nms_top_n = {"training": 3, "testing": 3}
    boxes, _ = rpn.filter_proposals(proposals, logits, [(10, 20)], [2, 2])
    assert boxes[0][2].tolist() == [15.0, 2.0, 19.0, 9.0]


def test_detections_filter_duplicates_one_per_proposal() -> None:
    # proposals 0 and 1 overlap in class 1 (0 wins), not in class 2; proposal 2 is elsewhere
    boxes = torch.zeros(3, 3, 4)
    boxes[0, 1], boxes[1, 1] = torch.tensor([0.0, 0, 9, 9]), torch.tensor([1.0, 0, 9, 9])
    boxes[0, 2], boxes[1, 2] = torch.tensor([0.0, 0, 9, 9]), torch.tensor([30.0, 30, 39, 39])
    boxes[2, 1] = boxes[2, 2] = torch.tensor([60.0, 60, 69, 69])
    scores = torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.85, 0.1, 0.05]])
    settings = dict(score_thresh=0.01, nms_thresh=0.3, per_class_limit=300)
    index, labels, kept = sgb_select_detections(boxes, scores, detections_per_img=80, **settings)
    # proposal 0: class 1 (0.6 beats its surviving class 2 at 0.3); proposal 1 survives only
    # in class 2 (0.3); proposal 2: class 1 (0.1); without the filter proposal 0 would also
    # be a class-2 detection
    assert index.tolist() == [0, 1, 2]
    assert labels.tolist() == [1, 2, 1]
    assert kept.tolist() == pytest.approx([0.6, 0.3, 0.1])
    index, _, _ = sgb_select_detections(boxes, scores, detections_per_img=2, **settings)
    assert index.tolist() == [0, 1]  # scores >= the 2nd best
    index, labels, _ = sgb_select_detections(
        boxes, scores, detections_per_img=80, score_thresh=0.01, nms_thresh=0.3, per_class_limit=0
    )
    assert index.tolist() == []


def test_input_size_rule_and_bgr_255_normalisation() -> None:
    assert sgb_resized_size(600, 800, 600, 1000) == (600, 800)  # already there
    assert sgb_resized_size(375, 500, 600, 1000) == (600, 800)  # int(600 * 500 / 375)
    # 1280 x 480: 600 would make the long side 1600 > 1000, so short = round(375.0) = 375
    assert sgb_resized_size(480, 1280, 600, 1000) == (375, 1000)
    # 700 x 300: short = round(428.57) = 429, long = int(429 * 700 / 300) = 1001 (SGB's rule
    # can pass MAX_SIZE by a pixel; torchvision's scale factor would give 1000 x 428)
    assert sgb_resized_size(700, 300, 600, 1000) == (1001, 429)
    transform = SGBTransform(600, 1000, [102.9801, 115.9465, 122.7717], [1.0, 1.0, 1.0])
    image = torch.stack([torch.full((300, 400), value) for value in (10.0, 20.0, 30.0)])  # RGB
    batch, _ = transform([image])
    assert batch.image_sizes == [(600, 800)]
    assert batch.tensors.shape == (1, 3, 608, 800)  # padded to a multiple of 32
    first = batch.tensors[0, :, 0, 0].tolist()  # B, G, R minus SGB's BGR mean
    assert first == pytest.approx([30 - 102.9801, 20 - 115.9465, 10 - 122.7717], abs=1e-4)
    assert batch.tensors[0, :, 600:].abs().max().item() == 0.0


@pytest.mark.parametrize("source", [(375, 500), (960, 1280)], ids=["up", "down"])
def test_resize_is_within_one_grey_level_of_sgbs_pil_resize(source: tuple[int, int]) -> None:
    """SGB resizes the 8-bit PIL image (torchvision's functional resize, bilinear)."""
    height, width = source
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rgb = torch.stack([(xs * 7 + ys * 3) % 256, (xs * ys) % 251, (ys * 5) % 256]).to(torch.uint8)
    size = sgb_resized_size(height, width, 600, 1000)
    reference = tf.pil_to_tensor(
        tf.resize(Image.fromarray(rgb.permute(1, 2, 0).numpy()), list(size))
    )
    transform = SGBTransform(600, 1000, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    batch, _ = transform([rgb.float()])
    ours = batch.tensors[0, :, : size[0], : size[1]].flip(0)  # BGR back to RGB
    assert (ours - reference.float()).abs().max().item() <= 1.0
