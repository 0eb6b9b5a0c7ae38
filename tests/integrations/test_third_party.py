"""The env as third-party RL libraries take it: TorchRL, MO-Gymnasium and skrl.

These libraries are the optional extra ``pip install -e ".[integrations]"``, which
``.ci/run`` installs. Without it the tests skip; with ``HFFM_REQUIRE_INTEGRATIONS=1`` (set by
``.ci/run``) a missing library is a failure, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import logging
import tempfile
from types import ModuleType

import numpy as np
import pytest

import hffm_env  # noqa: F401  (registers the env ids)
from hffm_env.testing import integration, make_tiny_env
from hffm_env.wrappers import ActionMaskObservation


def _library(name: str) -> ModuleType:
    return integration(name)


def _env(**kwargs):
    return make_tiny_env("small", "cost", **kwargs)


def test_torchrl_check_env_specs_and_a_masked_rollout():
    _library("torchrl")
    import torch
    from torchrl.envs import GymWrapper, TransformedEnv
    from torchrl.envs.transforms import ActionMask
    from torchrl.envs.utils import check_env_specs

    check_env_specs(GymWrapper(_env()), seed=0)
    masked = TransformedEnv(GymWrapper(ActionMaskObservation(_env())), ActionMask())
    check_env_specs(masked, seed=0)
    rollout = masked.rollout(4)
    action, mask = rollout["action"].bool(), rollout["action_mask"]
    assert action.shape == mask.shape == (4, int(_env().action_space.nvec.sum()))
    assert (~mask).any()  # there is something to mask ...
    assert not (action & ~mask).any()  # ... and the sampled actions respect it
    assert torch.isfinite(rollout["next", "reward"]).all()


def test_torchrl_wraps_the_multi_agent_env_with_one_hot_masks_and_numeric_infos():
    """TorchRL's PettingZooWrapper (and BenchMARL on it) turns every info value into a tensor
    and gives each group one mask shaped as its one-hot action: the whole single-agent info
    and a mask per slot could not be wrapped."""
    _library("torchrl")
    import torch
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper
    from torchrl.envs.utils import check_env_specs

    from hffm_env.envs.parallel import NUMERIC_INFO
    from hffm_env.testing import TINY_OVERRIDES

    parallel = hffm_env.parallel_env("small", fidelity="cost", action_mask="one-hot",
                                     info="numeric", overrides=list(TINY_OVERRIDES))
    env = PettingZooWrapper(parallel, use_mask=True, seed=0)
    check_env_specs(env, seed=0)
    rollout = env.rollout(3)
    assert set(rollout["next", "edge", "info"].keys()) == set(NUMERIC_INFO)
    spent = rollout["next", "cloud", "info", "cumulative_energy_j"][:, 0]
    assert (spent > 0).all() and (spent.diff() > 0).all()  # the rounds' real costs
    for group in ("edge", "cloud"):
        sizes = parallel.action_space(f"{group}_0").nvec
        action, mask = rollout[group, "action"], rollout[group, "action_mask"]
        # each agent's action index of each slot, as positions in its flat mask
        offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]))
        flat = mask.reshape(*mask.shape[:2], -1)
        assert flat.shape[-1] == int(sizes.sum())
        assert flat.gather(-1, action + offsets).all()  # the sampled actions respect it
        if group == "edge":  # heads, partners and relays: something to mask
            assert (~flat).any()
    assert rollout["cloud", "action_mask"].shape[-2:] == (5, len(parallel.env.layout.menu))


def test_the_torchrl_mappo_example_trains_both_groups():
    """docs/examples/torchrl_mappo.py, what the README points MARL users to, runs: PPO
    steps for the edge and the cloud group through the masked multi-slot distribution."""
    _library("torchrl")
    import importlib.util
    from pathlib import Path

    import torch

    from hffm_env.testing import TINY_OVERRIDES

    path = Path(__file__).resolve().parents[2] / "docs" / "examples" / "torchrl_mappo.py"
    spec = importlib.util.spec_from_file_location("torchrl_mappo", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    built = {}

    def build(*args, **kwargs):  # the example's own, with its weights before training
        policy, losses, optimisers = original(*args, **kwargs)
        built.update(losses=losses, before={
            group: [p.detach().clone() for p in loss.parameters()]
            for group, loss in losses.items()})
        return policy, losses, optimisers

    original, example.build = example.build, build
    rewards = example.main(["--frames", "40", "--frames-per-batch", "20", "--minibatch", "10",
                            "--epochs", "1", "--set", *TINY_OVERRIDES])
    assert set(rewards) == {"edge", "cloud"} and all(len(r) == 2 for r in rewards.values())
    assert all(np.isfinite(r).all() for r in rewards.values())
    for group, loss in built["losses"].items():  # both groups' policies and critics stepped
        after = list(loss.parameters())
        assert all(torch.isfinite(p).all() for p in after)
        assert sum(not torch.equal(a, b) for a, b in zip(after, built["before"][group],
                                                          strict=True)) >= len(after) // 2
    # the distribution: masked values are never drawn, log_prob sums the slots
    nvec = [3, 2, 4]
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[:, 1] = mask[:, 2] = False  # slot 0 allows only value 0
    mask[0, 5:8] = False  # agent 0's slot 2 allows only value 3
    dist = example.MaskedMultiCategorical(torch.zeros(2, 9), mask, nvec)
    draws = dist.sample(torch.Size([200]))
    assert draws.shape == (200, 2, 3)
    assert (draws[..., 0] == 0).all() and (draws[:, 0, 2] == 3).all()
    assert (draws[:, 1, 2] != 3).any()  # agent 1's slot 2 is free
    # uniform logits: agent 0 has 1 * 1/2 * 1 of its choices, agent 1 1 * 1/2 * 1/4
    log_prob = dist.log_prob(torch.tensor([[0, 1, 3], [0, 1, 3]]))
    assert torch.allclose(log_prob, torch.log(torch.tensor([0.5, 0.125])))
    assert torch.allclose(dist.entropy(), -log_prob)  # uniform over what is allowed
    assert dist.log_prob(draws).shape == (200, 2)
    # the mode never picks a masked value, even where the logits favour one
    peaked = torch.zeros(2, 9)
    peaked[:, 1] = peaked[:, 6] = 5.0  # slot 0's value 1 (masked), slot 2's value 1
    mode = example.MaskedMultiCategorical(peaked, mask, nvec).mode
    assert mode[0].tolist()[::2] == [0, 3] and mode[1].tolist()[::2] == [0, 1]
    # a mask shaped (slots, n), as the cloud's, reads slot by slot
    grid = torch.ones(1, 2, 3, dtype=torch.bool)
    grid[0, 1, :2] = False
    assert (example.MaskedMultiCategorical(torch.zeros(1, 6), grid, [3, 3])
            .sample(torch.Size([50]))[..., 1] == 2).all()


def test_mo_gymnasium_wrappers_in_vector_mode():
    _library("mo_gymnasium")
    from mo_gymnasium.wrappers import LinearReward, MORecordEpisodeStatistics
    from mo_gymnasium.wrappers.vector import MORecordEpisodeStatistics as VectorStatistics
    from mo_gymnasium.wrappers.vector import MOSyncVectorEnv

    def make():
        return _env(reward_mode="vector")

    weights = np.array([1.0, 0.5, 0.25])
    linear = MORecordEpisodeStatistics(LinearReward(make(), weight=weights), gamma=0.9)
    linear.reset(seed=1)
    reward, info = None, {}
    for _ in range(4):  # TINY_OVERRIDES: 4 rounds per episode
        _, reward, _, _, info = linear.step(linear.action_space.sample())
    assert reward == pytest.approx(float(weights @ info["vector_reward"]))
    assert info["episode"]["l"] == 4 and info["episode"]["r"].shape == (3,)

    vector = VectorStatistics(MOSyncVectorEnv([make, make]), gamma=0.9)
    vector.reset(seed=2)
    for _ in range(4):
        _, rewards, terminated, truncated, info = vector.step(vector.action_space.sample())
        assert rewards.shape == (2, 3)
        space = vector.unwrapped.envs[0].unwrapped.reward_space
        assert all(space.contains(r.astype(np.float32)) for r in rewards)
    assert terminated.all() and not truncated.any() and info["episode"]["r"].shape == (2, 3)


def test_skrl_ppo_trains_on_the_full_action_space():
    _library("skrl")
    import torch
    from skrl.agents.torch.ppo import PPO, PPO_CFG
    from skrl.envs.wrappers.torch import wrap_env
    from skrl.memories.torch import RandomMemory
    from skrl.models.torch import DeterministicMixin, Model, MultiCategoricalMixin
    from skrl.trainers.torch import SequentialTrainer
    from torch import nn

    class Policy(MultiCategoricalMixin, Model):
        def __init__(self, observation_space, action_space):
            Model.__init__(self, observation_space=observation_space,
                           action_space=action_space, device="cpu")
            MultiCategoricalMixin.__init__(self)
            self.net = nn.Sequential(nn.Linear(self.num_observations, 32), nn.Tanh(),
                                     nn.Linear(32, int(action_space.nvec.sum())))

        def compute(self, inputs, role=""):
            return self.net(inputs["observations"]), {}

    class Value(DeterministicMixin, Model):
        def __init__(self, observation_space, action_space):
            Model.__init__(self, observation_space=observation_space,
                           action_space=action_space, device="cpu")
            DeterministicMixin.__init__(self)
            self.net = nn.Sequential(nn.Linear(self.num_observations, 32), nn.Tanh(),
                                     nn.Linear(32, 1))

        def compute(self, inputs, role=""):
            return self.net(inputs["observations"]), {}

    # skrl logs "Closing environment" at interpreter exit, after pytest closed its streams
    logging.getLogger("skrl").setLevel(logging.WARNING)
    torch.manual_seed(0)
    env = wrap_env(_env())
    spaces = (env.observation_space, env.action_space)
    models = {"policy": Policy(*spaces), "value": Value(*spaces)}
    cfg = PPO_CFG(rollouts=16, learning_epochs=2, mini_batches=2)
    cfg.experiment.directory = tempfile.mkdtemp(prefix="hffm-skrl-")
    cfg.experiment.write_interval = 0
    cfg.experiment.checkpoint_interval = 0
    agent = PPO(models=models, memory=RandomMemory(memory_size=16, num_envs=1, device="cpu"),
                observation_space=spaces[0], action_space=spaces[1], device="cpu", cfg=cfg)
    before = [p.detach().clone() for p in models["policy"].parameters()]
    SequentialTrainer(env=env, agents=agent,
                      cfg={"timesteps": 48, "headless": True, "disable_progressbar": True}).train()
    after = list(models["policy"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_skrl_wraps_the_multi_agent_env_with_flat_masks_and_a_state():
    """skrl's PettingZoo wrapper (its IPPO and MAPPO) needs the space dicts, ``state()`` and
    a mask it can tensorise."""
    _library("skrl")
    import torch
    from skrl.envs.wrappers.torch import wrap_env

    from hffm_env.testing import TINY_OVERRIDES

    logging.getLogger("skrl").setLevel(logging.WARNING)
    parallel = hffm_env.parallel_env("small", fidelity="cost", action_mask="flat",
                                     overrides=list(TINY_OVERRIDES))
    env = wrap_env(parallel, wrapper="pettingzoo")
    observations, _ = env.reset()
    width = parallel.observation_space("cloud_0")["observation"].shape[0] + \
        int(parallel.action_space("cloud_0").nvec.sum())
    assert observations["cloud_0"].shape == (1, width)
    assert env.state()["cloud_0"].shape == (1, parallel.state_space.shape[0])
    rounds = 0
    while True:
        actions = {a: torch.as_tensor(parallel.action_space(a).sample()).view(1, -1)
                   for a in env.possible_agents}
        _, _, terminated, _, _ = env.step(actions)
        rounds += 1
        if all(t.item() for t in terminated.values()) or rounds > 100:
            break
    assert rounds == parallel.env.config.env.episode_rounds
