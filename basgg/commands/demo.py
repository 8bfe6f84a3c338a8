"""``basgg demo``: BA-SGG end to end on the embedded default dataset (SynthVG).

Steps, each skipped when its output exists (so an interrupted demo resumes):

1. generate default SynthVG into ``DATASETS.DATA_DIR`` when that folder holds no dataset;
2. its statistics and report (``OUTPUT_DIR/dataset_report``);
3. stage 1, the general model (default Motifs PredCls, ``synthvg_predcls.yaml``) in
   ``OUTPUT_DIR/stage1``;
4. the stage-1 confusion matrix on train (``basgg confmat``) in ``OUTPUT_DIR/stage1``;
5. stage 2, BA-SGG (both flags, :data:`STAGE_TWO_OVERRIDES`) in ``OUTPUT_DIR/stage2``;
6. both models on the test split, a side-by-side table and ``OUTPUT_DIR/comparison.png``;
7. the results site of both models (``basgg view``) in ``OUTPUT_DIR/site``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import time
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from basgg.atomic import save_figure  # noqa: E402
from basgg.config import Config, load_config, save_config  # noqa: E402
from basgg.data.summary import summarize_dataset, summary_table, write_report  # noqa: E402
from basgg.data.vg150_format import VG150Files  # noqa: E402
from basgg.output_lock import holding_output_dir  # noqa: E402
from basgg.synthvg.generator import generate_dataset, load_settings  # noqa: E402
from basgg.training.checkpoint import BEST_CHECKPOINT, FINAL_CHECKPOINT  # noqa: E402
from basgg.training.launch import (  # noqa: E402
    default_world_size,
    launch,
    proc_stat_fields,
    process_server,
    process_server_cpu_seconds,
)
from basgg.training.setup import (  # noqa: E402
    PACKAGED_CONFIGS,
    dataset_files,
    resolve_config_path,
)
from basgg.training.side_jobs import SOURCE_FILE, OnEachBest, start_beside  # noqa: E402
from basgg.training.stages import HEAD, STAGE_TWO_OVERRIDES  # noqa: E402
from basgg.view.site import THUMBNAIL_FOLDER  # noqa: E402

STAGE_ONE_CONFIG = PACKAGED_CONFIGS / "synthvg_predcls.yaml"
TABLE_METRICS = ("R", "mR")
METRICS_FILE = "metrics.json"
CONFUSION_WORKSPACE = "confusion_beside"  # under stage 1's OUTPUT_DIR, removed at the end


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="stage-1 YAML (default synthvg_predcls.yaml)")
    parser.add_argument("--workers", type=int, default=None, help="processes for generation")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--nproc",
        type=int,
        default=0,
        help="processes that extract the features together (default 0: one per usable CPU "
        "core, or per GPU); each training runs in one process",
    )
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="KEY VALUE pairs, e.g. OUTPUT_DIR outputs/x"
    )


def demo_configs(config_path: Path | None, overrides: list[str]) -> tuple[Config, Config, Config]:
    """The demo's own config and those of stage 1 and stage 2 (folders under OUTPUT_DIR)."""
    source = resolve_config_path(str(config_path)) if config_path else STAGE_ONE_CONFIG
    base = load_config(source, ["OUTPUT_DIR", "outputs/demo", *overrides])
    output_dir = Path(base.OUTPUT_DIR)
    cache = base.FEATURE_CACHE_DIR or str(output_dir / "feature_cache")
    stage_one_dir = output_dir / "stage1"
    stage_one = load_config(
        source, [*overrides, "OUTPUT_DIR", str(stage_one_dir), "FEATURE_CACHE_DIR", cache]
    )
    stage_two = load_config(
        source,
        [
            *STAGE_TWO_OVERRIDES,
            *overrides,  # the user's settings win over the demo's stage-2 defaults
            "OUTPUT_DIR", str(output_dir / "stage2"),
            "FEATURE_CACHE_DIR", cache,
            "MODEL.PRETRAINED_MODEL_CKPT", str(stage_one_dir / BEST_CHECKPOINT),
            HEAD + "CONFUSION_MATRIX_FILE", str(stage_one_dir / "confusion_matrix.npy"),
        ],
    )  # fmt: skip
    return base, stage_one, stage_two


@holding_output_dir(
    "basgg demo", folder=lambda args: demo_configs(args.config, list(args.overrides))[0].OUTPUT_DIR
)
def run(args: argparse.Namespace) -> int:
    if args.nproc < 0:
        raise ValueError(f"--nproc must be >= 0, got {args.nproc}")
    # the demo starts a dozen processes (feature extraction, jobs beside the trainings):
    # forked from a server that imports torch while SynthVG is generated, they start at once
    with process_server([__name__]):
        return _run(args)


def process_age() -> float:
    """Seconds since this process started (its imports included), from ``/proc``; 0 where
    that cannot be read."""
    try:
        started = int(proc_stat_fields()[19]) / os.sysconf("SC_CLK_TCK")  # seconds after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - started)


def _run(args: argparse.Namespace) -> int:
    start = time.monotonic() - process_age()  # the clock a user holds: imports count
    progress = not args.no_progress
    config, stage_one, stage_two = demo_configs(args.config, list(args.overrides))
    output_dir = Path(config.OUTPUT_DIR)
    files = dataset_files(config)
    if files.roidb_path.exists():
        _step(1, f"using the dataset in {files.root}", start)
    else:
        _step(1, f"generating default SynthVG in {files.root} ...", start)
        result = generate_dataset(files.root, load_settings(), workers=args.workers)
        print(f"      {result.num_images} images in {result.seconds:.1f} s")
    _step(2, "dataset statistics", start)
    summary = summarize_dataset(files)
    write_report(summary, output_dir / "dataset_report")
    print(summary_table(summary))
    save_config(config, output_dir / "config.yaml")

    stage_one_dir, stage_two_dir = Path(stage_one.OUTPUT_DIR), Path(stage_two.OUTPUT_DIR)
    run_stages(
        stage_one, stage_two, progress, start, processes=args.nproc, site=output_dir / "site"
    )
    metrics = {"stage 1": _read_metrics(stage_one), "BA-SGG": _read_metrics(stage_two)}
    print(comparison_table(metrics))
    plot = plot_comparison(metrics, output_dir / "comparison.png")
    _step(7, "results site: stage 1 vs BA-SGG (basgg view)", start)
    site = write_results_site(files, stage_one, stage_two, output_dir / "site")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    cpu += process_server_cpu_seconds()  # the processes forked by the server
    print(
        f"\nplots: {plot}\nresults site: {site} (open it in a browser)\n"
        f"resolved configs: {stage_one_dir / 'config.yaml'}, "
        f"{stage_two_dir / 'config.yaml'}\n"
        f"wall time {time.monotonic() - start:.0f} s, CPU time {cpu:.0f} s (this run)"
    )
    return 0


def run_stages(
    stage_one: Config,
    stage_two: Config,
    progress: bool,
    start: float,
    *,
    processes: int = 0,
    site: Path | None = None,
) -> None:
    """Steps 3-6, each skipped when its output exists.

    Where the cores go (docs/speed.md): the train features are extracted first by
    ``processes`` processes together (0: one per usable core); each training then runs in
    this process (on a CPU, one intra-op thread: a Motifs step gains nothing from a second
    one or a second process, only from its LSTM directions on two threads). Beside stage 1,
    in single-threaded processes of their own, run the val-feature extraction (the first
    validation, 250 iterations in, waits for it), the test-feature extraction and then the
    confusion matrix of each new best checkpoint of the last validations
    (:class:`OnEachBest`), so step 4 usually only adopts the final best's files; the
    stage-1 test runs beside stage 2, then the thumbnails of the results site (``site``).
    Where that core is free, the training's LSTM directions use it.
    """
    from basgg.training.runs import compute_confusion_matrix, train

    stage_one_dir, stage_two_dir = Path(stage_one.OUTPUT_DIR), Path(stage_two.OUTPUT_DIR)
    device = stage_one.MODEL.DEVICE
    if (stage_one_dir / FINAL_CHECKPOINT).is_file():
        _step(3, f"stage 1 (general model): done, in {stage_one_dir}", start)
        # jobs of a demo killed before it adopted their files (step 4 computes them)
        shutil.rmtree(stage_one_dir / CONFUSION_WORKSPACE, ignore_errors=True)
    else:
        head = stage_one.MODEL.ROI_RELATION_HEAD.PREDICTOR
        task = stage_one.mode.value
        world_size = processes or default_world_size(device)
        _step(3, f"stage 1 (general model): train features ({world_size} processes)", start)
        launch(
            _extract_features,
            (stage_one, ("train",), progress),
            world_size=world_size,
            device=device,
        )
        # beside the training: the val features (the first validation waits for them), the
        # test features (step 5 on), then the confusion matrix of each new best checkpoint
        # (step 4 needs the final best's)
        side_features = start_beside(_extract_features, (stage_one, ("val", "test"), False))
        solver = stage_one.SOLVER  # bests of the last two validations before the final one
        confusions = OnEachBest(
            stage_one_dir / BEST_CHECKPOINT,
            partial(_confusion_matrix_job, stage_one),
            stage_one_dir / CONFUSION_WORKSPACE,
            wait_for=side_features,
            from_iteration=max(0, solver.MAX_ITER - 2 * solver.VAL_PERIOD),
        )
        _step(3, f"stage 1 (general model): training {head} {task} in {stage_one_dir} "
              "(val and test features, confusion matrices computed beside it)",
              start)  # fmt: skip
        try:
            train(stage_one, progress=progress, val_at_first_validation=True)
            side_features.join()
            if side_features.exitcode:  # the stage-1 test extracts them then
                print(f"      (val/test features: side process exit code {side_features.exitcode})")
            _adopt_confusion_matrix(confusions.result(), stage_one_dir)
        finally:
            confusions.close()
    matrix = Path(stage_two.MODEL.ROI_RELATION_HEAD.CONFUSION_MATRIX_FILE)
    if matrix.is_file():
        _step(4, f"stage-1 confusion matrix on train: done, {matrix}", start)
    else:
        _step(4, "stage-1 confusion matrix on train", start)
        compute_confusion_matrix(stage_one, progress=progress)
    beside = None
    if not _metrics_path(stage_one).is_file():
        thumbnails = site / THUMBNAIL_FOLDER if site is not None else None
        beside = start_beside(_test_stage, (stage_one, False, thumbnails))
    if (stage_two_dir / FINAL_CHECKPOINT).is_file():
        _step(5, f"stage 2 (BA-SGG: BPL + SA): done, in {stage_two_dir}", start)
    else:
        note = " (stage 1 is tested beside it)" if beside is not None else ""
        _step(5, f"stage 2 (BA-SGG: BPL + SA): training in {stage_two_dir}{note}", start)
        train(stage_two, progress=progress)
    _step(6, "testing both models on the test split", start)
    if beside is not None:
        beside.join()
    for config in (stage_one, stage_two):
        if not _metrics_path(config).is_file():  # also when the side process failed
            _test_stage(config, progress)


def _extract_features(config: Config, splits: tuple[str, ...], progress: bool) -> None:
    from basgg.training.distributed import init_distributed
    from basgg.training.runs import extract_split_features

    context = init_distributed(config.MODEL.DEVICE)  # the launcher's group, or one process
    extract_split_features(config, splits, progress=progress, context=context)


def _test_stage(config: Config, progress: bool = False, thumbnails: Path | None = None) -> None:
    """``config``'s model on the test split; then, with ``thumbnails``, the results site's
    thumbnails of the test images made in that folder (step 7 finds them made)."""
    from basgg.training.runs import evaluate_checkpoint

    evaluate_checkpoint(config, split="test", progress=progress)
    if thumbnails is not None:
        from basgg.data.vg150 import VG150Dataset
        from basgg.view.thumbnails import make_thumbnails

        test = VG150Dataset(
            dataset_files(config),
            split="test",
            val_size=config.DATASETS.VAL_SIZE,
            load_images=False,
        )  # the images `basgg view` shows: those of the test split
        make_thumbnails([test.image_path(i) for i in range(len(test))], thumbnails, workers=1)


def _confusion_matrix_job(config: Config, checkpoint: Path, folder: Path) -> None:
    """The stage-1 confusion-matrix files of ``checkpoint``, written in ``folder``."""
    from basgg.training.runs import compute_confusion_matrix

    config = load_config(None, ["OUTPUT_DIR", str(folder)], base=copy.deepcopy(config))
    compute_confusion_matrix(config, checkpoint=str(checkpoint), progress=False)


def _adopt_confusion_matrix(folder: Path | None, stage_one_dir: Path) -> None:
    """Move the files the final best's confusion-matrix job wrote into ``stage_one_dir``
    (the matrix last, as it marks step 4 done)."""
    from basgg.training.runs import MATRIX_FILE

    if folder is None:
        return
    for path in sorted(folder.iterdir(), key=lambda p: p.name == MATRIX_FILE):
        if path.is_file() and path.name != SOURCE_FILE:
            os.replace(path, stage_one_dir / path.name)


def _step(number: int, text: str, start: float) -> None:
    print(f"[{number}/7 {time.monotonic() - start:5.0f} s] {text}", flush=True)


def _metrics_path(config: Config) -> Path:
    return Path(config.OUTPUT_DIR) / "inference" / "test" / METRICS_FILE


def _read_metrics(config: Config) -> dict:
    """The test metrics a stage's ``basgg test`` wrote."""
    return json.loads(_metrics_path(config).read_text())


def write_results_site(files: VG150Files, stage_one: Config, stage_two: Config, out: Path) -> Path:
    """``basgg view`` of both stages' test predictions (thumbnails are made once)."""
    from basgg.training.runs import PREDICTIONS_FILE
    from basgg.view.dataset import DatasetSource
    from basgg.view.site import write_site

    paths = [
        Path(c.OUTPUT_DIR) / "inference" / "test" / PREDICTIONS_FILE for c in (stage_one, stage_two)
    ]
    hierarchy = Path(stage_one.OUTPUT_DIR) / "hierarchy.json"
    source = DatasetSource(
        paths,
        files,
        names=["stage 1", "BA-SGG"],
        val_size=stage_one.DATASETS.VAL_SIZE,
        hierarchy=hierarchy if hierarchy.is_file() else None,
    )
    report = write_site(source, out, title="basgg demo: stage 1 vs BA-SGG")
    print(f"      {report.images} images, {report.bytes / 1e6:.1f} MB in {report.seconds:.1f} s")
    return report.index


def comparison_table(metrics: dict[str, dict]) -> str:
    """Side by side: R@K, mR@K, F@100, PairR@20, specific-predicate recall (x100) and RI@20
    (nats) of each model."""
    names = list(metrics)
    rows = [(f"{m}@{k}", f"{m}@{k}") for m in TABLE_METRICS for k in (20, 50, 100)]
    rows += [("F@100", "F@100"), ("PairR@20", "PairR@20")]
    rows += [("specific R", "specific_predicate_recall"), ("RI@20 (nats)", "RI@20")]
    lines = [f"{'test, predcls':<16}" + "".join(f"{name:>12}" for name in names)]
    for label, key in rows:
        values = [metrics[name]["metrics"].get(key) for name in names]
        scale = 1 if key.startswith("RI@") else 100
        cells = "".join(f"{'-' if v is None else f'{scale * v:.1f}':>12}" for v in values)
        lines.append(f"{label:<16}{cells}")
    return "\n".join(lines)


def plot_comparison(metrics: dict[str, dict], path: Path) -> Path:
    """Per-predicate test R@100 of each model (most frequent predicate first) and the
    summary metrics, as grouped bars."""
    names = list(metrics)
    first = metrics[names[0]]
    predicates = list(first["per_predicate_recall"]["100"])
    keys = ["R@100", "mR@100", "F@100", "specific_predicate_recall"]
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [4, 1]}
    )
    width = 0.8 / len(names)
    positions = np.arange(len(predicates))  # (P,)
    for offset, name in enumerate(names):
        recall = metrics[name]["per_predicate_recall"]["100"]
        left.bar(
            positions + offset * width, [recall.get(p, 0.0) for p in predicates], width, label=name
        )
        summary = [metrics[name]["metrics"].get(key) or 0.0 for key in keys]
        right.bar(np.arange(len(keys)) + offset * width, summary, width, label=name)
    left.set_xticks(positions + 0.4 - width / 2, predicates, rotation=75, fontsize=7)
    left.set_ylabel("test R@100 per predicate")
    left.legend()
    right.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=45, fontsize=8)
    right.set_ylim(0, 1)
    figure.tight_layout()
    return save_figure(figure, path, dpi=120)
