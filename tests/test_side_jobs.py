"""OnEachBest: a job on each new best checkpoint, beside the training, and which one counts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from basgg.training.checkpoint import CHECKPOINT_FORMAT
from basgg.training.side_jobs import SOURCE_FILE, OnEachBest, checkpoint_iteration


def _write_best(path: Path, iteration: int) -> None:
    """A minimal basgg checkpoint, replaced by rename as the training does."""
    temporary = path.with_suffix(".tmp")
    state = {"format": CHECKPOINT_FORMAT, "model": {}, "model_info": {}, "iteration": iteration}
    torch.save(state, temporary)
    os.replace(temporary, path)


def _record_iteration(checkpoint: Path, folder: Path) -> None:
    (folder / "result.txt").write_text(str(checkpoint_iteration(checkpoint)))


def _fail(checkpoint: Path, folder: Path) -> None:
    raise RuntimeError("job failed")


def _wait_for(path: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_the_job_of_the_final_best_is_kept(tmp_path: Path) -> None:
    best = tmp_path / "model_best.pth"
    _write_best(best, 250)
    watcher = OnEachBest(best, _record_iteration, tmp_path / "work", poll_seconds=0.05)
    try:
        _wait_for(tmp_path / "work" / "best-1" / SOURCE_FILE)
        _write_best(best, 500)  # a new best: a second job, on it
        folder = watcher.result()
        assert folder == tmp_path / "work" / "best-2"
        assert (folder / "result.txt").read_text() == "500"
        assert not (folder / "checkpoint.pth").exists()  # the private copy is removed
        assert watcher.jobs_started == 2
    finally:
        watcher.close()
    assert not (tmp_path / "work").exists()


def test_no_result_without_a_best_or_after_a_failed_job(tmp_path: Path) -> None:
    best = tmp_path / "model_best.pth"
    watcher = OnEachBest(best, _record_iteration, tmp_path / "work", poll_seconds=0.05)
    assert watcher.result() is None and watcher.jobs_started == 0
    watcher.close()
    _write_best(best, 250)
    watcher = OnEachBest(best, _fail, tmp_path / "work", poll_seconds=0.05)
    try:
        deadline = time.monotonic() + 60
        while watcher.jobs_started == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert watcher.result() is None
    finally:
        watcher.close()


def test_nothing_starts_while_the_other_side_process_runs(tmp_path: Path) -> None:
    import multiprocessing

    best = tmp_path / "model_best.pth"
    _write_best(best, 250)
    other = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(1.5,))
    other.start()
    watcher = OnEachBest(
        best, _record_iteration, tmp_path / "work", wait_for=other, poll_seconds=0.05
    )
    try:
        time.sleep(0.5)
        assert other.is_alive() and watcher.jobs_started == 0
        other.join()
        folder = watcher.result() if _started(watcher) else None
        assert folder is not None and (folder / "result.txt").read_text() == "250"
    finally:
        watcher.close()


def _started(watcher: OnEachBest, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while watcher.jobs_started == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return watcher.jobs_started > 0
