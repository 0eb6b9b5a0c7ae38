"""Wireless physics: path gain, fading, noise, SNR and Shannon rate (mobile-env style).

A :class:`Channel` holds the physics of one :class:`~hffm_env.config.ChannelConfig`; subclass it
and override :meth:`Channel.path_gain` / :meth:`Channel.sample_fading` for other models.
:func:`draw_link_rates` turns a topology into the rates of every wireless link for one round:

- uplink (device -> own edge server) with ``channel.uplink``;
- downlink (own edge server -> device) with ``channel.downlink``; its fading is drawn
  independently of the uplink's (different bands, as in FDD);
- D2D for every same-cluster pair with ``channel.d2d``; one fading draw per pair, so the link
  has the same rate both ways.

Backhaul (edge <-> cloud, and device <-> cloud in the star topology) is wired:
``latency_s + bits / rate_bps`` (:func:`backhaul_time_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from hffm_env.config import BackhaulConfig, ChannelConfig, ConfigError, LinkConfig
from hffm_env.sim.topology import Topology

__all__ = ["Channel", "CHANNEL_MODELS", "LinkRates", "RAYLEIGH_MEAN_POWER", "backhaul_time_s",
           "draw_attempts", "draw_link_rates", "make_channel", "register_channel_model"]


RAYLEIGH_MEAN_POWER = 2.0
"""Mean fading power ``E|h|^2`` of :meth:`Channel.sample_fading`: ``a, b ~ N(0, 1)`` per
component, as in the prototype."""


class Channel:
    """Path loss + Rayleigh fading + thermal noise + Shannon capacity, from a ChannelConfig.

    - ``path_gain(d) = beta0 * (max(d, min_distance_m) / d0) ** -alpha`` with
      ``beta0 = 10 ** (path_loss_db_at_ref / 10)``;
    - ``noise_power_w(B) = 10 ** ((N0_dBm/Hz - 30) / 10) * B``, divided by 1000 when
      ``prototype_noise_quirk`` (the M3T-FFM prototype multiplies N0 in mW/Hz by B in kHz);
    - ``rate = B log2(1 + P g |h|^2 / noise_power_w(B))``.
    """

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.ref_gain = 10.0 ** (config.path_loss_db_at_ref / 10.0)
        self.noise_density_w_per_hz = 10.0 ** ((config.noise_density_dbm_per_hz - 30.0) / 10.0)
        if config.prototype_noise_quirk:
            self.noise_density_w_per_hz /= 1000.0

    def path_gain(self, distance_m: np.ndarray | float) -> np.ndarray:
        """Linear large-scale gain at ``distance_m`` (distances below ``min_distance_m`` are
        clipped so that co-located nodes do not get infinite gain)."""
        d = np.maximum(np.asarray(distance_m, dtype=np.float64), self.config.min_distance_m)
        return self.ref_gain * (d / self.config.ref_distance_m) ** (-self.config.path_loss_exponent)

    def noise_power_w(self, bandwidth_hz: np.ndarray | float) -> np.ndarray:
        """Noise power in W over ``bandwidth_hz`` (1/1000 of physical with the prototype quirk)."""
        return self.noise_density_w_per_hz * np.asarray(bandwidth_hz, dtype=np.float64)

    def snr(
        self, tx_power_w: np.ndarray | float, gain: np.ndarray | float, bandwidth_hz: float
    ) -> np.ndarray:
        """Linear SNR ``P * g / noise_power_w(B)`` (``gain`` includes fading)."""
        return np.asarray(tx_power_w, dtype=np.float64) * np.asarray(gain) / self.noise_power_w(
            bandwidth_hz
        )

    def rate_bps(
        self,
        link: LinkConfig,
        distance_m: np.ndarray | float,
        fading_power: np.ndarray | float = 1.0,
    ) -> np.ndarray:
        """Shannon rate in bit/s of ``link`` at ``distance_m`` with fading power ``|h|^2``."""
        gain = self.path_gain(distance_m) * np.asarray(fading_power, dtype=np.float64)
        snr = np.asarray(self.snr(link.tx_power_w, gain, link.bandwidth_hz), dtype=np.float64)
        # log2(1 + snr) rounds to 0 below snr ~ 1e-16, a rate of 0 and an infinite round; for
        # such SNRs it equals snr / ln 2 (every realistic SNR keeps the plain formula)
        bits_per_hz = np.where(snr < 1e-12, snr / np.log(2.0), np.log2(1.0 + snr))
        return link.bandwidth_hz * bits_per_hz[()]  # (a scalar for a scalar distance)

    def outage_probability(
        self, link: LinkConfig, distance_m: np.ndarray | float
    ) -> np.ndarray:
        """Probability that one transmission attempt over ``link`` at ``distance_m`` has an
        SNR below ``outage_snr_db``: ``1 - exp(-threshold / mean SNR)`` under Rayleigh fading
        (exponential fading power of mean :data:`RAYLEIGH_MEAN_POWER`), else 1 or 0 by the
        mean SNR. Zeros when outage is off."""
        distance = np.asarray(distance_m, dtype=np.float64)
        if self.config.outage_snr_db is None:
            return np.zeros(distance.shape)
        threshold = 10.0 ** (self.config.outage_snr_db / 10.0)
        mean_fading = RAYLEIGH_MEAN_POWER if self.config.rayleigh_fading else 1.0
        mean_snr = self.snr(link.tx_power_w, self.path_gain(distance) * mean_fading,
                            link.bandwidth_hz)
        if not self.config.rayleigh_fading:
            return (mean_snr < threshold).astype(np.float64)
        with np.errstate(divide="ignore", over="ignore"):
            return -np.expm1(-threshold / np.maximum(mean_snr, 1e-300))

    def sample_fading(self, rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
        """Fading power ``|h|^2`` with ``h = a + jb``, ``a, b ~ N(0, 1)`` (unit variance per
        component as the prototype, so the mean power is :data:`RAYLEIGH_MEAN_POWER`); ones
        without Rayleigh fading."""
        if not self.config.rayleigh_fading:
            return np.ones(shape)
        a = rng.standard_normal(shape)
        b = rng.standard_normal(shape)
        return a * a + b * b


CHANNEL_MODELS: dict[str, type[Channel]] = {"shannon": Channel}
"""Channel models by name (``channel.model`` in the scenario config)."""


def register_channel_model(name: str, model: type[Channel]) -> None:
    """Make ``channel.model = name`` build ``model(config)``: a :class:`Channel` subclass
    that overrides the physics it changes (path gain, noise, SNR, rates)."""
    if not (isinstance(model, type) and issubclass(model, Channel)):
        raise TypeError(f"register_channel_model({name!r}, {model!r}): the model must be a "
                        "subclass of hffm_env.sim.channel.Channel")
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_channel_model: name = {name!r}: must be a non-empty string")
    CHANNEL_MODELS[name] = model


def make_channel(config: ChannelConfig) -> Channel:
    """The channel model ``config.model`` names, built from ``config``."""
    try:
        model = CHANNEL_MODELS[config.model]
    except KeyError:
        raise ConfigError(f"channel.model = {config.model!r}: known models are "
                          f"{sorted(CHANNEL_MODELS)} (add one with "
                          "hffm_env.sim.channel.register_channel_model)") from None
    return model(config)


def backhaul_time_s(config: BackhaulConfig, bits: np.ndarray | float) -> np.ndarray:
    """Time to push ``bits`` over the wired backhaul: ``latency_s + bits / rate_bps``
    (``bits``: finite and >= 0, else ``ValueError``)."""
    sizes = np.asarray(bits, dtype=np.float64)
    if not np.all(np.isfinite(sizes) & (sizes >= 0)):
        raise ValueError(f"bits = {bits!r}: must be finite and >= 0")
    return config.latency_s + sizes / config.rate_bps


@dataclass
class LinkRates:
    """Rates of every wireless link for one round.

    D2D links are stored for all same-cluster pairs ``pair_i < pair_j`` (sorted by
    ``(pair_i, pair_j)``, as :meth:`Topology.intra_cluster_pairs`), with the symmetric rate
    ``d2d_bps`` and the distance ``d2d_distance_m``; :meth:`d2d_rates` looks pairs up in either
    orientation with a binary search on ``pair_i * N + pair_j``.

    Attributes:
        uplink_bps: ``(N,)`` device -> own edge server.
        downlink_bps: ``(N,)`` own edge server -> device.
        pair_i, pair_j: ``(P,)`` device ids of the same-cluster pairs, ``pair_i < pair_j``.
        d2d_bps: ``(P,)`` rate of each pair (both directions).
        d2d_distance_m: ``(P,)`` distance of each pair.
        uplink_attempts: ``(N,)`` transmission attempts an uplink exchange takes this round
            (1 without outage); ``max_transmissions`` when it fails.
        uplink_failed: ``(N,)`` bool, the uplink exchange fails this round (every attempt was
            in outage).
        d2d_attempts, d2d_failed: ``(P,)`` the same for each D2D pair.
    """

    uplink_bps: np.ndarray
    downlink_bps: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    d2d_bps: np.ndarray
    d2d_distance_m: np.ndarray
    uplink_attempts: np.ndarray | None = None
    uplink_failed: np.ndarray | None = None
    d2d_attempts: np.ndarray | None = None
    d2d_failed: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, p = self.uplink_bps.shape[0], self.d2d_bps.shape[0]
        if self.uplink_attempts is None:
            self.uplink_attempts = np.ones(n, dtype=np.int64)
        if self.uplink_failed is None:
            self.uplink_failed = np.zeros(n, dtype=bool)
        if self.d2d_attempts is None:
            self.d2d_attempts = np.ones(p, dtype=np.int64)
        if self.d2d_failed is None:
            self.d2d_failed = np.zeros(p, dtype=bool)

    def d2d_link_failed(self, i: np.ndarray | int, j: np.ndarray | int) -> np.ndarray:
        """Whether the D2D exchange over ``i <-> j`` fails this round (vectorised)."""
        index = self.pair_index(i, j)
        d2d_failed = cast(np.ndarray, self.d2d_failed)  # filled in by __post_init__
        return np.where(index >= 0, d2d_failed[np.maximum(index, 0)], False)

    @property
    def num_devices(self) -> int:
        """Number of devices ``N``."""
        return int(self.uplink_bps.shape[0])

    @property
    def pair_keys(self) -> np.ndarray:
        """Sorted ``pair_i * N + pair_j`` keys used for lookups."""
        return self.pair_i * self.num_devices + self.pair_j

    def pair_index(self, i: np.ndarray | int, j: np.ndarray | int) -> np.ndarray:
        """Index into the pair arrays of each ``(i, j)`` (either order); -1 where ``i`` and ``j``
        are not a same-cluster pair of distinct devices. A device id outside
        ``0..num_devices-1`` raises ``ValueError`` (its key ``i * N + j`` would name another
        pair)."""
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        for ids in (i, j):
            outside = (ids < 0) | (ids >= self.num_devices)
            if np.any(outside):
                bad = int(np.atleast_1d(ids)[np.flatnonzero(np.atleast_1d(outside))[0]])
                raise ValueError(f"device {bad}: not a device of this network (0.."
                                 f"{self.num_devices - 1})")
        keys = self.pair_keys
        query = np.minimum(i, j) * self.num_devices + np.maximum(i, j)
        pos = np.searchsorted(keys, query)
        pos_c = np.minimum(pos, max(keys.size - 1, 0))
        found = (keys.size > 0) & (i != j)
        if keys.size:
            found = found & (keys[pos_c] == query)
        return np.where(found, pos_c, -1)

    def d2d_rates(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Vectorised D2D rates of links ``i[k] <-> j[k]``.

        Raises:
            ValueError: some ``(i, j)`` is not a same-cluster pair of distinct devices.
        """
        index = self.pair_index(i, j)
        if np.any(index < 0):
            bad = int(np.flatnonzero(np.atleast_1d(index) < 0)[0])
            bi, bj = np.atleast_1d(i)[bad], np.atleast_1d(j)[bad]
            raise ValueError(f"no D2D link between devices {bi} and {bj}: not in the same cluster")
        return self.d2d_bps[index]

    def d2d_rate(self, i: int, j: int) -> float:
        """Rate in bit/s of the D2D link between devices ``i`` and ``j`` (same cluster)."""
        return float(self.d2d_rates(np.asarray([i]), np.asarray([j]))[0])


def draw_link_rates(channel: Channel, topology: Topology, rng: np.random.Generator,
                    outage_rng: np.random.Generator | None = None) -> LinkRates:
    """Redraw fading and compute every link's rate for one round (links of ``channel.config``).

    Draw order (fixed, for reproducibility): uplink fading ``(N,)``, downlink fading ``(N,)``,
    D2D fading ``(P,)`` from ``rng``; then, when ``channel.config.outage_snr_db`` is set, the
    attempts of every uplink and D2D link from ``outage_rng`` (``rng`` when not given: a
    network passes the episode's own outage stream, so that outages shift no later fading).
    """
    config = channel.config
    n = topology.num_devices
    own_server = topology.server_xy_m[topology.cluster_of_device]
    dist_edge_m = np.hypot(*(topology.device_xy_m - own_server).T)
    up_fading = channel.sample_fading(rng, n)
    down_fading = channel.sample_fading(rng, n)
    pair_i, pair_j = topology.intra_cluster_pairs()
    xy = topology.device_xy_m
    pair_dist_m = np.hypot(*(xy[pair_i] - xy[pair_j]).T)
    d2d_fading = channel.sample_fading(rng, pair_i.size)
    outage: dict[str, np.ndarray] = {}
    if config.outage_snr_db is not None:  # drawn last, and only when on: seeds keep their rates
        attempts_rng = rng if outage_rng is None else outage_rng
        up_p = channel.outage_probability(config.uplink, dist_edge_m)
        d2d_p = channel.outage_probability(config.d2d, pair_dist_m)
        outage["uplink_attempts"], outage["uplink_failed"] = draw_attempts(
            attempts_rng, up_p, config.max_transmissions)
        outage["d2d_attempts"], outage["d2d_failed"] = draw_attempts(
            attempts_rng, d2d_p, config.max_transmissions)
    return LinkRates(
        uplink_bps=channel.rate_bps(config.uplink, dist_edge_m, up_fading),
        downlink_bps=channel.rate_bps(config.downlink, dist_edge_m, down_fading),
        pair_i=pair_i,
        pair_j=pair_j,
        d2d_bps=channel.rate_bps(config.d2d, pair_dist_m, d2d_fading),
        d2d_distance_m=pair_dist_m,
        **outage,
    )


def draw_attempts(
    rng: np.random.Generator, outage_probability: np.ndarray, max_transmissions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Attempts until the first success (geometric) per link, capped at ``max_transmissions``,
    and whether every one of them failed. One uniform draw per link: the number of attempts is
    the inverse CDF of the geometric law."""
    p_out = np.clip(np.asarray(outage_probability, dtype=np.float64), 0.0, 1.0)
    u = rng.random(p_out.shape)
    # P(attempts > k) = p_out^k; attempts = smallest k with u >= p_out^k
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.where(p_out <= 0.0, 1.0,
                          np.where(p_out >= 1.0, np.inf,
                                   np.floor(np.log(u) / np.log(p_out)) + 1.0))
    failed = needed > max_transmissions
    attempts = np.minimum(needed, max_transmissions).astype(np.int64)
    return np.maximum(attempts, 1), failed
