"""The network world as one object: the facade the federated engine and the env use."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import networkx as nx
import numpy as np

from hffm_env.config import ScenarioConfig, require_config
from hffm_env.seeding import RandomStreams
from hffm_env.sim.channel import LinkRates, draw_link_rates, make_channel
from hffm_env.sim.cost import CostAccountant, CostReport
from hffm_env.sim.dynamics import RandomWaypoint, draw_available
from hffm_env.sim.routing import (
    broadcast_tree,
    build_d2d_graphs,
    is_feasible_pair,
    relay_paths,
    repair_pairing,
)
from hffm_env.sim.topology import Topology, place_network
from hffm_env.sim.transfers import TransferTable, cloud_node_id, edge_node_id
from hffm_env.values import is_integer, shown

__all__ = ["ClusterSummary", "Network", "default_heads"]


@dataclass(frozen=True)
class ClusterSummary:
    """Per cluster, this round: mean uplink rate of its members (bit/s), mean rate of its D2D
    links (bit/s; 0 without links), D2D graph edges over possible pairs (1 for a cluster of
    one) and the fraction of its members available."""

    uplink_bps: np.ndarray
    d2d_bps: np.ndarray
    d2d_density: np.ndarray
    available: np.ndarray


def default_heads(topology: Topology, rates: LinkRates, available: np.ndarray) -> np.ndarray:
    """``(S,)`` default cluster head of each cluster: the available member with the best uplink
    rate (ties to the lower id); -1 for a cluster with no available device."""
    n = topology.num_devices
    score = np.where(available, rates.uplink_bps, -np.inf)
    ids = np.arange(n)
    order = np.lexsort((ids, -score, topology.cluster_of_device))
    cluster_sorted = topology.cluster_of_device[order]
    first = np.searchsorted(cluster_sorted, np.arange(topology.num_clusters))
    heads = np.full(topology.num_clusters, -1, dtype=np.int64)
    clusters = np.arange(topology.num_clusters)
    has = (first < n) & (cluster_sorted[np.minimum(first, n - 1)] == clusters)
    best = order[first[has]]
    heads[has] = np.where(available[best], best, -1)
    return heads


class Network:
    """Devices, edge servers and cloud of one scenario instance, and their per-round state.

    Construction places the network (:func:`place_network`), draws each device's CPU frequency
    uniformly in ``[cpu_freq_hz_min, cpu_freq_hz_max]``, builds the :class:`Channel` that
    ``channel.model`` names and the
    :class:`CostAccountant`, creates the mobility model when ``dynamics.mobility``, and draws a
    first round's state (rates, availability, D2D graphs, heads) so that the network
    can be described or used at once. Call :meth:`begin_round` at the start of every round.

    Randomness comes from named :class:`~hffm_env.seeding.RandomStreams`: construction draws
    from ``placement`` (positions, CPU frequencies, mobility speeds and first waypoints) and,
    for the first round, from ``fading``, ``outage`` and ``dynamics``; every round draws
    waypoints from ``mobility``, fading from ``fading``, outage retransmissions from
    ``outage`` and dropout from ``dynamics``, so one consumer's draws never shift another's.

    Attributes:
        scenario: the scenario.
        topology: current positions and clusters (replaced when devices move).
        cpu_freq_hz: ``(N,)`` CPU frequency per device (fixed for the instance).
        channel: the channel physics.
        rates: this round's :class:`LinkRates`.
        available: ``(N,)`` bool, devices that did not drop out this round.
        d2d_graphs: this round's connected D2D graph per cluster, over available devices.
        d2d_neighbours: ``(N,)`` list, each device's D2D neighbours in this round's graphs.
        heads: ``(S,)`` default cluster heads (best uplink among available members; -1 if none).
        accountant: the :class:`CostAccountant`.
        mobility: the :class:`RandomWaypoint` model, or None.
    """

    def __init__(self, scenario: ScenarioConfig, streams: RandomStreams) -> None:
        self.scenario = require_config(scenario, "scenario")
        if not isinstance(streams, RandomStreams):
            raise TypeError(f"streams = {shown(streams)}: must be a RandomStreams "
                            "(RandomStreams.from_seed(seed))")
        rng = streams.placement
        self.topology = place_network(scenario.placement, rng)
        compute = scenario.compute
        self.cpu_freq_hz = rng.uniform(
            compute.cpu_freq_hz_min, compute.cpu_freq_hz_max, size=self.topology.num_devices
        )
        self.channel = make_channel(scenario.channel)  # the model the config names
        self.accountant = CostAccountant(scenario, self.topology, self.cpu_freq_hz)
        self.mobility = (
            RandomWaypoint(self.topology, scenario.dynamics, rng)
            if scenario.dynamics.mobility else None
        )
        self._redraw(streams)

    # ---------------------------------------------------------------------------- rounds

    def begin_round(self, streams: RandomStreams) -> None:
        """Advance to a new round, in this order: move devices (if mobility is on; clusters
        keep their members, but positions, hence rates and D2D neighbours, change), redraw
        fading and all link rates, draw availability (dropout), rebuild the D2D graphs over
        available devices, recompute default heads. Draws from ``streams.mobility``,
        ``streams.fading``, ``streams.outage`` and ``streams.dynamics`` only, each its own
        consumer's: how many waypoints or retransmissions one round draws shifts no fading or
        dropout of a later round."""
        if not isinstance(streams, RandomStreams):
            raise TypeError(f"streams = {shown(streams)}: must be a RandomStreams "
                            "(RandomStreams.from_seed(seed))")
        if self.mobility is not None:
            self.topology = self.topology.with_device_xy(self.mobility.step(streams.mobility))
        self._redraw(streams)

    def _redraw(self, streams: RandomStreams) -> None:
        self.rates = draw_link_rates(self.channel, self.topology, streams.fading, streams.outage)
        self.available = draw_available(
            streams.dynamics, self.topology.num_devices, self.scenario.dynamics.dropout_prob
        )
        self._build_round_graphs()

    def _build_round_graphs(self) -> None:
        """This round's D2D graphs, neighbours and default heads from its rates and
        availability (no draws)."""
        self.d2d_graphs: list[nx.Graph] = build_d2d_graphs(
            self.topology, self.rates, self.scenario.channel.d2d_radius_m, self.available
        )
        self.heads = default_heads(self.topology, self.rates, self.available)
        # relay paths and broadcast trees of this round's graphs, by (cluster, head): every
        # module aggregated over D2D asks for the same ones
        self._paths: dict[tuple[int, int], dict[int, list[int]]] = {}
        self._trees: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.d2d_neighbours: list[frozenset[int]] = [frozenset()] * self.topology.num_devices
        # (the graphs are read through graph[u] and graph.adj, never .nodes/.edges/.degree:
        # those views are cached on the graph and point back at it, a reference cycle that
        # keeps every round's graphs, hundreds of MB with large clusters, until a full
        # garbage collection)
        for graph in self.d2d_graphs:
            for device in graph:
                self.d2d_neighbours[device] = frozenset(graph.neighbors(device))

    def with_everyone_available(self) -> Network:
        """This round's network (same positions and link rates) with no device dropped out:
        what a round costs with every device taking part. ``self`` when none dropped out;
        else a copy (``self`` is unchanged)."""
        if self.available.all():
            return self
        view = copy.copy(self)
        view.available = np.ones_like(self.available)
        view._build_round_graphs()
        return view

    # ---------------------------------------------------------------------------- views

    @property
    def num_devices(self) -> int:
        """Number of devices ``N``."""
        return self.topology.num_devices

    @property
    def num_clusters(self) -> int:
        """Number of clusters = edge servers ``S``."""
        return self.topology.num_clusters

    @property
    def cluster_of_device(self) -> np.ndarray:
        """``(N,)`` cluster of each device."""
        return self.topology.cluster_of_device

    def _cluster(self, cluster: Any) -> int:
        """``cluster`` as an index, or ``ValueError`` (-1 read the last cluster, the
        cluster count the cloud's node)."""
        if not is_integer(cluster) or not 0 <= cluster < self.num_clusters:
            raise ValueError(f"cluster = {cluster!r}: not a cluster of this network "
                             f"(0..{self.num_clusters - 1})")
        return int(cluster)

    def _device(self, device: Any, what: str = "device") -> int:
        """``device`` as an id, or ``ValueError`` naming ``what``."""
        if not is_integer(device) or not 0 <= device < self.num_devices:
            raise ValueError(f"{what} = {device!r}: not a device of this network "
                             f"(0..{self.num_devices - 1})")
        return int(device)

    def members(self, cluster: int) -> np.ndarray:
        """Device ids of ``cluster`` (sorted), available or not."""
        return self.topology.members(self._cluster(cluster))

    def available_members(self, cluster: int) -> np.ndarray:
        """Available device ids of ``cluster`` (sorted)."""
        members = self.topology.members(self._cluster(cluster))
        return members[self.available[members]]

    def cluster_summary(self) -> ClusterSummary:
        """This round's per-cluster link and availability summary (what the env observes)."""
        c = self.num_clusters
        summary = ClusterSummary(np.zeros(c), np.zeros(c), np.zeros(c), np.zeros(c))
        for cl in range(c):
            members = self.members(cl)
            graph = self.d2d_graphs[cl]
            rates = [data["rate_bps"] for u, mates in graph.adj.items()
                     for v, data in mates.items() if u < v]  # each edge once
            pairs = len(members) * (len(members) - 1) / 2
            summary.uplink_bps[cl] = float(np.mean(self.rates.uplink_bps[members]))
            summary.d2d_bps[cl] = float(np.mean(rates)) if rates else 0.0
            summary.d2d_density[cl] = len(rates) / pairs if pairs else 1.0  # rates: one per edge
            summary.available[cl] = float(np.mean(self.available[members]))
        return summary

    def edge_node(self, cluster: int) -> int:
        """Node id of the edge server of ``cluster`` in transfer tables (the table's rule)."""
        return int(edge_node_id(self.num_devices, self._cluster(cluster)))

    def cloud_node(self) -> int:
        """Node id of the cloud in transfer tables (the table's rule)."""
        return cloud_node_id(self.num_devices, self.num_clusters)

    def _head(self, cluster: int, head: int | None) -> int:
        cluster = self._cluster(cluster)
        head = int(self.heads[cluster]) if head is None else self._device(head, "head")
        if head < 0:
            raise ValueError(f"cluster {cluster} has no available device to act as head")
        return head

    def relay_paths(self, cluster: int, head: int | None = None) -> dict[int, list[int]]:
        """Shortest-latency D2D paths ``[device, ..., head]`` of the cluster's available devices
        (``head`` defaults to the default head). Computed once per round and head; the
        caller gets its own dict and lists. Latency here is one attempt per hop at this
        round's rates: with outage on, the attempts a hop will need are drawn for the round
        but are not known to a sender before it transmits, so routes (and the default heads)
        do not read them; a path may meet a hop that fails (:meth:`first_failed_hop`)."""
        key = (int(cluster), self._head(cluster, head))
        paths = self._paths.get(key)
        if paths is None:
            paths = self._paths[key] = relay_paths(self.d2d_graphs[cluster], key[1])
        return {device: list(path) for device, path in paths.items()}

    def first_failed_hop(self, path: Sequence[int]) -> int | None:
        """Index ``k`` of the first link ``path[k] -> path[k + 1]`` of D2D ``path``
        (``[sender, ..., receiver]``) in outage on every attempt this round; ``None`` when the
        whole path delivers."""
        hops = np.asarray(path, dtype=np.int64)
        failed = np.flatnonzero(self.rates.d2d_link_failed(hops[:-1], hops[1:]))
        return None if failed.size == 0 else int(failed[0])

    def attempted_path(self, path: Sequence[int]) -> list[int]:
        """The part of D2D ``path`` (``[sender, ..., receiver]``) that carries data this round:
        up to and including its first link in outage on every attempt (the hops after it never
        receive anything to forward); the whole path when no link fails. A path cut at its
        last link is attempted whole and still delivers nothing (:meth:`first_failed_hop`)."""
        failed = self.first_failed_hop(path)
        return list(path) if failed is None else list(path[:failed + 2])

    def broadcast_tree(self, cluster: int, head: int | None = None) -> list[tuple[int, int]]:
        """Edges ``(parent, child)`` of the cluster's shortest-latency tree rooted at ``head``
        (computed once per round and head; the caller gets its own list)."""
        key = (int(cluster), self._head(cluster, head))
        tree = self._trees.get(key)
        if tree is None:
            tree = self._trees[key] = broadcast_tree(self.d2d_graphs[cluster], key[1])
        return list(tree)

    def is_feasible_pair(self, i: int, j: int) -> bool:
        """Whether ``i`` and ``j`` can pair for D2D this round (see :func:`is_feasible_pair`)."""
        return is_feasible_pair(self._device(i, "i"), self._device(j, "j"), self.topology,
                                self.d2d_graphs, self.available)

    def repair_pairing(self, proposed: np.ndarray) -> tuple[list[tuple[int, int]], int]:
        """Valid disjoint pairs from per-device proposals, one per device (see
        :func:`repair_pairing`)."""
        if np.shape(proposed) != (self.num_devices,):  # (a shorter one dropped the rest)
            raise ValueError(f"proposed: shape {np.shape(proposed)}, expected "
                             f"({self.num_devices},): one proposal per device (-1: none)")
        return repair_pairing(proposed, self.is_feasible_pair)

    def exchange_failed(self, cluster: int, via: str, head: int | None = None) -> np.ndarray:
        """``(N,)`` bool: the members of ``cluster`` whose exchange ``via`` fails this round
        because every transmission attempt of some wireless hop was in outage
        (``channel.outage_snr_db``); all False without outage.

        ``via`` is ``"uplink"`` (device -> edge server), ``"d2d"`` (the device's relay path to
        ``head``; the head itself never fails), ``"d2d+uplink"`` (that path, then the head's
        uplink: when the head's uplink fails, every member's exchange does) or ``"wired"``
        (device -> cloud over the wired link: never fails).
        """
        failed = np.zeros(self.num_devices, dtype=bool)
        members = self.available_members(cluster)
        if via == "wired" or members.size == 0:
            return failed
        uplink_failed = cast(np.ndarray, self.rates.uplink_failed)  # LinkRates fills it in
        if via == "uplink":
            failed[members] = uplink_failed[members]
            return failed
        if via not in ("d2d", "d2d+uplink"):
            raise ValueError(f"via = {via!r}: must be 'uplink', 'd2d', 'd2d+uplink' or 'wired'")
        head = self._head(cluster, head)
        for device, path in self.relay_paths(cluster, head).items():
            if len(path) > 1:
                failed[device] = self.first_failed_hop(path) is not None
        if via == "d2d+uplink" and uplink_failed[head]:
            failed[members] = True
        return failed

    def new_table(self) -> TransferTable:
        """An empty :class:`TransferTable` for this network."""
        return TransferTable.for_topology(self.topology)

    def account(
        self, table: TransferTable, compute_samples: np.ndarray | None = None
    ) -> CostReport:
        """Cost of ``table`` (and of ``compute_samples`` local samples per device) this round.
        Its hops are priced as given: a D2D hop between devices out of range or dropped out is
        priced at their rate like any other (:meth:`is_feasible_pair` says which pairs are
        links this round; the env's actions are repaired to those before they are priced)."""
        return self.accountant.account(table, self.rates, compute_samples)
