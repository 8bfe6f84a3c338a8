"""``basgg data export``: a VG150-format folder (SynthVG included) -> JSON annotations."""

from __future__ import annotations

import argparse
from pathlib import Path

from basgg.data.convert import vg150_to_json
from basgg.data.json_format import write_annotations
from basgg.data.vg150_format import VG150Files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", type=Path, help="dataset folder (VG150 layout)")
    parser.add_argument("--out", type=Path, required=True, help="JSON annotation file to write")
    parser.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="all",
        help="images of this split flag only (default all)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    if Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"{args.out}: already exists (pass --overwrite to replace it)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # fails now, not after reading
    files = VG150Files(root=Path(args.root))
    annotations = vg150_to_json(files, split=args.split)
    write_annotations(args.out, annotations)
    recorded = sum(image.file_name != f"{image.image_id}.jpg" for image in annotations.images)
    objects = sum(len(image.object_names) for image in annotations.images)
    relations = sum(len(image.predicate_names) for image in annotations.images)
    print(
        f"wrote {len(annotations.images)} images, {objects} objects, {relations} relations "
        f"to {args.out}"
    )
    folder = "the folder given to basgg data convert" if recorded else files.image_dir_path
    print(f"file names are relative to {folder}")
    return 0
