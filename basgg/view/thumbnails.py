"""Grid thumbnails with Pillow, made once: a thumbnail whose name matches its source is kept."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

THUMBNAIL_SIZE = (200, 150)
JPEG_QUALITY = 80


def thumbnail_name(source: Path) -> str:
    """A file name safe in any URL, that changes when the source file changes."""
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16] + ".jpg"


def make_thumbnail(source: Path, target: Path, size: tuple[int, int] = THUMBNAIL_SIZE) -> None:
    """Write a JPEG thumbnail of ``source`` (fitted into ``size``) atomically to ``target``."""
    with Image.open(source) as image:
        image.draft("RGB", (size[0] * 2, size[1] * 2))  # fast JPEG decode at reduced scale
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail(size, Image.Resampling.BILINEAR)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        image.save(temporary, format="JPEG", quality=JPEG_QUALITY)
    os.replace(temporary, target)


def make_thumbnails(
    sources: Sequence[Path | None], folder: Path, *, workers: int = 4
) -> tuple[list[str | None], int]:
    """Thumbnails of ``sources`` in ``folder``; returns their file names (None where the source
    is missing or unreadable) and how many were written (the rest existed already)."""
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str | None] = []
    todo: list[tuple[int, Path, Path]] = []
    for index, source in enumerate(sources):
        if source is None or not source.is_file():
            names.append(None)
            continue
        name = thumbnail_name(source)
        names.append(name)
        if not (folder / name).is_file():
            todo.append((index, source, folder / name))

    def work(item: tuple[int, Path, Path]) -> int | None:
        index, source, target = item
        try:
            make_thumbnail(source, target)
        except (OSError, ValueError, Image.DecompressionBombError):
            return index
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for failed in pool.map(work, todo):
            if failed is not None:
                names[failed] = None
    return names, len(todo)
