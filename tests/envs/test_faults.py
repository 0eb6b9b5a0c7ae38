"""Rounds that survive any availability pattern: dropout with mobility, whole clusters or
heads gone, masks that agree with what ``step`` accepts, and modules that are never lost."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import hffm_env  # noqa: F401  (registers the env ids)
from hffm_env.baselines.policies import RandomPolicy
from hffm_env.fl.schedule import Route, Schedule, Tier
from hffm_env.testing import TINY_OVERRIDES

DROPOUT = ["dynamics.dropout_prob=0.5", "dynamics.mobility=true"]


def _play(env: gym.Env, seed: int) -> list[dict]:
    policy = RandomPolicy()
    obs, info = env.reset(seed=seed)
    policy.reset(env, seed)
    infos = [info]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs, info))
        assert np.isfinite(reward)
        infos.append(info)
        done = terminated or truncated
    return infos


def test_dropout_with_mobility_survives_200_cost_episodes():
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=[*DROPOUT, "env.episode_rounds=4"])
    idle_rounds = 0
    for seed in range(200):
        for info in _play(env, seed)[1:]:
            idle_rounds += bool(info["idle_clusters"].any())
            assert info["repairs"]["heads"] == 0  # masked heads never need a repair
    env.close()
    # the test exercised what it is about: whole clusters did drop out
    assert idle_rounds > 0


def test_dropout_with_mobility_survives_train_episodes():
    env = gym.make("hffm/HFFM-v0", scenario="small", overrides=[*TINY_OVERRIDES, *DROPOUT])
    for seed in (0, 1):
        infos = _play(env, seed)
        assert all(i["measured"]["accuracy"] for i in infos)
    env.close()


def _env_with_dropped(dropped: list[int], overrides: list[str] | None = None):
    """A tiny train env whose current round has exactly ``dropped`` unavailable."""
    env = gym.make("hffm/HFFM-v0", scenario="small",
                   overrides=[*TINY_OVERRIDES, *(overrides or [])]).unwrapped
    env.reset(seed=0)
    available = np.ones(env.network.num_devices, dtype=bool)
    available[dropped] = False
    env.network.available = available
    from hffm_env.sim.network import default_heads
    env.network.heads = default_heads(env.network.topology, env.network.rates, available)
    return env


def test_a_cluster_with_no_member_sits_the_round_out_and_keeps_its_modules():
    probe = _env_with_dropped([])
    members = probe.network.members(int(probe.network.cluster_of_device[0])).tolist()
    probe.close()
    assert len(members) > 1
    env = _env_with_dropped(members)
    cluster = int(env.network.cluster_of_device[0])
    assert set(env.network.members(cluster).tolist()) == set(members)
    before = {name: value[members].clone() for name, value in env.engine.params.items()}
    star = env.layout.encode(1, 1, route=Route.STAR)
    _, _, _, _, info = env.step(star)
    assert np.flatnonzero(info["idle_clusters"]).tolist() == [cluster]
    assert info["repairs"]["heads"] == 0
    assert info["schedule"]["heads"][cluster] == -1
    for name, value in env.engine.params.items():
        assert torch.equal(value[members], before[name]), name


def test_a_dropped_head_is_repaired_to_an_available_member():
    env = _env_with_dropped([1])
    cluster = int(env.network.cluster_of_device[1])
    members = env.network.members(cluster).tolist()
    action = env.layout.encode(1, 2, route=Route.D2D_RELAY,
                               heads=[1 if c == cluster else int(env.network.heads[c])
                                      for c in range(env.network.num_clusters)])
    _, _, _, _, info = env.step(action)
    head = info["schedule"]["heads"][cluster]
    assert head != 1 and head in members
    assert info["repairs"]["heads"] == 1


def test_engine_names_a_dropped_or_foreign_head():
    env = _env_with_dropped([1])
    cluster = int(env.network.cluster_of_device[1])
    heads = [int(h) for h in env.network.heads]
    heads[cluster] = 1
    schedule = Schedule.uniform(Tier.EDGE, env.network.num_clusters, heads=tuple(heads))
    with pytest.raises(ValueError, match=rf"Schedule.heads\[{cluster}\] = 1: dropped out"):
        env.engine.run_round(schedule)
    heads[cluster] = -1  # "no head" is only for a cluster with nobody available
    with pytest.raises(ValueError, match=rf"Schedule.heads\[{cluster}\] = -1: not a member"):
        env.engine.run_round(Schedule.uniform(Tier.EDGE, env.network.num_clusters,
                                              heads=tuple(heads)))


def test_a_dropped_device_keeps_its_modules_through_a_cloud_round():
    env = _env_with_dropped([5])
    before = {name: value[5].clone() for name, value in env.engine.params.items()}
    env.step(env.layout.encode(1, 1, route=Route.DIRECT))
    for name, value in env.engine.params.items():
        assert torch.equal(value[5], before[name]), name


def test_mutual_partner_choices_are_one_pair_and_no_repair_as_in_the_simulator():
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost").unwrapped
    env.reset(seed=0)
    # two D2D neighbours that list each other as a candidate
    i, j, ci, cj = next(
        (i, int(j), ci, int(np.flatnonzero(env.layout.partners[j] == i)[0]))
        for i in range(env.network.num_devices)
        for ci, j in enumerate(env.layout.partners[i])
        if j >= 0 and env.network.is_feasible_pair(i, int(j))
        and i in env.layout.partners[j]
    )
    partners = np.zeros(env.network.num_devices, dtype=np.int64)
    partners[i], partners[j] = ci + 1, cj + 1
    action = env.layout.encode(1, 2, pair_exchange=True, partners=partners)
    schedule, report = env.decode(action)
    proposed = np.full(env.network.num_devices, -1)
    proposed[i], proposed[j] = j, i
    assert (list(schedule.pairs), report.pair_repairs) == env.network.repair_pairing(proposed)
    assert report.pair_repairs == 0 and len(schedule.pairs) == 1


def test_a_bad_reset_seed_raises_and_leaves_the_env_usable():
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost")
    for bad in (-1, 1.5, "7", True):
        with pytest.raises(ValueError, match="reset seed"):
            env.reset(seed=bad)
    env.reset(seed=0)
    env.step(env.action_space.sample())


def test_a_config_too_big_for_this_machine_is_refused_with_the_estimate():
    from hffm_env.config import ConfigError

    huge = ["placement.placement=uniform", "placement.num_devices=100000"]
    with pytest.raises(ConfigError, match=r"needs about [\d.]+ GiB of memory .* this machine has"
                                          r".*The largest part, network, grows with placement"):
        gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost", overrides=huge)


def test_the_memory_message_names_the_settings_of_the_largest_part(monkeypatch):
    """A large fl.batch_size was refused with advice to reduce the devices, samples or model."""
    import os

    from hffm_env.config import ConfigError, apply_overrides, check_memory, small

    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**30 // 4096}  # a machine of 1 GiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    big_batches = apply_overrides(small(), {"fl.batch_size": 4096})
    with pytest.raises(ConfigError, match=r"largest part, training and evaluation, grows with "
                                          r"placement.num_devices, fl.batch_size"):
        check_memory(big_batches, "train")
    check_memory(big_batches, "cost")  # which trains nothing


def test_every_devices_module_copy_counts_in_the_memory_check(monkeypatch):
    """Large cost-fidelity networks peaked 4-8x above the estimate (1.8 GB for 10,000 devices
    against 0.43 GiB): every device holds a copy of the trainable modules."""
    import os

    from hffm_env.config import ConfigError, estimate_memory_bytes, load_scenario

    many = {"placement.num_devices": 8000, "placement.num_edge_servers": 2000,
            "placement.devices_per_cluster": 4, "placement.area_side_m": 200000.0,
            "placement.min_server_spacing_m": 10.0}
    parts = estimate_memory_bytes(load_scenario("small", overrides=many), "cost", 28_000)
    assert parts["module copies"] == 8000 * 28_000 * 4.0 * 1.5
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**30 // 4096}  # a machine of 1 GiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    with pytest.raises(ConfigError, match="The largest part, module copies, grows with "
                                          "placement.num_devices and the trainable modules"):
        gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost", overrides=many)


def test_a_backbone_too_big_for_the_machine_is_refused_by_describe_and_the_env(monkeypatch,
                                                                               capsys):
    """The estimate left the backbone out (hidden 4096 x 64 layers, all in range, was killed
    by the OOM killer) and `hffm describe` checked nothing (100,000 devices: numpy's 37 GiB
    allocation error)."""
    import os

    from hffm_env.cli import main as hffm
    from hffm_env.config import ConfigError

    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 4 * 2**30 // 4096}  # a machine of 4 GiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    big = ["model.hidden_size=4096", "model.num_heads=1", "model.intermediate_size=4096",
           "model.num_layers=64"]
    with pytest.raises(ConfigError, match="The largest part, model, grows with "
                                          "model.hidden_size"):
        gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost", overrides=big)
    assert hffm(["describe", "--set", *big]) == 2
    assert "The largest part, model" in capsys.readouterr().err
    assert hffm(["describe", "--set", "placement.num_devices=100000",
                 "placement.num_edge_servers=1", "placement.devices_per_cluster=100000"]) == 2
    assert "The largest part, network" in capsys.readouterr().err


def test_a_placement_that_reclusters_at_reset_is_refused_by_name():
    from hffm_env.config import ConfigError

    with pytest.raises(ConfigError, match=r"placement.placement = 'uniform': re-assigns devices"):
        gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                 overrides=["placement.placement=uniform"])
    # the simulator and hffm describe still take it
    from hffm_env.cli import main

    assert main(["describe", "--scenario", "small", "--set", "placement.placement=uniform"]) == 0
