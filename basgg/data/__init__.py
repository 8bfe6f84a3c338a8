"""Datasets, their file formats and the train-split frequency statistics.

The names below are loaded on first use, so importing one submodule (e.g.
``basgg.data.vg150_targets``, which needs no torch) loads only that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "SKIPPED_IMAGE_IDS": "vg150_checks",
    "FrequencyStatistics": "statistics",
    "VG150Annotation": "vg150",
    "VG150Dataset": "vg150",
    "VG150Error": "vg150_checks",
    "VG150Files": "vg150_format",
    "Vocabulary": "vocabulary",
    "compute_frequency_statistics": "statistics",
    "frequency_bias_init": "statistics",
    "load_or_compute_statistics": "statistics",
    "read_vocabulary": "vg150_format",
    "write_vg150": "vg150_format",
}
__all__ = [
    "SKIPPED_IMAGE_IDS",
    "FrequencyStatistics",
    "VG150Annotation",
    "VG150Dataset",
    "VG150Error",
    "VG150Files",
    "Vocabulary",
    "compute_frequency_statistics",
    "frequency_bias_init",
    "load_or_compute_statistics",
    "read_vocabulary",
    "write_vg150",
]

if TYPE_CHECKING:
    from basgg.data.statistics import (
        FrequencyStatistics,
        compute_frequency_statistics,
        frequency_bias_init,
        load_or_compute_statistics,
    )
    from basgg.data.vg150 import VG150Annotation, VG150Dataset
    from basgg.data.vg150_checks import SKIPPED_IMAGE_IDS, VG150Error
    from basgg.data.vg150_format import VG150Files, read_vocabulary, write_vg150
    from basgg.data.vocabulary import Vocabulary


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'basgg.data' has no attribute {name!r}")
    module = importlib.import_module(f"basgg.data.{_EXPORTS[name]}")
    return getattr(module, name)
