"""Scene-Graph-Benchmark.pytorch's relation evaluation loop, re-implemented for timing.

    python bench/sgb_eval.py PREDICTIONS.h5 --data DIR [--zero-shot FILE.npy] [--json OUT]

The per-image work follows SGB's ``sgg_eval.py`` and ``vg_eval.py`` (commit 6f75881) step
by step, with the same numpy operations in the same order: for every image, ``_triplet``
and ``_compute_pred_matches`` (``intersect_2d`` then one IoU per matching GT row) for the
graph-constrained rows, the full ``argsort_desc`` of the (R, 50) no-graph-constraint score
matrix and its top 100, ``reduce(np.union1d, pred_to_gt[:k])`` for each K in each of
Recall, NoGraphConstraintRecall, ZeroShotRecall, NGZeroShotRecall, PairAccuracy, MeanRecall
and NGMeanRecall, and the Python counting loops of the mean recalls. It is our own code,
written from reading SGB's, not a copy.

What it leaves out, so the comparison flatters SGB: importing torch and maskrcnn_benchmark,
loading the predictions with ``torch.load`` and converting every BoxList to numpy, resizing
predictions, SGB's COCO box mAP pass in sgdet, ``save_output`` (eval_results.pytorch and
visual_info.json) and torch's IoU (``boxlist_iou`` through BoxList; here plain numpy in
float32 with the same formula). Inputs are read whole with basgg's torch-free readers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import reduce
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from basgg.data.vg150_format import VG150Files  # noqa: E402
from basgg.data.vg150_targets import read_split_targets  # noqa: E402
from basgg.evaluation.predictions import read_predictions  # noqa: E402

KS = (20, 50, 100)


def intersect_2d(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """(m1, m2) bool: row i of x1 equals row j of x2 (SGB's broadcast comparison)."""
    return (x1[..., None] == x2.T[None, ...]).all(1)


def argsort_desc(scores: np.ndarray) -> np.ndarray:
    """(numel, ndim) indices of ``scores`` sorted descending (np.argsort, not stable)."""
    return np.column_stack(np.unravel_index(np.argsort(-scores.ravel()), scores.shape))


def bbox_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """(m, n) IoU with the +1 convention in float32, as maskrcnn_benchmark's boxlist_iou."""
    boxes1 = np.asarray(boxes1, np.float32)
    boxes2 = np.asarray(boxes2, np.float32)
    one = np.float32(1)
    area1 = (boxes1[:, 2] - boxes1[:, 0] + one) * (boxes1[:, 3] - boxes1[:, 1] + one)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + one) * (boxes2[:, 3] - boxes2[:, 1] + one)
    lt = np.maximum(boxes1[:, None, :2], boxes2[:, :2])
    rb = np.minimum(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = np.clip(rb - lt + one, 0, None)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter / (area1[:, None] + area2 - inter)


def triplet(relations, classes, boxes, predicate_scores=None, class_scores=None):
    sub_id, ob_id, pred_label = relations[:, 0], relations[:, 1], relations[:, 2]
    triplets = np.column_stack((classes[sub_id], pred_label, classes[ob_id]))
    triplet_boxes = np.column_stack((boxes[sub_id], boxes[ob_id]))
    triplet_scores = None
    if predicate_scores is not None and class_scores is not None:
        triplet_scores = np.column_stack(
            (class_scores[sub_id], predicate_scores, class_scores[ob_id])
        )
    return triplets, triplet_boxes, triplet_scores


def compute_pred_matches(gt_triplets, pred_triplets, gt_boxes, pred_boxes, iou_thres=0.5):
    keeps = intersect_2d(gt_triplets, pred_triplets)
    gt_has_match = keeps.any(1)
    pred_to_gt = [[] for _ in range(pred_boxes.shape[0])]
    for gt_ind, gt_box, keep_inds in zip(
        np.where(gt_has_match)[0], gt_boxes[gt_has_match], keeps[gt_has_match], strict=True
    ):
        boxes = pred_boxes[keep_inds]
        sub_iou = bbox_overlaps(gt_box[None, :4], boxes[:, :4])[0]
        obj_iou = bbox_overlaps(gt_box[None, 4:], boxes[:, 4:])[0]
        inds = (sub_iou >= iou_thres) & (obj_iou >= iou_thres)
        for i in np.where(keep_inds)[0][inds]:
            pred_to_gt[i].append(int(gt_ind))
    return pred_to_gt


class Results:
    """SGB's result_dict, as lists per K."""

    def __init__(self, num_rel: int) -> None:
        self.num_rel = num_rel
        self.recall = {k: [] for k in KS}
        self.recall_nogc = {k: [] for k in KS}
        self.zeroshot = {k: [] for k in KS}
        self.ng_zeroshot = {k: [] for k in KS}
        self.accuracy_hit = {k: [] for k in KS}
        self.accuracy_count = {k: [] for k in KS}
        self.mean_collect = {k: [[] for _ in range(num_rel)] for k in KS}
        self.ng_mean_collect = {k: [[] for _ in range(num_rel)] for k in KS}


def mean_recall_items(collect, pred_to_gt, gt_rels, num_rel):
    for k in collect:
        match = reduce(np.union1d, pred_to_gt[:k])
        recall_hit = [0] * num_rel
        recall_count = [0] * num_rel
        for idx in range(gt_rels.shape[0]):
            local_label = gt_rels[idx, 2]
            recall_count[int(local_label)] += 1
            recall_count[0] += 1
        for idx in range(len(match)):
            local_label = gt_rels[int(match[idx]), 2]
            recall_hit[int(local_label)] += 1
            recall_hit[0] += 1
        for n in range(num_rel):
            if recall_count[n] > 0:
                collect[k][n].append(float(recall_hit[n] / recall_count[n]))


def zero_shot_recall(store, pred_to_gt, zeroshot_idx):
    for k in store:
        match = reduce(np.union1d, pred_to_gt[:k])
        if len(zeroshot_idx) > 0:
            match_list = match.tolist() if not isinstance(match, (list, tuple)) else match
            hits = len(zeroshot_idx) + len(match_list) - len(set(zeroshot_idx + match_list))
            store[k].append(float(hits) / float(len(zeroshot_idx)))


def evaluate_one_image(local: dict, mode: str, zeroshot_triplets: np.ndarray, out: Results):
    """SGB's ``evaluate_relation_of_one_image`` with all seven evaluators."""
    gt_rels = local["gt_rels"]
    if len(gt_rels) == 0:
        return
    if mode != "sgdet":  # SGPairAccuracy.prepare_gtpair
        pred_pair_idx = local["pred_rel_inds"][:, 0] * 1024 + local["pred_rel_inds"][:, 1]
        gt_pair_idx = gt_rels[:, 0] * 1024 + gt_rels[:, 1]
        pred_pair_in_gt = (pred_pair_idx[:, None] == gt_pair_idx[None, :]).sum(-1) > 0
    zeroshot_idx = []
    for _ in range(2):  # SGZeroShotRecall and SGNGZeroShotRecall each prepare
        gt_classes = local["gt_classes"]
        sub_id, ob_id, pred_label = gt_rels[:, 0], gt_rels[:, 1], gt_rels[:, 2]
        gt_triplets = np.column_stack((gt_classes[sub_id], gt_classes[ob_id], pred_label))
        zeroshot_idx = np.where(intersect_2d(gt_triplets, zeroshot_triplets).sum(-1) > 0)[0]
        zeroshot_idx = zeroshot_idx.tolist()
    if mode == "predcls":
        local["pred_boxes"] = local["gt_boxes"]
        local["pred_classes"] = local["gt_classes"]
        local["obj_scores"] = np.ones(local["gt_classes"].shape[0])
    if local["pred_rel_inds"].shape[0] == 0:
        return
    rel_scores, pred_rel_inds = local["rel_scores"], local["pred_rel_inds"]
    pred_classes, pred_boxes, obj_scores = (
        local["pred_classes"], local["pred_boxes"], local["obj_scores"],
    )  # fmt: skip
    # SGRecall
    pred_rels = np.column_stack((pred_rel_inds, 1 + rel_scores[:, 1:].argmax(1)))
    pred_scores = rel_scores[:, 1:].max(1)
    gt_triplets, gt_triplet_boxes, _ = triplet(gt_rels, local["gt_classes"], local["gt_boxes"])
    pred_triplets, pred_triplet_boxes, _ = triplet(
        pred_rels, pred_classes, pred_boxes, pred_scores, obj_scores
    )
    pred_to_gt = compute_pred_matches(
        gt_triplets, pred_triplets, gt_triplet_boxes, pred_triplet_boxes
    )
    for k in out.recall:
        match = reduce(np.union1d, pred_to_gt[:k])
        out.recall[k].append(float(len(match)) / float(gt_rels.shape[0]))
    # SGNoGraphConstraintRecall
    obj_scores_per_rel = obj_scores[pred_rel_inds].prod(1)
    nogc_overall_scores = obj_scores_per_rel[:, None] * rel_scores[:, 1:]
    nogc_score_inds = argsort_desc(nogc_overall_scores)[:100]
    nogc_pred_rels = np.column_stack(
        (pred_rel_inds[nogc_score_inds[:, 0]], nogc_score_inds[:, 1] + 1)
    )
    nogc_pred_scores = rel_scores[nogc_score_inds[:, 0], nogc_score_inds[:, 1] + 1]
    nogc_pred_triplets, nogc_pred_triplet_boxes, _ = triplet(
        nogc_pred_rels, pred_classes, pred_boxes, nogc_pred_scores, obj_scores
    )
    nogc_pred_to_gt = compute_pred_matches(
        gt_triplets, nogc_pred_triplets, gt_triplet_boxes, nogc_pred_triplet_boxes
    )
    for k in out.recall_nogc:
        match = reduce(np.union1d, nogc_pred_to_gt[:k])
        out.recall_nogc[k].append(float(len(match)) / float(gt_rels.shape[0]))
    # SGPairAccuracy
    for k in out.accuracy_hit:
        if mode != "sgdet":
            gt_pair_pred_to_gt = [p for p, flag in zip(pred_to_gt, pred_pair_in_gt, strict=True)
                                  if flag]  # fmt: skip
            if len(gt_pair_pred_to_gt) > 0:
                gt_pair_match = reduce(np.union1d, gt_pair_pred_to_gt[:k])
            else:
                gt_pair_match = []
            out.accuracy_hit[k].append(float(len(gt_pair_match)))
            out.accuracy_count[k].append(float(gt_rels.shape[0]))
    # SGMeanRecall, SGNGMeanRecall
    mean_recall_items(out.mean_collect, pred_to_gt, gt_rels, out.num_rel)
    mean_recall_items(out.ng_mean_collect, nogc_pred_to_gt, gt_rels, out.num_rel)
    # SGZeroShotRecall, SGNGZeroShotRecall
    zero_shot_recall(out.zeroshot, pred_to_gt, zeroshot_idx)
    zero_shot_recall(out.ng_zeroshot, nogc_pred_to_gt, zeroshot_idx)


def final_metrics(out: Results, mode: str) -> dict[str, float]:
    metrics = {}
    for k in KS:
        metrics[f"R@{k}"] = float(np.mean(out.recall[k]))
        metrics[f"ngR@{k}"] = float(np.mean(out.recall_nogc[k]))
        metrics[f"zR@{k}"] = float(np.mean(out.zeroshot[k])) if out.zeroshot[k] else float("nan")
        metrics[f"ngzR@{k}"] = (
            float(np.mean(out.ng_zeroshot[k])) if out.ng_zeroshot[k] else float("nan")
        )
        for name, collect in (("mR", out.mean_collect), ("ngmR", out.ng_mean_collect)):
            total = 0.0
            for idx in range(out.num_rel - 1):  # calculate_mean_recall
                values = collect[k][idx + 1]
                total += 0.0 if len(values) == 0 else np.mean(values)
            metrics[f"{name}@{k}"] = float(total / float(out.num_rel - 1))
        if mode != "sgdet":
            metrics[f"A@{k}"] = float(np.mean(out.accuracy_hit[k]) / np.mean(out.accuracy_count[k]))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--zero-shot", type=Path, required=True, help="(T, 3) .npy")
    parser.add_argument("--val-size", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the metrics here")
    args = parser.parse_args()
    start = time.perf_counter()
    targets, vocabulary = read_split_targets(
        VG150Files(args.data), splits=["test"], val_size=args.val_size
    )
    gt = targets["test"]
    content = read_predictions(args.predictions)
    prediction, mode = content.packed, content.mode.value
    zeroshot_triplets = np.load(args.zero_shot)
    out = Results(vocabulary.num_predicates)
    go, gr = gt.object_offsets, gt.relation_offsets
    po, pr = prediction.object_offsets, prediction.relation_offsets
    for i in range(len(gt)):
        local = {
            "gt_rels": np.column_stack(
                (gt.relation_pairs[gr[i] : gr[i + 1]], gt.predicates[gr[i] : gr[i + 1]])
            ),
            "gt_boxes": gt.boxes[go[i] : go[i + 1]],
            "gt_classes": gt.labels[go[i] : go[i + 1]],
            "pred_rel_inds": prediction.relation_pairs[pr[i] : pr[i + 1]],
            "rel_scores": prediction.predicate_scores[pr[i] : pr[i + 1]],
            "pred_boxes": prediction.boxes[po[i] : po[i + 1]],
            "pred_classes": prediction.labels[po[i] : po[i + 1]],
            "obj_scores": prediction.object_scores[po[i] : po[i + 1]],
        }
        evaluate_one_image(local, mode, zeroshot_triplets, out)
    metrics = final_metrics(out, mode)
    seconds = time.perf_counter() - start
    print(f"SGB loop: {len(gt)} images, {mode}, {seconds:.1f} s in the process")
    print(" ".join(f"{key} {100 * value:.2f}" for key, value in metrics.items()))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
