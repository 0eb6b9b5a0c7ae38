"""Registration of the env ids in the ``hffm`` namespace (idempotent)."""

from __future__ import annotations

import gymnasium as gym

from hffm_env.config import SCENARIOS

__all__ = ["ENV_ID", "scenario_env_id", "register_envs"]

ENV_ID = "hffm/HFFM-v0"
ENTRY_POINT = "hffm_env.envs.hffm_env:HFFMEnv"


def scenario_env_id(scenario: str) -> str:
    """The id registered for a preset scenario, e.g. ``hffm/HFFM-Small-v0``."""
    return f"hffm/HFFM-{scenario.capitalize()}-v0"


def register_envs() -> list[str]:
    """Register ``hffm/HFFM-v0`` (taking ``scenario=`` and overrides) and one id per preset
    scenario; ids already registered are left alone. Returns the ids.

    The ids are registered without Gymnasium's passive env checker: that wrapper marks its
    first ``reset`` as checked before calling it, so after a first ``reset`` that raised (a bad
    seed) every later ``step`` fails inside the wrapper with a ``TypeError``. The env passes
    ``gymnasium.utils.env_checker.check_env`` in the test suite instead;
    ``gym.make(..., disable_env_checker=False)`` adds the wrapper back."""
    ids = [ENV_ID] + [scenario_env_id(name) for name in SCENARIOS]
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=ENTRY_POINT, disable_env_checker=True)
    for name in SCENARIOS:
        env_id = scenario_env_id(name)
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs={"scenario": name},
                         disable_env_checker=True)
    return ids
