"""SynthVG: a synthetic scene-graph dataset in VG150 format, with biased annotation.

:class:`SynthSettings` holds every knob (sizes, the situation mix, the per-situation label
distributions); :func:`synthesize` makes one image and its annotated graph from (seed, image
index) alone, so :func:`generate_dataset` gives byte-identical files for any number of
worker processes.
"""

from __future__ import annotations

import copy
import io
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from basgg.data.glyphs import GlyphSet, load_glyphs
from basgg.data.synthvg_grammar import (
    PREDICATE_ANCESTORS,
    SCENE_KINDS,
    SITUATION_PREDICATES,
    ScenePlan,
    annotate,
)
from basgg.data.synthvg_render import render_scene
from basgg.data.synthvg_situations import ANCHOR_SITUATIONS, sample_scene
from basgg.data.vg150_format import SPLIT_TEST, SPLIT_TRAIN, VG150Files, write_vg150
from basgg.data.vocabulary import BACKGROUND, VG150_OBJECTS, Vocabulary
from basgg.structures import SceneGraph

ACCESSORIES = ("dressed", "holder", "carrier", "parts")
SURFACE_OBJECTS = tuple("street sidewalk beach snow tile table shelf bench fence pole".split())
PART_OBJECTS = ("wheel", "window", "door", "roof")
JPEG_OPTIONS = {"format": "JPEG", "quality": 90, "optimize": False, "progressive": False}

DEFAULT_LABEL_DISTRIBUTIONS: dict[str, dict[str, dict[str, float]]] = {
    "rider": {"riding": {"on": 0.55, "riding": 0.35, "sitting on": 0.10}},
    "parked": {"parked on": {"on": 0.72, "parked on": 0.28}},
    "pedestrian": {"walking on": {"on": 0.70, "walking on": 0.30}},
    "standing": {"standing on": {"on": 0.60, "standing on": 0.40}},
    "seated": {"sitting on": {"on": 0.55, "sitting on": 0.45}},
    "lying": {"laying on": {"on": 0.65, "laying on": 0.35}},
    "tableware": {"on": {"on": 1.0}},
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
        spatial_per_image: mean number of spatial relations drawn from the layout.
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
    objects_per_image: tuple[int, int] = (9, 16)
    spatial_per_image: float = 3.5
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
        )  # fmt: skip
    )
    accessory_rates: dict[str, float] = field(
        default_factory=lambda: dict(dressed=0.8, holder=0.35, carrier=0.2, parts=0.85)
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
            ("situation_weights", self.situation_weights, tuple(ANCHOR_SITUATIONS)),
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


def synthvg_predicates(settings: SynthSettings) -> list[str]:
    """Predicates the settings can produce: specific ones and labels of positive probability."""
    found = set()
    for situation in settings.enabled_situations():
        for specific in SITUATION_PREDICATES[situation]:
            drawn = settings.spatial_per_image > 0 and settings.spatial_weights.get(specific, 0) > 0
            if situation == "spatial" and not drawn and specific != "under":
                continue  # "under" also comes from pets under tables, people under umbrellas
            found.add(specific)
            table = settings.label_distributions[situation][specific]
            bias = settings.general_bias
            found.update(k for k, v in table.items() if v * (1 if k == specific else bias) > 0)
    return sorted(found)


def synthvg_vocabulary(settings: SynthSettings, glyphs: GlyphSet) -> Vocabulary:
    """VG150 names SynthVG uses, alphabetical with ``__background__`` at 0."""
    objects = sorted({*glyphs.classes, *SURFACE_OBJECTS, *PART_OBJECTS})
    strangers = [name for name in objects if name not in VG150_OBJECTS]
    if strangers:
        raise ValueError(f"{glyphs.directory}: classes {strangers} are not VG150 object names")
    return Vocabulary((BACKGROUND, *objects), (BACKGROUND, *synthvg_predicates(settings)))


def image_rngs(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent layout, render and annotation generators of image ``index``."""
    children = np.random.SeedSequence([seed, index]).spawn(3)
    return tuple(np.random.default_rng(child) for child in children)


def plan_and_annotate(
    settings: SynthSettings, glyphs: GlyphSet, index: int
) -> tuple[ScenePlan, list[tuple[int, str]], np.random.Generator]:
    """The scene plan of image ``index``, its annotated (relation, label) list and render rng."""
    width, height = settings.image_size
    layout_rng, render_rng, annotation_rng = image_rngs(settings.seed, index)
    plan = sample_scene(
        layout_rng,
        glyphs,
        width=width,
        height=height,
        scene_weights=settings.scene_weights,
        situation_weights=settings.situation_weights,
        accessory_rates=settings.accessory_rates,
        spatial_per_image=settings.spatial_per_image,
        spatial_weights=settings.spatial_weights,
        objects_per_image=tuple(settings.objects_per_image),
    )
    annotated = annotate(
        plan.relations,
        annotation_rng,
        annotation_rate=settings.annotation_rate,
        general_bias=settings.general_bias,
        label_distributions=settings.label_distributions,
    )
    return plan, annotated, render_rng


def synthesize(
    settings: SynthSettings, glyphs: GlyphSet, vocabulary: Vocabulary, index: int
) -> tuple[SceneGraph, Image.Image]:
    """Image ``index`` (0-based; its ``image_id`` is ``index + 1``) and its annotated graph.

    Objects too hidden to keep a box are dropped with their relations.
    """
    plan, annotated, render_rng = plan_and_annotate(settings, glyphs, index)
    image, boxes = render_scene(plan, glyphs, render_rng)
    kept = [i for i, box in enumerate(boxes) if box is not None]
    new_index = {old: new for new, old in enumerate(kept)}
    rows = []
    for relation_index, label in annotated:
        relation = plan.relations[relation_index]
        if relation.subject in new_index and relation.object in new_index:
            rows.append(
                (
                    new_index[relation.subject],
                    new_index[relation.object],
                    vocabulary.predicate_index(label),
                    vocabulary.predicate_index(relation.predicate),
                )
            )
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 4)  # (R, 4)
    graph = SceneGraph(
        boxes=torch.tensor([boxes[i] for i in kept], dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(
            [vocabulary.object_index(plan.objects[i].name) for i in kept], dtype=torch.int64
        ),
        relation_pairs=torch.from_numpy(table[:, :2].copy()),
        predicates=torch.from_numpy(table[:, 2].copy()),
        image_size=(plan.height, plan.width),
        image_id=index + 1,
        specific_predicates=torch.from_numpy(table[:, 3].copy()),
    )
    return graph, image


def jpeg_bytes(image: Image.Image) -> bytes:
    """The image as JPEG with fixed encoder settings (no metadata)."""
    buffer = io.BytesIO()
    image.save(buffer, **JPEG_OPTIONS)
    return buffer.getvalue()


def sample_annotations(
    settings: SynthSettings, indices: Sequence[int], glyphs: GlyphSet | None = None
) -> list[list[tuple[str, str]]]:
    """(label, specific predicate) of each annotated relation of each image, without rendering.

    Fast (no pixels): for statistics of the annotation model. Rendering may later drop a
    relation whose object ends up too hidden to keep a box.
    """
    glyphs = glyphs or load_glyphs()
    found = []
    for index in indices:
        plan, annotated, _ = plan_and_annotate(settings, glyphs, int(index))
        found.append([(label, plan.relations[i].predicate) for i, label in annotated])
    return found


_WORKER_STATE: dict = {}


def _init_worker(settings: SynthSettings, image_dir: str) -> None:
    glyphs = load_glyphs()
    _WORKER_STATE.update(
        settings=settings,
        glyphs=glyphs,
        image_dir=Path(image_dir),
        vocabulary=synthvg_vocabulary(settings, glyphs),
    )


def _render_chunk(bounds: tuple[int, int]) -> list[dict[str, np.ndarray | int]]:
    """Render images ``range(*bounds)``, write their JPEGs, return their graphs as arrays."""
    state = _WORKER_STATE
    graphs = []
    for index in range(*bounds):
        graph, image = synthesize(state["settings"], state["glyphs"], state["vocabulary"], index)
        (state["image_dir"] / f"{graph.image_id}.jpg").write_bytes(jpeg_bytes(image))
        arrays = {f.name: getattr(graph, f.name) for f in fields(graph)}
        graphs.append(
            {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in arrays.items()}
        )
    return graphs


def _graph(arrays: dict) -> SceneGraph:
    values = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}
    return SceneGraph(**values)


@dataclass
class GenerationResult:
    """What :func:`generate_dataset` wrote and how long it took."""

    files: VG150Files
    vocabulary: Vocabulary
    num_images: int
    seconds: float
    workers: int


def generate_dataset(
    out_dir: Path, settings: SynthSettings, *, workers: int | None = None
) -> GenerationResult:
    """Write a SynthVG dataset in VG150 format into ``out_dir``.

    Images are rendered in chunks by ``workers`` processes (default: all cores); every image
    depends only on (seed, index), so the files are identical for any worker count.

    Args:
        out_dir: dataset folder (``VG-SGG-with-attri.h5``, dicts and image JSON, ``VG_100K``).
        settings: the dataset definition.
        workers: number of processes; 1 renders in this process.
    """
    settings.validate()
    start = time.perf_counter()
    glyphs = load_glyphs()
    vocabulary = synthvg_vocabulary(settings, glyphs)
    files = VG150Files(root=Path(out_dir))
    files.image_dir_path.mkdir(parents=True, exist_ok=True)
    total = settings.num_train + settings.num_test
    workers = max(1, int(workers or os.cpu_count() or 1))
    size = max(1, min(50, -(-total // (workers * 4))))
    chunks = [(first, min(first + size, total)) for first in range(0, total, size)]
    if workers == 1:
        _init_worker(settings, str(files.image_dir_path))
        results = [_render_chunk(chunk) for chunk in chunks]
    else:
        with multiprocessing.get_context().Pool(
            workers, initializer=_init_worker, initargs=(settings, str(files.image_dir_path))
        ) as pool:
            results = list(pool.imap(_render_chunk, chunks))
    graphs = [_graph(arrays) for chunk in results for arrays in chunk]
    splits = [SPLIT_TRAIN] * settings.num_train + [SPLIT_TEST] * settings.num_test
    write_vg150(files, graphs, splits, vocabulary)
    return GenerationResult(files, vocabulary, total, time.perf_counter() - start, workers)


def settings_dict(settings: SynthSettings) -> dict:
    """The settings as plain YAML-ready data (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
