"""D2D graphs, relay routes to a cluster head, broadcast trees and D2D pairings.

D2D graph of a cluster (:func:`build_d2d_graphs`), as in the M3T-FFM prototype:

1. Nodes are the cluster's (available) devices, by global id. Two devices are neighbours when
   they are at most ``d2d_radius_m`` apart.
2. If that leaves the cluster disconnected, the minimum spanning tree of the *complete*
   intra-cluster graph weighted by per-bit link latency ``1 / rate_bps`` is computed, and each
   MST edge that is not already a neighbour edge is added (edge attribute ``repair=True``).
   Connected clusters are left alone. The result is always connected.

Every edge carries ``rate_bps``, ``weight_s_per_bit = 1 / rate_bps`` (shortest-latency paths
are the same for any payload size, so routes are computed once per round), ``distance_m`` and
``repair``. Each graph's ``graph`` dict holds ``cluster``, ``connected_before_repair`` and
``num_repair_edges``.

Routes: devices send to the head along shortest-latency paths (:func:`relay_paths`); the head's
result goes back down the shortest-path tree rooted at the head (:func:`broadcast_tree`). Both
run the same deterministic Dijkstra from the head, so each relay path is the reverse of the
tree path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import networkx as nx
import numpy as np

from hffm_env.sim.channel import LinkRates
from hffm_env.sim.topology import Topology
from hffm_env.values import is_integer

__all__ = [
    "broadcast_tree",
    "build_d2d_graphs",
    "is_feasible_pair",
    "k_nearest_partners",
    "relay_paths",
    "repair_pairing",
]

_WEIGHT = "weight_s_per_bit"


def _components(num_devices: int, edge_i: np.ndarray, edge_j: np.ndarray) -> np.ndarray:
    """Connected-component label (smallest member id) of every device, by min-label propagation:
    vectorised over all clusters at once; iterations are bounded by the largest diameter."""
    labels = np.arange(num_devices)
    while True:
        new = labels.copy()
        np.minimum.at(new, edge_i, labels[edge_j])
        np.minimum.at(new, edge_j, labels[edge_i])
        new = new[new]  # pointer jumping: halves the remaining iterations
        if np.array_equal(new, labels):
            return labels
        labels = new


def _batched_mst(latency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prim's algorithm on a batch of complete graphs ``latency (m, s, s)`` at once.

    Returns local endpoints ``(parent, child)`` of shape ``(m, s - 1)``; ties go to the lower
    local index (deterministic)."""
    m, s, _ = latency.shape
    rows = np.arange(m)
    in_tree = np.zeros((m, s), dtype=bool)
    in_tree[:, 0] = True
    best = latency[:, 0, :].copy()
    parent = np.zeros((m, s), dtype=np.int64)
    parents = np.empty((m, s - 1), dtype=np.int64)
    children = np.empty((m, s - 1), dtype=np.int64)
    for step in range(s - 1):
        v = np.argmin(np.where(in_tree, np.inf, best), axis=1)
        parents[:, step] = parent[rows, v]
        children[:, step] = v
        in_tree[rows, v] = True
        row = latency[rows, v, :]
        better = row < best
        best = np.where(better, row, best)
        parent = np.where(better, v[:, None], parent)
    return parents, children


def build_d2d_graphs(
    topology: Topology,
    rates: LinkRates,
    d2d_radius_m: float,
    available: np.ndarray | None = None,
) -> list[nx.Graph]:
    """One connected D2D graph per cluster (see the module docstring).

    Args:
        topology: the network.
        rates: this round's link rates (D2D rates give edge latencies).
        d2d_radius_m: neighbour radius.
        available: ``(N,)`` bool; devices that are not available this round are left out of
            the graphs (they can neither relay nor be repaired around). ``None``: all devices.
    """
    n = topology.num_devices
    avail = np.ones(n, dtype=bool) if available is None else np.asarray(available, dtype=bool)
    cluster = topology.cluster_of_device
    both = avail[rates.pair_i] & avail[rates.pair_j]
    near = both & (rates.d2d_distance_m <= d2d_radius_m)
    labels = _components(n, rates.pair_i[near], rates.pair_j[near])

    # Number of components per cluster among available devices.
    comp_keys = np.unique(cluster[avail] * n + labels[avail])
    num_components = np.bincount(comp_keys // n, minlength=topology.num_clusters)
    disconnected = np.flatnonzero(num_components > 1)

    edge_idx = [np.flatnonzero(near)]
    repair_idx = [np.empty(0, dtype=np.int64)]
    by_size: dict[int, list[np.ndarray]] = {}
    for cluster_id in disconnected:
        members = topology.members(int(cluster_id))
        members = members[avail[members]]
        by_size.setdefault(int(members.size), []).append(members)
    for size, group in by_size.items():
        stacked = np.stack(group)  # (m, size)
        a, b = np.triu_indices(size, k=1)
        index = rates.pair_index(stacked[:, a], stacked[:, b])
        latency = np.zeros((stacked.shape[0], size, size))
        # Finite even for a zero rate, so that Prim never prefers a node already in the tree.
        latency[:, a, b] = np.minimum(1.0 / np.maximum(rates.d2d_bps[index], 1e-300), 1e300)
        latency[:, b, a] = latency[:, a, b]
        parents, children = _batched_mst(latency)
        rows = np.arange(stacked.shape[0])[:, None]
        mst_index = rates.pair_index(stacked[rows, parents], stacked[rows, children]).reshape(-1)
        repair_idx.append(mst_index[~near[mst_index]])

    edges = np.concatenate(edge_idx)
    repairs = np.concatenate(repair_idx)
    all_idx = np.concatenate([edges, repairs])
    is_repair = np.concatenate([np.zeros(edges.size, bool), np.ones(repairs.size, bool)])
    edge_cluster = cluster[rates.pair_i[all_idx]]
    order = np.argsort(edge_cluster * (rates.pair_i.size + 1) + all_idx, kind="stable")
    all_idx, is_repair = all_idx[order], is_repair[order]
    bounds = np.searchsorted(edge_cluster[order], np.arange(topology.num_clusters + 1))

    ei = rates.pair_i[all_idx].tolist()
    ej = rates.pair_j[all_idx].tolist()
    rate = rates.d2d_bps[all_idx].tolist()
    with np.errstate(divide="ignore"):
        weight = (1.0 / rates.d2d_bps[all_idx]).tolist()
    dist = rates.d2d_distance_m[all_idx].tolist()
    rep = is_repair.tolist()
    bounds = bounds.tolist()
    repairs_per_cluster = np.bincount(
        edge_cluster[order][is_repair], minlength=topology.num_clusters
    ).tolist()
    # Available devices grouped by cluster (sorted ids), split once instead of per cluster.
    node_ids = np.flatnonzero(avail)
    node_order = np.argsort(cluster[node_ids], kind="stable")
    node_ids = node_ids[node_order]
    node_bounds = np.searchsorted(
        cluster[node_ids], np.arange(topology.num_clusters + 1)
    ).tolist()
    node_list = node_ids.tolist()
    connected = (num_components <= 1).tolist()
    graphs: list[nx.Graph] = []
    for c in range(topology.num_clusters):
        lo, hi = bounds[c], bounds[c + 1]
        graph = nx.Graph(
            cluster=c,
            connected_before_repair=connected[c],
            num_repair_edges=repairs_per_cluster[c],
        )
        graph.add_nodes_from(node_list[node_bounds[c] : node_bounds[c + 1]])
        graph.add_edges_from(
            (
                ei[k],
                ej[k],
                {"rate_bps": rate[k], _WEIGHT: weight[k], "distance_m": dist[k],
                 "repair": rep[k]},
            )
            for k in range(lo, hi)
        )
        graphs.append(graph)
    return graphs


def _dijkstra(graph: nx.Graph, head: int) -> tuple[dict[int, float], dict[int, list[int]]]:
    if head not in graph:
        raise ValueError(f"head {head} is not a node of the D2D graph of cluster "
                         f"{graph.graph.get('cluster')}")
    return nx.single_source_dijkstra(graph, head, weight=_WEIGHT)


def relay_paths(graph: nx.Graph, head: int) -> dict[int, list[int]]:
    """Shortest-latency path ``[device, ..., head]`` from every reachable device to ``head``
    (``[head]`` for the head itself), keyed by device id in ascending order."""
    _, paths = _dijkstra(graph, head)
    return {v: paths[v][::-1] for v in sorted(paths)}


def broadcast_tree(graph: nx.Graph, head: int) -> list[tuple[int, int]]:
    """Edges ``(parent, child)`` of the shortest-latency tree rooted at ``head``, ordered by the
    child's distance from the head (so a parent's edge always comes before its children's)."""
    dist, paths = _dijkstra(graph, head)
    children = sorted((v for v in paths if v != head), key=lambda v: (dist[v], v))
    return [(paths[v][-2], v) for v in children]


def k_nearest_partners(topology: Topology, k: int) -> np.ndarray:
    """``(N, k)`` candidate D2D partners: the ``k`` nearest other devices of the same cluster by
    distance (ties to the lower id), padded with -1 when the cluster is smaller than ``k + 1``.
    ``k``: an integer >= 1 (``env.d2d_partner_k``), else ``ValueError``."""
    if not is_integer(k) or k < 1:  # (0 failed in numpy's reshape, -1 with negative dims)
        raise ValueError(f"k = {k!r}: must be an integer >= 1 (partners per device)")
    out = np.full((topology.num_devices, k), -1, dtype=np.int64)
    by_size: dict[int, list[np.ndarray]] = {}
    for c in range(topology.num_clusters):
        members = topology.members(c)
        if members.size > 1:
            by_size.setdefault(int(members.size), []).append(members)
    xy = topology.device_xy_m
    for size, group in by_size.items():
        stacked = np.stack(group)  # (m, size), sorted ids
        pos = xy[stacked]  # (m, size, 2)
        d2 = ((pos[:, :, None, :] - pos[:, None, :, :]) ** 2).sum(axis=-1)
        d2[:, np.arange(size), np.arange(size)] = np.inf
        take = min(k, size - 1)
        nearest = np.argsort(d2, axis=-1, kind="stable")[:, :, :take]
        rows = np.arange(stacked.shape[0])[:, None, None]
        out[stacked.reshape(-1), :take] = stacked[rows, nearest].reshape(-1, take)
    return out


def is_feasible_pair(
    i: int,
    j: int,
    topology: Topology,
    graphs: Sequence[nx.Graph],
    available: np.ndarray | None = None,
) -> bool:
    """Whether devices ``i`` and ``j`` can do a D2D exchange this round: distinct, valid ids,
    same cluster, both available, and an edge of that cluster's D2D graph."""
    n = topology.num_devices
    if not (0 <= i < n and 0 <= j < n) or i == j:
        return False
    c = int(topology.cluster_of_device[i])
    if c != int(topology.cluster_of_device[j]):
        return False
    if available is not None and not (available[i] and available[j]):
        return False
    return bool(graphs[c].has_edge(i, j))


def repair_pairing(
    proposed: np.ndarray, feasible: Callable[[int, int], bool]
) -> tuple[list[tuple[int, int]], int]:
    """Turn per-device partner proposals into a valid set of disjoint pairs.

    Deterministic, first come first served: devices are processed in ascending id; device ``i``
    proposing ``j`` (``-1``: no proposal, neither a pair nor a repair) is matched when both are
    still unmatched and ``feasible(i, j)`` (e.g. :func:`is_feasible_pair`: distinct, same
    cluster, both available, a D2D graph edge). A device already matched by an earlier proposer
    that proposes that same proposer is the mutual case and is fine. Every other proposal is
    dropped and counted as one repair.

    Returns:
        ``(pairs, num_repairs)``: pairs as ``(min id, max id)`` in the order they were formed.
    """
    raw = np.asarray(proposed)
    if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
        # (floats were truncated to ids, a 2-d array flattened)
        raise ValueError(f"proposed: must be a 1-d array of integer device ids (-1: none), "
                         f"one per device; got {raw.dtype} {raw.shape}")
    proposed = raw.astype(np.int64)
    n = proposed.size
    partner = np.full(n, -1, dtype=np.int64)
    pairs: list[tuple[int, int]] = []
    repairs = 0
    for i, j in enumerate(proposed.tolist()):
        if j < 0:
            continue
        if partner[i] >= 0:
            repairs += int(partner[i] != j)
            continue
        if j < n and j != i and partner[j] < 0 and feasible(i, j):
            partner[i], partner[j] = j, i
            pairs.append((min(i, j), max(i, j)))
        else:
            repairs += 1
    return pairs, repairs
