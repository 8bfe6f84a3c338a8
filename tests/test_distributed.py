"""Multi-process training: batch shares, and two gloo processes equal one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_training import tiny_overrides

from basgg.config import config_to_dict, load_config
from basgg.data.vg150_format import VG150Files
from basgg.training.checkpoint import read_checkpoint
from basgg.training.distributed import DistributedContext, batch_items, epoch_order
from basgg.training.runs import train

ROOT = Path(__file__).resolve().parents[1]


def test_epoch_order_is_a_seeded_permutation() -> None:
    order = epoch_order(10, seed=3, epoch=1)
    assert sorted(order.tolist()) == list(range(10))
    assert torch.equal(order, epoch_order(10, seed=3, epoch=1))
    assert not torch.equal(order, epoch_order(10, seed=3, epoch=2))
    assert not torch.equal(order, epoch_order(10, seed=4, epoch=1))


def test_process_shares_make_up_the_one_process_batch() -> None:
    one = DistributedContext()
    two = [DistributedContext(rank=rank, world_size=2) for rank in range(2)]
    for iteration in range(8):  # 7 images, 4 per batch: batches straddle epochs
        whole = batch_items(iteration, num_items=7, batch_size=4, seed=0, context=one)
        shares = [batch_items(iteration, num_items=7, batch_size=4, seed=0, context=c)
                  for c in two]  # fmt: skip
        assert sorted(shares[0] + shares[1]) == sorted(whole)
        assert [p for p, _ in whole] == list(range(4 * iteration, 4 * iteration + 4))
    epoch_zero = [index for it in range(7) for _, index in
                  batch_items(it, num_items=7, batch_size=1, seed=0, context=one)]  # fmt: skip
    assert epoch_zero == epoch_order(7, seed=0, epoch=0).tolist()
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        batch_items(0, num_items=7, batch_size=1, seed=0, context=two[0])


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tiny_vg150: VG150Files, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    # no dropout: the processes' forward passes then draw no random numbers
    extra = ["SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2",
             "MODEL.ROI_RELATION_HEAD.FREQUENCY_BIAS_DROPOUT", "0",
             "MODEL.ROI_RELATION_HEAD.CONTEXT_DROPOUT_RATE", "0"]  # fmt: skip
    single = load_config(None, [*tiny_overrides(tiny_vg150, tmp_path / "one", cache), *extra])
    train(single, progress=False)

    double = load_config(None, [*tiny_overrides(tiny_vg150, tmp_path / "two", cache), *extra])
    config_path = tmp_path / "two.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(double)))
    script = tmp_path / "run_train.py"
    script.write_text(
        "import sys\n"
        "from basgg.training.runs import train\n"
        "from basgg.config import load_config\n"
        "train(load_config(sys.argv[1]), progress=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", str(script), str(config_path)]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    expected = read_checkpoint(tmp_path / "one" / "model_final.pth")["model"]
    actual = read_checkpoint(tmp_path / "two" / "model_final.pth")["model"]
    for key, tensor in expected.items():
        torch.testing.assert_close(actual[key], tensor, rtol=1e-5, atol=1e-6, msg=key)
    log_one = (tmp_path / "one" / "train_log.csv").read_text().splitlines()
    log_two = (tmp_path / "two" / "train_log.csv").read_text().splitlines()
    assert len(log_one) == len(log_two) == 5
    for row_one, row_two in zip(log_one[1:], log_two[1:], strict=True):
        loss_one, loss_two = float(row_one.split(",")[2]), float(row_two.split(",")[2])
        assert loss_two == pytest.approx(loss_one, rel=1e-5)


def confusion_and_test(config) -> None:  # noqa: ANN001 - spawned by launch()
    from basgg.training.distributed import init_distributed
    from basgg.training.runs import compute_confusion_matrix, evaluate_checkpoint

    context = init_distributed(config.MODEL.DEVICE)
    compute_confusion_matrix(config, progress=False, context=context)
    evaluate_checkpoint(config, split="test", progress=False, context=context)


@pytest.mark.slow
def test_launched_processes_share_features_confusion_and_test(
    tiny_vg150: VG150Files, tmp_path: Path
) -> None:
    """Two launched processes extract half of each split's features and predict half of
    the images each; the caches, the confusion matrix and the test metrics are those of one
    process."""
    import json
    import shutil

    import numpy as np

    from basgg.training.launch import launch

    extra = ["SOLVER.MAX_ITER", "3"]
    config = load_config(None, [*tiny_overrides(tiny_vg150, tmp_path / "one", tmp_path / "c1"),
                                *extra])  # fmt: skip
    train(config, progress=False)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    for name in ("one", "two"):
        for path in (tmp_path / name).glob("*.npy"):
            path.unlink()
    launch(confusion_and_test, (config,), world_size=1)
    other = load_config(None, [*tiny_overrides(tiny_vg150, tmp_path / "two", tmp_path / "c2"),
                               *extra])  # fmt: skip
    launch(confusion_and_test, (other,), world_size=2)

    two_files = sorted(path.name for path in (tmp_path / "c2").iterdir())  # c1: also training's
    assert all(name.endswith(".pt") for name in two_files)  # no parts left
    assert sum(name.startswith(("features_test_", "features_train_")) for name in two_files) == 2
    for name in two_files:
        if name.startswith("features_"):
            first = torch.load(tmp_path / "c1" / name, weights_only=True)
            second = torch.load(tmp_path / "c2" / name, weights_only=True)
            assert torch.equal(first["num_objects"], second["num_objects"])
            for key in ("object_features", "union_features"):
                torch.testing.assert_close(first[key], second[key], rtol=0, atol=2e-3)
    np.testing.assert_array_equal(
        np.load(tmp_path / "one" / "confusion_matrix.npy"),
        np.load(tmp_path / "two" / "confusion_matrix.npy"),
    )
    metrics = [
        json.loads((tmp_path / name / "inference" / "test" / "metrics.json").read_text())
        for name in ("one", "two")
    ]
    for key, value in metrics[0]["metrics"].items():
        assert metrics[1]["metrics"][key] == pytest.approx(value, abs=1e-6), key


def fail_in_second_process() -> None:  # spawned by launch()
    if os.environ["RANK"] == "1":
        raise ValueError("SOME.KEY: boom")


@pytest.mark.slow
def test_launch_names_the_failing_process_cause() -> None:
    from basgg.training.launch import launch

    with pytest.raises(RuntimeError) as raised:
        launch(fail_in_second_process, world_size=2)
    first_line = str(raised.value).splitlines()[0]
    assert first_line == "a training process failed: ValueError: SOME.KEY: boom"
