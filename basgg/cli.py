"""The ``basgg`` command: a thin dispatcher to the modules in :mod:`basgg.commands`.

Only the module of the command being run is imported (``basgg --version`` and ``basgg
--help`` import none), so a command pays only for the libraries it uses.
"""

from __future__ import annotations

import argparse
import atexit
import errno
import importlib
import os
import sys
from collections.abc import Sequence

# subcommand -> (module under basgg.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job on the embedded default dataset (SynthVG)"),
    "data": (
        "data",
        "generate SynthVG, convert your own JSON annotations, or summarise a VG150-format dataset",
    ),
    "eval": ("evaluate", "score a predictions file against a dataset"),
    "train": ("train", "train a relation model (resumes from OUTPUT_DIR when it can)"),
    "test": ("test", "predict the test split with a trained model and score it"),
    "confmat": ("confmat", "BA-SGG: the stage-1 predicate confusion matrix on train"),
    "train-detector": ("train_detector", "train the Faster R-CNN detector SGDet uses"),
    "predict": ("predict", "scene graphs of your own images (JSON + PNG per image)"),
    "view": ("view", "a browsable offline results site of predictions (index.html)"),
}

DEBUG_HELP = "show the Python traceback of an error instead of a one-line message"


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; only the subcommands in ``commands`` (default: all) get their
    arguments, which imports their modules."""
    parser = argparse.ArgumentParser(
        prog="basgg", description="Scene graph generation with BA-SGG balance adjustment."
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        if commands is None or name in commands:
            module = importlib.import_module(f"basgg.commands.{module_name}")
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def _requested_command(argv: Sequence[str]) -> list[str]:
    """The subcommand named on the command line (the first word not starting with '-')."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return [first] if first in COMMANDS else []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``basgg`` console script; returns the exit status.

    A bad input (``ValueError``, ``KeyError``) or a file system error (``OSError``) is one
    line on stderr and exit status 2; any other error is one line and status 1. ``--debug``
    lets the exception through, with its traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenMP threads that wait sleep instead of spinning, so jobs sharing the cores do not
    # burn each other's time (read when torch loads; an explicit setting wins)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser(_requested_command(argv))
    args = parser.parse_args(argv)
    if args.debug:
        return int(args.run(args) or 0)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"basgg {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, OSError) as error:
        print(f"basgg {args.command}: error: {error_message(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a user sees one line, not a traceback
        print(
            f"basgg {args.command}: error: {type(error).__name__}: {_first_line(error)} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def run() -> None:
    """The ``basgg`` console script: :func:`main`, then a quick exit.

    Once torch and torchvision are imported, the interpreter takes 1-2 s to tear its
    modules down at exit (measured on a 2-core machine), time a user waits for after the
    last line. Here the exit handlers run (multiprocessing's, logging's, tqdm's), the
    standard streams are flushed, and the process ends without that teardown. Every file
    basgg writes is closed before :func:`main` returns. Tests call :func:`main`.
    """
    try:
        code = main()
    except SystemExit as stop:  # --help, --version, a usage error
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    atexit._run_exitfuncs()  # noqa: SLF001 - what the interpreter would run at exit
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (basgg ... | head)
            pass
    os._exit(code)


# errno -> what a user can act on
_CAUSES = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "not a directory (a file is in the way)",
    errno.EISDIR: "is a directory, not a file",
    errno.EEXIST: "already exists (and is not a directory)",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
}


def error_message(error: BaseException) -> str:
    """One line for an error: a ``KeyError``'s text, an ``OSError``'s path and cause."""
    if isinstance(error, KeyError):
        return str(error.args[0]) if error.args else "KeyError"
    if isinstance(error, OSError) and error.errno is not None and error.filename is not None:
        cause = _CAUSES.get(error.errno, error.strerror or os.strerror(error.errno))
        if error.filename2 is not None:
            return f"{error.filename} -> {error.filename2}: {cause}"
        return f"{error.filename}: {cause}"
    if isinstance(error, OSError) and error.errno is not None and not error.filename:
        cause = _CAUSES.get(error.errno, error.strerror or os.strerror(error.errno))
        return f"{cause} ({_first_line(error)})"
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _version() -> str:
    from basgg import __version__

    return f"basgg {__version__}"
