"""``basgg data convert``: JSON annotations (docs/own-data.md) -> a VG150-format folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from basgg.data.convert import IMAGE_MODES, VOCABULARIES, ConversionSummary, json_to_vg150
from basgg.data.json_format import SPLITS, outside_folder, read_annotations
from basgg.data.vg150_format import VG150Files
from basgg.output_lock import output_lock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("annotations", type=Path, help="JSON annotation file")
    parser.add_argument(
        "--images", type=Path, required=True, help="folder the file_name entries are relative to"
    )
    parser.add_argument("--out", type=Path, required=True, help="VG150-format folder to write")
    parser.add_argument(
        "--vocabulary",
        choices=VOCABULARIES,
        default="data",
        help="classes: the file's names, most frequent first, or its own object_classes / "
        "predicate_classes lists (data, default), or the fixed VG150 150 / 50 (vg150)",
    )
    parser.add_argument(
        "--drop-unknown",
        action="store_true",
        help="drop objects and relationships whose names are not in a fixed vocabulary "
        "(default: error listing them)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.3,
        help="share of the images without a split that become test images (default 0.3)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of that draw (default 0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--copy-images",
        dest="image_mode",
        action="store_const",
        const="copy",
        help="copy the image files into OUT/VG_100K (default)",
    )
    mode.add_argument(
        "--link-images",
        dest="image_mode",
        action="store_const",
        const="link",
        help="symlink JPEG files instead of copying them (others are re-encoded either way)",
    )
    parser.set_defaults(image_mode=IMAGE_MODES[0])
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the dataset a folder already holds"
    )
    parser.add_argument(
        "--allow-outside-images",
        action="store_true",
        help="read file_name entries that lie outside --images (../x.jpg, absolute paths, "
        "links pointing out); refused by default, and listed when allowed",
    )


def check_folders(images: Path, out: Path) -> None:
    """Refuse an ``--images`` folder that overlaps ``--out``: converting writes (and with
    ``--overwrite`` deletes) in ``--out``, and must never touch the source images."""
    source, target = Path(images).resolve(), Path(out).resolve()
    if source == target or source.is_relative_to(target) or target.is_relative_to(source):
        raise ValueError(
            f"--images {images} and --out {out} overlap: converting would write into the "
            "source images; write the dataset to a folder outside --images (and not "
            "containing it)"
        )


def run(args: argparse.Namespace) -> int:
    check_folders(args.images, args.out)
    files = VG150Files(root=Path(args.out))
    existed = files.roidb_path.exists()
    if existed and not args.overwrite:
        raise ValueError(f"{args.out}: already holds a dataset (pass --overwrite to replace it)")
    annotations = read_annotations(
        args.annotations, image_dir=args.images, allow_outside=args.allow_outside_images
    )
    outside = [
        image.file_name
        for image in annotations.images
        if outside_folder(args.images, image.file_name)
    ]
    if outside:
        print(
            f"note: {len(outside)} image(s) read from outside --images {args.images} "
            f"(--allow-outside-images), e.g. {outside[0]!r}"
        )
    with output_lock(args.out, "basgg data convert"):
        summary = json_to_vg150(
            annotations,
            files,
            image_dir=args.images,
            vocabulary=args.vocabulary,
            drop_unknown=args.drop_unknown,
            test_fraction=args.test_fraction,
            seed=args.seed,
            image_mode=args.image_mode,
        )
        if existed:  # a smaller dataset leaves no extras (only files named as basgg names them)
            written = {files.image_path(image_id).name for image_id in _image_ids(files)}
            for stale in files.image_dir_path.glob("*.jpg"):
                if stale.stem.isdigit() and stale.name not in written:
                    stale.unlink()
    print(summary_text(summary))
    print(f"\nwrote {sum(summary.images.values())} images to {args.out}")
    print(f"next: basgg data stats {args.out}")
    return 0


def _image_ids(files: VG150Files) -> list[int]:
    return [int(entry["image_id"]) for entry in json.loads(files.image_data_path.read_text())]


def summary_text(summary: ConversionSummary) -> str:
    """A few lines: images per split, objects, relations, classes, drops, the val advice."""
    vocabulary = summary.vocabulary
    split_text = ", ".join(
        f"{name} {summary.images[name]} ({summary.images_with_relations[name]} with relations)"
        for name in SPLITS
        if summary.images[name] or name != "val"
    )
    lines = [
        f"images: {split_text}",
        f"objects: {summary.objects}, relations: {summary.relations}",
        f"classes: {vocabulary.num_objects - 1} objects, "
        f"{vocabulary.num_predicates - 1} predicates",
    ]
    if summary.dropped_objects or summary.dropped_relations:
        lines.append(
            f"dropped (unknown names): {summary.dropped_objects} objects, "
            f"{summary.dropped_relations} relations"
        )
    if summary.reencoded_images:
        lines.append(f"re-encoded to JPEG: {summary.reencoded_images} images")
    val = summary.images_with_relations["val"]
    if val:
        lines.append(f"val images are written first: train with DATASETS.VAL_SIZE {val}")
    else:
        train = summary.images_with_relations["train"]
        lines.append(
            "no 'val' images: training takes val from the first DATASETS.VAL_SIZE of the "
            f"{train} train images with relations (default 5000): set it, e.g. "
            f"DATASETS.VAL_SIZE {max(1, train // 10)}"
        )
    return "\n".join(lines)
