"""Calibrating the surrogate fidelity: real training over a design of schedules, then a fit.

:func:`calibrate` plays episodes in ``train`` fidelity (real M3T training) under a design of
schedules, records what every round measured (:class:`hffm_env.fl.surrogate.RoundTrace`) and
fits :class:`hffm_env.fl.surrogate.AccuracySurrogate` on them. The design (:func:`design`):
the paper's seven schedules and ``never``, the adaptive baselines (``adaptive``,
``module-aware``, ``greedy-energy``), the ``random`` policy, and schedules whose edge and cloud
periods, D2D pair exchange and route are drawn per module type (held for the episode), so
that the fit sees module types aggregated at different tiers and frequencies. Training
seeds only (0..999); evaluation seeds (1000+) stay held out.

    hffm calibrate --scenario small --seeds 0 1 --mixed 8     # ~7 min on 2 cores
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from hffm_env import jsonio
from hffm_env.baselines.policies import (
    PAPER_SCHEDULES,
    Policy,
    RandomPolicy,
    make_policy,
)
from hffm_env.config import MODULE_TYPES
from hffm_env.files import read_text_by_suffix, write_text_atomically
from hffm_env.fl.schedule import Route
from hffm_env.fl.surrogate import (
    AccuracySurrogate,
    RoundTrace,
    named_targets,
    out_of_fold_residuals,
    target_names,
    traces_key,
)
from hffm_env.provenance import provenance
from hffm_env.seeding import check_seed, check_training_seeds
from hffm_env.values import shown
from hffm_env.wrappers import full_action

__all__ = [
    "HELD_OUT_DESIGN_SEED",
    "MixedPeriodPolicy",
    "relabel_unformed_pairs",
    "traces_provenance",
    "RESIDUAL_FOLDS",
    "cloud_every_round_schedules",
    "design",
    "trace_episode",
    "calibrate",
    "fit_traces",
    "read_traces",
    "write_traces",
    "FIXED_SCHEDULES",
    "DEFAULT_SEEDS",
    "DEFAULT_MIXED",
    "DEFAULT_RANDOM_EPISODES",
    "DESIGN_POLICIES",
]

FIXED_SCHEDULES = (*PAPER_SCHEDULES, "never")
ADAPTIVE_POLICIES = ("adaptive", "module-aware", "greedy-energy")
DEFAULT_SEEDS = (0, 1)
"""The training seeds a calibration plays by default."""
DEFAULT_MIXED = 8
"""Schedules with per-module-type periods drawn at random, per seed, in the default design."""
DEFAULT_RANDOM_EPISODES = 1
"""Episodes of the ``random`` policy per seed in the default design."""
DESIGN_POLICIES = (*FIXED_SCHEDULES, *ADAPTIVE_POLICIES)
"""The named policies of the default design: the paper's schedules, ``never`` and the
adaptive baselines (their state-dependent schedules are what a learned policy plays)."""


class MixedPeriodPolicy:
    """A fixed schedule with its own (edge period, cloud period, pair exchange) per module
    type and one route for every cluster: calibration's coverage of per-type choices."""

    def __init__(self, name: str, edge: dict[str, int], cloud: dict[str, int],
                 pairs: dict[str, bool], route: Route) -> None:
        self.name, self.edge, self.cloud, self.pairs, self.route = name, edge, cloud, pairs, route
        self.env: Any = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Remember the env."""
        self.env = env.unwrapped

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The schedule's action for this round."""
        return full_action(self.env, self.edge, self.cloud, self.route,
                           pair_exchange=self.pairs)

    @classmethod
    def draw(cls, name: str, menu: Sequence[int], rng: np.random.Generator) -> MixedPeriodPolicy:
        """Periods, pair exchange and route drawn uniformly (periods from ``menu``)."""
        def period() -> int:
            return int(rng.choice(list(menu)))

        edge = {t: period() for t in MODULE_TYPES}
        cloud = {t: period() for t in MODULE_TYPES}
        pairs = {t: bool(rng.random() < 0.3) for t in MODULE_TYPES}
        route = Route(int(rng.choice([int(Route.DIRECT), int(Route.D2D_RELAY), int(Route.STAR)])))
        return cls(name, edge, cloud, pairs, route)


MOE_CLOUD_PERIODS = (2, 4, 8, 0)
"""Cloud periods of the MoE module in :func:`cloud_every_round_schedules` (0: never)."""


def cloud_every_round_schedules() -> list[Policy]:
    """Cloud aggregation every round over the D2D relay (``hffm-d2d-e1``, outside the paper's
    menu) and the same with the MoE module (most of the bits) at the cloud only every ``K``
    rounds (``hffm-d2d-e1-moeK``, ``K`` in :data:`MOE_CLOUD_PERIODS`): the fixed schedules
    closest to what energy-to-target learners converge on, and so where a surrogate fitted on
    the default design alone is least trustworthy."""
    from hffm_env.baselines.policies import PeriodicPolicy

    out: list[Policy] = [PeriodicPolicy("hffm-d2d-e1", 1, 1, Route.D2D_RELAY)]
    for period in MOE_CLOUD_PERIODS:
        cloud = {**dict.fromkeys(MODULE_TYPES, 1), "moe": period}
        out.append(MixedPeriodPolicy(f"hffm-d2d-e1-moe{period or 'never'}",
                                     dict.fromkeys(MODULE_TYPES, 1), cloud,
                                     dict.fromkeys(MODULE_TYPES, False), Route.D2D_RELAY))
    return out


class _NthRandom(RandomPolicy):
    """``random``, the ``k``-th of a seed's random episodes: the first draws from the seed (as
    ``random`` does), the others from ``(seed, k)``, so that they play other actions (they used
    to replay the first episode)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Seed the policy's generator from the episode's seed and ``k``."""
        super().reset(env, seed)
        if seed is not None and self.k:
            self.rng = np.random.default_rng([seed, self.k])


HELD_OUT_DESIGN_SEED = 1
"""The design seed whose mixed schedules ``benchmarks/surrogate_error.py`` holds out from every
calibration: a fit calibrated with it has seen them."""


def design(menu: Sequence[int], mixed: int, seed: int = 0, random_episodes: int = 1,
           policies: Sequence[str] = DESIGN_POLICIES) -> list[Callable[[], Policy]]:
    """Factories of the calibration design's policies (see the module docstring): the named
    ``policies``, ``random_episodes`` of ``random`` and ``mixed`` per-type schedules drawn
    with ``seed``."""
    rng = np.random.default_rng(seed)
    out: list[Callable[[], Policy]] = [functools.partial(make_policy, n) for n in policies]
    out += [functools.partial(_NthRandom, k) for k in range(random_episodes)]
    for k in range(mixed):
        out.append(_returning(MixedPeriodPolicy.draw(f"mixed-{k}", menu, rng)))
    return out


def _returning(policy: Policy) -> Callable[[], Policy]:
    """A factory of the design that gives ``policy`` itself (an object built already)."""
    return lambda: policy


def _targets(env: Any, info: dict[str, Any]) -> dict[str, float]:
    from hffm_env.envs.hffm_env import measured

    base = env.unwrapped
    result = base.last_result
    return named_targets(base.tasks, lambda kind, task: measured(info, kind, task),
                         None if result is None else result.loss_per_task, base.drift)


def trace_episode(env: Any, policy: Policy, seed: int) -> list[RoundTrace]:
    """One episode of ``policy`` from ``reset(seed=seed)``: the reset state and every round."""
    obs, info = env.reset(seed=seed)
    policy.reset(env, seed)
    rounds = [RoundTrace(None, float(np.mean(info["available"])), _targets(env, info))]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy.act(obs, info))
        rounds.append(RoundTrace(dict(info["schedule"]["tiers"]),
                                 float(np.mean(info["available"])), _targets(env, info)))
        done = terminated or truncated
    return rounds


def relabel_unformed_pairs(episodes: list[dict[str, Any]], env: Any,
                           design_seed: int = 0) -> dict[str, int]:
    """Relabel the module types recorded as D2D gossip (``d2d_pairs``) in rounds where no
    pair formed: until 2026-12-07 a module type's pair flag was labelled so even when no
    device chose a partner (the ``mixed-*`` schedules choose none), and a fit learned gossip
    from rounds in which nothing moved.

    Each episode holding a ``d2d_pairs`` tier is played again in ``env`` (``cost`` fidelity
    will do: the schedule only, no training) by the design policy of its name (drawn with
    ``design_seed``, as :func:`design` draws them; a name given to several, as ``random``,
    tries each) from ``reset(seed)``, and every ``d2d_pairs`` tier the replay decodes as
    ``none`` is relabelled ``none``. The replay must reproduce every other tier and every
    round's availability, or the episode is not this policy's: ``ValueError`` names it, as it
    names an episode of a policy outside the design (an agent's or a plan's: it cannot be
    replayed here), and then nothing is changed. Episodes without such a tier are left as
    they are (accuracy-driven policies' replays would differ). Each relabelled episode, in
    place, records its ``(round, module type)`` pairs under ``relabelled_pairs``. Returns
    the number relabelled per policy."""
    def named(e: dict[str, Any]) -> bool:
        return any(r.tiers and "d2d_pairs" in r.tiers.values() for r in e["rounds"][1:])

    todo = [e for e in episodes if named(e)]
    mixed = [int(n) for e in todo if (n := e["policy"].removeprefix("mixed-")).isdigit()]
    # the k-th random episode of a seed is _NthRandom(k) (before 2026-12-06 each replayed
    # the first: every k is tried)
    randoms = Counter(e["seed"] for e in episodes if e["policy"] == "random")
    factories = design(env.unwrapped.config.env.period_menu, max(mixed, default=-1) + 1,
                       seed=design_seed,
                       random_episodes=max(randoms.values(), default=0))
    factories += [_returning(policy) for policy in cloud_every_round_schedules()]
    by_name: dict[str, list[Callable[[], Policy]]] = {}
    for factory in factories:
        by_name.setdefault(factory().name, []).append(factory)
    relabels: list[tuple[dict[str, Any], list[tuple[int, str]]]] = []
    for e in todo:
        where = f"episode of {e['policy']!r} on seed {e['seed']}"
        if e["policy"] not in by_name:
            raise ValueError(f"{where}: not a policy of the calibration design (an agent's or "
                             "a plan's episode cannot be replayed here; record it again)")
        recorded = e["rounds"][1:]
        for factory in by_name[e["policy"]]:
            replayed = trace_episode(env, factory(), int(e["seed"]))[1:]
            if len(replayed) != len(recorded) or any(
                    old.available_fraction != new.available_fraction
                    for old, new in zip(recorded, replayed)):
                continue
            # (a played round's tiers name every module type: read_traces checks it)
            was, now = ([r.tiers or {} for r in rounds] for rounds in (recorded, replayed))
            changed = [(k, m) for k in range(1, len(was) + 1) for m in MODULE_TYPES
                       if was[k - 1][m] != now[k - 1][m]]
            if all(was[k - 1][m] == "d2d_pairs" and now[k - 1][m] == "none"
                   for k, m in changed):
                relabels.append((e, changed))
                break
        else:
            raise ValueError(f"{where}: no policy of the design (seed {design_seed}) of that "
                             "name replays its tiers and availability")
    counts: dict[str, int] = {}
    for e, changed in relabels:  # (all replayed first: a refusal changes nothing)
        if changed:
            for k, m in changed:
                cast("dict[str, str]", e["rounds"][k].tiers)[m] = "none"
            e["relabelled_pairs"] = [*e.get("relabelled_pairs", []), *changed]
            counts[e["policy"]] = counts.get(e["policy"], 0) + len(changed)
    return counts


def write_traces(path: str | Path, episodes: list[dict[str, Any]], key: str,
                 earlier: Sequence[Any] = ()) -> None:
    """``episodes``: dicts with ``policy``, ``seed`` and ``rounds`` (lists of RoundTrace),
    recorded on a config whose :func:`~hffm_env.fl.surrogate.traces_key` is ``key``; JSON,
    gzip-compressed when ``path`` ends in ``.gz``; the file records the writer's
    :func:`~hffm_env.provenance.provenance`, after the ``earlier`` records of a file
    rewritten (:func:`traces_provenance`; then a list, oldest first)."""
    record = [*earlier, provenance()] if earlier else provenance()
    data = jsonio.dumps(indent=None, value={"traces_key": key, "provenance": record,
                                            "episodes": [
        {**e, "rounds": [r.to_dict() for r in e["rounds"]]} for e in episodes]})
    # whole or not at all: a Ctrl-C while writing must not leave the earlier episodes cut
    write_text_atomically(path, data)  # (gzip-compressed by the .gz suffix)


def read_traces(path: str | Path, key: str | None = None,
                tasks: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Inverse of :func:`write_traces`. With ``key``, traces recorded on another config (a
    different :func:`~hffm_env.fl.surrogate.traces_key`) raise ``ValueError`` naming the file:
    a fit or an error measured on them would belong to another scenario. Files written before
    traces carried their key (a bare list of episodes) are read unchecked. Every episode must
    name its policy and hold its reset round and at least one played round; with ``tasks``,
    every round holds the global accuracy of each of those tasks and of no other (a fit
    took its tasks from the first round: one edited there lost a task)."""
    path = Path(path)
    try:
        text = read_text_by_suffix(path)
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror})") from None
    except ValueError as err:  # not gzip data, or not UTF-8
        raise ValueError(f"{path}: not a traces file ({err})") from None
    try:
        data = json.loads(text)
        episodes = data if isinstance(data, list) else data["episodes"]
        recorded = None if isinstance(data, list) else data.get("traces_key")
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as err:
        what = f"no {err} entry" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{path}: not a traces file ({what})") from None
    if key is not None and recorded is not None and recorded != key:
        raise ValueError(
            f"{path}: traces of another config (traces key {recorded}), not of this one "
            f"({key}); pass the scenario and --set overrides they were recorded with")
    read, where = [], "its episodes"
    expected = set(target_names(tasks)) if tasks is not None else None  # (once, not per round)
    try:
        for e, episode in enumerate(episodes):
            where = f"episode {e}"
            rounds = []
            for r, trace in enumerate(episode["rounds"]):
                where = f"episode {e}, round {r}"
                rounds.append(RoundTrace.from_dict(trace))
            where = f"episode {e}"
            if not isinstance(episode.get("policy"), str):
                raise ValueError(f"policy = {shown(episode.get('policy', 'missing'))}: must be "
                                 "the name of the policy played")
            if len(rounds) < 2:
                raise ValueError(f"{len(rounds)} rounds: an episode holds its reset round and "
                                 "at least one played round")
            for r, trace in enumerate(rounds):
                where = f"episode {e}, round {r}"
                # round 0 is the state at reset, every later one a played round: a reset row
                # dropped or a null mid-episode shifted every later round's features
                if (trace.tiers is None) != (r == 0):
                    raise ValueError("tiers = null only in round 0 (the state at reset); "
                                     f"here {'no null' if r == 0 else 'a null'}")
                held = {k.split("/", 1)[1] for k in trace.targets if k.startswith("accuracy/")}
                if tasks is not None and held != set(tasks):
                    raise ValueError(f"the global accuracy of tasks {sorted(held)}: this config "
                                     f"runs {list(tasks)}")
                unknown = sorted(set(trace.targets) - expected) if expected is not None else []
                if unknown:  # (a misspelt name was ignored)
                    raise ValueError(f"targets {unknown}: not the surrogate's for tasks "
                                     f"{list(tasks or [])}")
            where = f"episode {e}"
            read.append({**episode, "seed": check_seed(episode["seed"], "seed"),
                         "rounds": rounds})
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        what = f"no {err} entry" if isinstance(err, KeyError) else str(err)
        raise ValueError(f"{path}: not a traces file of episodes of rounds ({where}: {what})"
                         ) from None
    if not read or not all(e["rounds"] for e in read):
        raise ValueError(f"{path}: holds no episodes, or an episode without rounds")
    return read


def traces_provenance(path: str | Path) -> list[Any]:
    """The provenance records of a traces file read by :func:`read_traces`, oldest first:
    ``[None]`` for a file that records none (written before traces carried it), so that a
    rewrite (:func:`write_traces` with ``earlier``) does not pass for the recording."""
    data = json.loads(read_text_by_suffix(path))
    found = data.get("provenance") if isinstance(data, dict) else None
    return list(found) if isinstance(found, list) else [found]


RESIDUAL_FOLDS = 4
"""Folds (over seeds) of the out-of-fold residuals a fit keeps for ``surrogate_noise``."""


def fit_traces(episodes: list[dict[str, Any]], tasks: Sequence[str], horizon: int,
               meta: dict[str, Any] | None = None, seed: int = 0,
               residual_folds: int = RESIDUAL_FOLDS) -> AccuracySurrogate:
    """Fit the surrogate on recorded episodes, and keep its out-of-fold residuals
    (:func:`~hffm_env.fl.surrogate.out_of_fold_residuals`, folds over the episodes' seeds, or
    over the episodes themselves when they share one seed; ``residual_folds`` more fits of the
    same size; 0 keeps none)."""
    rounds = [e["rounds"] for e in episodes]
    surrogate = AccuracySurrogate.fit(rounds, tasks, horizon, seed=seed, meta=meta)
    seeds = [int(e["seed"]) for e in episodes]
    groups = seeds if len(set(seeds)) > 1 else list(range(len(episodes)))
    if residual_folds > 0 and len(set(groups)) > 1:
        surrogate.keep_residuals(
            out_of_fold_residuals(rounds, groups, tasks, horizon, folds=residual_folds,
                                  seed=seed),
            folds=min(residual_folds, len(set(groups))),
            grouped_by="seed" if groups is seeds else "episode")
    return surrogate


def calibrate(make_env: Callable[[], Any], seeds: Sequence[int] = DEFAULT_SEEDS,
              mixed: int = DEFAULT_MIXED,
              random_episodes: int = DEFAULT_RANDOM_EPISODES, progress: bool = True,
              traces_path: str | Path | None = None,
              policies: Sequence[str] = DESIGN_POLICIES,
              agents: Sequence[Policy] = (),
              schedules: Sequence[Policy] = (),
              design_seed: int = 0) -> tuple[AccuracySurrogate, list[dict]]:
    """Real training over the design on ``seeds``; returns the fitted surrogate and the
    recorded episodes (also written to ``traces_path`` as they come, if given).
    ``design_seed`` draws the design's mixed schedules: another one per calibration run adds
    other schedules, not only other seeds of the same ones (the held-out episodes of
    ``benchmarks/surrogate_error.py`` draw theirs with :data:`HELD_OUT_DESIGN_SEED`).

    ``agents`` (trained policies, e.g. ``hffm_env.agents.job.agent_policy(path)``) join the
    design, one episode per seed each: a learner drives the surrogate towards schedules the
    fixed design rarely plays, so recording its own real rounds and refitting is how the
    surrogate learns where it was wrong. ``schedules`` (fixed policies such as
    :func:`cloud_every_round_schedules`) join it the same way."""
    from hffm_env.progress import progress_bar

    env = make_env()
    try:  # closed also when an episode fails or is interrupted (it holds the model)
        base = env.unwrapped
        if base.fidelity != "train":
            raise ValueError(f"calibrate needs a train-fidelity env, got {base.fidelity!r}")
        check_training_seeds(seeds, "calibration seeds")
        factories = design(base.config.env.period_menu, mixed, seed=design_seed,
                           random_episodes=random_episodes, policies=policies)
        factories += [_returning(policy) for policy in (*schedules, *agents)]
        jobs = [(f, s) for s in seeds for f in factories]
        episodes: list[dict[str, Any]] = []
        start = time.perf_counter()
        bar = progress_bar(jobs, desc="calibrate", unit="episode", disable=not progress)
        for factory, seed in bar:
            policy = factory()
            bar.set_postfix_str(f"{policy.name} seed {seed}")
            episodes.append({"policy": policy.name, "seed": int(seed),
                             "rounds": trace_episode(env, policy, int(seed))})
            if traces_path is not None:
                write_traces(traces_path, episodes, traces_key(base.config))
    finally:
        env.close()
    meta = {"scenario": base.config.name, "seeds": [int(s) for s in seeds],
            "policies": sorted({e["policy"] for e in episodes}), "design_seed": design_seed,
            "training_s": time.perf_counter() - start, "targets": target_names(base.tasks)}
    surrogate = fit_traces(episodes, base.tasks, base.config.env.episode_rounds, meta)
    from hffm_env.fl.surrogate import surrogate_key

    surrogate.meta["config_key"] = surrogate_key(base.config)  # checked when loaded by path
    return surrogate, episodes

