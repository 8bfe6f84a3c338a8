"""``basgg demo``: the main job on the embedded default dataset.

Generates default SynthVG into ``DATASETS.DATA_DIR`` when that folder holds no dataset, then
prints its statistics and writes its report. (Training the general and the specific model
joins this command as those stages land.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from basgg.config import Config, load_config, save_config
from basgg.data.summary import summarize_dataset, summary_table, write_report
from basgg.data.synthvg import generate_dataset, load_settings
from basgg.data.vg150_format import VG150Files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file overriding the defaults")
    parser.add_argument("--workers", type=int, default=None, help="processes for generation")
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="KEY VALUE pairs, e.g. OUTPUT_DIR outputs/x"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, base=Config(OUTPUT_DIR="outputs/demo"))
    output_dir = Path(config.OUTPUT_DIR)
    datasets = config.DATASETS
    files = VG150Files(
        root=Path(datasets.DATA_DIR),
        roidb_file=datasets.ROIDB_FILE,
        dict_file=datasets.DICT_FILE,
        image_file=datasets.IMAGE_FILE,
        image_dir=datasets.IMAGE_DIR,
    )
    if files.roidb_path.exists():
        print(f"[1/2] using the dataset in {files.root}")
    else:
        print(f"[1/2] generating default SynthVG in {files.root} ...", flush=True)
        result = generate_dataset(files.root, load_settings(), workers=args.workers)
        print(f"      {result.num_images} images in {result.seconds:.1f} s")
    print("[2/2] dataset statistics", flush=True)
    summary = summarize_dataset(files)
    report = write_report(summary, output_dir / "dataset_report")
    print(summary_table(summary))
    save_config(config, output_dir / "config.yaml")
    print(f"\nreport: {report['table'].parent}\nresolved config: {output_dir / 'config.yaml'}")
    return 0
