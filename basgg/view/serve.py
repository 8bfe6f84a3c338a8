"""``basgg view --serve``: serve a written site on 127.0.0.1 (never on other interfaces)."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"


def make_server(site: Path, port: int = 8000) -> ThreadingHTTPServer:
    """A server of the files of ``site`` bound to 127.0.0.1:``port`` (0: any free port)."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    return ThreadingHTTPServer((HOST, port), handler)


def serve(site: Path, port: int = 8000) -> None:
    """Serve ``site`` on ``http://127.0.0.1:PORT/`` until interrupted (Ctrl-C)."""
    with make_server(site, port) as server:
        print(f"serving {site} on http://{HOST}:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
