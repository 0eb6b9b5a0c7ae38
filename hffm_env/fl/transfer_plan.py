"""Transfer planning: the flows a round's :class:`Schedule` puts on the network, and their price.

Everything here is a function of what it is given (the schedule, this round's
:class:`~hffm_env.sim.Network`, which devices hold which module, the modules' sizes and the
scenario) and of nothing else: no model values, no engine state. The federated engine records a
real round's transfers with :func:`plan_aggregations` and :func:`record_relay` while it
aggregates values, and prices a hypothetical schedule with :func:`price_schedule`; both read the
schedule's defaults from one place, :meth:`RoundLayout.resolve`, and the devices' computation
from one place, :func:`compute_samples`.

Numpy only (no torch), like :mod:`hffm_env.sim`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from hffm_env.config import MODULE_TYPES, ScenarioConfig
from hffm_env.fl.schedule import ModuleRequest, RelaySource, Route, Schedule, SourceKind, Tier
from hffm_env.sim import CostReport, LinkKind, Network, Stage, TransferTable

if TYPE_CHECKING:  # only read, never built here; importing it at run time would pull in torch
    from hffm_env.models import ModuleInventory

__all__ = [
    "ModuleMove",
    "RoundLayout",
    "TransferPlan",
    "compute_samples",
    "edge_holds_result",
    "exchange_via",
    "failed_exchanges",
    "pair_outcome",
    "plan_aggregations",
    "price_schedule",
    "record_aggregation",
    "record_relay",
]

Pairs = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class RoundLayout:
    """A schedule's cluster heads and routes, with this round's defaults where it names none.

    Attributes:
        heads: ``(S,)`` head of each cluster (``Schedule.heads``, else the network's default
            heads: the best uplink among available members, -1 where none is available).
        routes: ``(S,)`` route of each cluster (``Schedule.routes``, else ``Route.DIRECT``).
    """

    heads: tuple[int, ...]
    routes: tuple[Route, ...]

    @classmethod
    def resolve(cls, schedule: Schedule, network: Network) -> RoundLayout:
        """The layout ``schedule`` asks for on ``network`` this round: the one place that holds
        the defaults, for a real round and for pricing alike."""
        heads = tuple(schedule.heads) if schedule.heads else tuple(int(h) for h in network.heads)
        routes = (tuple(schedule.routes) if schedule.routes
                  else (Route.DIRECT,) * network.num_clusters)
        return cls(heads, routes)


@dataclass(frozen=True)
class ModuleMove:
    """How one module is aggregated this round, as planned (and recorded in the table).

    Attributes:
        module_id: the module.
        tier: where it is aggregated (never ``Tier.NONE``).
        joined: ``(N,)`` bool, participants whose exchange succeeds: they form the aggregate
            and receive it.
        failed: ``(N,)`` bool, participants whose exchange failed on every attempt (outage):
            their uploads were paid for, they receive nothing and keep their module.
        pairs: with ``Tier.D2D_PAIRS``, the pairs of participants whose exchange succeeds
            (empty otherwise).
        broken_pairs: with ``Tier.D2D_PAIRS``, the pairs of participants whose link was in
            outage on every attempt (empty otherwise).
    """

    module_id: str
    tier: Tier
    joined: np.ndarray
    failed: np.ndarray
    pairs: Pairs = ()
    broken_pairs: Pairs = ()

    @property
    def outage_devices(self) -> set[int]:
        """Participants whose exchange failed: ``failed`` and both ends of ``broken_pairs``."""
        return set(np.flatnonzero(self.failed).tolist()) | {
            d for pair in self.broken_pairs for d in pair}


@dataclass(frozen=True)
class TransferPlan:
    """The aggregations of one round: its layout and one :class:`ModuleMove` per aggregated
    module (two for a module at ``Tier.CLOUD`` when some clusters stay out of the cloud: the
    cloud one, then the edge one), in the order their flows were recorded."""

    layout: RoundLayout
    moves: tuple[ModuleMove, ...]


def compute_samples(scenario: ScenarioConfig, computing: np.ndarray) -> np.ndarray | None:
    """``(N,)`` samples each device processes in local computation this round:
    ``fl.local_steps * fl.batch_size`` for the devices in ``computing`` (``(N,)`` bool), 0 for
    the others; None when the scenario does not charge computation (``compute.enabled``)."""
    if not scenario.compute.enabled:
        return None
    work = scenario.fl.local_steps * scenario.fl.batch_size
    return np.asarray(computing).astype(np.float64) * work


def exchange_via(tier: Tier, route: Route) -> str:
    """Which links an aggregation at ``tier`` uses on ``route`` (the kinds of
    :meth:`~hffm_env.sim.Network.exchange_failed`)."""
    if tier == Tier.D2D_HEAD or (tier == Tier.EDGE and route == Route.D2D_RELAY):
        return "d2d"
    if tier == Tier.CLOUD and route == Route.D2D_RELAY:
        return "d2d+uplink"
    if tier == Tier.CLOUD and route == Route.STAR:
        return "wired"
    return "uplink"


def edge_holds_result(tier: Tier, route: Route) -> bool:
    """Whether a cluster's edge server ends an aggregation at ``tier`` (edge or cloud) over
    ``route`` holding its result: the exchange passes through it (direct uplinks, or the
    head's uplink after D2D). Not at the edge over D2D (the head averages) nor at the cloud on
    STAR (devices reach the cloud directly): there it keeps its old copy."""
    return exchange_via(tier, route) in ("uplink", "d2d+uplink")


def failed_exchanges(
    network: Network, scenario: ScenarioConfig, tier: Tier, routes: Sequence[Route],
    heads: Sequence[int],
) -> np.ndarray:
    """``(N,)`` bool: devices whose exchange for an aggregation at ``tier`` fails this round
    (outage on every attempt; D2D pairs are judged per pair instead, by :func:`pair_outcome`)."""
    lost = np.zeros(network.num_devices, dtype=bool)
    if scenario.channel.outage_snr_db is None or tier in (Tier.NONE, Tier.D2D_PAIRS):
        return lost
    for c in range(network.num_clusters):
        if network.available_members(c).size == 0:
            continue
        lost |= network.exchange_failed(c, exchange_via(tier, routes[c]), heads[c])
    return lost


def pair_outcome(
    network: Network, pairs: Pairs, part: np.ndarray
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The pairs of participants (``part``, ``(N,)`` bool) whose D2D exchange succeeds, and
    those whose link was in outage for every attempt this round."""
    joined = [(i, j) for i, j in pairs if part[i] and part[j]]
    if not joined:
        return [], []
    i, j = np.array(joined).T
    lost = network.rates.d2d_link_failed(i, j)
    return ([p for p, x in zip(joined, lost) if not x],
            [p for p, x in zip(joined, lost) if x])


def record_aggregation(
    table: TransferTable,
    network: Network,
    module_id: str,
    tier: Tier,
    part: np.ndarray,
    layout: RoundLayout,
    pairs: Pairs,
    bits: float,
    failed: np.ndarray | None = None,
    d2d_recorded: dict[tuple[int, int, bytes], tuple[int, int]] | None = None,
) -> None:
    """Append to ``table`` the transfers that aggregating ``module_id`` (``bits`` on the wire)
    at ``tier`` takes, given which devices take part (``part``, boolean ``(N,)``) and which
    tried but failed (``failed``: their uploads were paid for, every attempt, but they receive
    nothing back).

    ``d2d_recorded``: the flows of the D2D exchanges with cluster heads already in ``table``
    this round, by ``(cluster, head, senders)``; an exchange found there is copied (updated
    with the ones recorded here). The same flows either way, built once per round."""
    routes, heads = layout.routes, layout.heads
    if tier == Tier.D2D_PAIRS:
        valid, broken = pair_outcome(network, pairs, part)
        if valid or broken:
            table.add_d2d_pairs(module_id, bits, valid + broken)
        return
    if failed is not None and failed.any():
        _record_failed_uploads(table, network, module_id, tier, failed, layout, bits)
    hops = _SingleHops(table, module_id, bits)
    cloud = table.cloud_node()
    for c in range(network.num_clusters):
        members = network.members(c)
        senders = members[part[members]]
        if senders.size == 0:
            continue
        route = routes[c]
        edge = table.edge_node(c)
        via = exchange_via(tier, route)
        if via in ("d2d", "d2d+uplink"):  # to the head over D2D (and on up from it)
            head = heads[c]
            others = senders[senders != head]
            if others.size:
                hops.flush()  # keep the table in the order the flows are planned
                key = (c, head, others.tobytes())
                if d2d_recorded is not None and key in d2d_recorded:
                    table.repeat_flows(*d2d_recorded[key], module_id, bits)
                else:
                    start = table.num_flows
                    table.add_d2d_to_head(module_id, bits, c, head, others,
                                          network.relay_paths(c, head))
                    table.add_d2d_broadcast(module_id, bits, c, head, others,
                                            network.broadcast_tree(c, head))
                    if d2d_recorded is not None:
                        d2d_recorded[key] = (start, table.num_flows)
            if tier == Tier.CLOUD:
                hops.add(head, edge, LinkKind.UPLINK, Stage.UPLINK)
                hops.add(edge, cloud, LinkKind.BACKHAUL, Stage.BACKHAUL_UP)
                hops.add(cloud, edge, LinkKind.BACKHAUL, Stage.BACKHAUL_DOWN)
                hops.add(edge, head, LinkKind.DOWNLINK, Stage.DOWNLINK)
        elif via == "wired":  # the star topology: every device to the cloud directly
            hops.add(senders, cloud, LinkKind.DEVICE_CLOUD, Stage.BACKHAUL_UP)
            hops.add(cloud, senders, LinkKind.DEVICE_CLOUD, Stage.BACKHAUL_DOWN)
        else:  # EDGE or CLOUD over direct uplinks
            hops.add(senders, edge, LinkKind.UPLINK, Stage.UPLINK)
            if tier == Tier.CLOUD:
                hops.add(edge, cloud, LinkKind.BACKHAUL, Stage.BACKHAUL_UP)
                hops.add(cloud, edge, LinkKind.BACKHAUL, Stage.BACKHAUL_DOWN)
            hops.add(edge, senders, LinkKind.DOWNLINK, Stage.DOWNLINK)
    hops.flush()


class _SingleHops:
    """Single-hop flows of one module, collected in order and appended to the table in one
    :meth:`~hffm_env.sim.TransferTable.add_single_hops` call: an aggregation's uplinks,
    backhaul and downlinks cluster by cluster would otherwise be a dozen builder calls, the
    larger part of a cost-fidelity step. ``src`` or ``dst`` may be one node for every hop."""

    def __init__(self, table: TransferTable, module_id: str, bits: float) -> None:
        self.table, self.module_id, self.bits = table, module_id, bits
        self.parts: list[tuple[np.ndarray | int, np.ndarray | int, int, int, int]] = []

    def add(self, src: np.ndarray | int, dst: np.ndarray | int, link: LinkKind,
            stage: Stage) -> None:
        count = src.size if isinstance(src, np.ndarray) else (
            dst.size if isinstance(dst, np.ndarray) else 1)
        self.parts.append((src, dst, count, int(link), int(stage)))

    def flush(self) -> None:
        if not self.parts:
            return
        counts = [p[2] for p in self.parts]
        ends = [p[k] if isinstance(p[k], np.ndarray) else np.full(p[2], int(p[k]))
                for k in (0, 1) for p in self.parts]
        self.table.add_single_hops(
            self.module_id, self.bits, np.concatenate(ends[:len(counts)]),
            np.concatenate(ends[len(counts):]), np.repeat([p[3] for p in self.parts], counts),
            np.repeat([p[4] for p in self.parts], counts))
        self.parts = []


def _record_failed_uploads(
    table: TransferTable, network: Network, module_id: str, tier: Tier, failed: np.ndarray,
    layout: RoundLayout, bits: float,
) -> None:
    """The uploads of failed exchanges: paid (at every attempt), never answered."""
    uplink_failed = cast(np.ndarray, network.rates.uplink_failed)  # LinkRates fills it in
    for c in range(network.num_clusters):
        members = network.members(c)
        senders = members[failed[members]]
        if senders.size == 0:
            continue
        via = exchange_via(tier, layout.routes[c])
        if via == "uplink":
            table.add_uplinks(module_id, bits, senders)
            continue
        head = layout.heads[c]
        paths = network.relay_paths(c, head)
        for d in senders[senders != head].tolist():
            # the hops up to the link that failed; all of them when the head's uplink did
            table.add_flow(module_id, bits, network.attempted_path(paths[d]), LinkKind.D2D,
                           Stage.D2D_UP, c)
        if via == "d2d+uplink" and uplink_failed[head]:
            table.add_uplinks(module_id, bits, np.array([head]))


def plan_aggregations(
    table: TransferTable,
    schedule: Schedule,
    network: Network,
    scenario: ScenarioConfig,
    inventory: ModuleInventory,
    module_bits: Mapping[str, float],
    participants: np.ndarray,
) -> TransferPlan:
    """Plan every aggregation ``schedule`` asks for this round and record its transfers in
    ``table``: module type by type (``MODULE_TYPES`` order), each type's modules in inventory
    order, the types the schedule leaves alone (``Tier.NONE``) skipped. A type at
    ``Tier.CLOUD`` while some clusters stay out of the cloud (``Schedule.cloud_clusters``) is
    planned twice: at the cloud by the clusters that join, then at the edge by the others.

    Args:
        table: the round's transfer table (appended to).
        schedule: the round's schedule (already validated against the network).
        network: this round's network (rates, availability, D2D graphs, default heads).
        scenario: the scenario (whether links can be in outage).
        inventory: the modules; ``participants``' columns are in its order.
        module_bits: bits on the wire per module id.
        participants: ``(N, M)`` bool, the devices that can take part in each module's
            aggregation (they hold it and are available).
    """
    layout = RoundLayout.resolve(schedule, network)
    column = {module_id: k for k, module_id in enumerate(inventory.ids())}
    # devices whose cluster joins the cloud aggregations (Schedule.cloud_clusters); the others
    # aggregate the module types at Tier.CLOUD at the edge tier instead
    at_cloud = (np.asarray(schedule.cloud_clusters, dtype=bool)[network.cluster_of_device]
                if schedule.cloud_clusters else np.ones(network.num_devices, dtype=bool))
    moves = []
    # A module whose aggregation involves the same devices at the same tier as an earlier
    # one moves exactly like it (only its size differs): copy its flows rather than plan
    # them again. Planning is a function of these inputs alone (see the module docstring).
    recorded: dict[tuple[Tier, bytes, bytes], tuple[int, int]] = {}
    d2d_recorded: dict[tuple[int, int, bytes], tuple[int, int]] = {}  # and cluster by cluster
    for module_type in MODULE_TYPES:
        tier = schedule.tier(module_type)
        if tier == Tier.NONE:
            continue
        # (tier, which devices) of each aggregation of this type: one, or a cloud and an edge
        # one when some clusters stay out of the cloud
        groups = [(tier, np.ones_like(at_cloud))]
        if tier == Tier.CLOUD and not at_cloud.all():
            groups = [(Tier.CLOUD, at_cloud)] if at_cloud.any() else []
            groups.append((Tier.EDGE, ~at_cloud))
        for group_tier, in_group in groups:
            lost = failed_exchanges(network, scenario, group_tier, layout.routes, layout.heads)
            for spec in inventory.by_type(module_type):
                moves.append(_plan_move(table, network, layout, schedule.pairs, spec.module_id,
                                        group_tier, participants[:, column[spec.module_id]]
                                        & in_group, lost, module_bits[spec.module_id],
                                        recorded, d2d_recorded))
    return TransferPlan(layout, tuple(moves))


def _plan_move(
    table: TransferTable, network: Network, layout: RoundLayout, pairs: Pairs, module_id: str,
    tier: Tier, joined: np.ndarray, lost: np.ndarray, bits: float,
    recorded: dict[tuple[Tier, bytes, bytes], tuple[int, int]],
    d2d_recorded: dict[tuple[int, int, bytes], tuple[int, int]],
) -> ModuleMove:
    """Record one module's aggregation at ``tier`` by the devices ``joined`` (those in
    ``lost`` fail) and return its move; flows already planned for the same tier and devices
    (``recorded``) are copied."""
    part, failed = joined & ~lost, joined & lost
    key = (tier, part.tobytes(), failed.tobytes())
    if key in recorded:
        table.repeat_flows(*recorded[key], module_id, bits)
    else:
        start = table.num_flows
        record_aggregation(table, network, module_id, tier, part, layout, pairs, bits,
                           failed=failed, d2d_recorded=d2d_recorded)
        recorded[key] = (start, table.num_flows)
    valid: list[tuple[int, int]] = []
    broken: list[tuple[int, int]] = []
    if tier == Tier.D2D_PAIRS:
        valid, broken = pair_outcome(network, pairs, part)
    return ModuleMove(module_id, tier, part, failed, tuple(valid), tuple(broken))


def record_relay(
    table: TransferTable, network: Network, request: ModuleRequest, source: RelaySource,
    bits: float,
) -> bool:
    """Append to ``table`` the transfer that serves ``request`` (``bits`` on the wire) from
    ``source``: a D2D flow along the relay path from a device of the requester's cluster, a
    downlink from its edge server, or backhaul then downlink from the cloud. Returns whether
    the module arrives: a D2D relay whose path has a link in outage on every attempt is paid up
    to that link and delivers nothing."""
    d, module_id = request.device, request.module_id
    c = int(network.cluster_of_device[d])
    if source.kind == SourceKind.DEVICE:
        path = network.relay_paths(c, d)[source.device]  # [source, ..., d]
        table.add_flow(module_id, bits, network.attempted_path(path), LinkKind.D2D,
                       Stage.D2D_DOWN, c)
        # not len(attempted) == len(path): a path cut at its last link is attempted whole
        return network.first_failed_hop(path) is None
    if source.kind == SourceKind.EDGE:
        table.add_downlinks(module_id, bits, [d])
    else:
        table.add_backhaul_down(module_id, bits, [c])
        table.add_downlinks(module_id, bits, [d])
    return True


def price_schedule(
    schedule: Schedule,
    network: Network,
    scenario: ScenarioConfig,
    inventory: ModuleInventory,
    module_bits: Mapping[str, float],
    holds: np.ndarray,
    *,
    with_compute: bool = True,
) -> CostReport:
    """The cost of ``schedule`` under ``network``'s current conditions, with every available
    holder taking part (``holds``: ``(N, M)`` bool, columns in ``inventory`` order) and, with
    ``with_compute``, every available device computing; relay requests are not priced. Changes
    nothing but a fresh table of its own."""
    available = np.asarray(network.available, dtype=bool)
    table = network.new_table()
    plan_aggregations(table, schedule, network, scenario, inventory, module_bits,
                      holds & available[:, None])
    samples = compute_samples(scenario, available) if with_compute else None
    return network.account(table, compute_samples=samples)
