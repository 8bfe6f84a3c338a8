"""``python -m basgg`` runs the command-line interface."""

import sys

from basgg.cli import main

sys.exit(main())
