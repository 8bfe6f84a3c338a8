"""Synthetic VG150-format ground truth and a matching predictions file, for the eval benches.

    python bench/eval_data.py --out /tmp/evalbench --test-images 2003 --mode sgdet

Writes ``DIR/data`` (VG-SGG-with-attri.h5, the dicts JSON and image_data.json; no images:
``basgg eval`` reads none) with ``--test-images`` test images and ``--train-images``
train-flag images, and ``DIR/predictions.h5`` in the basgg predictions format. Sizes follow
VG150: 150 object classes, 50 predicates, ~12 objects and ~6 relations per image. Prediction
rows are ranked best first, as models write them. In sgdet every image gets 21..27 detected
boxes and all their ordered pairs (~550 rows); in predcls/sgcls all ordered pairs of the GT
boxes. The score matrix is generated and written a chunk of images at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from basgg import __version__  # noqa: E402
from basgg.evaluation.predictions import FORMAT_NAME, FORMAT_VERSION  # noqa: E402

NUM_CLASSES, NUM_PREDICATES = 150, 51  # predicates include background
IMAGE_SIZE = (600, 800)  # (height, width); longer side 800 -> 1024 scale factor 1.28


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-images", type=int, default=2003)
    parser.add_argument("--train-images", type=int, default=None, help="default 2.37 x test")
    parser.add_argument("--mode", default="sgdet", choices=("predcls", "sgcls", "sgdet"))
    parser.add_argument("--chunk", type=int, default=1000, help="images generated at once")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def ground_truth(rng: np.random.Generator, n_images: int) -> dict[str, np.ndarray]:
    """Per-image GT objects (xyxy float pixels, labels) and relations, concatenated."""
    n_objects = rng.integers(4, 21, n_images)  # (I,) mean 12
    n_relations = np.minimum(rng.integers(1, 12, n_images), n_objects * (n_objects - 1))
    total = int(n_objects.sum())
    x1 = rng.integers(0, 600, total).astype(np.float64)
    y1 = rng.integers(0, 420, total).astype(np.float64)
    w = rng.integers(20, 200, total)
    h = rng.integers(20, 180, total)
    owner = np.repeat(np.arange(n_images), n_relations)  # (R,)
    first = np.repeat(np.cumsum(n_objects) - n_objects, n_relations)
    size = n_objects[owner]
    sub = rng.integers(0, size)
    obj = (sub + rng.integers(1, size)) % size  # never the subject
    return {
        "n_objects": n_objects,
        "n_relations": n_relations,
        "cx": (x1 + w // 2).astype(np.int32),
        "cy": (y1 + h // 2).astype(np.int32),
        "w": w.astype(np.int32),
        "h": h.astype(np.int32),
        "labels": np.minimum(rng.zipf(1.3, total), NUM_CLASSES).astype(np.int64),
        "pairs_local": np.stack([sub, obj], axis=1),
        "pairs_global": np.stack([sub + first, obj + first], axis=1),
        "predicates": np.minimum(rng.zipf(1.5, len(owner)), NUM_PREDICATES - 1).astype(np.int64),
    }


def write_dataset(root: Path, test: dict, train: dict) -> None:
    """The three VG150 files; images are train-flag first, then test (split 2)."""
    root.mkdir(parents=True, exist_ok=True)
    n_train, n_test = len(train["n_objects"]), len(test["n_objects"])
    both = {key: np.concatenate([train[key], test[key]]) for key in train if key != "pairs_local"}
    n_objects, n_relations = both["n_objects"], both["n_relations"]
    first_box = np.cumsum(n_objects) - n_objects
    first_rel = np.cumsum(n_relations) - n_relations
    # test relations point at test objects, which come after every train object
    shift = np.repeat([0, int(train["n_objects"].sum())], [len(train["predicates"]),
                                                        len(test["predicates"])])  # fmt: skip
    with h5py.File(root / "VG-SGG-with-attri.h5", "w") as h5:
        h5["split"] = np.repeat(np.array([0, 2], np.int32), [n_train, n_test])
        h5["img_to_first_box"] = first_box.astype(np.int32)
        h5["img_to_last_box"] = (first_box + n_objects - 1).astype(np.int32)
        h5["img_to_first_rel"] = first_rel.astype(np.int32)
        h5["img_to_last_rel"] = (first_rel + n_relations - 1).astype(np.int32)
        stored = np.stack([both["cx"], both["cy"], both["w"], both["h"]], axis=1)
        h5["boxes_1024"] = np.round(stored * 1.28).astype(np.int32)
        h5["labels"] = both["labels"][:, None]
        h5["relationships"] = (both["pairs_global"] + shift[:, None]).astype(np.int32)
        h5["predicates"] = both["predicates"][:, None]
    objects = [f"object{i}" for i in range(1, NUM_CLASSES + 1)]
    predicates = [f"predicate{i}" for i in range(1, NUM_PREDICATES)]
    dicts = {
        "label_to_idx": {name: i + 1 for i, name in enumerate(objects)},
        "idx_to_label": {str(i + 1): name for i, name in enumerate(objects)},
        "predicate_to_idx": {name: i + 1 for i, name in enumerate(predicates)},
        "idx_to_predicate": {str(i + 1): name for i, name in enumerate(predicates)},
        "attribute_to_idx": {},
        "idx_to_attribute": {},
        "object_count": {},
        "predicate_count": {},
        "attribute_count": {},
    }
    (root / "VG-SGG-dicts-with-attri.json").write_text(json.dumps(dicts))
    height, width = IMAGE_SIZE
    entries = [
        {"image_id": i + 1, "width": width, "height": height} for i in range(n_train + n_test)
    ]
    (root / "image_data.json").write_text(json.dumps(entries))


def predict_chunk(rng: np.random.Generator, gt_boxes: list, gt_labels: list, gt_pairs: list,
                  gt_predicates: list, sizes: np.ndarray, mode: str
                  ) -> dict[str, list[np.ndarray]]:  # fmt: skip
    """Ranked predictions for a chunk of images (lists of per-image GT arrays; ``sizes``:
    the number of predicted objects of each image)."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("boxes", "labels", "sigma", "pairs",
                                                          "scores")}  # fmt: skip
    for boxes_gt, labels_gt, pairs_gt, predicates_gt, n in zip(
        gt_boxes, gt_labels, gt_pairs, gt_predicates, sizes.tolist(), strict=True
    ):
        n_gt = len(labels_gt)
        if mode == "sgdet":
            x1 = rng.uniform(0, 600, n)
            y1 = rng.uniform(0, 420, n)
            boxes = np.stack(
                [x1, y1, x1 + rng.uniform(20, 200, n), y1 + rng.uniform(20, 180, n)], axis=1
            ).astype(np.float32)
            labels = rng.integers(1, NUM_CLASSES + 1, n)
            k = min(n, n_gt)
            boxes[:k] = boxes_gt[:k] + rng.normal(0, 4, (k, 4)).astype(np.float32)
            labels[:k] = np.where(rng.random(k) < 0.7, labels_gt[:k], labels[:k])
            sigma = rng.uniform(0.05, 1.0, n).astype(np.float32)
            sigma[:k] = rng.uniform(0.5, 1.0, k)
        else:
            boxes = boxes_gt.astype(np.float32)
            labels = labels_gt.copy()
            if mode == "sgcls":
                labels = np.where(rng.random(n) < 0.6, labels, rng.integers(1, NUM_CLASSES + 1, n))
            sigma = rng.uniform(0.3, 1.0, n).astype(np.float32)
        grid = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
        pairs = grid[grid[:, 0] != grid[:, 1]]  # (n(n-1), 2) all ordered pairs
        logits = rng.normal(0, 1.5, (len(pairs), NUM_PREDICATES)).astype(np.float32)
        code = pairs[:, 0] * n + pairs[:, 1]
        for (s, o), p in zip(pairs_gt, predicates_gt, strict=True):
            if s < n and o < n:
                logits[np.flatnonzero(code == s * n + o), p] += 3.5
        scores = np.exp(logits)
        scores /= scores.sum(axis=1, keepdims=True)
        if mode == "predcls":
            sigma = np.ones(n, np.float32)
        rank = scores[:, 1:].max(1) * sigma[pairs[:, 0]] * sigma[pairs[:, 1]]
        order = np.argsort(-rank, kind="stable")
        out["boxes"].append(boxes)
        out["labels"].append(labels.astype(np.int64))
        out["sigma"].append(sigma)
        out["pairs"].append(pairs[order].astype(np.int64))
        out["scores"].append(scores[order])
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n_train = args.train_images or int(round(2.37 * args.test_images))
    test, train = ground_truth(rng, args.test_images), ground_truth(rng, n_train)
    write_dataset(args.out / "data", test, train)
    # the evaluator's view of the test GT: decoded boxes; here boxes are re-derived exactly
    # as the loader does (cxcywh at 1024 -> pixels), so predictions sit on them
    from basgg.data.vg150_format import VG150Files
    from basgg.data.vg150_targets import read_split_targets

    targets, _ = read_split_targets(VG150Files(args.out / "data"), splits=["test"], val_size=0)
    gt = targets["test"]
    names = ["__background__", *(f"predicate{i}" for i in range(1, NUM_PREDICATES))]
    path = args.out / "predictions.h5"
    n_gt = gt.num_objects  # (I,)
    sizes = rng.integers(21, 28, len(gt)) if args.mode == "sgdet" else n_gt  # objects per image
    object_offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    relation_offsets = np.r_[0, np.cumsum(sizes * (sizes - 1))].astype(np.int64)
    with h5py.File(path, "w") as h5:  # contiguous, uncompressed: as write_predictions does
        shapes = {
            "boxes": ((object_offsets[-1], 4), np.float32),
            "labels": ((object_offsets[-1],), np.int64),
            "object_scores": ((object_offsets[-1],), np.float32),
            "relation_pairs": ((relation_offsets[-1], 2), np.int64),
            "predicate_scores": ((relation_offsets[-1], NUM_PREDICATES), np.float32),
        }
        for name, (shape, dtype) in shapes.items():
            h5.create_dataset(name, shape=shape, dtype=dtype)
        for first in range(0, len(gt), args.chunk):
            last = min(first + args.chunk, len(gt))
            chunk = gt.images(first, last)
            o, r = chunk.object_offsets, chunk.relation_offsets
            part = predict_chunk(
                rng,
                [chunk.boxes[o[i] : o[i + 1]] for i in range(len(chunk))],
                [chunk.labels[o[i] : o[i + 1]] for i in range(len(chunk))],
                [chunk.relation_pairs[r[i] : r[i + 1]] for i in range(len(chunk))],
                [chunk.predicates[r[i] : r[i + 1]] for i in range(len(chunk))],
                sizes[first:last],
                args.mode,
            )
            o0, o1 = object_offsets[first], object_offsets[last]
            r0, r1 = relation_offsets[first], relation_offsets[last]
            h5["boxes"][o0:o1] = np.concatenate(part["boxes"])
            h5["labels"][o0:o1] = np.concatenate(part["labels"])
            h5["object_scores"][o0:o1] = np.concatenate(part["sigma"])
            h5["relation_pairs"][r0:r1] = np.concatenate(part["pairs"])
            h5["predicate_scores"][r0:r1] = np.concatenate(part["scores"])
            print(f"  predictions {last}/{len(gt)}", end="\r", flush=True)
        h5["image_ids"] = gt.image_ids
        h5["image_sizes"] = gt.image_sizes
        h5["object_offsets"] = object_offsets
        h5["relation_offsets"] = relation_offsets
        h5.attrs.update(
            format=FORMAT_NAME, format_version=FORMAT_VERSION, mode=args.mode,
            num_predicates=NUM_PREDICATES, predicate_names=json.dumps(names), split="test",
            val_size=0, basgg_version=__version__,
        )  # fmt: skip
    rows = int(relation_offsets[-1])
    print(
        f"{args.out}: {len(gt)} test images ({n_train} train), {args.mode}, "
        f"{rows / len(gt):.0f} rows per image, {path.stat().st_size / 2**20:,.0f} MiB "
        f"predictions, {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
