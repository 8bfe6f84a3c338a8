"""Rebuild ``basgg/assets/glyphs/`` from the npm package ``@lobehub/fluent-emoji-3d`` (MIT).

Usage::

    cd /tmp && npm pack @lobehub/fluent-emoji-3d        # lobehub-fluent-emoji-3d-1.1.0.tgz
    python scripts/build_glyph_subset.py --tarball /tmp/lobehub-fluent-emoji-3d-1.1.0.tgz

Without ``--tarball`` the script runs ``npm pack`` itself in a temporary folder. Each glyph
(``package/assets/<codepoints>.webp``, 256x256 RGBA) is cropped to its visible extent
(alpha > 10), downscaled so its longer side is at most ``--max-side`` pixels and saved as an
optimised PNG. ``manifest.json`` maps every SynthVG object class to its glyph files and
source codepoints; ``LICENSE`` carries the upstream MIT notice.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from PIL import Image

PACKAGE = "@lobehub/fluent-emoji-3d"
ALPHA_THRESHOLD = 10
OUT_DIR = Path(__file__).resolve().parents[1] / "basgg" / "assets" / "glyphs"

# SynthVG object class -> glyph file stems (codepoints as the package names its files).
# Person classes list standing (1f9cd), walking (1f6b6) and kneeling (1f9ce) poses in
# three skin tones; the generator picks the pose it needs.
_TONES = ("", "-1f3fc", "-1f3fe")
_POSES = ("1f9cd", "1f6b6", "1f9ce")
CLASS_GLYPHS: dict[str, tuple[str, ...]] = {
    "person": tuple(f"{pose}{tone}" for pose in _POSES for tone in _TONES),
    "man": tuple(f"{pose}{tone}-200d-2642-fe0f" for pose in _POSES for tone in _TONES),
    "woman": tuple(f"{pose}{tone}-200d-2640-fe0f" for pose in _POSES for tone in _TONES),
    "horse": ("1f40e",),
    "elephant": ("1f418",),
    "dog": ("1f415", "1f429"),
    "cat": ("1f408", "1f408-200d-2b1b"),
    "bird": ("1f426", "1f54a-fe0f", "1f99c"),
    "sheep": ("1f411",),
    "giraffe": ("1f992",),
    "bike": ("1f6b2",),
    "motorcycle": ("1f3cd-fe0f",),
    "car": ("1f697", "1f695", "1f699"),
    "bus": ("1f68c",),
    "truck": ("1f69a", "1f69b"),
    "boat": ("26f5", "1f6a4"),
    "airplane": ("2708-fe0f", "1f6e9-fe0f"),
    "bed": ("1f6cf-fe0f",),
    "chair": ("1fa91",),
    "screen": ("1f4fa", "1f5a5-fe0f"),
    "cup": ("2615", "1f375"),
    "plate": ("1f37d-fe0f",),
    "bowl": ("1f963",),
    "bottle": ("1f37e",),
    "glass": ("1f377", "1f95b", "1f943"),
    "pizza": ("1f355",),
    "banana": ("1f34c",),
    "orange": ("1f34a",),
    "vase": ("1f3fa",),
    "book": ("1f4d5", "1f4d7", "1f4d8"),
    "laptop": ("1f4bb",),
    "box": ("1f4e6",),
    "basket": ("1f9fa",),
    "plant": ("1fab4",),
    "hat": ("1f3a9", "1f452"),
    "cap": ("1f9e2",),
    "helmet": ("26d1-fe0f",),
    "shirt": ("1f455",),
    "jacket": ("1f9e5",),
    "shoe": ("1f45e", "1f45f"),
    "boot": ("1f97e",),
    "umbrella": ("2602-fe0f",),
    "phone": ("1f4f1",),
    "racket": ("1f3f8",),
    "kite": ("1fa81",),
    "bag": ("1f45c", "1f45b", "1f392"),
    "building": ("1f3e2",),
    "house": ("1f3e0", "1f3e1"),
    "sign": ("1f6d1", "26a0-fe0f", "1f17f-fe0f", "26d4", "1f6b8"),
    "clock": ("1f55b", "1f570-fe0f"),
    "light": ("1f6a6", "1f6a5"),
    "window": ("1fa9f",),
    "tree": ("1f333", "1f332", "1f334"),
    "flower": ("1f33c", "1f337", "1f33b", "1f339"),
    "mountain": ("26f0-fe0f", "1f3d4-fe0f"),
}

LICENSE_TEXT = """\
The glyphs in this folder are a downscaled subset of Microsoft's Fluent Emoji (3D style)
as packaged by LobeHub in the npm package @lobehub/fluent-emoji-3d {version}
(https://github.com/lobehub/fluent-emoji, https://github.com/microsoft/fluentui-emoji).
Both are distributed under the MIT License:

MIT License

Copyright (c) Microsoft Corporation.
Copyright (c) 2023 LobeHub

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def pack_tarball(folder: Path) -> Path:
    """Run ``npm pack`` for the package in ``folder`` and return the tarball's path."""
    result = subprocess.run(
        ["npm", "pack", PACKAGE], cwd=folder, check=True, capture_output=True, text=True
    )
    return folder / result.stdout.strip().splitlines()[-1]


def prepare_glyph(data: bytes, max_side: int) -> Image.Image:
    """Crop a glyph to its visible extent and downscale it to ``max_side`` (never upscale)."""
    image = Image.open(io.BytesIO(data)).convert("RGBA")
    visible = image.getchannel("A").point(lambda value: 255 if value > ALPHA_THRESHOLD else 0)
    image = image.crop(visible.getbbox())
    scale = min(1.0, max_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def build(tarball: Path, out_dir: Path, max_side: int) -> dict:
    """Write the PNGs, ``manifest.json`` and ``LICENSE`` into ``out_dir``; return the manifest."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    glyphs: dict[str, dict] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        version = json.load(archive.extractfile("package/package.json"))["version"]
        for stems in CLASS_GLYPHS.values():
            for stem in stems:
                if stem in glyphs:
                    continue
                member = archive.extractfile(f"package/assets/{stem}.webp")
                image = prepare_glyph(member.read(), max_side)
                image.save(out_dir / f"{stem}.png", optimize=True)
                glyphs[stem] = {
                    "file": f"{stem}.png",
                    "codepoint": stem.replace("-fe0f", ""),
                    "size": [image.width, image.height],
                }
    manifest = {
        "source": f"npm:{PACKAGE}@{version}",
        "license": "MIT",
        "alpha_threshold": ALPHA_THRESHOLD,
        "max_side": max_side,
        "classes": {name: list(stems) for name, stems in sorted(CLASS_GLYPHS.items())},
        "glyphs": dict(sorted(glyphs.items())),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (out_dir / "LICENSE").write_text(LICENSE_TEXT.format(version=version))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="npm pack output (default: run npm pack)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    parser.add_argument("--max-side", type=int, default=128, help="longer side of each PNG")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        tarball = args.tarball or pack_tarball(Path(temporary))
        manifest = build(tarball, args.out, args.max_side)
    total = sum(path.stat().st_size for path in args.out.iterdir())
    print(f"{len(manifest['glyphs'])} glyphs, {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
