"""Transfer table builders and the cost accountant's rules, against hand-computed costs."""

import json

import numpy as np
import pytest
from sim_helpers import CHAIN_D2D_BPS, chain_topology, cost_scenario, make_rates, make_topology

from hffm_env.config import paper
from hffm_env.seeding import RandomStreams
from hffm_env.sim.cost import CostAccountant, LinkKind, Stage, TransferTable
from hffm_env.sim.routing import broadcast_tree, build_d2d_graphs, relay_paths


def two_clusters():
    """Devices 0, 1 in cluster 0 and 2, 3 in cluster 1; uplink 10, 5, 10, 10 bit/s and
    downlink 10, 10, 5, 10 bit/s."""
    topo = make_topology([[0, 0], [5, 0], [500, 0], [505, 0]], [0, 0, 1, 1],
                         [[0, 0], [500, 0]])
    rates = make_rates(topo, [10, 5, 10, 10], [10, 10, 5, 10], {(0, 1): 20, (2, 3): 4})
    return topo, rates


def accountant(topo, **kwargs):
    return CostAccountant(cost_scenario(**kwargs), topo, np.full(topo.num_devices, 1e9))


def test_paper_star_device_to_cloud_transfer():
    scenario = paper()
    topo, rates = two_clusters()
    table = TransferTable.for_topology(topo)
    table.add_device_cloud("model/all", 48_000e3, [0])
    report = CostAccountant(scenario, topo, np.ones(4) * 1e9).account(table, rates)
    assert report.latency_s == pytest.approx(0.1 + 48e6 / 4e6) == pytest.approx(12.1)
    assert report.energy_j == pytest.approx(0.8 * 12.1)
    assert report.energy_by_tier_j["cloud"] == pytest.approx(0.8 * 12.1)
    assert report.energy_by_device_j[0] == pytest.approx(9.68)
    assert report.latency_by_stage_s["backhaul_up"] == pytest.approx(12.1)
    # All four devices in parallel: latency stays, energy adds up.
    table.add_device_cloud("model/all", 48_000e3, [1, 2, 3])
    report = CostAccountant(scenario, topo, np.ones(4) * 1e9).account(table, rates)
    assert report.latency_s == pytest.approx(12.1)
    assert report.energy_j == pytest.approx(4 * 9.68)


def test_modules_sent_together_share_one_wide_area_delay():
    """The paper's 6 MB payload split into modules costs what one 6 MB transfer costs."""
    scenario = paper()
    topo, rates = two_clusters()
    table = TransferTable.for_topology(topo)
    for module, share in (("adapter/fusion", 0.75), ("head/vqa", 0.25)):
        table.add_device_cloud(module, share * 48_000e3, [0, 1])
    report = CostAccountant(scenario, topo, np.ones(4) * 1e9).account(table, rates)
    assert report.latency_s == pytest.approx(12.1)
    assert report.energy_j == pytest.approx(2 * 0.8 * 12.1)
    # Another wired link (edge -> cloud) opens its own session and pays its own delay.
    table.add_backhaul_up("adapter/fusion", 4e6, [0])
    report = CostAccountant(scenario, topo, np.ones(4) * 1e9).account(table, rates)
    assert report.latency_by_stage_s["backhaul_up"] == pytest.approx(12.1)
    assert report.energy_by_tier_j["cloud"] == pytest.approx(2 * 0.8 * 12.1 + 0.8 * 1.1)


def test_a_wide_area_session_where_nothing_moves_costs_nothing():
    """A 0-bit backhaul flow paid the session's fixed delay (0.1 s, 0.08 J here), where a
    0-bit wireless hop costs nothing."""
    scenario = paper()
    topo, rates = two_clusters()
    table = TransferTable.for_topology(topo)
    table.add_backhaul_up("adapter/fusion", 0.0, [0])
    report = CostAccountant(scenario, topo, np.ones(4) * 1e9).account(table, rates)
    assert report.latency_s == 0.0 and report.energy_j == 0.0
    table.add_backhaul_up("head/vqa", 4e6, [0])  # the same session, now with bits: one delay
    report = CostAccountant(scenario, topo, np.ones(4) * 1e9).account(table, rates)
    assert report.latency_s == pytest.approx(0.1 + 1.0)


def test_same_link_is_sequential_different_links_parallel():
    topo, rates = two_clusters()
    table = TransferTable.for_topology(topo)
    table.add_uplinks("adapter/a", 10.0, [0, 1])  # 1 s and 2 s
    table.add_uplinks("head/b", np.array([20.0, 5.0]), [0, 1])  # 2 s and 1 s
    report = accountant(topo).account(table, rates)
    # Device 0: 1 + 2 = 3 s, device 1: 2 + 1 = 3 s on their own uplinks, in parallel.
    assert report.latency_s == pytest.approx(3.0)
    assert report.latency_by_stage_s["uplink"] == pytest.approx(3.0)
    assert report.energy_j == pytest.approx(0.6 * 6.0)
    assert report.energy_by_module_type_j == pytest.approx({"adapter": 0.6 * 3, "head": 0.6 * 3})
    assert report.energy_by_tier_j["edge"] == pytest.approx(3.6)
    np.testing.assert_allclose(report.energy_by_device_j, [1.8, 1.8, 0.0, 0.0])
    assert report.bits_by_link_kind["uplink"] == pytest.approx(45.0)
    assert report.num_flows == 4 and report.num_hops == 4


def test_relay_flows_are_charged_per_hop():
    topo = chain_topology()
    rates = make_rates(topo, np.ones(4), np.ones(4), CHAIN_D2D_BPS)
    graph = build_d2d_graphs(topo, rates, 30.0)[0]
    table = TransferTable.for_topology(topo)
    table.add_d2d_to_head("adapter/a", 10.0, 0, 0, [0, 1, 2, 3], relay_paths(graph, 0))
    assert len(table) == 6 and table.num_flows == 3
    report = accountant(topo).account(table, rates)
    # Paths to head 0 take 1 s (device 1), 2 s (device 2) and 4 s (device 3); they do not queue
    # behind each other on shared relay links, so the stage takes the slowest path.
    assert report.latency_s == pytest.approx(4.0)
    assert report.energy_j == pytest.approx(0.6 * (1 + 2 + 4))
    # Device 1 forwards everything: three 1 s transmissions on 1 -> 0.
    np.testing.assert_allclose(report.energy_by_device_j, [0.0, 1.8, 1.2, 1.2])
    assert report.bits_by_link_kind["d2d"] == pytest.approx(60.0)
    assert table.flows()[2]["route"] == [3, 2, 1, 0]
    assert table.flows()[2]["link_kinds"] == ["d2d"] * 3


def test_broadcast_tree_is_store_and_forward_and_charged_per_edge():
    topo = chain_topology()
    rates = make_rates(topo, np.ones(4), np.ones(4), CHAIN_D2D_BPS)
    graph = build_d2d_graphs(topo, rates, 30.0)[0]
    table = TransferTable.for_topology(topo)
    table.add_d2d_broadcast("adapter/a", 10.0, 0, 0, None, broadcast_tree(graph, 0))
    report = accountant(topo).account(table, rates)
    # Edges 0->1 (1 s), 1->2 (1 s), 2->3 (2 s) one after another down the chain.
    assert report.latency_by_stage_s["d2d_down"] == pytest.approx(4.0)
    assert report.energy_j == pytest.approx(0.6 * 4.0)
    # Two modules down the same tree: each edge carries both before forwarding.
    table.add_d2d_broadcast("head/b", 10.0, 0, 0, None, broadcast_tree(graph, 0))
    assert accountant(topo).account(table, rates).latency_s == pytest.approx(8.0)
    # Rooted at device 1: branches 1->0 (1 s) and 1->2->3 (1 + 2 s) run in parallel.
    table = TransferTable.for_topology(topo)
    table.add_d2d_broadcast("adapter/a", 10.0, 0, 1, None, broadcast_tree(graph, 1))
    report = accountant(topo).account(table, rates)
    assert report.latency_s == pytest.approx(3.0)
    assert report.energy_j == pytest.approx(0.6 * 4.0)
    # Reaching only device 0 needs only edge 1->0.
    table = TransferTable.for_topology(topo)
    table.add_d2d_broadcast("adapter/a", 10.0, 0, 1, [0], broadcast_tree(graph, 1))
    assert table.num_flows == 1
    assert accountant(topo).account(table, rates).latency_s == pytest.approx(1.0)


def test_cloud_synchronises_clusters():
    topo, rates = two_clusters()

    def table_with(cloud: bool, joining=(0, 1)) -> TransferTable:
        table = TransferTable.for_topology(topo)
        table.add_uplinks("adapter/a", 30.0, [0])  # cluster 0 up: 3 s
        table.add_uplinks("adapter/a", 10.0, [2])  # cluster 1 up: 1 s
        table.add_downlinks("adapter/a", 10.0, [0])  # cluster 0 down: 1 s
        table.add_downlinks("adapter/a", 15.0, [2])  # cluster 1 down: 3 s
        if cloud:
            table.add_backhaul_up("adapter/a", 10.0, list(joining))  # 0.5 + 10 / 10 = 1.5 s
        return table

    acc = accountant(topo)
    # No cloud: clusters independent, max(3 + 1, 1 + 3) = 4 s.
    assert acc.account(table_with(False), rates).latency_s == pytest.approx(4.0)
    report = acc.account(table_with(True), rates)
    # Cloud: max up (3 + 1.5) + max down (3) = 7.5 s, not max(5.5, 5.5).
    assert report.latency_s == pytest.approx(7.5)
    np.testing.assert_allclose(report.latency_by_cluster_s, [5.5, 5.5])
    assert report.energy_by_tier_j["cloud"] == pytest.approx(2 * 2.0 * 1.5)
    assert report.energy_by_tier_j["edge"] == pytest.approx(0.6 * 4 + 2.0 * 4)
    # Edge-side transmissions are not any device's energy.
    np.testing.assert_allclose(report.energy_by_device_j, [1.8, 0.0, 0.6, 0.0])
    np.testing.assert_allclose(report.energy_by_cluster_j, [1.8, 0.6])  # devices 0-1, 2-3
    # Only cluster 1 joins the cloud: it alone waits there (1 + 1.5 + 3 = 5.5 s); cluster 0
    # keeps its own 3 + 1 = 4 s, not max up (4.5) + max down (3) = 7.5 s.
    assert acc.account(table_with(True, joining=[1]), rates).latency_s == pytest.approx(5.5)
    # A module relayed from the cloud (backhaul down only) is no barrier: clusters independent.
    relayed = table_with(False)
    relayed.add_backhaul_down("adapter/a", 10.0, [0])  # cluster 0: 4 + 1.5 s
    assert acc.account(relayed, rates).latency_s == pytest.approx(5.5)


def test_downlink_not_charged_when_charge_downlink_is_false():
    topo, rates = two_clusters()
    table = TransferTable.for_topology(topo)
    table.add_uplinks("adapter/a", 10.0, [0])
    table.add_backhaul_up("adapter/a", 10.0, [0])
    table.add_backhaul_down("adapter/a", 10.0, [0, 1])
    table.add_downlinks("adapter/a", 10.0, [0, 1, 2, 3])
    table.add_device_cloud("adapter/a", 10.0, [3], direction="down")
    charged = accountant(topo).account(table, rates)
    free = accountant(topo, charge_downlink=False).account(table, rates)
    # Charged: up 1 + 1.5, down 1.5 (backhaul) + 2 (downlink of device 2 at 5 bit/s);
    # device 3's cloud download (1.5 s) runs in parallel with cluster 1's path.
    assert charged.latency_s == pytest.approx(2.5 + 3.5)
    assert charged.energy_j == pytest.approx(0.6 + 2 * 1.5 + 2 * 2 * 1.5 + 2 * 5 + 2 * 1.5)
    # Not charged: only what devices and edges send upward.
    assert free.latency_s == pytest.approx(2.5)
    assert free.energy_j == pytest.approx(0.6 + 2 * 1.5)
    assert free.latency_by_stage_s["downlink"] == 0.0
    # The bits are still recorded.
    assert free.bits_by_link_kind["downlink"] == pytest.approx(40.0)
    assert free.bits_by_link_kind == charged.bits_by_link_kind


def test_compute_cost_formula_and_slowest_device():
    topo, rates = two_clusters()
    acc = CostAccountant(cost_scenario(compute_enabled=True), topo,
                         np.array([1e9, 2e9, 1e9, 1e9]))
    table = TransferTable.for_topology(topo)
    report = acc.account(table, rates, compute_samples=np.array([100, 100, 0, 50]))
    # Device 0: 1e6 * 100 / 1e9 = 0.1 s; kappa f^2 cycles = 1e-28 * 1e18 * 1e8 = 0.01 J.
    # Device 1: 0.05 s, 1e-28 * 4e18 * 1e8 = 0.04 J; device 3: 0.05 s, 0.005 J.
    assert report.compute_latency_s == pytest.approx(0.1)
    assert report.compute_energy_j == pytest.approx(0.055)
    np.testing.assert_allclose(report.energy_by_device_j, [0.01, 0.04, 0.0, 0.005])
    assert report.latency_by_stage_s["compute"] == pytest.approx(0.1)
    assert report.energy_by_tier_j["compute"] == pytest.approx(0.055)
    # The compute stage precedes the uplink of the same cluster.
    table.add_uplinks("adapter/a", 10.0, [1])  # 2 s
    assert acc.account(table, rates, np.array([100, 100, 0, 50])).latency_s == pytest.approx(2.1)
    # Disabled computation costs nothing.
    off = CostAccountant(cost_scenario(compute_enabled=False), topo, np.full(4, 1e9))
    assert off.account(TransferTable.for_topology(topo), rates, np.full(4, 100)).energy_j == 0.0


def test_d2d_pairs_exchange_both_ways():
    topo, rates = two_clusters()
    table = TransferTable.for_topology(topo)
    ids = table.add_d2d_pairs("moe/experts", 8.0, [(0, 1), (2, 3)])
    assert ids.tolist() == [0, 1, 2, 3]
    assert table.src.tolist() == [0, 1, 2, 3] and table.dst.tolist() == [1, 0, 3, 2]
    report = accountant(topo).account(table, rates)
    # 8 bits at 20 bit/s (0.4 s) and at 4 bit/s (2 s) each way, directions in parallel.
    assert report.latency_s == pytest.approx(2.0)
    assert report.energy_j == pytest.approx(0.6 * 2 * (0.4 + 2.0))


def test_generic_flow_across_clusters_and_validation():
    topo, rates = two_clusters()
    table = TransferTable.for_topology(topo)
    edge0, edge1, cloud = table.edge_node(0), table.edge_node(1), table.cloud_node()
    assert (edge0, edge1, cloud) == (4, 5, 6)
    # Module relaying: device 0 -> edge 0 -> cloud -> edge 1 -> device 3.
    f = table.add_flow(
        "head/vqa", 10.0, [0, edge0, cloud, edge1, 3],
        ["uplink", "backhaul", "backhaul", "downlink"],
        [Stage.UPLINK, Stage.BACKHAUL_UP, Stage.BACKHAUL_DOWN, Stage.DOWNLINK],
    )
    assert f == 0 and table.cluster.tolist() == [0, 0, 1, 1]
    assert table.link.tolist() == [LinkKind.UPLINK, LinkKind.BACKHAUL, LinkKind.BACKHAUL,
                                   LinkKind.DOWNLINK]
    report = accountant(topo).account(table, rates)
    assert report.latency_s == pytest.approx(1.0 + 1.5 + 1.5 + 1.0)
    info = table.flows()[0]
    assert info["module_type"] == "head" and info["src"] == 0 and info["dst"] == 3
    assert info["route"] == [0, 4, 6, 5, 3]
    with pytest.raises(ValueError, match="not a valid uplink"):
        table.add_flow("x", 1.0, [0, edge1], "uplink", Stage.UPLINK)  # foreign edge server
    with pytest.raises(ValueError, match="not a valid d2d"):
        table.add_flow("x", 1.0, [0, 2], "d2d", Stage.D2D_UP)  # across clusters
    with pytest.raises(ValueError, match="must not decrease"):
        table.add_flow("x", 1.0, [0, edge0, cloud], "uplink backhaul".split(),
                       [Stage.BACKHAUL_UP, Stage.UPLINK])
    with pytest.raises(ValueError, match="leaves cluster"):
        table.add_flow("x", 1.0, [0, edge0], "uplink", Stage.UPLINK, cluster=1)
    with pytest.raises(ValueError, match="unknown link kind"):
        table.add_flow("x", 1.0, [0, 1], "wifi", Stage.D2D_UP)
    assert table.num_flows == 1  # failed builders add nothing


def test_after_flow_chains_and_cycles():
    topo, rates = two_clusters()
    table = TransferTable.for_topology(topo)
    a = table.add_flow("adapter/a", 20.0, [0, 1], "d2d", Stage.D2D_DOWN)  # 1 s
    table.add_flow("adapter/a", 20.0, [1, 0], "d2d", Stage.D2D_DOWN, after_flow=a)  # 1 s after
    assert accountant(topo).account(table, rates).latency_s == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same stage and cluster"):
        table.add_flow("adapter/a", 20.0, [1, 0], "d2d", Stage.D2D_UP, after_flow=a)


def test_table_summary_and_module_ids():
    topo, rates = two_clusters()
    a = TransferTable.for_topology(topo)
    a.add_uplinks("adapter/fusion", 10.0, [0, 1])
    b = TransferTable.for_topology(topo)
    b.add_uplinks("prompt/vqa", 5.0, [2])
    assert b.add_d2d_broadcast("adapter/fusion", 4.0, 1, 2, None, [(2, 3)]).tolist() == [1]
    both = TransferTable.for_topology(topo)  # a's flows, then b's
    both.add_uplinks("adapter/fusion", 10.0, [0, 1])
    both.add_uplinks("prompt/vqa", 5.0, [2])
    assert both.add_d2d_broadcast("adapter/fusion", 4.0, 1, 2, None, [(2, 3)]).tolist() == [3]
    assert both.num_flows == 4 and len(both) == 4
    assert both.module_names == ["adapter/fusion", "prompt/vqa"]
    assert both.module_type_names == ["adapter", "prompt"]
    assert both.flows()[3]["after"] == -1 and both.flows()[3]["route"] == [2, 3]
    summary = both.summary()
    assert summary["by_link_kind"]["uplink"] == {"hops": 3, "bits": 25.0}
    assert summary["by_link_kind"]["d2d"] == {"hops": 1, "bits": 4.0}
    assert summary["by_module_type"]["adapter"] == {"flows": 3, "bits": 24.0}
    acc = accountant(topo)
    assert acc.account(both, rates).energy_j == pytest.approx(
        acc.account(a, rates).energy_j + acc.account(b, rates).energy_j
    )
    json.dumps(acc.account(both, rates).to_dict())
    empty = acc.account(TransferTable.for_topology(topo), rates)
    assert empty.latency_s == 0.0 and empty.energy_j == 0.0 and empty.num_hops == 0


def test_bulk_d2d_to_heads_equals_per_cluster_calls():
    from hffm_env.config import small
    from hffm_env.sim import Network

    net = Network(small(), RandomStreams.from_seed(0))
    paths = [net.relay_paths(c) for c in range(net.num_clusters)]
    one_by_one = net.new_table()
    for c in range(net.num_clusters):
        one_by_one.add_d2d_to_head("adapter/a", 1e6, c, int(net.heads[c]), net.members(c),
                                   paths[c])
    bulk = net.new_table()
    ids = bulk.add_d2d_to_heads("adapter/a", 1e6, net.heads, paths)
    assert ids.size == net.num_devices - net.num_clusters
    for name in ("flow", "src", "dst", "link", "stage", "cluster"):
        np.testing.assert_array_equal(getattr(bulk, name), getattr(one_by_one, name))
    assert net.account(bulk).to_dict() == net.account(one_by_one).to_dict()
    # Restricting the senders, and skipping clusters without a head.
    heads = net.heads.copy()
    heads[1] = -1
    some = net.new_table()
    some.add_d2d_to_heads("adapter/a", 1e6, heads, paths, devices=net.members(0))
    assert set(some.src[some.hop == 0].tolist()) == set(net.members(0).tolist()) - {heads[0]}
