"""``basgg view`` site generation time and size on a dataset split, with synthetic predictions.

Writes a predcls predictions file for every image of the split (every ordered pair of GT
objects, scores drawn so that about half the GT triplets rank high), then times
``DatasetSource`` (read, score, outcomes) and ``write_site`` (thumbnails, data scripts)
separately, and a second ``write_site`` run (thumbnails exist). Usage::

    python bench/view_site.py --data datasets/synthvg --out outputs/bench_view
    python bench/view_site.py --data datasets/synthvg --out outputs/bench_view --compare
    python bench/view_site.py --fake-test-images 26446 --out outputs/bench_view_vg  # VG150-sized

``--fake-test-images N`` first writes a VG150-format dataset of N test images (and 100 train
images) with VG150's vocabulary, 12 objects and 6 relations per image and 500 x 375 JPEGs.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from basgg.data.vg150 import VG150Dataset  # noqa: E402
from basgg.data.vg150_format import VG150Files, write_vg150  # noqa: E402
from basgg.data.vocabulary import Vocabulary  # noqa: E402
from basgg.evaluation import rank_relations, write_predictions  # noqa: E402
from basgg.structures import SceneGraph  # noqa: E402
from basgg.view.dataset import DatasetSource  # noqa: E402
from basgg.view.site import write_site  # noqa: E402


def synthetic_predictions(
    ground_truths: list[SceneGraph], num_predicates: int, *, seed: int, max_pairs: int = 4096
) -> list[SceneGraph]:
    """Ranked predcls-style predictions: all ordered pairs, the GT predicate often likely."""
    generator = np.random.default_rng(seed)
    out = []
    for gt in ground_truths:
        n = gt.num_objects
        subject, object_ = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        keep = subject != object_
        pairs = np.stack([subject[keep], object_[keep]], axis=1)[:max_pairs]  # (R, 2)
        if len(pairs) == 0:
            pairs = np.zeros((1, 2), np.int64)
        scores = generator.random((len(pairs), num_predicates)).astype(np.float32) ** 4
        lookup = {(int(s), int(o)): int(p) for (s, o), p in zip(
            gt.relation_pairs.tolist(), gt.predicates.tolist(), strict=True)}  # fmt: skip
        for row, (s, o) in enumerate(pairs.tolist()):
            if (s, o) in lookup and generator.random() < 0.6:
                scores[row, lookup[(s, o)]] += 1.0 + generator.random()
        scores /= scores.sum(axis=1, keepdims=True)
        graph = SceneGraph(
            boxes=gt.boxes, labels=gt.labels,
            relation_pairs=torch.from_numpy(pairs.astype(np.int64)),
            predicates=torch.from_numpy(scores[:, 1:].argmax(axis=1) + 1),
            image_size=gt.image_size, image_id=gt.image_id,
            object_scores=torch.ones(n), predicate_scores=torch.from_numpy(scores),
        )  # fmt: skip
        out.append(rank_relations(graph))
    return out


def fake_dataset(root: Path, num_test: int, *, seed: int = 0) -> Path:
    """A VG150-format dataset of ``num_test`` test images (VG150 vocabulary), written once."""
    files = VG150Files(root)
    if files.roidb_path.is_file():
        return root
    from PIL import Image

    vocabulary = Vocabulary.vg150()
    generator = np.random.default_rng(seed)
    graphs = []
    files.image_dir_path.mkdir(parents=True, exist_ok=True)
    for index in range(num_test + 100):
        corners = generator.integers(0, 900, (12, 2)).astype(np.float32)
        sizes = generator.integers(30, 300, (12, 2)).astype(np.float32)
        boxes = np.concatenate([corners, np.minimum(corners + sizes, 1023)], axis=1) * (500 / 1024)
        boxes = np.round(boxes * 1024 / 500) * (500 / 1024)  # on the 1024 grid: exact reads
        pairs = generator.choice(132, 6, replace=False)
        subject, object_ = pairs // 11, pairs % 11
        object_ = object_ + (object_ >= subject)
        graphs.append(
            SceneGraph(
                boxes=torch.from_numpy(boxes.astype(np.float32)),
                labels=torch.from_numpy(generator.integers(1, 151, 12)),
                relation_pairs=torch.from_numpy(np.stack([subject, object_], 1).astype(np.int64)),
                predicates=torch.from_numpy(generator.integers(1, 51, 6)),
                image_size=(375, 500),
                image_id=index + 1,
            )
        )
        colour = tuple(int(c) for c in generator.integers(0, 255, 3))
        Image.new("RGB", (500, 375), colour).save(files.image_path(index + 1), quality=85)
    write_vg150(files, graphs, [0] * 100 + [2] * num_test, vocabulary)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--fake-test-images", type=int, metavar="N")
    parser.add_argument("--max-pairs", type=int, default=4096, help="predicted rows per image")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--val-size", type=int, default=300)
    parser.add_argument("--compare", action="store_true", help="two predictions files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.fake_test_images:
        wall0 = time.perf_counter()
        args.data = fake_dataset(args.out / "dataset", args.fake_test_images)
        args.val_size = 0
        print(f"dataset: {time.perf_counter() - wall0:.1f} s")
    files = VG150Files(args.data)
    dataset = VG150Dataset(files, split=args.split, val_size=args.val_size, load_images=False)
    ground_truths = [dataset.ground_truth(i) for i in range(len(dataset))]
    names = dataset.vocabulary.predicates
    paths = []
    for seed in range(2 if args.compare else 1):
        path = args.out / f"synthetic_{seed}.h5"
        if not path.is_file():
            predictions = synthetic_predictions(
                ground_truths, len(names), seed=seed, max_pairs=args.max_pairs
            )
            write_predictions(path, predictions, mode="predcls", predicate_names=names,
                              split=args.split, val_size=args.val_size)  # fmt: skip
        paths.append(path)
    print(f"{len(ground_truths)} images, {sum(g.num_relations for g in ground_truths)} GT rows")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    source = DatasetSource(paths, args.data, val_size=args.val_size)
    print(f"read + score + outcomes: {time.perf_counter() - wall0:.1f} s wall, "
          f"{time.process_time() - cpu0:.1f} s CPU")  # fmt: skip
    for attempt in ("first", "again"):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = write_site(source, args.out / "site")
        print(f"write_site ({attempt}): {time.perf_counter() - wall0:.1f} s wall, "
              f"{time.process_time() - cpu0:.1f} s CPU, {report.thumbnails_written} thumbnails, "
              f"{report.bytes / 1e6:.1f} MB")  # fmt: skip
    biggest = max((p.stat().st_size, p) for p in (args.out / "site").rglob("*.js"))
    print(
        f"largest file: {biggest[1].name} {biggest[0] / 1e6:.2f} MB; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB"
    )


if __name__ == "__main__":
    main()
