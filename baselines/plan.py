"""Round plans: open-loop schedules that say, round by round, at which tier each module type
is aggregated, found by search on the surrogate (``benchmarks/plan_search.py``).

A fixed schedule repeats the same periods every round; a plan may change them from one round
to the next (e.g. keep the MoE module at the edge in the first rounds and send it to the cloud
later). Every round of a plan is a coarse action (:class:`~hffm_env.wrappers.CoarseActions`)
with periods 0 or 1: period 1 at a tier makes that tier due in that round, 0 never. After its
last round a plan repeats its last round. :class:`PlanPolicy` plays it with the network's
heads and no pair exchange, or with the full action's other levers switched on
(``cheapest_routes``, ``gossip_idle``; ``benchmarks/action_levers.py`` prices them). A plan
is not a baseline: it is what behaviour cloning starts a PPO agent from (``train_agent.py
--imitate PLAN.json``) and what the agent's results are compared with beside the baselines.

    plan = RoundPlan.read("docs/results/plan_search_small4.json")
    policy = PlanPolicy(plan)                       # a Policy for hffm bench's runner
    coarse = plan.coarse_action(round_index=0, menu=(1, 2, 4, 8, 0), num_clusters=4)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hffm_env import jsonio
from hffm_env.baselines.policies import EnvBound
from hffm_env.config import MODULE_TYPES, NEVER
from hffm_env.files import read_text_by_suffix, require_path
from hffm_env.fl.schedule import Route, Tier, choices, is_member
from hffm_env.values import is_integer

__all__ = ["RoundPlan", "PlanPolicy", "PLAN_TIERS", "cheapest_routes", "searched_config"]

PLAN_TIERS = (Tier.NONE, Tier.EDGE, Tier.CLOUD)
"""The tiers a plan can name for a module type in a round."""


@dataclass(frozen=True)
class RoundPlan:
    """Per round, the tier of every module type (in :data:`MODULE_TYPES` order), and one route
    for every cluster.

    Attributes:
        tiers: ``tiers[r][j]`` is the tier of module type ``MODULE_TYPES[j]`` in round ``r``
            (one of :data:`PLAN_TIERS`); rounds past the end repeat the last one.
        route: the route of every cluster in every round.
        name: a label for tables.
    """

    tiers: tuple[tuple[Tier, ...], ...]
    route: Route = Route.D2D_RELAY
    name: str = "plan"

    def __post_init__(self) -> None:
        if not isinstance(self.tiers, (tuple, list)) or not self.tiers:
            raise ValueError(f"RoundPlan.tiers = {self.tiers!r}: must be a non-empty sequence of "
                             "rounds, each one tier per module type")
        rows = []
        for r, row in enumerate(self.tiers):
            if not isinstance(row, (tuple, list)) or len(row) != len(MODULE_TYPES):
                raise ValueError(f"RoundPlan.tiers[{r}] = {row!r}: expected one tier per "
                                 f"module type {list(MODULE_TYPES)}")
            for j, tier in enumerate(row):
                if not is_member(tier, PLAN_TIERS):
                    shown = choices([Tier(tier)])[0] if is_member(tier, Tier) else repr(tier)
                    raise ValueError(f"RoundPlan.tiers[{r}][{j}] ({MODULE_TYPES[j]}) = {shown}: "
                                     f"allowed tiers are {choices(PLAN_TIERS)}")
            rows.append(tuple(Tier(t) for t in row))
        if not is_member(self.route, Route):
            raise ValueError(f"RoundPlan.route = {self.route!r}: allowed "
                             f"{choices(Route)}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"RoundPlan.name = {self.name!r}: must be a non-empty string")
        # stored as enums whatever integers came in (frozen: set through object)
        object.__setattr__(self, "tiers", tuple(rows))
        object.__setattr__(self, "route", Route(self.route))

    def round_tiers(self, round_index: int) -> dict[str, Tier]:
        """The tier of each module type in round ``round_index`` (0-based; rounds past the
        plan's last play its last)."""
        if not is_integer(round_index) or round_index < 0:
            raise ValueError(f"round_index = {round_index!r}: must be an integer >= 0")
        row = self.tiers[min(round_index, len(self.tiers) - 1)]
        return dict(zip(MODULE_TYPES, row, strict=True))

    def periods(self, round_index: int) -> tuple[dict[str, int], dict[str, int]]:
        """(edge periods, cloud periods) that make exactly this round's tiers due."""
        tiers = self.round_tiers(round_index)
        edge = {t: 1 if tier == Tier.EDGE else NEVER for t, tier in tiers.items()}
        cloud = {t: 1 if tier == Tier.CLOUD else NEVER for t, tier in tiers.items()}
        return edge, cloud

    def coarse_action(self, round_index: int, menu: tuple[int, ...],
                      num_clusters: int) -> np.ndarray:
        """This round as a :class:`~hffm_env.wrappers.CoarseActions` action (indices into
        ``menu``, which must hold 0 and 1, then a route per cluster)."""
        if not is_integer(num_clusters) or num_clusters < 1:
            raise ValueError(f"num_clusters = {num_clusters!r}: must be an integer >= 1")
        missing = [p for p in (0, 1) if p not in menu]
        if missing:
            raise ValueError(f"env.period_menu {list(menu)}: a plan needs periods 0 and 1 "
                             f"in it (missing {missing})")
        from hffm_env.wrappers import encode_coarse

        edge, cloud = self.periods(round_index)
        return encode_coarse(menu, edge, cloud, [self.route] * num_clusters, num_clusters)

    def with_tier(self, round_index: int, module_type: str, tier: Tier) -> RoundPlan:
        """A copy with one round's tier of one module type changed."""
        if not is_integer(round_index) or not 0 <= round_index < len(self.tiers):
            raise ValueError(f"round_index = {round_index!r}: this plan has rounds "
                             f"0..{len(self.tiers) - 1}")
        if module_type not in MODULE_TYPES:
            raise ValueError(f"module_type = {module_type!r}: allowed {list(MODULE_TYPES)}")
        rows = [list(row) for row in self.tiers]
        rows[round_index][MODULE_TYPES.index(module_type)] = tier
        return RoundPlan(tuple(tuple(row) for row in rows), self.route, self.name)

    @classmethod
    def constant(cls, rounds: int, tier: Tier = Tier.CLOUD, route: Route = Route.D2D_RELAY,
                 name: str = "plan") -> RoundPlan:
        """Every module type at ``tier`` in every one of ``rounds`` rounds (``Tier.CLOUD``:
        ``hffm-d2d-e1``)."""
        if not is_integer(rounds) or rounds < 1:
            raise ValueError(f"rounds = {rounds!r}: must be an integer >= 1")
        return cls(tuple((tier,) * len(MODULE_TYPES) for _ in range(rounds)), route, name)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: tier names per round and module type, the route's name."""
        return {"name": self.name, "route": self.route.name.lower(),
                "tiers": [{t: tier.name.lower() for t, tier in zip(MODULE_TYPES, row,
                                                                   strict=True)}
                          for row in self.tiers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "plan") -> RoundPlan:
        """Read :meth:`to_dict`'s form; errors name the entry, the value and what is allowed."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: {data!r}: expected an object with 'tiers' (and 'route', "
                             "'name')")
        names = {t.name.lower(): t for t in PLAN_TIERS}
        try:
            route = Route[str(data.get("route", "d2d_relay")).upper()]
        except KeyError:
            raise ValueError(f"{where}: route = {data.get('route')!r}: allowed "
                             f"{[r.name.lower() for r in Route]}") from None
        tiers = data.get("tiers") or []
        if not isinstance(tiers, list):
            raise ValueError(f"{where}: tiers = {tiers!r}: expected a list of rounds, each one "
                             f"tier per module type {list(MODULE_TYPES)}")
        rows = []
        for r, row in enumerate(tiers):
            if not isinstance(row, dict) or set(row) != set(MODULE_TYPES):
                raise ValueError(f"{where}: tiers[{r}] = {row!r}: expected one tier per "
                                 f"module type {list(MODULE_TYPES)}")
            for t in MODULE_TYPES:
                if not isinstance(row[t], str) or row[t] not in names:
                    raise ValueError(f"{where}: tiers[{r}].{t} = {row[t]!r}: allowed "
                                     f"{list(names)}")
            rows.append(tuple(names[row[t]] for t in MODULE_TYPES))
        if not rows:
            raise ValueError(f"{where}: no 'tiers'; a plan needs at least one round")
        return cls(tuple(rows), route, str(data.get("name", "plan")))

    @classmethod
    def read(cls, path: str | Path) -> RoundPlan:
        """A plan from a JSON file: a plan itself, or ``plan_search.py``'s output (its
        ``"plan"`` entry)."""
        path = require_path(path, "plan")
        if path.is_dir():
            raise IsADirectoryError(f"plan {str(path)!r}: is a folder; expected a JSON file")
        if not path.is_file():
            raise FileNotFoundError(f"plan {str(path)!r}: no such file")
        try:
            data = json.loads(read_text_by_suffix(path))  # (compressed: .json.gz)
        except ValueError as err:  # not JSON, not UTF-8 text, or not the gzip data named
            raise ValueError(f"plan {str(path)!r}: not JSON ({err})") from None
        except RecursionError:
            raise ValueError(f"plan {str(path)!r}: nested too deeply to be a plan") from None
        if isinstance(data, dict) and isinstance(data.get("plan"), dict):
            data = data["plan"]
        if not isinstance(data, dict):
            raise ValueError(f"plan {str(path)!r}: expected a JSON object")
        return cls.from_dict(data, where=f"plan {str(path)!r}")


def searched_config(path: str | Path) -> Any:
    """The scenario config the plan file at ``path`` was searched on, from the ``scenario``
    and ``overrides`` that ``plan_search.py`` records beside the plan; ``None`` when the file
    does not say (a bare plan) or they no longer load."""
    from hffm_env.config import load_scenario

    try:
        recorded = json.loads(read_text_by_suffix(path))
        return load_scenario(recorded["scenario"], overrides=list(recorded["overrides"]))
    except (ValueError, KeyError, TypeError, OSError, RecursionError):
        return None


def cheapest_routes(engine: Any, network: Any, tiers: dict[str, Tier],
                    routes: list[Route], heads: list[int]) -> tuple[list[Route], list[int]]:
    """Per cluster, the route and head that make a round's transfers at ``tiers`` cheapest in
    energy under the current channels, priced by the cost model (``engine.price_schedule``:
    nothing is trained or changed). One pass of coordinate descent over the clusters, starting
    from ``routes`` and ``heads``: each cluster tries every route and, for the D2D relay,
    every available member as its head; a change is kept only if the round's energy falls.
    Clusters with no available member keep their entries."""
    from hffm_env.fl.schedule import Schedule

    def energy(rs: list[Route], hs: list[int]) -> float:
        schedule = Schedule(tiers=dict(tiers), routes=tuple(rs), heads=tuple(hs))
        return engine.price_schedule(schedule, with_compute=False).energy_j

    routes, heads = list(routes), list(heads)
    best = energy(routes, heads)
    for cluster in range(network.num_clusters):
        members = [int(d) for d in network.available_members(cluster)]
        if not members:
            continue
        for route in Route:
            for head in members if route == Route.D2D_RELAY else [heads[cluster]]:
                trial_routes, trial_heads = list(routes), list(heads)
                trial_routes[cluster], trial_heads[cluster] = route, head
                trial = energy(trial_routes, trial_heads)
                if trial < best:
                    best, routes, heads = trial, trial_routes, trial_heads
    return routes, heads


class PlanPolicy(EnvBound):
    """A :class:`RoundPlan` as a baselines ``Policy``: round ``r`` of an episode plays the
    plan's round ``r`` (pending modules from the edge).

    By default with the network's heads and no pair exchange. The two options switch on the
    full action's other levers, to measure what they add to a plan
    (``benchmarks/action_levers.py``):

    Args:
        plan: the plan.
        name: the label in tables (default: the plan's name).
        cheapest_routes: each round, each cluster's route and head chosen by the cost model
            for that round's channels (:func:`cheapest_routes`) instead of the plan's route
            and the default head.
        gossip_idle: D2D pairs (every device with its nearest cluster mate, repaired by the
            env) exchange every module type that the plan leaves at tier none in that round.
    """

    def __init__(self, plan: RoundPlan, name: str | None = None, *,
                 cheapest_routes: bool = False, gossip_idle: bool = False) -> None:
        if not isinstance(plan, RoundPlan):
            raise TypeError(f"PlanPolicy: plan = {plan!r}: must be a RoundPlan (read a file "
                            "with RoundPlan.read(path))")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"PlanPolicy: name = {name!r}: must be a string or None")
        self.plan = plan
        self.name = name or plan.name
        self.cheapest_routes = cheapest_routes
        self.gossip_idle = gossip_idle
        self.env = None
        self.round = 0

    @property
    def fingerprint(self) -> str:
        """A digest of what it plays (the plan and the two options): two plans of one name
        are told apart by it (:meth:`BenchResult.merge`)."""
        played = {"plan": self.plan.to_dict(), "cheapest_routes": self.cheapest_routes,
                  "gossip_idle": self.gossip_idle}
        return jsonio.digest(played, length=16, default=None)

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Start the plan from its first round."""
        self.env, self.round = env, 0

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """This round's action of the plan."""
        from hffm_env.wrappers import full_action

        edge, cloud = self.plan.periods(self.round)
        tiers = self.plan.round_tiers(self.round)
        self.round += 1
        if not (self.cheapest_routes or self.gossip_idle):
            return full_action(self.env, edge, cloud, self.plan.route)
        base = self.env.unwrapped
        layout = base.layout
        routes = [self.plan.route] * layout.num_clusters
        heads = base.default_heads.tolist()
        if self.cheapest_routes:
            routes, heads = cheapest_routes(base.engine, base.network, tiers, routes, heads)
        idle = {t: self.gossip_idle and tier == Tier.NONE for t, tier in tiers.items()}
        partners = np.ones(layout.num_devices, dtype=np.int64) if self.gossip_idle else None
        return full_action(base, edge, cloud, routes, pair_exchange=idle, heads=heads,
                           partners=partners)
