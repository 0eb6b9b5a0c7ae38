"""hffm-env: orchestrate hierarchical federated foundation models over wireless networks.

Importing the package registers the Gymnasium env ids in the ``hffm`` namespace, so
``gymnasium.make("hffm/HFFM-v0", scenario="small")`` and
``gymnasium.make("hffm_env:hffm/HFFM-v0")`` both work.
"""

from hffm_env.config import ConfigError, ScenarioConfig, load_scenario, scenario_names
from hffm_env.envs.registration import ENV_ID, register_envs

__version__ = "0.1.0"

register_envs()

__all__ = [
    "ENV_ID",
    "ConfigError",
    "ScenarioConfig",
    "load_scenario",
    "register_envs",
    "scenario_names",
    "__version__",
]
