"""Rendering: the topology with this round's transfers beside the learning and cost curves
(``rgb_array``), and a compact text summary (``ansi``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

RENDER_METADATA: dict[str, Any] = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}
"""The env's ``metadata``: the render modes drawn here (also the preset ids' entry point's)."""

if TYPE_CHECKING:
    from hffm_env.envs.hffm_env import HFFMEnv

__all__ = [
    "render_ansi",
    "render_figure",
    "render_rgb",
    "RENDER_METADATA",
]

MODULE_COLOURS = {
    "encoder": "tab:blue",
    "prompt": "tab:orange",
    "moe": "tab:green",
    "adapter": "tab:red",
    "head": "tab:purple",
}
LINK_STYLES = {"d2d": ":", "uplink": "-", "downlink": "-", "backhaul": "--", "device_cloud": "-."}


def _node_xy(env: HFFMEnv, node: int) -> tuple[float, float]:
    topology = env.played_round.topology
    n = topology.num_devices
    if node < n:
        return tuple(topology.device_xy_m[node])
    if node < n + topology.num_clusters:
        return tuple(topology.server_xy_m[node - n])
    side = topology.area_side_m
    return (side / 2.0, side * 1.08)  # the cloud, drawn above the area


def render_rgb(env: HFFMEnv, width_px: int = 960, height_px: int = 480) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture of the current round (:func:`render_figure`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(render_figure(env, width_px, height_px))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def render_figure(env: HFFMEnv, width_px: int = 960, height_px: int = 480) -> Any:
    """The matplotlib ``Figure`` of the current round: the topology with this round's
    transfers (colour: module type, line style: link kind) and a legend, beside the accuracy,
    latency and energy per round with this round's numbers in the panel titles ("not
    measured" where the fidelity or the evaluation budget measured nothing)."""
    import matplotlib
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    dpi = 96
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    # fixed margins: the layout is the same every frame, and tight_layout would cost a draw
    grid = fig.add_gridspec(3, 3, width_ratios=(1.2, 0.32, 1.0), left=0.06, right=0.98,
                            bottom=0.1, top=0.92, wspace=0.15, hspace=0.6)
    ax = fig.add_subplot(grid[:, 0])
    played = env.played_round  # the round the frame shows, not the next one already drawn
    topology = played.topology
    cmap = matplotlib.colormaps["tab10"]
    # one collection of lines per look (not an artist per line: frames of big rounds stay fast)
    neighbours = [(topology.device_xy_m[i], topology.device_xy_m[j])
                  for graph in played.d2d_graphs for i, j in graph.edges]
    ax.add_collection(LineCollection(neighbours, colors="0.8", linewidths=0.6, zorder=1))
    hops: dict[tuple[str, str], list[tuple[tuple[float, float], tuple[float, float]]]] = {}
    result = env.last_result
    if result is not None:
        for flow in result.transfers.flows():
            route = flow["route"]
            colour = MODULE_COLOURS.get(flow["module_type"], "black")
            for (a, b), kind in zip(zip(route[:-1], route[1:]), flow["link_kinds"]):
                look = (colour, LINK_STYLES.get(kind, "-"))
                hops.setdefault(look, []).append((_node_xy(env, a), _node_xy(env, b)))
    for (colour, style), segments in hops.items():
        ax.add_collection(LineCollection(segments, colors=colour, alpha=0.35, linewidths=1.0,
                                         linestyles=style, zorder=2))
    colours = [cmap(c % 10) for c in topology.cluster_of_device]
    available = played.available
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
    ax.set_title(f"{env.config.name}: round {env.rounds_done}/{env.config.env.episode_rounds}"
                 f" ({env.fidelity} fidelity)", fontsize=9)
    ax.set_xlabel("x (m)", fontsize=7)
    ax.set_ylabel("y (m)", fontsize=7)
    ax.tick_params(labelsize=6)
    legend_panel = fig.add_subplot(grid[:, 1])
    legend_panel.axis("off")
    legend_panel.legend(handles=_legend_handles(matplotlib), fontsize=6, loc="center",
                        frameon=False)

    history = env.history
    rounds = np.array([h["round"] for h in history])
    result = env.last_result
    latest = {
        "accuracy": env.scores["accuracy"].get("mean", float("nan")),
        "latency_s": result.cost.latency_s if result else float("nan"),
        "energy_j": result.cost.energy_j if result else float("nan"),
    }
    totals = {"latency_s": (env.cumulative_latency_s, "s"),
              "energy_j": (env.cumulative_energy_j, "J")}
    for row, (key, label) in enumerate(
        (("accuracy", "accuracy"), ("latency_s", "latency (s)"), ("energy_j", "energy (J)"))
    ):
        panel = fig.add_subplot(grid[row, 2])
        values = np.array([h[key] for h in history], dtype=np.float64)
        finite = np.isfinite(values)
        panel.plot(rounds[finite], values[finite], marker=".", linewidth=1)
        panel.set_ylabel(label, fontsize=7)
        panel.tick_params(labelsize=6)
        panel.set_xlim(0, max(env.config.env.episode_rounds, 1))
        value = latest[key]
        if not math.isfinite(value):
            why = "not measured" + (" (cost fidelity)" if env.fidelity == "cost" else "")
            panel.text(0.5, 0.5, why, transform=panel.transAxes, ha="center", va="center",
                       fontsize=8, color="0.4")
            panel.set_title(f"{label}: not measured", fontsize=7, loc="left")
            panel.set_yticks([])
        elif key in totals:
            total, unit = totals[key]
            panel.set_title(f"round {env.rounds_done}: {value:.3g} {unit}, "
                            f"episode total {total:.3g} {unit}", fontsize=7, loc="left")
        else:
            kind = "predicted" if env.fidelity == "surrogate" else "measured"
            panel.set_title(f"round {env.rounds_done}: {value:.3f} (mean global, {kind})",
                            fontsize=7, loc="left")
    panel.set_xlabel("round", fontsize=7)
    return fig


def _legend_handles(matplotlib: Any) -> list[Any]:
    """What the topology's marks mean: module types by colour, link kinds by line style,
    devices, edge servers and the cloud by marker."""
    line = matplotlib.lines.Line2D
    handles = [line([], [], color=c, label=t) for t, c in MODULE_COLOURS.items()]
    handles += [line([], [], color="0.3", linestyle=style, label=kind.replace("_", "-"))
                for kind, style in LINK_STYLES.items() if kind != "downlink"]
    handles += [
        line([], [], marker="o", linestyle="", color="tab:blue", markersize=4,
             label="device (colour: cluster)"),
        line([], [], marker="o", linestyle="", color="tab:blue", markeredgecolor="black",
             markersize=4, label="device, dropped out"),
        line([], [], marker="s", linestyle="", color="tab:blue", markeredgecolor="black",
             markersize=5, label="edge server"),
        line([], [], marker="^", linestyle="", color="black", markersize=5, label="cloud"),
        line([], [], color="0.8", linewidth=0.6, label="D2D neighbours"),
    ]
    return handles


def render_ansi(env: HFFMEnv) -> str:
    """A few lines: round, accuracy, this round's and the cumulative cost, the schedule."""
    lines = [f"[{env.config.name}] round {env.rounds_done}/{env.config.env.episode_rounds}"]
    acc = env.scores["accuracy"]
    if all(math.isfinite(v) for v in acc.values()):
        lines.append("  accuracy " + " ".join(f"{t}={v:.3f}" for t, v in acc.items()))
    else:
        lines.append("  accuracy not measured")
    result = env.last_result
    if result is not None:
        lines.append(
            f"  round cost: {result.cost.latency_s:.3f} s, {result.cost.energy_j:.3f} J; "
            f"total {env.cumulative_latency_s:.2f} s, {env.cumulative_energy_j:.2f} J"
        )
    if env.last_schedule is not None:
        schedule = env.last_schedule
        lines.append("  tiers " + " ".join(f"{t}={tier}"
                                           for t, tier in schedule.tier_names().items()))
    available = env.played_round.available
    lines.append(f"  available {int(available.sum())}/{len(available)} in that round, pending "
                 f"requests {len(env.pending)}")
    return "\n".join(lines) + "\n"
