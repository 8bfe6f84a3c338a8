"""``basgg data synth``: generate the SynthVG dataset in VG150 format, with its report."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from basgg.data.summary import summarize_dataset, summary_table, write_report
from basgg.synthvg.generator import generate_dataset, load_settings, settings_dict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument("--num-train", type=int, help="training images (split 0; default 3000)")
    parser.add_argument("--num-test", type=int, help="test images (split 2; default 1000)")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("WIDTH", "HEIGHT"),
        help="image size in pixels (default 320 240)",
    )
    parser.add_argument("--seed", type=int, help="dataset seed (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument(
        "--annotation-rate",
        type=float,
        help="probability that a true relation is annotated (default 0.6)",
    )
    parser.add_argument(
        "--general-bias",
        type=float,
        help="factor on the probability of general labels (default 1; 0 = always specific)",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        help="YAML file overriding SynthSettings fields (situation mix, label distributions)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the dataset a folder already holds"
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        args.settings,
        num_train=args.num_train,
        num_test=args.num_test,
        image_size=args.image_size,
        seed=args.seed,
        annotation_rate=args.annotation_rate,
        general_bias=args.general_bias,
    )
    out = Path(args.out)
    if (out / "VG-SGG-with-attri.h5").exists():
        if not args.overwrite:
            raise ValueError(f"{out}: already holds a dataset (pass --overwrite to replace it)")
        for stale in (out / "VG_100K").glob("*.jpg"):  # a smaller dataset leaves no extras
            stale.unlink()
    result = generate_dataset(out, settings, workers=args.workers)
    (out / "synthvg_settings.yaml").write_text(yaml.safe_dump(settings_dict(settings)))
    summary = summarize_dataset(result.files)
    paths = write_report(summary, out / "report")
    print(summary_table(summary))
    print(
        f"\nwrote {result.num_images} images to {out} in {result.seconds:.1f} s "
        f"({result.workers} workers); report in {paths['table'].parent}"
    )
    return 0
