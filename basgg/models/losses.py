"""Losses of the relation heads, returned as a named dict that the training loop sums.

``loss_relation``: cross-entropy of the predicate logits over every sampled pair of the
batch (Scene-Graph-Benchmark's ``loss_rel``). ``loss_object``: cross-entropy of the refined
object logits (``loss_refine_obj``), SGCls/SGDet in stage 1 only. ``loss_tree``: VCTree's
binary pair-score loss (``binary_loss``), stage 1 only. In BA-SGG stage 2 the last two are
zero: their parameters are frozen.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from basgg.models.relation_types import TREE_PAIR_LOGITS, RelationOutput


def relation_loss(predicate_logits: Tensor, relation_labels: Tensor) -> Tensor:
    """Mean cross-entropy over all R pairs; (R, P + 1) logits, (R,) labels (0 = background)."""
    if predicate_logits.shape[0] == 0:
        return predicate_logits.sum() * 0.0
    return F.cross_entropy(predicate_logits, relation_labels.long())


def object_loss(object_logits: Tensor, object_targets: Tensor) -> Tensor:
    """Mean cross-entropy over all N objects; (N, C) logits, (N,) targets."""
    if object_logits.shape[0] == 0:
        return object_logits.sum() * 0.0
    return F.cross_entropy(object_logits, object_targets.long())


def tree_score_loss(
    pair_logits: Tensor, pairs: list[Tensor], relation_labels: Tensor, object_counts: list[int]
) -> Tensor:
    """VCTree's pair-score loss: per image, binary cross-entropy of every (i, j) logit against
    "i and j are related in either direction", averaged over the image's n_i^2 entries and
    then over the images that have objects.

    Args:
        pair_logits: flattened per-image (n_i, n_i) logits, image after image.
        pairs: per image (R_i, 2) local (subject, object) indices.
        relation_labels: (R,) predicate targets of the concatenated pairs; > 0 = related.
        object_counts: n_i per image.
    """
    per_image = []
    logits_by_image = pair_logits.split([count * count for count in object_counts])
    labels_by_image = relation_labels.split([int(p.shape[0]) for p in pairs])
    for logits, image_pairs, labels, count in zip(
        logits_by_image, pairs, labels_by_image, object_counts, strict=True
    ):
        if count == 0:
            continue
        target = torch.zeros(count, count, device=logits.device)
        related = image_pairs[labels > 0].long()
        target[related[:, 0], related[:, 1]] = 1.0
        target[related[:, 1], related[:, 0]] = 1.0
        per_image.append(F.binary_cross_entropy_with_logits(logits.view(count, count), target))
    if not per_image:
        return pair_logits.sum() * 0.0
    return torch.stack(per_image).mean()


def relation_head_losses(
    output: RelationOutput,
    *,
    relation_labels: Tensor,
    object_targets: Tensor | None,
    pairs: list[Tensor],
    object_counts: list[int],
    with_object_loss: bool,
    with_tree_loss: bool,
) -> dict[str, Tensor]:
    """All losses of one batch.

    Args:
        output: the head's output.
        relation_labels: (R,) predicate targets.
        object_targets: (N,) object targets (needed when ``with_object_loss``).
        pairs: per image (R_i, 2) local pair indices.
        object_counts: N_i per image.
        with_object_loss: compute ``loss_object`` (SGCls/SGDet, stage 1); else it is zero.
        with_tree_loss: compute ``loss_tree`` (VCTree, stage 1); else it is left out, or
            zero when the output has tree pair logits.

    Returns:
        ``loss_relation``, ``loss_object`` and, for VCTree, ``loss_tree``.
    """
    predicate_logits = output.predicate_logits
    if relation_labels.shape != (predicate_logits.shape[0],):
        raise ValueError(
            f"relation_labels: expected ({predicate_logits.shape[0]},), "
            f"got {tuple(relation_labels.shape)}"
        )
    zero = predicate_logits.new_zeros(())
    losses = {"loss_relation": relation_loss(predicate_logits, relation_labels)}
    if with_object_loss:
        if object_targets is None:
            raise ValueError("object_targets: required for the object loss (sgcls/sgdet)")
        losses["loss_object"] = object_loss(output.object_logits, object_targets)
    else:
        losses["loss_object"] = zero
    if TREE_PAIR_LOGITS in output.auxiliary:
        losses["loss_tree"] = zero
        if with_tree_loss:
            losses["loss_tree"] = tree_score_loss(
                output.auxiliary[TREE_PAIR_LOGITS], pairs, relation_labels, object_counts
            )
    return losses
