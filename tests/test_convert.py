"""Bring-your-own-data: the JSON format, JSON <-> VG150 conversion and their commands.

Box bound. With ``M = max(W, H)`` and the grid step ``g = M / 1024``, VG150 stores every box
on the 1024-scale integer grid: x1 and y1 are floored, x2 and y2 ceiled (``encode_vg_boxes``,
up to its 1e-6 grid-unit epsilon). Export multiplies the stored integers by ``g``, a dyadic
number, so it is exact, and clips to ``[0, W] x [0, H]``. Hence a JSON box comes back moved
outward by less than one grid step: ``x1 - g < x1' <= x1`` and ``x2 <= x2' < x2 + g`` (up to
1e-6 g), and a box whose coordinates are multiples of ``g`` comes back exactly.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from basgg.cli import main
from basgg.data import VG150Dataset, VG150Files
from basgg.data.convert import (
    apply_vocabulary,
    assign_splits,
    choose_vocabulary,
    copy_images,
    json_to_vg150,
    vg150_to_json,
)
from basgg.data.json_format import (
    AnnotationError,
    parse_annotations,
    read_annotations,
    write_annotations,
)
from basgg.data.summary import summarize_dataset
from basgg.data.vocabulary import VG150_OBJECTS
from basgg.synthvg.generator import generate_dataset, load_settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_data" / "annotations.json"
DELETE = object()

# Boxes on the 1024-scale grid (multiples of g): they survive the round trip exactly.
GRID_IMAGES = {
    "images": [
        {
            "file_name": "grid_512.jpg",  # g = 0.5
            "width": 512,
            "height": 384,
            "split": "train",
            "objects": [
                {"name": "man", "box": [0, 0, 512, 384]},
                {"name": "hat", "box": [10.5, 20, 100.5, 383.5]},
                {"name": "dog", "box": [255.5, 0.5, 256, 1]},
            ],
            "relationships": [
                {"subject": 0, "predicate": "wearing", "object": 1},
                {"subject": 0, "predicate": "has", "object": 1},
                {"subject": 2, "predicate": "near", "object": 0},
            ],
        },
        {
            "file_name": "sub/doc_800.jpg",  # g = 0.78125; the vg150-format.md example box
            "width": 800,
            "height": 600,
            "split": "test",
            "objects": [
                {"name": "dog", "box": [100, 50, 300, 150]},
                {"name": "man", "box": [12.5, 25, 37.5, 50]},
                {"name": "tree", "box": [0, 0, 800, 600]},
            ],
            "relationships": [{"subject": 1, "predicate": "near", "object": 0}],
        },
        {
            "file_name": "tall_768.jpg",  # g = 1
            "width": 768,
            "height": 1024,
            "split": "train",
            "objects": [
                {"name": "tree", "box": [0, 1000, 768, 1024]},
                {"name": "man", "box": [5, 6, 7, 8]},
            ],
            "relationships": [{"subject": 1, "predicate": "near", "object": 0}],
        },
    ]
}


def make_images(folder: Path, data: dict, *, image_format: str = "JPEG") -> None:
    """One small solid-colour image per entry, of the entry's size."""
    for index, image in enumerate(data["images"]):
        path = folder / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = (40 * index % 256, 120, 200)
        Image.new("RGB", (image["width"], image["height"]), colour).save(path, image_format)


def read_h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as h5:
        return {name: h5[name][()] for name in h5}


def image_fields(annotations) -> list[tuple]:
    """What a round trip must preserve (image ids excluded: the first conversion assigns them)."""
    return [
        (
            image.file_name,
            image.width,
            image.height,
            image.split,
            image.object_names,
            image.relation_pairs.tolist(),
            image.predicate_names,
        )
        for image in annotations.images
    ]


# --- the example and the commands ---------------------------------------------------------


def test_example_converts_and_loads(tmp_path, capsys):
    example = json.loads(EXAMPLE.read_text())
    make_images(tmp_path / "photos", example)
    out = tmp_path / "dataset"
    argv = ["data", "convert", str(EXAMPLE), "--images", str(tmp_path / "photos")]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # beach.jpg has no split: round(0.3 * 1) = 0 test images drawn, so it is train
    assert "images: train 3 (3 with relations), test 1 (1 with relations)" in printed
    assert "objects: 15, relations: 11" in printed
    assert "classes: 14 objects, 9 predicates" in printed
    assert "DATASETS.VAL_SIZE 1" in printed
    files = VG150Files(root=out)
    dataset = VG150Dataset(files, split="train", val_size=1)
    # data vocabulary: most frequent first (man 2, near 3), ties alphabetical
    assert dataset.vocabulary.objects[:4] == ("__background__", "man", "bike", "car")
    assert dataset.vocabulary.predicates[:3] == ("__background__", "near", "above")
    image, graph = dataset[0]  # street.jpg, the second train image (the first is val)
    assert tuple(image.shape) == (3, 600, 800) and graph.image_id == 2
    assert [dataset.vocabulary.objects[label] for label in graph.labels] == [
        "car",
        "street",
        "man",
        "bike",
        "helmet",
    ]
    assert summarize_dataset(files).splits["all"].relations == 11  # what `data stats` reads

    again = tmp_path / "vg150"
    assert main([*argv, "--out", str(again), "--vocabulary", "vg150", "--link-images"]) == 0
    assert (again / "VG_100K" / "1.jpg").resolve() == (tmp_path / "photos" / "kitchen.jpg")
    graph = VG150Dataset(VG150Files(root=again), split="test", load_images=False).ground_truth(0)
    assert [VG150_OBJECTS[label - 1] for label in graph.labels] == ["woman", "dog", "tree"]


def test_the_documented_example_is_valid(tmp_path):
    text = (ROOT / "docs" / "own-data.md").read_text()
    example = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    make_images(tmp_path, {"images": [{"file_name": "kitchen.jpg", "width": 640, "height": 480}]})
    make_images(
        tmp_path, {"images": [{"file_name": "outdoor/street.jpg", "width": 800, "height": 600}]}
    )
    annotations = parse_annotations(example, image_dir=tmp_path)
    assert [(image.width, image.height) for image in annotations.images] == [(640, 480), (800, 600)]
    summary = json_to_vg150(annotations, VG150Files(root=tmp_path / "out"), image_dir=tmp_path)
    assert (summary.objects, summary.relations) == (5, 4)


def test_convert_refuses_to_overwrite_and_export_round_trips(tmp_path, capsys):
    make_images(tmp_path / "photos", GRID_IMAGES)
    source = tmp_path / "grid.json"
    source.write_text(json.dumps(GRID_IMAGES))
    out = tmp_path / "dataset"
    argv = ["data", "convert", str(source), "--images", str(tmp_path / "photos")]
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv, "--out", str(out)]) == 2
    assert f"{out}: already holds a dataset" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0

    exported = tmp_path / "exported.json"
    assert main(["data", "export", str(out), "--out", str(exported)]) == 0
    assert main(["data", "export", str(out), "--out", str(exported)]) == 2
    assert "already exists" in capsys.readouterr().err
    back = read_annotations(exported, image_dir=tmp_path / "photos")
    assert image_fields(back) == image_fields(parse_annotations(GRID_IMAGES))
    assert [image.image_id for image in back.images] == [1, 2, 3]

    test_only = tmp_path / "test.json"
    assert main(["data", "export", str(out), "--out", str(test_only), "--split", "test"]) == 0
    assert [i.file_name for i in read_annotations(test_only).images] == ["sub/doc_800.jpg"]


# --- round trips --------------------------------------------------------------------------


def test_grid_boxes_round_trip_exactly(tmp_path):
    annotations = parse_annotations(GRID_IMAGES)
    files = VG150Files(root=tmp_path / "a")
    json_to_vg150(annotations, files)
    arrays = read_h5(files.roidb_path)
    # hand-computed boxes_1024 rows [cx, cy, w, h]: the whole 512 x 384 image at scale 2,
    # and vg150-format.md's example box
    assert arrays["boxes_1024"][0].tolist() == [512, 384, 1024, 768]
    assert arrays["boxes_1024"][3].tolist() == [256, 128, 256, 128]
    assert arrays["split"].tolist() == [0, 2, 0]

    written = tmp_path / "back.json"
    write_annotations(written, vg150_to_json(files))
    back = read_annotations(written)
    assert image_fields(back) == image_fields(annotations)
    for original, returned in zip(annotations.images, back.images, strict=True):
        np.testing.assert_array_equal(returned.boxes, original.boxes)

    again = VG150Files(root=tmp_path / "b")
    json_to_vg150(back, again)
    second = read_h5(again.roidb_path)
    assert second.keys() == arrays.keys()
    for name, array in arrays.items():
        np.testing.assert_array_equal(second[name], array, err_msg=name)


def test_random_boxes_move_outward_by_less_than_one_grid_step(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(300, 200), (1024, 1024), (2000, 1500), (333, 777)]
    images = []
    for index, (width, height) in enumerate(sizes):
        corners = rng.uniform(0, 1, size=(40, 2, 2)) * np.array([width, height])  # (40, 2, 2)
        corners = np.sort(corners, axis=1).astype(np.float32)  # float32: the writer's dtype
        boxes = corners.reshape(40, 4)  # (40, 4) [x1, y1, x2, y2]
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        images.append(
            {
                "file_name": f"{index}.jpg",
                "width": width,
                "height": height,
                "objects": [{"name": "man", "box": box.tolist()} for box in boxes],
                "relationships": [{"subject": 0, "predicate": "near", "object": 1}],
            }
        )
    annotations = parse_annotations({"images": images})
    files = VG150Files(root=tmp_path)
    json_to_vg150(annotations, files)
    back = vg150_to_json(files)
    slack = 1e-5  # the encoder's 1e-6 grid-unit epsilon, in pixels (g <= 2 here)
    for original, returned in zip(annotations.images, back.images, strict=True):
        step = max(original.width, original.height) / 1024
        a, b = original.boxes, returned.boxes  # (N, 4)
        assert ((a[:, :2] - step < b[:, :2]) & (b[:, :2] <= a[:, :2] + slack)).all()
        assert ((a[:, 2:] - slack <= b[:, 2:]) & (b[:, 2:] < a[:, 2:] + step)).all()
        assert (b[:, 2] <= original.width).all() and (b[:, 3] <= original.height).all()
        assert np.abs(b - a).max() > 0.1 * step  # the random boxes really were moved


def test_loader_ground_truth_matches_the_json(tmp_path):
    make_images(tmp_path / "photos", GRID_IMAGES)
    annotations = read_annotations(_write(tmp_path, GRID_IMAGES), image_dir=tmp_path / "photos")
    files = VG150Files(root=tmp_path / "dataset")
    summary = json_to_vg150(annotations, files, image_dir=tmp_path / "photos")
    vocabulary = summary.vocabulary
    for split, indices in (("train", [0, 2]), ("test", [1])):
        dataset = VG150Dataset(files, split=split, val_size=0)
        assert dataset.image_ids == [index + 1 for index in indices]
        for position, index in enumerate(indices):
            expected = annotations.images[index]
            graph = dataset.ground_truth(position)
            assert graph.image_size == (expected.height, expected.width)
            limit = np.array([expected.width, expected.height] * 2) - 1  # the loader clips
            np.testing.assert_array_equal(graph.boxes.numpy(), np.minimum(expected.boxes, limit))
            assert [vocabulary.objects[i] for i in graph.labels] == expected.object_names
            assert graph.relation_pairs.tolist() == expected.relation_pairs.tolist()
            assert [vocabulary.predicates[i] for i in graph.predicates] == expected.predicate_names
        first = annotations.images[indices[0]]
        assert tuple(dataset[0][0].shape[1:]) == (first.height, first.width)


def test_synthvg_round_trips_to_the_same_h5(tmp_path):
    settings = load_settings(num_train=20, num_test=10, seed=2)
    synth = generate_dataset(tmp_path / "synth", settings, workers=1).files
    exported = tmp_path / "synth.json"
    assert main(["data", "export", str(synth.root), "--out", str(exported)]) == 0
    argv = ["data", "convert", str(exported), "--images", str(synth.image_dir_path)]
    assert main([*argv, "--out", str(tmp_path / "again")]) == 0
    again = VG150Files(root=tmp_path / "again")
    original, converted = read_h5(synth.roidb_path), read_h5(again.roidb_path)
    assert "specific_predicates" in original and converted.keys() == original.keys()
    for name, array in original.items():
        assert converted[name].dtype == array.dtype, name
        np.testing.assert_array_equal(converted[name], array, err_msg=name)
    assert json.loads(again.dict_path.read_text()) == json.loads(synth.dict_path.read_text())
    old, new = (json.loads(f.image_data_path.read_text()) for f in (synth, again))
    assert [(e["image_id"], e["width"], e["height"]) for e in new] == [
        (e["image_id"], e["width"], e["height"]) for e in old
    ]
    assert new[0]["file_name"] == f"{old[0]['image_id']}.jpg"
    assert (again.image_path(1)).read_bytes() == synth.image_path(1).read_bytes()
    # converting a folder's own export back into it keeps its images in place
    image_bytes = synth.image_path(1).read_bytes()
    assert main([*argv, "--out", str(synth.root), "--overwrite", "--link-images"]) == 0
    assert synth.image_path(1).read_bytes() == image_bytes
    assert len(list(synth.image_dir_path.glob("*.jpg"))) == 30
    np.testing.assert_array_equal(read_h5(synth.roidb_path)["boxes_1024"], original["boxes_1024"])


# --- vocabulary, splits, val and images ---------------------------------------------------


def test_val_images_are_written_first(tmp_path):
    data = copy.deepcopy(GRID_IMAGES)
    data["images"][2]["split"] = "val"
    summary = json_to_vg150(parse_annotations(data), VG150Files(root=tmp_path))
    assert read_h5(tmp_path / "VG-SGG-with-attri.h5")["split"].tolist() == [0, 0, 2]
    assert summary.images == {"train": 1, "val": 1, "test": 1}
    assert summary.images_with_relations["val"] == 1
    val = VG150Dataset(VG150Files(root=tmp_path), split="val", val_size=1, load_images=False)
    assert val.image_ids == [3]  # tall_768.jpg keeps its id, third in the file
    entries = json.loads((tmp_path / "image_data.json").read_text())
    assert [entry["file_name"] for entry in entries] == [
        "tall_768.jpg",
        "grid_512.jpg",
        "sub/doc_800.jpg",
    ]


def test_assign_splits_is_deterministic_and_keeps_given_splits():
    splits = [None, "val", None, None, "test", None, None, None, None, None, None, None]
    first = assign_splits(splits, test_fraction=0.3, seed=3)
    assert first == assign_splits(splits, test_fraction=0.3, seed=3)
    assert first[1] == "val" and first[4] == "test"
    missing = [index for index, split in enumerate(splits) if split is None]
    assert sum(first[index] == "test" for index in missing) == 3  # 0.3 * 10 missing
    others = {tuple(assign_splits(splits, test_fraction=0.3, seed=s)) for s in range(8)}
    assert len(others) > 1
    assert assign_splits([None] * 3, test_fraction=1.0) == ["test"] * 3
    with pytest.raises(ValueError, match="test_fraction"):
        assign_splits([None], test_fraction=1.5)


def test_data_vocabulary_is_most_frequent_first():
    relationships = [
        {"subject": 0, "predicate": "on", "object": 1, "specific_predicate": "riding"},
        {"subject": 1, "predicate": "near", "object": 0, "specific_predicate": "near"},
        {"subject": 2, "predicate": "on", "object": 1, "specific_predicate": "on"},
    ]
    objects = [{"name": name, "box": [0, 0, 5, 5]} for name in ("man", "bike", "man")]
    data = {"images": [{"file_name": "a.jpg", "width": 9, "height": 9, "objects": objects}]}
    data["images"][0]["relationships"] = relationships
    vocabulary = choose_vocabulary(parse_annotations(data), "data")
    assert vocabulary.objects == ("__background__", "man", "bike")
    assert vocabulary.predicates == ("__background__", "on", "near", "riding")


def test_file_lists_fix_the_vocabulary_and_drop_unknown(tmp_path, capsys):
    data = copy.deepcopy(GRID_IMAGES)
    data["object_classes"] = ["tree", "man"]
    data["predicate_classes"] = ["near", "wearing"]
    data["images"][1]["relationships"].append({"subject": 2, "predicate": "near", "object": 1})
    annotations = parse_annotations(data, source="mine.json")
    vocabulary = choose_vocabulary(annotations, "data")
    assert vocabulary.objects == ("__background__", "tree", "man")
    with pytest.raises(AnnotationError) as caught:
        apply_vocabulary(annotations, vocabulary)
    assert str(caught.value) == (
        "mine.json: image 0 ('grid_512.jpg'): object 1: field 'name': 2 object name(s) not in "
        "the vocabulary: 'dog' (2), 'hat' (1); this is the first (pass --drop-unknown to drop "
        "them and their relationships)"
    )
    kept, dropped_objects, dropped_relations = apply_vocabulary(
        annotations, vocabulary, drop_unknown=True
    )
    # grid_512: hat and dog go with all 3 relationships; doc_800: dog goes with its relationship
    assert (dropped_objects, dropped_relations) == (3, 4)
    assert [image.object_names for image in kept.images] == [
        ["man"],
        ["man", "tree"],
        ["tree", "man"],
    ]
    assert kept.images[1].relation_pairs.tolist() == [[1, 0]]  # (tree 2, man 1) renumbered
    assert kept.images[2].relation_pairs.tolist() == [[1, 0]]
    np.testing.assert_array_equal(kept.images[1].boxes, [[12.5, 25, 37.5, 50], [0, 0, 800, 600]])

    make_images(tmp_path / "photos", data)
    argv = ["data", "convert", str(_write(tmp_path, data)), "--images", str(tmp_path / "photos")]
    assert main([*argv, "--out", str(tmp_path / "strict")]) == 2
    assert "2 object name(s) not in the vocabulary" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "dropped"), "--drop-unknown"]) == 0
    printed = capsys.readouterr().out
    assert "objects: 5, relations: 2" in printed
    assert "dropped (unknown names): 3 objects, 4 relations" in printed


def test_vg150_vocabulary_lists_unknown_names():
    data = copy.deepcopy(GRID_IMAGES)
    data["images"][1]["objects"][2]["name"] = "sofa"
    data["images"][1]["relationships"][0]["predicate"] = "sniffing"
    annotations = parse_annotations(data, source="mine.json")
    vocabulary = choose_vocabulary(annotations, "vg150")
    with pytest.raises(AnnotationError, match=r"image 1 \('sub/doc_800.jpg'\): object 2: field "):
        apply_vocabulary(annotations, vocabulary)
    data["images"][1]["objects"][2]["name"] = "tree"
    with pytest.raises(AnnotationError, match=r"relationship 0: field 'predicate': 1 predicate"):
        apply_vocabulary(parse_annotations(data, source="mine.json"), vocabulary)
    data["object_classes"] = ["man", "tree"]
    with pytest.raises(AnnotationError, match="field 'object_classes': differs from the VG150"):
        choose_vocabulary(parse_annotations(data, source="mine.json"), "vg150")


def test_copy_images_reencodes_other_formats(tmp_path):
    data = {"images": [{"file_name": "a.png", "width": 30, "height": 20}]}
    make_images(tmp_path, data, image_format="PNG")
    make_images(tmp_path, {"images": [{"file_name": "b.jpg", "width": 30, "height": 20}]})
    sources = [tmp_path / "a.png", tmp_path / "b.jpg"]
    targets = [tmp_path / "out" / "1.jpg", tmp_path / "out" / "2.jpg"]
    assert copy_images(sources, targets) == 1
    with Image.open(targets[0]) as converted:
        assert (converted.format, converted.size) == ("JPEG", (30, 20))
    assert targets[1].read_bytes() == sources[1].read_bytes()
    assert copy_images(sources, targets, mode="link") == 1
    assert targets[1].is_symlink() and not targets[0].is_symlink()


def test_exif_orientation_warns(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 30)).save(tmp_path / "phone.jpg", exif=exif)
    with pytest.warns(UserWarning, match=r"1 image\(s\) carry an EXIF orientation"):
        parse_annotations({"images": [{"file_name": "phone.jpg"}]}, image_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_images(tmp_path, {"images": [{"file_name": "plain.jpg", "width": 4, "height": 3}]})
        image = parse_annotations({"images": [{"file_name": "plain.jpg"}]}, image_dir=tmp_path)
    assert (image.images[0].width, image.images[0].height) == (4, 3)


# --- validation errors --------------------------------------------------------------------

IMAGE_1 = "image 1 ('sub/doc_800.jpg')"
# (path into the JSON, new value or DELETE, parts the message must hold)
ERROR_CASES = [
    (("images",), DELETE, ["field 'images': missing or not a list"]),
    (("objects",), [], ["unknown key(s) ['objects']", "field 'objects'"]),
    (("object_classes",), ["man", "man"], ["field 'object_classes'", "repeated name(s) ['man']"]),
    (("predicate_classes",), ["__background__"], ["field 'predicate_classes': entry 0"]),
    (("images", 1), "doc.jpg", ["image 1: expected a JSON object"]),
    (("images", 1, "relationship"), [], [IMAGE_1, "field 'relationship': unknown key(s)"]),
    (("images", 1, "file_name"), DELETE, ["image 1: field 'file_name': missing"]),
    (
        ("images", 1, "file_name"),
        "grid_512.jpg",
        ["'grid_512.jpg' repeats the file_name of image 0"],
    ),
    (("images", 1, "split"), "validation", [IMAGE_1, "field 'split': 'validation' is not one of"]),
    (("images", 1, "image_id"), -3, [IMAGE_1, "field 'image_id': -3 is not a non-negative"]),
    (("images", 1, "image_id"), 7, ["image 0 ('grid_512.jpg'): field 'image_id': missing here"]),
    (("images", 1, "width"), 0, [IMAGE_1, "field 'width': 0 is not a positive integer"]),
    (("images", 1, "height"), DELETE, [IMAGE_1, "field 'height': missing (required when no image"]),
    (("images", 1, "objects"), {}, [IMAGE_1, "field 'objects': not a list"]),
    (("images", 1, "objects", 2), ["tree"], [IMAGE_1, "object 2: not a JSON object"]),
    (("images", 1, "objects", 2, "name"), "", [IMAGE_1, "object 2: field 'name': '' is not a"]),
    (("images", 1, "objects", 2, "colour"), "red", [IMAGE_1, "object 2: field 'colour': unknown"]),
    (
        ("images", 1, "objects", 2, "box"),
        [0, 0, 9],
        [IMAGE_1, "object 2: field 'box': [0, 0, 9] is"],
    ),
    (("images", 1, "objects", 2, "box"), [0, 0, True, 9], [IMAGE_1, "object 2: field 'box'"]),
    (("images", 1, "objects", 2, "box"), [5, 0, 5, 9], [IMAGE_1, "needs x1 < x2 and y1 < y2"]),
    (
        ("images", 1, "objects", 2, "box"),
        [-1, 0, 5, 9],
        [IMAGE_1, "object 2: field 'box': [-1, 0, 5, 9] lies outside the 800 x 600 (W x H) image"],
    ),
    (("images", 1, "objects", 2, "box"), [0, 0, 5, 600.5], [IMAGE_1, "lies outside the 800 x 600"]),
    (
        ("images", 1, "relationships", 0, "subject"),
        3,
        [IMAGE_1, "relationship 0: field 'subject': 3 is not an object index in [0, 3)"],
    ),
    (("images", 1, "relationships", 0, "object"), 1, [IMAGE_1, "relationship 0: field 'object'"]),
    (("images", 1, "relationships", 0, "predicate"), DELETE, [IMAGE_1, "field 'predicate': None"]),
    (
        ("images", 1, "relationships", 0, "specific_predicate"),
        "sniffing",
        ["image 0 ('grid_512.jpg'): relationship 0: field 'specific_predicate': missing here"],
    ),
]


def _set(data: dict, path: tuple, value: object) -> None:
    *parents, last = path
    for key in parents:
        data = data[key]
    if value is DELETE:
        del data[last]
    else:
        data[last] = value


def _write(folder: Path, data: object) -> Path:
    path = folder / "annotations.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("path", "value", "parts"), ERROR_CASES)
def test_validation_errors_name_file_image_item_and_field(tmp_path, path, value, parts):
    data = copy.deepcopy(GRID_IMAGES)
    _set(data, path, value)
    source = _write(tmp_path, data)
    with pytest.raises(AnnotationError) as caught:
        read_annotations(source)
    message = str(caught.value)
    assert message.startswith(f"{source}: "), message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_file_and_image_errors(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"images": [')
    with pytest.raises(AnnotationError, match=f"{bad_json}: cannot read the JSON annotations"):
        read_annotations(bad_json)
    with pytest.raises(AnnotationError, match="expected a JSON object, got list"):
        read_annotations(_write(tmp_path, []))

    photos = tmp_path / "photos"
    make_images(photos, GRID_IMAGES)
    source = _write(tmp_path, GRID_IMAGES)
    (photos / "tall_768.jpg").unlink()
    with pytest.raises(AnnotationError) as caught:
        read_annotations(source, image_dir=photos)
    assert str(caught.value) == (
        f"{source}: image 2 ('tall_768.jpg'): field 'file_name': image file missing: "
        f"{photos / 'tall_768.jpg'}"
    )
    (photos / "tall_768.jpg").write_bytes(b"not an image")
    with pytest.raises(AnnotationError, match=r"image 2 \('tall_768.jpg'\): field 'file_name': "):
        read_annotations(source, image_dir=photos)
    Image.new("RGB", (769, 1024)).save(photos / "tall_768.jpg")
    with pytest.raises(AnnotationError) as caught:
        read_annotations(source, image_dir=photos)
    assert str(caught.value).endswith(
        f"image 2 ('tall_768.jpg'): field 'width': 768 but the image file "
        f"{photos / 'tall_768.jpg'} is 769 x 1024 (W x H)"
    )
