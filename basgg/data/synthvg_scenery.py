"""SynthVG scenery: ground bands, furniture with things on it, poles, buildings, fillers.

:func:`lay_ground` sets the horizon and the ground bands of a scene kind (annotated bands such
as street, sidewalk, beach, snow and tile become objects). The anchor situations here place
things rather than people: ``tableware`` (items on a table or shelf), ``mounted`` (a sign,
clock or traffic light on a pole or a building), ``building`` (a house or building whose
parts are marked later) and ``scenery`` (trees, flying birds, planes and kites, flowers,
animals, boats, a pet under a table: partners for spatial relations).
:func:`add_spatial_relations` then draws spatial relations (above, under, behind, in front
of, near) that the finished layout makes true. Sizes are pixels at a 240-pixel image height,
scaled by perspective.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from basgg.data.synthvg_grammar import Ground, PlannedObject, SceneBuilder

WALKABLE = ("sidewalk", "street", "beach", "snow", "tile")
TABLE_ITEMS = {
    "cup": (18, 22),
    "plate": (14, 18),
    "bowl": (16, 20),
    "bottle": (26, 32),
    "glass": (22, 28),
    "pizza": (18, 22),
    "banana": (18, 22),
    "orange": (16, 19),
    "vase": (28, 36),
    "book": (22, 28),
    "laptop": (24, 30),
    "box": (22, 28),
    "basket": (24, 30),
    "plant": (28, 36),
    "screen": (36, 44),
    "clock": (24, 30),
}
OUTDOOR_ITEMS = ("cup", "plate", "bowl", "bottle", "glass", "pizza", "banana", "orange", "basket")
# objects off the ground: the only subjects of "above" (and objects of "under")
ELEVATED = frozenset({"bird", "airplane", "kite", "sign", "clock", "light", "window", "shelf"})
SHELF_ITEMS = ("book", "vase", "plant", "clock", "box", "bottle", "cup", "basket")


def size(scene: SceneBuilder, low: float, high: float, foot: float | None = None) -> float:
    """A random size in ``[low, high]`` reference pixels, with perspective at ``foot``."""
    scale = scene.scale_at(foot) if foot is not None else scene.unit
    return scene.uniform(low, high) * scale


def lay_ground(scene: SceneBuilder) -> None:
    """Horizon, ground bands (annotated ones become objects) and the fixed backdrop."""
    height, width, kind = scene.height, scene.width, scene.kind
    low, high = {"snow": (0.35, 0.5), "indoor": (0.45, 0.6)}.get(kind, (0.3, 0.44))
    horizon = scene.horizon = height * scene.uniform(low, high)
    span = height - horizon

    def band(name: str, top: float, bottom: float, annotated: bool = True) -> None:
        index = None
        if annotated:
            index = scene.add_surface(
                name, (0.0, top, float(width), bottom), -1000 + top, scene.new_group()
            )
        scene.grounds.append(Ground(name, top, bottom, index))

    if kind == "street":
        split = horizon + span * scene.uniform(0.28, 0.4)
        band("sidewalk", horizon, split)
        band("street", split, height)
    elif kind == "park":
        band("grass", horizon, height, annotated=False)
        if scene.chance(0.55):
            top = horizon + span * scene.uniform(0.3, 0.55)
            band("sidewalk", top, min(height, top + span * scene.uniform(0.18, 0.28)))
        if scene.chance(0.35):
            fence = size(scene, 26, 40)
            scene.add_surface(
                "fence",
                (0.0, horizon - 0.8 * fence, float(width), horizon + 0.2 * fence),
                horizon,
                scene.new_group(),
            )
    elif kind == "beach":
        split = horizon + span * scene.uniform(0.2, 0.35)
        band("sea", horizon, split, annotated=False)
        band("beach", split, height)
    elif kind == "snow":
        band("snow", horizon, height)
        if scene.chance(0.6):
            scene.add_glyph(
                "mountain",
                scene.stem("mountain"),
                height=size(scene, 60, 100),
                center_x=scene.uniform(0, width),
                bottom=horizon + 4 * scene.unit,
                depth=horizon - 1,
                group=scene.new_group(),
            )
    else:
        band("tile", horizon, height)
        if scene.chance(0.4):
            side = size(scene, 45, 65)
            scene.add_glyph(
                "window",
                scene.stem("window"),
                height=side,
                center_x=scene.uniform(side, width - side),
                bottom=horizon * scene.uniform(0.5, 0.85),
                depth=-500,
                group=scene.new_group(),
            )


def walkable_grounds(scene: SceneBuilder) -> list[Ground]:
    """Annotated ground bands people can stand and walk on."""
    return [g for g in scene.grounds if g.name in WALKABLE and g.index is not None]


def floor_y(scene: SceneBuilder) -> float:
    """A foot position anywhere on the ground."""
    return scene.horizon + scene.uniform(0.2, 1.0) * (scene.height - scene.horizon)


def on_ground(scene: SceneBuilder, width: float, foot: float) -> float:
    """Reserve a free horizontal slot of ``width`` at ``foot``; return its centre."""
    center = scene.free_center_x(width, foot)
    scene.reserve(center - width / 2, center + width / 2, foot)
    return center


def bench_box(scene: SceneBuilder, foot: float) -> tuple[float, float, float, float]:
    """Box of a bench standing at ``foot``, in a free slot."""
    height = size(scene, 34, 42, foot)
    width = height * scene.uniform(2.0, 2.6)
    center = on_ground(scene, width, foot)
    return center - width / 2, foot - height, center + width / 2, foot


def tableware(scene: SceneBuilder) -> None:
    """One to four items standing on a table top or a wall shelf (``on``)."""
    group = scene.new_group()
    if scene.kind == "indoor" and scene.chance(0.35):
        width = size(scene, 80, 120)
        x = scene.uniform(width / 2, scene.width - width / 2)
        top = scene.horizon * scene.uniform(0.45, 0.85)
        thickness = 7 * scene.unit
        support = scene.add_surface(
            "shelf", (x - width / 2, top, x + width / 2, top + thickness), -400, group
        )
        names, depth, scale = SHELF_ITEMS, -399, scene.unit
    else:
        foot = (
            floor_y(scene)
            if scene.kind == "indoor"
            else scene.foot_in(scene.ground("sidewalk") or scene.ground("grass"), 0.3)
        )
        height = size(scene, 44, 56, foot)
        width = height * scene.uniform(1.8, 2.6)
        x = on_ground(scene, width, foot)
        top, thickness = foot - height, 0.18 * height
        support = scene.add_surface("table", (x - width / 2, top, x + width / 2, foot), foot, group)
        names = tuple(TABLE_ITEMS) if scene.kind == "indoor" else OUTDOOR_ITEMS
        depth, scale = foot + 0.5, scene.scale_at(foot)
    count = int(scene.choose((1, 2, 3, 4), (0.2, 0.35, 0.3, 0.15)))
    for k in range(count):
        name = scene.choose(names)
        low, high = TABLE_ITEMS[name]
        item_x = x - width / 2 + (k + scene.uniform(0.35, 0.65)) * width / count
        item = scene.add_glyph(
            name,
            scene.stem(name),
            height=scene.uniform(low, high) * scale,
            center_x=item_x,
            bottom=top + scene.uniform(0.3, 0.8) * thickness,
            depth=depth + k * 0.01,
            group=group,
            primary=False,
        )
        scene.relate(item, support, "on", "tableware")


def mounted(scene: SceneBuilder) -> None:
    """A sign, clock face or traffic light at the top of a pole or on a facade."""
    group = scene.new_group()
    item = scene.choose(("sign", "clock", "light"), (0.5, 0.2, 0.3))
    stem = scene.stem(item) if item != "clock" else "1f55b"
    buildings = [i for i, o in enumerate(scene.objects) if o.name in ("building", "house")]
    if buildings and scene.chance(0.35):
        support = scene.choose(buildings)
        x1, y1, x2, y2 = scene.objects[support].box
        item_height = (x2 - x1) * scene.uniform(0.15, 0.22)
        x, y = (
            scene.uniform(x1 + 0.25 * (x2 - x1), x2 - 0.25 * (x2 - x1)),
            y1 + scene.uniform(0.45, 0.7) * (y2 - y1),
        )
        depth = scene.objects[support].depth + 0.2
    else:
        foot = scene.foot_in(scene.ground("sidewalk") or scene.ground("grass"), 0.1, 0.6)
        pole_height = size(scene, 95, 130, foot)
        pole_width = 9 * scene.scale_at(foot)
        center = on_ground(scene, 4 * pole_width, foot)
        support = scene.add_surface(
            "pole",
            (center - pole_width / 2, foot - pole_height, center + pole_width / 2, foot),
            foot,
            group,
        )
        item_height = size(scene, 26, 34, foot) * (1.4 if item == "light" else 1.0)
        x, y, depth = center, foot - pole_height + 0.4 * item_height, foot + 0.2
    index = scene.add_glyph(
        item, stem, height=item_height, center_x=x, bottom=y, depth=depth, group=group
    )
    scene.relate(index, support, "mounted on", "mounted")


def building(scene: SceneBuilder) -> None:
    """A building or house at the far side of the ground; its parts are marked later."""
    name = scene.choose(("building", "house"), (0.55, 0.45)) if scene.kind == "street" else "house"
    height = size(scene, *((130, 170) if name == "building" else (85, 115)))
    bottom = scene.horizon + scene.uniform(0.02, 0.12) * (scene.height - scene.horizon)
    stem = scene.stem(name)
    center = on_ground(scene, height * scene.glyphs.aspect(stem), bottom)
    index = scene.add_glyph(
        name,
        stem,
        height=height,
        center_x=center,
        bottom=bottom,
        depth=bottom,
        group=scene.new_group(),
    )
    scene.part_holders.append(index)


def _flying(scene: SceneBuilder, name: str, low: float, high: float) -> None:
    height = size(scene, low, high)
    bottom = scene.uniform(height + 2, max(height + 3, 0.9 * scene.horizon))
    scene.add_glyph(
        name,
        scene.stem(name),
        height=height,
        bottom=bottom,
        center_x=scene.uniform(height, scene.width - height),
        depth=scene.horizon + 0.3 * (scene.height - scene.horizon),
        group=scene.new_group(),
    )


def _standing_thing(scene: SceneBuilder, name: str, low: float, high: float, foot: float) -> int:
    stem = scene.stem(name)
    height = size(scene, low, high, foot)
    center = on_ground(scene, height * scene.glyphs.aspect(stem), foot)
    return scene.add_glyph(
        name, stem, height=height, center_x=center, bottom=foot, depth=foot, group=scene.new_group()
    )


def _pet_under_table(scene: SceneBuilder) -> None:
    tables = [i for i, o in enumerate(scene.objects) if o.name == "table"]
    table = scene.objects[scene.choose(tables)]
    x1, y1, x2, y2 = table.box
    name = scene.choose(("dog", "cat"))
    stem = scene.stem(name)
    height = min(0.6 * (y2 - y1), 0.8 * (x2 - x1) / scene.glyphs.aspect(stem))
    pet = scene.add_glyph(
        name,
        stem,
        height=height,
        center_x=x1 + scene.uniform(0.3, 0.7) * (x2 - x1),
        bottom=y2 + scene.uniform(1, 6) * scene.unit,
        depth=table.depth + 0.3,
        group=table.group,
    )
    scene.relate(pet, scene.objects.index(table), "under", "spatial")


def scenery(scene: SceneBuilder) -> None:
    """Trees, flying birds, planes and kites, flowers, animals, boats: spatial partners."""
    kind = scene.kind
    options = {"animal": 1.0}
    if kind != "indoor":
        options.update(tree=2.0, bird=1.2, airplane=0.4)
    if kind in ("park", "beach"):
        options.update(kite=0.6, flower=0.6 if kind == "park" else 0.0)
    if kind == "beach":
        options["boat"] = 1.0
    if any(o.name == "table" for o in scene.objects):
        options["under table"] = 1.5
    choice = scene.choose(list(options), list(options.values()))
    if choice == "tree":
        ground = scene.ground("sidewalk") if kind == "street" else None
        foot = scene.foot_in(ground, 0.0, 0.6) if ground else floor_y(scene)
        _standing_thing(scene, "tree", 100, 145, foot)
    elif choice in ("bird", "airplane", "kite"):
        _flying(scene, choice, *{"bird": (18, 26), "airplane": (24, 34), "kite": (26, 36)}[choice])
    elif choice == "flower":
        _standing_thing(scene, "flower", 22, 30, floor_y(scene))
    elif choice == "boat":
        sea = scene.ground("sea")
        _standing_thing(scene, "boat", 30, 42, scene.foot_in(sea, 0.5, 1.0))
    elif choice == "under table":
        _pet_under_table(scene)
    else:
        names = ("dog", "cat", "sheep", "giraffe") if kind == "park" else ("dog", "cat")
        name = scene.choose(names)
        sizes = {"dog": (38, 50), "cat": (32, 42), "sheep": (42, 52), "giraffe": (110, 135)}
        _standing_thing(scene, name, *sizes[name], floor_y(scene))


def foot_y(planned: PlannedObject) -> float:
    """Where an object meets the ground (the bottom of its box)."""
    return planned.box[3]


def spatial_predicates(
    first: PlannedObject, second: PlannedObject, image_height: int
) -> tuple[str, str] | None:
    """The spatial predicates (first -> second, second -> first) the layout makes true.

    ``above`` / ``under``: an elevated object (``ELEVATED``) entirely above another with
    horizontal overlap; ``behind`` / ``in front of``: grounded objects whose boxes overlap at
    clearly different depths; ``near``: grounded objects at a similar depth, a small gap apart.
    """
    ax1, ay1, ax2, ay2 = first.box
    bx1, by1, bx2, by2 = second.box
    overlap_x = min(ax2, bx2) - max(ax1, bx1)
    min_width = min(ax2 - ax1, bx2 - bx1)
    elevated = (first.name in ELEVATED, second.name in ELEVATED)
    if overlap_x > 0.25 * min_width and elevated[0] != elevated[1]:
        if elevated[0] and ay2 <= by1:
            return "above", "under"
        if elevated[1] and by2 <= ay1:
            return "under", "above"
    if any(elevated):
        return None
    depth_gap = foot_y(first) - foot_y(second)
    overlap_y = min(ay2, by2) - max(ay1, by1)
    if overlap_x > 0.2 * min_width and overlap_y > 0 and abs(depth_gap) > 0.06 * image_height:
        return ("behind", "in front of") if depth_gap < 0 else ("in front of", "behind")
    if abs(depth_gap) < 0.08 * image_height and -overlap_x < 0.5 * min_width:
        return "near", "near"
    return None


def spatial_candidates(scene: SceneBuilder) -> list[tuple[int, int, str]]:
    """Every true (subject, object, predicate) spatial relation between unrelated objects.

    Only primary objects of different situations (groups) take part.
    """
    found = []
    primary = [i for i, o in enumerate(scene.objects) if o.primary]
    for position, a in enumerate(primary):
        for b in primary[position + 1 :]:
            first, second = scene.objects[a], scene.objects[b]
            if first.group == second.group or scene.related(a, b):
                continue
            predicates = spatial_predicates(first, second, scene.height)
            if predicates is not None:
                found += [(a, b, predicates[0]), (b, a, predicates[1])]
    return found


def add_spatial_relations(scene: SceneBuilder, mean: float, weights: Mapping[str, float]) -> None:
    """Record about ``mean`` spatial relations, drawn from the layout's candidates.

    Each unordered pair takes at most one relation; predicates are drawn with ``weights``.
    """
    candidates = [c for c in spatial_candidates(scene) if weights.get(c[2], 0.0) > 0]
    wanted = int(scene.rng.poisson(mean))
    while wanted > 0 and candidates:
        p = np.array([weights[c[2]] for c in candidates], dtype=np.float64)
        subject, object_, predicate = candidates[
            int(scene.rng.choice(len(candidates), p=p / p.sum()))
        ]
        scene.relate(subject, object_, predicate, "spatial")
        candidates = [c for c in candidates if {c[0], c[1]} != {subject, object_}]
        wanted -= 1
