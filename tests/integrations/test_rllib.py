"""Training on Ray RLlib (``pip install -e ".[rllib]"``, which ``.ci/run`` installs): local
Ray, 2 env runners, cost fidelity, a few hundred steps; checkpoints written, evaluated and
resumed; the multi-agent env; the masking module. Without Ray these tests skip, with
``HFFM_REQUIRE_INTEGRATIONS=1`` (CI) they fail instead."""

from __future__ import annotations

import importlib
import json
import os

import gymnasium as gym
import numpy as np
import pytest

import hffm_env  # noqa: F401  (registers the env ids)
from hffm_env.testing import TINY_OVERRIDES, integration


def _ray():
    return integration("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (train_rllib leaves a running one alone)."""
    ray = _ray()
    importlib.import_module("ray.rllib")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _argv(out, *extra):
    sets = [f"--set={o}" for o in TINY_OVERRIDES]
    return ["--engine", "rllib", "--fidelity", "cost", "--n-envs", "2", "--n-steps", "64",
            "--batch-size", "64", "--eval-seeds", "1000", "--eval-policies", "never",
            "--no-progress", "--out", str(out), *sets, *extra]


def _tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return events


def test_rllib_trains_checkpoints_evaluates_and_resumes(local_ray, tmp_path, capsys):
    import hffm_env.agents.command as train_agent
    from hffm_env.agents.job import agent_policy
    from hffm_env.baselines.runner import run_episode

    first = tmp_path / "first"
    assert train_agent.main(_argv(first, "--total-timesteps", "256",
                                  "--checkpoint-every", "128", "--lr-schedule", "linear",
                                  "--learning-rate", "1e-3")) == 0
    info = json.loads((first / "agent.json").read_text())
    assert info["engine"] == "rllib" and info["num_timesteps"] == 256
    checkpoint = first / "checkpoints" / "step_00000128"
    assert (checkpoint / "policy.pt").is_file() and (checkpoint / "rllib").is_dir()
    results = json.loads((first / "results.json").read_text())
    assert {s["policy"] for s in results["policies"]} == {"agent:first", "never"}
    (run,) = (first / "runs").iterdir()
    tags = set(_tags(run).Tags()["scalars"])
    assert {"rollout/ep_rew_mean", "fl/energy_j", "train/policy_loss",
            "reward_terms/energy"} <= tags
    # the linear schedule over the 256 steps: after each update of 128 steps the learner
    # holds the next update's rate, that of step 128 and of step 256
    rates = [e.value for e in _tags(run).Scalars("train/learning_rate")]
    assert rates == pytest.approx([5e-4, 0.0]), rates

    # a checkpoint is an agent folder: it plays an episode on its own, deterministically
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    policy = agent_policy(checkpoint, name="ckpt")
    one, two = run_episode(env, policy, seed=5), run_episode(env, policy, seed=5)
    assert one.rewards == two.rewards and len(one.rewards) > 0
    env.close()

    # resuming continues the step count from the checkpoint's 128 to the new total
    resumed = tmp_path / "resumed"
    assert train_agent.main(_argv(resumed, "--total-timesteps", "256",
                                  "--resume", str(checkpoint), "--lr-schedule", "linear",
                                  "--learning-rate", "1e-3")) == 0
    info = json.loads((resumed / "agent.json").read_text())
    assert info["num_timesteps"] == 256
    # both processes that trained it, with their steps
    assert [r["timesteps"] for r in info["trained_by"]] == [[0, 128], [128, 256]]
    (run,) = (resumed / "runs").iterdir()
    steps = [e.step for e in _tags(run).Scalars("rollout/ep_rew_mean")]
    assert steps == [256]  # one iteration of 128 steps after the checkpoint's 128
    # ... on the same line as the uninterrupted run: the schedule counts the restored steps
    rates = [e.value for e in _tags(run).Scalars("train/learning_rate")]
    assert rates == pytest.approx([0.0]), rates

    # --force removes the run in --out only once the checkpoint resumed fits (it emptied
    # --out, then failed with a traceback on a checkpoint of another observation)
    before = sorted(p.name for p in resumed.iterdir())
    assert train_agent.main(_argv(resumed, "--total-timesteps", "256", "--force", "--resume",
                                  str(checkpoint), "--set", "env.observe_target=true",
                                  "--set", "env.target_accuracy=0.3")) == 2
    assert sorted(p.name for p in resumed.iterdir()) == before
    # another action mode or --multi-agent is refused by name before Ray builds anything (a
    # torch size mismatch blamed the --set values)
    for flags, says in ((["--action-mode", "coarse"], "was trained with --action-mode full, "
                         "not coarse"), (["--multi-agent"], "was trained without --multi-agent")):
        assert train_agent.main(_argv(tmp_path / "other", "--total-timesteps", "256",
                                      "--resume", str(checkpoint), *flags)) == 2
        assert says in capsys.readouterr().err


def test_a_failed_rllib_run_stops_its_algorithm_in_a_callers_ray_session(local_ray, tmp_path,
                                                                          monkeypatch):
    # the algorithm was stopped on success only: a failure left its env runners alive in
    # the session of a caller who had started Ray (a notebook, a cluster driver)
    from ray.rllib.algorithms.algorithm import Algorithm

    from hffm_env.agents.command import TrainArgs
    from hffm_env.agents.rllib import train_rllib

    stopped = []
    stop = Algorithm.stop

    def failing_train(self):
        raise RuntimeError("an env runner died")

    def recorded_stop(self):
        stopped.append(self)
        stop(self)

    monkeypatch.setattr(Algorithm, "train", failing_train)
    monkeypatch.setattr(Algorithm, "stop", recorded_stop)
    args = TrainArgs(engine="rllib", fidelity="cost", n_envs=1, n_steps=64, batch_size=64,
                     total_timesteps=64, progress=False, out=str(tmp_path / "o"),
                     overrides=list(TINY_OVERRIDES))
    with pytest.raises(RuntimeError, match="an env runner died"):
        train_rllib(args)
    assert len(stopped) == 1 and local_ray.is_initialized()


def test_rllib_multi_agent_trains_and_plays_in_the_runner(local_ray, tmp_path):
    import torch

    import hffm_env.agents.command as train_agent

    out = tmp_path / "ma"
    assert train_agent.main(_argv(out, "--multi-agent", "--reward-split", "cost-share",
                                  "--total-timesteps", "128")) == 0
    weights = torch.load(out / "policy.pt", weights_only=True)
    assert set(weights) == {"edge", "cloud"}
    # the shared edge module reads which cluster it acts for; bench rebuilds that observation
    assert json.loads((out / "agent.json").read_text())["agent_indicator"] is True
    results = json.loads((out / "results.json").read_text())
    agent = next(s for s in results["policies"] if s["policy"].startswith("agent"))
    assert agent["policy"] == "agent:ma" and agent["episodes"] == 1
    # RLlib's own way to load one module for inference reads the checkpoint (it recorded the
    # inner Box, which the module's constructor refused)
    from ray.rllib.core.rl_module.rl_module import RLModule

    edge = RLModule.from_checkpoint(out / "rllib/learner_group/learner/rl_module/edge")
    assert set(edge.masked_observation_space) == {"observation", "action_mask"}
    assert json.loads((out / "agent.json").read_text())["reward_split"] == "cost-share"


def test_a_resumed_rllib_run_says_what_it_changes(local_ray, tmp_path, capsys):
    """Resumed with another reward split or config, an RLlib run went on without a word (the
    SB3 engine noted both); its agent played on an env of other spaces named no size."""
    import hffm_env.agents.command as train_agent
    from hffm_env.agents.checkpoint import AgentFileError, OtherSettingsWarning
    from hffm_env.agents.job import agent_policy

    out = tmp_path / "ma"
    assert train_agent.main(_argv(out, "--multi-agent", "--reward-split", "cost-share",
                                  "--total-timesteps", "64", "--n-envs", "1", "--no-evaluate"
                                  )) == 0
    capsys.readouterr()
    assert train_agent.main(_argv(tmp_path / "on", "--multi-agent", "--total-timesteps", "128",
                                  "--n-envs", "1", "--no-evaluate", "--resume", str(out),
                                  "--set", "fl.lr=0.02")) == 0
    err = capsys.readouterr().err
    assert "with --reward-split team; it was trained with --reward-split cost-share" in err, err
    assert "it was trained with fl.lr=" in err and "(here 0.02)" in err, err
    env = gym.make("hffm/HFFM-v0", scenario="paper", fidelity="cost")  # other spaces
    policy = agent_policy(out)
    with pytest.warns(OtherSettingsWarning):
        policy.reset(env)
    obs, info = env.reset(seed=0)
    with pytest.raises(AgentFileError, match=r"does not fit this env's spaces \(observation "
                                             r"\(\d+,\), \d+ action slots\): size mismatch for "):
        policy.act(obs, info)
    env.close()


def test_masked_module_never_picks_a_masked_value(local_ray):
    import torch
    from gymnasium import spaces
    from ray.rllib.core.columns import Columns

    from hffm_env.agents.rllib import MaskedPPOModule, model_config

    nvec = np.array([3, 4, 2])
    space = spaces.Dict({"observation": spaces.Box(0.0, 1.0, (5,), np.float32),
                         "action_mask": spaces.Box(0, 1, (int(nvec.sum()),), np.bool_)})
    torch.manual_seed(0)
    module = MaskedPPOModule(observation_space=space, action_space=spaces.MultiDiscrete(nvec),
                             model_config=model_config())
    mask = np.zeros(int(nvec.sum()), dtype=bool)
    mask[[2, 3 + 1, 3 + 3, 7 + 0]] = True  # slot 0: only 2; slot 1: 1 or 3; slot 2: only 0
    batch = {Columns.OBS: {"observation": torch.rand(256, 5),
                           "action_mask": torch.as_tensor(mask).repeat(256, 1)}}
    logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    actions = module.get_exploration_action_dist_cls().from_logits(logits).sample().numpy()
    assert (actions[:, 0] == 2).all() and (actions[:, 2] == 0).all()
    assert set(np.unique(actions[:, 1])) == {1, 3}  # both allowed values are explored
    assert isinstance(batch[Columns.OBS], dict)  # the caller's batch is left as it was


def test_rllib_flags_are_checked_before_any_work(tmp_path):
    from hffm_env.agents.common import TrainArgs

    with pytest.raises(ValueError, match="address.*only with --engine rllib"):
        TrainArgs(address="auto", out=str(tmp_path))
    with pytest.raises(ValueError, match="algo = 'ppo'.*masked PPO"):
        TrainArgs(engine="rllib", algo="ppo", out=str(tmp_path))
    with pytest.raises(ValueError, match="action_mode = 'menu'.*multi-agent"):
        TrainArgs(engine="rllib", multi_agent=True, action_mode="menu", out=str(tmp_path))
    with pytest.raises(ValueError, match="finetune_timesteps"):
        TrainArgs(engine="rllib", finetune_timesteps=10, out=str(tmp_path))
    # RLlib does not normalise observations: the run's record does not say it did, and an
    # explicit --normalize is refused rather than ignored
    assert TrainArgs(engine="rllib", out=str(tmp_path)).normalize is False
    assert TrainArgs(out=str(tmp_path)).normalize is True
    assert TrainArgs(out=str(tmp_path), normalize=False).normalize is False
    with pytest.raises(ValueError, match="normalize: RLlib's observations"):
        TrainArgs(engine="rllib", normalize=True, out=str(tmp_path))
    from hffm_env.agents.command import main

    assert main(["--engine", "rllib", "--normalize", "--out", str(tmp_path / "o")]) == 2


def test_the_rllib_policy_learns_on_the_device_asked_for(tmp_path):
    _ray()
    from hffm_env.agents.common import TrainArgs
    from hffm_env.agents.rllib import rllib_config

    args = TrainArgs(engine="rllib", out=str(tmp_path))
    assert rllib_config(args).num_gpus_per_learner == 0
    args.device = "cuda"  # (set after the checks: this machine may have no GPU)
    assert rllib_config(args).num_gpus_per_learner == 1


def test_bad_rllib_agent_folders_get_one_clean_error(local_ray, tmp_path):
    import pickle

    from hffm_env.agents.checkpoint import AgentFileError, AgentInfo
    from hffm_env.agents.job import agent_policy

    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "agent.json").write_text(AgentInfo(algo="maskable-ppo", engine="rllib").to_json())
    with pytest.raises(AgentFileError, match="no policy.pt"):
        agent_policy(folder)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (folder / "policy.pt").write_bytes(pickle.dumps(Exploit()))
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    with pytest.raises(AgentFileError, match="policy.pt: not a weights file"):
        agent_policy(folder).reset(env)
    assert not (tmp_path / "pwned").exists()
    # weights of the wrong structure (a traceback from deep in torch before)
    import torch

    for held, says in (({"default_policy": "x"}, "holds {'default_policy': 'x'}"),
                       ({"default_policy": [1]}, "a mapping of module id"),
                       (torch.zeros(3), "a mapping of module id")):
        torch.save(held, folder / "policy.pt")
        with pytest.raises(AgentFileError, match="policy.pt: not a weights file") as refused:
            agent_policy(folder).reset(env)
        assert says in str(refused.value)
    # weights of the right structure, but NaN (a diverged run): named before they act
    torch.save({"default_policy": {"encoder.weight": torch.full((2, 2), float("nan"))}},
               folder / "policy.pt")
    policy = agent_policy(folder)
    policy.reset(env)
    obs, info = env.reset(seed=0)
    with pytest.raises(AgentFileError, match="policy.pt: module 'default_policy': its weights "
                                             "are not finite"):
        policy.act(obs, info)
    # entries that are not the network's: a damaged file, not other spaces
    torch.save({"default_policy": {"encoder.weight": torch.zeros(2, 2)}}, folder / "policy.pt")
    policy = agent_policy(folder)
    policy.reset(env)
    with pytest.raises(AgentFileError, match="policy.pt: module 'default_policy': its weights "
                                             "are not the entries of the network agent.json "
                                             "describes: Missing key"):
        policy.act(obs, info)
    env.close()


def test_scaleout_bench_reports_both_engines_as_json(local_ray, tmp_path):
    import sys

    sys.path.insert(0, "benchmarks")
    try:
        import scaleout
    finally:
        sys.path.remove("benchmarks")
    out = tmp_path / "scaleout.json"
    sets = [f"--set={o}" for o in TINY_OVERRIDES]
    assert scaleout.main(["--fidelities", "cost", "--workers", "1", "2", "--steps", "8",
                          "--json", str(out), *sets]) == 0
    written = json.loads(out.read_text())
    rows = written["rows"]
    assert written["provenance"]["libraries"]  # the code and machine that measured them
    assert {(r["engine"], r["workers"]) for r in rows} == {("rllib", 1), ("rllib", 2),
                                                           ("sb3", 1), ("sb3", 2)}
    assert all(r["steps_per_s"] > 0 for r in rows)
    assert [r["speedup"] for r in rows if r["workers"] == 1] == [1.0, 1.0]


@pytest.mark.parametrize("argv", [["--scenario", "nosuch"], ["--set", "env.foo=1"]])
def test_scaleout_bench_refuses_a_bad_scenario_before_starting_ray(monkeypatch, argv):
    # it started a local Ray instance (seconds, and its log lines) before saying so
    import sys

    ray = _ray()
    sys.path.insert(0, "benchmarks")
    try:
        import scaleout
    finally:
        sys.path.remove("benchmarks")

    def started(*args, **kwargs):
        raise AssertionError("Ray started")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", started)
    with pytest.raises(ValueError, match="'nosuch': known are|unknown config key env.foo"):
        scaleout.main(["--engines", "rllib", "--fidelities", "cost", "--workers", "1", *argv])


def test_an_address_where_nothing_listens_is_one_clean_error():
    _ray()
    from hffm_env.agents.rllib import join_cluster

    with pytest.raises(ValueError, match=r"address = '127.0.0.1:6399': cannot join.*"
                                         r"nothing answers"):
        join_cluster("127.0.0.1:6399")


def test_a_minibatch_is_at_most_a_rollout_as_in_the_sb3_engine():
    """--batch-size 64 with --n-steps 32 failed inside RLlib after Ray had started."""
    _ray()
    from hffm_env.agents.common import TrainArgs
    from hffm_env.agents.rllib import rllib_config

    config = rllib_config(TrainArgs(engine="rllib", fidelity="cost", n_steps=32, batch_size=64))
    assert config.train_batch_size_per_learner == 32 and config.minibatch_size == 32


def test_the_env_factory_passes_every_env_setting_and_names_unknown_ones():
    """RLlib's env_config={"reward": ...} was dropped without a word (a fixed allow-list)."""
    _ray()
    from hffm_env.agents.rllib import MultiAgentHFFM, make_rllib_env

    config = {"scenario": "small", "overrides": list(TINY_OVERRIDES), "fidelity": "cost",
              "reward": "accuracy-gain", "torch_threads": 1}
    assert make_rllib_env(config).unwrapped.config.env.reward == "accuracy-gain"
    multi = MultiAgentHFFM({**config, "reward_split": "cost-share"})
    assert multi.parallel.env.config.env.reward == "accuracy-gain"
    with pytest.raises(TypeError, match="fidelty"):
        make_rllib_env({**config, "fidelty": "cost"})
    # the adapter observes the flat mask of the full infos: a KeyError at the first reset
    with pytest.raises(ValueError, match="env_config info = 'numeric'"):
        MultiAgentHFFM({**config, "info": "numeric"})


def test_the_multi_agent_env_lists_its_live_agents():
    """RLlib reads `agents` as the agents still acting: it kept every agent after the
    episode's end."""
    _ray()
    from hffm_env.agents.rllib import MultiAgentHFFM

    multi = MultiAgentHFFM({"scenario": "small", "fidelity": "cost", "torch_threads": 1,
                            "overrides": [*TINY_OVERRIDES, "env.episode_rounds=2"]})
    multi.reset(seed=0)
    assert multi.agents == multi.possible_agents
    for _ in range(2):
        assert multi.agents == multi.possible_agents
        _, _, terms, _, _ = multi.step({a: multi.action_spaces[a].sample() for a in multi.agents})
    assert terms["__all__"] and multi.agents == []
    multi.reset(seed=1)
    assert multi.agents == multi.possible_agents


def test_the_logged_return_of_a_multi_agent_run_is_the_team_return():
    """RLlib's episode return sums every agent's: the curve read 5 times the team return on
    `small` (four edge agents and the cloud, each given the team reward)."""
    _ray()
    from hffm_env.agents.rllib import _log

    class Writer:
        def __init__(self):
            self.scalars = {}

        def add_scalar(self, tag, value, step):
            self.scalars[tag] = value

    team = -1.77
    multi = {"env_runners": {"episode_return_mean": 5 * team, "agent_episode_returns_mean": {
        **{f"edge_{c}": team for c in range(4)}, "cloud_0": team}}}
    writer = Writer()
    _log(writer, multi, 1)
    assert writer.scalars["rollout/ep_rew_mean"] == team
    assert writer.scalars["rollout/ep_rew_mean/edge_2"] == team
    single = {"env_runners": {"episode_return_mean": team,
                              "agent_episode_returns_mean": {"default_agent": team}}}
    writer = Writer()
    _log(writer, single, 1)
    assert writer.scalars == {"rollout/ep_rew_mean": team}
