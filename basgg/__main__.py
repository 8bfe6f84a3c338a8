"""``python -m basgg`` runs the command-line interface."""

from basgg.cli import run

if __name__ == "__main__":
    run()
