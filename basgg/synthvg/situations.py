"""SynthVG situations with people and vehicles, and the scene sampler.

Each anchor situation places new objects so that its specific predicate is visible: a rider
sits on its mount (hips hidden by the mount), a car stands in the street, walking and
standing glyphs (alone or two or three side by side) stand on a ground band, a seated
person's upper body rests on a chair or bench seat, a lying person is rotated onto a bed,
bench or beach. A ridden mount, a used seat or bed sometimes has a bystander standing beside
it (``near``), so that the same class pair carries a predicate only the layout tells.
:func:`sample_scene` draws situations until the object budget is met; after each one,
``add_accessories`` dresses the new people and marks parts of the new vehicles and
buildings. Glyph fractions are measured on the vendored glyphs (cropped to their visible
extent; animals, vehicles and walking or kneeling people face left).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from basgg.synthvg.accessories import add_accessories, add_person
from basgg.synthvg.animals import gaze, perched, pet
from basgg.synthvg.glyphs import GlyphSet
from basgg.synthvg.grammar import (
    SCENE_KINDS,
    SceneBuilder,
    ScenePlan,
    weighted_choice,
)
from basgg.synthvg.scenery import (
    bench_box,
    building,
    floor_y,
    lay_ground,
    mounted,
    on_ground,
    scenery,
    size,
    tableware,
    walkable_grounds,
)
from basgg.synthvg.spatial import add_spatial_relations

BYSTANDER_RATE = 0.35  # a person standing beside a ridden mount, a used seat or bed
CROWD_WEIGHTS = (0.55, 0.3, 0.15)  # one, two or three people per pedestrian / standing group
# mount glyph -> (seat x, seat y) fractions, rider height / mount height, mount hides the hips
MOUNT_SEATS = {
    "1f40e": (0.5, 0.36, 1.0, True),
    "1f418": (0.6, 0.06, 0.8, True),
    "1f6b2": (0.64, 0.17, 1.35, False),
    "1f3cd-fe0f": (0.56, 0.3, 1.3, True),
}


def rider(scene: SceneBuilder) -> None:
    """A person's upper body on a horse, elephant, bike or motorcycle (``riding``)."""
    mounts = {
        "street": ("bike", "motorcycle", "horse"),
        "park": ("horse", "elephant", "bike"),
        "beach": ("horse",),
    }[scene.kind]
    mount = scene.choose(mounts)
    ground = scene.ground("street") or scene.ground("beach") or scene.ground("grass")
    foot = scene.foot_in(ground, 0.35)
    sizes = {"horse": (90, 110), "elephant": (95, 115), "bike": (56, 66), "motorcycle": (56, 66)}
    height = size(scene, *sizes[mount], foot)
    stem = scene.stem(mount)
    width = height * scene.glyphs.aspect(stem)
    group = scene.new_group()
    mount_index = scene.add_glyph(
        mount,
        stem,
        height=height,
        center_x=on_ground(scene, width, foot),
        bottom=foot,
        depth=foot,
        group=group,
    )
    seat_x, seat_y, ratio, hides = MOUNT_SEATS[stem]
    x, y = scene.point(mount_index, seat_x, seat_y)
    body = height * ratio * scene.uniform(0.95, 1.05)
    person = add_person(
        scene,
        "upper",
        height=body,
        center_x=x,
        bottom=y + (0.1 * body if hides else 0.0),
        depth=foot - 0.5,
        group=group,
        flip=scene.objects[mount_index].flip,
    )
    scene.relate(person, mount_index, "riding", "rider")
    scene.part_holders.append(mount_index)
    if scene.chance(BYSTANDER_RATE):
        _bystander(scene, mount_index)


def _bystander(scene: SceneBuilder, target: int) -> None:
    """A person standing beside ``target`` on the same ground (``near``), not using it."""
    x1, _, x2, foot = scene.objects[target].box
    height = size(scene, 105, 130, foot)
    width = 0.33 * height
    gap = scene.uniform(0.05, 0.45) * width  # a clear "near" (see spatial_predicates)
    left, right = x1 - gap - width / 2, x2 + gap + width / 2
    fits_left, fits_right = left - width / 2 > 0, right + width / 2 < scene.width
    if not (fits_left or fits_right):
        return
    center = left if fits_left and (not fits_right or scene.chance(0.5)) else right
    foot = min(foot + scene.uniform(-3, 3) * scene.unit, scene.height - 1)
    scene.reserve(center - width / 2, center + width / 2, foot)
    person = add_person(
        scene,
        "standing",
        height=height,
        center_x=center,
        bottom=foot,
        depth=foot + 0.2,
        group=scene.new_group(),
    )
    scene.relate(person, target, "near", "spatial")
    ground = next((g for g in scene.grounds if g.top <= foot <= g.bottom), None)
    if ground is not None and ground.index is not None:
        scene.relate(person, ground.index, "standing on", "standing")


def parked(scene: SceneBuilder) -> None:
    """A car, bus, truck or motorcycle standing in the street (``parked on``)."""
    vehicle = scene.choose(("car", "bus", "truck", "motorcycle"), (0.55, 0.15, 0.2, 0.1))
    street = scene.ground("street")
    foot = scene.foot_in(street, 0.3)
    sizes = {"car": (60, 74), "bus": (84, 98), "truck": (78, 92), "motorcycle": (56, 66)}
    height = size(scene, *sizes[vehicle], foot)
    stem = scene.stem(vehicle)
    center = on_ground(scene, height * scene.glyphs.aspect(stem), foot)
    index = scene.add_glyph(
        vehicle,
        stem,
        height=height,
        center_x=center,
        bottom=foot,
        depth=foot,
        group=scene.new_group(),
    )
    scene.relate(index, street.index, "parked on", "parked")
    scene.part_holders.append(index)


def _on_foot(scene: SceneBuilder, pose: str, predicate: str, situation: str) -> None:
    """One to three walking or standing glyphs side by side, feet on a ground band."""
    ground = scene.choose(walkable_grounds(scene))
    foot = scene.foot_in(ground, 0.2)
    count = int(scene.choose((1, 2, 3), CROWD_WEIGHTS))
    stem_aspect = 0.33 if pose == "standing" else 0.58
    heights = [size(scene, 105, 130, foot) for _ in range(count)]
    gaps = [scene.uniform(0.05, 0.5) * h * stem_aspect for h in heights[1:]]
    total = sum(h * stem_aspect for h in heights) + sum(gaps)
    left = on_ground(scene, total, foot) - total / 2
    for k, height in enumerate(heights):
        width = height * stem_aspect
        own_foot = min(foot + scene.uniform(-4, 4) * scene.unit, scene.height - 1)
        person = add_person(
            scene,
            pose,
            height=height,
            center_x=left + width / 2,
            bottom=own_foot,
            depth=own_foot,
            group=scene.new_group(),
        )
        scene.relate(person, ground.index, predicate, situation)
        left += width + (gaps[k] if k < len(gaps) else 0.0)


def pedestrian(scene: SceneBuilder) -> None:
    """A walking person on a sidewalk, street, beach, snow or tiles (``walking on``)."""
    _on_foot(scene, "walking", "walking on", "pedestrian")


def standing(scene: SceneBuilder) -> None:
    """A standing person on a ground band (``standing on``)."""
    _on_foot(scene, "standing", "standing on", "standing")


def seated(scene: SceneBuilder) -> None:
    """Upper bodies resting on a chair seat (indoors) or a bench (``sitting on``)."""
    group = scene.new_group()
    if scene.kind == "indoor":
        foot = floor_y(scene)
        height = size(scene, 56, 66, foot)
        stem = scene.stem("chair")
        center = on_ground(scene, height * scene.glyphs.aspect(stem), foot)
        seat = scene.add_glyph(
            "chair", stem, height=height, center_x=center, bottom=foot, depth=foot, group=group
        )
        seats = [scene.point(seat, 0.5, 0.5)]
    else:
        ground = scene.ground("sidewalk") or scene.ground("grass")
        foot = scene.foot_in(ground, 0.3)
        box = bench_box(scene, foot)
        seat = scene.add_surface("bench", box, foot, group)
        count = 2 if scene.chance(0.3) else 1
        seat_y = box[1] + 0.5 * (box[3] - box[1])
        seats = [(box[0] + (k + 1) / (count + 1) * (box[2] - box[0]), seat_y) for k in range(count)]
    for x, y in seats:
        body = size(scene, 105, 125, foot)
        person = add_person(
            scene,
            "upper",
            height=body,
            center_x=x,
            bottom=y + 0.04 * body,
            depth=foot + 0.5,
            group=group,
        )
        scene.relate(person, seat, "sitting on", "seated")
    if scene.chance(BYSTANDER_RATE):
        _bystander(scene, seat)


def lying(scene: SceneBuilder) -> None:
    """A person rotated flat on a bed, the beach or a bench (``laying on``)."""
    group = scene.new_group()
    flip = scene.chance(0.5)
    if scene.kind == "indoor":
        foot = floor_y(scene)
        height = size(scene, 52, 62, foot)
        stem = scene.stem("bed")
        width = height * scene.glyphs.aspect(stem)
        bed = scene.add_glyph(
            "bed",
            stem,
            height=height,
            center_x=on_ground(scene, width, foot),
            bottom=foot,
            depth=foot,
            group=group,
            flip=flip,
        )
        x, top = scene.point(bed, 0.5, 0.4)
        length, support = 0.82 * width, bed
    elif scene.kind == "beach":
        support = scene.ground("beach").index
        foot = scene.foot_in(scene.ground("beach"), 0.3)
        length = size(scene, 100, 120, foot)
        x, top = on_ground(scene, length, foot), foot
    else:
        foot = scene.foot_in(scene.ground("sidewalk") or scene.ground("grass"), 0.3)
        box = bench_box(scene, foot)
        support = scene.add_surface("bench", box, foot, group)
        x, top = (box[0] + box[2]) / 2, box[1] + 0.52 * (box[3] - box[1])
        length = (box[2] - box[0]) * 0.95
    person = add_person(
        scene,
        "lying",
        height=length * 0.33,
        center_x=x,
        bottom=top + 3 * scene.unit,
        depth=foot + 0.5,
        group=group,
        flip=False,
        rotation=270 if flip else 90,
    )
    scene.relate(person, support, "laying on", "lying")
    if scene.kind != "beach" and scene.chance(BYSTANDER_RATE):
        _bystander(scene, support)


def fits(name: str, scene: SceneBuilder) -> bool:
    """Whether anchor situation ``name`` can happen in the scene planned so far."""
    kind = scene.kind
    if name in ("pedestrian", "standing"):
        return bool(walkable_grounds(scene))
    if name == "parked":
        return scene.ground("street") is not None
    if name == "building":
        count = sum(o.name in ("building", "house") for o in scene.objects)
        return kind in ("street", "park", "snow") and count < 2
    allowed = {
        "rider": ("street", "park", "beach"),
        "seated": ("street", "park", "indoor"),
        "lying": ("indoor", "beach", "park"),
        "tableware": ("indoor", "street", "park"),
        "mounted": ("street", "park"),
        "pet": ("indoor", "street", "park"),
        "perched": ("street", "park", "snow", "beach"),
    }
    return kind in allowed.get(name, SCENE_KINDS)


ANCHOR_SITUATIONS: dict[str, Callable[[SceneBuilder], None]] = {
    "pet": pet,
    "perched": perched,
    "rider": rider,
    "parked": parked,
    "pedestrian": pedestrian,
    "standing": standing,
    "seated": seated,
    "lying": lying,
    "tableware": tableware,
    "gaze": gaze,
    "mounted": mounted,
    "building": building,
    "scenery": scenery,
}


def sample_scene(
    rng: np.random.Generator,
    glyphs: GlyphSet,
    *,
    width: int,
    height: int,
    scene_weights: Mapping[str, float],
    situation_weights: Mapping[str, float],
    accessory_rates: Mapping[str, float],
    spatial_per_image: float,
    spatial_weights: Mapping[str, float],
    objects_per_image: tuple[int, int],
) -> ScenePlan:
    """Plan one scene: ground, situations until the object budget is met, spatial relations.

    Args:
        rng: random generator of this image.
        glyphs: the glyph set (only sizes and stems are used).
        width: image width in pixels.
        height: image height in pixels.
        scene_weights: scene kind (``SCENE_KINDS``) -> weight.
        situation_weights: anchor situation (``ANCHOR_SITUATIONS``) -> weight.
        accessory_rates: ``dressed``, ``holder``, ``carrier``, ``parts`` -> probability.
        spatial_per_image: mean number of spatial relations drawn from the layout.
        spatial_weights: spatial predicate -> weight.
        objects_per_image: (low, high) object budget, inclusive.
    """
    kinds = [kind for kind in SCENE_KINDS if scene_weights.get(kind, 0) > 0]
    kind = weighted_choice(rng, kinds, [scene_weights[k] for k in kinds])
    scene = SceneBuilder(rng=rng, glyphs=glyphs, width=width, height=height, kind=kind)
    lay_ground(scene)
    budget = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    for _ in range(12):
        names = [
            name
            for name in ANCHOR_SITUATIONS
            if situation_weights.get(name, 0) > 0 and fits(name, scene)
        ]
        if len(scene.objects) >= budget or not names:
            break
        name = scene.choose(names, [situation_weights[n] for n in names])
        ANCHOR_SITUATIONS[name](scene)
        add_accessories(scene, accessory_rates)
    add_spatial_relations(scene, spatial_per_image, spatial_weights)
    return scene.plan()
