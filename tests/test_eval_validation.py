"""``basgg eval`` refuses impossible predictions with an error naming the file, the dataset,
the image and the row, instead of reporting a number."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_eval_cli import TEST, TRAIN, VOCABULARY, predcls_prediction, write

from basgg.cli import main
from basgg.data.vg150_format import VG150Files, write_vg150


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "vg150"
    write_vg150(VG150Files(root), TRAIN + TEST, [0, 0, 2, 2], VOCABULARY)
    return root


def _eval(path: Path, folder: Path, capsys: pytest.CaptureFixture, *extra: str) -> str:
    code = main(["eval", str(path), "--data", str(folder), "--val-size", "0", *extra])
    captured = capsys.readouterr()
    assert code == 2, captured.out
    assert "Traceback" not in captured.err
    return captured.err


def _predictions() -> list:
    return [predcls_prediction(gt) for gt in TEST]


@pytest.mark.parametrize(
    ("value", "row"), [(float("nan"), 0), (float("inf"), 1), (-0.5, 1)], ids=["nan", "inf", "neg"]
)
def test_non_finite_or_negative_predicate_scores_are_refused(
    tmp_path: Path,
    data: Path,
    capsys,
    value: float,
    row: int,
) -> None:
    predictions = _predictions()
    scores = predictions[1].predicate_scores.clone()
    scores[row, 2] = value
    predictions[1] = replace(predictions[1], predicate_scores=scores)
    path = write(tmp_path / "bad.h5", predictions)
    error = _eval(path, data, capsys)
    absolute = 6 + row  # image 0 has 3 x 2 ordered pairs
    assert (
        f"bad.h5: dataset 'predicate_scores' row {absolute} (image 1, image_id 4): "
        "scores must be finite and >= 0" in error
    )


def test_all_nan_scores_do_not_give_a_recall(tmp_path: Path, data: Path, capsys) -> None:
    predictions = [
        replace(p, predicate_scores=torch.full_like(p.predicate_scores, float("nan")))
        for p in _predictions()
    ]
    error = _eval(write(tmp_path / "nan.h5", predictions), data, capsys)
    assert "dataset 'predicate_scores' row 0 (image 0, image_id 3)" in error


def test_nan_object_scores_are_refused(tmp_path: Path, data: Path, capsys) -> None:
    predictions = _predictions()
    predictions[0] = replace(predictions[0], object_scores=torch.tensor([1.0, float("nan"), 1.0]))
    error = _eval(write(tmp_path / "o.h5", predictions, "sgcls"), data, capsys)
    assert "dataset 'object_scores' row 1 (image 0, image_id 3): scores must be finite" in error


def test_float_image_ids_are_not_truncated(tmp_path: Path, data: Path, capsys) -> None:
    path = write(tmp_path / "ids.h5", _predictions())
    with h5py.File(path, "a") as h5:
        del h5["image_ids"]
        h5["image_ids"] = np.array([3.0, 4.5])
    error = _eval(path, data, capsys)
    assert "ids.h5: dataset 'image_ids' row 1 (image 1): value 4.5 is not an integer" in error


def test_integral_float_ids_are_read_as_integers(tmp_path: Path, data: Path, capsys) -> None:
    path = write(tmp_path / "ids.h5", _predictions())
    with h5py.File(path, "a") as h5:
        del h5["image_ids"]
        h5["image_ids"] = np.array([3.0, 4.0])
    assert main(["eval", str(path), "--data", str(data), "--val-size", "0"]) == 0


def test_sgcls_labels_outside_the_vocabulary_are_refused(
    tmp_path: Path,
    data: Path,
    capsys,
) -> None:
    predictions = _predictions()
    predictions[1] = replace(predictions[1], labels=torch.tensor([2, 500]))
    error = _eval(write(tmp_path / "labels.h5", predictions, "sgcls"), data, capsys)
    assert (
        "labels.h5: dataset 'labels' row 4 (image 1, image_id 4): label 500 is not an object "
        "class of the dataset (1..3)" in error
    )


def test_negative_sgdet_labels_name_the_file_and_row(
    tmp_path: Path,
    data: Path,
    capsys,
) -> None:
    predictions = _predictions()
    predictions[0] = replace(predictions[0], labels=torch.tensor([3, -2, 1]))
    error = _eval(write(tmp_path / "neg.h5", predictions, "sgdet"), data, capsys)
    assert "neg.h5: dataset 'labels' row 1 (image 0, image_id 3): object labels must be" in error


def test_a_corrupt_compressed_chunk_names_the_file_and_dataset(
    tmp_path: Path,
    data: Path,
    capsys,
) -> None:
    path = write(tmp_path / "gz.h5", _predictions())
    with h5py.File(path, "a") as h5:  # gzip chunks, as earlier basgg versions wrote
        scores = h5["predicate_scores"][()]
        del h5["predicate_scores"]
        h5.create_dataset("predicate_scores", data=scores, compression="gzip", chunks=True)
    with h5py.File(path, "r") as h5:
        chunk = h5["predicate_scores"].id.get_chunk_info(0)
    with open(path, "r+b") as stream:
        stream.seek(chunk.byte_offset)
        stream.write(b"\xff" * chunk.size)
    error = _eval(path, data, capsys)
    assert "gz.h5: dataset 'predicate_scores' cannot be read (corrupt or truncated" in error


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_malicious_zero_shot_file_is_a_message(tmp_path: Path, data: Path, capsys) -> None:
    path = write(tmp_path / "p.h5", _predictions())
    evil = tmp_path / "zeroshot_triplet.pytorch"
    evil.write_bytes(pickle.dumps(_Payload()))
    error = _eval(path, data, capsys, "--zero-shot", str(evil))
    assert f"{evil}: cannot read the zero-shot triplets" in error
    assert "this must never run" not in capsys.readouterr().out


def test_an_empty_split_prints_dashes_not_zero_mean_recall() -> None:
    from basgg.evaluation import evaluate, format_table
    from basgg.structures import Mode

    result = evaluate([], [], mode=Mode.PREDCLS, num_predicates=4, ks=(20, 50))
    rows = {line.split()[0]: line.split()[1:] for line in format_table(result).splitlines()[2:]}
    for name in ("R", "mR", "ngmR", "F"):
        assert rows[name] == ["-", "-"], (name, rows[name])


def test_score_fast_check_rejects_nan_infinity_and_negatives() -> None:
    from basgg.evaluation.predictions import _finite_non_negative

    good = np.array([[0.0, 0.5], [1.0, -0.0]], dtype=np.float32)
    assert _finite_non_negative(good) and _finite_non_negative(good[:0])
    for bad in (np.nan, np.inf, -np.inf, -1e-6):
        block = good.copy()
        block[1, 0] = bad
        assert not _finite_non_negative(block), bad
