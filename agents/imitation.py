"""Behaviour cloning of a round plan into a fresh SB3 policy, before PPO (``--imitate``).

PPO from scratch on energy to target climbs fast and then flattens just under the target: it
does not find the cheap early rounds that a search over round plans finds
(``benchmarks/plan_search.py``). Cloning that plan first starts PPO where the search ended,
so that PPO can refine it with what a plan cannot see (the state: how close the target is,
channels, availability); on ``small`` it kept the plan but did not improve it (docs/RESULTS.md,
PPO section).

:func:`clone_plan` plays the plan in the training envs themselves (so VecNormalize's
statistics see the same observations and rewards PPO will), then fits the policy to the plan's
actions by maximum likelihood and the value head to the demonstrations' discounted
(normalised) returns. The demonstration rounds are not counted in ``--total-timesteps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hffm_env.baselines.plan import RoundPlan

__all__ = ["clone_plan", "CloneReport"]

MINIBATCH = 256
MIN_GRADIENT_STEPS = 400
"""Fewer demonstrations get more epochs: at least this many minibatch steps in all."""


@dataclass(frozen=True)
class CloneReport:
    """What cloning did."""

    rounds: int
    """demonstration rounds played (over all envs)"""
    epochs: int
    loss: float
    """the last minibatch's loss (negative log-likelihood of the plan's action plus half the
    value error)"""
    match: float
    """share of demonstration rounds whose whole action the deterministic policy reproduces"""


def clone_plan(model: Any, vec_env: Any, plan: RoundPlan, menu: tuple[int, ...],
               rounds: int, epochs: int = 50, learning_rate: float = 1e-3,
               normalized: bool = True) -> CloneReport:
    """Play ``plan`` for ``rounds`` rounds over ``vec_env``'s envs (coarse actions), then fit
    ``model.policy`` to it for ``epochs`` epochs (more when there are few demonstrations:
    :data:`MIN_GRADIENT_STEPS`): the plan's action by cross-entropy, the value by the
    discounted return of the (normalised) rewards. Returns a :class:`CloneReport`."""
    import torch

    from hffm_env.wrappers import coarse_num_clusters

    n_envs = vec_env.num_envs
    num_clusters = coarse_num_clusters(len(vec_env.action_space.nvec))
    round_in_episode = np.zeros(n_envs, dtype=np.int64)
    obs = vec_env.reset()
    raw_obs, actions, rewards, dones = [], [], [], []
    for _ in range(max(1, -(-rounds // n_envs))):
        action = np.stack([plan.coarse_action(int(r), menu, num_clusters)
                           for r in round_in_episode])
        raw_obs.append(vec_env.get_original_obs() if normalized else obs)
        obs, reward, done, _ = vec_env.step(action)
        actions.append(action)
        rewards.append(np.asarray(reward, dtype=np.float64))
        dones.append(np.asarray(done, dtype=bool))
        round_in_episode = np.where(done, 0, round_in_episode + 1)

    # discounted returns per env, backwards; an unfinished episode is cut at the last round
    returns = np.zeros((len(rewards), n_envs))
    running = np.zeros(n_envs)
    for i in reversed(range(len(rewards))):
        running = rewards[i] + model.gamma * running * (~dones[i])
        returns[i] = running
    # normalised with the statistics PPO starts from (they moved while the plan played)
    obs = np.concatenate(raw_obs)
    if normalized:
        obs = vec_env.normalize_obs(obs)
    policy = model.policy
    device = policy.device
    x = torch.as_tensor(obs, dtype=torch.float32, device=device)
    a = torch.as_tensor(np.concatenate(actions), device=device)
    g = torch.as_tensor(returns.reshape(-1), dtype=torch.float32, device=device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(int(model.seed or 0))
    loss_value = float("nan")
    epochs = max(epochs, -(-MIN_GRADIENT_STEPS // -(-len(x) // MINIBATCH)))
    policy.set_training_mode(True)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        for start in range(0, len(x), MINIBATCH):
            idx = order[start:start + MINIBATCH]
            values, log_prob, _ = policy.evaluate_actions(x[idx], a[idx])
            loss = -log_prob.mean() + 0.5 * torch.mean((values.flatten() - g[idx]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            optimizer.step()
            loss_value = float(loss.detach())
    policy.set_training_mode(False)
    with torch.no_grad():
        predicted = policy.get_distribution(x).get_actions(deterministic=True)
    match = float((predicted.reshape(a.shape) == a).all(dim=1).float().mean())
    return CloneReport(rounds=len(x), epochs=epochs, loss=loss_value, match=match)
