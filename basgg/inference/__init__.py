"""Scene graphs of new photographs with a trained checkpoint (``basgg predict``).

Imports models, config, structures, the vocabulary, the evaluator's ranking and the
checkpoint reader; never the dataset readers: a checkpoint alone is enough.
"""

from basgg.inference.graph_json import BoxesFile, BoxesFileError, prediction_record, write_json
from basgg.inference.loading import (
    ImageReadError,
    ModelCheckpoint,
    Predictor,
    load_predictor,
    read_image,
    read_model_checkpoint,
)

__all__ = [
    "BoxesFile",
    "BoxesFileError",
    "ImageReadError",
    "ModelCheckpoint",
    "Predictor",
    "load_predictor",
    "prediction_record",
    "read_image",
    "read_model_checkpoint",
    "write_json",
]
