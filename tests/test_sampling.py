"""Train-time relation pair sampling with ground-truth boxes (vg150-format.md §10)."""

from __future__ import annotations

import torch

from basgg.models.sampling import (
    all_ordered_pairs,
    dense_relation_target,
    ordered_pair_index,
    sample_gt_box_pairs,
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair_set(pairs: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(s), int(o)) for s, o in pairs}


def test_few_objects_take_every_pair() -> None:
    # 3 objects: 6 ordered pairs, 2 labelled -> 2 foreground + all 4 background
    relation_pairs = torch.tensor([[0, 1], [2, 0]])
    predicates = torch.tensor([5, 3])
    sample = sample_gt_box_pairs(3, relation_pairs, predicates, generator=_generator())
    assert sample.num_foreground == 2
    assert sample.pairs[:2].tolist() == [[0, 1], [2, 0]]  # row-major order
    assert sample.labels.tolist()[:2] == [5, 3]
    assert sample.labels[2:].tolist() == [0, 0, 0, 0]
    assert _pair_set(sample.pairs[2:]) == {(0, 2), (1, 0), (1, 2), (2, 1)}


def test_foreground_capped_at_256_with_random_subset_and_background_fills_1024() -> None:
    num_objects = 40  # 1560 ordered pairs
    every_pair = all_ordered_pairs(num_objects)
    relation_pairs = every_pair[:300]  # 300 labelled pairs > 256
    predicates = torch.arange(300) % 7 + 1
    sample = sample_gt_box_pairs(num_objects, relation_pairs, predicates, generator=_generator(1))
    assert sample.num_foreground == 256
    assert sample.pairs.shape == (1024, 2) and sample.labels.shape == (1024,)
    foreground = sample.pairs[:256]
    labelled = _pair_set(relation_pairs)
    assert _pair_set(foreground) <= labelled and len(_pair_set(foreground)) == 256
    # the labels are the labelled pairs' own predicates
    label_of = {
        (int(s), int(o)): int(p) for (s, o), p in zip(relation_pairs, predicates, strict=True)
    }
    assert all(label_of[(int(s), int(o))] == int(p)
               for (s, o), p in zip(foreground, sample.labels[:256], strict=True))  # fmt: skip
    background = sample.pairs[256:]
    assert (sample.labels[256:] == 0).all()
    assert not (_pair_set(background) & labelled)
    assert len(_pair_set(background)) == 768  # no pair drawn twice
    assert (sample.pairs[:, 0] != sample.pairs[:, 1]).all()
    # another seed draws another foreground subset
    other = sample_gt_box_pairs(num_objects, relation_pairs, predicates, generator=_generator(2))
    assert _pair_set(other.pairs[:256]) != _pair_set(foreground)


def test_background_fills_the_budget_exactly() -> None:
    num_objects = 35  # 1190 ordered pairs, 10 labelled -> 1014 background
    relation_pairs = all_ordered_pairs(num_objects)[::100][:10]
    predicates = torch.ones(10, dtype=torch.int64)
    sample = sample_gt_box_pairs(num_objects, relation_pairs, predicates, generator=_generator())
    assert sample.num_foreground == 10 and sample.pairs.shape[0] == 1024
    assert int((sample.labels == 0).sum()) == 1014


def test_all_background_when_fewer_than_budget_and_custom_budget() -> None:
    # 10 objects, 90 pairs, 1 labelled: 89 background (fewer than 1023)
    sample = sample_gt_box_pairs(
        10, torch.tensor([[3, 4]]), torch.tensor([2]), generator=_generator()
    )
    assert sample.num_foreground == 1 and sample.pairs.shape[0] == 90
    assert len(_pair_set(sample.pairs)) == 90
    small = sample_gt_box_pairs(
        10, all_ordered_pairs(10)[:20], torch.ones(20, dtype=torch.int64),
        pairs_per_image=16, positive_fraction=0.5, generator=_generator(),
    )  # fmt: skip
    assert small.num_foreground == 8 and small.pairs.shape[0] == 16


def test_no_relation_and_single_object() -> None:
    sample = sample_gt_box_pairs(
        4, torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
        generator=_generator(),
    )  # fmt: skip
    assert sample.num_foreground == 0 and sample.pairs.shape == (12, 2)
    single = sample_gt_box_pairs(
        1, torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
        generator=_generator(),
    )  # fmt: skip
    assert single.pairs.shape == (0, 2) and single.labels.shape == (0,)


def test_same_seed_same_sample() -> None:
    args = (30, all_ordered_pairs(30)[:50], torch.ones(50, dtype=torch.int64))
    first = sample_gt_box_pairs(*args, generator=_generator(7))
    second = sample_gt_box_pairs(*args, generator=_generator(7))
    assert torch.equal(first.pairs, second.pairs) and torch.equal(first.labels, second.labels)


def test_duplicate_pair_keeps_one_label() -> None:
    pairs = torch.tensor([[0, 1], [0, 1]])
    seen = set()
    for seed in range(20):
        target = dense_relation_target(2, pairs, torch.tensor([4, 6]), generator=_generator(seed))
        seen.add(int(target[0, 1]))
        assert int(target[1, 0]) == 0
    assert seen == {4, 6}


def test_ordered_pair_index_inverts_all_ordered_pairs() -> None:
    for n in (2, 3, 7):
        pairs = all_ordered_pairs(n)
        assert pairs.shape == (n * (n - 1), 2)
        assert ordered_pair_index(pairs, n).tolist() == list(range(n * (n - 1)))
    assert all_ordered_pairs(3).tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
