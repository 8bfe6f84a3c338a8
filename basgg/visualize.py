"""Pictures of predicted scene graphs (matplotlib, Agg backend).

:func:`draw_scene_graph` draws one ``basgg predict`` record (the JSON of docs/predict.md):
on the left the photograph with the boxes of the objects in the shown triplets (the other
objects faint), on the right the graph of those triplets, objects on a circle in the order
of their place in the photograph, predicate-labelled arrows from subject to object.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from PIL import Image  # noqa: E402

from basgg.atomic import save_figure  # noqa: E402

FIGURE_HEIGHT = 7.5  # inches
GRAPH_WIDTH = 7.5  # inches
LIST_WIDTH = 4.2  # inches
LIST_LINES = 40  # most triplets written out in the list panel
DPI = 110
EDGE_CURVE = 0.18  # arc3 rad of the arrows: a -> b and b -> a bend to opposite sides
LABEL_PLACES = (0.5, 0.38, 0.62, 0.28, 0.72)  # where along an edge its label may sit
FAINT = "#b0b0b0"
BOX_LINE_WIDTH = 2.0  # points, whatever the image size
MAX_DRAWN_SIDE = 2048  # pixels: a larger photo is drawn downscaled (the panel is ~1500 wide)


def object_colours(record: Mapping[str, Any]) -> dict[int, tuple[float, float, float]]:
    """A colour per object of the shown triplets, in order of first appearance (tab20)."""
    palette = plt.get_cmap("tab20").colors
    order: list[int] = []
    for relation in record["relations"]:
        for index in (relation["subject"], relation["object"]):
            if index not in order:
                order.append(index)
    return {index: _strong(palette, rank) for rank, index in enumerate(order)}


def draw_scene_graph(
    image: np.ndarray, record: Mapping[str, Any], path: str | Path, *, faint_others: bool = True
) -> Path:
    """Save the picture of one prediction record as a PNG.

    Three panels: the image with boxes, the graph, and the ranked triplets with their scores.

    Args:
        image: (H, W, 3) uint8 RGB, the image the record's boxes are in.
        record: a :func:`basgg.inference.prediction_record` dict.
        path: the PNG to write.
        faint_others: also draw, faintly and unlabelled, the objects outside the triplets.
    """
    path = Path(path)
    height, width = image.shape[:2]
    image_width = float(np.clip(FIGURE_HEIGHT * width / max(height, 1), 4.0, 14.0))
    widths = [image_width, GRAPH_WIDTH, LIST_WIDTH]
    figure, (image_axis, graph_axis, list_axis) = plt.subplots(
        1, 3, figsize=(sum(widths), FIGURE_HEIGHT), dpi=DPI, gridspec_kw={"width_ratios": widths}
    )
    colours = object_colours(record)
    _draw_image(image_axis, image, record, colours, faint_others)
    nodes = _draw_nodes(graph_axis, record, colours)
    _draw_list(list_axis, record, colours)
    shown = len(record["relations"])
    figure.suptitle(
        f"{Path(str(record['image'])).name}  ({record['mode']}, {len(record['objects'])} "
        f"objects, top {shown} triplet{'s' if shown != 1 else ''})",
        fontsize=12,
    )
    figure.tight_layout()
    renderer = figure.canvas.get_renderer()
    for _, text in nodes.values():  # place the node boxes: arrows stop at their edges
        text.draw(renderer)
    _draw_edges(figure, graph_axis, record, colours, nodes)
    save_figure(figure, path, dpi=DPI)
    return path


def _strong(palette: tuple, rank: int) -> tuple[float, float, float]:
    """tab20's dark shades first (even entries), then its light ones."""
    count = len(palette)
    return palette[(2 * rank) % count + (2 * rank // count) % 2]


def _draw_image(
    axis: Axes,
    image: np.ndarray,
    record: Mapping[str, Any],
    colours: dict[int, tuple[float, float, float]],
    faint_others: bool,
) -> None:
    height, width = image.shape[:2]
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)  # boxes stay in the photo's pixels
    axis.imshow(drawable_image(image), extent=extent)
    axis.set_xlim(-0.5, width - 0.5)
    axis.set_ylim(height - 0.5, -0.5)
    axis.axis("off")
    line = BOX_LINE_WIDTH
    objects = record["objects"]
    if faint_others:
        for item in objects:
            if item["index"] not in colours:
                _box(axis, item["box"], FAINT, line * 0.6, style="--", alpha=0.7)
    placed: list[tuple[float, float]] = []
    step = 0.045 * height  # about one label height at the default figure size
    for item in objects:
        colour = colours.get(item["index"])
        if colour is None:
            continue
        _box(axis, item["box"], colour, line)
        x, y = max(item["box"][0], 0.0), item["box"][1]
        above = y > 0.05 * height  # else inside the box, below its top edge
        while any(abs(x - px) < 0.15 * width and abs(y - py) < step for px, py in placed):
            y += step  # another label is there: go down one line
        placed.append((x, y))
        axis.text(
            x, y, f"{item['index']} {item['label']}", fontsize=9, color="white",
            va="bottom" if above else "top", ha="left", clip_on=True,
            bbox={"facecolor": colour, "edgecolor": "none", "alpha": 0.85, "pad": 1.5},
        )  # fmt: skip


def drawable_image(image: np.ndarray, max_side: int = MAX_DRAWN_SIDE) -> np.ndarray:
    """``image`` (H, W, 3) uint8, downscaled so that its longer side is at most ``max_side``.

    A big photo is first subsampled by an integer step (a view: no full-size copy), then
    resized with Pillow; drawing memory is bounded whatever the photo's size.
    """
    height, width = image.shape[:2]
    longer = max(height, width)
    if longer <= max_side:
        return image
    step = max(1, longer // (2 * max_side))
    reduced = np.ascontiguousarray(image[::step, ::step])  # (H / step, W / step, 3)
    scale = max_side / longer
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(reduced).resize(size, Image.Resampling.BILINEAR))


def _box(
    axis: Axes, box: list[float], colour: Any, line: float, style: str = "-", alpha: float = 1.0
) -> None:
    x1, y1, x2, y2 = box
    axis.add_patch(
        Rectangle(
            (x1, y1),
            x2 - x1,
            y2 - y1,
            fill=False,
            edgecolor=colour,
            linewidth=line,
            linestyle=style,
            alpha=alpha,
        )  # fmt: skip
    )


def _node_positions(record: Mapping[str, Any], nodes: list[int]) -> dict[int, np.ndarray]:
    """Nodes on the unit circle, ordered by the angle of their box centre around the
    centroid of the shown boxes (image top = circle top), so the graph keeps the layout."""
    boxes = {item["index"]: item["box"] for item in record["objects"]}
    centres = np.array(
        [[(boxes[i][0] + boxes[i][2]) / 2, (boxes[i][1] + boxes[i][3]) / 2] for i in nodes]
    )  # (K, 2)
    offsets = centres - centres.mean(axis=0)
    angles = np.arctan2(-offsets[:, 1], offsets[:, 0])  # image y points down
    order = np.argsort(-angles, kind="stable")  # clockwise
    first = float(angles[order[0]]) if len(nodes) > 1 else math.pi / 2
    positions = {}
    for slot, node in enumerate(order):
        angle = first - 2 * math.pi * slot / len(nodes)  # evenly spaced, same rotation
        positions[nodes[node]] = np.array([math.cos(angle), math.sin(angle)])
    return positions


def _draw_nodes(
    axis: Axes, record: Mapping[str, Any], colours: dict[int, tuple[float, float, float]]
) -> dict[int, tuple[np.ndarray, Text]]:
    """The object nodes of the graph panel: position and text of each."""
    axis.set_xlim(-1.4, 1.4)
    axis.set_ylim(-1.3, 1.3)
    axis.set_aspect("equal")
    axis.axis("off")
    if not record["relations"]:
        axis.text(0, 0, "no triplet to show", ha="center", va="center", fontsize=12)
        return {}
    labels = {item["index"]: item["label"] for item in record["objects"]}
    positions = _node_positions(record, list(colours))
    font = 10 if len(colours) <= 12 else 8
    return {
        node: (
            positions[node],
            axis.text(
                *positions[node], f"{node} {labels[node]}", ha="center", va="center",
                fontsize=font, color="white", zorder=3,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": colour, "edgecolor": "none"},
            ),
        )
        for node, colour in colours.items()
    }  # fmt: skip


def _draw_edges(
    figure: plt.Figure,
    axis: Axes,
    record: Mapping[str, Any],
    colours: dict[int, tuple[float, float, float]],
    nodes: dict[int, tuple[np.ndarray, Text]],
) -> None:
    """Arrows subject -> object, each labelled with its rank and predicate where the label
    overlaps no node and no earlier label."""
    relations = record["relations"]
    if not relations:
        return
    renderer = figure.canvas.get_renderer()
    taken = [text.get_window_extent(renderer).expanded(1.05, 1.1) for _, text in nodes.values()]
    best = max(relation["score"] for relation in relations) or 1.0
    for rank, relation in enumerate(relations, start=1):
        (start, subject_text), (end, object_text) = (
            nodes[relation["subject"]],
            nodes[relation["object"]],
        )
        colour = colours[relation["subject"]]
        axis.add_patch(
            FancyArrowPatch(
                start, end, arrowstyle="-|>", mutation_scale=14,
                connectionstyle=f"arc3,rad={EDGE_CURVE}", color=colour,
                linewidth=0.8 + 2.0 * relation["score"] / best, alpha=0.9, zorder=1,
                patchA=subject_text.get_bbox_patch(), patchB=object_text.get_bbox_patch(),
            )
        )  # fmt: skip
        chord = end - start
        control = (start + end) / 2 + EDGE_CURVE * np.array([chord[1], -chord[0]])
        label = axis.text(
            0, 0, f"{rank}. {relation['predicate']}", ha="center", va="center", fontsize=8,
            zorder=2, bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.9,
                            "edgecolor": colour, "linewidth": 0.8},
        )  # fmt: skip
        for place in LABEL_PLACES:  # points of the quadratic Bezier arc3 draws
            point = (1 - place) ** 2 * start + 2 * (1 - place) * place * control + place**2 * end
            label.set_position(point)
            extent = label.get_window_extent(renderer)
            if not any(extent.overlaps(other) for other in taken):
                break
        else:
            label.set_position((start + end) / 2 + 0.5 * (control - (start + end) / 2))
            extent = label.get_window_extent(renderer)
        taken.append(extent)


def _draw_list(
    axis: Axes, record: Mapping[str, Any], colours: dict[int, tuple[float, float, float]]
) -> None:
    """The ranked triplets, one per line: rank, subject, predicate, object, score."""
    axis.axis("off")
    relations = record["relations"][:LIST_LINES]
    axis.text(0, 1, "top triplets: subject \u2192 predicate \u2192 object  score", fontsize=9,
              weight="bold", va="top", transform=axis.transAxes)  # fmt: skip
    line = min(0.045, 0.95 / max(len(relations), 1))
    font = min(9.0, 9.0 * line / 0.045 + 1)
    for row, relation in enumerate(relations, start=1):
        y = 1 - 0.01 - row * line
        axis.text(
            0, y, f"{row:>2}.", fontsize=font, va="top", transform=axis.transAxes,
            color=colours[relation["subject"]], weight="bold", family="monospace",
        )  # fmt: skip
        axis.text(
            0.1, y,
            f"{relation['subject']} {relation['subject_label']} \u2192 {relation['predicate']} "
            f"\u2192 {relation['object']} {relation['object_label']}  {relation['score']:.3g}",
            fontsize=font, va="top", transform=axis.transAxes,
        )  # fmt: skip
    hidden = len(record["relations"]) - len(relations)
    if hidden > 0:
        axis.text(0.1, 0, f"... and {hidden} more (see the JSON)", fontsize=8,
                  transform=axis.transAxes)  # fmt: skip
