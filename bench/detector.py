"""Detector speed and accuracy: train iterations/s, inference ms per image, test mAP@50.

Training speed runs the real step (:func:`basgg.training.detector_training.train_step`) of
the detector a config describes on random SynthVG-sized images (320x240, 9-16 boxes), so no
dataset or asset is needed. With ``--checkpoint`` the trained detector's inference time is
measured on the test images of ``--data`` (random images without it), and with ``--data``
its test mAP@50 too. Usage::

    python bench/detector.py                                        # train speed, CPU (+CUDA)
    python bench/detector.py --checkpoint outputs/synthvg_detector/model_final.pth \\
        --data datasets/synthvg                                     # + inference and mAP@50
    python bench/detector.py --device cpu --threads 2 --iterations 10 SOLVER.IMS_PER_BATCH 8
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from basgg.config import load_config  # noqa: E402
from basgg.models.detector import Detector  # noqa: E402
from basgg.models.detector_builder import detector_from_config  # noqa: E402
from basgg.structures import SceneGraph  # noqa: E402
from basgg.training.caches import load_split_image  # noqa: E402
from basgg.training.detector_training import (  # noqa: E402
    evaluate_detector,
    load_detector,
    train_step,
)
from basgg.training.setup import build_dataset, resolve_config_path  # noqa: E402

NUM_CLASSES = 69  # default SynthVG: 68 objects + background
HEIGHT, WIDTH = 240, 320


def random_batch(count: int, generator: torch.Generator) -> tuple[list, list[SceneGraph]]:
    images, targets = [], []
    for _ in range(count):
        images.append(
            torch.randint(0, 256, (3, HEIGHT, WIDTH), dtype=torch.uint8, generator=generator)
        )
        n = int(torch.randint(9, 17, (), generator=generator))
        corner = torch.rand(n, 2, generator=generator) * torch.tensor([WIDTH - 60, HEIGHT - 60])
        size = torch.rand(n, 2, generator=generator) * 50 + 10
        targets.append(
            SceneGraph(
                boxes=torch.cat([corner, corner + size], 1),  # (n, 4)
                labels=torch.randint(1, NUM_CLASSES, (n,), generator=generator),
                relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
                predicates=torch.zeros((0,), dtype=torch.int64),
                image_size=(HEIGHT, WIDTH),
            )
        )
    return images, targets


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_speed(config, device: torch.device, iterations: int) -> float:
    """Training iterations per second of ``SOLVER.IMS_PER_BATCH`` random images."""
    torch.manual_seed(0)
    detector = detector_from_config(config, num_classes=NUM_CLASSES, backbone_weights=None)
    detector.to(device).train()
    parameters = [p for p in detector.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    amp = config.SOLVER.AMP and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    generator = torch.Generator().manual_seed(0)
    batches = [random_batch(config.SOLVER.IMS_PER_BATCH, generator) for _ in range(4)]

    def step(index: int) -> None:
        images, targets = batches[index % len(batches)]
        train_step(detector, images, targets, optimizer=optimizer, scaler=scaler,
                   parameters=parameters, grad_clip=5.0, amp=amp)  # fmt: skip

    for index in range(2):  # warm-up
        step(index)
    synchronize(device)
    start = time.perf_counter()
    for index in range(iterations):
        step(index)
    synchronize(device)
    return iterations / (time.perf_counter() - start)


def inference_ms(detector: Detector, images: list[torch.Tensor], batch_size: int) -> float:
    """Milliseconds per image of :meth:`Detector.detect` (after a warm-up batch)."""
    detector.detect(images[:batch_size])
    synchronize(detector.device)
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        detector.detect(images[first : first + batch_size])
    synchronize(detector.device)
    return 1000 * (time.perf_counter() - start) / len(images)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="synthvg_detector.yaml", help="detector config")
    parser.add_argument("--checkpoint", help="a basgg train-detector checkpoint")
    parser.add_argument("--data", help="a VG150-format folder (its test split is scored)")
    parser.add_argument("--device", default="all", help="cpu, cuda or all (cuda if present)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--iterations", type=int, default=10, help="timed training steps")
    parser.add_argument("--images", type=int, default=64, help="images timed for inference")
    parser.add_argument("--batch-size", type=int, default=1, help="images per detect() call")
    parser.add_argument(
        "--max-test-images", type=int, default=-1, help="mAP on the first N (0: none)"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(resolve_config_path(args.config), args.overrides)
    if args.data:
        config.DATASETS.DATA_DIR = args.data
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [torch.device(d) for d in devices if d != "cuda" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    batch = config.SOLVER.IMS_PER_BATCH
    for device in devices:
        rate = train_speed(config, device, args.iterations)
        print(
            f"train  {device.type:<5} {rate:6.2f} it/s ({rate * batch:.1f} images/s, batch {batch})"
        )
    if not args.checkpoint:
        return 0
    test = build_dataset(config, "test") if args.data else None
    if test is not None:
        count = min(args.images, len(test))
        images = [load_split_image(test, index) for index in range(count)]
    else:
        images = random_batch(args.images, torch.Generator().manual_seed(1))[0]
    for device in devices:
        detector, _ = load_detector(args.checkpoint, device=device)
        milliseconds = inference_ms(detector, images, args.batch_size)
        print(f"detect {device.type:<5} {milliseconds:6.1f} ms/image (batch {args.batch_size})")
    if test is not None and args.max_test_images != 0:
        detector, _ = load_detector(args.checkpoint, device=devices[-1])
        start = time.perf_counter()
        result = evaluate_detector(
            detector, test, batch_size=8, max_images=args.max_test_images, amp=config.SOLVER.AMP
        )
        print(
            f"test mAP@50 {100 * result.mean_ap:.2f} over {len(result.average_precision)} classes "
            f"({devices[-1].type}, {time.perf_counter() - start:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
