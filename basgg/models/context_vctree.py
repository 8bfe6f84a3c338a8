"""VCTree object and edge context (Tang et al., CVPR 2019), as in Scene-Graph-Benchmark.

A small score network rates every ordered object pair of an image from detached visual,
label, box and overlap features; its sigmoid times a class co-occurrence prior (the
probability that two classes are related at all) is the pair's relatedness probability.
A greedy maximum spanning tree over these probabilities, binarised left-child
right-sibling, is the image's tree. Bidirectional tree LSTMs over it
give the object context and, after a tree decoder classifies the objects (SGCls/SGDet), the
edge context. The pair scores are trained by a binary "is there a relation" loss
(:func:`basgg.models.losses.tree_score_loss`), which Scene-Graph-Benchmark uses in place of
the paper's reinforcement learning.

Departure from Scene-Graph-Benchmark: its prior is the sum over predicates of the
log-frequencies (a large negative number), so its logits ``sigmoid(score) * prior`` can
never be positive and the binary loss settles at ln 2 with ``sigmoid(score) -> 0``; here
the prior is a probability and the logits are the log-odds of the product.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basgg.models.context_common import (
    batch_box_geometry,
    initial_label_embedding,
    onehot_logits,
    prior_logits,
    xavier_linear,
)
from basgg.models.relation_types import TREE_PAIR_LOGITS, ObjectContext, RelationBatch
from basgg.models.tree_lstm import BidirectionalTreeLSTM, Forest, TreeDecoder
from basgg.structures import Mode

OVERLAP_SCALE = 1024.0
FREQUENCY_EPSILON = 1e-3  # added to the shares before the log in ``frequency_bias_init``
PRIOR_CLAMP = 1e-3  # co-occurrence probabilities are kept in [PRIOR_CLAMP, 1 - PRIOR_CLAMP]
PROBABILITY_CLAMP = 1e-6  # relatedness probabilities below 1 - this before the logit


def cooccurrence_from_frequency_bias(frequency_bias_init: Tensor, num_objects: int) -> Tensor:
    """(C * C, P + 1) frequency-bias logits -> (C, C) probability that two classes are related.

    Column 0 of row ``s * C + o`` is ``log(background share + 1e-3)`` of the ordered pair
    (s, o), so ``1 - (exp(column 0) - 1e-3)`` is the share of its overlapping pairs that
    carry any relation. The result is symmetric: the probability of a relation in either
    direction, ``1 - background(s, o) * background(o, s)``.
    """
    if frequency_bias_init.shape[0] != num_objects * num_objects:
        raise ValueError(
            f"frequency_bias_init: expected {num_objects * num_objects} rows, "
            f"got {frequency_bias_init.shape[0]}"
        )
    log_background = frequency_bias_init[:, 0].float().view(num_objects, num_objects)
    background = (log_background.exp() - FREQUENCY_EPSILON).clamp(0.0, 1.0)  # (C, C)
    return 1.0 - background * background.T


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
        frequency_bias_init: (C * C, P + 1) frequency-bias logits; unless
            ``cooccurrence_prior`` is given, their background column gives the prior
            (:func:`cooccurrence_from_frequency_bias`).
        hidden_dim: context size (even; Scene-Graph-Benchmark's VCTree config: 512).
        object_layers: tree LSTM layers of the object context.
        edge_layers: tree LSTM layers of the edge context.
        dropout: tree LSTM dropout (between layers, and in the decoder).
        cooccurrence_prior: (C, C) probabilities in [0, 1] that two classes are related
            (either direction); it initialises the trainable prior, kept a probability
            through a sigmoid.
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
        cooccurrence_prior: Tensor | None = None,
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
        if cooccurrence_prior is None:
            cooccurrence_prior = cooccurrence_from_frequency_bias(frequency_bias_init, num_objects)
        if cooccurrence_prior.shape != (num_objects, num_objects):
            raise ValueError(
                f"cooccurrence_prior: expected ({num_objects}, {num_objects}), "
                f"got {tuple(cooccurrence_prior.shape)}"
            )
        if not bool(((cooccurrence_prior >= 0) & (cooccurrence_prior <= 1)).all()):
            raise ValueError("cooccurrence_prior: values must be probabilities in [0, 1]")
        prior = cooccurrence_prior.float().clamp(PRIOR_CLAMP, 1.0 - PRIOR_CLAMP)
        self.pair_prior_logits = nn.Parameter(torch.logit(prior))  # (C, C)
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
        features against column j's ``score_subject`` features.

        The relatedness probability is ``sigmoid(vision score) * co-occurrence prior``
        (the prior averaged over both objects' class distributions); the logits are its
        log-odds, so the binary loss and the tree see that probability.
        """
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
        prior_probability = torch.sigmoid(self.pair_prior_logits)  # (C, C)
        logits = []
        for subject, object_, distribution in zip(subjects, objects, distributions, strict=True):
            count = subject.shape[0]
            co_prior = distribution @ prior_probability @ distribution.T  # (n, n)
            co_prior = co_prior.clamp(PROBABILITY_CLAMP, 1.0 - PROBABILITY_CLAMP)
            grid = torch.cat(
                [
                    object_[:, None, :] * subject[None, :, :],
                    subject[None, :, :].expand(count, -1, -1),
                    object_[:, None, :].expand(-1, count, -1),
                    co_prior[:, :, None],
                ],
                dim=2,
            )  # (n, n, 3h + 1)
            vision = self.vision_prior(grid).squeeze(2)  # (n, n)
            log_related = F.logsigmoid(vision) + co_prior.log()  # log P(related)
            logits.append(log_related - torch.log1p(-log_related.exp()))
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
