"""Learning-rate schedules as Scene-Graph-Benchmark's ``WarmupMultiStepLR`` and
``WarmupReduceLROnPlateau`` define them (``maskrcnn_benchmark/solver/lr_scheduler.py``).

Each parameter group keeps its own starting rate (``initial_lr``: ``BASE_LR x IMS_PER_BATCH``,
times ``BIAS_LR_FACTOR`` for biases) and the schedule multiplies all of them by one factor:
the warm-up factor, times ``GAMMA`` per passed step or ``FACTOR`` per plateau cut. The
factor is a plain function of the iteration and the number of cuts so far, so a resumed run
reproduces it exactly from :meth:`state_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

SCHEDULE_TYPES = ("WarmupMultiStepLR", "WarmupReduceLROnPlateau")
WARMUP_METHODS = ("linear", "constant")


def warmup_factor(
    iteration: int, *, warmup_iters: int, warmup_start: float, method: str = "linear"
) -> float:
    """Warm-up multiplier of iteration ``iteration`` (0-based, SGB's ``last_epoch``).

    ``linear``: ``warmup_start`` at iteration 0, rising linearly to 1 at ``warmup_iters``;
    ``constant``: ``warmup_start`` until ``warmup_iters``. Example:
    ``warmup_factor(250, warmup_iters=500, warmup_start=0.1) == 0.55``.
    """
    if method not in WARMUP_METHODS:
        raise ValueError(f"warm-up method must be one of {WARMUP_METHODS}, got {method!r}")
    if iteration >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_start
    alpha = iteration / warmup_iters
    return warmup_start * (1.0 - alpha) + alpha


def multistep_factor(iteration: int, *, steps: Sequence[int], gamma: float) -> float:
    """``gamma ** (number of steps <= iteration)``."""
    return gamma ** sum(1 for step in steps if step <= iteration)


@dataclass
class PlateauState:
    """What the plateau schedule remembers between validations."""

    best: float | None = None
    bad_validations: int = 0
    cooldown_left: int = 0
    num_decays: int = 0
    history: list[float] = field(default_factory=list)


class LearningRateSchedule:
    """Warm-up followed by ``WarmupMultiStepLR`` steps or ``WarmupReduceLROnPlateau`` cuts.

    Call :meth:`apply` before each optimiser step and :meth:`record_validation` after each
    validation. The plateau rule is SGB's: a validation improves when ``metric > best +
    threshold`` (absolute, on metrics as fractions) and sets a new best; otherwise it counts
    as bad, except the first ``cooldown`` validations and those right after a cut; after
    ``patience`` bad validations in a row the rate is multiplied by ``factor``;
    :attr:`should_stop` turns true once ``max_decay_step`` cuts were made (SGB then ends
    training).

    Args:
        optimizer: whose parameter groups get the rate; each group's ``initial_lr`` (set to
            its ``lr`` when absent) is the rate that the factor multiplies.
        base_lr: the rate reported for logs (the weights' ``initial_lr``).
        schedule_type: one of :data:`SCHEDULE_TYPES`.
        warmup_iters: warm-up length in iterations.
        warmup_start: the warm-up's multiplier (SGB's ``WARMUP_FACTOR``).
        warmup_method: ``"linear"`` or ``"constant"``.
        steps: iterations where the multi-step schedule multiplies by ``gamma``.
        gamma: the multi-step multiplier.
        patience: bad validations in a row that cut the rate.
        threshold: absolute improvement over the best that counts.
        cooldown: validations that never count as bad, at the start and after each cut.
        factor: the plateau cut multiplier.
        max_decay_step: the number of cuts after which training stops.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None,
        *,
        base_lr: float,
        schedule_type: str = "WarmupReduceLROnPlateau",
        warmup_iters: int = 500,
        warmup_start: float = 0.1,
        warmup_method: str = "linear",
        steps: Sequence[int] = (),
        gamma: float = 0.1,
        patience: int = 2,
        threshold: float = 1e-3,
        cooldown: int = 0,
        factor: float = 0.1,
        max_decay_step: int = 3,
    ) -> None:
        if schedule_type not in SCHEDULE_TYPES:
            raise ValueError(f"schedule_type must be one of {SCHEDULE_TYPES}, got {schedule_type}")
        if warmup_method not in WARMUP_METHODS:
            raise ValueError(f"warmup_method must be one of {WARMUP_METHODS}, got {warmup_method}")
        if list(steps) != sorted(steps):
            raise ValueError(f"steps must be increasing, got {list(steps)}")
        self.optimizer = optimizer
        if optimizer is not None:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.base_lr = base_lr
        self.schedule_type = schedule_type
        self.warmup_iters = warmup_iters
        self.warmup_start = warmup_start
        self.warmup_method = warmup_method
        self.steps = list(steps)
        self.gamma = gamma
        self.patience = patience
        self.threshold = threshold
        self.cooldown = cooldown
        self.factor = factor
        self.max_decay_step = max_decay_step
        self.plateau = PlateauState(cooldown_left=cooldown)

    def multiplier(self, iteration: int) -> float:
        """The factor every group's ``initial_lr`` is multiplied by at ``iteration`` (0-based)."""
        rate = warmup_factor(
            iteration,
            warmup_iters=self.warmup_iters,
            warmup_start=self.warmup_start,
            method=self.warmup_method,
        )
        if self.schedule_type == "WarmupMultiStepLR":
            return rate * multistep_factor(iteration, steps=self.steps, gamma=self.gamma)
        return rate * self.factor ** min(self.plateau.num_decays, self.max_decay_step)

    def learning_rate(self, iteration: int) -> float:
        """The reported rate (``base_lr`` times :meth:`multiplier`) of ``iteration``."""
        return self.base_lr * self.multiplier(iteration)

    def apply(self, iteration: int) -> float:
        """Set every group's rate for ``iteration``; returns the reported rate."""
        multiplier = self.multiplier(iteration)
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = group["initial_lr"] * multiplier
        return self.base_lr * multiplier

    def record_validation(self, metric: float) -> bool:
        """Feed a validation result (higher is better); returns whether the rate was cut."""
        state = self.plateau
        state.history.append(float(metric))
        if self.schedule_type != "WarmupReduceLROnPlateau":
            return False
        if state.best is None or metric > state.best + self.threshold:
            state.best = float(metric)
            state.bad_validations = 0
        else:
            state.bad_validations += 1
        if state.cooldown_left > 0:
            state.cooldown_left -= 1
            state.bad_validations = 0
        if state.bad_validations >= self.patience:
            state.num_decays += 1
            state.cooldown_left = self.cooldown
            state.bad_validations = 0
            return True
        return False

    @property
    def should_stop(self) -> bool:
        """True once the plateau schedule made ``max_decay_step`` cuts (SGB's stop rule)."""
        return (
            self.schedule_type == "WarmupReduceLROnPlateau"
            and self.plateau.num_decays >= self.max_decay_step
        )

    def state_dict(self) -> dict:
        """Plain values only (safe for ``torch.load(weights_only=True)``)."""
        return asdict(self.plateau)

    def load_state_dict(self, state: dict) -> None:
        self.plateau = PlateauState(**state)
