"""The Network facade: determinism, heads, dropout, mobility, the paper's schedules, describe."""

import dataclasses
import json
import math
import warnings

import networkx as nx
import numpy as np
import pytest

from hffm_env.config import DynamicsConfig, paper, small
from hffm_env.seeding import RandomStreams
from hffm_env.sim import (
    Network,
    RandomWaypoint,
    describe_network,
    draw_available,
    format_network_report,
)

PAYLOAD = 48_000e3


def test_same_seed_same_network_different_seed_different():
    a = Network(small(), RandomStreams.from_seed(3))
    b = Network(small(), RandomStreams.from_seed(3))
    c = Network(small(), RandomStreams.from_seed(4))
    np.testing.assert_array_equal(a.topology.device_xy_m, b.topology.device_xy_m)
    np.testing.assert_array_equal(a.cpu_freq_hz, b.cpu_freq_hz)
    np.testing.assert_array_equal(a.rates.uplink_bps, b.rates.uplink_bps)
    np.testing.assert_array_equal(a.rates.d2d_bps, b.rates.d2d_bps)
    assert not np.allclose(a.topology.device_xy_m, c.topology.device_xy_m)
    assert not np.allclose(a.rates.uplink_bps, c.rates.uplink_bps)
    rng_a, rng_b = RandomStreams.from_seed(9), RandomStreams.from_seed(9)
    a.begin_round(rng_a)
    b.begin_round(rng_b)
    np.testing.assert_array_equal(a.rates.downlink_bps, b.rates.downlink_bps)
    assert [sorted(g.edges()) for g in a.d2d_graphs] == [sorted(g.edges()) for g in b.d2d_graphs]
    # A new round redraws fading but keeps placement.
    before = a.rates.uplink_bps.copy()
    a.begin_round(rng_a)
    assert not np.allclose(before, a.rates.uplink_bps)
    np.testing.assert_array_equal(a.topology.device_xy_m, b.topology.device_xy_m)


def test_network_state_shapes_and_heads():
    net = Network(small(), RandomStreams.from_seed(0))
    n, s = net.num_devices, net.num_clusters
    assert (n, s) == (12, 4)
    assert net.available.all()
    cpu = small().compute
    assert net.cpu_freq_hz.min() >= cpu.cpu_freq_hz_min
    assert net.cpu_freq_hz.max() <= cpu.cpu_freq_hz_max
    for c in range(s):
        members = net.members(c)
        assert net.heads[c] == members[np.argmax(net.rates.uplink_bps[members])]
        assert nx.is_connected(net.d2d_graphs[c])
        assert set(net.relay_paths(c)) == set(members.tolist())
        assert len(net.broadcast_tree(c)) == members.size - 1
    assert (net.edge_node(2), net.cloud_node()) == (14, 16)  # devices, then edges, then cloud
    table = net.new_table()
    assert table.cloud_node() == net.cloud_node()


def test_dropout_draws_and_unavailable_devices():
    rng = np.random.default_rng(0)
    assert draw_available(rng, 100_000, 0.3).mean() == pytest.approx(0.7, abs=0.01)
    assert draw_available(rng, 50, 0.0).all()
    assert not draw_available(rng, 50, 1.0).any()
    scenario = dataclasses.replace(small(), dynamics=DynamicsConfig(dropout_prob=0.5))
    net = Network(scenario, RandomStreams.from_seed(1))
    for _ in range(5):
        net.begin_round(RandomStreams.from_seed(_))
        assert 0 < net.available.sum() < net.num_devices
        for c in range(net.num_clusters):
            avail = net.available_members(c)
            assert sorted(net.d2d_graphs[c].nodes()) == avail.tolist()
            if avail.size:
                assert net.available[net.heads[c]]
                up = net.rates.uplink_bps
                assert net.heads[c] == avail[np.argmax(up[avail])]
            else:
                assert net.heads[c] == -1
        off = np.flatnonzero(~net.available)[0]
        on = np.flatnonzero(net.available)
        assert not any(net.is_feasible_pair(int(off), int(j)) for j in on)


def test_all_devices_dropped_leaves_no_head():
    scenario = dataclasses.replace(small(), dynamics=DynamicsConfig(dropout_prob=1.0))
    net = Network(scenario, RandomStreams.from_seed(0))
    assert np.all(net.heads == -1)
    with pytest.raises(ValueError, match="no available device"):
        net.relay_paths(0)


def test_mobility_keeps_devices_in_area_and_home_disc():
    dyn = DynamicsConfig(mobility=True, speed_mps_min=20.0, speed_mps_max=40.0,
                         round_duration_s=10.0)
    scenario = dataclasses.replace(small(), dynamics=dyn)
    net = Network(scenario, RandomStreams.from_seed(2))
    topo = net.topology
    start = topo.device_xy_m.copy()
    rng = RandomStreams.from_seed(5)
    previous = start
    for _ in range(30):
        net.begin_round(rng)
        xy = net.topology.device_xy_m
        assert np.all((xy >= 0.0) & (xy <= topo.area_side_m))
        home = topo.cluster_centre_xy_m[topo.cluster_of_device]
        assert np.all(np.hypot(*(xy - home).T) <= topo.cluster_radius_m[0] + 1e-6)
        step = np.hypot(*(xy - previous).T)
        assert np.all(step <= 40.0 * 10.0 + 1e-9)
        previous = xy
        np.testing.assert_array_equal(net.topology.cluster_of_device, topo.cluster_of_device)
        assert all(nx.is_connected(g) for g in net.d2d_graphs)
    assert np.hypot(*(previous - start).T).min() > 0.0


def test_random_waypoint_moves_toward_waypoint_at_its_speed():
    net = Network(small(), RandomStreams.from_seed(0))
    cfg = DynamicsConfig(mobility=True, speed_mps_min=0.5, speed_mps_max=0.5,
                         round_duration_s=2.0)
    model = RandomWaypoint(net.topology, cfg, np.random.default_rng(1))
    start, target = model.device_xy_m.copy(), model.waypoint_xy_m.copy()
    far = np.hypot(*(target - start).T) > 1.0
    new = model.step(np.random.default_rng(2))
    moved = np.hypot(*(new - start).T)
    np.testing.assert_allclose(moved[far], 1.0)
    # Along the straight line to the waypoint.
    direction = (target - start)[far] / np.hypot(*(target - start)[far].T)[:, None]
    np.testing.assert_allclose((new - start)[far], direction, atol=1e-9)


def test_paper_hierarchical_round_matches_prototype_formulas():
    net = Network(paper(), RandomStreams.from_seed(49))
    up = PAYLOAD / net.rates.uplink_bps
    table = net.new_table()
    table.add_uplinks("model/all", PAYLOAD, np.arange(40))
    table.add_backhaul_up("model/all", PAYLOAD, np.arange(10))
    table.add_backhaul_down("model/all", PAYLOAD, np.arange(10))  # free in `paper`
    table.add_downlinks("model/all", PAYLOAD, np.arange(40))  # free in `paper`
    report = net.account(table)
    slowest = np.array([up[net.members(c)].max() for c in range(10)])
    assert report.latency_s == pytest.approx((slowest + 12.1).max())
    assert report.energy_j == pytest.approx(0.6 * up.sum() + 10 * 0.8 * 12.1)
    # Edge-only round: no cloud, slowest cluster.
    edge_only = net.new_table()
    edge_only.add_uplinks("model/all", PAYLOAD, np.arange(40))
    assert net.account(edge_only).latency_s == pytest.approx(slowest.max())


def test_paper_d2d_round_matches_prototype_formulas():
    net = Network(paper(), RandomStreams.from_seed(49))
    table = net.new_table()
    expected_latency, expected_energy = [], 0.0
    for c in range(net.num_clusters):
        g, head = net.d2d_graphs[c], int(net.heads[c])
        table.add_d2d_to_head("model/all", PAYLOAD, c, head, net.members(c), net.relay_paths(c))
        table.add_d2d_broadcast("model/all", PAYLOAD, c, head, None, net.broadcast_tree(c))
        # The prototype: up = slowest shortest path to the head, down = slowest broadcast path;
        # energy = sum of path latencies (up) + sum of tree edge latencies (down), at 0.6 W.
        to_head = nx.single_source_dijkstra_path_length(g, head, weight="weight_s_per_bit")
        up = PAYLOAD * max(to_head.values())
        tree_s = sum(PAYLOAD * g.edges[u, v]["weight_s_per_bit"] for u, v in net.broadcast_tree(c))
        expected_latency.append(2 * up)
        expected_energy += 0.6 * (PAYLOAD * sum(to_head.values()) + tree_s)
    report = net.account(table)
    assert report.latency_s == pytest.approx(max(expected_latency))
    assert report.energy_j == pytest.approx(expected_energy)
    assert report.energy_by_tier_j["d2d"] == pytest.approx(expected_energy)


def test_describe_network_paper():
    report = describe_network(paper(), seed=0)
    json.dumps(report)
    assert report["devices"] == 40 and report["edge_servers"] == 10
    assert report["clusters"]["sizes"] == [4] * 10
    d2d = report["d2d"]
    assert d2d["edges"] == d2d["neighbour_edges"] + d2d["repair_edges"]
    assert d2d["edges"] >= 30 and len(d2d["heads"]) == 10
    cloud = report["payload_cost"]["device_to_cloud"]
    assert cloud["latency_s"] == pytest.approx(0.1 + 8e6 / 4e6)
    assert cloud["energy_j"] == pytest.approx(0.8 * 2.1)
    rates = report["link_rates_bps"]["uplink"]
    assert rates["min"] <= rates["mean"] <= rates["max"]
    up = report["payload_cost"]["uplink_slowest_device"]
    assert up["latency_s"] == pytest.approx(8e6 / rates["min"])
    assert report["payload_cost"]["downlink_slowest_device"]["charged"] is False
    text = format_network_report(report)
    assert "'paper'" in text and "device_to_cloud" in text
    assert "added to connect each cluster" in text


def test_describe_says_a_cost_overflows_without_a_numpy_warning():
    """A backhaul of 1e-320 bit/s priced the cloud tiers at inf, printed bare beside numpy's
    "overflow encountered in divide"; the env refuses such a config."""
    from hffm_env.config import apply_overrides

    cfg = apply_overrides(small(), ["channel.backhaul.rate_bps=1e-320"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = describe_network(cfg, seed=0)
    assert math.isinf(report["payload_cost"]["edge_to_cloud"]["latency_s"])
    text = " ".join(format_network_report(report).split())
    assert "edge_to_cloud inf inf (overflows: a channel, compute or cost value" in text
    assert "uplink_slowest_device" in text and text.count("overflows") == 2


def test_describe_counts_only_available_devices():
    """With every device dropped out it said "4/4 clusters connected" and priced the slowest
    device's uplink; the slowest device could be one that sends nothing this round."""
    from hffm_env.config import apply_overrides

    nobody = describe_network(apply_overrides(small(), ["dynamics.dropout_prob=1.0"]), seed=0)
    d2d = nobody["d2d"]
    assert (d2d["clusters_connected_before_repair"], d2d["clusters_with_devices_available"]) == (
        0, 0)
    assert np.isnan(nobody["payload_cost"]["uplink_slowest_device"]["latency_s"])
    assert "(0 with a device available)" in format_network_report(nobody)
    assert "uplink_slowest_device nan nan (not priced: no device" in " ".join(
        format_network_report(nobody).split())  # (columns' spaces aside)
    for seed in range(8):
        cfg = apply_overrides(small(), ["dynamics.dropout_prob=0.4"])
        report = describe_network(cfg, seed=seed)
        net = Network(cfg, RandomStreams.from_seed(seed))
        available = np.flatnonzero(net.available)
        slowest = net.rates.uplink_bps[available].min()
        assert report["payload_cost"]["uplink_slowest_device"]["latency_s"] == pytest.approx(
            8e6 / slowest)


def test_the_simulators_public_numbers_refuse_what_they_cannot_price():
    # a device id past the end named another pair's link (its key i * N + j collided); -100
    # samples per device gave negative energy; negative bits a negative backhaul time
    from hffm_env.config import ConfigError, apply_overrides
    from hffm_env.sim.channel import backhaul_time_s

    net = Network(small(), RandomStreams.from_seed(0))
    with pytest.raises(ValueError, match=r"device 14: not a device of this network \(0\.\.11\)"):
        net.rates.d2d_rate(0, 14)
    for bad in (-100.0, float("nan")):
        with pytest.raises(ValueError, match=r"compute_samples\[0\] = .*: must be a finite"):
            net.account(net.new_table(), np.full(12, bad))
    with pytest.raises(ValueError, match="bits = -1000000.0: must be finite and >= 0"):
        backhaul_time_s(small().channel.backhaul, -1e6)
    # two servers farther apart than the area's diagonal: accepted, then placement searched
    # for max_placement_attempts (minutes)
    with pytest.raises(ConfigError, match="more than the area's diagonal"):
        apply_overrides(small(), ["placement.num_edge_servers=2", "placement.num_devices=6",
                                  "placement.min_server_spacing_m=1500"])


def test_the_networks_views_name_a_cluster_or_device_it_does_not_have():
    # -1 read the last cluster, the cluster count gave the cloud's node id, 99 an IndexError,
    # a float device the bare IndexError too
    net = Network(small(), RandomStreams.from_seed(0))
    for call, says in ((lambda: net.members(-1), "cluster = -1: not a cluster"),
                       (lambda: net.edge_node(4), "cluster = 4: not a cluster"),
                       (lambda: net.relay_paths(99), "cluster = 99: not a cluster"),
                       (lambda: net.relay_paths(0, head=50), "head = 50: not a device"),
                       (lambda: net.is_feasible_pair(0, 1.0), "j = 1.0: not a device")):
        with pytest.raises(ValueError, match=says):
            call()
    assert net.members(np.int64(0)).tolist() == [0, 1, 2]


def test_the_simulators_helpers_name_a_bad_argument():
    # k=0 failed in numpy's reshape; floats were truncated to device ids and a short proposal
    # list dropped the rest; a dropout probability of 1.5 dropped every device silently
    from hffm_env.sim.dynamics import draw_available
    from hffm_env.sim.routing import k_nearest_partners, repair_pairing

    net = Network(small(), RandomStreams.from_seed(0))
    for k in (0, -1, 1.5):
        with pytest.raises(ValueError, match=f"k = {k}: must be an integer >= 1"):
            k_nearest_partners(net.topology, k)
    with pytest.raises(ValueError, match="proposed: must be a 1-d array of integer"):
        repair_pairing(np.array([1.0, 0.0]), net.is_feasible_pair)
    with pytest.raises(ValueError, match=r"proposed: shape \(2,\), expected \(12,\)"):
        net.repair_pairing(np.array([1, 0]))
    assert net.repair_pairing(np.full(12, -1)) == ([], 0)
    with pytest.raises(ValueError, match="dropout_prob = 1.5: must be a probability"):
        draw_available(np.random.default_rng(0), 4, 1.5)
