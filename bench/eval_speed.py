"""Speed of the evaluator on a run the size of the VG150 test split (synthetic predictions).

    python bench/eval_speed.py                       # 26,446 SGDet-like images
    python bench/eval_speed.py --images 2000 --reference-images 50

Prints images per second, total seconds and peak memory of the fast evaluator, then times
the plain reference implementation on a subset and prints the speed ratio. Prediction
generation is not timed; it runs in chunks so memory stays bounded.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import torch

from basgg.evaluation.metrics import SGEvaluator
from basgg.evaluation.reference import reference_evaluate
from basgg.structures import Mode, SceneGraph


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=26446, help="images evaluated")
    parser.add_argument("--boxes", type=int, default=80, help="predicted boxes per image")
    parser.add_argument("--pairs", type=int, default=256, help="scored pairs per image")
    parser.add_argument("--gt-boxes", type=int, default=15, help="ground-truth boxes per image")
    parser.add_argument("--gt-relations", type=int, default=6, help="GT relations per image")
    parser.add_argument("--predicates", type=int, default=51, help="incl. background")
    parser.add_argument("--classes", type=int, default=150, help="object classes")
    parser.add_argument("--mode", default="sgdet", choices=[m.value for m in Mode])
    parser.add_argument("--chunk", type=int, default=2000, help="images generated at once")
    parser.add_argument("--reference-images", type=int, default=100, help="0 skips it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="trace the evaluator's own numpy/Python allocations (tracemalloc; slows it down)",
    )
    return parser.parse_args()


def _random_boxes(rng: np.random.Generator, n: int, size: float = 600.0) -> np.ndarray:
    x1 = rng.uniform(0, size * 0.8, n)
    y1 = rng.uniform(0, size * 0.8, n)
    w = rng.uniform(10, size * 0.4, n)
    h = rng.uniform(10, size * 0.4, n)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def make_image(rng: np.random.Generator, args: argparse.Namespace, image_id: int, mode: Mode):
    """One (ground truth, ranked prediction) pair with a realistic hit rate."""
    n_gt = args.gt_boxes
    gt_boxes = _random_boxes(rng, n_gt)
    gt_labels = np.minimum(rng.zipf(1.3, n_gt), args.classes).astype(np.int64)
    gt_pairs = np.stack([rng.choice(n_gt, 2, replace=False) for _ in range(args.gt_relations)])
    gt_predicates = np.minimum(rng.zipf(1.5, args.gt_relations), args.predicates - 1)
    gt = SceneGraph(
        boxes=torch.from_numpy(gt_boxes),
        labels=torch.from_numpy(gt_labels),
        relation_pairs=torch.from_numpy(gt_pairs.astype(np.int64)),
        predicates=torch.from_numpy(gt_predicates.astype(np.int64)),
        image_size=(600, 600),
        image_id=image_id,
    )
    n = n_gt if mode is not Mode.SGDET else args.boxes
    boxes = _random_boxes(rng, n)
    labels = rng.integers(1, args.classes + 1, n)
    k = min(n, n_gt)
    boxes[:k] = gt_boxes[:k] + rng.normal(0, 4, (k, 4)).astype(np.float32)
    labels[:k] = np.where(rng.random(k) < 0.7, gt_labels[:k], labels[:k])
    pick = rng.choice(n * (n - 1), min(args.pairs, n * (n - 1)), replace=False)
    pairs = np.stack([pick // (n - 1), pick % (n - 1)], axis=1)
    pairs[:, 1] += pairs[:, 1] >= pairs[:, 0]  # skip the diagonal
    pairs[: len(gt_pairs)] = gt_pairs  # GT pairs are among the candidates
    logits = rng.normal(0, 1.5, (len(pairs), args.predicates)).astype(np.float32)
    logits[np.arange(len(gt_pairs)), gt_predicates] += 4.0
    scores = np.exp(logits)
    scores /= scores.sum(axis=1, keepdims=True)
    object_scores = rng.uniform(0.05, 1.0, n).astype(np.float32)
    object_scores[:k] = rng.uniform(0.5, 1.0, k)  # detections of GT objects are confident
    rank = scores[:, 1:].max(1) * object_scores[pairs[:, 0]] * object_scores[pairs[:, 1]]
    order = np.argsort(-rank, kind="stable")
    prediction = SceneGraph(
        boxes=torch.from_numpy(boxes),
        labels=torch.from_numpy(labels.astype(np.int64)),
        relation_pairs=torch.from_numpy(pairs[order].astype(np.int64)),
        predicates=torch.from_numpy(scores[order, 1:].argmax(1).astype(np.int64) + 1),
        image_size=(600, 600),
        image_id=image_id,
        object_scores=torch.from_numpy(object_scores),
        predicate_scores=torch.from_numpy(scores[order]),
    )
    return gt, prediction


def main() -> None:
    args = parse_args()
    mode = Mode(args.mode)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(2)
    evaluator = SGEvaluator(mode=mode, num_predicates=args.predicates)
    elapsed = 0.0
    generated = update_peak = rows = 0
    while generated < args.images:
        count = min(args.chunk, args.images - generated)
        pairs = [make_image(rng, args, generated + i, mode) for i in range(count)]
        gts, predictions = [p[0] for p in pairs], [p[1] for p in pairs]
        rows += sum(prediction.num_relations for prediction in predictions)
        if args.trace_memory:
            tracemalloc.start()
        start = time.perf_counter()
        evaluator.update(gts, predictions)
        elapsed += time.perf_counter() - start
        if args.trace_memory:
            update_peak = max(update_peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        generated += count
    start = time.perf_counter()
    result = evaluator.compute()
    elapsed += time.perf_counter() - start
    kept = sum(array.nbytes for array in result.per_image.values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    boxes = args.boxes if mode is Mode.SGDET else args.gt_boxes
    print(
        f"mode {mode.value}: {args.images} images, {boxes} boxes, {rows / args.images:.0f} "
        f"scored pairs, {args.gt_boxes} GT boxes, {args.gt_relations} GT relations per image, "
        f"{args.predicates} predicate classes ({rows:,} scored rows)"
    )
    print(f"fast evaluator: {elapsed:.2f} s total, {args.images / elapsed:,.0f} images/s")
    print(f"peak resident memory of the process (incl. one generated chunk): {peak_mib:,.0f} MiB")
    print(f"per-image state kept by the evaluator: {kept / 2**20:,.1f} MiB")
    if args.trace_memory:
        print(
            f"peak allocated during one update() of {args.chunk} images (tracemalloc): "
            f"{update_peak / 2**20:,.0f} MiB (timing above includes tracing overhead)"
        )
    print(
        "R@20/50/100 = "
        + " / ".join(f"{100 * result.metrics[f'R@{k}']:.2f}" for k in (20, 50, 100))
    )
    if args.reference_images:
        pairs = [make_image(rng, args, i, mode) for i in range(args.reference_images)]
        gts, predictions = [p[0] for p in pairs], [p[1] for p in pairs]
        start = time.perf_counter()
        slow = reference_evaluate(gts, predictions, mode=mode, num_predicates=args.predicates)
        reference_seconds = time.perf_counter() - start
        start = time.perf_counter()
        fast = SGEvaluator(mode=mode, num_predicates=args.predicates)
        fast.update(gts, predictions)
        same = fast.compute().metrics
        fast_seconds = time.perf_counter() - start
        worst = max(abs(same[key] - value) for key, value in slow.metrics.items())
        reference_rate = args.reference_images / reference_seconds
        print(
            f"reference: {reference_rate:,.1f} images/s on {args.reference_images} images "
            f"(fast on the same subset: {args.reference_images / fast_seconds:,.0f} images/s;"
            f" max |difference| {worst:.1e})"
        )
        print(f"speed ratio fast / reference: {args.images / elapsed / reference_rate:,.0f}x")


if __name__ == "__main__":
    main()
