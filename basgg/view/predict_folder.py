"""Site data from a ``basgg predict`` output folder: predictions only, no ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"  # as basgg.commands.predict writes it


class PredictFolderSource:
    """The images of a ``basgg predict`` folder (``summary.json`` and one JSON per image).

    Args:
        folder: the ``--out`` folder of ``basgg predict``.
        top_k: triplets shown per image (the JSON holds those ``predict`` kept).
    """

    def __init__(self, folder: Path, *, top_k: int = 20) -> None:
        self.folder = Path(folder)
        summary_path = self.folder / SUMMARY_FILE
        if not summary_path.is_file():
            raise FileNotFoundError(
                f"{summary_path}: not found; `basgg view FOLDER` reads a `basgg predict` output "
                "folder (for a predictions .h5 file give --data)"
            )
        summary = _read_json(summary_path)
        entries = summary.get("images")
        if not isinstance(entries, list):
            raise ValueError(f"{summary_path}: field 'images' must be a list")
        self.run_summary = summary
        self.top_k = int(top_k)
        self.records: list[dict[str, Any]] = []
        self.image_files: list[Path | None] = []
        for position, entry in enumerate(entries):
            where = f"{summary_path}: images[{position}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("json"), str):
                raise ValueError(f"{where}: field 'json' must name the image's JSON file")
            json_path = self._resolve(entry["json"], self.folder / Path(entry["json"]).name)
            record = _read_json(json_path)
            for field in ("objects", "relations", "width", "height"):
                if field not in record:
                    raise ValueError(f"{json_path}: field {field!r} is missing")
            self.records.append(record)
            image = record.get("image") or entry.get("image")
            self.image_files.append(self._resolve(image, None) if isinstance(image, str) else None)
        self.objects = ["__background__"] + sorted(
            {str(o["label"]) for r in self.records for o in r["objects"]}
        )
        self.predicates = ["__background__"] + sorted(
            {str(t["predicate"]) for r in self.records for t in r["relations"]}
        )
        self._object_index = {name: i for i, name in enumerate(self.objects)}
        self._predicate_index = {name: i for i, name in enumerate(self.predicates)}

    def _resolve(self, name: str, fallback: Path | None) -> Path | None:
        """``name`` as given (relative to the working directory), else beside the folder."""
        path = Path(name)
        for candidate in (path, self.folder / path, self.folder.parent / path, fallback):
            if candidate is not None and candidate.is_file():
                return candidate
        return fallback

    @property
    def num_images(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path | None:
        return self.image_files[index]

    def image_name(self, index: int) -> str:
        return Path(str(self.records[index].get("image", index))).name

    def summary(self) -> dict[str, Any]:
        mode = str(self.run_summary.get("mode", ""))
        return {
            "kind": "predict",
            "dataset": str(self.folder),
            "split": "",
            "mode": mode,
            "ks": [],
            "objects": self.objects,
            "predicates": self.predicates,
            "models": [{"name": str(self.run_summary.get("checkpoint", "model")), "mode": mode}],
            "predicate_split_counts": self._predicate_counts(),
            "hierarchy": None,
            "has_specific": False,
        }

    def _predicate_counts(self) -> list[int]:
        counts = [0] * len(self.predicates)
        for record in self.records:
            for triplet in record["relations"][: self.top_k]:
                counts[self._predicate_index[str(triplet["predicate"])]] += 1
        return counts

    def index_row(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        relations = record["relations"][: self.top_k]
        return {
            "i": index,
            "name": self.image_name(index),
            "n": 0,
            "z": 0,
            "h": [],
            "p": sorted({self._predicate_index[str(t["predicate"])] for t in relations}),
            "c": sorted({self._object_index[str(o["label"])] for o in record["objects"]}),
        }

    def record(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        objects = [
            [self._object_index[str(o["label"])], *(float(v) for v in o["box"]),
             float(o.get("score", 1.0))]
            for o in record["objects"]
        ]  # fmt: skip
        rows = [
            [int(t["subject"]), int(t["object"]), self._predicate_index[str(t["predicate"])],
             float(t.get("score", 0.0)), -1, -1]
            for t in record["relations"][: self.top_k]
        ]  # fmt: skip
        return {
            "i": index,
            "name": self.image_name(index),
            "w": int(record["width"]),
            "h": int(record["height"]),
            "objects": objects,
            "gt": [],
            "models": [{"objects": objects, "rows": rows}],
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read it as JSON ({error})") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return content
