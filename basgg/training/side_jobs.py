"""Work the demo runs beside a training, on the core the training leaves idle.

A CPU training step runs in one thread (docs/speed.md), so on a 2-core machine the second
core has time to spare. :func:`start_beside` runs a function there in a single-threaded
process. :class:`OnEachBest` goes further: it watches a training's best checkpoint and,
each time a new best is written, runs a job on it beside the training (killing the job of
the best before). When the training ends, the job of its final best is usually done, so a
step that needs the final best (the stage-1 confusion matrix) costs no wall time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

from basgg.threads import ENV_VARIABLE

SOURCE_FILE = "source.json"  # written by a job: the iteration of the checkpoint it used


def start_beside(function: Callable[..., None], args: tuple) -> BaseProcess:
    """``function(*args)`` in a new single-threaded process (spawned, not forked: this one
    runs torch; or forked from :func:`basgg.training.launch.process_server`'s server)."""
    import multiprocessing

    from basgg.training.launch import parent_state, start_method

    process = multiprocessing.get_context(start_method()).Process(
        target=_single_threaded, args=(function, args, parent_state())
    )
    process.start()
    return process


def _single_threaded(
    function: Callable[..., None], args: tuple, state: tuple[str, dict[str, str]]
) -> None:
    from basgg.training.launch import take_parent_state

    take_parent_state(state)
    os.environ[ENV_VARIABLE] = "1"  # read by basgg.threads when the run sets its threads
    # stopped (OnEachBest's terminate) like an error: ``finally`` blocks and the exit
    # handlers run, so no temporary file or named semaphore is left behind
    signal.signal(signal.SIGTERM, _exit_on_terminate)
    function(*args)


def _exit_on_terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def checkpoint_iteration(path: Path) -> int:
    """The training iteration a basgg checkpoint was written at."""
    from basgg.training.checkpoint import read_checkpoint

    return int(read_checkpoint(path)["iteration"])


class OnEachBest:
    """Run ``job(checkpoint, folder)`` beside a training on each new best checkpoint.

    A thread polls ``checkpoint`` (the training's ``model_best.pth``; basgg writes it by
    atomic rename, so each new best is a new file). For each new version it stops the job
    still running on an older one and starts ``job`` in a single-threaded process on a
    private copy, writing into a fresh folder under ``workspace``. Nothing starts while
    ``wait_for`` (another side process) is alive, so at most one side process runs at a
    time, and nothing for a best written before iteration ``from_iteration``: an early best
    is rarely the final one, and its job would only take the core the training's own
    second thread uses (:mod:`basgg.models.concurrent_branches`).

    Args:
        checkpoint: the best checkpoint to watch.
        job: picklable ``(checkpoint_copy, folder) -> None``; writes its outputs in folder.
        workspace: parent of the jobs' folders (emptied first, removed by :meth:`close`).
        wait_for: a side process that must end before the first job starts.
        from_iteration: the first training iteration whose best gets a job.
        poll_seconds: how often the checkpoint is looked at.
    """

    def __init__(
        self,
        checkpoint: Path,
        job: Callable[[Path, Path], None],
        workspace: Path,
        *,
        wait_for: BaseProcess | None = None,
        from_iteration: int = 0,
        poll_seconds: float = 0.5,
    ) -> None:
        self.checkpoint = checkpoint
        self.job = job
        self.workspace = workspace
        self.wait_for = wait_for
        self.from_iteration = from_iteration
        self.poll_seconds = poll_seconds
        self.jobs_started = 0
        self._process: BaseProcess | None = None
        self._folder: Path | None = None
        self._version: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        shutil.rmtree(workspace, ignore_errors=True)
        self._thread = threading.Thread(target=self._watch, name="on-each-best", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            if self.wait_for is None or not self.wait_for.is_alive():
                self._start_on_new_version()

    def _start_on_new_version(self) -> None:
        """Start a job if the checkpoint changed since the last one (stopping that one)."""
        version = _file_version(self.checkpoint)
        with self._lock:
            if version is None or version == self._version:
                return
            self._version = version
            if self.from_iteration > 0:
                try:
                    iteration = checkpoint_iteration(self.checkpoint)
                except Exception:  # noqa: BLE001 - unreadable now: look again at the next poll
                    self._version = None
                    return
                if iteration < self.from_iteration:
                    return
            self._stop_job()
            self.jobs_started += 1
            self._folder = self.workspace / f"best-{self.jobs_started}"
            self._process = start_beside(_job_entry, (self.job, self.checkpoint, self._folder))

    def result(self) -> Path | None:
        """After the training: the folder of the job on the final best, once it has ended
        well (started now if the final best came after the last poll); ``None`` without a
        best or when that job failed. Stops watching."""
        self._stop.set()
        self._thread.join()
        if self.wait_for is not None:
            self.wait_for.join()
        self._start_on_new_version()
        with self._lock:
            if self._process is None or self._folder is None:
                return None
            self._process.join()
            if self._process.exitcode != 0:
                return None
            source = self._folder / SOURCE_FILE
            if not source.is_file():
                return None
            iteration = int(json.loads(source.read_text())["iteration"])
            if iteration != checkpoint_iteration(self.checkpoint):
                return None
            return self._folder

    def close(self) -> None:
        """Stop any job and remove the workspace."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            self._stop_job()
        shutil.rmtree(self.workspace, ignore_errors=True)

    def _stop_job(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.terminate()
            self._process.join()


def _file_version(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _job_entry(job: Callable[[Path, Path], None], checkpoint: Path, folder: Path) -> None:
    """``job`` on a private copy of ``checkpoint``, then ``folder/source.json`` naming the
    copy's iteration (a best written meanwhile cannot mix in)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / "checkpoint.pth"
    shutil.copyfile(checkpoint, copy)  # the training replaces the file, never edits it
    iteration = checkpoint_iteration(copy)
    job(copy, folder)
    copy.unlink()
    (folder / SOURCE_FILE).write_text(json.dumps({"iteration": iteration}))
