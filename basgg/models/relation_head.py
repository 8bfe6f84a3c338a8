"""The relation head: object context + edge context + predicate classifier, BA-SGG capable.

Every head maps a :class:`RelationBatch` of cached object and union features to a
:class:`RelationOutput`. What differs between heads (the context encoder and the classifier
variant) is registered in :data:`basgg.models.heads.HEADS`.

Example (BA-SGG stage 1, then stage 2)::

    head = build_head("MotifPredictor", mode=Mode.SGCLS, num_objects=151, num_predicates=51,
                      object_dim=4096, union_dim=4096, object_word_vectors=vectors,
                      frequency_bias_init=table, hidden_dim=512, pooling_dim=4096)
    output = head(batch)                          # RelationOutput
    losses = head.losses(output, batch, labels)   # {"loss_relation": ..., ...}
    head.enable_clean_branch()                    # BA-SGG stage 2
    head.set_adjustment(adjustment_matrix(confusion))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basgg.models.context_common import xavier_linear
from basgg.models.context_vctree import VCTreeContext
from basgg.models.losses import relation_head_losses
from basgg.models.predicate_classifier import PredicateClassifier
from basgg.models.relation_types import (
    ObjectContext,
    PairContext,
    RelationBatch,
    RelationOutput,
)
from basgg.structures import Mode


class RelationHead(nn.Module):
    """Shared part of every head: pair representation, union projection, classifier, BA-SGG.

    Subclasses build their context encoder; this class builds ``post_emb`` (edge context ->
    subject and object halves), ``up_dim`` (union features -> ``pooling_dim`` when the sizes
    differ) and the predicate classifier.

    Args:
        mode: the task.
        context: module mapping a :class:`RelationBatch` to an :class:`ObjectContext`.
        classifier_type: the head's :class:`PredicateClassifier` subclass.
        num_objects: C, object classes including background.
        num_predicates: P + 1, predicate classes including background.
        frequency_bias_init: (C * C, P + 1) frequency-bias logits, row ``s * C + o``.
        frequency_bias_dropout: BA-SGG stage-1 dropout on the frequency-bias logits.
        union_dim: size of the cached union features.
        hidden_dim: size of the context's edge vectors.
        pooling_dim: size of the pair features (``post_cat`` output, projected union).
        relu_on_pair: apply ReLU after ``post_emb`` (VCTree).
        union_shared_dim: leading union columns equal for (s, o) and (o, s) (the frozen
            extractor's union RoIAlign; 0: none), projected once per unordered pair.
        name: the registered head name (``MODEL.ROI_RELATION_HEAD.PREDICTOR``) checkpoints
            record.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        context: nn.Module,
        classifier_type: type[PredicateClassifier],
        num_objects: int,
        num_predicates: int,
        frequency_bias_init: Tensor,
        frequency_bias_dropout: float,
        union_dim: int,
        hidden_dim: int,
        pooling_dim: int,
        relu_on_pair: bool = False,
        union_shared_dim: int = 0,
        name: str = "",
    ) -> None:
        super().__init__()
        self.name = name
        self.mode = Mode(mode)
        self.num_objects = num_objects
        self.context = context
        sizes = {"hidden_dim": hidden_dim, "pooling_dim": pooling_dim}
        self.classifier = classifier_type(
            num_objects=num_objects,
            num_predicates=num_predicates,
            frequency_bias_init=frequency_bias_init,
            frequency_bias_dropout=frequency_bias_dropout,
            **(sizes if classifier_type.uses_pairs else {}),
        )
        self.relu_on_pair = relu_on_pair
        self.hidden_dim = hidden_dim
        self.post_emb = self.up_dim = None
        if classifier_type.uses_pairs:
            self.post_emb = nn.Linear(hidden_dim, 2 * hidden_dim)
            nn.init.normal_(self.post_emb.weight, std=10.0 * (1.0 / hidden_dim) ** 0.5)
            nn.init.zeros_(self.post_emb.bias)
            if union_dim != pooling_dim:
                self.up_dim = xavier_linear(union_dim, pooling_dim)
        if not 0 <= union_shared_dim <= union_dim:
            raise ValueError(f"union_shared_dim: expected 0..{union_dim}, got {union_shared_dim}")
        self.union_shared_dim = union_shared_dim

    def project_union(self, union: Tensor, subjects: Tensor, objects: Tensor) -> Tensor:
        """``up_dim(union)``: (R, union_dim) -> (R, pooling_dim).

        The first ``union_shared_dim`` columns are equal for (s, o) and (o, s) (the union
        box's RoIAlign), so their share of the layer is computed once per unordered pair
        and gathered (the same values up to float rounding, about half the work).
        """
        shared = self.union_shared_dim
        if shared == 0 or union.shape[0] == 0:
            return self.up_dim(union)
        low, high = torch.minimum(subjects, objects), torch.maximum(subjects, objects)
        keys = low * 2**31 + high  # (R,) one key per unordered pair (int64, no device sync)
        unique, inverse = torch.unique(keys, return_inverse=True)  # (U,), (R,)
        rows = torch.arange(keys.shape[0], device=keys.device)
        first = torch.zeros_like(unique).scatter_reduce_(
            0, inverse, rows, reduce="amin", include_self=False
        )  # (U,) the first row of each unordered pair
        weight = self.up_dim.weight  # (pooling_dim, union_dim)
        visual = F.linear(union[first, :shared], weight[:, :shared])  # (U, pooling_dim)
        rest = F.linear(union[:, shared:], weight[:, shared:], self.up_dim.bias)  # (R, pooling)
        return visual[inverse] + rest

    @property
    def clean_branch_enabled(self) -> bool:
        """True once :meth:`enable_clean_branch` ran (BA-SGG stage 2)."""
        return self.classifier.clean_branch_enabled

    def enable_clean_branch(self) -> None:
        """BA-SGG stage 2: build the clean classifier copies and freeze everything else.

        Afterwards only the ``*_clean`` parameters require gradients; the object context,
        edge context, object classifier, embeddings and shared layers are frozen (modules
        stay in whatever train/eval mode the caller sets, as in the reference code).
        """
        self.requires_grad_(False)
        self.classifier.enable_clean_branch()

    def set_adjustment(self, matrix: Tensor | None) -> None:
        """Set or remove the Semantic Adjustment matrix A (see :func:`adjustment_matrix`)."""
        self.classifier.set_adjustment(matrix)

    @property
    def trains_objects(self) -> bool:
        """Whether the object classification loss applies (SGCls/SGDet, stage 1)."""
        return self.mode is not Mode.PREDCLS and not self.clean_branch_enabled

    @property
    def trains_tree(self) -> bool:
        """Whether VCTree's tree-score loss applies (stage 1 only)."""
        return isinstance(self.context, VCTreeContext) and not self.clean_branch_enabled

    def forward(self, batch: RelationBatch) -> RelationOutput:
        """Object and predicate logits of a batch; see :class:`RelationOutput`."""
        check_batch(batch, mode=self.mode, num_objects=self.num_objects)
        context: ObjectContext = self.context(batch)
        subjects, objects = global_pair_indices(batch.pairs, batch.object_counts, batch.boxes)
        pairs = union_features = None
        if self.post_emb is not None:
            edge = self.post_emb(context.edge_context)  # (N, 2h): subject half, object half
            if self.relu_on_pair:
                edge = F.relu(edge)
            head, tail = edge.split(self.hidden_dim, dim=1)
            pairs = PairContext(head, tail, subjects, objects)  # pair r: [head[s], tail[o]]
            union_features = batch.union_features
            if self.up_dim is not None:
                union_features = self.project_union(union_features, subjects, objects)
        labels = context.object_labels
        predicate_logits = self.classifier(
            subject_labels=labels[subjects],
            object_labels=labels[objects],
            pairs=pairs,
            union_features=union_features,
        )
        return RelationOutput(context.object_logits, labels, predicate_logits, context.auxiliary)

    def losses(
        self, output: RelationOutput, batch: RelationBatch, relation_labels: Tensor
    ) -> dict[str, Tensor]:
        """Training losses of this head for one batch (see :mod:`basgg.models.losses`).

        Args:
            output: this head's output on ``batch``.
            batch: the batch (its ``object_labels`` are the object targets).
            relation_labels: (R,) predicate targets of the pairs, 0 = background.
        """
        return relation_head_losses(
            output,
            relation_labels=relation_labels,
            object_targets=batch.object_labels,
            pairs=batch.pairs,
            object_counts=batch.object_counts,
            with_object_loss=self.trains_objects,
            with_tree_loss=self.trains_tree,
        )


def global_pair_indices(
    pairs: list[Tensor], object_counts: list[int], reference: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-image local (subject, object) indices -> (R,) global subject and object indices."""
    offsets, start = [], 0
    for image_pairs, count in zip(pairs, object_counts, strict=True):
        offsets.append(image_pairs.long().view(-1, 2) + start)
        start += count
    if not offsets:
        empty = torch.zeros(0, dtype=torch.long, device=reference.device)
        return empty, empty
    joined = torch.cat(offsets, dim=0).to(reference.device)  # (R, 2)
    return joined[:, 0], joined[:, 1]


def check_batch(batch: RelationBatch, *, mode: Mode, num_objects: int) -> None:
    """Raise ``ValueError`` naming the field (and image) of an inconsistent batch."""
    total, images = int(sum(batch.object_counts)), len(batch.object_counts)
    relations = sum(int(image_pairs.shape[0]) for image_pairs in batch.pairs)
    expected_shapes = {
        "object_features": (batch.object_features, (total, batch.object_features.shape[-1])),
        "boxes": (batch.boxes, (total, 4)),
        "object_labels": (batch.object_labels, (total,)),
        "detector_logits": (batch.detector_logits, (total, num_objects)),
        "union_features": (batch.union_features, (relations, batch.union_features.shape[-1])),
    }
    for name, (tensor, shape) in expected_shapes.items():
        _expect(tensor is None or tuple(tensor.shape) == shape, name, shape, tensor)
    _expect(len(batch.image_sizes) == images, "image_sizes", f"{images} entries", batch.image_sizes)
    _expect(len(batch.pairs) == images, "pairs", f"{images} entries", len(batch.pairs))
    if mode is Mode.PREDCLS and batch.object_labels is None:
        raise ValueError("RelationBatch.object_labels: required in predcls, got None")
    if mode is Mode.SGDET and batch.detector_logits is None:
        raise ValueError("RelationBatch.detector_logits: required in sgdet, got None")
    for image, image_pairs in enumerate(batch.pairs):
        count = batch.object_counts[image]
        if image_pairs.numel() and (image_pairs.min() < 0 or image_pairs.max() >= count):
            span = f"[{int(image_pairs.min())}, {int(image_pairs.max())}]"
            _expect(False, f"pairs[{image}]", f"indices in [0, {count})", span)


def _expect(ok: bool, field: str, expected: object, got: object) -> None:
    if not ok:
        shown = tuple(got.shape) if isinstance(got, Tensor) else got
        raise ValueError(f"RelationBatch.{field}: expected {expected}, got {shown}")
