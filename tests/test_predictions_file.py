"""The HDF5 predictions file: round trip, every rejection, and evaluate_file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from basgg.evaluation import (
    evaluate,
    evaluate_file,
    read_predictions,
    validate_predictions,
    write_predictions,
)
from basgg.structures import Mode, SceneGraph

NAMES = ("__background__", "has", "near", "on")


def graph(rng: np.random.Generator, image_id: int, n: int, rows: int, scored: bool = True):
    x1 = rng.integers(0, 50, n)
    boxes = np.stack([x1, x1, x1 + 20, x1 + 30], axis=1).astype(np.float32)
    pairs = np.stack([rng.integers(0, n, rows), rng.integers(0, n, rows)], axis=1) if n else []
    scores = rng.random((rows, len(NAMES))).astype(np.float32)
    return SceneGraph(
        boxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(rng.integers(1, 4, n).astype(np.int64)),
        relation_pairs=torch.as_tensor(np.asarray(pairs, np.int64).reshape(-1, 2)),
        predicates=torch.from_numpy(scores[:, 1:].argmax(1).astype(np.int64) + 1),
        image_size=(60 + image_id, 80),
        image_id=image_id,
        object_scores=torch.from_numpy(rng.random(n).astype(np.float32)) if scored else None,
        predicate_scores=torch.from_numpy(scores) if scored else None,
    )


@pytest.fixture
def graphs() -> list[SceneGraph]:
    rng = np.random.default_rng(0)
    return [graph(rng, 10, 3, 5), graph(rng, 11, 0, 0), graph(rng, 12, 4, 1)]


def ground_truths(predictions: list[SceneGraph]) -> list[SceneGraph]:
    return [
        replace(
            g,
            object_scores=None,
            predicate_scores=None,
            relation_pairs=g.relation_pairs[:1],
            predicates=g.predicates[:1],
        )
        for g in predictions
    ]


def test_round_trip(tmp_path: Path, graphs: list[SceneGraph]) -> None:
    path = tmp_path / "predictions.h5"
    write_predictions(path, graphs, mode=Mode.SGDET, predicate_names=NAMES, split="test")
    content = read_predictions(path)
    assert (content.mode, content.num_predicates, content.split) == (Mode.SGDET, 4, "test")
    assert content.predicate_names == NAMES
    assert content.basgg_version
    assert len(content.graphs) == 3
    for before, after in zip(graphs, content.graphs, strict=True):
        assert after.image_id == before.image_id and after.image_size == before.image_size
        for field in ("boxes", "labels", "relation_pairs", "object_scores", "predicate_scores"):
            assert torch.equal(getattr(after, field), getattr(before, field)), field
        assert torch.equal(after.predicates, before.predicates)  # foreground argmax
    with h5py.File(path) as h5:
        assert h5["predicate_scores"].compression is None  # fastest to read
        assert h5["object_offsets"][()].tolist() == [0, 3, 3, 7]
        assert h5["relation_offsets"][()].tolist() == [0, 5, 5, 6]
        assert json.loads(h5.attrs["predicate_names"]) == list(NAMES)


def test_gzip_file_reads_the_same(tmp_path: Path, graphs: list[SceneGraph]) -> None:
    plain, small = tmp_path / "plain.h5", tmp_path / "small.h5"
    for path, compression in ((plain, None), (small, "gzip")):
        write_predictions(
            path, graphs, mode=Mode.SGDET, predicate_names=NAMES, split="test",
            compression=compression,
        )  # fmt: skip
    with h5py.File(small) as h5:
        assert h5["predicate_scores"].compression == "gzip"
        assert h5["predicate_scores"].chunks == (6, 4)  # whole rows per chunk
    a, b = read_predictions(plain).packed, read_predictions(small).packed
    np.testing.assert_array_equal(a.predicate_scores, b.predicate_scores)
    np.testing.assert_array_equal(a.relation_pairs, b.relation_pairs)


def test_predcls_without_object_scores_stores_ones(tmp_path: Path, graphs) -> None:
    unscored = [replace(g, object_scores=None) for g in graphs]
    write_predictions(
        tmp_path / "p.h5", unscored, mode="predcls", predicate_names=NAMES, split="val"
    )
    content = read_predictions(tmp_path / "p.h5")
    assert content.mode is Mode.PREDCLS and content.split == "val"
    assert torch.equal(content.graphs[0].object_scores, torch.ones(3))
    with pytest.raises(ValueError, match=r"image 0 \(image_id 10\): field object_scores"):
        write_predictions(
            tmp_path / "q.h5", unscored, mode="sgcls", predicate_names=NAMES, split="test"
        )


def test_write_rejects_missing_or_wrong_width_scores(tmp_path: Path, graphs) -> None:
    broken = [graphs[0], replace(graphs[1], predicate_scores=None)]
    with pytest.raises(ValueError, match=r"image 1 \(image_id 11\): field predicate_scores is"):
        write_predictions(
            tmp_path / "p.h5", broken, mode="sgdet", predicate_names=NAMES, split="test"
        )
    with pytest.raises(ValueError, match=r"image 0 .*predicate_scores has 4 columns but 3"):
        write_predictions(
            tmp_path / "p.h5", graphs, mode="sgdet", predicate_names=NAMES[:3], split="test"
        )


def _corrupt(path: Path, name: str, value=None, attribute: bool = False) -> None:
    with h5py.File(path, "a") as h5:
        target = h5.attrs if attribute else h5
        del target[name]
        if value is not None:
            target[name] = value


@pytest.mark.parametrize(
    ("name", "value", "attribute", "message"),
    [
        ("format", "something-else", True, "attribute 'format' is 'something-else'"),
        ("mode", None, True, "attribute 'mode' is missing"),
        ("mode", "detection", True, "attribute 'mode' is 'detection'"),
        ("boxes", None, False, "dataset 'boxes' is missing"),
        ("object_offsets", np.array([0, 3, 2, 7]), False, "'object_offsets' must be 4"),
        ("relation_offsets", np.array([0, 5, 5, 9]), False, "'relation_pairs' has 6 rows"),
        ("predicate_scores", np.zeros((6, 3), np.float32), False, "'predicate_scores' has shape"),
        (
            "relation_pairs",
            np.full((6, 2), 3),
            False,
            r"image 0 \(image_id 10\): field relation_pairs has indices outside \[0, 3\)",
        ),
    ],
)
def test_read_rejects_a_broken_file(tmp_path, graphs, name, value, attribute, message) -> None:
    path = tmp_path / "predictions.h5"
    write_predictions(path, graphs, mode="sgdet", predicate_names=NAMES, split="test")
    _corrupt(path, name, value, attribute)
    with pytest.raises(ValueError, match=message) as error:
        read_predictions(path)
    assert str(path) in str(error.value)


def test_read_rejects_missing_and_non_hdf5_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="predictions file not found"):
        read_predictions(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="text.h5: not an HDF5 predictions file"):
        read_predictions(tmp_path / "text.h5")


def test_validation_names_what_differs(tmp_path: Path, graphs) -> None:
    path = tmp_path / "predictions.h5"
    write_predictions(path, graphs, mode="sgcls", predicate_names=NAMES, split="test")
    content = read_predictions(path)
    targets = ground_truths(graphs)
    validate_predictions(content, targets, num_predicates=4, predicate_names=NAMES)
    with pytest.raises(ValueError, match="3 images but the dataset split has 2"):
        validate_predictions(content, targets[:2])
    renumbered = [targets[0], replace(targets[1], image_id=99), targets[2]]
    with pytest.raises(ValueError, match="image 1: field image_id is 11, the dataset has 99"):
        validate_predictions(content, renumbered)
    fewer = targets[:2] + [
        replace(targets[2], boxes=targets[2].boxes[:3], labels=targets[2].labels[:3])
    ]
    with pytest.raises(ValueError, match=r"image 2 \(image_id 12\): field boxes has 4 boxes, the"):
        validate_predictions(content, fewer)
    with pytest.raises(ValueError, match="predicate_scores has 4 columns but the dataset has 51"):
        validate_predictions(content, targets, num_predicates=51)
    with pytest.raises(ValueError, match="predicate 2 is 'near' in the file but 'under'"):
        validate_predictions(content, targets, predicate_names=(*NAMES[:2], "under", "on"))
    sgdet = replace(content, mode=Mode.SGDET)
    validate_predictions(sgdet, fewer)  # sgdet boxes are free


def test_evaluate_file_equals_evaluate_and_writes_the_report(tmp_path: Path, graphs) -> None:
    path = tmp_path / "predictions.h5"
    write_predictions(path, graphs, mode="predcls", predicate_names=NAMES, split="test")
    targets = ground_truths(graphs)
    result = evaluate_file(
        path, targets, predicate_names=NAMES, ks=(1, 5), out_dir=tmp_path / "report"
    )
    expected = evaluate(targets, graphs, mode=Mode.PREDCLS, num_predicates=4, ks=(1, 5))
    assert result.metrics == pytest.approx(expected.metrics, nan_ok=True)
    written = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert written == [
        "confusion_matrix.npy",
        "confusion_matrix.png",
        "metrics.json",
        "per_image.npz",
        "per_predicate_recall.png",
    ]
    content = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert content["mode"] == "predcls" and content["split"] == "test"
    assert content["metrics"]["R@5"] == pytest.approx(expected.metrics["R@5"])
    np.testing.assert_array_equal(
        np.load(tmp_path / "report" / "confusion_matrix.npy"), expected.confusion
    )


def test_val_size_is_recorded_and_read_back(tmp_path) -> None:
    from basgg.evaluation.predictions import read_predictions_header

    graph = SceneGraph(
        boxes=torch.tensor([[0.0, 0, 4, 4], [1, 1, 5, 5]]),
        labels=torch.tensor([1, 2]),
        relation_pairs=torch.tensor([[0, 1]]),
        predicates=torch.tensor([1]),
        image_size=(8, 8),
        image_id=3,
        predicate_scores=torch.tensor([[0.1, 0.9]]),
    )
    path = tmp_path / "p.h5"
    write_predictions(path, [graph], mode=Mode.PREDCLS, predicate_names=["bg", "on"],
                      split="test", val_size=7)  # fmt: skip
    assert read_predictions(path).val_size == 7
    assert read_predictions_header(path)["val_size"] == 7
    write_predictions(path, [graph], mode=Mode.PREDCLS, predicate_names=["bg", "on"],
                      split="test")  # fmt: skip
    assert read_predictions(path).val_size is None
