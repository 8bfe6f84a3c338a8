"""SceneGraph invariants and the box conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basgg.boxes import box_iou_plus_one, decode_vg_boxes, encode_vg_boxes, union_boxes
from basgg.structures import Mode, SceneGraph, SceneGraphError


def _graph(**changes: object) -> SceneGraph:
    fields: dict[str, object] = dict(
        boxes=torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]]),
        labels=torch.tensor([1, 2, 3]),
        relation_pairs=torch.tensor([[0, 1], [2, 0]]),
        predicates=torch.tensor([4, 5]),
        image_size=(30, 40),
    )
    fields.update(changes)
    return SceneGraph(**fields)  # type: ignore[arg-type]


def test_valid_graph_and_counts() -> None:
    graph = _graph()
    assert (graph.num_objects, graph.num_relations, graph.image_size) == (3, 2, (30, 40))
    assert SceneGraph.empty((5, 6)).num_objects == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"boxes": torch.zeros(3, 5)}, "boxes"),
        ({"labels": torch.tensor([1, 2])}, "labels"),
        ({"labels": torch.tensor([1.0, 2.0, 3.0])}, "labels"),
        ({"relation_pairs": torch.tensor([[0, 3], [0, 1]])}, "relation_pairs"),
        ({"relation_pairs": torch.tensor([[0, -1], [0, 1]])}, "relation_pairs"),
        ({"predicates": torch.tensor([1])}, "predicates"),
        ({"object_scores": torch.ones(2)}, "object_scores"),
        ({"predicate_scores": torch.ones(3, 51)}, "predicate_scores"),
        ({"specific_predicates": torch.ones(1, dtype=torch.int64)}, "specific_predicates"),
    ],
)
def test_invalid_field_is_named(changes: dict, field: str) -> None:
    with pytest.raises(SceneGraphError, match=f"SceneGraph.{field}"):
        _graph(**changes)


def test_mode_from_flags() -> None:
    assert Mode.from_flags(use_gt_box=True, use_gt_object_label=True) is Mode.PREDCLS
    assert Mode.from_flags(use_gt_box=True, use_gt_object_label=False) is Mode.SGCLS
    assert Mode.from_flags(use_gt_box=False, use_gt_object_label=False) is Mode.SGDET


def test_vg_box_decoding_worked_example() -> None:
    # vg150-format.md section 3: an 800x600 image, stored [256, 128, 256, 128].
    stored = np.array([[256, 128, 256, 128]], dtype=np.int32)
    decoded = decode_vg_boxes(stored, width=800, height=600)
    np.testing.assert_array_equal(decoded, [[100.0, 50.0, 300.0, 150.0]])
    np.testing.assert_array_equal(encode_vg_boxes(decoded, 800, 600), stored)


def test_vg_box_decoding_truncates_odd_widths_and_clips() -> None:
    # SGB: cx - w / 2 assigned into int32, truncated: 10 - 2.5 = 7.5 -> 7, x2 = 7 + 5 = 12;
    # 1020 - 5 = 1015, x2 = 1025, clipped to 1023 on a 1024 px image.
    stored = np.array([[10, 10, 5, 5], [1020, 1020, 10, 10]], dtype=np.int32)
    decoded = decode_vg_boxes(stored, width=1024, height=1024)
    np.testing.assert_array_equal(decoded, [[7, 7, 12, 12], [1015, 1015, 1023, 1023]])


def test_iou_plus_one_threshold_cases() -> None:
    # evaluation-protocol.md section 6: 0.5 exactly with +1 widths, 0.499 with y2 = 3.99.
    iou = box_iou_plus_one(np.array([[0, 0, 9, 9.0]]), np.array([[0, 0, 9, 4], [0, 0, 9, 3.99]]))
    assert iou[0, 0] == np.float32(0.5)
    assert iou[0, 1] < 0.5


def test_union_boxes() -> None:
    subject = torch.tensor([[0.0, 5, 10, 10]])
    object_ = torch.tensor([[3.0, 0, 8, 20]])
    assert union_boxes(subject, object_).tolist() == [[0.0, 0.0, 10.0, 20.0]]
