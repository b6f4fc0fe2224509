"""The project's shape: dlgm/ knows nothing of the UI; every shipped model loads."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dlgm
from dlgm.data import DATASETS

ROOT = Path(__file__).resolve().parent.parent


def test_dlgm_never_imports_streamlit():
    code = "import sys, dlgm, dlgm.cli; print('streamlit' in sys.modules or 'app' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "dlgm").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT / "dlgm"))
)
def test_dlgm_sources_name_no_ui_package(path):
    tree = ast.parse(path.read_text())
    names = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    names |= {
        (n.module or "").split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.level == 0
    }
    assert not names & {"streamlit", "plotly", "app"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_of(path: Path, modules: set) -> set:
    """The dlgm modules that ``path`` imports (at any level: a lazy import inside a function
    is still a dependency), resolving relative imports; ``from pkg import mod`` counts mod, not
    pkg (whose ``__init__`` Python has already started)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [
                f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names
            ]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # a name inside a module: the module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _import_graph(package: str = "dlgm") -> dict:
    """Module -> the modules of ``package`` (``dlgm`` or ``app``) that it imports."""
    paths = sorted((ROOT / package).rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports_of(p, modules) for p in paths}


def _cycle(graph: dict) -> list | None:
    """One import cycle of ``graph`` (a list of modules, first == last), or None. A submodule
    importing its own package back (``dlgm.data._x`` -> ``dlgm.data``) is a cycle too."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert _cycle({"p": {"p.x"}, "p.x": set()}) is None
    assert _cycle({"p": {"p.x"}, "p.x": {"p"}}) == ["p", "p.x", "p"]


def test_dlgm_has_no_import_cycle():
    graph = _import_graph()
    assert "dlgm.checkpoint" in graph["dlgm.train._state"]
    assert "dlgm.model" in graph["dlgm.checkpoint"]  # one way: checkpoint -> model
    assert "dlgm.checkpoint" not in graph["dlgm.model"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_save_method_on_the_model():
    assert not hasattr(dlgm.DLGM, "save")  # dlgm.save(model, path): I/O lives in checkpoint.py


MODELS = sorted(p.parent for p in (ROOT / "pretrained").glob("*/model.safetensors"))


def test_the_default_model_is_shipped():
    assert ROOT / "pretrained" / "digits-2d-rank1" in MODELS


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_every_pretrained_model_loads_and_has_a_card(path):
    model = dlgm.load(path)
    card = json.loads((path / "card.json").read_text())
    assert dlgm.DLGMConfig.from_dict(card["config"]) == model.config
    assert card["data"] in DATASETS
    assert not (path / "train_state.safetensors").exists(), "do not ship training state"
    x = torch.rand(3, model.n_pixels).round()
    assert torch.isfinite(model.log_joint(x, model.encode(x).sample())).all()


def test_the_app_has_no_import_cycle():
    graph = _import_graph("app")
    assert {
        "app.server",
        "app.session",
        "app.cache",
        "app.compute.posterior",
        "app.figures.images",
    } <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    assert "app.session" not in graph["app.limits"] and "app.server" not in graph["app.limits"]


def test_pages_define_no_cached_functions():
    """Cached functions live in app/compute (imported once), not in page scripts (re-run on
    every rerun)."""
    for page in (ROOT / "app" / "pages").glob("*.py"):
        text = page.read_text()
        assert "cache_data" not in text and "cache_resource" not in text, page.name
