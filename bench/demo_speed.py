"""Wall time of the whole ``basgg demo`` from an empty folder, optionally against another
revision, runs alternating (this host's speed drifts by +-30% over an hour, so only runs
taken in one sitting compare).

Each run is a whole process (``python -m basgg demo --no-progress`` in a fresh temporary
folder: generation, features, both trainings, tests, site), as a user waits for it. Prints
each run's step timeline (the demo's own ``[n/7 t s]`` lines), its wall time and its test
table, so that speed and metrics are read side by side. Usage::

    python bench/demo_speed.py                       # this checkout, once
    python bench/demo_speed.py --against d7ab227 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 180.0  # issue 13: the demo on a quiet 2-core machine
STEP = re.compile(r"^\[(\d)/7\s+(\d+) s\] (.*)$")
TABLE = re.compile(r"^(R@|mR@|F@100|PairR@20|specific R|RI@20)")


def worktree(revision: str, folder: Path) -> Path:
    """A checkout of ``revision`` in ``folder`` (``git worktree``, removed by the caller)."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision],
        check=True,
        capture_output=True,
    )
    return folder


def run_demo(source: Path) -> tuple[float, list[str], list[str]]:
    """One demo of the basgg in ``source`` from an empty folder: wall seconds, step lines
    and test-table lines."""
    environment = dict(os.environ, PYTHONPATH=str(source))
    with tempfile.TemporaryDirectory(prefix="basgg-demo-speed-") as folder:
        output = Path(folder) / "demo.log"
        with output.open("w") as log:
            start = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, "-m", "basgg", "demo", "--no-progress"],
                cwd=folder,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            code = process.wait()  # the demo process ends: what a shell waits for
            seconds = time.perf_counter() - start
        text = output.read_text()
    if code != 0:
        raise SystemExit(f"demo of {source} failed:\n{text[-3000:]}")
    lines = text.splitlines()
    steps = [line for line in lines if STEP.match(line)]
    table = list(dict.fromkeys(line for line in lines if TABLE.match(line)))
    return seconds, steps, table


def host_speed(images: int = 60) -> float:
    """Milliseconds per SynthVG image rendered in this process, one thread: a fixed piece
    of CPU work that tells the host's current speed (the same code varies 1.5-2x on a
    shared machine; compare demo runs only at similar figures)."""
    sys.path.insert(0, str(ROOT))
    from basgg.synthvg.generator import load_glyphs, load_settings, synthesize, synthvg_vocabulary

    settings, glyphs = load_settings(), load_glyphs()
    vocabulary = synthvg_vocabulary(settings, glyphs)
    synthesize(settings, glyphs, vocabulary, 0)  # warm-up
    start = time.perf_counter()
    for index in range(images):
        synthesize(settings, glyphs, vocabulary, index)
    return (time.perf_counter() - start) / images * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="another git revision to time alternately")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    sources = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory(prefix="basgg-demo-revision-") as holder:
        if args.against:
            sources = {args.against: worktree(args.against, Path(holder) / "tree"), **sources}
        try:
            print(f"host speed: {host_speed():.1f} ms per SynthVG image (lower is faster)")
            for round_number in range(1, args.rounds + 1):
                for name, source in sources.items():
                    seconds, steps, table = run_demo(source)
                    verdict = "under" if seconds < TARGET_SECONDS else "over"
                    print(f"\n{name}, round {round_number}: {seconds:.1f} s "
                          f"({verdict} the {TARGET_SECONDS:.0f} s target)")  # fmt: skip
                    print("\n".join(f"  {line}" for line in steps + table), flush=True)
        finally:
            if args.against:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force",
                     str(Path(holder) / "tree")],
                    capture_output=True,
                )  # fmt: skip
    print(f"\nhost speed: {host_speed():.1f} ms per SynthVG image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
