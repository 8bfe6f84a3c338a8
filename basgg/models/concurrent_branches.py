"""Two independent parts of a CPU step on two threads, forward and backward.

A CPU training step over cached features runs with one intra-op thread
(:func:`basgg.training.runs.single_thread_over_cache`): its operations are too small for
several threads to share one of them. Some of its parts are independent, though, like the
two directions of a bidirectional LSTM. :func:`run_concurrently` runs two such parts at
once, one on a worker thread and one on the calling thread (torch releases the GIL inside
its operations), and, when they need gradients, their backward passes as well: each part
records its own autograd graph and the backward calls :func:`torch.autograd.grad` on both
graphs at once, which torch allows on a CPU. Every operation is the one a sequential run
does, on the same inputs, so values and gradients are identical, bit for bit (where an
input is also read outside the two branches, its gradient contributions are summed in
another order: equal up to float rounding).

Modules that can use it have a ``concurrent_branches`` attribute (default ``False``);
:func:`enable_concurrent_branches` sets it where a core is left idle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

T = TypeVar("T")
U = TypeVar("U")
Branch = Callable[..., Tensor]

_WORKER: list[tuple[int, ThreadPoolExecutor]] = []  # (pid, executor): a fork makes a new one


def _worker() -> ThreadPoolExecutor:
    """This process's one worker thread (a forked child does not inherit a live thread)."""
    if not _WORKER or _WORKER[0][0] != os.getpid():
        _WORKER[:] = [(os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="basgg-branch"))]
    return _WORKER[0][1]


def _both(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """``first()`` on the worker thread while ``second()`` runs here; waits for both (an
    error in either is raised once both have ended). When the worker is still busy with
    earlier work once ``second`` is done, ``first`` runs here instead of waiting."""
    future = _worker().submit(first)
    try:
        second_result = second()
    except BaseException:
        if not future.cancel():
            future.exception()  # wait: nothing may still run on the inputs
        raise
    if future.cancel():  # not started: the worker is busy elsewhere
        return first(), second_result
    return future.result(), second_result


def _in_mode(function: Callable[[], T], *, grad: bool, inference: bool) -> Callable[[], T]:
    """``function`` run under the given grad and inference modes (they are per thread)."""

    def run() -> T:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return function()

    return run


def run_concurrently(
    first: Branch,
    first_inputs: Sequence[Tensor],
    second: Branch,
    second_inputs: Sequence[Tensor],
) -> tuple[Tensor, Tensor]:
    """``(first(*first_inputs), second(*second_inputs))``, the two computed at once.

    The branches must be independent: they may read the same tensors but write none that
    the other reads. With gradients enabled and an input that requires one, both the
    forward and the backward of the two run concurrently (first-order gradients only).
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in [*first_inputs, *second_inputs]):
        outputs = _TwoBranches.apply(
            first, second, len(first_inputs), *first_inputs, *second_inputs
        )
        return outputs[0], outputs[1]
    modes = {"grad": torch.is_grad_enabled(), "inference": torch.is_inference_mode_enabled()}
    return _both(
        _in_mode(lambda: first(*first_inputs), **modes),
        _in_mode(lambda: second(*second_inputs), **modes),
    )


class _TwoBranches(torch.autograd.Function):
    """Each branch records its own graph over detached copies of its inputs; the backward
    takes the gradients of both graphs concurrently and hands them to the inputs."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, first: Branch, second: Branch, count: int, *inputs: Tensor
    ) -> tuple[Tensor, Tensor]:
        leaves = [t.detach().requires_grad_(t.requires_grad) for t in inputs]
        first_output, second_output = _both(
            _in_mode(lambda: first(*leaves[:count]), grad=True, inference=False),
            _in_mode(lambda: second(*leaves[count:]), grad=True, inference=False),
        )
        ctx.graphs = ((first_output, leaves[:count]), (second_output, leaves[count:]))
        return first_output.detach(), second_output.detach()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, first_grad: Tensor, second_grad: Tensor) -> tuple[Tensor | None, ...]:
        (first_output, first_leaves), (second_output, second_leaves) = ctx.graphs
        del ctx.graphs  # the branch graphs are freed once their gradients are taken
        first_grads, second_grads = _both(
            lambda: _input_grads(first_output, first_grad, first_leaves),
            lambda: _input_grads(second_output, second_grad, second_leaves),
        )
        return (None, None, None, *first_grads, *second_grads)


def _input_grads(output: Tensor, grad: Tensor, leaves: list[Tensor]) -> list[Tensor | None]:
    """Gradients of ``output`` (weighted by ``grad``) for each leaf (``None`` where none)."""
    wanted = [leaf for leaf in leaves if leaf.requires_grad]
    if not wanted or not output.requires_grad:
        return [None] * len(leaves)
    found = iter(torch.autograd.grad(output, wanted, grad, allow_unused=True))
    return [next(found) if leaf.requires_grad else None for leaf in leaves]


def enable_concurrent_branches(model: nn.Module, enabled: bool = True) -> int:
    """Set ``concurrent_branches`` on every submodule of ``model`` that has it; returns
    how many have it."""
    found = 0
    for module in model.modules():
        if hasattr(module, "concurrent_branches"):
            module.concurrent_branches = enabled
            found += 1
    return found
