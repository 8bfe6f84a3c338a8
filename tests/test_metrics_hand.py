"""Hand-computed cases: the worked examples and quirks of the evaluation protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from basgg.boxes import box_iou_plus_one
from basgg.evaluation import evaluate, rank_relations
from basgg.evaluation.confusion import PredicateConfusion
from basgg.evaluation.matching import aligned_iou_plus_one
from basgg.evaluation.reference import reference_evaluate
from basgg.evaluation.results import harmonic_mean
from basgg.structures import Mode, SceneGraph

P = 51  # VG150: 50 foreground predicates + background
HAS, NEAR, ON, RIDING, WEARING, ABOVE = 20, 29, 31, 38, 48, 1
MAN, HORSE, HAT, STREET, WOMAN = 78, 64, 60, 124, 149


def grid_box(i: int) -> list[float]:
    """Well-separated boxes: object i never overlaps object j != i."""
    return [30.0 * i, 0.0, 30.0 * i + 20, 20.0]


def ground_truth(labels, relations, boxes=None, specific=None, image_id=0) -> SceneGraph:
    boxes = boxes if boxes is not None else [grid_box(i) for i in range(len(labels))]
    extra = {}
    if specific is not None:
        extra["specific_predicates"] = torch.tensor(specific, dtype=torch.int64)
    return SceneGraph(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
        relation_pairs=torch.tensor([r[:2] for r in relations], dtype=torch.int64).reshape(-1, 2),
        predicates=torch.tensor([r[2] for r in relations], dtype=torch.int64),
        image_size=(100, 2000),
        image_id=image_id,
        **extra,
    )


def prediction(rows, labels, boxes=None, object_scores=None, image_id=0) -> SceneGraph:
    """``rows``: [((sub, obj), {predicate: probability})], already in rank order."""
    n = len(labels)
    boxes = boxes if boxes is not None else [grid_box(i) for i in range(n)]
    scores = np.zeros((len(rows), P), np.float32)
    for r, (_, probabilities) in enumerate(rows):
        for c, value in probabilities.items():
            scores[r, c] = value
        scores[r, 0] = max(0.0, 1 - scores[r].sum())
    return SceneGraph(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
        relation_pairs=torch.tensor([r[0] for r in rows], dtype=torch.int64).reshape(-1, 2),
        predicates=torch.from_numpy(scores[:, 1:].argmax(1).astype(np.int64) + 1),
        image_size=(100, 2000),
        image_id=image_id,
        object_scores=torch.ones(n) if object_scores is None else torch.tensor(object_scores),
        predicate_scores=torch.from_numpy(scores),
    )


I1_LABELS = [MAN, HORSE, HAT, STREET]
I1_GT = [(0, 1, RIDING), (0, 2, WEARING), (1, 3, ON)]
I1_ROWS = [
    ((0, 1), {RIDING: 0.70, ON: 0.20}),
    ((1, 3), {NEAR: 0.60, ON: 0.30}),
    ((0, 2), {WEARING: 0.50, HAS: 0.25}),
    ((2, 0), {ON: 0.40, HAS: 0.10}),
]
I1_ROWS += [
    ((a, b), {ABOVE: 0.05})
    for a in range(4)
    for b in range(4)
    if a != b and (a, b) not in {row[0] for row in I1_ROWS}
]
I2_LABELS = [MAN, HORSE, WOMAN, HAT]
I2_GT = [(0, 1, ON), (2, 1, ON), (0, 3, HAS)]
I2_ROWS = [((0, 1), {ON: 0.8}), ((0, 3), {HAS: 0.7}), ((1, 2), {NEAR: 0.6}), ((2, 1), {ON: 0.5})]


def score(gts, predictions, mode=Mode.PREDCLS, **kwargs):
    """Fast evaluator, checked against the reference on the same input."""
    kwargs = {"mode": mode, "num_predicates": P, "ks": (1, 2, 3, 5), **kwargs}
    result = evaluate(gts, predictions, **kwargs)
    oracle = reference_evaluate(gts, predictions, **kwargs)
    for key, value in oracle.metrics.items():
        assert (math.isnan(value) and math.isnan(result.metrics[key])) or result.metrics[
            key
        ] == pytest.approx(value, abs=1e-12), key
    return result


def test_i1_recall_and_no_graph_constraint_recall() -> None:
    result = score([ground_truth(I1_LABELS, I1_GT)], [prediction(I1_ROWS, I1_LABELS)])
    m = result.metrics
    assert m["R@1"] == m["R@2"] == pytest.approx(1 / 3)
    assert m["R@3"] == m["R@5"] == pytest.approx(2 / 3)
    assert m["ngR@3"] == pytest.approx(2 / 3)
    assert m["ngR@5"] == pytest.approx(1.0)


def test_mean_recall_divides_by_50_and_averages_per_image() -> None:
    gts = [ground_truth(I1_LABELS, I1_GT), ground_truth(I2_LABELS, I2_GT)]
    predictions = [prediction(I1_ROWS, I1_LABELS), prediction(I2_ROWS, I2_LABELS)]
    result = score(gts, predictions)
    assert result.metrics["R@3"] == pytest.approx(2 / 3)
    assert result.metrics["mR@3"] == pytest.approx(0.065)
    recall = result.per_predicate_recall[3]
    assert recall[ON] == pytest.approx(0.25)  # mean of [0, 0.5], not pooled 1/3
    assert recall[RIDING] == recall[WEARING] == recall[HAS] == 1.0
    assert recall.sum() == pytest.approx(3.25)


def test_zero_shot_recall_averages_over_images_with_zero_shot_rows() -> None:
    i3_labels = [HORSE, STREET, HORSE, STREET]
    i3 = ground_truth(i3_labels, [(0, 1, ON), (2, 3, ON)])
    i3_rows = [((0, 1), {ON: 0.9}), ((2, 3), {NEAR: 0.8})]
    gts = [ground_truth(I1_LABELS, I1_GT), ground_truth(I2_LABELS, I2_GT), i3]
    predictions = [
        prediction(I1_ROWS, I1_LABELS),
        prediction(I2_ROWS, I2_LABELS),
        prediction(i3_rows, i3_labels),
    ]
    result = score(gts, predictions, zero_shot_triplets=np.array([[HORSE, STREET, ON]]))
    assert result.metrics["zR@3"] == pytest.approx(0.25)  # (0 + 0.5) / 2, not / 3
    assert result.counts["zero_shot_images"] == 2
    assert result.metrics["ngzR@5"] == pytest.approx((1 + 0.5) / 2)


def test_pair_accuracy_filters_before_the_cut_and_is_micro_averaged() -> None:
    rows = [
        ((2, 0), {ON: 0.9}),
        ((0, 1), {RIDING: 0.8}),
        ((0, 2), {WEARING: 0.7}),
        ((1, 3), {NEAR: 0.6}),
    ]
    second = ground_truth([MAN, HAT], [(0, 1, WEARING)], image_id=1)
    gts = [ground_truth(I1_LABELS, I1_GT), second]
    predictions = [
        prediction(rows, I1_LABELS),
        prediction([((0, 1), {WEARING: 0.9})], [MAN, HAT], image_id=1),
    ]
    result = score(gts, predictions)
    assert result.per_image["hits"][0, 1] == 1  # R@2 of I1 = 1/3
    assert result.per_image["accuracy_hits"][:, 1].tolist() == [2, 1]
    assert result.metrics["A@2"] == pytest.approx(0.75)  # the per-image mean would be 0.833


def test_sgdet_has_no_pair_accuracy() -> None:
    result = score(
        [ground_truth(I1_LABELS, I1_GT)], [prediction(I1_ROWS, I1_LABELS)], mode=Mode.SGDET
    )
    assert not any(key.startswith("A@") for key in result.metrics)


def test_f_at_k_is_the_harmonic_mean() -> None:
    assert harmonic_mean(0.60, 0.30) == pytest.approx(0.40)
    assert harmonic_mean(0.0, 0.0) == 0.0
    result = score([ground_truth(I1_LABELS, I1_GT)], [prediction(I1_ROWS, I1_LABELS)])
    r, mr = result.metrics["R@3"], result.metrics["mR@3"]
    assert result.metrics["F@3"] == pytest.approx(2 * r * mr / (r + mr))


def test_iou_plus_one_at_exactly_one_half_matches() -> None:
    gt_box, half, below = [0, 0, 9, 9], [0, 0, 9, 4], [0, 0, 9, 3.99]
    assert box_iou_plus_one(np.array([gt_box]), np.array([half]))[0, 0] == np.float32(0.5)
    assert aligned_iou_plus_one(np.array([gt_box]), np.array([half]))[0] == np.float32(0.5)
    assert aligned_iou_plus_one(np.array([gt_box]), np.array([below]))[0] < 0.5
    far = [100, 100, 120, 120]
    gt = ground_truth([MAN, HAT], [(0, 1, WEARING)], boxes=[gt_box, far])
    for box, expected in ((half, 1.0), (below, 0.0)):
        result = score(
            [gt],
            [
                prediction(
                    [((0, 1), {WEARING: 0.9})], [MAN, HAT], [box, far], object_scores=[0.9, 0.9]
                )
            ],
            mode=Mode.SGDET,
        )
        assert result.metrics["R@1"] == expected


def test_duplicate_ground_truth_rows_are_both_hit_by_one_row() -> None:
    gt = ground_truth([MAN, HORSE, MAN, HAT], [(0, 1, ON), (0, 1, ON), (2, 3, HAS)])
    result = score([gt], [prediction([((0, 1), {ON: 0.9})], [MAN, HORSE, MAN, HAT])])
    assert result.metrics["R@1"] == pytest.approx(2 / 3)
    assert result.per_image["num_gt"].tolist() == [3]


def test_matching_is_index_free() -> None:
    boxes = [[10, 10, 50, 90], [12, 10, 52, 90], [200, 10, 230, 40]]
    assert box_iou_plus_one(np.array(boxes[:1]), np.array(boxes[1:2]))[0, 0] == pytest.approx(
        0.907, abs=1e-3
    )
    gt = ground_truth([MAN, MAN, HAT], [(1, 2, WEARING)], boxes=boxes)
    result = score([gt], [prediction([((0, 2), {WEARING: 0.9})], [MAN, MAN, HAT], boxes)])
    assert result.metrics["R@1"] == 1.0
    assert result.metrics["A@1"] == 0.0  # (0, 2) is not a ground-truth index pair


def test_images_without_predictions_or_relations_are_skipped() -> None:
    hit = ground_truth([MAN, HAT], [(0, 1, WEARING)], image_id=1)
    empty_prediction = ground_truth([MAN, HAT], [(0, 1, WEARING)], image_id=2)
    no_relations = ground_truth([MAN, HAT], [], image_id=3)
    rows = [((0, 1), {WEARING: 0.9})]
    gts = [hit, empty_prediction, no_relations]
    predictions = [
        prediction(rows, [MAN, HAT], image_id=1),
        prediction([], [MAN, HAT], image_id=2),
        prediction(rows, [MAN, HAT], image_id=3),
    ]
    result = score(gts, predictions)
    assert result.metrics["R@1"] == 1.0  # the image with R = 0 is not scored 0
    assert result.counts == {
        "images": 3,
        "images_scored": 1,
        "images_skipped": 2,
        "zero_shot_images": 0,
    }
    assert result.per_image["image_id"].tolist() == [1]


def test_placeholder_pair_scores_zero() -> None:
    gts = [
        ground_truth([MAN, HAT], [(0, 1, WEARING)], image_id=1),
        ground_truth([MAN, HAT], [(0, 1, WEARING)], image_id=2),
    ]
    predictions = [
        prediction([((0, 1), {WEARING: 0.9})], [MAN, HAT], image_id=1),
        prediction([((0, 0), {WEARING: 0.9})], [MAN, HAT], image_id=2),
    ]
    result = score(gts, predictions)
    assert result.metrics["R@1"] == pytest.approx(0.5)
    assert result.counts["images_scored"] == 2


def test_tied_scores_keep_the_emitted_order() -> None:
    gt = ground_truth([MAN, HAT, HORSE], [(0, 1, WEARING)])
    miss, hit = ((0, 2), {WEARING: 0.5}), ((0, 1), {WEARING: 0.5})
    first = score([gt], [prediction([miss, hit], [MAN, HAT, HORSE])])
    second = score([gt], [prediction([hit, miss], [MAN, HAT, HORSE])])
    assert (first.metrics["R@1"], second.metrics["R@1"]) == (0.0, 1.0)
    ranked = rank_relations(prediction([miss, ((1, 2), {ON: 0.6}), hit], [MAN, HAT, HORSE]))
    assert ranked.relation_pairs.tolist() == [[1, 2], [0, 2], [0, 1]]  # stable on the tie
    # ng entries tie on 0.5: the lower row-major flat index (row 0) comes first
    assert first.metrics["ngR@1"] == 0.0 and second.metrics["ngR@1"] == 1.0


def test_rank_relations_uses_float32_product_with_object_scores() -> None:
    rows = [((0, 1), {WEARING: 0.5}), ((1, 0), {ON: 0.4}), ((0, 2), {NEAR: 0.9})]
    graph = prediction(rows, [MAN, HAT, HORSE], object_scores=[1.0, 1.0, 0.5])
    ranked = rank_relations(graph)  # scores 0.5, 0.4, 0.45
    assert ranked.relation_pairs.tolist() == [[0, 1], [0, 2], [1, 0]]
    assert ranked.predicate_scores[0, WEARING] == pytest.approx(0.5)
    predcls = rank_relations(graph, mode=Mode.PREDCLS)  # sigma = 1: 0.5, 0.4, 0.9
    assert predcls.relation_pairs.tolist() == [[0, 2], [0, 1], [1, 0]]


def test_argmax_ties_take_the_lowest_predicate() -> None:
    low, high = HAS, WEARING
    tie = [((0, 1), {low: 0.4, high: 0.4})]
    for predicate, expected in ((low, 1.0), (high, 0.0)):
        gt = ground_truth([MAN, HAT], [(0, 1, predicate)])
        result = score([gt], [prediction(tie, [MAN, HAT])])
        assert result.metrics["R@1"] == expected


def test_part_recalls_average_per_predicate_recall_inside_each_group() -> None:
    gts = [ground_truth(I1_LABELS, I1_GT), ground_truth(I2_LABELS, I2_GT)]
    predictions = [prediction(I1_ROWS, I1_LABELS), prediction(I2_ROWS, I2_LABELS)]
    groups = {"head": [ON, HAS], "body": [RIDING, NEAR], "tail": [WEARING, ABOVE]}
    result = score(gts, predictions, predicate_groups=groups)
    assert result.metrics["mR@3/head"] == pytest.approx((0.25 + 1) / 2)
    assert result.metrics["mR@3/body"] == pytest.approx(0.5)
    assert result.metrics["mR@3/tail"] == pytest.approx(0.5)


def test_confusion_matrix_example() -> None:
    gt = ground_truth(
        [MAN, HORSE, HAT, STREET], [(0, 1, RIDING), (0, 2, WEARING), (0, 2, HAS), (1, 3, ON)]
    )
    rows = [
        ((0, 1), {ON: 0.6, RIDING: 0.3}),
        ((0, 2), {WEARING: 0.7}),
        ((1, 3), {ON: 0.5}),
        ((2, 3), {HAS: 0.9}),
    ]
    expected = np.zeros((P, P), np.int64)
    for row, column in ((RIDING, ON), (WEARING, WEARING), (HAS, WEARING), (ON, ON)):
        expected[row, column] += 1
    result = score([gt], [prediction(rows, [MAN, HORSE, HAT, STREET])])
    np.testing.assert_array_equal(result.confusion, expected)
    confusion = PredicateConfusion(num_predicates=P)
    confusion.update([gt], [prediction(rows, [MAN, HORSE, HAT, STREET])])
    np.testing.assert_array_equal(confusion.compute(), expected)


def test_specific_predicate_recall() -> None:
    # rows 0 and 2 are annotated "on" but are truly "riding" / "standing on"-like specifics
    gt = ground_truth(
        [MAN, HORSE, HAT, STREET],
        [(0, 1, ON), (0, 2, WEARING), (1, 3, ON)],
        specific=[RIDING, WEARING, NEAR],
    )
    rows = [((0, 1), {RIDING: 0.6}), ((1, 3), {ON: 0.7}), ((1, 3), {NEAR: 0.8})]
    labels = [MAN, HORSE, HAT, STREET]
    for mode in (Mode.PREDCLS, Mode.SGCLS, Mode.SGDET):
        result = score([gt], [prediction(rows, labels)], mode=mode)
        # (0,1): first row says riding -> hit; (1,3): the highest-ranked row says on -> miss
        assert result.metrics["specific_predicate_recall"] == pytest.approx(0.5), mode
    plain = score([ground_truth(I1_LABELS, I1_GT)], [prediction(I1_ROWS, I1_LABELS)])
    assert "specific_predicate_recall" not in plain.metrics


def test_wrong_score_width_names_the_image_and_field() -> None:
    gt = ground_truth([MAN, HAT], [(0, 1, WEARING)], image_id=5)
    with pytest.raises(ValueError, match=r"image 0 \(image_id 0\): field predicate_scores"):
        evaluate(
            [gt],
            [prediction([((0, 1), {WEARING: 0.9})], [MAN, HAT])],
            mode=Mode.PREDCLS,
            num_predicates=P - 1,
        )


def test_nothing_to_score_gives_nan_and_json_null() -> None:
    gt = ground_truth([MAN, HAT], [], image_id=1)
    result = evaluate(
        [gt],
        [prediction([], [MAN, HAT], image_id=1)],
        mode=Mode.SGCLS,
        num_predicates=P,
        zero_shot_triplets=np.zeros((0, 3), np.int64),
    )
    assert math.isnan(result.metrics["R@20"]) and math.isnan(result.metrics["zR@20"])
    # no image scored: mR is undefined like R (printed "-"), not SGB's 0 of empty R_p lists
    assert math.isnan(result.metrics["mR@20"]) and math.isnan(result.metrics["ngmR@20"])
    content = result.to_dict(include_per_image=True)
    assert content["metrics"]["R@20"] is None and content["per_image"]["num_gt"] == []
    assert content["counts"]["images_skipped"] == 1
