"""VG150 box decoding and encoding against hand-computed values (Scene-Graph-Benchmark's rules).

Scene-Graph-Benchmark's ``load_graphs`` assigns ``cx - w / 2`` (a float) into the int32
``boxes_1024`` array in place, so ``x1`` is truncated toward zero, then ``x2 = x1 + w``; the
loader scales by ``max(W, H) / 1024`` and clips x to ``[0, W - 1]``, y to ``[0, H - 1]``.
"""

from __future__ import annotations

import numpy as np
import pytest

from basgg.boxes import decode_vg_boxes, decode_vg_grid, encode_vg_boxes
from basgg.data import VG150Dataset
from basgg.data.statistics import compute_frequency_statistics

# stored [cx, cy, w, h] -> decoded [x1, y1, x2, y2] on the 1024 grid, by hand:
GRID_CASES = [
    ([10, 10, 5, 5], [7, 7, 12, 12]),  # odd: 10 - 2.5 = 7.5 -> 7; 7 + 5 = 12
    ([10, 20, 4, 6], [8, 17, 12, 23]),  # even: 10 - 2 = 8, 20 - 3 = 17
    ([2, 3, 7, 9], [-1, -1, 6, 8]),  # 2 - 3.5 = -1.5 -> -1 (toward zero); -1 + 7 = 6
    ([0, 1, 1, 3], [0, 0, 1, 3]),  # 0 - 0.5 = -0.5 -> 0; 1 - 1.5 = -0.5 -> 0
    ([3, 0, 9, 2], [-1, -1, 8, 1]),  # 3 - 4.5 = -1.5 -> -1; 0 - 1 = -1
]


def sgb_in_place_decode(stored: np.ndarray) -> np.ndarray:
    """Scene-Graph-Benchmark's two in-place lines, as numpy runs them on the stored array."""
    boxes = stored.copy()
    boxes[:, :2] = boxes[:, :2] - boxes[:, 2:] / 2
    boxes[:, 2:] = boxes[:, :2] + boxes[:, 2:]
    return boxes


def test_grid_decode_by_hand() -> None:
    stored = np.array([case[0] for case in GRID_CASES], dtype=np.int32)
    decoded = decode_vg_grid(stored)
    assert decoded.dtype == np.int32
    assert decoded.tolist() == [case[1] for case in GRID_CASES]
    np.testing.assert_array_equal(decoded, sgb_in_place_decode(stored))
    np.testing.assert_array_equal(stored, [case[0] for case in GRID_CASES])  # input untouched


def test_grid_decode_keeps_halves_for_float_arrays() -> None:
    decoded = decode_vg_grid(np.array([[10, 10, 5, 5]], dtype=np.float32))
    assert decoded.dtype == np.float32
    assert decoded.tolist() == [[7.5, 7.5, 12.5, 12.5]]


def test_grid_decode_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        decode_vg_grid(np.zeros((2, 3), dtype=np.int32))


def test_pixel_decode_scales_and_clips_to_last_pixel() -> None:
    # a 512 x 384 image: grid step 0.5 px; the grid image is 1024 x 768
    stored = np.array(
        [
            [10, 10, 5, 5],  # [7, 7, 12, 12] -> [3.5, 3.5, 6, 6]
            [2, 3, 7, 9],  # [-1, -1, 6, 8] -> [-0.5, -0.5, 3, 4] -> clipped [0, 0, 3, 4]
            [1020, 760, 10, 20],  # [1015, 750, 1025, 770] -> [507.5, 375, 512.5, 385]
        ],
        dtype=np.int32,
    )
    decoded = decode_vg_boxes(stored, width=512, height=384)
    assert decoded.dtype == np.float32
    assert decoded.tolist() == [[3.5, 3.5, 6, 6], [0, 0, 3, 4], [507.5, 375, 511, 383]]
    extent = decode_vg_boxes(stored, 512, 384, clip_to_last_pixel=False, dtype=np.float64)
    assert extent.dtype == np.float64
    assert extent.tolist() == [[3.5, 3.5, 6, 6], [0, 0, 3, 4], [507.5, 375, 512, 384]]


def test_pixel_decode_of_odd_box_at_800x600() -> None:
    # grid step 800 / 1024 = 0.78125; [255, 129, 255, 127] -> [127, 65, 382, 192]
    decoded = decode_vg_boxes(np.array([[255, 129, 255, 127]], np.int32), 800, 600)
    assert decoded.tolist() == [[99.21875, 50.78125, 298.4375, 150.0]]


def test_encode_by_hand() -> None:
    # 512 x 384 image, scale 2 to the grid
    boxes = np.array(
        [
            [3.5, 3.5, 6, 6],  # grid [7, 7, 12, 12]: w = 5, cx = 7 + ceil(2.5) = 10
            [0, 0, 3, 4],  # grid [0, 0, 6, 8]: cx = 3, cy = 4
            [0.2, 1.3, 2.1, 2.6],  # grid [0.4, 2.6, 4.2, 5.2] -> x1 0, y1 2, w 5, h 4
            [-1, 0, 2, 2],  # left of the image: x1 clamped to 0, w = 4
            [10, 10, 10, 10],  # empty: w = h = 1
        ]
    )
    encoded = encode_vg_boxes(boxes, 512, 384)
    assert encoded.dtype == np.int32
    assert encoded.tolist() == [
        [10, 10, 5, 5], [3, 4, 6, 8], [3, 4, 5, 4], [2, 2, 4, 4], [21, 21, 1, 1],
    ]  # fmt: skip
    # decoding gives the smallest grid box containing each box (the empty one: one grid unit)
    assert decode_vg_boxes(encoded, 512, 384, clip_to_last_pixel=False).tolist() == [
        [3.5, 3.5, 6, 6], [0, 0, 3, 4], [0, 1, 2.5, 3], [0, 0, 2, 2], [10, 10, 10.5, 10.5],
    ]  # fmt: skip


def test_grid_boxes_round_trip_in_basgg_and_sgb() -> None:
    rng = np.random.default_rng(0)
    x1 = rng.integers(0, 1000, size=(500, 2))
    size = rng.integers(1, 300, size=(500, 2))
    grid = np.concatenate([x1, x1 + size], axis=1)  # (500, 4) on the grid of a 1024-px image
    encoded = encode_vg_boxes(grid.astype(np.float64), 1024, 700)
    assert (encoded[:, :2] >= 0).all()  # SGB asserts cx, cy >= 0
    np.testing.assert_array_equal(decode_vg_grid(encoded), grid)
    np.testing.assert_array_equal(sgb_in_place_decode(encoded), grid)


def test_loader_and_non_overlap_filter_use_sgb_decoding(annotations, write_raw, tmp_path) -> None:
    h5 = annotations["h5"]
    # row 0 (image 101, 800 x 600, val): box 0 -> [255, 129, 255, 127], odd w and h
    h5["boxes_1024"][0] = [255, 129, 255, 127]
    # row 3 (image 104, 1024 x 768, train), one relation (0, 1): A = [7, 7, 12, 12] and
    # B = [13, 8, 17, 12] do not overlap even with +1 widths (12 - 13 + 1 = 0); with the old
    # cx - trunc(w / 2) decoding A was [8, 8, 13, 13] and they overlapped.
    first = h5["img_to_first_box"][3]
    h5["boxes_1024"][first : first + 2] = [[10, 10, 5, 5], [15, 10, 4, 4]]
    files = write_raw(tmp_path / "vg", annotations, images=False)
    val = VG150Dataset(files, split="val", val_size=1, load_images=False)
    assert val.ground_truth(0).boxes.tolist()[0] == [99.21875, 50.78125, 298.4375, 150.0]
    train = VG150Dataset(
        files, split="train", val_size=1, load_images=False, filter_non_overlap=True
    )
    assert 104 not in train.image_ids
    assert train.ground_truth(train.image_ids.index(106)).boxes.tolist()[1] == [150, 150, 250, 250]
    unfiltered = VG150Dataset(files, split="train", val_size=1, load_images=False)
    assert 104 in unfiltered.image_ids
    stats = compute_frequency_statistics(unfiltered, filter_non_overlap=True)
    # image 104's relation (man, dog, on) is dropped by the statistics' filter too
    assert stats.foreground[3, 2, 3] == 0
    assert (
        compute_frequency_statistics(unfiltered, filter_non_overlap=False).foreground[3, 2, 3] == 1
    )


def test_pixel_decode_with_one_size_per_row() -> None:
    stored = np.array([[10, 10, 5, 5], [1020, 760, 10, 20]], dtype=np.int32)
    widths, heights = np.array([512, 800]), np.array([384, 600])
    decoded = decode_vg_boxes(stored, widths, heights)
    assert decoded[0].tolist() == decode_vg_boxes(stored[:1], 512, 384)[0].tolist()
    # 800 x 600: step 0.78125; [1015, 750, 1025, 770] -> x2 800.78 -> 799, y2 601.56 -> 599
    assert decoded[1].tolist() == [792.96875, 585.9375, 799.0, 599.0]
