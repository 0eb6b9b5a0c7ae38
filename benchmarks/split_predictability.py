"""How much of a data split's accuracy level can be read off the split before training on it?

``hffm bench --data-split-per-seed`` plays every held-out seed on its own data split (device
profiles, label skew, test sets). How high and how fast a schedule climbs then varies with the
split far more than with the seed on one split, and a fixed target accuracy is crossed after a
few rounds on one split and many on another. A surrogate that should serve unseen splits (or a
scheduler that should plan for one) needs to know that level in advance. This script measures
how much of it the split's own description gives away, from runs already made (no training):

- per split, :meth:`~hffm_env.data.partition.FederatedData.summary` of the split the episodes
  were played on (rebuilt from the run's recorded config in cost fidelity: no scene drawn): the
  share of training samples per task, of devices per sensor, the label skew and the samples per
  device;
- per policy and split, its real global accuracy (the mean over its episodes there) in three
  forms: the mean over the rounds, after round ``--round`` and the final one;
- per policy and form: the spread over splits, the leave-one-split-out error of predicting it
  by the other splits' mean (no features) and by a ridge regression on the standardised
  features fitted on the other splits (:data:`RIDGE`), the R² of the latter against the former
  (1: the features say it all; 0 or below: nothing), the three features most correlated with
  it, and its correlation with the policy's own real accuracy after rounds 1 and 2 (what a
  fidelity that trained a round or two for real before its surrogate took over would know).

    python benchmarks/split_predictability.py RUN.json [RUN.json ...] [--policies NAME ...] \\
        [--round K] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any

import numpy as np
from _output import add_json_option, emit_json, help_texts, prepare_outputs

from hffm_env import arguments

RIDGE = 5.0
"""The ridge penalty on the standardised features' weights (the intercept is free): with a few
dozen splits and eight features an unpenalised fit chases the noise."""

MIN_SPLITS = 5
"""Fewer splits than this leave too few to fit and score a leave-one-out regression."""

FORMS = ("mean over rounds", "after round K", "final")
"""The forms of a policy's accuracy on a split that are predicted."""


def read_runs(paths: list[str]) -> tuple[Any, dict[str, dict[int, list[list[float]]]]]:
    """The config the runs in ``paths`` (``hffm bench --json`` files) were played under (with
    the first run's config seed) and, per policy and config seed, every episode's global
    accuracy per round. Refused with the file named: a run without recorded settings, an
    episode that does not record its config seed (its split), runs of other settings than the
    first's (the seed apart), a round whose accuracy was not measured."""
    from hffm_env.baselines.runner import BenchResult
    from hffm_env.config import config_differences, from_dict

    config = None
    curves: dict[str, dict[int, list[list[float]]]] = {}
    for path in paths:
        try:
            result = BenchResult.read_json(path)
        except (OSError, ValueError) as err:  # which of the files, by name
            raise ValueError(f"{path}: {err}") from None
        recorded = (result.settings or {}).get("config")
        if recorded is None:
            raise ValueError(f"{path}: records no settings (written before runs recorded their "
                             "config): the splits cannot be rebuilt")
        mine = from_dict(recorded)
        if config is None:
            config = mine
        moved = [key for key, _, _ in config_differences(config, mine) if key != "seed"]
        if moved:
            raise ValueError(f"{path}: played with another {moved[0]} than {paths[0]}: its "
                             "splits are not those of the same scenario")
        for episode in result.episodes:
            where = f"{path}: {episode.policy} on seed {episode.seed}"
            if episode.config_seed is None:
                raise ValueError(f"{where}: records no config seed (a file written before "
                                 "episodes recorded one): its data split is unknown")
            if not episode.accuracy or not all(a is not None and math.isfinite(a)
                                               for a in episode.accuracy):
                raise ValueError(f"{where}: a round's global accuracy was not measured")
            curves.setdefault(episode.policy, {}).setdefault(
                episode.config_seed, []).append(list(episode.accuracy))
    assert config is not None  # (argparse requires one file)
    return config, curves


def split_features(config: Any, config_seeds: list[int]) -> dict[int, dict[str, float]]:
    """:meth:`~hffm_env.data.partition.FederatedData.summary` of each config seed's split of
    ``config`` (built as cost fidelity builds it: profiles, skew and sample counts, no
    scenes)."""
    from hffm_env.fl.build import build_engine

    features = {}
    for seed in config_seeds:
        engine = build_engine(dataclasses.replace(config, seed=seed), "cost")
        features[seed] = engine.data.summary(config.data.tasks)
    return features


def leave_one_out(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Each ``y[i]`` predicted by a ridge regression on ``x`` (rows: splits; columns:
    features, standardised on the other rows; an unpenalised intercept) fitted without row
    ``i``. A feature that does not vary over the other rows is left out."""
    predicted = np.empty(len(y))
    for i in range(len(y)):
        others = np.arange(len(y)) != i
        mean, spread = x[others].mean(axis=0), x[others].std(axis=0)
        varies = spread > 1e-12
        z = (x[:, varies] - mean[varies]) / spread[varies]
        design = np.c_[np.ones(others.sum()), z[others]]
        penalty = ridge * np.diag([0.0] + [1.0] * int(varies.sum()))
        weights = np.linalg.solve(design.T @ design + penalty, design.T @ y[others])
        predicted[i] = np.r_[1.0, z[i]] @ weights
    return predicted


def others_mean(y: np.ndarray) -> np.ndarray:
    """Each ``y[i]`` predicted by the mean of the others: the no-feature baseline."""
    return (y.sum() - y) / (len(y) - 1)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def predictability(curves: dict[int, list[list[float]]], features: dict[int, dict[str, float]],
                   after_round: int) -> list[dict[str, Any]]:
    """Per form of :data:`FORMS`, how well the splits' features predict one policy's accuracy
    on them (``curves``: per config seed, its episodes' accuracy per round): the row the
    module docstring describes."""
    seeds = sorted(curves)
    mean_curve = {s: np.mean(np.asarray(curves[s], dtype=float), axis=0) for s in seeds}
    names = list(features[seeds[0]])
    x = np.array([[features[s][n] for n in names] for s in seeds])
    probes = {r: np.array([mean_curve[s][r - 1] for s in seeds]) for r in (1, 2)}
    rows = []
    for form in FORMS:
        y = np.array([mean_curve[s].mean() if form == "mean over rounds"
                      else mean_curve[s][after_round - 1] if form == "after round K"
                      else mean_curve[s][-1] for s in seeds])
        by_mean, by_features = y - others_mean(y), y - leave_one_out(x, y)
        correlations = {n: _correlation(x[:, j], y) for j, n in enumerate(names)}
        ranked = sorted((n for n in names if math.isfinite(correlations[n])),
                        key=lambda n: -abs(correlations[n]))
        rows.append({
            "form": form.replace("K", str(after_round)),
            "splits": len(seeds),
            "spread": float(y.std(ddof=1)),  # over splits: the sample std (ddof 1)
            "mae_others_mean": float(np.abs(by_mean).mean()),
            "mae_features": float(np.abs(by_features).mean()),
            "r2_features": float(1.0 - (by_features ** 2).sum() / (by_mean ** 2).sum())
            if (by_mean ** 2).sum() > 0 else float("nan"),
            "top_features": {n: correlations[n] for n in ranked[:3]},
            "correlation_round1": _correlation(probes[1], y),
            "correlation_round2": _correlation(probes[2], y),
        })
    return rows


def format_rows(results: dict[str, list[dict[str, Any]]]) -> str:
    """The markdown table of :func:`predictability`'s rows, a block per policy."""
    lines = ["| policy | accuracy | spread over splits (sample std) | leave-one-out error: others' "
             "mean / features | R² | most correlated features | corr. with round 1 / 2 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for policy, rows in results.items():
        for r in rows:
            top = ", ".join(f"{n} {c:+.2f}" for n, c in r["top_features"].items())
            lines.append(f"| {policy} | {r['form']} | {r['spread']:.3f} | "
                         f"{r['mae_others_mean']:.3f} / {r['mae_features']:.3f} | "
                         f"{r['r2_features']:.2f} | {top} | {r['correlation_round1']:+.2f} / "
                         f"{r['correlation_round2']:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the analysis."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("bench_json", nargs="+", type=arguments.input_path,
                        help="`hffm bench --data-split-per-seed --json` files of one scenario")
    parser.add_argument("--policies", nargs="+", default=None, metavar="NAME",
                        help="only these policies (default: every policy that played every "
                        "split)")
    parser.add_argument("--round", type=arguments.positive_int, default=5, dest="after_round",
                        help="the round after which the accuracy is also predicted (default 5)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    prepare_outputs(parser, args, inputs=[("bench_json", args.bench_json)])
    repeated = arguments.first_repeated(args.bench_json)
    if repeated is not None:  # its episodes would count twice
        parser.error(f"{repeated}: given twice")
    config, curves = read_runs(args.bench_json)
    splits = sorted({s for by_split in curves.values() for s in by_split})
    if len(splits) < MIN_SPLITS:
        raise ValueError(f"the runs hold {len(splits)} data splits ({splits}): at least "
                         f"{MIN_SPLITS} are needed to fit on all but one and score the one "
                         "(hffm bench --data-split-per-seed plays each seed on its own)")
    complete = [p for p, by_split in curves.items() if sorted(by_split) == splits]
    for name in args.policies or []:
        if name not in curves:
            raise ValueError(f"--policies {name!r}: not in the runs (they hold {list(curves)})")
        if name not in complete:
            raise ValueError(f"--policies {name!r}: played on {len(curves[name])} of the "
                             f"{len(splits)} splits; every policy must have played them all")
    policies = args.policies or complete
    if not policies:
        raise ValueError(f"no policy played every one of the {len(splits)} splits")
    rounds = {len(c) for p in policies for episodes in curves[p].values() for c in episodes}
    if len(rounds) > 1:
        raise ValueError(f"the episodes have {sorted(rounds)} rounds: each must have as many "
                         "(an episode that ended early has no accuracy after its end)")
    if min(rounds) < 2:  # (the probe reads the accuracy after round 2)
        raise ValueError(f"the episodes have {min(rounds)} round: at least 2 are needed")
    if args.after_round > min(rounds):
        parser.error(f"--round {args.after_round}: the episodes have {min(rounds)} rounds")
    features = split_features(config, splits)
    results = {p: predictability(curves[p], features, args.after_round) for p in policies}
    print(f"{len(splits)} data splits (config seeds {splits[0]}-{splits[-1]}), "
          f"{config.name}, ridge {RIDGE}\n")
    print(format_rows(results))
    emit_json({"splits": splits, "after_round": args.after_round, "ridge": RIDGE,
               "features": {str(s): features[s] for s in splits}, "policies": results},
              args.json)
    return 0


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "split_predictability.py"))
