"""Object and predicate distributions of any VG150-format dataset, as a table, JSON and plots.

The h5 arrays are read directly with h5py (split flags, box and relation ranges, labels,
predicates, and SynthVG's optional ``specific_predicates``). Counts are given overall and per
split flag; head / body / tail groups come from the train-flag (split 0) predicate counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from basgg.data.predicate_groups import BODY, HEAD, TAIL, predicate_groups
from basgg.data.vg150_format import SPECIFIC_PREDICATES, VG150Files, read_vocabulary

SPLIT_NAMES = {0: "train", 1: "val", 2: "test"}
REQUIRED = (
    "split",
    "img_to_first_box",
    "img_to_last_box",
    "img_to_first_rel",
    "img_to_last_rel",
    "labels",
    "relationships",
    "predicates",
)
GROUP_COLOURS = {HEAD: "#d1495b", BODY: "#edae49", TAIL: "#00798c"}


@dataclass
class SplitSummary:
    """Counts over the images of one split flag (or all images).

    Attributes:
        images: number of images.
        object_counts: (C + 1,) objects per class (index 0 unused).
        predicate_counts: (P + 1,) relations per annotated predicate (index 0 unused).
        specific_counts: (P + 1,) relations per true specific predicate, or ``None``.
        objects_per_image: (images,) object count of each image.
        relations_per_image: (images,) relation count of each image.
    """

    images: int
    object_counts: np.ndarray
    predicate_counts: np.ndarray
    specific_counts: np.ndarray | None
    objects_per_image: np.ndarray
    relations_per_image: np.ndarray

    @property
    def objects(self) -> int:
        return int(self.object_counts.sum())

    @property
    def relations(self) -> int:
        return int(self.predicate_counts.sum())


@dataclass
class DatasetSummary:
    """A dataset's distributions: ``splits`` maps ``all``/``train``/``test``/... to counts."""

    root: str
    object_names: tuple[str, ...]
    predicate_names: tuple[str, ...]
    splits: dict[str, SplitSummary]
    groups: dict[str, list[int]]
    general_share: float | None  # share of relations labelled other than their specific truth


def _read_h5(path: Path) -> dict[str, np.ndarray]:
    try:
        with h5py.File(path, "r") as h5:
            missing = [name for name in REQUIRED if name not in h5]
            if missing:
                raise ValueError(f"{path}: field {missing[0]!r} is missing")
            arrays = {name: np.asarray(h5[name]) for name in REQUIRED}
            if SPECIFIC_PREDICATES in h5:
                arrays[SPECIFIC_PREDICATES] = np.asarray(h5[SPECIFIC_PREDICATES])
    except OSError as error:
        raise FileNotFoundError(f"{path}: cannot open the VG150 h5 file ({error})") from error
    for name in ("labels", "predicates", SPECIFIC_PREDICATES):
        if name in arrays and arrays[name].ndim == 2:
            arrays[name] = arrays[name][:, 0]
    return arrays


def _row_owners(path: Path, first: np.ndarray, last: np.ndarray, rows: int, field: str):
    """(rows,) image index owning each row (-1 if none) from inclusive [first, last] ranges."""
    owners = np.full(rows, -1, np.int64)
    for image in np.flatnonzero(first >= 0):
        a, b = int(first[image]), int(last[image])
        if not 0 <= a <= b < rows:
            raise ValueError(
                f"{path}: image {image}: field {field!r} range [{a}, {b}] is "
                f"outside the {rows} rows"
            )
        owners[a : b + 1] = image
    return owners


def _check_range(path: Path, values: np.ndarray, owners: np.ndarray, high: int, field: str):
    bad = np.flatnonzero((values < 1) | (values > high))
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"{path}: image {int(owners[row])}: field {field!r} row {row} has "
            f"value {int(values[row])}, expected 1..{high}"
        )


def summarize_dataset(files: VG150Files) -> DatasetSummary:
    """Count objects and relations of a VG150-format dataset overall and per split flag."""
    vocabulary = read_vocabulary(files.dict_path)
    path = files.roidb_path
    data = _read_h5(path)
    split = data["split"].astype(np.int64)
    for name in REQUIRED[1:5]:
        if data[name].shape != split.shape:
            raise ValueError(
                f"{path}: field {name!r} has shape {data[name].shape}, "
                f"expected {split.shape} (one per image)"
            )
    box_owner = _row_owners(
        path,
        data["img_to_first_box"],
        data["img_to_last_box"],
        len(data["labels"]),
        "img_to_first_box",
    )
    rel_owner = _row_owners(
        path,
        data["img_to_first_rel"],
        data["img_to_last_rel"],
        len(data["predicates"]),
        "img_to_first_rel",
    )
    _check_range(path, data["labels"], box_owner, vocabulary.num_objects - 1, "labels")
    _check_range(path, data["predicates"], rel_owner, vocabulary.num_predicates - 1, "predicates")
    specific = data.get(SPECIFIC_PREDICATES)
    if specific is not None:
        _check_range(path, specific, rel_owner, vocabulary.num_predicates - 1, SPECIFIC_PREDICATES)
    relationships = data["relationships"]
    for column in range(2):
        owner_of_end = box_owner[np.clip(relationships[:, column], 0, len(box_owner) - 1)]
        bad = np.flatnonzero((owner_of_end != rel_owner) | (relationships[:, column] < 0))
        if len(bad):
            row = int(bad[0])
            raise ValueError(
                f"{path}: image {int(rel_owner[row])}: field 'relationships' row "
                f"{row} refers to object {int(relationships[row, column])} of "
                "another image"
            )
    n_images = len(split)
    objects_per_image = np.bincount(box_owner[box_owner >= 0], minlength=n_images)
    relations_per_image = np.bincount(rel_owner[rel_owner >= 0], minlength=n_images)

    def split_summary(images: np.ndarray) -> SplitSummary:
        in_split = np.zeros(n_images + 1, bool)
        in_split[images] = True
        box_rows, rel_rows = in_split[box_owner], in_split[rel_owner]
        return SplitSummary(
            images=len(images),
            object_counts=np.bincount(data["labels"][box_rows], minlength=vocabulary.num_objects),
            predicate_counts=np.bincount(
                data["predicates"][rel_rows], minlength=vocabulary.num_predicates
            ),
            specific_counts=None
            if specific is None
            else np.bincount(specific[rel_rows], minlength=vocabulary.num_predicates),
            objects_per_image=objects_per_image[images],
            relations_per_image=relations_per_image[images],
        )

    splits = {"all": split_summary(np.arange(n_images))}
    for flag in np.unique(split):
        splits[SPLIT_NAMES.get(int(flag), f"split {int(flag)}")] = split_summary(
            np.flatnonzero(split == flag)
        )
    train = splits.get("train", splits["all"])
    general_share = None
    if specific is not None and len(specific):
        general_share = float(np.mean(specific != data["predicates"]))
    return DatasetSummary(
        root=str(files.root),
        object_names=vocabulary.objects,
        predicate_names=vocabulary.predicates,
        splits=splits,
        groups=predicate_groups(vocabulary.predicates, train.predicate_counts),
        general_share=general_share,
    )


def group_of(summary: DatasetSummary) -> dict[int, str]:
    """Predicate index -> ``head`` / ``body`` / ``tail``."""
    return {index: name for name, indices in summary.groups.items() for index in indices}


def _per_image(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"mean": 0.0, "median": 0.0, "max": 0}
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "max": int(values.max()),
    }


def summary_json(summary: DatasetSummary) -> dict:
    """The summary as plain JSON data."""
    groups = group_of(summary)
    out = {
        "root": summary.root,
        "groups": {k: [summary.predicate_names[i] for i in v] for k, v in summary.groups.items()},
        "general_share": summary.general_share,
        "splits": {},
    }
    for name, part in summary.splits.items():
        total = max(part.relations, 1)
        out["splits"][name] = {
            "images": part.images,
            "objects": part.objects,
            "relations": part.relations,
            "objects_per_image": _per_image(part.objects_per_image),
            "relations_per_image": _per_image(part.relations_per_image),
            "object_counts": {
                n: int(part.object_counts[i]) for i, n in enumerate(summary.object_names) if i
            },
            "predicates": {
                n: {
                    "count": int(part.predicate_counts[i]),
                    "share": float(part.predicate_counts[i] / total),
                    "group": groups.get(i),
                    **(
                        {}
                        if part.specific_counts is None
                        else {"specific_count": int(part.specific_counts[i])}
                    ),
                }
                for i, n in enumerate(summary.predicate_names)
                if i
            },
        }
    return out


def summary_table(summary: DatasetSummary) -> str:
    """A printable table: sizes, per-image statistics and one row per predicate."""
    names = [n for n in summary.splits if n != "all"] + ["all"]
    lines = [f"dataset {summary.root}"]
    lines.append(f"{'':24}" + "".join(f"{n:>14}" for n in names))
    for label, key in (("images", "images"), ("objects", "objects"), ("relations", "relations")):
        lines.append(
            f"{label:24}" + "".join(f"{getattr(summary.splits[n], key):>14}" for n in names)
        )
    for label, key in (
        ("objects / image", "objects_per_image"),
        ("relations / image", "relations_per_image"),
    ):
        cells = []
        for n in names:
            stats = _per_image(getattr(summary.splits[n], key))
            cells.append(f"{stats['mean']:.1f}/{stats['median']:.0f}/{stats['max']}")
        lines.append(f"{label + ' mean/med/max':24}" + "".join(f"{c:>14}" for c in cells))
    if summary.general_share is not None:
        lines.append(f"relations labelled with a general ancestor: {summary.general_share:.1%}")
    overall = summary.splits["all"]
    has_specific = overall.specific_counts is not None
    groups = group_of(summary)
    header = f"\n{'predicate':16}{'group':>6}" + "".join(f"{n:>9}{'share':>7}" for n in names)
    lines.append(header + (f"{'true':>8}" if has_specific else ""))
    order = np.argsort(-overall.predicate_counts[1:], kind="stable") + 1
    for index in order:
        row = f"{summary.predicate_names[index]:16}{groups.get(int(index), '-'):>6}"
        for n in names:
            part = summary.splits[n]
            count = int(part.predicate_counts[index])
            row += f"{count:>9}{count / max(part.relations, 1):>7.1%}"
        if has_specific:
            row += f"{int(overall.specific_counts[index]):>8}"
        lines.append(row)
    head = ", ".join(summary.predicate_names[i] for i in summary.groups[HEAD])
    lines.append(
        f"head: {head}  |  body: {len(summary.groups[BODY])}  |  tail: "
        f"{len(summary.groups[TAIL])} predicates"
    )
    return "\n".join(lines)


def plot_predicate_histogram(summary: DatasetSummary, path: Path) -> None:
    """Log-scale bars of predicate counts (all splits), sorted, coloured by group."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch

    counts = summary.splits["all"].predicate_counts[1:]
    order = np.argsort(-counts, kind="stable")
    groups = group_of(summary)
    colours = [GROUP_COLOURS.get(groups.get(int(i) + 1), "grey") for i in order]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.32 * len(order) + 1.5), 4.5))
    axes.bar(range(len(order)), np.maximum(counts[order], 0.8), color=colours)
    axes.set_yscale("log")
    axes.set_xticks(range(len(order)))
    axes.set_xticklabels([summary.predicate_names[i + 1] for i in order], rotation=90)
    axes.set_ylabel("relations (log scale)")
    axes.set_title(f"Predicates of {Path(summary.root).name}")
    handles = [Patch(color=colour, label=name) for name, colour in GROUP_COLOURS.items()]
    axes.legend(handles=handles, title="train-split group")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_object_histogram(summary: DatasetSummary, path: Path) -> None:
    """Log-scale bars of object class counts (all splits), sorted by frequency."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    counts = summary.splits["all"].object_counts[1:]
    order = np.argsort(-counts, kind="stable")
    figure, axes = plt.subplots(figsize=(max(6.0, 0.2 * len(order) + 1.5), 4.5))
    axes.bar(range(len(order)), np.maximum(counts[order], 0.8), color="#30638e")
    axes.set_yscale("log")
    axes.set_xticks(range(len(order)))
    axes.set_xticklabels([summary.object_names[i + 1] for i in order], rotation=90, fontsize=7)
    axes.set_ylabel("objects (log scale)")
    axes.set_title(f"Object classes of {Path(summary.root).name}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(summary: DatasetSummary, out_dir: Path) -> dict[str, Path]:
    """Write ``summary.txt``, ``summary.json`` and the two histogram PNGs into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out_dir / "summary.txt",
        "json": out_dir / "summary.json",
        "predicates": out_dir / "predicate_histogram.png",
        "objects": out_dir / "object_histogram.png",
    }
    paths["table"].write_text(summary_table(summary) + "\n")
    paths["json"].write_text(json.dumps(summary_json(summary), indent=1) + "\n")
    plot_predicate_histogram(summary, paths["predicates"])
    plot_object_histogram(summary, paths["objects"])
    return paths
