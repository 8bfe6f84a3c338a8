"""One process per output folder: a lock file holding the owner's pid.

``with output_lock(folder, "basgg train"):`` creates ``folder/.basgg.lock``, locks it with
``fcntl.flock`` and writes the pid, host, command and start time into it. A second process
asking for the same folder gets :class:`OutputDirBusyError` naming the folder and the owner's pid.
The operating system drops a ``flock`` when its process dies, however it dies, so a lock left
by a killed run (its pid is gone) is simply taken over; on a normal or failing exit the file
is removed. Where ``fcntl`` is missing (Windows) the file is created exclusively and a lock
whose pid no longer runs is taken over.

The lock is re-entrant within a process (``basgg demo`` trains in folders it also holds).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from basgg.atomic import clean_temporaries, process_alive

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

F = TypeVar("F", bound=Callable[..., Any])
LOCK_FILE = ".basgg.lock"
_HELD: dict[Path, int] = {}  # folder -> nesting depth in this process


class OutputDirBusyError(ValueError):
    """Another running process uses the output folder."""


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder`` for this process while the block runs; yields the lock file's path.

    On first entry the folder is created and temporary files that killed writers left in it
    (see :mod:`basgg.atomic`) are removed.

    Raises:
        OutputDirBusyError: naming the folder, the owner's pid, host and command.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield key / LOCK_FILE
        finally:
            _HELD[key] -= 1
        return
    path = key / LOCK_FILE
    descriptor = _acquire(path, folder)
    _HELD[key] = 1
    try:
        try:
            _write_owner(descriptor, command)
        except OSError as error:  # e.g. a full disk: name the file
            raise OSError(error.errno, error.strerror, str(path)) from error
        clean_temporaries(key, recursive=True)
        yield path
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(descriptor)
        if created:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                key.rmdir()


def holding_output_dir(
    command: str, folder: Callable[..., Any] = lambda config, *_, **__: config.OUTPUT_DIR
) -> Callable[[F], F]:
    """Decorator: the function runs holding the folder ``folder(*args, **kwargs)`` gives
    (default: its first argument's ``OUTPUT_DIR``), see :func:`output_lock`. Among the
    processes of a ``torchrun`` group (``RANK`` set) only the main one (rank 0) takes it."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def holding(*args: Any, **kwargs: Any) -> Any:
            if not is_main_process():  # torchrun: the main process holds it
                return function(*args, **kwargs)
            with output_lock(folder(*args, **kwargs), command):
                return function(*args, **kwargs)

        return holding  # type: ignore[return-value]

    return decorate


def is_main_process() -> bool:
    """Whether this process is the main one of a ``torchrun`` group (``RANK`` 0), or alone."""
    return os.environ.get("RANK", "0") in ("", "0")


def read_owner(path: str | Path) -> dict:
    """The owner record of a lock file ({} when unreadable)."""
    try:
        owner = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _acquire(path: Path, folder: Path) -> int:
    for _ in range(100):
        if fcntl is not None:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(descriptor)
                raise _busy(folder, path) from None
            if _same_file(descriptor, path):  # not unlinked by a finishing owner meanwhile
                return descriptor
            os.close(descriptor)
            continue
        try:  # pragma: no cover - Windows
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # pragma: no cover
            if process_alive(int(read_owner(path).get("pid", 0))):
                raise _busy(folder, path) from None
            with contextlib.suppress(OSError):
                os.unlink(path)
    raise _busy(folder, path)


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except OSError:
        return False


def _write_owner(descriptor: int, command: str) -> None:
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(descriptor, 0)
    os.lseek(descriptor, 0, os.SEEK_SET)
    os.write(descriptor, json.dumps(owner).encode())


def _busy(folder: Path, path: Path) -> OutputDirBusyError:
    owner = read_owner(path)
    who = f"pid {owner.get('pid', '?')}"
    if owner.get("host"):
        who += f" on {owner['host']}"
    if owner.get("command"):
        who += f", {owner['command']}"
    if owner.get("started"):
        who += f", since {owner['started']}"
    return OutputDirBusyError(
        f"{folder}: output folder in use by another basgg process ({who}); wait for it to "
        f"finish or choose another OUTPUT_DIR (lock file {path})"
    )
