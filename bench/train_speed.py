"""Training speed of each relation head: iterations per second and peak memory.

Runs the real training step (:func:`basgg.training.loop.train_step`: pair sampling, head
forward and backward, SGD) on random cached features shaped like default SynthVG (8-15
objects per image, 68 object classes, 23 predicates, about 6 relations per image), so no
dataset, backbone or asset is needed. Each head runs in its own process so that its peak
memory is its own. Usage::

    python bench/train_speed.py                      # every head, the config defaults, CPU
    python bench/train_speed.py --config basgg/configs/synthvg_predcls.yaml --device cuda
    python bench/train_speed.py --heads MotifPredictor,VCTreePredictor --iterations 50 KEY VALUE
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from basgg.config import load_config  # noqa: E402
from basgg.models import build_model  # noqa: E402
from basgg.models.heads import HEADS  # noqa: E402
from basgg.structures import SceneGraph  # noqa: E402
from basgg.training.caches import SplitData  # noqa: E402
from basgg.training.distributed import DistributedContext  # noqa: E402
from basgg.training.feature_cache import FeatureCache  # noqa: E402
from basgg.training.loop import TrainingSettings, train_step  # noqa: E402

NUM_OBJECT_CLASSES = 68
NUM_PREDICATE_CLASSES = 24  # 23 + background
NUM_IMAGES = 64


class RandomTargets:
    """A stand-in dataset: ``targets[i]`` is ``(None, graph)``, ``target(i)`` the graph."""

    def __init__(self, graphs: list[SceneGraph]) -> None:
        self.graphs = graphs

    def __getitem__(self, index: int) -> tuple[None, SceneGraph]:
        return None, self.graphs[index]

    def target(self, index: int, *, generator: torch.Generator | None = None) -> SceneGraph:
        return self.graphs[index]


def random_split(object_dim: int, union_dim: int, seed: int = 0) -> SplitData:
    generator = torch.Generator().manual_seed(seed)
    graphs, objects, unions = [], [], []
    for index in range(NUM_IMAGES):
        n = int(torch.randint(8, 16, (), generator=generator))
        corner = torch.rand(n, 2, generator=generator) * 240
        size = torch.rand(n, 2, generator=generator) * 80 + 10
        boxes = torch.cat([corner, corner + size], 1)  # (n, 4)
        r = min(6, n * (n - 1))
        flat = torch.randperm(n * n, generator=generator)
        flat = flat[flat // n != flat % n][:r]
        pairs = torch.stack([flat // n, flat % n], 1)  # (r, 2)
        graphs.append(
            SceneGraph(
                boxes=boxes,
                labels=torch.randint(1, NUM_OBJECT_CLASSES, (n,), generator=generator),
                relation_pairs=pairs,
                predicates=torch.randint(1, NUM_PREDICATE_CLASSES, (r,), generator=generator),
                image_size=(240, 320),
                image_id=index,
            )
        )
        objects.append(torch.rand(n, object_dim, generator=generator).half())
        unions.append(torch.rand(n * (n - 1), union_dim, generator=generator).half())
    cache = FeatureCache(
        object_features=torch.cat(objects),
        union_features=torch.cat(unions),
        num_objects=torch.tensor([g.num_objects for g in graphs]),
    )
    return SplitData("train", RandomTargets(graphs), graphs, cache)  # type: ignore[arg-type]


def measure(head: str, config_path: str | None, overrides: list[str], device: str,
            iterations: int) -> dict:  # fmt: skip
    config = load_config(config_path, [*overrides, "MODEL.ROI_RELATION_HEAD.PREDICTOR", head])
    config.MODEL.BACKBONE.WEIGHTS = "random"
    c, p = NUM_OBJECT_CLASSES, NUM_PREDICATE_CLASSES
    names = type("Names", (), {})()
    names.objects = [f"o{i}" for i in range(c)]
    names.predicates = [f"p{i}" for i in range(p)]
    torch.manual_seed(0)
    model = build_model(
        config,
        vocabulary=names,
        frequency_bias_init=torch.randn(c * c, p),
        object_word_vectors=torch.randn(c, config.MODEL.ROI_RELATION_HEAD.EMBED_DIM),
    )
    extractor = model.feature_extractor
    model.feature_extractor = None  # features are cached: the backbone never runs
    split = random_split(extractor.object_dim, extractor.union_dim)
    torch_device = torch.device(device)
    model.to(torch_device).train()
    parameters = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    use_amp = config.SOLVER.AMP and torch_device.type == "cuda"
    scaler = torch.amp.GradScaler(torch_device.type, enabled=use_amp)
    batch = config.SOLVER.IMS_PER_BATCH
    settings = TrainingSettings(max_iter=iterations, batch_size=batch, amp=use_amp)
    context = DistributedContext(device=torch_device)

    def step(iteration: int) -> None:
        start = (iteration * batch) % NUM_IMAGES
        items = [(iteration * batch + k, (start + k) % NUM_IMAGES) for k in range(batch)]
        train_step(model, split, items, optimizer=optimizer, scaler=scaler,
                   parameters=parameters, settings=settings, context=context)  # fmt: skip

    for iteration in range(3):  # warm-up
        step(iteration)
    if torch_device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for iteration in range(iterations):
        step(iteration)
    if torch_device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "head": head,
        "device": device,
        "images_per_batch": batch,
        "iterations_per_second": iterations / seconds,
        "parameters": sum(q.numel() for q in parameters),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if torch_device.type == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML config (default: the config defaults)")
    parser.add_argument(
        "--heads", default=",".join(HEADS), help="comma-separated heads (default: every head)"
    )
    parser.add_argument("--device", default="all", help="cpu, cuda or all (cuda if present)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE")
    args = parser.parse_args()
    heads = args.heads.split(",")
    unknown = [head for head in heads if head not in HEADS]
    if unknown:
        parser.error(f"unknown heads {unknown}; choose among {list(HEADS)}")
    if args.child:
        result = measure(heads[0], args.config, args.overrides, args.device, args.iterations)
        print(json.dumps(result))
        return 0
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d != "cuda" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'head':<22}{'device':<8}{'batch':>6}{'it/s':>9}{'params':>11}{'peak MiB':>10}")
    for device in devices:
        for head in heads:
            command = [sys.executable, __file__, "--child", "--heads", head, "--device", device,
                       "--iterations", str(args.iterations)]  # fmt: skip
            if args.config:
                command += ["--config", args.config]
            output = subprocess.run(
                command + args.overrides, capture_output=True, text=True, check=False
            )
            if output.returncode != 0:
                print(f"{head:<22}{device:<8} failed: {output.stderr.strip().splitlines()[-1]}")
                continue
            result = json.loads(output.stdout.strip().splitlines()[-1])
            peak = result.get("peak_cuda_mib", result["peak_rss_mib"])
            print(
                f"{head:<22}{device:<8}{result['images_per_batch']:>6}"
                f"{result['iterations_per_second']:>9.2f}{result['parameters']:>11,}{peak:>10.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
