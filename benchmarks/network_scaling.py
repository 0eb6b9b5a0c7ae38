"""How the network simulator's per-round cost grows with the number of devices.

For 40, 400 and 4,000 devices in clusters of 4 (one edge server per 4 devices; the area grows
with the number of servers so that the density stays that of the paper's network: 10 servers in
5 km x 5 km), the placement is done once, then each timed round does:

- ``begin_round``: redraw fading and all link rates, dropout, rebuild the D2D graphs (with MST
  repair), default heads;
- ``relay_paths``: shortest-latency paths from every device to its cluster head;
- ``build``: the transfers of an edge round: every device uplinks each of 5 module types
  (1e6 bits each), plus a D2D-to-head round in every cluster;
- ``account``: the cost accountant on that table.

Per phase the median over rounds is reported, and the growth ratio of the total from 400 to
4,000 devices (linear scaling is 10x; the target is at most 12x).

Usage: ``python benchmarks/network_scaling.py [--rounds R] [--per-cluster] [--json [FILE]]``
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _output import (
    add_json_option,
    emit_json,
    exit_status,
    help_texts,
    prepare_outputs,
)

from hffm_env import arguments
from hffm_env.config import PlacementConfig, ScenarioConfig, paper
from hffm_env.seeding import RandomStreams
from hffm_env.sim import Network, TransferTable, build_d2d_graphs, draw_link_rates

SIZES = (40, 400, 4000)
DEVICES_PER_CLUSTER = 4
MODULE_TYPES = ("encoder", "prompt", "moe", "adapter", "head")
MODULE_BITS = 1e6
TARGET_GROWTH = 12.0
PHASES = ("begin_round", "relay_paths", "build", "account")


def scaled_scenario(num_devices: int) -> ScenarioConfig:
    """The paper's network scaled to ``num_devices`` at the paper's server density."""
    base = paper()
    servers = num_devices // DEVICES_PER_CLUSTER
    side = base.placement.area_side_m * math.sqrt(servers / base.placement.num_edge_servers)
    placement = dataclasses.replace(
        base.placement, area_side_m=side, num_edge_servers=servers, num_devices=num_devices,
        devices_per_cluster=DEVICES_PER_CLUSTER,
    )
    assert isinstance(placement, PlacementConfig)
    return dataclasses.replace(base, name=f"paper-x{servers // 10}", placement=placement)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def _routes(net: Network) -> list[dict[int, list[int]]]:
    return [net.relay_paths(c) for c in range(net.num_clusters)]


def _build(
    net: Network, paths: list[dict[int, list[int]]], per_cluster: bool
) -> TransferTable:
    table = net.new_table()
    devices = np.arange(net.num_devices)
    for mtype in MODULE_TYPES:
        table.add_uplinks(f"{mtype}/all", MODULE_BITS, devices)
    if per_cluster:
        for c in range(net.num_clusters):
            table.add_d2d_to_head("adapter/d2d", MODULE_BITS, c, int(net.heads[c]),
                                  net.available_members(c), paths[c])
    else:
        table.add_d2d_to_heads("adapter/d2d", MODULE_BITS, net.heads, paths)
    table.flow  # noqa: B018 - consolidate the columns inside the build phase
    return table


def bench_size(
    num_devices: int, rounds: int, seed: int = 0, per_cluster: bool = False
) -> dict[str, Any]:
    """Median per-phase seconds of one round at ``num_devices`` devices. ``per_cluster``: build
    the D2D round with one ``add_d2d_to_head`` call per cluster instead of the bulk
    ``add_d2d_to_heads``."""
    scenario = scaled_scenario(num_devices)
    streams = RandomStreams.from_seed(seed)
    net = Network(scenario, streams)  # placement: once, not timed
    names = (*PHASES, "total", "rates", "d2d_graphs")
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds + 1):  # the first round warms caches and is dropped
        t_begin, _ = _timed(net.begin_round, streams)
        t_routes, paths = _timed(_routes, net)
        t_build, table = _timed(_build, net, paths, per_cluster)
        t_account, report = _timed(net.account, table)
        # Sub-phases of begin_round, timed on their own for the breakdown.
        t_rates, rates = _timed(draw_link_rates, net.channel, net.topology, streams.fading)
        t_graphs, _ = _timed(build_d2d_graphs, net.topology, rates,
                             scenario.channel.d2d_radius_m, net.available)
        total = t_begin + t_routes + t_build + t_account
        for name, value in zip(
            names, (t_begin, t_routes, t_build, t_account, total, t_rates, t_graphs)
        ):
            times[name].append(value)
    return {
        "devices": num_devices,
        "edge_servers": net.num_clusters,
        "area_side_m": scenario.placement.area_side_m,
        "hops": report.num_hops,
        "flows": report.num_flows,
        "latency_s": report.latency_s,
        "seconds": {name: statistics.median(v[1:]) for name, v in times.items()},
    }


def run(rounds: int, per_cluster: bool = False) -> dict[str, Any]:
    """Benchmark every size; returns the results and the 400 -> 4,000 growth ratios."""
    results = [bench_size(n, rounds, per_cluster=per_cluster) for n in SIZES]
    by_size = {r["devices"]: r["seconds"] for r in results}
    growth = {p: by_size[4000][p] / by_size[400][p] for p in (*PHASES, "total")}
    return {
        "rounds": rounds,
        "d2d_builder": "add_d2d_to_head per cluster" if per_cluster else "add_d2d_to_heads",
        "results": results,
        "growth_400_to_4000": growth,
        "target_growth": TARGET_GROWTH,
        "passes": growth["total"] <= TARGET_GROWTH,
    }


def format_table(out: dict[str, Any]) -> str:
    """The results as a text table (milliseconds)."""
    cols = (*PHASES, "total")
    header = f"{'devices':>8} {'servers':>8} {'hops':>7} " + " ".join(f"{c:>12}" for c in cols)
    lines = [f"network round, median of {out['rounds']} rounds (ms); D2D round built with "
             f"{out['d2d_builder']}", header]
    for r in out["results"]:
        s = r["seconds"]
        lines.append(f"{r['devices']:>8} {r['edge_servers']:>8} {r['hops']:>7} "
                     + " ".join(f"{1e3 * s[c]:>12.2f}" for c in cols))
    g = out["growth_400_to_4000"]
    lines.append(f"{'growth 400 -> 4000':>25} " + " ".join(f"{g[c]:>11.1f}x" for c in cols))
    lines.append("begin_round breakdown (ms): " + ", ".join(
        f"{r['devices']}: rates {1e3 * r['seconds']['rates']:.2f}, "
        f"d2d graphs {1e3 * r['seconds']['d2d_graphs']:.2f}" for r in out["results"]))
    verdict = "PASS" if out["passes"] else "MISS"
    lines.append(f"total growth {g['total']:.1f}x (target <= {out['target_growth']:.0f}x): "
                 f"{verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; the exit status."""
    parser = argparse.ArgumentParser(**help_texts(__doc__))
    parser.add_argument("--rounds", type=arguments.positive_int, default=7,
                        help="timed rounds per size (default 7)")
    parser.add_argument("--per-cluster", action="store_true",
                        help="build the D2D round with one add_d2d_to_head call per cluster")
    add_json_option(parser)
    args = parser.parse_args(argv)
    prepare_outputs(parser, args)
    out = run(args.rounds, args.per_cluster)
    print(format_table(out))
    emit_json(out, args.json)
    return exit_status(out["passes"])


if __name__ == "__main__":
    sys.exit(arguments.run_command(main, "network_scaling.py"))
