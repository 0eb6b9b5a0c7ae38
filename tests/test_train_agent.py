"""train_agent.py end to end on a tiny budget, and a saved agent as a policy."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import hffm_env.agents.command as train_agent
from hffm_env.agents.common import TrainArgs
from hffm_env.agents.ppo import AgentPolicy
from hffm_env.baselines.runner import run_episode
from hffm_env.cli import main as cli_main
from hffm_env.testing import TINY_OVERRIDES


@pytest.mark.parametrize("algo", ["maskable-ppo", "ppo"])
def test_tiny_training_run_writes_its_outputs(tmp_path, algo, capsys):
    out = tmp_path / algo
    code = train_agent.main([
        "--scenario", "small", "--fidelity", "cost", "--algo", algo,
        "--total-timesteps", "16", "--n-steps", "8", "--batch-size", "8",
        "--checkpoint-every", "8", "--out", str(out), "--eval-seeds", "1000",
        "--eval-policies", "star", "hffm-e2", "--no-progress",
        "--overrides", *TINY_OVERRIDES,
    ])
    assert code == 0
    for name in ("model.zip", "agent.json", "vecnormalize.npz", "results.json", "results.md",
                 "pareto.png"):
        assert (out / name).exists(), name
    assert not list(out.rglob("*.pkl"))
    assert (out / "checkpoints" / "step_00000008" / "model.zip").exists()
    # 16 rounds of 4-round episodes: four episodes on the curve, with the env's raw returns
    curve = (out / "learning_curve.csv").read_text().splitlines()
    assert curve[0] == "timesteps,phase,episode_return,rounds"
    rows = [line.split(",") for line in curve[1:]]
    assert [int(r[0]) for r in rows] == [4, 8, 12, 16]
    assert {r[1] for r in rows} == {"cost"} and all(r[3] == "4" for r in rows)
    assert all(np.isfinite(float(r[2])) for r in rows)
    assert (out / "learning_curve.png").stat().st_size > 10_000
    (run,) = (out / "runs").glob(f"small__{algo}__0__*")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    assert {"fl/latency_s", "fl/energy_j", "reward_terms/energy"} <= set(
        events.Tags()["scalars"])  # (cost fidelity measures no accuracy: no fl/accuracy)
    results = json.loads((out / "results.json").read_text())
    assert [p["policy"] for p in results["policies"]] == [f"agent:{algo}", "star", "hffm-e2"]
    printed = capsys.readouterr().out
    assert "| star |" in printed
    assert f"**Verdict:** agent:{algo} " in printed and "best baseline by return" in printed
    assert results["verdict"].startswith(f"agent:{algo} ")

    # a saved agent loads and evaluates through the baselines' protocol
    agent = AgentPolicy(out / "model.zip")
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    record = run_episode(env, agent, seed=5)
    assert record.rounds == 4 and np.isfinite(record.energy_j).all()
    if algo == "maskable-ppo":  # its actions keep to the env's masks (the env would repair
        obs, info = env.reset(seed=6)  # masked values silently, so check them here)
        agent.reset(env, 6)
        offsets = np.concatenate([[0], np.cumsum(env.action_space.nvec)])
        for _ in range(4):
            mask, action = env.unwrapped.action_masks(), agent.act(obs, info)
            assert all(mask[offsets[k] + v] for k, v in enumerate(action))
            obs, _, _, _, info = env.step(action)

    # ... and through `hffm bench --agent`, named after its run folder
    bench_json = tmp_path / f"{algo}-bench.json"
    settings = [arg for kv in TINY_OVERRIDES for arg in ("--set", kv)]
    assert cli_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies", "star",
                     "--seeds", "1000", "--agent", str(out / "model.zip"), "--no-progress",
                     "--json", str(bench_json), *settings]) == 0
    bench = json.loads(bench_json.read_text())
    assert [p["policy"] for p in bench["policies"]] == [f"agent:{algo}", "star"]
    # the job's results (written into the agent's folder) and the bench's merge: the agent's
    # digest covers its own files, not the results beside them
    from hffm_env.baselines.runner import BenchResult

    merged = BenchResult.merge([BenchResult.read_json(out / "results.json"),
                                BenchResult.read_json(bench_json)])
    assert {s.policy for s in merged.summaries} == {f"agent:{algo}", "star", "hffm-e2"}
    assert "was trained with" not in capsys.readouterr().err  # the same settings: no note
    # on other settings than its training's, the bench says which (a note, not an error)
    assert cli_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies", "",
                     "--seeds", "1000", "--agent", str(out), "--no-progress", *settings,
                     "--set", "env.episode_rounds=3", "--set", "env.energy_weight=0.5"]) == 0
    note = capsys.readouterr().err
    assert f"agent:{algo} was trained with env.energy_weight=" in note
    assert "env.episode_rounds=4 (here 3)" in note


def test_round_metrics_are_what_was_measured():
    """The SB3 and RLlib logs each picked a round's metrics from info themselves."""
    from hffm_env.agents.common import round_metrics

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    metrics = round_metrics(info)
    assert metrics["fl/energy_j"] == info["energy_j"] > 0
    assert metrics["fl/latency_s"] == info["latency_s"]
    assert "fl/accuracy" not in metrics  # not measured in cost fidelity: not logged as 0
    assert {f"reward_terms/{k}" for k in info["reward_terms"]} <= set(metrics)
    assert round_metrics({"episode": {"r": 1.0}}) == {}  # another wrapper's info
    env.close()


def test_bad_arguments_exit_2(capsys, tmp_path, monkeypatch):
    assert train_agent.main(["--algo", "dqn"]) == 2
    assert "algo" in capsys.readouterr().err
    assert train_agent.main(["--batch-size", "1"]) == 2
    assert "--batch-size 1: must be >= 2" in capsys.readouterr().err
    assert train_agent.main(["--n-steps", "1"]) == 2
    assert "--n-steps 1 with --n-envs 1" in capsys.readouterr().err
    # PPO trains whole rollouts: one longer than the run trained 32 times the rounds asked
    for argv, flag in ((["--total-timesteps", "64", "--n-steps", "2048"], "--total-timesteps 64"),
                       (["--finetune-timesteps", "8", "--n-envs", "2"], "--finetune-timesteps 8")):
        assert train_agent.main(["--fidelity", "cost", *argv]) == 2
        assert f"{flag}: less than one rollout" in capsys.readouterr().err
    # training never resets an env with a held-out seed (1000+) or an evaluation seed
    for argv in (["--seed", "500", "--finetune-timesteps", "64"],
                 ["--seed", "999", "--n-envs", "2"],
                 ["--seed", "3", "--n-envs", "2", "--eval-seeds", "4"],
                 ["--seed", "999", "--engine", "rllib"]):  # (its runners take one more)
        assert train_agent.main(["--fidelity", "cost", *argv]) == 2
        assert "training would reset its envs with seeds" in capsys.readouterr().err
    # ... but sb3 resets its envs with seed .. seed + n_envs - 1 only (it refused these two)
    assert TrainArgs(fidelity="cost", seed=999).training_env_seeds() == [999]
    assert TrainArgs(fidelity="cost", seed=3, n_envs=2, eval_seeds=[5]).training_env_seeds() == [
        3, 4]
    # an evaluation that does not run needs no surrogate fit (it was refused, blaming
    # --fidelity); one that runs names its flag
    no_fit = ["fl.local_steps=3"]  # (no fit is shipped for this config)
    TrainArgs(fidelity="cost", eval_fidelity="surrogate", evaluate=False, overrides=no_fit)
    with pytest.raises(ValueError, match="^--eval-fidelity surrogate: .*no fitted surrogate"):
        TrainArgs(fidelity="cost", eval_fidelity="surrogate", overrides=no_fit)
    # empty paths are refused (--resume "" started afresh, --out "" wrote into the cwd)
    for flag in ("--resume", "--out"):
        assert train_agent.main(["--fidelity", "cost", flag, ""]) == 2
        assert f"{flag} '': must be a path" in capsys.readouterr().err
    # what would be silently ignored or counted twice is refused before training
    for argv, message in ((["--eval-seeds", "1000", "1000"], "--eval-seeds has 1000 twice"),
                          (["--eval-policies", "star", "star"], "--eval-policies has 'star' twice"),
                          (["--reward-split", "cost-share"], "only with --multi-agent"),
                          (["--n-envs", "2000"], "--seed 0, --n-envs 2000: training would"),
                          (["--episode-rounds", "5", "--set", "env.episode_rounds=7"],
                           "--episode-rounds 5 and --set env.episode_rounds=7 give one"),
                          (["--imitate-rounds", "10"], "--imitate-rounds 10: only with"),
                          (["--surrogate", "s.pt"], "--surrogate 's.pt': neither training"),
                          (["--eval-policies", ""], "--eval-policies is empty"),
                          # the config's own names stay (its seed is not --seed)
                          (["--set", "seed=abc"], "seed = 'abc'"),
                          (["--n-steps", "1"], "--n-steps 1 with --n-envs 1")):
        assert train_agent.main(["--fidelity", "cost", *argv]) == 2
        assert message in capsys.readouterr().err
    # field names become flags only where they name a field, never inside a path
    (tmp_path / "seed").mkdir()
    assert train_agent.main(["--fidelity", "cost", "--resume", str(tmp_path / "seed"),
                             "--out", str(tmp_path / "o")]) == 2
    assert f"--resume: {tmp_path / 'seed'}: no model.zip" in capsys.readouterr().err
    # a missing surrogate for the evaluation is refused before training, not after it
    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert train_agent.main(["--fidelity", "cost", "--eval-fidelity", "surrogate",
                             "--set", "fl.lr=0.02", "--out", str(out)]) == 2
    assert "no fitted surrogate" in capsys.readouterr().err and not out.exists()
    assert TrainArgs().algo == "maskable-ppo"


def test_a_surrogate_run_says_which_fit_predicts_its_accuracy(tmp_path, monkeypatch, capsys):
    """A calibrated fit in the cache replaces the shipped one for every later run; training
    never said which one it played (hffm bench did)."""
    import shutil

    from hffm_env.config import small
    from hffm_env.fl.surrogate import find_surrogate, surrogate_path

    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path / "cache"))
    argv = ["--scenario", "small", "--fidelity", "surrogate", "--total-timesteps", "8",
            "--n-steps", "8", "--batch-size", "8", "--no-evaluate", "--no-progress"]
    assert train_agent.main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "note: accuracy predicted by the fit shipped with the package (surrogate-" in \
        capsys.readouterr().err
    shipped = find_surrogate(small()).path
    # ... and the agent's record of the process that trained it names the fit by its digest
    (process,) = json.loads((tmp_path / "a" / "agent.json").read_text())["trained_by"]
    shipped_fit = find_surrogate(small())
    assert process["surrogate"] == {"origin": shipped_fit.origin, "digest": shipped_fit.digest,
                                    "path": str(shipped)}
    assert len(process["surrogate"]["digest"]) == 16
    cached = surrogate_path(small())
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shipped, cached)  # as `hffm calibrate` without --out leaves it
    assert train_agent.main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert f"note: accuracy predicted by the fit in {cached}" in capsys.readouterr().err
    # the run's envs load the file found when it started, not one calibrated since
    args = train_agent.parse_args([*argv, "--out", str(tmp_path / "c")])
    cached.unlink()
    assert args.env_kwargs("surrogate")["surrogate"] == str(cached)
    assert args.env_kwargs("cost")["surrogate"] is None


def test_hffm_debug_shows_the_traceback_of_a_user_error(monkeypatch):
    from hffm_env.config import ConfigError

    monkeypatch.setenv("HFFM_DEBUG", "1")
    with pytest.raises(ConfigError, match="fl.lr = -1.0"):
        train_agent.main(["--set", "fl.lr=-1"])


def test_a_run_builds_every_env_from_its_config_file_as_it_started(tmp_path):
    """The training envs and the final evaluation read the --config file again when they
    were built, so a file edited while a run trained (the next experiment's) changed the
    run's last envs and its evaluation."""
    from hffm_env.agents.job import evaluation_baselines
    from hffm_env.agents.ppo import make_env_fn

    config_file = tmp_path / "run.yaml"
    config_file.write_text("scenario: small\nenv:\n  period_menu: [1, 2, 4, 8, 0]\n")
    args = train_agent.parse_args(["--config", str(config_file), "--fidelity", "cost",
                                   "--overrides", *TINY_OVERRIDES])
    started = args.scenario_config()
    assert args.scenario == "small"
    config_file.write_text("scenario: small\nenv:\n  period_menu: [1, 3, 0]\n")
    env = make_env_fn(args, 0)()
    assert env.unwrapped.config == started == args.scenario_config()
    assert "hffm-e8" in evaluation_baselines(args)  # its period 8 is on the run's menu


def test_fixed_grid_named_on_its_tuning_seeds_is_refused_before_training(tmp_path, capsys):
    """``--eval-seeds 0`` trained the agent, then judged it against a fixed-grid tuned on
    seed 0 and scored on its own tuning episode."""
    from hffm_env.agents.job import evaluation_baselines

    args = train_agent.parse_args(["--fidelity", "cost", "--seed", "5", "--eval-seeds", "0",
                                   "--overrides", *TINY_OVERRIDES])
    default = evaluation_baselines(args, say=True)  # the default comparison leaves it out
    assert "fixed-grid" not in default and "star" in default
    assert "leaves out fixed-grid: tuned on some of the eval_seeds [0]" in capsys.readouterr().err
    status = train_agent.main(["--fidelity", "cost", "--seed", "5", "--eval-seeds", "0",
                               "--eval-policies", "fixed-grid", "--out", str(tmp_path / "o"),
                               "--overrides", *TINY_OVERRIDES])
    assert status == 2 and not (tmp_path / "o").exists()  # refused before training
    assert "--eval-policies has 'fixed-grid', but it is tuned on seeds [0]" in \
        capsys.readouterr().err
    args = train_agent.parse_args(["--fidelity", "cost", "--seed", "5", "--eval-seeds", "0",
                                   "--eval-policies", "star", "--overrides", *TINY_OVERRIDES])
    assert evaluation_baselines(args) == ["star"]


def test_no_evaluate_stops_after_training_and_clears_an_older_comparison(tmp_path, capsys):
    """--no-evaluate: the agent and its curve, no comparison (which took as long as the
    training on small runs); a comparison an earlier run left in --out judged another agent."""
    out = tmp_path / "o"
    common = ["--fidelity", "cost", "--total-timesteps", "8", "--n-steps", "8", "--batch-size",
              "8", "--eval-seeds", "1000", "--eval-policies", "never", "--no-progress",
              "--out", str(out), "--overrides", *TINY_OVERRIDES]
    assert train_agent.main(common) == 0
    assert (out / "results.json").exists()
    capsys.readouterr()
    assert train_agent.main([*common, "--total-timesteps", "16", "--resume", str(out),
                             "--no-evaluate"]) == 0
    printed, err = capsys.readouterr()
    assert f"agent saved in {out}" in printed
    # the command it prints compares the agent as the run's own comparison would: on the
    # settings trained on (without --config it played the preset's 16 rounds, not these 4)
    import shlex

    command = printed.split("with the baselines: ", 1)[1].rsplit(" does it)", 1)[0]
    bench_argv = shlex.split(command)
    assert bench_argv[:2] == ["hffm", "bench"] and "--config" in bench_argv
    assert cli_main([*bench_argv[1:], "--json", str(tmp_path / "b.json")]) == 0
    played = json.loads((tmp_path / "b.json").read_text())
    assert played["seeds"] == [1000] and {e["policy"] for e in played["episodes"]} >= {"never"}
    assert {len(e["accuracy"]) for e in played["episodes"]} == {4}
    capsys.readouterr()
    # the comparison's flags of the command line it was added to are named as unused
    assert "note: --no-evaluate: --eval-seeds, --eval-policies go unused" in err
    assert "| never |" not in printed
    assert json.loads((out / "agent.json").read_text())["num_timesteps"] == 16
    assert not any((out / name).exists() for name in ("results.json", "results.md",
                                                       "pareto.png"))
    assert json.loads((out / "train_args.json").read_text())["evaluate"] is False


def test_errors_name_the_flags_typed(tmp_path, capsys):
    """Each error names the flag and value the user gave: the seeds' and the action mode's
    spoke of fields (``eval_seeds[0] = -3``) or of a wrapper alone."""
    out = str(tmp_path / "never")
    for argv, line in (
            (["--eval-seeds", "-3"], "error: --eval-seeds -3: must be an integer"),
            (["--eval-seeds", "5", "0"], "apart from --eval-seeds [5, 0]"),
            (["--action-mode", "menu", "--set", "env.period_menu=[1,2]"],
             "error: --action-mode 'menu': ScheduleMenu: schedule 'edge-only', cloud period = 0")):
        assert train_agent.main(["--fidelity", "cost", "--no-progress", "--out", out,
                                 "--total-timesteps", "8", "--n-steps", "8", "--batch-size",
                                 "8", *argv]) == 2
        err = capsys.readouterr().err
        assert line in err and "Traceback" not in err, err
    assert not Path(out).exists()


def test_flags_share_hffm_vocabulary():
    args = train_agent.parse_args(["--set", "fl.lr=0.01", "--set", "env.episode_rounds=4",
                                   "--overrides", "fl.local_steps=2", "--eval-seeds", "1001"])
    assert args.overrides == ["fl.lr=0.01", "env.episode_rounds=4", "fl.local_steps=2"]
    assert args.eval_seeds == [1001]  # given lists replace the default, not extend it
    assert train_agent.parse_args([]).eval_seeds == [1000, 1001, 1002]
    help_text = train_agent.build_parser().format_help()
    assert "{ppo,maskable-ppo}" in help_text and "{train,surrogate,cost}" in help_text
    assert "{full,coarse,menu}" in help_text
    assert "--config" in help_text and "--set" in help_text
    with pytest.raises(SystemExit):  # a --set with nothing after it was taken silently
        train_agent.parse_args(["--set", "--fidelity", "cost"])


@pytest.mark.parametrize("mode", ["coarse", "menu"])
def test_agents_of_a_smaller_action_space_act_in_the_full_env(tmp_path, mode):
    out = tmp_path / mode
    assert train_agent.main([
        "--scenario", "small", "--fidelity", "cost", "--action-mode", mode,
        "--total-timesteps", "16", "--n-steps", "8", "--batch-size", "8", "--out", str(out),
        "--eval-seeds", "1000", "--eval-policies", "never", "--no-progress",
        "--overrides", *TINY_OVERRIDES,
    ]) == 0
    assert json.loads((out / "agent.json").read_text())["action_mode"] == mode
    agent = AgentPolicy(out)
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    record = run_episode(env, agent, seed=3)  # full actions, through the wrapper
    assert record.rounds == 4


def test_a_run_resumed_at_its_first_phases_end_fine_tunes_as_long_as_the_run(tmp_path):
    """12 rounds in rollouts of 8 end the first phase at 16; resumed from that checkpoint, the
    fine-tuning's 10 rounds lost the first phase's overshoot of 4 (6 asked, 8 trained: 24 in
    all against the uninterrupted run's 32)."""
    from hffm_env.agents.checkpoint import find_agent

    def run(out, *extra):
        assert train_agent.main([
            "--scenario", "small", "--fidelity", "cost", "--n-steps", "8", "--batch-size", "8",
            "--total-timesteps", "12", "--finetune-timesteps", "10", "--no-evaluate",
            "--no-progress", "--out", str(out), *extra, "--overrides", *TINY_OVERRIDES]) == 0
        return find_agent(out).info.num_timesteps

    first = tmp_path / "first"
    assert run(first) == 32
    boundary = first / "checkpoints" / "step_00000016"
    assert find_agent(boundary).info.fidelity == "cost"
    assert run(tmp_path / "resumed", "--resume", str(boundary)) == 32


def test_ctrl_c_while_the_fine_tuning_env_is_built_keeps_the_first_phases_agent(
        tmp_path, capsys, monkeypatch):
    """It said "interrupted before training started; nothing was saved" with the first
    phase's checkpoint on disk, no agent in --out and no command to continue."""
    import hffm_env.envs.hffm_env as env_module
    from hffm_env.agents.checkpoint import find_agent

    built = env_module.build_engine

    def interrupted_in_train(cfg, fidelity, **kwargs):
        if fidelity == "train":
            raise KeyboardInterrupt
        return built(cfg, fidelity, **kwargs)

    monkeypatch.setattr(env_module, "build_engine", interrupted_in_train)
    out = tmp_path / "run"
    argv = ["--scenario", "small", "--fidelity", "cost", "--n-steps", "8", "--batch-size", "8",
            "--total-timesteps", "16", "--finetune-timesteps", "8", "--no-evaluate",
            "--no-progress", "--out", str(out), "--overrides", *TINY_OVERRIDES]
    assert train_agent.main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted at 16 of 24 timesteps (while building the fine-tuning env)" in err
    assert "continue with" in err and "--resume" in err
    assert (find_agent(out).info.num_timesteps, find_agent(out).info.fidelity) == (16, "cost")
    monkeypatch.setattr(env_module, "build_engine", built)
    assert train_agent.main([*argv, "--resume", str(out)]) == 0
    assert find_agent(out).info.num_timesteps == 24


def test_learning_rate_schedule_spans_the_run_and_its_resumption(tmp_path, capsys):
    """Each update's learning rate is the schedule's when its rollout starts, over training
    and fine-tuning alike (16 + 16 steps, rollouts of 8: 1, 3/4, 1/2 and 1/4 of 1e-3); a run
    resumed from a checkpoint, in training or in fine-tuning, ends where the uninterrupted one
    does, with its learning curve continued; a constant rate on resume is the one given."""
    import csv

    from hffm_env.agents.checkpoint import find_agent, load_model

    def rate(folder):
        env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                       overrides=list(TINY_OVERRIDES))
        model = load_model(find_agent(folder), env.observation_space, env.action_space)
        env.close()
        return model.policy.optimizer.param_groups[0]["lr"]

    def curve(folder):
        with (folder / "learning_curve.csv").open() as f:
            return [(int(r["timesteps"]), r["phase"]) for r in csv.DictReader(f)]

    def run(out, *extra, schedule="linear", lr="1e-3"):
        assert train_agent.main([
            "--scenario", "small", "--fidelity", "cost", "--n-steps", "8", "--batch-size", "8",
            "--learning-rate", lr, "--lr-schedule", schedule, "--total-timesteps", "16",
            "--no-evaluate", "--no-progress",  # (a fine-tuned agent is judged in real training)
            "--out", str(out), *extra, "--overrides", *TINY_OVERRIDES]) == 0

    import threading

    def writer_threads():  # TensorBoard's event writers (torch.utils.tensorboard)
        return [t for t in threading.enumerate() if "AsyncWriter" in type(t).__name__]

    before = len(writer_threads())
    linear = tmp_path / "linear"
    run(linear, "--finetune-timesteps", "16", "--checkpoint-every", "8")
    # both phases' loggers are closed: each left a writer thread running (a notebook that
    # trained thrice kept three)
    assert len(writer_threads()) == before
    assert rate(linear / "checkpoints" / "step_00000008") == pytest.approx(1e-3)
    assert rate(linear / "checkpoints" / "step_00000024") == pytest.approx(5e-4)
    assert rate(linear) == pytest.approx(2.5e-4)  # fine-tuning learns, at its share
    # the agent as the surrogate phase left it, before fine-tuning (skipped before)
    assert rate(linear / "checkpoints" / "step_00000016") == pytest.approx(7.5e-4)
    # agent.json names the fidelity of the latest steps: the fine-tuned agent's is "train"
    assert [find_agent(where).info.fidelity for where in (
        linear / "checkpoints" / "step_00000008", linear / "checkpoints" / "step_00000016",
        linear / "checkpoints" / "step_00000024", linear)] == ["cost", "cost", "train", "train"]
    assert curve(linear) == [(t, "cost") for t in (4, 8, 12, 16)] + [
        (t, "train") for t in (20, 24, 28, 32)]
    # trained_by says each phase's steps and fidelity (one record said the process trained
    # all 32 steps in the first phase's fidelity, with its surrogate fit if it had one)
    def phases(folder):
        return [(r["timesteps"], r["fidelity"]) for r in find_agent(folder).info.trained_by]

    assert phases(linear) == [([0, 16], "cost"), ([16, 32], "train")]
    assert phases(linear / "checkpoints" / "step_00000008") == [([0, 8], "cost")]
    # the fine-tuning's logged mean return is over its own (real-training) episodes: SB3
    # kept the first phase's episodes in its window across learn() calls
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = [d for d in (linear / "runs").iterdir() if "finetune" in d.name]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    logged = events.Scalars("rollout/ep_rew_mean")[-1].value
    with (linear / "learning_curve.csv").open() as f:
        real = [float(r["episode_return"]) for r in csv.DictReader(f) if r["phase"] == "train"]
    assert logged == pytest.approx(np.mean(real), rel=1e-4)
    for step in (8, 24):  # resumed in training and in fine-tuning
        resumed = tmp_path / f"resumed{step}"
        run(resumed, "--finetune-timesteps", "16", "--resume",
            str(linear / "checkpoints" / f"step_{step:08d}"))
        assert find_agent(resumed).info.num_timesteps == 32  # no step repeated
        assert phases(resumed) == {
            8: [([0, 8], "cost"), ([8, 16], "cost"), ([16, 32], "train")],
            24: [([0, 16], "cost"), ([16, 24], "train"), ([24, 32], "train")]}[step]
        assert rate(resumed) == pytest.approx(2.5e-4)
        assert curve(resumed) == curve(linear)
        # each continues in the fidelity its latest steps had (a fine-tuning checkpoint in
        # train fidelity): no note of a change
        assert "latest steps were trained in" not in capsys.readouterr().err
    # the phase boundary (trained in cost, fine-tuning next) is a change, and says so
    run(tmp_path / "boundary", "--finetune-timesteps", "16", "--resume",
        str(linear / "checkpoints" / "step_00000016"))
    assert ("in train fidelity (fine-tuning); its latest steps were trained in cost fidelity"
            in capsys.readouterr().err)
    constant = tmp_path / "constant"
    run(constant, "--checkpoint-every", "8", schedule="constant")
    assert rate(constant) == pytest.approx(1e-3)
    run(tmp_path / "slower", "--resume", str(constant / "checkpoints" / "step_00000008"),
        schedule="constant", lr="5e-4")
    assert rate(tmp_path / "slower") == pytest.approx(5e-4)


def test_a_fine_tuned_agent_is_judged_in_real_training_unless_told_otherwise():
    """Trained in cost fidelity and fine-tuned in real training, an agent was judged in cost
    fidelity, where no accuracy is measured."""
    assert TrainArgs(fidelity="cost", finetune_timesteps=64).final_fidelity == "train"
    assert TrainArgs(fidelity="cost").final_fidelity == "cost"
    assert TrainArgs(fidelity="surrogate").final_fidelity == "train"
    assert TrainArgs(fidelity="cost", finetune_timesteps=64,
                     eval_fidelity="cost").final_fidelity == "cost"


def test_learning_rate_schedule_is_checked_and_counts_the_fine_tuning():
    args = TrainArgs(learning_rate=1e-3, lr_schedule="linear", fidelity="surrogate",
                     total_timesteps=300, finetune_timesteps=100)
    assert [args.learning_rate_at(t) for t in (0, 200, 400, 500)] == pytest.approx(
        [1e-3, 5e-4, 0.0, 0.0])
    assert TrainArgs(learning_rate=1e-3).learning_rate_at(10_000) == 1e-3
    # training in train fidelity already: the line ends with training; fine-tuning on top of
    # it is refused (it was silently skipped)
    real = TrainArgs(learning_rate=1e-3, lr_schedule="linear", fidelity="train",
                     total_timesteps=300)
    assert real.finetune_steps == 0 and real.learning_rate_at(300) == 0.0
    with pytest.raises(ValueError, match="finetune_timesteps = 100: fine-tuning adds real"):
        TrainArgs(fidelity="train", finetune_timesteps=100)
    with pytest.raises(ValueError, match="lr_schedule = 'cosine': must be one of"):
        TrainArgs(lr_schedule="cosine")


def test_a_resumed_run_takes_the_settings_it_is_given(tmp_path, capsys):
    """n_steps, batch size, entropy coefficient and seed of a resumed run are the flags given
    to it (train_args.json records them), not the first run's saved in the archive; dropping
    its normalisation is refused, other env settings get a note."""
    from hffm_env.agents.checkpoint import find_agent, load_model

    common = ["--scenario", "small", "--fidelity", "cost", "--eval-seeds", "1000",
              "--eval-policies", "never", "--no-progress", "--overrides", *TINY_OVERRIDES]
    first = tmp_path / "first"
    assert train_agent.main(["--total-timesteps", "16", "--n-steps", "8", "--batch-size", "8",
                             "--checkpoint-every", "8", "--out", str(first), *common]) == 0
    resumed = tmp_path / "resumed"
    assert train_agent.main([
        "--total-timesteps", "24", "--n-steps", "4", "--batch-size", "4", "--ent-coef", "0.5",
        "--seed", "7", "--resume", str(first / "checkpoints" / "step_00000008"),
        "--out", str(resumed), *common]) == 0
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    model = load_model(find_agent(resumed), env.observation_space, env.action_space)
    env.close()
    assert (model.n_steps, model.batch_size, model.ent_coef, model.seed) == (4, 4, 0.5, 7)
    assert model.num_timesteps == 24
    # the weights say which processes trained them, oldest first, with the timesteps of each
    info = find_agent(resumed).info
    assert [r["timesteps"] for r in info.trained_by] == [[0, 8], [8, 24]]
    assert all(r["provenance"]["hffm_env"] for r in info.trained_by)
    assert [r["timesteps"] for r in find_agent(first).info.trained_by] == [[0, 16]]
    again = tmp_path / "again"  # ... also resumed from the model.zip of a resumed run
    assert train_agent.main(["--total-timesteps", "32", "--n-steps", "4", "--batch-size", "4",
                             "--resume", str(resumed / "model.zip"), "--out", str(again),
                             *common]) == 0
    assert [r["timesteps"] for r in find_agent(again).info.trained_by] == [
        [0, 8], [8, 24], [24, 32]]
    checkpoint = str(first / "checkpoints" / "step_00000008")
    capsys.readouterr()
    assert train_agent.main(["--total-timesteps", "16", "--n-steps", "8", "--batch-size", "8",
                             "--no-normalize", "--resume", checkpoint,
                             "--out", str(tmp_path / "raw"), *common]) == 2
    assert "was trained on normalised observations" in capsys.readouterr().err
    assert train_agent.main(["--total-timesteps", "16", "--n-steps", "8", "--batch-size", "8",
                             "--resume", checkpoint, "--out", str(tmp_path / "other"), *common,
                             "env.energy_weight=0.5"]) == 0
    assert "it was trained with env.energy_weight=" in capsys.readouterr().err
    # a --config file left out when resuming changes the settings too (it said nothing)
    variant = tmp_path / "variant.yaml"
    variant.write_text("name: variant\n")
    varied = tmp_path / "varied"
    assert train_agent.main(["--total-timesteps", "8", "--n-steps", "8", "--batch-size", "8",
                             "--config", str(variant), "--out", str(varied), *common]) == 0
    # its comparison is labelled with its env's scenario, as hffm bench's is (it gave the
    # preset's name, which run_benchmark now refuses)
    assert json.loads((varied / "results.json").read_text())["scenario"] == "variant"
    capsys.readouterr()
    assert train_agent.main(["--total-timesteps", "16", "--n-steps", "8", "--batch-size", "8",
                             "--resume", str(varied), "--out", str(tmp_path / "plain"),
                             *common]) == 0
    assert "it was trained with name='variant' (here 'small')" in capsys.readouterr().err
    # resumed in its own --out from an earlier checkpoint: the later ones are named
    (first / "checkpoints" / "step_00000016").mkdir()  # as a longer first run leaves it
    assert train_agent.main(["--total-timesteps", "16", "--n-steps", "8", "--batch-size", "8",
                             "--resume", checkpoint, "--out", str(first), *common]) == 0
    assert "keeps the checkpoints after step 8 of the run this one replaces (step_00000016)" \
        in capsys.readouterr().err
    # its lineage is the checkpoint's, whatever the folder's last run was
    assert [r["timesteps"] for r in find_agent(first).info.trained_by] == [[0, 8], [8, 16]]


def test_training_prints_progress_lines_when_stderr_is_not_a_terminal(tmp_path, capsys,
                                                                      monkeypatch):
    """SB3's bar draws only on a terminal: a run logged to a file printed nothing until the
    end. Progress lines come instead (here every step: the interval set to 0)."""
    import hffm_env.agents.ppo as ppo

    monkeypatch.setattr(ppo, "PROGRESS_LINE_EVERY_S", 0.0)
    assert train_agent.main([
        "--scenario", "small", "--fidelity", "cost", "--total-timesteps", "16",
        "--n-steps", "8", "--batch-size", "8", "--out", str(tmp_path / "run"),
        "--eval-seeds", "1000", "--eval-policies", "never", "--overrides", *TINY_OVERRIDES,
    ]) == 0
    err = capsys.readouterr().err
    assert "train_agent.py: maskable-ppo on cost fidelity: 16 timesteps" in err
    assert "16/16 timesteps (100%)" in err and "min left" in err


def test_the_script_says_how_to_install_when_agents_are_not_importable(tmp_path):
    """After a regular `pip install .`, a clone's hffm_env/ folder hides the installed package,
    and `python train_agent.py` died with a bare ModuleNotFoundError for hffm_env.agents."""
    import shutil
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "train_agent.py"
    shutil.copy(script, tmp_path / "train_agent.py")
    (tmp_path / "hffm_env").mkdir()  # a package folder without agents/, first on the path
    (tmp_path / "hffm_env" / "__init__.py").write_text("")
    # -S: without site-packages, where this editable install's finder would map hffm_env
    done = subprocess.run([sys.executable, "-S", str(tmp_path / "train_agent.py"), "--help"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "pip install -e ." in done.stderr and "hffm train" in done.stderr


def test_help_works_when_python_strips_docstrings():
    """``python -OO`` drops docstrings, and the parser's description was read from one: an
    AttributeError before any help was printed."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    for command in ([str(root / "train_agent.py")], ["-m", "hffm_env.cli", "train"]):
        done = subprocess.run([sys.executable, "-OO", *command, "--help"], capture_output=True,
                              text=True, cwd=root, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "--total-timesteps" in done.stdout
        assert "Train a PPO scheduler" in done.stdout


def test_the_comparison_can_play_each_eval_seed_on_its_own_data_split(tmp_path, capsys):
    """As `hffm bench --data-split-per-seed`; train_agent.py's comparison had only the
    training split."""
    out = tmp_path / "run"
    assert train_agent.main([
        "--scenario", "small", "--fidelity", "cost", "--total-timesteps", "8", "--n-steps", "8",
        "--batch-size", "8", "--out", str(out), "--eval-seeds", "1000", "1001",
        "--eval-policies", "never", "--eval-data-split-per-seed", "--no-progress",
        "--overrides", *TINY_OVERRIDES,
    ]) == 0
    results = json.loads((out / "results.json").read_text())
    played = {(e["policy"], e["seed"], e["config_seed"]) for e in results["episodes"]}
    assert played == {(p, s, s) for p in ("agent:run", "never") for s in (1000, 1001)}
    assert "data split per seed" in capsys.readouterr().out  # the table names the split
    assert json.loads((out / "train_args.json").read_text())["eval_data_split_per_seed"]
    # a surrogate serves its own split only: refused before training
    assert train_agent.main(["--fidelity", "cost", "--eval-fidelity", "surrogate",
                             "--eval-data-split-per-seed", "--out", str(tmp_path / "o")]) == 2
    assert "--eval-data-split-per-seed: a surrogate serves" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_eval_policies_take_a_policy_of_your_own(tmp_path, monkeypatch):
    """`hffm bench --policies` took module:Class, training's comparison did not."""
    import sys

    from hffm_env.agents.job import evaluation_baselines

    (tmp_path / "evalpolicies.py").write_text(
        "from hffm_env.baselines.policies import PeriodicPolicy\n"
        "from hffm_env.fl.schedule import Route\n\n\n"
        "def cloud_every_fourth():\n"
        "    return PeriodicPolicy('d2d-edge1-cloud4', 1, 4, Route.D2D_RELAY)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evalpolicies", raising=False)
    spec = "evalpolicies:cloud_every_fourth"
    args = TrainArgs(eval_policies=[spec, "never"])
    assert evaluation_baselines(args) == [spec, "never"]
    with pytest.raises(ValueError, match="eval_policies: policy 'evalpolicies:nope': "
                                         "evalpolicies has no 'nope'"):
        TrainArgs(eval_policies=["evalpolicies:nope"])


def test_the_printed_bench_command_names_the_fit_the_comparison_played():
    # with --surrogate FILE and a surrogate comparison it left the file out: bench found
    # another fit, or none
    from hffm_env.agents.command import bench_command
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import PACKAGED_DIR, surrogate_path

    fit = str(PACKAGED_DIR / surrogate_path(load_scenario("small")).name)
    args = TrainArgs(fidelity="surrogate", eval_fidelity="surrogate", surrogate=fit,
                     out="/tmp/run")
    assert bench_command(args).endswith(f"--surrogate {fit}")
    assert "--surrogate" not in bench_command(TrainArgs(fidelity="cost", out="/tmp/run"))
