"""Shared test settings: a private model cache, so the tiny test model is pre-trained once per
session (env subprocesses inherit the variable) and no user cache is touched."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HFFM_CACHE_DIR", tempfile.mkdtemp(prefix="hffm-test-cache-"))
SESSION_CACHE = Path(os.environ["HFFM_CACHE_DIR"])


import pytest  # noqa: E402  (after the cache variable: nothing may build a model before it)

try:  # agents/ and baselines/ are importable only as installed (pyproject's package-dir)
    import hffm_env.agents  # noqa: F401
    import hffm_env.baselines  # noqa: F401
except ModuleNotFoundError:  # a regular install, hidden by this clone's hffm_env/ folder
    pytest.exit("the tests need this clone installed in editable mode: pip install -e "
                "'.[dev]' (agents/ and baselines/ install as hffm_env.agents and "
                "hffm_env.baselines)", returncode=4)


@pytest.fixture(scope="session")
def pyproject() -> dict:
    """The repository's ``pyproject.toml``, parsed (``tomllib``; on Python 3.10 ``tomli``,
    which the ``dev`` extra installs there)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """``$HFFM_CACHE_DIR`` set to a folder of this test's own, holding no surrogate fit, only
    copies of the pre-trained models the session has built so far: a test of what the cache's
    fits do need not pre-train the tiny model again (20 s or more)."""
    folder = tmp_path / "cache"
    folder.mkdir()
    for built in SESSION_CACHE.glob("m3t-*.pt"):
        shutil.copy2(built, folder / built.name)
    monkeypatch.setenv("HFFM_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def make_env():
    """``make_env(scenario="small", fidelity="cost", extra=(), **kwargs)``: a tiny env
    (:func:`hffm_env.testing.make_tiny_env`), closed when the test ends, pass or fail."""
    from hffm_env.testing import make_tiny_env

    made = []

    def make(*args, **kwargs):
        env = make_tiny_env(*args, **kwargs)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


@pytest.fixture
def config_file_reads(monkeypatch) -> list:
    """The paths :func:`hffm_env.config.load_config_file` reads during the test, in order
    (the code under test keeps reading them)."""
    import hffm_env.config as config

    reads: list = []
    read = config.load_config_file
    monkeypatch.setattr(config, "load_config_file",
                        lambda path: reads.append(path) or read(path))
    return reads


@pytest.fixture
def headless_pyplot():
    """pyplot on Agg, as in CI (a developer's display would open windows), and no figure
    left open by a failed test (render tests check that none is)."""
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    plt.switch_backend("agg")
    yield plt
    plt.close("all")
    plt.switch_backend(backend)


@pytest.fixture
def benchmark_script(monkeypatch):
    """``benchmark_script("paired_ratios")``: a script of ``benchmarks/`` imported as a module
    (its folder on ``sys.path`` for the test), dropped from ``sys.modules`` afterwards with
    the shared ``_output`` so that the next test imports them afresh."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    loaded: list[str] = []

    def load(name: str):
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in (*loaded, "_output"):
        sys.modules.pop(name, None)
