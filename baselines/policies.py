"""Heuristic orchestration policies, evaluated by the same runner as trained agents.

A policy follows the small :class:`Policy` protocol: ``reset(env, seed)`` at the start of every
episode (``env`` is the Gymnasium env, bare or under wrappers that keep its action and
observation, such as ``RecordEpisodeStatistics``; not under ``CoarseActions``,
``ScheduleMenu`` or ``ActionMaskObservation``, and the runner refuses an episode that a
``TimeLimit`` cuts short), then ``act(obs, info)`` each round returning a valid
``MultiDiscrete`` action of the full space. Policies build actions with
:func:`hffm_env.wrappers.full_action` (periods and a route, with the heads and relays the
baselines use) or the env's :class:`~hffm_env.envs.action.ActionLayout`
(``env.unwrapped.layout.encode``, every slot yours to choose), so they stay valid for any
scenario. ``run_benchmark`` takes policy objects beside the baselines' names: the README's
"Benchmark your own policy" shows one.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import itertools
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from hffm_env import jsonio
from hffm_env.config import MODULE_TYPES, NEVER
from hffm_env.envs.action import RELAY_WAIT, per_module_type
from hffm_env.fl.schedule import (
    RelaySource,
    Route,
    Schedule,
    SourceKind,
    Tier,
    choices,
    is_member,
)
from hffm_env.seeding import check_training_seeds
from hffm_env.values import is_finite_real, is_integer, shown
from hffm_env.wrappers import PAPER_MENU, full_action

__all__ = [
    "Policy",
    "FittedPolicy",
    "Rollout",
    "PeriodicPolicy",
    "RandomPolicy",
    "FixedGridPolicy",
    "AdaptivePolicy",
    "ModuleAwarePolicy",
    "GreedyEnergyPolicy",
    "PAPER_SCHEDULES",
    "NEVER_AGGREGATE",
    "POLICIES",
    "POLICY_FAMILIES",
    "policy_family",
    "is_agent_name",
    "env_settings",
    "make_policy",
    "import_policy",
    "menu_problem",
    "baselines_on_menu",
    "off_menu",
    "policy_names",
    "policy_fingerprint",
    "EnvBound",
]



@runtime_checkable
class Policy(Protocol):
    """What the benchmark runner needs from a policy."""

    name: str

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Prepare for an episode of ``env`` (seeded for stochastic policies)."""

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The action for this round."""


Rollout = Callable[[Any, Policy, int], float]
"""``rollout(env, policy, seed)``: the return of one episode of ``policy`` from that seed."""


@runtime_checkable
class FittedPolicy(Policy, Protocol):
    """A policy tuned on training episodes before it plays (the runner fits it first). One
    that names the seeds it tunes on as ``search_seeds`` is never evaluated on them
    (:func:`~hffm_env.baselines.runner.tuning_seed_problem`)."""

    def fitted_for(self, env: Any) -> bool:
        """Whether it is fitted for this env's scenario."""

    def fit(self, env: Any, rollout: Rollout) -> None:
        """Tune on ``env`` by playing episodes with ``rollout``."""


class EnvBound:
    """The env a policy plays, remembered by its ``reset``: reading it before any ``reset``
    raises ``RuntimeError`` saying so, instead of failing deep inside on ``None``."""

    _env: Any = None

    @property
    def env(self) -> Any:
        """The env of the episode being played (set by ``reset``)."""
        if self._env is None:
            name = getattr(self, "name", type(self).__name__)
            raise RuntimeError(f"policy {name!r}: call reset(env) before act()")
        return self._env

    @env.setter
    def env(self, value: Any) -> None:
        """Bind the policy to an env (``None``: unbound until the next ``reset``)."""
        self._env = value


class PeriodicPolicy(EnvBound):
    """A fixed schedule: every module type aggregated at the edge every ``edge_period`` rounds
    and at the cloud every ``cloud_period`` rounds (0 = never), every cluster on ``route``;
    default heads (the best uplink in each cluster), no D2D pairs, pending modules relayed from
    the edge. The paper's seven schedules are instances (its M3T-FFM prototype)."""

    def __init__(self, name: str, edge_period: int, cloud_period: int, route: Route) -> None:
        self.name = name
        self.edge_period = _period(name, "edge_period", edge_period)
        self.cloud_period = _period(name, "cloud_period", cloud_period)
        self.route = _routes(name, "route", [route])[0]
        self.env = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Remember the env (its layout and network are read each round)."""
        self.env = env.unwrapped

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The schedule's action for this round."""
        return full_action(self.env, self.edge_period, self.cloud_period, self.route)

    def menu_problem(self, menu: Sequence[int]) -> str | None:
        """Why this schedule cannot be played on ``env.period_menu`` ``menu`` (a period it
        plays is not on it), or None (:func:`menu_problem`)."""
        return _missing_periods(menu, self.edge_period, self.cloud_period)


PAPER_SCHEDULES: dict[str, tuple[int, int, Route]] = {
    name: choice for name, choice in PAPER_MENU.items() if name != "never"
}
"""The paper's schedules: name -> (edge period, cloud period, route). ``star`` sends every
device's modules to the cloud every round over the device-cloud link; ``edge-only`` aggregates
at the edge every round and never at the cloud; ``-d2d`` variants aggregate each cluster at its
head over D2D and reach the edge only on cloud rounds; ``-eK`` aggregates at the cloud every K
rounds."""


class RandomPolicy(EnvBound):
    """Uniform over the unmasked values of every slot (``env.action_masks()``), seeded."""

    name = "random"

    def __init__(self) -> None:
        self.env = None
        self.rng = np.random.default_rng(0)

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Reseed the policy's own generator from ``seed``; with ``None`` it goes on from where
        it stands (seed 0 at construction), so a run stays reproducible, as Gymnasium's
        ``reset(seed=None)`` does."""
        self.env = env.unwrapped
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """A random feasible action."""
        per_slot = self.env.layout.split_mask(self.env.action_masks())
        return np.array([int(self.rng.choice(np.flatnonzero(mask))) for mask in per_slot],
                        dtype=np.int64)


class FixedGridPolicy(PeriodicPolicy):
    """HierFAVG-style fixed periods (Liu et al., ICC 2020): the best (edge, cloud) period pair
    found by a grid search over ``grid`` on training seeds, by mean episode return. The search
    runs once per scenario, as an explicit :meth:`fit` (results are kept on the policy), on
    training seeds (default seed 0; agents train on 0..999), disjoint from the held-out
    evaluation seeds (1000+)."""

    name = "fixed-grid"

    def __init__(
        self,
        edge_periods: tuple[int, ...] = (1, 2),
        cloud_periods: tuple[int, ...] = (2, 8, NEVER),
        routes: tuple[Route, ...] = (Route.DIRECT, Route.D2D_RELAY),
        search_seeds: tuple[int, ...] = (0,),
    ) -> None:
        super().__init__(self.name, 1, 2, Route.DIRECT)
        self.grid = [
            (e, c, r) for e, c, r in itertools.product(
                _periods(self.name, "edge_periods", edge_periods),
                _periods(self.name, "cloud_periods", cloud_periods),
                _routes(self.name, "routes", routes))
            if c == NEVER or e <= c
        ]
        if not self.grid:  # (the search would find nothing to play)
            raise ValueError(f"fixed-grid: no (edge period, cloud period) pair of edge_periods "
                             f"{list(edge_periods)} and cloud_periods {list(cloud_periods)} "
                             "has the edge period at most the cloud period (or a cloud period "
                             "of 0, never)")
        if isinstance(search_seeds, (str, bytes)) or not isinstance(search_seeds, Iterable) \
                or not (search_seeds := tuple(search_seeds)) or not all(
                is_integer(s) for s in search_seeds):
            raise ValueError(f"fixed-grid: search_seeds = {search_seeds!r}: must be a non-empty "
                             "tuple of integer training seeds")
        check_training_seeds(search_seeds, "fixed-grid: search_seeds")
        self.search_seeds = tuple(int(s) for s in search_seeds)
        self.search_results: dict[str, float] = {}
        self._searched_for: str | None = None
        self._searched_reward: Any = None  # the reward callable searched under (by identity)

    @property
    def fingerprint(self) -> str:
        """A digest of its grid and search seeds (:func:`policy_fingerprint`): what it picks
        from, and on which episodes."""
        return jsonio.digest({"class": type(self).__qualname__, "grid": _plain(self.grid),
                              "search_seeds": list(self.search_seeds)}, length=16)

    def fitted_for(self, env: Any) -> bool:
        """Whether :meth:`fit` ran for what this env's episodes are played under: its config
        (but for the config seed, its data split: the search on the training split serves the
        others), fidelity, reward, reward mode and surrogate fit (a search under the cost
        fidelity's returns is no answer under the surrogate's). A custom reward is the very
        callable searched under: two lambdas share a name, not their returns."""
        return (self._searched_for == self._search_key(env)
                and getattr(env.unwrapped, "reward_function", None) is self._searched_reward)

    @staticmethod
    def _search_key(env: Any) -> str:
        # the settings leave the config seed out: a search on the training data split serves
        # the splits of other config seeds, as an agent trained on one split is judged on others
        base = env.unwrapped
        return jsonio.digest({"fidelity": base.fidelity, "settings": env_settings(base)},
                             length=24)

    def fit(self, env: Any, rollout: Rollout) -> None:
        """The grid search: ``rollout(env, candidate, seed)`` (an episode's return) for every
        grid point on every search seed; the best mean return wins. It plays whole episodes
        on ``env``: reset it before the next one (``baselines.runner.run_episode`` fits a
        policy that needs it before its own reset)."""
        best = None
        self.search_results = {}
        grid = self._grid_on(env.unwrapped.layout.menu)
        if not grid:
            raise ValueError(f"fixed-grid: {self.menu_problem(env.unwrapped.layout.menu)}")
        for e, c, r in grid:
            candidate = PeriodicPolicy(f"grid-e{e}-c{c}-{r.name.lower()}", e, c, r)
            score = float(np.mean([rollout(env, candidate, s) for s in self.search_seeds]))
            self.search_results[candidate.name] = score
            if best is None or score > best[0]:
                best = (score, e, c, r)
        assert best is not None
        _, self.edge_period, self.cloud_period, self.route = best
        self._searched_for = self._search_key(env)
        self._searched_reward = getattr(env.unwrapped, "reward_function", None)

    def _grid_on(self, menu: Sequence[int]) -> list[tuple[int, int, Route]]:
        """The grid points whose periods are both on ``menu`` (a custom ``env.period_menu``
        is searched where it meets the grid)."""
        return [(e, c, r) for e, c, r in self.grid if e in menu and c in menu]

    def menu_problem(self, menu: Sequence[int]) -> str | None:
        """None when some grid point is on ``menu``, else why not."""
        if self._grid_on(menu):
            return None
        return (f"no point of its grid (edge periods and cloud periods "
                f"{sorted({e for e, _, _ in self.grid})} x "
                f"{sorted({c for _, c, _ in self.grid})}) is on env.period_menu {list(menu)}")

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Follow the grid search's winner; refused before :meth:`fit` for this scenario."""
        if not self.fitted_for(env):
            raise RuntimeError("fixed-grid: call fit(env, rollout) on training seeds before "
                               "reset for this scenario (baselines.runner.run_episode does)")
        super().reset(env, seed)


class AdaptivePolicy(EnvBound):
    """Adaptive cloud period in the spirit of Wang et al. (JSAC 2019, "Adaptive federated
    learning in resource constrained edge computing systems"): aggregate at the edge every
    round and adapt the cloud period ``tau`` from what is observed. When the devices' copies
    drift from the global mean or the training loss stops falling, ``tau`` moves one step down
    the menu's finite periods (it halves on the default menu 1, 2, 4, 8: more global
    synchronisation); when drift is low and energy is spent faster than rounds pass, one step
    up. Drift is the mean over module types of the observation's ``drift/<type>/global``
    entries, each the drift ``d`` of ``env.drift`` squashed to ``d / (1 + d)``: ``drift_high``
    0.2 is a drift of 0.25, ``drift_low`` 0.05 one of 0.053."""

    name = "adaptive"

    def __init__(self, drift_high: float = 0.2, drift_low: float = 0.05) -> None:
        for name, value in (("drift_high", drift_high), ("drift_low", drift_low)):
            if not (is_finite_real(value) and value >= 0):
                raise ValueError(f"adaptive: {name} = {shown(value)}: must be a finite "
                                 "number >= 0")
        if drift_low > drift_high:  # (the tau-doubling branch could never be taken)
            raise ValueError(f"adaptive: drift_low = {drift_low!r} exceeds drift_high = "
                             f"{drift_high!r}: drift below drift_low lengthens the cloud "
                             "period, drift above drift_high shortens it")
        self.drift_high = float(drift_high)
        self.drift_low = float(drift_low)
        self.env = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Start at the middle of the menu's finite periods."""
        self.env = env.unwrapped
        self.periods = sorted(p for p in self.env.layout.menu if p > 0)
        if not self.periods:
            raise ValueError(f"adaptive: env.period_menu = {list(self.env.layout.menu)} has no "
                             "finite period (> 0) to adapt the cloud period over")
        self.index = len(self.periods) // 2
        self.previous_loss = float("inf")

    def menu_problem(self, menu: Sequence[int]) -> str | None:
        """Why ``menu`` leaves nothing to adapt over (or lacks the edge period 1 it plays), or
        None."""
        if not any(p > 0 for p in menu):
            return (f"env.period_menu = {list(menu)} has no finite period (> 0) to adapt the "
                    "cloud period over")
        return _missing_periods(menu, 1)

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Edge every round, cloud every ``tau`` rounds with ``tau`` adapted."""
        env = self.env
        names = env.observation_names
        value = dict(zip(names, obs))
        drift = np.mean([value[f"drift/{t}/global"] for t in MODULE_TYPES])
        from hffm_env.envs.hffm_env import measured

        loss = measured(info, "train_loss")
        energy_ahead = value["budget/energy"] > value["round"]
        stalled = np.isfinite(loss) and loss > 0.99 * self.previous_loss
        if np.isfinite(loss):
            self.previous_loss = loss
        if drift > self.drift_high or stalled:
            self.index = max(self.index - 1, 0)
        elif drift < self.drift_low and energy_ahead:
            self.index = min(self.index + 1, len(self.periods) - 1)
        tau = self.periods[self.index]
        return full_action(env, 1, tau, Route.DIRECT)


class ModuleAwarePolicy(EnvBound):
    """Non-uniform module circulation (the paper's future-work direction): small modules
    (heads, prompts) are aggregated often and at the cloud, large ones (MoE, adapters) rarely
    and mostly between D2D neighbours; every device pairs with its nearest cluster mate (the
    best D2D rate on average) for gossip of the large modules."""

    name = "module-aware"

    def __init__(
        self,
        edge_period: dict[str, int] | None = None,
        cloud_period: dict[str, int] | None = None,
    ) -> None:
        self.edge_period = _per_type_periods(self.name, "edge_period", edge_period, {
            "head": 1, "prompt": 1, "encoder": 2, "moe": 4, "adapter": 4,
        })
        self.cloud_period = _per_type_periods(self.name, "cloud_period", cloud_period, {
            "head": 2, "prompt": 2, "encoder": 8, "moe": NEVER, "adapter": NEVER,
        })
        self.env = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Remember the env."""
        self.env = env.unwrapped

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Per-module periods, D2D gossip of the large modules with the nearest neighbour."""
        env = self.env
        partners = np.ones(env.layout.num_devices, dtype=np.int64)
        pair = {t: t in ("moe", "adapter", "encoder") for t in MODULE_TYPES}
        return full_action(env, self.edge_period, self.cloud_period, Route.DIRECT,
                           pair_exchange=pair, partners=partners)

    def menu_problem(self, menu: Sequence[int]) -> str | None:
        """Why its per-module periods cannot be played on ``menu``, or None."""
        return _missing_periods(menu, self.edge_period, self.cloud_period)


class GreedyEnergyPolicy(EnvBound):
    """Greedy on this round's energy: every round, aggregate every module type at the edge
    tier (never the cloud), and for each cluster take the route (direct uplinks or D2D relay
    to the head) on which its devices spend less transmit energy, as priced by the cost model
    under this round's channel. Pending modules come from an available cluster mate that holds
    them (relayed over D2D, possibly over several hops), else from the edge."""

    name = "greedy-energy"

    def __init__(self) -> None:
        self.env = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Remember the env."""
        self.env = env.unwrapped

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Edge every round, the cheaper route per cluster."""
        env = self.env
        engine = env.engine
        c = env.network.num_clusters
        heads = tuple(env.default_heads.tolist())
        per_route = {}
        for route in (Route.DIRECT, Route.D2D_RELAY):
            schedule = Schedule.uniform(Tier.EDGE, c, route, heads=heads)
            per_route[route] = engine.price_schedule(schedule, with_compute=False)
        # Devices' own transmit energy per cluster under each route.
        energy = {route: report.energy_by_cluster_j for route, report in per_route.items()}
        routes = [
            Route.DIRECT if energy[Route.DIRECT][k] <= energy[Route.D2D_RELAY][k]
            else Route.D2D_RELAY
            for k in range(c)
        ]
        relay = []
        for r in range(env.layout.num_requests):
            if r >= len(engine.pending):
                relay.append(RELAY_WAIT)
                continue
            request = engine.pending[r]
            candidates = engine.relay_candidates(request)
            if not candidates:  # (its device dropped out: it can receive nothing)
                relay.append(RELAY_WAIT)
                continue
            mates = [s for s in candidates if s.kind == SourceKind.DEVICE]
            source = mates[0] if mates else RelaySource(SourceKind.EDGE)
            relay.append(env.layout.relay_value(request, source))
        return env.layout.encode(1, NEVER, routes, heads=list(heads), relay=relay)

    def menu_problem(self, menu: Sequence[int]) -> str | None:
        """Why it cannot play on ``menu`` (it aggregates at the edge every round, never at
        the cloud), or None."""
        return _missing_periods(menu, 1, NEVER)


def env_settings(env: Any) -> dict[str, Any] | None:
    """What an env's episodes are played under, as plain data: its config without the config
    seed (``benchmarks/tradeoff.py`` varies the data split by it), its reward (the name, or
    ``module.qualname`` of a custom callable), its reward mode and, in surrogate fidelity, a
    digest of the fit's file; None for an env that is not an HF-FM env."""
    from hffm_env.config import ScenarioConfig, to_dict

    base = getattr(env, "unwrapped", env)
    config = getattr(base, "config", None)
    if not isinstance(config, ScenarioConfig):
        return None
    from hffm_env.envs.reward import reward_label

    settings = {"config": {k: v for k, v in to_dict(config).items() if k != "seed"},
                "reward": reward_label(base.reward_function),
                "reward_mode": getattr(base, "reward_mode", "")}
    surrogate = getattr(base, "surrogate", None)
    if surrogate is not None:  # which fit predicted the accuracy (the cache's wins)
        settings["surrogate"] = surrogate.digest
    return settings


def _period(owner: str, name: str, value: Any) -> int:
    """``value`` as a period (an integer >= 0, 0 for never), else ``ValueError`` naming it."""
    if not (is_integer(value) and value >= 0):
        raise ValueError(f"{owner}: {name} = {shown(value)}: must be an integer period >= 0 "
                         "(0 is never)")
    return int(value)


def _nonempty_tuple(owner: str, name: str, values: Any, what: str) -> tuple[Any, ...]:
    """``values`` (a list, tuple or other iterable, not a string or mapping) as a non-empty
    tuple, else ``ValueError`` naming it and ``what`` it must hold."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable) \
            or not (found := tuple(values)):
        raise ValueError(f"{owner}: {name} = {shown(values)}: must be a non-empty tuple of "
                         f"{what}")
    return found


def _periods(owner: str, name: str, values: Any) -> tuple[int, ...]:
    """A non-empty collection of periods (:func:`_period`) as a tuple."""
    found = _nonempty_tuple(owner, name, values, "integer periods >= 0 (0 is never)")
    return tuple(_period(owner, f"{name}[{k}]", v) for k, v in enumerate(found))


def _routes(owner: str, name: str, values: Any) -> tuple[Route, ...]:
    """A non-empty collection of routes (:class:`Route` members or their integer values,
    :func:`~hffm_env.fl.schedule.is_member`) as a tuple of members."""
    allowed = ", ".join(f"Route.{c}" for c in choices(Route))
    found = _nonempty_tuple(owner, name, values, f"routes ({allowed})")
    for k, route in enumerate(found):
        if not is_member(route, Route):
            where = name if len(found) == 1 and name == "route" else f"{name}[{k}]"
            raise ValueError(f"{owner}: {where} = {shown(route)}: must be a route ({allowed})")
    return tuple(Route(int(route)) for route in found)


def _per_type_periods(owner: str, name: str, value: Any,
                      default: dict[str, int]) -> dict[str, int]:
    """A period per module type (``default`` for None): a mapping of exactly
    :data:`~hffm_env.config.MODULE_TYPES` to periods, or one period for all."""
    if value is None:
        return default
    per_type = per_module_type(value, f"{owner}: {name}")
    return {t: _period(owner, f"{name}[{t!r}]", per_type[t]) for t in MODULE_TYPES}


def _missing_periods(menu: Sequence[int], *periods: int | dict[str, int]) -> str | None:
    """The periods of ``periods`` (integers, or per-module-type dicts of them) that are not
    on ``menu``, in words; None when all are."""
    played = {p for item in periods
              for p in (item.values() if isinstance(item, dict) else [item])}
    missing = sorted(p for p in played if p not in menu)
    if not missing:
        return None
    return (f"it plays period{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}, "
            f"not on env.period_menu {list(menu)} (0 is never)")


def menu_problem(policy: Any, menu: Sequence[int]) -> str | None:
    """Why ``policy`` cannot be played on an env whose ``env.period_menu`` is ``menu`` (a
    fixed schedule with a period not on it, say), or None: the policy's own
    ``menu_problem(menu)`` where it has one (every baseline does), else None (agents, plans
    and other policies say so when played). Checked before a bench plays any episode."""
    check = getattr(policy, "menu_problem", None)
    return check(list(menu)) if callable(check) else None


def baselines_on_menu(menu: Sequence[int], names: Sequence[str] | None = None
                      ) -> tuple[list[str], list[str]]:
    """The baselines ``names`` (default: all) split into those that can be played on
    ``env.period_menu`` ``menu`` and those that cannot (:func:`menu_problem`): the commands
    leave the second out of their default comparison, with a note."""
    names = policy_names() if names is None else list(names)
    dropped = _menu_problems(names, menu)
    return [n for n in names if n not in dropped], list(dropped)


def off_menu(names: Sequence[str], menu: Sequence[int]) -> str | None:
    """The first of the baselines ``names`` that cannot be played on ``env.period_menu``
    ``menu``, and why (``'hffm-e8': it plays period 8, ...``); None when all can. The
    commands refuse baselines named on them with it, before any episode."""
    first = next(iter(_menu_problems(names, menu).items()), None)
    return None if first is None else f"{first[0]!r}: {first[1]}"


def _menu_problems(names: Sequence[str], menu: Sequence[int]) -> dict[str, str]:
    """Each of the baselines ``names`` that cannot be played on ``menu``, with why."""
    problems = {name: menu_problem(make_policy(name), menu) for name in names}
    return {name: problem for name, problem in problems.items() if problem is not None}


def _paper(name: str) -> Callable[[], Policy]:
    return lambda: PeriodicPolicy(name, *PAPER_SCHEDULES[name])


NEVER_AGGREGATE = "never"
"""The floor of every trade-off: no module type is ever aggregated; each device trains alone."""

POLICIES: dict[str, Callable[[], Policy]] = {
    **{name: _paper(name) for name in PAPER_SCHEDULES},
    NEVER_AGGREGATE: lambda: PeriodicPolicy(NEVER_AGGREGATE, NEVER, NEVER, Route.DIRECT),
    "random": RandomPolicy,
    "fixed-grid": FixedGridPolicy,
    "adaptive": AdaptivePolicy,
    "module-aware": ModuleAwarePolicy,
    "greedy-energy": GreedyEnergyPolicy,
}
"""Every baseline by name."""


POLICY_FAMILIES: dict[str, str] = {
    **dict.fromkeys(PAPER_SCHEDULES, "paper schedules"),
    NEVER_AGGREGATE: "floors",
    "random": "floors",
    "fixed-grid": "tuned",
    "adaptive": "adaptive heuristics",
    "module-aware": "adaptive heuristics",
    "greedy-energy": "adaptive heuristics",
}
"""The family of every baseline (plots group by it); trained agents are the family
``"agents"``."""


def is_agent_name(name: str) -> bool:
    """Whether a result row named ``name`` is a trained agent's: ``agent:<run or file>`` (how
    the commands name them), the bare default ``agent``, or ``agent-<algo>`` (how results of
    earlier versions named them); a heuristic may be called ``agentless-...``."""
    return name == "agent" or name.startswith(("agent:", "agent-"))


def policy_family(name: str) -> str:
    """The family of policy ``name``: :data:`POLICY_FAMILIES`, ``"agents"`` for agents' rows
    (:func:`is_agent_name`), ``"other"`` for names not known here."""
    if is_agent_name(name):
        return "agents"
    return POLICY_FAMILIES.get(name, "other")


def policy_names() -> list[str]:
    """The names of the baselines."""
    return list(POLICIES)


def policy_fingerprint(policy: Policy) -> str:
    """What ``policy`` plays, as a digest, so that :meth:`BenchResult.merge
    <hffm_env.baselines.runner.BenchResult.merge>` refuses two rows of one name that play
    something else: the policy's own ``fingerprint`` where it has one (agents: their files;
    plans: the plan; ``fixed-grid``: its grid and seeds), else its class name and the
    constructor arguments it keeps as attributes of the same name
    (``AdaptivePolicy(drift_high=0.5)`` is not the default ``adaptive``). Only plain values
    count (numbers, strings, enums, and lists, sets and string-keyed dicts of them): anything
    else would read differently in another process. It is read when a benchmark starts, so
    a policy should keep what it changes while it plays under other names than its
    constructor's arguments (or the next run's row would not merge with this one's)."""
    try:
        own = getattr(policy, "fingerprint", None)
    except Exception as err:  # a property of its own that fails: say whose
        raise ValueError(f"policy {getattr(policy, 'name', policy)!r}: its fingerprint "
                         f"failed: {type(err).__name__}: {err}") from None
    if isinstance(own, str):
        return own
    try:
        names = [n for n in inspect.signature(type(policy).__init__).parameters
                 if n not in ("self", "name")]
    except (TypeError, ValueError):  # a constructor without a readable signature
        names = []
    arguments = {}
    for name in names:
        try:
            value = _plain(getattr(policy, name))
        except Exception:  # noqa: BLE001 - a property that needs reset(): not a parameter
            continue
        if value is not _NOT_PLAIN:
            arguments[name] = value
    return jsonio.digest({"class": type(policy).__qualname__, "arguments": arguments},
                         length=16)


_NOT_PLAIN = object()


def _plain(value: Any) -> Any:
    """``value`` as JSON that reads the same in every process, or :data:`_NOT_PLAIN`."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Real):  # 1 and 1.0 alike; an integer too large: its digits
        try:
            return float(value)
        except OverflowError:
            return str(value)
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            return _NOT_PLAIN
        items = {k: _plain(v) for k, v in value.items()}
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items.values()) else items
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # a numpy array (or scalar)
        return _plain(value.tolist())
    if isinstance(value, (list, tuple, set, frozenset)):
        listed = [_plain(v) for v in value]
        if any(v is _NOT_PLAIN for v in listed):
            return _NOT_PLAIN
        return sorted(listed, key=repr) if isinstance(value, (set, frozenset)) else listed
    return _NOT_PLAIN


def make_policy(name: str) -> Policy:
    """A fresh baseline by name, or a policy of your own by ``"module:attribute"``
    (:func:`import_policy`); unknown names raise ``ValueError`` listing the known ones."""
    if isinstance(name, str) and ":" in name:
        return import_policy(name)
    if not isinstance(name, str) or name not in POLICIES:
        raise ValueError(f"policy {name!r}: unknown; known policies are {policy_names()} "
                         "(or module:Class for one of your own)")
    return POLICIES[name]()


def import_policy(spec: str) -> Policy:
    """A policy of your own from ``"module:attribute"`` (``hffm bench --policies
    mypolicies:CloudEveryFourth``), as Gymnasium's entry points name code: a :class:`Policy`
    class or a function of no arguments is called, a Policy object is used as it is. The
    module is imported as Python finds it (``PYTHONPATH=.`` for one in the current folder).
    Anything else, a ``SystemExit`` from its code included, raises ``ValueError`` naming the
    spec and what went wrong."""
    if not isinstance(spec, str):
        raise ValueError(f"policy {spec!r}: must be a 'module:attribute' string")
    module_name, _, attribute = spec.partition(":")
    if module_name in ("agent", "plan"):  # a result row's label, not code
        raise ValueError(f"policy {spec!r}: {module_name}: rows come from --{module_name} "
                         f"(a {module_name} file or folder), not from a policy name")
    if not module_name or not attribute:
        raise ValueError(f"policy {spec!r}: must be module:attribute, e.g. "
                         "mypolicies:CloudEveryFourth")

    def failed(doing: str, err: BaseException) -> ValueError:
        return ValueError(f"policy {spec!r}: {doing} failed: {type(err).__name__}: {err}")

    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        where = (" (for a module in this folder, run with PYTHONPATH=.)"
                 if err.name == module_name else "")
        raise ValueError(f"policy {spec!r}: cannot import {module_name!r}: "
                         f"{type(err).__name__}: {err}{where}") from None
    except (Exception, SystemExit) as err:  # its own code failed: named, not a traceback
        raise failed(f"importing {module_name!r}", err) from None
    try:
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise ValueError(f"policy {spec!r}: {module_name} has no {attribute!r}")
            target = getattr(target, part)
    except ValueError:
        raise
    except Exception as err:  # a module's __getattr__ of its own
        raise failed(f"reading {attribute!r}", err) from None
    policy = target
    if isinstance(target, type) or (callable(target) and not hasattr(target, "act")):
        try:
            inspect.signature(target).bind()
        except TypeError as err:
            raise ValueError(f"policy {spec!r}: cannot be built without arguments ({err}); "
                             "name a function of none that builds it") from None
        except ValueError:  # no signature to read (a builtin): calling it will tell
            pass
        try:
            policy = target()
        except (Exception, SystemExit) as err:
            raise failed("building it", err) from None
    try:
        name = policy.name if all(hasattr(policy, a) for a in ("name", "reset", "act")) \
            else None
    except Exception as err:  # a name property of its own
        raise failed("reading its name", err) from None
    if name is None:
        raise ValueError(f"policy {spec!r}: {policy!r} is not a Policy (it needs name, "
                         "reset(env, seed) and act(obs, info))")
    if not isinstance(name, str) or not name:
        raise ValueError(f"policy {spec!r}: its name = {name!r}: must be a non-empty string "
                         "(the result's row)")
    return cast(Policy, policy)
