"""Multi-agent PPO with TorchRL on the HF-FM env: one policy and one centralised critic per
group (``edge``: the edge servers, ``cloud``), as in TorchRL's multi-agent PPO tutorial.

    pip install -e ".[integrations]"
    python docs/examples/torchrl_mappo.py --frames 2000            # cost fidelity, ~30 s
    python docs/examples/torchrl_mappo.py --fidelity surrogate --frames 20000

The env is ``hffm_env.parallel_env(..., action_mask="one-hot", info="numeric")``, the forms
TorchRL's ``PettingZooWrapper`` takes, with ``agent_indicator=True`` (each edge observation
ends in a one-hot of its cluster, so the edge group's shared policy tells them apart).
Each agent's action is a ``MultiDiscrete`` (periods, routes, heads, partners, relays), and
TorchRL ships a masked categorical for one slot only: :class:`MaskedMultiCategorical` below
is one masked categorical per slot. A sketch to start
from, not a tuned recipe: the README's results come from ``hffm train`` (stable-baselines3).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys

import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torch import distributions, nn
from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
from torchrl.envs.libs.pettingzoo import PettingZooWrapper
from torchrl.modules import MaskedCategorical, MultiAgentMLP, ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, ValueEstimators

import hffm_env

try:
    from torchrl.collectors import Collector
except ImportError:  # torchrl before 0.11 named it so
    from torchrl.collectors import SyncDataCollector as Collector


class MaskedMultiCategorical(distributions.Distribution):
    """One masked categorical per slot of a ``MultiDiscrete`` with sizes ``nvec``, from
    logits laid out flat (``sum(nvec)``) and the agent's mask (flat, or ``(slots, n)`` when
    every slot has ``n`` values). Slots are padded to the widest with masked-out entries;
    ``log_prob`` and ``entropy`` sum over slots, giving one per agent as PPO's loss wants."""

    arg_constraints: dict = {}

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor, nvec: list[int]) -> None:
        sizes = torch.as_tensor(nvec, device=logits.device)
        width, total = int(sizes.max()), int(sizes.sum())
        offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        columns = torch.arange(width, device=logits.device)
        valid = columns < sizes[:, None]  # (slots, width)
        index = torch.where(valid, offsets[:, None] + columns, 0)  # into the flat layout
        batch = logits.shape[:-1]
        flat_mask = mask.reshape(*batch, total)
        self.slots = MaskedCategorical(logits=logits[..., index],
                                       mask=flat_mask[..., index] & valid)
        super().__init__(batch_shape=batch, validate_args=False)

    def sample(self, sample_shape: torch.Size | None = None) -> torch.Tensor:
        return self.slots.sample(sample_shape or torch.Size())

    @property
    def mode(self) -> torch.Tensor:
        return self.slots.logits.argmax(-1)

    deterministic_sample = mode

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        # read off the masked, normalised logits, so that a batch of samples broadcasts
        logits = self.slots.logits.expand(*value.shape, self.slots.logits.shape[-1])
        return logits.gather(-1, value.unsqueeze(-1)).squeeze(-1).sum(-1)

    def entropy(self) -> torch.Tensor:
        return self.slots.entropy().sum(-1)


def build(env: PettingZooWrapper, nvec: dict[str, list[int]], lr: float
          ) -> tuple[TensorDictSequential, dict[str, ClipPPOLoss], dict[str, torch.optim.Adam]]:
    """Per group: a shared-weight policy over each agent's observation, a centralised critic
    over the group's observations, their PPO loss with GAE, and its optimiser."""
    actors, losses, optimisers = [], {}, {}
    for group, agents in env.group_map.items():
        observation = (group, "observation", "observation")  # the mask is moved beside it
        width = env.observation_spec[observation].shape[-1]
        policy_net = MultiAgentMLP(n_agent_inputs=width, n_agent_outputs=sum(nvec[group]),
                                   n_agents=len(agents), centralised=False, share_params=True,
                                   depth=2, num_cells=64, activation_class=nn.Tanh)
        actor = ProbabilisticActor(
            TensorDictModule(policy_net, in_keys=[observation], out_keys=[(group, "logits")]),
            in_keys={"logits": (group, "logits"), "mask": (group, "action_mask")},
            out_keys=[(group, "action")],
            distribution_class=lambda logits, mask, sizes=nvec[group]:
                MaskedMultiCategorical(logits, mask, sizes),
            return_log_prob=True, log_prob_key=(group, "action_log_prob"))
        critic_net = MultiAgentMLP(n_agent_inputs=width, n_agent_outputs=1,
                                   n_agents=len(agents), centralised=True, share_params=True,
                                   depth=2, num_cells=64, activation_class=nn.Tanh)
        critic = TensorDictModule(critic_net, in_keys=[observation],
                                  out_keys=[(group, "state_value")])
        loss = ClipPPOLoss(actor_network=actor, critic_network=critic, clip_epsilon=0.2,
                           entropy_coeff=1e-3, normalize_advantage=False)
        loss.set_keys(reward=(group, "reward"), action=(group, "action"),
                      sample_log_prob=(group, "action_log_prob"),
                      value=(group, "state_value"), done=(group, "done"),
                      terminated=(group, "terminated"), advantage=(group, "advantage"),
                      value_target=(group, "value_target"))
        loss.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
        actors.append(actor)
        losses[group] = loss
        optimisers[group] = torch.optim.Adam(loss.parameters(), lr)
    return TensorDictSequential(*actors), losses, optimisers


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    """Train; returns each group's mean reward per collected batch."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="small")
    parser.add_argument("--fidelity", default="cost", choices=("cost", "surrogate", "train"))
    parser.add_argument("--set", nargs="+", action="extend", default=[], dest="overrides",
                        metavar="KEY=VALUE",
                        help="scenario overrides, e.g. env.episode_rounds=10 (repeatable)")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--frames-per-batch", type=int, default=200)
    parser.add_argument("--minibatch", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    logging.getLogger("torchrl").setLevel(logging.WARNING)  # its per-batch storage notes
    torch.manual_seed(args.seed)
    parallel = hffm_env.parallel_env(args.scenario, fidelity=args.fidelity,
                                     overrides=args.overrides, action_mask="one-hot",
                                     info="numeric", agent_indicator=True)
    nvec = {group: parallel.action_space(f"{group}_0").nvec.tolist()
            for group in ("edge", "cloud")}
    env = PettingZooWrapper(parallel, use_mask=True, seed=args.seed)
    policy, losses, optimisers = build(env, nvec, args.lr)
    # the policy is not recurrent: it needs no InitTracker (torchrl 0.14 asks whether to add
    # it, and from 0.15 would add it unasked; older releases lack the flag)
    keep_env = ({"auto_register_policy_transforms": False}
                if "auto_register_policy_transforms" in inspect.signature(Collector).parameters
                else {})
    collector = Collector(env, policy, frames_per_batch=args.frames_per_batch,
                          total_frames=args.frames, **keep_env)
    rewards: dict[str, list[float]] = {group: [] for group in losses}
    for batch, data in enumerate(collector):
        for group, loss in losses.items():
            with torch.no_grad():
                loss.value_estimator(data, params=loss.critic_network_params,
                                     target_params=loss.target_critic_network_params)
            buffer = ReplayBuffer(storage=LazyTensorStorage(data.numel()),
                                  sampler=SamplerWithoutReplacement(),
                                  batch_size=args.minibatch)
            buffer.extend(data.reshape(-1))
            for _ in range(args.epochs):
                for minibatch in buffer:
                    terms = loss(minibatch)
                    total = terms["loss_objective"] + terms["loss_critic"] + terms["loss_entropy"]
                    optimisers[group].zero_grad()
                    total.backward()
                    nn.utils.clip_grad_norm_(loss.parameters(), 1.0)
                    optimisers[group].step()
            rewards[group].append(float(data["next", group, "reward"].mean()))
        collector.update_policy_weights_()
        energy = data["next", "cloud", "info", "energy_j"].mean()
        print(f"batch {batch}: mean reward " + ", ".join(
            f"{g} {r[-1]:+.3f}" for g, r in rewards.items()) + f"; energy {energy:.2f} J/round")
    collector.shutdown()
    return rewards


if __name__ == "__main__":  # bad input (a --set key, a scenario) as one error line
    from hffm_env.arguments import run_command

    sys.exit(run_command(lambda: main() and 0, "torchrl_mappo.py"))
