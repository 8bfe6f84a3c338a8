"""The registry of relation heads: one :class:`HeadSpec` per ``MODEL.ROI_RELATION_HEAD.PREDICTOR``.

A head is a context encoder plus a predicate classifier variant inside the shared
:class:`~basgg.models.relation_head.RelationHead`. Its entry says which context encoder and
which classifier, and which config keys (under ``MODEL.ROI_RELATION_HEAD``) fill which
keywords of the context's constructor. Adding a head is one file (its context encoder) plus
one line here (or one :func:`register_head` call from your own code)::

    HEADS["MyPredictor"] = HeadSpec(context=MyContext, classifier=UnionContextClassifier)

Names are Scene-Graph-Benchmark's predictor names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from basgg.models.context_motifs import MotifsContext
from basgg.models.context_transformer import TransformerContext
from basgg.models.context_vctree import VCTreeContext
from basgg.models.predicate_classifier import (
    FrequencyClassifier,
    FrequencyObjects,
    PredicateClassifier,
    TransformerClassifier,
    UnionContextClassifier,
)
from basgg.models.relation_head import RelationHead
from basgg.structures import Mode

# the shared inputs a context encoder receives when its constructor names them
SHARED_CONTEXT_INPUTS = (
    "mode", "num_objects", "object_dim", "object_word_vectors", "frequency_bias_init", "hidden_dim",
)  # fmt: skip

LSTM_CONTEXT_KEYS = {
    "dropout": "CONTEXT_DROPOUT_RATE",
    "object_layers": "CONTEXT_OBJ_LAYER",
    "edge_layers": "CONTEXT_REL_LAYER",
}
TRANSFORMER_CONTEXT_KEYS = {
    "dropout": "TRANSFORMER.DROPOUT_RATE",
    "object_layers": "TRANSFORMER.OBJ_LAYER",
    "edge_layers": "TRANSFORMER.REL_LAYER",
    "num_heads": "TRANSFORMER.NUM_HEAD",
    "key_dim": "TRANSFORMER.KEY_DIM",
    "value_dim": "TRANSFORMER.VAL_DIM",
    "inner_dim": "TRANSFORMER.INNER_DIM",
}


@dataclass(frozen=True)
class HeadSpec:
    """One relation head.

    Attributes:
        context: the context encoder's class (or factory): keyword-only arguments, maps a
            :class:`~basgg.models.relation_types.RelationBatch` to an
            :class:`~basgg.models.relation_types.ObjectContext`. It receives those of
            :data:`SHARED_CONTEXT_INPUTS` its signature names, plus ``config_keys``.
        classifier: the :class:`PredicateClassifier` variant (BA-SGG's clean branch and
            Semantic Adjustment work for every variant).
        config_keys: context keyword -> dotted key under ``MODEL.ROI_RELATION_HEAD`` that
            :func:`basgg.models.build_model` reads for it.
        relu_on_pair: ReLU after the pair projection ``post_emb`` (VCTree).
    """

    context: Callable[..., nn.Module]
    classifier: type[PredicateClassifier]
    config_keys: Mapping[str, str] = field(default_factory=dict)
    relu_on_pair: bool = False


HEADS: dict[str, HeadSpec] = {
    "MotifPredictor": HeadSpec(MotifsContext, UnionContextClassifier, LSTM_CONTEXT_KEYS),
    "VCTreePredictor": HeadSpec(
        VCTreeContext, UnionContextClassifier, LSTM_CONTEXT_KEYS, relu_on_pair=True
    ),
    "TransformerPredictor": HeadSpec(
        TransformerContext, TransformerClassifier, TRANSFORMER_CONTEXT_KEYS
    ),
    "FrequencyPredictor": HeadSpec(FrequencyObjects, FrequencyClassifier),
}


def register_head(name: str, spec: HeadSpec) -> HeadSpec:
    """Add ``spec`` to :data:`HEADS` under ``name``; a name is registered once."""
    if name in HEADS:
        raise ValueError(f"relation head {name!r} is already registered")
    HEADS[name] = spec
    return spec


def head_spec(name: str) -> HeadSpec:
    """The registered head ``name``; a ``ValueError`` naming the config key otherwise."""
    if name not in HEADS:
        raise ValueError(
            f"MODEL.ROI_RELATION_HEAD.PREDICTOR: unknown head {name!r}; "
            f"registered: {', '.join(HEADS)}"
        )
    return HEADS[name]


def build_head(
    name: str,
    *,
    mode: Mode,
    num_objects: int,
    num_predicates: int,
    object_dim: int,
    union_dim: int,
    object_word_vectors: Tensor | None,
    frequency_bias_init: Tensor,
    hidden_dim: int = 256,
    pooling_dim: int = 512,
    frequency_bias_dropout: float = 0.3,
    union_shared_dim: int = 0,
    **context_options: object,
) -> RelationHead:
    """The registered head ``name``: its context encoder, then the shared head around it.

    Args:
        name: a key of :data:`HEADS`.
        mode, num_objects, num_predicates, frequency_bias_init, frequency_bias_dropout,
            union_dim, hidden_dim, pooling_dim, union_shared_dim: see :class:`RelationHead`.
        object_dim: size of the cached object features.
        object_word_vectors: (C, D) label embedding initialisation (contexts that embed labels).
        context_options: further keywords of the context encoder (e.g. ``object_layers``).
    """
    spec = head_spec(name)
    shared = {
        "mode": mode,
        "num_objects": num_objects,
        "object_dim": object_dim,
        "object_word_vectors": object_word_vectors,
        "frequency_bias_init": frequency_bias_init,
        "hidden_dim": hidden_dim,
    }
    accepted = inspect.signature(spec.context).parameters
    inputs = {key: value for key, value in shared.items() if key in accepted}
    if "object_word_vectors" in inputs:
        inputs["object_word_vectors"] = _checked_word_vectors(object_word_vectors, num_objects)
    context = spec.context(**inputs, **context_options)
    return RelationHead(
        mode=mode,
        context=context,
        classifier_type=spec.classifier,
        num_objects=num_objects,
        num_predicates=num_predicates,
        frequency_bias_init=frequency_bias_init,
        frequency_bias_dropout=frequency_bias_dropout,
        union_dim=union_dim,
        hidden_dim=hidden_dim,
        pooling_dim=pooling_dim,
        relu_on_pair=spec.relu_on_pair,
        union_shared_dim=union_shared_dim,
        name=name,
    )


def _checked_word_vectors(vectors: Tensor | None, num_objects: int) -> Tensor:
    if vectors is None or vectors.ndim != 2 or vectors.shape[0] != num_objects:
        shape = None if vectors is None else tuple(vectors.shape)
        raise ValueError(f"object_word_vectors: expected ({num_objects}, D), got {shape}")
    return vectors
