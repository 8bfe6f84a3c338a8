"""The ``basgg`` command: a thin dispatcher to the modules in :mod:`basgg.commands`.

Only the module of the command being run is imported (``basgg --version`` and ``basgg
--help`` import none), so a command pays only for the libraries it uses.
"""

from __future__ import annotations

import argparse
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


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; only the subcommands in ``commands`` (default: all) get their
    arguments, which imports their modules."""
    parser = argparse.ArgumentParser(
        prog="basgg", description="Scene graph generation with BA-SGG balance adjustment."
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
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
    """Entry point of the ``basgg`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # OpenMP threads that wait sleep instead of spinning, so jobs sharing the cores do not
    # burn each other's time (read when torch loads; an explicit setting wins)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser(_requested_command(argv))
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"basgg {args.command}: error: {message}", file=sys.stderr)
        return 2


def _version() -> str:
    from basgg import __version__

    return f"basgg {__version__}"
