"""BA-SGG stage 2: the adjustment matrix, the BPL filter, ``basgg confmat``, stage-2 training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import tiny_overrides

from basgg.cli import main
from basgg.data.balanced import balance_predicates, scaled_cap
from basgg.data.vg150 import VG150Dataset
from basgg.data.vg150_format import VG150Files
from basgg.models.predicate_classifier import adjustment_matrix

HEAD = "MODEL.ROI_RELATION_HEAD."


def test_adjustment_matrix_by_hand() -> None:
    confusion = np.array([[5, 1, 1], [2, 3, 1], [0, 0, 0]])
    # row/col 0 zeroed, C[0,0] = 1; row 1 -> P = [0, 3/4, 1/4]; A = (P + I) / 2; row 2 identity
    expected = torch.tensor([[1, 0, 0], [0, 0.875, 0.125], [0, 0, 1]], dtype=torch.float32)
    assert torch.allclose(adjustment_matrix(confusion), expected, atol=1e-6)


def test_balance_keeps_the_first_head_rows_in_file_order() -> None:
    predicates = np.array([3, 1, 3, 2, 3, 1, 2])  # counts: 3 x3, 1 x2, 2 x2 (tie: 1 first)
    selection = balance_predicates(predicates, num_head=2, max_per_predicate=1)
    assert selection.head_predicates == (3, 1)
    assert selection.kept.tolist() == [True, True, False, True, False, False, True]
    assert (selection.rows_before, selection.rows_after, selection.max_per_predicate) == (7, 4, 1)


def test_scaled_cap_is_a_fraction_of_the_median_head_count() -> None:
    predicates = np.array([3, 1, 3, 2, 3, 1, 2, 4])
    heads = np.array([3, 1])  # counts 3 and 2: median 2.5
    assert scaled_cap(predicates, heads, 0.5) == 1  # round(1.25)
    assert scaled_cap(predicates, heads, 1.0) == 2  # round(2.5), banker's rounding
    selection = balance_predicates(predicates, num_head=2, max_per_predicate=-1, scale_fraction=1)
    assert selection.max_per_predicate == 2 and selection.rows_after == 7


def test_dataset_balance_drops_emptied_images_and_keeps_boxes(tiny_vg150: VG150Files) -> None:
    # train (val_size 1): 102 (near, on, has), 104 (on), 106 (has, on); head = on, cap 1
    dataset = VG150Dataset(tiny_vg150, split="train", val_size=1, filter_duplicate_rels=False)
    assert dataset.image_ids == [102, 104, 106]
    selection = dataset.balance_predicates(num_head=1, max_per_predicate=1, scale_fraction=0.25)
    assert selection.head_predicates == (3,) and selection.rows_after == 4
    assert dataset.image_ids == [102, 106]
    first, second = dataset.ground_truth(0), dataset.ground_truth(1)
    assert first.predicates.tolist() == [2, 3, 1]
    assert second.predicates.tolist() == [1] and second.num_objects == 3  # every box kept
    assert dataset.relation_counts().tolist() == [0, 2, 1, 1]
    test = VG150Dataset(tiny_vg150, split="test", val_size=1)
    with pytest.raises(ValueError, match="only the train split"):
        test.balance_predicates(num_head=1, max_per_predicate=1, scale_fraction=0.25)


@pytest.fixture(scope="module")
def stage_one(tiny_vg150: VG150Files, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides of a tiny stage-1 run, trained for 2 iterations, and its confusion matrix."""
    folder = tmp_path_factory.mktemp("ba_sgg")
    overrides = tiny_overrides(tiny_vg150, folder / "stage1", folder / "cache")
    assert main(["train", "--no-progress", *overrides, "SOLVER.MAX_ITER", "2"]) == 0
    assert main(["confmat", "--no-progress", *overrides]) == 0
    return overrides


def test_confmat_counts_every_train_relation_once(stage_one: list[str]) -> None:
    output = Path(stage_one[stage_one.index("OUTPUT_DIR") + 1])
    counts = np.load(output / "confusion_matrix.npy")
    assert counts.shape == (4, 4) and counts.dtype == np.int64
    assert counts.sum(axis=1).tolist() == [0, 2, 1, 3]  # train GT rows: has 2, near 1, on 3
    assert counts[:, 0].sum() == 0  # column = 1 + argmax over foreground
    assert (output / "confusion_matrix.png").is_file()


def test_stage_two_trains_only_the_clean_branch_and_tests(
    stage_one: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    stage_one_dir = Path(stage_one[stage_one.index("OUTPUT_DIR") + 1])
    overrides = [*stage_one, "OUTPUT_DIR", str(tmp_path / "stage2"), "SOLVER.MAX_ITER", "2"]
    flags = [
        "MODEL.PRETRAINED_MODEL_CKPT", str(stage_one_dir / "model_final.pth"),
        HEAD + "WITH_CLEAN_CLASSIFIER", "True",
        HEAD + "WITH_TRANSFER_CLASSIFIER", "True",
        HEAD + "CONFUSION_MATRIX_FILE", str(stage_one_dir / "confusion_matrix.npy"),
        HEAD + "BPL_NUM_HEAD_PREDICATES", "1",
        HEAD + "BPL_MAX_PER_PREDICATE", "1",
    ]  # fmt: skip
    assert main(["train", "--no-progress", *overrides, *flags]) == 0
    assert "balanced predicate learning: 1 head predicates [3]" in capsys.readouterr().out
    before = torch.load(stage_one_dir / "model_final.pth", weights_only=True)["model"]
    after_state = torch.load(tmp_path / "stage2" / "model_final.pth", weights_only=True)
    after = after_state["model"]
    assert after_state["model_info"]["clean_branch"] is True
    for key, tensor in before.items():
        if "running_" in key or "num_batches_tracked" in key:
            continue  # batch-norm statistics: modules stay in train mode, as in the reference
        assert torch.equal(tensor, after[key]), f"{key} changed in stage 2"
    clean = [key for key in after if "_clean." in key]
    assert clean and any(
        not torch.equal(after[key], before[key.replace("_clean.", ".")]) for key in clean
    )
    adjustment = after["relation_head.classifier.adjustment"]
    assert torch.allclose(adjustment.sum(dim=1), torch.ones(4))
    assert main(["test", "--no-progress", *overrides, *flags]) == 0
    assert "mode predcls" in capsys.readouterr().out


def test_stage_two_without_its_inputs_names_the_key(
    stage_one: list[str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = [*stage_one, "OUTPUT_DIR", str(tmp_path / "stage2")]
    assert main(["train", *overrides, HEAD + "WITH_CLEAN_CLASSIFIER", "True"]) == 2
    assert "MODEL.PRETRAINED_MODEL_CKPT" in capsys.readouterr().err
    stage_one_dir = Path(stage_one[stage_one.index("OUTPUT_DIR") + 1])
    checkpoint = ["MODEL.PRETRAINED_MODEL_CKPT", str(stage_one_dir / "model_final.pth")]
    assert main(["train", *overrides, *checkpoint, HEAD + "WITH_TRANSFER_CLASSIFIER", "True"]) == 2
    assert "MODEL.ROI_RELATION_HEAD.CONFUSION_MATRIX_FILE" in capsys.readouterr().err


def test_demo_stage_configs_share_everything_but_the_stage(tmp_path: Path) -> None:
    from basgg.commands.demo import comparison_table, demo_configs

    _, stage_one, stage_two = demo_configs(None, ["OUTPUT_DIR", str(tmp_path)])
    assert stage_one.OUTPUT_DIR == str(tmp_path / "stage1")
    assert stage_two.MODEL.PRETRAINED_MODEL_CKPT == str(tmp_path / "stage1" / "model_best.pth")
    head_one, head_two = stage_one.MODEL.ROI_RELATION_HEAD, stage_two.MODEL.ROI_RELATION_HEAD
    assert not head_one.WITH_CLEAN_CLASSIFIER and head_two.WITH_CLEAN_CLASSIFIER
    assert head_two.WITH_TRANSFER_CLASSIFIER and head_two.BPL_MAX_PER_PREDICATE == -1
    assert head_one.CONTEXT_HIDDEN_DIM == head_two.CONTEXT_HIDDEN_DIM
    assert stage_one.FEATURE_CACHE_DIR == stage_two.FEATURE_CACHE_DIR
    table = comparison_table(
        {"a": {"metrics": {"R@100": 0.5, "F@100": 0.25}}, "b": {"metrics": {"R@100": 0.125}}}
    )
    assert "R@100" in table and "50.0" in table and "12.5" in table and "25.0" in table


def test_demo_refuses_a_negative_process_count(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = ["OUTPUT_DIR", str(tmp_path / "demo"), "DATASETS.DATA_DIR", str(tmp_path / "d")]
    assert main(["demo", "--nproc", "-1", *overrides]) != 0
    assert "--nproc must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before any work


@pytest.mark.slow
def test_demo_runs_both_stages_and_resumes(
    tiny_vg150: VG150Files, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    overrides = [*tiny_overrides(tiny_vg150, tmp_path / "demo", tmp_path / "cache")]
    overrides += ["SOLVER.MAX_ITER", "2", HEAD + "BPL_NUM_HEAD_PREDICATES", "1"]
    assert main(["demo", "--no-progress", *overrides]) == 0
    first = capfd.readouterr().out
    assert "stage 1 (general model): training" in first and "BA-SGG" in first
    assert "specific R" in first and "PairR@20" in first and "RI@20" in first
    assert (tmp_path / "demo" / "comparison.png").is_file()
    assert f"results site: {tmp_path / 'demo' / 'site' / 'index.html'}" in first
    # val and test features extracted once (up front, beside stage 1) and reused after; no
    # parts left (train may have two caches: training targets and confmat's ground truths)
    names = [path.name for path in (tmp_path / "cache").iterdir()]
    assert all(name.endswith(".pt") for name in names), names
    cached = [name.split("_")[1] for name in names]
    assert cached.count("test") == cached.count("val") == 1
    assert main(["demo", "--no-progress", *overrides, "SOLVER.MAX_ITER", "2"]) == 0
    second = capfd.readouterr().out
    assert (
        "stage 1 (general model): done" in second and "stage 2 (BA-SGG: BPL + SA): done" in second
    )
