"""The package's type hints hold: mypy finds no error in it.

``hffm_env`` ships ``py.typed``, so a user's type checker reads these hints; a wrong one
refuses correct user code (``env.reset()`` on an ``object``) or lets a wrong call through.
mypy cannot follow ``package-dir`` (``agents/`` and ``baselines/`` install as
``hffm_env.agents`` and ``hffm_env.baselines``), so it checks a tree of links laid out as the
installed package is. The settings are ``[tool.mypy]`` in ``pyproject.toml``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# where each folder of the repository sits in the installed package (pyproject's package-dir)
INSTALLED_AS = {"hffm_env": "hffm_env", "agents": "hffm_env/agents",
                "baselines": "hffm_env/baselines"}


def _link_tree(into: Path) -> Path:
    """The package as installed, as links to the repository's files (no caches)."""
    for folder, installed in INSTALLED_AS.items():
        for source in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in source.parts:
                continue
            link = into / installed / source.relative_to(ROOT / folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
    return into / "hffm_env"


def test_the_link_tree_lays_folders_out_as_pyproject_installs_them(pyproject: dict) -> None:
    setuptools = pyproject["tool"]["setuptools"]
    installed = {folder: package.replace(".", "/")
                 for package, folder in setuptools["package-dir"].items()}
    assert installed == INSTALLED_AS


@pytest.mark.slow
def test_mypy_finds_no_error_in_the_package(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    package = _link_tree(tmp_path / "tree")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", package.name],
        cwd=package.parent, capture_output=True, text=True, timeout=600)
    # name the repository's files, not the links
    report = result.stdout.replace("hffm_env/agents/", "agents/")
    report = report.replace("hffm_env/baselines/", "baselines/") + result.stderr
    assert result.returncode == 0, f"mypy found errors:\n{report}"

    # the README's cast: HFFMEnv from hffm_env.envs is the class to a type checker (it was
    # Any, through the lazy module __getattr__, so a misspelt attribute passed unseen)
    snippet = package.parent / "readme_cast.py"
    snippet.write_text(
        "import typing\n\nimport gymnasium as gym\n\nfrom hffm_env.envs import HFFMEnv\n\n"
        "env = typing.cast(HFFMEnv, gym.make('hffm/HFFM-v0').unwrapped)\n"
        "env.action_masks()\nenv.action_maskz()\n")
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", snippet.name],
        cwd=package.parent, capture_output=True, text=True, timeout=600)
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and "action_maskz" in errors[0], checked.stdout + checked.stderr
