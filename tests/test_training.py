"""The training loop on the tiny VG150 fixture: every head trains, resume is exact, schedules."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from basgg.config import Config, load_config
from basgg.data.vg150_format import VG150Files
from basgg.data.vocabulary import Vocabulary
from basgg.evaluation import rank_relations
from basgg.models import build_model
from basgg.models.heads import HEADS
from basgg.structures import SceneGraph
from basgg.training import loop
from basgg.training.checkpoint import read_checkpoint
from basgg.training.runs import train
from basgg.training.schedule import LearningRateSchedule, multistep_factor, warmup_factor


def tiny_overrides(files: VG150Files, output_dir: Path, cache_dir: Path) -> list[str]:
    """A config that trains in a second on the tiny fixture: random backbone and word
    vectors, 64-pixel images, 16-wide contexts, validation on one image."""
    return [
        "DATASETS.DATA_DIR", str(files.root),
        "DATASETS.VAL_SIZE", "1",
        "OUTPUT_DIR", str(output_dir),
        "FEATURE_CACHE_DIR", str(cache_dir),
        "GLOVE_PATH", "random",
        "MODEL.BACKBONE.WEIGHTS", "random",
        "MODEL.BACKBONE.IMAGE_SIZE", "64",
        "MODEL.ROI_RELATION_HEAD.CONTEXT_HIDDEN_DIM", "16",
        "MODEL.ROI_RELATION_HEAD.CONTEXT_POOLING_DIM", "16",
        "MODEL.ROI_RELATION_HEAD.TRANSFORMER.OBJ_LAYER", "1",
        "MODEL.ROI_RELATION_HEAD.TRANSFORMER.REL_LAYER", "1",
        "MODEL.ROI_RELATION_HEAD.TRANSFORMER.NUM_HEAD", "2",
        "MODEL.ROI_RELATION_HEAD.TRANSFORMER.KEY_DIM", "8",
        "MODEL.ROI_RELATION_HEAD.TRANSFORMER.VAL_DIM", "8",
        "MODEL.ROI_RELATION_HEAD.TRANSFORMER.INNER_DIM", "32",
        "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.BASE_LR", "0.05",
        "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.VAL_PERIOD", "2",
        "SOLVER.CHECKPOINT_PERIOD", "0",
        "SOLVER.LOG_PERIOD", "1",
    ]  # fmt: skip


def _config(files: VG150Files, output_dir: Path, cache_dir: Path, *extra: str) -> Config:
    return load_config(None, [*tiny_overrides(files, output_dir, cache_dir), *extra])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature_cache")


@pytest.mark.parametrize(
    ("predictor", "mode"),
    [(name, "predcls") for name in HEADS] + [("MotifPredictor", "sgcls")],
)
def test_two_iterations_train_the_head_and_not_the_backbone(
    predictor: str, mode: str, tiny_vg150: VG150Files, cache_dir: Path, tmp_path: Path
) -> None:
    extra = ["MODEL.ROI_RELATION_HEAD.PREDICTOR", predictor, "SOLVER.MAX_ITER", "1"]
    if mode == "sgcls":
        extra += ["MODEL.ROI_RELATION_HEAD.USE_GT_OBJECT_LABEL", "False"]
    state = train(_config(tiny_vg150, tmp_path, cache_dir, *extra), progress=False)
    assert state.iteration == 1
    first = read_checkpoint(tmp_path / "model_last.pth")
    extra[3] = "2"  # SOLVER.MAX_ITER 2: resumes from iteration 1
    state = train(_config(tiny_vg150, tmp_path, cache_dir, *extra), progress=False)
    assert state.iteration == 2 and state.best_iteration == 2
    second = read_checkpoint(tmp_path / "model_last.pth")
    assert second["iteration"] == 2 and second["model_info"]["predictor"] == predictor
    changed = {
        key
        for key, tensor in second["model"].items()
        if not torch.equal(tensor, first["model"][key])
    }
    assert any(key.startswith("relation_head.") for key in changed)
    assert not any(key.startswith("feature_extractor.") for key in changed)
    rows = _rows(tmp_path / "train_log.csv")
    assert [row["iteration"] for row in rows] == ["1", "2"]
    assert all(0 < float(row["loss_relation"]) < 100 for row in rows)
    if mode == "sgcls":
        assert float(rows[0]["loss_object"]) > 0
    validation = _rows(tmp_path / "val_log.csv")
    assert [row["iteration"] for row in validation] == ["2"] and "mR@50" in validation[0]
    for name in ("model_best.pth", "model_final.pth", "config.yaml"):
        assert (tmp_path / name).is_file()
    assert "optimizer" not in read_checkpoint(tmp_path / "model_final.pth")


def test_resume_after_a_crash_equals_an_uninterrupted_run(
    tiny_vg150: VG150Files, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dropout on (frequency bias 0.3, LSTM 0.2), batches straddling epochs (3 images, 2 per
    # batch), validation and plateau bookkeeping every 2 iterations
    extra = ["SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "3",
             "MODEL.ROI_RELATION_HEAD.CONTEXT_REL_LAYER", "2"]  # fmt: skip
    straight = tmp_path / "straight"
    train(_config(tiny_vg150, straight, cache_dir, *extra), progress=False)

    resumed = tmp_path / "resumed"
    original_step = loop.train_step
    calls = []

    def crash_on_fourth_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # iterations 0-2 done, model_last.pth written at 3
            raise KeyboardInterrupt
        return original_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", crash_on_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny_vg150, resumed, cache_dir, *extra), progress=False)
    assert read_checkpoint(resumed / "model_last.pth")["iteration"] == 3
    monkeypatch.setattr(loop, "train_step", original_step)
    torch.manual_seed(12345)  # the resumed run must not depend on the RNG it starts with
    train(_config(tiny_vg150, resumed, cache_dir, *extra), progress=False)

    expected = read_checkpoint(straight / "model_last.pth")
    actual = read_checkpoint(resumed / "model_last.pth")
    assert actual["iteration"] == expected["iteration"] == 6
    for key, tensor in expected["model"].items():
        assert torch.equal(actual["model"][key], tensor), key
    for index, state in expected["optimizer"]["state"].items():
        assert torch.equal(actual["optimizer"]["state"][index]["momentum_buffer"],
                           state["momentum_buffer"])  # fmt: skip
    assert actual["schedule"] == expected["schedule"]

    def losses(folder: Path) -> list[tuple[str, str]]:
        return [(row["iteration"], row["loss"]) for row in _rows(folder / "train_log.csv")]

    assert losses(resumed) == losses(straight) and len(losses(straight)) == 6


def test_warmup_and_multistep_factors() -> None:
    assert warmup_factor(0, warmup_iters=500, warmup_start=0.1) == pytest.approx(0.1)
    assert warmup_factor(250, warmup_iters=500, warmup_start=0.1) == pytest.approx(0.55)
    assert warmup_factor(500, warmup_iters=500, warmup_start=0.1) == 1.0
    assert multistep_factor(9999, steps=[10000, 16000], gamma=0.1) == 1.0
    assert multistep_factor(10000, steps=[10000, 16000], gamma=0.1) == pytest.approx(0.1)
    assert multistep_factor(16000, steps=[10000, 16000], gamma=0.1) == pytest.approx(0.01)


def test_plateau_schedule_cuts_after_patience_and_stops() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = LearningRateSchedule(
        optimizer, base_lr=0.01, warmup_iters=0, patience=2, max_decay_step=2, factor=0.1
    )
    assert schedule.apply(0) == pytest.approx(0.01)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    cuts = [schedule.record_validation(value) for value in (0.5, 0.6, 0.6, 0.59, 0.6)]
    assert cuts == [False, False, False, False, True]  # 3 validations without improvement
    assert schedule.apply(10) == pytest.approx(0.001) and not schedule.should_stop
    restored = LearningRateSchedule(None, base_lr=0.01, warmup_iters=0, max_decay_step=2)
    restored.load_state_dict(schedule.state_dict())
    assert restored.learning_rate(10) == pytest.approx(0.001)
    cuts = [schedule.record_validation(0.1) for _ in range(3)]
    assert cuts == [False, False, True] and schedule.should_stop


def test_metric_names_are_checked_before_training() -> None:
    loop.check_metric_name("mR@50", [20, 50, 100], "SOLVER.BEST_METRIC")
    with pytest.raises(ValueError, match="SOLVER.BEST_METRIC.*'mR@30'"):
        loop.check_metric_name("mR@30", [20, 50, 100], "SOLVER.BEST_METRIC")
    with pytest.raises(ValueError, match="'recall'"):
        loop.check_metric_name("recall", [20, 50, 100], "SOLVER.BEST_METRIC")


def test_prediction_ranks_every_ordered_pair_and_handles_tiny_images() -> None:
    vocabulary = Vocabulary(("__background__", "cat", "dog"), ("__background__", "on", "has"))
    table = torch.zeros(9, 3)  # row s * 3 + o: logits (background, on, has)
    table[1 * 3 + 1] = torch.tensor([0.0, 3.0, 0.0])  # cat-cat: "on", confident
    table[1 * 3 + 2] = torch.tensor([0.0, 0.0, 1.0])  # cat-dog: "has"
    table[2 * 3 + 1] = torch.tensor([2.0, 0.0, 0.0])  # dog-cat: background
    config = load_config(None, ["MODEL.ROI_RELATION_HEAD.PREDICTOR", "FrequencyPredictor",
                                "MODEL.BACKBONE.WEIGHTS", "random"])  # fmt: skip
    model = build_model(
        config, vocabulary=vocabulary, frequency_bias_init=table,
        object_word_vectors=torch.zeros(3, 50), rank_relations=rank_relations,
    ).eval()  # fmt: skip
    extractor = model.feature_extractor

    def graph(labels: list[int]) -> SceneGraph:
        n = len(labels)
        boxes = torch.tensor([[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(n)]).view(n, 4)
        return SceneGraph(boxes, torch.tensor(labels, dtype=torch.int64),
                          torch.zeros((0, 2), dtype=torch.int64),
                          torch.zeros(0, dtype=torch.int64), (20, 40))  # fmt: skip

    inputs = [graph([1, 2, 1]), graph([2]), graph([])]
    objects = [torch.zeros(g.num_objects, extractor.object_dim) for g in inputs]
    unions = [torch.zeros(g.num_objects * (g.num_objects - 1), extractor.union_dim)
              for g in inputs]  # fmt: skip
    three, one, empty = model.predict(inputs, objects, unions)
    # cat-cat pairs first (ties keep emission order), then cat-dog, then dog-cat
    assert three.relation_pairs.tolist() == [[0, 2], [2, 0], [0, 1], [2, 1], [1, 0], [1, 2]]
    assert three.predicates.tolist() == [1, 1, 2, 2, 1, 1]
    expected_top = torch.softmax(torch.tensor([0.0, 3.0, 0.0]), 0)
    torch.testing.assert_close(three.predicate_scores[0], expected_top)
    assert three.labels.tolist() == [1, 2, 1] and three.object_scores.tolist() == [1.0] * 3
    assert one.relation_pairs.tolist() == [[0, 0]]  # SGB's placeholder pair
    assert one.predicate_scores.tolist() == [[1.0, 0.0, 0.0]]
    assert empty.num_relations == 0
