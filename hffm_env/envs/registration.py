"""Registration of the env ids in the ``hffm`` namespace (idempotent)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from hffm_env.config import SCENARIOS
from hffm_env.envs.render import RENDER_METADATA

__all__ = ["ENV_ID", "preset_env", "scenario_env_id", "register_envs"]

ENV_ID = "hffm/HFFM-v0"
ENTRY_POINT = "hffm_env.envs.hffm_env:HFFMEnv"
PRESET_ENTRY_POINT = "hffm_env.envs.registration:preset_env"


def scenario_env_id(scenario: str) -> str:
    """The id registered for a preset scenario, e.g. ``hffm/HFFM-Small-v0``."""
    return f"hffm/HFFM-{scenario.capitalize()}-v0"


def preset_env(preset: str, scenario: str | None = None, id_preset: str | None = None,
               **kwargs: Any) -> Any:
    """The env of a preset scenario's id (``hffm/HFFM-Small-v0``): ``HFFMEnv(scenario=preset,
    **kwargs)``. The id registers both ``preset`` and ``id_preset``; a ``preset=`` or
    ``scenario=`` given to ``gym.make`` that names another preset is refused: the id fixes
    it, and a run logged under the id would describe another env."""
    from hffm_env.envs.hffm_env import HFFMEnv

    fixed = id_preset if id_preset is not None else preset
    for name, given in (("preset", preset), ("scenario", scenario)):
        if given is not None and given != fixed:
            raise ValueError(f"{name} = {given!r}: {scenario_env_id(fixed)} is the {fixed!r} "
                             f"scenario; make {ENV_ID} with scenario={given!r} instead")
    return HFFMEnv(scenario=fixed, **kwargs)


# HFFMEnv's metadata, which Gymnasium reads from the entry point to offer render_mode="human"
# and the like
preset_env.metadata = RENDER_METADATA  # type: ignore[attr-defined]


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
            gym.register(id=env_id, entry_point=PRESET_ENTRY_POINT,
                         kwargs={"preset": name, "id_preset": name}, disable_env_checker=True)
    return ids
