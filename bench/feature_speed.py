"""Speed and cache size of frozen feature extraction on the CPU.

Runs :class:`basgg.models.features.FrozenFeatureExtractor` on random 0..255 images with
``--objects`` boxes and all ordered pairs per image, at the native size and at each
``--longer-side``. Weights are random unless ``--packaged-weights`` is given (speed hardly
depends on them, so no asset package is needed). Prints images per second (best and median of
``--repeats`` interleaved passes; the best is the least disturbed by other processes), process
CPU time per image, and the float32 / float16 cache size of a dataset of ``--dataset-images``
images.

Run from the repository root: ``python -m bench.feature_speed`` (or with ``PYTHONPATH=.``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from basgg.models.backbone import BACKBONE_NAMES, build_backbone
from basgg.models.features import FrozenFeatureExtractor
from basgg.pretrained import load_backbone_weights


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0", choices=BACKBONE_NAMES)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument(
        "--packaged-weights",
        action="store_true",
        help="load the packaged pretrained weights (efficientnet_lite0) instead of random ones",
    )
    parser.add_argument("--object-pool", type=int, default=2)
    parser.add_argument("--union-pool", type=int, default=2)
    parser.add_argument("--rect-size", type=int, default=8)
    parser.add_argument("--sampling-ratio", type=int, default=-1)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-batch-pixels", type=int, default=320 * 240 * 4)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument(
        "--longer-side",
        type=int,
        nargs="*",
        default=[592],
        help="extra runs with images resized to these longer sides",
    )
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--images", type=int, default=32, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dataset-images", type=int, default=4000)
    return parser.parse_args()


def make_inputs(
    args: argparse.Namespace, generator: torch.Generator
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Random images, boxes of 5..50 % of the image side, and all ordered pairs."""
    size = torch.tensor([args.width, args.height], dtype=torch.float32)
    images, boxes, pairs = [], [], []
    indices = torch.arange(args.objects)
    subject, object_ = torch.meshgrid(indices, indices, indexing="ij")
    all_pairs = torch.stack([subject.flatten(), object_.flatten()], 1)  # (N * N, 2)
    all_pairs = all_pairs[all_pairs[:, 0] != all_pairs[:, 1]]  # (N * (N - 1), 2)
    for _ in range(args.images):
        images.append(
            torch.randint(
                0, 256, (3, args.height, args.width), dtype=torch.uint8, generator=generator
            )
        )
        wh = (0.05 + 0.45 * torch.rand(args.objects, 2, generator=generator)) * size  # (N, 2)
        corner = torch.rand(args.objects, 2, generator=generator) * (size - wh)  # (N, 2)
        boxes.append(torch.cat([corner, corner + wh], 1))
        pairs.append(all_pairs)
    return images, boxes, pairs


def time_pass(extractor: FrozenFeatureExtractor, inputs: tuple) -> tuple[float, float]:
    """Images per second and process CPU seconds per image of one pass over ``inputs``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    extractor(*inputs)
    count = len(inputs[0])
    return count / (time.perf_counter() - start), (time.process_time() - start_cpu) / count


def main() -> None:
    args = parse_args()
    generator = torch.Generator().manual_seed(0)
    weights = load_backbone_weights(args.backbone) if args.packaged_weights else None
    backbone = build_backbone(args.backbone, weights=weights, stride=args.stride)
    inputs = make_inputs(args, generator)
    num_pairs = args.objects * (args.objects - 1)
    print(
        f"backbone {args.backbone}: {backbone.out_channels} channels at stride "
        f"{backbone.stride}; torch threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}"
    )
    extractors = {
        (longer_side, batch_size): FrozenFeatureExtractor(
            backbone=backbone,
            object_pool=args.object_pool,
            union_pool=args.union_pool,
            rect_size=args.rect_size,
            longer_side=longer_side,
            batch_size=batch_size,
            max_batch_pixels=args.max_batch_pixels,
            sampling_ratio=args.sampling_ratio,
        )
        for longer_side in [None, *args.longer_side]
        for batch_size in args.batch_size
    }
    for extractor in extractors.values():  # warm-up
        extractor(*(part[:2] for part in inputs))
    timings: dict[tuple, list[tuple[float, float]]] = {key: [] for key in extractors}
    for _ in range(args.repeats):  # interleaved, so that load from other processes hits all
        for key, extractor in extractors.items():
            timings[key].append(time_pass(extractor, inputs))
    for (longer_side, batch_size), extractor in extractors.items():
        rates = [rate for rate, _ in timings[longer_side, batch_size]]
        cpu_ms = 1000 * min(cpu for _, cpu in timings[longer_side, batch_size])
        best, median = max(rates), statistics.median(rates)
        height, width = extractor.resized_size(args.height, args.width)
        floats = args.objects * extractor.object_dim + num_pairs * extractor.union_dim
        dataset_gb = floats * args.dataset_images / 1e9
        per_pass = extractor.images_per_batch(height, width)
        seconds = args.dataset_images / best
        print(
            f"{width}x{height} batch {per_pass} (--batch-size {batch_size}): best {best:.1f} "
            f"img/s, median {median:.1f} img/s, {cpu_ms:.0f} CPU-ms/img -> {seconds:.0f} s "
            f"for {args.dataset_images} images"
        )
    print(
        f"object_dim {extractor.object_dim}, union_dim {extractor.union_dim}: cache "
        f"{floats * 4 / 1e3:.0f} kB/image float32, {dataset_gb * 4:.2f} GB float32 / "
        f"{dataset_gb * 2:.2f} GB float16 for {args.dataset_images} images x {args.objects} "
        f"objects x {num_pairs} pairs"
    )


if __name__ == "__main__":
    main()
