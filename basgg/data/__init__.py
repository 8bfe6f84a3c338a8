"""Datasets, their file formats and the train-split frequency statistics."""

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
