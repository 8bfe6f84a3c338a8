"""VCTree's trees: maximum spanning tree over pair scores, binarisation and tree LSTMs.

Follows Scene-Graph-Benchmark's ``utils_vctree.py`` / ``utils_treelstm.py`` (Tang et al.,
CVPR 2019), but runs each tree LSTM level by level over a whole batch of trees instead of
recursing node by node: a leaves-to-root pass processes nodes by height, a root-to-leaves
pass by depth, each level as one batched matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F


def spanning_tree(pair_scores: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximum spanning tree of one image, as Scene-Graph-Benchmark's ``gen_tree``.

    The root is the node with the highest mean row score. Then, repeatedly, the highest
    ``pair_scores[parent, child]`` from a node in the tree to a node outside it adds that
    edge (Prim's algorithm). Ties go to the parent added earliest, then the lowest child.

    Args:
        pair_scores: (n, n) scores, row = parent, column = child.

    Returns:
        ``parents`` (n,) with -1 at the root, and ``insertion_order`` (n,), the nodes in the
        order they joined the tree (root first; children of a node keep this order).
    """
    scores = np.asarray(torch.as_tensor(pair_scores).detach().cpu().float())  # (n, n)
    count = scores.shape[0]
    parents = np.full(count, -1, dtype=np.int64)
    if count == 0:
        return parents, np.zeros(0, dtype=np.int64)
    root = int(np.argmax(scores.mean(axis=1)))
    order = [root]
    outside = np.ones(count, dtype=bool)
    outside[root] = False
    best_score = scores[root].copy()  # best edge into each node from the tree
    best_position = np.zeros(count, dtype=np.int64)  # position in ``order`` of that parent
    for _ in range(count - 1):
        candidates = np.flatnonzero(outside)
        # lexicographic: highest score, then earliest parent, then lowest index
        keys = np.lexsort((candidates, best_position[candidates], -best_score[candidates]))
        child = int(candidates[keys[0]])
        parents[child] = order[best_position[child]]
        outside[child] = False
        order.append(child)
        better = outside & (scores[child] > best_score)
        best_score[better] = scores[child][better]
        best_position[better] = len(order) - 1
    return parents, np.asarray(order, dtype=np.int64)


def binarize(parents: np.ndarray, insertion_order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left-child right-sibling form of a tree: first child left, next sibling right.

    Returns (n,) ``left`` and ``right`` child indices, -1 where there is none.
    """
    count = len(parents)
    left = np.full(count, -1, dtype=np.int64)
    right = np.full(count, -1, dtype=np.int64)
    last_child = np.full(count, -1, dtype=np.int64)
    for node in insertion_order[1:]:
        parent = parents[node]
        if last_child[parent] < 0:
            left[parent] = node
        else:
            right[last_child[parent]] = node
        last_child[parent] = node
    return left, right


@dataclass
class Forest:
    """Binary trees of all images of a batch, in global object indices.

    Missing children / parents point at the sentinel index N (a zero state row).

    Attributes:
        left: (N,) left child. right: (N,) right child. parent: (N,) binary parent.
        image_index: (N,) image of each node.
        up_levels: node indices grouped by height (leaves first).
        down_levels: node indices grouped by depth (roots first).
    """

    left: Tensor
    right: Tensor
    parent: Tensor
    image_index: Tensor
    up_levels: list[Tensor]
    down_levels: list[Tensor]

    @property
    def num_nodes(self) -> int:
        return int(self.left.shape[0])

    @classmethod
    def from_pair_scores(cls, pair_scores: list[Tensor], device: torch.device) -> Forest:
        """One spanning tree per image from its (n_i, n_i) pair scores."""
        total = sum(int(scores.shape[0]) for scores in pair_scores)
        left = np.full(total, total, dtype=np.int64)
        right = np.full(total, total, dtype=np.int64)
        parent = np.full(total, total, dtype=np.int64)
        height = np.zeros(total, dtype=np.int64)
        depth = np.zeros(total, dtype=np.int64)
        image_index = np.zeros(total, dtype=np.int64)
        start = 0
        for image, scores in enumerate(pair_scores):
            count = int(scores.shape[0])
            parents, order = spanning_tree(scores)
            local_left, local_right = binarize(parents, order)
            image_index[start : start + count] = image
            for node in order:  # binary parents come before their children in this order
                for child_array, child in ((left, local_left[node]), (right, local_right[node])):
                    if child >= 0:
                        child_array[start + node] = start + child
                        parent[start + child] = start + node
                        depth[start + child] = depth[start + node] + 1
            for node in order[::-1]:  # children before parents
                children = [c for c in (local_left[node], local_right[node]) if c >= 0]
                if children:
                    height[start + node] = 1 + max(height[start + c] for c in children)
            start += count

        def levels(values: np.ndarray) -> list[Tensor]:
            return [
                torch.from_numpy(np.flatnonzero(values == level)).to(device)
                for level in range(int(values.max()) + 1 if total else 0)
            ]

        return cls(
            left=torch.from_numpy(left).to(device),
            right=torch.from_numpy(right).to(device),
            parent=torch.from_numpy(parent).to(device),
            image_index=torch.from_numpy(image_index).to(device),
            up_levels=levels(height),
            down_levels=levels(depth),
        )


def _block_orthogonal(weight: Tensor, block_rows: int) -> None:
    """Orthogonal initialisation of each ``block_rows``-row block of ``weight``."""
    with torch.no_grad():
        for block in weight.split(block_rows, dim=0):
            nn.init.orthogonal_(block)


def _dropout_mask(
    training: bool, rate: float, images: int, size: int, reference: Tensor
) -> Tensor | None:
    """One inverted-dropout mask per image (B, size), fixed across the tree; None if unused."""
    if not training or rate <= 0:
        return None
    keep = 1.0 - rate
    return torch.bernoulli(reference.new_full((images, size), keep)) / keep


class UpTreeLSTM(nn.Module):
    """Leaves-to-root binary tree LSTM with a highway connection to the input.

    Args:
        input_dim: node input size.
        hidden_dim: state size.
    """

    def __init__(self, *, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input_skip = nn.Linear(input_dim, hidden_dim)
        self.input_gates = nn.Linear(input_dim, 6 * hidden_dim)
        self.left_gates = nn.Linear(hidden_dim, 6 * hidden_dim)
        self.right_gates = nn.Linear(hidden_dim, 6 * hidden_dim)
        for layer in (self.input_skip, self.input_gates, self.left_gates, self.right_gates):
            _block_orthogonal(layer.weight, hidden_dim)
            nn.init.zeros_(layer.bias)
        with torch.no_grad():  # both forget gates start at 0.5
            self.left_gates.bias[2 * hidden_dim : 4 * hidden_dim].fill_(0.5)
            self.right_gates.bias[2 * hidden_dim : 4 * hidden_dim].fill_(0.5)

    def forward(self, features: Tensor, forest: Forest, mask: Tensor | None) -> Tensor:
        """(N, input_dim) node inputs -> (N, hidden_dim) states."""
        count = forest.num_nodes
        gates_from_input = self.input_gates(features)  # (N, 6h)
        skip = self.input_skip(features)  # (N, h)
        hidden = features.new_zeros(count + 1, self.hidden_dim)  # row N: missing child
        memory = features.new_zeros(count + 1, self.hidden_dim)
        for level in forest.up_levels:
            left, right = forest.left[level], forest.right[level]
            gates = (
                gates_from_input[level]
                + self.left_gates(hidden[left])
                + self.right_gates(hidden[right])
            )
            i, o, f_left, f_right, u, r = gates.chunk(6, dim=1)
            new_memory = (
                torch.sigmoid(i) * torch.tanh(u)
                + torch.sigmoid(f_left) * memory[left]
                + torch.sigmoid(f_right) * memory[right]
            )
            new_hidden = torch.sigmoid(o) * torch.tanh(new_memory)
            gate = torch.sigmoid(r)
            new_hidden = gate * new_hidden + (1 - gate) * skip[level]
            if mask is not None:
                new_hidden = new_hidden * mask[forest.image_index[level]]
            hidden = hidden.index_copy(0, level, new_hidden)
            memory = memory.index_copy(0, level, new_memory)
        return hidden[:count]


class DownTreeLSTM(nn.Module):
    """Root-to-leaves tree LSTM (each node sees its binary parent) with a highway connection.

    Args:
        input_dim: node input size.
        hidden_dim: state size.
    """

    def __init__(self, *, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.input_skip = nn.Linear(input_dim, hidden_dim)
        self.input_gates = nn.Linear(input_dim, 5 * hidden_dim)
        self.parent_gates = nn.Linear(hidden_dim, 5 * hidden_dim)
        for layer in (self.input_skip, self.input_gates, self.parent_gates):
            _block_orthogonal(layer.weight, hidden_dim)
            nn.init.zeros_(layer.bias)
        with torch.no_grad():  # forget gate starts at 1
            self.parent_gates.bias[2 * hidden_dim : 3 * hidden_dim].fill_(1.0)

    def cell(
        self, inputs: Tensor, parent_hidden: Tensor, parent_memory: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One level: (n, input_dim), (n, h), (n, h) -> new (n, h) state and memory."""
        gates = self.input_gates(inputs) + self.parent_gates(parent_hidden)
        i, o, f, u, r = gates.chunk(5, dim=1)
        memory = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(f) * parent_memory
        hidden = torch.sigmoid(o) * torch.tanh(memory)
        gate = torch.sigmoid(r)
        return gate * hidden + (1 - gate) * self.input_skip(inputs), memory

    def forward(self, features: Tensor, forest: Forest, mask: Tensor | None) -> Tensor:
        """(N, input_dim) node inputs -> (N, hidden_dim) states."""
        count = forest.num_nodes
        hidden = features.new_zeros(count + 1, self.hidden_dim)  # row N: a root's parent
        memory = features.new_zeros(count + 1, self.hidden_dim)
        for level in forest.down_levels:
            parent = forest.parent[level]
            new_hidden, new_memory = self.cell(features[level], hidden[parent], memory[parent])
            if mask is not None:
                new_hidden = new_hidden * mask[forest.image_index[level]]
            hidden = hidden.index_copy(0, level, new_hidden)
            memory = memory.index_copy(0, level, new_memory)
        return hidden[:count]


class BidirectionalTreeLSTM(nn.Module):
    """Stacked layers of an up and a down tree LSTM, each half the output size, concatenated.

    Args:
        input_dim: node input size.
        output_dim: output size (even).
        num_layers: stacked layers.
        dropout: per-image dropout on each direction's states (training only).
    """

    def __init__(
        self, *, input_dim: int, output_dim: int, num_layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if output_dim % 2:
            raise ValueError(f"hidden_dim: a tree LSTM needs an even size, got {output_dim}")
        self.dropout = dropout
        half = output_dim // 2
        self.up = nn.ModuleList()
        self.down = nn.ModuleList()
        for layer in range(num_layers):
            size = input_dim if layer == 0 else output_dim
            self.up.append(UpTreeLSTM(input_dim=size, hidden_dim=half))
            self.down.append(DownTreeLSTM(input_dim=size, hidden_dim=half))

    def forward(self, features: Tensor, forest: Forest, num_images: int) -> Tensor:
        """(N, input_dim) -> (N, output_dim)."""
        for up, down in zip(self.up, self.down, strict=True):
            masks = [
                _dropout_mask(self.training, self.dropout, num_images, up.hidden_dim, features)
                for _ in range(2)
            ]
            features = torch.cat(
                [up(features, forest, masks[0]), down(features, forest, masks[1])], dim=1
            )
        return features


class TreeDecoder(nn.Module):
    """VCTree's object classifier: a root-to-leaves tree LSTM passing label embeddings down.

    Each node's input is its features and the embedding of its parent's label (a "start"
    row at the root). In training the passed label is sampled from the node's class
    distribution, at test it is the argmax; the returned labels are always the argmax.

    Args:
        input_dim: node feature size.
        hidden_dim: state size.
        label_vectors: (C, D) class word vectors; a "start" row is prepended.
        dropout: per-image dropout on the states (training only).
    """

    def __init__(
        self, *, input_dim: int, hidden_dim: int, label_vectors: Tensor, dropout: float = 0.2
    ) -> None:
        super().__init__()
        num_classes, embed_dim = label_vectors.shape
        self.dropout = dropout
        self.label_embedding = nn.Embedding(num_classes + 1, embed_dim)
        with torch.no_grad():
            self.label_embedding.weight[1:].copy_(label_vectors)
        self.lstm = DownTreeLSTM(input_dim=input_dim + embed_dim, hidden_dim=hidden_dim)
        self.classifier = nn.Linear(hidden_dim, num_classes)

    def forward(self, features: Tensor, forest: Forest, num_images: int) -> tuple[Tensor, Tensor]:
        """(N, input_dim) -> (N, C) class logits and (N,) labels."""
        count = forest.num_nodes
        hidden_dim = self.lstm.hidden_dim
        mask = _dropout_mask(self.training, self.dropout, num_images, hidden_dim, features)
        hidden = features.new_zeros(count + 1, hidden_dim)
        memory = features.new_zeros(count + 1, hidden_dim)
        passed = self.label_embedding.weight[0].expand(count + 1, -1)  # row N: start
        logits = features.new_zeros(count, self.classifier.out_features)
        labels = torch.zeros(count, dtype=torch.long, device=features.device)
        for level in forest.down_levels:
            parent = forest.parent[level]
            inputs = torch.cat([features[level], passed[parent]], dim=1)
            new_hidden, new_memory = self.lstm.cell(inputs, hidden[parent], memory[parent])
            if mask is not None:
                new_hidden = new_hidden * mask[forest.image_index[level]]
            level_logits = self.classifier(new_hidden)  # (n, C)
            level_labels = level_logits.detach()[:, 1:].argmax(dim=1) + 1
            if self.training:
                foreground = F.softmax(level_logits.detach(), dim=1)[:, 1:]
                to_pass = torch.multinomial(foreground, 1).squeeze(1) + 1
            else:
                to_pass = level_labels
            hidden = hidden.index_copy(0, level, new_hidden)
            memory = memory.index_copy(0, level, new_memory)
            passed = passed.index_copy(0, level, self.label_embedding(to_pass + 1))
            logits = logits.index_copy(0, level, level_logits)
            labels = labels.index_copy(0, level, level_labels)
        return logits, labels
