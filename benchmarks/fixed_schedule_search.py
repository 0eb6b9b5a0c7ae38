"""How cheaply can any fixed schedule of the coarse action space reach the target?

The learning issue asks for a policy that reaches the target accuracy with 30% less energy
than the best baseline. A learned policy can only beat that by much if the best *fixed*
schedule leaves room, so this measures the best fixed one first. It searches the fixed
schedules a coarse action can hold for every round (per module type an edge and a cloud
period from ``env.period_menu``, one route for every cluster, no pair exchange) by coordinate
descent from ``hffm-d2d-e1`` (cloud every round over D2D): per module type every (edge, cloud)
pair of the menu with the others fixed, then every route, keeping a change only when it
lowers the mean energy to target over the search seeds (a schedule must reach the target on
every one of them); passes repeat until one changes nothing. Then it judges the winner
beside ``hffm-d2d-e1`` and ``hffm-d2d-e2`` on held-out seeds, on the surrogate or with real
training. Search on training seeds (below 1000), judge on held-out ones.

    python benchmarks/fixed_schedule_search.py --scenario small --target-accuracy 0.357 \\
        --seeds $(seq 0 9) --heldout-seeds $(seq 1000 1029) [--heldout-fidelity train] \\
        [--json FILE]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from _output import (
    add_json_option,
    add_overrides_option,
    emit_json,
    help_texts,
    prepare_outputs,
)

from hffm_env import arguments


def _schedule(edge: dict[str, int], cloud: dict[str, int], route: Any, name: str) -> Any:
    from hffm_env.baselines.calibrate import MixedPeriodPolicy
    from hffm_env.config import MODULE_TYPES

    return MixedPeriodPolicy(name, dict(edge), dict(cloud), dict.fromkeys(MODULE_TYPES, False),
                             route)


def _describe(policy: Any) -> dict[str, Any]:
    return {"edge_period": dict(policy.edge), "cloud_period": dict(policy.cloud),
            "route": policy.route.name.lower()}


def mean_energy_to_target(make_env: Any, candidates: list[Any], seeds: list[int],
           target: float) -> list[float]:
    """Mean energy to target of each candidate over ``seeds`` (inf if one seed misses)."""
    from hffm_env.baselines.runner import run_benchmark

    result = run_benchmark(make_env, candidates, seeds=seeds, target_accuracy=target,
                           progress=False)
    if result.interrupted:  # the runner kept what finished; a search must not go on with it
        raise KeyboardInterrupt
    by_name = {s.policy: s for s in result.summaries}
    return [by_name[c.name].energy_to_target_j["mean"]
            if by_name[c.name].reached_target == len(seeds) else math.inf
            for c in candidates]


def starts() -> dict[str, tuple[int, int, Any]]:
    """Where a descent can start: the paper's menu and ``hffm-d2d-e1``, as (edge period,
    cloud period, route) for every module type."""
    from hffm_env.baselines.calibrate import cloud_every_round_schedules
    from hffm_env.wrappers import PAPER_MENU

    e1 = cloud_every_round_schedules()[0]
    return {**PAPER_MENU, e1.name: (e1.edge_period, e1.cloud_period, e1.route)}


def search(make_env: Any, menu: tuple[int, ...], seeds: list[int], target: float,
           start: str = "hffm-d2d-e1", max_passes: int = 3,
           log: Any = print, progress: bool = False) -> tuple[Any, float, list[dict[str, Any]]]:
    """Coordinate descent over per-type (edge, cloud) periods and the route from the fixed
    schedule ``start`` (a name of :func:`starts`); returns the best schedule, its mean energy
    to target over ``seeds`` (inf if it misses on one) and the accepted steps. ``progress``:
    a bar per pass over the module types and the route."""
    from tqdm.auto import tqdm

    from hffm_env.config import MODULE_TYPES
    from hffm_env.fl.schedule import Route

    e0, c0, route = starts()[start]
    edge, cloud = dict.fromkeys(MODULE_TYPES, e0), dict.fromkeys(MODULE_TYPES, c0)
    best = mean_energy_to_target(make_env, [_schedule(edge, cloud, route, "start")], seeds,
                                 target)[0]
    steps = [{"pass": 0, "change": f"start ({start})", "energy_to_target_j": best}]
    log(f"start {start}: {best:.2f} J to target over seeds {seeds}")
    for n in range(1, max_passes + 1):
        changed = False
        bar = tqdm(total=len(MODULE_TYPES) + 1, desc=f"{start}: pass {n}", unit="coordinate",
                   disable=not progress, leave=False)
        for t in MODULE_TYPES:
            bar.update()
            pairs = [(e, c) for e in menu for c in menu]
            candidates = [_schedule({**edge, t: e}, {**cloud, t: c}, route, f"{t}:{e}/{c}")
                          for e, c in pairs]
            costs = mean_energy_to_target(make_env, candidates, seeds, target)
            i = min(range(len(pairs)), key=costs.__getitem__)
            if costs[i] < best - 1e-9:
                edge[t], cloud[t] = pairs[i]
                best, changed = costs[i], True
                steps.append({"pass": n, "change": f"{t}: edge {pairs[i][0]}, cloud "
                              f"{pairs[i][1]}", "energy_to_target_j": best})
                log(f"pass {n}: {steps[-1]['change']} -> {best:.2f} J")
        routes = list(Route)
        bar.update()
        bar.close()
        costs = mean_energy_to_target(
            make_env, [_schedule(edge, cloud, r, f"route:{r.name}") for r in routes], seeds,
            target)
        i = min(range(len(routes)), key=costs.__getitem__)
        if costs[i] < best - 1e-9:
            route, best, changed = routes[i], costs[i], True
            steps.append({"pass": n, "change": f"route {routes[i].name.lower()}",
                          "energy_to_target_j": best})
            log(f"pass {n}: {steps[-1]['change']} -> {best:.2f} J")
        if not changed:
            break
    return _schedule(edge, cloud, route, "best-fixed"), best, steps


def search_parser(doc: str | None, judged: str) -> argparse.ArgumentParser:
    """The arguments every search benchmark shares (scenario, overrides, target, search and
    held-out seeds, held-out fidelity); ``judged`` names what the held-out seeds judge."""
    parser = argparse.ArgumentParser(**help_texts(doc))
    parser.add_argument("--scenario", default="small", help="preset scenario (default: small)")
    add_overrides_option(parser)
    parser.add_argument("--target-accuracy", type=arguments.probability, required=True,
                        help="the global accuracy to reach (e.g. the trade-off run's)")
    parser.add_argument("--seeds", type=arguments.seed, nargs="+", default=list(range(10)),
                        help="search seeds, training seeds below 1000 (default 0..9)")
    parser.add_argument("--heldout-seeds", type=arguments.seed, nargs="*",
                        default=list(range(1000, 1030)),
                        help=f"seeds the {judged} is judged on (default 1000..1029; none: skip)")
    parser.add_argument("--heldout-fidelity", default="surrogate", choices=("surrogate", "train"),
                        help="fidelity of the held-out check (default: surrogate)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (the descent's passes and the held-out "
                        "judgement)")
    return parser


def check_search_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``parser.error`` naming the first shared argument out of range (search seeds must be
    training seeds; the target above 0; the types refuse the rest while parsing)."""
    from hffm_env.seeding import FIRST_HELD_OUT_SEED, check_training_seeds

    try:
        check_training_seeds(args.seeds, "--seeds")
    except ValueError as err:
        parser.error(f"{err}; held-out seeds judge (--heldout-seeds)")
    heldout = args.heldout_seeds or []
    twice = arguments.first_repeated(heldout)
    if twice is not None:  # (refused by the runner, but only after the whole search)
        parser.error(f"--heldout-seeds: {twice} is given twice")
    judged_on = [s for s in heldout if s < FIRST_HELD_OUT_SEED]
    if judged_on:
        parser.error(f"--heldout-seeds {judged_on}: held-out seeds are {FIRST_HELD_OUT_SEED} "
                     "and above (the search's own seeds are below)")
    if not 0 < args.target_accuracy < 1:
        parser.error(f"--target-accuracy {args.target_accuracy}: must be in (0, 1)")


def judge_heldout(args: argparse.Namespace, make: Any, found: Any) -> dict[str, Any]:
    """Play what a search ``found`` beside ``hffm-d2d-e1`` (its start) and ``hffm-d2d-e2``
    (the best baseline) on the held-out seeds, print the table, return the bench as a dict."""
    from hffm_env.baselines.calibrate import cloud_every_round_schedules
    from hffm_env.baselines.runner import format_table, run_benchmark

    result = run_benchmark(make(args.heldout_fidelity),
                           [found, cloud_every_round_schedules()[0], "hffm-d2d-e2"],
                           seeds=args.heldout_seeds, target_accuracy=args.target_accuracy,
                           progress=not args.no_progress)
    print(format_table(result))
    return result.to_dict()


def converged(steps: list[dict[str, Any]], max_passes: int) -> bool:
    """Whether a descent stopped because a pass changed nothing, not at ``max_passes`` with
    a change in its last pass (then a further pass might have found more)."""
    return steps[-1]["pass"] < max_passes


def say_unconverged(steps: list[dict[str, Any]], max_passes: int, what: str) -> None:
    """A line on stderr when the descent of ``what`` stopped at the cap, still changing."""
    if not converged(steps, max_passes):
        print(f"note: {what} was still changing in pass {max_passes} (--max-passes); more "
              "passes might find better", file=sys.stderr)


def heldout_status(out: dict[str, Any]) -> int:
    """The exit status of a search whose JSON ``out`` was written: 130 (and a line saying so)
    when Ctrl-C cut its held-out judgement short (the JSON then says ``"interrupted"``)."""
    if out.get("heldout", {}).get("interrupted"):
        print("interrupted: the held-out judgement holds the episodes that finished",
              file=sys.stderr)
        return 130
    return 0


def env_factory(args: argparse.Namespace) -> Any:
    """``make(fidelity)``: a factory of the searched scenario's env in that fidelity."""
    import gymnasium as gym

    import hffm_env  # noqa: F401  (registers the env ids)

    def make(fidelity: str) -> Any:
        return lambda: gym.make("hffm/HFFM-v0", scenario=args.scenario, fidelity=fidelity,
                                overrides=args.overrides)

    return make


def main(argv: list[str] | None = None) -> int:
    """Search, judge on held-out seeds, print the table."""
    parser = search_parser(__doc__, judged="winner")
    parser.add_argument("--starts", nargs="+", default=["hffm-d2d-e1", "hffm-d2d-e2", "star"],
                        metavar="NAME", help="fixed schedules to descend from: names of the "
                        "paper's menu, never, or hffm-d2d-e1 (default: hffm-d2d-e1 hffm-d2d-e2 "
                        "star)")
    parser.add_argument("--max-passes", type=arguments.positive_int, default=3,
                        help="passes of the coordinate descent at most (default: 3)")
    add_json_option(parser, "the search and the held-out bench")
    args = parser.parse_args(argv)
    prepare_outputs(parser, args)
    check_search_args(parser, args)
    unknown = [n for n in args.starts if n not in starts()]
    if unknown:
        parser.error(f"--starts {unknown}: known are {list(starts())}")


    make = env_factory(args)

    probe = make("surrogate")()
    menu = tuple(probe.unwrapped.layout.menu)
    surrogate = probe.unwrapped.surrogate.record  # the fit searched on
    probe.close()
    started = time.perf_counter()
    descents, found = {}, {}
    for name in args.starts:
        found[name], cost, steps = search(make("surrogate"), menu, args.seeds,
                                          args.target_accuracy, name, args.max_passes,
                                          progress=not args.no_progress)
        descents[name] = {"best": _describe(found[name]), "energy_to_target_j": cost,
                          "steps": steps, "converged": converged(steps, args.max_passes)}
        say_unconverged(steps, args.max_passes, f"the descent from {name}")
    winner = min(descents, key=lambda n: descents[n]["energy_to_target_j"])
    best = found[winner]
    search_s = time.perf_counter() - started
    print(f"best fixed schedule ({search_s:.0f} s, from {winner}): {_describe(best)}")
    if not math.isfinite(descents[winner]["energy_to_target_j"]):
        print(f"no fixed schedule reaches the target {args.target_accuracy} on the search "
              "seeds: the schedule above is only where the descent stopped", file=sys.stderr)
    out: dict[str, Any] = {"scenario": args.scenario, "overrides": args.overrides,
                           "target_accuracy": args.target_accuracy, "search_seeds": args.seeds,
                           "search_s": search_s, "surrogate": surrogate,
                           "descents": descents,
                           "best_from": winner, "best": _describe(best)}
    if args.heldout_seeds:
        out["heldout"] = judge_heldout(args, make, best)
    emit_json(out, args.json)
    return heldout_status(out)


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "fixed_schedule_search.py"))
