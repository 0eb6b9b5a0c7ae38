"""D2D graphs and repair, relay paths, broadcast trees, partners and pairing repair."""

import networkx as nx
import numpy as np
import pytest
from sim_helpers import CHAIN_D2D_BPS, chain_topology, make_rates, make_topology

from hffm_env.sim.routing import (
    broadcast_tree,
    build_d2d_graphs,
    is_feasible_pair,
    k_nearest_partners,
    relay_paths,
    repair_pairing,
)


def _chain_graph():
    topo = chain_topology()
    rates = make_rates(topo, np.ones(4), np.ones(4), CHAIN_D2D_BPS)
    return topo, rates, build_d2d_graphs(topo, rates, 30.0)[0]


def test_disconnected_cluster_is_repaired_with_mst_edges():
    _, _, g = _chain_graph()
    assert nx.is_connected(g)
    assert sorted(g.edges()) == [(0, 1), (1, 2), (2, 3)]
    assert g.graph["connected_before_repair"] is False
    assert g.graph["num_repair_edges"] == 1
    assert g.edges[2, 3]["repair"] is True and g.edges[0, 1]["repair"] is False
    assert g.edges[2, 3]["rate_bps"] == 5.0
    assert g.edges[2, 3]["weight_s_per_bit"] == pytest.approx(0.2)
    assert g.edges[2, 3]["distance_m"] == pytest.approx(160.0)


def test_repair_adds_every_mst_edge_of_the_complete_graph():
    # 0-1 are neighbours but slow; the latency MST is 0-2, 1-2, 2-3: 0-2 and 2-3 get added
    # (1-2 is already a neighbour edge), and the neighbour edge 0-1 stays.
    topo = chain_topology()
    rates = make_rates(topo, np.ones(4), np.ones(4),
                       {(0, 1): 1, (0, 2): 10, (1, 2): 10, (2, 3): 5, (0, 3): 0.1, (1, 3): 0.1})
    g = build_d2d_graphs(topo, rates, 30.0)[0]
    assert sorted(g.edges()) == [(0, 1), (0, 2), (1, 2), (2, 3)]
    assert g.graph["num_repair_edges"] == 2


def test_connected_cluster_is_left_alone_and_singletons_are_fine():
    topo = make_topology([[0, 0], [10, 0], [20, 0], [900, 900]], [0, 0, 0, 1],
                         [[0, 0], [900, 900]])
    rates = make_rates(topo, np.ones(4), np.ones(4), {(0, 1): 3, (0, 2): 9, (1, 2): 3})
    g0, g1 = build_d2d_graphs(topo, rates, 15.0)
    assert sorted(g0.edges()) == [(0, 1), (1, 2)]  # 0-2 is 20 m: not a neighbour, no repair
    assert g0.graph["connected_before_repair"] and g0.graph["num_repair_edges"] == 0
    assert list(g1.nodes()) == [3] and g1.number_of_edges() == 0
    assert relay_paths(g1, 3) == {3: [3]} and broadcast_tree(g1, 3) == []


def test_unavailable_devices_are_left_out_and_graph_stays_connected():
    topo = chain_topology()
    rates = make_rates(topo, np.ones(4), np.ones(4), CHAIN_D2D_BPS)
    g = build_d2d_graphs(topo, rates, 30.0, available=np.array([True, False, True, True]))[0]
    assert sorted(g.nodes()) == [0, 2, 3]
    # Without device 1: MST over {0, 2, 3} is 0-2 (0.25) and 2-3 (0.2).
    assert sorted(g.edges()) == [(0, 2), (2, 3)]
    assert nx.is_connected(g)


def test_relay_paths_and_broadcast_tree():
    _, _, g = _chain_graph()
    paths = relay_paths(g, 0)
    assert paths == {0: [0], 1: [1, 0], 2: [2, 1, 0], 3: [3, 2, 1, 0]}
    assert broadcast_tree(g, 0) == [(0, 1), (1, 2), (2, 3)]
    # Rooted in the middle: two branches; parents always come before children.
    assert relay_paths(g, 1) == {0: [0, 1], 1: [1], 2: [2, 1], 3: [3, 2, 1]}
    assert broadcast_tree(g, 1) == [(1, 0), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="not a node"):
        relay_paths(g, 7)


def test_shortest_latency_path_prefers_fast_two_hops_over_slow_direct_link():
    topo = make_topology([[0, 0], [10, 0], [20, 0]], [0, 0, 0], [[0, 0]])
    # Direct 0-2 at 1 bit/s (1 s/bit) vs 0-1-2 at 4 bit/s each (0.5 s/bit).
    rates = make_rates(topo, np.ones(3), np.ones(3), {(0, 1): 4, (0, 2): 1, (1, 2): 4})
    g = build_d2d_graphs(topo, rates, 100.0)[0]
    assert g.number_of_edges() == 3
    assert relay_paths(g, 2)[0] == [0, 1, 2]
    assert broadcast_tree(g, 2) == [(2, 1), (1, 0)]


def test_k_nearest_partners():
    topo = make_topology([[0, 0], [1, 0], [3, 0], [10, 0], [500, 500]], [0, 0, 0, 0, 1],
                         [[0, 0], [500, 500]])
    np.testing.assert_array_equal(
        k_nearest_partners(topo, 2), [[1, 2], [0, 2], [1, 0], [2, 1], [-1, -1]]
    )
    np.testing.assert_array_equal(k_nearest_partners(topo, 5)[0], [1, 2, 3, -1, -1])


def test_repair_pairing_rules():
    allowed = {(0, 1), (2, 3), (1, 2), (0, 2)}

    def feasible(i, j):
        return (min(i, j), max(i, j)) in allowed

    # Mutual proposals: kept, no repairs; -1 is no proposal.
    assert repair_pairing(np.array([1, 0, 3, 2, -1]), feasible) == ([(0, 1), (2, 3)], 0)
    # First come: 0 takes 1; 1's and 2's proposals to others/taken devices are repairs.
    assert repair_pairing(np.array([1, 2, 1, -1]), feasible) == ([(0, 1)], 2)
    # Infeasible (no edge), self-pairing and out-of-range proposals are repairs.
    assert repair_pairing(np.array([3, 1, 9, -1]), feasible) == ([], 3)
    # A later device can still take an unmatched partner.
    assert repair_pairing(np.array([-1, -1, 0, 0]), feasible) == ([(0, 2)], 1)


def test_is_feasible_pair_checks_cluster_availability_and_edges():
    topo = make_topology([[0, 0], [20, 0], [40, 0], [200, 0], [900, 900]],
                         [0, 0, 0, 0, 1], [[0, 0], [900, 900]])
    d2d = dict(CHAIN_D2D_BPS)
    rates = make_rates(topo, np.ones(5), np.ones(5), d2d)
    graphs = build_d2d_graphs(topo, rates, 30.0)
    assert is_feasible_pair(0, 1, topo, graphs)
    assert is_feasible_pair(3, 2, topo, graphs)  # a repair edge is a usable D2D link
    assert not is_feasible_pair(0, 2, topo, graphs)  # same cluster, no edge
    assert not is_feasible_pair(0, 4, topo, graphs)  # other cluster
    assert not is_feasible_pair(1, 1, topo, graphs)
    assert not is_feasible_pair(0, 1, topo, graphs, np.array([True, False, True, True, True]))
    pairs, repairs = repair_pairing(
        np.array([1, 0, 0, 2, 0]), lambda i, j: is_feasible_pair(i, j, topo, graphs)
    )
    assert pairs == [(0, 1), (2, 3)] and repairs == 2
