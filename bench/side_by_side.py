"""Two identical short trainings run side by side, against one alone: does sharing hurt?

    python bench/side_by_side.py --data /work/data/synthvg            # basgg defaults
    python bench/side_by_side.py --data DIR --env BASGG_NUM_THREADS=1  # one thread per job
    python bench/side_by_side.py --data DIR --env OMP_WAIT_POLICY=ACTIVE  # the old spinning

Each job is a whole ``basgg train`` process on the first ``--images`` images of a SynthVG
folder (Motifs PredCls, ``--iterations`` iterations, its own OUTPUT_DIR and feature cache,
so it extracts features and trains), started with the environment given by ``--env`` on top
of this one (OMP_NUM_THREADS / MKL_NUM_THREADS are removed unless given, so basgg picks the
threads itself). Prints the wall time of one job alone, of each of two jobs started together,
and the ratio (target: at most 2.5, the fair share being 2 on a machine whose cores both
jobs share). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("datasets/synthvg"))
    parser.add_argument("--images", type=int, default=400, help="DATASETS.NUM_IMAGES")
    parser.add_argument("--iterations", type=int, default=150, help="SOLVER.MAX_ITER")
    parser.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", action="store_true", help="keep the output folders")
    return parser.parse_args()


def command(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "basgg", "train", "--config", "synthvg_predcls.yaml",
        "--no-progress",
        "DATASETS.DATA_DIR", str(args.data), "DATASETS.NUM_IMAGES", str(args.images),
        "DATASETS.VAL_SIZE", str(max(1, args.images // 10)),
        "SOLVER.MAX_ITER", str(args.iterations), "SOLVER.WARMUP_ITERS", "10",
        "SOLVER.VAL_PERIOD", str(args.iterations), "SOLVER.CHECKPOINT_PERIOD",
        str(args.iterations), "OUTPUT_DIR", str(out), "FEATURE_CACHE_DIR", str(out / "cache"),
    ]  # fmt: skip


def run_jobs(args: argparse.Namespace, env: dict[str, str], count: int, root: Path) -> list:
    """Start ``count`` identical jobs at once; each one's wall seconds."""
    jobs = []
    for index in range(count):
        out = root / f"job{count}_{index}"
        shutil.rmtree(out, ignore_errors=True)
        log = (root / f"job{count}_{index}.log").open("w")
        start = time.perf_counter()
        process = subprocess.Popen(command(args, out), env=env, stdout=log, stderr=log)
        jobs.append((process, start, log))
    seconds = []
    for process, start, log in jobs:
        if process.wait() != 0:
            raise SystemExit(f"a job failed; see {log.name}")
        seconds.append(time.perf_counter() - start)
        log.close()
    return seconds


def main() -> None:
    args = parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(item.split("=", 1) for item in args.env)
    root = Path(tempfile.mkdtemp(prefix="basgg_side_by_side_"))
    print(f"jobs: basgg train, {args.images} images, {args.iterations} iterations; "
          f"extra environment: {args.env or 'none'}; logs in {root}")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    run_jobs(args, env, 1, root)  # warm-up: bytecode and page cache
    alone = run_jobs(args, env, 1, root)[0]
    together = run_jobs(args, env, 2, root)
    print(f"alone:        {alone:7.1f} s")
    print(f"side by side: {together[0]:7.1f} s and {together[1]:7.1f} s")
    print(f"ratio (each / alone): {together[0] / alone:.2f} and {together[1] / alone:.2f}"
          " (target <= 2.5)")  # fmt: skip
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
