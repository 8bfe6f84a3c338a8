"""Write the static results site: HTML and assets from the package, data as small JS files.

Browsers refuse ``fetch()`` of local files, so the data travels as JavaScript files that
call ``BASGG.put(key, value)``, loaded by ``<script>`` tags: ``data/summary.js`` (metrics,
vocabularies), ``data/index-NNNN.js`` (the grid, in chunks) and ``data/pages/page-NNNN.js``
(image pages, ``PAGE_SIZE`` images per file). Every file is written atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from basgg import atomic
from basgg.view.thumbnails import make_thumbnails, thumbnail_name

PAGE_SIZE = 100  # images per data/pages file
INDEX_CHUNK = 5000  # grid entries per data/index file
ASSETS = ("view.css", "common.js", "graph.js", "index.js", "image.js")
PAGES = ("index.html", "image.html")
DATA_SCRIPTS_MARK = "<!-- data scripts -->"


class SiteSource(Protocol):
    """What the site needs from its data (:mod:`basgg.view.dataset`, ``predict_folder``)."""

    top_k: int

    @property
    def num_images(self) -> int: ...

    def image_path(self, index: int) -> Path | None: ...

    def summary(self) -> dict[str, Any]: ...

    def index_row(self, index: int) -> dict[str, Any]: ...

    def record(self, index: int) -> dict[str, Any]: ...


@dataclass
class SiteReport:
    """What :func:`write_site` did."""

    index: Path
    images: int
    thumbnails_written: int
    seconds: float
    bytes: int


THUMBNAIL_FOLDER = "thumbs"  # under the site folder; made once per image file


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it over."""
    atomic.write_text(path, text)


def data_script(key: str, value: Any) -> str:
    """``BASGG.put("key", value);``: JSON (pure ASCII, so U+2028 and friends are escaped)."""
    payload = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return f"BASGG.put({json.dumps(key)},{payload});\n"


def image_url(image: Path, site: Path) -> str:
    """A URL for ``image`` relative to the site folder (absolute ``file:`` URL if none)."""
    try:
        relative = os.path.relpath(image.resolve(), site.resolve())
    except ValueError:  # another drive on Windows
        return image.resolve().as_uri()
    return quote(Path(relative).as_posix())


def write_site(
    source: SiteSource,
    out_dir: Path,
    *,
    title: str = "basgg results",
    copy_images: bool = False,
    workers: int = 4,
) -> SiteReport:
    """Write the site for ``source`` into ``out_dir``; returns where ``index.html`` is."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "data" / "pages").mkdir(parents=True, exist_ok=True)
    _copy_assets(out_dir)
    count = source.num_images
    images = [source.image_path(i) for i in range(count)]
    thumbs, written = make_thumbnails(images, out_dir / THUMBNAIL_FOLDER, workers=workers)
    sources = [_image_source(image, out_dir, copy_images) for image in images]

    summary = source.summary()
    summary.update(
        {
            "title": title,
            "num_images": count,
            "page_size": PAGE_SIZE,
            "top_k": source.top_k,
            "generated": time.strftime("%Y-%m-%d %H:%M"),
        }
    )
    chunks = max(1, -(-count // INDEX_CHUNK))
    summary["index_chunks"] = chunks
    write_text_atomic(out_dir / "data" / "summary.js", data_script("summary", summary))
    for chunk in range(chunks):
        rows = []
        for i in range(chunk * INDEX_CHUNK, min(count, (chunk + 1) * INDEX_CHUNK)):
            row = source.index_row(i)
            row["t"] = None if thumbs[i] is None else f"{THUMBNAIL_FOLDER}/{thumbs[i]}"
            rows.append(row)
        key = f"index-{chunk:04d}"
        write_text_atomic(out_dir / "data" / f"{key}.js", data_script(key, rows))
    for page in range(-(-count // PAGE_SIZE)):
        records = []
        for i in range(page * PAGE_SIZE, min(count, (page + 1) * PAGE_SIZE)):
            record = source.record(i)
            record["src"] = sources[i]
            records.append(record)
        key = f"page-{page:04d}"
        write_text_atomic(out_dir / "data" / "pages" / f"{key}.js", data_script(key, records))
    scripts = ["data/summary.js"] + [f"data/index-{c:04d}.js" for c in range(chunks)]
    _write_pages(out_dir, scripts)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return SiteReport(
        index=out_dir / "index.html",
        images=count,
        thumbnails_written=written,
        seconds=time.perf_counter() - start,
        bytes=size,
    )


def _image_source(image: Path | None, out_dir: Path, copy: bool) -> str | None:
    if image is None or not image.is_file():
        return None
    if not copy:
        return image_url(image, out_dir)
    target = out_dir / "images" / (Path(thumbnail_name(image)).stem + image.suffix.lower())
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(image, temporary)
        os.replace(temporary, target)
    return f"images/{target.name}"


def _static(name: str) -> str:
    return resources.files("basgg.view").joinpath("static", name).read_text(encoding="utf-8")


def _copy_assets(out_dir: Path) -> None:
    for name in ASSETS:
        write_text_atomic(out_dir / "assets" / name, _static(name))


def _write_pages(out_dir: Path, scripts: list[str]) -> None:
    tags = "\n".join(f'<script src="{quote(src)}"></script>' for src in scripts)
    for name in PAGES:
        html = _static(name)
        if name == "index.html":
            html = html.replace(DATA_SCRIPTS_MARK, tags)
        write_text_atomic(out_dir / name, html)
