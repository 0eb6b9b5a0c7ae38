"""Does orchestration matter? The paper's seven schedules plus never-aggregate, real training.

For each scenario, every schedule runs one episode per seed at the scenario's default horizon
with real federated training, and the table reports (mean ± std over the seeds): final global,
local and held-out-cluster accuracy, latency and energy per round, the episode return under the
scenario's default reward, and whether the schedule is on the accuracy-energy Pareto front
(no other schedule is at least as accurate for at most the energy, one of them strictly). Then
the issue's targets are checked one by one and printed as PASS / MISS with their numbers; the
exit status is 1 when one is missed (in any scenario, read back with ``--from-json`` too), 130
after Ctrl-C.

    python benchmarks/tradeoff.py --scenarios small paper --seeds 1000 1001 1002 \\
        [--vary-data-split] [--json FILE] [--plot FILE.png]
        # --vary-data-split: each seed is the config seed too, so the data split varies
    python benchmarks/tradeoff.py --from-json docs/results/tradeoff_small.json   # re-print
    python benchmarks/tradeoff.py --from-json FILE --rescore --set env.energy_weight=0.2
        # the same runs scored under another reward, without training again

Seeds 1000+ are the held-out evaluation seeds (agents and tuned baselines train on 0..999).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from _output import (
    add_json_option,
    add_overrides_option,
    emit_json,
    exit_status,
    help_texts,
    prepare_outputs,
    refuse_existing,
    refuse_inputs,
)

from hffm_env import arguments, jsonio
from hffm_env.config import ConfigError, scenario_names
from hffm_env.files import read_text_by_suffix
from hffm_env.seeding import DEFAULT_EVAL_SEEDS

SCHEDULES = ("star", "hffm-e2", "hffm-e8", "hffm-d2d-e2", "hffm-d2d-e8", "edge-only",
             "edge-only-d2d", "never")
"""The paper's seven schedules and the never-aggregate floor."""

RESCORE_KEYS = ("env.reward", "env.accuracy_weight", "env.latency_weight", "env.energy_weight",
                "env.target_accuracy", "env.target_miss_penalty")
"""The settings ``--rescore`` takes: how a played round is scored, nothing of what is played
(``env.accuracy_local_mix`` changes which rounds measure the local accuracy)."""

SHARED_SPLIT = "the config seed's"
"""How the result JSON names the default data split: every seed shares the config seed's."""
PER_SEED_SPLIT = "per seed"
"""How the result JSON names a run with --vary-data-split: each seed is its config seed too."""


def _config_overrides(overrides: list[str], config_seed: int | None) -> list[str]:
    """``overrides`` plus the config seed of a per-seed-split run (None: the shared split)."""
    return [*overrides] if config_seed is None else [*overrides, f"seed={config_seed}"]


def run_scenario(scenario: str, seeds: list[int], overrides: list[str], device: str,
                 vary_data_split: bool = False) -> dict:
    """Every schedule on every seed; returns the JSON-able result with rows and target checks.

    With ``vary_data_split`` each seed is also the config seed of its episodes' env, so the
    data split (device profiles, label skew, scenes) differs from seed to seed as well as the
    placement, fading and training order; otherwise every seed shares the config seed's split.
    """
    import gymnasium as gym

    import hffm_env  # noqa: F401  (registers the env ids)
    from hffm_env.baselines.runner import run_benchmark

    def make_env(config_seed: int | None = None) -> Any:
        return gym.make("hffm/HFFM-v0", scenario=scenario, fidelity="train",
                        overrides=_config_overrides(overrides, config_seed), device=device,
                        progress=True)

    bench = run_benchmark(make_env, list(SCHEDULES), seeds, env_per_seed=vary_data_split)
    result = bench.to_dict()
    result["data_split"] = PER_SEED_SPLIT if vary_data_split else SHARED_SPLIT
    result["rows"] = _rows(bench)
    # an interrupted run holds part of the seeds (or none of some schedule): no verdict on it
    result["checks"] = [] if bench.interrupted else check_targets(result["rows"])
    return result


def _rows(bench: Any) -> dict[str, dict[str, Any]]:
    rows = {}
    for s in bench.summaries:
        rows[s.policy] = {
            "final_accuracy": s.final_accuracy,
            "final_accuracy_local": s.final_accuracy_local,
            "final_accuracy_held_out": s.final_accuracy_held_out,
            "final_accuracy_per_task": s.final_accuracy_per_task,
            "latency_per_round_s": s.latency_per_round_s,
            "energy_per_round_j": s.energy_per_round_j,
            "episode_return": s.episode_return,
            # per seed, so that a gap can be read seed by seed (the same seed's episodes
            # share placement, fading and, with --vary-data-split, the data split)
            "final_accuracy_by_seed": {str(e.seed): e.accuracy[-1]
                                       for e in bench.episodes if e.policy == s.policy},
        }
    from hffm_env.baselines.runner import pareto_front

    front = pareto_front({name: (r["energy_per_round_j"]["mean"], r["final_accuracy"]["mean"])
                          for name, r in rows.items()})
    for name in rows:
        rows[name]["pareto"] = name in front
    return rows


NOT_MEASURED = "not measured (a schedule's final accuracy is missing)"
"""A check's value when a final accuracy it compares was not measured (a run whose last
rounds went unevaluated): the check cannot pass."""


def _measured(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def check_targets(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The trade-off issue's targets on final global accuracy, the Pareto front and the
    default reward, each with its numbers."""
    def acc(name: str) -> float:
        return rows[name]["final_accuracy"]["mean"]

    def std(name: str) -> float:
        return rows[name]["final_accuracy"]["std"]

    def per_seed(a: str, b: str) -> str:
        """The gap seed by seed (information beside the check, which the issue defines on
        the two schedules' seed spreads): rows from before this field have none."""
        mine, theirs = rows[a].get("final_accuracy_by_seed"), rows[b].get("final_accuracy_by_seed")
        if not mine or not theirs:
            return ""
        diffs = [mine[seed] - theirs[seed] for seed in mine if seed in theirs
                 if _measured(mine[seed]) and _measured(theirs[seed])]
        if not diffs:
            return ""
        text = "/".join(f"{d:+.3f}" for d in diffs)
        if len(diffs) > 1:
            text += f", sample std {statistics.stdev(diffs):.3f}"
        return f"; per seed {text}"

    def gap(a: str, b: str, at_least: float) -> dict[str, Any]:
        target = f"{a} >= {b} + {at_least:.2f} and gap > 2 std"
        if not (_measured(acc(a)) and _measured(acc(b))):
            return {"target": target, "value": NOT_MEASURED, "pass": False}
        diff = acc(a) - acc(b)
        noise = 2 * max(std(a), std(b))
        return {"target": target, "value": f"{diff:+.3f} (2 std {noise:.3f}{per_seed(a, b)})",
                "pass": diff >= at_least and diff > noise}

    star_vs_e2 = acc("star") - acc("hffm-e2")
    checks = [
        gap("star", "edge-only", 0.08),
        gap("hffm-e2", "edge-only", 0.08),
        {"target": "|star - hffm-e2| <= 0.02",
         "value": f"{star_vs_e2:+.3f}" if _measured(star_vs_e2) else NOT_MEASURED,
         "pass": abs(star_vs_e2) <= 0.02},
        gap("hffm-e8", "edge-only", 0.03),
        gap("hffm-e2", "hffm-e8", 0.0),
    ]
    if all(_measured(acc(name)) for name in rows):
        lowest = min(rows, key=acc)
        checks.append({"target": "never has the lowest final accuracy",
                       "value": f"lowest: {lowest} ({acc(lowest):.3f})",
                       "pass": lowest == "never"})
    else:
        checks.append({"target": "never has the lowest final accuracy",
                       "value": NOT_MEASURED, "pass": False})
    front = [n for n, r in rows.items() if r["pareto"]]
    checks.append({"target": ">= 4 schedules on the accuracy-energy Pareto front",
                   "value": f"{len(front)}: {', '.join(front)}" if front else "0",
                   "pass": len(front) >= 4})
    # (exact ties by name, as runner.best_baseline breaks them: not by the rows' order)
    best = min(rows, key=lambda n: (-rows[n]["episode_return"]["mean"], n))
    checks.append({"target": "neither never nor star has the best mean return",
                   "value": f"best: {best} ({rows[best]['episode_return']['mean']:.2f})",
                   "pass": best not in ("never", "star")})
    return checks


def rescore(result: dict, overrides: list[str]) -> dict:
    """``result`` with every episode's rewards recomputed from its recorded per-round accuracy,
    latency and energy under the reward the scenario config (plus ``overrides``) names now,
    and the rows and checks redone: a saved run scored under another reward design without
    training again. The cost scale comes from a cost-fidelity env of the run's recorded
    config (``settings``; a file written before it recorded one: its preset) plus
    ``overrides`` (of each episode's own config seed when the run varied the data split).
    The result's ``provenance`` gains this process's record after the run's own."""
    import gymnasium as gym

    import hffm_env  # noqa: F401
    from hffm_env.baselines.runner import BenchResult, env_settings
    from hffm_env.config import (
        ScenarioConfig,
        apply_overrides,
        config_differences,
        from_dict,
        get_scenario,
    )
    from hffm_env.envs.reward import EpisodeProgress, accuracy_score
    from hffm_env.provenance import provenance

    per_seed = result.get("data_split") == PER_SEED_SPLIT
    envs: dict[int | None, Any] = {}

    # the run's own config when it recorded one (its --set overrides), else its preset's
    recorded = (result.get("settings") or {}).get("config")
    played = from_dict(recorded) if recorded is not None else result["scenario"]
    base = played if isinstance(played, ScenarioConfig) else get_scenario(played)
    moved = [key for key, _, _ in config_differences(base, apply_overrides(base, overrides))
             if key not in RESCORE_KEYS]
    if moved:  # (it would be recorded as the run's settings, not played)
        raise ConfigError(f"--set {moved[0]}: rescoring scores the recorded rounds anew, so "
                          f"it takes only the reward's settings {list(RESCORE_KEYS)}; another "
                          "would change what was played, which the saved rounds cannot")

    def env_for(seed: int) -> Any:
        key = seed if per_seed else None
        if key not in envs:
            envs[key] = gym.make("hffm/HFFM-v0", scenario=played, fidelity="cost",
                                 overrides=_config_overrides(overrides, key)).unwrapped
        return envs[key]

    bench = BenchResult.from_dict(result)
    if not bench.episodes:  # (an interrupted run that finished none)
        raise ConfigError(f"--rescore: the {result.get('scenario')} run holds no episodes (it "
                          "was interrupted before the first ended): nothing to rescore")
    for episode in bench.episodes:
        env = env_for(episode.seed)
        reward, weights, costs = env.reward_function, env.reward_weights, env.cost_range
        if env.config.env.reward == "accuracy-gain":
            # its first round's gain is from the accuracy at reset, which runs do not record
            raise ConfigError("--rescore: the accuracy-gain reward needs each episode's "
                              "accuracy at reset, which saved runs do not hold")
        progress = EpisodeProgress(env.config.env.target_accuracy)  # the env's own rule
        progress.start(float("nan"))  # (reset's accuracy is not recorded; no reward here
        rewards = []                  # reads it: accuracy-gain was refused above)
        last = len(episode.accuracy) - 1
        local_accuracy = episode.accuracy_local
        if not local_accuracy:  # a file older than the local accuracy's record
            if env.config.env.accuracy_local_mix != 0.0:
                raise ConfigError(
                    f"--rescore: env.accuracy_local_mix = {env.config.env.accuracy_local_mix} "
                    "pays the devices' local accuracy, which this file does not record (it "
                    "predates it): rescore with accuracy_local_mix 0, or run the bench again")
            local_accuracy = [float("nan")] * len(episode.accuracy)  # (a mix of 0 reads none)
        for t, (glob, local, lat, en) in enumerate(zip(
                episode.accuracy, local_accuracy, episode.latency_s, episode.energy_j,
                strict=True)):
            acc = accuracy_score(glob, local, env.config.env.accuracy_local_mix)
            terms = reward(progress.inputs(acc, lat, en, t == last), costs, weights)
            rewards.append(float(sum(terms.values())))
            progress.record(acc)
        episode.rewards = rewards
    if envs:  # the rewards are now those of the rescoring settings
        bench.settings = env_settings(next(iter(envs.values())))
    # the code that played the episodes, then the code that rescored them
    bench.provenance = [*bench.provenance, provenance()]
    for env in envs.values():
        env.close()
    from hffm_env.baselines.runner import summarise

    bench.summaries = summarise(bench.episodes, bench.target_accuracy)
    out = bench.to_dict()
    out["data_split"] = result.get("data_split", SHARED_SPLIT)
    out["rows"] = _rows(bench)
    out["checks"] = [] if out.get("interrupted") else check_targets(out["rows"])
    out["reward"] = {"name": env.config.env.reward, "accuracy_weight": weights.accuracy,
                     "latency_weight": weights.latency, "energy_weight": weights.energy}
    return out


_ROW_STATS = ("final_accuracy", "final_accuracy_local", "final_accuracy_held_out",
              "latency_per_round_s", "energy_per_round_j", "episode_return")
"""The statistics of a result's row that its table prints (each ``{mean, std, n}``)."""


def check_result(result: Any) -> None:
    """A ``ValueError`` naming the first field of a saved result (``--from-json``) that is not
    as this script writes it: the bench part as :meth:`BenchResult.from_dict` checks it, the
    data split, every row's printed statistics (numbers or null) and Pareto flag, every
    check's target, value and verdict (a verdict of text passed as one)."""
    from hffm_env.baselines.runner import BenchResult
    from hffm_env.values import is_finite_real, is_integer, shown

    def need(ok: bool, where: str, value: Any, what: str) -> None:
        if not ok:
            raise ValueError(f"{where} = {shown(value)[:60]}: {what}")

    BenchResult.from_dict(result)  # (its own check: a JSON object, episodes, seeds, ...)
    split = result.get("data_split", SHARED_SPLIT)
    need(split in (SHARED_SPLIT, PER_SEED_SPLIT), "data_split", split,
         f"must be {SHARED_SPLIT!r} or {PER_SEED_SPLIT!r}")
    rows = result.get("rows")
    need(isinstance(rows, dict) and all(isinstance(r, dict) for r in rows.values()), "rows",
         rows, "must map schedule names to rows")
    for name, row in rows.items():
        for key in _ROW_STATS:
            stat = row.get(key)
            need(isinstance(stat, dict) and is_integer(stat.get("n")) and stat["n"] >= 0
                 and all(stat.get(k) is None or is_finite_real(stat.get(k))
                         for k in ("mean", "std")),
                 f"rows.{name}.{key}", stat, "must be {mean, std, n}: numbers (or null)")
        need(isinstance(row.get("pareto"), bool), f"rows.{name}.pareto", row.get("pareto"),
             "must be true or false")
    checks = result.get("checks")
    need(isinstance(checks, list) and all(isinstance(c, dict) for c in checks), "checks",
         checks, "must be a list of target checks")
    for i, check in enumerate(checks):
        for key, ok, what in (("target", isinstance(check.get("target"), str), "a text"),
                              ("value", isinstance(check.get("value"), str), "a text"),
                              ("pass", isinstance(check.get("pass"), bool), "true or false")):
            need(ok, f"checks[{i}].{key}", check.get(key, "missing"), f"must be {what}")


def _fmt(stat: dict[str, float], digits: int = 3) -> str:
    if not stat or stat.get("n", 0) == 0 or stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def format_result(result: dict) -> str:
    """The text (markdown) table and the target checks of one scenario."""
    lines = [
        f"scenario {result['scenario']}, real training, seeds {result['seeds']}, "
        f"{len(result['episodes'][0]['latency_s']) if result['episodes'] else 0} rounds, "
        "data split "
        f"{result.get('data_split', SHARED_SPLIT)}"
        + (" (interrupted)" if result.get("interrupted") else ""),
        "",
        "| schedule | final accuracy | local | held-out cluster | latency/round (s) "
        "| energy/round (J) | return | Pareto |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in result["rows"].items():
        lines.append(
            f"| {name} | {_fmt(r['final_accuracy'])} | {_fmt(r['final_accuracy_local'])} | "
            f"{_fmt(r['final_accuracy_held_out'])} | {_fmt(r['latency_per_round_s'])} | "
            f"{_fmt(r['energy_per_round_j'], 2)} | {_fmt(r['episode_return'], 2)} | "
            f"{'yes' if r['pareto'] else ''} |"
        )
    lines.append("")
    if result.get("interrupted"):
        lines.append("- (interrupted before every episode finished: no target checks)")
    for c in result["checks"]:
        lines.append(f"- {'PASS' if c['pass'] else 'MISS'}: {c['target']}: {c['value']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run (or read, or rescore) the trade-off and print the verdicts; the exit
    status."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--scenarios", nargs="+", default=None,
                        choices=scenario_names(),  # checked before any scenario runs
                        help="presets to run (default: small paper)")
    parser.add_argument("--seeds", nargs="+", type=arguments.held_out_seed, default=None,
                        help="held-out seeds (default: "
                        f"{' '.join(map(str, DEFAULT_EVAL_SEEDS))})")
    parser.add_argument("--vary-data-split", action="store_true",
                        help="use each seed as the config seed too, so the data split (device "
                        "profiles, label skew, scenes) varies over the seeds")
    add_overrides_option(parser)
    parser.add_argument("--device", type=arguments.device, default="cpu",
                        help="torch device (default: cpu)")
    add_json_option(parser, "the results")
    parser.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                        help="re-print tables and checks from saved JSON files, run nothing")
    parser.add_argument("--rescore", action="store_true",
                        help="with --from-json: recompute the returns from the recorded rounds "
                        "under the reward the config (and --set) names now; with --json, "
                        "write the rescored results")
    parser.add_argument("--plot", type=arguments.output_file(arguments.PLOT_SUFFIXES),
                        metavar="FILE.png", default=None,
                        help="write the trade-off plot (one per scenario: FILE_<scenario>.png "
                        "when there are several)")
    args = parser.parse_args(argv)
    prepare_outputs(parser, args, inputs=[("--from-json", args.from_json)],
                    checked_later=["plot"])  # (FILE_<scenario>.png for several: below)
    if args.rescore and not args.from_json:
        parser.error("--rescore rescores saved runs: it needs --from-json FILE")
    if args.from_json and args.overrides and not args.rescore:
        parser.error("--set with --from-json changes nothing unless --rescore recomputes the "
                     "returns under it")
    ignored = [flag for flag, given in (
        ("--scenarios", args.scenarios is not None), ("--seeds", args.seeds is not None),
        ("--vary-data-split", args.vary_data_split), ("--device", args.device != "cpu"))
        if given]
    if args.from_json and ignored:  # they would be silently ignored: the runs are as saved
        parser.error(f"{', '.join(ignored)} with --from-json: the saved runs are read as they "
                     "were played; drop them")
    args.scenarios = args.scenarios or ["small", "paper"]
    args.seeds = args.seeds or list(DEFAULT_EVAL_SEEDS)
    if args.from_json:
        results = []
        for path in args.from_json:
            try:
                data = json.loads(read_text_by_suffix(path))  # (compressed: .json.gz)
                saved = data if isinstance(data, list) else [data]
                if not saved:
                    raise ValueError("no results in it")
                for k, result in enumerate(saved):
                    try:
                        check_result(result)
                    except ValueError as error:  # which result of a list, and its field
                        raise ValueError(f"result {k}: {error}" if len(saved) > 1
                                         else str(error)) from None
                read = [jsonio.json_safe(rescore(r, args.overrides)) if args.rescore else r
                        for r in saved]
                text = [format_result(r) for r in read]
            except ConfigError:  # a bad --set: its own message
                raise
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
                what = f"no {error} entry" if isinstance(error, KeyError) else str(error)
                raise ValueError(f"--from-json {path}: not a tradeoff.py result ({what})"
                                 ) from None
            results += read
            print(*text, sep="\n\n", end="\n\n")
        _refuse_existing_plots(parser, args, [r["scenario"] for r in results])
        emit_json(results if len(results) > 1 else results[0], args.json)
        _plot(results, args.plot)
        return _checks_status(results)
    _refuse_existing_plots(parser, args, list(args.scenarios))
    results = []
    for scenario in args.scenarios:
        result = run_scenario(scenario, args.seeds, args.overrides, args.device,
                              args.vary_data_split)
        results.append(jsonio.json_safe(result))
        print(format_result(results[-1]), end="\n\n", file=sys.stderr if args.json == "-"
              else sys.stdout, flush=True)
        if result.get("interrupted"):  # Ctrl-C: keep what finished, run no further scenario
            break
    emit_json(results if len(results) > 1 else results[0], args.json)
    _plot(results, args.plot)
    if results[-1].get("interrupted"):
        print("tradeoff.py: interrupted; the finished episodes are in the results, without "
              "target checks", file=sys.stderr)
        return 130
    return _checks_status(results)


def _checks_status(results: list[dict[str, Any]]) -> int:
    """The exit status of the target checks of every result (:func:`_output.exit_status`)."""
    return exit_status(*(check["pass"] for r in results for check in r.get("checks", [])))


def _plot_paths(scenarios: list[str], target: str | None) -> list[Path]:
    """Where ``--plot`` writes each result's figure: ``target`` for one, else
    ``FILE_<scenario>.png``, numbered (``FILE_<k>_<scenario>.png``) when a scenario comes
    twice (two runs of one scenario wrote one file twice)."""
    if target is None:
        return []
    path = Path(target)
    if len(scenarios) == 1:
        return [path]
    numbered = len(set(scenarios)) < len(scenarios)
    return [path.with_name(f"{path.stem}_{f'{k + 1}_' if numbered else ''}{scenario}"
                           f"{path.suffix}") for k, scenario in enumerate(scenarios)]


def _refuse_existing_plots(parser: argparse.ArgumentParser, args: argparse.Namespace,
                           scenarios: list[str]) -> None:
    """``--plot``'s files for ``scenarios``, refused when one exists (without ``--force``):
    ``FILE`` itself only where it is written (one scenario); and, force or not, when one
    is ``--json``'s file or a ``--from-json`` file."""
    plots = [("--plot", path) for path in _plot_paths(scenarios, args.plot)]
    refuse_inputs(parser, plots, [("--from-json", args.from_json)])
    refuse_existing(parser, args, [("--json", args.json), *plots])


def _plot(results: list[dict], target: str | None) -> None:
    """The runner's trade-off figure (Pareto fronts, accuracy over rounds) per scenario."""
    from hffm_env.baselines.runner import BenchResult, plot_tradeoffs

    for result, out in zip(results, _plot_paths([r["scenario"] for r in results], target)):
        plot_tradeoffs(BenchResult.from_dict(result), out)
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "tradeoff.py"))
