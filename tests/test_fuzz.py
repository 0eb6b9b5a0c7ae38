"""Seeded fuzzing of the two doors users come in by: config overrides and actions. Each input
either gets a ``ConfigError`` / ``ValueError`` that names what was wrong, or runs cleanly with
finite rewards; the env stays usable after every refused action."""

from __future__ import annotations

import dataclasses
import math
import re

import gymnasium as gym
import numpy as np

import hffm_env  # noqa: F401  (registers the env ids)
from hffm_env.config import ConfigError, ScenarioConfig, load_scenario, parse_override
from hffm_env.sim import PlacementError

# a cheap base: few scenes per device, small test sets
BASE = ["data.samples_per_device=16", "data.min_samples_per_device=8",
        "data.global_test_samples=32", "data.held_out_samples=16", "env.episode_rounds=2"]

NASTY = [float("nan"), float("inf"), -float("inf"), -1, 0, 1, 2, 0.5, -0.5, 1e308, -1e308,
         10**400, 2**63, 1e6, 3.7, True, False, None, "x", "", [], [1, 2], {}, {"a": 1},
         "1e6", -0.0, 1e-320, 7]


def _leaf_fields(cls: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        kind = f.type if isinstance(f.type, type) else None
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            out += _leaf_fields(type(default), f"{prefix}{f.name}.")
        elif kind is None or not dataclasses.is_dataclass(kind):
            out.append(f"{prefix}{f.name}")
    return out


KEYS = [k for k in _leaf_fields(ScenarioConfig)
        if k not in ("name", "model.pretrained_path")]


def _random_value(rng: np.random.Generator, key: str, base: ScenarioConfig):
    current = base
    for part in key.split("."):
        current = getattr(current, part)
    if rng.random() < 0.3 and isinstance(current, (int, float)) and not isinstance(current, bool):
        return current * float(rng.choice([0.5, 2.0, 10.0, -1.0, 0.0]))  # near the valid range
    return NASTY[int(rng.integers(len(NASTY)))]


def _play_two_steps(env: gym.Env, seed: int) -> None:
    env.reset(seed=seed)
    for _ in range(2):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert math.isfinite(reward)
        assert math.isfinite(info["latency_s"]) and math.isfinite(info["energy_j"])
        if terminated or truncated:  # e.g. a fuzzed one-round episode or a tiny energy budget
            env.reset()


def test_fuzzed_overrides_are_refused_by_name_or_run():
    rng = np.random.default_rng(2026)
    base = load_scenario("small", overrides=BASE)
    outcomes = {"refused": 0, "ran": 0}
    for trial in range(300):
        key = KEYS[int(rng.integers(len(KEYS)))]
        value = _random_value(rng, key, base)
        try:
            env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                           overrides={**dict(map(parse_override, BASE)), key: value})
        except (ConfigError, ValueError) as err:  # (ValueError: e.g. a data split that
            # cannot serve a task) named by its setting: "fl" alone matched inside "float"
            leaf = key.rsplit(".", 1)[-1]
            assert re.search(rf"\b{re.escape(leaf)}\b", str(err)), (key, value, str(err))
            outcomes["refused"] += 1
            continue
        try:
            _play_two_steps(env, seed=trial)
        except PlacementError as err:  # a layout drawn on reset can miss tight constraints
            assert key.split(".")[0] == "placement" and key.rsplit(".", 1)[-1] in str(err), \
                (key, value, str(err))
            outcomes["refused"] += 1
            continue
        finally:
            env.close()
        outcomes["ran"] += 1
    assert outcomes["refused"] > 100 and outcomes["ran"] > 30, outcomes


def test_fuzzed_actions_are_refused_by_slot_and_leave_the_env_usable():
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost", overrides=BASE)
    env.reset(seed=0)
    nvec = env.action_space.nvec
    rng = np.random.default_rng(7)
    refused = 0
    for trial in range(300):
        kind = trial % 6
        action: object = env.action_space.sample()
        if kind == 0:
            action = np.asarray(action)[: int(rng.integers(len(nvec)))]
        elif kind == 1:
            slot = int(rng.integers(len(nvec)))
            action[slot] = int(nvec[slot]) + int(rng.integers(0, 5))
        elif kind == 2:
            action = action.astype(np.float64)
            action[int(rng.integers(len(nvec)))] = rng.choice([np.nan, np.inf, 0.5])
        elif kind == 3:
            action[int(rng.integers(len(nvec)))] = -int(rng.integers(1, 4))
        elif kind == 4:
            odd: list[object] = [None, "x", [[1, 2]], {"a": 1}, 3.0]
            action = odd[int(rng.integers(len(odd)))]
        try:
            _, reward, terminated, truncated, _ = env.step(action)
        except ValueError as err:
            # by slot (name and value) where one slot is bad, by shape where the whole is
            named = (r"action slot \d+ \([a-z_/0-9]+\) = " if kind in (1, 2, 3)
                     else r"action shape \(.*\): expected \(\d+,\)")
            assert re.match(named, str(err)), (kind, str(err))
            refused += 1
        else:
            assert math.isfinite(reward)
            if terminated or truncated:
                env.reset(seed=trial)
    assert refused >= 200
    _play_two_steps(env, seed=1)
