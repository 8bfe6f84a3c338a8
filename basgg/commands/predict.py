"""``basgg predict IMAGE_OR_FOLDER [...] --checkpoint CKPT``: scene graphs of your own images.

Only the checkpoint is needed (config, vocabularies and every weight are inside it). Its mode
decides what else: SGDet checkpoints need only images; PredCls and SGCls checkpoints need
``--boxes FILE.json`` (format in docs/predict.md). Per image, writes ``OUT/<name>.json`` and
``OUT/<name>.png``; then ``OUT/summary.json``. An image that cannot be read or has no usable
boxes is reported on stderr and skipped; the exit status is 0 when at least one image worked.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from tqdm import tqdm

from basgg.inference import (
    BoxesFile,
    BoxesFileError,
    ImageReadError,
    Predictor,
    load_predictor,
    prediction_record,
    read_image,
    read_model_checkpoint,
    write_json,
)
from basgg.structures import Mode
from basgg.threads import apply_threads
from basgg.visualize import draw_scene_graph

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class ImageTask:
    """One image to predict.

    Attributes:
        path: the file.
        keys: its names in a boxes file, tried in order (relative path, then file name).
        name: the stem of its output files.
    """

    path: Path
    keys: list[str]
    name: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="IMAGE_OR_FOLDER",
        help="image files, or folders searched (with subfolders) for .jpg .jpeg .png .bmp .webp",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoint", type=Path, required=True, metavar="CKPT",
        help="a basgg train checkpoint (model_best.pth, ...): config, names and weights",
    )  # fmt: skip
    parser.add_argument(
        "--boxes", type=Path, metavar="FILE",
        help="JSON boxes per image file name (PredCls: with labels); needed for PredCls and "
        "SGCls checkpoints, refused for SGDet ones",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path("predictions"), metavar="DIR",
        help="output folder (default: ./predictions)",
    )  # fmt: skip
    parser.add_argument(
        "--top-k", type=int, default=20, metavar="K", help="triplets kept per image (default 20)"
    )
    parser.add_argument(
        "--min-score", type=float, default=0.0, metavar="S",
        help="drop triplets scoring below S (default 0: keep the top K whatever their score)",
    )  # fmt: skip
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None,
        help="where the model runs (default: cuda when available, else cpu)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise ValueError(f"--top-k: must be >= 1, got {args.top_k}")
    if args.min_score < 0:
        raise ValueError(f"--min-score: must be >= 0, got {args.min_score}")
    tasks, skipped = find_images(args.inputs, exclude=args.out)
    for item in skipped:
        print(f"basgg predict: skipped {item['image']}: {item['reason']}", file=sys.stderr)
    apply_threads()  # BASGG_NUM_THREADS, OMP_NUM_THREADS or the available CPUs
    checkpoint = read_model_checkpoint(args.checkpoint)
    boxes = _boxes_for_mode(checkpoint.mode, args.boxes, checkpoint.path)
    device = _device(args.device)
    predictor = load_predictor(checkpoint, device=device)
    done: list[dict[str, Any]] = []
    used_keys: set[str] = set()
    for task in tqdm(tasks, desc="predict", unit="image", disable=args.no_progress):
        try:
            done.append(predict_image(predictor, task, boxes, args))
        except (ImageReadError, BoxesFileError) as error:
            skipped.append({"image": str(task.path), "reason": str(error)})
            tqdm.write(f"basgg predict: skipped {error}", file=sys.stderr)
        except (RuntimeError, MemoryError) as error:  # e.g. out of (GPU) memory on a huge photo
            reason = f"{task.path}: the model failed ({type(error).__name__}: {error})"
            skipped.append({"image": str(task.path), "reason": reason})
            tqdm.write(f"basgg predict: skipped {reason}", file=sys.stderr)
        if boxes is not None:
            used_keys.add(boxes.find_key(task.keys) or "")
    if boxes is not None:
        _report_unused(boxes, used_keys)
    summary = _summary(predictor, args, done, skipped)
    write_json(summary, args.out / SUMMARY_FILE)
    print(
        f"{len(done)} image(s) done, {len(skipped)} skipped, "
        f"{summary['seconds_per_image']:.3f} s per image; outputs in {args.out}"
    )
    if not done:
        reason = "see above" if tasks else f"no {'/'.join(IMAGE_SUFFIXES)} file found"
        print(f"basgg predict: error: no image could be processed ({reason})", file=sys.stderr)
        return 1
    return 0


def find_images(
    inputs: list[Path], *, exclude: Path | None = None
) -> tuple[list[ImageTask], list[dict[str, str]]]:
    """The images to predict, in order, and the inputs that do not exist (with reasons).

    A folder gives its image files (by suffix, case-insensitive, subfolders included but
    not ``exclude``, the output folder; sorted by relative path); a file is taken whatever
    its suffix. Output names are the relative path without suffix, ``/`` written ``__``;
    clashes get the suffix appended.
    """
    tasks: list[ImageTask] = []
    missing: list[dict[str, str]] = []
    seen: set[Path] = set()
    names: set[str] = set()
    for given in inputs:
        if given.is_dir():
            found = sorted(
                (
                    path
                    for path in given.rglob("*")
                    if path.suffix.lower() in IMAGE_SUFFIXES
                    and path.is_file()
                    and not _inside(path, exclude)
                ),
                key=lambda path: path.relative_to(given).as_posix(),
            )
            pairs = [(path, path.relative_to(given).as_posix()) for path in found]
        elif given.is_file():
            pairs = [(given, given.name)]
        else:
            missing.append({"image": str(given), "reason": "no such file or folder"})
            continue
        for path, relative in pairs:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            name = _output_name(relative, names)
            keys = list(dict.fromkeys([relative, path.name]))
            tasks.append(ImageTask(path=path, keys=keys, name=name))
    return tasks, missing


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder.resolve())


def _output_name(relative: str, taken: set[str]) -> str:
    base = PurePosixPath(relative).with_suffix("").as_posix().replace("/", "__")
    name = base
    if name.lower() in taken or name.lower() == Path(SUMMARY_FILE).stem:
        name = f"{base}_{Path(relative).suffix.lstrip('.').lower()}"
    count = 2
    while name.lower() in taken:
        name, count = f"{base}_{count}", count + 1
    taken.add(name.lower())
    return name


def predict_image(
    predictor: Predictor, task: ImageTask, boxes: BoxesFile | None, args: argparse.Namespace
) -> dict[str, Any]:
    """Predict one image, write its JSON and PNG; returns its summary entry."""
    start = time.perf_counter()
    image = read_image(task.path)  # (3, H, W)
    height, width = image.shape[-2:]
    inputs = None
    if boxes is not None:
        inputs = boxes.inputs_for(
            task.keys, image_size=(height, width), mode=predictor.mode,
            vocabulary=predictor.vocabulary,
        )  # fmt: skip
    prediction = predictor.predict(image, inputs)
    seconds = time.perf_counter() - start
    record = prediction_record(
        prediction,
        image=str(task.path),
        mode=predictor.mode,
        checkpoint=str(predictor.checkpoint.path),
        vocabulary=predictor.vocabulary,
        top_k=args.top_k,
        min_score=args.min_score,
    )
    json_path = write_json(record, args.out / f"{task.name}.json")
    png_path = draw_scene_graph(
        image.permute(1, 2, 0).numpy(), record, args.out / f"{task.name}.png"
    )
    return {
        "image": str(task.path),
        "json": str(json_path),
        "png": str(png_path),
        "objects": len(record["objects"]),
        "relations": len(record["relations"]),
        "seconds": round(seconds, 4),
        "draw_seconds": round(time.perf_counter() - start - seconds, 4),
    }


def _boxes_for_mode(mode: Mode, path: Path | None, checkpoint: Path) -> BoxesFile | None:
    if mode is Mode.SGDET:
        if path is not None:
            raise ValueError(
                f"--boxes: {checkpoint} is an SGDet model, which finds its own boxes; "
                "--boxes is for PredCls and SGCls checkpoints (leave it out)"
            )
        return None
    if path is None:
        raise ValueError(
            f"--boxes: {checkpoint} is a {mode.value} model, which needs the boxes"
            f"{' and labels' if mode is Mode.PREDCLS else ''} of each image in a JSON file "
            "(see docs/predict.md)"
        )
    return BoxesFile.read(path)


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here")
    return torch.device(name)


def _report_unused(boxes: BoxesFile, used_keys: set[str]) -> None:
    unused = [key for key in boxes.entries if key not in used_keys]
    if unused:
        shown = ", ".join(map(repr, unused[:5])) + (" ..." if len(unused) > 5 else "")
        print(
            f"basgg predict: note: {len(unused)} entr{'y' if len(unused) == 1 else 'ies'} of "
            f"{boxes.path} matched no image: {shown}",
            file=sys.stderr,
        )


def _summary(
    predictor: Predictor,
    args: argparse.Namespace,
    done: list[dict[str, Any]],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    seconds = [item["seconds"] for item in done]
    draw = [item["draw_seconds"] for item in done]
    return {
        "checkpoint": str(predictor.checkpoint.path),
        "mode": predictor.mode.value,
        "device": str(predictor.device),
        "top_k": args.top_k,
        "min_score": args.min_score,
        "images_done": len(done),
        "images_skipped": len(skipped),
        "seconds_per_image": round(sum(seconds) / len(seconds), 4) if seconds else 0.0,
        "draw_seconds_per_image": round(sum(draw) / len(draw), 4) if draw else 0.0,
        "images": done,
        "skipped": skipped,
    }
