"""Shared test settings: a private model cache, so the tiny test model is pre-trained once per
session (env subprocesses inherit the variable) and no user cache is touched."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HFFM_CACHE_DIR", tempfile.mkdtemp(prefix="hffm-test-cache-"))


import pytest  # noqa: E402  (after the cache variable: nothing may build a model before it)

try:  # agents/ and baselines/ are importable only as installed (pyproject's package-dir)
    import hffm_env.agents  # noqa: F401
    import hffm_env.baselines  # noqa: F401
except ModuleNotFoundError:  # a regular install, hidden by this clone's hffm_env/ folder
    pytest.exit("the tests need this clone installed in editable mode: pip install -e "
                "'.[dev]' (agents/ and baselines/ install as hffm_env.agents and "
                "hffm_env.baselines)", returncode=4)


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
