"""The scene-graph model: frozen features -> relation head -> losses or ranked predictions.

With :mod:`basgg.models.sampling`, the only model code that branches on the task
:class:`~basgg.structures.Mode`. Training and inference read per-image features
(``object_features`` (N_i, object_dim) and ``union_features`` for every ordered pair i != j
in :func:`~basgg.models.sampling.all_ordered_pairs` order), normally from the feature cache;
:meth:`SceneGraphModel.extract_features` computes them from images and
:meth:`SceneGraphModel.predict_images` runs the whole model, frozen detector included
(SGDet), on images.

In SGDet the boxes given to the head are proposals (the frozen detector's detections, plus
the ground-truth boxes during training) with the detector's class logits; the training
targets stay the ground-truth graphs, and proposals are labelled by IoU with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basgg.models.features import FrozenFeatureExtractor
from basgg.models.relation_features import DetectorPyramid, RelationFeatureExtractor
from basgg.models.relation_head import RelationHead
from basgg.models.relation_types import RelationBatch
from basgg.models.sampling import (
    SampledPairs,
    all_ordered_pairs,
    assign_proposal_labels,
    ordered_pair_index,
    sample_detected_pairs,
    sample_gt_box_pairs,
)
from basgg.structures import Mode, SceneGraph

Ranker = Callable[..., SceneGraph]


class Detections(Protocol):
    """One image's detections (:class:`basgg.models.detector.Detections`)."""

    boxes: Tensor  # (N, 4) float32 xyxy pixels
    labels: Tensor  # (N,) int64 1..C
    scores: Tensor  # (N,) float32
    class_logits: Tensor  # (N, C + 1) float32


def detections_to_graph(
    detections: Detections, *, image_size: tuple[int, int], image_id: int = -1
) -> SceneGraph:
    """The detections of an image as a relation-free :class:`SceneGraph` (the SGDet input)."""
    return SceneGraph(
        boxes=detections.boxes.detach().to("cpu", torch.float32),
        labels=detections.labels.detach().to("cpu", torch.int64),
        relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
        predicates=torch.zeros(0, dtype=torch.int64),
        image_size=image_size,
        image_id=image_id,
        object_scores=detections.scores.detach().to("cpu", torch.float32),
    )


# the count each loss of basgg.models.losses averages over
LOSS_COUNTS = ("loss_relation", "loss_object", "loss_tree")


class SceneGraphModel(nn.Module):
    """Frozen feature extractor + relation head, for one task mode.

    Args:
        mode: the task. PredCls feeds the ground-truth labels to the head; SGCls feeds them
            only as training targets and predicts them at test time; SGDet takes proposals
            and the detector's class logits instead of ground-truth boxes.
        relation_head: a :class:`RelationHead` (see :data:`basgg.models.heads.HEADS`).
        feature_extractor: the frozen extractor (needed by :meth:`extract_features` only).
        detector: the frozen detector of SGDet (needed by :meth:`predict_images` only): a
            :class:`basgg.models.detector.Detector`, kept in eval mode with no gradients.
        rank_relations: ``rank(prediction, mode=mode) -> prediction`` sorting relation rows
            best first, normally :func:`basgg.evaluation.rank_relations`; ``None`` keeps the
            emission order (row-major ordered pairs).
        pairs_per_image: training pairs per image (``BATCH_SIZE_PER_IMAGE``).
        positive_fraction: largest foreground share of them (``POSITIVE_FRACTION``).
        feature_pyramid: with ``relation_features``: the detector's frozen trunk + FPN.
        relation_features: SGB's trainable relation features from the detector
            (``FEATURE_EXTRACTOR RelationFeatureExtractor``). Then every ``object_features``
            argument below carries each image's frozen
            :class:`~basgg.models.relation_features.ImagePyramid` instead of a tensor, and
            ``union_features`` is ignored (union features are computed for the pairs used).
    """

    def __init__(
        self,
        *,
        mode: Mode,
        relation_head: RelationHead,
        feature_extractor: FrozenFeatureExtractor | None = None,
        detector: nn.Module | None = None,
        rank_relations: Ranker | None = None,
        pairs_per_image: int = 1024,
        positive_fraction: float = 0.25,
        feature_pyramid: DetectorPyramid | None = None,
        relation_features: RelationFeatureExtractor | None = None,
    ) -> None:
        super().__init__()
        self.mode = Mode(mode)
        if detector is not None and self.mode is not Mode.SGDET:
            raise ValueError(f"detector: only an sgdet model has one, this is {self.mode.value}")
        if relation_head.mode is not self.mode:
            raise ValueError(
                f"relation_head: built for {relation_head.mode.value}, model is {self.mode.value}"
            )
        self.relation_head = relation_head
        self.feature_extractor = feature_extractor
        self.detector = detector
        if detector is not None:
            detector.requires_grad_(False)
            detector.eval()
        if (feature_pyramid is None) != (relation_features is None):
            raise ValueError("feature_pyramid and relation_features come together")
        self.feature_pyramid = feature_pyramid
        self.relation_features = relation_features
        self.rank_relations = rank_relations
        self.pairs_per_image = pairs_per_image
        self.positive_fraction = positive_fraction

    @property
    def device(self) -> torch.device:
        return next(iter(self.relation_head.parameters())).device

    def train(self, mode: bool = True) -> SceneGraphModel:
        """Set the head's mode; the frozen detector stays in eval mode."""
        super().train(mode)
        if self.detector is not None:
            self.detector.eval()
        return self

    def load_detector(self, detector: nn.Module, *, feature_heads: bool = True) -> None:
        """Take a trained detector's weights: the SGDet detector's, the frozen trunk + FPN of
        the relation features, and (``feature_heads``) the box head both trainable feature
        heads start from (False when trained heads were loaded from a relation checkpoint)."""
        if self.detector is not None:
            self.detector.load_state_dict(detector.state_dict())
        if self.relation_features is not None:
            self.feature_pyramid.backbone.load_state_dict(detector.rcnn.backbone.state_dict())
            if feature_heads:
                self.relation_features.load_box_head(detector.rcnn.roi_heads.box_head)

    @torch.no_grad()
    def extract_features(
        self, images: Sequence[Tensor], graphs: Sequence[SceneGraph]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Object features of each graph's boxes and union features of all its ordered pairs
        (with ``relation_features``: each image's frozen pyramid, and ``None`` per image)."""
        if self.relation_features is not None:
            return self.feature_pyramid(list(images)), [None] * len(images)
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
        proposals: Sequence[SceneGraph] | None = None,
        detector_logits: Sequence[Tensor] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, int]]:
        """Sample pairs, run the head, return its losses and what each loss averages over.

        Args:
            targets: per image, the training target (boxes, labels, relations).
            object_features: per image (N_i, object_dim), the boxes the head sees (the
                target's, or in SGDet the proposals').
            union_features: per image (N_i (N_i - 1), union_dim), every ordered pair.
            generators: per image, the random source of its pair sampling.
            proposals: SGDet only: per image, the proposal boxes (N_i of them).
            detector_logits: SGDet only: per image (N_i, C + 1) detector class logits.

        Returns:
            ``{"loss_relation": ..., "loss_object": ..., ["loss_tree": ...]}`` (means), and
            the number of pairs / objects / images with objects each mean is over (so that
            several processes can weight their shares of one global batch exactly).
        """
        if self.mode is Mode.SGDET:
            if proposals is None or detector_logits is None:
                raise ValueError("training_losses: sgdet needs proposals and detector_logits")
            inputs = list(proposals)
            object_labels = [
                assign_proposal_labels(proposal.boxes, target.boxes, target.labels)
                for proposal, target in zip(inputs, targets, strict=True)
            ]
            samples = [
                self._sample_detected(proposal, labels, target, generator)
                for proposal, labels, target, generator in zip(
                    inputs, object_labels, targets, generators, strict=True
                )
            ]
        else:
            inputs, object_labels = list(targets), [target.labels for target in targets]
            samples = [
                sample_gt_box_pairs(
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
        batch = self._relation_batch(
            inputs,
            object_features,
            union_features,
            pairs,
            object_labels=object_labels,
            detector_logits=detector_logits,
        )
        relation_labels = torch.cat([sample.labels for sample in samples]).to(self.device)
        output = self.relation_head(batch)
        losses = self.relation_head.losses(output, batch, relation_labels)
        counts = {
            "loss_relation": int(relation_labels.shape[0]),
            "loss_object": int(sum(batch.object_counts)),
            "loss_tree": sum(1 for count in batch.object_counts if count > 0),
        }
        return losses, counts

    def _sample_detected(
        self,
        proposal: SceneGraph,
        proposal_labels: Tensor,
        target: SceneGraph,
        generator: torch.Generator,
    ) -> SampledPairs:
        sample = sample_detected_pairs(
            proposal.boxes,
            proposal_labels,
            target.boxes,
            target.labels,
            target.relation_pairs,
            target.predicates,
            pairs_per_image=self.pairs_per_image,
            positive_fraction=self.positive_fraction,
            generator=generator,
        )
        if proposal.num_objects < 2:  # no union feature exists for the placeholder pair
            empty = torch.zeros(0, dtype=torch.int64)
            return SampledPairs(pairs=empty.view(0, 2), labels=empty, num_foreground=0)
        return sample

    @torch.no_grad()
    def predict(
        self,
        inputs: Sequence[SceneGraph],
        object_features: Sequence[Tensor],
        union_features: Sequence[Tensor],
        *,
        detector_logits: Sequence[Tensor] | None = None,
    ) -> list[SceneGraph]:
        """Score every ordered pair i != j of each image and rank the rows best first.

        Args:
            inputs: per image, the boxes (and in PredCls the labels) given to the model; in
                SGDet the detections.
            object_features: per image (N_i, object_dim).
            union_features: per image (N_i (N_i - 1), union_dim), every ordered pair.
            detector_logits: SGDet: per image (N_i, C + 1) detector class logits.

        Returns:
            One prediction per image: the input boxes, predicted (PredCls: given) labels with
            their scores, and N_i (N_i - 1) relation rows with softmax predicate scores. An
            image with one object gets the placeholder pair (0, 0) scored as background, as
            Scene-Graph-Benchmark does; an image without objects gets no row.
        """
        pairs = [all_ordered_pairs(graph.num_objects) for graph in inputs]
        object_labels = [graph.labels for graph in inputs] if self.mode is Mode.PREDCLS else None
        batch = self._relation_batch(
            inputs,
            object_features,
            union_features,
            pairs,
            object_labels=object_labels,
            detector_logits=detector_logits,
        )
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
        proposals: Sequence[SceneGraph] | None = None,
        detector_logits: Sequence[Tensor] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, int]] | list[SceneGraph]:
        """:meth:`training_losses` when ``generators`` are given, else :meth:`predict`."""
        if generators is not None:
            return self.training_losses(
                graphs,
                object_features,
                union_features,
                generators=generators,
                proposals=proposals,
                detector_logits=detector_logits,
            )
        return self.predict(
            graphs, object_features, union_features, detector_logits=detector_logits
        )

    @torch.no_grad()
    def detect(
        self, images: Sequence[Tensor], *, image_ids: Sequence[int] | None = None
    ) -> tuple[list[SceneGraph], list[Tensor]]:
        """SGDet inputs of uint8 (3, H, W) images: the frozen detector's detections as
        relation-free graphs, and their (N_i, C + 1) class logits."""
        if self.detector is None:
            raise ValueError("detect: this model has no detector (only sgdet models do)")
        ids = list(image_ids) if image_ids is not None else [-1] * len(images)
        results = self.detector.detect(list(images))
        graphs = [
            detections_to_graph(
                result, image_size=(int(image.shape[-2]), int(image.shape[-1])), image_id=image_id
            )
            for result, image, image_id in zip(results, images, ids, strict=True)
        ]
        return graphs, [result.class_logits.detach().float().cpu() for result in results]

    @torch.no_grad()
    def predict_images(
        self, images: Sequence[Tensor], inputs: Sequence[SceneGraph] | None = None
    ) -> list[SceneGraph]:
        """The whole model on uint8 (3, H, W) images, in eval mode.

        Args:
            images: the images.
            inputs: PredCls: per image the boxes and labels; SGCls: the boxes (labels are
                ignored); SGDet: ``None``, the detector finds the boxes.

        Returns:
            Ranked predictions as :meth:`predict` gives them.
        """
        was_training = self.training
        self.eval()
        try:
            logits = None
            if self.mode is Mode.SGDET:
                if inputs is not None:
                    raise ValueError("predict_images: an sgdet model finds its own boxes")
                inputs, logits = self.detect(images)
            elif inputs is None:
                raise ValueError(f"predict_images: {self.mode.value} needs input boxes")
            objects, unions = self.extract_features(images, inputs)
            return self.predict(inputs, objects, unions, detector_logits=logits)
        finally:
            self.train(was_training)

    def describe(self) -> dict[str, object]:
        """What checkpoint weights must match: head, mode, class counts and feature sizes."""
        head = self.relation_head
        classifier = head.classifier
        description: dict[str, object] = {
            "predictor": head.name,
            "mode": self.mode.value,
            "num_objects": int(classifier.frequency_bias.num_objects),
            "num_predicates": int(classifier.num_predicates),
            "clean_branch": bool(head.clean_branch_enabled),
            "detector": self.detector is not None,
        }
        if self.relation_features is not None:  # absent: the frozen-backbone features
            description["feature_extractor"] = type(self.relation_features).__name__
        return description

    def _relation_batch(
        self,
        graphs: Sequence[SceneGraph],
        object_features: Sequence[Tensor],
        union_features: Sequence[Tensor],
        pairs: Sequence[Tensor],
        *,
        object_labels: Sequence[Tensor] | None,
        detector_logits: Sequence[Tensor] | None,
    ) -> RelationBatch:
        device = self.device
        if self.relation_features is not None:  # object_features: the frozen pyramids
            pyramids = [pyramid.to(device, torch.float32) for pyramid in object_features]
            object_features, unions = self.relation_features(
                pyramids, [graph.boxes for graph in graphs], [p.to(device) for p in pairs]
            )
        else:
            unions = []
            for graph, image_unions, image_pairs in zip(graphs, union_features, pairs, strict=True):
                rows = ordered_pair_index(image_pairs, graph.num_objects)  # (R_i,)
                unions.append(image_unions[rows.to(image_unions.device)])
        return RelationBatch(
            object_features=torch.cat(list(object_features)).to(device, torch.float32),
            boxes=torch.cat([graph.boxes for graph in graphs]).to(device, torch.float32),
            image_sizes=[graph.image_size for graph in graphs],
            object_counts=[graph.num_objects for graph in graphs],
            object_labels=(
                torch.cat(list(object_labels)).to(device) if object_labels is not None else None
            ),
            detector_logits=(
                torch.cat(list(detector_logits)).to(device, torch.float32)
                if detector_logits is not None
                else None
            ),
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
