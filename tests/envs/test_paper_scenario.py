"""The `paper` preset mirrors the prototype: homogeneous devices and its star cost."""

import gymnasium as gym
import pytest

import hffm_env  # noqa: F401
from hffm_env.baselines.policies import make_policy


def test_paper_devices_are_homogeneous_and_star_costs_the_prototypes_387_j():
    env = gym.make("hffm/HFFM-v0", scenario="paper", fidelity="cost")
    unwrapped = env.unwrapped
    config = unwrapped.config
    for profile in unwrapped.data.profiles:
        assert profile.modalities == tuple(config.data.modalities)
        assert profile.tasks == tuple(config.data.tasks)
    policy = make_policy("star")
    obs, info = env.reset(seed=1000)
    policy.reset(env, 1000)
    for _ in range(3):
        obs, _, _, _, info = env.step(policy.act(obs, info))
        assert info["latency_s"] == pytest.approx(12.1)
        assert info["energy_j"] == pytest.approx(40 * 0.8 * 12.1)
    env.close()
