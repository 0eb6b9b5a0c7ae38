"""A one-page description of a scenario's network: sizes, D2D graphs, rates and tier costs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hffm_env.config import ScenarioConfig
from hffm_env.seeding import RandomStreams
from hffm_env.sim.network import Network
from hffm_env.sim.transfers import LinkKind, Stage, TransferTable

__all__ = ["describe_network", "format_network_report"]

PAYLOAD_BITS = 8e6
"""The reference payload of the tier costs: 1 MB."""
PAYLOAD = "payload"
"""The module id the reference payload travels under in the priced tables."""


def _stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"min": float("nan"), "mean": float("nan"), "max": float("nan")}
    return {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}


_REPORT_KEYS: tuple[str, ...] = (
    "scenario", "seed", "devices", "edge_servers", "area_side_m", "available_devices",
    "clusters", "d2d", "link_rates_bps", "payload_bits", "payload_cost")
"""What :func:`format_network_report` reads of a :func:`describe_network` report."""


def describe_network(scenario: ScenarioConfig, seed: int = 0,
                     network: Network | None = None) -> dict[str, Any]:
    """Build the scenario's network from ``RandomStreams.from_seed(seed)`` (at the config's
    seed, the env's first layout) and describe its first round as a JSON-able dict
    (``network``: the one built so already, which a caller describing more shares).

    Keys: ``scenario``, ``seed``, ``devices``, ``edge_servers``, ``area_side_m``, ``clusters``
    (count and sizes), ``d2d`` (graph edges, neighbour and repair edges, clusters connected
    before repair, heads), ``link_rates_bps`` (min/mean/max per link kind; D2D over the graph
    edges), ``payload_cost`` (latency and energy of sending 1 MB = 8e6 bits over each tier:
    uplink of the slowest device, downlink to the slowest device, the median D2D graph edge,
    edge -> cloud backhaul, device -> cloud; physical costs, with ``charged`` false where the
    scenario's accountant charges nothing for that tier; NaN where nothing could be priced,
    infinite where the cost overflows: the env refuses such a config).
    """
    net = network if network is not None else Network(scenario, RandomStreams.from_seed(seed))
    ch = scenario.channel
    sizes = net.topology.cluster_sizes()
    graphs = net.d2d_graphs
    edge_data = [d for g in graphs for _, _, d in g.edges(data=True)]
    d2d_rates = np.array([d["rate_bps"] for d in edge_data])
    num_repair = int(sum(d["repair"] for d in edge_data))
    rates = net.rates
    charge_down = scenario.cost.charge_downlink

    def tier(add: Callable[[TransferTable], Any], charged: bool = True) -> dict[str, Any]:
        """One payload over one link, priced by the cost model's hop rules (before the
        ``charge_downlink`` rule, which ``charged`` reports)."""
        table = net.new_table()
        add(table)
        times = net.accountant.hop_times_s(table, rates)
        return {"latency_s": float(times.sum()),
                "energy_j": float(net.accountant.hop_energy_j(table, times).sum()),
                "charged": charged}

    def median_d2d_hop(table: TransferTable) -> None:  # the middle link by rate (lower one)
        u, v, _ = sorted(((u, v, d["rate_bps"]) for g in graphs
                          for u, v, d in g.edges(data=True)), key=lambda e: e[2])[
            (len(edge_data) - 1) // 2]
        table.add_flow(PAYLOAD, PAYLOAD_BITS, [u, v], LinkKind.D2D, Stage.D2D_UP)

    available = np.flatnonzero(net.available)
    unpriced = {"latency_s": math.nan, "energy_j": math.nan, "charged": True}

    def slowest(bps: np.ndarray) -> int:  # the slowest available device's id
        return int(available[bps[available].argmin()])

    # (a cost that overflows is reported as inf, and said so by format_network_report)
    with np.errstate(over="ignore", divide="ignore"):
        payload_cost = {
            # (of the devices available this round: one that dropped out sends nothing)
            "uplink_slowest_device": (tier(lambda t: t.add_uplinks(
                PAYLOAD, PAYLOAD_BITS, [slowest(rates.uplink_bps)])) if available.size
                else unpriced),
            "downlink_slowest_device": (tier(lambda t: t.add_downlinks(
                PAYLOAD, PAYLOAD_BITS, [slowest(rates.downlink_bps)]), charge_down)
                if available.size else unpriced),
            "d2d_median_hop": tier(median_d2d_hop) if edge_data else unpriced,
            "edge_to_cloud": tier(lambda t: t.add_backhaul_up(PAYLOAD, PAYLOAD_BITS, [0])),
            "device_to_cloud": tier(lambda t: t.add_device_cloud(PAYLOAD, PAYLOAD_BITS, [0])),
        }
    return {
        "scenario": scenario.name,
        "seed": seed,
        "devices": net.num_devices,
        "edge_servers": net.num_clusters,
        "area_side_m": net.topology.area_side_m,
        "clusters": {
            "count": net.num_clusters,
            "sizes": sizes.tolist(),
            "min_size": int(sizes.min()),
            "max_size": int(sizes.max()),
        },
        "available_devices": int(net.available.sum()),
        "d2d": {
            "radius_m": ch.d2d_radius_m,
            "edges": len(edge_data),
            "neighbour_edges": len(edge_data) - num_repair,
            "repair_edges": num_repair,
            # (a cluster without an available device has no graph to connect: not counted)
            "clusters_connected_before_repair": int(
                sum(g.graph["connected_before_repair"] and g.number_of_nodes() > 0
                    for g in graphs)
            ),
            "clusters_with_devices_available": int(sum(g.number_of_nodes() > 0
                                                       for g in graphs)),
            "heads": net.heads.tolist(),
        },
        "link_rates_bps": {
            "uplink": _stats(rates.uplink_bps),
            "downlink": _stats(rates.downlink_bps),
            "d2d": _stats(d2d_rates),
            "backhaul": _stats(np.array([ch.backhaul.rate_bps])),
        },
        "payload_bits": PAYLOAD_BITS,
        "payload_cost": payload_cost,
    }


def format_network_report(report: dict[str, Any]) -> str:
    """Human-readable text of a :func:`describe_network` report."""
    if not isinstance(report, dict):
        raise TypeError(f"report = {str(report)[:60]!r}: must be the dict describe_network "
                        "returns")
    missing = sorted(set(_REPORT_KEYS) - set(report))
    if missing:
        raise ValueError(f"report: lacks {missing}; give the dict describe_network returns")
    cl, d2d = report["clusters"], report["d2d"]
    lines = [
        f"Network of scenario {report['scenario']!r} (seed {report['seed']})",
        f"  {report['devices']} devices, {report['edge_servers']} edge servers, 1 cloud, "
        f"{report['area_side_m']:.0f} m x {report['area_side_m']:.0f} m",
        f"  {cl['count']} clusters of {cl['min_size']}..{cl['max_size']} devices; "
        f"{report['available_devices']} devices available",
        f"  D2D (radius {d2d['radius_m']:g} m): {d2d['edges']} edges = "
        f"{d2d['neighbour_edges']} within the radius + {d2d['repair_edges']} added to connect "
        "each cluster (the shortest links of a spanning tree); "
        f"{d2d['clusters_connected_before_repair']}/{cl['count']} clusters connected before "
        "repair" + ("" if d2d.get("clusters_with_devices_available", cl["count"]) == cl["count"]
                    else f" ({d2d['clusters_with_devices_available']} with a device "
                         "available)"),
        f"  cluster heads: {d2d['heads']}",
        "  link rates (bit/s):        min          mean           max",
    ]
    for kind, s in report["link_rates_bps"].items():
        lines.append(f"    {kind:<12} {s['min']:>14.4g} {s['mean']:>13.4g} {s['max']:>13.4g}")
    lines.append(f"  cost of a {report['payload_bits'] / 8e6:g} MB payload:   latency (s)  "
                 "energy (J)")
    for tier, c in report["payload_cost"].items():
        values = (c["latency_s"], c["energy_j"])
        if any(math.isnan(v) for v in values):
            note = "  (not priced: no device or D2D link available)"
        elif not all(math.isfinite(v) for v in values):
            note = ("  (overflows: a channel, compute or cost value is too extreme; the env "
                    "refuses a config whose rounds cost this)")
        else:
            note = "" if c["charged"] else "  (not charged in this scenario)"
        lines.append(f"    {tier:<24} {c['latency_s']:>11.4g} {c['energy_j']:>11.4g}{note}")
    return "\n".join(lines)
