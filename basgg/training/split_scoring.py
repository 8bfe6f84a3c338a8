"""Prediction and evaluation over cached features (used by validation and ``basgg test``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from basgg.evaluation import EvaluationResult, SGEvaluator
from basgg.models.sgg_model import SceneGraphModel
from basgg.structures import SceneGraph
from basgg.training.caches import SplitData

EVALUATION_CHUNK = 256  # images predicted before they are scored


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """float16 autocast on CUDA when ``enabled``; a disabled context elsewhere."""
    on_cuda = device.type == "cuda"
    return torch.autocast(
        device_type="cuda" if on_cuda else "cpu", dtype=torch.float16, enabled=enabled and on_cuda
    )


@torch.no_grad()
def predict_split(
    model: SceneGraphModel,
    split: SplitData,
    indices: Sequence[int],
    *,
    batch_size: int = 8,
    amp: bool = False,
    progress: bool = False,
) -> list[SceneGraph]:
    """Ranked predictions for the images ``indices`` of ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    predictions: list[SceneGraph] = []
    bar = tqdm(total=len(indices), desc=f"predict {split.name}", disable=not progress, leave=False)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        objects, unions = split.features.take(list(chunk))
        with autocast(model.device, amp):
            predictions.extend(
                model.predict(
                    [split.inputs[i] for i in chunk],
                    objects,
                    unions,
                    detector_logits=(
                        None
                        if split.detector_logits is None
                        else [split.detector_logits[i] for i in chunk]
                    ),
                )
            )
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return predictions


def evaluate(
    model: SceneGraphModel,
    split: SplitData,
    evaluator: SGEvaluator,
    *,
    batch_size: int = 8,
    max_images: int = -1,
    amp: bool = False,
    progress: bool = False,
) -> EvaluationResult:
    """Predict the first ``max_images`` images of ``split`` (-1: all) and score them against
    their ground truths, a few hundred images at a time (predictions are not kept)."""
    count = len(split.inputs) if max_images < 0 else min(max_images, len(split.inputs))
    for start in range(0, count, EVALUATION_CHUNK):
        indices = range(start, min(start + EVALUATION_CHUNK, count))
        predictions = predict_split(
            model, split, indices, batch_size=batch_size, amp=amp, progress=progress
        )
        evaluator.update([split.ground_truth(i) for i in indices], predictions)
    return evaluator.compute()
