"""``basgg eval PREDICTIONS --data DIR``: score a predictions file against a VG150-format split.

Writes ``metrics.json``, ``per_image.npz``, ``per_predicate_recall.png`` and, in predcls, the
confusion matrix (``confusion_matrix.npy`` / ``.png``) to ``--out``, and prints the table.
This command is the only evaluation code that imports the data layer. It runs without
torch: the ground truth is read as packed arrays and the predictions file batch by batch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from basgg.data.predicate_groups import predicate_groups
from basgg.data.vg150_format import VG150Files
from basgg.data.vg150_targets import read_split_targets, relation_counts
from basgg.evaluation.predictions import read_predictions_header
from basgg.evaluation.report import evaluate_file, format_table
from basgg.evaluation.zero_shot import load_zero_shot_file, zero_shot_triplets

DEFAULT_VAL_SIZE = 5000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", type=Path, help="HDF5 predictions file (basgg format)")
    parser.add_argument(
        "--data", type=Path, required=True, metavar="DIR", help="VG150-format dataset folder"
    )
    parser.add_argument("--split", default="test", choices=("test", "val"), help="split scored")
    parser.add_argument(
        "--val-size",
        type=int,
        default=None,
        metavar="N",
        help="train-flag images carved out as val (default: as recorded in the predictions "
        "file, else 5000 as for VG150)",
    )
    parser.add_argument(
        "--zero-shot",
        type=Path,
        metavar="FILE",
        help="zero-shot triplets (SGB's zeroshot_triplet.pytorch or a (T, 3) .npy); default: "
        "the triplets of the scored split that never occur in the train split",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="report folder (default: PREDICTIONS without suffix + '_eval')",
    )
    parser.add_argument(
        "--ks", type=int, nargs="+", default=[20, 50, 100], metavar="K", help="the K values"
    )
    parser.add_argument(
        "--no-plot", action="store_true", help="skip the PNG plots (metrics and arrays only)"
    )


def run(args: argparse.Namespace) -> int:
    files = VG150Files(Path(args.data))
    if not args.predictions.is_file():
        raise FileNotFoundError(f"{args.predictions}: predictions file not found")
    val_size = args.val_size
    if val_size is None:
        recorded = read_predictions_header(args.predictions).get("val_size")
        val_size = DEFAULT_VAL_SIZE if recorded is None else int(recorded)
    targets, vocabulary = read_split_targets(
        files, splits=sorted({args.split, "train"}), val_size=val_size
    )
    ground_truths, train = targets[args.split], targets["train"]
    train_counts = relation_counts(train, vocabulary.num_predicates)
    if args.zero_shot is not None:
        zero_shot = load_zero_shot_file(args.zero_shot)
        zero_shot_source = str(args.zero_shot)
    else:
        zero_shot = zero_shot_triplets(train, ground_truths)
        zero_shot_source = f"{args.split} triplets absent from train"
    groups = predicate_groups(vocabulary.predicates, train_counts)
    order = np.argsort(-train_counts[1:], kind="stable") + 1  # most frequent first
    out_dir = args.out or args.predictions.with_name(args.predictions.stem + "_eval")
    result = evaluate_file(
        args.predictions,
        ground_truths,
        predicate_names=vocabulary.predicates,
        ks=args.ks,
        zero_shot_triplets=zero_shot,
        predicate_groups=groups,
        out_dir=out_dir,
        predicate_order=order.tolist(),
        extra={"zero_shot": f"{len(zero_shot)} triplets: {zero_shot_source}"},
        plot=not args.no_plot,
    )
    print(format_table(result))
    print(f"zero-shot list: {len(zero_shot)} triplets ({zero_shot_source})")
    print(f"report: {out_dir}")
    return 0
