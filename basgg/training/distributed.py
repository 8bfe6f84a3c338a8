"""Multi-process training under ``torchrun``: process group, batch order, gradient averaging.

One process per device. Every process walks the same global batch order, a deterministic
function of (seed, iteration), and takes every ``world_size``-th image of each global batch,
so the images seen do not depend on the number of processes. Gradients are summed over the
processes after each backward pass (one flat all-reduce); the loop scales each process's
loss so that the sum equals the one-process gradient of the same global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as distributed_functional
from torch import Tensor, nn


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits among the training processes.

    Attributes:
        rank: this process's index, 0..world_size-1.
        world_size: number of processes (1 without ``torchrun``).
        device: the device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "cpu") -> DistributedContext:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``).

    Uses nccl on CUDA and gloo on the CPU. Without those variables (or with one process) this
    is a no-op returning a one-process context.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (each process takes ``cuda:LOCAL_RANK``).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = torch.device(device)
    if torch_device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("MODEL.DEVICE is 'cuda' but no CUDA device is available")
        torch_device = torch.device("cuda", local_rank if world_size > 1 else 0)
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, device=torch_device)


def group_exists() -> bool:
    """Whether this process already belongs to a process group (e.g. one that
    :mod:`basgg.training.launch` made, which outlives each run inside it)."""
    return dist.is_available() and dist.is_initialized()


def shutdown_distributed() -> None:
    """Leave the process group, if any."""
    if group_exists():
        dist.destroy_process_group()


def shard(count: int, context: DistributedContext) -> range:
    """This process's contiguous share of ``count`` items (ranks in order cover them all)."""
    return range(
        count * context.rank // context.world_size, count * (context.rank + 1) // context.world_size
    )


def gather_to_main(value: object, context: DistributedContext) -> list[object] | None:
    """Every process's ``value`` in rank order on the main process; ``None`` elsewhere."""
    if not context.enabled:
        return [value]
    gathered: list[object] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def barrier(context: DistributedContext) -> None:
    """Wait for every process (no-op with one process)."""
    if context.enabled:
        dist.barrier()


def all_reduce_sum(value: Tensor, context: DistributedContext) -> Tensor:
    """The sum of ``value`` over the processes (in place; returned for convenience)."""
    if context.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def broadcast_object(value: object, context: DistributedContext) -> object:
    """Process 0's ``value`` on every process."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics cover the global batch of every process.

    Like :class:`torch.nn.SyncBatchNorm`, but on any backend (gloo included): per-channel
    sums and squared sums are all-reduced (differentiably, in float64), so a multi-process
    step normalises exactly as the one-process step on the whole global batch does. Outside
    training, or without a process group, it is a plain ``BatchNorm1d``.
    """

    def forward(self, inputs: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(inputs)
        channels = inputs.shape[1]
        dims = [0, *range(2, inputs.ndim)]
        values = inputs.double()
        count = values.new_tensor([inputs.numel() / max(channels, 1)])
        totals = distributed_functional.all_reduce(
            torch.cat([values.sum(dims), (values * values).sum(dims), count])
        )  # (2 C + 1,)
        total = totals[-1].clamp(min=1.0)
        mean = totals[:channels] / total  # (C,)
        variance = (totals[channels : 2 * channels] / total - mean * mean).clamp(min=0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum
                if momentum is None:  # cumulative moving average
                    momentum = 1.0 / float(self.num_batches_tracked)
                unbiased = variance * total / (total - 1.0).clamp(min=1.0)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.float())
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.float())
        shape = [1, channels] + [1] * (inputs.ndim - 2)
        normalised = (values - mean.view(shape)) / torch.sqrt(variance.view(shape) + self.eps)
        normalised = normalised.to(inputs.dtype)
        if self.affine:
            normalised = normalised * self.weight.view(shape) + self.bias.view(shape)
        return normalised


def use_global_batch_norm(module: nn.Module) -> int:
    """Swap every ``BatchNorm1d`` inside ``module`` for :class:`GlobalBatchNorm1d` (same
    parameters and buffers, so checkpoints still fit); returns how many were swapped."""
    swapped = 0
    for child in module.children():
        if type(child) is nn.BatchNorm1d:
            child.__class__ = GlobalBatchNorm1d
            swapped += 1
        else:
            swapped += use_global_batch_norm(child)
    return swapped


@torch.no_grad()
def broadcast_model(model: nn.Module, context: DistributedContext) -> None:
    """Copy process 0's parameters and buffers to every process."""
    if not context.enabled:
        return
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def all_gather_object(value: object, context: DistributedContext) -> list[object]:
    """Every process's ``value``, in rank order (``[value]`` with one process)."""
    if not context.enabled:
        return [value]
    gathered: list[object] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def sum_gradients(parameters: list[nn.Parameter], context: DistributedContext) -> None:
    """Replace each parameter's gradient by its sum over the processes (one flat all-reduce).

    A parameter without a gradient on every process keeps none (the optimiser skips it, as
    in one process); one with a gradient on some processes counts as zero on the others.
    """
    if not context.enabled or not parameters:
        return
    has_gradient = torch.tensor([float(p.grad is not None) for p in parameters])
    dist.all_reduce(has_gradient, op=dist.ReduceOp.SUM)
    reduced = [p for p, count in zip(parameters, has_gradient.tolist(), strict=True) if count]
    if not reduced:
        return
    for parameter in reduced:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    flat = torch.cat([parameter.grad.reshape(-1) for parameter in reduced])  # (total,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for parameter in reduced:
        count = parameter.grad.numel()
        parameter.grad.copy_(flat[offset : offset + count].view_as(parameter.grad))
        offset += count


def epoch_order(num_items: int, *, seed: int, epoch: int) -> Tensor:
    """(num_items,) int64 the item order of ``epoch``: a permutation that depends only on
    (seed, epoch)."""
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(num_items, generator=generator)


def global_batch_positions(iteration: int, batch_size: int) -> range:
    """Positions in the endless stream of epochs that iteration ``iteration`` reads."""
    return range(iteration * batch_size, (iteration + 1) * batch_size)


def batch_items(
    iteration: int, *, num_items: int, batch_size: int, seed: int, context: DistributedContext
) -> list[tuple[int, int]]:
    """This process's share of the global batch of ``iteration``.

    The stream of positions concatenates the epochs' orders (:func:`epoch_order`), so a batch
    may straddle two epochs. Process ``rank`` takes positions ``rank, rank + world_size, ...``
    of the global batch.

    Returns:
        (stream position, item index) pairs; the position seeds that item's random draws.
    """
    if num_items == 0:
        raise ValueError("the training split is empty")
    if batch_size < context.world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({batch_size}) is smaller than the number of processes "
            f"({context.world_size})"
        )
    positions = global_batch_positions(iteration, batch_size)[context.rank :: context.world_size]
    orders: dict[int, Tensor] = {}
    items = []
    for position in positions:
        epoch, offset = divmod(position, num_items)
        if epoch not in orders:
            orders[epoch] = epoch_order(num_items, seed=seed, epoch=epoch)
        items.append((position, int(orders[epoch][offset])))
    return items


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's ``SeedSequence``)."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])
