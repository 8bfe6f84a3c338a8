"""Frequency statistics and the frequency-bias initialisation, against hand counts.

With ``val_size=1`` the tiny dataset's train split is h5 rows 1, 3 and 5 (see conftest.py):

- row 1: cat, dog, tree; (cat, dog) near and on (boxes touch: overlap only with +1), (cat, tree)
  has (apart). No two boxes intersect without +1, so every ordered pair is background.
- row 3: man, dog; (man, dog) on, apart. The non-overlap filter drops the whole image.
- row 5: tree (below the image), man, cat; (man, cat) has (overlap), (tree, man) on (apart).
  Only man and cat intersect.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from basgg.data import (
    FrequencyStatistics,
    VG150Dataset,
    compute_frequency_statistics,
    frequency_bias_init,
    load_or_compute_statistics,
)
from basgg.data import statistics as statistics_module

CAT, DOG, MAN, TREE = 1, 2, 3, 4
HAS, NEAR, ON = 1, 2, 3


def train_split(files) -> VG150Dataset:
    return VG150Dataset(
        files, split="train", val_size=1, filter_duplicate_rels=False, load_images=False
    )


def expected_statistics(*, non_overlap: bool) -> tuple[np.ndarray, np.ndarray]:
    foreground = np.zeros((5, 5, 4), np.int64)
    background = np.ones((5, 5), np.int64)
    for subject, object_ in [(CAT, DOG), (DOG, CAT), (CAT, TREE), (TREE, CAT), (DOG, TREE),
                             (TREE, DOG), (MAN, CAT), (CAT, MAN)]:  # fmt: skip
        background[subject, object_] += 1
    for subject, object_, predicate in [(CAT, DOG, NEAR), (CAT, DOG, ON), (MAN, CAT, HAS)]:
        foreground[subject, object_, predicate] += 1
    if not non_overlap:
        for subject, object_, predicate in [(CAT, TREE, HAS), (MAN, DOG, ON), (TREE, MAN, ON)]:
            foreground[subject, object_, predicate] += 1
        background[MAN, DOG] += 1
        background[DOG, MAN] += 1
    return foreground, background


@pytest.mark.parametrize("non_overlap", [True, False])
def test_counts_match_hand_computation(tiny_vg150, non_overlap):
    stats = compute_frequency_statistics(train_split(tiny_vg150), filter_non_overlap=non_overlap)
    foreground, background = expected_statistics(non_overlap=non_overlap)
    np.testing.assert_array_equal(stats.background, background)
    np.testing.assert_array_equal(stats.foreground[:, :, 1:], foreground[:, :, 1:])
    np.testing.assert_array_equal(stats.foreground[:, :, 0], background)
    assert stats.foreground.dtype == np.int64 and stats.foreground.shape == (5, 5, 4)
    if non_overlap:
        assert stats.object_counts.tolist() == [0, 2, 1, 1, 2]
        assert stats.predicate_counts.tolist() == [0, 1, 1, 1]
    else:
        assert stats.object_counts.tolist() == [0, 2, 2, 2, 2]
        assert stats.predicate_counts.tolist() == [0, 2, 1, 3]


def test_duplicate_filter_of_the_dataset_does_not_change_counts(tiny_vg150):
    deduplicating = VG150Dataset(tiny_vg150, split="train", val_size=1, load_images=False)
    stats = compute_frequency_statistics(deduplicating)
    assert stats.foreground[CAT, DOG].tolist() == [2, 0, 1, 1]


def test_bias_values_match_hand_computation(tiny_vg150):
    bias = frequency_bias_init(compute_frequency_statistics(train_split(tiny_vg150)))
    assert bias.dtype == torch.float32 and bias.shape == (25, 4)
    epsilon = 1e-3
    expected = {
        (CAT, DOG): [2 / 4, 0, 1 / 4, 1 / 4],  # background 1 + 1, near, on
        (MAN, CAT): [2 / 3, 1 / 3, 0, 0],
        (DOG, CAT): [1, 0, 0, 0],  # background only
        (0, 0): [1, 0, 0, 0],  # never seen
    }
    for (subject, object_), distribution in expected.items():
        row = bias[subject * 5 + object_].tolist()
        assert row == pytest.approx([math.log(p + epsilon) for p in distribution], abs=1e-6)
    assert bias[0, 0].item() == pytest.approx(math.log(1 + 1e-3))
    assert bias[0, 1].item() == pytest.approx(math.log(1e-3))


def test_statistics_need_the_train_split(tiny_vg150):
    val = VG150Dataset(tiny_vg150, split="val", val_size=1, load_images=False)
    with pytest.raises(ValueError, match="train split"):
        compute_frequency_statistics(val)


def test_background_without_overlap_uses_all_ordered_pairs():
    touching = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [30, 30, 40, 40]])
    subjects, objects = statistics_module.background_pairs(touching)
    assert sorted(zip(subjects.tolist(), objects.tolist(), strict=True)) == [
        (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1),
    ]  # fmt: skip
    overlapping = np.array([[0, 0, 10, 10], [5, 5, 20, 10], [30, 30, 40, 40]])
    subjects, objects = statistics_module.background_pairs(overlapping)
    assert sorted(zip(subjects.tolist(), objects.tolist(), strict=True)) == [(0, 1), (1, 0)]


def assert_same(a: FrequencyStatistics, b: FrequencyStatistics) -> None:
    for name in ("foreground", "background", "object_counts", "predicate_counts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_cache_is_reused_then_invalidated_by_file_changes(
    write_raw, tmp_path, annotations, monkeypatch
):
    files = write_raw(tmp_path / "data", annotations, images=False)
    cache_dir = tmp_path / "cache"
    first = load_or_compute_statistics(files, cache_dir, val_size=1)
    foreground, _ = expected_statistics(non_overlap=True)
    np.testing.assert_array_equal(first.foreground[:, :, 1:], foreground[:, :, 1:])
    cached = list(cache_dir.glob("*.npz"))
    assert len(cached) == 1
    with np.load(cached[0], allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(
            ["foreground", "background", "object_counts", "predicate_counts"]
        )

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the cache matches")

    monkeypatch.setattr(statistics_module, "compute_frequency_statistics", fail)
    assert_same(load_or_compute_statistics(files, cache_dir, val_size=1), first)
    monkeypatch.undo()

    other = load_or_compute_statistics(files, cache_dir, val_size=0)  # parameters are in the key
    assert other.predicate_counts.tolist() == [0, 1, 1, 2]  # + row 0: (man, tree) on
    annotations["h5"]["predicates"][2, 0] = HAS  # row 1: (cat, dog) on -> has
    write_raw(tmp_path / "data", annotations, images=False)
    changed = load_or_compute_statistics(files, cache_dir, val_size=1)
    assert changed.foreground[CAT, DOG].tolist() == [2, 1, 1, 0]
    assert len(list(cache_dir.glob("*.npz"))) == 3


def test_corrupt_cache_is_recomputed_with_a_warning(write_raw, tmp_path, annotations):
    files = write_raw(tmp_path / "data", annotations, images=False)
    cache_dir = tmp_path / "cache"
    first = load_or_compute_statistics(files, cache_dir, val_size=1)
    (path,) = cache_dir.glob("*.npz")
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable statistics cache"):
        again = load_or_compute_statistics(files, cache_dir, val_size=1)
    assert_same(again, first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(load_or_compute_statistics(files, cache_dir, val_size=1), first)
