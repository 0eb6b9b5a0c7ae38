"""Rendering: the topology with this round's transfers beside the learning and cost curves
(``rgb_array``, and ``human`` in a matplotlib window), and a compact text summary (``ansi``).

An env keeps one figure for all its frames (:class:`RgbFrames`, :class:`HumanWindow`): the
axes, the legend and the artists are made once and only their data change per frame, since
building them anew took half of a frame's time."""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

RENDER_METADATA: dict[str, Any] = {"render_modes": ["human", "rgb_array", "ansi"],
                                   "render_fps": 4}
"""The env's ``metadata``: the render modes drawn here (also the preset ids' entry point's);
``render_fps`` paces ``human`` frames."""

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.text import Text

    from hffm_env.envs.hffm_env import HFFMEnv
    from hffm_env.sim.topology import Topology

__all__ = [
    "FramePainter",
    "HumanWindow",
    "RgbFrames",
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
FRAME_DPI = 96
FRAME_SIZE_PX = (960, 480)
"""A frame's ``(width, height)`` in pixels."""
CURVES = (("accuracy", "accuracy"), ("latency_s", "latency (s)"), ("energy_j", "energy (J)"))
"""The curve panels, top to bottom: the history key each plots and its axis label."""


def _place_xy(topology: Topology, kind: str, index: int) -> tuple[float, float]:
    """Where a node (:meth:`TransferTable.node_place`) is drawn."""
    if kind == "device":
        return tuple(topology.device_xy_m[index])
    if kind == "edge":
        return tuple(topology.server_xy_m[index])
    side = topology.area_side_m
    return (side / 2.0, side * 1.08)  # the cloud, drawn above the area


class FramePainter:
    """The frame's panels on one matplotlib ``Figure``: made once, then :meth:`paint` sets
    the data of the current round on the same artists (the topology with this round's
    transfers, colour: module type, line style: link kind; a legend; the accuracy, latency and
    energy per round with this round's numbers in the panel titles, "not measured" where the
    fidelity or the evaluation budget measured nothing)."""

    def __init__(self, figure: Figure) -> None:
        import matplotlib
        from matplotlib.collections import LineCollection

        self.figure = figure
        self._cmap = matplotlib.colormaps["tab10"]
        # fixed margins: the layout is the same every frame, and tight_layout would cost a draw
        grid = figure.add_gridspec(3, 3, width_ratios=(1.2, 0.32, 1.0), left=0.06, right=0.98,
                                   bottom=0.1, top=0.92, wspace=0.15, hspace=0.6)
        ax = self.topology_axes = figure.add_subplot(grid[:, 0])
        # lines in two collections, not an artist per line (frames of big rounds stay fast):
        # the D2D neighbours, and every hop with a colour and a line style per segment
        self._neighbours = LineCollection([], colors="0.8", linewidths=0.6, zorder=1)
        self._hops = LineCollection([], alpha=0.35, linewidths=1.0, zorder=2)
        for lines in (self._neighbours, self._hops):
            ax.add_collection(lines, autolim=False)
        empty = np.empty(0)
        self._devices = ax.scatter(empty, empty, s=14, zorder=3)
        self._servers = ax.scatter(empty, empty, marker="s", s=50, edgecolors="black",
                                   zorder=4)
        self._cloud = ax.scatter(empty, empty, marker="^", s=80, c="black", zorder=4)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)", fontsize=7)
        ax.set_ylabel("y (m)", fontsize=7)
        ax.tick_params(labelsize=6)
        legend_panel = figure.add_subplot(grid[:, 1])
        legend_panel.axis("off")
        legend_panel.legend(handles=_legend_handles(matplotlib), fontsize=6, loc="center",
                            frameon=False)
        self._curves: list[tuple[Axes, Line2D, Text]] = []
        for row, (_, label) in enumerate(CURVES):
            panel = figure.add_subplot(grid[row, 2])
            (line,) = panel.plot(empty, empty, marker=".", linewidth=1)
            why = panel.text(0.5, 0.5, "", transform=panel.transAxes, ha="center",
                             va="center", fontsize=8, color="0.4", visible=False)
            panel.set_ylabel(label, fontsize=7)
            panel.tick_params(labelsize=6)
            # plain tick labels: an offset ("+1.035") or exponent text above the axis would
            # move the title, which only a full draw places (a kept frame would overprint it)
            panel.ticklabel_format(axis="y", style="plain", useOffset=False)
            self._curves.append((panel, line, why))
        panel.set_xlabel("round", fontsize=7)

    @property
    def changing(self) -> list[Artist]:
        """What a frame changes, in the order a full draw draws it: every part of the axes
        but their background patch and the axes whose limits stay (the topology's x and y,
        the curves' round axis); the legend panel not at all. The rest looks the same while
        :attr:`still_look` does."""
        ax = self.topology_axes
        changing = _drawn_over(ax, still={ax.patch, ax.xaxis, ax.yaxis})
        for panel, _, _ in self._curves:
            changing += _drawn_over(panel, still={panel.patch, panel.xaxis})
        return changing

    @property
    def still_look(self) -> tuple[tuple[float, float], ...]:
        """What the parts a frame does not change depend on: the limits of the topology and
        of the curves' round axes."""
        ax = self.topology_axes
        return (ax.get_xlim(), ax.get_ylim(), *(panel.get_xlim() for panel, _, _ in self._curves))

    def paint(self, env: HFFMEnv) -> None:
        """Set the current round of ``env`` on the artists (nothing is drawn yet)."""
        from matplotlib.ticker import AutoLocator, NullLocator

        played = env.played_round  # the round the frame shows, not the next one already drawn
        topology = played.topology
        self._neighbours.set_segments(
            [(topology.device_xy_m[i], topology.device_xy_m[j])
             for graph in played.d2d_graphs for i, j in graph.edges])
        # segments grouped by look, in the order the looks first appear: drawn in the order
        # that a collection per look drew them (overlaps blend the same)
        hops: dict[tuple[str, str], list[tuple[tuple[float, float], tuple[float, float]]]] = {}
        result = env.last_result
        if result is not None:
            table = result.transfers
            for flow in table.flows():
                route = flow["route"]
                colour = MODULE_COLOURS.get(flow["module_type"], "black")
                for (a, b), kind in zip(zip(route[:-1], route[1:]), flow["link_kinds"]):
                    look = (colour, LINK_STYLES.get(kind, "-"))
                    hops.setdefault(look, []).append(
                        (_place_xy(topology, *table.node_place(a)),
                         _place_xy(topology, *table.node_place(b))))
        looks = [look for look, segments in hops.items() for _ in segments]
        self._hops.set_segments([s for segments in hops.values() for s in segments])
        if looks:  # (an empty collection keeps its last colours: none of them is drawn)
            self._hops.set_color([colour for colour, _ in looks])
            # (Any: matplotlib types line styles as literals, LINK_STYLES holds str)
            styles: list[Any] = [style for _, style in looks]
            self._hops.set_linestyle(styles)
        cmap = self._cmap
        self._devices.set_offsets(topology.device_xy_m)
        self._devices.set_facecolor([cmap(c % 10) for c in topology.cluster_of_device])
        self._devices.set_edgecolor(["none" if a else "black" for a in played.available])
        self._servers.set_offsets(topology.server_xy_m)
        self._servers.set_facecolor([cmap(c % 10) for c in range(topology.num_clusters)])
        self._cloud.set_offsets([_place_xy(topology, "cloud", 0)])
        ax = self.topology_axes
        ax.set_xlim(-0.02 * topology.area_side_m, 1.02 * topology.area_side_m)
        ax.set_ylim(-0.02 * topology.area_side_m, 1.14 * topology.area_side_m)
        ax.set_title(f"{env.config.name}: round {env.rounds_done}/{env.config.env.episode_rounds}"
                     f" ({env.fidelity} fidelity)", fontsize=9)

        history = env.history
        rounds = np.array([h["round"] for h in history])
        latest = {
            "accuracy": env.scores["accuracy"].get("mean", float("nan")),
            "latency_s": result.cost.latency_s if result else float("nan"),
            "energy_j": result.cost.energy_j if result else float("nan"),
        }
        totals = {"latency_s": (env.cumulative_latency_s, "s"),
                  "energy_j": (env.cumulative_energy_j, "J")}
        for (key, label), (panel, line, why) in zip(CURVES, self._curves):
            values = np.array([h[key] for h in history], dtype=np.float64)
            finite = np.isfinite(values)
            line.set_data(rounds[finite], values[finite])
            panel.set_xlim(0, max(env.config.env.episode_rounds, 1))
            # the y range from this frame's points only: (0, 1) is a new panel's view, from
            # which autoscaling without points picks what a new panel shows
            panel.relim()
            panel.set_ylim(0, 1, auto=True)
            panel.autoscale_view(scalex=False)
            value = latest[key]
            measured = math.isfinite(value)
            why.set_visible(not measured)
            panel.yaxis.set_major_locator(AutoLocator() if measured else NullLocator())
            if not measured:
                why.set_text("not measured" + (" (cost fidelity)" if env.fidelity == "cost"
                                               else ""))
                panel.set_title(f"{label}: not measured", fontsize=7, loc="left")
            elif key in totals:
                why.set_text("")
                total, unit = totals[key]
                panel.set_title(f"round {env.rounds_done}: {value:.3g} {unit}, "
                                f"episode total {total:.3g} {unit}", fontsize=7, loc="left")
            else:
                why.set_text("")
                kind = "predicted" if env.fidelity == "surrogate" else "measured"
                panel.set_title(f"round {env.rounds_done}: {value:.3f} (mean global, {kind})",
                                fontsize=7, loc="left")


def _drawn_over(axes: Axes, still: set[Artist]) -> list[Artist]:
    """The parts of ``axes`` but ``still``, in the order ``Axes.draw`` draws them (by
    zorder, stable): drawn over the still parts, they give the same pixels as a full draw
    wherever they do not overlap those (the still axes' ticks point out of the data area)."""
    return sorted((artist for artist in axes.get_children() if artist not in still),
                  key=lambda artist: artist.get_zorder())


def _figure_size(width_px: int, height_px: int) -> dict[str, Any]:
    """The ``figsize`` and ``dpi`` of a figure of that many pixels."""
    return {"figsize": (width_px / FRAME_DPI, height_px / FRAME_DPI), "dpi": FRAME_DPI}


def _new_figure(width_px: int, height_px: int) -> Figure:
    """A ``Figure`` of that size, outside pyplot (nothing to close, no window)."""
    from matplotlib.figure import Figure

    return Figure(**_figure_size(width_px, height_px))


class RgbFrames:
    """An env's ``rgb_array`` frames: one figure on one Agg canvas (made at the first frame;
    nothing to close). What a frame does not change (:attr:`FramePainter.changing`) is drawn
    once and kept as pixels; each frame restores them and draws the rest over them, the same
    picture as a full draw in less time (the legend and the topology's ticks were a third of
    a draw)."""

    def __init__(self, width_px: int = FRAME_SIZE_PX[0],
                 height_px: int = FRAME_SIZE_PX[1]) -> None:
        self.width_px = width_px
        self.height_px = height_px
        self._painter: FramePainter | None = None
        self._canvas: FigureCanvasAgg | None = None
        self._still: Any = None  # the canvas's pixels of the parts that do not change
        self._still_look: Any = None  # ... and what they looked like (FramePainter.still_look)

    def frame(self, env: HFFMEnv) -> np.ndarray:
        """An ``(H, W, 3)`` uint8 picture of the current round of ``env``, a copy of its own
        (the canvas is drawn over at the next frame)."""
        if self._painter is None or self._canvas is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            figure = _new_figure(self.width_px, self.height_px)
            self._canvas = FigureCanvasAgg(figure)
            self._painter = FramePainter(figure)
            for artist in self._painter.changing:  # left out of a full draw: drawn by hand
                artist.set_animated(True)
        painter, canvas = self._painter, self._canvas
        painter.paint(env)
        if self._still is None or painter.still_look != self._still_look:
            canvas.draw()
            self._still = canvas.copy_from_bbox(painter.figure.bbox)
            self._still_look = painter.still_look
        else:
            canvas.restore_region(self._still)
        for artist in painter.changing:
            painter.figure.draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        """Let the figure go."""
        self._painter = self._canvas = self._still = self._still_look = None


class HumanWindow:
    """An env's ``human`` frames: one pyplot figure, painted anew at each frame and paced at
    ``fps``. With an interactive backend it is a window (reopened if the user closed it);
    under a non-interactive one (Agg: headless runs, CI) the frame is only painted into the
    figure's canvas, without a warning or a wait. :meth:`close` closes it."""

    def __init__(self, fps: float, title: str = "hffm", width_px: int = FRAME_SIZE_PX[0],
                 height_px: int = FRAME_SIZE_PX[1]) -> None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) \
                or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"metadata['render_fps'] = {fps!r}: must be a finite number > 0 "
                             "(human frames are paced at it)")
        self.fps = float(fps)
        self.title = title
        self.width_px = width_px
        self.height_px = height_px
        self._painter: FramePainter | None = None
        self._closer: weakref.finalize | None = None  # closes the window if never closed

    def show(self, env: HFFMEnv) -> None:
        """Draw the current round of ``env``; with an interactive backend, show it and run the
        window's event loop for ``1 / fps`` seconds (what ``pyplot.pause`` does, for this
        figure only: the user's current figure stays current)."""
        import matplotlib.pyplot as plt

        # a new window at the first frame, and after the user closed the last one
        opened = self._painter is None or not _managed_by_pyplot(self._painter.figure)
        if opened or self._painter is None:
            figure = self._open(plt)
            self._painter = FramePainter(figure)
            # pyplot keeps every figure until it is closed: an env dropped without close()
            # (a notebook cell run again, sub-envs of a vector env) closes its window here
            self._closer = weakref.finalize(self, plt.close, figure)
            self._closer.atexit = False  # (at exit pyplot is being torn down itself)
        painter = self._painter
        painter.paint(env)
        canvas = painter.figure.canvas
        # matplotlib's mark of a GUI canvas; None: Agg and the file backends, which have no
        # window to show (pyplot.pause would warn, then sleep). There the frame is painted,
        # not drawn: nobody sees it unless it is saved, and savefig draws (a draw per step,
        # 0.2 s, would slow a headless run that left human mode on)
        if type(canvas).required_interactive_framework is None:
            return
        if opened:
            painter.figure.show()
        canvas.draw_idle()
        canvas.start_event_loop(1.0 / self.fps)

    def _open(self, plt: Any) -> Figure:
        current = plt.gcf() if plt.get_fignums() else None
        figure = plt.figure(**_figure_size(self.width_px, self.height_px))
        if figure.canvas.manager is not None:
            figure.canvas.manager.set_window_title(self.title)
        if current is not None:  # pyplot made the new figure current: give the user's back
            plt.figure(current)
        return figure

    def close(self) -> None:
        """Close the window (a later frame opens a new one)."""
        if self._closer is not None:
            self._closer()  # plt.close of the window, once
        self._painter = self._closer = None


def _managed_by_pyplot(figure: Figure) -> bool:
    """Whether pyplot still holds ``figure`` (its window not closed). By identity: pyplot
    gives a closed figure's number to the next new one."""
    from matplotlib._pylab_helpers import Gcf  # (pyplot's own registry of figures)

    manager = figure.canvas.manager
    return manager is not None and any(m is manager for m in Gcf.get_all_fig_managers())


def render_rgb(env: HFFMEnv, width_px: int = FRAME_SIZE_PX[0],
               height_px: int = FRAME_SIZE_PX[1]) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 picture of the current round, :func:`render_figure` drawn in
    full (an env's ``render`` reuses one figure and its still parts: :class:`RgbFrames`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(render_figure(env, width_px, height_px))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def render_figure(env: HFFMEnv, width_px: int = FRAME_SIZE_PX[0],
                  height_px: int = FRAME_SIZE_PX[1]) -> Figure:
    """A new matplotlib ``Figure`` of the current round (:class:`FramePainter`)."""
    figure = _new_figure(width_px, height_px)
    FramePainter(figure).paint(env)
    return figure


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
