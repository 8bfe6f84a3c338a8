"""The dependency rules of docs/architecture.md, checked by parsing imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "basgg"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _files(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in files:
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        # models get statistics and word vectors as tensors: no data, no metrics, no config
        ("models", ("basgg.data", "basgg.evaluation", "basgg.config", "basgg.commands",
                    "h5py", "json", "basgg.pretrained", "basgg.inference")),
        # saved predictions are scored without a model or the data layer
        ("evaluation", ("basgg.data", "basgg.models", "basgg.config", "basgg.commands",
                        "basgg.inference")),
        ("data", ("basgg.models", "basgg.evaluation", "basgg.config", "basgg.commands",
                  "basgg.inference")),
        # basgg predict needs only a checkpoint: no dataset, statistics or pretrained asset
        ("inference", ("basgg.commands", "basgg.pretrained", "basgg.training.setup",
                       "basgg.training.feature_cache", "basgg.training.loop")),
    ],
)  # fmt: skip
def test_layer_imports(folder: str, forbidden: tuple[str, ...]) -> None:
    assert _violations(_files(folder), forbidden) == []


def test_inference_imports_only_the_vocabulary_of_the_data_layer() -> None:
    data_imports = [
        name
        for path in _files("inference")
        for name in _imports(path)
        if name.startswith("basgg.data")
    ]
    assert data_imports  # the check below looks at something
    assert [n for n in data_imports if not n.startswith("basgg.data.vocabulary")] == []


def test_bottom_layer_imports_nothing_above_it() -> None:
    bottom = [PACKAGE / "structures.py", PACKAGE / "boxes.py", PACKAGE / "packed.py"]
    assert _violations(bottom, ("basgg.data", "basgg.models", "basgg.evaluation",
                                "basgg.config", "basgg.commands")) == []  # fmt: skip


def test_no_network_access_anywhere() -> None:
    hub_words = ("torch.hub", "load_state_dict_from_url", "urlopen", "requests.get")
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not [w for w in hub_words if w in text], path
        assert not _violations([path], ("urllib.request", "requests", "http.client")), path


def test_package_depth_at_most_two() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert len(path.relative_to(PACKAGE).parts) <= 2, path
