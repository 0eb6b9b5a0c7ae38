"""hffm-env: orchestrate hierarchical federated foundation models over wireless networks.

Importing the package registers the Gymnasium env ids in the ``hffm`` namespace, so
``gymnasium.make("hffm/HFFM-v0", scenario="small")`` and
``gymnasium.make("hffm_env:hffm/HFFM-v0")`` both work; and it makes processes forked from
here on run torch on one thread (:func:`hffm_env.devices.guard_forks`: a forked vector-env
worker otherwise hung in OpenMP when its parent had run torch).
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hffm_env.config import ConfigError, ScenarioConfig, load_scenario, scenario_names
from hffm_env.devices import guard_forks
from hffm_env.envs.registration import ENV_ID, register_envs

if TYPE_CHECKING:  # PettingZoo is an extra: imported when called
    from hffm_env.envs.parallel import CheckedAgentActions, HFFMParallelEnv

__version__ = "0.1.0"

register_envs()
guard_forks()


def parallel_env(scenario: str | ScenarioConfig | Mapping[str, Any] | None = None,
                 **kwargs: Any) -> "HFFMParallelEnv":
    """The PettingZoo ``ParallelEnv``: one agent per edge server and one for the cloud
    (:mod:`hffm_env.envs.parallel`; needs PettingZoo, the ``integrations`` extra).
    ``kwargs`` are those of ``gymnasium.make("hffm/HFFM-v0", ...)`` plus ``reward_split``,
    ``action_mask`` (``"per-slot"``, ``"flat"`` or ``"one-hot"``), ``info`` (``"full"``
    or ``"numeric"``) and ``agent_indicator`` (edge observations end in a one-hot of the
    cluster)."""
    from hffm_env.envs.parallel import HFFMParallelEnv

    return HFFMParallelEnv(scenario, **kwargs)


def env(scenario: str | ScenarioConfig | Mapping[str, Any] | None = None,
        **kwargs: Any) -> "CheckedAgentActions":
    """The same multi-agent env in PettingZoo's AEC form (``parallel_to_aec``), checking each
    agent's action when it acts."""
    from pettingzoo.utils.conversions import parallel_to_aec

    from hffm_env.envs.parallel import CheckedAgentActions

    return CheckedAgentActions(parallel_to_aec(parallel_env(scenario, **kwargs)))

__all__ = [
    "ENV_ID",
    "ConfigError",
    "ScenarioConfig",
    "load_scenario",
    "register_envs",
    "scenario_names",
    "__version__",
    "env",
    "parallel_env",
]
