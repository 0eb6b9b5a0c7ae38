"""How little energy can reaching the target accuracy cost? A floor read off a bench JSON.

Every schedule pays at least the local-training compute of every round (aggregating only adds
transfers), and ``never`` pays exactly that. No policy of the run reached the target before the
earliest round at which any of them did. So, per seed, ``never``'s energy summed up to that
round is a floor under the energy to target of every policy in the run (a policy that
reaches the target earlier than all of these could go below it; none here did). The script
prints that floor beside the best baseline's energy to target and the learning issue's target
(30% less than the best baseline), so one can see whether the target is physically open.
``--plot FILE`` draws every policy's energy to target (mean and std over the seeds on which it
reached the target) against those three lines. In the JSON, each seed's ``earliest_round``
indexes the episodes' per-round lists (0 is the first round); the printout counts rounds from
1, as docs/RESULTS.md does.

    python benchmarks/energy_floor.py docs/results/small_ppo_vs_baselines.json \\
        [--json FILE] [--plot FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from _output import add_json_option, emit_json, help_texts, prepare_outputs

from hffm_env import arguments
from hffm_env.baselines.policies import is_agent_name
from hffm_env.baselines.runner import BenchResult, require_target
from hffm_env.files import save_figure_atomically

TARGET_SAVING = 0.30
"""The learning issue's target: 30% less energy to target than the best baseline."""


def first_reached(accuracy: list[float | None], target: float) -> int | None:
    """The first round (0-based) whose recorded accuracy (``None``: not measured) reaches
    ``target``; ``None`` when none does."""
    from hffm_env.envs.reward import reaches_target

    return next((r for r, a in enumerate(accuracy)
                 if a is not None and reaches_target(a, target)), None)


def energy_floor(bench: dict[str, Any], best: str) -> dict[str, Any]:
    """Per seed and in the mean over seeds: the compute floor of the energy to target, the
    energy to target of policy ``best`` and the issue's target for it (30% less)."""
    target = bench["target_accuracy"]
    if not bench["episodes"]:
        raise ValueError("the run holds no episodes")
    policies = sorted({episode["policy"] for episode in bench["episodes"]})
    if best not in policies:
        raise ValueError(f"--best {best!r}: no episode of it; the run has {policies}")
    seeds: dict[int, dict[str, Any]] = {}
    for episode in bench["episodes"]:
        row = seeds.setdefault(episode["seed"], {"earliest_round": None, "by": []})
        reached = first_reached(episode["accuracy"], target)
        if episode["policy"] == "never":
            row["never_energy_j"] = [float(e) for e in episode["energy_j"]]
            row["never_energy_per_round_j"] = statistics.fmean(episode["energy_j"])
        if episode["policy"] == best:
            row["best_energy_to_target_j"] = (None if reached is None
                                              else float(sum(episode["energy_j"][:reached + 1])))
        if reached is None:
            continue
        if row["earliest_round"] is None or reached < row["earliest_round"]:
            row["earliest_round"], row["by"] = reached, [episode["policy"]]
        elif reached == row["earliest_round"]:
            row["by"].append(episode["policy"])
    for seed, row in seeds.items():
        if "never_energy_per_round_j" not in row or row["earliest_round"] is None:
            raise ValueError(f"seed {seed}: the run needs a 'never' episode and a policy that "
                             "reached the target")
        # the seed's own rounds: fading and dropout do not depend on the policy played
        row["floor_j"] = float(sum(row.pop("never_energy_j")[:row["earliest_round"] + 1]))
    floors = [row["floor_j"] for row in seeds.values()]
    bests = [row.get("best_energy_to_target_j") for row in seeds.values()]
    # a mean over the seeds it reached the target on would flatter it: no mean, no target
    missed = sorted(seed for seed, row in seeds.items()
                    if row.get("best_energy_to_target_j") is None)
    mean_best = None if missed else statistics.fmean(b for b in bests if b is not None)
    return {
        "target_accuracy": target,
        "best_baseline": best,
        "seeds": {str(s): row for s, row in sorted(seeds.items())},
        "floor_j": statistics.fmean(floors),
        "best_energy_to_target_j": mean_best,
        "best_missed_seeds": missed,
        "target_energy_j": None if mean_best is None else (1 - TARGET_SAVING) * mean_best,
    }


def plot_energy_to_target(bench: dict[str, Any], result: dict[str, Any], path: str) -> None:
    """A bar per policy that reached the target on at least one seed: its mean energy to target
    with the std over those seeds (agents in red, with how many seeds they reached it on),
    beside the best baseline's, the 30% target and the compute floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the runner's own summaries: the numbers of the bench table
    summaries = [s for s in BenchResult.from_dict(bench).summaries if s.reached_target]
    # those that reached it on every seed first: a mean over fewer seeds is not comparable
    summaries.sort(key=lambda s: (s.reached_target < s.episodes, s.energy_to_target_j["mean"]))
    names = [s.policy for s in summaries]
    colours = ["tab:red" if is_agent_name(n) else "tab:blue" for n in names]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) + 1.6))
    bars = ax.barh(range(len(names)), [s.energy_to_target_j["mean"] for s in summaries],
                   xerr=[s.energy_to_target_j["std"] for s in summaries], color=colours,
                   alpha=0.8, capsize=3)
    missed_some = False
    for bar, summary in zip(bars, summaries):
        if summary.reached_target < summary.episodes:
            bar.set_alpha(0.35)
            bar.set_hatch("//")
            missed_some = True
    ax.set_yticks(range(len(names)),
                  [f"{s.policy} ({s.reached_target}/{s.episodes})" for s in summaries], fontsize=8)
    ax.invert_yaxis()
    best = result["best_baseline"]
    lines = [(result["best_energy_to_target_j"], "k", "--", f"{best}"),
             (result["target_energy_j"], "tab:green", "-", "30% less (target)"),
             (result["floor_j"], "grey", ":", "compute floor")]
    for x, colour, style, label in lines:
        if x is not None:
            ax.axvline(x, color=colour, linestyle=style, label=f"{label}: {x:.1f} J")
    ax.set_xlabel(f"energy to target accuracy {bench['target_accuracy']:.3f} (J; mean, std over "
                  "the seeds that reached it)")
    if missed_some:  # (k/n) after each name says on how many seeds
        ax.set_title("bars hatched: the target was missed on some seeds", fontsize=9)
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    kinds = [Patch(color="tab:red", alpha=0.8, label="agent"),
             Patch(color="tab:blue", alpha=0.8, label="baseline or plan")]
    # beside the bars, not over the top bar's error bar
    ax.legend(handles=[*kinds, *handles], fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    save_figure_atomically(fig, path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("bench_json", help="a `hffm bench --json` file with a 'never' episode")
    parser.add_argument("--best", default="hffm-d2d-e2",
                        help="the best baseline to compare with (default hffm-d2d-e2)")
    add_json_option(parser)
    parser.add_argument("--plot", type=arguments.output_file(arguments.PLOT_SUFFIXES),
                        metavar="FILE",
                        help="draw each policy's energy to target to FILE (PNG)")
    args = parser.parse_args(argv)
    prepare_outputs(parser, args, inputs=[("bench_json", args.bench_json)])
    try:  # read as the runner reads it: every field checked, named when wrong
        saved = BenchResult.read_json(args.bench_json)
        require_target(saved)
        bench = saved.to_dict()
        result = energy_floor(bench, args.best)
    except OSError as error:
        raise ValueError(f"{args.bench_json}: {error.strerror or error}") from None
    except ValueError as error:
        raise ValueError(f"{args.bench_json}: {error}") from None
    for seed, row in result["seeds"].items():
        print(f"seed {seed}: earliest round {row['earliest_round'] + 1} "
              f"({', '.join(row['by'])}), never {row['never_energy_per_round_j']:.2f} J/round "
              f"-> floor {row['floor_j']:.1f} J")
    line = f"mean floor {result['floor_j']:.1f} J"
    if result["target_energy_j"] is not None:
        line += (f"; {args.best} {result['best_energy_to_target_j']:.1f} J, the 30% target "
                 f"{result['target_energy_j']:.1f} J, which leaves "
                 f"{result['target_energy_j'] - result['floor_j']:.1f} J for all transfers")
    else:
        line += (f"; {args.best} missed the target on seed(s) "
                 f"{', '.join(map(str, result['best_missed_seeds']))}: no mean energy to "
                 "target for it and no 30% target (drawn neither)")
    print(line)
    emit_json(result, args.json)
    if args.plot:
        plot_energy_to_target(bench, result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "energy_floor.py"))
