"""SynthVG scenery: ground bands, furniture with things on it, poles, buildings, fillers.

:func:`lay_ground` sets the horizon and the ground bands of a scene kind (annotated bands such
as street, sidewalk, beach, snow and tile become objects). The anchor situations here place
things rather than people: ``tableware`` (items on a table or shelf, sometimes a bag under
the table), ``mounted`` (a sign, clock or traffic light on a pole or a building),
``building`` (a house or building whose parts are marked later) and ``scenery`` (trees,
flying birds, planes and kites, flowers, animals, boats: partners for spatial relations).
Sizes are pixels at a 240-pixel image height, scaled by perspective.
"""

from __future__ import annotations

from basgg.synthvg.grammar import Ground, SceneBuilder

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
FLYING_BIRD = "1f54a-fe0f"  # the dove; the other bird glyphs stand
SHELF_ITEMS = ("book", "vase", "plant", "clock", "box", "bottle", "cup", "basket")
UNDER_TABLE = ("bag", "basket", "box")
UNDER_TABLE_RATE = 0.3


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


def add_table(scene: SceneBuilder, group: int) -> tuple[int, float, float, float, float]:
    """A table standing on the floor, sidewalk or grass, in a free slot.

    Returns:
        Its object index, centre x, width, top y and top-board thickness.
    """
    foot = (
        floor_y(scene)
        if scene.kind == "indoor"
        else scene.foot_in(scene.ground("sidewalk") or scene.ground("grass"), 0.3)
    )
    height = size(scene, 44, 56, foot)
    width = height * scene.uniform(1.8, 2.6)
    x = on_ground(scene, width, foot)
    top = foot - height
    index = scene.add_surface("table", (x - width / 2, top, x + width / 2, foot), foot, group)
    return index, x, width, top, 0.18 * height


def _under_table(scene: SceneBuilder, table: int) -> None:
    """A bag, basket or box on the ground under a table (``under``)."""
    x1, y1, x2, y2 = scene.objects[table].box
    name = scene.choose(UNDER_TABLE)
    stem = scene.stem(name)
    height = min(0.45 * (y2 - y1), 0.5 * (x2 - x1) / scene.glyphs.aspect(stem))
    item = scene.add_glyph(
        name,
        stem,
        height=height,
        center_x=x1 + scene.uniform(0.3, 0.7) * (x2 - x1),
        bottom=y2 + scene.uniform(0, 3) * scene.unit,
        depth=scene.objects[table].depth + 0.2,
        group=scene.new_group(),
    )
    scene.relate(item, table, "under", "spatial")


def tableware(scene: SceneBuilder) -> None:
    """One to four items standing on a table top or a wall shelf (``on``); sometimes a bag,
    basket or box on the ground under the table (``under``)."""
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
        support, x, width, top, thickness = add_table(scene, group)
        foot = scene.objects[support].box[3]
        names = tuple(TABLE_ITEMS) if scene.kind == "indoor" else OUTDOOR_ITEMS
        depth, scale = foot + 0.5, scene.scale_at(foot)
        if scene.chance(UNDER_TABLE_RATE):
            _under_table(scene, support)
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
        scene.stem(name) if name != "bird" else FLYING_BIRD,
        height=height,
        bottom=bottom,
        center_x=scene.uniform(height, scene.width - height),
        depth=scene.horizon + 0.3 * (scene.height - scene.horizon),
        group=scene.new_group(),
    )


def standing_thing(scene: SceneBuilder, name: str, low: float, high: float, foot: float) -> int:
    stem = scene.stem(name)
    height = size(scene, low, high, foot)
    center = on_ground(scene, height * scene.glyphs.aspect(stem), foot)
    return scene.add_glyph(
        name, stem, height=height, center_x=center, bottom=foot, depth=foot, group=scene.new_group()
    )


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
    choice = scene.choose(list(options), list(options.values()))
    if choice == "tree":
        ground = scene.ground("sidewalk") if kind == "street" else None
        foot = scene.foot_in(ground, 0.0, 0.6) if ground else floor_y(scene)
        standing_thing(scene, "tree", 100, 145, foot)
    elif choice in ("bird", "airplane", "kite"):
        _flying(scene, choice, *{"bird": (18, 26), "airplane": (24, 34), "kite": (26, 36)}[choice])
    elif choice == "flower":
        standing_thing(scene, "flower", 22, 30, floor_y(scene))
    elif choice == "boat":
        sea = scene.ground("sea")
        standing_thing(scene, "boat", 30, 42, scene.foot_in(sea, 0.5, 1.0))
    else:
        names = ("dog", "cat", "sheep", "giraffe") if kind == "park" else ("dog", "cat")
        name = scene.choose(names)
        sizes = {"dog": (38, 50), "cat": (32, 42), "sheep": (42, 52), "giraffe": (110, 135)}
        standing_thing(scene, name, *sizes[name], floor_y(scene))
