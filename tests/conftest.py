"""A tiny VG150-format dataset written by an independent writer (raw h5py, json and Pillow).

Nothing here uses basgg's writer or box encoder: boxes are written as the generator stores them,
``[cx, cy, w, h]`` at longer side 1024, and the tests compare against hand-decoded values.

Vocabulary: objects 1 cat, 2 dog, 3 man, 4 tree; predicates 1 has, 2 near, 3 on.

h5 rows (split flag 0 train/val, 2 test):

- row 0, image 101, 800x600, train: the doc's example box [256, 128, 256, 128]
  -> [100, 50, 300, 150]
- row 1, image 102, train: pair (0, 1) twice (near, on); (0, 1) touch (overlap only with +1);
  (0, 2) do not overlap
- row 2, image 103, train: a box, no relations
- (image_data.json entry for VG image 1592 here: skipped, no h5 row, as in the real files)
- row 3, image 104, train: one relation between non-overlapping boxes
- row 4, image 105, train: no boxes
- row 5, image 106, train: box 0 lies below the image (empty after clipping); (1, 2) overlap
- row 6, image 107, test: pair (0, 1) twice (near, on)
- row 7, image 108, test: one relation
- row 8, image 109, test: a box, no relations
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from basgg.data.vg150_format import VG150Files

OBJECTS = ("cat", "dog", "man", "tree")
PREDICATES = ("has", "near", "on")
SKIPPED_ENTRY = {"image_id": 1592, "width": 500, "height": 400}
SKIPPED_ENTRY_POSITION = 3  # in image_data.json, between h5 rows 2 and 3

# (image_id, width, height, split flag, [(cx, cy, w, h, label)], [(subject, object, predicate)])
TINY_IMAGES = [
    (101, 800, 600, 0, [(256, 128, 256, 128, 3), (300, 200, 100, 100, 4)], [(0, 1, 3)]),
    (
        102, 1024, 768, 0,
        [(100, 100, 100, 100, 1), (200, 100, 100, 100, 2), (600, 600, 100, 100, 4)],
        [(0, 1, 2), (0, 1, 3), (0, 2, 1)],
    ),
    (103, 1024, 768, 0, [(500, 400, 200, 200, 3)], []),
    (104, 1024, 768, 0, [(100, 100, 50, 50, 3), (900, 700, 50, 50, 2)], [(0, 1, 3)]),
    (105, 1024, 768, 0, [], []),
    (
        106, 1024, 768, 0,
        [(500, 900, 40, 20, 4), (200, 200, 100, 100, 3), (220, 220, 100, 100, 1)],
        [(1, 2, 1), (0, 1, 3)],
    ),
    (107, 1024, 768, 2, [(300, 300, 100, 100, 2), (320, 300, 100, 100, 1)], [(0, 1, 2), (0, 1, 3)]),
    (108, 1024, 768, 2, [(100, 100, 100, 100, 4), (700, 500, 100, 100, 3)], [(1, 0, 1)]),
    (109, 1024, 768, 2, [(300, 300, 80, 80, 1)], []),
]  # fmt: skip


def tiny_annotations() -> dict:
    """The tiny dataset's content: ``{"h5": arrays, "image_data": entries, "dicts": dict}``."""
    first_box, last_box, first_rel, last_rel = [], [], [], []
    boxes, labels, relationships, predicates = [], [], [], []
    for _, _, _, _, image_boxes, image_relations in TINY_IMAGES:
        start = len(boxes)
        first_box.append(start if image_boxes else -1)
        last_box.append(start + len(image_boxes) - 1 if image_boxes else -1)
        first_rel.append(len(relationships) if image_relations else -1)
        last_rel.append(len(relationships) + len(image_relations) - 1 if image_relations else -1)
        for cx, cy, w, h, label in image_boxes:
            boxes.append([cx, cy, w, h])
            labels.append([label])
        for subject, object_, predicate in image_relations:
            relationships.append([start + subject, start + object_])
            predicates.append([predicate])
    h5 = {
        "split": np.array([image[3] for image in TINY_IMAGES], dtype=np.int32),
        "img_to_first_box": np.array(first_box, dtype=np.int32),
        "img_to_last_box": np.array(last_box, dtype=np.int32),
        "img_to_first_rel": np.array(first_rel, dtype=np.int32),
        "img_to_last_rel": np.array(last_rel, dtype=np.int32),
        "boxes_1024": np.array(boxes, dtype=np.int32),
        "boxes_512": np.array(boxes, dtype=np.int32) // 2,
        "labels": np.array(labels, dtype=np.int64),
        "attributes": np.zeros((len(boxes), 10), dtype=np.int64),
        "relationships": np.array(relationships, dtype=np.int32),
        "predicates": np.array(predicates, dtype=np.int64),
    }
    image_data = [
        {"image_id": image_id, "width": width, "height": height, "url": "", "coco_id": None}
        for image_id, width, height, *_ in TINY_IMAGES
    ]
    image_data.insert(SKIPPED_ENTRY_POSITION, dict(SKIPPED_ENTRY))
    dicts = {
        "label_to_idx": {name: i + 1 for i, name in enumerate(OBJECTS)},
        "idx_to_label": {str(i + 1): name for i, name in enumerate(OBJECTS)},
        "predicate_to_idx": {name: i + 1 for i, name in enumerate(PREDICATES)},
        "idx_to_predicate": {str(i + 1): name for i, name in enumerate(PREDICATES)},
        "attribute_to_idx": {},
        "idx_to_attribute": {},
        "object_count": {name: 1 for name in OBJECTS},
        "predicate_count": {name: 1 for name in PREDICATES},
        "attribute_count": {},
    }
    return {"h5": h5, "image_data": image_data, "dicts": dicts}


def write_raw_vg150(root: Path, annotations: dict, *, images: bool = True) -> VG150Files:
    """Write the h5, both JSON files and (optionally) one solid-colour JPEG per entry."""
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "VG-SGG-with-attri.h5", "w") as h5:
        for name, array in annotations["h5"].items():
            h5.create_dataset(name, data=array)
    (root / "VG-SGG-dicts-with-attri.json").write_text(json.dumps(annotations["dicts"]))
    (root / "image_data.json").write_text(json.dumps(annotations["image_data"]))
    if images:
        (root / "VG_100K").mkdir(exist_ok=True)
        for entry in annotations["image_data"]:
            colour = (entry["image_id"] % 256, 40, 200)
            image = Image.new("RGB", (entry["width"], entry["height"]), colour)
            image.save(root / "VG_100K" / f"{entry['image_id']}.jpg", quality=90)
    return VG150Files(root=root)


@pytest.fixture
def annotations() -> dict:
    """A fresh, mutable copy of the tiny dataset's content."""
    return copy.deepcopy(tiny_annotations())


@pytest.fixture
def write_raw():
    """The independent writer, :func:`write_raw_vg150`, for tests that alter the content."""
    return write_raw_vg150


@pytest.fixture(scope="session")
def tiny_vg150(tmp_path_factory: pytest.TempPathFactory) -> VG150Files:
    """The tiny dataset on disk, images included (shared: do not modify)."""
    return write_raw_vg150(tmp_path_factory.mktemp("tiny_vg150"), tiny_annotations())
