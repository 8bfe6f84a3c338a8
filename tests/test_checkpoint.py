"""Checkpoints: atomic writes, weights_only reads, clear errors for wrong or damaged files."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from basgg.config import load_config
from basgg.data.vocabulary import Vocabulary
from basgg.models import build_model
from basgg.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    atomic_save,
    capture_rng_state,
    check_model_fits,
    load_model_weights,
    read_checkpoint,
    restore_rng_state,
)
from basgg.training.setup import model_info

TINY = [
    "MODEL.BACKBONE.WEIGHTS", "random",
    "MODEL.ROI_RELATION_HEAD.CONTEXT_HIDDEN_DIM", "16",
    "MODEL.ROI_RELATION_HEAD.CONTEXT_POOLING_DIM", "16",
]  # fmt: skip


def _vocabulary(num_objects: int = 4, num_predicates: int = 3) -> Vocabulary:
    objects = ("__background__", *(f"object{i}" for i in range(1, num_objects + 1)))
    predicates = ("__background__", *(f"predicate{i}" for i in range(1, num_predicates + 1)))
    return Vocabulary(objects=objects, predicates=predicates)


def _model(vocabulary: Vocabulary, *overrides: str):
    config = load_config(None, [*TINY, *overrides])
    c, p = vocabulary.num_objects, vocabulary.num_predicates
    torch.manual_seed(0)
    return build_model(
        config,
        vocabulary=vocabulary,
        frequency_bias_init=torch.zeros(c * c, p),
        object_word_vectors=torch.randn(c, config.MODEL.ROI_RELATION_HEAD.EMBED_DIM),
    )


def _save(path: Path, model, vocabulary: Vocabulary) -> dict:
    info = model_info(model, vocabulary)
    atomic_save({"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "model_info": info,
                 "iteration": 3, "rng": [capture_rng_state()]}, path)  # fmt: skip
    return info


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    vocabulary = _vocabulary()
    model = _model(vocabulary)
    path = tmp_path_factory.mktemp("checkpoint") / "model_last.pth"
    _save(path, model, vocabulary)
    return path, model, vocabulary


def test_round_trip_with_weights_only_and_no_temporary_left(saved) -> None:
    path, model, vocabulary = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["model_last.pth"]
    torch.load(path, weights_only=True)  # plain values and tensors only
    fresh = _model(vocabulary, "SEED", "1")
    with torch.no_grad():
        for parameter in fresh.parameters():
            parameter.add_(1.0)
    state = load_model_weights(path, fresh, model_info=model_info(fresh, vocabulary))
    assert state["iteration"] == 3
    for key, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], tensor), key


def test_other_class_count_is_named(saved) -> None:
    path, _, _ = saved
    vocabulary = _vocabulary(num_objects=6)
    other = _model(vocabulary)
    with pytest.raises(CheckpointError) as error:
        load_model_weights(path, other, model_info=model_info(other, vocabulary))
    message = str(error.value)
    assert str(path) in message
    assert "num_objects 5 in the checkpoint, 7 here" in message


def test_other_head_is_named(saved) -> None:
    path, _, vocabulary = saved
    other = _model(vocabulary, "MODEL.ROI_RELATION_HEAD.PREDICTOR", "VCTreePredictor")
    with pytest.raises(CheckpointError) as error:
        load_model_weights(path, other, model_info=model_info(other, vocabulary))
    assert str(path) in str(error.value)
    assert "predictor 'MotifPredictor' in the checkpoint, 'VCTreePredictor' here" in str(
        error.value
    )


def test_other_layer_size_is_named(saved) -> None:
    path, _, vocabulary = saved
    other = _model(vocabulary, "MODEL.ROI_RELATION_HEAD.CONTEXT_HIDDEN_DIM", "8")
    with pytest.raises(CheckpointError, match=r"has shape \(.*16.*\) in the checkpoint"):
        load_model_weights(path, other, model_info=model_info(other, vocabulary))


def test_other_predicate_names_are_named(saved) -> None:
    path, model, vocabulary = saved
    renamed = Vocabulary(
        objects=vocabulary.objects, predicates=("__background__", "on", "has", "near")
    )
    state = read_checkpoint(path)
    with pytest.raises(CheckpointError, match="predicate_names differ.*index 1: 'predicate1'"):
        check_model_fits(state, path, model=model, model_info=model_info(model, renamed))


def test_truncated_and_corrupt_files_name_the_file(saved, tmp_path: Path) -> None:
    path, _, _ = saved
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: cannot read the checkpoint"):
        read_checkpoint(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.pth: cannot read the checkpoint"):
        read_checkpoint(garbage)
    with pytest.raises(CheckpointError, match=r"missing\.pth: checkpoint file not found"):
        read_checkpoint(tmp_path / "missing.pth")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_objects_are_refused_and_foreign_dicts_named(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {}, "model_info": {}, "format": 1, "thing": Path("x")}, unsafe)
    with pytest.raises(CheckpointError, match=r"unsafe\.pth: cannot read"):
        read_checkpoint(unsafe)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pth: not a basgg checkpoint"):
        read_checkpoint(foreign)
    plain_pickle = tmp_path / "pickle.pth"
    plain_pickle.write_bytes(pickle.dumps({"model": 1}))
    with pytest.raises(CheckpointError, match=r"pickle\.pth"):
        read_checkpoint(plain_pickle)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "model_last.pth"
    atomic_save({"value": torch.tensor([1.0])}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"value": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["value"].tolist() == [1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_last.pth"]


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.pth")
    expected = (torch.rand(3), np.random.standard_normal(3), random.random())
    torch.rand(10), np.random.rand(10), random.random()
    restore_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.standard_normal(3), expected[1])
    assert random.random() == expected[2]
