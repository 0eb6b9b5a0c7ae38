"""The observation vector, slice by slice (all values clipped to [0, 1], float32).

| slice | size | meaning |
| --- | --- | --- |
| ``round`` | 1 | rounds done / ``env.episode_rounds`` |
| ``accuracy/<task>`` | K | global test accuracy per task (0 in cost fidelity) |
| ``loss/<task>`` | K | mean training loss per task / (2 ln classes); 0 in cost |
| ``staleness/<type>/<tier>`` | 2T | rounds since aggregated at the edge / cloud, / 8 (at most 1) |
| ``drift/<type>/<scope>`` | 2T | copies' distance to cluster / global mean, d/(1+d); 0 in cost |
| ``cluster/<c>/uplink`` | C | log10 of the members' mean uplink rate (bit/s) / 10 |
| ``cluster/<c>/d2d_rate`` | C | log10 of the mean D2D link rate (bit/s) over the D2D graph / 10 |
| ``cluster/<c>/d2d_density`` | C | D2D graph edges / possible pairs of its members (1 for one) |
| ``cluster/<c>/available`` | C | fraction of the cluster's devices available this round |
| ``budget/energy`` | 1 | energy used / budget (or / star reference x episode rounds) |
| ``budget/latency`` | 1 | latency used / (star reference x episode rounds) |
| ``target/reached`` | 1 | 1 once a round's reward accuracy reached ``env.target_accuracy`` else 0 |
| ``target/gap`` | 1 | target minus the last measured reward accuracy, at least 0 |
| ``request/<r>/...`` | 3P | present; is a head (else a prompt); share of the cluster holding it |

The ``target/`` entries are there only with ``env.observe_target=true`` (off by default, so
that the observation of agents trained without them keeps its shape).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from hffm_env.config import MODULE_TYPES

__all__ = ["Observation", "ObservationInputs"]

STALENESS_SCALE_ROUNDS = 8.0
"""Staleness is observed in units of this many rounds and clipped at 1: fixed, not taken from
the period menu or the horizon, so that agents keep their observation across both (8 or more
rounds since an aggregation read alike)."""


@dataclass(frozen=True)
class ObservationInputs:
    """Everything the observation is made of, gathered by the env each step (unmeasured
    accuracies and losses are NaN or absent and observed as 0)."""

    round_fraction: float
    accuracy: dict[str, float]
    loss: dict[str, float]
    num_classes: dict[str, int]
    since_edge: dict[str, int]
    since_cloud: dict[str, int]
    drift: dict[str, tuple[float, float]]
    cluster_uplink_bps: np.ndarray
    cluster_d2d_bps: np.ndarray
    cluster_d2d_density: np.ndarray
    cluster_available: np.ndarray
    energy_used_fraction: float
    latency_used_fraction: float
    requests: list[tuple[bool, float]]  # per pending request: (is a head, holders' share)
    target_reached: bool = False  # the reward's accuracy reached the target this episode
    target_gap: float = 0.0  # target minus the last measured reward accuracy (NaN: unmeasured)


class Observation:
    """The observation of one env: its names, its space and its values, all read off one list
    of named features (:meth:`features`), so names and values cannot drift apart.

    Args:
        tasks: the scenario's tasks, in order.
        num_classes: classes per task (scales the losses).
        num_clusters: clusters ``C``.
        num_requests: request slots ``P``.
        observe_target: add the ``target/`` entries.
    """

    def __init__(self, tasks: tuple[str, ...], num_classes: dict[str, int], num_clusters: int,
                 num_requests: int, observe_target: bool = False) -> None:
        self.tasks = tuple(tasks)
        self.observe_target = bool(observe_target)
        self.num_classes = dict(num_classes)
        self.num_clusters = int(num_clusters)
        self.num_requests = int(num_requests)
        blank = ObservationInputs(
            round_fraction=0.0, accuracy={}, loss={}, num_classes=self.num_classes,
            since_edge=dict.fromkeys(MODULE_TYPES, 0), since_cloud=dict.fromkeys(MODULE_TYPES, 0),
            drift={}, cluster_uplink_bps=np.ones(num_clusters),
            cluster_d2d_bps=np.ones(num_clusters), cluster_d2d_density=np.zeros(num_clusters),
            cluster_available=np.zeros(num_clusters), energy_used_fraction=0.0,
            latency_used_fraction=0.0, requests=[],
        )
        self.names: list[str] = [name for name, _ in self.features(blank)]
        """The name of every entry, in order."""
        self.space = spaces.Box(0.0, 1.0, shape=(len(self.names),), dtype=np.float32)
        """``Box(0, 1, (D,), float32)``."""

    def build(self, x: ObservationInputs) -> np.ndarray:
        """The observation vector for ``x``."""
        return np.fromiter((value for _, value in self.features(x)), dtype=np.float32,
                           count=len(self.names))

    def features(self, x: ObservationInputs) -> Iterator[tuple[str, float]]:
        """Every ``(name, value in [0, 1])``, in order (the module docstring's table)."""
        yield "round", _unit(x.round_fraction)
        for t in self.tasks:
            yield f"accuracy/{t}", _unit(x.accuracy.get(t, 0.0))
        for t in self.tasks:
            scale = 2.0 * math.log(max(self.num_classes[t], 2))
            yield f"loss/{t}", _unit(x.loss.get(t, 0.0) / scale)
        for t in MODULE_TYPES:
            yield f"staleness/{t}/edge", _unit(x.since_edge[t] / STALENESS_SCALE_ROUNDS)
            yield f"staleness/{t}/cloud", _unit(x.since_cloud[t] / STALENESS_SCALE_ROUNDS)
        for t in MODULE_TYPES:
            cluster, glob = x.drift.get(t, (0.0, 0.0))
            yield f"drift/{t}/cluster", _unit(cluster / (1.0 + cluster))
            yield f"drift/{t}/global", _unit(glob / (1.0 + glob))
        per_cluster = (("uplink", _log_rate(x.cluster_uplink_bps)),
                       ("d2d_rate", _log_rate(x.cluster_d2d_bps)),
                       ("d2d_density", x.cluster_d2d_density),
                       ("available", x.cluster_available))
        for key, values in per_cluster:
            for c in range(self.num_clusters):
                yield f"cluster/{c}/{key}", _unit(float(values[c]))
        yield "budget/energy", _unit(x.energy_used_fraction)
        yield "budget/latency", _unit(x.latency_used_fraction)
        if self.observe_target:
            yield "target/reached", float(x.target_reached)
            yield "target/gap", _unit(x.target_gap)
        for r in range(self.num_requests):
            present = r < len(x.requests)
            is_head, holders = x.requests[r] if present else (False, 0.0)
            yield f"request/{r}/present", float(present)
            yield f"request/{r}/is_head", float(is_head)
            yield f"request/{r}/holders", _unit(holders)


def _unit(value: float) -> float:
    # plain float arithmetic: np.clip on one number is ~20x slower, and this runs ~50x a step
    # NaN (not measured) is 0; an infinite fraction saturates (+inf is 1: a budget overrun
    # by more than a float holds is still overrun)
    value = float(value)
    return min(max(value, 0.0), 1.0) if not math.isnan(value) else 0.0


def _log_rate(bps: np.ndarray) -> np.ndarray:
    return np.clip(np.log10(np.maximum(np.asarray(bps, dtype=np.float64), 1.0)) / 10.0, 0.0, 1.0)
