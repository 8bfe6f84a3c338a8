"""A trained checkpoint -> a ready :class:`Predictor`, and photographs -> model input tensors.

Everything comes from the checkpoint (config, vocabularies and every weight, backbone
included): no dataset file, statistics file, word-vector file or pretrained asset is read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.nn import functional as F

from basgg.config import Config, config_from_dict
from basgg.data.vocabulary import Vocabulary
from basgg.models import SceneGraphModel
from basgg.structures import Mode, SceneGraph
from basgg.training.checkpoint import CheckpointError, read_checkpoint
from basgg.training.stages import build_trained_model

# A model trained at native image size (MODEL.BACKBONE.IMAGE_SIZE 0) gets larger photos
# scaled down to this longer side first; its boxes are scaled back to the photo's pixels.
NATIVE_SIZE_LIMIT = 1024
WHITE = (255, 255, 255)


class ImageReadError(ValueError):
    """A file that cannot be read as an image (missing, corrupt, not an image)."""


@dataclass(frozen=True)
class ModelCheckpoint:
    """What a checkpoint says about its model, before any weight is loaded.

    Attributes:
        path: the checkpoint file.
        state: the checkpoint dict (:func:`basgg.training.checkpoint.read_checkpoint`).
        config: the configuration the model was trained with.
        vocabulary: its object and predicate names.
    """

    path: Path
    state: dict[str, Any]
    config: Config
    vocabulary: Vocabulary

    @property
    def mode(self) -> Mode:
        return self.config.mode


def read_model_checkpoint(path: str | Path) -> ModelCheckpoint:
    """Read a ``basgg train`` checkpoint and rebuild its config and vocabulary.

    Raises:
        CheckpointError: naming ``path`` when the file is not a full basgg checkpoint.
    """
    path = Path(path)
    state = read_checkpoint(path)
    for key in ("config", "vocabulary"):
        if not isinstance(state.get(key), dict):
            raise CheckpointError(
                f"{path}: the checkpoint has no {key!r} (not written by basgg train?)"
            )
    names = state["vocabulary"]
    try:
        vocabulary = Vocabulary(tuple(names["objects"]), tuple(names["predicates"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: field 'vocabulary': {error}") from None
    config = config_from_dict(state["config"], source=str(path))
    return ModelCheckpoint(path=path, state=state, config=config, vocabulary=vocabulary)


@dataclass
class Predictor:
    """A trained model in eval mode, ready for :meth:`predict` on single photographs.

    Attributes:
        model: the scene-graph model, weights loaded, on ``device``.
        checkpoint: where it came from (config, vocabulary).
        device: where it runs.
    """

    model: SceneGraphModel
    checkpoint: ModelCheckpoint
    device: torch.device

    @property
    def mode(self) -> Mode:
        return self.model.mode

    @property
    def vocabulary(self) -> Vocabulary:
        return self.checkpoint.vocabulary

    @torch.no_grad()
    def predict(self, image: Tensor, inputs: SceneGraph | None = None) -> SceneGraph:
        """The ranked scene graph of one image, boxes in that image's pixels.

        Args:
            image: uint8 (3, H, W) RGB.
            inputs: PredCls: boxes and labels; SGCls: boxes (labels ignored); SGDet: None.
        """
        if (inputs is None) != (self.mode is Mode.SGDET):
            raise ValueError(f"{self.mode.value} model: inputs must be given unless SGDet")
        height, width = image.shape[-2:]
        if inputs is not None and inputs.num_objects == 0:
            return _empty_prediction((height, width), self.vocabulary.num_predicates)
        scale = self._prescale(height, width)
        given = inputs
        if scale != 1.0:
            image = _resize(image, scale)
            inputs = None if inputs is None else _scaled(inputs, scale, image.shape[-2:])
        [prediction] = self.model.predict_images([image], None if inputs is None else [inputs])
        if given is not None:  # the given boxes come back as they were given
            return replace(prediction, boxes=given.boxes.clone(), image_size=(height, width))
        if scale != 1.0:
            prediction = _scaled(prediction, 1.0 / scale, (height, width))
        return prediction

    def _prescale(self, height: int, width: int) -> float:
        """Scale applied before the model: < 1 only for big photos and a native-size model."""
        longer = max(height, width)
        if self.checkpoint.config.MODEL.BACKBONE.IMAGE_SIZE or longer <= NATIVE_SIZE_LIMIT:
            return 1.0
        return NATIVE_SIZE_LIMIT / longer


def load_predictor(checkpoint: ModelCheckpoint, *, device: torch.device | str) -> Predictor:
    """Build the model the checkpoint's config describes and load all its weights.

    As ``basgg test`` does: zero placeholders for the statistics and word vectors (the
    weights hold the trained values), a random backbone (overwritten by the load), the
    BA-SGG stage-2 parts when the checkpoint has them, and the evaluator's ranking.

    Raises:
        CheckpointError: naming the file when the weights do not fit the described model.
    """
    model = build_trained_model(
        checkpoint.config, checkpoint.state, checkpoint.path, vocabulary=checkpoint.vocabulary
    )
    model.eval()
    return Predictor(model=model.to(device), checkpoint=checkpoint, device=torch.device(device))


def read_image(path: str | Path) -> Tensor:
    """A photograph as uint8 (3, H, W) RGB, upright as it is displayed.

    EXIF orientation is applied; grayscale, palette, 16-bit and CMYK images are converted;
    transparent pixels are put on white.

    Raises:
        ImageReadError: naming ``path`` and the reason.
    """
    try:
        with Image.open(path) as opened:
            upright = ImageOps.exif_transpose(opened)
            rgb = _to_rgb(upright)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file (format not recognised)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = str(error) or type(error).__name__
        raise ImageReadError(f"{path}: not a readable image ({reason})") from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()  # (3, H, W)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)  # (H, W)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _resize(image: Tensor, scale: float) -> Tensor:
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = F.interpolate(
        image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True
    )  # (1, 3, h, w)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def _scaled(graph: SceneGraph, scale: float, image_size: tuple[int, int]) -> SceneGraph:
    """``graph`` with its boxes multiplied by ``scale``, for an image of ``image_size``."""
    return replace(graph, boxes=graph.boxes * scale, image_size=tuple(image_size))


def _empty_prediction(image_size: tuple[int, int], num_predicates: int) -> SceneGraph:
    empty = SceneGraph.empty(image_size)
    return replace(
        empty,
        object_scores=torch.zeros((0,), dtype=torch.float32),
        predicate_scores=torch.zeros((0, num_predicates), dtype=torch.float32),
    )
