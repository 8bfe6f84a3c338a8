"""``basgg train`` and ``basgg test`` on a tiny config: exit codes, outputs, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_training import tiny_overrides

from basgg.cli import main
from basgg.config import config_to_dict, load_config
from basgg.data.vg150 import VG150Dataset
from basgg.data.vg150_format import VG150Files
from basgg.evaluation import read_predictions

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tiny_vg150: VG150Files, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny config file, trained once with ``python -m basgg train``."""
    folder = tmp_path_factory.mktemp("cli")
    overrides = tiny_overrides(tiny_vg150, folder / "run", folder / "cache")
    config = load_config(None, [*overrides, "SOLVER.MAX_ITER", "2"])
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "basgg", "train", "--config", str(path), "--no-progress",
         "SOLVER.CHECKPOINT_PERIOD", "1"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "best val mR@50" in result.stdout
    return path


def test_train_writes_the_resolved_config_checkpoints_and_logs(trained: Path) -> None:
    run = trained.parent / "run"
    for name in ("config.yaml", "model_last.pth", "model_best.pth", "model_final.pth",
                 "train_log.csv", "val_log.csv"):  # fmt: skip
        assert (run / name).is_file(), name
    saved = load_config(run / "config.yaml")
    assert saved.SOLVER.CHECKPOINT_PERIOD == 1 and saved.SOLVER.MAX_ITER == 2


def test_test_writes_predictions_and_prints_the_table(
    trained: Path, tiny_vg150: VG150Files, capsys: pytest.CaptureFixture
) -> None:
    assert main(["test", "--config", str(trained), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "mode predcls" in printed and "mR" in printed and "@100" in printed
    predictions_path = trained.parent / "run" / "inference" / "test" / "predictions.h5"
    assert f"predictions: {predictions_path}" in printed
    predictions = read_predictions(predictions_path)
    test_split = VG150Dataset(tiny_vg150, split="test", load_images=False)
    assert [g.image_id for g in predictions.graphs] == test_split.image_ids
    for graph, index in zip(predictions.graphs, range(len(test_split)), strict=True):
        n = test_split.ground_truth(index).num_objects
        assert graph.num_relations == n * (n - 1)  # every ordered pair
        ranked = graph.predicate_scores[:, 1:].max(dim=1).values
        assert (ranked[:-1] >= ranked[1:]).all()  # best first
    content = json.loads((predictions_path.parent / "metrics.json").read_text())
    assert {"PairR@100", "RI@100"} <= content["metrics"].keys()
    assert content["information"].startswith("-ln") and content["informative"] is None
    assert "RI (nats)" in printed and "PairR" in printed


def test_test_with_a_corrupt_checkpoint_names_it(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "broken.pth"
    broken.write_bytes((trained.parent / "run" / "model_best.pth").read_bytes()[:500])
    code = main(["test", "--config", str(trained), "--checkpoint", str(broken), "--no-progress"])
    assert code == 2
    assert f"{broken}: cannot read the checkpoint" in capsys.readouterr().err


def test_test_with_another_head_names_the_difference(
    trained: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["test", "--config", str(trained), "--no-progress",
                 "MODEL.ROI_RELATION_HEAD.PREDICTOR", "TransformerPredictor"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "model_best.pth" in error and "'TransformerPredictor' here" in error


def test_unknown_key_fails_before_training(trained: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--config", str(trained), "SOLVER.MAX_ITERS", "3"]) == 2
    assert "did you mean 'SOLVER.MAX_ITER'" in capsys.readouterr().err


def test_stage_two_and_sgdet_are_refused_with_a_reason(
    trained: Path, capsys: pytest.CaptureFixture
) -> None:
    head = "MODEL.ROI_RELATION_HEAD."
    assert main(["train", "--config", str(trained), head + "WITH_CLEAN_CLASSIFIER", "True"]) == 2
    assert "stage 2" in capsys.readouterr().err
    sgdet = [head + "USE_GT_BOX", "False", head + "USE_GT_OBJECT_LABEL", "False"]
    assert main(["train", "--config", str(trained), *sgdet]) == 2
    assert "needs a trained detector in MODEL.PRETRAINED_DETECTOR_CKPT" in capsys.readouterr().err
    missing = ["MODEL.PRETRAINED_DETECTOR_CKPT", "nowhere.pth"]
    assert main(["train", "--config", str(trained), *sgdet, *missing]) == 2
    assert "nowhere.pth: detector checkpoint not found" in capsys.readouterr().err
    assert main(["test", "--config", str(trained), *sgdet]) == 2
    assert "mode 'predcls' in the checkpoint, 'sgdet' here" in capsys.readouterr().err


def test_basgg_eval_scores_the_written_predictions_the_same(
    trained: Path, tiny_vg150: VG150Files, capsys: pytest.CaptureFixture
) -> None:
    assert main(["test", "--config", str(trained), "--no-progress"]) == 0
    folder = trained.parent / "run" / "inference" / "test"
    out = trained.parent / "eval"
    predictions = str(folder / "predictions.h5")
    assert main(["eval", predictions, "--data", str(tiny_vg150.root), "--out", str(out)]) == 0
    ours = json.loads((folder / "metrics.json").read_text())["metrics"]
    theirs = json.loads((out / "metrics.json").read_text())["metrics"]
    assert ours == theirs and "mR@50" in ours


@pytest.mark.slow
def test_train_nproc_two_trains_in_two_processes(
    tiny_vg150: VG150Files, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    overrides = tiny_overrides(tiny_vg150, tmp_path / "run", tmp_path / "cache")
    assert main(["train", "--no-progress", "--nproc", "2", *overrides, "SOLVER.MAX_ITER", "2"]) == 0
    out = capfd.readouterr().out
    assert "CPU threads per process: 1 (available CPUs / 2 processes), 2 processes" in out
    assert out.count("best val mR@50") == 1  # printed by the main process only
    assert (tmp_path / "run" / "model_final.pth").is_file()
    assert not list((tmp_path / "cache").glob("*.part*"))
    assert main(["train", "--nproc", "-1", *overrides]) != 0
    assert "--nproc must be >= 0, got -1" in capfd.readouterr().err
