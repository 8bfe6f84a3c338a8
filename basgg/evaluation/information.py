"""Inputs of RI@K and InformativeRecall@K: the predicate information table and the
informative triplets of each image.

**Information table (RI@K).** By default a predicate's information is its self-information in
the training split, ``-ln(n_p / N)`` nats, with ``n_p`` the ground-truth relation rows of
predicate ``p`` in the train split (as counted for the head/body/tail groups: duplicates
included, the val images carved out) and ``N`` their sum over all predicates. A predicate with
no train row gets the value of one row, ``-ln(1 / N)``. Background is 0. A user table (the
BA-SGG authors' ``predicate_information`` or their Wikipedia-based
``predicate_wiki_information``, i.e. RWKI@K) is a JSON object ``{predicate name: value}``,
optionally nested under one of those two keys; predicates it does not name get 0, as in the
authors' code.

**Informative triplets (InformativeRecall@K).** SGG-Benchmark's ``informative_sg.json``:
``{"<image_id>": ["man riding horse", ...]}`` (also ``[subject, predicate, object]`` lists).
A string is split into a vocabulary subject, predicate and object (names may hold spaces);
one that names no vocabulary triplet still counts in the denominator and never matches.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

INFORMATION_KEYS = ("predicate_information", "predicate_wiki_information")


def predicate_information(train_counts: np.ndarray) -> np.ndarray:
    """(P + 1,) ``-ln(max(n_p, 1) / N)`` from the train split's (P + 1,) predicate counts.

    Example: counts ``[0, 6, 3, 1, 0]`` (N = 10) give ``[0, ln 10/6, ln 10/3, ln 10, ln 10]``.
    """
    counts = np.asarray(train_counts, dtype=np.float64)
    total = counts[1:].sum()
    if counts.ndim != 1 or len(counts) < 2 or total <= 0:
        raise ValueError("predicate_information: the train split has no relation to count")
    information = -np.log(np.maximum(counts, 1.0) / total)
    information[0] = 0.0
    return information


def load_information_file(path: str | Path, predicate_names: Sequence[str]) -> np.ndarray:
    """(P + 1,) information table from a JSON file ``{predicate name: value}`` (see module)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"{path}: cannot read information file ({error.strerror})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if isinstance(data, dict):
        for key in INFORMATION_KEYS:
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{predicate name: information}}")
    table = np.zeros(len(predicate_names), dtype=np.float64)
    known = 0
    for index, name in enumerate(predicate_names):
        if index == 0 or name not in data:
            continue
        value = data[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{path}: field {name!r}: expected a finite number, got {value!r}")
        table[index] = float(value)
        known += 1
    if known == 0:
        raise ValueError(f"{path}: names none of the dataset's predicates")
    return table


def parse_triplet(
    text: str | Sequence[str], objects: dict[str, int], predicates: dict[str, int]
) -> tuple[int, int, int]:
    """``"man riding horse"`` -> (subject class, predicate, object class); -1s when no split of
    the words names a vocabulary triplet (the first split found, shortest subject first)."""
    if not isinstance(text, str):
        parts = [str(part).strip().lower() for part in text]
        if (
            len(parts) == 3
            and parts[0] in objects
            and parts[1] in predicates
            and parts[2] in objects
        ):
            return objects[parts[0]], predicates[parts[1]], objects[parts[2]]
        return -1, -1, -1
    words = text.lower().split()
    for i in range(1, len(words) - 1):
        subject = " ".join(words[:i])
        if subject not in objects:
            continue
        for j in range(i + 1, len(words)):
            predicate, object_ = " ".join(words[i:j]), " ".join(words[j:])
            if predicate in predicates and object_ in objects:
                return objects[subject], predicates[predicate], objects[object_]
    return -1, -1, -1


def load_informative_file(
    path: str | Path, object_names: Sequence[str], predicate_names: Sequence[str]
) -> dict[int, np.ndarray]:
    """Image id -> (T, 3) int64 informative triplets from SGG-Benchmark's JSON (see module)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"{path}: cannot read informative file ({error.strerror})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{image_id: [triplet, ...]}}")
    objects = {name.lower(): i for i, name in enumerate(object_names) if i > 0}
    predicates = {name.lower(): i for i, name in enumerate(predicate_names) if i > 0}
    out: dict[int, np.ndarray] = {}
    for key, triplets in data.items():
        try:
            image_id = int(key)
        except ValueError:
            raise ValueError(f"{path}: key {key!r} is not an image id") from None
        if not isinstance(triplets, list):
            raise ValueError(f"{path}: image {key}: expected a list of triplets")
        rows = [parse_triplet(t, objects, predicates) for t in triplets]
        out[image_id] = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return out
