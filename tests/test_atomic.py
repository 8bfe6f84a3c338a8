"""Atomic writes: a writer killed mid-write leaves the previous good file, and its temporary
file is cleaned up at the next run of the same writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from basgg import atomic
from basgg.evaluation import read_predictions, write_predictions
from basgg.structures import Mode, SceneGraph
from basgg.training.checkpoint import atomic_save, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("__background__", "has", "near", "on")


def _graphs(value: float, images: int = 2) -> list[SceneGraph]:
    return [
        SceneGraph(
            boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]]),
            labels=torch.tensor([1, 2]),
            relation_pairs=torch.tensor([[0, 1]]),
            predicates=torch.tensor([1]),
            image_size=(30, 40),
            image_id=image_id,
            object_scores=torch.tensor([1.0, 1.0]),
            predicate_scores=torch.full((1, len(NAMES)), value),
        )
        for image_id in range(1, images + 1)
    ]


def _run_and_kill(script: str, ready: Path, timeout: float = 60.0) -> None:
    """Run ``script`` in a fresh interpreter and SIGKILL it once it creates ``ready``."""
    environment = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=environment)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None:
            raise AssertionError(f"the writer exited ({process.returncode}) before the kill")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the writer never reached the kill point")
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_killing_the_predictions_writer_mid_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "inference" / "test" / "predictions.h5"
    write_predictions(path, _graphs(0.25), mode=Mode.PREDCLS, predicate_names=NAMES, split="test")
    ready = tmp_path / "ready"
    # the second write stops (and is killed) after its first dataset reached the file
    _run_and_kill(
        f"""
        import time, h5py, torch
        from pathlib import Path
        from basgg.evaluation import write_predictions
        from basgg.structures import Mode
        import tests.test_atomic as t
        original = h5py.Group.create_dataset
        def slow(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            self.file.flush()
            Path({str(ready)!r}).touch()
            time.sleep(60)
            return result
        h5py.Group.create_dataset = slow
        write_predictions(Path({str(path)!r}), t._graphs(0.75), mode=Mode.PREDCLS,
                          predicate_names=t.NAMES, split="test")
        """,
        ready,
    )
    content = read_predictions(path)  # the old file, whole
    assert [g.image_id for g in content.graphs] == [1, 2]
    assert float(content.graphs[0].predicate_scores[0, 1]) == 0.25
    leftovers = list(path.parent.glob(atomic.TEMPORARY_PREFIX + "*"))
    assert len(leftovers) == 1  # the killed writer's temporary file
    write_predictions(path, _graphs(0.5), mode=Mode.PREDCLS, predicate_names=NAMES, split="test")
    assert float(read_predictions(path).graphs[0].predicate_scores[0, 1]) == 0.5
    assert list(path.parent.glob(atomic.TEMPORARY_PREFIX + "*")) == []  # cleaned up


def test_a_killed_checkpoint_save_leaves_no_temporary_file_after_the_next_save(
    tmp_path: Path,
) -> None:
    path = tmp_path / "model_last.pth"
    atomic_save({"format": 1, "model": {"w": torch.zeros(2)}, "model_info": {}}, path)
    ready = tmp_path / "ready"
    _run_and_kill(
        f"""
        import time, torch
        from pathlib import Path
        from basgg.training.checkpoint import atomic_save
        original = torch.save
        def slow(state, target, *args, **kwargs):
            if hasattr(target, "write"):  # a stream or a path: both are fine
                target.write(b"half a checkpoint")
                target.flush()
            else:
                Path(target).write_bytes(b"half a checkpoint")
            Path({str(ready)!r}).touch()
            time.sleep(60)
        torch.save = slow
        atomic_save({{"format": 1, "model": {{"w": torch.ones(2)}}, "model_info": {{}}}},
                    Path({str(path)!r}))
        """,
        ready,
    )
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.zeros(2))
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".")]) == 1
    atomic_save({"format": 1, "model": {"w": torch.ones(2)}, "model_info": {}}, path)
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_last.pth", "ready"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = atomic.write_text(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError), atomic.atomic_output(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]


def test_clean_temporaries_removes_only_files_of_dead_writers(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # a pid that no longer runs
    dead = tmp_path / f"{atomic.TEMPORARY_PREFIX}{process.pid}-ab12-metrics.json"
    alive = tmp_path / f"{atomic.TEMPORARY_PREFIX}{os.getpid()}-cd34-metrics.json"
    other = tmp_path / f"{atomic.TEMPORARY_PREFIX}{process.pid}-ef56-config.yaml"
    deep = tmp_path / "inference" / f"{atomic.TEMPORARY_PREFIX}{process.pid}-0000-x.h5"
    deep.parent.mkdir()
    for path in (dead, alive, other, deep):
        path.write_text("x")
    assert atomic.clean_temporaries(tmp_path, name="metrics.json") == [dead]
    assert alive.exists() and other.exists()
    assert sorted(atomic.clean_temporaries(tmp_path, recursive=True)) == sorted([other, deep])
    assert alive.exists()


def test_figures_and_numpy_files_keep_their_format(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, _ = plt.subplots()
    png = atomic.save_figure(figure, tmp_path / "plot.png", dpi=20)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with atomic.atomic_output(tmp_path / "counts.npy") as temporary:
        np.save(temporary, np.arange(3))
    assert np.load(tmp_path / "counts.npy").tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.npy", "plot.png"]


def test_a_log_row_cut_short_by_a_kill_is_dropped_on_resume(tmp_path: Path) -> None:
    from basgg.training.logs import TRAIN_LOG, TrainingLog

    (tmp_path / TRAIN_LOG).write_text(
        "iteration,lr,loss\n1,0.1,2.0\n2,0.1,1.5\n3,0.1,1."  # the kill hit mid-row 3
    )
    log = TrainingLog(tmp_path, resume_iteration=3, tensorboard=False)
    log.training(3, 0.1, {"loss": 1.25}, 0.5)
    assert (tmp_path / TRAIN_LOG).read_text().splitlines() == [
        "iteration,lr,loss",
        "1,0.1,2.0",
        "2,0.1,1.5",
        "3,0.1,1.250000",
    ]
