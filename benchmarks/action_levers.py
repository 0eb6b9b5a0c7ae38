"""What do the full action's other levers add to a round plan? Routes, heads and D2D gossip.

A round plan (``benchmarks/plan_search.py``) chooses only the tier of each module type in each
round, with one route and the default heads. The full action has more levers; this plays the
plan with each of them switched on (``hffm_env.baselines.plan.PlanPolicy``'s options) beside
the plan itself and ``never`` (local training only, the compute floor of every round):

- ``+cheapest-routes``: every round, each cluster's route (direct, D2D relay, star) and head
  chosen by the cost model for that round's channels, the cheapest in energy
  (:func:`~hffm_env.baselines.plan.cheapest_routes`): the most that acting on the channels can
  save on the plan's transfers;
- ``+gossip``: D2D pairs (every device with its nearest cluster mate) exchange every module
  type the plan leaves unaggregated in that round, a cheap source of accuracy if there is one.

It prints the bench table and, per variant, the energy per round, its transfer part (minus
``never``'s, seed by seed) and the change against the plan (mean and std over seeds). In
``cost`` fidelity (the default; seconds) only prices are measured; in ``train`` fidelity (real
training) the table's energy to target shows what the levers do to accuracy.

    python benchmarks/action_levers.py [--plan FILE] [--scenario small] [--fidelity cost] \\
        [--seeds 1000 ...] [--target-accuracy T] [--set KEY=VALUE ...] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _output import (
    add_json_option,
    add_overrides_option,
    emit_json,
    help_texts,
    prepare_outputs,
)

from hffm_env import arguments
from hffm_env.config import FIDELITIES

DEFAULT_PLAN = Path(__file__).resolve().parents[1] / "docs/results/plan_search_small4.json"
"""The plan of the PPO results (docs/RESULTS.md)."""


def variants(plan: Any) -> list[Any]:
    """The plan, the plan with each lever, and ``never``."""
    from hffm_env.baselines.plan import PlanPolicy, RoundPlan
    from hffm_env.fl.schedule import Tier

    return [PlanPolicy(plan, "plan"),
            PlanPolicy(plan, "plan+cheapest-routes", cheapest_routes=True),
            PlanPolicy(plan, "plan+gossip", gossip_idle=True),
            PlanPolicy(RoundPlan.constant(1, Tier.NONE), "never")]


def _stat(values: list[float]) -> dict[str, float]:
    if not values:  # nothing to average (an interrupted run, or no plan transfers)
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": statistics.fmean(values),
            "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


def lever_summary(episodes: list[Any]) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant, over seeds: energy per round, its transfer part (minus ``never``'s energy
    per round on the same seed) and the change of the energy per round against ``plan``'s on
    the same seed (J and % of the plan's transfers)."""
    per_round = {(e.policy, e.seed): statistics.fmean(e.energy_j) for e in episodes}
    seeds = sorted({seed for _, seed in per_round})
    names = list(dict.fromkeys(e.policy for e in episodes))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        # the seeds this variant, the plan and never all finished (all of them, unless the
        # run was interrupted)
        done = [s for s in seeds if all((n, s) in per_round for n in (name, "plan", "never"))]
        mine = [per_round[(name, s)] for s in done]
        transfers = [per_round[(name, s)] - per_round[("never", s)] for s in done]
        change = [per_round[(name, s)] - per_round[("plan", s)] for s in done]
        plan_transfers = [per_round[("plan", s)] - per_round[("never", s)] for s in done]
        share = [100.0 * c / t for c, t in zip(change, plan_transfers, strict=True) if t > 0]
        out[name] = {"energy_per_round_j": _stat(mine), "transfers_per_round_j": _stat(transfers),
                     "change_vs_plan_j": _stat(change),
                     "change_vs_plan_transfers_pct": _stat(share)}
    return out


def format_levers(levers: dict[str, dict[str, dict[str, float]]]) -> str:
    """The lever table as Markdown."""
    def cell(stat: dict[str, float], digits: int = 2) -> str:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"

    rows = ["| variant | energy/round (J) | transfers/round (J) | against the plan (J/round) "
            "| against the plan's transfers (%) |", "| --- | --- | --- | --- | --- |"]
    for name, row in levers.items():
        rows.append(f"| {name} | {cell(row['energy_per_round_j'])} | "
                    f"{cell(row['transfers_per_round_j'])} | {cell(row['change_vs_plan_j'], 3)} | "
                    f"{cell(row['change_vs_plan_transfers_pct'], 1)} |")
    return "\n".join(rows)


def lever_parser(doc: str | None, fidelities: tuple[str, ...],
                 fidelity_help: str | None = None) -> argparse.ArgumentParser:
    """The arguments of a benchmark that plays a plan beside variants of it (this one and
    ``cloud_clusters.py``)."""
    parser = argparse.ArgumentParser(**help_texts(doc))
    parser.add_argument("--plan", default=str(DEFAULT_PLAN),
                        help="a plan JSON (plan_search.py's output or a plan itself; default: "
                             "the PPO results', docs/results/plan_search_small4.json)")
    parser.add_argument("--scenario", default="small", help="preset scenario (default: small)")
    add_overrides_option(parser)
    parser.add_argument("--fidelity", default="cost", choices=fidelities,
                        help=fidelity_help or "'cost': prices only (seconds); 'train': real "
                        "training, so that the table's energy to target shows what the "
                        "variants do to accuracy (default: cost)")
    parser.add_argument("--seeds", type=arguments.held_out_seed, nargs="+",
                        default=list(range(1000, 1030)),
                        help="held-out seeds (default: 1000-1029)")
    parser.add_argument("--target-accuracy", type=arguments.probability, default=None,
                        help="accuracy target of the table (default: 0.9 x the best final "
                             "accuracy; not used in cost fidelity)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar (default: on)")
    add_json_option(parser, "the levers and the bench")
    return parser


def run_levers(parser: argparse.ArgumentParser, args: argparse.Namespace,
               make_env: Callable[[], Any], variants_of: Callable[[Any], list[Any]],
               extra: dict[str, Any] | None = None) -> int:
    """Read ``args.plan``, play ``variants_of(plan)`` on ``make_env()``'s env over the seeds,
    print the bench table and the lever table, and write the JSON (``extra`` entries beside
    the plan's)."""
    from hffm_env.baselines.plan import RoundPlan
    from hffm_env.baselines.runner import format_table, run_benchmark

    try:
        plan = RoundPlan.read(args.plan)
    except (OSError, ValueError) as err:
        parser.error(f"--plan: {err}")
    result = run_benchmark(
        make_env, variants_of(plan), seeds=args.seeds, target_accuracy=args.target_accuracy,
        progress=args.progress)  # labelled with the env's scenario and fidelity
    levers = lever_summary(result.episodes)
    print(format_table(result))
    print()
    print(format_levers(levers))
    emit_json({"plan": plan.to_dict(), "seeds": args.seeds, "fidelity": args.fidelity,
               **(extra or {}), "levers": levers, "bench": result.to_dict()}, args.json)
    return 130 if result.interrupted else 0


def main(argv: list[str] | None = None) -> int:
    """Play the variants, print the bench table and the lever table."""
    parser = lever_parser(__doc__, FIDELITIES)
    args = parser.parse_args(argv)
    prepare_outputs(parser, args, inputs=[("--plan", args.plan)])

    import gymnasium as gym

    import hffm_env  # noqa: F401  (registers the env ids)

    return run_levers(parser, args, lambda: gym.make(
        "hffm/HFFM-v0", scenario=args.scenario, fidelity=args.fidelity,
        overrides=args.overrides), variants)


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "action_levers.py"))
