"""The allowed range of every configuration value, as a table checked when a config loads.

:data:`RULES` maps a dotted key to a :class:`Rule`; ``basgg.config.check_ranges`` (run by
``load_config``) raises a ``ConfigError`` naming the first key whose value is out of range.
A new numeric key gets a line here (``tests/test_config.py`` checks every int, float and list
key has one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """``accepts(value)`` says whether ``value`` is allowed; ``text`` says what is."""

    accepts: Callable[[Any], bool]
    text: str


def at_least(low: int) -> Rule:
    """An integer ``>= low``."""
    return Rule(lambda value: value >= low, f"an integer >= {low}")


def number_in(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Rule:
    """A finite number in the interval given (closed unless said open)."""

    def accepts(value: float) -> bool:
        return (
            math.isfinite(value)
            and (value > low if open_low else value >= low)
            and (value < high if open_high else value <= high)
        )

    bounds = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    return Rule(accepts, f"a number in {bounds}")


def each(rule: Rule) -> Rule:
    """A non-empty list whose every item passes ``rule``."""
    return Rule(
        lambda values: len(values) > 0 and all(rule.accepts(value) for value in values),
        f"a non-empty list, each item {rule.text}",
    )


POSITIVE = Rule(lambda value: value >= 1, "a positive integer")
NON_NEGATIVE = Rule(lambda value: value >= 0, "an integer >= 0 (0 turns it off)")
ALL_OR_POSITIVE = Rule(lambda value: value == -1 or value >= 1, "-1 (all) or a positive integer")
FRACTION = number_in(0.0, 1.0)
DROPOUT = number_in(0.0, 1.0, open_high=True)
FINITE_POSITIVE = number_in(0.0, math.inf, open_low=True, open_high=True)
FINITE_NON_NEGATIVE = number_in(0.0, math.inf, open_high=True)
NOT_EMPTY = Rule(lambda value: bool(str(value).strip()), "a non-empty string")
_DEVICE = re.compile(r"(cpu|mps|cuda(:\d+)?)")
DEVICE = Rule(lambda value: _DEVICE.fullmatch(value) is not None, "cpu, cuda, cuda:N or mps")
SEED = Rule(lambda value: 0 <= value < 2**32, "an integer in [0, 2**32)")

_HEAD = "MODEL.ROI_RELATION_HEAD."
_DETECTOR = "MODEL.DETECTOR."
RULES: dict[str, Rule] = {
    "OUTPUT_DIR": NOT_EMPTY,
    "SEED": SEED,
    "NUM_THREADS": Rule(lambda v: v >= 0, "an integer >= 0 (0: automatic)"),
    "DATASETS.DATA_DIR": NOT_EMPTY,
    "DATASETS.VAL_SIZE": at_least(0),
    "DATASETS.NUM_IMAGES": ALL_OR_POSITIVE,
    "MODEL.DEVICE": DEVICE,
    "MODEL.BACKBONE.STRIDE": POSITIVE,
    "MODEL.BACKBONE.IMAGE_SIZE": Rule(lambda v: v >= 0, "an integer >= 0 (0: native size)"),
    "MODEL.BACKBONE.OBJECT_POOL": POSITIVE,
    "MODEL.BACKBONE.UNION_POOL": POSITIVE,
    "MODEL.BACKBONE.RECT_SIZE": POSITIVE,
    "MODEL.BACKBONE.BATCH_SIZE": POSITIVE,
    _DETECTOR + "TRAINABLE_LAYERS": Rule(lambda v: 0 <= v <= 5, "an integer in [0, 5]"),
    _DETECTOR + "FPN_CHANNELS": POSITIVE,
    _DETECTOR + "REPRESENTATION_SIZE": POSITIVE,
    _DETECTOR + "MIN_SIZE": POSITIVE,
    _DETECTOR + "MAX_SIZE": POSITIVE,
    _DETECTOR + "RPN_PRE_NMS_TOP_N_TRAIN": POSITIVE,
    _DETECTOR + "RPN_POST_NMS_TOP_N_TRAIN": POSITIVE,
    _DETECTOR + "RPN_PRE_NMS_TOP_N_TEST": POSITIVE,
    _DETECTOR + "RPN_POST_NMS_TOP_N_TEST": POSITIVE,
    _DETECTOR + "BOX_BATCH_SIZE_PER_IMAGE": POSITIVE,
    _DETECTOR + "SCORE_THRESH": FRACTION,
    _DETECTOR + "NMS_THRESH": FRACTION,
    _DETECTOR + "DETECTIONS_PER_IMG": POSITIVE,
    _DETECTOR + "ANCHOR_SIZES": each(POSITIVE),
    _DETECTOR + "ASPECT_RATIOS": each(FINITE_POSITIVE),
    _HEAD + "BATCH_SIZE_PER_IMAGE": POSITIVE,
    _HEAD + "POSITIVE_FRACTION": FRACTION,
    _HEAD + "CONTEXT_HIDDEN_DIM": POSITIVE,
    _HEAD + "CONTEXT_POOLING_DIM": POSITIVE,
    _HEAD + "CONTEXT_OBJ_LAYER": POSITIVE,
    _HEAD + "CONTEXT_REL_LAYER": POSITIVE,
    _HEAD + "CONTEXT_DROPOUT_RATE": DROPOUT,
    _HEAD + "EMBED_DIM": POSITIVE,
    _HEAD + "FREQUENCY_BIAS_DROPOUT": DROPOUT,
    _HEAD + "BPL_NUM_HEAD_PREDICATES": at_least(0),
    _HEAD + "BPL_MAX_PER_PREDICATE": Rule(
        lambda v: v == -1 or v >= 1, "-1 (scaled) or a positive integer"
    ),
    _HEAD + "BPL_SCALE_FRACTION": number_in(0.0, 1.0, open_low=True),
    _HEAD + "TRANSFORMER.DROPOUT_RATE": DROPOUT,
    _HEAD + "TRANSFORMER.OBJ_LAYER": POSITIVE,
    _HEAD + "TRANSFORMER.REL_LAYER": POSITIVE,
    _HEAD + "TRANSFORMER.NUM_HEAD": POSITIVE,
    _HEAD + "TRANSFORMER.KEY_DIM": POSITIVE,
    _HEAD + "TRANSFORMER.VAL_DIM": POSITIVE,
    _HEAD + "TRANSFORMER.INNER_DIM": POSITIVE,
    "SOLVER.IMS_PER_BATCH": POSITIVE,
    "SOLVER.BASE_LR": FINITE_POSITIVE,
    "SOLVER.MAX_ITER": Rule(
        lambda v: v >= 0, "an integer >= 0 (0: no training, e.g. the frequency baseline)"
    ),
    "SOLVER.MOMENTUM": FRACTION,
    "SOLVER.WEIGHT_DECAY": FINITE_NON_NEGATIVE,
    "SOLVER.BIAS_LR_FACTOR": FINITE_NON_NEGATIVE,
    "SOLVER.WEIGHT_DECAY_BIAS": FINITE_NON_NEGATIVE,
    "SOLVER.WARMUP_ITERS": at_least(0),
    "SOLVER.WARMUP_FACTOR": number_in(0.0, 1.0, open_low=True),
    "SOLVER.STEPS": Rule(
        lambda values: all(value >= 1 for value in values), "a list of positive integers"
    ),
    "SOLVER.GAMMA": FINITE_POSITIVE,
    "SOLVER.GRAD_NORM_CLIP": FINITE_NON_NEGATIVE,
    "SOLVER.CHECKPOINT_PERIOD": Rule(lambda v: v >= 0, "an integer >= 0 (0: only at the end)"),
    "SOLVER.VAL_PERIOD": Rule(lambda v: v >= 0, "an integer >= 0 (0: never)"),
    "SOLVER.LOG_PERIOD": POSITIVE,
    "SOLVER.SCHEDULE.PATIENCE": at_least(0),
    "SOLVER.SCHEDULE.THRESHOLD": FINITE_NON_NEGATIVE,
    "SOLVER.SCHEDULE.COOLDOWN": at_least(0),
    "SOLVER.SCHEDULE.FACTOR": number_in(0.0, 1.0, open_low=True),
    "SOLVER.SCHEDULE.MAX_DECAY_STEP": POSITIVE,
    "TEST.IMS_PER_BATCH": POSITIVE,
    "TEST.TOP_KS": each(POSITIVE),
    "TEST.MAX_VAL_IMAGES": ALL_OR_POSITIVE,
}


def range_error(key: str, value: Any) -> str | None:
    """Why ``value`` is out of range for ``key`` (``None`` when it is fine or has no rule)."""
    rule = RULES.get(key)
    if rule is None or rule.accepts(value):
        return None
    return f"config key {key!r} expects {rule.text}, got {value!r}"


def first_range_problem(config: Any) -> str | None:
    """What is wrong with the first value of ``config`` outside its range (``None``: all
    fine). ``basgg.config.check_ranges`` raises it as a ``ConfigError``."""
    for key in RULES:
        node = config
        for part in key.split("."):
            node = getattr(node, part)
        problem = range_error(key, node)
        if problem:
            return problem
    return None
