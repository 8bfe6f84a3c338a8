"""``basgg data synth|stats|convert|export``: dataset generation, summaries and conversion."""

from __future__ import annotations

import argparse

from basgg.commands import convert, export, stats, synth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    for name, module, help_text in (
        ("synth", synth, "generate the SynthVG dataset in VG150 format"),
        ("stats", stats, "predicate and object distributions of a VG150-format dataset"),
        ("convert", convert, "JSON annotations of your own images -> a VG150-format dataset"),
        ("export", export, "a VG150-format dataset -> JSON annotations"),
    ):
        sub = actions.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)


def run(args: argparse.Namespace) -> int:  # replaced by the chosen action's run
    raise AssertionError("unreachable: argparse sets run to the action")
