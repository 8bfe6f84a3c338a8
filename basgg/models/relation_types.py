"""What flows into, through and out of a relation head: the shared types of ``models/``.

:class:`RelationBatch` (a head's input), :class:`ObjectContext` (a context encoder's output),
:class:`PairContext` (the predicate classifier's input), :class:`RelationOutput` (a head's
output) and the key of VCTree's tree scores in ``RelationOutput.auxiliary``. Nothing here
imports another module of the package, so every model module can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

TREE_PAIR_LOGITS = "tree_pair_logits"  # VCTree's (sum_i n_i^2,) pair scores, for its loss


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


class ObjectContext(NamedTuple):
    """What a context encoder hands to the predicate classifier.

    Attributes:
        object_logits: (N, C) object class logits (one-hot +-1000 in predcls).
        object_labels: (N,) classes used for the triplets and the frequency bias.
        edge_context: (N, hidden) per-object context for the relation representation
            (``None`` for the frequency baseline).
        auxiliary: extra tensors (VCTree: flattened pair scores for its tree loss).
    """

    object_logits: Tensor
    object_labels: Tensor
    edge_context: Tensor | None
    auxiliary: dict[str, Tensor]


class PairContext(NamedTuple):
    """The context vectors of R (subject, object) pairs, kept per object.

    A pair's vector is ``[subject_part[s], object_part[o]]`` (Scene-Graph-Benchmark's
    ``prod_rep``, (R, 2h)). :meth:`linear` applies a linear layer to it without building it:
    a linear map of the pair is a map of its subject half plus a map of its object half,
    computed once per object (N rows) instead of once per pair (R ~ N^2 rows). Same values
    up to float rounding.

    Attributes:
        subject_part: (N, h) each object's vector as a subject.
        object_part: (N, h) each object's vector as an object.
        subjects: (R,) global subject index of each pair.
        objects: (R,) global object index of each pair.
    """

    subject_part: Tensor
    object_part: Tensor
    subjects: Tensor
    objects: Tensor

    def representation(self) -> Tensor:
        """The (R, 2h) pair vectors."""
        return torch.cat([self.subject_part[self.subjects], self.object_part[self.objects]], dim=1)

    def linear(self, layer: nn.Linear) -> Tensor:
        """``layer(self.representation())``, (R, out_features), computed per object."""
        half = self.subject_part.shape[1]
        if layer.in_features != 2 * half:
            raise ValueError(
                f"PairContext.linear: the layer takes {layer.in_features} features, "
                f"the pair vectors have {2 * half}"
            )
        by_subject = F.linear(self.subject_part, layer.weight[:, :half], layer.bias)  # (N, out)
        by_object = F.linear(self.object_part, layer.weight[:, half:])  # (N, out)
        return by_subject[self.subjects] + by_object[self.objects]  # (R, out)
