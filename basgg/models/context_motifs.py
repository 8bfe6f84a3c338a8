"""Neural Motifs object and edge context (Zellers et al., CVPR 2018), as in Scene-Graph-Benchmark.

Objects of each image are put in a sequence (by default Scene-Graph-Benchmark's "leftright"
order: descending box centre x). A bidirectional LSTM over ``[visual, label embedding,
position embedding]`` gives the object context; in SGCls/SGDet a highway LSTM decoder
classifies the objects in sequence order, feeding each decision to the next step. A second
bidirectional LSTM over ``[label embedding, visual, object context]`` gives the edge context.

The helpers shared by the three context encoders live in :mod:`basgg.models.context_common`.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import rnn as rnn_utils

from basgg.models.concurrent_branches import run_concurrently
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

ORDERINGS = ("leftright", "size", "confidence", "random")


def object_orders(
    boxes: Tensor, object_counts: list[int], ordering: str, confidence: Tensor | None = None
) -> list[Tensor]:
    """Per image, the global indices of its objects in sequence order.

    ``leftright``: descending box centre x (Scene-Graph-Benchmark's ``sort_rois``);
    ``size``: descending area; ``confidence``: descending ``confidence`` (N,);
    ``random``: a random permutation. Ties keep index order.
    """
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering: expected one of {ORDERINGS}, got {ordering!r}")
    if ordering == "leftright":
        keys = 0.5 * (boxes[:, 0] + boxes[:, 2])
    elif ordering == "size":
        keys = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    elif ordering == "confidence":
        keys = confidence if confidence is not None else boxes.new_zeros(boxes.shape[0])
    else:
        keys = torch.rand(boxes.shape[0], device=boxes.device)
    orders, start = [], 0
    for count in object_counts:
        local = torch.sort(keys[start : start + count].detach(), descending=True, stable=True)[1]
        orders.append(local + start)
        start += count
    return orders


def pad_in_order(features: Tensor, orders: list[Tensor]) -> Tensor:
    """(N, D) features -> (B, T, D), image b's objects in ``orders[b]`` order, zero-padded."""
    return rnn_utils.pad_sequence([features[order] for order in orders], batch_first=True)


def unpad_to_original(padded: Tensor, orders: list[Tensor]) -> Tensor:
    """Inverse of :func:`pad_in_order`: (B, T, D) -> (N, D) in the original object order."""
    rows = torch.cat([padded[b, : len(order)] for b, order in enumerate(orders)], dim=0)
    return torch.zeros_like(rows).index_copy(0, torch.cat(orders), rows)


FUSED_LSTM_MAX_HIDDEN = 128  # CPU: measured to pay up to here (bench/lstm_speed.py)


def run_bidirectional_lstm(
    lstm: nn.LSTM, features: Tensor, orders: list[Tensor], *, concurrent: bool = False
) -> Tensor:
    """Run ``lstm`` over each image's sequence; (N, D) -> (N, 2 * hidden) in original order.

    On a CPU with at most :data:`FUSED_LSTM_MAX_HIDDEN` hidden units this is
    :func:`fused_bidirectional_lstm` (a packed LSTM runs there step by step, which costs more
    than the padding), its two directions on two threads with ``concurrent``; otherwise, as
    in Scene-Graph-Benchmark, ``lstm`` over the packed sequences
    (:func:`packed_bidirectional_lstm`). Both give the same values up to float rounding.
    """
    if features.device.type == "cpu" and lstm.hidden_size <= FUSED_LSTM_MAX_HIDDEN:
        return fused_bidirectional_lstm(lstm, features, orders, concurrent=concurrent)
    return packed_bidirectional_lstm(lstm, features, orders)


def packed_bidirectional_lstm(lstm: nn.LSTM, features: Tensor, orders: list[Tensor]) -> Tensor:
    """``lstm`` over the packed per-image sequences; (N, D) -> (N, 2 * hidden), original order."""
    kept = [order for order in orders if len(order) > 0]
    if not kept:
        return features.new_zeros(features.shape[0], 2 * lstm.hidden_size)
    packed = rnn_utils.pack_sequence([features[order] for order in kept], enforce_sorted=False)
    output, _ = lstm(packed)
    padded, _ = rnn_utils.pad_packed_sequence(output, batch_first=True)  # (B', T, 2h)
    return unpad_to_original(padded, kept)


def fused_bidirectional_lstm(
    lstm: nn.LSTM, features: Tensor, orders: list[Tensor], *, concurrent: bool = False
) -> Tensor:
    """The function of :func:`packed_bidirectional_lstm`, one fused call per layer and direction.

    Each call runs over zero-padded sequences that all start at step 0: the forward direction
    over the sequences, the backward direction over the sequences reversed. Padding then only
    ever follows an image's real steps, so it reaches no output and no gradient, and the call
    takes the fused LSTM kernel (oneDNN on a CPU), which packed input does not get there. The
    demo's Motifs step (hidden 128) is ~20% faster; with 256 or 512 hidden units (SGB's size)
    the padded rows cost more than the fused kernel saves (docs/speed.md).

    The two directions of a layer are independent: with ``concurrent`` they run on two
    threads, forward and backward (:func:`basgg.models.concurrent_branches.run_concurrently`),
    with identical results.
    """
    if not lstm.bidirectional or lstm.proj_size or lstm.batch_first:
        raise ValueError("fused_bidirectional_lstm: expects a bidirectional, sequence-first LSTM")
    kept = [order for order in orders if len(order) > 0]
    if not kept:
        return features.new_zeros(features.shape[0], 2 * lstm.hidden_size)
    device = features.device
    lengths = torch.tensor([len(order) for order in kept], device=device)  # (B,)
    images, steps = len(kept), int(lengths.max())
    in_order = torch.cat(kept)  # (M,) object indices, sequence after sequence
    image = torch.repeat_interleave(torch.arange(images, device=device), lengths)  # (M,)
    step = torch.arange(len(in_order), device=device) - (lengths.cumsum(0) - lengths)[image]
    forward_slot = image * steps + step  # (M,) row of each object in the (B * T) grid
    backward_slot = image * steps + lengths[image] - 1 - step  # same, sequences reversed
    sequence = features[in_order]  # (M, D)
    for layer in range(lstm.num_layers):
        if layer > 0 and lstm.dropout > 0:
            sequence = F.dropout(sequence, lstm.dropout, training=lstm.training)
        directions = [
            partial(
                _one_direction,
                slot=slot,
                images=images,
                steps=steps,
                bias=lstm.bias,
                training=lstm.training,
            )
            for slot in (forward_slot, backward_slot)
        ]
        weights = [_layer_weights(lstm, layer, suffix) for suffix in ("", "_reverse")]
        if concurrent:
            halves = run_concurrently(
                directions[0], [sequence, *weights[0]], directions[1], [sequence, *weights[1]]
            )
        else:
            halves = tuple(run(sequence, *w) for run, w in zip(directions, weights, strict=True))
        sequence = torch.cat(halves, dim=1)  # (M, 2h)
    return sequence.new_zeros(features.shape[0], sequence.shape[1]).index_copy(
        0, in_order, sequence
    )


def _one_direction(
    sequence: Tensor,
    *weights: Tensor,
    slot: Tensor,
    images: int,
    steps: int,
    bias: bool,
    training: bool,
) -> Tensor:
    """One direction of one layer: (M, D) rows -> (M, h), each row placed at ``slot`` of the
    zero-padded (B * T) grid the fused call runs over."""
    grid = sequence.new_zeros(images * steps, sequence.shape[1]).index_copy(
        0, slot, sequence
    )  # (B * T, D)
    hidden = weights[1].shape[1]
    zeros = sequence.new_zeros(1, images, hidden)  # (1, B, h) initial state
    # input, initial state, weights, bias, 1 layer, no dropout, train, not bidirectional,
    # batch first
    output, _, _ = torch.lstm(
        grid.view(images, steps, -1),
        (zeros, zeros),
        list(weights),
        bias,
        1,
        0.0,
        training,
        False,
        True,
    )  # (B, T, h)
    return output.reshape(images * steps, -1)[slot]  # (M, h)


def _layer_weights(lstm: nn.LSTM, layer: int, suffix: str) -> list[Tensor]:
    names = [f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}"]
    if lstm.bias:
        names += [f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}"]
    return [getattr(lstm, name) for name in names]


class MotifsDecoder(nn.Module):
    """Highway LSTM that classifies objects one after another (Scene-Graph-Benchmark's DecoderRNN).

    Each step sees the object's features and the embedding of the previous decision
    (a learned "start" row first). In training the previous decision is the given label
    (teacher forcing; background labels are replaced by the prediction), at test the argmax.

    Args:
        input_dim: size of the per-object input.
        hidden_dim: LSTM size.
        label_vectors: (C, D) word vectors of the classes; a "start" row is prepended.
        dropout: variational dropout on the step output (training only).
    """

    def __init__(
        self, *, input_dim: int, hidden_dim: int, label_vectors: Tensor, dropout: float = 0.2
    ) -> None:
        super().__init__()
        num_classes, embed_dim = label_vectors.shape
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.label_embedding = nn.Embedding(num_classes + 1, embed_dim)
        with torch.no_grad():
            self.label_embedding.weight[1:].copy_(label_vectors)
        self.input_linearity = nn.Linear(input_dim + embed_dim, 6 * hidden_dim)
        self.state_linearity = nn.Linear(hidden_dim, 5 * hidden_dim)
        nn.init.zeros_(self.input_linearity.bias)
        nn.init.zeros_(self.state_linearity.bias)
        self.classifier = nn.Linear(hidden_dim, num_classes)

    def step(self, inputs: Tensor, state: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """One highway LSTM step: (B, in), (B, h), (B, h) -> new state and memory."""
        projected_input = self.input_linearity(inputs).chunk(6, dim=1)
        projected_state = self.state_linearity(state).chunk(5, dim=1)
        input_gate = torch.sigmoid(projected_input[0] + projected_state[0])
        forget_gate = torch.sigmoid(projected_input[1] + projected_state[1])
        candidate = torch.tanh(projected_input[2] + projected_state[2])
        output_gate = torch.sigmoid(projected_input[3] + projected_state[3])
        memory = input_gate * candidate + forget_gate * memory
        output = output_gate * torch.tanh(memory)
        highway_gate = torch.sigmoid(projected_input[4] + projected_state[4])
        output = highway_gate * output + (1 - highway_gate) * projected_input[5]
        return output, memory

    def forward(self, inputs: Tensor, teacher_labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """Decode padded sequences.

        Args:
            inputs: (B, T, input_dim) per-image object sequences.
            teacher_labels: (B, T) labels for teacher forcing in training, or ``None``.

        Returns:
            (B, T, C) class logits and (B, T) decisions.
        """
        batch, steps, _ = inputs.shape
        state = inputs.new_zeros(batch, self.hidden_dim)
        memory = inputs.new_zeros(batch, self.hidden_dim)
        previous = self.label_embedding.weight[0].expand(batch, -1)
        mask = None
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            mask = torch.bernoulli(inputs.new_full((batch, self.hidden_dim), keep)) / keep
        all_logits, all_labels = [], []
        for t in range(steps):
            state, memory = self.step(torch.cat([inputs[:, t], previous], dim=1), state, memory)
            if mask is not None:
                state = state * mask
            logits = self.classifier(state)  # (B, C)
            labels = foreground_argmax(logits.detach())
            if self.training and teacher_labels is not None:
                given = teacher_labels[:, t]
                labels = torch.where(given > 0, given, labels)
            all_logits.append(logits)
            all_labels.append(labels)
            previous = self.label_embedding(labels + 1)
        return torch.stack(all_logits, dim=1), torch.stack(all_labels, dim=1)


class MotifsContext(nn.Module):
    """Motifs object context, object classification and edge context.

    Args:
        mode: the task; PredCls takes the given labels, SGCls/SGDet decode them.
        num_objects: C, object classes including background.
        object_dim: size of the cached per-object features.
        object_word_vectors: (C, D) vectors initialising the label embeddings.
        hidden_dim: context size (Scene-Graph-Benchmark: 512).
        object_layers: LSTM layers of the object context.
        edge_layers: LSTM layers of the edge context.
        dropout: LSTM dropout (between layers, and in the decoder).
        ordering: object sequence order, one of :data:`ORDERINGS`.
        later_nms_threshold: SGDet test-time label NMS IoU threshold.

    Attributes:
        concurrent_branches: run each LSTM layer's two directions on two threads (CPU,
            fused path; identical results). Off by default; the training and prediction
            runs turn it on where a core would otherwise be idle.
    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_objects: int,
        object_dim: int,
        object_word_vectors: Tensor,
        hidden_dim: int = 256,
        object_layers: int = 1,
        edge_layers: int = 1,
        dropout: float = 0.2,
        ordering: str = "leftright",
        later_nms_threshold: float = 0.3,
    ) -> None:
        super().__init__()
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering: expected one of {ORDERINGS}, got {ordering!r}")
        self.mode = Mode(mode)
        self.num_objects = num_objects
        self.ordering = ordering
        self.later_nms_threshold = later_nms_threshold
        self.concurrent_branches = False
        embed_dim = object_word_vectors.shape[1]
        self.object_embedding = nn.Embedding.from_pretrained(
            object_word_vectors.float(), freeze=False
        )
        self.edge_embedding = nn.Embedding.from_pretrained(
            object_word_vectors.float(), freeze=False
        )
        self.position_embedding = nn.Sequential(
            nn.Linear(9, 32), nn.BatchNorm1d(32, momentum=0.001), nn.Linear(32, 128), nn.ReLU()
        )
        object_input_dim = object_dim + embed_dim + 128
        self.object_rnn = nn.LSTM(
            object_input_dim,
            hidden_dim,
            num_layers=object_layers,
            dropout=dropout if object_layers > 1 else 0.0,
            bidirectional=True,
        )
        self.object_projection = nn.Linear(2 * hidden_dim, hidden_dim)
        self.decoder = MotifsDecoder(
            input_dim=object_input_dim + hidden_dim,
            hidden_dim=hidden_dim,
            label_vectors=object_word_vectors.float(),
            dropout=dropout,
        )
        self.edge_rnn = nn.LSTM(
            embed_dim + hidden_dim + object_dim,
            hidden_dim,
            num_layers=edge_layers,
            dropout=dropout if edge_layers > 1 else 0.0,
            bidirectional=True,
        )
        self.edge_projection = nn.Linear(2 * hidden_dim, hidden_dim)

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
        position = self.position_embedding(
            batch_box_geometry(boxes, batch.image_sizes, object_counts)
        )
        object_input = torch.cat([object_features, label_embedding, position], dim=1)  # (N, in)
        confidence = F.softmax(prior, dim=1)[:, 1:].max(dim=1)[0]
        orders = object_orders(boxes, object_counts, self.ordering, confidence)
        object_context = self.object_projection(
            run_bidirectional_lstm(
                self.object_rnn, object_input, orders, concurrent=self.concurrent_branches
            )
        )  # (N, h)
        if self.mode is Mode.PREDCLS:
            labels = object_labels
            logits = onehot_logits(labels, self.num_objects)
        else:
            logits, labels = self.decode(
                torch.cat([object_input, object_context], dim=1), orders, object_labels
            )
            if self.mode is Mode.SGDET and not self.training:
                labels = batch_nms_labels(logits, boxes, object_counts, self.later_nms_threshold)
        edge_input = torch.cat([self.edge_embedding(labels), object_features, object_context], 1)
        edge_context = self.edge_projection(
            run_bidirectional_lstm(
                self.edge_rnn, edge_input, orders, concurrent=self.concurrent_branches
            )
        )
        return ObjectContext(logits, labels, edge_context, {})

    def decode(
        self, decoder_input: Tensor, orders: list[Tensor], object_labels: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Run the decoder in sequence order; (N, C) logits and (N,) labels, original order."""
        teacher = None
        if object_labels is not None:
            teacher = pad_in_order(object_labels.view(-1, 1), orders).squeeze(2)  # (B, T)
        logits, labels = self.decoder(pad_in_order(decoder_input, orders), teacher)
        logits = unpad_to_original(logits, orders)
        labels = unpad_to_original(labels.unsqueeze(2), orders).squeeze(1)
        return logits, labels
