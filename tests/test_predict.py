"""``basgg predict``: checkpoint loading, the two JSON formats, pictures, errors and skips.

The models are tiny and untrained (random backbone, 16-wide contexts), saved as checkpoints
in the format ``basgg train`` writes; the photographs are generated (and, when installed,
scikit-image's sample photographs).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from basgg.cli import main
from basgg.commands.predict import find_images
from basgg.config import config_to_dict, load_config
from basgg.data.vocabulary import Vocabulary
from basgg.inference import (
    BoxesFile,
    BoxesFileError,
    ImageReadError,
    Predictor,
    load_predictor,
    prediction_record,
    read_image,
    read_model_checkpoint,
)
from basgg.inference.graph_json import dumps_json
from basgg.models import build_model
from basgg.structures import Mode, SceneGraph
from basgg.training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, atomic_save
from basgg.training.setup import model_info

VOCABULARY = Vocabulary(
    ("__background__", "cat", "dog", "man", "tree"), ("__background__", "has", "near", "on")
)
TINY = [
    "GLOVE_PATH", "random",
    "MODEL.BACKBONE.WEIGHTS", "random",
    "MODEL.BACKBONE.IMAGE_SIZE", "64",
    "MODEL.ROI_RELATION_HEAD.CONTEXT_HIDDEN_DIM", "16",
    "MODEL.ROI_RELATION_HEAD.CONTEXT_POOLING_DIM", "16",
]  # fmt: skip
SGCLS = ["MODEL.ROI_RELATION_HEAD.USE_GT_OBJECT_LABEL", "False"]
RECORD_KEYS = ["image", "width", "height", "mode", "checkpoint", "objects", "relations"]
RELATION_KEYS = ["subject", "predicate", "object", "score", "subject_label", "object_label"]
A_BOXES = [[10, 20, 120, 200], [100, 30, 300, 230], [0, 0, 319, 239]]


def save_tiny_checkpoint(path: Path, overrides: list[str], *, stage_two: bool = False) -> Path:
    """An untrained tiny model saved as ``basgg train`` saves (see training/loop.py)."""
    config = load_config(None, [*TINY, *overrides])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(
            config,
            vocabulary=VOCABULARY,
            frequency_bias_init=torch.randn(5 * 5, 4),
            object_word_vectors=torch.randn(5, config.MODEL.ROI_RELATION_HEAD.EMBED_DIM),
        )
        info = model_info(model, VOCABULARY)
        if stage_two:
            model.relation_head.enable_clean_branch()
            model.relation_head.set_adjustment(torch.eye(4) + 0.25)
            info["clean_branch"] = True
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "model_info": info,
        "iteration": 2,
        "best_metric": 0.0,
        "best_iteration": 2,
        "metrics": {},
        "config": config_to_dict(config),
        "vocabulary": {
            "objects": list(VOCABULARY.objects),
            "predicates": list(VOCABULARY.predicates),
        },
    }
    return atomic_save(state, path)


def _noise_image(path: Path, height: int, width: int, seed: int, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)
    return path


def _objects(boxes: list[list[float]], labels: list[object]) -> dict:
    return {"objects": [{"box": b, "label": n} for b, n in zip(boxes, labels, strict=True)]}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "predcls": save_tiny_checkpoint(folder / "predcls.pth", []),
        "sgcls": save_tiny_checkpoint(folder / "sgcls.pth", SGCLS),
    }


@pytest.fixture(scope="module")
def predcls_run(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``basgg predict`` over a folder: two good photos (320x240 JPEG, 200x300 grey PNG),
    one with an unknown label, one with no objects, a corrupt .jpg and a text file."""
    root = tmp_path_factory.mktemp("predcls")
    photos = root / "photos"
    photos.mkdir()
    _noise_image(photos / "a.jpg", 240, 320, 0)
    _noise_image(photos / "b.png", 300, 200, 1, mode="L")
    _noise_image(photos / "c.jpg", 100, 100, 2)
    _noise_image(photos / "d.jpg", 100, 150, 3)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (photos / "notes.txt").write_text("not an image")
    boxes = {
        "a.jpg": _objects(A_BOXES, ["man", "dog", "tree"]),
        "b.png": _objects([[5, 5, 150, 280], [50.5, 60.25, 199, 299]], ["cat", "man"]),
        "c.jpg": _objects([[0, 0, 50, 50], [10, 10, 90, 90]], ["man", "spaceship"]),
        "d.jpg": {"objects": []},
        "elsewhere.jpg": _objects([[0, 0, 5, 5]], ["cat"]),
    }
    boxes_path = root / "boxes.json"
    boxes_path.write_text(json.dumps(boxes))
    out = root / "out"
    argv = ["predict", str(photos), "--checkpoint", str(checkpoints["predcls"]), "--boxes",
            str(boxes_path), "--out", str(out), "--top-k", "4", "--no-progress"]  # fmt: skip
    return {"root": root, "photos": photos, "boxes": boxes_path, "out": out, "argv": argv}


@pytest.fixture(scope="module")
def predcls_result(predcls_run: dict) -> dict:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(predcls_run["argv"])
    return {**predcls_run, "code": code, "stderr": err.getvalue()}


def _record(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


def test_folder_gives_json_and_png_per_image_and_a_summary(predcls_result: dict) -> None:
    out = predcls_result["out"]
    assert predcls_result["code"] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json", "a.png", "b.json", "b.png", "d.json", "d.png", "summary.json",
    ]  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "predcls" and summary["top_k"] == 4
    assert (summary["images_done"], summary["images_skipped"]) == (3, 2)
    assert [Path(i["image"]).name for i in summary["images"]] == ["a.jpg", "b.png", "d.jpg"]
    assert [(i["objects"], i["relations"]) for i in summary["images"]] == [(3, 4), (2, 2), (0, 0)]
    assert summary["seconds_per_image"] > 0
    for name, size in (("a", (320, 240)), ("b", (200, 300)), ("d", (150, 100))):
        with Image.open(out / f"{name}.png") as picture:
            assert picture.format == "PNG" and picture.width > picture.height > 300
        record = _record(out, name)
        assert list(record) == RECORD_KEYS
        assert (record["width"], record["height"]) == size


def test_corrupt_file_and_bad_entry_are_reported_and_skipped(predcls_result: dict) -> None:
    photos, stderr = predcls_result["photos"], predcls_result["stderr"]
    summary = json.loads((predcls_result["out"] / "summary.json").read_text())
    reasons = {Path(item["image"]).name: item["reason"] for item in summary["skipped"]}
    assert set(reasons) == {"broken.jpg", "c.jpg"}
    assert reasons["broken.jpg"].startswith(f"{photos / 'broken.jpg'}: not")
    assert "image 'c.jpg', object 1: field \"label\": 'spaceship'" in reasons["c.jpg"]
    assert str(predcls_result["boxes"]) in reasons["c.jpg"]
    for reason in reasons.values():
        assert reason in stderr
    assert "notes.txt" not in stderr  # folders give image files only
    assert "1 entry of" in stderr and "'elsewhere.jpg'" in stderr


def test_predcls_objects_are_the_given_boxes_in_original_pixels(predcls_result: dict) -> None:
    record = _record(predcls_result["out"], "a")  # 320x240 photo, model resizes it to 64x48
    assert record["mode"] == "predcls"
    assert record["image"] == str(predcls_result["photos"] / "a.jpg")
    assert record["objects"] == [
        {"index": 0, "label": "man", "score": 1.0, "box": [10.0, 20.0, 120.0, 200.0]},
        {"index": 1, "label": "dog", "score": 1.0, "box": [100.0, 30.0, 300.0, 230.0]},
        {"index": 2, "label": "tree", "score": 1.0, "box": [0.0, 0.0, 319.0, 239.0]},
    ]
    assert _record(predcls_result["out"], "b")["objects"][1]["box"] == [50.5, 60.25, 199.0, 299.0]


def test_relations_are_top_k_ranked_one_predicate_per_pair(predcls_result: dict) -> None:
    record = _record(predcls_result["out"], "a")
    relations = record["relations"]
    assert len(relations) == 4  # --top-k 4 of the 6 ordered pairs
    assert all(list(r) == RELATION_KEYS for r in relations)
    scores = [r["score"] for r in relations]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
    pairs = [(r["subject"], r["object"]) for r in relations]
    assert len(set(pairs)) == 4 and all(s != o for s, o in pairs)
    names = [o["label"] for o in record["objects"]]
    for relation in relations:
        assert relation["subject_label"] == names[relation["subject"]]
        assert relation["object_label"] == names[relation["object"]]
        assert relation["predicate"] in VOCABULARY.predicates[1:]


def _hand_graph() -> SceneGraph:
    return SceneGraph(
        boxes=torch.tensor([[0, 0, 10, 10], [5, 5, 20, 20], [1, 2, 3, 4]], dtype=torch.float32),
        labels=torch.tensor([1, 2, 3]),
        relation_pairs=torch.tensor([[0, 1], [1, 2], [2, 0]]),
        predicates=torch.tensor([1, 3, 2]),
        image_size=(30, 40),
        object_scores=torch.tensor([0.5, 1.0, 0.8]),
        predicate_scores=torch.tensor(
            [[0.1, 0.6, 0.2, 0.1], [0.0, 0.1, 0.1, 0.8], [0.5, 0.1, 0.3, 0.1]]
        ),
    )


def test_prediction_record_scores_by_hand() -> None:
    record = prediction_record(
        _hand_graph(), image="x.jpg", mode=Mode.SGCLS, checkpoint="m.pth", vocabulary=VOCABULARY
    )
    assert (record["width"], record["height"], record["mode"]) == (40, 30, "sgcls")
    assert [o["score"] for o in record["objects"]] == [0.5, 1.0, 0.8]
    assert [o["label"] for o in record["objects"]] == ["cat", "dog", "man"]
    # subject x object x best foreground predicate: 0.8*1*0.8, 0.6*0.5*1, 0.3*0.8*0.5
    triplets = [
        (r["subject"], r["predicate"], r["object"], r["score"]) for r in record["relations"]
    ]
    assert triplets == [(1, "on", 2, 0.64), (0, "has", 1, 0.3), (2, "near", 0, 0.12)]
    predcls = prediction_record(
        _hand_graph(), image="x.jpg", mode=Mode.PREDCLS, checkpoint="m.pth",
        vocabulary=VOCABULARY, top_k=2, min_score=0.0,
    )  # fmt: skip
    assert [o["score"] for o in predcls["objects"]] == [1.0, 1.0, 1.0]
    assert [(r["subject"], r["score"]) for r in predcls["relations"]] == [(1, 0.8), (0, 0.6)]
    kept = prediction_record(
        _hand_graph(), image="x.jpg", mode=Mode.SGCLS, checkpoint="m.pth",
        vocabulary=VOCABULARY, min_score=0.2,
    )  # fmt: skip
    assert [r["score"] for r in kept["relations"]] == [0.64, 0.3]


def test_one_object_placeholder_pair_is_not_a_relation() -> None:
    single = SceneGraph(
        boxes=torch.tensor([[0.0, 0.0, 5.0, 5.0]]), labels=torch.tensor([4]),
        relation_pairs=torch.tensor([[0, 0]]), predicates=torch.tensor([1]), image_size=(9, 9),
        object_scores=torch.tensor([1.0]), predicate_scores=torch.tensor([[1.0, 0, 0, 0]]),
    )  # fmt: skip
    record = prediction_record(
        single, image="x.jpg", mode=Mode.PREDCLS, checkpoint="m.pth", vocabulary=VOCABULARY
    )
    assert record["relations"] == [] and record["objects"][0]["label"] == "tree"


def test_json_layout_puts_each_object_and_relation_on_one_line() -> None:
    text = dumps_json({"a": 1, "objects": [{"box": [1, 2], "label": "x"}], "empty": []})
    assert (
        text
        == '{\n  "a": 1,\n  "objects": [\n    {"box": [1, 2], "label": "x"}\n  ],\n  "empty": []\n}'
    )


def _boxes_file(tmp_path: Path, entries: dict) -> BoxesFile:
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(entries))
    return BoxesFile.read(path)


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([{"box": [0, 0, 5, 5], "label": "cat"}, {"box": [1, 1, 4], "label": "cat"}],
         "object 1: field \"box\": expected [x1, y1, x2, y2]"),
        ([{"box": [9, 0, 5, 5], "label": "cat"}], "object 0: field \"box\": expected x1 <= x2"),
        ([{"box": [0, 0, 5, float("nan")], "label": "cat"}], "object 0: field \"box\": not finite"),
        ([{"box": [60, 0, 70, 5], "label": "cat"}], "lies outside the 50x40 image"),
        ([{"box": [0, 0, 5, 5], "label": "dgo"}], "field \"label\": 'dgo' is not one of the "
         "checkpoint's 4 object classes; did you mean 'dog'?"),
        ([{"box": [0, 0, 5, 5]}], "field \"label\": PredCls needs an object class name, got None"),
        (["cat"], "object 0: expected {\"box\""),
        ({"box": [0, 0, 5, 5]}, "field \"objects\": expected a list"),
    ],
)  # fmt: skip
def test_boxes_file_errors_name_file_image_object_and_field(
    tmp_path: Path, objects: object, expected: str
) -> None:
    boxes = _boxes_file(tmp_path, {"k.jpg": {"objects": objects}})
    with pytest.raises(BoxesFileError) as error:
        boxes.inputs_for(["k.jpg"], image_size=(40, 50), mode=Mode.PREDCLS, vocabulary=VOCABULARY)
    assert str(error.value).startswith(f"{boxes.path}: image 'k.jpg'")
    assert expected in str(error.value)


def test_boxes_file_lookup_clipping_and_whole_file_errors(tmp_path: Path) -> None:
    boxes = _boxes_file(
        tmp_path, {"sub/k.jpg": _objects([[-5, 2, 80, 30.5]], ["dog"]), "k.jpg": {"objects": []}}
    )
    inputs = boxes.inputs_for(
        ["sub/k.jpg", "k.jpg"], image_size=(40, 50), mode=Mode.PREDCLS, vocabulary=VOCABULARY
    )
    assert inputs.boxes.tolist() == [[0.0, 2.0, 49.0, 30.5]] and inputs.labels.tolist() == [2]
    with pytest.raises(BoxesFileError, match="no entry for image 'z.jpg'"):
        boxes.inputs_for(["z.jpg"], image_size=(40, 50), mode=Mode.PREDCLS, vocabulary=VOCABULARY)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(BoxesFileError, match="list.json: the top level must map image file"):
        BoxesFile.read(tmp_path / "list.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(BoxesFileError, match="bad.json: not valid JSON"):
        BoxesFile.read(tmp_path / "bad.json")


def test_sgcls_ignores_given_labels(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    boxes = _boxes_file(tmp_path, {"k.jpg": _objects(A_BOXES, ["spaceship", 7, None])})
    inputs = boxes.inputs_for(
        ["k.jpg"], image_size=(240, 320), mode=Mode.SGCLS, vocabulary=VOCABULARY
    )
    assert inputs.labels.tolist() == [1, 1, 1]
    predictor = load_predictor(read_model_checkpoint(checkpoints["sgcls"]), device="cpu")
    assert predictor.mode is Mode.SGCLS
    image = read_image(_noise_image(tmp_path / "k.jpg", 240, 320, 5))
    first = predictor.predict(image, inputs)
    other = predictor.predict(image, replace(inputs, labels=torch.tensor([4, 3, 2])))
    torch.testing.assert_close(first.predicate_scores, other.predicate_scores)
    assert torch.equal(first.labels, other.labels) and first.labels.min() >= 1
    record = prediction_record(
        first, image="k.jpg", mode=Mode.SGCLS, checkpoint="c", vocabulary=VOCABULARY, top_k=6
    )
    sigma = first.object_scores.tolist()
    assert all(0 < s <= 1 for s in sigma)
    for relation in record["relations"]:
        row = [tuple(p) for p in first.relation_pairs.tolist()].index(
            (relation["subject"], relation["object"])
        )
        best = float(first.predicate_scores[row, 1:].max())
        expected = best * sigma[relation["subject"]] * sigma[relation["object"]]
        assert relation["score"] == pytest.approx(expected, abs=2e-6)


def test_native_size_model_scales_big_photos_down_and_boxes_back(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint = read_model_checkpoint(checkpoints["predcls"])
    native = copy.deepcopy(checkpoint.config)
    native.MODEL.BACKBONE.IMAGE_SIZE = 0
    checkpoint = type(checkpoint)(checkpoint.path, checkpoint.state, native, checkpoint.vocabulary)
    predictor = load_predictor(checkpoint, device="cpu")
    seen: list[tuple[int, ...]] = []
    extract = predictor.model.extract_features

    def spy(images: list[torch.Tensor], graphs: list[SceneGraph]) -> tuple:
        seen.extend(tuple(i.shape) for i in images)
        seen.extend(tuple(g.boxes[0].tolist()) for g in graphs)
        return extract(images, graphs)

    predictor.model.extract_features = spy
    image = torch.zeros((3, 1536, 2048), dtype=torch.uint8)
    boxes = torch.tensor([[100.0, 200.0, 1000.0, 1500.0], [2.0, 4.0, 2047.0, 1535.0]])
    given = SceneGraph(
        boxes=boxes, labels=torch.tensor([1, 3]), image_size=(1536, 2048),
        relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
        predicates=torch.zeros((0,), dtype=torch.int64),
    )  # fmt: skip
    prediction = predictor.predict(image, given)
    assert seen == [(3, 768, 1024), (50.0, 100.0, 500.0, 750.0)]
    assert prediction.image_size == (1536, 2048) and torch.equal(prediction.boxes, boxes)


def test_stage_two_checkpoint_loads_with_its_clean_branch(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / "stage2.pth", [], stage_two=True)
    predictor = load_predictor(read_model_checkpoint(path), device="cpu")
    assert isinstance(predictor, Predictor) and predictor.model.relation_head.clean_branch_enabled
    saved = torch.load(path, weights_only=True)["model"]
    for key, value in predictor.model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_checkpoint_without_config_is_refused(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    state = torch.load(checkpoints["predcls"], weights_only=True)
    del state["config"]
    atomic_save(state, tmp_path / "old.pth")
    with pytest.raises(CheckpointError, match="old.pth: the checkpoint has no 'config'"):
        read_model_checkpoint(tmp_path / "old.pth")


def test_mode_and_boxes_mismatch_and_all_failed_exit_codes(
    checkpoints: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photo = _noise_image(tmp_path / "p.jpg", 40, 50, 0)
    assert main(["predict", str(photo), "--checkpoint", str(checkpoints["predcls"])]) == 2
    assert "is a predcls model, which needs the boxes and labels" in capsys.readouterr().err
    state = torch.load(checkpoints["predcls"], weights_only=True)
    state["config"]["MODEL"]["ROI_RELATION_HEAD"].update(
        USE_GT_BOX=False, USE_GT_OBJECT_LABEL=False
    )
    sgdet = atomic_save(state, tmp_path / "sgdet.pth")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"p.jpg": _objects([[0, 0, 9, 9]], ["cat"])}))
    argv = ["predict", str(photo), "--checkpoint", str(sgdet), "--boxes", str(boxes)]
    assert main(argv) == 2
    assert "is an SGDet model, which finds its own boxes" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    argv = ["predict", str(broken), str(tmp_path / "missing.jpg"), "--checkpoint",
            str(checkpoints["sgcls"]), "--boxes", str(boxes), "--out", str(tmp_path / "out"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{broken}: not" in err and f"{tmp_path / 'missing.jpg'}: no such file" in err
    assert "no image could be processed" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images_done"] == 0 and summary["images_skipped"] == 2


def test_find_images_walks_folders_and_keeps_output_names_apart(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.png", "a.JPG", "sub/a.jpg", "sub/deeper/x.webp", "summary.bmp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "readme.md").write_text("x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.png").write_bytes(b"")  # a picture of an earlier run
    inputs = [tmp_path, tmp_path / "b.jpg", tmp_path / "nope.png"]
    tasks, missing = find_images(inputs, exclude=tmp_path / "out")
    assert [t.path.relative_to(tmp_path).as_posix() for t in tasks] == [
        "a.JPG", "a.png", "b.jpg", "sub/a.jpg", "sub/deeper/x.webp", "summary.bmp",
    ]  # fmt: skip
    assert [t.name for t in tasks] == ["a", "a_png", "b", "sub__a", "sub__deeper__x", "summary_bmp"]
    assert tasks[3].keys == ["sub/a.jpg", "a.jpg"] and tasks[2].keys == ["b.jpg"]
    assert missing == [{"image": str(tmp_path / "nope.png"), "reason": "no such file or folder"}]


def test_read_image_exif_alpha_palette_grey_and_16_bit(tmp_path: Path) -> None:
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)  # top-left red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    upright = read_image(tmp_path / "rotated.png")
    assert upright.shape == (3, 30, 20) and upright[:, 0, -1].tolist() == [255, 0, 0]
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (0, 0, 255, 255)  # one opaque blue pixel, the rest transparent black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    image = read_image(tmp_path / "alpha.png")
    assert image[:, 0, 0].tolist() == [0, 0, 255] and image[:, 3, 3].tolist() == [255, 255, 255]
    palette = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    palette.putpalette([10, 20, 30, 200, 100, 0])
    palette.save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png")[:, 0, 1].tolist() == [200, 100, 0]
    _noise_image(tmp_path / "grey.jpg", 8, 8, 0, mode="L")
    grey = read_image(tmp_path / "grey.jpg")
    assert grey.shape == (3, 8, 8) and torch.equal(grey[0], grey[2])
    deep = Image.fromarray(np.array([[0, 1000], [2000, 4000]], np.uint16))
    deep.save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png")[0].tolist() == [[0, 64], [128, 255]]
    with pytest.raises(ImageReadError, match="missing.jpg: file not found"):
        read_image(tmp_path / "missing.jpg")


def test_scikit_image_sample_photographs(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    data = pytest.importorskip("skimage.data")
    photos = tmp_path / "photos"
    photos.mkdir()
    boxes = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        pixels = getattr(data, name)()
        Image.fromarray(pixels).save(photos / f"{name}.jpg", quality=90)
        height, width = pixels.shape[:2]
        boxes[f"{name}.jpg"] = _objects(
            [[0.1 * width, 0.1 * height, 0.6 * width, 0.9 * height],
             [0.4 * width, 0.3 * height, 0.95 * width, 0.7 * height],
             [0, 0.8 * height, width - 1, height - 1]],
            ["man", "cat", "tree"],
        )  # fmt: skip
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    argv = ["predict", str(photos), "--checkpoint", str(checkpoints["sgcls"]), "--boxes",
            str(tmp_path / "boxes.json"), "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_done"] == 5 and summary["skipped"] == []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        record = _record(out, name)
        height, width = getattr(data, name)().shape[:2]
        assert (record["width"], record["height"], record["mode"]) == (width, height, "sgcls")
        assert len(record["relations"]) == 6 and len(record["objects"]) == 3
        assert record["objects"][2]["box"] == [
            0.0,
            round(0.8 * height, 2),
            width - 1.0,
            height - 1.0,
        ]
        with Image.open(out / f"{name}.png") as picture:
            assert picture.size[0] > picture.size[1]


SGDET = [
    "MODEL.ROI_RELATION_HEAD.USE_GT_BOX", "False",
    "MODEL.ROI_RELATION_HEAD.USE_GT_OBJECT_LABEL", "False",
    "MODEL.DETECTOR.BACKBONE_WEIGHTS", "random",
    "MODEL.DETECTOR.FPN_CHANNELS", "8",
    "MODEL.DETECTOR.REPRESENTATION_SIZE", "16",
    "MODEL.DETECTOR.MIN_SIZE", "64",
    "MODEL.DETECTOR.MAX_SIZE", "96",
    "MODEL.DETECTOR.RPN_PRE_NMS_TOP_N_TEST", "50",
    "MODEL.DETECTOR.RPN_POST_NMS_TOP_N_TEST", "20",
    "MODEL.DETECTOR.SCORE_THRESH", "0.0",
    "MODEL.DETECTOR.DETECTIONS_PER_IMG", "6",
]  # fmt: skip


def test_sgdet_checkpoint_needs_only_images(tmp_path: Path) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "sgdet.pth", SGDET)
    photo = _noise_image(tmp_path / "p.jpg", 240, 320, 7)
    out = tmp_path / "out"
    assert main(["predict", str(photo), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--top-k", "5", "--no-progress"]) == 0  # fmt: skip
    record = _record(out, "p")
    assert (record["mode"], record["width"], record["height"]) == ("sgdet", 320, 240)
    assert 2 <= len(record["objects"]) <= 6 and len(record["relations"]) == 5
    boxes = np.array([item["box"] for item in record["objects"]])  # (N, 4), photo pixels
    assert (boxes >= 0).all() and (boxes[:, 2] <= 320).all() and (boxes[:, 3] <= 240).all()
    assert boxes[:, 2].max() > 96  # not the detector's resized (96 x 72) pixels
    scores = [item["score"] for item in record["objects"]]
    assert all(0 < score <= 1 for score in scores)
    for relation in record["relations"]:  # SGDet scores include both object scores
        assert relation["score"] <= scores[relation["subject"]] * scores[relation["object"]] + 1e-6


def test_big_photos_are_drawn_at_a_bounded_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 10000-pixel photo peaked at 7.7 GB while drawing: the image given to matplotlib is
    at most 2048 pixels on its longer side, and boxes keep the photo's pixel frame."""
    from matplotlib.axes import Axes

    from basgg.visualize import draw_scene_graph

    shown = []
    original = Axes.imshow

    def spy(self, data, *args, **kwargs):
        shown.append((data.shape, kwargs.get("extent")))
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", spy)
    photo = np.zeros((300, 10000, 3), np.uint8)
    photo[:, 5000:] = 255
    record = {
        "image": "wide.jpg",
        "mode": "predcls",
        "objects": [
            {"index": 0, "label": "man", "box": [100.0, 10.0, 400.0, 290.0], "score": 1.0},
            {"index": 1, "label": "hat", "box": [9000.0, 10.0, 9900.0, 200.0], "score": 1.0},
        ],
        "relations": [
            {"subject": 0, "predicate": "has", "object": 1, "score": 0.9,
             "subject_label": "man", "object_label": "hat"},
        ],
    }  # fmt: skip
    draw_scene_graph(photo, record, tmp_path / "wide.png")
    ((shape, extent),) = shown
    assert max(shape[:2]) == 2048 and shape[2] == 3  # basgg.visualize.MAX_DRAWN_SIDE
    assert shape[1] / shape[0] == pytest.approx(10000 / 300, rel=0.02)
    assert extent == (-0.5, 9999.5, 299.5, -0.5)
