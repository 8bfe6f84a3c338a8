"""``python -m basgg`` runs the command-line interface."""

from basgg.cli import run

run()
