"""Reading and validating VG150-format files, with errors that name the file, image and field.

Every check on the annotation arrays is vectorised numpy (cheap on the 108,073 images of VG150);
only the first offending row is located and reported.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from basgg.data.vg150_format import SPECIFIC_PREDICATES, read_vocabulary
from basgg.data.vocabulary import Vocabulary

if TYPE_CHECKING:  # load_image imports torch and Pillow itself
    from torch import Tensor

# Images Scene-Graph-Benchmark skips by file name (corrupted in VG); the h5 has no row for them.
SKIPPED_IMAGE_IDS = frozenset({1592, 1722, 4616, 4617})

IMAGE_FIELDS = (
    "split",
    "img_to_first_box",
    "img_to_last_box",
    "img_to_first_rel",
    "img_to_last_rel",
)
# field -> (columns, whether the dtype must be a signed integer; else any integer)
OBJECT_FIELDS = {"boxes_1024": (4, True), "labels": (1, False)}
RELATION_FIELDS = {"relationships": (2, True), "predicates": (1, False)}
DICT_FIELDS = ("label_to_idx", "idx_to_label", "predicate_to_idx", "idx_to_predicate")


class VG150Error(ValueError):
    """Bad VG150-format input. The message names the file, the image (h5 row) and the field."""


def vg150_error(
    path: Path | str,
    field: str | None,
    problem: str,
    *,
    row: int | None = None,
    image_id: int | None = None,
) -> VG150Error:
    """Build a :class:`VG150Error` message ``<file>: h5 row R (image_id I): field 'F': problem``."""
    where = [str(path)]
    if row is not None:
        where.append(f"h5 row {row}" + (f" (image_id {image_id})" if image_id is not None else ""))
    elif image_id is not None:
        where.append(f"image_id {image_id}")
    else:
        where.append("all images")
    if field is not None:
        where.append(f"field {field!r}")
    return VG150Error(": ".join(where) + f": {problem}")


def read_checked_vocabulary(dict_path: Path) -> Vocabulary:
    """Read the dicts JSON after checking its label and predicate fields agree."""
    try:
        info = json.loads(Path(dict_path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise vg150_error(dict_path, None, f"cannot read the dicts JSON ({error})") from error
    if not isinstance(info, dict):
        raise vg150_error(dict_path, None, f"expected a JSON object, got {type(info).__name__}")
    for field in DICT_FIELDS:
        if not isinstance(info.get(field), dict):
            raise vg150_error(dict_path, field, "missing or not a JSON object")
    try:
        vocabulary = read_vocabulary(dict_path)
    except ValueError as error:
        raise vg150_error(dict_path, None, str(error)) from error
    for to_index, names in (
        ("label_to_idx", vocabulary.objects),
        ("predicate_to_idx", vocabulary.predicates),
    ):
        expected = {name: index for index, name in enumerate(names) if index}
        if {name: int(index) for name, index in info[to_index].items()} != expected:
            raise vg150_error(dict_path, to_index, "disagrees with its idx_to_* counterpart")
    return vocabulary


def read_image_data(path: Path, num_h5_images: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``image_data.json`` aligned with the h5 rows: ``(image_ids, widths, heights)``.

    As in Scene-Graph-Benchmark, entries of the skipped VG images are removed before aligning
    when the file has more entries than the h5 has rows (the real file has 108,077 entries for
    108,073 h5 rows); a file with exactly one entry per row is taken as it is, so other
    datasets may use those ids. What remains must have one entry per h5 row.
    """
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise vg150_error(path, None, f"cannot read image_data.json ({error})") from error
    if not isinstance(entries, list):
        raise vg150_error(path, None, f"expected a JSON list, got {type(entries).__name__}")
    columns = {}
    for field in ("image_id", "width", "height"):
        try:
            values = np.asarray([entry[field] for entry in entries])
        except (KeyError, TypeError):
            values = np.asarray([], dtype=object)
        if len(values) != len(entries) or (len(values) and values.dtype.kind not in "iu"):
            raise _first_bad_entry(path, entries, field)
        columns[field] = values.astype(np.int64)
    image_ids = columns["image_id"]
    for field in ("width", "height"):
        bad = np.flatnonzero(columns[field] <= 0)
        if bad.size:
            raise vg150_error(
                path,
                field,
                f"entry {bad[0]} is {columns[field][bad[0]]}, not positive",
                image_id=int(image_ids[bad[0]]),
            )
    kept = np.ones(len(image_ids), dtype=bool)
    if len(image_ids) > num_h5_images:
        kept = ~np.isin(image_ids, list(SKIPPED_IMAGE_IDS))
    if kept.sum() != num_h5_images:
        raise vg150_error(
            path,
            None,
            f"{len(entries)} entries ({int(kept.sum())} without the skipped VG images "
            f"{sorted(SKIPPED_IMAGE_IDS)}) but the h5 has {num_h5_images} images",
        )
    return image_ids[kept], columns["width"][kept], columns["height"][kept]


def _first_bad_entry(path: Path, entries: list, field: str) -> VG150Error:
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or field not in entry:
            return vg150_error(path, field, f"missing from entry {index}")
        if not isinstance(entry[field], int) or isinstance(entry[field], bool):
            return vg150_error(path, field, f"entry {index} is {entry[field]!r}, not an integer")
    return vg150_error(path, field, "inconsistent entries")


def read_h5_arrays(path: Path) -> dict[str, np.ndarray]:
    """Read the datasets the loader uses into memory and close the file."""
    names = [*IMAGE_FIELDS, *OBJECT_FIELDS, *RELATION_FIELDS]
    try:
        with h5py.File(path, "r") as h5:
            for name in names:
                if not isinstance(h5.get(name), h5py.Dataset):
                    raise vg150_error(path, name, "dataset missing from the h5")
            optional = [SPECIFIC_PREDICATES] if SPECIFIC_PREDICATES in h5 else []
            return {name: h5[name][()] for name in names + optional}
    except OSError as error:
        raise vg150_error(path, None, f"cannot read the h5 ({error})") from error


def check_h5_arrays(
    arrays: dict[str, np.ndarray], path: Path, vocabulary: Vocabulary, image_ids: np.ndarray
) -> None:
    """Check shapes, dtypes, index ranges, boxes and class ranges of the h5 arrays."""
    _check_shapes_and_dtypes(arrays, path)
    _check_index_ranges(arrays, path, image_ids)
    _check_relation_objects(arrays, path, image_ids)
    boxes = arrays["boxes_1024"]  # (N_obj, 4) [cx, cy, w, h]
    bad = (boxes[:, :2] < 0).any(axis=1) | (boxes[:, 2:] <= 0).any(axis=1)
    _raise_first(arrays, path, image_ids, bad, "boxes_1024", "box", "needs cx, cy >= 0, w, h > 0")
    for field, count, kind in (
        ("labels", vocabulary.num_objects, "box"),
        ("predicates", vocabulary.num_predicates, "relation"),
        (SPECIFIC_PREDICATES, vocabulary.num_predicates, "relation"),
    ):
        if field in arrays:
            values = arrays[field][:, 0]
            bad = (values < 1) | (values >= count)
            _raise_first(arrays, path, image_ids, bad, field, kind, f"is outside 1..{count - 1}")


def _check_shapes_and_dtypes(arrays: dict[str, np.ndarray], path: Path) -> None:
    num_images = arrays["split"].shape[0] if arrays["split"].ndim == 1 else -1
    specs = {name: ((num_images,), True) for name in IMAGE_FIELDS}
    num_objects = arrays["boxes_1024"].shape[0]
    num_relations = arrays["relationships"].shape[0]
    for name, (columns, signed) in OBJECT_FIELDS.items():
        specs[name] = ((num_objects, columns), signed)
    for name, (columns, signed) in RELATION_FIELDS.items():
        specs[name] = ((num_relations, columns), signed)
    specs[SPECIFIC_PREDICATES] = ((num_relations, 1), False)
    for name, (shape, signed) in specs.items():
        if name not in arrays:
            continue
        array = arrays[name]
        if array.shape != shape or (name == "split" and array.ndim != 1):
            raise vg150_error(path, name, f"shape {array.shape}, expected {shape}")
        allowed = "i" if signed else "iu"
        if array.dtype.kind not in allowed:
            expected = "a signed integer" if signed else "an integer"
            raise vg150_error(path, name, f"dtype {array.dtype}, expected {expected} dtype")


def _check_index_ranges(arrays: dict[str, np.ndarray], path: Path, image_ids: np.ndarray) -> None:
    for kind, count in (("box", len(arrays["boxes_1024"])), ("rel", len(arrays["relationships"]))):
        first, last = arrays[f"img_to_first_{kind}"], arrays[f"img_to_last_{kind}"]
        has = first >= 0
        problems = (
            (first < -1, f"img_to_first_{kind}", "is below -1"),
            (
                (first == -1) != (last == -1),
                f"img_to_last_{kind}",
                "is -1 for only one of first/last",
            ),
            (has & (last < first), f"img_to_last_{kind}", "is before img_to_first"),
            (has & (last >= count), f"img_to_last_{kind}", f"is past the {count} rows"),
        )
        for bad, field, problem in problems:
            rows = np.flatnonzero(bad)
            if rows.size:
                row = int(rows[0])
                raise vg150_error(
                    path,
                    field,
                    f"{problem} (first {first[row]}, last {last[row]})",
                    row=row,
                    image_id=int(image_ids[row]),
                )


def image_relation_rows(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand inclusive ``[first, last]`` ranges: ``(owner position, row)`` for every row."""
    lengths = np.where(first >= 0, last - first + 1, 0).astype(np.int64)  # (n,)
    owners = np.repeat(np.arange(len(first)), lengths)  # (sum lengths,)
    starts = np.cumsum(lengths) - lengths
    rows = np.arange(lengths.sum()) - np.repeat(starts, lengths) + np.repeat(first, lengths)
    return owners, rows.astype(np.int64)


def _check_relation_objects(
    arrays: dict[str, np.ndarray], path: Path, image_ids: np.ndarray
) -> None:
    owners, rows = image_relation_rows(arrays["img_to_first_rel"], arrays["img_to_last_rel"])
    first_box = arrays["img_to_first_box"][owners][:, None]  # (M, 1)
    last_box = arrays["img_to_last_box"][owners][:, None]
    pairs = arrays["relationships"][rows]  # (M, 2) global object rows
    bad = (first_box < 0) | (pairs < first_box) | (pairs > last_box)  # (M, 2)
    hits = np.flatnonzero(bad.any(axis=1))
    if hits.size:
        hit = hits[0]
        owner = int(owners[hit])
        raise vg150_error(
            path,
            "relationships",
            f"relation row {rows[hit]} is {pairs[hit].tolist()}, outside the image's box rows "
            f"[{arrays['img_to_first_box'][owner]}, {arrays['img_to_last_box'][owner]}]",
            row=owner,
            image_id=int(image_ids[owner]),
        )


def _raise_first(
    arrays: dict[str, np.ndarray],
    path: Path,
    image_ids: np.ndarray,
    bad: np.ndarray,
    field: str,
    kind: str,
    problem: str,
) -> None:
    hits = np.flatnonzero(bad)
    if not hits.size:
        return
    hit = int(hits[0])
    prefix = "box" if kind == "box" else "rel"
    first, last = arrays[f"img_to_first_{prefix}"], arrays[f"img_to_last_{prefix}"]
    owners = np.flatnonzero((first >= 0) & (first <= hit) & (hit <= last))
    value = arrays[field][hit].tolist()
    message = f"{kind} row {hit} is {value}, {problem}"
    if owners.size:
        owner = int(owners[0])
        raise vg150_error(path, field, message, row=owner, image_id=int(image_ids[owner]))
    raise vg150_error(path, field, message + " (in no image's range)")


def load_image(
    path: Path, *, row: int, image_id: int, json_size: tuple[int, int], warn: bool
) -> Tensor:
    """Load an RGB image as uint8 (3, H, W); warn if its size is not the JSON's (H, W)."""
    import torch
    from PIL import Image

    try:
        with Image.open(path) as opened:
            rgb = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        problem = "file missing" if isinstance(error, FileNotFoundError) else "unreadable image"
        raise vg150_error(
            path, "image", f"{problem} ({error})", row=row, image_id=image_id
        ) from error
    if warn and (rgb.height, rgb.width) != tuple(json_size):
        warnings.warn(
            f"{path}: h5 row {row} (image_id {image_id}): image is {rgb.width}x{rgb.height} "
            f"but image_data.json says {json_size[1]}x{json_size[0]}; boxes use the JSON size",
            stacklevel=3,
        )
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()  # (3, H, W)
