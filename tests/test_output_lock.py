"""One process per OUTPUT_DIR, and a resume that continues only the run it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from test_training import tiny_overrides

from basgg.cli import main
from basgg.config import load_config
from basgg.data.vg150_format import VG150Files
from basgg.output_lock import LOCK_FILE, OutputDirBusyError, output_lock, read_owner
from basgg.training.checkpoint import read_checkpoint
from basgg.training.resume import ResumeConfigError, config_differences

ROOT = Path(__file__).resolve().parents[1]


class Holder:
    """Another process holding ``folder`` until it is killed."""

    def __init__(self, folder: Path, ready: Path) -> None:
        script = f"""
            import time
            from pathlib import Path
            from basgg.output_lock import output_lock
            with output_lock({str(folder)!r}, "basgg train"):
                Path({str(ready)!r}).touch()
                time.sleep(120)
        """
        environment = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)], env=environment
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert self.process.poll() is None, "the holder exited early"
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.02)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def holder(tmp_path: Path):
    held = Holder(tmp_path / "run", tmp_path / "ready")
    yield held
    if held.process.poll() is None:
        held.kill()


def test_a_second_process_on_a_held_folder_is_refused_naming_the_folder_and_pid(
    tmp_path: Path, holder: Holder
) -> None:
    folder = tmp_path / "run"
    with pytest.raises(OutputDirBusyError) as error, output_lock(folder, "basgg test"):
        pass
    assert str(folder) in str(error.value) and f"pid {holder.process.pid}" in str(error.value)
    assert "basgg train" in str(error.value)


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path, holder: Holder) -> None:
    folder = tmp_path / "run"
    holder.kill()  # SIGKILL: no cleanup ran, the lock file with its pid stays
    assert read_owner(folder / LOCK_FILE)["pid"] == holder.process.pid
    with output_lock(folder, "basgg train") as lock:
        assert read_owner(lock)["pid"] == os.getpid()
    assert not (folder / LOCK_FILE).exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with pytest.raises(RuntimeError), output_lock(folder, "basgg train"):
        raise RuntimeError("training diverged")
    assert not (folder / LOCK_FILE).exists()
    held = Holder(folder, tmp_path / "ready")  # another process can take it now
    held.kill()


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    with output_lock(tmp_path, "basgg demo"), output_lock(tmp_path, "basgg train"):
        assert read_owner(tmp_path / LOCK_FILE)["command"] == "basgg demo"
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.parametrize("command", ["train", "test"])
def test_train_or_test_on_a_running_runs_folder_exits_2_without_touching_it(
    command: str,
    tiny_vg150: VG150Files,
    tmp_path: Path,
    holder: Holder,
    capsys: pytest.CaptureFixture,
) -> None:
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_vg150, run, tmp_path / "cache")
    assert main([command, "--no-progress", *overrides, "SOLVER.MAX_ITER", "1"]) == 2
    message = capsys.readouterr().err
    assert f"pid {holder.process.pid}" in message and str(run) in message
    assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]  # nothing written


def test_resuming_with_another_config_is_refused_naming_the_keys(
    tiny_vg150: VG150Files, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_vg150, run, tmp_path / "cache")
    assert main(["train", "--no-progress", *overrides, "SOLVER.MAX_ITER", "1"]) == 0
    saved_config = (run / "config.yaml").read_text()
    log = (run / "train_log.csv").read_text()
    other = [*overrides, "SOLVER.MAX_ITER", "2", "SOLVER.BASE_LR", "0.5", "SEED", "7"]
    capsys.readouterr()
    assert main(["train", "--no-progress", *other]) == 2
    message = capsys.readouterr().err
    assert "SOLVER.BASE_LR: 0.025 in the checkpoint, 0.5 now" in message
    assert "SEED: 0 in the checkpoint, 7 now" in message
    assert "--resume-anyway" in message and "MAX_ITER" not in message  # MAX_ITER may grow
    assert (run / "config.yaml").read_text() == saved_config  # still describes the run
    assert (run / "train_log.csv").read_text() == log
    assert read_checkpoint(run / "model_last.pth")["iteration"] == 1
    assert main(["train", "--no-progress", "--resume-anyway", *other]) == 0
    assert "resuming despite config differences" in capsys.readouterr().out
    assert read_checkpoint(run / "model_last.pth")["iteration"] == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["SOLVER"]["BASE_LR"] == 0.5


def test_config_differences_treat_missing_saved_keys_as_defaults() -> None:
    config = load_config(None, ["SOLVER.BASE_LR", "0.5", "OUTPUT_DIR", "elsewhere"])
    saved = {"SOLVER": {"BASE_LR": 0.01}}  # an older checkpoint: few keys
    assert config_differences(saved, config) == ["SOLVER.BASE_LR: 0.01 in the checkpoint, 0.5 now"]
    assert issubclass(ResumeConfigError, ValueError)


def test_taking_the_folder_removes_temporaries_of_killed_writers(tmp_path: Path) -> None:
    from basgg.atomic import TEMPORARY_PREFIX

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid no longer runs
    leftover = tmp_path / "inference" / "test" / f"{TEMPORARY_PREFIX}{finished.pid}-0a0a-p.h5"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    with output_lock(tmp_path, "basgg test"):
        assert not leftover.exists()
    assert leftover.parent.is_dir()


def test_a_run_that_wrote_nothing_leaves_no_empty_folder(tmp_path: Path) -> None:
    from basgg.output_lock import holding_output_dir

    @holding_output_dir("basgg predict", folder=lambda out: out)
    def fail(out: Path) -> None:
        assert (out / LOCK_FILE).exists()
        raise ValueError("bad checkpoint")

    with pytest.raises(ValueError):
        fail(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError):
        fail(tmp_path / "kept")
    assert (tmp_path / "kept").is_dir()  # a folder the user made stays
