"""Relation heads: object context + edge context + predicate classifier, BA-SGG capable.

Every head maps a :class:`RelationBatch` of cached object and union features to a
:class:`RelationOutput`. The four heads of :data:`HEADS` are keyed by the
Scene-Graph-Benchmark predictor names used in ``MODEL.ROI_RELATION_HEAD.PREDICTOR``.

Example (BA-SGG stage 1, then stage 2)::

    head = MotifPredictor(mode=Mode.SGCLS, num_objects=151, num_predicates=51,
                          object_dim=4096, union_dim=4096, object_word_vectors=vectors,
                          frequency_bias_init=table, hidden_dim=512, pooling_dim=4096)
    output = head(batch)                          # RelationOutput
    losses = head.losses(output, batch, labels)   # {"loss_relation": ..., ...}
    head.enable_clean_branch()                    # BA-SGG stage 2
    head.set_adjustment(adjustment_matrix(confusion))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basgg.models.context_motifs import MotifsContext, ObjectContext
from basgg.models.context_transformer import TransformerContext
from basgg.models.context_vctree import VCTreeContext
from basgg.models.losses import relation_head_losses
from basgg.models.predicate_classifier import (
    FrequencyClassifier,
    FrequencyObjects,
    PredicateClassifier,
    TransformerClassifier,
    UnionContextClassifier,
    xavier_linear,
)
from basgg.structures import Mode


@dataclass
class RelationBatch:
    """Inputs of a relation head for a batch of images (cached frozen features).

    Attributes:
        object_features: (N, object_dim) all images' objects concatenated.
        boxes: (N, 4) xyxy pixels.
        image_sizes: (height, width) per image.
        object_counts: N_i per image.
        object_labels: (N,) labels: the input in PredCls, the object target otherwise
            (0 = background proposal in SGDet); ``None`` at SGCls/SGDet test time.
        detector_logits: (N, C) box-head class logits (SGDet; optional in SGCls).
        pairs: per image (R_i, 2) local (subject, object) indices.
        union_features: (R, union_dim), R = sum R_i, in the order of ``pairs``.
    """

    object_features: Tensor
    boxes: Tensor
    image_sizes: list[tuple[int, int]]
    object_counts: list[int]
    object_labels: Tensor | None
    detector_logits: Tensor | None
    pairs: list[Tensor]
    union_features: Tensor


@dataclass
class RelationOutput:
    """Outputs of a relation head.

    Attributes:
        object_logits: (N, C) object class logits (one-hot +-1000 in PredCls).
        object_labels: (N,) labels used for the triplets (GT in PredCls; the decoder's
            decisions otherwise, teacher-forced for Motifs in training as in SGB).
        predicate_logits: (R, P + 1) after Semantic Adjustment when enabled.
        auxiliary: extra tensors, e.g. VCTree's ``tree_pair_logits``.
    """

    object_logits: Tensor
    object_labels: Tensor
    predicate_logits: Tensor
    auxiliary: dict[str, Tensor]


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
    ) -> None:
        super().__init__()
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
        pair_representation = union_features = None
        if self.post_emb is not None:
            edge = self.post_emb(context.edge_context)  # (N, 2h): subject half, object half
            if self.relu_on_pair:
                edge = F.relu(edge)
            head, tail = edge.split(self.hidden_dim, dim=1)
            pair_representation = torch.cat([head[subjects], tail[objects]], dim=1)  # (R, 2h)
            union_features = batch.union_features
            if self.up_dim is not None:
                union_features = self.up_dim(union_features)  # (R, pooling_dim)
        labels = context.object_labels
        predicate_logits = self.classifier(
            subject_labels=labels[subjects],
            object_labels=labels[objects],
            pair_representation=pair_representation,
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


class MotifPredictor(RelationHead):
    """Neural Motifs (BiLSTM contexts); Scene-Graph-Benchmark's ``MotifPredictor``.

    Args:
        mode, num_objects, num_predicates, frequency_bias_init, frequency_bias_dropout,
            union_dim, hidden_dim (SGB: 512), pooling_dim (SGB: 4096): see
            :class:`RelationHead`.
        object_dim: size of the cached object features.
        object_word_vectors: (C, D) label embedding initialisation.
        context_dropout: LSTM dropout (SGB: 0.2).
        object_layers: object-context LSTM layers.
        edge_layers: edge-context LSTM layers.
        ordering: object order, "leftright" (SGB) / "size" / "confidence" / "random".
        later_nms_threshold: SGDet test-time label NMS threshold (SGB: 0.3).
    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_objects: int,
        num_predicates: int,
        object_dim: int,
        union_dim: int,
        object_word_vectors: Tensor,
        frequency_bias_init: Tensor,
        hidden_dim: int = 256,
        pooling_dim: int = 512,
        frequency_bias_dropout: float = 0.3,
        context_dropout: float = 0.2,
        object_layers: int = 1,
        edge_layers: int = 1,
        ordering: str = "leftright",
        later_nms_threshold: float = 0.3,
    ) -> None:
        context = MotifsContext(
            mode=mode,
            num_objects=num_objects,
            object_dim=object_dim,
            object_word_vectors=_checked_word_vectors(object_word_vectors, num_objects),
            hidden_dim=hidden_dim,
            object_layers=object_layers,
            edge_layers=edge_layers,
            dropout=context_dropout,
            ordering=ordering,
            later_nms_threshold=later_nms_threshold,
        )
        super().__init__(
            mode=mode,
            context=context,
            classifier_type=UnionContextClassifier,
            num_objects=num_objects,
            num_predicates=num_predicates,
            frequency_bias_init=frequency_bias_init,
            frequency_bias_dropout=frequency_bias_dropout,
            union_dim=union_dim,
            hidden_dim=hidden_dim,
            pooling_dim=pooling_dim,
        )


class VCTreePredictor(RelationHead):
    """VCTree (tree LSTM contexts); Scene-Graph-Benchmark's ``VCTreePredictor``.

    Args: as :class:`MotifPredictor` (``hidden_dim`` must be even), without ``ordering``
    and ``later_nms_threshold`` (SGB's VCTree does no test-time label NMS), plus
    ``cooccurrence_prior``: (C, C) probabilities that two classes are related, the tree
    scores' prior (default: from the background column of ``frequency_bias_init``).
    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_objects: int,
        num_predicates: int,
        object_dim: int,
        union_dim: int,
        object_word_vectors: Tensor,
        frequency_bias_init: Tensor,
        hidden_dim: int = 256,
        pooling_dim: int = 512,
        frequency_bias_dropout: float = 0.3,
        context_dropout: float = 0.2,
        object_layers: int = 1,
        edge_layers: int = 1,
        cooccurrence_prior: Tensor | None = None,
    ) -> None:
        context = VCTreeContext(
            mode=mode,
            num_objects=num_objects,
            object_dim=object_dim,
            object_word_vectors=_checked_word_vectors(object_word_vectors, num_objects),
            frequency_bias_init=frequency_bias_init,
            hidden_dim=hidden_dim,
            object_layers=object_layers,
            edge_layers=edge_layers,
            dropout=context_dropout,
            cooccurrence_prior=cooccurrence_prior,
        )
        super().__init__(
            mode=mode,
            context=context,
            classifier_type=UnionContextClassifier,
            num_objects=num_objects,
            num_predicates=num_predicates,
            frequency_bias_init=frequency_bias_init,
            frequency_bias_dropout=frequency_bias_dropout,
            union_dim=union_dim,
            hidden_dim=hidden_dim,
            pooling_dim=pooling_dim,
            relu_on_pair=True,
        )


class TransformerPredictor(RelationHead):
    """Transformer contexts; Scene-Graph-Benchmark's ``TransformerPredictor``.

    Args: as :class:`MotifPredictor` without ``ordering``, plus ``num_heads``, ``key_dim``,
    ``value_dim``, ``inner_dim`` (attention sizes; SGB: 8, 64, 64, 2048), with
    ``context_dropout`` defaulting to SGB's 0.1, ``object_layers`` 4, ``edge_layers`` 2.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_objects: int,
        num_predicates: int,
        object_dim: int,
        union_dim: int,
        object_word_vectors: Tensor,
        frequency_bias_init: Tensor,
        hidden_dim: int = 256,
        pooling_dim: int = 512,
        frequency_bias_dropout: float = 0.3,
        context_dropout: float = 0.1,
        object_layers: int = 4,
        edge_layers: int = 2,
        num_heads: int = 8,
        key_dim: int = 32,
        value_dim: int = 32,
        inner_dim: int = 1024,
        later_nms_threshold: float = 0.3,
    ) -> None:
        context = TransformerContext(
            mode=mode,
            num_objects=num_objects,
            object_dim=object_dim,
            object_word_vectors=_checked_word_vectors(object_word_vectors, num_objects),
            hidden_dim=hidden_dim,
            object_layers=object_layers,
            edge_layers=edge_layers,
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            inner_dim=inner_dim,
            dropout=context_dropout,
            later_nms_threshold=later_nms_threshold,
        )
        super().__init__(
            mode=mode,
            context=context,
            classifier_type=TransformerClassifier,
            num_objects=num_objects,
            num_predicates=num_predicates,
            frequency_bias_init=frequency_bias_init,
            frequency_bias_dropout=frequency_bias_dropout,
            union_dim=union_dim,
            hidden_dim=hidden_dim,
            pooling_dim=pooling_dim,
        )


class FrequencyPredictor(RelationHead):
    """The frequency baseline (Zellers et al.): predicate logits = frequency table[s, o].

    Args: ``mode``, ``num_objects``, ``num_predicates``, ``object_dim``,
    ``frequency_bias_init`` and ``frequency_bias_dropout`` as :class:`MotifPredictor`
    (dropout defaults to 0 here); ``union_dim``, ``object_word_vectors``, ``hidden_dim`` and
    ``pooling_dim`` are accepted and unused, so every head takes the common keywords.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_objects: int,
        num_predicates: int,
        object_dim: int,
        frequency_bias_init: Tensor,
        frequency_bias_dropout: float = 0.0,
        union_dim: int = 0,
        object_word_vectors: Tensor | None = None,
        hidden_dim: int = 256,
        pooling_dim: int = 512,
    ) -> None:
        super().__init__(
            mode=mode,
            context=FrequencyObjects(mode=mode, num_objects=num_objects, object_dim=object_dim),
            classifier_type=FrequencyClassifier,
            num_objects=num_objects,
            num_predicates=num_predicates,
            frequency_bias_init=frequency_bias_init,
            frequency_bias_dropout=frequency_bias_dropout,
            union_dim=union_dim,
            hidden_dim=hidden_dim,
            pooling_dim=pooling_dim,
        )


HEADS: dict[str, type[RelationHead]] = {
    "MotifPredictor": MotifPredictor,
    "VCTreePredictor": VCTreePredictor,
    "TransformerPredictor": TransformerPredictor,
    "FrequencyPredictor": FrequencyPredictor,
}


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


def _checked_word_vectors(vectors: Tensor, num_objects: int) -> Tensor:
    if vectors.ndim != 2 or vectors.shape[0] != num_objects:
        raise ValueError(
            f"object_word_vectors: expected ({num_objects}, D), got {tuple(vectors.shape)}"
        )
    return vectors
