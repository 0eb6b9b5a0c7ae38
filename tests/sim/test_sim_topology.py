"""Placement: spacing, discs, area, errors, association, determinism."""

import numpy as np
import pytest

from hffm_env.config import ConfigError, PlacementConfig, paper
from hffm_env.sim.topology import (
    PlacementError,
    Topology,
    associate,
    place_network,
    sample_in_disc,
)


def _pairwise_min(xy: np.ndarray) -> float:
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    d[np.arange(len(xy)), np.arange(len(xy))] = np.inf
    return float(d.min())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_paper_placement_respects_spacing_discs_and_area(seed):
    cfg = paper().placement
    topo = place_network(cfg, np.random.default_rng(seed))
    assert topo.num_devices == 40 and topo.num_clusters == 10
    assert _pairwise_min(topo.server_xy_m) >= 500.0
    for xy in (topo.server_xy_m, topo.device_xy_m, topo.cluster_centre_xy_m):
        assert np.all((xy >= 0.0) & (xy <= 5000.0))
    centre_dist = np.hypot(*(topo.cluster_centre_xy_m - topo.server_xy_m).T)
    assert np.all(centre_dist <= 1000.0 + 1e-9)
    cluster = topo.cluster_of_device
    dev_dist = np.hypot(*(topo.device_xy_m - topo.cluster_centre_xy_m[cluster]).T)
    assert np.all(dev_dist <= 500.0 + 1e-9)
    np.testing.assert_array_equal(topo.cluster_sizes(), np.full(10, 4))
    np.testing.assert_array_equal(topo.members(3), [12, 13, 14, 15])
    np.testing.assert_array_equal(topo.cluster_radius_m, np.full(10, 500.0))


def test_discs_near_the_border_are_resampled_inside_the_area():
    cfg = PlacementConfig(area_side_m=1000.0, num_edge_servers=1, num_devices=400,
                          devices_per_cluster=400, min_server_spacing_m=0.0,
                          cluster_centre_radius_m=0.0, device_radius_m=300.0)
    # A 300 m disc in a 1 km square often sticks out of the area: everything stays inside.
    topo = place_network(cfg, np.random.default_rng(5))
    xy = topo.device_xy_m
    assert np.all((xy >= 0.0) & (xy <= 1000.0))
    centre = topo.cluster_centre_xy_m[0]
    assert np.all(np.hypot(*(xy - centre).T) <= 300.0 + 1e-9)
    pts = sample_in_disc(np.zeros((2000, 2)), 100.0, 1000.0, np.random.default_rng(0), 1000)
    assert np.all(pts >= 0.0) and np.all(np.hypot(*pts.T) <= 100.0)
    # A disc centred on a corner: three quarters of it lie outside. Resampling (not
    # clipping): no point piles up on the border.
    assert np.sum(pts == 0.0) == 0
    # Uniform over the quarter disc: the mean radius of a uniform disc is 2R/3.
    assert np.hypot(*pts.T).mean() == pytest.approx(200.0 / 3.0, rel=0.03)


def test_too_small_area_is_a_config_error():
    with pytest.raises(ConfigError, match="too small"):
        PlacementConfig(area_side_m=1000.0, min_server_spacing_m=1000.0)


def test_two_servers_nearly_a_diagonal_apart_take_opposite_corners(monkeypatch):
    # Two servers 139 m apart in a 100 m square (diagonal 141 m) pass the packing bound but
    # are nearly impossible to draw: 21 tries of three attempts per server raised
    # PlacementError; opposite corners hold them
    import hffm_env.sim.topology as topology

    cfg = PlacementConfig(area_side_m=100.0, num_edge_servers=2, num_devices=2,
                          devices_per_cluster=1, min_server_spacing_m=139.0,
                          max_placement_attempts=3)
    corners = {frozenset(map(tuple, place_network(cfg, np.random.default_rng(seed)).server_xy_m))
               for seed in range(8)}
    assert corners == {frozenset({(0.0, 0.0), (100.0, 100.0)}),
                       frozenset({(100.0, 0.0), (0.0, 100.0)})}
    # what the config lets through never reaches it; the error stays for a layout that would
    monkeypatch.setattr(topology, "_servers_on_a_lattice", lambda config, rng: None)
    with pytest.raises(PlacementError, match="21 tries of max_placement_attempts = 3"):
        place_network(cfg, np.random.default_rng(0))
    assert issubclass(PlacementError, ConfigError)


def test_uniform_placement_associates_nearest_and_fills_empty_clusters():
    cfg = PlacementConfig(placement="uniform", area_side_m=5000.0, num_edge_servers=10,
                          num_devices=10, min_server_spacing_m=500.0)
    topo = place_network(cfg, np.random.default_rng(0))
    # Ten devices for ten servers: filling empty clusters leaves exactly one device each.
    np.testing.assert_array_equal(topo.cluster_sizes(), np.ones(10))
    cfg = PlacementConfig(placement="uniform", num_edge_servers=5, num_devices=400)
    topo = place_network(cfg, np.random.default_rng(1))
    np.testing.assert_array_equal(
        topo.cluster_of_device, associate(topo.device_xy_m, topo.server_xy_m)
    )
    assert topo.cluster_sizes().sum() == 400 and topo.cluster_sizes().min() > 0
    dist = np.hypot(*(topo.device_xy_m - topo.server_xy_m[topo.cluster_of_device]).T)
    for c in range(5):
        assert topo.cluster_radius_m[c] == pytest.approx(dist[topo.members(c)].max())


def test_associate_hand_case():
    servers = [[0.0, 0.0], [10.0, 0.0]]
    devices = [[1.0, 0.0], [9.0, 1.0], [5.0, 0.0]]
    np.testing.assert_array_equal(associate(devices, servers), [0, 1, 0])  # tie -> lower


def test_topology_members_pairs_and_read_only():
    topo = Topology(np.zeros((2, 2)), np.zeros((5, 2)), np.array([1, 0, 1, 1, 0]), 10.0)
    np.testing.assert_array_equal(topo.members(0), [1, 4])
    np.testing.assert_array_equal(topo.members(1), [0, 2, 3])
    pi, pj = topo.intra_cluster_pairs()
    assert list(zip(pi.tolist(), pj.tolist())) == [(0, 2), (0, 3), (1, 4), (2, 3)]
    with pytest.raises(ValueError):
        topo.device_xy_m[0, 0] = 1.0
    moved = topo.with_device_xy(np.ones((5, 2)))
    assert moved.device_xy_m[0, 0] == 1.0 and topo.device_xy_m[0, 0] == 0.0
    np.testing.assert_array_equal(moved.cluster_of_device, topo.cluster_of_device)


def test_placement_is_deterministic_per_seed():
    cfg = paper().placement
    a = place_network(cfg, np.random.default_rng(11))
    b = place_network(cfg, np.random.default_rng(11))
    c = place_network(cfg, np.random.default_rng(12))
    np.testing.assert_array_equal(a.server_xy_m, b.server_xy_m)
    np.testing.assert_array_equal(a.device_xy_m, b.device_xy_m)
    assert not np.allclose(a.device_xy_m, c.device_xy_m)


def test_servers_that_leave_no_room_for_the_last_start_over(monkeypatch):
    """Four servers 600 m apart fit in a 1 km square (its corners), but one by one the first
    three can sit so that the fourth finds no room: reset(seed=10) raised PlacementError."""
    import hffm_env.sim.topology as topology
    from hffm_env.config import apply_overrides, small

    cfg = apply_overrides(small(), ["placement.min_server_spacing_m=600"]).placement
    for seed in range(12):
        servers = place_network(cfg, np.random.default_rng(seed)).server_xy_m
        gaps = np.hypot(*(servers[:, None] - servers[None]).transpose(2, 0, 1))
        assert gaps[~np.eye(len(servers), dtype=bool)].min() >= 600.0
    monkeypatch.setattr(topology, "SERVER_PLACEMENT_RESTARTS", 0)  # one pass, as before
    jammed = topology._try_to_place_servers
    assert any(jammed(cfg, np.random.default_rng(seed)) is None for seed in range(12))


def _assert_spaced(servers: np.ndarray, spacing: float, side: float) -> None:
    gaps = np.hypot(*(servers[:, None] - servers[None]).transpose(2, 0, 1))
    assert gaps[~np.eye(len(servers), dtype=bool)].min() >= spacing
    assert servers.min() >= 0.0 and servers.max() <= side


@pytest.mark.parametrize("spacing", [345.0, 374.0])
def test_a_layout_the_config_accepts_places_on_every_seed(spacing, monkeypatch):
    """Ten servers 345-374 m apart in a 1 km square: accepted, and the build's seed placed
    them, but random placement jams at such densities and the reset of some seeds (6 in 60
    at 345 m, 38 in 60 at 360 m) raised PlacementError mid-training. The servers now fall
    back to a lattice the config checks holds them; a wider spacing is refused up front."""
    import hffm_env.sim.topology as topology
    from hffm_env.config import apply_overrides, small

    layout = ["placement.num_edge_servers=10", "placement.num_devices=30"]
    cfg = apply_overrides(small(), [*layout, f"placement.min_server_spacing_m={spacing}",
                                    "placement.max_placement_attempts=100"])  # (jams sooner)
    jams = topology._try_to_place_servers
    assert sum(jams(cfg.placement, np.random.default_rng(seed)) is None for seed in range(20)) > 5
    for seed in range(20):
        _assert_spaced(place_network(cfg.placement, np.random.default_rng(seed)).server_xy_m,
                       spacing, 1000.0)
    monkeypatch.setattr(topology, "SERVER_PLACEMENT_RESTARTS", 0)
    monkeypatch.setattr(topology, "_try_to_place_servers", lambda config, rng: None)
    lattice = [place_network(cfg.placement, np.random.default_rng(seed)).server_xy_m
               for seed in range(2)]
    for servers in lattice:
        _assert_spaced(servers, spacing, 1000.0)
    assert not np.array_equal(*lattice)  # shifted and ordered by the seed
    with pytest.raises(ConfigError, match="too small to place 10 edge servers at least "
                                          r"400.0 m apart \(a hexagonal or square lattice "
                                          "at that spacing holds 9, and random placement"):
        apply_overrides(small(), [*layout, "placement.min_server_spacing_m=400"])
    # the smallest spacing there is: the lattice is counted, not listed (nor infinite)
    apply_overrides(small(), [*layout, "placement.min_server_spacing_m=5e-324"])
