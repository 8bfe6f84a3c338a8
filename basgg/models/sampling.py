"""Train-time relation pair sampling (``docs/vg150-format.md`` §10) and test-time candidate pairs.

With ground-truth boxes (PredCls, SGCls) the foreground is every labelled pair of the image's
dense N x N target (at most ``positive_fraction * pairs_per_image`` of them, a random subset
when there are more) and the background a random subset of the unlabelled ordered pairs
i != j filling the budget. With detected boxes (SGDet) proposals are labelled by IoU with
the ground truth and a pair of proposals is foreground when both match the two ends of a
ground-truth relation (Scene-Graph-Benchmark's ``detect_relsample``). With ``sgg_model.py``
the only model code that knows the task mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from basgg.boxes import box_iou_plus_one

PROPOSAL_IOU_THRESHOLD = 0.5  # FG_IOU_THRESHOLD of Scene-Graph-Benchmark's relation sampler
SAMPLES_PER_GT_RELATION = 4  # NUM_SAMPLE_PER_GT_REL


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


def assign_proposal_labels(
    proposal_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    iou_threshold: float = PROPOSAL_IOU_THRESHOLD,
) -> Tensor:
    """(M,) int64 label of each proposal: the label of the ground-truth box it overlaps most,
    when that IoU (+1 widths) is at least ``iou_threshold``, else 0 (background).

    Args:
        proposal_boxes: (M, 4) xyxy.
        gt_boxes: (G, 4) xyxy.
        gt_labels: (G,) int64 1..C.
        iou_threshold: the inclusive foreground threshold.
    """
    num_proposals = proposal_boxes.shape[0]
    if num_proposals == 0 or gt_boxes.shape[0] == 0:
        return torch.zeros(num_proposals, dtype=torch.int64)
    ious = torch.from_numpy(box_iou_plus_one(proposal_boxes.cpu(), gt_boxes.cpu()))  # (M, G)
    best_iou, best_gt = ious.max(dim=1)  # (M,)
    labels = gt_labels.cpu().long()[best_gt]
    labels[best_iou < iou_threshold] = 0
    return labels


def sample_detected_pairs(
    proposal_boxes: Tensor,
    proposal_labels: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    relation_pairs: Tensor,
    predicates: Tensor,
    *,
    pairs_per_image: int = 1024,
    positive_fraction: float = 0.25,
    samples_per_gt_relation: int = SAMPLES_PER_GT_RELATION,
    iou_threshold: float = PROPOSAL_IOU_THRESHOLD,
    generator: torch.Generator,
) -> SampledPairs:
    """Sample the training pairs of an image from its proposals (``vg150-format.md`` §10).

    Ground-truth box g matches proposal q when their labels are equal and IoU (+1 widths)
    > ``iou_threshold``. For each relation (s, o, p) of the dense target, every (a, b) with a
    matching s, b matching o and a != b is foreground with label p (at most
    ``samples_per_gt_relation`` of them, drawn without replacement with probability
    proportional to IoU(s, a) * IoU(o, b)); the foreground of all relations is concatenated
    (a pair may repeat) and cut to a random ``int(pairs_per_image * positive_fraction)``.
    Background: a random subset of the other ordered pairs of foreground proposals
    (label != 0) filling the budget. An image with neither gets the placeholder (0, 0) with
    label 0.

    Args:
        proposal_boxes: (M, 4) xyxy proposals.
        proposal_labels: (M,) int64 labels of the proposals, 0 = background
            (:func:`assign_proposal_labels` in training).
        gt_boxes: (G, 4) xyxy ground-truth boxes.
        gt_labels: (G,) int64 ground-truth labels 1..C.
        relation_pairs: (R, 2) int64 ground-truth (subject, object) indices into ``gt_boxes``.
        predicates: (R,) int64 ground-truth predicates 1..P.
        pairs_per_image: the budget of pairs (``BATCH_SIZE_PER_IMAGE``).
        positive_fraction: the largest foreground share of the budget.
        samples_per_gt_relation: ``NUM_SAMPLE_PER_GT_REL``.
        iou_threshold: the strict matching threshold.
        generator: the random source.
    """
    num_proposals = proposal_boxes.shape[0]
    proposal_labels = proposal_labels.to("cpu", torch.int64)
    gt_labels = gt_labels.to("cpu", torch.int64)
    target = dense_relation_target(
        gt_boxes.shape[0],
        relation_pairs.to("cpu", torch.int64),
        predicates.to("cpu", torch.int64),
        generator=generator,
    )  # (G, G)
    if num_proposals and gt_boxes.shape[0]:
        ious = torch.from_numpy(box_iou_plus_one(gt_boxes.cpu(), proposal_boxes.cpu()))  # (G, M)
    else:
        ious = torch.zeros((gt_boxes.shape[0], num_proposals))
    is_match = (gt_labels[:, None] == proposal_labels[None, :]) & (ious > iou_threshold)  # (G, M)
    candidate = torch.ones((num_proposals, num_proposals), dtype=torch.bool)  # (M, M)
    candidate.fill_diagonal_(False)
    background_proposal = proposal_labels == 0
    candidate[background_proposal] = False
    candidate[:, background_proposal] = False
    foreground_rows = []
    for subject, object_ in torch.nonzero(target > 0).tolist():  # row-major GT pairs
        heads = torch.nonzero(is_match[subject]).view(-1)  # (A,)
        tails = torch.nonzero(is_match[object_]).view(-1)  # (B,)
        head_index = heads.repeat_interleave(tails.numel())  # (A * B,)
        tail_index = tails.repeat(heads.numel())  # (A * B,)
        valid = head_index != tail_index
        head_index, tail_index = head_index[valid], tail_index[valid]
        if head_index.numel() == 0:
            continue
        candidate[head_index, tail_index] = False
        if head_index.numel() > samples_per_gt_relation:
            weights = ious[subject, head_index] * ious[object_, tail_index]  # (A * B,)
            chosen = torch.multinomial(
                weights.double(), samples_per_gt_relation, replacement=False, generator=generator
            )
            head_index, tail_index = head_index[chosen], tail_index[chosen]
        label = int(target[subject, object_])
        foreground_rows.append(
            torch.stack([head_index, tail_index, torch.full_like(head_index, label)], dim=1)
        )
    foreground = (
        torch.cat(foreground_rows) if foreground_rows else torch.zeros((0, 3), dtype=torch.int64)
    )  # (F, 3)
    max_foreground = int(pairs_per_image * positive_fraction)
    if foreground.shape[0] > max_foreground:
        chosen = torch.randperm(foreground.shape[0], generator=generator)[:max_foreground]
        foreground = foreground[chosen]
    background = torch.nonzero(candidate)  # (B_all, 2) row-major
    num_background = min(pairs_per_image - foreground.shape[0], background.shape[0])
    chosen = torch.randperm(background.shape[0], generator=generator)[: max(num_background, 0)]
    background = background[chosen]  # (B, 2)
    if foreground.shape[0] == 0 and background.shape[0] == 0:
        return SampledPairs(
            pairs=torch.zeros((1, 2), dtype=torch.int64),
            labels=torch.zeros(1, dtype=torch.int64),
            num_foreground=0,
        )
    return SampledPairs(
        pairs=torch.cat([foreground[:, :2], background]),
        labels=torch.cat([foreground[:, 2], torch.zeros(background.shape[0], dtype=torch.int64)]),
        num_foreground=int(foreground.shape[0]),
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
