"""Prediction and evaluation over cached features (used by validation and ``basgg test``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from basgg.evaluation import EvaluationResult, SGEvaluator
from basgg.models.sgg_model import SceneGraphModel
from basgg.structures import SceneGraph
from basgg.training.caches import SplitData
from basgg.training.distributed import DistributedContext, gather_to_main, shard

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


def predict_shared(
    model: SceneGraphModel,
    split: SplitData,
    indices: Sequence[int],
    *,
    context: DistributedContext,
    batch_size: int = 8,
    amp: bool = False,
    progress: bool = False,
) -> list[SceneGraph] | None:
    """:func:`predict_split` with the images shared among the processes of ``context``.

    Each process predicts its contiguous share of ``indices``; the main process gets every
    prediction in ``indices`` order, the others ``None``. One process: the same as
    :func:`predict_split`.
    """
    share = [indices[i] for i in shard(len(indices), context)]
    predictions = predict_split(
        model,
        split,
        share,
        batch_size=batch_size,
        amp=amp,
        progress=progress and context.is_main,
    )
    gathered = gather_to_main(predictions, context)
    if gathered is None:
        return None
    return [prediction for part in gathered for prediction in part]  # type: ignore[union-attr]


def evaluate(
    model: SceneGraphModel,
    split: SplitData,
    evaluator: SGEvaluator,
    *,
    batch_size: int = 8,
    max_images: int = -1,
    amp: bool = False,
    progress: bool = False,
    context: DistributedContext | None = None,
) -> EvaluationResult | None:
    """Predict the first ``max_images`` images of ``split`` (-1: all) and score them against
    their ground truths, a few hundred images at a time (predictions are not kept).

    With a process group (``context``) every process must call this: they share the
    predictions and the main process scores them and gets the result (the others ``None``).
    """
    context = context or DistributedContext(device=model.device)
    count = len(split.inputs) if max_images < 0 else min(max_images, len(split.inputs))
    for start in range(0, count, EVALUATION_CHUNK):
        indices = range(start, min(start + EVALUATION_CHUNK, count))
        predictions = predict_shared(
            model, split, indices, context=context, batch_size=batch_size, amp=amp,
            progress=progress,
        )  # fmt: skip
        if predictions is not None:
            evaluator.update([split.ground_truth(i) for i in indices], predictions)
    return evaluator.compute() if context.is_main else None
