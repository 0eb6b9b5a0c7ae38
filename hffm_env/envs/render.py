"""Rendering: the topology with this round's transfers beside the learning and cost curves
(``rgb_array``), and a compact text summary (``ansi``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hffm_env.config import MODULE_TYPES

if TYPE_CHECKING:
    from hffm_env.envs.hffm_env import HFFMEnv

__all__ = ["render_rgb", "render_ansi"]

MODULE_COLOURS = {
    "encoder": "tab:blue",
    "prompt": "tab:orange",
    "moe": "tab:green",
    "adapter": "tab:red",
    "head": "tab:purple",
}
LINK_STYLES = {"d2d": ":", "uplink": "-", "downlink": "-", "backhaul": "--", "device_cloud": "-."}


def _node_xy(env: HFFMEnv, node: int) -> tuple[float, float]:
    topology = env.network.topology
    n = topology.num_devices
    if node < n:
        return tuple(topology.device_xy_m[node])  # type: ignore[return-value]
    if node < n + topology.num_clusters:
        return tuple(topology.server_xy_m[node - n])  # type: ignore[return-value]
    side = topology.area_side_m
    return (side / 2.0, side * 1.08)  # the cloud, drawn above the area


def render_rgb(env: HFFMEnv, width_px: int = 960, height_px: int = 480) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture of the current round."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 96
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    grid = fig.add_gridspec(3, 2, width_ratios=(1.2, 1.0))
    ax = fig.add_subplot(grid[:, 0])
    topology = env.network.topology
    cmap = matplotlib.colormaps["tab10"]
    for graph in env.network.d2d_graphs:
        for i, j in graph.edges:
            (x0, y0), (x1, y1) = topology.device_xy_m[i], topology.device_xy_m[j]
            ax.plot([x0, x1], [y0, y1], color="0.8", linewidth=0.6, zorder=1)
    result = env._last_result
    if result is not None:
        for flow in result.transfers.flows():
            route = flow["route"]
            colour = MODULE_COLOURS.get(flow["module"].split("/")[0], "black")
            for hop, kind in zip(zip(route[:-1], route[1:]), flow["link_kinds"]):
                (x0, y0), (x1, y1) = _node_xy(env, hop[0]), _node_xy(env, hop[1])
                ax.plot([x0, x1], [y0, y1], color=colour, alpha=0.35, linewidth=1.0,
                        linestyle=LINK_STYLES.get(kind, "-"), zorder=2)
    colours = [cmap(c % 10) for c in topology.cluster_of_device]
    available = env.network.available
    ax.scatter(topology.device_xy_m[:, 0], topology.device_xy_m[:, 1], s=14, c=colours,
               edgecolors=["none" if a else "black" for a in available], zorder=3)
    ax.scatter(topology.server_xy_m[:, 0], topology.server_xy_m[:, 1], marker="s", s=50,
               c=[cmap(c % 10) for c in range(topology.num_clusters)], edgecolors="black",
               zorder=4)
    cx, cy = _node_xy(env, topology.num_devices + topology.num_clusters)
    ax.scatter([cx], [cy], marker="^", s=80, c="black", zorder=4)
    ax.set_xlim(-0.02 * topology.area_side_m, 1.02 * topology.area_side_m)
    ax.set_ylim(-0.02 * topology.area_side_m, 1.14 * topology.area_side_m)
    ax.set_aspect("equal")
    ax.set_title(f"{env.config.name}: round {env.rounds_done}", fontsize=9)
    ax.tick_params(labelsize=6)
    handles = [matplotlib.lines.Line2D([], [], color=c, label=t)
               for t, c in MODULE_COLOURS.items()]
    ax.legend(handles=handles, fontsize=6, loc="lower right")

    history = env._history
    rounds = [h["round"] for h in history]
    for row, (key, label) in enumerate(
        (("accuracy", "accuracy"), ("latency_s", "latency (s)"), ("energy_j", "energy (J)"))
    ):
        panel = fig.add_subplot(grid[row, 1])
        panel.plot(rounds, [h[key] for h in history], marker=".", linewidth=1)
        panel.set_ylabel(label, fontsize=7)
        panel.tick_params(labelsize=6)
        panel.set_xlim(0, max(env.config.env.episode_rounds, 1))
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def render_ansi(env: HFFMEnv) -> str:
    """A few lines: round, accuracy, this round's and the cumulative cost, the schedule."""
    lines = [f"[{env.config.name}] round {env.rounds_done}/{env.config.env.episode_rounds}"]
    acc = env._accuracy
    lines.append("  accuracy " + " ".join(f"{t}={v:.3f}" for t, v in acc.items()))
    result = env._last_result
    if result is not None:
        lines.append(
            f"  round cost: {result.cost.latency_s:.3f} s, {result.cost.energy_j:.3f} J; "
            f"total {env.cumulative_latency_s:.2f} s, {env.cumulative_energy_j:.2f} J"
        )
    if env._last_schedule is not None:
        tiers = env._last_schedule.to_dict()["tiers"]
        lines.append("  tiers " + " ".join(f"{t}={tiers[t]}" for t in MODULE_TYPES))
    dropped = np.flatnonzero(~env.network.available)
    lines.append(f"  available {len(env.network.available) - len(dropped)}"
                 f"/{len(env.network.available)}, pending requests {len(env.engine.pending)}")
    return "\n".join(lines) + "\n"
