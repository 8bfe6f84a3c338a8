"""The predictions file: one HDF5 file holding every image's ranked scene-graph prediction.

Per-image arrays are concatenated and addressed by offsets (the VG150 idea); see
``docs/predictions-format.md`` for the layout. Reading needs no torch: the file's datasets
are read whole into :class:`~basgg.packed.PackedGraphs` (or, with :func:`open_predictions`,
the score matrix is left in the file and read batch by batch while scoring).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from basgg.atomic import atomic_output
from basgg.packed import PackedGraphs
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
        packed: every image's prediction as flat arrays, rows ranked best first
            (``predicates`` is not stored: it reads as each row's foreground argmax).
    """

    path: Path
    mode: Mode
    num_predicates: int
    predicate_names: tuple[str, ...]
    split: str
    basgg_version: str
    packed: PackedGraphs
    val_size: int | None = None

    @property
    def graphs(self) -> list[SceneGraph]:
        """One :class:`SceneGraph` per image (built on each call; imports torch)."""
        return self.packed.graphs()


def write_predictions(
    path: str | Path,
    predictions: Sequence[SceneGraph],
    *,
    mode: Mode,
    predicate_names: Sequence[str],
    split: str,
    val_size: int | None = None,
    compression: str | None = None,
) -> None:
    """Write ranked predictions (one graph per image, dataset order) to an HDF5 file.

    ``val_size`` (the number of train-flag images carved out as val when the split was
    built) is recorded so that ``basgg eval`` rebuilds the same splits.

    The score matrix is stored uncompressed by default, which reads fastest;
    ``compression="gzip"`` (level 1, shuffled, row chunks) makes the file smaller and
    slower to write and read. Readers handle both.

    Predictions without ``object_scores`` are stored with scores 1.0 (allowed in predcls).
    The ``predicates`` field is not stored: reading gives each row's foreground argmax.
    """
    import torch

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
            options = {}
            if name == "predicate_scores" and data.size > 0 and compression is not None:
                chunk_rows = max(1, min(len(data), (1 << 20) // (4 * width)))  # ~1 MiB chunks
                options = {
                    "compression": compression,
                    "shuffle": True,
                    "chunks": (chunk_rows, width),
                }
                if compression == "gzip":
                    options["compression_opts"] = 1
            h5.create_dataset(name, data=data, **options)
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
    with open_predictions(path) as content:
        content.packed.predicate_scores = np.array(  # a copy in memory, file closed
            content.packed.predicate_scores[()], dtype=np.float32
        )
    return content


@contextmanager
def open_predictions(path: str | Path) -> Iterator[PredictionsFile]:
    """Open and check a predictions file, leaving the score matrix in the file.

    Inside the ``with`` block ``packed.predicate_scores`` is the open ``h5py.Dataset``
    (slicing it reads those rows); every other dataset is read whole. Errors name the file,
    the image and the field.
    """
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
            if name == "predicate_scores":
                arrays[name] = _mapped(path, h5[name])
                continue
            try:
                raw = np.asarray(h5[name][()])
            except (OSError, ValueError, TypeError) as error:  # e.g. a corrupt gzip chunk
                raise _unreadable(path, name, error) from None
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
        yield PredictionsFile(
            path=path,
            mode=mode,
            num_predicates=num_predicates,
            predicate_names=names,
            split=str(attrs["split"]),
            basgg_version=str(attrs.get("basgg_version", "")),
            packed=PackedGraphs(
                image_ids=arrays["image_ids"],
                image_sizes=arrays["image_sizes"],
                object_offsets=arrays["object_offsets"],
                relation_offsets=arrays["relation_offsets"],
                boxes=arrays["boxes"],
                labels=arrays["labels"],
                relation_pairs=arrays["relation_pairs"],
                object_scores=arrays["object_scores"],
                predicate_scores=arrays["predicate_scores"],
            ),
            val_size=int(attrs["val_size"]) if "val_size" in attrs else None,
        )


def _mapped(path: Path, dataset: h5py.Dataset) -> np.ndarray | h5py.Dataset:
    """A read-only memory map of a contiguous, unfiltered float32 dataset (the default
    layout: rows are then read by the page cache, without copies); else the dataset."""
    offset = dataset.id.get_offset()
    plain = dataset.chunks is None and dataset.compression is None and dataset.size > 0
    if offset is None or not plain or dataset.dtype != np.dtype("<f4"):
        return dataset
    return np.memmap(path, dtype="<f4", mode="r", offset=offset, shape=dataset.shape)


def _check_layout(path: Path, arrays: dict, num_predicates: int) -> None:
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
    pairs, objects = arrays["relation_pairs"], arrays["object_offsets"]
    if len(pairs):
        row_image = np.repeat(np.arange(n_images), np.diff(arrays["relation_offsets"]))  # (R,)
        limit = np.diff(objects)[row_image]  # (R,)
        low = np.minimum(pairs[:, 0], pairs[:, 1])  # (R,)
        high = np.maximum(pairs[:, 0], pairs[:, 1])  # (R,)
        bad = np.flatnonzero((low < 0) | (high >= limit))
        if len(bad):
            image = int(row_image[bad[0]])
            raise ValueError(
                f"{path}: image {image} (image_id {arrays['image_ids'][image]}): field "
                f"relation_pairs has indices outside [0, {limit[bad[0]]})"
            )


def _unreadable(path: Path, name: str, error: Exception) -> ValueError:
    return ValueError(
        f"{path}: dataset {name!r} cannot be read (corrupt or truncated file: {error})"
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


SCORE_CHECK_ROWS = 1 << 20  # predicate-score rows checked per block (bounded memory)
# dataset -> (offsets mapping its rows to images, or None for per-image rows; check; rule)
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


def _check_values(path: Path, arrays: dict) -> None:
    """Finite non-negative scores, finite boxes, positive sizes, foreground labels, checked
    over whole arrays (the score matrix in blocks of rows, read from the file). The error
    names the file, the dataset, the row and its image."""
    for name, (offsets, check, rule) in _VALUE_RULES.items():
        values = arrays[name]
        for start in range(0, len(values), SCORE_CHECK_ROWS):
            try:
                block = np.asarray(values[start : start + SCORE_CHECK_ROWS])
            except (OSError, ValueError, TypeError) as error:  # a corrupt gzip chunk
                raise _unreadable(path, name, error) from None
            if name in _SCORE_DATASETS and _finite_non_negative(block):
                continue  # two reductions instead of two full-size temporaries
            good = check(block)  # (rows,)
            if good.all():
                continue
            row = start + int(np.flatnonzero(~good)[0])
            raise ValueError(
                f"{path}: dataset {name!r} row {row} ({where_row(arrays, offsets, row)}): "
                f"{rule}, got {block[row - start].tolist()}"
            )


_SCORE_DATASETS = ("object_scores", "predicate_scores")


def _finite_non_negative(block: np.ndarray) -> bool:
    """Whether every value is finite and >= 0 (a NaN makes the minimum NaN, so it fails)."""
    return block.size == 0 or bool(block.min() >= 0 and np.isfinite(block.max()))


def where_row(arrays: dict, offsets: str | None, row: int) -> str:
    """``image i, image_id n`` of a row of a per-object, per-relation or per-image dataset."""
    image = row if offsets is None else int(np.searchsorted(arrays[offsets], row, "right")) - 1
    return f"image {image}, image_id {int(arrays['image_ids'][image])}"


def _check_labels(predictions: PredictionsFile, num_objects: int) -> None:
    """Every object label within the dataset's classes (over all images at once)."""
    packed = predictions.packed
    bad = np.flatnonzero(packed.labels >= num_objects)
    if not len(bad):
        return
    row = int(bad[0])
    arrays = {"object_offsets": packed.object_offsets, "image_ids": packed.image_ids}
    raise ValueError(
        f"{predictions.path}: dataset 'labels' row {row} "
        f"({where_row(arrays, 'object_offsets', row)}): label {int(packed.labels[row])} is "
        f"not an object class of the dataset (1..{num_objects - 1})"
    )


def validate_predictions(
    predictions: PredictionsFile,
    ground_truths: Sequence[SceneGraph] | PackedGraphs,
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
        ground_truths: the dataset split, one graph per image, in order (or packed).
        num_predicates: the dataset's predicate classes, background included.
        predicate_names: the dataset's predicate names, background at 0.
        num_objects: the dataset's object classes, background included.
    """
    path = predictions.path
    packed = predictions.packed
    if num_objects is not None:
        _check_labels(predictions, num_objects)
    if num_predicates is not None and num_predicates != predictions.num_predicates:
        raise ValueError(
            f"{path}: field predicate_scores has {predictions.num_predicates} columns but "
            f"the dataset has {num_predicates} predicate classes (background included)"
        )
    if len(packed) != len(ground_truths):
        raise ValueError(
            f"{path}: {len(packed)} images but the dataset split has {len(ground_truths)}"
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
    if isinstance(ground_truths, PackedGraphs):
        gt_ids, gt_objects = ground_truths.image_ids, ground_truths.num_objects
    else:
        gt_ids = np.array([gt.image_id for gt in ground_truths], dtype=np.int64)
        gt_objects = np.array([gt.num_objects for gt in ground_truths], dtype=np.int64)
    wrong_id = np.flatnonzero(packed.image_ids != gt_ids)
    if len(wrong_id):
        i = int(wrong_id[0])
        raise ValueError(
            f"{path}: image {i}: field image_id is {packed.image_ids[i]}, "
            f"the dataset has {gt_ids[i]}"
        )
    if predictions.mode in (Mode.PREDCLS, Mode.SGCLS):
        wrong_count = np.flatnonzero(packed.num_objects != gt_objects)
        if len(wrong_count):
            i = int(wrong_count[0])
            raise ValueError(
                f"{path}: image {i} (image_id {gt_ids[i]}): field boxes has "
                f"{packed.num_objects[i]} boxes, the ground truth has {gt_objects[i]} "
                f"({predictions.mode.value} predicts on the ground-truth boxes)"
            )
