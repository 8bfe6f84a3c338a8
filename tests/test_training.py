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
from basgg.training.feature_cache import (
    FeatureCache,
    join_feature_caches,
    read_feature_cache,
    save_feature_cache,
)
from basgg.training.runs import train
from basgg.training.schedule import LearningRateSchedule, multistep_factor, warmup_factor
from basgg.training.setup import build_optimization


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
        "SOLVER.BASE_LR", "0.025",  # x batch 2: 0.05
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


def test_constant_warmup() -> None:
    assert warmup_factor(0, warmup_iters=500, warmup_start=0.1, method="constant") == 0.1
    assert warmup_factor(499, warmup_iters=500, warmup_start=0.1, method="constant") == 0.1
    assert warmup_factor(500, warmup_iters=500, warmup_start=0.1, method="constant") == 1.0


def _sgb_model() -> torch.nn.Module:
    model = torch.nn.Module()
    model.linear = torch.nn.Linear(2, 3)  # linear.weight, linear.bias
    model.frequency_bias = torch.nn.Embedding(4, 3)  # frequency_bias.weight: "bias" in name
    model.frozen = torch.nn.Linear(2, 2)
    model.frozen.requires_grad_(False)
    return model


def test_optimizer_groups_follow_sgb() -> None:
    # SGB: lr = BASE_LR x IMS_PER_BATCH (rl_factor); "bias" in the name: x BIAS_LR_FACTOR and
    # WEIGHT_DECAY_BIAS. BASE_LR 0.01 at batch 12 trains at 0.12, biases at 0.24.
    overrides = [
        "SOLVER.BASE_LR", "0.01", "SOLVER.IMS_PER_BATCH", "12", "SOLVER.BIAS_LR_FACTOR", "2",
        "SOLVER.WEIGHT_DECAY", "1e-4", "SOLVER.WEIGHT_DECAY_BIAS", "0", "SOLVER.WARMUP_ITERS",
        "500", "SOLVER.WARMUP_FACTOR", "0.1", "SOLVER.SCHEDULE.TYPE", "WarmupMultiStepLR",
        "SOLVER.STEPS", "(1000, 2000)", "SOLVER.GAMMA", "0.1",
    ]  # fmt: skip
    config = load_config(overrides=overrides)
    model = _sgb_model()
    optimizer, schedule, _ = build_optimization(config, model, torch.device("cpu"))
    weights, biases = optimizer.param_groups
    assert [id(p) for p in weights["params"]] == [id(model.linear.weight)]
    assert {id(p) for p in biases["params"]} == {
        id(model.linear.bias), id(model.frequency_bias.weight)
    }  # fmt: skip
    assert weights["weight_decay"] == 1e-4 and biases["weight_decay"] == 0.0
    assert weights["momentum"] == 0.9
    for iteration, weight_rate in [(0, 0.012), (250, 0.066), (999, 0.12), (1000, 0.012),
                                   (2000, 0.0012)]:  # fmt: skip
        assert schedule.apply(iteration) == pytest.approx(weight_rate)
        assert weights["lr"] == pytest.approx(weight_rate)
        assert biases["lr"] == pytest.approx(2 * weight_rate)


def test_plateau_schedule_follows_sgb_and_stops() -> None:
    # SGB's WarmupReduceLROnPlateau: better means > best + THRESHOLD (absolute); the first
    # COOLDOWN validations and those after a cut are ignored; PATIENCE bad ones in a row cut.
    model = _sgb_model()
    config = load_config(
        overrides=[
            "SOLVER.WARMUP_ITERS", "0", "SOLVER.SCHEDULE.PATIENCE", "2",
            "SOLVER.SCHEDULE.THRESHOLD", "0.001", "SOLVER.SCHEDULE.COOLDOWN", "1",
            "SOLVER.SCHEDULE.FACTOR", "0.1", "SOLVER.SCHEDULE.MAX_DECAY_STEP", "2",
        ]
    )  # fmt: skip
    optimizer, schedule, _ = build_optimization(config, model, torch.device("cpu"))
    assert schedule.apply(0) == pytest.approx(0.12)  # default BASE_LR 0.01 x batch 12
    values = (0.5, 0.5005, 0.6, 0.6008, 0.59, 0.7, 0.1)
    # 0.5 best (cooldown: ignored); 0.5005 <= 0.501: bad 1; 0.6 best; 0.6008 <= 0.601: bad 1;
    # 0.59 bad 2 -> cut; 0.7 best (cooldown); 0.1 bad 1
    cuts = [schedule.record_validation(value) for value in values]
    assert cuts == [False, False, False, False, True, False, False]
    assert schedule.apply(10) == pytest.approx(0.012) and not schedule.should_stop
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.012)  # BIAS_LR_FACTOR 1
    restored = LearningRateSchedule(None, base_lr=0.12, warmup_iters=0, max_decay_step=2)
    restored.load_state_dict(schedule.state_dict())
    assert restored.learning_rate(10) == pytest.approx(0.012)
    assert schedule.record_validation(0.1) is True and schedule.should_stop  # bad 2 -> cut 2
    assert schedule.apply(11) == pytest.approx(0.0012)


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


def test_glove_dir_reads_the_file_of_embed_dim(tmp_path: Path) -> None:
    from basgg.training.setup import word_vectors

    (tmp_path / "glove.6B.4d.txt").write_text("man 1 2 3 4\nhorse 5 6 7 8\n")
    config = load_config(
        overrides=["GLOVE_DIR", str(tmp_path), "MODEL.ROI_RELATION_HEAD.EMBED_DIM", "4"]
    )
    vectors = word_vectors(config, ("man", "horse"))
    assert vectors.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    config = load_config(
        overrides=["GLOVE_DIR", str(tmp_path), "MODEL.ROI_RELATION_HEAD.EMBED_DIM", "8"]
    )
    with pytest.raises(ValueError, match=r"GLOVE_DIR: .*glove\.6B\.8d\.txt"):
        word_vectors(config, ("man",))


def test_resume_refuses_an_optimizer_state_of_other_groups() -> None:
    model = _sgb_model()
    config = load_config()
    optimizer, schedule, scaler = build_optimization(config, model, torch.device("cpu"))
    single = torch.optim.SGD([model.linear.weight], lr=0.1)  # basgg before SGB's groups
    checkpoint = {"optimizer": single.state_dict(), "schedule": {}, "iteration": 5}
    with pytest.raises(ValueError, match="1 parameter group.*this run 2"):
        loop.restore_training_state(
            checkpoint, optimizer=optimizer, schedule=schedule, scaler=scaler
        )


def test_feature_cache_subset_views_the_rows_of_the_chosen_images_as_stored(
    tmp_path: Path,
) -> None:
    """Image i has N_i objects and N_i (N_i - 1) pairs; row values encode (image, row)."""
    counts = [2, 3, 0, 2]
    objects = torch.cat([torch.full((n, 2), 10.0 * i) + torch.arange(n)[:, None] for i, n in
                         enumerate(counts)]).half()  # fmt: skip
    unions = torch.cat([torch.full((n * (n - 1), 3), 10.0 * i) + torch.arange(n * (n - 1))[:, None]
                        for i, n in enumerate(counts)]).half()  # fmt: skip
    cache = FeatureCache(
        object_features=objects, union_features=unions, num_objects=torch.tensor(counts)
    )
    subset = cache.subset([3, 0, 2])
    assert subset.num_objects.tolist() == [2, 2, 0]
    assert subset.object_features.data_ptr() == objects.data_ptr()  # a view: nothing copied
    for position, index in enumerate([3, 0, 2]):
        assert torch.equal(subset.objects(position), cache.objects(index))
        assert torch.equal(subset.unions(position), cache.unions(index))
    again = subset.subset([1, 0])  # a view of a view: images 0 and 3
    assert torch.equal(again.unions(0), cache.unions(0))
    assert torch.equal(again.unions(1), cache.unions(3))
    packed = subset.packed()  # rows in order, as a file stores them
    assert packed.object_features.dtype == torch.float16
    assert packed.object_features[:, 0].tolist() == [30.0, 31.0, 0.0, 1.0]
    assert packed.union_features[:, 0].tolist() == [30.0, 31.0, 0.0, 1.0]
    path = save_feature_cache(subset, tmp_path / "subset.pt")
    read = read_feature_cache(path, num_images=3)
    assert torch.equal(read.union_features, packed.union_features)
    joined = join_feature_caches([subset, cache.subset([1])])
    assert joined.num_objects.tolist() == [2, 2, 0, 3]
    assert torch.equal(joined.unions(3), cache.unions(1))
    assert len(cache.subset([])) == 0 and len(cache.subset([]).packed()) == 0
    with pytest.raises(ValueError, match="run past"):
        FeatureCache(object_features=objects, union_features=unions,
                      num_objects=torch.tensor([3]), object_start=torch.tensor([6]),
                      pair_start=torch.tensor([0]))  # fmt: skip


def test_val_prepared_at_the_first_validation_trains_the_same(
    tiny_vg150: VG150Files, tmp_path: Path
) -> None:
    # a fresh cache folder each: with val_at_first_validation the val features are extracted
    # 2 iterations in (no other process makes them here), and nothing else changes
    extra = ["SOLVER.MAX_ITER", "4", "MODEL.ROI_RELATION_HEAD.CONTEXT_REL_LAYER", "2"]
    runs = {}
    for deferred in (False, True):
        folder = tmp_path / f"deferred_{deferred}"
        config = _config(tiny_vg150, folder, tmp_path / f"cache_{deferred}", *extra)
        train(config, progress=False, val_at_first_validation=deferred)
        runs[deferred] = folder
    for name in ("train_log.csv", "val_log.csv"):
        timeless = [
            [{k: v for k, v in row.items() if k != "seconds"} for row in _rows(runs[d] / name)]
            for d in (True, False)
        ]
        assert timeless[0] == timeless[1] and timeless[0]
    expected = read_checkpoint(runs[False] / "model_best.pth")["model"]
    actual = read_checkpoint(runs[True] / "model_best.pth")["model"]
    assert all(torch.equal(actual[key], tensor) for key, tensor in expected.items())
    assert not list((tmp_path / "cache_True").glob("*.lock"))  # removed once written


def test_a_file_another_process_is_computing_is_waited_for_and_read(tmp_path: Path) -> None:
    import threading
    import time

    from basgg.training.caches import computed_once, computing
    from basgg.training.distributed import DistributedContext

    path = tmp_path / "value.txt"
    computed = []

    def compute_slowly() -> str:
        computed.append(threading.current_thread().name)
        time.sleep(0.5)
        return "42"

    def once(results: list[str]) -> None:
        results.append(
            computed_once(
                path,
                read=lambda: path.read_text() if path.exists() else None,
                compute=compute_slowly,
                save=lambda value, target: target.write_text(value),
                context=DistributedContext(),
                what="test value",
            )
        )

    results: list[str] = []
    first = threading.Thread(target=once, args=(results,), name="first")
    first.start()
    while not computed:  # the first one holds the lock and computes
        time.sleep(0.01)
    once(results)  # waits for it, then reads its file
    first.join()
    assert results == ["42", "42"] and computed == ["first"]
    assert not path.with_name("value.txt.lock").exists()
    with computing(tmp_path / "never_written.txt"):  # a failed computation keeps no file
        pass
    assert (tmp_path / "never_written.txt.lock").exists()
