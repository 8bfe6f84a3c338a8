"""The predicate hierarchy read off a stage-1 confusion matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from basgg.evaluation.hierarchy import predicate_hierarchy, write_hierarchy

NAMES = ["__background__", "on", "parked on", "riding", "has", "wearing"]


def _confusion() -> np.ndarray:
    counts = np.zeros((6, 6), dtype=np.int64)  # row = ground truth, column = prediction
    counts[1, [1, 2]] = [190, 10]  # on: 200 relations
    counts[2, [1, 2]] = [39, 61]  # parked on: 39% predicted "on"
    counts[3, [1, 3, 4]] = [50, 40, 10]  # riding: 50% "on", 10% "has"
    counts[4, [4, 5]] = [110, 40]  # has: 150 relations
    counts[5, [4, 5]] = [30, 70]  # wearing: 30% "has"
    return counts


def test_hierarchy_links_informative_to_more_frequent_general() -> None:
    hierarchy = predicate_hierarchy(_confusion(), NAMES)
    assert hierarchy == {
        "on": [{"predicate": "riding", "share": 0.5}, {"predicate": "parked on", "share": 0.39}],
        "has": [{"predicate": "wearing", "share": 0.3}],
    }  # "has" -> "wearing" (27%) is dropped: wearing is the less frequent one


def test_min_share_and_shape_check(tmp_path) -> None:
    assert predicate_hierarchy(_confusion(), NAMES, min_share=0.45) == {
        "on": [{"predicate": "riding", "share": 0.5}]
    }
    with pytest.raises(ValueError, match="does not fit"):
        predicate_hierarchy(np.zeros((4, 4)), NAMES)
    paths = write_hierarchy(predicate_hierarchy(_confusion(), NAMES), tmp_path)
    assert json.loads(paths["json"].read_text())["has"][0]["predicate"] == "wearing"
    assert paths["png"].stat().st_size > 1000
