"""Frozen RoI features, box masks, box and pair geometry, class word vectors (hand-checked)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.ops import roi_align

from basgg.boxes import union_boxes
from basgg.models.backbone import Backbone
from basgg.models.features import (
    FrozenFeatureExtractor,
    box_geometry,
    class_word_vectors,
    pair_geometry,
    rect_masks,
    unordered_pairs,
)
from basgg.pretrained import WordVectors


def _identity_backbone(stride: int = 1) -> Backbone:
    """Features = raw 0..255 pixels (stride 1) or their 2x2 means (stride 2)."""
    body = nn.Identity() if stride == 1 else nn.AvgPool2d(stride)
    return Backbone(
        body=body, out_channels=3, stride=stride, pixel_mean=(0.0,) * 3, pixel_std=(1.0,) * 3
    )


def _two_colour_image(height: int, width: int) -> torch.Tensor:
    """Left half (10, 20, 30), right half (200, 100, 50)."""
    image = torch.empty((3, height, width), dtype=torch.uint8)
    image[:, :, : width // 2] = torch.tensor([10, 20, 30], dtype=torch.uint8)[:, None, None]
    image[:, :, width // 2 :] = torch.tensor([200, 100, 50], dtype=torch.uint8)[:, None, None]
    return image


def test_roi_align_pools_constant_regions_exactly() -> None:
    extractor = FrozenFeatureExtractor(
        backbone=_identity_backbone(), object_pool=2, union_pool=1, rect_size=0
    )
    image = _two_colour_image(16, 16)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [1.0, 2.0, 7.0, 9.0]])  # whole, inside left
    objects, unions = extractor([image], [boxes], [torch.zeros((0, 2), dtype=torch.int64)])
    assert extractor.object_dim == 12 and objects[0].shape == (2, 12)
    whole = objects[0][0].view(3, 2, 2)  # (C, P, P): left column bins, right column bins
    expected = torch.tensor([[[10, 200]] * 2, [[20, 100]] * 2, [[30, 50]] * 2], dtype=torch.float32)
    torch.testing.assert_close(whole, expected, rtol=0, atol=1e-4)
    inside = objects[0][1].view(3, 4)
    torch.testing.assert_close(inside, torch.tensor([[10.0] * 4, [20.0] * 4, [30.0] * 4]))
    assert unions[0].shape == (0, 3)


def test_roi_align_uses_the_backbone_stride() -> None:
    extractor = FrozenFeatureExtractor(
        backbone=_identity_backbone(stride=2), object_pool=1, union_pool=1, rect_size=0
    )
    image = _two_colour_image(8, 16)  # feature map (3, 4, 8): left 4 cells, right 4 cells
    boxes = torch.tensor([[8.0, 0.0, 16.0, 8.0], [4.0, 0.0, 12.0, 8.0]])  # right half; centre
    objects, _ = extractor([image], [boxes], [torch.zeros((0, 2), dtype=torch.int64)])
    torch.testing.assert_close(objects[0][0], torch.tensor([200.0, 100.0, 50.0]))
    torch.testing.assert_close(objects[0][1], torch.tensor([105.0, 60.0, 40.0]))  # half each


def test_union_features_pool_the_enclosing_box_then_masks() -> None:
    extractor = FrozenFeatureExtractor(
        backbone=_identity_backbone(), object_pool=2, union_pool=2, rect_size=4
    )
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 3.0, 9.0, 8.0], [6.0, 10.0, 20.0, 17.0], [2.0, 3.0, 20.0, 17.0]])
    pairs = torch.tensor([[0, 1], [1, 0]])
    objects, unions = extractor([image], [boxes], [pairs])
    assert extractor.union_visual_dim == 12 and extractor.union_dim == 12 + 2 * 16
    assert unions[0].shape == (2, 44)
    # the union box of boxes 0 and 1 is box 2, whichever is the subject
    torch.testing.assert_close(unions[0][0, :12], objects[0][2])
    torch.testing.assert_close(unions[0][1, :12], objects[0][2])
    masks = unions[0][:, 12:].view(2, 2, 4, 4)
    torch.testing.assert_close(masks[0], rect_masks(boxes[[0]], boxes[[1]], 4)[0])
    torch.testing.assert_close(masks[1], masks[0].flip(0))  # swapped subject and object


def test_unordered_pairs_hand_example() -> None:
    pairs = torch.tensor([[2, 0], [0, 2], [1, 3], [0, 1], [3, 1]])
    unordered, rows = unordered_pairs(pairs)
    assert unordered.tolist() == [[0, 1], [0, 2], [1, 3]]
    assert rows.tolist() == [1, 1, 2, 0, 2]
    empty, empty_rows = unordered_pairs(torch.zeros((0, 2), dtype=torch.int64))
    assert empty.shape == (0, 2) and empty_rows.shape == (0,)


def test_union_features_equal_one_roi_align_per_ordered_pair() -> None:
    """Pooling each unordered pair once gives exactly the per-pair RoIAlign."""
    extractor = FrozenFeatureExtractor(
        backbone=_identity_backbone(stride=2), object_pool=2, union_pool=3, rect_size=0
    )
    generator = torch.Generator().manual_seed(5)
    image = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8, generator=generator)
    corners = torch.rand(6, 2, generator=generator) * torch.tensor([30.0, 20.0])
    boxes = torch.cat([corners, corners + 1 + torch.rand(6, 2, generator=generator) * 9], 1)
    pairs = torch.tensor([[a, b] for a in range(6) for b in range(6) if a != b][:-3])  # (27, 2)
    _, unions = extractor([image], [boxes], [pairs])
    feature_map = image[None].float().unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))
    expected = roi_align(
        feature_map,
        [union_boxes(boxes[pairs[:, 0]], boxes[pairs[:, 1]])],
        output_size=3,
        spatial_scale=0.5,
        sampling_ratio=-1,
        aligned=True,
    ).flatten(1)  # (27, 27)
    assert torch.equal(unions[0], expected)


def test_rect_masks_hand_example() -> None:
    # union [0, 0, 8, 4] on a 4x4 grid: cells 2 px wide, 1 px high
    subject = torch.tensor([[0.0, 0.0, 3.0, 4.0]])  # x 0..3: cell 0 full, cell 1 half
    object_ = torch.tensor([[2.0, 1.0, 8.0, 3.0]])  # x 2..8: cells 1-3; y 1..3: rows 1-2
    masks = rect_masks(subject, object_, 4)
    assert masks.shape == (1, 2, 4, 4)
    assert masks[0, 0].tolist() == [[1.0, 0.5, 0.0, 0.0]] * 4
    assert masks[0, 1].tolist() == [
        [0.0] * 4,
        [0.0, 1.0, 1.0, 1.0],
        [0.0, 1.0, 1.0, 1.0],
        [0.0] * 4,
    ]


def test_resizing_scales_boxes_consistently() -> None:
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 10, 16), dtype=torch.uint8)
    boxes = torch.tensor([[1.0, 2.0, 9.0, 8.0], [4.0, 0.0, 15.0, 10.0]])
    pairs = torch.tensor([[0, 1]])
    resizing = FrozenFeatureExtractor(backbone=_identity_backbone(), longer_side=32, rect_size=3)
    assert resizing.resized_size(10, 16) == (20, 32)
    objects, unions = resizing([image], [boxes], [pairs])
    upsampled = F.interpolate(
        image[None].float(), size=(20, 32), mode="bilinear", antialias=True, align_corners=False
    )[0]
    native = FrozenFeatureExtractor(backbone=_identity_backbone(), rect_size=3)
    expected_objects, expected_unions = native(
        [upsampled.round().clamp(0, 255).to(torch.uint8)], [boxes * 2], [pairs]
    )
    torch.testing.assert_close(objects[0], expected_objects[0], rtol=0, atol=0.5)
    torch.testing.assert_close(unions[0], expected_unions[0], rtol=0, atol=0.5)
    torch.testing.assert_close(unions[0][:, -18:], expected_unions[0][:, -18:])  # masks exact


def test_batching_and_empty_images_do_not_change_results() -> None:
    torch.manual_seed(0)
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1)
    )
    backbone = Backbone(
        body=body, out_channels=8, stride=4, pixel_mean=(127.0,) * 3, pixel_std=(128.0,) * 3
    )
    generator = torch.Generator().manual_seed(0)
    sizes = [(48, 64), (64, 48), (48, 64), (48, 64)]
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator)
              for h, w in sizes]  # fmt: skip
    boxes = [torch.tensor([[0.0, 0.0, 30.0, 20.0], [10.0, 5.0, 40.0, 45.0], [5.0, 5.0, 5.0, 9.0]])]
    boxes = boxes * 3 + [torch.zeros((0, 4))]
    pairs = [torch.tensor([[0, 1], [2, 0], [1, 2]])] * 3 + [torch.zeros((0, 2), dtype=torch.int64)]
    batched = FrozenFeatureExtractor(backbone=backbone, batch_size=4)
    single = FrozenFeatureExtractor(backbone=backbone, batch_size=1)
    objects, unions = batched(images, boxes, pairs)
    for index in range(3):
        one_objects, one_unions = single([images[index]], [boxes[index]], [pairs[index]])
        torch.testing.assert_close(objects[index], one_objects[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(unions[index], one_unions[0], rtol=1e-4, atol=1e-4)
    assert objects[3].shape == (0, 32) and unions[3].shape == (0, 32 + 128)
    assert bool(objects[2][2].abs().sum() > 0)  # the zero-width box is widened, still sampled
    assert not objects[0].requires_grad


def test_batches_are_capped_by_images_and_pixels() -> None:
    extractor = FrozenFeatureExtractor(backbone=_identity_backbone())  # 8 images, 307200 pixels
    assert extractor.images_per_batch(240, 320) == 4
    assert extractor.images_per_batch(444, 592) == 1
    assert extractor.images_per_batch(1000, 1000) == 1
    assert extractor.images_per_batch(60, 80) == 8


def test_extractor_is_frozen() -> None:
    extractor = FrozenFeatureExtractor(backbone=_identity_backbone())
    extractor.train()
    assert not extractor.training and not extractor.backbone.training


@pytest.mark.parametrize(
    ("images", "boxes", "pairs", "message"),
    [
        ([torch.zeros((3, 4, 4))], [torch.zeros((0, 4))], [torch.zeros((0, 2), dtype=torch.int64)],
         "image 0, images: expected uint8"),
        ([torch.zeros((3, 4, 4), dtype=torch.uint8)] * 2,
         [torch.zeros((1, 4)), torch.zeros((1, 5))], [torch.zeros((0, 2), dtype=torch.int64)] * 2,
         r"image 1, boxes: expected \(N, 4\)"),
        ([torch.zeros((3, 4, 4), dtype=torch.uint8)], [torch.tensor([[0.0, 0, float("nan"), 2]])],
         [torch.zeros((0, 2), dtype=torch.int64)], "image 0, boxes: coordinates must be finite"),
        ([torch.zeros((3, 4, 4), dtype=torch.uint8)] * 2, [torch.zeros((2, 4))] * 2,
         [torch.tensor([[0, 1]]), torch.tensor([[0, 2]])],
         r"image 1, pairs: indices must lie in \[0, 2\)"),
        ([torch.zeros((3, 4, 4), dtype=torch.uint8)], [], [], "expected equal lengths"),
    ],
)  # fmt: skip
def test_bad_inputs_name_the_image_and_field(images, boxes, pairs, message) -> None:
    extractor = FrozenFeatureExtractor(backbone=_identity_backbone())
    with pytest.raises(ValueError, match=message):
        extractor(images, boxes, pairs)


def test_box_geometry_hand_example() -> None:
    boxes = torch.tensor([[0.0, 0.0, 9.0, 19.0], [10.0, 20.0, 19.0, 39.0]])
    geometry = box_geometry(boxes, (40, 20))  # image (height 40, width 20)
    # w = 10, h = 20 (inclusive pixels), area 200 / 800, centres (5, 10) and (15, 30)
    expected = [
        [0.0, 0.0, 0.45, 0.475, 0.5, 0.5, 0.25, 0.25, 0.25],
        [0.5, 0.5, 0.95, 0.975, 0.5, 0.5, 0.25, 0.75, 0.75],
    ]
    torch.testing.assert_close(geometry, torch.tensor(expected))


def test_pair_geometry_hand_example() -> None:
    subject = torch.tensor([[0.0, 0.0, 9.0, 9.0]])  # 10 x 10, centre (5, 5)
    object_ = torch.tensor([[5.0, 0.0, 24.0, 4.0]])  # 20 x 5, centre (15, 2.5)
    geometry = pair_geometry(subject, object_, (20, 40))
    # intersection x 5..9, y 0..4 -> 5 x 5 = 25; union box 25 x 10 = 250 of 800
    expected = [1.0, -0.25, np.log(2.0), np.log(0.5), 0.25, -0.125, 25 / 175, 0.25, 0.25,
                250 / 800]  # fmt: skip
    torch.testing.assert_close(geometry[0], torch.tensor(expected, dtype=torch.float32))


def test_class_word_vectors_average_tokens_and_seed_unknowns() -> None:
    table = WordVectors(
        words=["in", "front", "of", "man"],
        vectors=np.array([[1, 0], [0, 3], [2, 3], [4, 4]], dtype=np.float32),
    )
    names = ["__background__", "man", "In front of", "man of mystery", "zebra", "zebra"]
    matrix = class_word_vectors(names, table)
    assert matrix.shape == (6, 2) and matrix.dtype == torch.float32
    assert matrix[1].tolist() == [4.0, 4.0]
    assert matrix[2].tolist() == [1.0, 2.0]  # mean of in, front, of
    assert matrix[3].tolist() == [3.0, 3.5]  # unknown "mystery" left out
    assert torch.equal(matrix[4], matrix[5])  # same unknown name, same vector
    assert not torch.equal(matrix[0], matrix[4])
    again = class_word_vectors(["__background__"], table)
    assert torch.equal(again[0], matrix[0])  # deterministic across calls
    big = class_word_vectors([f"unknown{i}" for i in range(200)], WordVectors(
        words=["a"], vectors=np.zeros((1, 50), dtype=np.float32)))  # fmt: skip
    assert 0.08 < float(big.std()) < 0.12  # N(0, 0.1^2)
