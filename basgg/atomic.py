"""Atomic file writes: a reader (or a later run) sees the old file or the new one, never half.

Every file basgg writes for users goes through :func:`atomic_output`: the writer fills a
temporary file in the same folder (so the final rename never crosses a filesystem), the file
is flushed to disk with ``fsync``, then :func:`os.replace` puts it in place in one step. A
kill at any moment leaves the previous good file untouched.

Temporary names are ``.basgg-tmp-<pid>-<token>-<name>``: hidden, recognisable, and ending in
the final name so that writers which pick a format from the suffix (matplotlib, numpy) still
do. A kill leaves such a file behind; :func:`clean_temporaries` removes the ones whose
process is gone, and every writer runs it on its folder (for its own name) first, so
leftovers disappear at the next run of the same writer.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMPORARY_PREFIX = ".basgg-tmp-"
SWEEP_DEPTH = 3  # sub-folder levels a recursive sweep looks into


def temporary_name(path: Path) -> Path:
    """A fresh temporary path beside ``path`` (same folder, same suffix)."""
    token = secrets.token_hex(4)
    return path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{token}-{path.name}")


@contextlib.contextmanager
def atomic_output(
    path: str | Path, *, make_parents: bool = True, durable: bool = True, clean: bool = True
) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    The caller writes the yielded path by name (``h5py.File(temp, "w")``,
    ``figure.savefig(temp)``, ``temp.write_text(...)``). If the block raises, the temporary
    file is removed and ``path`` is left as it was.

    Args:
        path: the final file.
        make_parents: create the folder first.
        durable: ``fsync`` the file and its folder (survives power loss, not only kills).
            Bulk writers of many small files (images) turn it off.
        clean: first remove this name's temporaries left by killed writers. Bulk writers
            turn it off and call :func:`clean_temporaries` once on their folder.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    if clean:
        clean_temporaries(path.parent, name=path.name)
    temporary = temporary_name(path)
    try:
        yield temporary
        if durable:
            _fsync_file(temporary)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise _naming(error, path, temporary) from error
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


def write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes(path: str | Path, data: bytes, *, bulk: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``. ``bulk``: one of many files
    (no fsync, no sweep for leftovers: see :func:`atomic_output`)."""
    with atomic_output(path, durable=not bulk, clean=not bulk) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def save_figure(figure: Any, path: str | Path, **options: Any) -> Path:
    """``figure.savefig(path, **options)`` atomically (format from the suffix), then close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_output(path) as temporary:
            figure.savefig(temporary, format=Path(path).suffix.lstrip(".") or None, **options)
    finally:
        plt.close(figure)
    return Path(path)


def clean_temporaries(
    folder: str | Path, *, name: str | None = None, recursive: bool = False
) -> list[Path]:
    """Remove temporary files left in ``folder`` by killed writers; returns what was removed.

    Only files whose writing process no longer runs are removed, so a concurrent writer's
    file in progress is safe. ``name`` limits the sweep to temporaries of that final name;
    ``recursive`` also sweeps sub-folders, down to :data:`SWEEP_DEPTH` levels (an output
    folder's layout: ``inference/test/predictions.h5``), so a folder given by mistake (a home
    directory) is not walked whole.
    """
    folder = Path(folder)
    pattern = f"{TEMPORARY_PREFIX}*-{name}" if name else f"{TEMPORARY_PREFIX}*"
    depths = range(SWEEP_DEPTH + 1) if recursive else range(1)
    try:
        candidates = [path for depth in depths for path in folder.glob("*/" * depth + pattern)]
    except OSError:
        return []
    removed = []
    for candidate in candidates:
        pid = _writer_pid(candidate.name)
        if pid is None or process_alive(pid):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _naming(error: OSError, path: Path, temporary: Path) -> OSError:
    """``error`` naming the file the user asked for, not its temporary stand-in."""
    if error.errno is None or error.filename not in (None, str(temporary), temporary):
        return error
    return type(error)(error.errno, error.strerror or os.strerror(error.errno), str(path))


def _writer_pid(name: str) -> int | None:
    pid = name[len(TEMPORARY_PREFIX) :].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
