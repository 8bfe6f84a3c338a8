"""SGDet end to end on the tiny fixture: detector checkpoint -> cached proposals -> training,
testing, BA-SGG stage 2 and predict_images (a random-weight detector: plumbing, not quality)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from basgg.config import config_to_dict, load_config
from basgg.data.vg150_format import VG150Files, read_vocabulary
from basgg.models.detector_builder import detector_from_config
from basgg.structures import Mode, SceneGraph
from basgg.training.checkpoint import CHECKPOINT_FORMAT, atomic_save, read_checkpoint
from basgg.training.detection_cache import merge_ground_truth, read_detections, save_detections
from basgg.training.runs import evaluate_checkpoint, load_trained_model, train
from tests.test_training import tiny_overrides

SGDET = [
    "MODEL.ROI_RELATION_HEAD.USE_GT_BOX", "False",
    "MODEL.ROI_RELATION_HEAD.USE_GT_OBJECT_LABEL", "False",
]  # fmt: skip
TINY_DETECTOR = [
    "MODEL.DETECTOR.BACKBONE_WEIGHTS", "random",
    "MODEL.DETECTOR.FPN_CHANNELS", "8",
    "MODEL.DETECTOR.REPRESENTATION_SIZE", "16",
    "MODEL.DETECTOR.MIN_SIZE", "64",
    "MODEL.DETECTOR.MAX_SIZE", "96",
    "MODEL.DETECTOR.RPN_PRE_NMS_TOP_N_TEST", "50",
    "MODEL.DETECTOR.RPN_POST_NMS_TOP_N_TEST", "20",
    "MODEL.DETECTOR.SCORE_THRESH", "0.0",
]  # fmt: skip


def _graph(boxes: list[list[float]], labels: list[int], scores: list[float] | None) -> SceneGraph:
    return SceneGraph(
        boxes=torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
        labels=torch.tensor(labels, dtype=torch.int64),
        relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
        predicates=torch.zeros(0, dtype=torch.int64),
        image_size=(100, 100),
        object_scores=None if scores is None else torch.tensor(scores),
    )


def test_training_proposals_are_ground_truth_then_new_detections() -> None:
    truth = _graph([[0, 0, 9, 9], [20, 20, 39, 39]], [1, 2], None)
    detections = _graph(
        [
            [0, 0, 9, 9],  # same label, IoU 1: a copy, dropped
            [0, 0, 9, 9],  # another label: kept
            [21, 20, 39, 39],  # same label, IoU 0.95: dropped
            [50, 50, 59, 59],  # new
            [60, 60, 69, 69],  # new but past max_boxes
        ],
        [1, 3, 2, 1, 1],
        [0.9, 0.3, 0.8, 0.7, 0.1],
    )
    logits = torch.arange(5 * 4, dtype=torch.float32).view(5, 4)
    truth_logits = -torch.ones(2, 4)
    graph, merged = merge_ground_truth(truth, truth_logits, detections, logits, max_boxes=4)
    assert graph.labels.tolist() == [1, 2, 1, 3]  # detections by score: 0.7, then 0.3
    assert graph.object_scores.tolist() == pytest.approx([1.0, 1.0, 0.7, 0.3])
    assert torch.equal(merged, torch.cat([truth_logits, logits[[3, 1]]]))
    # ground truth is never cut, whatever max_boxes says
    graph, _ = merge_ground_truth(truth, truth_logits, detections, logits, max_boxes=1)
    assert graph.num_objects == 2


def test_detection_cache_round_trip(tmp_path: Path) -> None:
    from basgg.training.detection_cache import SplitDetections

    graphs = [_graph([[0, 0, 9, 9]], [2], [0.5]), _graph([[1, 1, 5, 5]] * 0, [], [])]
    logits = [torch.randn(1, 4), torch.zeros(0, 4)]
    path = save_detections(SplitDetections(graphs=graphs, logits=logits), tmp_path / "d.pt")
    loaded = read_detections(path, num_images=2)
    assert loaded is not None
    assert loaded.graphs[0].labels.tolist() == [2] and loaded.graphs[1].num_objects == 0
    assert torch.equal(loaded.logits[0], logits[0])
    assert read_detections(path, num_images=3) is None
    path.write_bytes(b"not a tensor file")
    assert read_detections(path, num_images=2) is None


@pytest.fixture(scope="module")
def detector_checkpoint(tiny_vg150: VG150Files, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detector checkpoint in ``basgg train-detector``'s format, with random weights."""
    folder = tmp_path_factory.mktemp("detector")
    config = load_config(None, TINY_DETECTOR)
    vocabulary = read_vocabulary(tiny_vg150.dict_path)
    torch.manual_seed(0)
    detector = detector_from_config(
        config, num_classes=len(vocabulary.objects), backbone_weights=None
    )
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": detector.state_dict(),
        "model_info": {**detector.describe(), "object_names": list(vocabulary.objects)},
        "iteration": 0,
        "config": config_to_dict(config),
        "vocabulary": {
            "objects": list(vocabulary.objects),
            "predicates": list(vocabulary.predicates),
        },
    }
    return atomic_save(state, folder / "model_final.pth")


def _config(files: VG150Files, out: Path, cache: Path, detector: Path, *extra: str):
    # the relation run keeps its own post-processing but not the detector's architecture
    return load_config(
        None,
        [
            *tiny_overrides(files, out, cache),
            *SGDET,
            "MODEL.PRETRAINED_DETECTOR_CKPT", str(detector),
            "MODEL.DETECTOR.SCORE_THRESH", "0.0",
            "MODEL.DETECTOR.DETECTIONS_PER_IMG", "5",
            *extra,
        ],
    )  # fmt: skip


@pytest.mark.slow
def test_sgdet_trains_tests_and_runs_stage_two(
    tiny_vg150: VG150Files, detector_checkpoint: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    stage_one = tmp_path / "stage_one"
    config = _config(tiny_vg150, stage_one, cache, detector_checkpoint, "SOLVER.MAX_ITER", "2")
    state = train(config, progress=False)
    assert state.iteration == 2
    saved = read_checkpoint(stage_one / "model_final.pth")
    detector_state = read_checkpoint(detector_checkpoint)["model"]
    for key, tensor in detector_state.items():  # the frozen detector, unchanged
        assert torch.equal(saved["model"]["detector." + key], tensor), key
    assert saved["config"]["MODEL"]["DETECTOR"]["FPN_CHANNELS"] == 8  # from the detector
    assert saved["config"]["MODEL"]["DETECTOR"]["DETECTIONS_PER_IMG"] == 5  # the run's own
    assert saved["model_info"]["mode"] == "sgdet" and saved["model_info"]["detector"]
    assert sorted(p.name.split("_")[1] for p in cache.glob("detections_*.pt")) == [
        "train",
        "val",
    ]

    # test with a config that does not repeat the detector's architecture
    test_config = _config(tiny_vg150, stage_one, cache, detector_checkpoint)
    test_config.MODEL.DETECTOR.FPN_CHANNELS = 128
    result, predictions = evaluate_checkpoint(test_config, progress=False)
    assert predictions.is_file()
    assert "R@50" in result.metrics and "A@20" not in result.metrics  # no A@K in sgdet

    # BA-SGG stage 2 from the stage-1 SGDet model (no detector key needed)
    stage_two = tmp_path / "stage_two"
    two = _config(
        tiny_vg150, stage_two, cache, detector_checkpoint,
        "MODEL.PRETRAINED_DETECTOR_CKPT", "",
        "MODEL.PRETRAINED_MODEL_CKPT", str(stage_one / "model_final.pth"),
        "MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER", "True",
        "SOLVER.MAX_ITER", "1",
    )  # fmt: skip
    assert train(two, progress=False).iteration == 1
    final = read_checkpoint(stage_two / "model_final.pth")
    assert final["model_info"]["clean_branch"] and final["model_info"]["mode"] == "sgdet"

    # the whole model on an image: boxes from the detector, in the image's pixels
    vocabulary = read_vocabulary(tiny_vg150.dict_path)
    model = load_trained_model(
        test_config, stage_one / "model_final.pth", vocabulary=vocabulary, device="cpu"
    )
    assert model.mode is Mode.SGDET
    image = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8)
    (prediction,) = model.predict_images([image])
    height, width = image.shape[-2:]
    assert prediction.image_size == (height, width)
    assert 0 < prediction.num_objects <= 5
    assert (prediction.boxes[:, 2] <= width).all() and (prediction.boxes[:, 3] <= height).all()
    assert prediction.predicate_scores.shape[1] == len(vocabulary.predicates)
    with pytest.raises(ValueError, match="finds its own boxes"):
        model.predict_images([image], [prediction])
