"""The README's Python blocks run as written (in cost fidelity, where they name none: the
default, real training, would pre-train the `small` model first), so that a renamed argument,
method or wrapper cannot leave the quick tour showing code that fails."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import gymnasium as gym
import pytest

import hffm_env

README = Path(__file__).resolve().parents[1] / "README.md"
OPTIONAL = ("torchrl", "pettingzoo")  # the integrations extra (CI installs it)


def python_blocks() -> list[str]:
    """Every ```python block of the README, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                      flags=re.S | re.M)


def test_the_readme_python_blocks_run(monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 3, "the README's quick tour lost its Python blocks"
    made: list = []  # every env the blocks make, closed at the end
    make, parallel_env = gym.make, hffm_env.parallel_env

    def make_in_cost_fidelity(*args, **kwargs):
        kwargs.setdefault("fidelity", "cost")
        made.append(make(*args, **kwargs))
        return made[-1]

    def recorded_parallel_env(*args, **kwargs):
        made.append(parallel_env(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(gym, "make", make_in_cost_fidelity)
    monkeypatch.setattr(hffm_env, "parallel_env", recorded_parallel_env)
    namespace: dict = {}
    try:
        for k, block in enumerate(blocks):  # one namespace: later blocks use earlier names
            missing = [m for m in OPTIONAL
                       if m in block and importlib.util.find_spec(m) is None]
            if missing:
                pytest.skip(f"README python block {k + 1} needs {missing} (the integrations "
                            "extra); the blocks before it ran")
            try:
                exec(compile(block, f"README.md python block {k + 1}", "exec"), namespace)
            except Exception as err:
                pytest.fail(f"README python block {k + 1} fails: {type(err).__name__}: {err}")
    finally:
        for env in made:
            env.close()
