"""SynthVG situations of animals: pets on or under furniture, perched birds, gazes.

``pet`` puts a cat or dog on a table, bench, bed or chair (``on``) or on the floor under a
table or bench (``under``); ``perched`` puts a standing bird on a tree crown, a roof or a
fence top (``on``) and sometimes a flying one just above the same support (``above``). The
class pair (cat, table) or (bird, tree) therefore carries different predicates in different
images, and only the boxes and pixels tell which. ``gaze`` turns a dog, cat or kneeling
person towards what it looks at or watches. Glyph fractions are measured on the vendored
glyphs (cropped to their visible extent; animals face left).
"""

from __future__ import annotations

from basgg.synthvg.accessories import add_person
from basgg.synthvg.grammar import SceneBuilder
from basgg.synthvg.scenery import (
    FLYING_BIRD,
    add_table,
    bench_box,
    floor_y,
    on_ground,
    size,
    standing_thing,
)

PET_SIZES = {"dog": (38, 50), "cat": (32, 42)}
PERCHED_BIRDS = ("1f426", "1f99c")  # standing birds; the dove (1f54a) is drawn flying
# support glyph -> (x range, y range) of a perched bird's feet, as glyph fractions
PERCHES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "1f333": ((0.25, 0.75), (0.12, 0.45)),  # deciduous crown
    "1f332": ((0.38, 0.62), (0.3, 0.6)),  # fir tiers
    "1f334": ((0.25, 0.75), (0.1, 0.25)),  # palm fronds
    "1f3e0": ((0.5, 0.54), (0.03, 0.05)),  # roof ridge
    "1f3e1": ((0.58, 0.62), (0.03, 0.05)),
    "1f3e2": ((0.15, 0.85), (0.01, 0.02)),  # flat roof
}
# support class -> seat height as a fraction of its box from the top
SEAT_FRACTION = {"table": 0.08, "bench": 0.46, "bed": 0.4, "chair": 0.5}


def _seated_supports(scene: SceneBuilder) -> set[int]:
    """Supports somebody already sits or lies on."""
    taken = ("sitting on", "laying on", "riding")
    return {r.object for r in scene.relations if r.predicate in taken}


def _new_support(scene: SceneBuilder) -> int:
    """A new table (indoors, or outdoors half the time) or bench for a pet."""
    group = scene.new_group()
    if scene.kind == "indoor" or scene.chance(0.5):
        return add_table(scene, group)[0]
    ground = scene.ground("sidewalk") or scene.ground("grass")
    foot = scene.foot_in(ground, 0.3)
    return scene.add_surface("bench", bench_box(scene, foot), foot, group)


def pet(scene: SceneBuilder) -> None:
    """A cat or dog on a table, bench, bed or chair (``on``) or under a table or bench."""
    taken = _seated_supports(scene)
    supports = [
        i
        for i, o in enumerate(scene.objects)
        if o.name in SEAT_FRACTION and i not in taken and o.rotation == 0
    ]
    support = scene.choose(supports) if supports and scene.chance(0.7) else _new_support(scene)
    base = scene.objects[support]
    x1, y1, x2, y2 = base.box
    under = base.name in ("table", "bench") and scene.chance(0.5)
    name = scene.choose(("cat", "dog"), (0.45, 0.55) if under else (0.75, 0.25))
    stem = scene.stem(name)
    aspect = scene.glyphs.aspect(stem)
    scale = scene.scale_at(y2)
    if under:
        height = min(
            0.6 * (y2 - y1), 0.8 * (x2 - x1) / aspect, scene.uniform(*PET_SIZES[name]) * scale
        )
        bottom, depth = y2 + scene.uniform(1, 6) * scene.unit, base.depth + 0.3
    else:
        height = min(scene.uniform(*PET_SIZES[name]) * scale * 0.85, 0.5 * (x2 - x1) / aspect)
        if base.glyph is None:
            seat = y1 + SEAT_FRACTION[base.name] * (y2 - y1)
        else:
            seat = scene.point(support, 0.5, SEAT_FRACTION[base.name])[1]
        bottom, depth = seat + 0.06 * height, base.depth + 0.6
    width = height * aspect
    center = scene.uniform(x1 + 0.15 * (x2 - x1) + width / 2, x2 - 0.15 * (x2 - x1) - width / 2)
    animal = scene.add_glyph(
        name,
        stem,
        height=height,
        center_x=center if x2 - x1 > 1.3 * width + 0.3 * (x2 - x1) else (x1 + x2) / 2,
        bottom=bottom,
        depth=depth,
        group=scene.new_group(),
        primary=under,  # an animal up on furniture has no foot on the ground for spatial rules
    )
    if under:
        scene.relate(animal, support, "under", "spatial")
    else:
        scene.relate(animal, support, "on", "pet")


def _perch_point(scene: SceneBuilder, support: int) -> tuple[float, float]:
    """Where a bird's feet go on ``support`` (tree crown, roof or fence top)."""
    planned = scene.objects[support]
    if planned.glyph is None:  # a fence: anywhere along its top rail
        x1, y1, x2, _ = planned.box
        return scene.uniform(x1 + 10, max(x1 + 11, x2 - 10)), y1 + 1.0
    (fx1, fx2), (fy1, fy2) = PERCHES[planned.glyph]
    return scene.point(support, scene.uniform(fx1, fx2), scene.uniform(fy1, fy2))


def perched(scene: SceneBuilder) -> None:
    """A bird on a tree, roof or fence (``on``); sometimes a dove flies just above it."""
    supports = [
        i
        for i, o in enumerate(scene.objects)
        if (o.glyph in PERCHES or o.name == "fence") and o.box[1] > 4
    ]
    if not supports or scene.chance(0.35):
        ground = scene.ground("sidewalk") if scene.kind == "street" else None
        foot = (
            scene.foot_in(ground, 0.0, 0.6)
            if ground
            else scene.horizon + scene.uniform(0.05, 0.6) * (scene.height - scene.horizon)
        )
        supports = [standing_thing(scene, "tree", 95, 130, foot)]
    support = scene.choose(supports)
    base = scene.objects[support]
    x, y = _perch_point(scene, support)
    height = size(scene, 14, 19, base.box[3])
    stem = scene.choose(PERCHED_BIRDS)
    if y - height < 2:
        return
    bird = scene.add_glyph(
        "bird",
        stem,
        height=height,
        center_x=x,
        bottom=y,
        depth=base.depth + 0.2,
        group=scene.new_group(),
    )
    scene.relate(bird, support, "on", "perched")
    top = base.box[1]
    flyer = size(scene, 15, 22, base.box[3])
    bottom = top - scene.uniform(8, 30) * scene.unit
    if scene.chance(0.45) and bottom - flyer > 2:
        x1, _, x2, _ = base.box
        dove = scene.add_glyph(
            "bird",
            FLYING_BIRD,
            height=flyer,
            center_x=scene.uniform(x1 + 0.25 * (x2 - x1), x2 - 0.25 * (x2 - x1)),
            bottom=bottom,
            depth=base.depth + 0.1,
            group=scene.new_group(),
        )
        scene.relate(dove, support, "above", "spatial")


GAZE_TARGETS = {  # target class -> (size range, specific predicate)
    "giraffe": ((105, 130), "watching"),
    "elephant": ((85, 105), "watching"),
    "sheep": ((42, 52), "watching"),
    "horse": ((85, 105), "watching"),
    "screen": ((38, 46), "watching"),
    "bird": ((18, 24), "looking at"),
    "flower": ((22, 30), "looking at"),
    "dog": ((38, 50), "looking at"),
    "cat": ((32, 42), "looking at"),
}

GAZE_TARGETS_BY_KIND = {
    "park": ("giraffe", "elephant", "sheep", "bird", "flower", "dog", "cat"),
    "indoor": ("screen", "dog", "cat"),
    "street": ("horse", "bird", "dog", "cat"),
    "beach": ("horse", "bird", "dog", "cat"),
    "snow": ("horse", "bird", "dog", "cat"),
}


def gaze(scene: SceneBuilder) -> None:
    """A dog, cat or kneeling person facing its target (``looking at`` / ``watching``)."""
    group = scene.new_group()
    foot = floor_y(scene)
    subject = scene.choose(("dog", "cat", "kneeling"), (0.35, 0.25, 0.4))
    targets = GAZE_TARGETS_BY_KIND[scene.kind]
    target = scene.choose([t for t in targets if t != subject])
    (low, high), predicate = GAZE_TARGETS[target]
    target_stem = scene.choose(PERCHED_BIRDS) if target == "bird" else scene.stem(target)
    target_height = size(scene, low, high, foot)
    target_width = target_height * scene.glyphs.aspect(target_stem)
    sizes = {"dog": (38, 50), "cat": (32, 42), "kneeling": (72, 88)}
    subject_height = size(scene, *sizes[subject], foot)
    subject_stem = scene.stem(subject) if subject != "kneeling" else None
    subject_width = subject_height * (
        0.7 if subject_stem is None else scene.glyphs.aspect(subject_stem)
    )
    gap = scene.uniform(0.1, 0.8) * subject_width
    total = subject_width + gap + target_width
    left = on_ground(scene, total, foot) - total / 2
    target_left = scene.chance(0.5)  # target on the left: the subject keeps facing left
    subject_x = left + (target_width + gap if target_left else 0) + subject_width / 2
    target_x = left + (0 if target_left else subject_width + gap) + target_width / 2
    if subject == "kneeling":
        seen = add_person(
            scene,
            "kneeling",
            height=subject_height,
            center_x=subject_x,
            bottom=foot,
            depth=foot,
            group=group,
            flip=not target_left,
        )
    else:
        seen = scene.add_glyph(
            subject,
            subject_stem,
            height=subject_height,
            center_x=subject_x,
            bottom=foot,
            depth=foot,
            group=group,
            flip=not target_left,
        )
    watched = scene.add_glyph(
        target,
        target_stem,
        height=target_height,
        center_x=target_x,
        bottom=foot + scene.uniform(-2, 2) * scene.unit,
        depth=foot - 0.1,
        group=group,
    )
    scene.relate(seen, watched, predicate, "gaze")
