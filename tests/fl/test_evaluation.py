"""The batched evaluator: each distinct model scored once, predictions equal to running every
device's own model on its own rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hffm_env.config import apply_overrides, small
from hffm_env.data import build_federated_data
from hffm_env.fl import FederatedEngine, Schedule, Tier
from hffm_env.fl.evaluation import BatchedEvaluator
from hffm_env.fl.reference import per_device_predictions
from hffm_env.models import build_model
from hffm_env.seeding import RandomStreams
from hffm_env.sim import Network
from hffm_env.testing import TINY_OVERRIDES


@pytest.fixture(scope="module")
def engine():
    cfg = apply_overrides(small(), list(TINY_OVERRIDES))
    streams = RandomStreams.from_seed(0)
    network = Network(cfg, streams)
    data = build_federated_data(cfg.data, network.topology.cluster_of_device,
                                streams.data)
    model = build_model(cfg.model, cfg.data, seed=0, progress=False)
    return FederatedEngine(cfg, model, data, network, train=True)


def _agreement(engine) -> float:
    return float((engine.predict_rows() == per_device_predictions(engine)).float().mean())


def test_distinct_models_each_scored_on_their_own_rows(engine):
    engine.reset(1)
    engine.run_round(Schedule())  # local training only: every device differs
    assert _agreement(engine) >= 0.999
    assert engine.evaluator.last_groups == engine.num_devices


def test_edge_aggregated_clusters_are_scored_once(engine):
    engine.reset(2)
    edge = Schedule.uniform(Tier.EDGE, engine.num_clusters)
    engine.run_round(edge)
    assert _agreement(engine) >= 0.999
    # devices of a cluster now agree on every module they read, whatever they hold
    assert engine.evaluator.last_groups == engine.num_clusters


def test_modules_no_one_reads_may_differ_within_a_group(engine):
    engine.reset(3)
    engine.run_round(Schedule.uniform(Tier.CLOUD, engine.num_clusters))
    groups = engine.evaluator.last_groups
    reads = engine.reads_modules()
    gen = torch.Generator().manual_seed(3)
    for name, value in engine.params.items():
        unread = ~torch.as_tensor(reads[:, engine.param_module[name]])
        noise = torch.randn(value.shape, generator=gen)
        engine.params[name] = torch.where(unread.view(-1, *[1] * (value.dim() - 1)),
                                          noise, value)
    assert _agreement(engine) >= 0.999
    assert engine.evaluator.last_groups == groups


def test_grouping_respects_every_module_a_member_reads():
    # modules: 0 read by all, 1 read by devices 0 and 2 only
    ids = np.array([[0, 5], [0, 7], [0, 6], [1, 5]])
    reads = np.array([[True, True], [True, False], [True, True], [True, True]])
    group, source = BatchedEvaluator.group_devices(ids, reads)
    assert group.tolist() == [0, 0, 1, 2]  # device 1 joins 0 (it ignores module 1)
    assert source[0].tolist() == [0, 0] and source[1].tolist() == [2, 2]


def test_the_evaluation_budget_says_what_each_round_measured():
    import gymnasium as gym

    import hffm_env  # noqa: F401  (registers the env ids)

    env = gym.make("hffm/HFFM-v0", scenario="small",
                   overrides=[*TINY_OVERRIDES, "env.episode_rounds=5",
                              "fl.eval_local_every_rounds=2"])
    _, info = env.reset(seed=0)
    assert info["measured"]["accuracy_local"]  # reset measures everything
    local, held_out = [], []
    for _ in range(5):
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["measured"]["accuracy"]  # the reward's number, every round
        local.append(info["measured"]["accuracy_local"])
        held_out.append(info["measured"]["accuracy_held_out"])
    assert local == [False, True, False, True, True]  # every 2nd round and the last one
    assert held_out == local
    env.close()


def test_a_task_whose_modules_have_not_arrived_does_not_touch_the_served_tasks(engine):
    """After a task arrival, the device runs the new task but holds neither its prompt nor its
    head yet: its predictions on the tasks it serves are those of its trained model, whatever
    the values of the prompt it does not hold (training leaves that prompt out as well)."""
    engine.reset(2)
    engine.run_round(Schedule())
    candidates = [(d, k) for d in range(engine.num_devices) for k in range(len(engine.tasks))
                  if not bool(engine.device_tasks[d, k])]
    assert candidates, "the tiny scenario needs a device that does not run some task"
    d, k = candidates[0]
    task = engine.tasks[k]
    engine.device_tasks[d, k] = True  # the task arrives; its prompt and head are pending
    prompt = engine.module_index[f"prompt/{task}"]
    engine.holds[d, prompt] = False
    engine.holds[d, engine.module_index[f"head/{task}"]] = False
    before = engine.predict_rows()
    for name in engine.inventory.by_id(f"prompt/{task}").param_names:
        engine.params[name][d] += 5.0  # the prompt the device does not hold
    after = engine.predict_rows()
    mine = engine.evaluator.rows.device == d
    assert torch.equal(before[mine], after[mine])
    assert bool((before[mine][:, k] == -1).all())  # the pending task itself is not scored
    assert _agreement(engine) >= 0.999  # the reference runs the same masks
