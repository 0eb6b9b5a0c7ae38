"""Helpers for tests and smoke runs of code that uses hffm-env."""

from __future__ import annotations

__all__ = ["TINY_OVERRIDES", "make_tiny_env", "integration"]

import importlib
import os
from collections.abc import Mapping, Sequence
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


def make_tiny_env(scenario: str = "small", fidelity: str = "cost",
                  extra: Sequence[str] | Mapping[str, Any] = (), **kwargs: Any) -> Any:
    """``gymnasium.make("hffm/HFFM-v0", ...)`` with :data:`TINY_OVERRIDES` and then ``extra``
    overrides (``key=value`` strings or a dict of dotted keys; later ones win: an extra key
    replaces the tiny one of its name, and a section given whole, ``data={...}``, keeps the
    tiny settings inside it that it does not set, as a section override keeps the preset's);
    other keyword arguments go to the env."""
    import gymnasium as gym

    from hffm_env import ENV_ID  # (importing hffm_env registers the env ids)
    from hffm_env.config import ConfigError, parse_override

    if isinstance(extra, (str, bytes)):
        raise ConfigError(f"extra = {extra!r}: must be a list of 'key=value' strings or a dict "
                          f"of dotted keys (one override: [{extra!r}])")
    given = dict(extra) if isinstance(extra, Mapping) else dict(
        parse_override(o) for o in extra)
    overrides: dict[str, Any] = {}
    for key, value in (parse_override(o) for o in TINY_OVERRIDES):
        section = next((g for g in map(str, given) if key.startswith(f"{g}.")), None)
        if key in given or any(str(g).startswith(f"{key}.") for g in given):
            continue  # replaced by the extra key of its name (or a key inside it)
        if section is not None and isinstance(given[section], Mapping):
            # inside a section given whole: kept where the section does not set it
            node = given[section] = _copy_nested(given[section])
            *path, leaf = key[len(section) + 1:].split(".")
            for part in path:
                node = node.setdefault(part, {})
            node.setdefault(leaf, value)
        elif section is None:
            overrides[key] = value
    return gym.make(ENV_ID, scenario=scenario, fidelity=fidelity,
                    overrides={**overrides, **given}, **kwargs)


def _copy_nested(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of nested mappings as dicts (the caller's are not changed)."""
    return {k: _copy_nested(v) if isinstance(v, Mapping) else v for k, v in mapping.items()}


def integration(name: str) -> ModuleType:
    """Import the optional library ``name`` for a test: without it the test skips, unless
    ``HFFM_REQUIRE_INTEGRATIONS`` is set (as ``.ci/run`` sets it), where its absence is an
    ImportError, so that CI cannot pass by skipping the integration tests. (Needs pytest.)"""
    if os.environ.get("HFFM_REQUIRE_INTEGRATIONS"):
        return importlib.import_module(name)
    import pytest

    return pytest.importorskip(name)
