"""The vendored glyph subset (Fluent 3D emoji, MIT) that SynthVG composites into its scenes.

``basgg/assets/glyphs/`` holds one RGBA PNG per glyph, cropped to its visible extent, and a
``manifest.json`` mapping each object class to its glyph stems (the source codepoints).
``scripts/build_glyph_subset.py`` rebuilds the folder from the npm package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

GLYPH_DIR = Path(__file__).resolve().parents[1] / "assets" / "glyphs"
MANIFEST = "manifest.json"


@dataclass
class GlyphSet:
    """Glyph stems per class, their sizes, and lazily loaded RGBA pixels.

    Attributes:
        directory: the folder holding the PNGs and the manifest.
        classes: object class -> glyph stems (file names without ``.png``).
        sizes: glyph stem -> (width, height) in pixels.
    """

    directory: Path
    classes: dict[str, tuple[str, ...]]
    sizes: dict[str, tuple[int, int]]
    _images: dict[str, Image.Image] = field(default_factory=dict, repr=False)

    def stems(self, class_name: str) -> tuple[str, ...]:
        """The glyph stems of ``class_name`` (raises ``KeyError`` naming the manifest)."""
        if class_name not in self.classes:
            raise KeyError(f"{self.directory / MANIFEST}: no glyph for class {class_name!r}")
        return self.classes[class_name]

    def aspect(self, stem: str) -> float:
        """Width over height of a glyph."""
        width, height = self.sizes[stem]
        return width / height

    def image(self, stem: str) -> Image.Image:
        """The RGBA glyph image, loaded once and cached (do not modify it in place)."""
        if stem not in self._images:
            with Image.open(self.directory / f"{stem}.png") as image:
                self._images[stem] = image.convert("RGBA")
        return self._images[stem]

    def pixels(self, stem: str) -> np.ndarray:
        """(H, W, 4) uint8 RGBA pixels of a glyph."""
        return np.asarray(self.image(stem))


def load_glyphs(directory: Path | None = None) -> GlyphSet:
    """Read the glyph manifest of ``directory`` (default: the vendored subset)."""
    directory = Path(directory) if directory is not None else GLYPH_DIR
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise FileNotFoundError(f"{path}: cannot read the glyph manifest ({error})") from error
    try:
        classes = {name: tuple(stems) for name, stems in manifest["classes"].items()}
        sizes = {stem: tuple(info["size"]) for stem, info in manifest["glyphs"].items()}
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: malformed glyph manifest (field {error})") from error
    missing = sorted({stem for stems in classes.values() for stem in stems} - set(sizes))
    if missing:
        raise ValueError(f"{path}: field 'glyphs' lacks {missing}")
    return GlyphSet(directory=directory, classes=classes, sizes=sizes)
