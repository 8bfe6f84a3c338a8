"""The predictions file: one HDF5 file holding every image's ranked scene-graph prediction.

Per-image arrays are concatenated and addressed by offsets (the VG150 idea); see
``docs/predictions-format.md`` for the layout.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from basgg.atomic import atomic_output
from basgg.evaluation.matching import foreground_argmax
from basgg.structures import Mode, SceneGraph

FORMAT_NAME = "basgg-predictions"
FORMAT_VERSION = 1
_DATASETS = {  # name -> (trailing shape, dtype)
    "image_ids": ((), np.int64),
    "image_sizes": ((2,), np.int64),
    "object_offsets": ((), np.int64),
    "relation_offsets": ((), np.int64),
    "boxes": ((4,), np.float32),
    "labels": ((), np.int64),
    "object_scores": ((), np.float32),
    "relation_pairs": ((2,), np.int64),
    "predicate_scores": ((None,), np.float32),
}


@dataclass
class PredictionsFile:
    """The content of a predictions file.

    Attributes:
        path: where it was read from.
        mode: the task the predictions were made for.
        num_predicates: predicate classes including background (width of the score rows).
        predicate_names: names with background at index 0.
        split: the dataset split predicted ("test", "val", ...).
        val_size: train-flag images carved out as val when the split was built, if recorded.
        basgg_version: version of basgg that wrote the file.
        graphs: one prediction per image, rows ranked best first.
    """

    path: Path
    mode: Mode
    num_predicates: int
    predicate_names: tuple[str, ...]
    split: str
    basgg_version: str
    graphs: list[SceneGraph]
    val_size: int | None = None


def write_predictions(
    path: str | Path,
    predictions: Sequence[SceneGraph],
    *,
    mode: Mode,
    predicate_names: Sequence[str],
    split: str,
    val_size: int | None = None,
) -> None:
    """Write ranked predictions (one graph per image, dataset order) to an HDF5 file.

    ``val_size`` (the number of train-flag images carved out as val when the split was
    built) is recorded so that ``basgg eval`` rebuilds the same splits.

    Predictions without ``object_scores`` are stored with scores 1.0 (allowed in predcls).
    The ``predicates`` field is not stored: reading gives each row's foreground argmax.
    """
    from basgg import __version__

    mode = Mode(mode)
    path = Path(path)
    width = len(predicate_names)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _DATASETS}
    n_objects, n_relations = [0], [0]
    for index, graph in enumerate(predictions):
        where = f"{path}: image {index} (image_id {graph.image_id})"
        if graph.predicate_scores is None:
            raise ValueError(f"{where}: field predicate_scores is missing")
        if graph.predicate_scores.shape[1] != width:
            raise ValueError(
                f"{where}: field predicate_scores has {graph.predicate_scores.shape[1]} "
                f"columns but {width} predicate names were given"
            )
        scores = graph.object_scores
        if scores is None:
            if mode is not Mode.PREDCLS:
                raise ValueError(f"{where}: field object_scores is missing ({mode.value})")
            scores = torch.ones(graph.num_objects)
        parts["image_ids"].append(np.array([graph.image_id], np.int64))
        parts["image_sizes"].append(np.array([graph.image_size], np.int64))
        parts["boxes"].append(graph.boxes.detach().cpu().numpy())
        parts["labels"].append(graph.labels.cpu().numpy())
        parts["object_scores"].append(scores.detach().cpu().numpy())
        parts["relation_pairs"].append(graph.relation_pairs.cpu().numpy())
        parts["predicate_scores"].append(graph.predicate_scores.detach().cpu().numpy())
        n_objects.append(n_objects[-1] + graph.num_objects)
        n_relations.append(n_relations[-1] + graph.num_relations)
    parts["object_offsets"] = [np.asarray(n_objects, np.int64)]
    parts["relation_offsets"] = [np.asarray(n_relations, np.int64)]
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as h5:
        for name, (trailing, dtype) in _DATASETS.items():
            shape = (0, *(width if d is None else d for d in trailing))
            if parts[name]:
                data = np.concatenate(parts[name]).astype(dtype, copy=False)
            else:
                data = np.zeros(shape, dtype)
            options = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
            big = name == "predicate_scores" and data.size > 0
            h5.create_dataset(name, data=data, **(options if big else {}))
        h5.attrs["format"] = FORMAT_NAME
        h5.attrs["format_version"] = FORMAT_VERSION
        h5.attrs["mode"] = mode.value
        h5.attrs["num_predicates"] = width
        h5.attrs["predicate_names"] = json.dumps(list(predicate_names))
        h5.attrs["split"] = split
        if val_size is not None:
            h5.attrs["val_size"] = int(val_size)
        h5.attrs["basgg_version"] = __version__


def read_predictions_header(path: str | Path) -> dict[str, object]:
    """The file attributes (mode, split, val_size, ...) without reading the arrays."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            return dict(h5.attrs)
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 predictions file ({error})") from error


def read_predictions(path: str | Path) -> PredictionsFile:
    """Read and check a predictions file; errors name the file, the image and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    try:
        h5 = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 predictions file ({error})") from error
    with h5:
        attrs = dict(h5.attrs)
        if attrs.get("format") != FORMAT_NAME:
            raise ValueError(
                f"{path}: attribute 'format' is {attrs.get('format')!r}, expected {FORMAT_NAME!r}"
            )
        for key in ("mode", "num_predicates", "predicate_names", "split"):
            if key not in attrs:
                raise ValueError(f"{path}: attribute {key!r} is missing")
        arrays = {}
        for name, (_, dtype) in _DATASETS.items():
            if name not in h5:
                raise ValueError(f"{path}: dataset {name!r} is missing")
            try:
                raw = np.asarray(h5[name][()])
            except (OSError, ValueError, TypeError) as error:  # e.g. a corrupt gzip chunk
                raise ValueError(
                    f"{path}: dataset {name!r} cannot be read (corrupt or truncated file: {error})"
                ) from None
            arrays[name] = _cast(path, name, raw, dtype)
    try:
        mode = Mode(str(attrs["mode"]))
    except ValueError as error:
        raise ValueError(f"{path}: attribute 'mode' is {attrs['mode']!r}") from error
    names = tuple(json.loads(str(attrs["predicate_names"])))
    num_predicates = int(attrs["num_predicates"])
    if len(names) != num_predicates:
        raise ValueError(
            f"{path}: {len(names)} predicate names but num_predicates is {num_predicates}"
        )
    _check_layout(path, arrays, num_predicates)
    _check_values(path, arrays)
    return PredictionsFile(
        path=path,
        mode=mode,
        num_predicates=num_predicates,
        predicate_names=names,
        split=str(attrs["split"]),
        basgg_version=str(attrs.get("basgg_version", "")),
        graphs=_graphs(path, arrays),
        val_size=int(attrs["val_size"]) if "val_size" in attrs else None,
    )


def _check_layout(path: Path, arrays: dict[str, np.ndarray], num_predicates: int) -> None:
    n_images = len(arrays["image_ids"])
    for name, (trailing, _) in _DATASETS.items():
        expected = tuple(num_predicates if d is None else d for d in trailing)
        if arrays[name].shape[1:] != expected:
            raise ValueError(
                f"{path}: dataset {name!r} has shape {arrays[name].shape}, "
                f"expected (n, {', '.join(map(str, expected))})"
            )
    for offsets, sized in (
        ("object_offsets", ("boxes", "labels", "object_scores")),
        ("relation_offsets", ("relation_pairs", "predicate_scores")),
    ):
        values = arrays[offsets]
        if len(values) != n_images + 1 or values[0] != 0 or np.any(np.diff(values) < 0):
            raise ValueError(
                f"{path}: dataset {offsets!r} must be {n_images + 1} "
                "non-decreasing offsets starting at 0"
            )
        for name in sized:
            if len(arrays[name]) != values[-1]:
                raise ValueError(
                    f"{path}: dataset {name!r} has {len(arrays[name])} rows, "
                    f"{offsets!r} ends at {values[-1]}"
                )


def _cast(path: Path, name: str, raw: np.ndarray, dtype: type) -> np.ndarray:
    """``raw`` as ``dtype``; integer datasets must hold integers (no silent truncation)."""
    if raw.dtype.kind not in "biuf":
        raise ValueError(f"{path}: dataset {name!r} has dtype {raw.dtype}, expected numbers")
    if np.issubdtype(dtype, np.integer) and raw.dtype.kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            image = f" (image {row})" if name in ("image_ids", "image_sizes") else ""
            raise ValueError(
                f"{path}: dataset {name!r} row {row}{image}: value {float(raw[bad][0])!r} is "
                "not an integer"
            )
    return np.asarray(raw, dtype=dtype)


# dataset -> (offsets that map its rows to images or None for per-image rows, check, rule)
_VALUE_RULES = {
    "image_sizes": (None, lambda v: (v > 0).all(axis=-1), "image sizes must be positive"),
    "boxes": ("object_offsets", lambda v: np.isfinite(v).all(axis=-1), "boxes must be finite"),
    "labels": ("object_offsets", lambda v: v >= 1, "object labels must be >= 1 (0 is background)"),
    "object_scores": (
        "object_offsets",
        lambda v: np.isfinite(v) & (v >= 0),
        "scores must be finite and >= 0",
    ),
    "predicate_scores": (
        "relation_offsets",
        lambda v: (np.isfinite(v) & (v >= 0)).all(axis=-1),
        "scores must be finite and >= 0",
    ),
}


def _check_values(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Finite non-negative scores, finite boxes, positive sizes, foreground labels; over
    whole arrays at once. The error names the file, the dataset, the row and its image."""
    for name, (offsets, check, rule) in _VALUE_RULES.items():
        good = check(arrays[name])  # (rows,)
        if good.all():
            continue
        row = int(np.flatnonzero(~good)[0])
        raise ValueError(
            f"{path}: dataset {name!r} row {row} ({where_row(arrays, offsets, row)}): "
            f"{rule}, got {arrays[name][row].tolist()}"
        )


def where_row(arrays: dict[str, np.ndarray], offsets: str | None, row: int) -> str:
    """``image i (image_id n)`` of a row of a per-object, per-relation or per-image dataset."""
    image = row if offsets is None else int(np.searchsorted(arrays[offsets], row, "right")) - 1
    return f"image {image}, image_id {int(arrays['image_ids'][image])}"


def _check_labels(predictions: PredictionsFile, num_objects: int) -> None:
    """Every object label within the dataset's classes (over all images at once)."""
    graphs = predictions.graphs
    if not graphs:
        return
    labels = torch.cat([graph.labels for graph in graphs]).numpy()  # (sum N_i,)
    bad = labels >= num_objects
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    offsets = np.cumsum([0] + [graph.num_objects for graph in graphs])
    arrays = {"object_offsets": offsets, "image_ids": [graph.image_id for graph in graphs]}
    raise ValueError(
        f"{predictions.path}: dataset 'labels' row {row} "
        f"({where_row(arrays, 'object_offsets', row)}): label {int(labels[row])} is not an "
        f"object class of the dataset (1..{num_objects - 1})"
    )


def _graphs(path: Path, arrays: dict[str, np.ndarray]) -> list[SceneGraph]:
    objects, relations = arrays["object_offsets"], arrays["relation_offsets"]
    predicates = foreground_argmax(arrays["predicate_scores"])
    graphs = []
    for i, image_id in enumerate(arrays["image_ids"]):
        o0, o1, r0, r1 = objects[i], objects[i + 1], relations[i], relations[i + 1]
        pairs = arrays["relation_pairs"][r0:r1]
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= o1 - o0):
            raise ValueError(
                f"{path}: image {i} (image_id {image_id}): field relation_pairs "
                f"has indices outside [0, {o1 - o0})"
            )
        graphs.append(
            SceneGraph(
                boxes=torch.from_numpy(arrays["boxes"][o0:o1]),
                labels=torch.from_numpy(arrays["labels"][o0:o1]),
                relation_pairs=torch.from_numpy(pairs),
                predicates=torch.from_numpy(predicates[r0:r1]),
                image_size=tuple(arrays["image_sizes"][i]),
                image_id=int(image_id),
                object_scores=torch.from_numpy(arrays["object_scores"][o0:o1]),
                predicate_scores=torch.from_numpy(arrays["predicate_scores"][r0:r1]),
            )
        )
    return graphs


def validate_predictions(
    predictions: PredictionsFile,
    ground_truths: Sequence[SceneGraph],
    *,
    num_predicates: int | None = None,
    predicate_names: Sequence[str] | None = None,
    num_objects: int | None = None,
) -> None:
    """Check a predictions file against the dataset it claims to predict.

    Checks the image count, the image ids (in order), the box count of every image in
    predcls and sgcls, the score width against the dataset's predicate count (and the
    names, when given) and the object labels against its object classes. Raises
    ``ValueError`` saying what differs and where.

    Args:
        predictions: the file's content.
        ground_truths: the dataset split, one graph per image, in order.
        num_predicates: the dataset's predicate classes, background included.
        predicate_names: the dataset's predicate names, background at 0.
        num_objects: the dataset's object classes, background included.
    """
    path = predictions.path
    if num_objects is not None:
        _check_labels(predictions, num_objects)
    if num_predicates is not None and num_predicates != predictions.num_predicates:
        raise ValueError(
            f"{path}: field predicate_scores has {predictions.num_predicates} columns but "
            f"the dataset has {num_predicates} predicate classes (background included)"
        )
    if len(predictions.graphs) != len(ground_truths):
        raise ValueError(
            f"{path}: {len(predictions.graphs)} images but the dataset split has "
            f"{len(ground_truths)}"
        )
    if predicate_names is not None:
        names = tuple(predicate_names)
        if len(names) != predictions.num_predicates:
            raise ValueError(
                f"{path}: field predicate_scores has {predictions.num_predicates} columns but "
                f"the dataset has {len(names)} predicate classes (background included)"
            )
        if names != predictions.predicate_names:
            pairs = zip(names, predictions.predicate_names, strict=True)
            index = next(i for i, (a, b) in enumerate(pairs) if a != b)
            raise ValueError(
                f"{path}: predicate {index} is "
                f"{predictions.predicate_names[index]!r} in the file but "
                f"{names[index]!r} in the dataset"
            )
    check_boxes = predictions.mode in (Mode.PREDCLS, Mode.SGCLS)
    for i, (prediction, gt) in enumerate(zip(predictions.graphs, ground_truths, strict=True)):
        if prediction.image_id != gt.image_id:
            raise ValueError(
                f"{path}: image {i}: field image_id is {prediction.image_id}, "
                f"the dataset has {gt.image_id}"
            )
        if check_boxes and prediction.num_objects != gt.num_objects:
            raise ValueError(
                f"{path}: image {i} (image_id {gt.image_id}): field boxes has "
                f"{prediction.num_objects} boxes, the ground truth has {gt.num_objects} "
                f"({predictions.mode.value} predicts on the ground-truth boxes)"
            )
