"""Train-time relation pair sampling (``docs/vg150-format.md`` §10) and test-time candidate pairs.

With ground-truth boxes (PredCls, SGCls) the foreground is every labelled pair of the image's
dense N x N target (at most ``positive_fraction * pairs_per_image`` of them, a random subset
when there are more) and the background a random subset of the unlabelled ordered pairs
i != j filling the budget. With this and ``sgg_model.py`` the only model code that knows the
task mode: detected-box sampling (SGDet) is not implemented yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from basgg.structures import Mode


@dataclass
class SampledPairs:
    """The pairs of one image that a training step classifies.

    Attributes:
        pairs: (S, 2) int64 (subject, object) indices into the image's boxes, foreground first.
        labels: (S,) int64 predicate of each pair, 0 for background.
        num_foreground: how many leading rows are foreground.
    """

    pairs: Tensor
    labels: Tensor
    num_foreground: int


def dense_relation_target(
    num_objects: int, relation_pairs: Tensor, predicates: Tensor, *, generator: torch.Generator
) -> Tensor:
    """The (N, N) int64 predicate matrix of an image, 0 where a pair has no relation.

    Rows are written in file order; when a pair occurs again, the later row overwrites the
    earlier one with probability 0.5 (Scene-Graph-Benchmark's training target). After
    duplicate filtering no pair occurs twice and no random number is drawn.

    Args:
        num_objects: N.
        relation_pairs: (R, 2) int64 (subject, object) indices.
        predicates: (R,) int64 predicates 1..P.
        generator: source of the coin flips.
    """
    target = torch.zeros((num_objects, num_objects), dtype=torch.int64)  # (N, N)
    if relation_pairs.shape[0] == 0:
        return target
    pair_keys = relation_pairs[:, 0] * num_objects + relation_pairs[:, 1]  # (R,)
    if torch.unique(pair_keys).numel() == pair_keys.numel():
        target[relation_pairs[:, 0], relation_pairs[:, 1]] = predicates
        return target
    flat = target.view(-1)  # (N * N,)
    for key, predicate in zip(pair_keys.tolist(), predicates.tolist(), strict=True):
        if flat[key] == 0 or torch.rand((), generator=generator) > 0.5:
            flat[key] = predicate
    return target


def sample_gt_box_pairs(
    num_objects: int,
    relation_pairs: Tensor,
    predicates: Tensor,
    *,
    pairs_per_image: int = 1024,
    positive_fraction: float = 0.25,
    generator: torch.Generator,
) -> SampledPairs:
    """Sample the training pairs of an image whose boxes are the ground-truth boxes.

    Foreground: the labelled pairs of the dense target in row-major order, or a random
    ``int(pairs_per_image * positive_fraction)`` of them (in random order) when there are more.
    Background: a random subset (in random order) of the unlabelled ordered pairs i != j, of
    size ``pairs_per_image - #foreground``, or all of them when there are fewer.

    Args:
        num_objects: N, the number of boxes.
        relation_pairs: (R, 2) int64 ground-truth (subject, object) indices.
        predicates: (R,) int64 ground-truth predicates 1..P.
        pairs_per_image: the budget of pairs (``BATCH_SIZE_PER_IMAGE``).
        positive_fraction: the largest foreground share of the budget (``POSITIVE_FRACTION``).
        generator: the random source, so a sample is a function of the generator's seed.
    """
    relation_pairs = relation_pairs.to("cpu", torch.int64)
    predicates = predicates.to("cpu", torch.int64)
    target = dense_relation_target(num_objects, relation_pairs, predicates, generator=generator)
    foreground = torch.nonzero(target > 0)  # (F, 2) row-major
    max_foreground = int(pairs_per_image * positive_fraction)
    if foreground.shape[0] > max_foreground:
        chosen = torch.randperm(foreground.shape[0], generator=generator)[:max_foreground]
        foreground = foreground[chosen]
    foreground_labels = target[foreground[:, 0], foreground[:, 1]]  # (F,)
    candidate = target == 0  # (N, N)
    candidate.fill_diagonal_(False)
    background = torch.nonzero(candidate)  # (B_all, 2)
    num_background = min(pairs_per_image - foreground.shape[0], background.shape[0])
    chosen = torch.randperm(background.shape[0], generator=generator)[: max(num_background, 0)]
    background = background[chosen]  # (B, 2)
    return SampledPairs(
        pairs=torch.cat([foreground, background]),
        labels=torch.cat([foreground_labels, torch.zeros(background.shape[0], dtype=torch.int64)]),
        num_foreground=int(foreground.shape[0]),
    )


def sample_training_pairs(
    mode: Mode,
    num_objects: int,
    relation_pairs: Tensor,
    predicates: Tensor,
    *,
    pairs_per_image: int = 1024,
    positive_fraction: float = 0.25,
    generator: torch.Generator,
) -> SampledPairs:
    """Training pairs of one image for ``mode`` (see :func:`sample_gt_box_pairs`)."""
    if mode is Mode.SGDET:
        raise NotImplementedError(
            "relation sampling for detected boxes (SGDet) is not implemented yet; "
            "train with USE_GT_BOX True (PredCls or SGCls)"
        )
    return sample_gt_box_pairs(
        num_objects,
        relation_pairs,
        predicates,
        pairs_per_image=pairs_per_image,
        positive_fraction=positive_fraction,
        generator=generator,
    )


def all_ordered_pairs(num_objects: int) -> Tensor:
    """(N * (N - 1), 2) int64 every ordered pair i != j, row-major (test-time candidates)."""
    index = torch.arange(num_objects)
    subjects = index.repeat_interleave(num_objects)  # (N * N,)
    objects = index.repeat(num_objects)  # (N * N,)
    keep = subjects != objects
    return torch.stack([subjects[keep], objects[keep]], dim=1)


def ordered_pair_index(pairs: Tensor, num_objects: int) -> Tensor:
    """Row of each (subject, object) pair in :func:`all_ordered_pairs` (``N``), (S, 2) -> (S,)."""
    subjects, objects = pairs[:, 0], pairs[:, 1]
    return subjects * (num_objects - 1) + objects - (objects > subjects).long()
