"""The typed schedule of one round: what the Gymnasium layer decodes an action into.

A :class:`Schedule` says, for one round, at which tier each module type is aggregated, which
route each cluster's traffic takes, which device pairs do a D2D exchange, who heads each cluster,
and from where each pending module request is relayed. It is pure data; the engine validates it
against the current network (:meth:`FederatedEngine.validate_schedule`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from hffm_env.config import MODULE_TYPES, NEVER
from hffm_env.values import is_integer, shown

__all__ = ["Tier", "CLUSTER_TIERS", "PeriodClock", "Route", "SourceKind", "RelaySource",
           "ModuleRequest", "Schedule", "choices", "is_member"]


def choices(members: Iterable[IntEnum]) -> list[str]:
    """``["NAME (value)", ...]`` of enum members: what error messages list as allowed."""
    return [f"{m.name} ({int(m)})" for m in members]


def is_member(value: object, members: Iterable[IntEnum]) -> bool:
    """Whether ``value`` is one of ``members`` or its integer value (a numpy integer too; not a
    bool, a string or a float): the one test of every enum field here."""
    return is_integer(value) and value in set(members)


class Tier(IntEnum):
    """Where a module type is aggregated this round (higher tiers include the lower path).

    - ``NONE``: no aggregation; device copies stay personal (local training only).
    - ``D2D_PAIRS``: the round's D2D pairs average their copies (gossip; the pair mean is kept).
    - ``D2D_HEAD``: devices send to their cluster head along D2D relay paths; the head averages
      (weighted by sample counts) and broadcasts back along the shortest-path tree.
    - ``EDGE``: a cluster average at the edge tier. With a cluster's route ``DIRECT`` (or
      ``STAR``) every device uplinks to its edge server, which sends the average back; with
      ``D2D_RELAY`` the head aggregates over D2D as in ``D2D_HEAD`` and the edge server is not
      involved (the prototype's "D2D aggregation at the cluster head every round").
    - ``CLOUD``: cluster averages, then a cloud average over clusters (weighted by their sample
      totals), sent back down to every participating device.
    """

    NONE = 0
    D2D_PAIRS = 1
    D2D_HEAD = 2
    EDGE = 3
    CLOUD = 4


CLUSTER_TIERS = (Tier.D2D_HEAD, Tier.EDGE, Tier.CLOUD)
"""The tiers that leave every member of a cluster with one average: a round at any of them
counts as an edge round (the period clock and the surrogate's staleness features)."""


@dataclass
class PeriodClock:
    """Rounds since each module type was last aggregated at the edge and at the cloud tier.

    The policy picks periods; a tier is due for a module type when the rounds since its last
    aggregation there (counting this round) reach the chosen period. A cloud round also counts
    as an edge round (the cloud average passes through the edge tier). An aggregation counts
    when it is scheduled, even if no device took part or every exchange was lost (dropout,
    outage): the clock, and the staleness observed from it, follow the schedule, and the
    drift observed beside it shows what actually moved.
    """

    since_edge: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODULE_TYPES, 0))
    since_cloud: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODULE_TYPES, 0))

    def due(self, module_type: str, edge_period: int, cloud_period: int) -> Tier:
        """The tier due this round for ``module_type`` (without advancing the clock)."""
        if cloud_period != NEVER and self.since_cloud[module_type] + 1 >= cloud_period:
            return Tier.CLOUD
        if edge_period != NEVER and self.since_edge[module_type] + 1 >= edge_period:
            return Tier.EDGE
        return Tier.NONE

    def advance(self, tiers: dict[str, Tier]) -> None:
        """Move the clock past a round that aggregated at ``tiers``."""
        for t in MODULE_TYPES:
            tier = tiers.get(t, Tier.NONE)
            self.since_cloud[t] = 0 if tier == Tier.CLOUD else self.since_cloud[t] + 1
            self.since_edge[t] = 0 if tier in CLUSTER_TIERS else self.since_edge[t] + 1


class Route(IntEnum):
    """How a cluster's module traffic reaches the edge server and the cloud.

    - ``DIRECT``: every device uses its own uplink / downlink.
    - ``D2D_RELAY``: devices relay to the cluster head over D2D (multi-hop, shortest latency);
      the head uploads the cluster's average once and broadcasts what comes back.
    - ``STAR``: for cloud aggregation, devices exchange with the cloud directly over the
      wide-area link (the conventional FedFM star topology); edge rounds go as ``DIRECT``.
    """

    DIRECT = 0
    D2D_RELAY = 1
    STAR = 2


class SourceKind(IntEnum):
    """Where a relayed module comes from."""

    DEVICE = 0
    EDGE = 1
    CLOUD = 2


@dataclass(frozen=True)
class RelaySource:
    """The source of a relayed module: a device (by id), the requester's edge server, or the
    cloud."""

    kind: SourceKind
    device: int = -1

    def __post_init__(self) -> None:
        if not is_member(self.kind, SourceKind):
            raise ValueError(f"RelaySource.kind = {self.kind!r}: allowed "
                             f"{choices(SourceKind)}")
        if not is_integer(self.device):
            raise ValueError(f"RelaySource.device = {self.device!r}: must be an integer device id")
        if self.kind == SourceKind.DEVICE and self.device < 0:
            raise ValueError(f"RelaySource(kind=DEVICE) needs a device id >= 0, got {self.device}")
        # one type each, whatever was passed (an int kind, a numpy device id): to_dict and
        # equality read them as SourceKind and int
        object.__setattr__(self, "kind", SourceKind(self.kind))
        object.__setattr__(self, "device", int(self.device))


@dataclass(frozen=True)
class ModuleRequest:
    """A device lacks a module it needs (it gained a new task); it can serve that task only once
    the module is relayed to it."""

    device: int
    module_id: str


@dataclass(frozen=True)
class Schedule:
    """One round's orchestration decisions.

    Attributes:
        tiers: per module type (``encoder``, ``prompt``, ``moe``, ``adapter``, ``head``), the
            tier it is aggregated at this round. Missing types mean ``Tier.NONE``.
        routes: per cluster, the :class:`Route` of its traffic. Empty means all ``DIRECT``.
        heads: per cluster, the device id of its head (D2D aggregator and relay). Empty means
            the network's default heads.
        pairs: device pairs ``(i, j)`` doing a D2D exchange this round (for ``D2D_PAIRS``).
        relay_sources: for each pending :class:`ModuleRequest`, where the module comes from this
            round. Requests without a source stay pending.
        cloud_clusters: per cluster, whether it joins this round's cloud aggregations. A
            cluster that does not aggregates the module types at ``Tier.CLOUD`` at the edge
            tier instead (as ``Tier.EDGE`` on its route), and the cloud average is formed
            from the clusters that join. Empty means every cluster joins. (The simulator's
            partial participation at the cloud tier; the env's action does not choose it, and
            what the env reports of a round, its info and period clock, names the tiers.)
    """

    tiers: Mapping[str, Tier] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    heads: tuple[int, ...] = ()
    pairs: tuple[tuple[int, int], ...] = ()
    relay_sources: Mapping[ModuleRequest, RelaySource] = field(default_factory=dict)
    cloud_clusters: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.tiers, Mapping):
            raise ValueError(f"Schedule.tiers = {self.tiers!r}: must be a dict of module type "
                             "to Tier")
        for module_type, tier in self.tiers.items():
            if module_type not in MODULE_TYPES:
                raise ValueError(
                    f"Schedule.tiers has module type {module_type!r}: allowed are "
                    f"{list(MODULE_TYPES)}"
                )
            if not is_member(tier, Tier):
                raise ValueError(f"Schedule.tiers[{module_type!r}] = {tier!r}: allowed "
                                 f"{choices(Tier)}")
        for name in ("routes", "heads", "pairs", "cloud_clusters"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(
                    value, (tuple, list, np.ndarray)):
                each = "pair of device ids per pair" if name == "pairs" else "entry per cluster"
                raise ValueError(f"Schedule.{name} = {shown(value)}: must be a sequence, one "
                                 f"{each}")
        for cluster, route in enumerate(self.routes):
            if not is_member(route, Route):
                raise ValueError(f"Schedule.routes[{cluster}] = {route!r}: allowed "
                                 f"{choices(Route)}")
        for cluster, head in enumerate(self.heads):
            if not is_integer(head):
                raise ValueError(f"Schedule.heads[{cluster}] = {shown(head)}: must be an "
                                 "integer (a member device id, or -1 for none)")
        for k, pair in enumerate(self.pairs):
            if isinstance(pair, (str, bytes, Mapping)) or not isinstance(
                    pair, (tuple, list, np.ndarray)) or len(pair) != 2 \
                    or not all(is_integer(d) for d in pair):
                raise ValueError(f"Schedule.pairs[{k}] = {shown(pair)}: must be two device "
                                 "ids (integers)")
        for cluster, joins in enumerate(self.cloud_clusters):
            if not isinstance(joins, (bool, np.bool_)):
                raise ValueError(f"Schedule.cloud_clusters[{cluster}] = {joins!r}: allowed "
                                 "True or False")
        # stored as tuples of plain values whatever sequence came in (an array's truth value
        # is ambiguous where code asks whether one was given; frozen: set through object)
        object.__setattr__(self, "routes", tuple(self.routes))
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        object.__setattr__(self, "pairs", tuple((int(i), int(j)) for i, j in self.pairs))
        object.__setattr__(self, "cloud_clusters", tuple(bool(j) for j in self.cloud_clusters))

    def tier(self, module_type: str) -> Tier:
        """The tier of ``module_type`` this round (``NONE`` when not given)."""
        return Tier(self.tiers.get(module_type, Tier.NONE))

    @classmethod
    def uniform(
        cls,
        tier: Tier,
        num_clusters: int,
        route: Route = Route.DIRECT,
        **kwargs: object,
    ) -> Schedule:
        """Every module type at ``tier`` and every cluster on ``route``."""
        return cls(
            tiers={t: tier for t in MODULE_TYPES},
            routes=(route,) * num_clusters,
            **kwargs,  # type: ignore[arg-type]
        )

    def tier_names(self) -> dict[str, str]:
        """Each module type's tier this round by its lower-case name (``"none"``,
        ``"d2d_pairs"``, ``"d2d_head"``, ``"edge"``, ``"cloud"``), in
        :data:`~hffm_env.config.MODULE_TYPES` order."""
        return {t: self.tier(t).name.lower() for t in MODULE_TYPES}

    def to_dict(self) -> dict[str, object]:
        """A JSON-able view, by names (for render and logs; ``info["schedule"]`` is the env's
        array form)."""
        return {
            "tiers": self.tier_names(),
            "routes": [Route(r).name.lower() for r in self.routes],
            "heads": [int(h) for h in self.heads],
            "pairs": [[int(i), int(j)] for i, j in self.pairs],
            "relays": [
                {
                    "device": req.device,
                    "module": req.module_id,
                    "source": src.kind.name.lower(),
                    "source_device": src.device,
                }
                for req, src in self.relay_sources.items()
            ],
            "cloud_clusters": [bool(j) for j in self.cloud_clusters],
        }
