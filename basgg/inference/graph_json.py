"""The two JSON formats of ``basgg predict`` (see docs/predict.md).

- The boxes file the user gives (PredCls / SGCls): per image file name, its objects::

      {"kitchen.jpg": {"objects": [{"box": [x1, y1, x2, y2], "label": "man"}, ...]}}

  read by :class:`BoxesFile` into model inputs.
- The prediction record written per image: objects and the top-k triplets, built by
  :func:`prediction_record`.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from basgg import atomic
from basgg.data.vocabulary import Vocabulary
from basgg.evaluation import ranking_scores
from basgg.structures import Mode, SceneGraph

BOX_DECIMALS = 2
SCORE_DECIMALS = 6


class BoxesFileError(ValueError):
    """A boxes file, or one image entry of it, that cannot be used."""


@dataclass(frozen=True)
class BoxesFile:
    """The user's boxes (and PredCls labels) per image, read from a JSON file.

    Attributes:
        path: the file.
        entries: its top-level mapping, image key -> ``{"objects": [...]}``.
    """

    path: Path
    entries: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> BoxesFile:
        """Read ``path``; raises :class:`BoxesFileError` naming it when it is not usable."""
        path = Path(path)
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BoxesFileError(f"{path}: boxes file not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise BoxesFileError(f"{path}: cannot read the boxes file ({error})") from None
        except json.JSONDecodeError as error:
            raise BoxesFileError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(entries, dict):
            raise BoxesFileError(
                f"{path}: the top level must map image file names to "
                '{"objects": [...]}, got a ' + type(entries).__name__
            )
        return cls(path=path, entries=entries)

    def find_key(self, keys: list[str]) -> str | None:
        """The first of ``keys`` (e.g. relative path, then file name) that has an entry."""
        return next((key for key in keys if key in self.entries), None)

    def inputs_for(
        self, keys: list[str], *, image_size: tuple[int, int], mode: Mode, vocabulary: Vocabulary
    ) -> SceneGraph:
        """The model inputs of one image: its boxes, and in PredCls its labels.

        Args:
            keys: the names the image may have in the file, tried in order.
            image_size: (height, width) of the upright image; boxes are clipped to it.
            mode: PredCls needs labels; SGCls ignores them (labels are filled with 1).
            vocabulary: the checkpoint's object names.

        Raises:
            BoxesFileError: naming the file, the image key, the object index and the field.
        """
        key = self.find_key(keys)
        if key is None:
            raise BoxesFileError(f"{self.path}: no entry for image {keys[-1]!r}")
        entry = self.entries[key]
        where = f"{self.path}: image {key!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("objects"), list):
            raise BoxesFileError(f'{where}: field "objects": expected a list of objects')
        boxes, labels = [], []
        for index, item in enumerate(entry["objects"]):
            place = f"{where}, object {index}"
            if not isinstance(item, dict):
                raise BoxesFileError(f'{place}: expected {{"box": [...], "label": ...}}')
            boxes.append(_parse_box(item.get("box"), image_size, place))
            labels.append(
                _parse_label(item.get("label"), vocabulary, place) if mode is Mode.PREDCLS else 1
            )
        return SceneGraph(
            boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),  # (N, 4)
            labels=torch.tensor(labels, dtype=torch.int64),  # (N,)
            relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
            predicates=torch.zeros((0,), dtype=torch.int64),
            image_size=image_size,
        )


def _parse_box(value: Any, image_size: tuple[int, int], place: str) -> list[float]:
    """``[x1, y1, x2, y2]`` clipped to the image; an error if it is malformed or outside."""
    field = f'{place}: field "box"'
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise BoxesFileError(f"{field}: expected [x1, y1, x2, y2], got {value!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise BoxesFileError(f"{field}: expected 4 numbers, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise BoxesFileError(f"{field}: not finite: {value!r}")
    if x2 < x1 or y2 < y1:
        raise BoxesFileError(f"{field}: expected x1 <= x2 and y1 <= y2, got {value!r}")
    height, width = image_size
    if x1 > width - 1 or y1 > height - 1 or x2 < 0 or y2 < 0:
        raise BoxesFileError(f"{field}: {value!r} lies outside the {width}x{height} image")
    return [max(x1, 0.0), max(y1, 0.0), min(x2, width - 1.0), min(y2, height - 1.0)]


def _parse_label(value: Any, vocabulary: Vocabulary, place: str) -> int:
    field = f'{place}: field "label"'
    if not isinstance(value, str):
        raise BoxesFileError(f"{field}: PredCls needs an object class name, got {value!r}")
    names = vocabulary.objects[1:]
    if value not in names:
        close = difflib.get_close_matches(value, names, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise BoxesFileError(
            f"{field}: {value!r} is not one of the checkpoint's {len(names)} object classes{hint}"
        )
    return vocabulary.object_index(value)


def prediction_record(
    prediction: SceneGraph,
    *,
    image: str,
    mode: Mode,
    checkpoint: str,
    vocabulary: Vocabulary,
    top_k: int = 20,
    min_score: float = 0.0,
) -> dict[str, Any]:
    """The JSON record of one image's prediction (format in docs/predict.md).

    Relations are the ``top_k`` best rows (one predicate per ordered pair, its best
    foreground class) scored as the evaluator ranks them: subject score x object score x
    predicate probability (object scores are 1 in PredCls); rows scoring below
    ``min_score`` and the placeholder self-pair of a one-object image are left out.
    """
    height, width = prediction.image_size
    labels = prediction.labels.tolist()
    if mode is Mode.PREDCLS or prediction.object_scores is None:
        object_scores = np.ones(prediction.num_objects, np.float32)  # (N,)
    else:
        object_scores = prediction.object_scores.detach().cpu().numpy().astype(np.float32)
    objects = [
        {
            "index": index,
            "label": vocabulary.objects[label],
            "score": round(float(score), SCORE_DECIMALS),
            "box": [round(float(v), BOX_DECIMALS) for v in box],
        }
        for index, (label, score, box) in enumerate(
            zip(labels, object_scores, prediction.boxes.tolist(), strict=True)
        )
    ]
    return {
        "image": image,
        "width": int(width),
        "height": int(height),
        "mode": mode.value,
        "checkpoint": checkpoint,
        "objects": objects,
        "relations": _top_relations(prediction, object_scores, vocabulary, top_k, min_score),
    }


def _top_relations(
    prediction: SceneGraph,
    object_scores: np.ndarray,
    vocabulary: Vocabulary,
    top_k: int,
    min_score: float,
) -> list[dict[str, Any]]:
    if prediction.predicate_scores is None:
        raise ValueError("prediction_record: the prediction has no predicate_scores")
    predicate_scores = prediction.predicate_scores.detach().cpu().numpy()  # (R, P + 1)
    pairs = prediction.relation_pairs.cpu().numpy()  # (R, 2)
    scores = ranking_scores(predicate_scores, object_scores, pairs)  # (R,)
    keep = (pairs[:, 0] != pairs[:, 1]) & (scores >= min_score)
    rows = np.flatnonzero(keep)
    rows = rows[np.argsort(-scores[rows], kind="stable")][:top_k]  # best first, ties: row order
    names = vocabulary.objects
    relations = []
    for row in rows:
        subject, object_ = (int(i) for i in pairs[row])
        predicate = int(np.argmax(predicate_scores[row, 1:])) + 1
        relations.append(
            {
                "subject": subject,
                "predicate": vocabulary.predicates[predicate],
                "object": object_,
                "score": round(float(scores[row]), SCORE_DECIMALS),
                "subject_label": names[int(prediction.labels[subject])],
                "object_label": names[int(prediction.labels[object_])],
            }
        )
    return relations


def write_json(record: dict[str, Any], path: Path) -> Path:
    """Write ``record`` as UTF-8 JSON, indented, each short list or object on one line."""
    atomic.write_text(path, dumps_json(record) + "\n")
    return path


def dumps_json(value: Any, indent: int = 0) -> str:
    """``json.dumps`` indented by 2, with each list of plain values and each object of plain
    values or such lists (an object entry, a relation, a box) on one line."""
    if not isinstance(value, dict | list) or not value or _is_flat(value):
        return json.dumps(value, ensure_ascii=False)
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(str(key), ensure_ascii=False)}: {dumps_json(item, indent + 2)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{inner}{dumps_json(item, indent + 2)}" for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def _is_flat(value: dict | list) -> bool:
    def plain(item: Any) -> bool:
        return not isinstance(item, dict | list)

    if isinstance(value, list):
        return all(plain(item) for item in value)
    return all(
        plain(item) or (isinstance(item, list) and all(plain(v) for v in item))
        for item in value.values()
    )
