"""SynthVG rendering: procedural backgrounds and surfaces, glyph compositing, boxes from alpha.

Objects are drawn in depth order into a float canvas while an ownership map records which
object each pixel shows (alpha > ``VISIBLE_ALPHA``). An object's box is the extent of the
pixels it owns in the final image (its visible extent, clipped to the image); a part's box is
the extent of its parent's visible pixels inside the part's sub-box.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from basgg.synthvg.glyphs import GlyphSet
from basgg.synthvg.grammar import PlannedObject, ScenePlan

VISIBLE_ALPHA = 0.3
MIN_BOX_SIDE = 5  # pixels
MIN_BOX_AREA = 0.001  # fraction of the image area
MIN_PART_VISIBLE = 0.35  # fraction of a part's sub-box its parent must show
Box = tuple[int, int, int, int]

WOOD = ((150, 100, 60), (120, 80, 50), (185, 140, 90), (95, 70, 55))
TILE = ((215, 205, 190), (180, 170, 160), (200, 180, 150), (170, 190, 200))
WALL = ((225, 215, 195), (200, 215, 225), (230, 205, 200), (210, 225, 200), (235, 230, 220))


def value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """(H, W) float32 smooth noise in about [-1, 1] with features ``cell`` pixels wide."""
    rows, cols = int(height / cell) + 3, int(width / cell) + 3
    grid = rng.uniform(-1.0, 1.0, size=(rows, cols)).astype(np.float32)
    big = Image.fromarray(grid).resize(
        (int(cols * cell), int(rows * cell)), Image.Resampling.BICUBIC
    )
    # skip the first cell: bicubic edges are flatter than the interior
    return np.asarray(big)[int(cell) : int(cell) + height, int(cell) : int(cell) + width]


def textured(
    rng: np.random.Generator,
    height: int,
    width: int,
    colour: tuple[float, float, float],
    amount: float,
    cells: tuple[float, ...] = (24.0, 6.0, 1.5),
) -> np.ndarray:
    """(H, W, 3) float32 colour modulated by multi-scale noise of strength ``amount``."""
    noise = np.zeros((height, width), np.float32)
    for octave, cell in enumerate(cells):
        if cell <= 2:  # pixel-scale grain: white noise is as good and much cheaper
            layer = rng.standard_normal((height, width), dtype=np.float32)
            layer *= 0.5
        else:
            layer = value_noise(rng, height, width, cell)
        # (value noise is a read-only view of a PIL image; white noise is divided in place)
        noise += np.divide(layer, octave + 1, out=layer if layer.flags.writeable else None)
    tint = np.asarray(colour, np.float32) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    noise *= amount
    # in place, same values as np.clip(tint + amount * noise[..., None], 0, 255)
    texture = np.add(tint[None, None, :], noise[..., None])  # (H, W, 3)
    return np.clip(texture, 0, 255, out=texture)


def jitter_colour(
    colour: tuple[int, int, int], rng: np.random.Generator, spread: float = 0.12
) -> tuple[float, ...]:
    """``colour`` with each channel scaled by a random factor in ``1 +- spread``."""
    return tuple(float(c) * float(rng.uniform(1 - spread, 1 + spread)) for c in colour)


def paint_background(plan: ScenePlan, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 sky or wall, and the unannotated ground bands (grass, sea).

    Annotated ground bands (street, beach, tile, ...) are drawn later as objects; the sky or
    wall fills the whole canvas first so that no pixel is left undefined.
    """
    height, width = plan.height, plan.width
    if plan.kind == "indoor":
        wall = textured(rng, height, width, jitter_colour(WALL[rng.integers(len(WALL))], rng), 6)
        if rng.random() < 0.3:  # wallpaper stripes
            period = int(rng.integers(10, 24))
            stripes = (np.arange(width) // period) % 2 == 0
            wall[:, stripes] *= 0.93
        canvas = wall
    else:
        t = np.clip(np.arange(height, dtype=np.float32) / max(plan.horizon, 1.0), 0, 1)
        top = np.array(jitter_colour((80, 140, 215), rng, 0.08), np.float32)
        low = np.array(jitter_colour((185, 210, 235), rng, 0.05), np.float32)
        canvas = np.broadcast_to(top + (low - top) * t[:, None, None], (height, width, 3)).copy()
        clouds = np.clip(value_noise(rng, height, width, 40.0) * 2.2 - 0.6, 0, 1)
        canvas += (250.0 - canvas) * clouds[..., None] * float(rng.uniform(0.3, 0.9))
    for ground in plan.grounds:
        top, bottom = int(round(ground.top)), int(round(ground.bottom))
        if ground.index is None and bottom > top:
            canvas[top:bottom] = ground_texture(ground.name, rng, bottom - top, width)
    return canvas


def ground_texture(name: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 texture of a ground band (street, sidewalk, beach, snow, tile, ...)."""
    if name == "grass":
        base = textured(rng, height, width, jitter_colour((75, 140, 60), rng), 28, (16, 3, 1))
        return base * (1 + 0.15 * value_noise(rng, height, width, 1.0)[..., None])
    if name == "sea":
        sea = textured(rng, height, width, jitter_colour((45, 110, 170), rng), 14, (30, 8, 2))
        crests = np.sin(np.arange(height)[:, None] * 1.3 + value_noise(rng, height, width, 12) * 3)
        return np.clip(sea + 35 * (crests > 0.92)[..., None], 0, 255)
    if name == "street":
        street = textured(rng, height, width, jitter_colour((88, 88, 92), rng, 0.08), 16, (8, 2, 1))
        middle, dash = int(height * rng.uniform(0.4, 0.6)), int(rng.integers(18, 30))
        paint = np.array((230, 205, 70) if rng.random() < 0.5 else (235, 235, 235), np.float32)
        dashes = (np.arange(width) // dash) % 2 == 0
        street[max(middle - 1, 0) : middle + 2, dashes] = paint
        street[:2] = 200  # kerb
        return street
    if name == "sidewalk":
        walk = textured(
            rng, height, width, jitter_colour((178, 172, 162), rng, 0.06), 12, (10, 3, 1)
        )
        step = int(rng.integers(12, 20))
        walk[::step] *= 0.8
        for row in range(0, height, step):
            shift = int(rng.integers(0, 2 * step))
            walk[row : row + step, shift :: 2 * step] *= 0.8
        return walk
    if name == "beach":
        return textured(
            rng, height, width, jitter_colour((226, 205, 160), rng, 0.05), 16, (20, 3, 1)
        )
    if name == "snow":
        return textured(
            rng, height, width, jitter_colour((238, 243, 252), rng, 0.02), 9, (30, 8, 2)
        )
    floor = textured(rng, height, width, jitter_colour(TILE[rng.integers(len(TILE))], rng), 8)
    step = int(rng.integers(16, 28))
    checker = ((np.arange(height)[:, None] // step + np.arange(width)[None, :] // step) % 2) == 0
    floor[checker] *= 0.9
    floor[::step] *= 0.75
    floor[:, ::step] *= 0.75
    return floor


def surface_sprite(name: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 4) float32 RGBA sprite of a procedurally drawn object (alpha in [0, 1])."""
    if name in ("street", "sidewalk", "beach", "snow", "tile"):
        rgb = ground_texture(name, rng, height, width)
        return np.dstack([rgb, np.ones((height, width), np.float32)])
    alpha = np.zeros((height, width), np.float32)
    metal = name == "pole" or (name == "bench" and rng.random() < 0.3)
    colour = jitter_colour((120, 125, 130) if metal else WOOD[rng.integers(len(WOOD))], rng)
    rgb = textured(rng, height, width, colour, 12, (max(width / 3, 2), 2.0))
    if name in ("table", "shelf"):
        top = max(2, int(0.18 * height)) if name == "table" else height
        alpha[:top] = 1
        rgb[max(top - 2, 1) : top] *= 0.7  # front edge
        leg = max(2, int(0.06 * width))
        for x in (int(0.05 * width), int(0.95 * width) - leg):
            alpha[top:, x : x + leg] = 1
    elif name == "bench":
        for y1, y2 in ((0.0, 0.12), (0.18, 0.3), (0.42, 0.58)):
            alpha[int(y1 * height) : max(int(y2 * height), int(y1 * height) + 1)] = 1
        leg = max(2, int(0.05 * width))
        for x in (int(0.1 * width), int(0.9 * width) - leg):
            alpha[:, x : x + leg] = 1
        rgb[int(0.42 * height) : int(0.58 * height)] *= 1.1
    elif name == "fence":
        picket, gap = max(3, int(height * 0.2)), max(2, int(height * 0.12))
        columns = (np.arange(width) % (picket + gap)) < picket
        alpha[:, columns] = 1
        for rail in (0.3, 0.7):
            alpha[int(rail * height) : int(rail * height) + max(2, height // 10)] = 1
        if rng.random() < 0.5:
            rgb[:] = (
                np.array(jitter_colour((235, 235, 230), rng, 0.03))[None, None]
                - 10 * (value_noise(rng, height, width, 4)[..., None])
            )
    else:  # pole: a shaded cylinder
        shade = 0.6 + 0.6 * np.sin(np.linspace(0.2, np.pi - 0.2, width, dtype=np.float32))
        rgb *= shade[None, :, None]
        alpha[:] = 1
    return np.dstack([np.clip(rgb, 0, 255), alpha])


def glyph_sprite(
    planned: PlannedObject, glyphs: GlyphSet, width: int, height: int, rng: np.random.Generator
) -> np.ndarray:
    """(H, W, 4) float32 RGBA sprite of a glyph: cropped, flipped, rotated, resized, jittered."""
    image = glyphs.image(planned.glyph)
    if planned.crop_bottom < 1.0:
        image = image.crop((0, 0, image.width, max(1, round(image.height * planned.crop_bottom))))
    if planned.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if planned.rotation:
        image = image.rotate(planned.rotation, expand=True)
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    if planned.recolor and rng.random() < 0.6:
        hue, saturation, value = image.convert("RGB").convert("HSV").split()
        shift = int(rng.integers(0, 256))
        hue = hue.point(lambda h: (h + shift) % 256)
        rgb = Image.merge("HSV", (hue, saturation, value)).convert("RGB")
        image = Image.merge("RGBA", (*rgb.split(), image.getchannel("A")))
    sprite = np.asarray(image, dtype=np.float32)
    gain = rng.normal(1.0, 0.07) * rng.normal(1.0, 0.03, 3)
    rgb = np.clip(sprite[..., :3] * gain.astype(np.float32), 0, 255)
    return np.dstack([rgb, sprite[..., 3] / 255.0])


def composite(
    canvas: np.ndarray, owner: np.ndarray, sprite: np.ndarray, x0: int, y0: int, index: int
) -> None:
    """Alpha-blend ``sprite`` at (x0, y0) and mark the pixels it covers as ``index``'s."""
    height, width = owner.shape
    x1, y1 = max(x0, 0), max(y0, 0)
    x2, y2 = min(x0 + sprite.shape[1], width), min(y0 + sprite.shape[0], height)
    if x2 <= x1 or y2 <= y1:
        return
    part = sprite[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]  # (h, w, 4)
    alpha = part[..., 3:4]
    region = canvas[y1:y2, x1:x2]
    region *= 1.0 - alpha
    region += part[..., :3] * alpha
    owner[y1:y2, x1:x2][part[..., 3] > VISIBLE_ALPHA] = index


def draw_string(canvas: np.ndarray, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A thin dark line (a kite string) from ``start`` to ``end``."""
    steps = int(max(abs(end[0] - start[0]), abs(end[1] - start[1]))) + 1
    xs = np.rint(np.linspace(start[0], end[0], steps)).astype(int)
    ys = np.rint(np.linspace(start[1], end[1], steps)).astype(int)
    keep = (xs >= 0) & (xs < canvas.shape[1]) & (ys >= 0) & (ys < canvas.shape[0])
    canvas[ys[keep], xs[keep]] = canvas[ys[keep], xs[keep]] * 0.3 + 40


def pixel_rect(box: tuple[float, float, float, float]) -> Box:
    """Integer drawing rectangle (x, y, width, height) of a float box."""
    x0, y0 = int(round(box[0])), int(round(box[1]))
    return x0, y0, max(1, int(round(box[2] - box[0]))), max(1, int(round(box[3] - box[1])))


def visible_box(mask: np.ndarray, x0: int, y0: int) -> Box | None:
    """Extent (x1, y1, x2, y2), x2/y2 exclusive, of a boolean ``mask`` placed at (x0, y0)."""
    columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if not len(columns):
        return None
    return (
        x0 + int(columns[0]),
        y0 + int(rows[0]),
        x0 + int(columns[-1]) + 1,
        y0 + int(rows[-1]) + 1,
    )


def object_boxes(plan: ScenePlan, owner: np.ndarray) -> list[Box | None]:
    """Visible box of every planned object, ``None`` where too little of it shows."""
    height, width = owner.shape
    min_area = MIN_BOX_AREA * height * width
    boxes: list[Box | None] = []
    for index, planned in enumerate(plan.objects):
        owner_index = index if planned.parent is None else planned.parent
        x0, y0, w, h = pixel_rect(planned.box)
        x1, y1, x2, y2 = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if x2 <= x1 or y2 <= y1:
            boxes.append(None)
            continue
        mask = owner[y1:y2, x1:x2] == owner_index
        box = visible_box(mask, x1, y1)
        if planned.parent is not None and mask.sum() < MIN_PART_VISIBLE * w * h:
            box = None
        if box is not None:
            side = min(box[2] - box[0], box[3] - box[1])
            if side < MIN_BOX_SIDE or (box[2] - box[0]) * (box[3] - box[1]) < min_area:
                box = None
        boxes.append(box)
    return boxes


def render_scene(
    plan: ScenePlan, glyphs: GlyphSet, rng: np.random.Generator
) -> tuple[Image.Image, list[Box | None]]:
    """Draw a planned scene; return the RGB image and each object's visible box (or ``None``).

    Boxes are (x1, y1, x2, y2) integer pixels with x2, y2 exclusive, inside the image.
    """
    canvas = paint_background(plan, rng)  # (H, W, 3)
    owner = np.full((plan.height, plan.width), -1, np.int32)  # (H, W) object index per pixel
    order = sorted(
        (i for i, o in enumerate(plan.objects) if o.parent is None),
        key=lambda i: (plan.objects[i].depth, i),
    )
    for index in order:
        planned = plan.objects[index]
        x0, y0, w, h = pixel_rect(planned.box)
        if planned.glyph is None:
            sprite = surface_sprite(planned.name, w, h, rng)
        else:
            sprite = glyph_sprite(planned, glyphs, w, h, rng)
        composite(canvas, owner, sprite, x0, y0, index)
    for planned in plan.objects:
        if planned.tether is not None:
            x1, y1, x2, y2 = planned.box
            draw_string(canvas, planned.tether, (x1 + 0.55 * (x2 - x1), y1 + 0.75 * (y2 - y1)))
    boxes = object_boxes(plan, owner)
    sigma = float(rng.uniform(1.0, 5.0))
    grain = rng.standard_normal((plan.height, plan.width, 1), dtype=np.float32)
    grain *= sigma
    canvas += grain
    image = Image.fromarray(np.clip(canvas, 0, 255, out=canvas).astype(np.uint8))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.BoxBlur(float(rng.uniform(0.2, 0.6))))
    return image, boxes
