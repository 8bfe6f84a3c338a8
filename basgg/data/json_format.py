"""The simple JSON annotation format for bringing your own scene-graph data (docs/own-data.md).

A file holds one object::

    {"object_classes": [...], "predicate_classes": [...],          (both optional)
     "images": [{"file_name": "kitchen.jpg", "width": 640, "height": 480,
                 "split": "train", "image_id": 7,                     (optional)
                 "objects": [{"name": "man", "box": [x1, y1, x2, y2]}, ...],
                 "relationships": [{"subject": 0, "predicate": "holding", "object": 1,
                                    "specific_predicate": "holding"}, ...]}]}   (optional)

Boxes are xyxy pixel coordinates of the stored image (no EXIF rotation), continuous:
``0 <= x1 < x2 <= width`` and ``0 <= y1 < y2 <= height``, so ``[0, 0, width, height]`` covers
the whole image. Reading checks the structure, types, boxes and indices; whether names belong
to a fixed vocabulary is checked when converting (:mod:`basgg.data.convert`).
"""

from __future__ import annotations

import json
import math
import posixpath
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from basgg import atomic
from basgg.data.vocabulary import BACKGROUND

SPLITS = ("train", "val", "test")
TOP_KEYS = ("object_classes", "predicate_classes", "images")
IMAGE_KEYS = ("file_name", "image_id", "width", "height", "split", "objects", "relationships")
OBJECT_KEYS = ("name", "box")
RELATIONSHIP_KEYS = ("subject", "predicate", "object", "specific_predicate")
EXIF_ORIENTATION = 0x0112


class AnnotationError(ValueError):
    """Bad JSON annotations. The message names the file, the image, the item and the field."""


@dataclass
class ImageAnnotation:
    """One image of the JSON format, with names still as strings.

    Attributes:
        file_name: image path relative to the image folder.
        width: image width in pixels.
        height: image height in pixels.
        object_names: the N object class names.
        boxes: (N, 4) float64 xyxy pixel boxes.
        relation_pairs: (R, 2) int64 (subject, object) indices into the objects.
        predicate_names: the R annotated predicate names.
        specific_predicate_names: the R true specific predicates (SynthVG), or ``None``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` (assigned when converting).
        image_id: the dataset's identifier of the image, or ``None`` (assigned when converting).
    """

    file_name: str
    width: int
    height: int
    object_names: list[str]
    boxes: np.ndarray
    relation_pairs: np.ndarray
    predicate_names: list[str]
    specific_predicate_names: list[str] | None = None
    split: str | None = None
    image_id: int | None = None


@dataclass
class AnnotationSet:
    """The content of one JSON annotation file.

    Attributes:
        images: the images in file order.
        object_classes: the file's fixed object vocabulary (order = class index), or ``None``.
        predicate_classes: the file's fixed predicate vocabulary, or ``None``.
        source: the file the annotations came from, for error messages.
    """

    images: list[ImageAnnotation]
    object_classes: tuple[str, ...] | None = None
    predicate_classes: tuple[str, ...] | None = None
    source: str = "<annotations>"

    def error(
        self, problem: str, *, image: int | None = None, item: str = "", field: str = ""
    ) -> AnnotationError:
        """An :class:`AnnotationError` located at ``image`` (index), ``item`` and ``field``."""
        file_name = self.images[image].file_name if image is not None else None
        return annotation_error(
            self.source, problem, image=image, file_name=file_name, item=item, field=field
        )


def annotation_error(
    source: str | Path,
    problem: str,
    *,
    image: int | None = None,
    file_name: object = None,
    item: str = "",
    field: str = "",
) -> AnnotationError:
    """Build ``<file>: image I ('name.jpg'): object J: field 'box': problem``."""
    where = [str(source)]
    if image is not None:
        where.append(f"image {image}" + (f" ({file_name!r})" if isinstance(file_name, str) else ""))
    if item:
        where.append(item)
    if field:
        where.append(f"field {field!r}")
    return AnnotationError(": ".join(where) + f": {problem}")


@dataclass(frozen=True)
class _Place:
    """Where the reader is: file, image (index and file name) and item, for error messages."""

    source: str
    image: int | None = None
    file_name: object = None
    item: str = ""

    def error(self, problem: str, field: str = "") -> AnnotationError:
        return annotation_error(
            self.source,
            problem,
            image=self.image,
            file_name=self.file_name,
            item=self.item,
            field=field,
        )

    def check_keys(self, entry: dict, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(entry) - set(allowed))
        if unknown:
            raise self.error(f"unknown key(s) {unknown}; allowed: {list(allowed)}", unknown[0])


def read_annotations(
    path: str | Path, *, image_dir: str | Path | None = None, allow_outside: bool = False
) -> AnnotationSet:
    """Read and validate a JSON annotation file.

    Args:
        path: the JSON file.
        image_dir: folder the ``file_name`` entries are relative to. When given, every image
            file must exist and be readable, missing ``width``/``height`` are taken from it and
            given ones must agree with it. When ``None``, ``width`` and ``height`` are required.
        allow_outside: allow ``file_name`` entries that lie outside ``image_dir`` (``../x``,
            absolute paths, links pointing out); refused by default.

    Raises:
        AnnotationError: naming the file, the image (index and file name), the object or
            relationship index and the field of the first problem found.
    """
    try:
        data = json.loads(Path(path).read_text())
    except RecursionError:
        raise annotation_error(
            path, "cannot read the JSON annotations (nested too deeply)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:  # ValueError: huge integers too
        raise annotation_error(path, f"cannot read the JSON annotations ({error})") from None
    return parse_annotations(
        data, source=str(path), image_dir=image_dir, allow_outside=allow_outside
    )


def parse_annotations(
    data: object,
    *,
    source: str = "<annotations>",
    image_dir: str | Path | None = None,
    allow_outside: bool = False,
) -> AnnotationSet:
    """Validate decoded JSON (see :func:`read_annotations`); ``source`` names it in errors.

    File names are normalised (``./a.jpg`` and ``sub/../a.jpg`` are ``a.jpg``) before
    duplicates are looked for."""
    place = _Place(source)
    if not isinstance(data, dict):
        raise place.error(f"expected a JSON object, got {type(data).__name__}")
    place.check_keys(data, TOP_KEYS)
    if not isinstance(data.get("images"), list):
        raise place.error("missing or not a list", "images")
    classes = [_parse_classes(data.get(key), key, place) for key in TOP_KEYS[:2]]
    images, rotated = [], []
    for index, entry in enumerate(data["images"]):
        image, orientation = _parse_image(
            entry, replace(place, image=index), image_dir, allow_outside
        )
        images.append(image)
        if orientation not in (None, 1):
            rotated.append(index)
    annotations = AnnotationSet(images, classes[0], classes[1], source)
    _check_across_images(annotations)
    if rotated:
        warnings.warn(
            f"{source}: {len(rotated)} image(s) carry an EXIF orientation (first: image "
            f"{rotated[0]} ({images[rotated[0]].file_name!r})); boxes must be in the stored "
            "pixel frame, which is how the loader reads the image",
            stacklevel=2,
        )
    return annotations


def _parse_classes(value: object, key: str, place: _Place) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise place.error("not a non-empty list of names", key)
    for position, name in enumerate(value):
        if not _is_name(name):
            raise place.error(f"entry {position} is {name!r}, not a class name", key)
    repeated = sorted({name for name in value if value.count(name) > 1})
    if repeated:
        raise place.error(f"repeated name(s) {repeated}", key)
    return tuple(value)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and value != BACKGROUND


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def normal_file_name(file_name: str) -> str:
    """One spelling per path: ``./a.jpg``, ``sub/../a.jpg`` and ``a.jpg`` are ``a.jpg``."""
    return posixpath.normpath(file_name)


def outside_folder(folder: str | Path, file_name: str) -> bool:
    """Whether ``folder / file_name`` lies outside ``folder``, by its spelling (``..``, an
    absolute path) or through a symbolic link pointing out."""
    if posixpath.isabs(file_name) or normal_file_name(file_name).split("/")[0] == "..":
        return True
    root = Path(folder).resolve()
    return not (Path(folder) / file_name).resolve().is_relative_to(root)


def _parse_image(
    entry: object, place: _Place, image_dir: str | Path | None, allow_outside: bool = False
) -> tuple[ImageAnnotation, int | None]:
    """The image and its EXIF orientation (``None`` when no file was opened or it has none)."""
    if not isinstance(entry, dict):
        raise place.error(f"expected a JSON object, got {type(entry).__name__}")
    file_name = entry.get("file_name")
    place = replace(place, file_name=file_name)
    place.check_keys(entry, IMAGE_KEYS)
    if not isinstance(file_name, str) or not file_name.strip():
        raise place.error("missing or not a non-empty string", "file_name")
    file_name = normal_file_name(file_name)
    if image_dir is not None and not allow_outside and outside_folder(image_dir, file_name):
        raise place.error(
            f"lies outside the image folder {image_dir}; basgg reads only inside it (pass "
            "--allow-outside-images to read it anyway)",
            "file_name",
        )
    split = entry.get("split")
    if split is not None and split not in SPLITS:
        raise place.error(f"{split!r} is not one of {SPLITS}", "split")
    image_id = entry.get("image_id")
    if image_id is not None and (not _is_integer(image_id) or not 0 <= image_id < 2**63):
        raise place.error(
            f"{image_id!r} is not a non-negative integer below 2**63 (VG150 stores 64-bit ids)",
            "image_id",
        )
    width, height, orientation = _image_size(entry, place, image_dir, file_name)
    names, boxes = _parse_objects(entry.get("objects", []), width, height, place)
    pairs, predicates, specific = _parse_relationships(
        entry.get("relationships", []), len(names), place
    )
    image = ImageAnnotation(
        file_name=file_name,
        width=width,
        height=height,
        object_names=names,
        boxes=boxes,
        relation_pairs=pairs,
        predicate_names=predicates,
        specific_predicate_names=specific,
        split=split,
        image_id=image_id,
    )
    return image, orientation


def _image_size(
    entry: dict, place: _Place, image_dir: str | Path | None, file_name: str
) -> tuple[int, int, int | None]:
    """(width, height, EXIF orientation or None) from the entry, checked against the file."""
    given = {}
    for key in ("width", "height"):
        value = entry.get(key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is not None and (not _is_integer(value) or not 0 < value < 2**31):
            raise place.error(f"{value!r} is not a positive integer below 2**31", key)
        given[key] = value
    if image_dir is None:
        for key, value in given.items():
            if value is None:
                raise place.error("missing (required when no image folder is given)", key)
        return given["width"], given["height"], None
    path = Path(image_dir) / file_name
    if not path.is_file():
        raise place.error(f"image file missing: {path}", "file_name")
    try:
        with Image.open(path) as opened:
            size = {"width": opened.width, "height": opened.height}
            orientation = opened.getexif().get(EXIF_ORIENTATION)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise place.error(f"unreadable image {path} ({error})", "file_name") from error
    for key, value in given.items():
        if value is not None and value != size[key]:
            actual = f"{size['width']} x {size['height']}"
            raise place.error(f"{value} but the image file {path} is {actual} (W x H)", key)
    return size["width"], size["height"], orientation


def _parse_objects(
    objects: object, width: int, height: int, place: _Place
) -> tuple[list[str], np.ndarray]:
    if not isinstance(objects, list):
        raise place.error("not a list", "objects")
    names, boxes = [], []
    for position, entry in enumerate(objects):
        here = replace(place, item=f"object {position}")
        if not isinstance(entry, dict):
            raise here.error("not a JSON object")
        here.check_keys(entry, OBJECT_KEYS)
        name = entry.get("name")
        if not _is_name(name):
            raise here.error(f"{name!r} is not a class name", "name")
        box = entry.get("box")
        if not (isinstance(box, list) and len(box) == 4 and all(map(_is_finite_number, box))):
            raise here.error(f"{box!r} is not [x1, y1, x2, y2] numbers", "box")
        x1, y1, x2, y2 = box
        if not (x1 < x2 and y1 < y2):
            raise here.error(f"{box} needs x1 < x2 and y1 < y2", "box")
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise here.error(f"{box} lies outside the {width} x {height} (W x H) image", "box")
        names.append(name)
        boxes.append(box)
    return names, np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # (N, 4)


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_relationships(
    relationships: object, num_objects: int, place: _Place
) -> tuple[np.ndarray, list[str], list[str] | None]:
    if not isinstance(relationships, list):
        raise place.error("not a list", "relationships")
    pairs, predicates, specific = [], [], []
    for position, entry in enumerate(relationships):
        here = replace(place, item=f"relationship {position}")
        if not isinstance(entry, dict):
            raise here.error("not a JSON object")
        here.check_keys(entry, RELATIONSHIP_KEYS)
        for key in ("subject", "object"):
            value = entry.get(key)
            if not _is_integer(value) or not 0 <= value < num_objects:
                raise here.error(f"{value!r} is not an object index in [0, {num_objects})", key)
        if entry["subject"] == entry["object"]:
            raise here.error(
                f"subject and object are both object {entry['subject']} (no self-pairs)", "object"
            )
        for key in ("predicate", "specific_predicate"):
            value = entry.get(key)
            if (key == "predicate" or value is not None) and not _is_name(value):
                raise here.error(f"{value!r} is not a predicate name", key)
        pairs.append((entry["subject"], entry["object"]))
        predicates.append(entry["predicate"])
        specific.append(entry.get("specific_predicate"))
    if None in specific and any(name is not None for name in specific):
        here = replace(place, item=f"relationship {specific.index(None)}")
        raise here.error("missing here but given in other relationships", "specific_predicate")
    pairs_array = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)  # (R, 2)
    return pairs_array, predicates, None if None in specific or not specific else specific


def _check_across_images(annotations: AnnotationSet) -> None:
    """File names and image ids unique; image ids and specific predicates all-or-none."""
    images = annotations.images
    first_index: dict[object, int] = {}
    for key in ("file_name", "image_id"):
        first_index.clear()
        for index, image in enumerate(images):
            value = getattr(image, key)
            if value is not None and value in first_index:
                raise annotations.error(
                    f"{value!r} repeats the {key} of image {first_index[value]}",
                    image=index,
                    field=key,
                )
            first_index.setdefault(value, index)
    with_ids = [image.image_id is not None for image in images]
    if any(with_ids) and not all(with_ids):
        raise annotations.error(
            "missing here but given for other images: give it for all images or none",
            image=with_ids.index(False),
            field="image_id",
        )
    related = [index for index, image in enumerate(images) if image.predicate_names]
    with_specific = [images[index].specific_predicate_names is not None for index in related]
    if any(with_specific) and not all(with_specific):
        raise annotations.error(
            "missing here but given in other images: give it for all relationships or none",
            image=related[with_specific.index(False)],
            item="relationship 0",
            field="specific_predicate",
        )


def write_annotations(path: str | Path, annotations: AnnotationSet) -> None:
    """Write ``annotations`` as JSON, one object or relationship per line for easy editing."""
    lines = ["{"]
    for key, classes in (
        ("object_classes", annotations.object_classes),
        ("predicate_classes", annotations.predicate_classes),
    ):
        if classes is not None:
            lines.append(f" {json.dumps(key)}: {json.dumps(list(classes))},")
    lines.append(' "images": [')
    for index, image in enumerate(annotations.images):
        head = {"file_name": image.file_name}
        if image.image_id is not None:
            head["image_id"] = int(image.image_id)
        head.update(width=int(image.width), height=int(image.height))
        if image.split is not None:
            head["split"] = image.split
        lines.append("  " + json.dumps(head)[:-1] + ",")
        objects = [
            {"name": name, "box": [_number(value) for value in box]}
            for name, box in zip(image.object_names, image.boxes.tolist(), strict=True)
        ]
        relationships = []
        for position, (subject, object_) in enumerate(image.relation_pairs.tolist()):
            relationship = {
                "subject": subject,
                "predicate": image.predicate_names[position],
                "object": object_,
            }
            if image.specific_predicate_names is not None:
                relationship["specific_predicate"] = image.specific_predicate_names[position]
            relationships.append(relationship)
        lines.append(f'   "objects": {_json_rows(objects)},')
        lines.append(f'   "relationships": {_json_rows(relationships)}')
        lines.append("  }" + ("," if index + 1 < len(annotations.images) else ""))
    lines += [" ]", "}"]
    atomic.write_text(path, "\n".join(lines) + "\n")


def _json_rows(rows: list[dict]) -> str:
    if not rows:
        return "[]"
    return "[\n" + ",\n".join(f"    {json.dumps(row)}" for row in rows) + "\n   ]"


def _number(value: float) -> int | float:
    """An integral float as int (``100`` rather than ``100.0``); others unchanged (exact)."""
    return int(value) if float(value).is_integer() else float(value)
