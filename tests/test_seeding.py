"""Seeding: one SeedSequence, named child streams, and consumers that do not shift each other."""

from __future__ import annotations

import numpy as np
import pytest

from hffm_env.seeding import STREAMS, RandomStreams
from hffm_env.testing import make_tiny_env


def test_streams_are_the_spawned_children_in_their_documented_order():
    streams = RandomStreams.from_seed(7)
    children = np.random.SeedSequence(7).spawn(len(STREAMS))
    for k, name in enumerate(STREAMS):
        if name == "training":
            continue
        expected = np.random.default_rng(children[k]).random(4)
        np.testing.assert_array_equal(getattr(streams, name).random(4), expected)
    again = RandomStreams.from_seed(7)
    assert again.training_seed == streams.training_seed
    assert 0 <= streams.training_seed < 2**63
    assert RandomStreams.from_seed(8).training_seed != streams.training_seed
    draws = {name: getattr(RandomStreams.from_seed(7), name).random()
             for name in STREAMS if name != "training"}
    assert len(set(draws.values())) == len(draws)  # independent streams, not one stream


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None, 2**63, 2**64 + 5])
def test_bad_seed_is_refused_by_value(bad):
    with pytest.raises(ValueError, match="seed"):
        RandomStreams.from_seed(bad)


def test_every_seed_is_read_by_one_rule():
    """A bench and a training run took seeds past 2**63-1 (the config's range, which the docs
    say they share). A reset takes any seed from 0 up, as Gymnasium does (below)."""
    from hffm_env.agents.common import TrainArgs
    from hffm_env.baselines.runner import run_benchmark
    from hffm_env.seeding import SEED_MAX, check_seed

    assert check_seed(np.int64(7)) == 7 and check_seed(SEED_MAX) == SEED_MAX
    with pytest.raises(ValueError, match=r"seed = 18446744073709551621: must be an "
                                         r"integer in 0..2\*\*63-1"):
        check_seed(2**64 + 5)
    with pytest.raises(ValueError, match=r"seeds\[1\] = 9223372036854775808: must be an integer"):
        run_benchmark(make_tiny_env, ["never"], seeds=[1000, 2**63])
    with pytest.raises(ValueError, match=r"eval_seeds = 9223372036854775808"):
        TrainArgs(eval_seeds=[2**63])


def test_a_reset_replays_the_seed_gymnasium_recorded_for_an_unseeded_episode():
    """Gymnasium records a 128-bit seed for an unseeded reset (np_random_seed); the env
    refused it (and a vector env's seed + i past 2**63-1), so that episode could not be
    replayed. A reset takes any integer from 0 up; the bound stays for what is recorded."""
    env = make_tiny_env()
    try:
        first, _ = env.reset()
        recorded = env.unwrapped.np_random_seed
        assert recorded > 2**63  # (Gymnasium draws it from SeedSequence().entropy)
        replayed, _ = env.reset(seed=recorded)
        np.testing.assert_array_equal(first, replayed)
        big, _ = env.reset(seed=2**70)
        assert np.array_equal(big, env.reset(seed=2**70)[0])
        assert not np.array_equal(big, env.reset(seed=2**70 + 1)[0])
        for bad in (-1, 2.0**70, True):
            with pytest.raises(ValueError, match="reset seed = .*: must be an integer >= 0"):
                env.reset(seed=bad)
    finally:
        env.close()


def _rounds(extra: list[str], rounds: int = 4) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Per round after reset(seed=3): uplink rates, availability and pending requests."""
    env = make_tiny_env(extra=extra)
    try:
        env.reset(seed=3)
        env.action_space.seed(0)
        out = []
        for _ in range(rounds):
            network = env.unwrapped.network
            out.append((network.rates.uplink_bps.copy(), network.available.copy(),
                        len(env.unwrapped.pending)))
            env.step(env.action_space.sample())
        return out
    finally:
        env.close()


def test_task_arrivals_do_not_shift_fading_or_dropout():
    # with one shared generator, each arrival draw moved every later fading and dropout draw
    quiet = _rounds(["dynamics.dropout_prob=0.3"])
    busy = _rounds(["dynamics.dropout_prob=0.3", "fl.task_arrival_prob=1.0"])
    assert any(b[2] > 0 for b in busy)  # arrivals did happen
    for (rates_q, avail_q, _), (rates_b, avail_b, _) in zip(quiet, busy):
        np.testing.assert_array_equal(rates_q, rates_b)
        np.testing.assert_array_equal(avail_q, avail_b)


def test_outage_draws_do_not_shift_fading_dropout_or_requests():
    # the retransmissions drew from the fading stream: every round after the first had other
    # fading with outages on
    plain = _rounds(["dynamics.dropout_prob=0.3", "fl.task_arrival_prob=0.5"])
    outage = _rounds(["dynamics.dropout_prob=0.3", "fl.task_arrival_prob=0.5",
                      "channel.outage_snr_db=45.0"])
    for (rates_p, avail_p, pending_p), (rates_o, avail_o, pending_o) in zip(plain, outage):
        np.testing.assert_array_equal(rates_p, rates_o)
        np.testing.assert_array_equal(avail_p, avail_o)
        assert pending_p == pending_o


def test_mobility_does_not_shift_dropout():
    # the waypoints drew from the dropout's stream, and how many a round redraws varies
    from hffm_env.config import apply_overrides, get_scenario
    from hffm_env.seeding import RandomStreams
    from hffm_env.sim import Network

    def availability(overrides: list[str]) -> list[np.ndarray]:
        cfg = apply_overrides(get_scenario("medium"), ["dynamics.dropout_prob=0.3", *overrides])
        streams = RandomStreams.from_seed(3)
        network = Network(cfg, streams)
        rounds = [network.available.copy()]
        for _ in range(12):
            network.begin_round(streams)
            rounds.append(network.available.copy())
        return rounds

    still, moving = availability(["dynamics.mobility=false"]), availability([])
    for k, (a, b) in enumerate(zip(still, moving)):
        np.testing.assert_array_equal(a, b, err_msg=f"round {k}")


def test_describe_reports_the_layout_and_profiles_the_env_builds():
    from hffm_env.cli import describe_scenario

    env = make_tiny_env()
    try:
        base = env.unwrapped
        devices = describe_scenario(base.config)["model"]["devices"]
        assert [d["cluster"] for d in devices] == base.network.topology.cluster_of_device.tolist()
        assert [tuple(d["modalities"]) for d in devices] == [
            tuple(p.modalities) for p in base.data.profiles]
        assert [tuple(d["tasks"]) for d in devices] == [tuple(p.tasks) for p in base.data.profiles]
    finally:
        env.close()


def test_describe_places_the_network_once(monkeypatch):
    """The model side placed the network again from its own streams: two places for the one
    rule of how the env draws its layout."""
    import hffm_env.sim.network as network_module
    from hffm_env.cli import describe_scenario

    env = make_tiny_env()
    config = env.unwrapped.config
    env.close()
    import hffm_env.sim

    placed = []
    place = network_module.place_network
    for module in (network_module, hffm_env.sim):  # the network's name, and the package's
        monkeypatch.setattr(module, "place_network",
                            lambda *a, **k: placed.append(1) or place(*a, **k))
    describe_scenario(config)
    assert len(placed) == 1

