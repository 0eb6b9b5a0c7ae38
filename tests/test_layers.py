"""The house's wiring: what gets installed, no import circles, and the layers of DESIGN.md
(config -> sim/data -> models -> fl -> envs -> baselines/agents -> cli).

The layer rules are about each module's own imports: importing any sub-package runs
``hffm_env/__init__``, which registers the env ids with gymnasium (so that
``gym.make("hffm/HFFM-v0")`` works after ``import hffm_env``)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
# what may not be imported from each layer (anywhere in its modules, lazily or not)
FORBIDDEN = {
    "hffm_env.sim": ("hffm_env.models", "hffm_env.fl", "hffm_env.envs", "hffm_env.agents",
                     "hffm_env.baselines", "hffm_env.cli", "gymnasium", "torch"),
    "hffm_env.data": ("hffm_env.fl", "hffm_env.envs", "hffm_env.agents", "hffm_env.baselines",
                      "hffm_env.cli", "gymnasium"),
    "hffm_env.models": ("hffm_env.fl", "hffm_env.envs", "hffm_env.agents",
                        "hffm_env.baselines", "hffm_env.cli", "gymnasium"),
    "hffm_env.fl": ("hffm_env.envs", "hffm_env.agents", "hffm_env.baselines", "hffm_env.cli",
                    "gymnasium"),
    # transfer planning is numpy only, like the simulator it prices for
    "hffm_env.fl.transfer_plan": ("torch", "gymnasium"),
    "hffm_env.envs": ("hffm_env.agents", "hffm_env.baselines", "hffm_env.cli"),
    "hffm_env.baselines": ("hffm_env.agents", "hffm_env.cli"),
}


@pytest.fixture(scope="module")
def setuptools(pyproject) -> dict:
    """pyproject.toml's ``[tool.setuptools]``: what gets installed, and from where."""
    return pyproject["tool"]["setuptools"]


def _modules(setuptools: dict) -> dict[str, Path]:
    """Every installed module's dotted name -> its file (package-dir mapping applied)."""
    out = {}
    package_dirs = setuptools["package-dir"]
    for package in setuptools["packages"]:
        folder = ROOT / package_dirs.get(package, package.replace(".", "/"))
        if package not in package_dirs:  # a sub-package of a mapped one
            parent, _, child = package.rpartition(".")
            folder = ROOT / package_dirs.get(parent, parent.replace(".", "/")) / child
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Absolute imports of a file, leaving out ``if TYPE_CHECKING:`` blocks (annotations)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
               for n in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_every_package_folder_is_installed_and_nothing_else_at_the_top(setuptools):
    listed = set(setuptools["packages"])
    assert {name.split(".")[0] for name in listed} == {"hffm_env"}
    found = {"hffm_env." + ".".join(p.parent.relative_to(ROOT / "hffm_env").parts)
             for p in (ROOT / "hffm_env").rglob("__init__.py")}
    found = {name.rstrip(".") for name in found}
    found |= {f"hffm_env.{folder}" for folder in ("agents", "baselines")}
    # folders of data only (the shipped surrogate fits): listed, with their files as data
    data_only = set(setuptools["package-data"]) - {"hffm_env"}
    assert data_only == {"hffm_env.surrogates"}
    assert found | data_only == listed
    assert "py-modules" not in setuptools  # train_agent.py is a script
    assert len(_modules(setuptools)) > 40


def test_no_import_circles(setuptools):
    modules = _modules(setuptools)
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        if path.stem == "__init__":  # re-exports of a package's own modules are no circle
            continue
        graph.add_edges_from((name, target) for target in _imports(path)
                             if target in modules and target != name)
    assert list(nx.simple_cycles(graph)) == []


def test_each_layer_imports_only_the_layers_below_it(setuptools):
    for name, path in _modules(setuptools).items():
        for layer, forbidden in FORBIDDEN.items():
            if name == layer or name.startswith(layer + "."):
                bad = sorted(t for t in _imports(path)
                             if any(t == f or t.startswith(f + ".") for f in forbidden))
                assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("module", ["hffm_env.sim", "hffm_env.fl.transfer_plan",
                                    "hffm_env.fl.schedule"])
def test_the_numpy_layers_load_without_torch_at_run_time(module):
    # the import statements were torch-free, but hffm_env.fl's __init__ loaded the engine
    import subprocess
    import sys

    code = f"import sys, {module}; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stderr[-2000:]
