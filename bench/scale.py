"""How basgg's costs grow with the dataset: SynthVG at several sizes, extrapolated to VG150.

For each size (train images = 3/4, test = 1/4) it runs the real commands in child processes,
each under ``/usr/bin/time``-style accounting (wall, CPU, peak RSS of that process):

1. ``basgg data synth``: generation time and dataset size on disk;
2. ``basgg train ... SOLVER.MAX_ITER 0``: the train + val feature caches (time, bytes);
3. ``basgg train ... SOLVER.MAX_ITER N``: training iterations per second (cache present;
   the rate comes from ``train_log.csv``'s seconds column, so start-up is excluded);
4. ``basgg test`` twice: the first also extracts the test cache, the second only predicts
   and scores (the evaluation time).

It also computes, without running a detector, how big the two kinds of cache would be:
the frozen-trunk cache (object + every ordered pair's union vector) and the detector-pyramid
cache of ``MODEL.FEATURE_STORAGE cache`` (see docs/features.md). Each measured cost is fitted
as ``fixed + per_image * images`` (extrapolated to VG150's 108,073 images) and as
``a * images**b`` (the exponent b says how it grows). Usage::

    OMP_NUM_THREADS=1 python bench/scale.py --sizes 1000 4000 16000 --work /tmp/scale \\
        --iterations 200 > scale.json

The JSON report goes to stdout; progress and one JSON line per size to stderr
(``--rows FILE...`` fits rows saved from earlier runs). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VG150_IMAGES = 108_073
CONFIG = "synthvg_predcls.yaml"


def run(command: list[str], *, env: dict[str, str]) -> dict[str, float]:
    """Run ``command``; its wall and CPU seconds and peak RSS (MiB)."""
    print("$ " + " ".join(command), file=sys.stderr, flush=True)

    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({status}): {' '.join(command)}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def train_rate(log: Path) -> float:
    """Iterations per second from ``train_log.csv`` (first logged row excluded: warm-up)."""
    with log.open() as stream:
        rows = list(csv.DictReader(stream))
    if len(rows) < 2:
        return float("nan")
    first, last = rows[0], rows[-1]
    iterations = int(last["iteration"]) - int(first["iteration"])
    seconds = float(last["seconds"]) - float(first["seconds"])
    return iterations / seconds if seconds > 0 else float("nan")


def cache_estimates(data_dir: Path) -> dict[str, float]:
    """Bytes per image of the frozen-trunk cache (exact from the box counts) and of the
    detector-pyramid cache (SynthVG detector: 64 channels, strides 8/16/32 at 320 x 240)."""
    sys.path.insert(0, str(ROOT))
    import h5py
    import numpy as np

    with h5py.File(data_dir / "VG-SGG-with-attri.h5", "r") as handle:
        first, last = handle["img_to_first_box"][:], handle["img_to_last_box"][:]
    counts = np.where(first >= 0, last - first + 1, 0).astype(np.float64)
    object_dim, union_dim = 112 * 4, 112 * 4 + 2 * 64  # the default frozen-trunk vectors
    trunk = float(np.mean(counts * object_dim + counts * (counts - 1) * union_dim) * 2)
    levels = sum(math.ceil(240 / s) * math.ceil(320 / s) for s in (8, 16, 32))
    return {
        "objects_per_image": float(counts.mean()),
        "trunk_cache_bytes_per_image": trunk,
        "pyramid_cache_bytes_per_image": float(64 * levels * 2),
    }


def linear_fit(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """(fixed, per_image) of value = fixed + per_image * size by least squares."""
    mean_x, mean_y = sum(sizes) / len(sizes), sum(values) / len(values)
    spread = sum((x - mean_x) ** 2 for x in sizes)
    if spread == 0:
        return float("nan"), float("nan")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(sizes, values, strict=True)) / spread
    return mean_y - slope * mean_x, slope


def power_fit(sizes: list[int], values: list[float]) -> tuple[float, float]:
    """(a, b) of value = a * size**b by least squares in log-log."""
    points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if v > 0]
    if len(points) < 2:
        return float("nan"), float("nan")
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
        (x - mean_x) ** 2 for x, _ in points
    )
    return math.exp(mean_y - slope * mean_x), slope


def measure(size: int, work: Path, iterations: int, env: dict[str, str]) -> dict:
    data, output = work / f"synthvg_{size}", work / f"run_{size}"
    python = [sys.executable, "-m", "basgg"]
    num_test = size // 4
    row: dict = {"images": size}
    if not (data / "VG-SGG-with-attri.h5").exists():
        row["generate"] = run(
            [*python, "data", "synth", "--out", str(data), "--num-train", str(size - num_test),
             "--num-test", str(num_test), "--workers", "1"],
            env=env,
        )  # fmt: skip
    row["dataset_bytes"] = folder_bytes(data)
    common = ["--config", CONFIG, "DATASETS.DATA_DIR", str(data), "OUTPUT_DIR", str(output),
              "DATASETS.VAL_SIZE", str(max(100, size // 40)), "SOLVER.VAL_PERIOD", "0",
              "SOLVER.CHECKPOINT_PERIOD", "0", "SOLVER.LOG_PERIOD", "10"]  # fmt: skip
    row["features_train_val"] = run([*python, "train", *common, "SOLVER.MAX_ITER", "0"], env=env)
    row["cache_bytes_train_val"] = folder_bytes(output / "feature_cache")
    (output / "model_final.pth").unlink(missing_ok=True)
    (output / "train_log.csv").unlink(missing_ok=True)
    row["train"] = run([*python, "train", *common, "SOLVER.MAX_ITER", str(iterations)], env=env)
    row["train_it_per_s"] = round(train_rate(output / "train_log.csv"), 3)
    row["iterations"] = iterations
    row["test_with_features"] = run([*python, "test", *common], env=env)
    row["test_evaluation"] = run([*python, "test", *common], env=env)
    row.update(cache_estimates(data))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000, 64000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/basgg_scale"))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument(
        "--rows", type=Path, nargs="*", help="only fit: read measured rows (JSON lines) from files"
    )
    args = parser.parse_args()
    if args.rows:
        rows = [
            json.loads(line)
            for path in args.rows
            for line in path.read_text().splitlines()
            if line.startswith('{"images"')
        ]
        report(sorted(rows, key=lambda row: row["images"]))
        return
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args.work, args.iterations, env))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report(rows)


def report(rows: list[dict]) -> None:
    """Print the rows and each cost's power-law fit, extrapolated to VG150's image count."""
    sizes = [row["images"] for row in rows]
    series = {
        "generate_wall_s": [row.get("generate", {}).get("wall_s", 0.0) for row in rows],
        "generate_cpu_s": [row.get("generate", {}).get("cpu_s", 0.0) for row in rows],
        "features_cpu_s": [row["features_train_val"]["cpu_s"] for row in rows],
        "test_features_and_evaluation_cpu_s": [row["test_with_features"]["cpu_s"] for row in rows],
        "train_cpu_s_per_iteration": [
            row["train"]["cpu_s"] / row.get("iterations", 200) for row in rows
        ],
        "cache_bytes": [row["cache_bytes_train_val"] for row in rows],
        "evaluation_cpu_s": [row["test_evaluation"]["cpu_s"] for row in rows],
        "train_peak_rss_mib": [row["train"]["peak_rss_mib"] for row in rows],
        "evaluation_peak_rss_mib": [row["test_evaluation"]["peak_rss_mib"] for row in rows],
    }
    series["features_peak_rss_mib"] = [row["features_train_val"]["peak_rss_mib"] for row in rows]
    extrapolation = {}
    for name, values in series.items():
        _, exponent = power_fit(sizes, values)
        fixed, per_image = linear_fit(sizes, values)
        extrapolation[name] = {
            "exponent": round(exponent, 3),
            "fixed": round(fixed, 4),
            "per_image": per_image,
            "vg150_linear": fixed + per_image * VG150_IMAGES,
        }
    last = rows[-1]
    extrapolation["trunk_cache_bytes_vg150_at_synthvg_density"] = (
        last["trunk_cache_bytes_per_image"] * VG150_IMAGES
    )
    print(json.dumps({"rows": rows, "extrapolation": extrapolation}, indent=1))


if __name__ == "__main__":
    main()
