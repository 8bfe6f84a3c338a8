"""Conversion between the JSON annotation format and VG150-format folders (docs/own-data.md).

JSON -> VG150: names become class indices of a vocabulary (the file's, or fixed VG150), boxes are
encoded to ``boxes_1024`` by :func:`basgg.data.vg150_format.write_vg150`, each image file is
copied or linked to ``VG_100K/<image_id>.jpg``. VG150 -> JSON: the stored boxes are decoded
without the loader's ``W - 1`` clipping (clipped to the image extent ``[0, W] x [0, H]``), so
every box :func:`write_vg150` wrote reads back to the same ``boxes_1024`` row.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from basgg import atomic
from basgg.boxes import decode_vg_boxes
from basgg.data.json_format import SPLITS, AnnotationSet, ImageAnnotation
from basgg.data.vg150_checks import (
    check_h5_arrays,
    read_checked_vocabulary,
    read_h5_arrays,
    read_image_data,
    vg150_error,
)
from basgg.data.vg150_format import (
    SPECIFIC_PREDICATES,
    SPLIT_TEST,
    SPLIT_TRAIN,
    SPLIT_VAL,
    VG150Files,
    write_vg150,
)
from basgg.data.vocabulary import BACKGROUND, Vocabulary
from basgg.structures import SceneGraph

VOCABULARIES = ("data", "vg150")
IMAGE_MODES = ("copy", "link")
SPLIT_FLAGS = {"train": SPLIT_TRAIN, "val": SPLIT_TRAIN, "test": SPLIT_TEST}
FLAG_SPLITS = {SPLIT_TRAIN: "train", SPLIT_VAL: "val", SPLIT_TEST: "test"}
JPEG_QUALITY = 95


@dataclass
class ConversionSummary:
    """What :func:`json_to_vg150` wrote.

    Attributes:
        files: the VG150 folder's paths.
        vocabulary: the object and predicate classes used.
        images: images per split name (``"train"``, ``"val"``, ``"test"``).
        images_with_relations: the same, counting only images with a relationship (the ones
            training and evaluation keep).
        objects: objects written.
        relations: relationships written.
        dropped_objects: objects dropped for an unknown name (and their relationships).
        dropped_relations: relationships dropped (unknown predicate or a dropped object).
        reencoded_images: image files that were not JPEG and were re-encoded.
    """

    files: VG150Files
    vocabulary: Vocabulary
    images: dict[str, int]
    images_with_relations: dict[str, int]
    objects: int
    relations: int
    dropped_objects: int = 0
    dropped_relations: int = 0
    reencoded_images: int = 0


def choose_vocabulary(annotations: AnnotationSet, kind: str) -> Vocabulary:
    """The classes of a conversion.

    ``"data"``: the file's ``object_classes`` / ``predicate_classes`` when given, else the names
    used in the file, most frequent first (ties alphabetical; predicates seen only as
    ``specific_predicate`` last). ``"vg150"``: the fixed VG150
    150 / 50 classes; the file's own lists, if any, must equal them.
    """
    if kind not in VOCABULARIES:
        raise ValueError(f"vocabulary must be one of {VOCABULARIES}, got {kind!r}")
    if kind == "vg150":
        vg150 = Vocabulary.vg150()
        for key, classes, fixed in (
            ("object_classes", annotations.object_classes, vg150.objects),
            ("predicate_classes", annotations.predicate_classes, vg150.predicates),
        ):
            if classes is not None and tuple(classes) != fixed[1:]:
                raise annotations.error(
                    "differs from the VG150 vocabulary asked for: remove it or use the "
                    "'data' vocabulary",
                    field=key,
                )
        return vg150
    objects = annotations.object_classes or _by_frequency(
        [name for image in annotations.images for name in image.object_names]
    )
    predicates = annotations.predicate_classes or _by_frequency(
        [name for image in annotations.images for name in image.predicate_names],
        [name for image in annotations.images for name in image.specific_predicate_names or []],
    )
    if not objects or not predicates:
        raise annotations.error("no objects or no relationships to take class names from")
    return Vocabulary(objects=(BACKGROUND, *objects), predicates=(BACKGROUND, *predicates))


def _by_frequency(names: list[str], others: list[str] | None = None) -> tuple[str, ...]:
    """Distinct ``names``, most frequent first, ties alphabetical; then unseen ``others``."""
    counts = Counter(names)
    counts.update({name: 0 for name in others or [] if name not in counts})
    return tuple(sorted(counts, key=lambda name: (-counts[name], name)))


def apply_vocabulary(
    annotations: AnnotationSet, vocabulary: Vocabulary, *, drop_unknown: bool = False
) -> tuple[AnnotationSet, int, int]:
    """Check every name is in ``vocabulary``, or drop the objects and relationships that are not.

    Returns:
        (annotations, dropped objects, dropped relationships). An object dropped takes its
        relationships with it; a relationship whose predicate or specific predicate is unknown
        is dropped.

    Raises:
        AnnotationError: unknown names without ``drop_unknown``; the message lists them with
            their counts and locates the first one.
    """
    objects, predicates = set(vocabulary.objects[1:]), set(vocabulary.predicates[1:])
    if not drop_unknown:
        _raise_unknown(annotations, objects, predicates)
    images, dropped_objects, dropped_relations = [], 0, 0
    for image in annotations.images:
        kept = np.array([name in objects for name in image.object_names], dtype=bool)  # (N,)
        new_index = np.cumsum(kept) - 1  # (N,)
        specific = image.specific_predicate_names or image.predicate_names
        related = np.array(
            [
                kept[subject] and kept[object_] and predicate in predicates and other in predicates
                for (subject, object_), predicate, other in zip(
                    image.relation_pairs.tolist(), image.predicate_names, specific, strict=True
                )
            ],
            dtype=bool,
        ).reshape(-1)  # (R,)
        dropped_objects += int((~kept).sum())
        dropped_relations += int((~related).sum())
        rows = np.flatnonzero(related)
        images.append(
            replace(
                image,
                object_names=[name for name, k in zip(image.object_names, kept, strict=True) if k],
                boxes=image.boxes[kept],
                relation_pairs=new_index[image.relation_pairs[rows]].reshape(-1, 2),
                predicate_names=[image.predicate_names[row] for row in rows],
                specific_predicate_names=None
                if image.specific_predicate_names is None
                else [image.specific_predicate_names[row] for row in rows],
            )
        )
    return replace(annotations, images=images), dropped_objects, dropped_relations


def _raise_unknown(annotations: AnnotationSet, objects: set[str], predicates: set[str]) -> None:
    known = {"object": objects, "predicate": predicates}
    unknown: dict[str, Counter[str]] = {"object": Counter(), "predicate": Counter()}
    first: dict[str, tuple[int, str, str]] = {}
    for index, image in enumerate(annotations.images):
        occurrences = [
            ("object", name, f"object {position}", "name")
            for position, name in enumerate(image.object_names)
        ]
        for field, names in (
            ("predicate", image.predicate_names),
            ("specific_predicate", image.specific_predicate_names or []),
        ):
            occurrences += [
                ("predicate", name, f"relationship {position}", field)
                for position, name in enumerate(names)
            ]
        for kind, name, item, field in occurrences:
            if name not in known[kind]:
                unknown[kind][name] += 1
                first.setdefault(kind, (index, item, field))
    for kind, (index, item, field) in first.items():
        listed = ", ".join(f"{name!r} ({count})" for name, count in unknown[kind].most_common())
        raise annotations.error(
            f"{len(unknown[kind])} {kind} name(s) not in the vocabulary: {listed}; this is the "
            "first (pass --drop-unknown to drop them and their relationships)",
            image=index,
            item=item,
            field=field,
        )


def assign_splits(
    splits: list[str | None], *, test_fraction: float = 0.3, seed: int = 0
) -> list[str]:
    """Fill missing splits: ``round(test_fraction * missing)`` of them, drawn with ``seed``, are
    ``"test"``, the rest ``"train"``; given splits are kept."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    missing = np.array([index for index, split in enumerate(splits) if split is None], np.int64)
    num_test = int(np.floor(test_fraction * len(missing) + 0.5))
    order = np.random.default_rng(seed).permutation(len(missing))  # (M,)
    test = set(missing[order[:num_test]].tolist())
    return [
        split if split is not None else ("test" if index in test else "train")
        for index, split in enumerate(splits)
    ]


def json_to_vg150(
    annotations: AnnotationSet,
    out: VG150Files,
    *,
    image_dir: str | Path | None = None,
    vocabulary: str | Vocabulary = "data",
    drop_unknown: bool = False,
    test_fraction: float = 0.3,
    seed: int = 0,
    image_mode: str = "copy",
) -> ConversionSummary:
    """Write ``annotations`` as a VG150-format folder.

    Images keep their file order, except that ``"val"`` images come first: they are written
    with the train flag, and Scene-Graph-Benchmark's loader takes val as the first
    ``VAL_SIZE`` train-flag images with relations. ``image_data.json`` records each image's
    ``file_name``.

    Args:
        annotations: validated JSON annotations (:func:`basgg.data.json_format.read_annotations`).
        out: the folder to write.
        image_dir: folder of the image files; ``None`` writes the annotation files only.
        vocabulary: ``"data"``, ``"vg150"`` (see :func:`choose_vocabulary`) or a vocabulary.
        drop_unknown: drop objects and relationships whose names are not in the vocabulary
            instead of raising.
        test_fraction: share of the images without a ``split`` that become test images.
        seed: seed of that draw.
        image_mode: ``"copy"`` or ``"link"`` (symbolic links) for JPEG files; other formats
            are re-encoded to JPEG (quality 95) in both modes.
    """
    if image_mode not in IMAGE_MODES:
        raise ValueError(f"image_mode must be one of {IMAGE_MODES}, got {image_mode!r}")
    if isinstance(vocabulary, str):
        vocabulary = choose_vocabulary(annotations, vocabulary)
    annotations, dropped_objects, dropped_relations = apply_vocabulary(
        annotations, vocabulary, drop_unknown=drop_unknown
    )
    images = annotations.images
    splits = assign_splits(
        [image.split for image in images], test_fraction=test_fraction, seed=seed
    )
    if all(image.image_id is not None for image in images):
        image_ids = [int(image.image_id) for image in images]
    else:
        image_ids = list(range(1, len(images) + 1))
    order = sorted(range(len(images)), key=lambda index: splits[index] != "val")  # stable
    object_index = {name: index for index, name in enumerate(vocabulary.objects)}
    predicate_index = {name: index for index, name in enumerate(vocabulary.predicates)}
    graphs = [
        _scene_graph(images[index], image_ids[index], object_index, predicate_index)
        for index in order
    ]
    write_vg150(out, graphs, [SPLIT_FLAGS[splits[index]] for index in order], vocabulary)
    entries = json.loads(out.image_data_path.read_text())
    for entry, index in zip(entries, order, strict=True):
        entry["file_name"] = images[index].file_name
    atomic.write_text(out.image_data_path, json.dumps(entries))
    reencoded = 0
    if image_dir is not None:
        reencoded = copy_images(
            [Path(image_dir) / images[index].file_name for index in order],
            [out.image_path(image_ids[index]) for index in order],
            mode=image_mode,
        )
    related_splits = [
        split for image, split in zip(images, splits, strict=True) if image.predicate_names
    ]
    return ConversionSummary(
        files=out,
        vocabulary=vocabulary,
        images={name: splits.count(name) for name in SPLITS},
        images_with_relations={name: related_splits.count(name) for name in SPLITS},
        objects=sum(len(image.object_names) for image in images),
        relations=sum(len(image.predicate_names) for image in images),
        dropped_objects=dropped_objects,
        dropped_relations=dropped_relations,
        reencoded_images=reencoded,
    )


def _scene_graph(
    image: ImageAnnotation,
    image_id: int,
    object_index: dict[str, int],
    predicate_index: dict[str, int],
) -> SceneGraph:
    specific = image.specific_predicate_names
    return SceneGraph(
        boxes=torch.from_numpy(image.boxes.astype(np.float32)).reshape(-1, 4),  # (N, 4)
        labels=torch.tensor([object_index[name] for name in image.object_names], dtype=torch.int64),
        relation_pairs=torch.from_numpy(image.relation_pairs.astype(np.int64)).reshape(-1, 2),
        predicates=torch.tensor(
            [predicate_index[name] for name in image.predicate_names], dtype=torch.int64
        ),
        image_size=(image.height, image.width),
        image_id=image_id,
        specific_predicates=None
        if specific is None
        else torch.tensor([predicate_index[name] for name in specific], dtype=torch.int64),
    )


def copy_images(sources: list[Path], targets: list[Path], *, mode: str = "copy") -> int:
    """Copy (or symlink) JPEG ``sources`` to ``targets``; re-encode other formats to JPEG.

    Returns the number of re-encoded images. Existing targets are replaced atomically (a
    target is never opened for writing: a link to a source stays untouched until renamed
    over), and sources are only read.
    """
    reencoded = 0
    folders = {target.parent for target in targets}
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        atomic.clean_temporaries(folder)  # left by a killed earlier conversion
    for source, target in zip(sources, targets, strict=True):
        with Image.open(source) as opened:
            if opened.format != "JPEG":
                with atomic.atomic_output(target, durable=False, clean=False) as temporary:
                    opened.convert("RGB").save(temporary, format="JPEG", quality=JPEG_QUALITY)
                reencoded += 1
                continue
        with atomic.atomic_output(target, durable=False, clean=False) as temporary:
            if mode == "link":
                os.symlink(source.resolve(), temporary)
            else:
                shutil.copyfile(source, temporary)
    return reencoded


def vg150_to_json(files: VG150Files, *, split: str = "all") -> AnnotationSet:
    """Read a VG150-format folder (checked as the loader checks it) into JSON annotations.

    Every h5 image of the split flag is kept, in file order, with all its boxes and relation
    rows. Boxes are the stored ``boxes_1024`` decoded to pixels and clipped to the image
    extent ``[0, W] x [0, H]`` (the loader clips to ``W - 1`` / ``H - 1`` instead). File names
    are those recorded by :func:`json_to_vg150`, else ``<image_id>.jpg`` of the image folder.
    The vocabulary is written as ``object_classes`` / ``predicate_classes`` (attributes and
    ``boxes_512`` are not exported).

    Args:
        files: the VG150 folder.
        split: ``"all"``, ``"train"`` (flag 0) or ``"test"`` (flag 2).
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    vocabulary = read_checked_vocabulary(files.dict_path)
    arrays = read_h5_arrays(files.roidb_path)
    image_ids, widths, heights = read_image_data(files.image_data_path, len(arrays["split"]))
    check_h5_arrays(arrays, files.roidb_path, vocabulary, image_ids)
    file_names = _recorded_file_names(files.image_data_path)
    specific = arrays.get(SPECIFIC_PREDICATES)
    images = []
    for row, flag in enumerate(arrays["split"].tolist()):
        if flag not in FLAG_SPLITS:
            raise vg150_error(
                files.roidb_path,
                "split",
                f"flag {flag} is not 0 (train), 1 (val) or 2 (test)",
                row=row,
                image_id=int(image_ids[row]),
            )
        if split != "all" and FLAG_SPLITS[flag] != split:
            continue
        objects = _inclusive_range(arrays["img_to_first_box"][row], arrays["img_to_last_box"][row])
        relations = _inclusive_range(
            arrays["img_to_first_rel"][row], arrays["img_to_last_rel"][row]
        )
        width, height = int(widths[row]), int(heights[row])
        boxes = decode_vg_boxes(  # exact in float64: an integer times a dyadic scale
            arrays["boxes_1024"][objects], width, height, clip_to_last_pixel=False, dtype=np.float64
        )  # (N, 4)
        image_id = int(image_ids[row])
        images.append(
            ImageAnnotation(
                file_name=file_names.get(image_id, f"{image_id}.jpg"),
                width=width,
                height=height,
                object_names=[vocabulary.objects[label] for label in arrays["labels"][objects, 0]],
                boxes=boxes,
                relation_pairs=arrays["relationships"][relations].astype(np.int64) - objects.start,
                predicate_names=[
                    vocabulary.predicates[i] for i in arrays["predicates"][relations, 0]
                ],
                specific_predicate_names=None
                if specific is None
                else [vocabulary.predicates[i] for i in specific[relations, 0]],
                split=FLAG_SPLITS[flag],
                image_id=image_id,
            )
        )
    return AnnotationSet(
        images=images,
        object_classes=vocabulary.objects[1:],
        predicate_classes=vocabulary.predicates[1:],
        source=str(files.root),
    )


def _inclusive_range(first: int, last: int) -> slice:
    return slice(int(first), int(last) + 1) if first >= 0 else slice(0, 0)


def _recorded_file_names(image_data_path: Path) -> dict[int, str]:
    """image_id -> the ``file_name`` that :func:`json_to_vg150` recorded, if any."""
    entries = json.loads(Path(image_data_path).read_text())
    return {
        int(entry["image_id"]): entry["file_name"]
        for entry in entries
        if isinstance(entry.get("file_name"), str)
    }
