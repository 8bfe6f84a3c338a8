"""Relation heads: forward/backward per head and mode, BA-SGG stage 2, trees, ordering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basgg.models.context_common import nms_object_labels
from basgg.models.context_motifs import (
    fused_bidirectional_lstm,
    object_orders,
    packed_bidirectional_lstm,
    run_bidirectional_lstm,
)
from basgg.models.context_vctree import cooccurrence_from_frequency_bias
from basgg.models.heads import HEADS, build_head
from basgg.models.losses import tree_score_loss
from basgg.models.predicate_classifier import adjustment_matrix
from basgg.models.relation_head import RelationHead
from basgg.models.relation_types import TREE_PAIR_LOGITS, RelationBatch
from basgg.models.tree_lstm import Forest, binarize, spanning_tree
from basgg.structures import Mode

NUM_OBJECTS = 8  # C, background included
NUM_PREDICATES = 6  # P + 1
OBJECT_DIM = 24
UNION_DIM = 20
WORD_DIM = 12

SMALL_SIZES = {
    "MotifPredictor": {},
    "VCTreePredictor": {},
    "TransformerPredictor": {
        "object_layers": 2,
        "edge_layers": 1,
        "num_heads": 2,
        "key_dim": 8,
        "value_dim": 8,
        "inner_dim": 32,
    },
    "FrequencyPredictor": {"frequency_bias_dropout": 0.0},
}


def make_head(name: str, mode: Mode, **overrides: object) -> RelationHead:
    generator = torch.Generator().manual_seed(1)
    kwargs = {
        "mode": mode,
        "num_objects": NUM_OBJECTS,
        "num_predicates": NUM_PREDICATES,
        "object_dim": OBJECT_DIM,
        "union_dim": UNION_DIM,
        "object_word_vectors": torch.randn(NUM_OBJECTS, WORD_DIM, generator=generator),
        "frequency_bias_init": torch.randn(
            NUM_OBJECTS * NUM_OBJECTS, NUM_PREDICATES, generator=generator
        ),
        "hidden_dim": 16,
        "pooling_dim": 24,
        **SMALL_SIZES[name],
        **overrides,
    }
    return build_head(name, **kwargs)


def make_batch(
    counts: list[int], mode: Mode, seed: int = 0, pairs_per_image: int | None = None
) -> tuple[RelationBatch, torch.Tensor]:
    """Random objects; every ordered pair of each image (or its first ``pairs_per_image``)."""
    generator = torch.Generator().manual_seed(seed)
    total = sum(counts)
    corner = torch.rand(total, 2, generator=generator) * 300
    size = torch.rand(total, 2, generator=generator) * 200 + 4
    pairs = []
    for count in counts:
        grid = torch.cartesian_prod(torch.arange(count), torch.arange(count)).view(-1, 2)
        grid = grid[grid[:, 0] != grid[:, 1]]
        pairs.append(grid[:pairs_per_image] if pairs_per_image else grid)
    relations = sum(len(p) for p in pairs)
    batch = RelationBatch(
        object_features=torch.randn(total, OBJECT_DIM, generator=generator),
        boxes=torch.cat([corner, corner + size], dim=1),
        image_sizes=[(600, 800)] * len(counts),
        object_counts=list(counts),
        object_labels=torch.randint(1, NUM_OBJECTS, (total,), generator=generator),
        detector_logits=(
            torch.randn(total, NUM_OBJECTS, generator=generator) if mode is Mode.SGDET else None
        ),
        pairs=pairs,
        union_features=torch.randn(relations, UNION_DIM, generator=generator),
    )
    relation_labels = torch.randint(0, NUM_PREDICATES, (relations,), generator=generator)
    return batch, relation_labels


HEAD_MODES = [(name, mode) for name in HEADS for mode in Mode]


@pytest.mark.parametrize(("name", "mode"), HEAD_MODES)
def test_forward_backward_shapes_and_finite_losses(name: str, mode: Mode) -> None:
    torch.manual_seed(0)
    head = make_head(name, mode)
    batch, relation_labels = make_batch([1, 7, 3], mode)  # one object and no pair; many
    output = head(batch)
    assert output.object_logits.shape == (11, NUM_OBJECTS)
    assert output.object_labels.shape == (11,)
    assert output.predicate_logits.shape == (42 + 6, NUM_PREDICATES)
    losses = head.losses(output, batch, relation_labels)
    expected_keys = {"loss_relation", "loss_object"} | (
        {"loss_tree"} if name == "VCTreePredictor" else set()
    )
    assert set(losses) == expected_keys
    assert all(torch.isfinite(value) for value in losses.values())
    assert (losses["loss_object"].item() == 0.0) == (mode is Mode.PREDCLS)
    sum(losses.values()).backward()
    gradients = [p.grad for p in head.classifier.frequency_bias.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in gradients)
    if mode is Mode.PREDCLS:
        assert torch.equal(output.object_labels, batch.object_labels)
    head.eval()
    with torch.no_grad():
        test_output = head(batch)
    labels = test_output.object_labels
    if mode is Mode.PREDCLS:
        assert torch.equal(labels, batch.object_labels)
    else:
        assert labels.min() >= 1 and labels.max() < NUM_OBJECTS
    assert torch.isfinite(test_output.predicate_logits).all()


@pytest.mark.parametrize(
    ("name", "mode"), [(n, m) for n in HEADS for m in (Mode.SGCLS, Mode.SGDET)]
)
def test_ground_truth_labels_are_not_used_at_test_time(name: str, mode: Mode) -> None:
    head = make_head(name, mode).eval()
    batch, _ = make_batch([4, 6], mode)
    with torch.no_grad():
        with_labels = head(batch)
        batch.object_labels = None
        without_labels = head(batch)
    assert torch.equal(with_labels.object_labels, without_labels.object_labels)
    assert torch.equal(with_labels.predicate_logits, without_labels.predicate_logits)


@pytest.mark.parametrize("name", list(HEADS))
def test_image_without_objects_is_accepted(name: str) -> None:
    head = make_head(name, Mode.SGDET)
    batch, relation_labels = make_batch([0, 4], Mode.SGDET)
    output = head(batch)
    losses = head.losses(output, batch, relation_labels)
    sum(losses.values()).backward()
    assert output.predicate_logits.shape == (12, NUM_PREDICATES)
    assert all(torch.isfinite(value) for value in losses.values())


def test_bad_batch_names_field_and_image() -> None:
    head = make_head("MotifPredictor", Mode.PREDCLS)
    batch, _ = make_batch([2, 3], Mode.PREDCLS)
    batch.pairs[1] = batch.pairs[1].clone()
    batch.pairs[1][0, 1] = 3  # image 1 has objects 0..2
    with pytest.raises(ValueError, match=r"RelationBatch\.pairs\[1\]"):
        head(batch)
    batch, _ = make_batch([2, 3], Mode.PREDCLS)
    batch.object_labels = None
    with pytest.raises(ValueError, match="object_labels"):
        head(batch)


@pytest.mark.parametrize(
    ("name", "mode"), [(n, m) for n in HEADS for m in (Mode.PREDCLS, Mode.SGCLS)]
)
def test_clean_branch_freezes_everything_else(name: str, mode: Mode) -> None:
    torch.manual_seed(0)
    head = make_head(name, mode)
    batch, relation_labels = make_batch([2, 5], mode)
    head.eval()
    with torch.no_grad():
        before = head(batch)
    head.enable_clean_branch()
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    clean_names = {
        n
        for n, _ in head.named_parameters()
        if any(part.endswith("_clean") for part in n.split("."))
    }
    assert trainable == clean_names and trainable
    with torch.no_grad():
        after = head(batch)
    assert torch.allclose(after.predicate_logits, before.predicate_logits, atol=1e-5)
    assert torch.equal(after.object_labels, before.object_labels)

    head.train()
    initial = {n: p.detach().clone() for n, p in head.named_parameters()}
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=0.5)
    output = head(batch)
    losses = head.losses(output, batch, relation_labels)
    assert float(losses["loss_object"]) == 0.0
    assert float(losses.get("loss_tree", 0.0)) == 0.0
    sum(losses.values()).backward()
    optimizer.step()
    changed = {n for n, p in head.named_parameters() if not torch.equal(p, initial[n])}
    assert changed and changed <= clean_names


@pytest.mark.parametrize("name", list(HEADS))
def test_adjustment_multiplies_every_logit_row(name: str) -> None:
    head = make_head(name, Mode.PREDCLS).eval()
    batch, _ = make_batch([3, 4], Mode.PREDCLS)
    confusion = torch.randint(0, 5, (NUM_PREDICATES, NUM_PREDICATES))
    matrix = adjustment_matrix(confusion)
    with torch.no_grad():
        plain = head(batch).predicate_logits
        head.set_adjustment(matrix)
        adjusted = head(batch).predicate_logits
    expected = torch.stack([matrix @ row for row in plain])
    assert torch.allclose(adjusted, expected, atol=1e-5)


def test_stage_two_checkpoint_round_trip_restores_clean_layers_and_adjustment() -> None:
    head = make_head("TransformerPredictor", Mode.PREDCLS).eval()
    head.enable_clean_branch()
    head.set_adjustment(adjustment_matrix(torch.rand(NUM_PREDICATES, NUM_PREDICATES)))
    batch, _ = make_batch([3, 4], Mode.PREDCLS)
    state = head.state_dict()
    fresh = make_head("TransformerPredictor", Mode.PREDCLS).eval()
    fresh.enable_clean_branch()
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(fresh(batch).predicate_logits, head(batch).predicate_logits)


def test_spanning_tree_on_hand_scores() -> None:
    # row = parent, column = child; mean rows: 0.35, 0.5, 0.275, 0.25 -> root 1
    scores = torch.tensor(
        [
            [0.0, 0.2, 0.9, 0.3],
            [0.8, 0.0, 0.4, 0.8],
            [0.1, 0.1, 0.0, 0.9],
            [0.3, 0.2, 0.5, 0.0],
        ]
    )
    parents, order = spanning_tree(scores)
    # 1 -> 0 (0.8, ties 1 -> 3 and goes to the lower index), 0 -> 2 (0.9), 2 -> 3 (0.9)
    assert parents.tolist() == [1, -1, 0, 2]
    assert order.tolist() == [1, 0, 2, 3]
    left, right = binarize(np.array([-1, 0, 0, 1]), np.array([0, 1, 2, 3]))
    assert left.tolist() == [1, 3, -1, -1]  # first child of 0 is 1; of 1 is 3
    assert right.tolist() == [-1, 2, -1, -1]  # 2 is 1's next sibling


def test_forest_levels_follow_the_binary_trees() -> None:
    scores = [torch.tensor([[0.0, 0.9, 0.8], [0.1, 0.0, 0.1], [0.1, 0.1, 0.0]]), torch.zeros(1, 1)]
    forest = Forest.from_pair_scores(scores, torch.device("cpu"))
    # image 0: root 0 with children 1, 2 -> left(0) = 1, right(1) = 2; image 1: node 3 alone
    assert forest.left.tolist() == [1, 4, 4, 4]
    assert forest.right.tolist() == [4, 2, 4, 4]
    assert forest.parent.tolist() == [4, 0, 1, 4]
    assert [level.tolist() for level in forest.down_levels] == [[0, 3], [1], [2]]
    assert [level.tolist() for level in forest.up_levels] == [[2, 3], [1], [0]]


def test_tree_score_loss_target_is_symmetric_relatedness() -> None:
    logits = torch.zeros(4)  # one image, 2 objects, all logits 0
    pairs = [torch.tensor([[0, 1], [1, 0]])]
    value = tree_score_loss(logits, pairs, torch.tensor([3, 0]), [2])
    assert value.item() == pytest.approx(np.log(2.0), abs=1e-6)
    logits = torch.tensor([-20.0, 20.0, 20.0, -20.0])
    assert tree_score_loss(logits, pairs, torch.tensor([0, 2]), [2]).item() < 1e-6


def test_vctree_reports_pair_logits_per_image() -> None:
    head = make_head("VCTreePredictor", Mode.PREDCLS)
    batch, _ = make_batch([2, 3], Mode.PREDCLS)
    assert head(batch).auxiliary[TREE_PAIR_LOGITS].shape == (4 + 9,)


def test_leftright_order_is_descending_centre_x_per_image() -> None:
    boxes = torch.tensor(
        [
            [10.0, 0.0, 20.0, 5.0],  # centre 15
            [50.0, 0.0, 70.0, 5.0],  # centre 60
            [0.0, 0.0, 60.0, 5.0],  # centre 30
            [5.0, 0.0, 7.0, 5.0],  # image 2: centre 6
            [80.0, 0.0, 90.0, 5.0],  # centre 85
        ]
    )
    orders = object_orders(boxes, [3, 2], "leftright")
    assert [order.tolist() for order in orders] == [[1, 2, 0], [4, 3]]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "run", [run_bidirectional_lstm, fused_bidirectional_lstm, packed_bidirectional_lstm]
)
def test_bidirectional_lstm_equals_packed_nn_lstm(run, layers: int, training: bool) -> None:
    """The padded per-direction calls give packed nn.LSTM's outputs and gradients."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(7, 5, num_layers=layers, bidirectional=True).double().train(training)
    counts = [3, 0, 5, 1, 4]
    features = torch.randn(sum(counts), 7, dtype=torch.float64, requires_grad=True)
    orders = list(torch.randperm(sum(counts)).split(counts))
    kept = [order for order in orders if len(order)]
    packed = torch.nn.utils.rnn.pack_sequence([features[o] for o in kept], enforce_sorted=False)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True)
    rows = torch.cat([padded[b, : len(order)] for b, order in enumerate(kept)])
    expected = torch.zeros_like(rows).index_copy(0, torch.cat(kept), rows)  # (N, 10)
    got = run(lstm, features, orders)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    weights = torch.randn_like(expected)
    inputs = [features, *lstm.parameters()]
    wanted = torch.autograd.grad((expected * weights).sum(), inputs)
    found = torch.autograd.grad((got * weights).sum(), inputs)
    for a, b in zip(wanted, found, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_nms_labels_suppress_the_same_class_on_overlapping_boxes() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50, 50, 60, 60.0]])
    logits = torch.log(torch.tensor([[0.01, 0.9, 0.09], [0.01, 0.8, 0.19], [0.01, 0.7, 0.29]]))
    labels = nms_object_labels(logits, boxes, threshold=0.3)
    assert labels.tolist() == [1, 2, 1]


def test_motifs_seeded_loss_regression() -> None:
    torch.manual_seed(1234)
    head = make_head("MotifPredictor", Mode.SGCLS)
    batch, relation_labels = make_batch([3, 4], Mode.SGCLS, seed=7)
    head.eval()
    with torch.no_grad():
        losses = head.losses(head(batch), batch, relation_labels)
    assert round(losses["loss_relation"].item(), 4) == 3.9913
    assert round(losses["loss_object"].item(), 4) == 2.0618


def test_cooccurrence_prior_is_the_related_share_in_either_direction() -> None:
    background = torch.tensor([[1.0, 0.5], [0.8, 0.25]])  # share of (s, o) with no relation
    frequency_bias = torch.zeros(4, 3)
    frequency_bias[:, 0] = torch.log(background.view(-1) + 1e-3)
    prior = cooccurrence_from_frequency_bias(frequency_bias, 2)
    expected = torch.tensor([[0.0, 1.0 - 0.5 * 0.8], [1.0 - 0.8 * 0.5, 1.0 - 0.25**2]])
    torch.testing.assert_close(prior, expected, atol=1e-5, rtol=0.0)


def test_vctree_pair_probability_is_vision_score_times_prior() -> None:
    prior = torch.full((NUM_OBJECTS, NUM_OBJECTS), 0.25)
    head = make_head("VCTreePredictor", Mode.PREDCLS, cooccurrence_prior=prior)
    batch, _ = make_batch([3], Mode.PREDCLS)
    probability = torch.sigmoid(head(batch).auxiliary[TREE_PAIR_LOGITS])
    assert bool((probability > 0).all()) and bool((probability < 0.25).all())
    with pytest.raises(ValueError, match="cooccurrence_prior"):
        make_head("VCTreePredictor", Mode.PREDCLS, cooccurrence_prior=prior * 5)


def test_vctree_tree_loss_falls_below_ln2_with_a_frequency_prior() -> None:
    """A VG-like frequency table (90% background) must not pin ``loss_tree`` at ln 2; the
    whole head trains (all losses summed)."""
    generator = torch.Generator().manual_seed(3)
    counts = torch.rand(NUM_OBJECTS * NUM_OBJECTS, NUM_PREDICATES, generator=generator)
    counts[:, 0] = 0.0
    shares = 0.1 * counts / counts.sum(dim=1, keepdim=True)
    shares[:, 0] = 0.9
    head = make_head("VCTreePredictor", Mode.PREDCLS, frequency_bias_init=(shares + 1e-3).log())
    batch, _ = make_batch([5, 4], Mode.PREDCLS, seed=2)
    relation_labels = torch.zeros(sum(len(p) for p in batch.pairs), dtype=torch.long)
    relation_labels[[0, 5, 9, 21, 25]] = torch.tensor([1, 2, 3, 4, 5])
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    tree_losses = []
    for _ in range(15):
        losses = head.losses(head(batch), batch, relation_labels)
        tree_losses.append(losses["loss_tree"].item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    # before the fix: 7.27 at first, then stuck at 0.6931 from the 10th step on
    assert tree_losses[-1] < 0.8 * np.log(2.0)
    assert tree_losses[-1] < tree_losses[0] - 0.1


def test_transformer_context_dropout_reaches_every_dropout_layer() -> None:
    head = make_head("TransformerPredictor", Mode.SGCLS, dropout=0.37)
    rates = {m.p for m in head.context.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.37}


@pytest.mark.parametrize("sampled", [False, True])
def test_union_projection_once_per_unordered_pair_equals_the_plain_layer(sampled: bool) -> None:
    """With the leading union columns equal for (s, o) and (o, s), ``project_union`` gives
    ``up_dim(union)`` and its weight gradients (float64), whichever pairs were sampled."""
    shared = 12
    head = make_head("MotifPredictor", Mode.PREDCLS, union_shared_dim=shared).double()
    batch, _ = make_batch([4, 1, 5], Mode.PREDCLS, seed=3, pairs_per_image=7 if sampled else None)
    subjects, objects = [], []
    start = 0
    for count, image_pairs in zip(batch.object_counts, batch.pairs, strict=True):
        subjects.append(image_pairs[:, 0] + start)
        objects.append(image_pairs[:, 1] + start)
        start += count
    subjects, objects = torch.cat(subjects), torch.cat(objects)
    generator = torch.Generator().manual_seed(5)
    table = torch.randn(start, start, shared, generator=generator, dtype=torch.float64)
    table = table + table.transpose(0, 1)  # the same union box either way round
    union = torch.cat(
        [
            table[subjects, objects],
            torch.randn(
                len(subjects), UNION_DIM - shared, generator=generator, dtype=torch.float64
            ),
        ],
        dim=1,
    )
    layer = head.up_dim
    results = []
    for project in (lambda: layer(union), lambda: head.project_union(union, subjects, objects)):
        layer.zero_grad()
        output = project()
        (
            output * torch.linspace(-1, 1, output.numel(), dtype=torch.float64).view_as(output)
        ).sum().backward()
        results.append((output.detach(), layer.weight.grad.clone(), layer.bias.grad.clone()))
    for plain, shared_once in zip(*results, strict=True):
        torch.testing.assert_close(shared_once, plain, rtol=1e-12, atol=1e-12)
    assert head.project_union(union[:0], subjects[:0], objects[:0]).shape == (0, 24)
    # it does read each unordered pair's shared columns once: break the symmetry and it differs
    broken = union.clone()
    broken[:, 0] += torch.arange(len(broken), dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(head.project_union(broken, subjects, objects), layer(broken))


def test_union_shared_dim_must_fit_the_union_vector() -> None:
    with pytest.raises(ValueError, match="union_shared_dim"):
        make_head("MotifPredictor", Mode.PREDCLS, union_shared_dim=UNION_DIM + 1)
