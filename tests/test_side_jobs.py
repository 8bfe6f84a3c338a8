"""OnEachBest: a job on each new best checkpoint, beside the training, and which one counts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
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


def _record_start(path: Path) -> None:
    import sys

    preloaded = "basgg.training.runs" in sys.modules
    path.write_text(f"{preloaded} {os.environ.get('BASGG_NUM_THREADS')} {os.environ.get('PROBE')}")
    Path("here.txt").write_text("")  # in the starting process's folder


def test_process_server_forks_processes_that_have_torch_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from basgg.training.launch import process_server, start_method
    from basgg.training.side_jobs import start_beside

    assert start_method() == "spawn"
    with process_server():
        assert start_method() == "forkserver"
        monkeypatch.chdir(tmp_path)  # after the server started: the child follows anyway
        monkeypatch.setenv("PROBE", "seen")
        process = start_beside(_record_start, (tmp_path / "child.txt",))
        process.join(60)
    assert start_method() == "spawn"
    assert process.exitcode == 0
    # preloaded by the server before the fork; single-threaded as every side process
    assert (tmp_path / "child.txt").read_text() == "True 1 seen"
    assert (tmp_path / "here.txt").is_file()


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_of_the_processes_the_server_forked_is_counted() -> None:
    from basgg.training.launch import process_server, process_server_cpu_seconds
    from basgg.training.side_jobs import start_beside

    with process_server():
        before = process_server_cpu_seconds()
        process = start_beside(_burn, (0.5,))
        process.join(60)
        deadline = time.monotonic() + 10
        while process_server_cpu_seconds() - before < 0.4:  # reaped by the server shortly
            assert time.monotonic() < deadline, process_server_cpu_seconds() - before
            time.sleep(0.05)


def test_no_job_for_a_best_before_from_iteration(tmp_path: Path) -> None:
    best = tmp_path / "model_best.pth"
    _write_best(best, 250)  # early: no job
    watcher = OnEachBest(
        best, _record_iteration, tmp_path / "work", from_iteration=500, poll_seconds=0.05
    )
    try:
        time.sleep(0.5)
        assert watcher.jobs_started == 0
        _write_best(best, 500)
        assert _started(watcher)
        folder = watcher.result()
        assert folder is not None and (folder / "result.txt").read_text() == "500"
        assert watcher.jobs_started == 1
    finally:
        watcher.close()


def test_an_early_final_best_leaves_no_result(tmp_path: Path) -> None:
    best = tmp_path / "model_best.pth"
    _write_best(best, 250)
    watcher = OnEachBest(
        best, _record_iteration, tmp_path / "work", from_iteration=500, poll_seconds=0.05
    )
    try:
        assert watcher.result() is None and watcher.jobs_started == 0  # step 4 computes it
    finally:
        watcher.close()


def _hold_until_stopped(ready: Path, cleaned: Path) -> None:
    try:
        ready.write_text("")
        time.sleep(60)
    finally:
        cleaned.write_text("")  # what an interrupted atomic write or lock release does


def test_a_stopped_side_job_runs_its_cleanup(tmp_path: Path) -> None:
    """OnEachBest stops an outdated job with SIGTERM: the job unwinds like an error."""
    from basgg.training.side_jobs import start_beside

    ready, cleaned = tmp_path / "ready", tmp_path / "cleaned"
    process = start_beside(_hold_until_stopped, (ready, cleaned))
    _wait_for(ready)
    process.terminate()
    process.join(30)
    assert process.exitcode == 143  # 128 + SIGTERM, raised as SystemExit
    assert cleaned.is_file()


def test_only_the_fork_server_skips_its_teardown(monkeypatch: pytest.MonkeyPatch) -> None:
    """``server_exit`` registers its quick exit in multiprocessing's fork server alone."""
    import multiprocessing.forkserver  # noqa: F401 - present in the server, as here

    from basgg.training.server_exit import in_fork_server

    assert not in_fork_server()  # pytest, or a basgg command
    monkeypatch.setattr("sys.argv", ["-c"])  # how the server runs: python -c "...main(...)"
    assert in_fork_server()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc")
def test_process_age_counts_from_the_process_start() -> None:
    from basgg.commands.demo import process_age
    from basgg.training.launch import proc_stat_fields

    assert proc_stat_fields()[0] in {"R", "S", "D"}  # field 3, the state: the name is skipped
    first = process_age()
    assert 0.0 < first < 24 * 3600  # this pytest process started before the test
    time.sleep(0.05)
    assert process_age() >= first
