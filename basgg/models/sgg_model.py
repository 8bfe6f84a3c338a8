"""The scene-graph model: frozen features -> relation head -> losses or ranked predictions.

With :mod:`basgg.models.sampling`, the only model code that branches on the task
:class:`~basgg.structures.Mode`. Training and inference read per-image features
(``object_features`` (N_i, object_dim) and ``union_features`` for every ordered pair i != j
in :func:`~basgg.models.sampling.all_ordered_pairs` order), normally from the feature cache;
:meth:`SceneGraphModel.extract_features` computes them from images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basgg.models.features import FrozenFeatureExtractor
from basgg.models.relation_head import RelationBatch, RelationHead
from basgg.models.sampling import all_ordered_pairs, ordered_pair_index, sample_training_pairs
from basgg.structures import Mode, SceneGraph

Ranker = Callable[..., SceneGraph]

# the count each loss of basgg.models.losses averages over
LOSS_COUNTS = ("loss_relation", "loss_object", "loss_tree")


class SceneGraphModel(nn.Module):
    """Frozen feature extractor + relation head, for one task mode.

    Args:
        mode: the task. PredCls feeds the ground-truth labels to the head; SGCls feeds them
            only as training targets and predicts them at test time. SGDet is not supported
            yet (it needs a detector).
        relation_head: one of :data:`basgg.models.relation_head.HEADS`.
        feature_extractor: the frozen extractor (needed by :meth:`extract_features` only).
        rank_relations: ``rank(prediction, mode=mode) -> prediction`` sorting relation rows
            best first, normally :func:`basgg.evaluation.rank_relations`; ``None`` keeps the
            emission order (row-major ordered pairs).
        pairs_per_image: training pairs per image (``BATCH_SIZE_PER_IMAGE``).
        positive_fraction: largest foreground share of them (``POSITIVE_FRACTION``).
    """

    def __init__(
        self,
        *,
        mode: Mode,
        relation_head: RelationHead,
        feature_extractor: FrozenFeatureExtractor | None = None,
        rank_relations: Ranker | None = None,
        pairs_per_image: int = 1024,
        positive_fraction: float = 0.25,
    ) -> None:
        super().__init__()
        self.mode = Mode(mode)
        if self.mode is Mode.SGDET:
            raise NotImplementedError(
                "SGDet needs a detector, which basgg does not have yet; use PredCls or SGCls "
                "(MODEL.ROI_RELATION_HEAD.USE_GT_BOX True)"
            )
        if relation_head.mode is not self.mode:
            raise ValueError(
                f"relation_head: built for {relation_head.mode.value}, model is {self.mode.value}"
            )
        self.relation_head = relation_head
        self.feature_extractor = feature_extractor
        self.rank_relations = rank_relations
        self.pairs_per_image = pairs_per_image
        self.positive_fraction = positive_fraction

    @property
    def device(self) -> torch.device:
        return next(iter(self.relation_head.parameters())).device

    @torch.no_grad()
    def extract_features(
        self, images: Sequence[Tensor], graphs: Sequence[SceneGraph]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Object features of each graph's boxes and union features of all its ordered pairs."""
        if self.feature_extractor is None:
            raise ValueError("extract_features: this model was built without a feature extractor")
        pairs = [all_ordered_pairs(graph.num_objects) for graph in graphs]
        return self.feature_extractor(list(images), [g.boxes for g in graphs], pairs)

    def training_losses(
        self,
        targets: Sequence[SceneGraph],
        object_features: Sequence[Tensor],
        union_features: Sequence[Tensor],
        *,
        generators: Sequence[torch.Generator],
    ) -> tuple[dict[str, Tensor], dict[str, int]]:
        """Sample pairs, run the head, return its losses and what each loss averages over.

        Args:
            targets: per image, the training target (boxes, labels, relations).
            object_features: per image (N_i, object_dim).
            union_features: per image (N_i (N_i - 1), union_dim), every ordered pair.
            generators: per image, the random source of its pair sampling.

        Returns:
            ``{"loss_relation": ..., "loss_object": ..., ["loss_tree": ...]}`` (means), and
            the number of pairs / objects / images with objects each mean is over (so that
            several processes can weight their shares of one global batch exactly).
        """
        samples = [
            sample_training_pairs(
                self.mode,
                target.num_objects,
                target.relation_pairs,
                target.predicates,
                pairs_per_image=self.pairs_per_image,
                positive_fraction=self.positive_fraction,
                generator=generator,
            )
            for target, generator in zip(targets, generators, strict=True)
        ]
        pairs = [sample.pairs for sample in samples]
        batch = self._relation_batch(targets, object_features, union_features, pairs, True)
        relation_labels = torch.cat([sample.labels for sample in samples]).to(self.device)
        output = self.relation_head(batch)
        losses = self.relation_head.losses(output, batch, relation_labels)
        counts = {
            "loss_relation": int(relation_labels.shape[0]),
            "loss_object": int(sum(batch.object_counts)),
            "loss_tree": sum(1 for count in batch.object_counts if count > 0),
        }
        return losses, counts

    @torch.no_grad()
    def predict(
        self,
        inputs: Sequence[SceneGraph],
        object_features: Sequence[Tensor],
        union_features: Sequence[Tensor],
    ) -> list[SceneGraph]:
        """Score every ordered pair i != j of each image and rank the rows best first.

        Args:
            inputs: per image, the boxes (and in PredCls the labels) given to the model.
            object_features: per image (N_i, object_dim).
            union_features: per image (N_i (N_i - 1), union_dim), every ordered pair.

        Returns:
            One prediction per image: the input boxes, predicted (PredCls: given) labels with
            their scores, and N_i (N_i - 1) relation rows with softmax predicate scores. An
            image with one object gets the placeholder pair (0, 0) scored as background, as
            Scene-Graph-Benchmark does; an image without objects gets no row.
        """
        pairs = [all_ordered_pairs(graph.num_objects) for graph in inputs]
        batch = self._relation_batch(inputs, object_features, union_features, pairs, False)
        output = self.relation_head(batch)
        counts = batch.object_counts
        predicate_scores = F.softmax(output.predicate_logits.float(), dim=1)  # (R, P + 1)
        object_probabilities = F.softmax(output.object_logits.float(), dim=1)  # (N, C)
        labels = output.object_labels.long()
        if self.mode is Mode.PREDCLS:
            object_scores = torch.ones(labels.shape[0], device=labels.device)
        else:
            object_scores = object_probabilities.gather(1, labels.view(-1, 1)).view(-1)
        predictions = []
        rows = predicate_scores.split([int(p.shape[0]) for p in pairs])
        for graph, image_pairs, image_scores, image_labels, image_object_scores in zip(
            inputs, pairs, rows, labels.split(counts), object_scores.split(counts), strict=True
        ):
            predictions.append(
                self._prediction(
                    graph, image_pairs, image_scores, image_labels, image_object_scores
                )
            )
        return predictions

    def forward(
        self,
        graphs: Sequence[SceneGraph],
        object_features: Sequence[Tensor],
        union_features: Sequence[Tensor],
        *,
        generators: Sequence[torch.Generator] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, int]] | list[SceneGraph]:
        """:meth:`training_losses` when ``generators`` are given, else :meth:`predict`."""
        if generators is not None:
            return self.training_losses(
                graphs, object_features, union_features, generators=generators
            )
        return self.predict(graphs, object_features, union_features)

    def describe(self) -> dict[str, object]:
        """What checkpoint weights must match: head, mode, class counts and feature sizes."""
        head = self.relation_head
        classifier = head.classifier
        return {
            "predictor": type(head).__name__,
            "mode": self.mode.value,
            "num_objects": int(classifier.frequency_bias.num_objects),
            "num_predicates": int(classifier.num_predicates),
            "clean_branch": bool(head.clean_branch_enabled),
        }

    def _relation_batch(
        self,
        graphs: Sequence[SceneGraph],
        object_features: Sequence[Tensor],
        union_features: Sequence[Tensor],
        pairs: Sequence[Tensor],
        training: bool,
    ) -> RelationBatch:
        device = self.device
        unions = []
        for graph, image_unions, image_pairs in zip(graphs, union_features, pairs, strict=True):
            rows = ordered_pair_index(image_pairs, graph.num_objects)  # (R_i,)
            unions.append(image_unions[rows.to(image_unions.device)])
        give_labels = training or self.mode is Mode.PREDCLS
        return RelationBatch(
            object_features=torch.cat(list(object_features)).to(device, torch.float32),
            boxes=torch.cat([graph.boxes for graph in graphs]).to(device, torch.float32),
            image_sizes=[graph.image_size for graph in graphs],
            object_counts=[graph.num_objects for graph in graphs],
            object_labels=(
                torch.cat([graph.labels for graph in graphs]).to(device) if give_labels else None
            ),
            detector_logits=None,
            pairs=[image_pairs.to(device) for image_pairs in pairs],
            union_features=torch.cat(unions).to(device, torch.float32),
        )

    def _prediction(
        self,
        graph: SceneGraph,
        pairs: Tensor,
        predicate_scores: Tensor,
        labels: Tensor,
        object_scores: Tensor,
    ) -> SceneGraph:
        if graph.num_objects == 1:
            pairs = torch.zeros((1, 2), dtype=torch.int64)
            predicate_scores = predicate_scores.new_zeros((1, predicate_scores.shape[1]))
            predicate_scores[0, 0] = 1.0
        prediction = SceneGraph(
            boxes=graph.boxes.detach().cpu(),
            labels=labels.cpu(),
            relation_pairs=pairs.cpu(),
            predicates=predicate_scores[:, 1:].argmax(dim=1).cpu() + 1,
            image_size=graph.image_size,
            image_id=graph.image_id,
            object_scores=object_scores.cpu(),
            predicate_scores=predicate_scores.cpu(),
        )
        if self.rank_relations is not None:
            prediction = self.rank_relations(prediction, mode=self.mode)
        return prediction
