"""VCTree object and edge context (Tang et al., CVPR 2019), as in Scene-Graph-Benchmark.

A small score network rates every ordered object pair of an image from detached visual,
label, box and overlap features times a class co-occurrence prior; a greedy maximum
spanning tree over the (sigmoid) scores, binarised left-child right-sibling, is the
image's tree. Bidirectional tree LSTMs over it give the object context and, after a tree
decoder classifies the objects (SGCls/SGDet), the edge context. The pair scores are
trained by a binary "is there a relation" loss (:func:`basgg.models.losses.tree_score_loss`),
which Scene-Graph-Benchmark uses in place of the paper's reinforcement learning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basgg.models.context_motifs import (
    ObjectContext,
    batch_box_geometry,
    initial_label_embedding,
    onehot_logits,
    prior_logits,
)
from basgg.models.losses import TREE_PAIR_LOGITS
from basgg.models.predicate_classifier import xavier_linear
from basgg.models.tree_lstm import BidirectionalTreeLSTM, Forest, TreeDecoder
from basgg.structures import Mode

if TYPE_CHECKING:
    from basgg.models.relation_head import RelationBatch

OVERLAP_SCALE = 1024.0


def overlap_features(boxes: Tensor) -> Tensor:
    """Scene-Graph-Benchmark's 6 overlap statistics of each box of one image. (n, 4) -> (n, 6).

    Per box: how many boxes it intersects (itself included), total intersection area,
    total IoU, and the two averages over those boxes, then its own area; areas use the
    +1 convention for intersections and are divided by 1024^2.
    """
    left_top = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])  # (n, n, 2)
    right_bottom = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    intersection = (right_bottom - left_top + 1.0).clamp(min=0).prod(dim=2)  # (n, n)
    sides = boxes[:, 2:] - boxes[:, :2]  # (n, 2)
    area_plus_one = (sides + 1.0).prod(dim=1)
    iou = intersection / (area_plus_one[:, None] + area_plus_one[None, :] - intersection + 1e-9)
    count = (intersection > 0).float().sum(dim=1)
    total_intersection = intersection.sum(dim=1) / OVERLAP_SCALE**2
    total_iou = iou.sum(dim=1)
    area = sides.prod(dim=1) / OVERLAP_SCALE**2
    columns = [
        count,
        total_intersection,
        total_iou,
        total_intersection / (count + 1e-9),
        total_iou / (count + 1e-9),
        area,
    ]
    return torch.stack(columns, dim=1)


class VCTreeContext(nn.Module):
    """VCTree pair scores, trees, object context, object classification and edge context.

    Args:
        mode: the task; PredCls takes the given labels, SGCls/SGDet decode them.
        num_objects: C, object classes including background.
        object_dim: size of the cached per-object features.
        object_word_vectors: (C, D) vectors initialising the label embeddings.
        frequency_bias_init: (C * C, P + 1) frequency-bias logits; their sum over
            predicates, symmetrised, initialises the trainable co-occurrence prior.
        hidden_dim: context size (even; Scene-Graph-Benchmark's VCTree config: 512).
        object_layers: tree LSTM layers of the object context.
        edge_layers: tree LSTM layers of the edge context.
        dropout: tree LSTM dropout (between layers, and in the decoder).
    """

    def __init__(
        self,
        *,
        mode: Mode,
        num_objects: int,
        object_dim: int,
        object_word_vectors: Tensor,
        frequency_bias_init: Tensor,
        hidden_dim: int = 256,
        object_layers: int = 1,
        edge_layers: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.mode = Mode(mode)
        self.num_objects = num_objects
        embed_dim = object_word_vectors.shape[1]
        vectors = object_word_vectors.float()
        self.object_embedding = nn.Embedding.from_pretrained(vectors, freeze=False)
        self.edge_embedding = nn.Embedding.from_pretrained(vectors, freeze=False)
        self.position_embedding = nn.Sequential(
            nn.Linear(9, 32), nn.BatchNorm1d(32, momentum=0.001), nn.Linear(32, 128), nn.ReLU()
        )
        self.overlap_embedding = nn.Sequential(
            nn.Linear(6, 128), nn.BatchNorm1d(128, momentum=0.001), nn.ReLU()
        )
        self.box_embedding = nn.Sequential(
            nn.Linear(9, 128), nn.BatchNorm1d(128, momentum=0.001), nn.ReLU()
        )
        co_occurrence = frequency_bias_init.float().sum(dim=1).view(num_objects, num_objects)
        self.pair_prior = nn.Parameter(co_occurrence + co_occurrence.T)  # (C, C)
        self.object_reduce = xavier_linear(object_dim, 128)
        self.embedding_reduce = xavier_linear(embed_dim, 128)
        self.score_pre = xavier_linear(4 * 128, hidden_dim)
        self.score_subject = xavier_linear(hidden_dim, hidden_dim)
        self.score_object = xavier_linear(hidden_dim, hidden_dim)
        self.vision_prior = nn.Linear(3 * hidden_dim + 1, 1)
        object_input_dim = object_dim + embed_dim + 128
        self.object_tree = BidirectionalTreeLSTM(
            input_dim=object_input_dim,
            output_dim=hidden_dim,
            num_layers=object_layers,
            dropout=dropout if object_layers > 1 else 0.0,
        )
        self.decoder = TreeDecoder(
            input_dim=object_input_dim + hidden_dim,
            hidden_dim=hidden_dim,
            label_vectors=vectors,
            dropout=dropout,
        )
        self.edge_tree = BidirectionalTreeLSTM(
            input_dim=embed_dim + hidden_dim + object_dim,
            output_dim=hidden_dim,
            num_layers=edge_layers,
            dropout=dropout if edge_layers > 1 else 0.0,
        )

    def pair_logits(
        self,
        object_features: Tensor,
        label_embedding: Tensor,
        geometry: Tensor,
        boxes: Tensor,
        prior: Tensor,
        object_counts: list[int],
    ) -> list[Tensor]:
        """Per image, the (n_i, n_i) pair logits; row i scores object i's ``score_object``
        features against column j's ``score_subject`` features."""
        overlaps = torch.cat([overlap_features(b) for b in boxes.split(object_counts)], dim=0)
        features = torch.cat(
            [
                self.object_reduce(object_features.detach()),
                self.embedding_reduce(label_embedding.detach()),
                self.box_embedding(geometry),
                self.overlap_embedding(overlaps),
            ],
            dim=1,
        )  # (N, 512)
        features = F.relu(self.score_pre(features))
        subjects = F.relu(self.score_subject(features)).split(object_counts)
        objects = F.relu(self.score_object(features)).split(object_counts)
        distributions = F.softmax(prior, dim=1).split(object_counts)
        logits = []
        for subject, object_, distribution in zip(subjects, objects, distributions, strict=True):
            count = subject.shape[0]
            co_prior = distribution @ self.pair_prior @ distribution.T  # (n, n)
            grid = torch.cat(
                [
                    object_[:, None, :] * subject[None, :, :],
                    subject[None, :, :].expand(count, -1, -1),
                    object_[:, None, :].expand(-1, count, -1),
                    co_prior[:, :, None],
                ],
                dim=2,
            )  # (n, n, 3h + 1)
            vision = self.vision_prior(grid).squeeze(2)
            logits.append(torch.sigmoid(vision) * co_prior)
        return logits

    def forward(self, batch: RelationBatch) -> ObjectContext:
        """Contexts of N objects; auxiliary ``tree_pair_logits`` holds the flattened
        per-image pair logits (sum of n_i^2 values, image by image, row-major)."""
        object_features, boxes, object_counts = (
            batch.object_features,
            batch.boxes,
            batch.object_counts,
        )
        object_labels, detector_logits = batch.object_labels, batch.detector_logits
        num_images = len(object_counts)
        if self.mode is Mode.PREDCLS:
            prior = onehot_logits(object_labels, self.num_objects)
        else:
            prior = prior_logits(
                num_objects=self.num_objects,
                object_count=object_features.shape[0],
                detector_logits=detector_logits,
                device=object_features.device,
            )
        label_embedding = initial_label_embedding(
            self.object_embedding, mode=self.mode, object_labels=object_labels, prior=prior
        )
        geometry = batch_box_geometry(boxes, batch.image_sizes, object_counts)  # (N, 9)
        object_input = torch.cat(
            [object_features, label_embedding, self.position_embedding(geometry)], dim=1
        )
        pair_logits = self.pair_logits(
            object_features, label_embedding, geometry, boxes, prior, object_counts
        )
        forest = Forest.from_pair_scores(
            [torch.sigmoid(logits) for logits in pair_logits], object_features.device
        )
        object_context = self.object_tree(object_input, forest, num_images)  # (N, h)
        if self.mode is Mode.PREDCLS:
            logits, labels = prior, object_labels
        else:
            decoder_input = torch.cat([object_input, object_context], dim=1)
            logits, labels = self.decoder(decoder_input, forest, num_images)
        edge_input = torch.cat([self.edge_embedding(labels), object_features, object_context], 1)
        edge_context = self.edge_tree(edge_input, forest, num_images)
        flat = [logits_i.reshape(-1) for logits_i in pair_logits]
        auxiliary = {TREE_PAIR_LOGITS: torch.cat(flat) if flat else object_features.new_zeros(0)}
        return ObjectContext(logits, labels, edge_context, auxiliary)
