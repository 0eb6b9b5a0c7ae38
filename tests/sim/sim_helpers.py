"""Hand-built networks for the sim tests (imported by the test modules of this folder)."""

from __future__ import annotations

import numpy as np

from hffm_env.config import (
    BackhaulConfig,
    ChannelConfig,
    ComputeConfig,
    CostConfig,
    LinkConfig,
    ScenarioConfig,
)
from hffm_env.sim.channel import LinkRates
from hffm_env.sim.topology import Topology


def make_topology(device_xy, cluster, server_xy, area_side_m=1000.0) -> Topology:
    """A topology from explicit positions."""
    return Topology(
        server_xy_m=np.asarray(server_xy, dtype=float),
        device_xy_m=np.asarray(device_xy, dtype=float),
        cluster_of_device=np.asarray(cluster),
        area_side_m=area_side_m,
    )


def make_rates(topology: Topology, uplink, downlink, d2d: dict) -> LinkRates:
    """LinkRates with chosen rates; ``d2d`` maps ``(i, j)`` with i < j to bit/s (pairs missing
    from it get 1 bit/s)."""
    pair_i, pair_j = topology.intra_cluster_pairs()
    xy = topology.device_xy_m
    return LinkRates(
        uplink_bps=np.asarray(uplink, dtype=float),
        downlink_bps=np.asarray(downlink, dtype=float),
        pair_i=pair_i,
        pair_j=pair_j,
        d2d_bps=np.array([float(d2d.get((i, j), 1.0)) for i, j in zip(pair_i, pair_j)]),
        d2d_distance_m=np.hypot(*(xy[pair_i] - xy[pair_j]).T),
    )


def chain_topology() -> Topology:
    """One cluster of four devices on a line at x = 0, 20, 40, 200 m (server at the origin):
    with a 30 m radius, 0-1 and 1-2 are neighbours and device 3 is isolated."""
    return make_topology([[0, 0], [20, 0], [40, 0], [200, 0]], [0, 0, 0, 0], [[0, 0]])


CHAIN_D2D_BPS = {(0, 1): 10, (0, 2): 4, (0, 3): 1, (1, 2): 10, (1, 3): 2, (2, 3): 5}
"""D2D rates whose latency MST is the chain 0-1-2-3 (latencies 0.1, 0.1, 0.2 s/bit)."""


def cost_scenario(
    charge_downlink: bool = True,
    compute_enabled: bool = False,
    backhaul: BackhaulConfig | None = None,
) -> ScenarioConfig:
    """A scenario with round link powers: uplink 0.6 W, downlink 2 W, D2D 0.6 W, and a backhaul
    of 0.5 s + bits / 10 bit/s at 2 W (unless ``backhaul`` is given)."""
    return ScenarioConfig(
        channel=ChannelConfig(
            uplink=LinkConfig(1e6, 1.0, 0.6),
            downlink=LinkConfig(1e6, 10.0, 2.0),
            d2d=LinkConfig(8e6, 0.2, 0.6),
            backhaul=backhaul or BackhaulConfig(latency_s=0.5, rate_bps=10.0, energy_power_w=2.0),
        ),
        compute=ComputeConfig(enabled=compute_enabled, cycles_per_sample=1e6, kappa=1e-28,
                              cpu_freq_hz_min=1e9, cpu_freq_hz_max=2e9),
        cost=CostConfig(charge_downlink=charge_downlink),
    )
