"""Helpers for tests and smoke runs of code that uses hffm-env."""

from __future__ import annotations

__all__ = ["TINY_OVERRIDES", "make_tiny_env", "integration"]

import importlib
import os
from collections.abc import Sequence
from types import ModuleType
from typing import Any

TINY_OVERRIDES: tuple[str, ...] = (
    "model.pretrain_steps=40",
    "data.pretrain_samples=600",
    "data.samples_per_device=48",
    "data.min_samples_per_device=16",
    "data.global_test_samples=150",
    "data.held_out_samples=64",
    "fl.eval_held_out_samples_per_device=16",
    "env.episode_rounds=4",
    "fl.local_steps=1",
    "fl.batch_size=8",
    "fl.eval_samples_per_device=32",
)
"""Overrides that make any scenario cheap enough for unit tests and smoke runs (a few seconds
of pre-training, a handful of samples per device, four rounds per episode). Pass them as
``gymnasium.make("hffm/HFFM-v0", overrides=list(TINY_OVERRIDES))``. In ``cost`` and
``train`` fidelity only: no surrogate is fitted for these settings (``surrogate`` fidelity
refuses them, naming ``hffm calibrate``); for a short surrogate episode override
``env.episode_rounds`` alone."""


def make_tiny_env(scenario: str = "small", fidelity: str = "cost", extra: Sequence[str] = (),
                  **kwargs: Any) -> Any:
    """``gymnasium.make("hffm/HFFM-v0", ...)`` with :data:`TINY_OVERRIDES` and then ``extra``
    overrides (later ones win); other keyword arguments go to the env."""
    import gymnasium as gym

    from hffm_env import ENV_ID  # (importing hffm_env registers the env ids)

    return gym.make(ENV_ID, scenario=scenario, fidelity=fidelity,
                    overrides=[*TINY_OVERRIDES, *extra], **kwargs)


def integration(name: str) -> ModuleType:
    """Import the optional library ``name`` for a test: without it the test skips, unless
    ``HFFM_REQUIRE_INTEGRATIONS`` is set (as ``.ci/run`` sets it), where its absence is an
    ImportError, so that CI cannot pass by skipping the integration tests. (Needs pytest.)"""
    if os.environ.get("HFFM_REQUIRE_INTEGRATIONS"):
        return importlib.import_module(name)
    import pytest

    return pytest.importorskip(name)
