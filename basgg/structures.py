"""The one scene-graph structure that flows from data to model to metrics to pictures.

torch is imported on first use, not with this module: ``Mode`` and the evaluation of a
predictions file (``basgg eval``) run without it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Mode(str, enum.Enum):
    """The three standard scene-graph tasks.

    ``PREDCLS``: ground-truth boxes and labels are given, predicates are predicted.
    ``SGCLS``: ground-truth boxes are given, labels and predicates are predicted.
    ``SGDET``: boxes, labels and predicates are all predicted.
    """

    PREDCLS = "predcls"
    SGCLS = "sgcls"
    SGDET = "sgdet"

    @classmethod
    def from_flags(cls, *, use_gt_box: bool, use_gt_object_label: bool) -> Mode:
        """Map Scene-Graph-Benchmark's two booleans to a mode (the only place that does)."""
        if use_gt_box and use_gt_object_label:
            return cls.PREDCLS
        if use_gt_box:
            return cls.SGCLS
        if use_gt_object_label:
            raise ValueError(
                "USE_GT_OBJECT_LABEL True with USE_GT_BOX False is not a valid task: "
                "ground-truth labels need ground-truth boxes"
            )
        return cls.SGDET


class SceneGraphError(ValueError):
    """A scene graph whose fields are inconsistent (shape, dtype or index range)."""


@dataclass
class SceneGraph:
    """Objects and the predicates between pairs of them, for one image.

    The same structure carries ground truth (scores are ``None``) and predictions.

    Attributes:
        boxes: (N, 4) float32, xyxy in pixels of the image given by ``image_size``.
        labels: (N,) int64 object classes, 1..C (0 is background).
        relation_pairs: (R, 2) int64 (subject, object) indices into ``boxes``.
        predicates: (R,) int64 predicate classes, 1..P (0 is "no relation").
        image_size: (height, width) of the image in pixels.
        image_id: the dataset's identifier of the image (VG ``image_id``), -1 if none.
        object_scores: (N,) float32 confidence of each label, predictions only.
        predicate_scores: (R, P + 1) float32 predicate distribution of each pair
            (column 0 is background), predictions only; rows are ranked best first.
        specific_predicates: (R,) int64 true specific predicate of each relation, when
            the dataset knows it (SynthVG); ground truth only.
    """

    boxes: Tensor
    labels: Tensor
    relation_pairs: Tensor
    predicates: Tensor
    image_size: tuple[int, int]
    image_id: int = -1
    object_scores: Tensor | None = None
    predicate_scores: Tensor | None = None
    specific_predicates: Tensor | None = None

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.validate()

    @property
    def num_objects(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def num_relations(self) -> int:
        return int(self.relation_pairs.shape[0])

    def validate(self) -> None:
        """Raise :class:`SceneGraphError` naming the field that is inconsistent."""
        import torch

        n, r = self.boxes.shape[0] if self.boxes.ndim == 2 else -1, self.relation_pairs.shape[0]
        _check(
            self.boxes.ndim == 2 and self.boxes.shape[1] == 4,
            "boxes",
            "shape (N, 4)",
            self.boxes.shape,
        )
        _check(self.boxes.is_floating_point(), "boxes", "a float dtype", self.boxes.dtype)
        _check(self.labels.shape == (n,), "labels", f"shape ({n},)", self.labels.shape)
        _check(self.labels.dtype == torch.int64, "labels", "int64", self.labels.dtype)
        _check(
            self.relation_pairs.ndim == 2 and self.relation_pairs.shape[1] == 2,
            "relation_pairs",
            "shape (R, 2)",
            self.relation_pairs.shape,
        )
        _check(
            self.relation_pairs.dtype == torch.int64,
            "relation_pairs",
            "int64",
            self.relation_pairs.dtype,
        )
        _check(self.predicates.shape == (r,), "predicates", f"shape ({r},)", self.predicates.shape)
        _check(self.predicates.dtype == torch.int64, "predicates", "int64", self.predicates.dtype)
        if r:
            low, high = int(self.relation_pairs.min()), int(self.relation_pairs.max())
            _check(
                low >= 0 and high < n,
                "relation_pairs",
                f"indices in [0, {n})",
                f"values in [{low}, {high}]",
            )
        if self.object_scores is not None:
            _check(
                self.object_scores.shape == (n,),
                "object_scores",
                f"shape ({n},)",
                self.object_scores.shape,
            )
        if self.predicate_scores is not None:
            _check(
                self.predicate_scores.ndim == 2 and self.predicate_scores.shape[0] == r,
                "predicate_scores",
                f"shape ({r}, P + 1)",
                self.predicate_scores.shape,
            )
        if self.specific_predicates is not None:
            _check(
                self.specific_predicates.shape == (r,),
                "specific_predicates",
                f"shape ({r},)",
                self.specific_predicates.shape,
            )

    def to(self, device: torch.device | str) -> SceneGraph:
        """A copy with every tensor moved to ``device``."""
        from torch import Tensor

        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return replace(self, **moved)

    @classmethod
    def empty(cls, image_size: tuple[int, int], image_id: int = -1) -> SceneGraph:
        """A graph with no objects and no relations."""
        import torch

        return cls(
            boxes=torch.zeros((0, 4), dtype=torch.float32),
            labels=torch.zeros((0,), dtype=torch.int64),
            relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
            predicates=torch.zeros((0,), dtype=torch.int64),
            image_size=image_size,
            image_id=image_id,
        )


def _check(ok: bool, field: str, expected: str, got: object) -> None:
    if not ok:
        raise SceneGraphError(f"SceneGraph.{field}: expected {expected}, got {got}")
