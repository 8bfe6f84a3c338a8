"""The VG150 file layout (Scene-Graph-Benchmark's ``VG-SGG-with-attri.h5`` family) and its writer.

A VG150-format dataset is a folder holding::

    VG-SGG-with-attri.h5           boxes, labels, relations, split flags
    VG-SGG-dicts-with-attri.json   vocabularies and counts
    image_data.json                per-image image_id, width, height
    VG_100K/<image_id>.jpg         the images

SynthVG adds the h5 dataset ``specific_predicates`` (true specific predicate of every
relation row); VG150 tools ignore it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from basgg import atomic
from basgg.atomic import atomic_output
from basgg.boxes import encode_vg_boxes
from basgg.data.vocabulary import BACKGROUND, Vocabulary
from basgg.structures import SceneGraph

SPLIT_TRAIN = 0
SPLIT_VAL = 1  # never written by VG150 tools; Scene-Graph-Benchmark carves val at load time
SPLIT_TEST = 2
SPECIFIC_PREDICATES = "specific_predicates"
NUM_ATTRIBUTE_SLOTS = 10


@dataclass(frozen=True)
class VG150Files:
    """Paths of one VG150-format dataset. Relative names are resolved against ``root``."""

    root: Path
    roidb_file: str = "VG-SGG-with-attri.h5"
    dict_file: str = "VG-SGG-dicts-with-attri.json"
    image_file: str = "image_data.json"
    image_dir: str = "VG_100K"

    @property
    def roidb_path(self) -> Path:
        return Path(self.root) / self.roidb_file

    @property
    def dict_path(self) -> Path:
        return Path(self.root) / self.dict_file

    @property
    def image_data_path(self) -> Path:
        return Path(self.root) / self.image_file

    @property
    def image_dir_path(self) -> Path:
        return Path(self.root) / self.image_dir

    def image_path(self, image_id: int) -> Path:
        return self.image_dir_path / f"{image_id}.jpg"

    def all_paths(self) -> list[Path]:
        """The three annotation files (images excluded)."""
        return [self.roidb_path, self.dict_path, self.image_data_path]


def vocabulary_dicts(
    vocabulary: Vocabulary,
    object_count: dict[str, int] | None = None,
    predicate_count: dict[str, int] | None = None,
) -> dict:
    """The content of ``VG-SGG-dicts-with-attri.json`` for a vocabulary (1-based indices)."""
    objects, predicates = vocabulary.objects[1:], vocabulary.predicates[1:]
    return {
        "label_to_idx": {name: i + 1 for i, name in enumerate(objects)},
        "idx_to_label": {str(i + 1): name for i, name in enumerate(objects)},
        "predicate_to_idx": {name: i + 1 for i, name in enumerate(predicates)},
        "idx_to_predicate": {str(i + 1): name for i, name in enumerate(predicates)},
        "attribute_to_idx": {},
        "idx_to_attribute": {},
        "object_count": dict(object_count or {}),
        "predicate_count": dict(predicate_count or {}),
        "attribute_count": {},
    }


def read_vocabulary(dict_path: Path) -> Vocabulary:
    """Read the vocabularies of a dicts JSON, adding ``__background__`` at index 0."""
    try:
        info = json.loads(Path(dict_path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{dict_path}: cannot read the VG150 dicts JSON ({error})") from error
    names = []
    for key in ("idx_to_label", "idx_to_predicate"):
        table = info.get(key)
        if not isinstance(table, dict) or not table:
            raise ValueError(f"{dict_path}: field {key!r} is missing or empty")
        try:
            ordered = sorted(((int(index), name) for index, name in table.items()))
        except ValueError as error:
            raise ValueError(f"{dict_path}: field {key!r} has a non-integer index") from error
        if [index for index, _ in ordered] != list(range(1, len(ordered) + 1)):
            raise ValueError(f"{dict_path}: field {key!r} indices are not 1..{len(ordered)}")
        names.append((BACKGROUND, *(name for _, name in ordered)))
    return Vocabulary(objects=names[0], predicates=names[1])


def write_vg150(
    files: VG150Files,
    graphs: Sequence[SceneGraph],
    splits: Sequence[int],
    vocabulary: Vocabulary,
) -> None:
    """Write the h5, dicts JSON and image_data.json of ``graphs`` (images are not written).

    Boxes are encoded to ``boxes_1024`` (``[cx, cy, w, h]`` at longer side 1024) by
    :func:`basgg.boxes.encode_vg_boxes`, so a graph whose boxes lie on that grid reads back
    exactly, in basgg and in Scene-Graph-Benchmark.
    Graphs carrying ``specific_predicates`` add that dataset.

    Args:
        files: where to write.
        graphs: one ground-truth graph per image, in file order; ``image_id`` names the image.
        splits: the split flag of each image (0 train, 2 test).
        vocabulary: object and predicate names.
    """
    if len(graphs) != len(splits):
        raise ValueError(f"{len(graphs)} graphs but {len(splits)} split flags")
    Path(files.root).mkdir(parents=True, exist_ok=True)
    n_img = len(graphs)
    first_box = np.full(n_img, -1, np.int32)
    last_box = np.full(n_img, -1, np.int32)
    first_rel = np.full(n_img, -1, np.int32)
    last_rel = np.full(n_img, -1, np.int32)
    boxes_1024, boxes_512, labels, relations, predicates, specific = [], [], [], [], [], []
    n_obj = n_rel = 0
    for i, graph in enumerate(graphs):
        height, width = graph.image_size
        if graph.num_objects:
            first_box[i], last_box[i] = n_obj, n_obj + graph.num_objects - 1
            encoded = encode_vg_boxes(graph.boxes.numpy(), width, height)
            boxes_1024.append(encoded)
            boxes_512.append(encoded // 2)
            labels.append(graph.labels.numpy())
        if graph.num_relations:
            first_rel[i], last_rel[i] = n_rel, n_rel + graph.num_relations - 1
            relations.append(graph.relation_pairs.numpy() + n_obj)
            predicates.append(graph.predicates.numpy())
            if graph.specific_predicates is not None:
                specific.append(graph.specific_predicates.numpy())
        n_obj += graph.num_objects
        n_rel += graph.num_relations

    def stack(parts: list[np.ndarray], shape: tuple[int, ...], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype)

    with atomic_output(files.roidb_path) as temporary, h5py.File(temporary, "w") as h5:
        h5["split"] = np.asarray(splits, dtype=np.int32)
        h5["img_to_first_box"], h5["img_to_last_box"] = first_box, last_box
        h5["img_to_first_rel"], h5["img_to_last_rel"] = first_rel, last_rel
        h5["boxes_1024"] = stack(boxes_1024, (0, 4), np.int32)
        h5["boxes_512"] = stack(boxes_512, (0, 4), np.int32)
        h5["labels"] = stack(labels, (0,), np.int64)[:, None]
        h5["attributes"] = np.zeros((n_obj, NUM_ATTRIBUTE_SLOTS), np.int64)
        h5["relationships"] = stack(relations, (0, 2), np.int32)
        h5["predicates"] = stack(predicates, (0,), np.int64)[:, None]
        if specific:
            if len(np.concatenate(specific)) != n_rel:
                raise ValueError("specific_predicates given for some graphs but not all")
            h5[SPECIFIC_PREDICATES] = stack(specific, (0,), np.int64)[:, None]

    object_count = np.bincount(stack(labels, (0,), np.int64), minlength=vocabulary.num_objects)
    predicate_count = np.bincount(
        stack(predicates, (0,), np.int64), minlength=vocabulary.num_predicates
    )
    dicts = vocabulary_dicts(
        vocabulary,
        {name: int(object_count[i]) for i, name in enumerate(vocabulary.objects) if i},
        {name: int(predicate_count[i]) for i, name in enumerate(vocabulary.predicates) if i},
    )
    atomic.write_text(files.dict_path, json.dumps(dicts, indent=1, sort_keys=True))
    image_data = [
        {
            "image_id": int(graph.image_id),
            "width": int(graph.image_size[1]),
            "height": int(graph.image_size[0]),
            "url": "",
            "coco_id": None,
            "flickr_id": None,
        }
        for graph in graphs
    ]
    atomic.write_text(files.image_data_path, json.dumps(image_data))
