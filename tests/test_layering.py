"""The dependency rules of docs/architecture.md, checked by parsing imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "basgg"


def _import_nodes(path: Path) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``path`` (nested ones too) and whether it sits under
    ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, type_only))
        for child in ast.iter_child_nodes(node):
            guarded = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            visit(child, type_only or (guarded and child in node.body))

    visit(tree, False)
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, type_only: bool | None = None) -> set[str]:
    """Absolute names ``path`` imports (relative imports resolved); ``type_only`` True / False
    keeps only those under / outside ``if TYPE_CHECKING:``, None keeps all."""
    names: set[str] = set()
    package = ""
    if PACKAGE in path.resolve().parents:
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node, guarded in _import_nodes(path):
        if type_only is not None and guarded != type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        module = node.module or ""
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{module}" if module else base
        names.add(module)
        names.update(f"{module}.{alias.name}" for alias in node.names)
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
        ("models", ("basgg.data", "basgg.evaluation", "basgg.commands", "basgg.training",
                    "h5py", "json", "basgg.pretrained", "basgg.inference", "basgg.synthvg")),
        # saved predictions are scored without a model or the data layer
        ("evaluation", ("basgg.data", "basgg.models", "basgg.config", "basgg.commands",
                        "basgg.inference", "basgg.training", "basgg.synthvg")),
        ("data", ("basgg.models", "basgg.evaluation", "basgg.config", "basgg.commands",
                  "basgg.inference", "basgg.synthvg", "basgg.training")),
        # training puts data, models and evaluation together; the CLI sits above it
        ("training", ("basgg.commands", "basgg.inference", "basgg.synthvg", "basgg.cli")),
        # SynthVG produces a VG150-format dataset: it writes files through the data layer only
        ("synthvg", ("basgg.models", "basgg.evaluation", "basgg.config", "basgg.commands",
                     "basgg.inference", "basgg.training")),
        # the results site reads saved predictions: no model, no training, no torch checkpoint
        ("view", ("basgg.models", "basgg.training", "basgg.commands", "basgg.inference",
                  "basgg.config", "basgg.pretrained", "basgg.synthvg")),
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


def test_synthvg_settings_is_a_leaf() -> None:
    assert [n for n in _imports(PACKAGE / "synthvg" / "settings.py") if n.startswith("basgg")] == []


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


def _package_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _module_graph(*, with_type_only: bool = True) -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from pkg import name`` counts as an edge
    to ``pkg.name`` when that is a module, else to ``pkg``)."""
    modules = _package_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path, type_only=None if with_type_only else False):
            if imported in modules:
                targets.add(imported)
            elif imported.rpartition(".")[0] in modules:
                targets.add(imported.rpartition(".")[0])
        graph[name] = targets - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_no_import_cycles_type_only_imports_included() -> None:
    assert _cycles(_module_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_are_seen(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport os\n"
        "if TYPE_CHECKING:\n    from basgg.config import Config\n"
    )
    assert "basgg.config" in _imports(source, type_only=True)
    assert "basgg.config" not in _imports(source, type_only=False)
    assert "os" in _imports(source, type_only=False)


# who may read a Config: the CLI, the training layer, checkpoint loading for basgg predict and
# the model builders (basgg.models.build_model / build_feature_extractor, for annotations only)
CONFIG_READERS = ("basgg.cli", "basgg.commands", "basgg.training", "basgg.inference")


def test_only_commands_training_and_builders_import_config() -> None:
    readers = []
    for name, path in _package_modules().items():
        if name == "basgg.config" or name.startswith(CONFIG_READERS):
            continue
        if any(i == "basgg.config" or i.startswith("basgg.config.") for i in _imports(path)):
            readers.append(name)
    assert readers == ["basgg.models"]  # models/__init__.py: type annotations only
    runtime = _imports(PACKAGE / "models" / "__init__.py", type_only=False)
    assert not [i for i in runtime if i.startswith("basgg.config")]


def test_commands_only_parse_arguments_and_call_the_layers_below() -> None:
    # orchestration lives in basgg.training (runs.py, detector_runs.py): no command imports
    # another, except `basgg data`, which dispatches its own subcommands
    subcommands = {f"basgg.commands.{name}" for name in ("convert", "export", "stats", "synth")}
    found = []
    for path in _files("commands"):
        for name in _imports(path):
            if not name.startswith("basgg.commands.") or name.count(".") > 2:
                continue
            if path.name == "data.py" and name in subcommands:
                continue
            found.append(f"{path.name} imports {name}")
    assert found == []


def test_benchmarks_call_the_training_layer_not_commands() -> None:
    bench = sorted((PACKAGE.parent / "bench").glob("*.py"))
    assert bench  # the check below looks at something
    assert _violations(bench, ("basgg.commands", "basgg.cli")) == []
