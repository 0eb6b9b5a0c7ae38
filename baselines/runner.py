"""The benchmark runner: every policy on the same held-out seeds, in the units papers use.

For each policy and seed one episode is run; the runner reports per policy the mean and spread
over episodes of the per-round latency (s) and energy (J), the final accuracy (mean and per
task), the episode return, and the energy and latency spent until the mean accuracy first
reached a target (by default ``target_fraction`` of the best policy's final accuracy).
Ctrl-C stops the run and keeps what finished.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np

from hffm_env import jsonio
from hffm_env.baselines.policies import (
    FittedPolicy,
    Policy,
    env_settings,
    is_agent_name,
    make_policy,
    menu_problem,
    policy_fingerprint,
)
from hffm_env.config import (
    ACCURACY_KINDS,
    DEFAULT_TARGET_FRACTION,
    EPISODE_ENDS,
    FIDELITIES,
    TARGET_REWARDS,
    ScenarioConfig,
    apply_overrides,
    dict_differences,
)
from hffm_env.envs.reward import reaches_target
from hffm_env.files import (
    check_output_path,
    read_text_by_suffix,
    require_path,
    save_figure_atomically,
    write_text_atomically,
)
from hffm_env.provenance import describe, provenance
from hffm_env.seeding import DEFAULT_EVAL_SEEDS, SEED_MAX, SEED_RANGE, check_seed
from hffm_env.values import is_finite_real, is_integer, is_real, shown

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn
    from matplotlib.figure import Figure

__all__ = [
    "fit_if_needed",
    "EpisodeRecord",
    "PolicySummary",
    "BenchResult",
    "run_episode",
    "run_benchmark",
    "env_settings",
    "format_table",
    "seeds_words",
    "plot_tradeoffs",
    "best_baseline",
    "pareto_front",
    "verdict",
    "require_target",
    "PairedRatio",
    "paired_energy_to_target",
    "format_paired",
    "DEFAULT_EVAL_SEEDS",
    "summarise",
    "tuning_seed_problem",
    "tuned_on_seeds",
    "data_split",
    "seed_data_split",
]



@dataclass
class EpisodeRecord:
    """One episode of one policy: per-round curves and totals."""

    policy: str
    seed: int
    accuracy: list[float] = field(default_factory=list)
    accuracy_per_task: list[dict[str, float]] = field(default_factory=list)
    accuracy_local: list[float] = field(default_factory=list)
    accuracy_held_out: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    end: str | None = None
    config_seed: int | None = None
    """The config seed of the env that played it: its data split (device profiles, label
    skew, test sets), the same for every seed unless each seed is its own config seed
    (``hffm bench --data-split-per-seed``); None in files written before it was recorded."""

    @property
    def episode_return(self) -> float:
        """Sum of the scalar rewards."""
        return float(np.sum(self.rewards))

    @property
    def rounds(self) -> int:
        """Rounds played."""
        return len(self.latency_s)

    def spent_to_reach(self, target: float) -> tuple[float, float, int | None]:
        """Cumulative energy (J) and latency (s) until mean accuracy first reached ``target``,
        and the round; ``(nan, nan, None)`` if never."""
        energy = latency = 0.0
        for r, (acc, e, lat) in enumerate(zip(self.accuracy, self.energy_j, self.latency_s)):
            energy += e
            latency += lat
            if reaches_target(acc, target):
                return energy, latency, r + 1
        return float("nan"), float("nan"), None


def fit_if_needed(env: Any, policy: Policy,
                  on_episode: Callable[[str, int], None] | None = None) -> None:
    """Fit a policy that is tuned on training episodes (:class:`FittedPolicy`, e.g.
    ``fixed-grid``) on ``env``, once per scenario, by playing episodes of this runner;
    ``on_episode(candidate name, seed)`` is told of each before it is played (progress)."""
    fitted_for = getattr(policy, "fitted_for", None)
    if fitted_for is not None and not fitted_for(env):
        def rollout(e: Any, candidate: Policy, seed: int) -> float:
            if on_episode is not None:
                on_episode(candidate.name, seed)
            try:
                return run_episode(e, candidate, seed).episode_return
            except ValueError as err:  # say it was a tuning episode, not the one evaluated
                err.args = (f"tuning {candidate.name} on training seed {seed}: {err}",)
                raise

        # (fitted_for marks a FittedPolicy, the protocol that pairs it with fit)
        cast(FittedPolicy, policy).fit(env, rollout)


def run_episode(env: Any, policy: Policy, seed: int) -> EpisodeRecord:
    """Run one episode of ``policy`` on ``env`` from ``reset(seed=seed)`` (fitting the policy
    first if it needs it: :func:`fit_if_needed`)."""
    from hffm_env.envs.hffm_env import measured

    fit_if_needed(env, policy)
    obs, info = env.reset(seed=seed)
    policy.reset(env, seed)
    config_seed = getattr(getattr(env.unwrapped, "config", None), "seed", None)
    record = EpisodeRecord(policy=policy.name, seed=seed,
                           config_seed=config_seed if isinstance(config_seed, int) else None)
    done = False
    while not done:
        action = policy.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        reward = float(np.sum(reward))
        record.accuracy.append(measured(info, "accuracy"))
        record.accuracy_per_task.append(
            {k: measured(info, "accuracy", k) for k in info["accuracy"] if k != "mean"}
        )
        record.accuracy_local.append(measured(info, "accuracy_local"))
        record.accuracy_held_out.append(measured(info, "accuracy_held_out"))
        record.latency_s.append(float(info["latency_s"]))
        record.energy_j.append(float(info["energy_j"]))
        record.rewards.append(reward)
        done = terminated or truncated
        record.end = info["end"] or None
    if record.end is None:  # a wrapper (TimeLimit) cut it: its numbers are of a shorter game
        raise ValueError(
            f"the episode was cut after {record.rounds} rounds by a wrapper (truncated, no "
            f"info['end']), before the env's horizon ({_horizon(env)}): a benchmark plays whole "
            "episodes, whose final accuracy and energy to target other runs can be merged "
            "with; set env.episode_rounds instead of max_episode_steps or TimeLimit")
    return record


def _horizon(env: Any) -> str:
    """The env's own horizon as words: ``"env.episode_rounds = 16"``, or ``"unknown"``."""
    rounds = getattr(getattr(getattr(env.unwrapped, "config", None), "env", None),
                     "episode_rounds", None)
    return f"env.episode_rounds = {rounds}" if rounds is not None else "unknown"


def _stats(values: Sequence[float]) -> dict[str, float]:
    # std: the population standard deviation (ddof 0) of the finite values, as every
    # committed bench JSON and the README report it
    array = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if array.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(array.mean()), "std": float(array.std()), "n": int(array.size)}


@dataclass
class PolicySummary:
    """Mean and spread over a policy's episodes."""

    policy: str
    episodes: int
    latency_per_round_s: dict[str, float]
    energy_per_round_j: dict[str, float]
    final_accuracy: dict[str, float]
    final_accuracy_per_task: dict[str, dict[str, float]]
    final_accuracy_local: dict[str, float]
    final_accuracy_held_out: dict[str, float]
    episode_return: dict[str, float]
    energy_to_target_j: dict[str, float]
    latency_to_target_s: dict[str, float]
    reached_target: int


def _check_bench_dict(data: Any) -> None:
    """A ``ValueError`` naming the first field of a saved bench that
    :meth:`BenchResult.from_dict` could not read as written (types, lists of numbers, the
    known fields, statistics as ``{mean, std, n}``) or that no run writes (an unknown
    fidelity, seeds out of range, accuracies outside 0..1, energies and latencies that are
    not finite and >= 0, rewards that are not finite, an episode no horizon or budget ended,
    curves of other lengths than the rounds)."""
    def number(v: Any) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    def need(ok: bool, where: str, value: Any, what: str) -> None:
        if not ok:
            raise ValueError(f"{where} = {shown(value)[:60]}: {what}")

    def within(v: Any, low: float, high: float) -> bool:  # null (not measured) or in range
        return v is None or (number(v) and low <= v <= high)

    def is_statistics(stats: Any) -> bool:  # what _stats writes (null: NaN, nothing measured)
        return (isinstance(stats, dict) and set(stats) == {"mean", "std", "n"}
                and number(stats["mean"]) and number(stats["std"])
                and is_integer(stats["n"]) and stats["n"] >= 0)

    need(isinstance(data, dict), "the file", data, "must be a JSON object")
    for key, ok, what in (
            ("scenario", lambda v: isinstance(v, str), "must be a scenario name"),
            ("fidelity", lambda v: v in FIDELITIES, f"must be one of {list(FIDELITIES)}"),
            ("seeds", lambda v: isinstance(v, list) and all(
                is_integer(s) and 0 <= s <= SEED_MAX for s in v),
             f"must be a list of seeds, integers in {SEED_RANGE}"),
            ("target_accuracy", lambda v: within(v, 0.0, 1.0),
             "must be an accuracy in 0..1, or null"),
            ("policies", lambda v: isinstance(v, list) and all(isinstance(p, dict) for p in v),
             "must be a list of policy summaries"),
            ("episodes", lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
             "must be a list of episodes")):
        need(key in data, key, "missing", "a bench JSON has it")
        need(ok(data[key]), key, data[key], what)
    need(data.get("settings") is None or isinstance(data["settings"], dict), "settings",
         data.get("settings"), "must be an object (the env's settings) or null")
    fingerprints = data.get("fingerprints", {})
    need(isinstance(fingerprints, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in fingerprints.items()),
         "fingerprints", fingerprints, "must map row names to digests (strings)")
    records = data.get("provenance")
    need(records is None or (isinstance(records, list)
                             and all(isinstance(r, dict) for r in records)),
         "provenance", records, "must be a list of records (objects)")
    known = set(PolicySummary.__dataclass_fields__)
    statistics_are = "must be statistics: {mean, std, n}, numbers or null, n a count"
    for i, summary in enumerate(data["policies"]):
        unknown = sorted(set(summary) - known)
        need(not unknown, f"policies[{i}]", unknown, f"unknown fields (known: {sorted(known)})")
        need(isinstance(summary.get("policy"), str), f"policies[{i}].policy",
             summary.get("policy"), "must be a name")
        for key in ("episodes", "reached_target"):
            need(is_integer(summary.get(key)) and summary[key] >= 0, f"policies[{i}].{key}",
                 summary.get(key, "missing"), "must be a count (an integer >= 0)")
        for key in sorted(known - {"policy", "episodes", "reached_target",
                                   "final_accuracy_per_task"}):
            if key in _MISSING_STATS and key not in summary:  # (older files lack it)
                continue
            stats = summary.get(key, "missing")
            need(is_statistics(stats), f"policies[{i}].{key}", stats, statistics_are)
        per_task = summary.get("final_accuracy_per_task", "missing")
        need(isinstance(per_task, dict) and all(is_statistics(s) for s in per_task.values()),
             f"policies[{i}].final_accuracy_per_task", per_task,
             "must map tasks to statistics ({mean, std, n})")
    for i, episode in enumerate(data["episodes"]):
        need(isinstance(episode.get("policy"), str), f"episodes[{i}].policy",
             episode.get("policy"), "must be a name")
        need(is_integer(episode.get("seed")) and 0 <= episode["seed"] <= SEED_MAX,
             f"episodes[{i}].seed", episode.get("seed"), f"must be an integer in {SEED_RANGE}")
        need(episode.get("config_seed") is None or (
            is_integer(episode["config_seed"]) and 0 <= episode["config_seed"] <= SEED_MAX),
             f"episodes[{i}].config_seed", episode.get("config_seed"),
             f"must be an integer in {SEED_RANGE} or null")
        for key in (*ACCURACY_KINDS, "latency_s", "energy_j", "rewards"):
            values = episode.get(key, [])
            need(isinstance(values, list) and all(number(v) for v in values),
                 f"episodes[{i}].{key}", values, "must be a list of numbers")
        for key in ACCURACY_KINDS:
            values = episode.get(key, [])
            need(all(within(v, 0.0, 1.0) for v in values), f"episodes[{i}].{key}", values,
                 "must be accuracies in 0..1 (or null: not measured)")
        for key in ("latency_s", "energy_j"):
            values = episode.get(key, [])
            need(all(is_finite_real(v) and v >= 0 for v in values),
                 f"episodes[{i}].{key}", values, "must be finite numbers >= 0, one a round")
        need(all(is_finite_real(v) for v in episode.get("rewards", [])),
             f"episodes[{i}].rewards", episode.get("rewards"),
             "must be finite numbers, one a round (every round played has its reward)")
        rounds = len(episode.get("latency_s", []))
        need(rounds >= 1, f"episodes[{i}].latency_s", episode.get("latency_s", "missing"),
             "must have one entry a round (an episode plays at least one)")
        tasks = episode.get("accuracy_per_task", [])
        need(isinstance(tasks, list) and all(
            isinstance(t, dict) and all(within(v, 0.0, 1.0) for v in t.values())
            for t in tasks),
            f"episodes[{i}].accuracy_per_task", tasks,
            "must be a list of task -> accuracy in 0..1 (or null: not measured)")
        for key in ("accuracy", "accuracy_per_task", "energy_j", "rewards"):
            need(len(episode.get(key, [])) == rounds, f"episodes[{i}].{key}",
                 episode.get(key), f"must have one entry a round ({rounds}, as latency_s)")
        for key in ("accuracy_local", "accuracy_held_out"):  # (absent from older files)
            need(len(episode.get(key, [])) in (0, rounds), f"episodes[{i}].{key}",
                 episode.get(key), f"must have one entry a round ({rounds}, as latency_s)")
        need(episode.get("end") in EPISODE_ENDS, f"episodes[{i}].end",
             episode.get("end", "missing"), f"must be what ended the episode, one of "
             f"{list(EPISODE_ENDS)} (a benchmark plays whole episodes; a wrapper's cut left "
             "null)")


@dataclass
class BenchResult:
    """Everything one benchmark run produced."""

    scenario: str
    fidelity: str
    seeds: list[int]
    target_accuracy: float
    summaries: list[PolicySummary]
    episodes: list[EpisodeRecord]
    interrupted: bool = False
    fingerprints: dict[str, str] = field(default_factory=dict)
    """Row name -> a digest of what that policy plays (:func:`~hffm_env.baselines.policies.
    policy_fingerprint`: agents' files, a plan, a policy's class and parameters): :meth:`merge`
    never pools two of them that share a name (two run folders or plan files called alike, a
    heuristic with other parameters). Files written before baselines had one record agents'
    and plans' only."""
    settings: dict[str, Any] | None = None
    """What the episodes were played under (:func:`env_settings`: the env's whole config but
    its seed, the reward, the reward mode and, in surrogate fidelity, the fit), so that
    :meth:`merge` refuses runs of other settings; None in files written before it was
    recorded."""
    provenance: list[dict[str, Any]] = field(default_factory=list)
    """The record (:func:`hffm_env.provenance.provenance`: version, commit, libraries, torch
    threads, command, time) of each run whose episodes this holds: one for a run, each
    run's for a merge (a record given twice, once), the rescoring process's after the run's
    for a rescored one (``benchmarks/tradeoff.py --rescore``); empty in files written before
    it was recorded."""

    def __repr__(self) -> str:  # the dataclass's would print every round of every episode
        return (f"BenchResult(scenario={self.scenario!r}, fidelity={self.fidelity!r}, "
                f"seeds={self.seeds}, policies={[s.policy for s in self.summaries]}, "
                f"episodes={len(self.episodes)}, target_accuracy={self.target_accuracy:.3f}"
                + (", interrupted=True" if self.interrupted else "") + ")")

    def _repr_markdown_(self) -> str:
        """The table (:func:`format_table`), for a notebook's last expression."""
        return format_table(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN written as null)."""
        return jsonio.json_safe({
            "scenario": self.scenario,
            "fidelity": self.fidelity,
            "seeds": self.seeds,
            "target_accuracy": self.target_accuracy,
            "interrupted": self.interrupted,
            "settings": self.settings,
            "fingerprints": self.fingerprints,
            "provenance": self.provenance,
            "policies": [asdict(s) for s in self.summaries],
            "episodes": [
                {**asdict(e), "episode_return": e.episode_return} for e in self.episodes
            ],
        })

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON (whole or not at all; gzip-compressed when ``path``
        ends in ``.gz``); a ``path`` that cannot name a file to write (a folder, in a folder
        that does not exist) is a ``ValueError``."""
        write_text_atomically(check_output_path(path, "bench JSON"),
                              jsonio.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        """The inverse of :meth:`to_dict` (nulls read back as NaN), e.g. to re-plot a saved
        run with :func:`plot_tradeoffs` or re-print it with :func:`format_table`."""

        _check_bench_dict(data)
        nan = jsonio.nulls_to_nan
        episode_fields = set(EpisodeRecord.__dataclass_fields__)
        return cls(
            scenario=data["scenario"],
            fidelity=data["fidelity"],
            seeds=list(data["seeds"]),
            target_accuracy=nan(data["target_accuracy"]),
            summaries=[PolicySummary(**{**_MISSING_STATS, **nan(p)}) for p in data["policies"]],
            episodes=[
                EpisodeRecord(**{k: (v if k in ("end", "config_seed") else nan(v))
                                 for k, v in e.items() if k in episode_fields})
                for e in data["episodes"]
            ],
            interrupted=bool(data.get("interrupted", False)),
            settings=data.get("settings"),
            fingerprints=dict(data.get("fingerprints") or {}),
            provenance=list(data.get("provenance") or []),
        )

    @classmethod
    def read_json(cls, path: str | Path) -> BenchResult:
        """Read a file written by :meth:`write_json` (or ``hffm bench --json``); a file that is
        not one is a ``ValueError`` naming the field that is wrong."""
        path = require_path(path, "bench JSON")
        if path.is_dir():
            raise ValueError(f"bench JSON = {str(path)!r}: is a folder; expected a file")
        try:
            data = json.loads(read_text_by_suffix(path))  # (gzip-compressed: .json.gz)
        except RecursionError:
            raise ValueError("nested too deeply to be a bench JSON") from None
        except ValueError as err:  # not JSON, or not UTF-8 text
            raise ValueError(f"not JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, not {type(data).__name__}")
        if not data.get("episodes"):
            raise ValueError("it holds no episodes")
        return cls.from_dict(data)

    @classmethod
    def merge(cls, results: Sequence[BenchResult],
              names: Sequence[str] | None = None) -> BenchResult:
        """One result from the episodes of several runs of one scenario, fidelity and target
        (e.g. the same policies on more held-out seeds, run later), summarised anew.

        An episode of the same policy and seed in two runs must be the same episode (a
        policy's episodes are bit-identical across runs of one version, cache and thread
        count) and is kept once; one that differs, runs of another scenario, fidelity, target
        or :attr:`settings` (config, horizon, reward, surrogate fit: the first that differ
        are named; whether the target is observed, and a target no reward reads, are not
        compared), and two rows of one name that play something else (:attr:`fingerprints`:
        other agent files, another plan, other parameters) raise ``ValueError`` naming the
        run (``names``, default its index). Runs without recorded settings (older files)
        merge on the labels alone; the others are checked against the first run that records
        them.
        """
        if not results:
            raise ValueError("merge: no results given")
        names = [str(n) for n in names] if names is not None else [
            f"run {k}" for k in range(len(results))]
        if len(names) != len(results):
            raise ValueError(f"merge: {len(names)} names for {len(results)} results")
        first = results[0]
        episodes: dict[tuple[str, int], EpisodeRecord] = {}
        came_from: dict[tuple[str, int], tuple[str, BenchResult]] = {}  # the run kept from
        played: dict[str, tuple[str, str]] = {}  # row -> (digest, the run it came from)
        # the settings every run is checked against: the first run's that records them
        reference = next(((n, r.settings) for n, r in zip(names, results)
                          if r.settings is not None), None)
        for name, result in zip(names, results):
            rows = {e.policy for e in result.episodes}
            for row, digest in result.fingerprints.items():
                if row not in rows:  # (a row this run did not play: nothing to tell apart)
                    continue
                seen, where = played.setdefault(row, (digest, name))
                if seen != digest:
                    raise ValueError(
                        f"{name}: {row} plays something else than {row} of {where} (other "
                        "agent files, another plan, or a policy of other parameters or "
                        "class); rename one, or merge runs of one")
            for key in ("scenario", "fidelity", "target_accuracy"):
                if not _same_value(getattr(result, key), getattr(first, key)):
                    raise ValueError(
                        f"{name}: {key} = {getattr(result, key)!r}, but {names[0]} has "
                        f"{getattr(first, key)!r}; only runs of one scenario, fidelity and "
                        "target accuracy merge"
                        + ("" if key != "target_accuracy" else
                           " (without a target set, each run takes a fraction of its own best "
                           "final accuracy: run them with one target, --target-accuracy or "
                           "run_benchmark's target_accuracy)"))
            if result.settings is not None and reference is not None:
                differ = dict_differences(_comparable(reference[1]),
                                          _comparable(result.settings))
                if differ:
                    shown = ", ".join(f"{k} {a!r} vs {b!r}" for k, a, b in differ[:4])
                    raise ValueError(
                        f"{name}: played under other settings than {reference[0]} ({shown}"
                        f"{', ...' if len(differ) > 4 else ''}); only runs of one env "
                        "configuration, reward and surrogate fit merge")
            for episode in result.episodes:
                which = (episode.policy, episode.seed)
                kept = episodes.setdefault(which, episode)
                came_from.setdefault(which, (name, result))
                if None not in (kept.config_seed, episode.config_seed) \
                        and kept.config_seed != episode.config_seed:
                    raise ValueError(
                        f"{name}: {episode.policy} on seed {episode.seed} played on config "
                        f"seed {episode.config_seed}'s data split, but on config seed "
                        f"{kept.config_seed}'s in {came_from[which][0]}; merge runs of one "
                        "data split")
                if not _same_episode(kept, episode):
                    earlier, run = came_from[which]
                    raise ValueError(
                        f"{name}: {episode.policy} on seed {episode.seed} differs from the "
                        f"episode of {earlier} (another version, cache or thread count?"
                        f"{_code_difference((earlier, run), (name, result))}); merge runs "
                        "whose shared episodes agree, or leave one out")
            if data_split(list(episodes.values())) == "mixed":
                own = sorted({e.config_seed for e in result.episodes
                              if e.config_seed is not None})
                raise ValueError(
                    f"{name}: its episodes' data splits (config seeds {own}) and the others' "
                    "make neither one shared split nor a split per seed; "
                    "merge runs of one data split (or all run with --data-split-per-seed)")
        merged = list(episodes.values())
        records: list[dict[str, Any]] = []  # each run's, once (a file merged twice: once)
        for result in results:
            records += [r for r in result.provenance if r not in records]
        # still interrupted while an episode an interrupted run was to play (its rows on its
        # seeds) is missing: the other runs may have filled its gaps, each row with episodes
        # of what it was to play (a namesake of other parameters fills none)
        def gap(run: BenchResult) -> set[tuple[str, int]]:
            rows = run.fingerprints or dict.fromkeys({e.policy for e in run.episodes}, "")
            return {(row, seed) for row, digest in rows.items() for seed in run.seeds
                    if (row, seed) not in episodes
                    or (digest and row in played and played[row][0] != digest)}

        missing = set().union(*(gap(r) for r in results if r.interrupted))
        unplayed = {row: digest for r in results if r.interrupted
                    for row, digest in r.fingerprints.items()
                    if row not in played and any(m[0] == row for m in missing)}
        # the seeds played, and those an interrupted run had yet to play (merging twice, or a
        # merged file merged again, must not forget its gap)
        seeds = {e.seed for e in merged} | {seed for _, seed in missing}
        return cls(
            scenario=first.scenario, fidelity=first.fidelity,
            seeds=sorted(seeds), target_accuracy=first.target_accuracy,
            summaries=summarise(merged, first.target_accuracy), episodes=merged,
            interrupted=bool(missing),
            settings=reference[1] if reference is not None else None,
            # the rows played, and those an interrupted run had yet to play (so that a later
            # merge still knows the gap)
            fingerprints={**unplayed, **{row: digest for row, (digest, _) in played.items()}},
            provenance=records,
        )


def seed_data_split(config: ScenarioConfig, config_seed: int | None) -> ScenarioConfig:
    """The config of an env that :func:`run_benchmark` builds with ``env_per_seed`` for
    ``config_seed`` (the evaluation seed): ``config`` on that seed's own data split (its
    config seed); ``config`` itself for None (one env for every seed)."""
    return config if config_seed is None else apply_overrides(config, {"seed": config_seed})


def data_split(episodes: Sequence[EpisodeRecord]) -> str | None:
    """Which data split ``episodes`` were played on: ``"config seed <k>"`` when they share
    config seed k's, ``"per seed"`` when each seed is its own config seed, ``"mixed"`` when
    neither, None when some record none (older files) or there are none."""
    config_seeds = [e.config_seed for e in episodes]
    if not config_seeds or None in config_seeds:
        return None
    if len(set(config_seeds)) == 1:
        return f"config seed {config_seeds[0]}"
    if all(e.config_seed == e.seed for e in episodes):
        return "per seed"
    return "mixed"


def _code_difference(*runs: tuple[str, BenchResult]) -> str:
    """``"; run 0 ran hffm-env ..., run 1 ran ..."`` when the runs' recorded code differs
    (what likely made their episodes differ), else ``""``."""
    codes = [", ".join(sorted({describe(r) for r in result.provenance})) or "unrecorded code"
             for _, result in runs]
    if len(set(codes)) < 2:
        return ""
    return "; " + ", ".join(f"{name} ran {code}" for (name, _), code in zip(runs, codes))


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without what changes neither a fixed policy's episodes nor the rewards:
    whether the target is observed (an agent that reads it is fingerprinted), and the target
    and its miss penalty under a reward that does not use them."""
    config = copy.deepcopy(settings.get("config", {}))
    env = config.get("env", {})
    env.pop("observe_target", None)
    if env.get("reward") not in TARGET_REWARDS and settings.get("reward") not in TARGET_REWARDS:
        env.pop("target_accuracy", None)
        env.pop("target_miss_penalty", None)
    return {**settings, "config": config}


def _same_value(a: Any, b: Any) -> bool:
    """Equality with NaN equal to NaN (a cost-fidelity run's target is NaN)."""
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def _same_episode(a: EpisodeRecord, b: EpisodeRecord) -> bool:
    """Whether two records hold the same rounds (NaN equal to NaN)."""
    return all(np.array_equal(np.asarray(getattr(a, k), dtype=float),
                              np.asarray(getattr(b, k), dtype=float), equal_nan=True)
               for k in ("accuracy", "latency_s", "energy_j", "rewards"))


_MISSING_STATS = {
    "final_accuracy_local": {"mean": float("nan"), "std": float("nan"), "n": 0},
    "final_accuracy_held_out": {"mean": float("nan"), "std": float("nan"), "n": 0},
}
"""Summary fields that JSON files written before they existed lack."""


def _last(values: Sequence[float]) -> float:
    return float(values[-1]) if len(values) else float("nan")


def summarise(
    episodes: list[EpisodeRecord], target: float
) -> list[PolicySummary]:
    """Per-policy summaries of ``episodes`` against accuracy ``target``."""
    names = list(dict.fromkeys(e.policy for e in episodes))
    out = []
    for name in names:
        mine = [e for e in episodes if e.policy == name]
        tasks = sorted({t for e in mine for d in e.accuracy_per_task[-1:] for t in d})
        reached = [e.spent_to_reach(target) for e in mine] if math.isfinite(target) else []
        out.append(PolicySummary(
            policy=name,
            episodes=len(mine),
            latency_per_round_s=_stats([float(np.mean(e.latency_s)) for e in mine]),
            energy_per_round_j=_stats([float(np.mean(e.energy_j)) for e in mine]),
            final_accuracy=_stats([e.accuracy[-1] for e in mine]),
            final_accuracy_per_task={
                t: _stats([e.accuracy_per_task[-1].get(t, float("nan")) for e in mine])
                for t in tasks
            },
            final_accuracy_local=_stats([_last(e.accuracy_local) for e in mine]),
            final_accuracy_held_out=_stats([_last(e.accuracy_held_out) for e in mine]),
            episode_return=_stats([e.episode_return for e in mine]),
            energy_to_target_j=_stats([r[0] for r in reached]),
            latency_to_target_s=_stats([r[1] for r in reached]),
            reached_target=sum(r[2] is not None for r in reached),
        ))
    return out


def verdict(result: BenchResult, agent: str) -> str:
    """One line: did ``agent`` beat the best baseline? The best baseline is the one with the
    highest mean episode return (what the agent was trained to maximise); the line compares
    return, energy to the target accuracy (a mean over the episodes that reached it; how many
    did, when not all, and then also the means over the seeds both reached it on), energy
    per round and final accuracy, with the differences: in percent for energies (positive),
    as a plain difference for the return (its scale has no zero
    worth a ratio: a return near 0 or of the other sign gave -1637%) and in points for
    accuracy. An interrupted result gets no verdict: its best baseline may never have run."""
    rows = {s.policy: s for s in result.summaries}
    if agent not in rows:
        raise ValueError(f"agent {agent!r}: not in the result (policies {list(rows)})")
    if result.interrupted:  # the best baseline may be one that never ran
        return (f"{agent}: no verdict, the run was interrupted before every baseline had "
                "played every seed (rerun the comparison)")
    best_name = best_baseline(result, excluding=agent)
    if best_name is None:
        return f"{agent}: no baseline to compare with"
    me, best = rows[agent], rows[best_name]

    def pct(a: float, b: float) -> str:
        return f"{100 * (a - b) / abs(b):+.0f}%" if math.isfinite(a) and math.isfinite(b) and b \
            else "n/a"

    ret, best_ret = me.episode_return["mean"], best.episode_return["mean"]
    parts = [f"return {ret:.2f} vs {best_ret:.2f} ({ret - best_ret:+.2f})"]
    e, be = me.energy_to_target_j["mean"], best.energy_to_target_j["mean"]
    if math.isfinite(e) and math.isfinite(be):
        reach = ""
        if (me.reached_target, best.reached_target) != (me.episodes, best.episodes):
            # the means are over the episodes that reached it: say how many those are, and
            # compare on the seeds both reached it on (means over other seeds can mislead)
            reach = (f", reached on {me.reached_target}/{me.episodes} vs "
                     f"{best.reached_target}/{best.episodes} seeds")
            shared = _energy_to_target_on_shared_seeds(result, agent, best.policy)
            if shared is not None:
                seeds, agent_j, best_j = shared
                reach += (f"; on the {seeds} seed{'s' * (seeds != 1)} both reached it on, "
                          f"{agent_j:.1f} vs {best_j:.1f} J ({pct(agent_j, best_j)})")
        parts.append(f"energy to target {e:.1f} vs {be:.1f} J ({pct(e, be)}{reach})")
    elif math.isfinite(e) or math.isfinite(be):  # only one of them ever reached the target
        mine = f"{e:.1f} J" if math.isfinite(e) else "never reached"
        theirs = f"{be:.1f} J" if math.isfinite(be) else "never reached"
        parts.append(f"energy to target {mine} vs {theirs}")
    e, be = me.energy_per_round_j["mean"], best.energy_per_round_j["mean"]
    parts.append(f"energy/round {e:.2f} vs {be:.2f} J ({pct(e, be)})")
    a, ba = me.final_accuracy["mean"], best.final_accuracy["mean"]
    if math.isfinite(a) and math.isfinite(ba):
        parts.append(f"final accuracy {a:.3f} vs {ba:.3f} ({100 * (a - ba):+.1f} pts)")
    outcome = "beats" if ret > best_ret else "does not beat"
    return (f"{agent} {outcome} the best baseline by return, {best.policy}: "
            + ", ".join(parts))


def _energy_to_target_by_seed(result: BenchResult, policy: str) -> dict[int, float]:
    """Seed -> ``policy``'s energy (J) to ``result``'s target, NaN where it never reached
    it. A policy with two episodes on one seed is refused: which one pairs with another
    policy's episode of that seed would be a guess."""
    spent: dict[int, float] = {}
    for episode in result.episodes:
        if episode.policy == policy:
            if episode.seed in spent:
                raise ValueError(f"{policy} has more than one episode on seed {episode.seed}: "
                                 "a seed-by-seed comparison needs one per seed")
            spent[episode.seed] = episode.spent_to_reach(result.target_accuracy)[0]
    return spent


def _energy_to_target_on_shared_seeds(result: BenchResult, a: str,
                                      b: str) -> tuple[int, float, float] | None:
    """``(seeds, a's mean, b's mean)``: the energy to ``result``'s target of policies ``a``
    and ``b`` over the seeds where both reached it; None when there are none."""
    spent_a, spent_b = (_energy_to_target_by_seed(result, p) for p in (a, b))
    shared = sorted(s for s in set(spent_a) & set(spent_b)
                    if math.isfinite(spent_a[s]) and math.isfinite(spent_b[s]))
    if not shared:
        return None
    return (len(shared), float(np.mean([spent_a[s] for s in shared])),
            float(np.mean([spent_b[s] for s in shared])))


# Student's t, 97.5% quantile, for 1-30 degrees of freedom (two-sided 95% intervals)
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
          2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
          2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def _t_975(dof: int) -> float:
    """Student's t 97.5% quantile: the table up to 30 degrees of freedom, beyond it the
    Cornish-Fisher expansion around the normal's 1.96 (off by less than 0.001 there)."""
    if dof < 1:
        raise ValueError(f"degrees of freedom = {dof}: must be at least 1")
    if dof <= len(_T_975):
        return _T_975[dof - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)


@dataclass(frozen=True)
class PairedRatio:
    """A policy's energy to the target against a reference policy's, seed by seed.

    ``ratio`` is the geometric mean over the ``seeds`` both reached the target on of the
    per-seed ratio policy / reference (below 1: less energy), ``low`` and ``high`` its 95%
    confidence interval (Student's t on the log ratios; NaN with fewer than 2 seeds), and
    ``less`` the number of those seeds on which the policy spent less. ``only_policy``,
    ``only_reference`` and ``neither`` count the seeds the target was reached on by the
    policy alone, by the reference alone, and by neither."""

    policy: str
    reference: str
    seeds: int
    ratio: float
    low: float
    high: float
    less: int
    only_policy: int
    only_reference: int
    neither: int


def require_target(result: BenchResult) -> None:
    """A ``ValueError`` when ``result`` has no target accuracy (a run in which no policy
    measured an accuracy, or a file that says null): it has no energy to target to compare."""
    if not math.isfinite(result.target_accuracy):
        raise ValueError("target_accuracy = null: the run has no target accuracy, so no "
                         "energy to target (no policy measured an accuracy; run hffm bench "
                         "with --target-accuracy in a fidelity that measures one)")


def paired_energy_to_target(result: BenchResult, reference: str) -> list[PairedRatio]:
    """Every other policy of ``result`` against ``reference`` on the seeds both played
    (:class:`PairedRatio`), in the result's row order. Pairing by seed takes out what the
    seeds share (placement, channels, data order): a gap shown this way can be real where the
    spread over seeds of either mean hides it, and one hidden here is not shown at all."""
    names = [s.policy for s in result.summaries]
    if reference not in names:
        raise ValueError(f"{reference!r} is not a policy of the result (policies {names})")
    require_target(result)
    theirs = _energy_to_target_by_seed(result, reference)
    rows = []
    for name in names:
        if name == reference:
            continue
        mine = _energy_to_target_by_seed(result, name)
        played = sorted(set(mine) & set(theirs))
        reached = [(math.isfinite(mine[s]), math.isfinite(theirs[s])) for s in played]
        both = [s for s, sides in zip(played, reached) if all(sides)]
        spent_nothing = [s for s in both if mine[s] <= 0 or theirs[s] <= 0]
        if spent_nothing:  # no ratio to take, and it would drop out of every count
            raise ValueError(f"seed {spent_nothing[0]}: {name} or {reference} reached the "
                             "target having spent no energy; no ratio to take")
        logs = np.array([math.log(mine[s] / theirs[s]) for s in both])
        n = len(logs)
        ratio = low = high = float("nan")
        if n:
            mean = float(logs.mean())
            ratio = math.exp(mean)
            if n >= 2:
                half = _t_975(n - 1) * float(logs.std(ddof=1)) / math.sqrt(n)
                low, high = math.exp(mean - half), math.exp(mean + half)
        rows.append(PairedRatio(
            policy=name, reference=reference, seeds=n, ratio=ratio, low=low, high=high,
            less=int((logs < 0).sum()), only_policy=reached.count((True, False)),
            only_reference=reached.count((False, True)), neither=reached.count((False, False))))
    return rows


def format_paired(rows: Sequence[PairedRatio]) -> str:
    """A markdown table of :func:`paired_energy_to_target`, with a line saying how to read
    it."""
    if not rows:
        return "no other policy to compare"
    reference = rows[0].reference

    def number(x: float) -> str:
        return f"{x:.3f}" if math.isfinite(x) else "-"

    lines = [f"energy to target against {reference}, seed by seed: the geometric mean of "
             "policy / reference over the seeds both reached it on (below 1: less energy) "
             "and its 95% interval",
             f"| policy | seeds both reached | ratio | 95% interval | less on | only the policy "
             f"reached | only {reference} reached | neither reached |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        interval = f"{number(r.low)}-{number(r.high)}" if math.isfinite(r.low) else "-"
        lines.append(f"| {r.policy} | {r.seeds} | {number(r.ratio)} | {interval} | "
                     f"{r.less}/{r.seeds} | {r.only_policy} | {r.only_reference} | "
                     f"{r.neither} |")
    return "\n".join(lines)


def run_benchmark(
    make_env: Callable[[], Any] | Callable[[int], Any],
    policies: Iterable[str | Policy],
    seeds: Iterable[int] = DEFAULT_EVAL_SEEDS,
    *,
    env_per_seed: bool = False,
    target_accuracy: float | None = None,
    target_fraction: float = DEFAULT_TARGET_FRACTION,
    progress: bool = True,
    scenario: str = "",
    fidelity: str = "",
) -> BenchResult:
    """Run every policy on every seed (one episode each).

    By default one env built by ``make_env()`` serves every episode. With ``env_per_seed``,
    ``make_env(seed)`` builds one env per seed (closed after that seed's episodes), e.g. one
    whose config seed, and so its data split, is the seed too (:func:`seed_data_split`), and
    ``make_env(None)`` the config's own split, the one a policy tuned on training episodes
    (``fixed-grid``) is tuned on, once, before any seed plays.
    ``target_accuracy`` defaults to ``target_fraction`` x the best policy's mean final
    accuracy. ``scenario`` and ``fidelity``
    label the result (what :meth:`BenchResult.merge` checks): the env's own; given ones must
    agree with them (an env of another kind may need them given). Ctrl-C
    stops early; what finished is summarised and ``interrupted`` is set. An error raised
    playing a policy (its own bug, an action the env refuses) carries what finished before
    it, when anything did, as the error's ``partial_result`` (a :class:`BenchResult` with
    ``interrupted`` set): write it before the error goes on, as ``hffm bench`` does.
    """
    from hffm_env.progress import progress_bar

    if not callable(make_env):  # e.g. an env, built once: the runner builds (and closes) its own
        raise TypeError(f"make_env = {make_env!r}: must be a function that builds the env, "
                        "e.g. lambda: gym.make('hffm/HFFM-v0', ...)")
    resolved = _check_policies(policies)
    seeds = _check_seeds(seeds)
    for policy in resolved:
        problem = tuning_seed_problem(policy, seeds)
        if problem is not None:
            raise ValueError(f"policy {policy.name!r}: {problem}")
    if target_accuracy is not None and not (
            is_real(target_accuracy)
            and 0.0 <= target_accuracy <= 1.0):
        raise ValueError(f"target_accuracy = {target_accuracy!r}: must be an accuracy in [0, 1] "
                         "or None (target_fraction x the best final accuracy)")
    if not (is_real(target_fraction)
            and 0.0 < target_fraction <= 1.0):
        raise ValueError(f"target_fraction = {target_fraction!r}: must be in (0, 1]")
    # (env factory, seeds it serves): one shared env, or one per seed
    per_seed = cast(Callable[[int], Any], make_env)
    groups: list[tuple[Callable[[], Any], list[int]]] = (
        [(functools.partial(per_seed, int(seed)), [int(seed)]) for seed in seeds]
        if env_per_seed else [(cast(Callable[[], Any], make_env), [int(seed) for seed in seeds])])
    episodes: list[EpisodeRecord] = []
    interrupted = False
    settings: dict[str, Any] | None = None
    # what each policy plays, so that merge tells namesakes apart
    fingerprints = {p.name: policy_fingerprint(p) for p in resolved}
    bar = progress_bar(total=len(resolved) * len(seeds), disable=not progress, desc="bench",
               unit="episode")
    try:
        if env_per_seed and any(hasattr(p, "fitted_for") for p in resolved):
            _tune_on_the_config_split(cast(Callable[[Any], Any], make_env), resolved, bar)
        for build, group_seeds in groups:
            env = build()
            if not callable(getattr(env, "reset", None)):  # e.g. a make_env that forgot return
                raise TypeError(f"make_env returned {env!r}: expected a Gymnasium env")
            # the labels merge() checks: the env's own (the caller's, for an env without)
            base = getattr(env, "unwrapped", env)
            own = {"scenario": getattr(getattr(base, "config", None), "name", ""),
                   "fidelity": getattr(base, "fidelity", "")}
            given = {"scenario": scenario, "fidelity": fidelity}
            wrong = [k for k in own if own[k] and given[k] and own[k] != given[k]]
            if wrong:
                env.close()
                raise ValueError(f"{wrong[0]} = {given[wrong[0]]!r}, but make_env built a "
                                 f"{own[wrong[0]]!r} env: a result is labelled with its env's "
                                 f"{wrong[0]} (leave {wrong[0]} out)")
            changed = [name for name in ("action_space", "observation_space")
                       if own["scenario"] and getattr(env, name) != getattr(base, name)]
            if changed:  # a wrapper's: every policy here acts on the bare env
                import gymnasium as gym

                culprit, layer = type(env).__name__, env
                while isinstance(layer, gym.Wrapper):  # the outermost that changes it
                    if getattr(layer, changed[0]) != getattr(layer.env, changed[0]):
                        culprit = type(layer).__name__
                        break
                    layer = layer.env
                env.close()
                raise ValueError(
                    f"make_env returned an env whose {changed[0]} is not its HF-FM env's "
                    f"({culprit} changes it): the runner plays the "
                    "full action space on the bare observation; baselines act on it, and "
                    "coarse or menu agents wrap it themselves (return the env without the "
                    "wrapper)")
            scenario, fidelity = scenario or own["scenario"], fidelity or own["fidelity"]
            first_env = settings is None
            settings = settings if settings is not None else env_settings(env)
            try:
                if first_env:  # before any episode, not half-way through
                    _refuse_off_menu(base, resolved)
                for policy in resolved:
                    for seed in group_seeds:
                        bar.set_postfix_str(f"{policy.name} seed {seed}")
                        try:
                            # a tuned policy's training episodes (fixed-grid: minutes in
                            # train fidelity) show in the bar, which would stand still
                            fit_if_needed(env, policy, functools.partial(
                                _show_tuning, bar, policy.name))
                            bar.set_postfix_str(f"{policy.name} seed {seed}")
                            episodes.append(run_episode(env, policy, seed))
                        except ValueError as err:  # e.g. a period outside env.period_menu
                            # named, keeping the error's type (the CLI reads agents' by it)
                            err.args = (f"policy {policy.name!r} on seed {seed}: {err}",)
                            raise
                        except Exception as err:  # a bug in a policy's own code: its
                            # traceback is what its author needs, with where it happened
                            if hasattr(err, "add_note"):  # (Python 3.11 on)
                                err.add_note(f"(raised playing policy {policy.name!r} on "
                                             f"seed {seed})")
                            raise
                        bar.update()
            finally:
                env.close()
    except KeyboardInterrupt:
        interrupted = True
    except Exception as err:  # a policy's error: what finished goes with it (hffm bench
        if episodes:          # writes it), marked interrupted so that a rerun can merge
            err.partial_result = _bench_result(  # type: ignore[attr-defined]
                episodes, seeds, scenario, fidelity, target_accuracy, target_fraction, True,
                settings, fingerprints)
        raise
    finally:
        bar.close()
    return _bench_result(episodes, seeds, scenario, fidelity, target_accuracy, target_fraction,
                         interrupted, settings, fingerprints)


def _bench_result(episodes: list[EpisodeRecord], seeds: Sequence[int], scenario: str,
                  fidelity: str, target_accuracy: float | None, target_fraction: float,
                  interrupted: bool, settings: dict[str, Any] | None,
                  fingerprints: dict[str, str]) -> BenchResult:
    """:func:`run_benchmark`'s result of the ``episodes`` played."""
    # the code, libraries and machine that played the episodes (made after them, when the
    # envs have set torch's threads)
    record = provenance()
    if target_accuracy is None:
        finals = summarise(episodes, float("nan"))
        best = max((s.final_accuracy["mean"] for s in finals
                    if math.isfinite(s.final_accuracy["mean"])), default=float("nan"))
        target_accuracy = target_fraction * best
    return BenchResult(
        scenario=scenario,
        fidelity=fidelity,
        seeds=[int(s) for s in seeds],
        target_accuracy=float(target_accuracy),
        summaries=summarise(episodes, float(target_accuracy)),
        episodes=episodes,
        interrupted=interrupted,
        settings=settings,
        fingerprints=fingerprints,
        provenance=[record],
    )


def seeds_words(seeds: Sequence[int], at_most: int = 10) -> str:
    """``seeds`` as a table header or a title says them: the list itself up to ``at_most``
    seeds, else a range (``1000..2999 (2000 seeds)``) or, with gaps, the first and last ones
    and how many (2000 seeds listed one by one ran 12,000 characters to the right)."""
    seeds = [int(s) for s in seeds]
    if len(seeds) <= at_most:
        return str(seeds)
    ordered = sorted(seeds)
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}..{ordered[-1]} ({len(seeds)} seeds)"
    return f"[{ordered[0]}, {ordered[1]}, ..., {ordered[-1]}] ({len(seeds)} seeds)"


def _tune_on_the_config_split(make_env: Callable[[Any], Any], policies: Sequence[Policy],
                              bar: Any) -> None:
    """Fit the policies tuned on training episodes (fixed-grid) once on ``make_env(None)``, the
    config's own data split, before the seeds play on splits of their own: tuned on a seed's
    split, a baseline would have seen the held-out split it is judged on."""
    env = make_env(None)
    try:
        _refuse_off_menu(getattr(env, "unwrapped", env), policies)  # before minutes of tuning
        for policy in policies:
            try:
                fit_if_needed(env, policy, functools.partial(_show_tuning, bar, policy.name))
            except ValueError as err:
                err.args = (f"policy {policy.name!r} on the config's own data split: {err}",)
                raise
    finally:
        env.close()


def _refuse_off_menu(base: Any, policies: Sequence[Policy]) -> None:
    """A ``ValueError`` naming the first policy that plays a period off ``base``'s
    ``env.period_menu`` (nothing for an env without one)."""
    menu = getattr(getattr(getattr(base, "config", None), "env", None), "period_menu", None)
    if menu is None:
        return
    for policy in policies:
        problem = menu_problem(policy, menu)
        if problem is not None:
            raise ValueError(f"policy {policy.name!r}: {problem}; leave it out")


def _show_tuning(bar: Any, policy: str, candidate: str, seed: int) -> None:
    """Name a tuning episode in the progress bar (which would stand still through them)."""
    bar.set_postfix_str(f"tuning {policy}: {candidate} on training seed {seed}")


def _check_policies(policies: Iterable[str | Policy]) -> list[Policy]:
    """``policies`` as Policy objects: at least one, each a known name or a Policy, no two
    with the same name (their episodes would merge into one row)."""
    if isinstance(policies, (str, bytes)) or not isinstance(policies, Iterable) \
            or not (policies := list(policies)):
        raise ValueError(f"policies = {policies!r}: must be a non-empty list of policy names "
                         "(policy_names()) or Policy objects")
    resolved = []
    for k, policy in enumerate(policies):
        if isinstance(policy, str):
            policy = make_policy(policy)  # an unknown name: a ValueError listing the known
        elif isinstance(policy, type):  # its methods would run with the env as self
            raise ValueError(f"policies[{k}] = {policy.__name__}: a class; pass an instance, "
                             f"{policy.__name__}(...)")
        elif not all(hasattr(policy, a) for a in ("name", "reset", "act")):
            raise ValueError(f"policies[{k}] = {policy!r}: must be a policy name or a Policy "
                             "(with name, reset and act)")
        if not isinstance(policy.name, str) or not policy.name:
            raise ValueError(f"policies[{k}].name = {policy.name!r}: must be a non-empty "
                             "string (the result's row)")
        if hasattr(policy, "fit") and not hasattr(policy, "fitted_for"):
            raise ValueError(f"policy {policy.name!r} has fit() but no fitted_for(env): the "
                             "runner fits a policy when fitted_for(env) is False (see "
                             "FittedPolicy); add it, or it would never be fitted")
        if hasattr(policy, "fitted_for") and not hasattr(policy, "fit"):
            raise ValueError(f"policy {policy.name!r} has fitted_for(env) but no fit(env, "
                             "rollout): the runner calls fit when fitted_for(env) is False "
                             "(see FittedPolicy); add it, or drop fitted_for")
        resolved.append(policy)
    names = [p.name for p in resolved]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"policies: {twice[0]!r} is given {names.count(twice[0])} times; each "
                         "policy once (agents or plans from files of the same name get the same "
                         "label: rename one)")
    return resolved


def tuning_seed_problem(policy: Policy, seeds: Iterable[int]) -> str | None:
    """Why ``policy`` must not be evaluated on ``seeds``: it is tuned on some of them (its
    ``search_seeds``, e.g. ``fixed-grid``'s), and would be scored on its own tuning episodes;
    None when they are apart."""
    tuned_on = getattr(policy, "search_seeds", None) or ()
    shared = sorted(set(tuned_on) & {int(s) for s in seeds})
    if not shared:
        return None
    return (f"it is tuned on seeds {sorted(tuned_on)}, so scoring it on seeds {shared} would "
            "score its own tuning episodes; evaluate on held-out seeds (1000 and up) or leave "
            "it out")


def tuned_on_seeds(names: Iterable[str], seeds: Iterable[int]) -> dict[str, str]:
    """The policies of ``names`` (:func:`~hffm_env.baselines.policies.make_policy`) that are
    tuned on some of ``seeds``, each with :func:`tuning_seed_problem`'s reason: what a
    default policy list leaves out, and a named one refuses."""
    seeds = list(seeds)
    found = {name: tuning_seed_problem(make_policy(name), seeds) for name in names}
    return {name: problem for name, problem in found.items() if problem is not None}


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    """``seeds`` as a list of distinct seeds (:func:`~hffm_env.seeding.check_seed`), at
    least one."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable) \
            or not (seeds := list(seeds)):  # a list, a tuple, a numpy array, a range ...
        raise ValueError(f"seeds = {seeds!r}: must be a non-empty list of integers in "
                         f"{SEED_RANGE}")
    out = [check_seed(seed, f"seeds[{k}]") for k, seed in enumerate(seeds)]
    twice = sorted({s for s in out if out.count(s) > 1})
    if twice:
        raise ValueError(f"seeds: {twice[0]} is given twice; each seed once (a repeated "
                         "episode would count twice in the mean and std)")
    return out


def _fmt(stat: dict[str, float], digits: int = 3) -> str:
    """``mean ± std``; the mean alone for one episode (its std says nothing), ``-`` for
    none."""
    if stat["n"] == 0 or not math.isfinite(stat["mean"]):
        return "-"
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def format_table(result: BenchResult) -> str:
    """A plain-text table of the summaries (markdown-compatible)."""
    header = ("| policy | latency/round (s) | energy/round (J) | final accuracy "
              "| held-out cluster | return | energy to target (J) | latency to target (s) "
              "| reached |")
    # cost fidelity measures no accuracy: no target can be reached, whatever one was set
    measured = any(math.isfinite(s.final_accuracy["mean"]) for s in result.summaries)
    target = (f"target accuracy {result.target_accuracy:.3f}" if measured
              else "no accuracy measured, no target")
    split = data_split(result.episodes)
    # rows over different numbers of episodes (an interrupted run): each says how many
    counted = len({s.episodes for s in result.summaries}) > 1
    lines = [
        f"scenario {result.scenario}, fidelity {result.fidelity}, "
        f"seeds {seeds_words(result.seeds)}, "
        f"{target}" + {None: "", "per seed": ", a data split per seed",
                       "mixed": ", data splits mixed"}.get(split, f", the data split of {split}")
        + (" (interrupted)" if result.interrupted else ""),
        "",
        header + (" episodes |" if counted else ""),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if counted else ""),
    ]
    for s in result.summaries:
        lines.append(
            f"| {s.policy} | {_fmt(s.latency_per_round_s)} | {_fmt(s.energy_per_round_j)} | "
            f"{_fmt(s.final_accuracy)} | {_fmt(s.final_accuracy_held_out)} | "
            f"{_fmt(s.episode_return, 2)} | "
            f"{_fmt(s.energy_to_target_j, 1)} | {_fmt(s.latency_to_target_s, 1)} | "
            f"{f'{s.reached_target}/{s.episodes}' if measured else '-'} |"
            + (f" {s.episodes} |" if counted else "")
        )
    return "\n".join(lines)


FAMILY_STYLES: dict[str, tuple[str, str]] = {
    "paper schedules": ("Blues", "o"),
    "tuned": ("Purples", "D"),
    "adaptive heuristics": ("Greens", "s"),
    "floors": ("Greys", "v"),
    "other": ("Oranges", "P"),
    "agents": ("Reds", "^"),
}
"""Colour map and marker of each policy family in :func:`plot_tradeoffs`."""


def best_baseline(result: BenchResult, excluding: str | None = None) -> str | None:
    """The baseline (not an ``agent:`` row, nor ``excluding``) with the highest mean episode
    return: the one :func:`verdict` compares agents with; None when there is none. Every
    other row counts, plans and policies of your own included: the agent is judged against
    all it was shown beside. Rows of equal return go by name (the first alphabetically), so
    the order the policies were played in does not change which one is named."""
    rows = [s for s in result.summaries if not is_agent_name(s.policy)
            and s.policy != excluding and math.isfinite(s.episode_return["mean"])]
    return min(rows, key=lambda s: (-s.episode_return["mean"], s.policy)).policy if rows \
        else None


def plot_tradeoffs(result: BenchResult, path: str | Path | IO[bytes] | None = None) -> Figure:
    """The accuracy-energy and accuracy-latency trade-offs and the accuracy over rounds of
    every policy, as a matplotlib ``Figure``, saved to ``path`` when given (PNG, PDF or SVG by
    its suffix); in a notebook, a cell that ends with ``plot_tradeoffs(result)`` shows it.
    pyplot closes the figure as soon as it is made, so none is left open there.

    Policies are coloured by family (the paper's schedules, tuned, adaptive heuristics, the
    floors, trained agents; :func:`~hffm_env.baselines.policies.policy_family`), each family in
    shades of one colour with its own marker; error bars are one standard deviation over seeds on
    both axes; the best baseline by return (:func:`best_baseline`) and the agents are drawn
    larger and labelled on the plot (the best baseline in gold); the Pareto front is dashed.
    Where no accuracy was measured (cost fidelity) the first panel is the energy-latency
    trade-off instead and the others say why they are empty.
    """
    if isinstance(path, (str, os.PathLike)):  # (a file object is the caller's to have opened)
        check_output_path(path, "plot")  # (savefig names a format it lacks, and its own)
    import matplotlib
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from hffm_env.baselines.policies import policy_family

    # made by pyplot, which registers a notebook's inline display of figures (a fresh kernel
    # showed only "<Figure size ...>"), and closed there at once, so none is left open
    fig = plt.figure(figsize=(16, 4.8), dpi=100)
    plt.close(fig)
    axes = fig.subplots(1, 3)
    best = best_baseline(result)
    families: dict[str, list[PolicySummary]] = {}
    for s in result.summaries:
        families.setdefault(policy_family(s.policy), []).append(s)
    colour_of: dict[str, str | tuple[float, float, float, float]] = {}  # RGBA, or a name
    for family, rows in families.items():
        cmap = matplotlib.colormaps[FAMILY_STYLES.get(family, FAMILY_STYLES["other"])[0]]
        for k, s in enumerate(rows):  # shades from dark to light, never white
            colour_of[s.policy] = cmap(0.9 - 0.55 * k / max(len(rows) - 1, 1))
    if best is not None:
        colour_of[best] = "goldenrod"  # the one to beat, in a colour no family uses
    points = {}
    labels_to_place: list[tuple[Any, float, float, str, Any, float]] = []
    # cost fidelity measures no accuracy: an accuracy axis would put every policy at 0
    measured = any(math.isfinite(s.final_accuracy["mean"]) for s in result.summaries)
    order = sorted(result.summaries, key=lambda s: list(FAMILY_STYLES).index(
        policy_family(s.policy)) if policy_family(s.policy) in FAMILY_STYLES else 99)
    for s in order:
        family = policy_family(s.policy)
        marker = FAMILY_STYLES.get(family, FAMILY_STYLES["other"])[1]
        colour = colour_of[s.policy]
        stand_out = s.policy == best or family == "agents"
        acc = s.final_accuracy["mean"]
        acc_y = acc if math.isfinite(acc) else 0.0
        acc_err = s.final_accuracy["std"] if math.isfinite(acc) else 0.0
        points[s.policy] = (s.energy_per_round_j["mean"], s.latency_per_round_s["mean"], acc)
        label = f"{s.policy} (best baseline)" if s.policy == best else s.policy
        panels = [(axes[0], s.energy_per_round_j, acc_y, acc_err),
                  (axes[1], s.latency_per_round_s, acc_y, acc_err)] if measured else [
            (axes[0], s.energy_per_round_j, s.latency_per_round_s["mean"],
             s.latency_per_round_s["std"])]
        for ax, stat, y, y_err in panels:  # x: a cost; y: accuracy, or latency unmeasured
            ax.errorbar([stat["mean"]], [y], xerr=[stat["std"]], yerr=[y_err],
                        color=colour, marker=marker, markersize=10 if stand_out else 6,
                        markeredgecolor="black" if stand_out else colour, linestyle="none",
                        elinewidth=0.8, capsize=2, label=f"{family}: {label}",
                        zorder=4 if stand_out else 3)
            if stand_out:
                labels_to_place.append((ax, stat["mean"], y, s.policy.removeprefix(
                    "agent:"), colour, 6 if family == "agents" else -12))
        # Cost-fidelity episodes have no accuracy (all NaN): nothing to draw over rounds.
        curves = [e.accuracy for e in result.episodes
                  if e.policy == s.policy and not np.isnan(e.accuracy).all()]
        if curves:
            length = min(len(c) for c in curves)
            stacked = np.array([c[:length] for c in curves])
            mean = np.nanmean(stacked, axis=0)
            rounds = np.arange(1, length + 1)
            axes[2].plot(rounds, mean, color=colour, linewidth=2.2 if stand_out else 1.0,
                         label=s.policy)
            if stand_out and len(curves) > 1:
                spread = np.nanstd(stacked, axis=0)
                axes[2].fill_between(rounds, mean - spread, mean + spread, color=colour,
                                     alpha=0.15, linewidth=0)
    if not measured:  # the energy-latency front: both costs, the lower the better
        points = {name: (v[0], v[1], -v[1]) for name, v in points.items()}
    for ax, index, label in ((axes[0], 0, "energy per round (J)"),
                             (axes[1], 1, "latency per round (s)"))[:2 if measured else 1]:
        names = pareto_front({name: (v[index], v[2]) for name, v in points.items()})
        front = [(points[n][index], points[n][2] if measured else points[n][1], n)
                 for n in names]
        if front:
            xs, ys = zip(*[(x, y) for x, y, _ in front])
            ax.plot(xs, ys, "k--", linewidth=1, label="Pareto front", zorder=2)
        costs = [v[index] for v in points.values() if math.isfinite(v[index]) and v[index] > 0]
        # Log axes only where costs span more than a decade (star vs D2D on `paper`); on a
        # narrow range a log axis prints overlapping 1.1x10^0-style labels.
        if costs and max(costs) > 10 * min(costs):
            # symlog keeps a zero-cost point (never aggregating on `paper`) on the axis; plain
            # decade labels only, minor ticks unlabelled, so labels never overlap
            ax.set_xscale("symlog", linthresh=min(costs))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("final accuracy (mean ± std over seeds)" if measured
                      else "latency per round (s)")
    if not measured:
        for ax in axes[1:]:
            ax.set_axis_off()
        axes[1].text(1.0, 0.5, f"accuracy not measured in {result.fidelity} fidelity:\n"
                     "train or surrogate fidelity measures it", ha="center", va="center",
                     transform=axes[1].transAxes, fontsize=11, color="dimgray")
    _place_point_labels(fig, labels_to_place)
    axes[2].set_xlabel("round")
    axes[2].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # (no 1.5)
    axes[2].set_ylabel("mean accuracy (band: ± std, best baseline and agents)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(f"{result.scenario} ({result.fidelity} fidelity), "
                 f"seeds {seeds_words(result.seeds)}")
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    if isinstance(path, (str, os.PathLike)):
        save_figure_atomically(fig, path)
    elif path is not None:  # a file object: the caller's (PNG unless it says otherwise)
        fig.savefig(path)
    return fig


def _place_point_labels(fig: Any, labels: list[tuple[Any, float, float, str, Any, float]],
                        line_pt: float = 10.0, width_pt: float = 150.0) -> None:
    """Annotate points with ``(ax, x, y, text, colour, dy)`` (``dy``: the preferred vertical
    offset in points), moving a label up where it would cover one placed before it nearby (the
    agents of one recipe often sit on top of each other, and their names were unreadable)."""
    points_per_pixel = 72.0 / fig.dpi
    placed: dict[Any, list[tuple[float, float]]] = {}  # per axis: (x, y) of labels, in points
    for ax in {label[0] for label in labels}:
        ax.autoscale_view()  # the limits the points are drawn in
    for ax, x, y, text, colour, dy in sorted(labels, key=lambda label: label[2]):
        px, py = (v * points_per_pixel for v in ax.transData.transform((x, y)))
        if not (math.isfinite(px) and math.isfinite(py)):
            continue
        ly = py + dy
        taken = placed.setdefault(ax, [])
        while any(abs(ly - oy) < line_pt and abs(px - ox) < width_pt for ox, oy in taken):
            ly += line_pt
        taken.append((px, ly))
        ax.annotate(text, (x, y), xytext=(6, ly - py), textcoords="offset points", fontsize=7,
                    color=colour)


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names of the ``name -> (cost, accuracy)`` points that no other point dominates (at most
    the cost and at least the accuracy, one of them strictly), sorted by cost. Points with a
    non-finite coordinate are left out."""
    finite = {n: p for n, p in points.items() if math.isfinite(p[0]) and math.isfinite(p[1])}
    front = [
        name for name, (cost, acc) in finite.items()
        if not any(c <= cost and a >= acc and (c < cost or a > acc)
                   for other, (c, a) in finite.items() if other != name)
    ]
    return sorted(front, key=lambda n: finite[n])
