"""Start several training processes on this machine without ``torchrun``.

``launch(function, args, world_size=2)`` spawns ``world_size`` processes, sets in each the
variables ``torchrun`` would set (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), joins one gloo (CPU) or nccl (CUDA)
process group and calls ``function(*args)`` in every process; the group lives until the
function returns, so several runs (train, confusion matrix, train, test) share it. Every run
inside splits its work by rank (:mod:`basgg.training.distributed`) and the main process
writes the files, so the outputs are those of one process.

The processes train the same global batches as one process (``SOLVER.IMS_PER_BATCH`` is
global). Whether that is faster depends on the step: on 2 CPU cores the demo's Motifs step
took 68 ms in one single-threaded process and 67-80 ms in two, whose gradient exchange over
gloo costs ~19 ms per iteration; feature extraction, on the other hand, shares out well
(docs/speed.md).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from basgg.threads import available_cpus

PRELOADED = ("basgg.training.runs",)  # what a run needs: torch, torchvision, the models
_START_METHOD = ["spawn"]  # the way processes start now (see process_server)


def start_method() -> str:
    """How :func:`launch` and :func:`basgg.training.side_jobs.start_beside` start processes:
    ``spawn``, or ``forkserver`` inside :func:`process_server`."""
    return _START_METHOD[0]


@contextlib.contextmanager
def process_server(modules: Sequence[str] = ()) -> Iterator[None]:
    """Within the block, start processes by forking a server that imported torch once.

    A spawned process spends seconds importing torch, torchvision and basgg before it does
    any work (~5 s on a 2-core machine). Entering starts multiprocessing's ``forkserver``
    beside what comes next, importing :data:`PRELOADED` and ``modules`` (it runs nothing
    else, so it has no threads a fork could break); every process started in the block is
    a fork of it and starts at once, then takes on this process's working folder and
    environment (:func:`take_parent_state`). Where the platform has no ``forkserver``
    (Windows) processes are spawned as before.
    """
    import multiprocessing
    from multiprocessing import forkserver

    if "forkserver" not in multiprocessing.get_all_start_methods():
        yield
        return
    preload = [*PRELOADED, *modules, "basgg.training.server_exit"]  # the last: a quick exit
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
    forkserver.ensure_running()
    previous = _START_METHOD[0]
    _START_METHOD[0] = "forkserver"
    try:
        yield
    finally:
        _START_METHOD[0] = previous


def process_server_cpu_seconds() -> float:
    """CPU seconds of the :func:`process_server` server and the processes it forked and
    reaped (they are its children, not this process's: ``RUSAGE_CHILDREN`` misses them);
    0 where that cannot be read (no server, no ``/proc``)."""
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    try:
        fields = proc_stat_fields(pid)
        ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def proc_stat_fields(pid: int | str | None = "self") -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name: index 0 is field 3
    (state), index 11 field 14 (utime), index 19 field 22 (starttime).

    Raises:
        OSError: where the file cannot be read (no such process, no ``/proc``).
    """
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def parent_state() -> tuple[str, dict[str, str]]:
    """This process's working folder and environment, for a process it starts to take on
    with :func:`take_parent_state` (a fork of the server would keep the server's)."""
    return os.getcwd(), dict(os.environ)


def take_parent_state(state: tuple[str, dict[str, str]]) -> None:
    """Enter the folder and set the environment :func:`parent_state` recorded."""
    folder, environment = state
    os.chdir(folder)
    os.environ.clear()
    os.environ.update(environment)


def default_world_size(device: str, batch_size: int | None = None) -> int:
    """Processes for a run on ``device``: one per usable CPU core or per visible GPU, at most
    ``batch_size`` when given (a training process needs an image of every global batch)."""
    if device.startswith("cuda"):
        import torch

        count = torch.cuda.device_count()
    else:
        count = available_cpus()
    return max(1, count if batch_size is None else min(count, batch_size))


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch(
    function: Callable[..., Any], args: tuple = (), *, world_size: int, device: str = "cpu"
) -> None:
    """Run ``function(*args)`` in ``world_size`` processes forming one process group.

    With ``world_size == 1`` the function runs in this process. ``function`` must be
    importable by name (processes are spawned, not forked: a fork of a process that already
    runs torch threads can deadlock).

    Raises:
        RuntimeError: when a process fails, with that process's traceback.
    """
    if world_size <= 1:
        function(*args)
        return
    import torch.multiprocessing as torch_multiprocessing

    port = free_port()
    try:
        torch_multiprocessing.start_processes(
            _worker,
            args=(world_size, port, device, function, args, parent_state()),
            nprocs=world_size,
            join=True,
            start_method=start_method(),
        )
    except torch_multiprocessing.ProcessRaisedException as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        cause = lines[-1] if lines else "unknown error"  # e.g. "ValueError: KEY: ..."
        raise RuntimeError(f"a training process failed: {cause}\n{error}") from None
    except torch_multiprocessing.ProcessExitedException as error:
        raise RuntimeError(f"a training process died: {error}") from None


def _worker(
    rank: int,
    world_size: int,
    port: int,
    device: str,
    function: Callable[..., Any],
    args: tuple,
    state: tuple[str, dict[str, str]],
) -> None:
    from basgg.training.distributed import init_distributed, shutdown_distributed

    take_parent_state(state)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    init_distributed(device)
    try:
        function(*args)
    finally:
        shutdown_distributed()
