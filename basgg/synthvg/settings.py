"""SynthVG settings: every knob of the generator, their defaults, validation and YAML loading.

:class:`SynthSettings` holds sizes, the scene and situation mix, accessory rates, the spatial
relation sampler and the per-situation label distributions; :func:`load_settings` layers a
YAML file and keyword overrides over the defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

# specific predicate -> the general predicates an annotator may write instead
PREDICATE_ANCESTORS: dict[str, tuple[str, ...]] = {
    "riding": ("on", "sitting on"),
    "parked on": ("on",),
    "walking on": ("on",),
    "standing on": ("on",),
    "sitting on": ("on",),
    "laying on": ("on",),
    "mounted on": ("on",),
    "wearing": ("has",),
    "wears": ("has",),
    "holding": ("has", "with"),
    "carrying": ("has", "with"),
    "looking at": ("near",),
    "watching": ("near",),
    "part of": ("of",),
    # already specific: annotators write them as they are
    **dict.fromkeys(("has", "on", "above", "behind", "in front of", "near", "under"), ()),
}

# situation -> the specific predicates its true relations carry
SITUATION_PREDICATES: dict[str, tuple[str, ...]] = {
    "rider": ("riding",),
    "parked": ("parked on",),
    "pedestrian": ("walking on",),
    "standing": ("standing on",),
    "seated": ("sitting on",),
    "lying": ("laying on",),
    "tableware": ("on",),
    "pet": ("on",),
    "perched": ("on",),
    "dressed": ("wearing", "wears"),
    "holder": ("holding",),
    "carrier": ("carrying",),
    "gaze": ("looking at", "watching"),
    "mounted": ("mounted on",),
    "parts": ("has", "part of"),
    "spatial": ("above", "behind", "in front of", "near", "under"),
}

SCENE_KINDS = ("street", "park", "beach", "snow", "indoor")

# the anchor situations a scene is built around (their builders: situations.ANCHOR_SITUATIONS)
ANCHOR_SITUATION_NAMES = (
    "pet", "perched", "rider", "parked", "pedestrian", "standing", "seated", "lying",
    "tableware", "gaze", "mounted", "building", "scenery",
)  # fmt: skip
ACCESSORIES = ("dressed", "holder", "carrier", "parts")

DEFAULT_LABEL_DISTRIBUTIONS: dict[str, dict[str, dict[str, float]]] = {
    "rider": {"riding": {"on": 0.55, "riding": 0.35, "sitting on": 0.10}},
    "parked": {"parked on": {"on": 0.72, "parked on": 0.28}},
    "pedestrian": {"walking on": {"on": 0.70, "walking on": 0.30}},
    "standing": {"standing on": {"on": 0.60, "standing on": 0.40}},
    "seated": {"sitting on": {"on": 0.55, "sitting on": 0.45}},
    "lying": {"laying on": {"on": 0.65, "laying on": 0.35}},
    "tableware": {"on": {"on": 1.0}},
    "pet": {"on": {"on": 1.0}},
    "perched": {"on": {"on": 1.0}},
    "dressed": {
        "wearing": {"has": 0.30, "wearing": 0.70},
        "wears": {"has": 0.45, "wears": 0.55},
    },
    "holder": {"holding": {"has": 0.35, "with": 0.15, "holding": 0.50}},
    "carrier": {"carrying": {"has": 0.40, "with": 0.30, "carrying": 0.30}},
    "gaze": {
        "looking at": {"near": 0.60, "looking at": 0.40},
        "watching": {"near": 0.55, "watching": 0.45},
    },
    "mounted": {"mounted on": {"on": 0.75, "mounted on": 0.25}},
    "parts": {"has": {"has": 1.0}, "part of": {"of": 0.75, "part of": 0.25}},
    "spatial": {name: {name: 1.0} for name in SITUATION_PREDICATES["spatial"]},
}


@dataclass
class SynthSettings:
    """Everything that defines a SynthVG dataset (``--settings FILE.yaml`` overrides fields).

    Attributes:
        num_train: training images (split flag 0), written first.
        num_test: test images (split flag 2), written after the training images.
        image_size: (width, height) in pixels.
        seed: the dataset seed; image ``i`` depends only on (seed, i).
        annotation_rate: probability that a true relation is annotated at all.
        general_bias: factor on the probability of every general label (0: always specific).
        objects_per_image: (low, high) object budget of a scene.
        spatial_per_image: mean number of spatial relations drawn from the layout (at most
            its clear candidates, see ``basgg.synthvg.spatial``).
        scene_weights: scene kind -> weight.
        situation_weights: anchor situation -> weight.
        accessory_rates: ``dressed`` / ``holder`` / ``carrier`` / ``parts`` -> probability.
        spatial_weights: spatial predicate -> weight.
        label_distributions: situation -> specific predicate -> {label: probability}; labels
            are the specific predicate and its general ancestors.
    """

    num_train: int = 3000
    num_test: int = 1000
    image_size: tuple[int, int] = (320, 240)
    seed: int = 0
    annotation_rate: float = 0.6
    general_bias: float = 1.0
    objects_per_image: tuple[int, int] = (10, 17)
    spatial_per_image: float = 6.0
    scene_weights: dict[str, float] = field(
        default_factory=lambda: dict(street=0.35, park=0.2, beach=0.12, snow=0.08, indoor=0.25)
    )
    situation_weights: dict[str, float] = field(
        default_factory=lambda: dict(
            rider=1.0,
            parked=1.2,
            pedestrian=1.0,
            standing=1.5,
            seated=0.8,
            lying=0.5,
            tableware=1.5,
            gaze=0.6,
            mounted=0.9,
            building=0.8,
            scenery=1.5,
            pet=1.2,
            perched=1.2,
        )  # fmt: skip
    )
    accessory_rates: dict[str, float] = field(
        default_factory=lambda: dict(dressed=0.5, holder=0.3, carrier=0.2, parts=0.6)
    )
    spatial_weights: dict[str, float] = field(
        default_factory=lambda: {
            "near": 1.0,
            "behind": 0.7,
            "above": 0.6,
            "under": 0.35,
            "in front of": 0.3,
        }  # fmt: skip
    )
    label_distributions: dict[str, dict[str, dict[str, float]]] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_LABEL_DISTRIBUTIONS)
    )

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        _require(self.num_train >= 0 and self.num_test >= 0, "num_train/num_test", ">= 0")
        _require(
            len(self.image_size) == 2 and min(self.image_size) >= 64,
            "image_size",
            "(width, height), each >= 64",
        )
        _require(0 <= self.annotation_rate <= 1, "annotation_rate", "in [0, 1]")
        _require(self.general_bias >= 0, "general_bias", ">= 0")
        low, high = self.objects_per_image
        _require(1 <= low <= high, "objects_per_image", "(low, high) with 1 <= low <= high")
        _require(self.spatial_per_image >= 0, "spatial_per_image", ">= 0")
        for name, table, known in (
            ("scene_weights", self.scene_weights, SCENE_KINDS),
            ("situation_weights", self.situation_weights, ANCHOR_SITUATION_NAMES),
            ("accessory_rates", self.accessory_rates, ACCESSORIES),
            ("spatial_weights", self.spatial_weights, SITUATION_PREDICATES["spatial"]),
        ):
            unknown = sorted(set(table) - set(known))
            _require(not unknown, name, f"keys among {list(known)} (got {unknown})")
            _require(all(v >= 0 for v in table.values()), name, "non-negative values")
        _require(sum(self.scene_weights.values()) > 0, "scene_weights", "a positive weight")
        for situation, specifics in SITUATION_PREDICATES.items():
            for specific in specifics:
                table = self.label_distributions.get(situation, {}).get(specific)
                where = f"label_distributions.{situation}.{specific}"
                _require(
                    isinstance(table, Mapping) and sum(table.values()) > 0,
                    where,
                    "a {label: probability} table with a positive sum",
                )
                allowed = {specific, *PREDICATE_ANCESTORS[specific]}
                _require(set(table) <= allowed, where, f"labels among {sorted(allowed)}")
                _require(all(v >= 0 for v in table.values()), where, "non-negative values")

    def enabled_situations(self) -> list[str]:
        """Situations that can produce relations under these settings."""
        names = [
            n for n, w in self.situation_weights.items() if w > 0 and n in SITUATION_PREDICATES
        ]
        names += [n for n in ACCESSORIES if self.accessory_rates.get(n, 0) > 0]
        return [n for n in SITUATION_PREDICATES if n in names or n == "spatial"]


def _yaml_labels(table: Mapping) -> dict[str, float]:
    """A label table with YAML 1.1's reading of an unquoted ``on`` (``True``) undone."""
    return {("on" if label is True else label): float(p) for label, p in dict(table).items()}


def _require(ok: bool, field_name: str, expected: str) -> None:
    if not ok:
        raise ValueError(f"SynthVG settings: field {field_name!r} must be {expected}")


def load_settings(path: Path | None = None, **overrides: object) -> SynthSettings:
    """Defaults, then a YAML file's fields, then keyword overrides (``None`` values skipped).

    Dictionary fields are merged key by key (one level; a label table of one specific
    predicate is replaced whole), so a file may change a single weight or distribution.
    """
    settings = SynthSettings()
    values: dict = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ValueError(f"{path}: cannot read the SynthVG settings ({error})") from error
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of SynthVG settings fields")
    values.update({k: v for k, v in overrides.items() if v is not None})
    names = {f.name for f in fields(SynthSettings)}
    for key, value in values.items():
        if key not in names:
            raise ValueError(f"{path or 'settings'}: unknown field {key!r}")
        current = getattr(settings, key)
        try:
            if key == "label_distributions":
                for situation, tables in dict(value).items():
                    current.setdefault(situation, {}).update(
                        {specific: _yaml_labels(table) for specific, table in dict(tables).items()}
                    )
            elif isinstance(current, dict):
                current.update(dict(value))
            elif isinstance(current, tuple):
                setattr(settings, key, tuple(value))
            else:
                setattr(settings, key, type(current)(value))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path or 'settings'}: field {key!r}: bad value ({error})") from error
    settings.validate()
    return settings


def settings_dict(settings: SynthSettings) -> dict:
    """The settings as plain YAML-ready data (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
