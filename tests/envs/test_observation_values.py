"""What the observation says, entry by entry, against what the env did and the simulator
holds (the space checks elsewhere only see that every entry lies in [0, 1])."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hffm_env.config import MODULE_TYPES
from hffm_env.fl.schedule import Route
from hffm_env.testing import make_tiny_env
from hffm_env.wrappers import full_action


def _named(env, obs):
    return dict(zip(env.unwrapped.observation_names, obs.tolist(), strict=True))


def test_cost_fidelity_entries_follow_the_schedule_the_links_and_the_budgets():
    env = make_tiny_env("small", "cost", extra=["env.episode_rounds=16",
                                                "dynamics.dropout_prob=0.3"])
    base = env.unwrapped
    obs, _ = env.reset(seed=3)
    energy = latency = 0.0
    edge_every_round_cloud_never = full_action(env, 1, 0, Route.DIRECT)
    for played in range(1, 4):
        obs, _, _, _, info = env.step(edge_every_round_cloud_never)
        energy += info["energy_j"]
        latency += info["latency_s"]
        v = _named(env, obs)
        assert v["round"] == pytest.approx(played / 16)
        for t in MODULE_TYPES:
            assert v[f"staleness/{t}/edge"] == 0.0
            assert v[f"staleness/{t}/cloud"] == pytest.approx(played / 8)
        network = base.network
        for c in range(network.num_clusters):
            members = network.members(c)
            assert v[f"cluster/{c}/available"] == pytest.approx(
                float(np.mean(network.available[members])))
            assert v[f"cluster/{c}/uplink"] == pytest.approx(
                math.log10(float(np.mean(network.rates.uplink_bps[members]))) / 10, rel=1e-6)
        assert v["budget/energy"] == pytest.approx(
            energy / (base.cost_range.reference_energy_j * 16), rel=1e-5)
        assert v["budget/latency"] == pytest.approx(
            latency / (base.cost_range.reference_latency_s * 16), rel=1e-5)
        for t in base.tasks:  # cost fidelity measures no accuracy
            assert v[f"accuracy/{t}"] == 0.0
    # a cloud round makes both clocks fresh
    obs, *_ = env.step(full_action(env, 1, 1, Route.DIRECT))
    v = _named(env, obs)
    assert all(v[f"staleness/{t}/{tier}"] == 0.0 for t in MODULE_TYPES
               for tier in ("edge", "cloud"))
    available = [v[f"cluster/{c}/available"] for c in range(base.network.num_clusters)]
    assert min(available) < 1.0, "dropout 0.3 should leave someone out in four rounds"


def test_a_budget_overrun_beyond_what_a_float_holds_is_observed_as_used_up():
    """energy used / budget overflows to inf with a budget of 1e-310 J: the entry read 0
    ("nothing used") instead of 1."""
    env = make_tiny_env("small", "cost", extra=["env.energy_budget_j=1e-310"])
    env.reset(seed=0)
    obs, _, terminated, _, info = env.step(full_action(env, 1, 0, Route.DIRECT))
    assert terminated and info["end"] == "energy_budget"
    assert _named(env, obs)["budget/energy"] == 1.0


def test_measured_accuracy_loss_and_drift_reach_the_observation():
    env = make_tiny_env("small", "train")
    base = env.unwrapped
    env.reset(seed=0)
    obs, _, _, _, info = env.step(full_action(env, 1, 0, Route.DIRECT))  # edge, no cloud
    v = _named(env, obs)
    assert info["measured"]["accuracy"]
    for t in base.tasks:
        assert v[f"accuracy/{t}"] == pytest.approx(info["accuracy"][t], abs=1e-6)
        assert v[f"accuracy/{t}"] > 0.0
    assert any(v[f"loss/{t}"] > 0.0 for t in base.tasks)
    # after an edge round every cluster holds its own average: no drift inside clusters,
    # some between them (their data differ)
    for t in MODULE_TYPES:
        assert v[f"drift/{t}/cluster"] == pytest.approx(0.0, abs=1e-6)
    assert max(v[f"drift/{t}/global"] for t in MODULE_TYPES) > 0.0
    obs, *_ = env.step(full_action(env, 1, 1, Route.DIRECT))  # a cloud round: one model
    v = _named(env, obs)
    for t in MODULE_TYPES:
        assert v[f"drift/{t}/cluster"] == pytest.approx(0.0, abs=1e-6)
        assert v[f"drift/{t}/global"] == pytest.approx(0.0, abs=1e-6)


def test_loss_d2d_and_request_entries_say_what_the_env_holds():
    """The loss scale, the clusters' D2D rate and density and the pending requests were never
    checked by value: flipping is_head, halving the density or another loss scale passed."""
    env = make_tiny_env("small", "train", extra=["fl.task_arrival_prob=1.0"])
    base = env.unwrapped
    env.reset(seed=3)
    obs, *_ = env.step(full_action(env, 1, 0, Route.DIRECT))
    v = _named(env, obs)
    for t in base.tasks:  # the mean training loss over 2 ln(classes), at most 1
        scale = 2.0 * math.log(max(base.engine.model.num_classes[t], 2))
        loss = base.last_result.loss_per_task[t]
        assert loss > 0.0 and v[f"loss/{t}"] == pytest.approx(min(loss / scale, 1.0), rel=1e-5)
    network = base.network
    for c in range(network.num_clusters):
        graph, k = network.d2d_graphs[c], len(network.members(c))
        possible = k * (k - 1) / 2
        assert v[f"cluster/{c}/d2d_density"] == pytest.approx(
            graph.number_of_edges() / possible if possible else 1.0)
        rates = [network.rates.d2d_rate(i, j) for i, j in graph.edges]
        if rates:
            assert v[f"cluster/{c}/d2d_rate"] == pytest.approx(
                math.log10(float(np.mean(rates))) / 10, rel=1e-6)
    pending = base.pending
    assert pending, "every task arrives: some module must be requested"
    for r in range(base.layout.num_requests):
        present = r < len(pending)
        assert v[f"request/{r}/present"] == float(present)
        assert v[f"request/{r}/is_head"] == float(
            present and pending[r].module_id.startswith("head/"))
