"""SynthVG accessory situations: objects attached to people and vehicles already placed.

``dressed`` puts a hat at the head, a shirt over the torso, shoes on the feet (``wearing`` /
``wears``); ``holder`` puts an umbrella, phone, cup, racket, book or kite string at a hand
(``holding``); ``carrier`` hangs a bag or basket from a hand or holds a box at the waist
(``carrying``); ``parts`` marks wheels, windows, doors and roofs of vehicles and buildings
(``has`` / ``part of``). Body-part boxes are fractions of the vendored person glyphs.
"""

from __future__ import annotations

from collections.abc import Mapping

from basgg.synthvg.grammar import Person, PlannedObject, SceneBuilder

POSE_GLYPH = {
    "standing": "1f9cd",
    "walking": "1f6b6",
    "kneeling": "1f9ce",
    "upper": "1f9cd",
    "lying": "1f9cd",
}
UPPER_BODY = 0.55  # riders and seated people show the top 55% of a standing glyph
PERSON_CLASSES, PERSON_WEIGHTS = ("person", "man", "woman"), (0.4, 0.35, 0.25)
# pose -> body-part boxes (x1, y1, x2, y2) as fractions of the uncropped, unflipped glyph
POSE_PARTS: dict[str, dict[str, tuple]] = {
    "standing": {
        "head": (0.22, 0.0, 0.78, 0.2),
        "torso": (0.1, 0.19, 0.9, 0.52),
        "hands": ((0.0, 0.5, 0.2, 0.66), (0.8, 0.5, 1.0, 0.66)),
        "feet": ((0.22, 0.92, 0.49, 1.0), (0.51, 0.92, 0.78, 1.0)),
    },
    "walking": {
        "head": (0.33, 0.0, 0.62, 0.17),
        "torso": (0.3, 0.19, 0.7, 0.5),
        "hands": ((0.0, 0.44, 0.14, 0.56), (0.84, 0.5, 1.0, 0.62)),
        "feet": ((0.0, 0.9, 0.2, 1.0), (0.78, 0.84, 1.0, 0.95)),
    },
    "kneeling": {
        "head": (0.22, 0.0, 0.52, 0.27),
        "torso": (0.36, 0.26, 0.74, 0.62),
        "hands": ((0.2, 0.5, 0.36, 0.62),),
        "feet": (),
    },
    "upper": {
        "head": (0.22, 0.0, 0.78, 0.2),
        "torso": (0.1, 0.19, 0.9, 0.52),
        "hands": ((0.0, 0.4, 0.2, 0.52), (0.8, 0.4, 1.0, 0.52)),
        "feet": (),
    },
}
# glyph -> [(part class, sub-box fractions of the unflipped glyph)]
PART_BOXES: dict[str, list[tuple[str, tuple[float, float, float, float]]]] = {
    "1f697": [
        ("wheel", (0.1, 0.6, 0.35, 1.0)),
        ("wheel", (0.63, 0.6, 0.88, 1.0)),
        ("window", (0.57, 0.08, 0.78, 0.4)),
    ],
    "1f695": [("wheel", (0.1, 0.62, 0.3, 1.0)), ("wheel", (0.64, 0.62, 0.85, 1.0))],
    "1f699": [
        ("wheel", (0.1, 0.62, 0.33, 1.0)),
        ("wheel", (0.6, 0.62, 0.83, 1.0)),
        ("window", (0.37, 0.1, 0.6, 0.4)),
    ],
    "1f68c": [
        ("wheel", (0.07, 0.63, 0.33, 1.0)),
        ("wheel", (0.63, 0.63, 0.9, 1.0)),
        ("window", (0.2, 0.08, 0.43, 0.45)),
        ("window", (0.46, 0.08, 0.68, 0.45)),
        ("window", (0.71, 0.08, 0.93, 0.45)),
    ],
    "1f69a": [("wheel", (0.1, 0.6, 0.33, 1.0)), ("wheel", (0.63, 0.6, 0.88, 1.0))],
    "1f69b": [
        ("wheel", (0.06, 0.68, 0.25, 1.0)),
        ("wheel", (0.42, 0.68, 0.6, 1.0)),
        ("wheel", (0.66, 0.68, 0.84, 1.0)),
    ],
    "1f6b2": [("wheel", (0.0, 0.35, 0.39, 1.0)), ("wheel", (0.6, 0.35, 1.0, 1.0))],
    "1f3cd-fe0f": [("wheel", (0.0, 0.5, 0.31, 1.0)), ("wheel", (0.68, 0.5, 1.0, 1.0))],
    "1f3e2": [
        ("window", (x, y, x + 0.12, y + 0.1)) for x in (0.33, 0.52) for y in (0.1, 0.27, 0.44, 0.61)
    ]
    + [("door", (0.4, 0.82, 0.62, 1.0))],
    "1f3e0": [
        ("roof", (0.0, 0.0, 1.0, 0.5)),
        ("door", (0.2, 0.43, 0.42, 0.88)),
        ("window", (0.58, 0.43, 0.78, 0.63)),
    ],
    "1f3e1": [
        ("roof", (0.17, 0.0, 0.98, 0.5)),
        ("door", (0.33, 0.5, 0.58, 0.88)),
        ("window", (0.63, 0.5, 0.82, 0.7)),
    ],
}
# headwear -> (width / head width, its bottom as a fraction of the head's height)
HEADWEAR = {"hat": (1.3, 0.45), "cap": (1.1, 0.5), "helmet": (1.2, 0.62)}


def add_person(
    scene: SceneBuilder,
    pose: str,
    *,
    height: float,
    center_x: float,
    bottom: float,
    depth: float,
    group: int,
    flip: bool | None = None,
    rotation: int = 0,
) -> int:
    """A person, man or woman in ``pose``; ``height`` is the full (uncropped) body height.

    People in a pose with body parts (not ``lying``) are queued for accessories.
    """
    name = scene.choose(PERSON_CLASSES, PERSON_WEIGHTS)
    crop = UPPER_BODY if pose == "upper" else 1.0
    index = scene.add_glyph(
        name,
        scene.stem(name, POSE_GLYPH[pose]),
        height=height * crop,
        center_x=center_x,
        bottom=bottom,
        depth=depth,
        group=group,
        flip=flip,
        crop_bottom=crop,
        rotation=rotation,
    )
    if pose in POSE_PARTS:
        scene.people.append(Person(index, pose))
    return index


def body_height(scene: SceneBuilder, person: int) -> float:
    """Full height of a person's glyph (cropped people included)."""
    planned = scene.objects[person]
    return (planned.box[3] - planned.box[1]) / planned.crop_bottom


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _attach(
    scene: SceneBuilder,
    person: int,
    name: str,
    *,
    height: float,
    center_x: float,
    bottom: float,
    flip: bool | None = None,
    stem: str | None = None,
    behind: bool = False,
) -> int:
    """An accessory glyph drawn just after (or, ``behind``, just before) its person."""
    planned = scene.objects[person]
    return scene.add_glyph(
        name,
        stem or scene.stem(name),
        height=height,
        center_x=center_x,
        bottom=bottom,
        depth=planned.depth + (-0.05 if behind else 0.1),
        group=planned.group,
        flip=flip,
        primary=False,
    )


def dress(scene: SceneBuilder, person: Person) -> None:
    """Headwear, a shirt or jacket, shoes or boots: at least one garment."""
    parts, index = POSE_PARTS[person.pose], person.index
    slots = [slot for slot in ("head", "torso", "feet") if parts[slot]]
    chosen = [slot for slot in slots if scene.chance({"head": 0.6, "torso": 0.5}.get(slot, 0.4))]
    for slot in chosen or [scene.choose(slots)]:
        if slot == "head":
            name = scene.choose(("hat", "cap", "helmet"), (0.4, 0.35, 0.25))
            x1, y1, x2, y2 = scene.sub_box(index, parts["head"])
            widen, sink = HEADWEAR[name]
            stem = scene.stem(name)
            height = (x2 - x1) * widen / scene.glyphs.aspect(stem)
            garment = _attach(
                scene,
                index,
                name,
                stem=stem,
                height=height,
                center_x=(x1 + x2) / 2,
                bottom=y1 + sink * (y2 - y1),
            )
            scene.relate(index, garment, "wearing", "dressed")
        elif slot == "torso":
            name = scene.choose(
                ("shirt", "jacket"), (0.3, 0.7) if scene.kind == "snow" else (0.65, 0.35)
            )
            x1, y1, x2, y2 = scene.sub_box(index, parts["torso"])
            stem = scene.stem(name)
            height = (x2 - x1) * 1.12 / scene.glyphs.aspect(stem)
            garment = _attach(
                scene,
                index,
                name,
                stem=stem,
                height=height,
                center_x=(x1 + x2) / 2,
                bottom=y1 - 0.04 * (y2 - y1) + height,
            )
            scene.relate(index, garment, "wearing", "dressed")
        else:
            name = scene.choose(
                ("shoe", "boot"), (0.4, 0.6) if scene.kind == "snow" else (0.7, 0.3)
            )
            stem = scene.stem(name)
            feet = list(range(len(parts["feet"])))
            for foot in feet if scene.chance(0.5) else [scene.choose(feet)]:
                x1, _, x2, y2 = scene.sub_box(index, parts["feet"][foot])
                width = max((x2 - x1) * 1.3, 0.15 * body_height(scene, index))
                toe_left = (person.pose == "walking") != scene.objects[index].flip
                if person.pose == "standing":
                    toe_left = (foot == 0) != scene.objects[index].flip
                garment = _attach(
                    scene,
                    index,
                    name,
                    stem=stem,
                    center_x=(x1 + x2) / 2,
                    height=width / scene.glyphs.aspect(stem),
                    bottom=y2 + scene.unit,
                    flip=toe_left,
                )
                scene.relate(index, garment, "wears", "dressed")


def hold(scene: SceneBuilder, person: Person) -> None:
    """An item at one hand; an umbrella above the head, a kite in the sky on a string."""
    index = person.index
    hand = scene.sub_box(index, scene.choose(POSE_PARTS[person.pose]["hands"]))
    hand_x, hand_y = _centre(hand)
    body = body_height(scene, index)
    outdoor = scene.kind != "indoor"
    names = (
        ("umbrella", "phone", "cup", "racket", "kite", "book")
        if outdoor
        else ("phone", "cup", "racket", "book")
    )
    weights = (0.25, 0.2, 0.15, 0.15, 0.15, 0.1) if outdoor else (0.35, 0.3, 0.15, 0.2)
    name = scene.choose(names, weights)
    outward = hand_x < _centre(scene.objects[index].box)[0]  # a left hand holds leftwards
    if name == "kite":
        height = 32 * scene.unit * scene.uniform(0.85, 1.15)
        top_limit = scene.objects[index].box[1] - 8 * scene.unit
        bottom = scene.uniform(height + 2, max(height + 3, min(top_limit, scene.horizon)))
        center = hand_x + scene.uniform(30, 90) * scene.unit * (-1 if outward else 1)
        item = _attach(
            scene,
            index,
            name,
            height=height,
            bottom=bottom,
            center_x=float(min(max(center, height), scene.width - height)),
        )
        scene.objects[item].tether = (hand_x, hand_y)
        scene.objects[item].primary = True
    elif name == "umbrella":  # held up by the shaft, the canopy behind the head
        height = 0.75 * body
        item = _attach(
            scene,
            index,
            name,
            height=height,
            center_x=hand_x,
            bottom=hand_y + 0.2 * height,
            flip=False,
            behind=True,
        )
        if scene.chance(0.5):
            scene.relate(index, item, "under", "spatial")
    elif name == "racket":
        height = 0.42 * body
        stem = scene.stem(name)
        width = height * scene.glyphs.aspect(stem)
        item = _attach(
            scene,
            index,
            name,
            stem=stem,
            height=height,
            flip=outward,
            center_x=hand_x + (0.38 * width) * (-1 if outward else 1),
            bottom=hand_y + 0.1 * height,
        )
    else:
        height = {"phone": 0.15, "cup": 0.13, "book": 0.16}[name] * body
        item = _attach(
            scene, index, name, height=height, center_x=hand_x, bottom=hand_y + height / 2
        )
    scene.relate(index, item, "holding", "holder")


def carry(scene: SceneBuilder, person: Person) -> None:
    """A bag or basket hanging from a hand, or a box held at the waist."""
    index = person.index
    body = body_height(scene, index)
    name = scene.choose(("bag", "basket", "box"), (0.55, 0.2, 0.25))
    if name == "box":
        x1, _, x2, y2 = scene.sub_box(index, POSE_PARTS[person.pose]["torso"])
        stem = scene.stem(name)
        height = 0.9 * (x2 - x1) / scene.glyphs.aspect(stem)
        item = _attach(
            scene,
            index,
            name,
            stem=stem,
            height=height,
            center_x=(x1 + x2) / 2,
            bottom=y2 + 0.45 * height,
        )
    else:
        hand = scene.sub_box(index, scene.choose(POSE_PARTS[person.pose]["hands"]))
        height = (0.26 if name == "bag" else 0.24) * body
        item = _attach(
            scene,
            index,
            name,
            height=height,
            center_x=_centre(hand)[0],
            bottom=_centre(hand)[1] + 0.97 * height,
        )
    scene.relate(index, item, "carrying", "carrier")


def add_parts(scene: SceneBuilder, holder: int) -> None:
    """One to three parts of a vehicle or building: ``has`` or ``part of``, either way round."""
    planned = scene.objects[holder]
    options = PART_BOXES.get(planned.glyph or "", [])
    if not options:
        return
    count = int(scene.rng.integers(1, min(3, len(options)) + 1))
    for position in scene.rng.permutation(len(options))[:count]:
        name, fractions = options[int(position)]
        part = scene.add(
            PlannedObject(
                name=name,
                box=scene.sub_box(holder, fractions),
                depth=planned.depth + 0.01,
                group=planned.group,
                parent=holder,
                primary=False,
            )
        )
        if scene.chance(0.4):
            scene.relate(holder, part, "has", "parts")
        else:
            scene.relate(part, holder, "part of", "parts")


def add_accessories(scene: SceneBuilder, rates: Mapping[str, float]) -> None:
    """Accessories for every queued person and part holder, then empty the queues.

    Args:
        scene: the scene being planned.
        rates: ``dressed``, ``holder``, ``carrier``, ``parts`` -> probability per person
            (or per vehicle / building for ``parts``).
    """
    for person in scene.people:
        if scene.chance(rates.get("dressed", 0.0)):
            dress(scene, person)
        if scene.chance(rates.get("holder", 0.0)):
            hold(scene, person)
        if person.pose in ("standing", "walking") and scene.chance(rates.get("carrier", 0.0)):
            carry(scene, person)
    scene.people.clear()
    for holder in scene.part_holders:
        if scene.chance(rates.get("parts", 0.0)):
            add_parts(scene, holder)
    scene.part_holders.clear()
