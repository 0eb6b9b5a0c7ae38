"""How cheaply can a round plan (tiers that change from round to round) reach the target?

``fixed_schedule_search.py`` found that no fixed schedule of the coarse action space beats
``hffm-d2d-e1`` (cloud every round over D2D). A plan (:class:`~hffm_env.baselines.plan.RoundPlan`)
may aggregate a module type at a different tier in each round. This descends, on the
surrogate and on training seeds, from ``hffm-d2d-e1`` written as a plan (or from ``--start``:
a schedule baseline's tiers round by round, or a plan file): for each round and
module type it tries the other tiers (none, edge, cloud) and keeps a change only when it lowers
the mean energy to target over the search seeds (reaching it on every one); passes repeat until
one changes nothing. Rounds after the target is reached cost nothing to the search, so they keep
``hffm-d2d-e1``'s cloud rounds and its final accuracy. Then it judges the plan beside
``hffm-d2d-e1`` and ``hffm-d2d-e2`` on held-out seeds, on the surrogate or with real training.
The plan, in the JSON's ``"plan"`` entry, is what ``train_agent.py --imitate`` clones.

The search plays the surrogate's mean curve. Real rounds are noisy (about 0.012 of accuracy per
round on ``small``), so a plan that just reaches the target on the mean curve crosses a round
later in part of the real episodes. Searching on the resampled noise instead (``--set
env.surrogate_noise=residuals``) finds plans that stay just under the target and bet on lucky
rounds; on ``small`` the residuals, recorded on other schedules' episodes, supplied those more
often than real training did (docs/RESULTS.md, PPO section).

    python benchmarks/plan_search.py --scenario small --target-accuracy 0.357 \\
        --seeds $(seq 0 9) --heldout-seeds $(seq 1000 1029) [--heldout-fidelity train] \\
        [--start hffm-d2d-e1|NAME|FILE] [--json FILE]
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any

from _output import add_json_option, emit_json, prepare_outputs
from fixed_schedule_search import (
    check_search_args,
    converged,
    env_factory,
    heldout_status,
    judge_heldout,
    mean_energy_to_target,
    say_unconverged,
    search_parser,
)

from hffm_env import arguments


def plan_of_policy(make_env: Any, name: str, rounds: int) -> tuple[Any, str]:
    """The tiers a schedule baseline (``name``, e.g. ``hffm-d2d-e2``) plays in each of
    ``rounds`` rounds, as a plan over D2D relay (seed 0; a baseline of fixed periods plays the
    same tiers on every seed), and what to call that start: the name, or, for a baseline of
    another route (``hffm-e2``), "its tiers over the D2D relay" (a plan plays no other route,
    and its price is the D2D one's)."""
    from hffm_env.baselines.plan import RoundPlan
    from hffm_env.baselines.policies import make_policy
    from hffm_env.config import MODULE_TYPES
    from hffm_env.fl.schedule import Route

    env, policy = make_env(), make_policy(name)
    try:
        obs, info = env.reset(seed=0)
        policy.reset(env, 0)
        tiers, routes = [], set()
        for _ in range(rounds):
            obs, _, _, _, info = env.step(policy.act(obs, info))
            played = env.unwrapped.last_schedule
            tiers.append(tuple(played.tier(t) for t in MODULE_TYPES))
            routes |= set(played.routes or (Route.DIRECT,))
    finally:
        env.close()
    label = name if routes <= {Route.D2D_RELAY} else f"{name}'s tiers over the D2D relay"
    return RoundPlan(tuple(tiers), name="best-plan"), label


def search(make_env: Any, rounds: int, seeds: list[int], target: float, max_passes: int = 3,
           log: Any = print, start: Any = None, start_name: str = "hffm-d2d-e1",
           progress: bool = False) -> tuple[Any, float, list[dict[str, Any]]]:
    """Coordinate descent over the tiers of every round and module type from ``start`` (a
    plan; default ``hffm-d2d-e1``'s, named ``start_name`` in the steps); returns the best plan,
    its mean energy to target over ``seeds`` (inf if it misses on one) and the accepted
    steps. ``progress``: a bar per pass over the (round, module type) coordinates."""
    from tqdm.auto import tqdm

    from hffm_env.baselines.plan import PLAN_TIERS, PlanPolicy, RoundPlan
    from hffm_env.config import MODULE_TYPES

    plan = start if start is not None else RoundPlan.constant(rounds, name="best-plan")
    best = mean_energy_to_target(make_env, [PlanPolicy(plan, "start")], seeds, target)[0]
    steps = [{"pass": 0, "change": f"start ({start_name})", "energy_to_target_j": best}]
    log(f"start {start_name}: {best:.2f} J to target over seeds {seeds}")
    for n in range(1, max_passes + 1):
        changed = False
        bar = tqdm(total=rounds * len(MODULE_TYPES), desc=f"pass {n}", unit="coordinate",
                   disable=not progress, leave=False)
        for r in range(rounds):
            for t in MODULE_TYPES:
                bar.update()
                now = plan.round_tiers(r)[t]
                others = [tier for tier in PLAN_TIERS if tier != now]
                candidates = [plan.with_tier(r, t, tier) for tier in others]
                costs = mean_energy_to_target(
                    make_env, [PlanPolicy(c, f"r{r}:{t}:{tier.name}")
                               for c, tier in zip(candidates, others)], seeds, target)
                i = min(range(len(others)), key=costs.__getitem__)
                if costs[i] < best - 1e-9:
                    plan, best, changed = candidates[i], costs[i], True
                    steps.append({"pass": n, "change": f"round {r}: {t} at "
                                  f"{others[i].name.lower()}", "energy_to_target_j": best})
                    log(f"pass {n}: {steps[-1]['change']} -> {best:.2f} J")
        bar.close()
        if not changed:
            break
    return plan, best, steps


def main(argv: list[str] | None = None) -> int:
    """Search, judge on held-out seeds, print the table."""
    parser = search_parser(__doc__, judged="plan")
    parser.add_argument("--rounds", type=arguments.positive_int, default=None,
                        help="rounds the plan spells out (default: the episode's)")
    parser.add_argument("--max-passes", type=arguments.positive_int, default=3,
                        help="passes of the coordinate descent at most (default: 3)")
    parser.add_argument("--start", default="hffm-d2d-e1", metavar="NAME|FILE",
                        help="where the descent starts: a schedule baseline's name (its tiers "
                             "round by round, e.g. hffm-d2d-e2) or a plan JSON (default: "
                             "hffm-d2d-e1)")
    add_json_option(parser, "the plan, the search and the held-out bench")
    args = parser.parse_args(argv)
    prepare_outputs(parser, args, inputs=[("--start", args.start)])  # (a name: no file)
    check_search_args(parser, args)

    from hffm_env.baselines.plan import PlanPolicy, RoundPlan
    from hffm_env.baselines.policies import policy_names

    make = env_factory(args)

    probe = make("surrogate")()
    horizon = probe.unwrapped.config.env.episode_rounds
    surrogate = probe.unwrapped.surrogate.record  # the fit searched on
    probe.close()
    if args.rounds is not None and args.rounds > horizon:  # rounds never played
        parser.error(f"--rounds {args.rounds}: the episode has {horizon} rounds "
                     "(env.episode_rounds); plan at most that many")
    rounds = args.rounds or horizon
    start, start_name = None, args.start  # hffm-d2d-e1: every type at the cloud every round
    if args.start in policy_names():
        try:
            # played where the search runs: a baseline that reads the accuracy (adaptive)
            # plays other tiers in cost fidelity, which measures none
            start, start_name = plan_of_policy(make("surrogate"), args.start, rounds)
        except ValueError as err:  # a baseline with tiers a plan cannot name (D2D)
            parser.error(f"--start {args.start}: {err}")
    elif args.start != "hffm-d2d-e1":
        try:
            start = RoundPlan.read(args.start)
        except (OSError, ValueError) as err:
            parser.error(f"--start: {err}; or hffm-d2d-e1, or a baseline's name: "
                         f"{', '.join(policy_names())}")
        # spelled out for every searched round (a plan repeats its last round past its end)
        tiers = start.tiers[:rounds] + (start.tiers[-1],) * (rounds - len(start.tiers))
        start = dataclasses.replace(start, tiers=tiers, name="best-plan")
    started = time.perf_counter()
    plan, cost, steps = search(make("surrogate"), rounds, args.seeds, args.target_accuracy,
                               args.max_passes, start=start, start_name=start_name,
                               progress=not args.no_progress)
    search_s = time.perf_counter() - started
    if not math.isfinite(cost):
        print(f"no plan reaches the target on every search seed (the start, {start_name}, does "
              "not either)")
    print(f"best plan ({search_s:.0f} s): {cost:.2f} J to target over seeds {args.seeds}")
    say_unconverged(steps, args.max_passes, "the plan")
    out: dict[str, Any] = {"scenario": args.scenario, "overrides": args.overrides,
                           "target_accuracy": args.target_accuracy, "start": start_name,
                           "search_seeds": args.seeds, "surrogate": surrogate,
                           "search_s": search_s, "energy_to_target_j": cost, "steps": steps,
                           "converged": converged(steps, args.max_passes),
                           "plan": plan.to_dict()}
    if args.heldout_seeds:
        out["heldout"] = judge_heldout(args, make, PlanPolicy(plan))
    emit_json(out, args.json)
    return heldout_status(out)


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "plan_search.py"))
