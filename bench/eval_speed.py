"""Whole-process speed of ``basgg eval`` against a re-implementation of SGB's evaluation loop.

    python bench/eval_speed.py                              # 2,003 SGDet images, ~557 rows each
    python bench/eval_speed.py --test-images 26446 --no-sgb # VG150-test-sized, basgg only

What is compared: two separate Python processes run on the same files, a synthetic
VG150-format dataset and a predictions file (``bench/eval_data.py``; SGDet, 21-27 detected
boxes and all their ordered pairs per image, 51 predicate columns):

- ``basgg eval PREDICTIONS --data DIR --zero-shot Z.npy --no-plot`` (and once with plots),
- ``bench/sgb_eval.py``: SGB's per-image relation evaluation (``sgg_eval.py`` +
  ``vg_eval.py``: R, ngR, zR, ngzR, mR, ngmR and, outside sgdet, A), without SGB's torch
  import, BoxList conversions and COCO mAP pass, so the real SGB is slower than this.

Both read the same zero-shot list. Times are whole processes (interpreter start, imports,
reading, scoring, writing), wall and CPU (user + sys of the child), after one warm-up run
(bytecode cached, files in the page cache), the best of ``--repeat`` runs. The metrics of
both must agree; the largest difference is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--test-images", type=int, default=2003)
    parser.add_argument("--mode", default="sgdet", choices=("predcls", "sgcls", "sgdet"))
    parser.add_argument("--work", type=Path, default=None, help="default /tmp/basgg_eval_bench_N")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of basgg eval")
    parser.add_argument("--no-sgb", action="store_true", help="skip the SGB loop (slow)")
    return parser.parse_args()


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child, stdout) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def best_of(command: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    runs = [timed(command, env)[:2] for _ in range(repeat)]
    return min(run[0] for run in runs), min(run[1] for run in runs)


def main() -> None:
    args = parse_args()
    work = args.work or Path(f"/tmp/basgg_eval_bench_{args.mode}_{args.test_images}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    python = sys.executable
    predictions, data = work / "predictions.h5", work / "data"
    if not predictions.is_file():
        command = [python, str(ROOT / "bench" / "eval_data.py"), "--out", str(work),
                   "--test-images", str(args.test_images), "--mode", args.mode]  # fmt: skip
        subprocess.run(command, env=env, check=True)
    zero_shot = work / "zero_shot.npy"
    if not zero_shot.is_file():
        script = (
            "import sys, numpy as np\n"
            "from basgg.data.vg150_format import VG150Files\n"
            "from basgg.data.vg150_targets import read_split_targets\n"
            "from basgg.evaluation.zero_shot import zero_shot_triplets\n"
            "t, _ = read_split_targets(VG150Files(sys.argv[1]), splits=['test', 'train'],"
            " val_size=0)\n"
            "np.save(sys.argv[2], zero_shot_triplets(t['train'], t['test']))\n"
        )
        subprocess.run([python, "-c", script, str(data), str(zero_shot)], env=env, check=True)
    eval_command = [python, "-m", "basgg", "eval", str(predictions), "--data", str(data),
                    "--zero-shot", str(zero_shot), "--val-size", "0"]  # fmt: skip
    no_plot = [*eval_command, "--no-plot", "--out", str(work / "eval_no_plot")]
    with_plot = [*eval_command, "--out", str(work / "eval_plot")]
    timed([python, "-m", "basgg", "--version"], env)  # warm-up: bytecode
    timed(no_plot, env)  # warm-up: page cache
    version = best_of([python, "-m", "basgg", "--version"], env, args.repeat)
    fast = best_of(no_plot, env, args.repeat)
    plotted = best_of(with_plot, env, max(1, args.repeat - 1))
    rows = predictions.stat().st_size / 2**20
    print(f"data: {work} ({args.test_images} test images, {args.mode}, predictions "
          f"{rows:,.0f} MiB)")  # fmt: skip
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"basgg --version              wall {version[0]:6.2f} s   CPU {version[1]:6.2f} s")
    print(f"basgg eval --no-plot         wall {fast[0]:6.2f} s   CPU {fast[1]:6.2f} s")
    print(f"basgg eval (with plots)      wall {plotted[0]:6.2f} s   CPU {plotted[1]:6.2f} s")
    if args.no_sgb:
        return
    sgb_json = work / "sgb_metrics.json"
    sgb_command = [python, str(ROOT / "bench" / "sgb_eval.py"), str(predictions), "--data",
                   str(data), "--zero-shot", str(zero_shot), "--json", str(sgb_json)]  # fmt: skip
    sgb_wall, sgb_cpu, _ = timed(sgb_command, env)
    print(f"SGB loop (bench/sgb_eval.py) wall {sgb_wall:6.2f} s   CPU {sgb_cpu:6.2f} s")
    ours = json.loads((work / "eval_no_plot" / "metrics.json").read_text())["metrics"]
    theirs = json.loads(sgb_json.read_text())
    worst = max(abs(ours[key] - value) for key, value in theirs.items())
    print(f"metrics compared: {len(theirs)} ({', '.join(sorted(theirs)[:4])}, ...), "
          f"largest |basgg - SGB loop| = {worst:.1e}")  # fmt: skip
    print(f"speed-up, whole process, basgg eval --no-plot vs SGB loop: wall "
          f"{sgb_wall / fast[0]:.1f}x, CPU {sgb_cpu / fast[1]:.1f}x; with plots: wall "
          f"{sgb_wall / plotted[0]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
