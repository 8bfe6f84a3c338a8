"""SynthVG scene grammar: the planned scene, its builder, spatial relations and annotation.

A scene is planned before it is drawn (:func:`basgg.synthvg.situations.sample_scene`):
situations place objects through a :class:`SceneBuilder` and record *true* relations whose
specific predicate is visible in the layout, and
:func:`basgg.synthvg.spatial.add_spatial_relations` adds relations that the geometry
makes true. :func:`annotate` then plays the annotator: it keeps each true
relation with some probability and labels it with the specific predicate or one of its
general ancestors (``PREDICATE_ANCESTORS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from basgg.synthvg.glyphs import GlyphSet
from basgg.synthvg.settings import (  # noqa: F401 (the grammar's vocabulary, kept importable here)
    PREDICATE_ANCESTORS,
    SCENE_KINDS,
    SITUATION_PREDICATES,
)

# situation -> spatial predicates it records itself, besides the spatial sampler's draws: a
# pet or bag under a table, a person under an umbrella, a bystander near a mount, seat or bed,
# a dove above a bird's perch
SITUATION_SPATIAL: dict[str, tuple[str, ...]] = {
    "pet": ("under",),
    "tableware": ("under",),
    "holder": ("under",),
    "rider": ("near",),
    "seated": ("near",),
    "lying": ("near",),
    "perched": ("above",),
}

GROUND_NAMES = frozenset({"street", "sidewalk", "beach", "snow", "tile"})
FLIP_FORBIDDEN = frozenset({"sign", "clock", "screen", "laptop", "phone", "book"})
RECOLORABLE = frozenset(
    "shirt jacket hat cap helmet bag umbrella car bus truck motorcycle bike cup bowl box vase "
    "book shoe boot kite chair bed".split()
)
REFERENCE_HEIGHT = 240.0  # object sizes in the situations are pixels at this image height


def weighted_choice(
    rng: np.random.Generator, options: Sequence, weights: Sequence[float] | None = None
):
    """One element of ``options``, uniformly or with (unnormalised) ``weights``."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    p = np.asarray(weights, dtype=np.float64)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


@dataclass
class PlannedObject:
    """One object of a planned scene: what to draw, where, and in which order.

    Attributes:
        name: object class (a VG150 name).
        box: (x1, y1, x2, y2) rectangle the sprite is drawn into (a part: its sub-box).
        depth: drawing order, ascending (larger is nearer the camera).
        group: objects of one situation share a group; no spatial relations inside it.
        glyph: glyph stem, or ``None`` for a part or a procedurally drawn object (ground
            band, table, shelf, bench, fence, pole: drawn by its ``name``).
        flip: mirror the glyph horizontally.
        rotation: counter-clockwise rotation in degrees (0, 90 or 270).
        crop_bottom: keep this top fraction of the glyph (seated and riding people).
        recolor: allow a hue change (clothes, vehicles, tableware).
        parent: index of the object whose visible pixels inside ``box`` form this part.
        tether: a point a string is drawn to from the sprite (a held kite).
        primary: whether the object may take part in spatial relations.
    """

    name: str
    box: tuple[float, float, float, float]
    depth: float
    group: int
    glyph: str | None = None
    flip: bool = False
    rotation: int = 0
    crop_bottom: float = 1.0
    recolor: bool = False
    parent: int | None = None
    tether: tuple[float, float] | None = None
    primary: bool = True


@dataclass(frozen=True)
class TrueRelation:
    """A relation that holds in the scene, with its most specific predicate."""

    subject: int
    object: int
    predicate: str
    situation: str


@dataclass(frozen=True)
class Ground:
    """A horizontal band of ground; ``index`` is its object, ``None`` when not annotated."""

    name: str
    top: float
    bottom: float
    index: int | None


@dataclass
class ScenePlan:
    """A planned scene: background, objects in index order and true relations."""

    kind: str
    width: int
    height: int
    horizon: float
    grounds: list[Ground]
    objects: list[PlannedObject]
    relations: list[TrueRelation]


@dataclass
class Person:
    """A person awaiting accessories: its object index and pose (standing/walking/...)."""

    index: int
    pose: str


@dataclass
class SceneBuilder:
    """Mutable state while a scene is planned; situations call its helpers."""

    rng: np.random.Generator
    glyphs: GlyphSet
    width: int
    height: int
    kind: str
    horizon: float = 0.0
    objects: list[PlannedObject] = field(default_factory=list)
    relations: list[TrueRelation] = field(default_factory=list)
    grounds: list[Ground] = field(default_factory=list)
    footprints: list[tuple[float, float, float]] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    part_holders: list[int] = field(default_factory=list)
    group: int = 0

    @property
    def unit(self) -> float:
        """Pixels per reference pixel (sizes are given for a 240-pixel-high image)."""
        return self.height / REFERENCE_HEIGHT

    def uniform(self, low: float, high: float) -> float:
        """A uniform random number in ``[low, high)``."""
        return float(self.rng.uniform(low, high))

    def chance(self, probability: float) -> bool:
        """True with ``probability``."""
        return bool(self.rng.random() < probability)

    def choose(self, options: Sequence, weights: Sequence[float] | None = None):
        """One element of ``options`` (optionally weighted)."""
        return weighted_choice(self.rng, options, weights)

    def stem(self, class_name: str, prefix: str = "") -> str:
        """A random glyph of ``class_name`` whose stem starts with ``prefix``."""
        stems = [s for s in self.glyphs.stems(class_name) if s.startswith(prefix)]
        return self.choose(stems)

    def new_group(self) -> int:
        """A fresh group id for the objects of one situation."""
        self.group += 1
        return self.group

    def scale_at(self, foot_y: float) -> float:
        """Perspective size factor of an object standing at ``foot_y`` (0.7 far .. 1 near)."""
        t = (foot_y - self.horizon) / max(self.height - self.horizon, 1.0)
        return (0.7 + 0.3 * float(np.clip(t, 0.0, 1.0))) * self.unit

    def ground(self, name: str) -> Ground | None:
        """The ground band called ``name``, if the scene has one."""
        return next((g for g in self.grounds if g.name == name), None)

    def foot_in(self, ground: Ground, low: float = 0.15, high: float = 1.0) -> float:
        """A foot position inside ``ground``, between fractions ``low`` and ``high`` of it."""
        return ground.top + self.uniform(low, high) * (ground.bottom - ground.top)

    def free_center_x(self, width: float, foot_y: float, tries: int = 8) -> float:
        """The centre, among ``tries`` random ones, least covered by earlier footprints."""
        low, high = width / 2, max(self.width - width / 2, width / 2 + 1)
        best, best_cost = low, np.inf
        for _ in range(tries):
            x = self.uniform(low, high)
            cost = 0.0
            for x1, x2, y in self.footprints:
                overlap = max(0.0, min(x + width / 2, x2) - max(x - width / 2, x1))
                cost += overlap * max(0.0, 1.0 - abs(y - foot_y) / (0.25 * self.height))
            if cost < best_cost:
                best, best_cost = x, cost
        return best

    def reserve(self, x1: float, x2: float, foot_y: float) -> None:
        """Mark ``[x1, x2]`` at depth ``foot_y`` as taken (see :meth:`free_center_x`)."""
        self.footprints.append((x1, x2, foot_y))

    def add(self, planned: PlannedObject) -> int:
        """Append an object; return its index."""
        self.objects.append(planned)
        return len(self.objects) - 1

    def add_glyph(
        self,
        name: str,
        stem: str,
        *,
        height: float,
        center_x: float,
        bottom: float,
        depth: float,
        group: int,
        flip: bool | None = None,
        crop_bottom: float = 1.0,
        rotation: int = 0,
        primary: bool = True,
    ) -> int:
        """Place glyph ``stem`` with its (cropped, rotated) height and bottom-centre point."""
        aspect = self.glyphs.aspect(stem) / crop_bottom
        if rotation in (90, 270):
            aspect = 1.0 / aspect
        width = height * aspect
        if flip is None:
            flip = name not in FLIP_FORBIDDEN and self.chance(0.5)
        box = (center_x - width / 2, bottom - height, center_x + width / 2, bottom)
        return self.add(
            PlannedObject(
                name=name,
                box=box,
                depth=depth,
                group=group,
                glyph=stem,
                flip=flip,
                rotation=rotation,
                crop_bottom=crop_bottom,
                recolor=name in RECOLORABLE,
                primary=primary,
            )
        )

    def add_surface(
        self, name: str, box: tuple[float, float, float, float], depth: float, group: int
    ) -> int:
        """A procedurally drawn object (ground band, table, shelf, bench, fence, pole)."""
        primary = name not in GROUND_NAMES
        return self.add(
            PlannedObject(name=name, box=box, depth=depth, group=group, primary=primary)
        )

    def point(self, index: int, fx: float, fy: float) -> tuple[float, float]:
        """Absolute point of glyph fractions ``(fx, fy)`` (of the uncropped, unflipped glyph)."""
        planned = self.objects[index]
        x1, y1, x2, y2 = planned.box
        fx = 1.0 - fx if planned.flip else fx
        return x1 + fx * (x2 - x1), y1 + fy / planned.crop_bottom * (y2 - y1)

    def sub_box(
        self, index: int, fractions: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        """Absolute box of a fractional sub-box of an (unrotated) glyph."""
        ax, ay = self.point(index, fractions[0], fractions[1])
        bx, by = self.point(index, fractions[2], fractions[3])
        return min(ax, bx), ay, max(ax, bx), by

    def relate(self, subject: int, object_: int, predicate: str, situation: str) -> None:
        """Record a true relation with its specific predicate."""
        if predicate not in SITUATION_PREDICATES[situation]:
            raise ValueError(f"situation {situation!r} cannot produce {predicate!r}")
        self.relations.append(TrueRelation(subject, object_, predicate, situation))

    def related(self, a: int, b: int) -> bool:
        """Whether objects ``a`` and ``b`` already share a true relation (either way)."""
        return any({r.subject, r.object} == {a, b} for r in self.relations)

    def plan(self) -> ScenePlan:
        """The finished plan."""
        return ScenePlan(
            kind=self.kind,
            width=self.width,
            height=self.height,
            horizon=self.horizon,
            grounds=list(self.grounds),
            objects=list(self.objects),
            relations=list(self.relations),
        )


def label_distribution(
    probabilities: Mapping[str, float], specific: str, general_bias: float
) -> tuple[list[str], np.ndarray]:
    """Labels and probabilities for one specific predicate, general labels scaled by the bias."""
    labels = sorted(probabilities)
    weights = np.array(
        [probabilities[label] * (1.0 if label == specific else general_bias) for label in labels]
    )
    if weights.sum() <= 0:
        return [specific], np.ones(1)
    return labels, weights / weights.sum()


def annotate(
    relations: Sequence[TrueRelation],
    rng: np.random.Generator,
    *,
    annotation_rate: float,
    general_bias: float,
    label_distributions: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> list[tuple[int, str]]:
    """Play the annotator: the (relation index, label) of every annotated true relation.

    Args:
        relations: the scene's true relations.
        rng: random generator (one draw per relation, then one per annotated relation).
        annotation_rate: probability that a true relation is annotated at all.
        general_bias: factor on the probability of every general (ancestor) label.
        label_distributions: situation -> specific predicate -> {label: probability}.
    """
    annotated = []
    for index, relation in enumerate(relations):
        if rng.random() >= annotation_rate:
            continue
        table = label_distributions[relation.situation][relation.predicate]
        labels, p = label_distribution(table, relation.predicate, general_bias)
        annotated.append((index, labels[int(rng.choice(len(labels), p=p))]))
    return annotated
