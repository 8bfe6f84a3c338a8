"""Transformer object and edge context, as Scene-Graph-Benchmark's ``TransformerContext``.

Post-norm self-attention encoder layers (Vaswani et al., 2017) over each image's objects:
one stack over ``[visual, label embedding, box embedding]`` gives the object context (and,
in SGCls/SGDet, the object classes), a second stack over ``[visual, object context, label
embedding]`` gives the edge context. Images are padded to a common length and padded
objects are masked out of the attention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basgg.models.context_common import (
    batch_box_geometry,
    batch_nms_labels,
    foreground_argmax,
    initial_label_embedding,
    onehot_logits,
    prior_logits,
)
from basgg.models.relation_types import ObjectContext, RelationBatch
from basgg.structures import Mode

MASKED_SCORE = -1e9  # finite, so that an image without objects gives no NaN


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with residual connection and post layer norm.

    Args:
        model_dim: input and output size.
        num_heads: attention heads.
        key_dim: per-head query/key size.
        value_dim: per-head value size.
        dropout: dropout on the attention weights and the output.
    """

    def __init__(
        self, *, model_dim: int, num_heads: int, key_dim: int, value_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim
        self.query = nn.Linear(model_dim, num_heads * key_dim)
        self.key = nn.Linear(model_dim, num_heads * key_dim)
        self.value = nn.Linear(model_dim, num_heads * value_dim)
        nn.init.normal_(self.query.weight, std=math.sqrt(2.0 / (model_dim + key_dim)))
        nn.init.normal_(self.key.weight, std=math.sqrt(2.0 / (model_dim + key_dim)))
        nn.init.normal_(self.value.weight, std=math.sqrt(2.0 / (model_dim + value_dim)))
        self.output = nn.Linear(num_heads * value_dim, model_dim)
        nn.init.xavier_normal_(self.output.weight)
        self.attention_dropout = nn.Dropout(dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(model_dim)

    def forward(self, inputs: Tensor, padding: Tensor) -> Tensor:
        """(B, L, model_dim) inputs, (B, L) True at padding -> (B, L, model_dim)."""
        batch, length, _ = inputs.shape
        heads = self.num_heads
        query = self.query(inputs).view(batch, length, heads, self.key_dim).transpose(1, 2)
        key = self.key(inputs).view(batch, length, heads, self.key_dim).transpose(1, 2)
        value = self.value(inputs).view(batch, length, heads, self.value_dim).transpose(1, 2)
        scores = query @ key.transpose(2, 3) / math.sqrt(self.key_dim)  # (B, heads, L, L)
        scores = scores.masked_fill(padding[:, None, None, :], MASKED_SCORE)
        weights = self.attention_dropout(F.softmax(scores, dim=3))
        attended = (weights @ value).transpose(1, 2).reshape(batch, length, -1)
        return self.norm(self.dropout(self.output(attended)) + inputs)


class EncoderLayer(nn.Module):
    """Self-attention then a position-wise feed-forward block, padded rows zeroed after each.

    Args:
        model_dim: input and output size.
        inner_dim: feed-forward hidden size.
        num_heads: attention heads.
        key_dim: per-head query/key size.
        value_dim: per-head value size.
        dropout: dropout rate.
    """

    def __init__(
        self,
        *,
        model_dim: int,
        inner_dim: int,
        num_heads: int,
        key_dim: int,
        value_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(
            model_dim=model_dim,
            num_heads=num_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            dropout=dropout,
        )
        self.feed_forward = nn.Sequential(
            nn.Linear(model_dim, inner_dim), nn.ReLU(), nn.Linear(inner_dim, model_dim)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(model_dim)

    def forward(self, inputs: Tensor, padding: Tensor) -> Tensor:
        """(B, L, model_dim), (B, L) padding mask -> (B, L, model_dim)."""
        keep = (~padding).unsqueeze(2).to(inputs.dtype)  # (B, L, 1)
        attended = self.attention(inputs, padding) * keep
        output = self.norm(self.dropout(self.feed_forward(attended)) + attended)
        return output * keep


class TransformerEncoder(nn.Module):
    """A stack of :class:`EncoderLayer` run on each image's objects separately.

    Args:
        num_layers: stacked layers.
        **kwargs: :class:`EncoderLayer` arguments.
    """

    def __init__(
        self,
        *,
        num_layers: int,
        model_dim: int,
        inner_dim: int,
        num_heads: int,
        key_dim: int,
        value_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(
                model_dim=model_dim,
                inner_dim=inner_dim,
                num_heads=num_heads,
                key_dim=key_dim,
                value_dim=value_dim,
                dropout=dropout,
            )
            for _ in range(num_layers)
        )

    def forward(self, features: Tensor, object_counts: list[int]) -> Tensor:
        """(N, model_dim) objects of all images -> (N, model_dim)."""
        padded = nn.utils.rnn.pad_sequence(list(features.split(object_counts)), batch_first=True)
        counts = torch.as_tensor(object_counts, device=features.device)
        positions = torch.arange(padded.shape[1], device=features.device)
        padding = positions[None, :] >= counts[:, None]  # (B, L)
        for layer in self.layers:
            padded = layer(padded, padding)
        return padded[~padding]


class TransformerContext(nn.Module):
    """Transformer object context, object classification and edge context.

    Args:
        mode: the task; PredCls takes the given labels, SGCls/SGDet classify the objects.
        num_objects: C, object classes including background.
        object_dim: size of the cached per-object features.
        object_word_vectors: (C, D) vectors initialising the label embeddings.
        hidden_dim: model size (Scene-Graph-Benchmark: 512; BA-SGG's recipe: 768).
        object_layers: encoder layers of the object context (SGB: 4).
        edge_layers: encoder layers of the edge context (SGB: 2).
        num_heads: attention heads (SGB: 8).
        key_dim: per-head query/key size (SGB: 64).
        value_dim: per-head value size (SGB: 64).
        inner_dim: feed-forward size (SGB: 2048).
        dropout: dropout rate of the encoders and the box embedding (SGB: 0.1).
        later_nms_threshold: SGDet test-time label NMS IoU threshold.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_objects: int,
        object_dim: int,
        object_word_vectors: Tensor,
        hidden_dim: int = 256,
        object_layers: int = 4,
        edge_layers: int = 2,
        num_heads: int = 8,
        key_dim: int = 32,
        value_dim: int = 32,
        inner_dim: int = 1024,
        dropout: float = 0.1,
        later_nms_threshold: float = 0.3,
    ) -> None:
        super().__init__()
        self.mode = Mode(mode)
        self.num_objects = num_objects
        self.later_nms_threshold = later_nms_threshold
        embed_dim = object_word_vectors.shape[1]
        vectors = object_word_vectors.float()
        self.object_embedding = nn.Embedding.from_pretrained(vectors, freeze=False)
        self.edge_embedding = nn.Embedding.from_pretrained(vectors, freeze=False)
        self.box_embedding = nn.Sequential(
            nn.Linear(9, 32),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(32, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.object_input = nn.Linear(object_dim + embed_dim + 128, hidden_dim)
        self.edge_input = nn.Linear(embed_dim + hidden_dim + object_dim, hidden_dim)
        self.object_classifier = nn.Linear(hidden_dim, num_objects)
        sizes = {
            "model_dim": hidden_dim,
            "inner_dim": inner_dim,
            "num_heads": num_heads,
            "key_dim": key_dim,
            "value_dim": value_dim,
            "dropout": dropout,
        }
        self.object_encoder = TransformerEncoder(num_layers=object_layers, **sizes)
        self.edge_encoder = TransformerEncoder(num_layers=edge_layers, **sizes)

    def forward(self, batch: RelationBatch) -> ObjectContext:
        """Contexts of N objects (all images concatenated); see :class:`ObjectContext`."""
        object_features, boxes, object_counts = (
            batch.object_features,
            batch.boxes,
            batch.object_counts,
        )
        object_labels, detector_logits = batch.object_labels, batch.detector_logits
        prior = prior_logits(
            num_objects=self.num_objects,
            object_count=object_features.shape[0],
            detector_logits=detector_logits,
            device=object_features.device,
        )
        label_embedding = initial_label_embedding(
            self.object_embedding, mode=self.mode, object_labels=object_labels, prior=prior
        )
        position = self.box_embedding(batch_box_geometry(boxes, batch.image_sizes, object_counts))
        object_input = self.object_input(torch.cat([object_features, label_embedding, position], 1))
        object_context = self.object_encoder(object_input, object_counts)  # (N, h)
        if self.mode is Mode.PREDCLS:
            labels = object_labels
            logits = onehot_logits(labels, self.num_objects)
        else:
            logits = self.object_classifier(object_context)
            if self.mode is Mode.SGDET and not self.training:
                labels = batch_nms_labels(logits, boxes, object_counts, self.later_nms_threshold)
            else:
                labels = foreground_argmax(logits.detach())
        edge_input = torch.cat([object_features, object_context, self.edge_embedding(labels)], 1)
        edge_context = self.edge_encoder(self.edge_input(edge_input), object_counts)
        return ObjectContext(logits, labels, edge_context, {})
