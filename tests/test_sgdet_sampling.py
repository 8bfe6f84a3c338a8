"""Relation pair sampling from detected boxes (SGDet, vg150-format.md §10), by hand."""

from __future__ import annotations

import torch

from basgg.models.sampling import assign_proposal_labels, sample_detected_pairs


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rows(pairs: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, int, int]]:
    return [(int(s), int(o), int(p)) for (s, o), p in zip(pairs, labels, strict=True)]


GT_BOXES = torch.tensor([[0.0, 0.0, 9.0, 9.0], [20.0, 0.0, 29.0, 9.0]])  # 10 x 10 each (+1)
GT_LABELS = torch.tensor([1, 2])
GT_PAIRS = torch.tensor([[0, 1]])
GT_PREDICATES = torch.tensor([3])


def test_proposal_labels_come_from_the_best_gt_at_iou_half_inclusive() -> None:
    proposals = torch.tensor(
        [
            [0.0, 0.0, 9.0, 9.0],  # IoU 1 with GT 0
            [0.0, 0.0, 9.0, 4.0],  # 50 / 100 = 0.5 with GT 0: kept (>=)
            [0.0, 0.0, 9.0, 3.0],  # 40 / 100 with GT 0: background
            [21.0, 0.0, 29.0, 9.0],  # 90 / 100 with GT 1
            [50.0, 50.0, 60.0, 60.0],  # overlaps nothing
        ]
    )
    labels = assign_proposal_labels(proposals, GT_BOXES, GT_LABELS)
    assert labels.tolist() == [1, 1, 0, 2, 0]
    assert assign_proposal_labels(proposals, GT_BOXES[:0], GT_LABELS[:0]).tolist() == [0] * 5


def test_foreground_needs_same_label_and_iou_above_half_and_background_skips_label_zero() -> None:
    proposals = torch.tensor(
        [
            [0.0, 0.0, 9.0, 9.0],  # 0: matches GT 0 (IoU 1)
            [1.0, 0.0, 10.0, 9.0],  # 1: IoU 90 / 110 = 0.818 with GT 0
            [20.0, 0.0, 29.0, 9.0],  # 2: matches GT 1
            [50.0, 50.0, 59.0, 59.0],  # 3: background proposal: in no pair
            [20.0, 0.0, 29.0, 9.0],  # 4: GT 1's box with a wrong label: background pairs only
            [0.0, 0.0, 9.0, 4.0],  # 5: label 1 but IoU exactly 0.5: not a match (strict)
        ]
    )
    labels = torch.tensor([1, 1, 2, 0, 3, 1])
    sample = sample_detected_pairs(
        proposals, labels, GT_BOXES, GT_LABELS, GT_PAIRS, GT_PREDICATES, generator=_generator()
    )
    assert sample.num_foreground == 2
    assert sorted(_rows(sample.pairs[:2], sample.labels[:2])) == [(0, 2, 3), (1, 2, 3)]
    background = _rows(sample.pairs[2:], sample.labels[2:])
    fg_proposals = [0, 1, 2, 4, 5]
    foreground = {(0, 2), (1, 2)}
    expected = {
        (s, o, 0) for s in fg_proposals for o in fg_proposals if s != o and (s, o) not in foreground
    }
    assert len(background) == len(expected) == 18
    assert set(background) == expected


def test_at_most_four_samples_per_gt_relation_without_repeats() -> None:
    # 3 proposals match the subject and 2 the object: 6 candidate pairs, 4 drawn
    proposals = torch.tensor(
        [
            [0.0, 0.0, 9.0, 9.0],
            [1.0, 0.0, 9.0, 9.0],
            [0.0, 1.0, 9.0, 9.0],
            [20.0, 0.0, 29.0, 9.0],
            [21.0, 0.0, 29.0, 9.0],
        ]
    )
    labels = torch.tensor([1, 1, 1, 2, 2])
    for seed in range(5):
        sample = sample_detected_pairs(
            proposals,
            labels,
            GT_BOXES,
            GT_LABELS,
            GT_PAIRS,
            GT_PREDICATES,
            generator=_generator(seed),
        )
        foreground = _rows(sample.pairs[: sample.num_foreground], sample.labels[:4])
        assert sample.num_foreground == 4
        assert len(set(foreground)) == 4
        assert all(s in (0, 1, 2) and o in (3, 4) and p == 3 for s, o, p in foreground)
        # the two pairs not drawn are not background either
        assert not {(s, o) for s, o, _ in _rows(sample.pairs[4:], sample.labels[4:])} & {
            (s, o) for s in (0, 1, 2) for o in (3, 4)
        }


def test_high_iou_pairs_are_drawn_more_often() -> None:
    # subject matches: an exact box and a 0.52-IoU box; 5 object matches -> 10 pairs, 4 drawn
    proposals = torch.tensor(
        [[0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 4.1]] + [[20.0, 0.0, 29.0, 9.0]] * 5
    )
    labels = torch.tensor([1, 1, 2, 2, 2, 2, 2])
    exact = 0
    for seed in range(200):
        sample = sample_detected_pairs(
            proposals, labels, GT_BOXES, GT_LABELS, GT_PAIRS, GT_PREDICATES,
            generator=_generator(seed),
        )  # fmt: skip
        exact += int((sample.pairs[:4, 0] == 0).sum())
    assert exact / (200 * 4) > 0.55  # uniform sampling would give 0.5


def test_foreground_is_capped_and_budget_filled() -> None:
    # 30 GT objects in a row, relations i -> i+1; each proposal is its GT box
    boxes = torch.tensor([[20.0 * i, 0.0, 20.0 * i + 9, 9.0] for i in range(30)])
    gt_labels = torch.ones(30, dtype=torch.int64)
    pairs = torch.tensor([[i, i + 1] for i in range(29)])
    predicates = torch.full((29,), 2)
    sample = sample_detected_pairs(
        boxes, gt_labels, boxes, gt_labels, pairs, predicates,
        pairs_per_image=40, positive_fraction=0.25, generator=_generator(),
    )  # fmt: skip
    assert sample.num_foreground == 10
    assert sample.pairs.shape == (40, 2)
    assert (sample.labels[:10] == 2).all() and (sample.labels[10:] == 0).all()
    assert all(int(o) == int(s) + 1 for s, o in sample.pairs[:10])


def test_no_pair_gives_the_placeholder() -> None:
    proposals = torch.tensor([[50.0, 50.0, 59.0, 59.0]])
    sample = sample_detected_pairs(
        proposals, torch.tensor([0]), GT_BOXES, GT_LABELS, GT_PAIRS, GT_PREDICATES,
        generator=_generator(),
    )  # fmt: skip
    assert sample.pairs.tolist() == [[0, 0]] and sample.labels.tolist() == [0]
    assert sample.num_foreground == 0
