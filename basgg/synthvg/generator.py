"""SynthVG: a synthetic scene-graph dataset in VG150 format, with biased annotation.

:class:`SynthSettings` (in ``basgg.synthvg.settings``, re-exported here) holds every knob
(sizes, the situation mix, the per-situation label distributions); :func:`synthesize` makes one
image and its annotated graph from (seed, image index) alone, so :func:`generate_dataset`
gives byte-identical files for any number of worker processes.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from basgg.data.vg150_format import SPLIT_TEST, SPLIT_TRAIN, VG150Files, write_vg150
from basgg.data.vocabulary import BACKGROUND, VG150_OBJECTS, Vocabulary
from basgg.structures import SceneGraph
from basgg.synthvg.glyphs import GlyphSet, load_glyphs
from basgg.synthvg.grammar import (
    SITUATION_PREDICATES,
    SITUATION_SPATIAL,
    ScenePlan,
    annotate,
)
from basgg.synthvg.render import render_scene
from basgg.synthvg.settings import (
    ACCESSORIES,
    DEFAULT_LABEL_DISTRIBUTIONS,
    SynthSettings,
    load_settings,
    settings_dict,
)
from basgg.synthvg.situations import sample_scene

SURFACE_OBJECTS = tuple("street sidewalk beach snow tile table shelf bench fence pole".split())
PART_OBJECTS = ("wheel", "window", "door", "roof")
JPEG_OPTIONS = {"format": "JPEG", "quality": 90, "optimize": False, "progressive": False}
__all__ = [
    "ACCESSORIES",
    "DEFAULT_LABEL_DISTRIBUTIONS",
    "GenerationResult",
    "SynthSettings",
    "generate_dataset",
    "load_settings",
    "sample_annotations",
    "settings_dict",
    "synthesize",
    "synthvg_predicates",
    "synthvg_vocabulary",
]


def synthvg_predicates(settings: SynthSettings) -> list[str]:
    """Predicates the settings can produce: specific ones and labels of positive probability."""
    found = set()
    enabled = settings.enabled_situations()
    for situation in enabled:
        for specific in SITUATION_PREDICATES[situation]:
            drawn = settings.spatial_per_image > 0 and settings.spatial_weights.get(specific, 0) > 0
            recorded = any(specific in SITUATION_SPATIAL.get(name, ()) for name in enabled)
            if situation == "spatial" and not (drawn or recorded):
                continue
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
