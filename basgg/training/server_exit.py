"""Preloaded into :func:`basgg.training.launch.process_server`'s server process only.

The server has torch imported, and the interpreter takes 1-2 s to tear that down when the
server ends (once the basgg command that started it has exited). A pipeline such as
``basgg demo | tee demo.log`` waits for every process holding the output, so here the
server's exit skips that teardown, as :func:`basgg.cli.run` does for the command itself.
The processes the server forks leave through ``os._exit`` already, never through this.
"""

from __future__ import annotations

import atexit
import os
import sys


def in_fork_server() -> bool:
    """Whether this is multiprocessing's fork server (``python -c`` running its ``main``)."""
    return sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules


if in_fork_server():
    atexit.register(os._exit, 0)
