"""Predicate classifiers of the relation heads, with BA-SGG's clean branch and Semantic Adjustment.

Each head turns a pair representation (subject and object context vectors side by side) and
the pair's union-box feature into predicate logits, then adds the frequency bias. BA-SGG
(Guo et al., ICCV 2021) changes three things, all here:

* stage 1: the frequency-bias logits go through inverted dropout (training only);
* stage 2: :meth:`PredicateClassifier.enable_clean_branch` copies the classifier layers into
  ``*_clean`` twins that alone are trained and used (Balanced Predicate Learning);
* :meth:`PredicateClassifier.set_adjustment` multiplies every logit vector by a fixed
  predicate-to-predicate matrix A built by :func:`adjustment_matrix` (Semantic Adjustment).

Layers per head (``*`` = copied into the clean branch):

============  =====================================================================
Motifs        ``compress*(post_cat*(pair) * union) + drop(frequency_bias*[s, o])``
VCTree        same layers as Motifs (Scene-Graph-Benchmark calls ``compress`` ``ctx_compress``)
Transformer   ``rel_compress*(post_cat(pair) * union) + ctx_compress*(pair) + drop(...)``
Frequency     ``drop(frequency_bias*[s, o])``
============  =====================================================================
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from basgg.models.context_common import foreground_argmax, onehot_logits, xavier_linear
from basgg.models.frequency_bias import FrequencyBias
from basgg.models.relation_types import ObjectContext, PairContext, RelationBatch
from basgg.structures import Mode

ADJUSTMENT_EPS = 1e-8


def adjustment_matrix(confusion: np.ndarray | Tensor) -> Tensor:
    """BA-SGG's Semantic Adjustment matrix A from a stage-1 predicate confusion matrix.

    ``C[g, p]`` counts ground-truth predicate ``g`` predicted as ``p`` (index 0 = background).
    Row and column 0 are zeroed and ``C[0, 0] = 1``; rows are normalised (``+1e-8``) into P;
    then ``A = rownorm(P + I)``, i.e. ``(P + I) / 2`` for a row with counts and the identity
    row for a row without.

    Args:
        confusion: (P + 1, P + 1) non-negative counts.

    Returns:
        (P + 1, P + 1) float32 row-stochastic matrix.
    """
    counts = torch.as_tensor(np.asarray(confusion), dtype=torch.float64).clone()  # (P+1, P+1)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 2:
        raise ValueError(
            f"confusion: expected a square (P + 1, P + 1) matrix, got {tuple(counts.shape)}"
        )
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("confusion: counts must be finite and non-negative")
    counts[0, :] = 0
    counts[:, 0] = 0
    counts[0, 0] = 1
    transition = counts / (counts.sum(dim=1, keepdim=True) + ADJUSTMENT_EPS)
    mixed = transition + torch.eye(counts.shape[0], dtype=torch.float64)
    return (mixed / mixed.sum(dim=1, keepdim=True)).float()


class PredicateClassifier(nn.Module):
    """Base class: frequency bias, its dropout, the clean branch and the adjustment matrix.

    Subclasses name the layers copied into the clean branch in ``clean_layer_names`` and
    compute their visual/context logits in :meth:`context_logits`, fetching each of those
    layers through :meth:`layer` so that the clean twin is used once enabled.

    Args:
        num_objects: C, object classes including background.
        num_predicates: P + 1, predicate classes including background.
        frequency_bias_init: (C * C, P + 1) initial frequency-bias logits.
        frequency_bias_dropout: dropout probability on the frequency-bias logits in
            training (BA-SGG stage 1 uses 0.3); no dropout at test time.
    """

    clean_layer_names: tuple[str, ...] = ("frequency_bias",)
    uses_pairs = False  # whether forward needs pair and union features

    def __init__(
        self,
        *,
        num_objects: int,
        num_predicates: int,
        frequency_bias_init: Tensor,
        frequency_bias_dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if not 0.0 <= frequency_bias_dropout < 1.0:
            raise ValueError(
                "frequency_bias_dropout: expected a probability in [0, 1), "
                f"got {frequency_bias_dropout}"
            )
        self.frequency_bias = FrequencyBias(
            initial_table=frequency_bias_init, num_objects=num_objects
        )
        if num_predicates != self.frequency_bias.num_predicates:
            raise ValueError(
                f"num_predicates: {num_predicates} does not match the "
                f"{self.frequency_bias.num_predicates} columns of frequency_bias_init"
            )
        self.frequency_dropout = nn.Dropout(frequency_bias_dropout)
        self.num_predicates = num_predicates
        self.clean_branch_enabled = False
        self.register_buffer("adjustment", None)

    def layer(self, name: str) -> nn.Module:
        """The layer ``name``, or its ``name_clean`` twin once the clean branch is enabled."""
        if self.clean_branch_enabled and name in self.clean_layer_names:
            return getattr(self, f"{name}_clean")
        return getattr(self, name)

    def enable_clean_branch(self) -> None:
        """BA-SGG stage 2: copy the classifier layers into trainable ``*_clean`` twins.

        The twins start from the current (stage-1) weights; every other parameter of this
        classifier is frozen, and the forward pass uses the clean layers only. The head's own
        :meth:`~basgg.models.relation_head.RelationHead.enable_clean_branch` also freezes the
        context encoders.
        """
        if self.clean_branch_enabled:
            raise RuntimeError("enable_clean_branch: the clean branch is already enabled")
        for name in self.clean_layer_names:
            setattr(self, f"{name}_clean", copy.deepcopy(getattr(self, name)))
        self.requires_grad_(False)
        for parameter in self.clean_parameters():
            parameter.requires_grad_(True)
        self.clean_branch_enabled = True

    def clean_parameters(self) -> list[nn.Parameter]:
        """The parameters of the ``*_clean`` layers (empty before the clean branch exists)."""
        return [
            parameter
            for name in self.clean_layer_names
            if hasattr(self, f"{name}_clean")
            for parameter in getattr(self, f"{name}_clean").parameters()
        ]

    def set_adjustment(self, matrix: Tensor | None) -> None:
        """Set (or with ``None`` remove) the fixed (P + 1, P + 1) adjustment matrix A.

        When set, every logit row ``z`` becomes ``A @ z``, in training and at test time.
        """
        if matrix is None:
            self.adjustment = None
            return
        size = self.num_predicates
        if tuple(matrix.shape) != (size, size):
            raise ValueError(
                f"set_adjustment: expected a ({size}, {size}) matrix, got {tuple(matrix.shape)}"
            )
        device = self.frequency_bias.table.weight.device
        self.adjustment = matrix.detach().to(device=device, dtype=torch.float32).clone()

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # a checkpoint saved with Semantic Adjustment on restores its matrix A
        key = prefix + "adjustment"
        if key in state_dict and self.adjustment is None:
            self.adjustment = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def context_logits(
        self, pairs: PairContext | None, union_features: Tensor | None
    ) -> Tensor | None:
        """(R, P + 1) logits from the pair and union features; ``None`` (frequency baseline)."""
        return None

    def forward(
        self,
        *,
        subject_labels: Tensor,
        object_labels: Tensor,
        pairs: PairContext | None = None,
        union_features: Tensor | None = None,
    ) -> Tensor:
        """Predicate logits of R pairs.

        Args:
            subject_labels: (R,) subject classes used for the frequency bias.
            object_labels: (R,) object classes used for the frequency bias.
            pairs: the context of the R pairs, subject and object halves of 2 * hidden
                (``None`` for the frequency baseline).
            union_features: (R, pooling_dim) union-box features (``None`` likewise).

        Returns:
            (R, P + 1) logits, after Semantic Adjustment when a matrix is set.
        """
        frequency_logits = self.layer("frequency_bias")(subject_labels, object_labels)
        logits = self.frequency_dropout(frequency_logits)  # (R, P + 1)
        context = self.context_logits(pairs, union_features)
        if context is not None:
            logits = context + logits
        if self.adjustment is not None:
            logits = logits @ self.adjustment.T  # row z -> A z
        return logits


class UnionContextClassifier(PredicateClassifier):
    """Motifs and VCTree: ``compress(post_cat(pair) * union) + drop(frequency_bias)``.

    Args:
        hidden_dim: size of each object's context vector (the pair is twice that).
        pooling_dim: size of the union feature and of ``post_cat``'s output.
        **kwargs: see :class:`PredicateClassifier`.
    """

    clean_layer_names = ("post_cat", "compress", "frequency_bias")
    uses_pairs = True

    def __init__(self, *, hidden_dim: int, pooling_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.post_cat = xavier_linear(2 * hidden_dim, pooling_dim)
        self.compress = xavier_linear(pooling_dim, self.num_predicates)

    def context_logits(self, pairs: PairContext, union_features: Tensor) -> Tensor:
        gated = pairs.linear(self.layer("post_cat")) * union_features  # (R, pooling)
        return self.layer("compress")(gated)


class TransformerClassifier(PredicateClassifier):
    """Transformer: ``rel_compress(post_cat(pair) * union) + ctx_compress(pair) + drop(...)``.

    ``post_cat`` is shared by both branches and stays frozen in stage 2.

    Args:
        hidden_dim: size of each object's context vector (the pair is twice that).
        pooling_dim: size of the union feature and of ``post_cat``'s output.
        **kwargs: see :class:`PredicateClassifier`.
    """

    clean_layer_names = ("rel_compress", "ctx_compress", "frequency_bias")
    uses_pairs = True

    def __init__(self, *, hidden_dim: int, pooling_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.post_cat = xavier_linear(2 * hidden_dim, pooling_dim)
        self.rel_compress = xavier_linear(pooling_dim, self.num_predicates)
        self.ctx_compress = xavier_linear(2 * hidden_dim, self.num_predicates)

    def context_logits(self, pairs: PairContext, union_features: Tensor) -> Tensor:
        gated = pairs.linear(self.post_cat) * union_features  # (R, pooling)
        return self.layer("rel_compress")(gated) + pairs.linear(self.layer("ctx_compress"))


class FrequencyClassifier(PredicateClassifier):
    """The frequency baseline: ``drop(frequency_bias*[s, o])``, no pair or union input."""


class FrequencyObjects(nn.Module):
    """Object classes for the frequency baseline: GT in PredCls, else the detector's argmax,
    or a linear classifier on the object features when there are no detector logits.

    Args:
        mode: the task.
        num_objects: C.
        object_dim: size of the cached object features.
    """

    def __init__(self, *, mode: Mode, num_objects: int, object_dim: int) -> None:
        super().__init__()
        self.mode = Mode(mode)
        self.num_objects = num_objects
        self.object_classifier = nn.Linear(object_dim, num_objects)

    def forward(self, batch: RelationBatch) -> ObjectContext:
        """(N,) labels and (N, C) logits; no edge context."""
        object_labels, detector_logits = batch.object_labels, batch.detector_logits
        if self.mode is Mode.PREDCLS:
            logits = onehot_logits(object_labels, self.num_objects)
            return ObjectContext(logits, object_labels, None, {})
        if detector_logits is not None:
            logits = detector_logits
        else:
            logits = self.object_classifier(batch.object_features)
        return ObjectContext(logits, foreground_argmax(logits.detach()), None, {})
