"""Randomised equivalence of the fast evaluator with the plain reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from basgg.evaluation import SGEvaluator, evaluate, rank_relations
from basgg.evaluation.confusion import PredicateConfusion
from basgg.evaluation.reference import reference_evaluate
from basgg.structures import Mode, SceneGraph

KS = (1, 3, 20, 50, 100)


def _boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    x1 = rng.integers(0, 60, n)
    y1 = rng.integers(0, 60, n)
    w = rng.integers(2, 40, n)
    h = rng.integers(2, 40, n)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def _scores(rng: np.random.Generator, rows: int, width: int) -> np.ndarray:
    """Softmax-like rows quantised to 1/16 so that ties are frequent."""
    raw = rng.dirichlet(np.full(width, 0.3), size=rows)
    return (np.round(raw * 16) / 16).astype(np.float32)


def _ground_truth(rng: np.random.Generator, index: int, width: int, specific: bool) -> SceneGraph:
    n = int(rng.integers(2, 8)) if rng.random() < 0.85 else int(rng.integers(0, 2))
    boxes = _boxes(rng, n)
    if n >= 2 and rng.random() < 0.5:  # a near-duplicate object of the same class
        boxes[1] = boxes[0] + rng.integers(-1, 2, 4)
    labels = rng.integers(1, 4, n)
    if n >= 2:
        labels[1] = labels[0]
    m = int(rng.integers(1, 7)) if n >= 2 and rng.random() < 0.9 else 0
    pairs = []
    while len(pairs) < m:
        s, o = rng.integers(0, n, 2)
        if s != o:
            pairs.append((int(s), int(o)))
    if m >= 2 and rng.random() < 0.5:
        pairs[1] = pairs[0]  # duplicate pair (same or another predicate)
    predicates = rng.integers(1, min(width, 6), m)
    if m >= 2 and rng.random() < 0.5:
        predicates[1] = predicates[0]
    extra = {}
    if specific:
        swap = rng.random(m) < 0.5
        extra["specific_predicates"] = torch.from_numpy(
            np.where(swap, rng.integers(1, width, m), predicates).astype(np.int64)
        )
    return SceneGraph(
        boxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(labels.astype(np.int64)),
        relation_pairs=torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2),
        predicates=torch.from_numpy(predicates.astype(np.int64)),
        image_size=(100, 100),
        image_id=index,
        **extra,
    )


def _say_true_predicates(
    rng: np.random.Generator, gt: SceneGraph, pairs: np.ndarray, scores: np.ndarray
) -> None:
    """Raise a true (annotated or specific) predicate on 60% of the rows of GT pairs."""
    gt_predicates = {}
    specific = gt.specific_predicates if gt.specific_predicates is not None else gt.predicates
    for (s, o), p, q in zip(
        gt.relation_pairs.tolist(), gt.predicates.tolist(), specific.tolist(), strict=True
    ):
        gt_predicates.setdefault((s, o), []).extend([p, q])
    for row, pair in enumerate(pairs.tolist()):
        if tuple(pair) in gt_predicates and rng.random() < 0.6:
            options = gt_predicates[tuple(pair)]
            scores[row, options[int(rng.integers(0, len(options)))]] += np.float32(0.5)


def _prediction(
    rng: np.random.Generator, gt: SceneGraph, mode: Mode, width: int, index: int
) -> SceneGraph:
    if mode is Mode.SGDET:
        n = int(rng.integers(0, 13))
        boxes = _boxes(rng, n)
        labels = rng.integers(1, 4, n)
        for i in range(min(n, gt.num_objects)):  # jittered copies of ground-truth boxes
            if rng.random() < 0.7:
                boxes[i] = gt.boxes[i].numpy() + rng.integers(-3, 4, 4)
                labels[i] = int(gt.labels[i]) if rng.random() < 0.8 else labels[i]
    else:
        n = gt.num_objects
        boxes = gt.boxes.numpy().copy()
        labels = gt.labels.numpy().copy()
        if mode is Mode.SGCLS:
            relabel = rng.random(n) < 0.3
            labels[relabel] = rng.integers(1, 4, int(relabel.sum()))
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    if mode is not Mode.PREDCLS and pairs and rng.random() < 0.3:
        keep = rng.random(len(pairs)) < 0.6
        pairs = [p for p, k in zip(pairs, keep, strict=True) if k]
    if pairs and rng.random() < 0.3:
        pairs += [pairs[int(rng.integers(0, len(pairs)))]]  # the same pair twice
    if not pairs and n >= 1 and rng.random() < 0.7:
        pairs = [(0, 0)]  # SGB's placeholder pair
    if rng.random() < 0.1:
        pairs = []  # no prediction at all: the image is skipped
    order = rng.permutation(len(pairs))
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)[order]
    scores = _scores(rng, len(pairs), width)
    _say_true_predicates(rng, gt, pairs, scores)
    object_scores = (np.round(rng.random(n) * 4) / 4 + 0.25).astype(np.float32)
    graph = SceneGraph(
        boxes=torch.from_numpy(boxes.astype(np.float32)),
        labels=torch.from_numpy(labels.astype(np.int64)),
        relation_pairs=torch.from_numpy(pairs),
        predicates=torch.from_numpy(scores[:, 1:].argmax(1).astype(np.int64) + 1),
        image_size=(100, 100),
        image_id=index,
        object_scores=torch.from_numpy(object_scores),
        predicate_scores=torch.from_numpy(scores),
    )
    if rng.random() < 0.8:
        graph = rank_relations(graph, mode=mode)
    return graph


def _random_run(seed: int, mode: Mode, n_images: int = 8):
    rng = np.random.default_rng(seed)
    width = int(rng.choice([4, 9, 51]))
    specific = bool(rng.random() < 0.5)
    gts = [_ground_truth(rng, i, width, specific) for i in range(n_images)]
    predictions = [_prediction(rng, gt, mode, width, i) for i, gt in enumerate(gts)]
    zero_shot = np.stack(
        [rng.integers(1, 4, 6), rng.integers(1, 4, 6), rng.integers(1, min(width, 6), 6)], axis=1
    )
    members = rng.permutation(np.arange(1, width))
    groups = {
        "head": sorted(members[:1].tolist()),
        "body": sorted(members[1:3].tolist()),
        "tail": sorted(members[3:].tolist()),
    }
    kwargs = dict(
        mode=mode,
        num_predicates=width,
        ks=KS,
        zero_shot_triplets=zero_shot,
        predicate_groups=groups,
    )
    if rng.random() < 0.5:  # RI@K with a random information table
        kwargs["predicate_information"] = rng.random(width) * 3
    return gts, predictions, kwargs


def _assert_same(fast: dict[str, float], slow: dict[str, float]) -> None:
    assert fast.keys() == slow.keys()
    for key, value in slow.items():
        if math.isnan(value):
            assert math.isnan(fast[key]), key
        else:
            assert fast[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("seed", range(40))
def test_fast_equals_reference(mode: Mode, seed: int) -> None:
    gts, predictions, kwargs = _random_run(seed, mode)
    fast = evaluate(gts, predictions, **kwargs)
    slow = reference_evaluate(gts, predictions, **kwargs)
    _assert_same(fast.metrics, slow.metrics)
    for k in KS:
        np.testing.assert_allclose(
            fast.per_predicate_recall[k], slow.per_predicate_recall[k], atol=1e-12
        )
    if mode is Mode.PREDCLS:
        np.testing.assert_array_equal(fast.confusion, slow.confusion)
        standalone = PredicateConfusion(num_predicates=kwargs["num_predicates"])
        standalone.update(gts, predictions)
        np.testing.assert_array_equal(standalone.compute(), slow.confusion)


@pytest.mark.parametrize("mode", list(Mode))
def test_many_images_over_several_batches(mode: Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-batch concatenation and several update() calls give the one-shot numbers."""
    import basgg.evaluation.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "BATCH_IMAGES", 7)
    gts, predictions, kwargs = _random_run(1234, mode, n_images=40)
    slow = reference_evaluate(gts, predictions, **kwargs)
    evaluator = SGEvaluator(**kwargs)
    evaluator.update(gts[:15], predictions[:15])
    evaluator.update(gts[15:], predictions[15:])
    result = evaluator.compute()
    _assert_same(result.metrics, slow.metrics)
    assert result.counts["images"] == 40
    assert result.counts["images_scored"] + result.counts["images_skipped"] == 40
    np.testing.assert_array_equal(
        result.per_image["stream_index"], np.sort(result.per_image["stream_index"])
    )


@pytest.mark.parametrize("pad_limit", [1 << 24, 0])
def test_large_images_use_the_top_100_cut(pad_limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images with hundreds of rows: the K cut, the ng top-100 and the row threshold (found
    by partitioning a padded matrix, or by sorting when the matrix would be too large)."""
    import basgg.evaluation.matching as matching_module

    monkeypatch.setattr(matching_module, "PAD_LIMIT", pad_limit)
    rng = np.random.default_rng(7)
    gts, predictions = [], []
    for i in range(4):
        gt = _ground_truth(rng, i, 9, False)
        while gt.num_relations == 0:
            gt = _ground_truth(rng, i, 9, False)
        gts.append(gt)
        n = 16
        boxes = np.concatenate([gt.boxes.numpy(), _boxes(rng, n - gt.num_objects)])
        extra_labels = rng.integers(1, 4, n - gt.num_objects)
        pairs = np.array([(a, b) for a in range(n) for b in range(n) if a != b], dtype=np.int64)
        scores = _scores(rng, len(pairs), 9) / 2  # true predicates stand out more
        _say_true_predicates(rng, gt, pairs, scores)
        object_scores = (np.round(rng.random(n) * 4) / 4 + 0.25).astype(np.float32)
        prediction = SceneGraph(
            boxes=torch.from_numpy(boxes),
            labels=torch.from_numpy(np.concatenate([gt.labels.numpy(), extra_labels])),
            relation_pairs=torch.from_numpy(pairs),
            predicates=torch.from_numpy(scores[:, 1:].argmax(1).astype(np.int64) + 1),
            image_size=(100, 100),
            image_id=i,
            object_scores=torch.from_numpy(object_scores),
            predicate_scores=torch.from_numpy(scores),
        )
        predictions.append(rank_relations(prediction))
    kwargs = dict(mode=Mode.SGDET, num_predicates=9, ks=(20, 50, 100, 150))
    fast = evaluate(gts, predictions, **kwargs)
    slow = reference_evaluate(gts, predictions, **kwargs)
    assert all(p.num_relations == 240 for p in predictions)
    _assert_same(fast.metrics, slow.metrics)
    assert 0 < fast.metrics["ngR@20"] < fast.metrics["ngR@100"] == fast.metrics["ngR@150"]
    assert 0 < fast.metrics["R@20"] < fast.metrics["R@150"]
