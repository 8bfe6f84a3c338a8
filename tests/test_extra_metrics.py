"""Hand-computed PairRecall@K, RI@K and InformativeRecall@K (basgg.evaluation.extra_metrics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_metrics_hand import (
    HAT,
    HORSE,
    I1_GT,
    I1_LABELS,
    I1_ROWS,
    I2_GT,
    I2_LABELS,
    I2_ROWS,
    MAN,
    NEAR,
    ON,
    RIDING,
    STREET,
    WEARING,
    WOMAN,
    P,
    grid_box,
    ground_truth,
    prediction,
    score,
)

from basgg.evaluation import (
    evaluate,
    format_table,
    load_information_file,
    load_informative_file,
    predicate_information,
)
from basgg.structures import Mode

KS = (1, 2, 3, 5)


def test_pair_recall_ignores_the_predicate_and_counts_distinct_pairs() -> None:
    # I1: GT pairs (0,1), (0,2), (1,3); rows (0,1) riding, (1,3) near (GT says on: an R miss,
    # a pair hit), (0,2) wearing, (2,0) ...
    i1 = score([ground_truth(I1_LABELS, I1_GT)], [prediction(I1_ROWS, I1_LABELS)])
    assert [i1.metrics[f"PairR@{k}"] for k in KS] == pytest.approx([1 / 3, 2 / 3, 1, 1])
    assert i1.metrics["R@2"] == pytest.approx(1 / 3)
    # I2: pairs (0,1), (2,1), (0,3); rows (0,1), (0,3), (1,2) (reversed: no), (2,1)
    both = score(
        [ground_truth(I1_LABELS, I1_GT), ground_truth(I2_LABELS, I2_GT)],
        [prediction(I1_ROWS, I1_LABELS), prediction(I2_ROWS, I2_LABELS)],
    )
    expected = [(1 / 3 + 1 / 3) / 2, (2 / 3 + 2 / 3) / 2, (1 + 2 / 3) / 2, (1 + 1) / 2]
    assert [both.metrics[f"PairR@{k}"] for k in KS] == pytest.approx(expected)
    # two GT rows on one pair count once: 2 distinct pairs, the first row locates one
    gt = ground_truth([MAN, HORSE, STREET], [(0, 1, ON), (0, 1, RIDING), (1, 2, NEAR)])
    rows = [((1, 2), {ON: 0.9}), ((0, 2), {ON: 0.8}), ((0, 1), {NEAR: 0.7})]
    result = score([gt], [prediction(rows, [MAN, HORSE, STREET])])
    assert [result.metrics[f"PairR@{k}"] for k in KS] == pytest.approx([0.5, 0.5, 1, 1])


def test_pair_recall_needs_both_boxes_matched_in_sgdet() -> None:
    gt = ground_truth([MAN, HORSE, HAT], [(0, 1, RIDING), (0, 2, WEARING)])
    boxes = [grid_box(0), [30.0, 0.0, 50.0, 20.0], [75.0, 0.0, 95.0, 20.0]]
    # the hat box [75, 0, 95, 20] vs GT [60, 0, 80, 20]: IoU+1 = 6*21 / (2*441 - 126) = 1/6
    rows = [((0, 2), {WEARING: 0.9}), ((0, 1), {ON: 0.8})]
    result = score([gt], [prediction(rows, [MAN, HORSE, HAT], boxes=boxes)], mode=Mode.SGDET)
    assert result.metrics["PairR@1"] == 0.0
    assert result.metrics["PairR@2"] == pytest.approx(0.5)


def test_predicate_information_is_minus_log_train_frequency() -> None:
    table = predicate_information(np.array([0, 6, 3, 1, 0]))
    expected = [0.0, math.log(10 / 6), math.log(10 / 3), math.log(10), math.log(10)]
    assert table.tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match="no relation"):
        predicate_information(np.zeros(4))


def test_ri_sums_the_information_of_the_first_k_rows() -> None:
    counts = np.zeros(P, np.int64)
    counts[ON], counts[RIDING], counts[WEARING] = 6, 3, 1  # N = 10; the rest: ln 10
    table = predicate_information(counts)
    # I1 rows say riding, near, wearing, on, then "above" (no train row: ln 10)
    result = score(
        [ground_truth(I1_LABELS, I1_GT)],
        [prediction(I1_ROWS, I1_LABELS)],
        predicate_information=table,
    )
    riding, rare, on = math.log(10 / 3), math.log(10), math.log(10 / 6)
    expected = [riding, riding + rare, riding + 2 * rare, riding + 3 * rare + on]
    assert [result.metrics[f"RI@{k}"] for k in KS] == pytest.approx(expected)
    assert "RI (nats)" in format_table(result)
    assert (
        "RI@1"
        not in score([ground_truth(I1_LABELS, I1_GT)], [prediction(I1_ROWS, I1_LABELS)]).metrics
    )


def test_information_file_by_name(tmp_path) -> None:
    path = tmp_path / "info.json"
    path.write_text(json.dumps({"predicate_wiki_information": {"on": 0.5, "riding": 2.0}}))
    names = ("__background__", "on", "riding", "near")
    assert load_information_file(path, names).tolist() == [0.0, 0.5, 2.0, 0.0]
    path.write_text(json.dumps({"flying": 1.0}))
    with pytest.raises(ValueError, match="names none"):
        load_information_file(path, names)


def test_informative_recall_matches_triplets_and_skips_images_without_any() -> None:
    gts = [ground_truth(I1_LABELS, I1_GT, image_id=0), ground_truth(I2_LABELS, I2_GT, image_id=1)]
    predictions = [
        prediction(I1_ROWS, I1_LABELS, image_id=0),
        prediction(I2_ROWS, I2_LABELS, image_id=1),
    ]
    # image 0: 4 informative triplets, one outside the vocabulary (-1); rows 0 and 2 match
    informative = {
        0: np.array([[MAN, RIDING, HORSE], [MAN, WEARING, HAT], [HORSE, ON, STREET], [-1, -1, -1]])
    }
    result = evaluate(
        gts, predictions, mode=Mode.PREDCLS, num_predicates=P, ks=KS,
        informative_triplets=informative,
    )  # fmt: skip
    assert [result.metrics[f"IR@{k}"] for k in KS] == pytest.approx([0.25, 0.25, 0.5, 0.5])
    # image 1 with one triplet nobody predicts: averaged in as 0
    informative[1] = np.array([[WOMAN, RIDING, HORSE]])
    result = evaluate(
        gts, predictions, mode=Mode.PREDCLS, num_predicates=P, ks=KS,
        informative_triplets=informative,
    )  # fmt: skip
    assert [result.metrics[f"IR@{k}"] for k in KS] == pytest.approx([0.125, 0.125, 0.25, 0.25])
    assert result.per_image["informative_count"].tolist() == [4, 1]
    assert "IR" in format_table(result)


def test_informative_file_is_parsed_into_vocabulary_triplets(tmp_path) -> None:
    objects = ("__background__", "man", "horse", "hat", "street", "traffic light")
    predicates = ("__background__", "on", "parked on", "riding")
    path = tmp_path / "informative_sg.json"
    path.write_text(
        json.dumps(
            {
                "7": ["man riding horse", "Traffic Light on street", "horse parked on street"],
                "8": [["man", "riding", "horse"], "car parked on street"],
            }
        )
    )
    table = load_informative_file(path, objects, predicates)
    assert table[7].tolist() == [[1, 3, 2], [5, 1, 4], [2, 2, 4]]
    assert table[8].tolist() == [[1, 3, 2], [-1, -1, -1]]  # "car" is not a class
    path.write_text(json.dumps({"x": []}))
    with pytest.raises(ValueError, match="not an image id"):
        load_informative_file(path, objects, predicates)
