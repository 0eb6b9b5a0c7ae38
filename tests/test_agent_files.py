"""Lossless training runs and safe agent files: resume restores policy, optimiser and
normalisation statistics; --total-timesteps is the total; Ctrl-C saves and exits 130; --out
is never silently mixed; loading an agent never runs code from its files."""

from __future__ import annotations

import base64
import io
import json
import os
import shlex
import shutil
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import hffm_env.agents.command as train_agent
from hffm_env.agents.checkpoint import AgentFileError, Normalization, find_agent, load_model
from hffm_env.agents.common import TrainArgs, prepare_out, replace_earlier_run
from hffm_env.agents.ppo import AgentPolicy
from hffm_env.cli import main as cli_main
from hffm_env.testing import TINY_OVERRIDES

COMMITTED_DIR = Path(__file__).resolve().parents[1] / "docs/results/agents"
BASE = ["--scenario", "small", "--fidelity", "cost", "--n-steps", "8", "--batch-size", "8",
        "--checkpoint-every", "16", "--eval-seeds", "1000", "--eval-policies", "star",
        "--no-progress", "--overrides", *TINY_OVERRIDES]


def _optimizer_steps(model) -> list[float]:
    state = model.policy.optimizer.state_dict()["state"]
    return sorted(float(v["step"]) for v in state.values())


def test_resume_restores_the_checkpoint_and_total_timesteps_is_the_total(tmp_path, capsys):
    assert train_agent.main([*BASE, "--total-timesteps", "32", "--out",
                             str(tmp_path / "whole")]) == 0
    checkpoint = tmp_path / "whole" / "checkpoints" / "step_00000016"
    assert json.loads((checkpoint / "agent.json").read_text())["num_timesteps"] == 16
    assert train_agent.main([*BASE, "--total-timesteps", "32", "--out",
                             str(tmp_path / "resumed"), "--resume", str(checkpoint)]) == 0

    whole, resumed = find_agent(tmp_path / "whole"), find_agent(tmp_path / "resumed")
    assert whole.info.num_timesteps == resumed.info.num_timesteps == 32
    # the statistics continued from the checkpoint's (they restarted before: 17 vs 33)
    assert resumed.normalization.obs_count == pytest.approx(whole.normalization.obs_count)
    assert resumed.normalization.ret_count == pytest.approx(whole.normalization.ret_count)
    # the optimiser continued too: as many Adam steps as the uninterrupted run
    import gymnasium as gym

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))

    def model(folder: Path):
        return load_model(find_agent(folder), env.observation_space, env.action_space)

    assert _optimizer_steps(model(tmp_path / "resumed")) == _optimizer_steps(
        model(tmp_path / "whole"))

    # resuming to a total already reached trains nothing and saves the checkpoint's state
    # unchanged: weights, optimiser and statistics
    capsys.readouterr()
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--out",
                             str(tmp_path / "done"), "--resume", str(checkpoint)]) == 0
    assert "the checkpoint has 16 timesteps already" in capsys.readouterr().err  # (was silent)
    done, start = model(tmp_path / "done"), model(checkpoint)
    assert find_agent(tmp_path / "done").info.num_timesteps == 16
    for (name, a), b in zip(start.policy.state_dict().items(),
                            done.policy.state_dict().values()):
        assert torch.equal(a, b), name
    assert _optimizer_steps(done) == _optimizer_steps(start)
    assert np.array_equal(find_agent(tmp_path / "done").normalization.obs_var,
                          find_agent(checkpoint).normalization.obs_var)


def test_an_agent_says_what_it_was_trained_on_after_its_config_file_is_gone(tmp_path):
    """agent.json named the --config file only: a folder copied elsewhere (or a file edited
    since) gave no training config, or a wrong one, without a word."""
    from hffm_env.config import load_scenario

    config = tmp_path / "variant.yaml"
    config.write_text("fl:\n  lr: 0.013\n")
    out = tmp_path / "run"
    assert train_agent.main([*BASE, "--total-timesteps", "8", "--config", str(config),
                             "--out", str(out)]) == 0
    expected = load_scenario("small", config_file=config,
                             overrides=train_agent.parse_args(
                                 [*BASE, "--out", str(out)]).scenario_overrides())
    config.write_text("fl:\n  lr: 0.5\n")  # edited after training
    assert find_agent(out).training_config() == expected
    config.unlink()
    trained = find_agent(out).training_config()
    assert trained == expected and trained.fl.lr == 0.013
    # a recorded config this version no longer reads: the scenario and overrides recorded
    # beside it still give one (here without the file, which is gone: none)
    info = json.loads((out / "agent.json").read_text())
    (out / "agent.json").write_text(json.dumps({**info, "config": {"fl": {"renamed": 1}}}))
    assert find_agent(out).training_config() is None
    (out / "agent.json").write_text(json.dumps({**info, "config": {"fl": {"renamed": 1}},
                                                "config_file": None}))
    with pytest.warns(UserWarning, match=r"records does not load \(.*renamed.*\); rebuilt "
                      r"instead from its scenario 'small'"):
        assert find_agent(out).training_config() == load_scenario(
            "small", overrides=list(info["overrides"]))
    # ... said once per folder, however many checks ask (hffm bench said it three times)
    agent = find_agent(out)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        agent.training_config()
        agent.settings_unchecked()
        assert agent.load_training_config() == agent.training_config()
    assert len(said) == 1
    # a hand-edited agent.json whose config is not a mapping is named
    info = json.loads((out / "agent.json").read_text())
    (out / "agent.json").write_text(json.dumps({**info, "config": "small"}))
    with pytest.raises(AgentFileError, match="config = \"small\": must be the scenario config"):
        find_agent(out)


def test_a_run_interrupted_past_its_total_still_trains_its_last_rollout_on_resume(
        tmp_path, monkeypatch, capsys):
    """Ctrl-C at step 14 of --total-timesteps 12 (two rollouts of 8): the second rollout was
    lost untrained, yet the agent said 14 timesteps, and --resume found nothing left to train
    (its last update never ran)."""
    from stable_baselines3.common.callbacks import BaseCallback

    import hffm_env.agents.ppo as ppo

    class Interrupt(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == 14:
                raise KeyboardInterrupt
            return True

    monkeypatch.setattr(ppo._FLMetricsCallback, "build", staticmethod(Interrupt))
    out = tmp_path / "run"
    argv = [*BASE, "--total-timesteps", "12", "--no-evaluate", "--out", str(out)]
    assert train_agent.main(argv) == 130
    assert find_agent(out).info.num_timesteps == 8
    monkeypatch.undo()
    capsys.readouterr()
    assert train_agent.main([*argv, "--resume", str(out)]) == 0
    assert "nothing left to train" not in capsys.readouterr().err
    assert find_agent(out).info.num_timesteps == 16


def test_ctrl_c_while_a_checkpoint_is_written_counts_the_update_before_it(tmp_path,
                                                                          monkeypatch):
    """A checkpoint is written at a rollout's start, right after an update: a Ctrl-C there
    counted that update as lost (the agent said 8 timesteps of 16 trained)."""
    import hffm_env.agents.checkpoint as checkpoint

    real_save = checkpoint.save_agent

    def interrupted_checkpoint(folder, *args, **kwargs):
        if folder.name.startswith("step_"):
            raise KeyboardInterrupt
        return real_save(folder, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_agent", interrupted_checkpoint)
    out = tmp_path / "run"
    assert train_agent.main([*BASE, "--total-timesteps", "64", "--out", str(out)]) == 130
    assert find_agent(out).info.num_timesteps == 16  # both rollouts of 8 were trained


def test_ctrl_c_saves_the_run_and_exits_130(tmp_path, monkeypatch, capsys):
    from stable_baselines3.common.callbacks import BaseCallback

    import hffm_env.agents.ppo as ppo

    class Interrupt(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 12:
                raise KeyboardInterrupt
            return True

    monkeypatch.setattr(ppo._FLMetricsCallback, "build", staticmethod(Interrupt))
    out = tmp_path / "run"
    assert train_agent.main([*BASE, "--total-timesteps", "64", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    # the rollout in progress (steps 9-12 of n_steps 8) was lost untrained: the agent has 8
    assert len(err) == 2 and "interrupted at 12 of 64 timesteps, the last 4 in a rollout not " \
        "yet trained on (while training); model and statistics of 8 timesteps" in err[0]
    assert "continue with" in err[0]
    # the whole command, not just --resume (the run's other flags were needed to resume it)
    command = shlex.split(err[1])
    assert command[0] == "train_agent.py"
    assert train_agent.parse_args(command[1:]) == replace(
        train_agent.parse_args([*BASE, "--total-timesteps", "64", "--out", str(out)]),
        resume=str(out))
    assert find_agent(out).info.num_timesteps == 8
    # ... with the normalisation statistics of those 8 (the lost rollout's observations were
    # in them, and a resumed run, its envs restarting from their seeds, counted them again)
    whole = tmp_path / "whole"
    monkeypatch.undo()
    assert train_agent.main([*BASE, "--total-timesteps", "8", "--no-evaluate",
                             "--out", str(whole)]) == 0
    counts = [Normalization.load(folder / "vecnormalize.npz").obs_count for folder in (out, whole)]
    assert counts[0] == counts[1], counts
    recorded = json.loads((out / "train_args.json").read_text())
    assert recorded["interrupted"] is True
    assert recorded["provenance"]["command"][0] == "train_agent.py"  # and the code it ran
    # ... and the learning curve of the episodes that ended before the interruption
    rows = (out / "learning_curve.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [4, 8]
    # hffm bench says the agent it plays is an interrupted run's (it was presented as any
    # other); a checkpoint is part of a run by design, and a finished run says nothing
    from hffm_env.cli import main as cli_main

    bench = ["bench", "--agent", str(out), "--config", str(out), "--fidelity", "cost",
             "--seeds", "1000", "--policies", "never"]
    assert cli_main(bench) == 0
    assert ("note: agent:run: " in (err := capsys.readouterr().err)
            and "its training run was interrupted at 8 of 64 timesteps" in err)
    assert find_agent(out).interrupted_note() != ""
    recorded["interrupted"] = False
    (out / "train_args.json").write_text(json.dumps(recorded))
    assert find_agent(out).interrupted_note() == ""


def test_a_run_stopped_by_an_error_closes_its_envs(tmp_path, monkeypatch):
    """An error inside ``learn`` left the vector env open: in a caller's Python session
    SubprocVecEnv's workers lived on."""
    from stable_baselines3.common.callbacks import BaseCallback

    import hffm_env.agents.ppo as ppo
    from hffm_env.envs.hffm_env import HFFMEnv

    class Fails(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 12:
                raise RuntimeError("a callback failed")
            return True

    closed = []
    monkeypatch.setattr(HFFMEnv, "close", lambda env: closed.append(env))
    monkeypatch.setattr(ppo._FLMetricsCallback, "build", staticmethod(Fails))
    with pytest.raises(RuntimeError, match="a callback failed"):
        train_agent.main([*BASE, "--total-timesteps", "64", "--out", str(tmp_path / "run")])
    assert len(closed) == 1


WORKER_FAILS = """
import multiprocessing, os, sys
import gymnasium as gym
import hffm_env.agents.command as train_agent
import hffm_env.agents.ppo as ppo

made = ppo.make_env_fn

def failing(args, rank, **kwargs):
    make = made(args, rank, **kwargs)
    def env():
        if rank == 1 and os.environ.get("FAIL_AT_START"):
            raise RuntimeError("a worker failed to start")
        class Fails(gym.Wrapper):
            steps = 0
            def step(self, action):
                Fails.steps += 1
                if rank == 1 and Fails.steps == 2:  # as the engine's own warnings are
                    import warnings
                    import hffm_env.fl.engine as engine
                    warnings.warn_explicit("a worker's warning", RuntimeWarning,
                                           engine.__file__, 7)
                if rank == 1 and Fails.steps >= 3:
                    raise RuntimeError("a step failed in a worker")
                return self.env.step(action)
        return Fails(make())
    return env

if __name__ == "__main__":
    ppo.make_env_fn = failing
    print("status", train_agent.main(sys.argv[1:]), flush=True)
    print("workers left", len(multiprocessing.active_children()), flush=True)
"""


def test_a_worker_that_fails_mid_step_ends_the_run_instead_of_hanging_it(tmp_path):
    """A second worker's failed step left SB3 waiting for the first one's reply, which never
    came: closing the vector env on the way out hung the run (and Ctrl-C then said nothing
    was saved)."""
    import subprocess
    import sys

    script = tmp_path / "worker_fails.py"
    script.write_text(WORKER_FAILS)

    def start(*argv: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1", **env})

    def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
        stdout, stderr = process.communicate(timeout=180)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    # the two runs side by side (17 s instead of 23 s one after the other, on 2 cores)
    failing = start(*BASE, "--n-envs", "2", "--total-timesteps", "64",
                    "--out", str(tmp_path / "run"))
    # statistics of another observation size, refused once the workers had started: they
    # were left running
    mismatched = start("--fidelity", "cost", "--action-mode", "menu",
                       "--resume", str(COMMITTED_DIR / "ppo-menu_s0"), "--total-timesteps",
                       "16000", "--eval-seeds", "1000", "--no-progress", "--n-envs", "2",
                       "--out", str(tmp_path / "resumed"))
    # a worker that fails as it starts: the run ended on "[Errno 104] Connection reset by peer"
    unstarted = start(*BASE, "--n-envs", "2", "--total-timesteps", "64",
                      "--out", str(tmp_path / "unstarted"), FAIL_AT_START="1")
    try:
        done, refused, stopped = finish(failing), finish(mismatched), finish(unstarted)
    finally:  # a run that hung past the timeout is not left behind
        for process in (failing, mismatched, unstarted):
            process.kill()
            process.wait()
    assert done.stdout.splitlines()[-2:] == ["status 2", "workers left 0"], done
    assert "RuntimeError: a step failed in a worker" in done.stderr  # the worker's own
    # a worker prints the package's warnings as the command does (it printed Python's form)
    assert ("train_agent.py: warning: a worker's warning (RuntimeWarning at "
            "hffm_env/fl/engine.py:7)") in done.stderr.splitlines(), done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "train_agent.py: error: a worker of the vector env (--n-envs 2) stopped (EOFError on "
        "its pipe) while training; its own error, if it raised one, is printed above")
    assert refused.stdout.splitlines()[-2:] == ["status 2", "workers left 0"], refused
    assert "statistics" in refused.stderr.strip().splitlines()[-1], refused
    assert stopped.stdout.splitlines()[-2:] == ["status 2", "workers left 0"], stopped
    assert "RuntimeError: a worker failed to start" in stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1].startswith(
        "train_agent.py: error: a worker of the vector env (--n-envs 2) stopped ("), stopped
    assert stopped.stderr.strip().splitlines()[-1].endswith(
        "on its pipe) while starting; its own error, if it raised one, is printed above")


def test_a_run_killed_outright_keeps_its_learning_curve_up_to_its_last_checkpoint(
        tmp_path, monkeypatch, capsys):
    """Only a finished or interrupted run wrote learning_curve.csv: one killed outright (out
    of memory, SIGKILL) lost it, and a run resumed from its checkpoint started a new one. Nor
    did it leave train_args.json (the flags a resume needs), and --resume OUT said only "no
    model.zip in this folder"."""
    from stable_baselines3.common.callbacks import BaseCallback

    import hffm_env.agents.ppo as ppo

    class Killed(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 36:
                raise SystemExit("killed")  # nothing is saved on the way out
            return True

    monkeypatch.setattr(ppo._FLMetricsCallback, "build", staticmethod(Killed))
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="killed"):
        train_agent.main([*BASE, "--total-timesteps", "64", "--out", str(out)])
    rows = (out / "learning_curve.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [4, 8, 12, 16, 20, 24, 28, 32]
    recorded = json.loads((out / "train_args.json").read_text())
    assert recorded["state"] == "running" and recorded["total_timesteps"] == 64
    with pytest.raises(AgentFileError, match=r"ended before its final save \(its train_args"
                       r".json still says it is running: killed\?\); its latest checkpoint "
                       r"is .*step_00000032"):
        find_agent(out)
    monkeypatch.undo()
    assert train_agent.main([*BASE, "--total-timesteps", "64", "--out", str(out),
                             "--resume", str(out)]) == 2
    assert "step_00000032 (--resume or --agent that)" in capsys.readouterr().err
    resumed = tmp_path / "resumed"
    assert train_agent.main([*BASE, "--total-timesteps", "40", "--out", str(resumed),
                             "--resume", str(out / "checkpoints" / "step_00000032")]) == 0
    rows = (resumed / "learning_curve.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    recorded = json.loads((resumed / "train_args.json").read_text())
    assert recorded["state"] == "finished" and recorded["interrupted"] is False


def test_a_damaged_learning_curve_is_named_when_a_run_resumes(tmp_path):
    from hffm_env.agents.common import LEARNING_CURVE_CSV, LearningCurve

    (tmp_path / LEARNING_CURVE_CSV).write_text(
        "timesteps,phase,episode_return,rounds\n4,cost,1.5,4\n8,cost,3.9\n")  # a cut row
    with pytest.raises(ValueError, match=r"learning_curve.csv: line 3 is not a "
                                         r"learning-curve row"):
        LearningCurve("t").continue_from(tmp_path, 16)


def test_a_second_run_on_the_same_out_is_refused_while_the_first_runs(tmp_path, capsys):
    """Two runs started together on one --out both found it empty and both said "agent
    saved"; one agent was silently lost."""
    from hffm_env.files import lock_file

    out = tmp_path / "run"
    flags = [*BASE, "--total-timesteps", "8", "--no-evaluate", "--out", str(out)]
    with lock_file(tmp_path / ".run.hffm-train.lock"):  # as the first run holds it
        assert train_agent.main(flags) == 2
    assert "another run is writing to it" in capsys.readouterr().err
    assert not out.exists()
    assert train_agent.main(flags) == 0  # the lock is the run's, then gone
    assert not (tmp_path / ".run.hffm-train.lock").exists()
    # a folder whose parent is yet to be made is held too (the lock had nowhere to go)
    from hffm_env.agents.common import out_folder_held

    with out_folder_held(tmp_path / "new" / "run"), pytest.raises(ValueError, match="another "
                                                                   "run is writing to it"):
        with out_folder_held(tmp_path / "new" / "run"):
            pass


def test_sigterm_saves_as_ctrl_c_does_and_a_second_ctrl_c_waits_for_the_save(
        tmp_path, monkeypatch, capsys):
    """SIGTERM (`kill`, `timeout`, schedulers) ended the run on the spot with nothing saved;
    a second Ctrl-C while saving left the folder without train_args.json and said "nothing
    was saved"."""
    import os
    import signal

    from stable_baselines3.common.callbacks import BaseCallback

    import hffm_env.agents.ppo as ppo

    class Terminate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 12:
                os.kill(os.getpid(), signal.SIGTERM)
            return True

    real_write = ppo.write_train_args

    def write_after_a_second_ctrl_c(*args, **kwargs):
        if kwargs["state"] != "running":  # (the record written as the run starts)
            os.kill(os.getpid(), signal.SIGINT)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ppo._FLMetricsCallback, "build", staticmethod(Terminate))
    monkeypatch.setattr(ppo, "write_train_args", write_after_a_second_ctrl_c)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    assert train_agent.main([*BASE, "--total-timesteps", "64", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "still saving what was done" in err and "interrupted at 12 of 64" in err
    assert find_agent(out).info.num_timesteps == 8
    recorded = json.loads((out / "train_args.json").read_text())
    assert recorded["interrupted"] is True and recorded["state"] == "interrupted"
    assert recorded["provenance"]["command"][0] == "train_agent.py"  # and the code it ran
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_ctrl_c_in_the_final_save_waits_for_it_then_stops_the_run(tmp_path, monkeypatch,
                                                                   capsys):
    """A Ctrl-C while a finished run saved its agent left the folder half new (no
    train_args.json): the save ends first, then the run stops (no comparison), exit 130."""
    import os
    import signal

    import hffm_env.agents.ppo as ppo

    real_write = ppo.write_train_args

    def write_after_a_ctrl_c(*args, **kwargs):
        if kwargs["state"] == "finished":  # (not the record written as the run starts)
            os.kill(os.getpid(), signal.SIGINT)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ppo, "write_train_args", write_after_a_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "run"
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "still saving what was done" in err and "the agent saved in" in err
    recorded = json.loads((out / "train_args.json").read_text())
    assert recorded["interrupted"] is False and find_agent(out).info.num_timesteps == 16
    assert not (out / "results.json").exists()  # it stopped before the comparison
    assert signal.getsignal(signal.SIGINT) == before


def test_the_command_that_continues_a_cloned_run_parses(tmp_path):
    """Ctrl-C's resume command repeated --imitate, which a resumed run refuses."""
    plan = Path(__file__).resolve().parents[1] / "docs/results/plan_search_small4.json"
    args = train_agent.parse_args(["--fidelity", "cost", "--action-mode", "coarse",
                                   "--imitate", str(plan), "--out", str(tmp_path / "run")])
    flags = train_agent.flags_of(args, resume=args.out, force=False)
    resumed = train_agent.parse_args(flags)
    assert resumed.resume == args.out and resumed.imitate is None
    assert resumed.action_mode == "coarse"


def test_a_resumed_run_must_have_the_runs_action_mode(trained, tmp_path, capsys):
    """Resuming with another action mode failed on the spaces and blamed the scenario."""
    run = _copy(trained, tmp_path / "run")
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--action-mode", "coarse",
                             "--resume", str(run), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "was trained with --action-mode full, not coarse" in err


def test_resuming_an_rllib_folder_without_its_engine_says_so(trained, tmp_path, capsys):
    """It said "has no normalisation statistics; resume it with --no-normalize", and that
    then looked for model.zip.zip."""
    run = _copy(trained, tmp_path / "rllib_run")
    (run / "model.zip").unlink()
    (run / "vecnormalize.npz").unlink()
    (run / "policy.pt").write_bytes(b"")  # what find_agent asks of an RLlib folder
    _edit_info(run, engine="rllib", algo="maskable-ppo", normalized=False)
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--algo", "maskable-ppo",
                             "--resume", str(run), "--out", str(run)]) == 2
    assert "was trained with --engine rllib, not sb3" in capsys.readouterr().err


def test_resume_errors_say_which_flag_and_how_the_agent_was_trained(tmp_path, capsys):
    import shutil

    assert train_agent.main([*BASE, "--resume", str(tmp_path / "nowhere"), "--out",
                             str(tmp_path / "nowhere")]) == 2
    assert "--resume: " in capsys.readouterr().err
    old = tmp_path / "old"  # trained on small's earlier layout of three clusters
    shutil.copytree(COMMITTED_DIR / "ppo-menu_s0", old)
    assert train_agent.main(["--fidelity", "cost", "--action-mode", "menu", "--resume",
                             str(old), "--out", str(old), "--total-timesteps", "16000",
                             "--eval-seeds", "1000", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--set placement.num_edge_servers=3" in err and "resume it on that env" in err


def test_a_run_resumed_from_elsewhere_does_not_overwrite_out(trained, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.zip").write_text("another run")
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--resume", str(trained),
                             "--out", str(other)]) == 2
    assert "is not a run in it" in capsys.readouterr().err
    assert (other / "model.zip").read_text() == "another run"


def test_a_run_resumed_from_a_folder_below_out_does_not_clear_out(trained, tmp_path, capsys):
    # any folder above --resume counted as "the run being resumed": a project folder holding
    # the run in agents/a1 lost its results.md and the like, without --force
    project = tmp_path / "project"
    shutil.copytree(trained, project / "agents" / "a1")
    (project / "results.md").write_text("mine")
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--resume",
                             str(project / "agents" / "a1"), "--out", str(project)]) == 2
    assert "is not a run in it" in capsys.readouterr().err
    assert (project / "results.md").read_text() == "mine"
    # ... while the run's own model.zip names the run it continues (find_agent takes it)
    run = _copy(trained, tmp_path / "run")
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--resume",
                             str(run / "model.zip"), "--out", str(run)]) == 0


def test_out_inside_a_checkpoint_folder_is_refused(tmp_path, capsys):
    """--out pointed into a run's checkpoints/ (resuming "into" a checkpoint) replaced that
    checkpoint with a later agent and nested a checkpoints/ folder in it."""
    step = tmp_path / "run" / "checkpoints" / "step_00000008"
    step.mkdir(parents=True)
    (step / "model.zip").write_text("the checkpoint")
    for out in (step, step / "more"):
        assert train_agent.main([*BASE, "--total-timesteps", "16", "--resume", str(step),
                                 "--out", str(out)]) == 2
        assert "is inside a run's checkpoints/ folder" in capsys.readouterr().err
    assert (step / "model.zip").read_text() == "the checkpoint"
    assert sorted(p.name for p in step.iterdir()) == ["model.zip"]
    # beside the steps too: the run's --force would remove checkpoints/ with it
    (tmp_path / "run" / "agent.json").write_text("{}")
    beside = tmp_path / "run" / "checkpoints" / "new"
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--out", str(beside)]) == 2
    assert "is inside a run's checkpoints/ folder" in capsys.readouterr().err
    assert not beside.exists()


def test_more_rounds_than_asked_are_said(tmp_path, capsys):
    """PPO trains whole rollouts: 12 rounds asked of rollouts of 8 train 16, which was silent
    (with fine-tuning, real training of up to a rollout more)."""
    assert train_agent.main([*BASE, "--total-timesteps", "12", "--batch-size", "20",
                             "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "--total-timesteps leaves 12 to train and 16 are trained" in err
    assert "--batch-size 20 is more than a rollout; minibatches of 8" in err
    assert json.loads((tmp_path / "run" / "agent.json").read_text())["num_timesteps"] == 16
    assert cli_main(["train", *BASE, "--total-timesteps", "12", "--out",
                     str(tmp_path / "again")]) == 0
    assert "hffm train: note: PPO collects whole rollouts" in capsys.readouterr().err


def test_out_is_never_silently_mixed(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert train_agent.main([*BASE, "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    used = tmp_path / "used"
    (used / "checkpoints" / "step_00000008").mkdir(parents=True)
    (used / "runs" / "old_run").mkdir(parents=True)  # TensorBoard showed it beside the new
    (used / "model.zip").write_text("old")
    (used / "notes.txt").write_text("mine")
    assert train_agent.main([*BASE, "--out", str(used)]) == 2
    assert "--force" in capsys.readouterr().err
    forced = TrainArgs(out=str(used), force=True)
    replace_earlier_run(prepare_out(forced), forced)
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]  # only the run's files go
    # a failed start leaves nothing behind
    missing = tmp_path / "never"
    assert train_agent.main(["--scenario", "nope", "--out", str(missing)]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert train_agent.main([*BASE, "--out", str(missing), "--resume",
                             str(tmp_path / "nothing-here")]) == 2
    assert not missing.exists()


def test_force_removes_nothing_until_every_check_passed(tmp_path, capsys):
    """--force emptied --out before --resume was found, even when --resume was the run in
    --out; and it emptied a project folder whose files had a run's names."""
    run = tmp_path / "run"
    (run / "checkpoints" / "step_00000008").mkdir(parents=True)
    (run / "checkpoints" / "step_00000008" / "agent.json").write_text("{}")
    (run / "train_args.json").write_text("{}")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for resume in (str(run / "checkpoints" / "step_00000008"), str(tmp_path / "nothing")):
        assert train_agent.main([*BASE, "--out", str(run), "--force", "--resume", resume]) == 2
        assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    err = capsys.readouterr().err
    assert "--force would remove the run" in err and "--resume: " in err
    project = tmp_path / "project"
    (project / "checkpoints" / "important").mkdir(parents=True)
    (project / "results.json").write_text("{}")
    assert train_agent.main([*BASE, "--out", str(project), "--force"]) == 2
    assert "holds no earlier run" in capsys.readouterr().err
    assert (project / "results.json").exists() and (project / "checkpoints" / "important").is_dir()


# ------------------------------------------------------------------------ crafted files

class _Plant:
    """Unpickling this creates ``path``: a stand-in for any code a crafted file could run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _blob(path: Path) -> dict:
    import cloudpickle

    return {":type:": "<class 'object'>",
            ":serialized:": base64.b64encode(cloudpickle.dumps(_Plant(path))).decode()}


def _rewrite_entry(model_zip: Path, name: str, edit) -> None:
    """Replace the archive's entry ``name`` by ``edit(its bytes)``."""
    with zipfile.ZipFile(model_zip) as archive:
        entries = {entry: archive.read(entry) for entry in archive.namelist()}
    entries[name] = edit(entries[name])
    with zipfile.ZipFile(model_zip, "w") as archive:
        for entry, payload in entries.items():
            archive.writestr(entry, payload)


def _rewrite_data(model_zip: Path, edit) -> None:
    """Edit the archive's ``data`` entry (its JSON) in place with ``edit(data)``."""
    def rewritten(raw: bytes) -> bytes:
        data = json.loads(raw)
        edit(data)
        return json.dumps(data).encode()

    _rewrite_entry(model_zip, "data", rewritten)


def _rewrite_weights(model_zip: Path, edit) -> None:
    """Edit the archive's policy weights (``policy.pth``) in place with ``edit(state)``."""
    import torch

    def rewritten(raw: bytes) -> bytes:
        state = torch.load(io.BytesIO(raw), weights_only=True)
        edit(state)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()

    _rewrite_entry(model_zip, "policy.pth", rewritten)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("agent") / "run"
    assert train_agent.main([*BASE, "--total-timesteps", "8", "--out", str(out)]) == 0
    return out


def _copy(trained: Path, where: Path) -> Path:
    import shutil

    shutil.copytree(trained, where, ignore=shutil.ignore_patterns("runs", "checkpoints"))
    return where


def test_only_a_step_folder_in_checkpoints_is_a_checkpoint_of_the_run_above(trained, tmp_path):
    """Any folder inside one named checkpoints/ was taken for a checkpoint: a run trained
    into exp/checkpoints/run_x continued the learning curve of exp/."""
    from hffm_env.agents.checkpoint import find_agent

    own = _copy(trained, tmp_path / "exp" / "checkpoints" / "run_x")
    assert find_agent(own).run_folder == own
    step = _copy(trained, tmp_path / "run" / "checkpoints" / "step_00000008")
    assert find_agent(step).run_folder == tmp_path / "run"


def test_the_same_checkpoint_step_of_two_runs_gets_two_labels(tmp_path):
    """Both were agent:step_00000512, and a bench refused to play them side by side."""
    from hffm_env.agents.checkpoint import checkpoint_folder
    from hffm_env.agents.job import agent_label

    for run in ("seed0", "seed1"):
        (tmp_path / run / checkpoint_folder(512)).mkdir(parents=True)
    first, second = (tmp_path / run / checkpoint_folder(512) for run in ("seed0", "seed1"))
    assert (agent_label(first), agent_label(second)) == ("agent:seed0/step_00000512",
                                                          "agent:seed1/step_00000512")
    assert agent_label(first / "model.zip") == "agent:seed0/step_00000512"
    assert agent_label(tmp_path / "seed0") == agent_label(tmp_path / "seed0" / "model.zip") \
        == "agent:seed0"
    assert agent_label(tmp_path / "best.zip") == "agent:best"


def test_a_runs_checkpoints_are_its_step_folders_by_their_timesteps(tmp_path):
    from hffm_env.agents.checkpoint import checkpoint_folder, checkpoint_step, saved_checkpoints

    for steps in (16, 8, 1024):
        (tmp_path / checkpoint_folder(steps)).mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_x").mkdir()  # not a checkpoint: no timesteps
    expected = {s: tmp_path / checkpoint_folder(s) for s in (8, 16, 1024)}
    assert saved_checkpoints(tmp_path) == expected
    assert list(saved_checkpoints(tmp_path)) == [8, 16, 1024]
    assert checkpoint_step(tmp_path / "other" / "step_00000008") is None  # not in checkpoints/
    assert saved_checkpoints(tmp_path / "nothing") == {}


def test_the_checkpoints_folder_itself_points_at_its_latest_checkpoint(trained, tmp_path):
    from hffm_env.agents.checkpoint import checkpoint_folder

    run = tmp_path / "run"
    for steps in (8, 16):
        _copy(trained, run / checkpoint_folder(steps))
    with pytest.raises(AgentFileError, match=r"checkpoints: a run's checkpoints folder; name "
                                             r"one of its checkpoints \(the latest: "
                                             r".*step_00000016\)"):
        find_agent(run / "checkpoints")


def test_a_crafted_agent_archive_runs_no_code(trained, tmp_path, capsys):
    import gymnasium as gym

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    planted = tmp_path / "planted"
    # a blob under an entry the loader replaces is never read ...
    agent = _copy(trained, tmp_path / "replaced")
    _rewrite_data(agent / "model.zip", lambda d: d.update(observation_space=_blob(planted)))
    policy = AgentPolicy(agent)
    policy.reset(env)
    assert not planted.exists()
    # ... and an archive with any other serialized entry is refused, with one line
    agent = _copy(trained, tmp_path / "foreign")
    _rewrite_data(agent / "model.zip", lambda d: d.update(policy_kwargs=_blob(planted)))
    with pytest.raises(AgentFileError, match="refusing serialized entry 'policy_kwargs'"):
        AgentPolicy(agent)
    settings = [arg for kv in TINY_OVERRIDES for arg in ("--set", kv)]
    assert cli_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies", "star",
                     "--seeds", "1000", "--agent", str(agent), "--no-progress",
                     *settings]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "policy_kwargs" in err[0]
    assert not planted.exists()


def test_crafted_statistics_run_no_code(trained, tmp_path):
    import pickle

    agent = _copy(trained, tmp_path / "stats")
    planted = tmp_path / "planted"
    # a planted pickle beside the model is never opened
    (agent / "vecnormalize.pkl").write_bytes(pickle.dumps(_Plant(planted)))
    AgentPolicy(agent)
    assert not planted.exists()
    # an .npz holding an object array (a pickle inside) is refused
    np.savez(agent / "vecnormalize.npz", obs_mean=np.array([_Plant(planted)], dtype=object))
    with pytest.raises(AgentFileError, match="not normalisation statistics") as refused:
        AgentPolicy(agent)
    assert not planted.exists()
    assert "unsafely" not in str(refused.value)  # numpy's advice to run the pickle anyway


def test_statistics_an_empty_or_mistyped_file_holds_are_refused_by_name(trained, tmp_path):
    """An empty file said only numpy's "No data left in file"; an entry of the wrong shape
    did not name the entry."""
    agent = _copy(trained, tmp_path / "stats")
    stats = dict(np.load(agent / "vecnormalize.npz"))
    (agent / "vecnormalize.npz").write_bytes(b"")
    with pytest.raises(AgentFileError, match="vecnormalize.npz: not normalisation statistics "
                                             r"\(No data left in file; an empty or cut file"):
        AgentPolicy(agent)
    np.savez(agent / "vecnormalize.npz", **{**stats, "clip_obs": np.array([1.0, 2.0])})
    with pytest.raises(AgentFileError, match=r"vecnormalize.npz: clip_obs = array\(\[1\., 2\.\]\) "
                                             "is not a normalisation statistic"):
        AgentPolicy(agent)


@pytest.mark.parametrize(("fields", "says"), [
    ({"hidden_sizes": "64"}, "hidden_sizes = \"64\": must be a non-empty list"),
    ({"hidden_sizes": [-1]}, "hidden_sizes = \\[-1\\]: must be"),
    ({"hidden_sizes": [10**8]}, "hidden_sizes = \\[100000000\\]: must be .* in 1..65536"),
    ({"normalized": "yes"}, "normalized = \"yes\": must be true, false or absent"),
    ({"num_timesteps": "x"}, "num_timesteps = \"x\": must be an integer in 0..9223\\d+"),
    ({"multi_agent": True}, "multi_agent = true: must be false for an agent trained with "
                            "stable-baselines3"),
    ({"agent_indicator": "no"}, "agent_indicator = \"no\": must be true or false"),
    ({"agent_indicator": True}, "agent_indicator = true: must be false for a single-agent"),
    ({"action_mode": "fine"}, "action_mode = \"fine\": must be one of"),
    ({"overrides": "env.episode_rounds=4"}, "overrides = .*: must be a list of KEY=VALUE"),
    # JSON's Infinity and NaN: int() of them raised from inside the check
    ({"num_timesteps": float("inf")}, "num_timesteps = Infinity: must be an integer in 0"),
    # beyond int64 (stable-baselines3 counts in it), and beyond a float (isfinite overflowed)
    ({"num_timesteps": 10**30}, "num_timesteps = 10{30}: must be an integer in 0"),
    ({"num_timesteps": 10**400}, "num_timesteps = 10{90,100}\\.\\.\\.0{90,100}: must be"),
    ({"hidden_sizes": [float("nan")]}, "hidden_sizes = \\[NaN\\]: must be"),
])
def test_a_hand_edited_agent_json_is_refused_naming_the_field(trained, tmp_path, fields, says):
    """Values of the wrong kind were taken as they came: "64" as hidden sizes (6, 4)."""
    agent = _copy(trained, tmp_path / "edited")
    _edit_info(agent, **fields)
    with pytest.raises(AgentFileError, match=f"agent.json: {says}"):
        AgentPolicy(agent)


def test_a_float_timestep_count_reads_as_an_integer(trained, tmp_path):
    agent = _copy(trained, tmp_path / "float")
    _edit_info(agent, num_timesteps=512.0)
    assert find_agent(agent).info.num_timesteps == 512
    assert isinstance(find_agent(agent).info.num_timesteps, int)


def test_a_hand_edited_train_args_leaves_the_training_config_unknown(trained, tmp_path):
    """AgentInfo refusing what train_args.json says made training_config raise, where an
    unreadable record means "not known" (None)."""
    agent = _copy(trained, tmp_path / "edited_args")
    info = json.loads((agent / "agent.json").read_text())
    del info["config"], info["overrides"]  # so that train_args.json is read instead
    (agent / "agent.json").write_text(json.dumps(info))
    recorded = json.loads((agent / "train_args.json").read_text())
    (agent / "train_args.json").write_text(json.dumps({**recorded, "scenario": 5}))
    assert find_agent(agent).training_config() is None


def test_an_agent_json_without_algo_says_so(trained, tmp_path):
    agent = _copy(trained, tmp_path / "empty")
    for text in ("{}", "[]"):
        (agent / "agent.json").write_text(text)
        with pytest.raises(AgentFileError, match="must be a JSON object with at least 'algo'"):
            AgentPolicy(agent)


def _edit_info(agent, **fields):
    info = json.loads((agent / "agent.json").read_text())
    (agent / "agent.json").write_text(json.dumps({**info, **fields}))


def _edit_stats(agent, **fields):
    stats = dict(np.load(agent / "vecnormalize.npz"))
    np.savez(agent / "vecnormalize.npz", **{**stats, **fields})


@pytest.mark.parametrize("damage,message", [
    (lambda a: (a / "model.zip").write_text("not a zip"), "not a zip archive"),
    (lambda a: (a / "agent.json").unlink(), "no agent.json"),
    (lambda a: (a / "agent.json").write_text('{"algo": "dqn"}'), "algo = 'dqn'"),
    (lambda a: (a / "model.zip").unlink(), "no model.zip"),
    (lambda a: (a / "agent.json").write_text('{"algo": "ppo", "action_mode": "weird"}'),
     'action_mode = "weird"'),
    # trained on normalised observations: playing it on raw ones would be silently wrong
    (lambda a: (a / "vecnormalize.npz").unlink(), "no vecnormalize.npz"),
    # SB3 failed later with an AssertionError; NaN even trained on and wrote a broken folder
    (lambda a: _edit_info(a, clip_range="abc"), "clip_range = \"abc\": must be a number > 0"),
    (lambda a: _edit_info(a, clip_range=float("nan")), "clip_range = NaN"),
    # statistics no VecNormalize writes: the policy's logits became NaN, the file unnamed
    (lambda a: _edit_stats(a, obs_mean=np.full(2, np.nan)), "vecnormalize.npz: obs_mean = "),
    (lambda a: _edit_stats(a, obs_var=-np.ones(2)), "vecnormalize.npz: obs_var = "),
    (lambda a: _edit_stats(a, ret_count=np.float64("nan")), "vecnormalize.npz: ret_count = "),
])
def test_bad_agent_files_get_one_clean_error(trained, tmp_path, damage, message):
    agent = _copy(trained, tmp_path / "bad")
    damage(agent)
    with pytest.raises(AgentFileError, match=message):
        AgentPolicy(agent)


def test_an_agent_that_does_not_say_whether_it_was_normalised_warns_without_statistics(
        trained, tmp_path):
    """A folder from before ``normalized`` was recorded plays on raw observations when its
    statistics are missing: that may be a lost file, so it is said, not silently done."""
    agent = _copy(trained, tmp_path / "legacy")
    info = json.loads((agent / "agent.json").read_text())
    del info["normalized"]
    (agent / "agent.json").write_text(json.dumps(info))
    with warnings.catch_warnings():  # statistics present: nothing to say
        warnings.simplefilter("error")
        find_agent(agent)
    (agent / "vecnormalize.npz").unlink()
    with pytest.warns(UserWarning, match="does not say whether .* no vecnormalize.npz"):
        assert find_agent(agent).normalization is None
    _edit_info(agent, normalized=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_agent(agent).normalization is None


def test_corrupt_weights_and_statistics_of_another_size_are_refused_by_name(trained, tmp_path):
    import gymnasium as gym

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    # text, and text whose first bytes read as pickle opcodes (torch then fails otherwise)
    for k, junk in enumerate([b"not torch weights", b"timesteps,return\n1,2\n", b"root:x:0:0"]):
        agent = _copy(trained, tmp_path / f"weights{k}")
        _rewrite_entry(agent / "model.zip", "policy.pth", lambda _, junk=junk: junk)
        with pytest.raises(AgentFileError, match="model.zip: corrupt weights"):
            AgentPolicy(agent).reset(env)
    # weights cut short: it was reported as an agent for other spaces
    agent = _copy(trained, tmp_path / "truncated")
    _rewrite_entry(agent / "model.zip", "policy.pth", lambda raw: raw[: len(raw) // 2])
    with pytest.raises(AgentFileError, match="model.zip: corrupt or unreadable model"):
        AgentPolicy(agent).reset(env)
    agent = _copy(trained, tmp_path / "stats")
    stats = dict(np.load(agent / "vecnormalize.npz"))
    np.savez(agent / "vecnormalize.npz", **{**stats, "obs_mean": np.zeros(2),
                                            "obs_var": np.ones(2)})
    policy = AgentPolicy(agent)
    policy.reset(env)
    obs, info = env.reset(seed=0)
    with pytest.raises(AgentFileError, match=r"observations of shape \(2,\)"):
        policy.act(obs, info)


def test_an_agent_for_other_spaces_is_refused_by_name(trained):
    import gymnasium as gym

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=[*TINY_OVERRIDES, "fl.max_pending_requests=5"])
    with pytest.raises(AgentFileError, match="does not fit this env's spaces") as refused:
        AgentPolicy(trained).reset(env)
    # ... and the error says how it was trained, so the right env can be built
    assert "trained on scenario 'small' with --set model.pretrain_steps=40" in str(refused.value)


def test_an_agent_trained_with_a_config_file_names_it_when_refused(trained, tmp_path):
    """It said only "trained on scenario 'small': evaluate it on that env", which the user
    had just done: the file that changed the layout went unnamed."""
    import gymnasium as gym

    agent = _copy(trained, tmp_path / "configured")
    recorded = json.loads((agent / "train_args.json").read_text())
    (agent / "train_args.json").write_text(json.dumps({**recorded, "config": "/runs/l3.yaml"}))
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=[*TINY_OVERRIDES, "fl.max_pending_requests=5"])
    with pytest.raises(AgentFileError, match="does not fit") as refused:
        AgentPolicy(agent).reset(env)
    assert "with --config /runs/l3.yaml --set model.pretrain_steps=40" in str(refused.value)


@pytest.mark.parametrize(("edit", "said"), [
    (lambda data: data.update(learning_rate="x"), "corrupt or unreadable model (AssertionError"),
    (lambda data: data.update(policy_kwargs="x"), "corrupt or unreadable model (AttributeError"),
    (lambda data: data.update(gamma="x"), "corrupt model (gamma = 'x': must be a finite number)"),
    # out of range: trained on (a resume accepted gamma 1.5)
    (lambda data: data.update(gamma=1.5), "corrupt model (gamma = 1.5: must be in [0, 1])"),
    (lambda data: data.update(vf_coef=-0.5), "corrupt model (vf_coef = -0.5: must be >= 0)"),
])
def test_a_hand_edited_model_entry_is_refused_by_name(trained, tmp_path, capsys, edit, said):
    """SB3 failed on such entries with a traceback (an assertion, an attribute error), or only
    mid-training (gamma); a resume in the run's own folder had removed its comparison by then."""
    import gymnasium as gym

    agent = _copy(trained, tmp_path / "edited")
    _rewrite_data(agent / "model.zip", edit)
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    with pytest.raises(AgentFileError, match="model.zip: ") as refused:
        AgentPolicy(agent).reset(env)
    assert said in str(refused.value)
    (agent / "results.json").write_text("{}")  # the comparison a failed resume must keep
    assert train_agent.main([*BASE, "--total-timesteps", "16", "--resume", str(agent),
                             "--out", str(agent)]) == 2
    assert said in capsys.readouterr().err
    assert (agent / "results.json").read_text() == "{}"


def test_an_agent_json_at_odds_with_its_files_is_refused(trained, tmp_path):
    # "normalized": false beside vecnormalize.npz played on the statistics anyway; an algo
    # edited to "ppo" on a masked policy played it without masks
    from hffm_env.agents.checkpoint import find_agent

    info = json.loads((trained / "agent.json").read_text())
    assert info["normalized"] is True and info["algo"] == "maskable-ppo"
    unnormalised = _copy(trained, tmp_path / "unnormalised")
    (unnormalised / "agent.json").write_text(json.dumps({**info, "normalized": False}))
    with pytest.raises(AgentFileError, match="normalized: false.*yet vecnormalize.npz is here"):
        find_agent(unnormalised)
    plain = _copy(trained, tmp_path / "plain")
    (plain / "agent.json").write_text(json.dumps({**info, "algo": "ppo"}))
    with pytest.raises(AgentFileError, match=r"algo = 'ppo', but model.zip holds a masked "
                                             r"policy .*: the algo is maskable-ppo"):
        find_agent(plain)


def test_weights_with_an_entry_added_are_a_damaged_file_not_other_spaces(trained, tmp_path):
    """An extra entry in policy.pth was reported as an agent for other spaces, beside sizes
    that were the env's own."""
    import gymnasium as gym
    import torch

    agent = _copy(trained, tmp_path / "extra")
    _rewrite_weights(agent / "model.zip", lambda state: state.update(stray=torch.zeros(2)))
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    with pytest.raises(AgentFileError, match=r"model.zip: corrupt model \(its weights are not "
                                             r"the entries of the policy it describes: "
                                             r"Unexpected key\(s\) in state_dict: \"stray\""):
        AgentPolicy(agent).reset(env)


def test_weights_that_are_not_finite_are_refused_by_name(trained, tmp_path):
    """NaN weights failed when acting, naming torch's logits, not the file."""
    import gymnasium as gym
    import torch

    agent = _copy(trained, tmp_path / "nan")
    names = []

    def poison(state):
        names.append(next(iter(state)))
        state[names[0]] = torch.full_like(state[names[0]], float("nan"))

    _rewrite_weights(agent / "model.zip", poison)
    first = names[0]
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    with pytest.raises(AgentFileError, match=rf"model.zip: its weights are not finite \(NaN or "
                                             rf"infinite in {first}"):
        AgentPolicy(agent).reset(env)


def test_how_an_agent_was_trained_is_said_in_training_order(trained, tmp_path):
    """The refusal's --set list put the setting flags after the --set values, training puts
    them first (one rule now: setting_overrides)."""
    from hffm_env.agents.checkpoint import trained_on

    agent = _copy(trained, tmp_path / "ordered")
    recorded = json.loads((agent / "train_args.json").read_text())
    (agent / "train_args.json").write_text(json.dumps({**recorded, "accuracy_weight": 5.0}))
    said = trained_on(agent)
    flag, given = said.index("--set env.accuracy_weight=5.0"), said.index("--set model.")
    assert flag < given, said


def test_normalization_round_trips(tmp_path):
    """Every field comes back, each with a value of its own (three of thirteen were
    checked, and equal values hid a swap of two fields)."""
    import dataclasses

    stats = Normalization(np.arange(3.0), np.arange(1.0, 4.0), 5.0, 0.1, 2.0, 7.0,
                          np.array([0.5, -0.5]), 10.0, 3.0, 0.99, 1e-8, True, False)
    stats.save(tmp_path / "s.npz")
    back = Normalization.load(tmp_path / "s.npz")
    for field in dataclasses.fields(Normalization):
        saved, loaded = getattr(stats, field.name), getattr(back, field.name)
        assert np.array_equal(loaded, saved), field.name
        assert type(loaded) is type(saved), field.name  # a bool stays a bool, not an array


COMMITTED = sorted(COMMITTED_DIR.iterdir())


@pytest.mark.parametrize("folder", COMMITTED, ids=[f.name for f in COMMITTED])
def test_every_committed_agent_loads_and_plays_the_env_it_was_trained_on(folder):
    """The README's agents are re-evaluated with ``hffm bench --agent FOLDER``: each folder
    must load on this version and act validly in the env of its ``train_args.json`` (the
    policy translates its own action mode into the env's full action)."""
    import gymnasium as gym

    from hffm_env.agents.job import agent_policy

    args = json.loads((folder / "train_args.json").read_text())
    policy = agent_policy(folder)
    # each folder says whether it was trained on normalised observations, and has the
    # statistics if so (a folder that does not say plays on raw ones when they are missing)
    assert policy.agent.info.normalized is args["normalize"]
    assert (policy.agent.normalization is not None) is args["normalize"]
    env = gym.make("hffm/HFFM-v0", scenario=args["scenario"], fidelity="surrogate",
                   overrides=args["overrides"])
    # bench's note on other settings reads the training config (train_args.json for these)
    trained = policy.agent.training_config()
    assert trained is not None and trained.placement == env.unwrapped.config.placement
    obs, info = env.reset(seed=1000)
    policy.reset(env, 1000)
    for _ in range(2):
        action = policy.act(obs, info)
        assert env.action_space.contains(action)
        obs, _, _, _, info = env.step(action)
    env.close()


def test_an_agent_played_on_other_settings_warns_once_and_the_commands_only_note_it(capsys):
    """From Python, an agent played on other settings than it was trained on (a 4-round
    env for a 16-round agent) gave its numbers without a word; the commands noted it."""
    import gymnasium as gym

    from hffm_env.agents.checkpoint import OtherSettingsWarning
    from hffm_env.baselines.runner import run_benchmark

    agent = COMMITTED_DIR / "ppo-coarse-stt-plan-term-4clusters_s0"
    trained = AgentPolicy(agent).agent.training_config()
    overrides = [f"env.{k}={v}" for k, v in (("reward", "spend-to-target"),
                                             ("target_accuracy", 0.357),
                                             ("surrogate_noise", "residuals"),
                                             ("observe_target", "true"),
                                             ("accuracy_weight", 5.0), ("latency_weight", 0.0))]
    assert trained is not None and trained.env.episode_rounds == 16
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_benchmark(lambda: gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate",
                                       overrides=[*overrides, "env.episode_rounds=4"]),
                      [AgentPolicy(agent, name="agent:s0")], seeds=[1000, 1001],
                      progress=False)
    said = [str(w.message) for w in caught if issubclass(w.category, OtherSettingsWarning)]
    assert said == ["agent:s0 was trained with env.episode_rounds=16 (here 4)"]
    with warnings.catch_warnings(record=True) as caught:  # its own settings: nothing to say
        warnings.simplefilter("always")
        run_benchmark(lambda: gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate",
                                       overrides=overrides),
                      [AgentPolicy(agent)], seeds=[1000], progress=False)
    assert not [w for w in caught if issubclass(w.category, OtherSettingsWarning)]
    assert cli_main(["bench", "--scenario", "small", "--fidelity", "surrogate", "--seeds",
                     "1000", "--agent", str(agent), "--policies", "", "--no-progress",
                     *[f"--set={o}" for o in overrides], "--set", "env.episode_rounds=4"]) == 0
    err = capsys.readouterr().err
    assert err.count("env.episode_rounds=16 (here 4)") == 1 and "warning" not in err.lower(), err


def test_save_agent_refuses_a_model_hffm_could_not_load(tmp_path):
    """A model with a learning-rate schedule, or saved under another algorithm's name, was
    written, and refused only when `hffm bench --agent` loaded it."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from hffm_env.agents.checkpoint import AgentInfo, save_agent

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=["env.episode_rounds=4"])
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=8, learning_rate=lambda f: 3e-4 * f)
    info = AgentInfo(algo="ppo", config=env.unwrapped.config)  # a config taken as it is
    assert isinstance(info.config, dict) and info.training_config() == env.unwrapped.config
    with pytest.raises(AgentFileError, match="'learning_rate' can only be saved as code.*set "
                                             "model.learning_rate to a number"):
        save_agent(tmp_path / "a", model, info)
    assert not (tmp_path / "a").exists()  # not even the folder made for it
    with pytest.raises(AgentFileError, match="'policy_kwargs' can only be saved as code.*"
                                             "policy_kwargs of plain values only"):
        import torch.nn

        save_agent(tmp_path / "a", PPO("MlpPolicy", env, n_steps=8, batch_size=8,
                                       policy_kwargs={"activation_fn": torch.nn.ReLU}), info)
    model.learning_rate = 3e-4
    with pytest.raises(AgentFileError, match="the model is a stable_baselines3.PPO, but "
                                             "info.algo = 'maskable-ppo'"):
        save_agent(tmp_path / "b", model, replace(info, algo="maskable-ppo"))
    for wrong, message in (
            ({"engine": "rllib"}, "info.engine = 'rllib': it writes stable-baselines3 agents"),
            ({"normalized": True}, "info.normalized = True but vec_normalize is None"),
            ({"config": {"fl": {"nosuch": 1}}}, "info.config does not load: unknown config "
                                                "key fl.nosuch")):
        with pytest.raises(AgentFileError, match=message):  # each would not load afterwards
            save_agent(tmp_path / "d", model, replace(info, **wrong))
        assert not (tmp_path / "d" / "agent.json").exists()
    save_agent(tmp_path / "c", model, info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it says it has no statistics: no warning of that
        assert find_agent(tmp_path / "c").info.normalized is False
    # Ctrl-C inside model.save left the checkpoint folder made for it empty, which then read
    # as the latest checkpoint; a folder that was there before stays
    saving = model.save

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    model.save = interrupted
    for folder, existed in ((tmp_path / "checkpoints" / "step_8", False), (tmp_path / "c", True)):
        with pytest.raises(KeyboardInterrupt):
            save_agent(folder, model, info)
        assert folder.exists() == existed
    assert find_agent(tmp_path / "c").info.normalized is False  # the earlier save, whole
    model.save = saving
    env.close()


def test_save_agent_keeps_the_statistics_of_the_models_own_vecnormalize(tmp_path):
    """Saved as the README showed (no vec_normalize), a model trained on VecNormalize lost its
    statistics and played on raw observations; its num_timesteps was written as 0."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from hffm_env.agents.checkpoint import AgentInfo, save_agent

    def make():
        return gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                        overrides=["env.episode_rounds=4"])

    normalized = VecNormalize(DummyVecEnv([make]))
    model = PPO("MlpPolicy", normalized, n_steps=8, batch_size=8)
    model.learn(8)
    save_agent(tmp_path / "a", model, AgentInfo(algo="ppo", config=make().unwrapped.config))
    saved = find_agent(tmp_path / "a")
    assert saved.info.normalized is True and saved.info.num_timesteps == 8
    np.testing.assert_allclose(saved.normalization.obs_mean, normalized.obs_rms.mean)
    with pytest.raises(AgentFileError, match="save_agent: info = {'algo': 'ppo'}: must be an "
                                             "AgentInfo"):
        save_agent(tmp_path / "b", model, {"algo": "ppo"})
    normalized.close()


@pytest.mark.parametrize("workers", [False, True])
def test_save_agent_refuses_a_model_bench_would_not_play_as_trained(tmp_path, workers):
    """A model trained through NormalizeObservation, or through CoarseActions without
    action_mode='coarse', was saved without a word; hffm bench then played the first on raw
    observations and refused the second only when played. With its envs in worker processes
    (SubprocVecEnv, as --n-envs trains) nothing was checked."""
    import functools

    import gymnasium as gym
    from gymnasium.wrappers import NormalizeObservation, RecordEpisodeStatistics
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    from hffm_env.agents.checkpoint import AgentInfo, save_agent
    from hffm_env.wrappers import CoarseActions

    def make():
        return gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                        overrides=["env.episode_rounds=4"])

    config = make().unwrapped.config
    for k, (wrap, mode, says) in enumerate((
            # (asked of a worker by wrapper class: the class asked about is named)
            (NormalizeObservation, "full", "observations "
             f"{'ObservationWrapper' if workers else 'NormalizeObservation'} transforms"),
            (CoarseActions, "full", "not the env's full action space; set info.action_mode"),
            (lambda env: env, "coarse", "action_mode = 'coarse', but the model trained "
                                        "without CoarseActions"),
            (RecordEpisodeStatistics, "full", None), (CoarseActions, "coarse", None))):
        vec = (functools.partial(SubprocVecEnv, start_method="fork") if workers
               else DummyVecEnv)
        venv = VecNormalize(vec([lambda wrap=wrap: wrap(make())]))
        model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8)
        info = AgentInfo(algo="ppo", config=config, action_mode=mode)
        if says is None:
            save_agent(tmp_path / str(k), model, info)  # played as trained: saved
            assert (tmp_path / str(k) / "model.zip").is_file()
        else:
            with pytest.raises(AgentFileError, match=f"save_agent: .*{says}"):
                save_agent(tmp_path / str(k), model, info)
            assert not (tmp_path / str(k)).exists()  # nothing written
        venv.close()


def test_a_model_normalising_rewards_only_saves_and_plays_under_its_folders_name(tmp_path):
    """VecNormalize(norm_obs=False) keeps no observation statistics: save_agent refused it as
    "not the VecNormalize the model was trained on"; agent_policy named every agent "agent",
    so two in one run_benchmark collided."""
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from hffm_env.agents.checkpoint import AgentInfo, save_agent
    from hffm_env.agents.job import agent_policy
    from hffm_env.baselines.runner import run_benchmark

    def make():
        return gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                        overrides=["env.episode_rounds=4"])

    venv = VecNormalize(DummyVecEnv([make]), norm_obs=False, norm_reward=True)
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=8)
    info = AgentInfo(algo="ppo", config=venv.venv.envs[0].unwrapped.config)
    for name in ("first", "second"):
        save_agent(tmp_path / name, model, info)  # the VecNormalize found on the model
    stats = find_agent(tmp_path / "first").normalization
    assert stats is not None and not stats.norm_obs and stats.norm_reward
    obs = np.linspace(0.0, 1.0, stats.obs_mean.size, dtype=np.float32)
    np.testing.assert_array_equal(stats.normalize_obs(obs), obs)  # played on raw ones
    result = run_benchmark(make, [agent_policy(tmp_path / "first"),
                                  agent_policy(tmp_path / "second")], seeds=[1000],
                           progress=False)
    assert [p.policy for p in result.summaries] == ["agent:first", "agent:second"]
    venv.close()


def test_save_agent_records_the_models_own_clip_range(tmp_path):
    """agent.json said 0.2 (AgentInfo's default) whatever the model used, and loading or
    resuming the agent set 0.2."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from hffm_env.agents.checkpoint import AgentInfo, load_model, save_agent

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=["env.episode_rounds=4"])
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=8, clip_range=0.05)
    info = AgentInfo(algo="ppo", config=env.unwrapped.config)
    save_agent(tmp_path / "a", model, info)
    saved = find_agent(tmp_path / "a")
    assert saved.info.clip_range == 0.05
    assert load_model(saved, env.observation_space, env.action_space).clip_range(1.0) == 0.05
    with pytest.raises(AgentFileError, match=r"info.clip_range = 0.1, but the model's is 0.05"):
        save_agent(tmp_path / "b", model, replace(info, clip_range=0.1))
    # an explicit 0.2 is a claim too (it was taken for "not said" and replaced by 0.05)
    with pytest.raises(AgentFileError, match=r"info.clip_range = 0.2, but the model's is 0.05"):
        save_agent(tmp_path / "c", model, replace(info, clip_range=0.2))
    assert not (tmp_path / "c").exists()


def test_an_agent_that_does_not_say_what_it_was_trained_on_warns_once(tmp_path, capsys):
    """Its env's settings went unchecked without a word."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from hffm_env.agents.checkpoint import AgentInfo, OtherSettingsWarning, save_agent

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=["env.episode_rounds=4"])
    save_agent(tmp_path / "a", PPO("MlpPolicy", env, n_steps=8, batch_size=8),
               AgentInfo(algo="ppo"))
    policy = AgentPolicy(tmp_path / "a", name="mine")
    with pytest.warns(OtherSettingsWarning, match="mine: .*a: its agent.json does not say what "
                                                  "it was trained on .*, so the env's settings "
                                                  "go unchecked"):
        policy.reset(env)
    other = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                     overrides=["env.episode_rounds=3"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        policy.reset(other)  # once, whatever env comes next
    other.close()
    # hffm bench silences the agents' warnings and notes instead: it said nothing of it
    from hffm_env import cli

    assert cli.main(["bench", "--scenario", "small", "--fidelity", "cost", "--set",
                     "env.episode_rounds=4", "--agent", str(tmp_path / "a"), "--policies",
                     "never", "--seeds", "1000"]) == 0
    assert "hffm bench: note: agent:a: " in capsys.readouterr().err
    env.close()


def test_an_agent_of_other_action_logits_says_what_its_weights_give(tmp_path):
    """A coarse agent saved without its action_mode failed with only torch's state_dict
    line: nothing said the weights give the coarse action's logits."""
    import gymnasium as gym
    from sb3_contrib import MaskablePPO

    from hffm_env.agents.checkpoint import AgentInfo, save_agent
    from hffm_env.agents.job import agent_policy
    from hffm_env.baselines.runner import run_benchmark
    from hffm_env.wrappers import CoarseActions

    def make():
        return gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                        overrides=["env.episode_rounds=4"])

    env = make()
    coarse = CoarseActions(env)
    model = MaskablePPO("MlpPolicy", coarse, n_steps=8, batch_size=8)
    info = AgentInfo(algo="maskable-ppo", config=env.unwrapped.config)
    with pytest.raises(AgentFileError, match="set info.action_mode"):  # refused when saved
        save_agent(tmp_path / "a", model, info)
    # a folder whose agent.json lost its action_mode (edited, or saved before that check)
    save_agent(tmp_path / "a", model, replace(info, action_mode="coarse"))
    recorded = json.loads((tmp_path / "a" / "agent.json").read_text())
    (tmp_path / "a" / "agent.json").write_text(json.dumps({**recorded, "action_mode": "full"}))
    logits = int(sum(coarse.action_space.nvec))
    full = int(sum(env.action_space.nvec))
    with pytest.raises(AgentFileError, match=f"its weights take 57 inputs and give {logits} "
                                             f"action logits, here 57 and {full}"):
        run_benchmark(make, [agent_policy(tmp_path / "a")], seeds=[1000], progress=False)
    env.close()


def _energy_only(inputs, costs, weights):
    """A custom reward of this test file: the energy term alone."""
    from hffm_env.envs.reward import accuracy_level

    return {"energy": accuracy_level(inputs, costs, weights)["energy"]}


def test_an_agent_trained_under_a_custom_reward_says_so_where_it_is_played(tmp_path, capsys):
    """agent.json recorded the config's named reward for an agent trained under a callable
    (which no config can hold), so playing it under the named one passed without a word."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    from hffm_env.agents.checkpoint import AgentInfo, OtherSettingsWarning, save_agent

    def make(**kwargs):
        return gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                        overrides=["env.episode_rounds=4"], **kwargs)

    custom = make(reward=_energy_only)
    save_agent(tmp_path / "a", PPO("MlpPolicy", custom, n_steps=8, batch_size=8),
               AgentInfo(algo="ppo", config=custom.unwrapped.config))
    recorded = json.loads((tmp_path / "a" / "agent.json").read_text())["custom_reward"]
    assert recorded == f"{__name__}._energy_only"
    named = make()
    with pytest.warns(OtherSettingsWarning, match=r"mine was trained under the reward "
                                                  rf"{recorded} \(here accuracy-level\)"):
        AgentPolicy(tmp_path / "a", name="mine").reset(named)
    with warnings.catch_warnings():  # played under its own reward: nothing to say
        warnings.simplefilter("error")
        AgentPolicy(tmp_path / "a").reset(custom)
    # under another named reward: said once, by name (not also as env.reward=accuracy-level,
    # which its config holds but it never trained under)
    gain = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                    overrides=["env.episode_rounds=4", "env.reward=accuracy-gain"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AgentPolicy(tmp_path / "a", name="mine").reset(gain)
    assert [str(w.message) for w in caught] == [
        f"mine was trained under the reward {recorded} (here accuracy-gain)"]
    gain.close()
    # a named reward's callable in place of the config's is not the config's reward either
    from hffm_env.envs.reward import REWARDS

    other = make(reward=REWARDS["accuracy-gain"])
    save_agent(tmp_path / "c", PPO("MlpPolicy", other, n_steps=8, batch_size=8),
               AgentInfo(algo="ppo", config=other.unwrapped.config))
    assert json.loads((tmp_path / "c" / "agent.json").read_text())["custom_reward"] \
        == "accuracy-gain"
    other.close()
    # and the converse: an agent of a named reward played under a callable
    save_agent(tmp_path / "b", PPO("MlpPolicy", named, n_steps=8, batch_size=8),
               AgentInfo(algo="ppo", config=named.unwrapped.config))
    assert json.loads((tmp_path / "b" / "agent.json").read_text())["custom_reward"] is None
    with pytest.warns(OtherSettingsWarning, match=rf"b was trained under the reward "
                                                  rf"accuracy-level \(here {recorded}\)"):
        AgentPolicy(tmp_path / "b", name="b").reset(custom)
    assert cli_main(["bench", "--scenario", "small", "--fidelity", "cost", "--set",
                     "env.episode_rounds=4", "--agent", str(tmp_path / "a"), "--policies",
                     "never", "--seeds", "1000", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"note: agent:a was trained under the reward {recorded} (here accuracy-level)" \
        in err, err
    (tmp_path / "a" / "agent.json").write_text(json.dumps({"algo": "ppo", "custom_reward": 3}))
    with pytest.raises(AgentFileError, match="custom_reward = 3: must be the module.qualname"):
        find_agent(tmp_path / "a")
    custom.close(), named.close()


def test_ctrl_c_while_the_results_are_written_keeps_them_whole(tmp_path, monkeypatch, capsys):
    """pareto.png was drawn in place after results.json and results.md: a Ctrl-C there left a
    truncated figure, and the message said the evaluation had only started."""
    import hffm_env.baselines.runner as runner

    real_plot = runner.plot_tradeoffs

    def interrupted_plot(result, path=None):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C while the figure is drawn
        return real_plot(result, path)

    monkeypatch.setattr(runner, "plot_tradeoffs", interrupted_plot)
    out = tmp_path / "run"
    assert train_agent.main([*BASE, "--total-timesteps", "8", "--eval-policies", "never",
                             "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted during the comparison with the baselines" in err
    assert "results.json, results.md and pareto.png are whole" in err
    assert (out / "pareto.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "results.json").read_text())["verdict"]
