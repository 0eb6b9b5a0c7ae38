"""The README's Python blocks run as written (in cost fidelity, where they name none: the
default, real training, would pre-train the `small` model first), so that a renamed argument,
method or wrapper cannot leave the quick tour showing code that fails."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    """Every ```python block of the README, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                      flags=re.S | re.M)


def test_the_readme_python_blocks_run(monkeypatch):
    pytest.importorskip("torchrl")  # the tour's TorchRL lines (the integrations extra)
    pytest.importorskip("pettingzoo")
    blocks = python_blocks()
    assert len(blocks) >= 3, "the README's quick tour lost its Python blocks"
    make = gym.make

    def make_in_cost_fidelity(*args, **kwargs):
        kwargs.setdefault("fidelity", "cost")
        return make(*args, **kwargs)

    monkeypatch.setattr(gym, "make", make_in_cost_fidelity)
    namespace: dict = {}
    for k, block in enumerate(blocks):  # one namespace: later blocks use earlier names
        try:
            exec(compile(block, f"README.md python block {k + 1}", "exec"), namespace)
        except Exception as err:
            pytest.fail(f"README python block {k + 1} fails: {type(err).__name__}: {err}")
    for value in namespace.values():
        if isinstance(value, gym.Env):
            value.close()
