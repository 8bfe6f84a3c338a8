"""Learning-rate schedules: linear warm-up, then fixed steps or cuts on a validation plateau.

The rate is a plain function of the iteration (and, for the plateau schedule, of the number
of cuts so far), so a resumed run reproduces it exactly from :meth:`state_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

SCHEDULE_TYPES = ("WarmupMultiStepLR", "WarmupReduceLROnPlateau")


def warmup_factor(iteration: int, *, warmup_iters: int, warmup_start: float) -> float:
    """Linear warm-up multiplier: ``warmup_start`` at iteration 0, rising to 1 at ``warmup_iters``.

    Example: ``warmup_factor(250, warmup_iters=500, warmup_start=0.1) == 0.55``.
    """
    if iteration >= warmup_iters:
        return 1.0
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
    validation (the plateau schedule cuts the rate by ``factor`` after ``patience``
    validations without a relative improvement above ``threshold``; :attr:`should_stop`
    turns true once ``max_decay_step`` cuts were made).

    Args:
        optimizer: whose parameter groups get the rate.
        base_lr: the rate after warm-up.
        schedule_type: one of :data:`SCHEDULE_TYPES`.
        warmup_iters: warm-up length in iterations.
        warmup_start: the warm-up's starting multiplier.
        steps: iterations where the multi-step schedule multiplies by ``gamma``.
        gamma: the multi-step multiplier.
        patience: plateau validations tolerated before a cut.
        threshold: relative improvement that resets the patience.
        cooldown: validations ignored after a cut.
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
        steps: Sequence[int] = (),
        gamma: float = 0.1,
        patience: int = 2,
        threshold: float = 1e-4,
        cooldown: int = 0,
        factor: float = 0.1,
        max_decay_step: int = 3,
    ) -> None:
        if schedule_type not in SCHEDULE_TYPES:
            raise ValueError(f"schedule_type must be one of {SCHEDULE_TYPES}, got {schedule_type}")
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.schedule_type = schedule_type
        self.warmup_iters = warmup_iters
        self.warmup_start = warmup_start
        self.steps = list(steps)
        self.gamma = gamma
        self.patience = patience
        self.threshold = threshold
        self.cooldown = cooldown
        self.factor = factor
        self.max_decay_step = max_decay_step
        self.plateau = PlateauState()

    def learning_rate(self, iteration: int) -> float:
        """The rate of iteration ``iteration`` (0-based)."""
        rate = self.base_lr * warmup_factor(
            iteration, warmup_iters=self.warmup_iters, warmup_start=self.warmup_start
        )
        if self.schedule_type == "WarmupMultiStepLR":
            return rate * multistep_factor(iteration, steps=self.steps, gamma=self.gamma)
        return rate * self.factor ** min(self.plateau.num_decays, self.max_decay_step)

    def apply(self, iteration: int) -> float:
        """Set the optimiser's rate for ``iteration``; returns it."""
        rate = self.learning_rate(iteration)
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        return rate

    def record_validation(self, metric: float) -> bool:
        """Feed a validation result (higher is better); returns whether the rate was cut."""
        state = self.plateau
        state.history.append(float(metric))
        if self.schedule_type != "WarmupReduceLROnPlateau":
            return False
        if state.best is None or metric > state.best * (1.0 + self.threshold):
            state.best = float(metric)
            state.bad_validations = 0
        else:
            state.bad_validations += 1
        if state.cooldown_left > 0:
            state.cooldown_left -= 1
            state.bad_validations = 0
        if state.bad_validations > self.patience:
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
