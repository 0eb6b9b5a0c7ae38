"""Seed by seed: every policy's energy to target against one reference, over several runs.

For each bench JSON, every policy's energy to the target accuracy is divided, seed by seed, by
the reference policy's (``hffm bench --against`` does this for one run): the geometric mean
of those ratios over the seeds both reached the target on, and its 95% interval (Student's t
on the log ratios). The script prints each run's table and, with ``--plot``, draws every run
in one figure, with lines at 1 (as much energy as the reference) and at 0.70 (30% less, the
learning issue's target). A gap that the spread over seeds hides in the means can show here,
since what a seed does to both policies (placement, channels, data) cancels in its ratio.

    python benchmarks/paired_ratios.py RUN.json [RUN.json ...] --against hffm-d2d-e2 \\
        [--labels LABEL ...] [--policies NAME ...] [--json [FILE]] [--plot FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any

from _output import add_json_option, emit_json, help_texts, prepare_outputs

from hffm_env import arguments
from hffm_env.baselines.policies import is_agent_name
from hffm_env.baselines.runner import (
    BenchResult,
    PairedRatio,
    format_paired,
    paired_energy_to_target,
)
from hffm_env.files import save_figure_atomically

TARGET_RATIO = 0.70
"""The learning issue's target as a ratio: 30% less energy to target than the best baseline."""


def paired_runs(paths: list[str], against: str, labels: list[str],
                policies: list[str]) -> list[dict[str, Any]]:
    """Per bench JSON in ``paths``: its label, seeds, target and the
    :func:`~hffm_env.baselines.runner.paired_energy_to_target` rows against ``against``
    (only ``policies``' rows when given; each must be in every run)."""
    runs = []
    for path, label in zip(paths, labels):
        try:
            result = BenchResult.read_json(path)
            names = [s.policy for s in result.summaries]
            if against not in names:
                raise ValueError(f"--against {against!r}: not a policy of this run (it has "
                                 f"{names})")
            rows = paired_energy_to_target(result, against)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            what = (f"no {error} entry" if isinstance(error, KeyError)
                    else error.strerror or str(error) if isinstance(error, OSError)
                    else str(error))
            raise ValueError(f"{path}: {what}") from None
        if policies:
            known = [r.policy for r in rows]
            missing = [p for p in policies if p not in known]
            if missing:
                raise ValueError(f"--policies {missing[0]!r}: not in {path} against {against} "
                                 f"(it has {known})")
            rows = [r for r in rows if r.policy in policies]
        runs.append({"file": path, "label": label, "seeds": list(result.seeds),
                     "target_accuracy": result.target_accuracy,
                     "rows": [dataclasses.asdict(r) for r in rows]})
    return runs


def _played(row: dict[str, Any]) -> int:
    """The seeds both policies of a :class:`PairedRatio` row (as a dict) played."""
    return row["seeds"] + row["only_policy"] + row["only_reference"] + row["neither"]


def format_matrix(runs: list[dict[str, Any]], against: str) -> str:
    """One markdown table of every run: a row per run, a column per policy, each cell the
    ratio and its 95% interval, followed by ``k/n`` when the two reached the target on only
    k of the n seeds both played, and who missed it on the others (a seed the column's policy
    missed is left out of its ratio, which then flatters it)."""
    names = list(dict.fromkeys(r["policy"] for run in runs for r in run["rows"]))
    lines = [f"| against {against}, seed by seed | " + " | ".join(names) + " |",
             "| --- |" + " --- |" * len(names)]
    for run in runs:
        cells = {}
        for r in run["rows"]:
            played = _played(r)
            cell = "-" if not math.isfinite(r["ratio"]) else f"{r['ratio']:.3f}"
            if math.isfinite(r["low"]):
                cell += f" ({r['low']:.3f}-{r['high']:.3f})"
            if r["seeds"] < played:
                misses = [f"{who} on {n}" for who, n in (
                    ("missed", r["only_reference"]), (f"{against} missed", r["only_policy"]),
                    ("both missed", r["neither"])) if n]
                cell += f", {r['seeds']}/{played} ({'; '.join(misses)})"
            cells[r["policy"]] = cell
        lines.append(f"| {run['label']} | " + " | ".join(cells.get(n, "") for n in names)
                     + " |")
    return "\n".join(lines)


def plot_paired(runs: list[dict[str, Any]], against: str, path: str) -> None:
    """One point per run and policy: the geometric mean ratio with its 95% interval, on a log
    axis, runs stacked top to bottom, a policy in one colour throughout (agents in warm
    colours, the rest in cool ones), lines at 1 and at :data:`TARGET_RATIO`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter

    names = list(dict.fromkeys(r["policy"] for run in runs for r in run["rows"]))
    warm, cool = plt.get_cmap("autumn"), plt.get_cmap("winter")
    agents = [n for n in names if is_agent_name(n)]
    others = [n for n in names if not is_agent_name(n)]
    colour = {n: warm(0.7 * k / max(1, len(agents) - 1)) for k, n in enumerate(agents)}
    colour.update({n: cool(k / max(1, len(others) - 1)) for k, n in enumerate(others)})
    rows = sum(len(run["rows"]) + 1 for run in runs)
    fig, ax = plt.subplots(figsize=(10, 0.28 * rows + 1.8))
    y, ticks, labels = 0, [], []
    for run in runs:
        ticks.append(y)
        labels.append(f"{run['label']} ({len(run['seeds'])} seeds)")
        y += 1
        for r in run["rows"]:
            if math.isfinite(r["ratio"]):
                low = r["low"] if math.isfinite(r["low"]) else r["ratio"]
                high = r["high"] if math.isfinite(r["high"]) else r["ratio"]
                ax.errorbar(r["ratio"], y, xerr=[[r["ratio"] - low], [high - r["ratio"]]],
                            fmt="o", color=colour[r["policy"]], capsize=3, markersize=5)
            ticks.append(y)
            labels.append(f"    {r['policy']} (both reached it on {r['seeds']}/{_played(r)})")
            y += 1
    ax.axvline(1.0, color="k", linewidth=1, label=f"as much as {against}")
    ax.axvline(TARGET_RATIO, color="tab:green", linestyle="--",
               label=f"{TARGET_RATIO:.2f}: 30% less (the target)")
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    steps = [0.25, 0.33, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
    ax.xaxis.set_major_locator(FixedLocator([t for t in steps if low <= t <= high]))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(ticks, labels, fontsize=7)
    for label in ax.get_yticklabels():
        if not label.get_text().startswith(" "):  # a run's heading
            label.set_fontweight("bold")
    ax.set_ylim(y - 0.5, -0.5)
    ax.set_xlabel(f"energy to target / {against}'s, seed by seed (geometric mean, 95% "
                  "interval; log scale)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    save_figure_atomically(fig, path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("bench_json", nargs="+", help="`hffm bench --json` files")
    parser.add_argument("--against", default="hffm-d2d-e2",
                        help="the reference policy, in every file (default hffm-d2d-e2)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                        help="a label per file (default: the file names)")
    parser.add_argument("--policies", nargs="+", default=[], metavar="NAME",
                        help="only these policies' rows (each in every file)")
    add_json_option(parser, "the rows")
    parser.add_argument("--plot", type=arguments.output_file(arguments.PLOT_SUFFIXES),
                        metavar="FILE", help="draw every run's ratios to FILE")
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.bench_json):
        raise ValueError(f"--labels: {len(args.labels)} labels for {len(args.bench_json)} "
                         "files; give one per file")
    prepare_outputs(parser, args, inputs=[("bench_json", args.bench_json)])
    labels = args.labels or list(args.bench_json)
    runs = paired_runs(args.bench_json, args.against, labels, args.policies)
    for run in runs:
        rows = [PairedRatio(**r) for r in run["rows"]]
        print(f"{run['label']} ({len(run['seeds'])} seeds, target "
              f"{run['target_accuracy']:.3f})\n{format_paired(rows)}\n")
    print(format_matrix(runs, args.against))
    emit_json({"against": args.against, "target_ratio": TARGET_RATIO, "runs": runs}, args.json)
    if args.plot:
        plot_paired(runs, args.against, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "paired_ratios.py"))
