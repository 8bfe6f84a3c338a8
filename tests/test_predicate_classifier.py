"""Predicate classifiers: frequency bias, its dropout, the clean branch, Semantic Adjustment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from basgg.models.frequency_bias import FrequencyBias
from basgg.models.predicate_classifier import (
    FrequencyClassifier,
    PredicateClassifier,
    TransformerClassifier,
    UnionContextClassifier,
    adjustment_matrix,
)
from basgg.models.relation_types import PairContext

NUM_OBJECTS = 3
NUM_PREDICATES = 4
HIDDEN = 5
POOLING = 6


def table() -> torch.Tensor:
    """(C * C, P + 1) with entry [s * C + o, p] = 100 s + 10 o + p + 1 (never zero)."""
    s, o, p = torch.meshgrid(
        torch.arange(NUM_OBJECTS), torch.arange(NUM_OBJECTS), torch.arange(NUM_PREDICATES),
        indexing="ij",
    )  # fmt: skip
    return (100 * s + 10 * o + p + 1).float().view(-1, NUM_PREDICATES)


def classifier(kind: str, dropout: float = 0.3) -> PredicateClassifier:
    common = {"num_objects": NUM_OBJECTS, "num_predicates": NUM_PREDICATES,
              "frequency_bias_init": table(), "frequency_bias_dropout": dropout}  # fmt: skip
    if kind == "frequency":
        return FrequencyClassifier(**common)
    kind_type = TransformerClassifier if kind == "transformer" else UnionContextClassifier
    return kind_type(hidden_dim=HIDDEN, pooling_dim=POOLING, **common)


def inputs(rows: int = 7, seed: int = 0) -> dict[str, object]:
    generator = torch.Generator().manual_seed(seed)
    objects = 4
    return {
        "pairs": PairContext(
            torch.randn(objects, HIDDEN, generator=generator),
            torch.randn(objects, HIDDEN, generator=generator),
            torch.randint(0, objects, (rows,), generator=generator),
            torch.randint(0, objects, (rows,), generator=generator),
        ),
        "union_features": torch.randn(rows, POOLING, generator=generator),
        "subject_labels": torch.randint(0, NUM_OBJECTS, (rows,), generator=generator),
        "object_labels": torch.randint(0, NUM_OBJECTS, (rows,), generator=generator),
    }


def test_frequency_bias_row_is_subject_times_c_plus_object() -> None:
    bias = FrequencyBias(initial_table=table(), num_objects=NUM_OBJECTS)
    logits = bias(torch.tensor([2, 0]), torch.tensor([1, 2]))
    assert logits.tolist() == [[211.0, 212.0, 213.0, 214.0], [21.0, 22.0, 23.0, 24.0]]
    assert bias.pair_table()[2, 1].tolist() == [211.0, 212.0, 213.0, 214.0]
    with pytest.raises(ValueError, match="frequency_bias_init"):
        FrequencyBias(initial_table=torch.zeros(8, 4), num_objects=NUM_OBJECTS)
    with pytest.raises(ValueError, match="num_predicates"):
        FrequencyClassifier(num_objects=NUM_OBJECTS, num_predicates=5, frequency_bias_init=table())


def test_frequency_dropout_only_in_training_and_scaled_by_one_over_keep() -> None:
    torch.manual_seed(0)
    head = classifier("frequency", dropout=0.3)
    rows = 4000
    labels = {"subject_labels": torch.full((rows,), 2), "object_labels": torch.full((rows,), 1)}
    clean = torch.tensor([211.0, 212.0, 213.0, 214.0]).expand(rows, -1)
    head.eval()
    assert torch.equal(head(**labels), clean)
    head.train()
    dropped = head(**labels)
    kept = dropped != 0
    assert torch.allclose(dropped[kept], (clean / 0.7)[kept])
    assert abs(kept.float().mean().item() - 0.7) < 0.02
    assert torch.allclose(dropped.mean(dim=0), clean[0], rtol=0.03)


def test_no_dropout_when_rate_is_zero() -> None:
    head = classifier("motifs", dropout=0.0).train()
    data = inputs()
    assert torch.equal(head(**data), head(**data))


def test_adjustment_matrix_hand_example() -> None:
    confusion = np.array(
        [
            [9, 9, 9, 9],  # background row: ignored, becomes [1, 0, 0, 0]
            [5, 6, 2, 0],  # -> P = [0, .75, .25, 0] -> (P + I) / 2
            [3, 0, 0, 0],  # only background counts: empty -> identity row
            [0, 4, 0, 4],  # -> P = [0, .5, 0, .5] -> (P + I) / 2
        ]
    )
    expected = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.875, 0.125, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.25, 0.0, 0.75],
        ]
    )
    matrix = adjustment_matrix(confusion)
    assert matrix.dtype == torch.float32
    assert torch.allclose(matrix, expected, atol=1e-6)
    assert torch.allclose(adjustment_matrix(torch.from_numpy(confusion)), expected, atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((3, 4)), -np.ones((3, 3)), np.zeros(3)])
def test_adjustment_matrix_rejects_bad_confusion(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="confusion"):
        adjustment_matrix(bad)


@pytest.mark.parametrize("kind", ["motifs", "transformer", "frequency"])
def test_set_adjustment_gives_a_times_each_logit_row(kind: str) -> None:
    head = classifier(kind).eval()
    data = inputs()
    plain = head(**data)
    matrix = adjustment_matrix(torch.randint(0, 6, (NUM_PREDICATES, NUM_PREDICATES)))
    head.set_adjustment(matrix)
    adjusted = head(**data)
    for row, z in zip(adjusted, plain, strict=True):
        assert torch.allclose(row, matrix @ z, atol=1e-4)
    head.train()  # applied in training too
    head.frequency_dropout.p = 0.0
    assert torch.allclose(head(**data), adjusted, atol=1e-4)
    head.set_adjustment(None)
    assert torch.allclose(head(**data), plain, atol=1e-5)
    with pytest.raises(ValueError, match="set_adjustment"):
        head.set_adjustment(torch.eye(3))


@pytest.mark.parametrize(
    ("kind", "clean_layers"),
    [
        ("motifs", {"post_cat", "compress", "frequency_bias"}),
        ("transformer", {"rel_compress", "ctx_compress", "frequency_bias"}),
        ("frequency", {"frequency_bias"}),
    ],
)
def test_clean_branch_copies_then_replaces_the_classifier_layers(
    kind: str, clean_layers: set[str]
) -> None:
    head = classifier(kind).eval()
    data = inputs()
    before = head(**data)
    head.enable_clean_branch()
    trainable = {name.split(".")[0] for name, p in head.named_parameters() if p.requires_grad}
    assert trainable == {f"{name}_clean" for name in clean_layers}
    assert torch.equal(head(**data), before)
    for name in clean_layers:  # the copies are independent of the general layers
        general, clean = getattr(head, name), getattr(head, f"{name}_clean")
        for a, b in zip(general.parameters(), clean.parameters(), strict=True):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    with torch.no_grad():  # the general layers no longer matter; the clean ones do
        head.frequency_bias.table.weight.add_(5.0)
        assert torch.equal(head(**data), before)
        head.frequency_bias_clean.table.weight.add_(5.0)
        assert not torch.equal(head(**data), before)
    with pytest.raises(RuntimeError, match="already enabled"):
        head.enable_clean_branch()


def test_transformer_post_cat_is_shared_and_frozen() -> None:
    head = classifier("transformer")
    head.enable_clean_branch()
    assert not hasattr(head, "post_cat_clean")
    assert not any(p.requires_grad for p in head.post_cat.parameters())


def test_pair_linear_equals_the_layer_on_the_pair_vectors() -> None:
    """PairContext.linear computes layer([subject_part[s], object_part[o]]) per object."""
    generator = torch.Generator().manual_seed(3)
    pairs = PairContext(
        torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True),
        torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True),
        torch.tensor([0, 1, 4, 4, 2, 0]),
        torch.tensor([1, 0, 2, 3, 4, 3]),
    )
    representation = pairs.representation()
    assert representation.shape == (6, 6)
    assert torch.equal(representation[2], torch.cat([pairs.subject_part[4], pairs.object_part[2]]))
    layer = torch.nn.Linear(6, 2).double()
    expected, got = layer(representation), pairs.linear(layer)
    assert torch.allclose(got, expected, rtol=0, atol=1e-12)
    weights = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    wanted = torch.autograd.grad((expected * weights).sum(), [layer.weight, pairs.subject_part])
    found = torch.autograd.grad((got * weights).sum(), [layer.weight, pairs.subject_part])
    for a, b in zip(wanted, found, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="takes 4 features"):
        pairs.linear(torch.nn.Linear(4, 2))
