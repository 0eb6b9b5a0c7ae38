"""The observation vector, slice by slice (all values clipped to [0, 1], float32).

| slice | size | meaning |
| --- | --- | --- |
| ``round`` | 1 | rounds done / ``env.episode_rounds`` |
| ``accuracy/<task>`` | K | global test accuracy per task (0 in cost fidelity) |
| ``loss/<task>`` | K | mean training loss per task / (2 ln classes) |
| ``staleness/<type>/<tier>`` | 2T | rounds since the type was aggregated at the edge / cloud, / 8 |
| ``drift/<type>/<scope>`` | 2T | device copies' distance to their cluster / global mean, d/(1+d) |
| ``cluster/<c>/uplink`` | C | mean log10 uplink rate (bit/s) / 10 |
| ``cluster/<c>/d2d_rate`` | C | mean log10 D2D link rate (bit/s) / 10 over the D2D graph |
| ``cluster/<c>/d2d_density`` | C | D2D graph edges / possible pairs |
| ``cluster/<c>/available`` | C | fraction of the cluster's devices available this round |
| ``budget/energy`` | 1 | energy used / budget (or / star reference x episode rounds) |
| ``budget/latency`` | 1 | latency used / (star reference x episode rounds) |
| ``request/<r>/...`` | 3P | present; is a head (else a prompt); share of the cluster holding it |
"""

from __future__ import annotations

import math

import numpy as np

from hffm_env.config import MODULE_TYPES

__all__ = ["observation_names", "ObservationInputs", "build_observation"]

STALENESS_SCALE_ROUNDS = 8.0


def observation_names(tasks: tuple[str, ...], num_clusters: int, num_requests: int) -> list[str]:
    """The name of every observation entry, in order."""
    names = ["round"]
    names += [f"accuracy/{t}" for t in tasks]
    names += [f"loss/{t}" for t in tasks]
    names += [f"staleness/{t}/{tier}" for t in MODULE_TYPES for tier in ("edge", "cloud")]
    names += [f"drift/{t}/{scope}" for t in MODULE_TYPES for scope in ("cluster", "global")]
    for key in ("uplink", "d2d_rate", "d2d_density", "available"):
        names += [f"cluster/{c}/{key}" for c in range(num_clusters)]
    names += ["budget/energy", "budget/latency"]
    for r in range(num_requests):
        names += [f"request/{r}/present", f"request/{r}/is_head", f"request/{r}/holders"]
    return names


class ObservationInputs:
    """Everything the observation is made of, gathered by the env each step."""

    def __init__(
        self,
        round_fraction: float,
        accuracy: dict[str, float],
        loss: dict[str, float],
        num_classes: dict[str, int],
        since_edge: dict[str, int],
        since_cloud: dict[str, int],
        drift: dict[str, tuple[float, float]],
        cluster_uplink_bps: np.ndarray,
        cluster_d2d_bps: np.ndarray,
        cluster_d2d_density: np.ndarray,
        cluster_available: np.ndarray,
        energy_used_fraction: float,
        latency_used_fraction: float,
        requests: list[tuple[bool, float]],
        num_requests: int,
    ) -> None:
        self.__dict__.update(locals())
        del self.__dict__["self"]


def _unit(value: float) -> float:
    return float(np.clip(value, 0.0, 1.0)) if math.isfinite(value) else 0.0


def _log_rate(bps: np.ndarray) -> np.ndarray:
    return np.clip(np.log10(np.maximum(bps, 1.0)) / 10.0, 0.0, 1.0)


def build_observation(x: ObservationInputs, tasks: tuple[str, ...]) -> np.ndarray:
    """The observation vector for ``x`` (see the module docstring for the layout)."""
    values: list[float] = [_unit(x.round_fraction)]
    values += [_unit(x.accuracy.get(t, 0.0)) for t in tasks]
    values += [
        _unit(x.loss.get(t, 0.0) / (2.0 * math.log(max(x.num_classes[t], 2)))) for t in tasks
    ]
    for t in MODULE_TYPES:
        values += [
            _unit(x.since_edge[t] / STALENESS_SCALE_ROUNDS),
            _unit(x.since_cloud[t] / STALENESS_SCALE_ROUNDS),
        ]
    for t in MODULE_TYPES:
        cluster, glob = x.drift.get(t, (0.0, 0.0))
        values += [_unit(cluster / (1.0 + cluster)), _unit(glob / (1.0 + glob))]
    values += list(_log_rate(np.asarray(x.cluster_uplink_bps)))
    values += list(_log_rate(np.asarray(x.cluster_d2d_bps)))
    values += [_unit(v) for v in x.cluster_d2d_density]
    values += [_unit(v) for v in x.cluster_available]
    values += [_unit(x.energy_used_fraction), _unit(x.latency_used_fraction)]
    for r in range(x.num_requests):
        if r < len(x.requests):
            is_head, holders = x.requests[r]
            values += [1.0, float(is_head), _unit(holders)]
        else:
            values += [0.0, 0.0, 0.0]
    return np.asarray(values, dtype=np.float32)
