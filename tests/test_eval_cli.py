"""``basgg eval`` end to end on a tiny VG150-format dataset written with ``write_vg150``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from basgg.cli import main
from basgg.data.vg150 import VG150Dataset
from basgg.data.vg150_format import VG150Files, write_vg150
from basgg.data.vg150_targets import read_split_targets, relation_counts
from basgg.data.vocabulary import BACKGROUND, Vocabulary
from basgg.evaluation import write_predictions
from basgg.structures import SceneGraph

VOCABULARY = Vocabulary((BACKGROUND, "cat", "dog", "man"), (BACKGROUND, "has", "near", "on"))
HAS, NEAR, ON = 1, 2, 3
CAT, DOG, MAN = 1, 2, 3


def scene(image_id: int, labels, relations) -> SceneGraph:
    """Boxes on the 1024 grid of a 1024 x 768 image, so they read back exactly."""
    boxes = [[100.0 * i, 50.0, 100.0 * i + 80, 150.0] for i in range(len(labels))]
    return SceneGraph(
        boxes=torch.tensor(boxes),
        labels=torch.tensor(labels, dtype=torch.int64),
        relation_pairs=torch.tensor([r[:2] for r in relations], dtype=torch.int64).reshape(-1, 2),
        predicates=torch.tensor([r[2] for r in relations], dtype=torch.int64),
        image_size=(768, 1024),
        image_id=image_id,
    )


TRAIN = [
    scene(1, [MAN, DOG], [(0, 1, HAS)]),
    scene(2, [MAN, CAT, DOG], [(0, 1, HAS), (1, 2, NEAR)]),
]
TEST = [
    # unseen in train: (man, dog, near) and (cat, man, on)
    scene(3, [MAN, DOG, CAT], [(0, 1, HAS), (0, 1, NEAR), (2, 0, ON)]),
    scene(4, [DOG, CAT], [(1, 0, NEAR)]),
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "vg150"
    write_vg150(VG150Files(root), TRAIN + TEST, [0, 0, 2, 2], VOCABULARY)
    return root


def predcls_prediction(gt: SceneGraph, wrong: set[tuple[int, int]] = frozenset()) -> SceneGraph:
    """All ordered pairs; pairs on a GT relation say its first predicate unless in ``wrong``."""
    n = gt.num_objects
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    truth = {}
    for (s, o), p in zip(gt.relation_pairs.tolist(), gt.predicates.tolist(), strict=True):
        truth.setdefault((s, o), p)
    scores = np.full((len(pairs), 4), 0.05, np.float32)
    for row, pair in enumerate(pairs):
        if pair in truth:
            predicate = HAS + (truth[pair] % 3) if pair in wrong else truth[pair]
            scores[row, predicate] = 0.9 - 0.01 * row
    order = np.argsort(-scores[:, 1:].max(1), kind="stable")
    return replace(
        gt,
        relation_pairs=torch.tensor(pairs, dtype=torch.int64)[order],
        predicates=torch.from_numpy(scores[order, 1:].argmax(1) + 1).long(),
        object_scores=torch.ones(n),
        predicate_scores=torch.from_numpy(scores[order]),
    )


def write(path: Path, predictions: list[SceneGraph], mode: str = "predcls") -> Path:
    write_predictions(
        path, predictions, mode=mode, predicate_names=VOCABULARY.predicates, split="test"
    )
    return path


def test_eval_end_to_end(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture) -> None:
    predictions = [predcls_prediction(TEST[0], wrong={(2, 0)}), predcls_prediction(TEST[1])]
    path = write(tmp_path / "run.h5", predictions)
    out = tmp_path / "report"
    args = ["eval", str(path), "--data", str(dataset), "--val-size", "0", "--out", str(out)]
    assert main([*args, "--ks", "1", "5"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    # image 3: "has" and the duplicate pair's "near" need two rows -> 1/3; image 4: 1/1
    assert metrics["R@5"] == pytest.approx((1 / 3 + 1) / 2)
    assert metrics["zR@5"] == 0.0  # both zero-shot rows of image 3 are missed
    assert metrics["ngR@5"] == pytest.approx((2 / 3 + 1) / 2)  # ng also reads "near" on (0, 1)
    assert metrics["A@1"] == pytest.approx((1 + 1) / (3 + 1))
    assert metrics["mR@5"] == pytest.approx((1 + 0.5 + 0) / 3)  # has 1, near [0, 1], on 0
    assert metrics["F@5"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert {"mR@5/head", "mR@5/body", "mR@5/tail"} <= metrics.keys()
    assert "R  " in printed and "@5" in printed and "ngmR" in printed
    assert "66.67" in printed  # R@5 x 100
    assert "zero-shot list: 2 triplets (test triplets absent from train)" in printed
    for name in ("per_predicate_recall.png", "confusion_matrix.png", "per_image.npz"):
        assert (out / name).stat().st_size > 0
    confusion = np.load(out / "confusion_matrix.npy")
    assert confusion[HAS, HAS] == 1 and confusion[NEAR, HAS] == 1 and confusion[ON, HAS] == 1
    assert confusion[NEAR, NEAR] == 1 and confusion.sum() == 4


def test_eval_with_a_zero_shot_file(tmp_path: Path, dataset: Path, capsys) -> None:
    predictions = [predcls_prediction(TEST[0]), predcls_prediction(TEST[1])]
    path = write(tmp_path / "run.h5", predictions)
    table = tmp_path / "zero_shot.npy"
    np.save(table, np.array([[CAT, DOG, NEAR]]))  # columns (sub, obj, predicate)
    legacy = tmp_path / "zeroshot_triplet.pytorch"
    torch.save(torch.tensor([[CAT, DOG, NEAR]]), legacy, _use_new_zipfile_serialization=False)
    for zero_shot in (table, legacy):
        out = tmp_path / zero_shot.stem
        args = ["eval", str(path), "--data", str(dataset), "--val-size", "0", "--out", str(out)]
        assert main([*args, "--zero-shot", str(zero_shot)]) == 0
        metrics = json.loads((out / "metrics.json").read_text())["metrics"]
        assert metrics["zR@20"] == 1.0  # only image 4 has the triplet; it is hit
        assert json.loads((out / "metrics.json").read_text())["counts"]["zero_shot_images"] == 1
    assert "zero-shot list: 1 triplets" in capsys.readouterr().out


def test_eval_sgdet_default_report_folder(tmp_path: Path, dataset: Path) -> None:
    predictions = [
        replace(predcls_prediction(gt), object_scores=torch.full((gt.num_objects,), 0.5))
        for gt in TEST
    ]
    path = write(tmp_path / "sgdet.h5", predictions, mode="sgdet")
    assert main(["eval", str(path), "--data", str(dataset), "--val-size", "0"]) == 0
    content = json.loads((tmp_path / "sgdet_eval" / "metrics.json").read_text())
    assert content["mode"] == "sgdet" and "A@20" not in content["metrics"]
    assert not (tmp_path / "sgdet_eval" / "confusion_matrix.png").exists()


def test_eval_rejects_a_mismatched_file(tmp_path: Path, dataset: Path, capsys) -> None:
    short = predcls_prediction(TEST[1])
    short = replace(
        short,
        boxes=short.boxes[:1],
        labels=short.labels[:1],
        object_scores=short.object_scores[:1],
        relation_pairs=short.relation_pairs[:0],
        predicates=short.predicates[:0],
        predicate_scores=short.predicate_scores[:0],
    )
    path = write(tmp_path / "bad.h5", [predcls_prediction(TEST[0]), short])
    assert main(["eval", str(path), "--data", str(dataset), "--val-size", "0"]) == 2
    error = capsys.readouterr().err
    assert "bad.h5: image 1 (image_id 4): field boxes has 1 boxes, the ground truth has 2" in error
    assert main(["eval", str(tmp_path / "none.h5"), "--data", str(dataset)]) == 2
    assert "none.h5: predictions file not found" in capsys.readouterr().err


def test_eval_no_plot_and_no_torch(tmp_path: Path, dataset: Path) -> None:
    """``basgg eval`` imports neither torch nor matplotlib with --no-plot (a fresh process)."""
    path = write(tmp_path / "run.h5", [predcls_prediction(TEST[0]), predcls_prediction(TEST[1])])
    out = tmp_path / "report"
    code = (
        "import sys\n"
        "from basgg.cli import main\n"
        f"status = main(['eval', {str(path)!r}, '--data', {str(dataset)!r}, '--val-size', '0',"
        f" '--out', {str(out)!r}, '--no-plot'])\n"
        "loaded = [m for m in ('torch', 'matplotlib', 'torchvision') if m in sys.modules]\n"
        "print('loaded:', loaded)\n"
        "sys.exit(status)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout
    assert (out / "metrics.json").is_file() and (out / "confusion_matrix.npy").is_file()
    assert not list(out.glob("*.png"))


def test_packed_targets_equal_the_dataset_ground_truth(dataset: Path) -> None:
    files = VG150Files(dataset)
    targets, vocabulary = read_split_targets(files, splits=["test", "train"], val_size=1)
    assert vocabulary == VOCABULARY
    for split, packed in targets.items():
        reference = VG150Dataset(files, split=split, val_size=1, load_images=False)
        assert len(packed) == len(reference) > 0
        for index in range(len(reference)):
            expected, got = reference.ground_truth(index), packed.graph(index)
            assert (got.image_id, got.image_size) == (expected.image_id, expected.image_size)
            for field in ("boxes", "labels", "relation_pairs", "predicates"):
                assert torch.equal(getattr(got, field), getattr(expected, field)), field
        np.testing.assert_array_equal(
            relation_counts(packed, vocabulary.num_predicates), reference.relation_counts()
        )
