"""SynthVG situations with people and vehicles, and the scene sampler.

Each anchor situation places new objects so that its specific predicate is visible: a rider
sits on its mount (hips hidden by the mount), a car stands in the street, a walking glyph
walks and a standing glyph stands on a ground band, a seated person's upper body rests on a
chair or bench seat, a lying person is rotated onto a bed, bench or beach, and a dog, cat or
kneeling person faces what it looks at. :func:`sample_scene` draws situations until the
object budget is met; after each one, ``add_accessories`` dresses the new people and marks
parts of the new vehicles and buildings. Glyph fractions are measured on the vendored glyphs
(cropped to their visible extent; animals, vehicles and walking or kneeling people face left).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from basgg.data.glyphs import GlyphSet
from basgg.data.synthvg_accessories import add_accessories, add_person
from basgg.data.synthvg_grammar import (
    SCENE_KINDS,
    SceneBuilder,
    ScenePlan,
    weighted_choice,
)
from basgg.data.synthvg_scenery import (
    add_spatial_relations,
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
    """A walking or standing glyph with its feet on a ground band."""
    ground = scene.choose(walkable_grounds(scene))
    foot = scene.foot_in(ground, 0.2)
    height = size(scene, 105, 130, foot)
    stem_aspect = 0.33 if pose == "standing" else 0.58
    center = on_ground(scene, height * stem_aspect, foot)
    person = add_person(
        scene,
        pose,
        height=height,
        center_x=center,
        bottom=foot,
        depth=foot,
        group=scene.new_group(),
    )
    scene.relate(person, ground.index, predicate, situation)


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
    target_stem = scene.stem(target)
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
    }
    return kind in allowed.get(name, SCENE_KINDS)


ANCHOR_SITUATIONS: dict[str, Callable[[SceneBuilder], None]] = {
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
