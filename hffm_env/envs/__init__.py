"""The Gymnasium adapter: spaces, action decoding, observation, reward, render, registration."""

from typing import TYPE_CHECKING, Any

from hffm_env.envs.registration import ENV_ID, register_envs, scenario_env_id

if TYPE_CHECKING:  # (a type checker sees the class; at run time it loads when first asked for)
    from hffm_env.envs.hffm_env import HFFMEnv

__all__ = ["ENV_ID", "HFFMEnv", "register_envs", "scenario_env_id"]


def __getattr__(name: str) -> Any:
    # The env class pulls in torch and the model; import it only when asked for.
    if name == "HFFMEnv":
        from hffm_env.envs.hffm_env import HFFMEnv

        return HFFMEnv
    raise AttributeError(name)
