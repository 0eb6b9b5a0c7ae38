"""Would leaving some clusters out of a round plan's cloud rounds pay?

Partial participation at the cloud tier.

The env's action chooses each module type's tier for every cluster at once. The simulator can
also let only some clusters join a round's cloud aggregations (``Schedule.cloud_clusters``):
the others aggregate those module types at the edge tier, so the head's uplink, the backhaul
and the downlink of their cloud exchange are not paid, and their devices keep an edge average
instead of the cloud one. This plays the PPO results' plan (``benchmarks/plan_search.py``) with
clusters left out by a few rules, beside the plan itself and ``never``:

- ``1-out-rotating``: in round ``r`` cluster ``r mod S`` stays out;
- ``1-out-from-round-4``: the same from the fourth round on (the plan's first rounds are cheap
  already);
- ``1-out-costliest``: the cluster whose absence saves the most energy this round, by the cost
  model for this round's channels;
- ``2-out-rotating``: in round ``r`` clusters ``2r mod S`` and ``2r + 1 mod S`` stay out.

It prints the bench table and the energy per round against the plan
(``benchmarks/action_levers.py``'s table); in ``train`` fidelity the energy to target shows what
the missing cloud averages cost in accuracy. The surrogate does not model partial participation,
so ``surrogate`` fidelity is refused.

    python benchmarks/cloud_clusters.py [--plan FILE] [--scenario small] [--fidelity cost] \\
        [--seeds 1000 ...] [--target-accuracy T] [--set KEY=VALUE ...] [--json [FILE]]
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from _output import prepare_outputs
from action_levers import lever_parser, run_levers

from hffm_env import arguments
from hffm_env.envs import HFFMEnv

Rule = Callable[[Any, Any, int], set[int]]
"""``(env, schedule, round index) -> clusters left out of the round's cloud aggregations``."""


def rotating(count: int, from_round: int = 0) -> Rule:
    """``count`` clusters out each round from ``from_round`` on, taking turns."""
    def rule(env: Any, schedule: Any, round_index: int) -> set[int]:
        clusters = env.layout.num_clusters
        if round_index < from_round:
            return set()
        return {(count * round_index + k) % clusters for k in range(count)}
    return rule


def costliest(env: Any, schedule: Any, round_index: int) -> set[int]:
    """The one cluster whose absence from the cloud saves the most energy this round (none in
    a round without cloud aggregations)."""
    from hffm_env.fl.schedule import Tier

    if Tier.CLOUD not in schedule.tiers.values():
        return set()
    clusters = env.layout.num_clusters
    energies = [env.engine.price_schedule(dataclasses.replace(
        schedule, cloud_clusters=tuple(c != out for c in range(clusters)))).energy_j
        for out in range(clusters)]
    return {int(np.argmin(energies))}


RULES: dict[str, Rule] = {
    "1-out-rotating": rotating(1),
    "1-out-from-round-4": rotating(1, from_round=3),
    "1-out-costliest": costliest,
    "2-out-rotating": rotating(2),
}


class CloudClusterEnv(HFFMEnv):
    """An :class:`~hffm_env.envs.HFFMEnv` whose decoded schedules leave clusters out of the
    cloud by the rule of the policy playing it (``cloud_rule``, set at the policy's reset;
    None plays the schedule as decoded)."""

    cloud_rule: Rule | None = None

    def decode(self, action: np.ndarray) -> tuple[Any, Any]:
        """The decoded schedule with the clusters ``cloud_rule`` names out of the cloud."""
        schedule, report = super().decode(action)
        if self.cloud_rule is None:
            return schedule, report
        out = self.cloud_rule(self, schedule, self.rounds_done)
        joins = tuple(c not in out for c in range(self.layout.num_clusters))
        return dataclasses.replace(schedule, cloud_clusters=joins), report


def variants(plan: Any) -> list[Any]:
    """The plan, the plan with each rule, and ``never``."""
    from hffm_env.baselines.plan import PlanPolicy, RoundPlan
    from hffm_env.fl.schedule import Tier

    class RulePlan(PlanPolicy):
        """The plan, on an env that leaves clusters out by ``rule``."""

        def __init__(self, rule: Rule | None, name: str, plan: Any = plan) -> None:
            super().__init__(plan, name)
            self.rule = rule

        def reset(self, env: Any, seed: int | None = None) -> None:
            super().reset(env, seed)
            env.unwrapped.cloud_rule = self.rule

    return ([RulePlan(None, "plan")]
            + [RulePlan(rule, f"plan-{name}") for name, rule in RULES.items()]
            + [RulePlan(None, "never", RoundPlan.constant(1, Tier.NONE))])


def main(argv: list[str] | None = None) -> int:
    """Play the variants, print the bench table and the energy against the plan."""
    parser = lever_parser(__doc__, ("cost", "train"),
                          "cost (prices only; seconds) or train (real training); the "
                          "surrogate does not model partial participation (default: cost)")
    args = parser.parse_args(argv)
    prepare_outputs(parser, args, inputs=[("--plan", args.plan)])
    return run_levers(parser, args, lambda: CloudClusterEnv(
        scenario=args.scenario, fidelity=args.fidelity, overrides=args.overrides), variants,
        extra={"rules": list(RULES)})


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "cloud_clusters.py"))
