"""SGDet figures on a VG150-format dataset (default SynthVG): detector mAP@50, then SGDet R@K
and mR@K of the stage-1 (general) model and of BA-SGG.

Steps, each skipped when its output exists (so an interrupted run resumes):

1. the detector (``synthvg_detector.yaml``) unless ``--detector`` gives one; its test mAP@50;
2. a PredCls stage-1 model and its train confusion matrix (BA-SGG's Semantic Adjustment reads
   the PredCls matrix in every task), unless ``--confusion-matrix`` gives one;
3. SGDet stage 1 (``synthvg_sgdet.yaml``) with the frozen detector;
4. SGDet stage 2, BA-SGG (BPL + SA, the demo's stage-2 settings), from the stage-1 model;
5. both SGDet models on the test split: R@20/50/100 and mR@20/50/100.

Usage::

    python bench/sgdet.py                                  # datasets/synthvg, CPU
    python bench/sgdet.py --device cuda --out outputs/bench_sgdet_gpu
    python bench/sgdet.py --detector outputs/synthvg_detector/model_final.pth \\
        --confusion-matrix outputs/demo/stage1/confusion_matrix.npy SOLVER.MAX_ITER 1000

Trailing ``KEY VALUE`` pairs apply to the SGDet relation runs (both stages).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from basgg.config import load_config  # noqa: E402
from basgg.training.checkpoint import BEST_CHECKPOINT, FINAL_CHECKPOINT  # noqa: E402
from basgg.training.detector_runs import train_detector  # noqa: E402
from basgg.training.runs import compute_confusion_matrix, evaluate_checkpoint, train  # noqa: E402
from basgg.training.setup import PACKAGED_CONFIGS  # noqa: E402
from basgg.training.stages import STAGE_TWO_OVERRIDES  # noqa: E402

HEAD = "MODEL.ROI_RELATION_HEAD."
KS = (20, 50, 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="datasets/synthvg", help="VG150-format dataset")
    parser.add_argument("--out", default="outputs/bench_sgdet", help="output folder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--detector", help="a trained detector checkpoint (skips step 1)")
    parser.add_argument("--confusion-matrix", help="a PredCls stage-1 matrix (skips step 2)")
    parser.add_argument("--val-size", default="300", help="DATASETS.VAL_SIZE")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE")
    args = parser.parse_args()
    out, progress, start = Path(args.out), not args.no_progress, time.perf_counter()
    common = [
        "DATASETS.DATA_DIR", args.data,
        "DATASETS.VAL_SIZE", args.val_size,
        "MODEL.DEVICE", args.device,
        "FEATURE_CACHE_DIR", str(out / "feature_cache"),
    ]  # fmt: skip
    timings: dict[str, float] = {}
    report: dict[str, object] = {"device": args.device, "data": args.data}

    detector = Path(args.detector) if args.detector else out / "detector" / FINAL_CHECKPOINT
    if not detector.is_file():
        step = time.perf_counter()
        config = load_config(
            PACKAGED_CONFIGS / "synthvg_detector.yaml",
            [*common, "OUTPUT_DIR", str(detector.parent)],
        )
        print(f"[1] training the detector in {detector.parent}", flush=True)
        train_detector(config, progress=progress)
        timings["detector training"] = time.perf_counter() - step
    metrics_file = detector.parent / "detector_metrics.json"
    if metrics_file.is_file():
        report["detector mAP@50"] = json.loads(metrics_file.read_text())["test"]["mAP@50"]

    matrix = (
        Path(args.confusion_matrix)
        if args.confusion_matrix
        else out / "predcls_stage1" / "confusion_matrix.npy"
    )
    if not matrix.is_file():
        step = time.perf_counter()
        predcls = load_config(
            PACKAGED_CONFIGS / "synthvg_predcls.yaml",
            [*common, "OUTPUT_DIR", str(matrix.parent)],
        )
        print(f"[2] PredCls stage 1 and its confusion matrix in {matrix.parent}", flush=True)
        if not (matrix.parent / FINAL_CHECKPOINT).is_file():
            train(predcls, progress=progress)
        compute_confusion_matrix(predcls, progress=progress)
        timings["predcls stage 1 + confmat"] = time.perf_counter() - step

    sgdet_config = PACKAGED_CONFIGS / "synthvg_sgdet.yaml"
    stage_one_dir, stage_two_dir = out / "sgdet_stage1", out / "sgdet_stage2"
    stage_one = load_config(
        sgdet_config,
        [*common, "MODEL.PRETRAINED_DETECTOR_CKPT", str(detector),
         "OUTPUT_DIR", str(stage_one_dir), *args.overrides],
    )  # fmt: skip
    stage_two = load_config(
        sgdet_config,
        [*common, *STAGE_TWO_OVERRIDES, "MODEL.PRETRAINED_DETECTOR_CKPT", str(detector),
         "OUTPUT_DIR", str(stage_two_dir), *args.overrides,
         "MODEL.PRETRAINED_MODEL_CKPT", str(stage_one_dir / BEST_CHECKPOINT),
         HEAD + "CONFUSION_MATRIX_FILE", str(matrix)],
    )  # fmt: skip
    for number, name, config, folder in (
        (3, "SGDet stage 1", stage_one, stage_one_dir),
        (4, "SGDet BA-SGG", stage_two, stage_two_dir),
    ):
        if not (folder / FINAL_CHECKPOINT).is_file():
            step = time.perf_counter()
            print(f"[{number}] training {name} in {folder}", flush=True)
            train(config, progress=progress)
            timings[f"{name} training"] = time.perf_counter() - step

    print("[5] testing both SGDet models", flush=True)
    table = {}
    for name, config in (("stage 1", stage_one), ("BA-SGG", stage_two)):
        step = time.perf_counter()
        result, _ = evaluate_checkpoint(config, progress=progress)
        timings[f"{name} test"] = time.perf_counter() - step
        table[name] = {
            f"{kind}@{k}": 100 * float(result.metrics[f"{kind}@{k}"])
            for kind in ("R", "mR")
            for k in KS
        }
        if "informative_recall" in result.metrics:  # SynthVG: the true specific predicates
            table[name]["info"] = 100 * float(result.metrics["informative_recall"])
    report.update(sgdet=table, seconds={k: round(v, 1) for k, v in timings.items()})
    report["total seconds"] = round(time.perf_counter() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sgdet_metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    columns = list(next(iter(table.values())))
    print("\nSGDet, test split" + (f" (detector mAP@50 {report['detector mAP@50']:.3f})"
                                    if "detector mAP@50" in report else ""))  # fmt: skip
    print(f"{'model':<10}" + "".join(f"{c:>9}" for c in columns))
    for name, row in table.items():
        print(f"{name:<10}" + "".join(f"{row[c]:>9.1f}" for c in columns))
    print(f"\n{json.dumps(report['seconds'])}\nwritten: {out / 'sgdet_metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
