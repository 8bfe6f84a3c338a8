"""Two independent parts of a step on two threads: the same values and gradients, bit for bit."""

from __future__ import annotations

import threading

import pytest
import torch

from basgg.config import load_config
from basgg.data.vocabulary import Vocabulary
from basgg.models import build_model
from basgg.models.concurrent_branches import enable_concurrent_branches, run_concurrently
from basgg.models.context_motifs import MotifsContext, fused_bidirectional_lstm


def _branch(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x @ weight).cumsum(0)  # (N, k)


@pytest.mark.parametrize("third_reader", [False, True])
def test_run_concurrently_gives_the_sequential_values_and_gradients(third_reader: bool) -> None:
    """Bit for bit; an input that a third part also reads gets its gradients summed in
    another order, so there they agree to float rounding."""
    torch.manual_seed(0)
    shared = torch.randn(6, 4, requires_grad=True)  # read by both branches
    first_weight = torch.randn(4, 3, requires_grad=True)
    second_weight = torch.randn(4, 5, requires_grad=True)
    frozen = torch.randn(4, 5)  # no gradient wanted

    def outputs(concurrent: bool) -> list[torch.Tensor]:
        for tensor in (shared, first_weight, second_weight):
            tensor.grad = None
        if concurrent:
            a, b = run_concurrently(_branch, [shared, first_weight], _branch, [shared, frozen])
        else:
            a, b = _branch(shared, first_weight), _branch(shared, frozen)
        loss = a.sin().sum() + (b * b).sum()
        if third_reader:
            loss = loss + _branch(shared, second_weight).sum()
        loss.backward()
        return [a, b, shared.grad, first_weight.grad]

    expected = outputs(concurrent=False)
    found = outputs(concurrent=True)
    for want, got in zip(expected, found, strict=True):
        if third_reader:
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(want, got)


def test_run_concurrently_keeps_the_callers_grad_and_inference_modes() -> None:
    weight = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(2, 3)

    def mode_of(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        flags = [torch.is_grad_enabled(), torch.is_inference_mode_enabled()]
        return torch.tensor(flags, dtype=torch.float32) + 0 * (x @ weight).sum()

    with torch.no_grad():
        a, b = run_concurrently(mode_of, [x, weight], mode_of, [x, weight])
    assert a.tolist() == b.tolist() == [0.0, 0.0]
    assert not a.requires_grad
    with torch.inference_mode():
        a, b = run_concurrently(mode_of, [x, weight], mode_of, [x, weight])
    assert a.tolist() == b.tolist() == [0.0, 1.0]


def test_run_concurrently_runs_the_first_branch_on_another_thread() -> None:
    threads = []
    first_started = threading.Event()

    def first(x: torch.Tensor) -> torch.Tensor:
        threads.append(("first", threading.current_thread().name))
        first_started.set()
        return x * 2

    def second(x: torch.Tensor) -> torch.Tensor:
        first_started.wait(timeout=10)  # the worker picks the first branch up meanwhile
        threads.append(("second", threading.current_thread().name))
        return x * 3

    x = torch.ones(2, requires_grad=True)
    a, b = run_concurrently(first, [x], second, [x])
    (a + b).sum().backward()
    assert x.grad.tolist() == [5.0, 5.0]
    names = dict(threads)
    assert names["second"] == threading.current_thread().name
    assert names["first"].startswith("basgg-branch")


@pytest.mark.parametrize("failing", ["first", "second"])
def test_an_error_in_either_branch_is_raised(failing: str) -> None:
    def fails(x: torch.Tensor) -> torch.Tensor:
        raise ValueError(f"{failing} failed")

    def works(x: torch.Tensor) -> torch.Tensor:
        return x + 1

    first, second = (fails, works) if failing == "first" else (works, fails)
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=f"{failing} failed"):
        run_concurrently(first, [x], second, [x])
    a, b = run_concurrently(works, [x], works, [x])  # the worker still serves
    assert a.tolist() == b.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("training", [True, False])
def test_concurrent_lstm_directions_are_bit_identical(layers: int, training: bool) -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(9, 6, num_layers=layers, bidirectional=True).train(training)
    counts = [4, 0, 7, 2]
    features = torch.randn(sum(counts), 9, requires_grad=True)
    orders = list(torch.randperm(sum(counts)).split(counts))
    weights = torch.randn(sum(counts), 12)
    inputs = [features, *lstm.parameters()]
    results = []
    for concurrent in (False, True):
        output = fused_bidirectional_lstm(lstm, features, orders, concurrent=concurrent)
        results.append([output, *torch.autograd.grad((output * weights).sum(), inputs)])
    for want, got in zip(*results, strict=True):
        assert torch.equal(want, got)


def test_enable_concurrent_branches_reaches_the_motifs_context() -> None:
    config = load_config(None, ["MODEL.BACKBONE.WEIGHTS", "random",
                                "MODEL.ROI_RELATION_HEAD.CONTEXT_HIDDEN_DIM", "8"])  # fmt: skip
    vocabulary = Vocabulary(
        objects=("__background__", "a", "b"), predicates=("__background__", "on")
    )
    model = build_model(
        config,
        vocabulary=vocabulary,
        frequency_bias_init=torch.zeros(9, 2),
        object_word_vectors=torch.zeros(3, config.MODEL.ROI_RELATION_HEAD.EMBED_DIM),
    )
    contexts = [m for m in model.modules() if isinstance(m, MotifsContext)]
    assert len(contexts) == 1 and not contexts[0].concurrent_branches
    assert enable_concurrent_branches(model) == 1
    assert contexts[0].concurrent_branches
    enable_concurrent_branches(model, enabled=False)
    assert not contexts[0].concurrent_branches
