"""``basgg data stats DIR``: object and predicate distributions of a VG150-format dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from basgg.data.summary import summarize_dataset, summary_table, write_report
from basgg.data.vg150_format import VG150Files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="dataset folder (VG150 layout)")
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: ROOT/report)"
    )
    parser.add_argument("--roidb-file", default="VG-SGG-with-attri.h5", help="h5 file name")
    parser.add_argument(
        "--dict-file", default="VG-SGG-dicts-with-attri.json", help="dicts JSON file name"
    )


def run(args: argparse.Namespace) -> int:
    files = VG150Files(root=args.root, roidb_file=args.roidb_file, dict_file=args.dict_file)
    summary = summarize_dataset(files)
    paths = write_report(summary, args.out or Path(args.root) / "report")
    print(summary_table(summary))
    print(f"\nreport: {', '.join(str(p) for p in paths.values())}")
    return 0
