"""Optional per-round dynamics: random-waypoint mobility and device dropout (all seeded)."""

from __future__ import annotations

from typing import cast

import numpy as np

from hffm_env.config import DynamicsConfig
from hffm_env.sim.topology import Topology, sample_in_disc
from hffm_env.values import is_finite_real

__all__ = ["RandomWaypoint", "draw_available"]

_WAYPOINT_ATTEMPTS = 100


class RandomWaypoint:
    """Random-waypoint mobility that keeps every device in its cluster's home disc.

    Each device has a constant speed drawn uniformly in ``[speed_mps_min, speed_mps_max]`` and a
    waypoint drawn uniformly in its cluster's home disc (``topology.cluster_centre_xy_m``,
    ``topology.cluster_radius_m``) intersected with the area. Each :meth:`step` moves every
    device straight toward its waypoint for ``round_duration_s``; a device that reaches its
    waypoint stops there for the rest of the round and draws a new waypoint (no pause time, no
    carry-over of the remaining travel time). Waypoints lie in the area, which is convex, so
    devices never leave it. Cluster membership does not change: the disc keeps a cluster's
    devices around their edge server.
    """

    def __init__(self, topology: Topology, config: DynamicsConfig,
                 rng: np.random.Generator) -> None:
        self.topology = topology
        self.config = config
        self.device_xy_m = np.array(topology.device_xy_m, dtype=np.float64)
        n = topology.num_devices
        # (+ 0.0: a -0.0 bound, which the config takes as 0, is the 0 numpy takes)
        self.speed_mps = rng.uniform(config.speed_mps_min + 0.0, config.speed_mps_max + 0.0,
                                     size=n)
        self.waypoint_xy_m = self._draw_waypoints(np.arange(n), rng)

    def _draw_waypoints(self, devices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cluster = self.topology.cluster_of_device[devices]
        # the home discs are filled in by Topology.__post_init__ when not given
        centre = cast(np.ndarray, self.topology.cluster_centre_xy_m)
        radius = cast(np.ndarray, self.topology.cluster_radius_m)
        return sample_in_disc(
            centre[cluster],
            radius[cluster],
            self.topology.area_side_m,
            rng,
            _WAYPOINT_ATTEMPTS,
        )

    def step(self, rng: np.random.Generator) -> np.ndarray:
        """Advance one round; returns (a copy of) the new ``(N, 2)`` device positions."""
        delta = self.waypoint_xy_m - self.device_xy_m
        dist = np.hypot(delta[:, 0], delta[:, 1])
        travel = self.speed_mps * self.config.round_duration_s
        arrived = travel >= dist
        frac = np.where(arrived, 1.0, travel / np.where(dist > 0, dist, 1.0))
        self.device_xy_m = np.clip(
            self.device_xy_m + delta * frac[:, None], 0.0, self.topology.area_side_m
        )
        done = np.flatnonzero(arrived)
        if done.size:
            self.waypoint_xy_m[done] = self._draw_waypoints(done, rng)
        return self.device_xy_m.copy()


def draw_available(rng: np.random.Generator, num_devices: int, dropout_prob: float) -> np.ndarray:
    """``(N,)`` bool: each device independently drops out with ``dropout_prob`` this round.

    Always draws ``num_devices`` uniforms, so the random stream does not depend on the value.
    ``dropout_prob`` outside [0, 1] raises ``ValueError`` (1.5 dropped every device silently)."""
    if not (is_finite_real(dropout_prob) and 0.0 <= dropout_prob <= 1.0):
        raise ValueError(f"dropout_prob = {dropout_prob!r}: must be a probability in [0, 1]")
    return rng.random(num_devices) >= dropout_prob
