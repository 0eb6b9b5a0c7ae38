"""Channel physics against hand-computed values, and per-round link rates."""

import math

import numpy as np
import pytest
from sim_helpers import make_topology

from hffm_env.config import BackhaulConfig, ChannelConfig, LinkConfig
from hffm_env.sim.channel import Channel, backhaul_time_s, draw_link_rates

# -30 dBm/Hz = 1e-6 W/Hz: over 1 kHz the noise is exactly 1e-3 W, which keeps numbers round.
ROUND = ChannelConfig(noise_density_dbm_per_hz=-30.0)


def test_path_gain_hand_values():
    ch = Channel(ChannelConfig())  # beta0 = -30 dB at 1 m, alpha = 3
    assert ch.path_gain(10.0) == pytest.approx(1e-3 * 10.0**-3)
    assert ch.path_gain(1000.0) == pytest.approx(1e-12)
    # Below min_distance_m (1 m) the distance is clipped: gain stays at beta0.
    assert ch.path_gain(0.25) == pytest.approx(1e-3)
    other = Channel(ChannelConfig(ref_distance_m=2.0, path_loss_exponent=2.0,
                                  path_loss_db_at_ref=-20.0, min_distance_m=0.5))
    assert other.path_gain(4.0) == pytest.approx(1e-2 * (4.0 / 2.0) ** -2)
    assert other.path_gain(0.1) == pytest.approx(1e-2 * (0.5 / 2.0) ** -2)


def test_noise_power_with_and_without_prototype_quirk():
    n0_w_per_hz = 10 ** ((-174 - 30) / 10)  # 3.98e-21 W/Hz
    physical = Channel(ChannelConfig()).noise_power_w(1e6)
    quirky = Channel(ChannelConfig(prototype_noise_quirk=True)).noise_power_w(1e6)
    assert physical == pytest.approx(n0_w_per_hz * 1e6)
    assert physical == pytest.approx(3.981071705534972e-15)
    assert quirky == pytest.approx(physical / 1000.0)
    assert Channel(ROUND).noise_power_w(1e3) == pytest.approx(1e-3)


def test_snr_and_shannon_rate():
    ch = Channel(ROUND)
    assert ch.snr(1.0, 1e-2, 1e3) == pytest.approx(10.0)
    link = LinkConfig(bandwidth_hz=1e3, tx_power_w=1.0, energy_power_w=0.5)
    # d = 1 m: gain 1e-3, noise 1e-3 W -> SNR 1 -> 1000 * log2(2) bit/s.
    assert ch.rate_bps(link, 1.0) == pytest.approx(1000.0)
    # Fading power 3 -> SNR 3 -> 1000 * log2(4).
    assert ch.rate_bps(link, 1.0, 3.0) == pytest.approx(2000.0)
    # d = 10 m: gain 1e-6 -> SNR 1e-3.
    assert ch.rate_bps(link, 10.0) == pytest.approx(1000.0 * math.log2(1.001))
    # an SNR so low that 1 + SNR rounds to 1: still a (tiny) rate, not 0 and an infinite round
    # (d = 1e6 m: gain 1e-18 -> SNR 1e-18)
    assert ch.rate_bps(link, 1e6) == pytest.approx(1000.0 * 1e-18 / math.log(2.0), rel=1e-9)
    assert ch.rate_bps(link, np.array([1.0, 1e6])) == pytest.approx(
        [1000.0, 1000.0 * 1e-18 / math.log(2.0)], rel=1e-9)
    quirk = Channel(ChannelConfig(noise_density_dbm_per_hz=-30.0, prototype_noise_quirk=True))
    assert quirk.rate_bps(link, 1.0) == pytest.approx(1000.0 * math.log2(1001.0))


def test_paper_uplink_rate_matches_formula():
    cfg = ChannelConfig(prototype_noise_quirk=True)
    ch = Channel(cfg)
    d = 800.0
    gain = 1e-3 * d**-3
    noise = 10 ** (-20.4) * 1e6 / 1000
    assert ch.rate_bps(cfg.uplink, d) == pytest.approx(1e6 * math.log2(1 + 1.0 * gain / noise))


def test_rayleigh_fading_statistics():
    ch = Channel(ChannelConfig())
    h2 = ch.sample_fading(np.random.default_rng(0), 200_000)
    # |h|^2 with unit-variance components is exponential with mean 2: P(|h|^2 > 2) = 1/e.
    assert h2.mean() == pytest.approx(2.0, abs=0.02)
    assert (h2 > 2.0).mean() == pytest.approx(math.exp(-1), abs=0.005)
    assert h2.min() >= 0.0
    flat = Channel(ChannelConfig(rayleigh_fading=False)).sample_fading(None, (3, 2))
    assert flat.shape == (3, 2) and np.all(flat == 1.0)


def test_backhaul_time():
    assert backhaul_time_s(BackhaulConfig(), 48e6) == pytest.approx(12.1)
    assert backhaul_time_s(BackhaulConfig(latency_s=0.0, rate_bps=2.0), 3.0) == pytest.approx(1.5)


def test_draw_link_rates_values_and_pairs():
    topo = make_topology([[0, 0], [30, 40], [100, 0], [500, 500], [530, 540]], [0, 0, 0, 1, 1],
                         [[0, 0], [500, 500]])
    cfg = ChannelConfig()
    ch = Channel(cfg)
    rates = draw_link_rates(ch, topo, np.random.default_rng(7))
    # Same draws in the documented order: uplink, downlink, D2D fading.
    rng = np.random.default_rng(7)
    up_f, down_f = ch.sample_fading(rng, 5), ch.sample_fading(rng, 5)
    d2d_f = ch.sample_fading(rng, 4)
    dist_edge = np.array([0.0, 50.0, 100.0, 0.0, 50.0])
    np.testing.assert_allclose(rates.uplink_bps, ch.rate_bps(cfg.uplink, dist_edge, up_f))
    np.testing.assert_allclose(rates.downlink_bps, ch.rate_bps(cfg.downlink, dist_edge, down_f))
    assert list(zip(rates.pair_i.tolist(), rates.pair_j.tolist())) == [
        (0, 1), (0, 2), (1, 2), (3, 4)]
    np.testing.assert_allclose(rates.d2d_distance_m, [50.0, 100.0, math.hypot(70, 40), 50.0])
    np.testing.assert_allclose(rates.d2d_bps, ch.rate_bps(cfg.d2d, rates.d2d_distance_m, d2d_f))
    # Symmetric per pair; no link across clusters or to oneself.
    assert rates.d2d_rate(2, 1) == rates.d2d_rate(1, 2) == pytest.approx(rates.d2d_bps[2])
    np.testing.assert_allclose(rates.d2d_rates(np.array([4, 0]), np.array([3, 2])),
                               rates.d2d_bps[[3, 1]])
    with pytest.raises(ValueError, match="not in the same cluster"):
        rates.d2d_rate(0, 3)
    assert rates.pair_index(1, 1) == -1


def test_rates_redrawn_each_call():
    topo = make_topology([[0, 0], [10, 0]], [0, 0], [[5, 5]])
    cfg = ChannelConfig()
    ch = Channel(cfg)
    rng = np.random.default_rng(1)
    a = draw_link_rates(ch, topo, rng)
    b = draw_link_rates(ch, topo, rng)
    assert not np.allclose(a.uplink_bps, b.uplink_bps)
    flat = ChannelConfig(rayleigh_fading=False)
    c = draw_link_rates(Channel(flat), topo, rng)
    d = draw_link_rates(Channel(flat), topo, rng)
    np.testing.assert_array_equal(c.uplink_bps, d.uplink_bps)
