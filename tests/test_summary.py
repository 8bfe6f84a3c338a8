"""Dataset summary on a tiny hand-written VG150-format dataset, and ``basgg data stats``."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from basgg.cli import main
from basgg.data.summary import summarize_dataset, summary_json, summary_table
from basgg.data.vg150_format import VG150Files, write_vg150
from basgg.data.vocabulary import BACKGROUND, Vocabulary
from basgg.structures import SceneGraph

OBJECTS = (BACKGROUND, "cat", "dog", "man", "tree")  # 1 cat, 2 dog, 3 man, 4 tree
PREDICATES = (BACKGROUND, "has", "near", "on", "sitting on")  # 1 has, 2 near, 3 on, 4 sitting on

# (labels, [(subject, object, predicate, specific)], split flag)
IMAGES = [
    ([3, 2, 4], [(0, 1, 1, 1), (1, 2, 2, 2)], 0),
    ([3, 1], [(0, 1, 3, 4), (0, 1, 2, 2)], 0),
    ([2, 2], [(0, 1, 3, 3)], 2),
    ([4], [], 2),
    ([], [], 0),
]


def _graph(image_id: int, labels: list[int], relations: list[tuple]) -> SceneGraph:
    n = len(labels)
    boxes = torch.tensor([[10.0 * i, 5.0, 10.0 * i + 30, 40.0] for i in range(n)]).reshape(-1, 4)
    table = torch.tensor(relations, dtype=torch.int64).reshape(-1, 4)
    return SceneGraph(
        boxes=boxes,
        labels=torch.tensor(labels, dtype=torch.int64),
        relation_pairs=table[:, :2],
        predicates=table[:, 2],
        image_size=(80, 100),
        image_id=image_id,
        specific_predicates=table[:, 3],
    )


@pytest.fixture
def tiny(tmp_path: Path) -> VG150Files:
    files = VG150Files(root=tmp_path / "tiny")
    graphs = [_graph(i + 1, labels, relations) for i, (labels, relations, _) in enumerate(IMAGES)]
    write_vg150(files, graphs, [split for *_, split in IMAGES], Vocabulary(OBJECTS, PREDICATES))
    return files


def test_counts_match_a_hand_count(tiny: VG150Files) -> None:
    summary = summarize_dataset(tiny)
    train, test, overall = summary.splits["train"], summary.splits["test"], summary.splits["all"]
    assert (train.images, test.images, overall.images) == (3, 2, 5)
    assert train.object_counts.tolist() == [0, 1, 1, 2, 1]
    assert test.object_counts.tolist() == [0, 0, 2, 0, 1]
    assert train.predicate_counts.tolist() == [0, 1, 2, 1, 0]
    assert test.predicate_counts.tolist() == [0, 0, 0, 1, 0]
    assert overall.specific_counts.tolist() == [0, 1, 2, 1, 1]
    assert train.objects_per_image.tolist() == [3, 2, 0]
    assert test.relations_per_image.tolist() == [1, 0]
    # train counts has 1, near 2, on 1, sitting on 0: near alone reaches 50%
    assert summary.groups == {"head": [2], "body": [1, 3], "tail": [4]}
    assert summary.general_share == pytest.approx(1 / 5)  # "on" written for "sitting on"


def test_json_and_table(tiny: VG150Files) -> None:
    summary = summarize_dataset(tiny)
    data = summary_json(summary)
    train = data["splits"]["train"]
    assert train["objects_per_image"] == {"mean": pytest.approx(5 / 3), "median": 2.0, "max": 3}
    assert train["relations_per_image"] == {"mean": pytest.approx(4 / 3), "median": 2.0, "max": 2}
    assert train["predicates"]["near"] == {
        "count": 2,
        "share": 0.5,
        "group": "head",
        "specific_count": 2,
    }
    assert data["splits"]["test"]["predicates"]["on"]["share"] == 1.0
    assert data["groups"]["head"] == ["near"]
    json.dumps(data)  # plain JSON data
    table = summary_table(summary)
    near_row = next(line for line in table.splitlines() if line.startswith("near"))
    assert near_row.split() == ["near", "head", "2", "50.0%", "0", "0.0%", "2", "40.0%", "2"]


def test_stats_command_writes_report(tiny: VG150Files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["data", "stats", str(tiny.root), "--out", str(out)]) == 0
    assert "sitting on" in capsys.readouterr().out
    for name in ("predicate_histogram.png", "object_histogram.png", "summary.txt"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["splits"]["all"]["relations"] == 5


def test_bad_predicate_names_file_image_and_field(tiny: VG150Files) -> None:
    with h5py.File(tiny.roidb_path, "r+") as h5:
        predicates = h5["predicates"][()]
        predicates[3, 0] = 9  # row 3 is image 1's second relation (0-based image index 1)
        h5["predicates"][...] = predicates
    expected = r"VG-SGG-with-attri.h5: h5 row 1 \(image_id 2\): field 'predicates'"
    with pytest.raises(ValueError, match=expected):
        summarize_dataset(tiny)


def test_relation_into_another_image_is_reported(tiny: VG150Files) -> None:
    with h5py.File(tiny.roidb_path, "r+") as h5:
        relationships = h5["relationships"][()]
        relationships[4] = np.array([0, 1])  # image 2's relation pointing at image 0's boxes
        h5["relationships"][...] = relationships
    with pytest.raises(ValueError, match=r"h5 row 2 \(image_id 3\): field 'relationships'"):
        summarize_dataset(tiny)


def _loader_error(files: VG150Files) -> str:
    from basgg.data.vg150 import VG150Dataset

    with pytest.raises(ValueError) as error:
        VG150Dataset(files, split="train", val_size=0, load_images=False)
    return str(error.value)


def test_stats_refuses_a_box_the_loader_refuses(tiny: VG150Files, capsys) -> None:
    with h5py.File(tiny.roidb_path, "r+") as h5:
        boxes = h5["boxes_1024"][()]
        boxes[2, 2] = 0  # zero width
        h5["boxes_1024"][...] = boxes
    expected = _loader_error(tiny)
    assert "boxes_1024" in expected
    assert main(["data", "stats", str(tiny.root)]) == 2
    assert capsys.readouterr().err.strip().endswith(expected)


def test_stats_refuses_dicts_the_loader_refuses(tiny: VG150Files, capsys) -> None:
    info = json.loads(tiny.dict_path.read_text())
    info["label_to_idx"]["cat"] = 3  # disagrees with idx_to_label
    tiny.dict_path.write_text(json.dumps(info))
    expected = _loader_error(tiny)
    assert "label_to_idx" in expected
    assert main(["data", "stats", str(tiny.root)]) == 2
    assert capsys.readouterr().err.strip().endswith(expected)
