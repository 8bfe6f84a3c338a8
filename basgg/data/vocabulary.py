"""The VG150 vocabularies (Xu et al. 2017): 150 object classes and 50 predicates.

Indices are 1-based in alphabetical order; index 0 is ``__background__``.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKGROUND = "__background__"

# fmt: off
VG150_OBJECTS: tuple[str, ...] = (
    "airplane", "animal", "arm", "bag", "banana", "basket", "beach", "bear", "bed", "bench",
    "bike", "bird", "board", "boat", "book", "boot", "bottle", "bowl", "box", "boy", "branch",
    "building", "bus", "cabinet", "cap", "car", "cat", "chair", "child", "clock", "coat",
    "counter", "cow", "cup", "curtain", "desk", "dog", "door", "drawer", "ear", "elephant",
    "engine", "eye", "face", "fence", "finger", "flag", "flower", "food", "fork", "fruit",
    "giraffe", "girl", "glass", "glove", "guy", "hair", "hand", "handle", "hat", "head", "helmet",
    "hill", "horse", "house", "jacket", "jean", "kid", "kite", "lady", "lamp", "laptop", "leaf",
    "leg", "letter", "light", "logo", "man", "men", "motorcycle", "mountain", "mouth", "neck",
    "nose", "number", "orange", "pant", "paper", "paw", "people", "person", "phone", "pillow",
    "pizza", "plane", "plant", "plate", "player", "pole", "post", "pot", "racket", "railing",
    "rock", "roof", "room", "screen", "seat", "sheep", "shelf", "shirt", "shoe", "short",
    "sidewalk", "sign", "sink", "skateboard", "ski", "skier", "sneaker", "snow", "sock", "stand",
    "street", "surfboard", "table", "tail", "tie", "tile", "tire", "toilet", "towel", "tower",
    "track", "train", "tree", "truck", "trunk", "umbrella", "vase", "vegetable", "vehicle", "wave",
    "wheel", "window", "windshield", "wing", "wire", "woman", "zebra",
)
# fmt: on

# fmt: off
VG150_PREDICATES: tuple[str, ...] = (
    "above", "across", "against", "along", "and", "at", "attached to", "behind", "belonging to",
    "between", "carrying", "covered in", "covering", "eating", "flying in", "for", "from",
    "growing on", "hanging from", "has", "holding", "in", "in front of", "laying on", "looking at",
    "lying on", "made of", "mounted on", "near", "of", "on", "on back of", "over", "painted on",
    "parked on", "part of", "playing", "riding", "says", "sitting on", "standing on", "to",
    "under", "using", "walking in", "walking on", "watching", "wearing", "wears", "with",
)
# fmt: on

# PySGG's default head / body / tail split of the VG150 predicates (4 / 12 / 34).
VG150_HEAD_PREDICATES = ("has", "of", "on", "wearing")
# fmt: off
VG150_BODY_PREDICATES = (
    "above", "behind", "holding", "in", "in front of", "near", "riding", "sitting on",
    "standing on", "under", "wears", "with",
)
# fmt: on


@dataclass(frozen=True)
class Vocabulary:
    """Object and predicate names, index 0 being ``__background__`` in both."""

    objects: tuple[str, ...]
    predicates: tuple[str, ...]

    def __post_init__(self) -> None:
        for kind, names in (("objects", self.objects), ("predicates", self.predicates)):
            if not names or names[0] != BACKGROUND:
                raise ValueError(f"Vocabulary.{kind}[0] must be {BACKGROUND!r}")
            if len(set(names)) != len(names):
                raise ValueError(f"Vocabulary.{kind} has repeated names")

    @classmethod
    def vg150(cls) -> Vocabulary:
        return cls((BACKGROUND, *VG150_OBJECTS), (BACKGROUND, *VG150_PREDICATES))

    @property
    def num_objects(self) -> int:
        """Object classes including background (151 for VG150)."""
        return len(self.objects)

    @property
    def num_predicates(self) -> int:
        """Predicate classes including background (51 for VG150)."""
        return len(self.predicates)

    def object_index(self, name: str) -> int:
        return self.objects.index(name)

    def predicate_index(self, name: str) -> int:
        return self.predicates.index(name)


assert len(VG150_OBJECTS) == 150 and list(VG150_OBJECTS) == sorted(VG150_OBJECTS)
assert len(VG150_PREDICATES) == 50 and list(VG150_PREDICATES) == sorted(VG150_PREDICATES)
