"""The head registry: a new head is one context class plus one registry entry, and then
builds, trains, checkpoints and evaluates through the ordinary commands."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from basgg.config import load_config
from basgg.data.vg150_format import VG150Files
from basgg.models import build_model
from basgg.models.context_common import foreground_argmax, onehot_logits
from basgg.models.heads import HEADS, HeadSpec, build_head, register_head
from basgg.models.predicate_classifier import UnionContextClassifier
from basgg.models.relation_types import ObjectContext, RelationBatch
from basgg.structures import Mode
from basgg.training.checkpoint import read_checkpoint
from basgg.training.runs import evaluate_checkpoint, train
from tests.test_training import tiny_overrides


class ToyContext(nn.Module):
    """Edge context = a dropout-regularised linear map of each object's own feature."""

    def __init__(
        self, *, mode: Mode, num_objects: int, object_dim: int, hidden_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.mode, self.num_objects = Mode(mode), num_objects
        self.edge = nn.Sequential(nn.Dropout(dropout), nn.Linear(object_dim, hidden_dim))
        self.classify = nn.Linear(object_dim, num_objects)

    def forward(self, batch: RelationBatch) -> ObjectContext:
        if self.mode is Mode.PREDCLS:
            logits = onehot_logits(batch.object_labels, self.num_objects)
        else:
            logits = self.classify(batch.object_features)
        labels = foreground_argmax(logits.detach())
        return ObjectContext(logits, labels, self.edge(batch.object_features), {})


TOY = HeadSpec(ToyContext, UnionContextClassifier, {"dropout": "CONTEXT_DROPOUT_RATE"})


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(HEADS, "ToyPredictor", TOY)


def test_a_name_is_registered_once(toy_registered: None) -> None:
    with pytest.raises(ValueError, match="'ToyPredictor' is already registered"):
        register_head("ToyPredictor", TOY)


def test_unknown_head_names_the_key_and_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="PREDICTOR: unknown head 'Toy'; registered: Motif"):
        build_head(
            "Toy",
            mode=Mode.PREDCLS,
            num_objects=3,
            num_predicates=2,
            object_dim=4,
            union_dim=4,
            object_word_vectors=None,
            frequency_bias_init=torch.zeros(9, 2),
        )


def test_build_model_reads_the_config_keys_the_entry_lists(toy_registered: None) -> None:
    config = load_config(None, ["MODEL.ROI_RELATION_HEAD.PREDICTOR", "ToyPredictor",
                                "MODEL.ROI_RELATION_HEAD.CONTEXT_DROPOUT_RATE", "0.37",
                                "MODEL.ROI_RELATION_HEAD.CONTEXT_HIDDEN_DIM", "6",
                                "MODEL.BACKBONE.WEIGHTS", "random"])  # fmt: skip

    class Names:
        objects = ("__background__", "a", "b")
        predicates = ("__background__", "on")

    model = build_model(config, vocabulary=Names(), frequency_bias_init=torch.zeros(9, 2),
                        object_word_vectors=torch.zeros(3, 5))  # fmt: skip
    context = model.relation_head.context
    assert isinstance(context, ToyContext)
    assert context.edge[0].p == 0.37 and context.edge[1].out_features == 6
    assert model.describe()["predictor"] == "ToyPredictor"


def test_a_registered_toy_head_trains_and_evaluates(
    toy_registered: None, tiny_vg150: VG150Files, tmp_path: Path
) -> None:
    overrides = tiny_overrides(tiny_vg150, tmp_path / "run", tmp_path / "cache")
    overrides += ["MODEL.ROI_RELATION_HEAD.PREDICTOR", "ToyPredictor", "SOLVER.MAX_ITER", "2"]
    state = train(load_config(None, overrides), progress=False)
    assert state.iteration == 2
    checkpoint = read_checkpoint(tmp_path / "run" / "model_final.pth")
    assert checkpoint["model_info"]["predictor"] == "ToyPredictor"
    weights: dict[str, Tensor] = checkpoint["model"]
    assert "relation_head.context.edge.1.weight" in weights
    result, predictions = evaluate_checkpoint(load_config(None, overrides), progress=False)
    assert predictions.is_file()
    assert 0.0 <= result.metrics["R@50"] <= 1.0
