"""Outage and retransmission: attempts per link, what they cost, which exchanges fail."""

import numpy as np
import pytest
from sim_helpers import CHAIN_D2D_BPS, chain_topology, cost_scenario, make_rates

from hffm_env.config import ConfigError, apply_overrides, small
from hffm_env.seeding import RandomStreams
from hffm_env.sim import Network
from hffm_env.sim.channel import Channel, draw_attempts
from hffm_env.sim.cost import CostAccountant, TransferTable


def test_attempts_follow_the_geometric_law_and_cap():
    rng = np.random.default_rng(0)
    attempts, failed = draw_attempts(rng, np.full(200_000, 0.5), max_transmissions=4)
    assert attempts.min() == 1 and attempts.max() == 4
    # P(all four attempts fail) = 0.5^4; a failed exchange was charged every attempt
    assert failed.mean() == pytest.approx(0.5**4, abs=0.003)
    assert (attempts[failed] == 4).all()
    # E[min(G, 4)] = 1 + 0.5 + 0.25 + 0.125
    assert attempts.mean() == pytest.approx(1.875, abs=0.01)
    never, none_failed = draw_attempts(rng, np.zeros(10), 4)
    always, all_failed = draw_attempts(rng, np.ones(10), 3)
    assert (never == 1).all() and not none_failed.any()
    assert (always == 3).all() and all_failed.all()


def test_outage_probability_grows_with_distance_and_is_off_by_default():
    cfg = small().channel
    assert (Channel(cfg).outage_probability(cfg.uplink, [10.0, 1000.0]) == 0).all()
    on = apply_overrides(small(), {"channel.outage_snr_db": 50.0}).channel
    p = Channel(on).outage_probability(on.uplink, [10.0, 100.0, 1000.0])
    assert 0 <= p[0] < p[1] < p[2] <= 1
    with pytest.raises(ConfigError, match="channel.outage_snr_db"):
        apply_overrides(small(), {"channel.outage_snr_db": float("nan")})
    with pytest.raises(ConfigError, match="channel.max_transmissions"):
        apply_overrides(small(), {"channel.max_transmissions": 0})


def test_retransmissions_multiply_time_and_energy():
    topo = chain_topology()
    scenario = cost_scenario()
    acc = CostAccountant(scenario, topo, np.full(4, 1e9))
    rates = make_rates(topo, [10, 10, 10, 10], [10, 10, 10, 10], CHAIN_D2D_BPS)
    table = TransferTable.for_topology(topo)
    table.add_uplinks("adapter", 100.0, np.array([0, 1]))
    table.add_d2d_pairs("moe", 40.0, [(0, 1)])
    once = acc.account(table, rates)
    rates.uplink_attempts = np.array([3, 1, 1, 1])
    rates.d2d_attempts = np.where(rates.pair_index(0, 1) == np.arange(rates.d2d_bps.size), 2, 1)
    again = acc.account(table, rates)
    # device 0's uplink: 10 s at 0.6 W per attempt, 3 attempts; the 0-1 pair: 4 s each way, twice
    assert again.energy_by_device_j[0] - once.energy_by_device_j[0] == pytest.approx(
        2 * 10 * 0.6 + 4 * 0.6)
    assert again.energy_by_device_j[1] - once.energy_by_device_j[1] == pytest.approx(4 * 0.6)
    assert again.latency_s > once.latency_s


def test_exchange_failures_by_route():
    network = Network(apply_overrides(small(), {"channel.outage_snr_db": 40.0}),
                      RandomStreams.from_seed(0))
    members = network.members(0)
    head = int(network.heads[0])
    rates = network.rates
    rates.uplink_failed[:] = False
    rates.uplink_failed[members[members != head][0]] = True
    direct = network.exchange_failed(0, "uplink", head)
    assert direct.sum() == 1 and direct[members[members != head][0]]
    assert not network.exchange_failed(0, "wired", head).any()
    rates.d2d_failed[:] = True  # every D2D link down: every member but the head fails
    via_d2d = network.exchange_failed(0, "d2d", head)
    assert via_d2d[members].sum() == len(members) - 1 and not via_d2d[head]
    rates.d2d_failed[:] = False
    rates.uplink_failed[head] = True  # the head cannot reach the edge: its whole cluster fails
    assert network.exchange_failed(0, "d2d+uplink", head)[members].all()
    assert not network.exchange_failed(0, "d2d", head).any()
    with pytest.raises(ValueError, match="via"):
        network.exchange_failed(0, "carrier-pigeon", head)


def test_outage_draws_leave_rates_of_a_seed_unchanged():
    plain_net = Network(small(), RandomStreams.from_seed(3))
    on_net = Network(apply_overrides(small(), {"channel.outage_snr_db": 45.0}),
                     RandomStreams.from_seed(3))
    retried = False
    for _ in range(5):  # round after round, not only the first
        plain, on = plain_net.rates, on_net.rates
        np.testing.assert_array_equal(plain.uplink_bps, on.uplink_bps)
        np.testing.assert_array_equal(plain.d2d_bps, on.d2d_bps)
        assert (plain.uplink_attempts == 1).all() and not plain.d2d_failed.any()
        retried |= bool(on.uplink_attempts.max() > 1)
        plain_net.begin_round(RandomStreams.from_seed(_))
        on_net.begin_round(RandomStreams.from_seed(_))
    assert retried  # 45 dB is close to small's uplink SNRs
