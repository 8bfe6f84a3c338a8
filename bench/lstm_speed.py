"""Motifs context LSTM: Scene-Graph-Benchmark's packed call against basgg's, side by side.

Scene-Graph-Benchmark runs each Motifs context LSTM (object and edge context) as one
bidirectional ``nn.LSTM`` over a ``PackedSequence`` of the images' object sequences. On a CPU
a packed LSTM runs step by step (a matrix product and the gate operations per time step and
direction, each an autograd node). basgg's ``fused_bidirectional_lstm`` (context_motifs.py)
computes the same function with one fused call per direction over zero-padded sequences
(oneDNN on a CPU). This script times forward + backward of both on the same random inputs,
in one process, and prints the largest difference of the gradients; then it times the
demo's whole Motifs training step (``bench/train_speed.py``'s, synthetic cached features,
the demo's sizes) with each, alternating, which is what a user waits for: the fused calls
gain more inside the step than alone. basgg runs the fused calls on a CPU up to
``FUSED_LSTM_MAX_HIDDEN`` hidden units and the packed call above that (and on a GPU).
Usage::

    python bench/lstm_speed.py                 # demo sizes and VG150 (SGB default) sizes, CPU
    python bench/lstm_speed.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import basgg.models.context_motifs as context_motifs  # noqa: E402
from basgg.models.context_motifs import (  # noqa: E402
    FUSED_LSTM_MAX_HIDDEN,
    fused_bidirectional_lstm,
    packed_bidirectional_lstm,  # Scene-Graph-Benchmark's way: pack, run, unpack
)

STEP_CONFIG = ROOT / "basgg" / "configs" / "synthvg_predcls.yaml"  # the demo's stage 1

# name: (input size, hidden size, objects per image in the batch)
SIZES = {
    # demo: 448 visual + 50 word + 128 position, CONTEXT_HIDDEN_DIM 128, 8 images, 8-22 objects
    "demo (SynthVG, 8 images)": (626, 128, [15, 22, 12, 9, 18, 14, 16, 13]),
    # a 2048-channel trunk, hidden 256, VG150-like object counts (measured slower fused)
    "hidden 256 (12 images)": (2376, 256, [25, 18, 31, 22, 14, 27, 20, 16, 24, 29, 12, 21]),
    # SGB Motifs on VG150: 4096 visual + 200 word + 128 position, hidden 512, 12 images
    "VG150 (SGB sizes, 12 images)": (4424, 512, [25, 18, 31, 22, 14, 27, 20, 16, 24, 29, 12, 21]),
}


def time_call(function, repeats: int, device: torch.device) -> float:
    """Fastest milliseconds of ``function()`` (forward + backward) over ``repeats`` calls
    (the least disturbed by other work on the machine)."""
    for _ in range(3):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (training uses 1)")
    parser.add_argument("--step-rounds", type=int, default=3, help="whole-step rounds (0: none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}")
    for name, (input_size, hidden, counts) in SIZES.items():
        sgb, basgg, difference = compare(input_size, hidden, counts, device, args.repeats)
        print(
            f"{name}: packed (SGB) {sgb:.1f} ms, fused {basgg:.1f} ms forward + backward, "
            f"{sgb / basgg:.2f}x; largest gradient difference {difference:.1e}; basgg runs "
            f"{'fused' if device.type == 'cpu' and hidden <= FUSED_LSTM_MAX_HIDDEN else 'packed'}"
        )

    if args.step_rounds > 0:
        compare_steps(args.device, args.step_rounds)


def compare_steps(device: str, rounds: int, iterations: int = 30) -> None:
    """Iterations per second of the demo's Motifs training step with each LSTM call."""
    sys.path.insert(0, str(ROOT / "bench"))
    from train_speed import measure

    speeds: dict[str, list[float]] = {"packed": [], "fused": []}
    for _ in range(rounds):
        for name, run in (
            ("packed", packed_bidirectional_lstm),
            ("fused", fused_bidirectional_lstm),
        ):
            context_motifs.run_bidirectional_lstm = run  # looked up by MotifsContext.forward
            result = measure("MotifPredictor", str(STEP_CONFIG), [], device, iterations)
            speeds[name].append(1000 / result["iterations_per_second"])
    packed, fused = min(speeds["packed"]), min(speeds["fused"])
    print(
        f"demo Motifs training step, best of {rounds}: packed (SGB) {packed:.1f} ms, "
        f"fused {fused:.1f} ms per iteration, {packed / fused:.2f}x "
        f"(each run: packed {', '.join(f'{v:.1f}' for v in speeds['packed'])}; "
        f"fused {', '.join(f'{v:.1f}' for v in speeds['fused'])})"
    )


def compare(
    input_size: int, hidden: int, counts: list[int], device: torch.device, repeats: int
) -> tuple[float, float, float]:
    """Milliseconds of SGB's packed LSTM and of basgg's, and their largest difference."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(input_size, hidden, bidirectional=True).to(device)
    features = torch.randn(sum(counts), input_size, device=device, requires_grad=True)
    orders = list(torch.randperm(sum(counts), device=device).split(counts))
    weights = torch.randn(sum(counts), 2 * hidden, device=device)
    inputs = [features, *lstm.parameters()]

    def step(run):  # gradients of every input of a weighted sum of the outputs
        return torch.autograd.grad((run(lstm, features, orders) * weights).sum(), inputs)

    reference, ours = step(packed_bidirectional_lstm), step(fused_bidirectional_lstm)
    difference = max((a - b).abs().max().item() for a, b in zip(reference, ours, strict=True))
    sgb = time_call(lambda: step(packed_bidirectional_lstm), repeats, device)
    basgg = time_call(lambda: step(fused_bidirectional_lstm), repeats, device)
    return sgb, basgg, difference


if __name__ == "__main__":
    main()
