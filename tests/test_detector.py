"""The SGDet detector: model outputs, detection mAP by hand, training, checkpoints, resume."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from basgg.cli import main
from basgg.config import load_config
from basgg.data.vg150 import VG150Dataset
from basgg.data.vg150_format import VG150Files
from basgg.evaluation.detection_map import (
    DetectionEvaluator,
    average_precision_101,
    greedy_matches,
)
from basgg.models.detector import Detector, build_detector
from basgg.structures import SceneGraph
from basgg.training import detector_training
from basgg.training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, atomic_save
from basgg.training.detector_training import (
    flip_horizontal,
    load_detector,
    load_image_at_json_size,
    load_training_batch,
)
from basgg.training.setup import resolve_config_path

NUM_CLASSES = 5  # 4 objects + background, as the tiny dataset of conftest.py


def tiny_detector(*, score_thresh: float = 0.0, detections_per_img: int = 7) -> Detector:
    torch.manual_seed(0)
    return build_detector(
        backbone_name="efficientnet_lite0",
        num_classes=NUM_CLASSES,
        backbone_weights=None,
        trainable_layers=3,
        fpn_channels=16,
        representation_size=32,
        min_size=64,
        max_size=96,
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=50,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=30,
        box_batch_size_per_image=32,
        score_thresh=score_thresh,
        nms_thresh=0.5,
        detections_per_img=detections_per_img,
        anchor_sizes=(16, 32, 64, 128),
    )


def graph(boxes: list[list[float]], labels: list[int], scores: list[float] | None = None,
          size: tuple[int, int] = (100, 100)) -> SceneGraph:  # fmt: skip
    return SceneGraph(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
        relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
        predicates=torch.zeros((0,), dtype=torch.int64),
        image_size=size,
        object_scores=None if scores is None else torch.tensor(scores, dtype=torch.float32),
    )


def square_image(height: int, width: int, box: list[int]) -> torch.Tensor:
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = 255
    return image


# ----------------------------------------------------------------------------- model


def test_a_few_steps_reduce_the_loss_on_a_trivial_dataset() -> None:
    detector = tiny_detector()
    boxes = [[8, 8, 40, 40], [30, 20, 70, 56]]
    images = [square_image(64, 80, box) for box in boxes]
    targets = [
        graph([box], [label], size=(64, 80)) for box, label in zip(boxes, [1, 3], strict=True)
    ]
    parameters = [p for p in detector.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=0.05, momentum=0.9)
    detector.train()
    totals = []
    for _ in range(12):
        losses = detector(images, targets)
        assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness",
                               "loss_rpn_box_reg"}  # fmt: skip
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(total.detach()))
    assert np.mean(totals[-3:]) < 0.5 * np.mean(totals[:3])


def test_detect_is_sorted_limited_and_agrees_with_torchvision() -> None:
    detector = tiny_detector(detections_per_img=7)
    images = [square_image(48, 64, [4, 4, 30, 30]), square_image(64, 72, [10, 20, 60, 50])]
    detector.train()
    detections = detector.detect(images)
    assert detector.training  # the mode is restored
    detector.eval()
    with torch.no_grad():
        reference = detector.rcnn([image.float() for image in images])
    for image, found, expected in zip(images, detections, reference, strict=True):
        n = len(found)
        assert 0 < n <= 7
        assert found.boxes.shape == (n, 4) and found.boxes.dtype == torch.float32
        assert found.class_logits.shape == (n, NUM_CLASSES)
        assert found.labels.dtype == torch.int64 and found.scores.dtype == torch.float32
        assert bool((found.scores[:-1] >= found.scores[1:]).all())
        assert 1 <= int(found.labels.min()) and int(found.labels.max()) < NUM_CLASSES
        assert float(found.boxes[:, 2].max()) <= image.shape[2] + 1e-4
        assert float(found.boxes[:, 3].max()) <= image.shape[1] + 1e-4
        # each score is the softmax of its own proposal's logits at its label
        probabilities = torch.softmax(found.class_logits, dim=1)
        assert torch.allclose(probabilities[torch.arange(n), found.labels], found.scores)
        # the same detections as torchvision's own post-processing
        torch.testing.assert_close(found.boxes, expected["boxes"])
        torch.testing.assert_close(found.scores, expected["scores"])
        assert torch.equal(found.labels, expected["labels"])


def test_detect_of_no_images_and_the_score_threshold() -> None:
    assert tiny_detector().detect([]) == []
    nothing = tiny_detector(score_thresh=1.0).detect([square_image(40, 50, [0, 0, 9, 9])])
    assert len(nothing[0]) == 0 and nothing[0].class_logits.shape == (0, NUM_CLASSES)


def test_classify_boxes_gives_one_row_per_box_in_order() -> None:
    detector = tiny_detector()
    images = [square_image(48, 64, [4, 4, 30, 30]), square_image(60, 60, [10, 10, 50, 50])]
    boxes = [torch.tensor([[4.0, 4, 30, 30], [0, 0, 64, 48], [20, 10, 40, 44]]), torch.zeros(0, 4)]
    logits = detector.classify_boxes(images, boxes)
    assert [tuple(row.shape) for row in logits] == [(3, NUM_CLASSES), (0, NUM_CLASSES)]
    reordered = detector.classify_boxes(images[:1], [boxes[0][[2, 0, 1]]])[0]
    torch.testing.assert_close(reordered, logits[0][[2, 0, 1]], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="2 images but 1 box sets"):
        detector.classify_boxes(images, boxes[:1])


def test_forward_names_the_bad_target() -> None:
    detector = tiny_detector().train()
    image = [square_image(40, 40, [0, 0, 9, 9])]
    with pytest.raises(ValueError, match=r"targets\[0\].*labels must be in 1\.\.4"):
        detector(image, [graph([[0, 0, 9, 9]], [5])])
    with pytest.raises(ValueError, match=r"targets\[0\].*boxes row 1"):
        detector(image, [graph([[0, 0, 9, 9], [5, 5, 5, 9]], [1, 2])])
    with pytest.raises(ValueError, match="call train"):
        detector.eval()(image, [graph([[0, 0, 9, 9]], [1])])


def test_flip_mirrors_pixels_and_boxes() -> None:
    image = torch.arange(24, dtype=torch.uint8).reshape(3, 2, 4)
    flipped, boxes = flip_horizontal(image, torch.tensor([[0.0, 0.0, 1.0, 2.0], [1, 0, 4, 1]]))
    assert flipped[0, 0].tolist() == [3, 2, 1, 0]
    assert boxes.tolist() == [[3.0, 0.0, 4.0, 2.0], [0.0, 0.0, 3.0, 1.0]]


def test_training_images_take_the_json_size_and_flip_by_stream_position(
    tmp_path: Path, annotations: dict, write_raw
) -> None:
    files = write_raw(tmp_path / "data", annotations)
    Image.new("RGB", (400, 300), (90, 40, 200)).save(files.image_path(101))  # JSON: 800x600
    dataset = VG150Dataset(files, split="train", val_size=0, load_images=False)
    index = dataset.image_ids.index(101)
    with pytest.warns(UserWarning, match="image is 400x300 but image_data.json says 800x600"):
        image = load_image_at_json_size(dataset, index)
    assert image.shape == (3, 600, 800) and image.dtype == torch.uint8
    items = [(position, index) for position in range(8)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, targets = load_training_batch(dataset, items, seed=0)
        again = load_training_batch(dataset, items, seed=0)[1]
    original, mirrored = [100.0, 50.0, 300.0, 150.0], [500.0, 50.0, 700.0, 150.0]
    first_boxes = [target.boxes[0].tolist() for target in targets]
    assert set(map(tuple, first_boxes)) == {tuple(original), tuple(mirrored)}
    assert first_boxes == [target.boxes[0].tolist() for target in again]
    for picture, boxes in zip(images, first_boxes, strict=True):
        assert torch.equal(picture, image if boxes == original else image.flip(-1))


# ----------------------------------------------------------------------------- mAP by hand


def mean_ap(truths: list[SceneGraph], predictions: list[SceneGraph]) -> float:
    evaluator = DetectionEvaluator(iou_threshold=0.5)
    evaluator.update(truths, predictions)
    return evaluator.compute().mean_ap


def test_ap_of_a_miss_between_two_hits() -> None:
    # recall .5 .5 1, precision 1 .5 2/3 -> envelope 1 2/3 2/3: 51 levels at 1, 50 at 2/3
    ap = average_precision_101(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2)
    assert ap == pytest.approx(253 / 303, rel=1e-12)


def test_each_ground_truth_is_matched_once() -> None:
    truth = graph([[0, 0, 10, 10], [50, 50, 60, 60]], [1, 1])
    # a duplicate of the first box (score .8) is a false positive between two hits
    prediction = graph(
        [[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], [1, 1, 1], [0.9, 0.8, 0.7]
    )
    assert mean_ap([truth], [prediction]) == pytest.approx(253 / 303, rel=1e-12)


def test_greedy_matching_takes_the_best_free_ground_truth_by_score() -> None:
    truths = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10]])
    # the first detection overlaps truth 1 most (9/11) and truth 0 by 6/14 only; the second
    # overlaps truth 1 by 9/11 too, but it is taken, and truth 0 by 4/16: a false positive
    boxes = torch.tensor([[4.0, 0, 14, 10], [6, 0, 16, 10]])
    assert greedy_matches(boxes, truths, 0.5).tolist() == [True, False]
    truth = graph(truths.tolist(), [2, 2])
    prediction = graph(boxes.tolist(), [2, 2], [0.9, 0.8])
    assert mean_ap([truth], [prediction]) == pytest.approx(51 / 101, rel=1e-12)


def test_iou_of_exactly_the_threshold_matches() -> None:
    truth = graph([[0, 0, 10, 10]], [1])
    assert mean_ap([truth], [graph([[0, 0, 10, 20]], [1], [0.5])]) == 1.0  # IoU 100 / 200
    assert mean_ap([truth], [graph([[0, 0, 10, 21]], [1], [0.5])]) == 0.0


def test_detections_are_ranked_over_all_images() -> None:
    truths = [graph([[0, 0, 10, 10]], [1]), graph([[0, 0, 10, 10]], [1])]
    predictions = [
        graph([[0, 0, 10, 10]], [1], [0.6]),
        graph([[50, 50, 60, 60], [0, 0, 10, 10]], [1, 1], [0.9, 0.3]),
    ]
    # ranked: .9 miss, .6 hit, .3 hit -> precision 0, 1/2, 2/3 -> envelope 2/3 everywhere
    assert mean_ap(truths, predictions) == pytest.approx(2 / 3, rel=1e-12)


def test_map_averages_classes_with_ground_truth_only() -> None:
    truth = graph([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 2])
    # class 1 found (AP 1), class 2 missed (AP 0), class 3 has no ground truth (ignored)
    prediction = graph([[0, 0, 10, 10], [40, 40, 50, 50]], [1, 3], [0.9, 0.95])
    evaluator = DetectionEvaluator()
    evaluator.update([truth], [prediction])
    result = evaluator.compute()
    assert result.average_precision == {1: 1.0, 2: 0.0}
    assert result.mean_ap == 0.5 and result.metric_name == "mAP@50"
    assert result.named(["__background__", "cat", "dog", "man"]) == {"cat": 1.0, "dog": 0.0}
    with pytest.raises(ValueError, match="object_scores is missing"):
        evaluator.update([truth], [graph([[0, 0, 10, 10]], [1])])


# ----------------------------------------------------------------------------- training


def detector_config(data: VG150Files, output: Path, *extra: str):
    return load_config(
        resolve_config_path("synthvg_detector.yaml"),
        [
            "DATASETS.DATA_DIR", str(data.root), "DATASETS.VAL_SIZE", "1",
            "OUTPUT_DIR", str(output), "MODEL.DETECTOR.BACKBONE_WEIGHTS", "random",
            "MODEL.DETECTOR.FPN_CHANNELS", "16", "MODEL.DETECTOR.REPRESENTATION_SIZE", "32",
            "MODEL.DETECTOR.MIN_SIZE", "48", "MODEL.DETECTOR.MAX_SIZE", "64",
            "MODEL.DETECTOR.BOX_BATCH_SIZE_PER_IMAGE", "32", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.BASE_LR", "0.005", "SOLVER.WARMUP_ITERS", "2", "SOLVER.MAX_ITER", "4",
            "SOLVER.VAL_PERIOD", "2", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.LOG_PERIOD", "1",
            *extra,
        ],
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_vg150: VG150Files, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("detector")
    detector_training_run(detector_config(tiny_vg150, output))
    return output


def detector_training_run(config) -> dict:
    from basgg.training.detector_runs import train_detector

    return train_detector(config, progress=False)


def test_training_writes_checkpoints_logs_and_metrics(trained: Path) -> None:
    for name in ("config.yaml", "model_last.pth", "model_best.pth", "model_final.pth",
                 "train_log.csv", "val_log.csv", "detector_metrics.json"):  # fmt: skip
        assert (trained / name).is_file(), name
    header, *rows = (trained / "train_log.csv").read_text().splitlines()
    assert header.split(",")[:5] == ["iteration", "lr", "loss", "loss_classifier", "loss_box_reg"]
    assert [row.split(",")[0] for row in rows] == ["1", "2", "3", "4"]
    assert (trained / "val_log.csv").read_text().splitlines()[0] == "iteration,best,mAP@50"


def test_load_detector_round_trip(trained: Path, tiny_vg150: VG150Files) -> None:
    detector, names = load_detector(trained / "model_final.pth")
    assert names == ["__background__", "cat", "dog", "man", "tree"]
    assert not detector.training and detector.num_classes == 5
    saved = torch.load(trained / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(saved[key], value) for key, value in detector.state_dict().items())
    image = square_image(48, 64, [4, 4, 30, 30])
    again, _ = load_detector(trained / "model_final.pth")
    first, second = detector.detect([image])[0], again.detect([image])[0]
    assert torch.equal(first.boxes, second.boxes) and torch.equal(first.labels, second.labels)


def test_load_detector_errors_name_the_file(trained: Path, tmp_path: Path) -> None:
    missing = tmp_path / "none.pth"
    with pytest.raises(CheckpointError, match=f"{missing}: checkpoint file not found"):
        load_detector(missing)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{corrupt}: cannot read"):
        load_detector(corrupt)
    relation = tmp_path / "relation.pth"
    atomic_save({"format": CHECKPOINT_FORMAT, "model": {}, "model_info": {"predictor": "M"}},
                relation)  # fmt: skip
    with pytest.raises(CheckpointError, match=f"{relation}: not a detector checkpoint"):
        load_detector(relation)
    with pytest.raises(CheckpointError, match="trained on 4 object classes .* differ from the 2"):
        load_detector(trained / "model_final.pth", object_names=["__background__", "a", "b"])
    state = torch.load(trained / "model_final.pth", weights_only=True)
    state["model_info"]["num_classes"] = 6
    state["model_info"]["object_names"].append("extra")
    tampered = tmp_path / "tampered.pth"
    atomic_save(state, tampered)
    with pytest.raises(CheckpointError, match=f"{tampered}: the checkpoint does not fit.*shape"):
        load_detector(tampered)


def test_eval_only_cli_scores_a_checkpoint(trained: Path, tiny_vg150: VG150Files, capsys) -> None:
    arguments = ["train-detector", "--config", "synthvg_detector.yaml", "--eval-only",
                 "--no-progress", "--checkpoint", str(trained / "model_final.pth"),
                 "DATASETS.DATA_DIR", str(tiny_vg150.root),
                 "OUTPUT_DIR", str(trained / "eval")]  # fmt: skip
    assert main(arguments) == 0
    assert "test mAP@50" in capsys.readouterr().out
    assert (trained / "eval" / "detector_metrics.json").is_file()
    assert main(["train-detector", "--checkpoint", "x.pth"]) == 2
    assert "--checkpoint goes with --eval-only" in capsys.readouterr().err


def test_a_killed_run_resumes_exactly(
    trained: Path, tiny_vg150: VG150Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = detector_training.train_step
    calls = []

    def dying_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # after model_last.pth of iteration 2
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    config = detector_config(tiny_vg150, tmp_path / "resumed")
    monkeypatch.setattr(detector_training, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        detector_training_run(config)
    monkeypatch.setattr(detector_training, "train_step", real_step)
    detector_training_run(detector_config(tiny_vg150, tmp_path / "resumed"))
    uninterrupted = torch.load(trained / "model_final.pth", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=True)
    assert resumed["iteration"] == uninterrupted["iteration"] == 4
    for key, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    rows = (tmp_path / "resumed" / "train_log.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["1", "2", "3", "4"]
