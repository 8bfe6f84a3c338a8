"""``basgg view PREDICTIONS.h5 --data DIR [--compare OTHER.h5]`` or ``basgg view PREDICT_DIR``:
write a static results site (``index.html``) that opens from ``file://`` with no network.

Heavy modules are imported inside :func:`run`, so ``basgg --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", type=Path, metavar="PREDICTIONS_OR_FOLDER",
        help="a predictions .h5 file (needs --data) or a `basgg predict` output folder",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, metavar="DIR", help="VG150-format dataset folder")
    parser.add_argument(
        "--compare", type=Path, metavar="OTHER.h5",
        help="a second predictions file of the same split, shown side by side",
    )  # fmt: skip
    parser.add_argument(
        "--names", nargs="+", metavar="NAME", help="display names of the predictions files"
    )
    parser.add_argument(
        "--out", type=Path, metavar="SITE_DIR",
        help="site folder (default: PREDICTIONS without suffix + '_site', or FOLDER/site)",
    )  # fmt: skip
    parser.add_argument(
        "--top-k", type=int, default=20, metavar="K", help="predicted triplets shown per image"
    )
    parser.add_argument("--split", choices=("test", "val"), help="default: the file's split")
    parser.add_argument("--val-size", type=int, metavar="N", help="as for basgg eval")
    parser.add_argument("--zero-shot", type=Path, metavar="FILE", help="as for basgg eval")
    parser.add_argument(
        "--hierarchy", type=Path, metavar="FILE",
        help="hierarchy.json of basgg confmat (default, in predcls: read off the first "
        "model's test confusion)",
    )  # fmt: skip
    parser.add_argument("--title", help="page title")
    parser.add_argument(
        "--copy-images", action="store_true",
        help="copy the images into the site (default: link to them where they are)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=4, help="threads making thumbnails")
    parser.add_argument(
        "--serve", action="store_true", help="then serve the site on http://127.0.0.1:PORT/"
    )
    parser.add_argument("--port", type=int, default=8000, help="port for --serve")


def run(args: argparse.Namespace) -> int:
    from basgg.view.site import write_site

    if args.top_k < 1:
        raise ValueError(f"--top-k: must be >= 1, got {args.top_k}")
    if args.source.is_dir():
        if args.data is not None or args.compare is not None:
            raise ValueError(
                f"{args.source}: a `basgg predict` folder has no ground truth; --data and "
                "--compare are for predictions .h5 files"
            )
        from basgg.view.predict_folder import PredictFolderSource

        source = PredictFolderSource(args.source, top_k=args.top_k)
        out = args.out or args.source / "site"
        title = args.title or f"basgg predict: {args.source}"
    else:
        if args.data is None:
            raise ValueError(
                f"{args.source}: --data DIR is needed to view a predictions file (the dataset "
                "it predicts); a `basgg predict` output folder needs none"
            )
        source = build_dataset_source(args)
        out = args.out or args.source.with_name(args.source.stem + "_site")
        names = " vs ".join(model.name for model in source.models)
        title = args.title or f"basgg results: {names}"
    report = write_site(
        source, out, title=title, copy_images=args.copy_images, workers=args.workers
    )
    print(
        f"site: {report.index} ({report.images} images, {report.thumbnails_written} new "
        f"thumbnails, {report.bytes / 1e6:.1f} MB, {report.seconds:.1f} s)"
    )
    if args.serve:
        from basgg.view.serve import serve

        serve(Path(out), args.port)
    return 0


def build_dataset_source(args: argparse.Namespace):
    """The :class:`basgg.view.dataset.DatasetSource` of the command line's files."""
    from basgg.view.dataset import DatasetSource

    files = [args.source] + ([args.compare] if args.compare is not None else [])
    return DatasetSource(
        files,
        args.data,
        names=args.names,
        split=args.split,
        val_size=args.val_size,
        zero_shot=args.zero_shot,
        hierarchy=args.hierarchy,
        top_k=args.top_k,
    )
