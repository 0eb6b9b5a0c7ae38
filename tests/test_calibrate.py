"""`hffm calibrate` end to end on a tiny scenario, and training on the surrogate it fits."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import hffm_env  # noqa: F401  (registers the env ids)
import hffm_env.agents.command as train_agent
from hffm_env.baselines.calibrate import MixedPeriodPolicy, read_traces
from hffm_env.cli import main as cli_main
from hffm_env.config import MODULE_TYPES
from hffm_env.fl.surrogate import AccuracySurrogate
from hffm_env.testing import TINY_OVERRIDES

OVERRIDES = [*TINY_OVERRIDES, "env.episode_rounds=3"]
SETTINGS = [arg for kv in OVERRIDES for arg in ("--set", kv)]


@pytest.fixture(scope="module", autouse=True)
def quick_fits():
    """These tests check the calibration's flow and files, not how well it fits (that is
    tests/fl/test_surrogate.py's): 300 iterations a fit instead of 3,000 (tens of seconds
    each on two cores)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(AccuracySurrogate.fit.__func__.__kwdefaults__, "iterations", 300)
        yield


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibrate")
    out = folder / "surrogate.pt"
    code = cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "0",
                     "--policies", "star", "never", "module-aware", "--mixed", "1",
                     "--random-episodes", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    return out


@pytest.mark.slow
def test_calibration_records_real_rounds_and_fits_a_surrogate(calibrated):
    episodes = read_traces(calibrated.with_suffix(".traces.json"))
    assert [e["policy"] for e in episodes] == ["star", "never", "module-aware", "random",
                                               "mixed-0"]
    for e in episodes:
        assert len(e["rounds"]) == 4 and e["rounds"][0].tiers is None  # reset + 3 rounds
        assert all(np.isfinite(r.targets["accuracy/scene"]) for r in e["rounds"])
    star = next(e for e in episodes if e["policy"] == "star")["rounds"][1]
    assert star.tiers == dict.fromkeys(MODULE_TYPES, "cloud")


def test_hffm_bench_takes_a_fit_by_path(calibrated, capsys):
    assert cli_main(["bench", "--scenario", "small", *SETTINGS, "--fidelity", "surrogate",
                     "--surrogate", str(calibrated), "--policies", "never", "--seeds", "1000",
                     "--no-progress"]) == 0
    assert f"accuracy predicted by the fit in {calibrated}" in capsys.readouterr().err
    assert cli_main(["bench", "--scenario", "small", *SETTINGS, "--fidelity", "cost",
                     "--surrogate", str(calibrated), "--policies", "never"]) == 2
    assert "a fit serves --fidelity surrogate only" in capsys.readouterr().err
    assert cli_main(["bench", "--scenario", "small", "--fidelity", "surrogate",  # 16 rounds
                     "--surrogate", str(calibrated), "--policies", "never"]) == 2
    assert "--surrogate: surrogate = " in capsys.readouterr().err


def test_a_calibrated_surrogate_drives_the_surrogate_fidelity(calibrated):
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate", overrides=OVERRIDES,
                   surrogate=str(calibrated))
    _, info = env.reset(seed=1000)
    _, reward, _, _, info = env.step(env.unwrapped.layout.encode(1, 1))
    assert 0.0 <= info["accuracy"]["mean"] <= 1.0 and np.isfinite(reward)
    # ... the fit given, not another one the env found: its prediction for this round
    used, fit = env.unwrapped.surrogate, AccuracySurrogate.load(calibrated)
    assert used.path is not None and Path(used.path).resolve() == calibrated.resolve()
    features = np.random.default_rng(0).random((3, len(fit.x_mean)))
    np.testing.assert_array_equal(used.predict_features(features), fit.predict_features(features))
    env.close()


def test_calibration_refuses_held_out_seeds(capsys, tmp_path):
    assert cli_main(["calibrate", "--scenario", "small", "--seeds", "1000"]) == 2
    assert "held out" in capsys.readouterr().err
    # nor does a refit read held-out episodes (unless they are excluded)
    held_out = Path(__file__).resolve().parents[1] / "docs/results/surrogate/heldout_small.json.gz"
    out = tmp_path / "s.pt"
    assert cli_main(["calibrate", "--scenario", "small", "--from-traces", str(held_out),
                     "--out", str(out)]) == 2
    assert "held-out seeds [1000, 1001, 1002]" in capsys.readouterr().err and not out.exists()


def test_mixed_schedules_are_drawn_from_the_menu_reproducibly():
    a = MixedPeriodPolicy.draw("m", (1, 2, 0), np.random.default_rng(3))
    b = MixedPeriodPolicy.draw("m", (1, 2, 0), np.random.default_rng(3))
    assert (a.edge, a.cloud, a.pairs, a.route) == (b.edge, b.cloud, b.pairs, b.route)
    assert set(a.edge.values()) | set(a.cloud.values()) <= {1, 2, 0}


def test_a_seeds_random_episodes_play_different_actions():
    """--random-episodes N gives N different episodes per seed (they replayed the first), the
    first one as `random` plays it."""
    from hffm_env.baselines.calibrate import design
    from hffm_env.baselines.policies import make_policy
    from hffm_env.testing import make_tiny_env

    env = make_tiny_env()
    env.reset(seed=3)
    firsts = []
    for policy in [make_policy("random"), *(f() for f in design((1, 2, 0), 0, random_episodes=3,
                                                               policies=()))]:
        assert policy.name == "random"
        policy.reset(env, 3)
        firsts.append(tuple(policy.act(None, {})))
    assert firsts[0] == firsts[1] and len(set(firsts[1:])) == 3
    env.close()


@pytest.fixture(scope="module")
def trained(calibrated, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "agent"
    code = train_agent.main([
        "--scenario", "small", "--fidelity", "surrogate", "--surrogate", str(calibrated),
        "--total-timesteps", "24", "--n-steps", "12", "--batch-size", "12",
        "--finetune-timesteps", "12", "--out", str(out), "--eval-seeds", "1000",
        "--eval-policies", "never", "--no-progress", "--overrides", *OVERRIDES,
    ])
    assert code == 0
    return out


@pytest.mark.slow
def test_training_on_the_surrogate_fine_tunes_and_is_judged_on_real_training(trained):
    out = trained
    results = json.loads((out / "results.json").read_text())
    assert results["fidelity"] == "train"  # judged on real training
    agent = json.loads((out / "agent.json").read_text())
    assert agent["num_timesteps"] >= 36  # 24 on the surrogate + 12 fine-tuning
    # the learning curve names each episode's fidelity: the surrogate's, then real training's
    phases = [line.split(",")[1] for line in
              (out / "learning_curve.csv").read_text().splitlines()[1:]]
    assert phases[0] == "surrogate" and phases[-1] == "train"
    assert phases == sorted(phases)  # no surrogate episode after a real one


@pytest.mark.slow
def test_a_trained_agent_joins_the_calibration_design(trained, tmp_path):
    out = tmp_path / "refit.pt"
    code = cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "1",
                     "--policies", "never", "--mixed", "0", "--random-episodes", "0",
                     "--agent", str(trained), "--out", str(out), "--no-progress"])
    assert code == 0 and out.exists()
    episodes = read_traces(out.with_suffix(".traces.json"))
    assert [(e["policy"], e["seed"]) for e in episodes] == [("never", 1), ("agent:agent", 1)]
    agent_rounds = episodes[1]["rounds"][1:]
    assert len(agent_rounds) == 3 and all(r.tiers is not None for r in agent_rounds)


@pytest.mark.slow
def test_the_cloud_every_round_family_joins_the_calibration_design(tmp_path):
    out = tmp_path / "refit.pt"
    code = cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "2",
                     "--policies", "--mixed", "0", "--random-episodes", "0",
                     "--cloud-every-round", "--out", str(out), "--no-progress"])
    assert code == 0 and out.exists()
    episodes = {e["policy"]: e["rounds"] for e in read_traces(out.with_suffix(".traces.json"))}
    assert list(episodes) == ["hffm-d2d-e1", "hffm-d2d-e1-moe2", "hffm-d2d-e1-moe4",
                              "hffm-d2d-e1-moe8", "hffm-d2d-e1-moenever"]
    assert [r.tiers["moe"] for r in episodes["hffm-d2d-e1-moe2"][1:]] == ["edge", "cloud",
                                                                        "edge"]
    assert {r.tiers["head"] for r in episodes["hffm-d2d-e1-moenever"][1:]} == {"cloud"}


@pytest.mark.slow
def test_a_round_plan_joins_the_calibration_design(tmp_path):
    """``--plan``: the plan's real rounds are recorded with the tiers it names, round by round."""
    import json

    from hffm_env.baselines.plan import RoundPlan
    from hffm_env.fl.schedule import Tier

    plan = RoundPlan.constant(3).with_tier(0, "moe", Tier.EDGE).with_tier(1, "encoder", Tier.NONE)
    plan_file = tmp_path / "cheap.json"
    plan_file.write_text(json.dumps({"plan": plan.to_dict()}))
    out = tmp_path / "refit.pt"
    code = cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "2",
                     "--policies", "--mixed", "0", "--random-episodes", "0",
                     "--plan", str(plan_file), "--out", str(out), "--no-progress"])
    assert code == 0 and out.exists()
    (episode,) = read_traces(out.with_suffix(".traces.json"))
    assert episode["policy"] == "plan:cheap"
    rounds = episode["rounds"][1:]
    assert [r.tiers["moe"] for r in rounds] == ["edge", "cloud", "cloud"]
    assert [r.tiers["encoder"] for r in rounds] == ["cloud", "none", "cloud"]


def test_calibration_names_a_bad_agent_and_a_contradiction(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert cli_main(["calibrate", "--scenario", "small", "--agent", missing]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--agent", missing,
                     "--from-traces", missing]) == 2
    assert "--from-traces" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--cloud-every-round",
                     "--from-traces", missing]) == 2
    assert "--cloud-every-round shapes the real episodes" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--plan", missing]) == 2
    assert "--plan: plan" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--plan", missing,
                     "--from-traces", missing]) == 2
    assert "--plan shapes the real episodes" in capsys.readouterr().err
    # flags of the design are ignored by a refit, and what would count twice is refused
    recorded = tmp_path / "recorded.json"
    recorded.write_text("[]")
    for argv, message in ((["--seeds", "5"], "--seeds shapes the real episodes"),
                          (["--mixed", "3"], "--mixed shapes"),
                          (["--policies", "star"], "--policies shapes"),
                          ([str(recorded)], f"names '{recorded}' twice")):
        assert cli_main(["calibrate", "--scenario", "small", "--from-traces", str(recorded),
                         *argv]) == 2
        assert message in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--seeds", "0", "0"]) == 2
    assert "--seeds has 0 twice" in capsys.readouterr().err
    # the recorded traces are never overwritten by the fit, nor --traces ignored
    traces = str(tmp_path / "t.json")
    assert cli_main(["calibrate", "--scenario", "small", "--from-traces", traces,
                     "--out", traces]) == 2
    assert "the fitted surrogate would overwrite the traces" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--traces", traces,
                     "--out", traces]) == 2
    assert "would overwrite the traces" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--from-traces", traces,
                     "--traces", str(tmp_path / "u.json")]) == 2
    assert "--from-traces plays none: pass one of them" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--exclude-seeds", "3"]) == 2
    assert "--exclude-seeds" in capsys.readouterr().err


def test_a_refit_leaves_out_seeds_and_says_so(calibrated, tmp_path, capsys):
    traces = str(calibrated.with_suffix(".traces.json"))
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--from-traces", traces,
                     "--exclude-seeds", "0"]) == 2  # the only seed: nothing left to fit
    assert "--exclude-seeds [0] leaves no episode" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--from-traces", traces,
                     "--exclude-seeds", "7"]) == 2  # a typo left everything in
    assert "--exclude-seeds 7: no episode of the traces has that seed (they hold seeds [0])" \
        in capsys.readouterr().err


def test_the_design_seed_draws_other_mixed_schedules(tmp_path, capsys, monkeypatch):
    """Every calibration drew its mixed schedules with seed 0: more runs added seeds of the
    same schedules, never others."""
    import hffm_env.baselines.calibrate as calibration

    drawn = []
    design = calibration.design
    monkeypatch.setattr(calibration, "design",
                        lambda *a, **k: drawn.append(k["seed"]) or design(*a, **k))
    out = tmp_path / "s.pt"
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "0",
                     "--policies", "never", "--mixed", "1", "--random-episodes", "0",
                     "--design-seed", "7", "--out", str(out), "--no-progress"]) == 0
    assert drawn == [7] and AccuracySurrogate.load(out).meta["design_seed"] == 7
    tiers = [r.tiers for e in read_traces(out.with_suffix(".traces.json"))
             if e["policy"] == "mixed-0" for r in e["rounds"][1:]]
    other = [design((1, 2, 0), 1, seed=s)[-1]() for s in (0, 7)]
    assert (other[0].edge, other[0].cloud) != (other[1].edge, other[1].cloud) and tiers
    # a refit plays nothing: the flag is refused there
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--from-traces",
                     str(out.with_suffix(".traces.json")), "--design-seed", "7"]) == 2
    assert "--design-seed shapes the real episodes" in capsys.readouterr().err


def test_the_held_out_design_seed_is_noted(capsys, monkeypatch):
    # --design-seed 1 fitted the schedules surrogate_error.py holds out, without a word
    import hffm_env.baselines.calibrate as calibration

    def stop(*args, **kwargs):
        raise ValueError("stopped before training")

    monkeypatch.setattr(calibration, "calibrate", stop)
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "0",
                     "--design-seed", str(calibration.HELD_OUT_DESIGN_SEED),
                     "--no-progress", "--out", "/tmp/never-written.pt"]) == 2
    assert "draws the mixed schedules benchmarks/surrogate_error.py holds out" in (
        capsys.readouterr().err)


def test_calibration_refuses_an_empty_design(capsys):
    assert cli_main(["calibrate", "--scenario", "small", "--policies", "--mixed", "0",
                     "--random-episodes", "0"]) == 2
    assert "design is empty" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", "--random-episodes", "-1"]) == 2
    assert "--random-episodes: -1: must be an integer >= 0" in capsys.readouterr().err


def test_a_refit_into_the_cache_says_it_now_serves_and_bench_names_the_fit(
        calibrated, fresh_cache, tmp_path, capsys):
    """A fit written to the cache silently replaced the one later surrogate runs used."""
    traces = str(calibrated.with_suffix(".traces.json"))
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--from-traces",
                     traces]) == 0
    out = capsys.readouterr().out
    assert "now uses this fit (before: none)" in out and "delete the file" in out
    assert cli_main(["bench", "--scenario", "small", *SETTINGS, "--fidelity", "surrogate",
                     "--policies", "never", "--seeds", "1000", "--no-progress"]) == 0
    assert f"accuracy predicted by the fit in {fresh_cache}" in capsys.readouterr().err
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--from-traces", traces,
                     "--out", str(tmp_path / "elsewhere.pt")]) == 0
    assert "--surrogate " in capsys.readouterr().out  # how to use a fit kept elsewhere


def test_calibrate_refuses_to_overwrite_named_files_without_force(tmp_path, capsys):
    """--out FILE replaced an earlier fit and its traces without a word."""
    fit = tmp_path / "s.pt"
    fit.write_bytes(b"earlier fit")
    argv = ["calibrate", "--scenario", "small", "--seeds", "0", "--policies", "never",
            "--mixed", "0", "--random-episodes", "0"]
    assert cli_main([*argv, "--out", str(fit)]) == 2
    assert "--out" in capsys.readouterr().err and fit.read_bytes() == b"earlier fit"
    traces = tmp_path / "s.traces.json"
    traces.write_text("[]")
    assert cli_main([*argv, "--out", str(tmp_path / "t.pt"), "--traces", str(traces)]) == 2
    assert "--traces" in capsys.readouterr().err and traces.read_text() == "[]"
    fit.unlink()
    assert cli_main([*argv, "--out", str(fit)]) == 2  # the traces next to it
    assert "written next to --out" in capsys.readouterr().err


def test_calibrate_refits_the_caches_fit_without_force(tmp_path, monkeypatch, capsys):
    """--traces alone was refused because the cache's fit (no --out given) existed."""
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import surrogate_path

    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path / "cache"))
    cached = surrogate_path(load_scenario("small"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"an earlier fit")
    import hffm_env.baselines.calibrate as design

    monkeypatch.setattr(design, "calibrate", lambda *a, **k: pytest.fail("checked past here"))
    with pytest.raises(BaseException, match="checked past here"):
        cli_main(["calibrate", "--scenario", "small", "--seeds", "0", "--policies", "never",
                  "--mixed", "0", "--random-episodes", "0",
                  "--traces", str(tmp_path / "new.json.gz")])
    assert "exists" not in capsys.readouterr().err


def test_an_interrupted_calibration_says_what_it_kept_and_leaves_the_cache_whole(
        fresh_cache, tmp_path, monkeypatch, capsys):
    """Ctrl-C said only "interrupted", and a rerun into the cache truncated the traces that
    belong to the fit beside them."""
    from hffm_env.baselines import calibrate as design
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import surrogate_path

    real = design.trace_episode
    played = []

    def stopped_at_the_second(env, policy, seed):
        if played:
            raise KeyboardInterrupt
        played.append(policy.name)
        return real(env, policy, seed)

    monkeypatch.setattr(design, "trace_episode", stopped_at_the_second)
    traces = surrogate_path(load_scenario("small", overrides=OVERRIDES)).with_suffix(
        ".traces.json")
    traces.write_text("the traces of the fit beside them")
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "0",
                     "--policies", "never", "star", "--mixed", "0", "--random-episodes", "0",
                     "--no-progress"]) == 130
    partial = traces.with_name(traces.name.removesuffix(".json") + ".partial.json")
    # with the settings the traces were recorded with (traces are keyed by config: without
    # them the suggested command was refused as traces of another config)
    import shlex

    settings = " ".join(f"--set {shlex.quote(o)}" for o in OVERRIDES)
    assert f"interrupted; 1 of 2 episodes are in {partial}: fit them with `hffm calibrate " \
        f"--scenario small {settings} --from-traces {partial} --out FILE`" \
        in capsys.readouterr().err
    assert traces.read_text() == "the traces of the fit beside them"
    assert [e["policy"] for e in read_traces(partial)] == ["never"]
    # a finished run (--force: over the interrupted one's episodes) puts its traces beside
    # its fit
    monkeypatch.setattr(design, "trace_episode", real)
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "0",
                     "--policies", "never", "--mixed", "0", "--random-episodes", "0",
                     "--force", "--no-progress"]) == 0
    assert [e["policy"] for e in read_traces(traces)] == ["never"] and not partial.exists()
    # a named fit too: its traces stay those of the fit until a run finishes, and an
    # interruption before this run's first episode keeps nothing (a stale .partial is gone)
    fit = tmp_path / "fit.pt"
    fit.write_text("the old fit")
    named = fit.with_suffix(".traces.json")
    named.write_text("the old fit's traces")
    stale = named.with_name("fit.traces.partial.json")
    stale.write_text("an earlier interrupted run's")
    played.append("stop at once")
    other = tmp_path / "other.traces.json"
    other.with_name("other.traces.partial.json").write_text("an interrupted run's")
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "0",
                     "--policies", "never", "--mixed", "0", "--random-episodes", "0",
                     "--out", str(tmp_path / "elsewhere.pt"), "--traces", str(other),
                     "--no-progress"]) == 2  # an interrupted run's episodes: not without --force
    assert "the episodes of an unfinished calibration" in capsys.readouterr().err
    assert other.with_name("other.traces.partial.json").read_text() == "an interrupted run's"
    monkeypatch.setattr(design, "trace_episode", stopped_at_the_second)
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--seeds", "0",
                     "--policies", "never", "--mixed", "0", "--random-episodes", "0",
                     "--out", str(fit), "--force", "--no-progress"]) == 130
    # (it said "0 of 1 episodes are in" a file that did not exist)
    assert "interrupted before its first episode ended; nothing was kept" in \
        capsys.readouterr().err
    assert named.read_text() == "the old fit's traces" and not stale.exists()


def test_a_refit_refuses_an_episode_given_twice_and_traces_are_written_whole(
        calibrated, tmp_path, capsys, monkeypatch):
    """The same traces in two files were fitted twice (double weight, and in the noise); and
    a Ctrl-C while the traces were written could leave them cut."""
    import shutil

    from hffm_env.baselines import calibrate as design

    traces = calibrated.with_suffix(".traces.json")
    copy = tmp_path / "copy.traces.json"
    shutil.copy(traces, copy)
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--from-traces",
                     str(traces), str(copy), "--out", str(tmp_path / "twice.pt")]) == 2
    assert f"is in {traces} and {copy} (a copy?)" in capsys.readouterr().err
    # written whole or not at all: a failure while writing leaves the earlier file as it was
    episodes, before = read_traces(traces), traces.read_bytes()
    # ... and they say which code recorded them
    assert json.loads(before)["provenance"]["libraries"]["torch"]

    def cut(*args, **kwargs):
        raise KeyboardInterrupt

    import os

    monkeypatch.setattr(os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        design.write_traces(traces, episodes[:1], "key")
    assert traces.read_bytes() == before
    assert not list(traces.parent.glob(f".{traces.name}.*.tmp"))  # nor half a file beside it


def test_bench_names_the_flag_of_a_missing_surrogate_file(tmp_path, capsys):
    assert cli_main(["bench", "--scenario", "small", "--fidelity", "surrogate", "--surrogate",
                     str(tmp_path / "nope.pt"), "--policies", "never"]) == 2
    assert "hffm bench: error: --surrogate: " in capsys.readouterr().err


def test_calibrate_notes_a_plan_searched_on_other_settings(tmp_path, capsys):
    """bench noted a plan or agent made on other settings; calibrate played them silently."""
    searched = Path(__file__).resolve().parents[1] / "docs/results/plan_search_small4.json"
    fit = tmp_path / "fit.pt"
    # an interrupted run's episodes stop it after the policies are read, before any training
    fit.with_name("fit.traces.partial.json").write_text("[]")
    argv = ["calibrate", "--scenario", "small", "--seeds", "0", "--policies", "",
            "--mixed", "0", "--random-episodes", "0", "--plan", str(searched),
            "--out", str(fit)]
    assert cli_main(argv) == 2
    assert "note:" not in capsys.readouterr().err
    assert cli_main([*argv, "--set", "fl.local_steps=2"]) == 2
    assert ("hffm calibrate: note: plan:plan_search_small4 was searched with "
            "fl.local_steps=4 (here 2)" in capsys.readouterr().err)


def test_a_second_calibration_of_the_same_traces_is_refused_while_the_first_runs(tmp_path,
                                                                                 capsys):
    """Two runs of one config wrote one .partial file: the second lost minutes of training to
    a 'No such file' error (and could have mixed the episodes of both)."""
    import fcntl

    fit = tmp_path / "fit.pt"
    traces = fit.with_suffix(".traces.json")
    argv = ["calibrate", "--scenario", "small", "--seeds", "0", "--policies", "never",
            "--mixed", "0", "--random-episodes", "0", "--out", str(fit)]
    with open(traces.with_name(f".{traces.name}.lock"), "a") as running:  # the first run
        fcntl.flock(running, fcntl.LOCK_EX)
        assert cli_main(argv) == 2
    assert f"another hffm calibrate is writing {traces} now" in capsys.readouterr().err
    # the lock goes with the run: once it ended, the next run gets as far as the next check
    _partial = traces.with_name("fit.traces.partial.json")
    _partial.write_text("[]")
    assert cli_main(argv) == 2
    assert "the episodes of an unfinished calibration" in capsys.readouterr().err


def test_calibrate_refuses_a_baseline_off_the_period_menu_before_training(tmp_path, capsys):
    argv = ["calibrate", "--scenario", "small", "--seeds", "0", "--policies", "never,hffm-e8",
            "--mixed", "0", "--random-episodes", "0", "--out", str(tmp_path / "fit.pt"),
            "--set", "env.period_menu=[1,2,4,0]"]
    assert cli_main(argv) == 2
    assert "--policies has 'hffm-e8': it plays period 8" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def test_a_fit_is_saved_under_its_lock_and_clears_a_killed_saves_leftovers(
        calibrated, tmp_path, capsys, monkeypatch):
    """A save killed mid-write left a hidden ``.<fit>.<random>.tmp`` beside the fit for good;
    two calibrations saving one fit at once raced on it."""
    import fcntl

    import hffm_env.cli as cli

    traces = str(calibrated.with_suffix(".traces.json"))
    fit = tmp_path / "fit.pt"
    leftover = tmp_path / ".fit.pt.k1ll3d.tmp"  # a killed save's temporary file
    leftover.write_bytes(b"half a surrogate")
    argv = ["calibrate", "--scenario", "small", *SETTINGS, "--from-traces", traces,
            "--out", str(fit)]
    with open(tmp_path / ".fit.pt.lock", "a") as saving:  # another calibration's save ...
        fcntl.flock(saving, fcntl.LOCK_EX)
        real_lock = cli.lock_file

        def ends_once_waited_for(path, **kwargs):
            def on_busy():
                kwargs["on_busy"]()
                saving.close()  # ... which ends while this one waits

            return real_lock(path, **{**kwargs, "on_busy": on_busy})

        monkeypatch.setattr(cli, "lock_file", ends_once_waited_for)
        assert cli_main(argv) == 0  # it waited for that save, not threw its own fit away
    assert f"waiting for another process that is saving {fit}" in capsys.readouterr().err
    assert fit.is_file() and not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.pt"]  # nor the lock file


def test_calibrate_closes_its_env_when_it_fails():
    # the env (a real-training one holds the model) was closed on success only
    from hffm_env.baselines.calibrate import calibrate

    closed = []
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=list(TINY_OVERRIDES))
    close = env.close
    env.close = lambda: (closed.append(True), close())
    with pytest.raises(ValueError, match="calibrate needs a train-fidelity env, got 'cost'"):
        calibrate(lambda: env, seeds=[0], progress=False)
    assert closed == [True]


@pytest.mark.parametrize(("edit", "named"), [
    (lambda r: r.update(tiers={"encoder": "ZZZ"}), "episode 0, round 1: tiers['encoder'] = 'ZZZ'"),
    (lambda r: r.update(tiers="edge"), "tiers = 'edge': must be null or a mapping"),
    (lambda r: r.update(tiers={"decoder": "edge"}), "module type 'decoder'"),
    (lambda r: r.update(available_fraction=3.0), "available_fraction = 3.0"),
    (lambda r: r["targets"].update({"accuracy/vqa": float("inf")}),
     "targets['accuracy/vqa'] = inf: must be null or a number in 0..1"),
    (lambda r: r["targets"].update({"accuracy/vqa": 1e30}), "in 0..1"),
    (lambda r: r["targets"].update({"loss/vqa": -1.0}), "in 0..1e+09"),
    (lambda r: r["targets"].update({"loss/vqa": 10**400}), "in 0..1e+09"),  # (overflowed)
    # finite, but its square overflows float32: the fit was written, then did not load
    (lambda r: r["targets"].update({"loss/vqa": 1e20}), "targets['loss/vqa'] = 1e+20: must "
                                                       "be null or a number in 0..1e+09"),
])
def test_traces_a_fit_could_not_learn_from_are_refused_by_place(tmp_path, edit, named):
    """A trace file with a bad tier crashed deep in the fit (KeyError), and an infinite or
    impossible accuracy was fitted without a word."""
    import gzip

    source = (Path(__file__).resolve().parents[1] / "docs/results/surrogate"
              / "plan_small_seeds18-20.json.gz")
    data = json.loads(gzip.decompress(source.read_bytes()))
    edit(data["episodes"][0]["rounds"][1])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a traces file of episodes of rounds") as refused:
        read_traces(bad)
    assert named in str(refused.value)


@pytest.mark.parametrize(("edit", "named"), [
    # a task's accuracy left out of the first round: the fit took its tasks from there, left
    # the task out, and replaced the cache's working fit with one no env could use
    (lambda e: e["rounds"][0]["targets"].pop("accuracy/vqa"),
     "episode 0, round 0: the global accuracy of tasks ['count', 'scene']: this config runs"),
    (lambda e: e["rounds"][0]["targets"].update({"accuracy/zzz": 0.5}), "tasks ['count', "),
    (lambda e: e.pop("policy"), "episode 0: policy = 'missing': must be the name"),
    (lambda e: e.update(policy=5), "episode 0: policy = 5: must be the name"),
    (lambda e: e.update(rounds=e["rounds"][:1]), "episode 0: 1 rounds: an episode holds its "
                                                 "reset round and at least one played round"),
    # accepted before: every later round's features shifted by one, a type read as none, a
    # misspelt target ignored
    (lambda e: e["rounds"][4].update(tiers=None), "episode 0, round 4: tiers = null only in "
                                                  "round 0 (the state at reset); here a null"),
    (lambda e: e.update(rounds=e["rounds"][1:]), "episode 0, round 0: tiers = null only in "
                                                 "round 0"),
    (lambda e: e["rounds"][2]["tiers"].pop("moe"), "episode 0, round 2: tiers: no tier of "
                                                   "['moe']"),
    (lambda e: e["rounds"][1]["targets"].update({"acuracy_local/vqa": 0.5}),
     "episode 0, round 1: targets ['acuracy_local/vqa']: not the surrogate's"),
])
def test_traces_of_other_tasks_no_policy_or_no_round_are_refused_by_place(tmp_path, edit, named):
    import gzip

    from hffm_env.config import small

    source = (Path(__file__).resolve().parents[1] / "docs/results/surrogate"
              / "plan_small_seeds18-20.json.gz")
    data = json.loads(gzip.decompress(source.read_bytes()))
    edit(data["episodes"][0])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a traces file of episodes of rounds") as refused:
        read_traces(bad, tasks=small().data.tasks)
    assert named in str(refused.value)


def test_a_plan_or_agent_named_twice_is_refused_before_playing(tmp_path, capsys):
    """--plan P --plan P played the plan twice a seed and fitted it twice."""
    plan = Path(__file__).resolve().parents[1] / "docs/results/plan_search_small4.json"
    assert cli_main(["calibrate", "--scenario", "small", "--plan", str(plan), "--plan",
                     str(plan), "--out", str(tmp_path / "fit.pt")]) == 2
    assert f"--plan names {str(plan)!r} twice" in capsys.readouterr().err
    assert not (tmp_path / "fit.pt").exists()


def _mislabelled_mixed_episode(env, seed: int = 4):
    """A ``mixed-*`` design schedule with a pair flag (no partners: no pair forms) played in
    ``env``, and its rounds relabelled as traces recorded before 2026-12-07 were: every flagged
    module type not aggregated above is ``d2d_pairs``. Returns the episode, its true tiers
    and how many were mislabelled."""
    from hffm_env.baselines.calibrate import design, trace_episode

    menu = env.unwrapped.config.env.period_menu
    flagged = next(p for p in (f() for f in design(menu, 8, random_episodes=0, policies=()))
                   if any(p.pairs.values()))
    rounds = trace_episode(env, flagged, seed)
    truth = [dict(r.tiers) for r in rounds[1:]]
    mislabelled = 0
    for r in rounds[1:]:
        for m, on in flagged.pairs.items():
            if on and r.tiers[m] == "none":
                r.tiers[m], mislabelled = "d2d_pairs", mislabelled + 1
    return {"policy": flagged.name, "seed": seed, "rounds": rounds}, truth, mislabelled


def test_gossip_rounds_without_a_pair_are_relabelled_by_replaying_the_schedule():
    """Until 2026-12-07 a pair flag with no partner was recorded as D2D gossip; the shipped
    fit learned gossip from rounds in which nothing moved. A replay relabels exactly those
    tiers, leaves formed pairs and other episodes alone, and refuses an episode it cannot
    reproduce."""
    from hffm_env.baselines.calibrate import relabel_unformed_pairs, trace_episode
    from hffm_env.baselines.policies import make_policy
    from hffm_env.fl.surrogate import RoundTrace
    from hffm_env.testing import make_tiny_env

    env = make_tiny_env(extra=["env.episode_rounds=6"])
    episode, truth, mislabelled = _mislabelled_mixed_episode(env)
    assert mislabelled > 0
    other = {"policy": "random", "seed": 4, "rounds": trace_episode(env, make_policy("random"), 4)}
    before = [dict(r.tiers) for r in other["rounds"][1:]]
    assert relabel_unformed_pairs([episode, other], env) == {episode["policy"]: mislabelled}
    assert [r.tiers for r in episode["rounds"][1:]] == truth
    assert len(episode["relabelled_pairs"]) == mislabelled and "relabelled_pairs" not in other
    assert [r.tiers for r in other["rounds"][1:]] == before
    assert relabel_unformed_pairs([episode, other], env) == {}  # a rerun changes nothing

    # the k-th random episode of a seed replays as _NthRandom(k), whichever hold gossip
    from hffm_env.baselines.calibrate import design as drawn

    second = next(f for f in drawn((1, 2, 4, 8, 0), 0, random_episodes=2, policies=())
                  if f().k == 1)()
    later = {"policy": "random", "seed": 4, "rounds": trace_episode(env, second, 4)}
    # the seed's first random episode holds no gossip (not replayed), its second does: the
    # second is k = 1 all the same (counted over every episode, not those replayed)
    first = {**other, "rounds": [RoundTrace(r.tiers and {m: "none" if t == "d2d_pairs" else t
                                                          for m, t in r.tiers.items()},
                                            r.available_fraction, r.targets)
                                 for r in other["rounds"]]}
    assert any("d2d_pairs" in r.tiers.values() for r in later["rounds"][1:])
    assert relabel_unformed_pairs([first, later], env) == {}

    tampered, _, _ = _mislabelled_mixed_episode(env)
    last = tampered["rounds"][-1].tiers
    last["encoder"] = "edge" if last["encoder"] != "edge" else "cloud"
    untouched, _, _ = _mislabelled_mixed_episode(env)
    with pytest.raises(ValueError, match=rf"episode of '{tampered['policy']}' on seed 4: no "
                                         "policy of the design"):
        relabel_unformed_pairs([untouched, tampered], env)
    assert "relabelled_pairs" not in untouched  # a refusal changes nothing
    moved, _, _ = _mislabelled_mixed_episode(env)
    moved["rounds"][1].available_fraction = 0.5  # not this seed's network
    with pytest.raises(ValueError, match="replays its tiers and availability"):
        relabel_unformed_pairs([moved], env)
    agent = {**untouched, "policy": "agent:mine"}
    with pytest.raises(ValueError, match="'agent:mine' on seed 4: not a policy of the "
                                         "calibration design"):
        relabel_unformed_pairs([agent], env)
    env.close()


def test_the_committed_traces_hold_no_gossip_round_without_a_pair():
    """The calibration and held-out traces were relabelled (benchmarks/relabel_traces.py): a
    ``mixed-*`` schedule chooses no partners, so none of its rounds is D2D gossip. (The
    three-cluster layout's, in small-3-clusters/, are kept as its agents were trained on
    them: docs/experiment_log.md.)"""
    folder = Path(__file__).resolve().parents[1] / "docs/results/surrogate"
    relabelled = 0
    for path in sorted(folder.glob("*.json.gz")):
        for e in read_traces(path):
            if e["policy"].startswith("mixed-"):
                assert not any("d2d_pairs" in r.tiers.values() for r in e["rounds"][1:]), path
            relabelled += len(e.get("relabelled_pairs", []))
    assert relabelled == 578  # 416 tiers of 280 calibration rounds, 162 of 114 held-out ones


def test_relabel_traces_rewrites_a_file_only_when_it_relabels(benchmark_script, tmp_path,
                                                              capsys, monkeypatch):
    import hffm_env.baselines.calibrate as calibrate
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import traces_key
    from hffm_env.testing import make_tiny_env

    script = benchmark_script("relabel_traces")
    settings = [*SETTINGS, "--set", "env.episode_rounds=6"]
    env = make_tiny_env(extra=["env.episode_rounds=6"])
    episode, truth, mislabelled = _mislabelled_mixed_episode(env)
    env.close()
    key = traces_key(load_scenario("small", overrides=[*OVERRIDES, "env.episode_rounds=6"]))
    path, held_out = tmp_path / "t.json.gz", tmp_path / "h.json.gz"
    calibrate.write_traces(path, [episode], key)
    recorded = calibrate.traces_provenance(path)
    calibrate.write_traces(held_out, [episode], key)  # (the calibration design's schedule)
    written, write = [], calibrate.write_traces
    monkeypatch.setattr(calibrate, "write_traces",
                        lambda p, *a, **k: written.append(p) or write(p, *a, **k))
    # one that cannot be relabelled (the held-out design has no such mixed schedule): none
    # is written
    with pytest.raises(SystemExit):
        script.main(["--scenario", "small", *settings, str(path), "--held-out", str(held_out)])
    assert f"{held_out}: episode of '{episode['policy']}'" in capsys.readouterr().err
    assert written == []
    assert script.main(["--scenario", "small", *settings, str(path)]) == 0
    assert f"{mislabelled} tiers relabelled d2d_pairs -> none; {episode['policy']}" in \
        capsys.readouterr().out
    (read,) = calibrate.read_traces(path)
    assert [r.tiers for r in read["rounds"][1:]] == truth
    assert written == [str(path)]
    history = calibrate.traces_provenance(path)  # the recording's, then the relabelling's
    assert history[:-1] == recorded and len(history) == 2
    assert script.main(["--scenario", "small", *settings, str(path)]) == 0
    assert written == [str(path)]  # nothing to relabel: not rewritten
    with pytest.raises(SystemExit):  # traces of another config
        script.main(["--scenario", "small", *SETTINGS, str(path)])
    assert "traces of another config" in capsys.readouterr().err


def test_a_config_without_held_out_data_calibrates_and_predicts_nan_there(tmp_path):
    """``data.held_out_samples=0`` (allowed: no held-out cluster data) measured no held-out
    accuracy, and the fit refused the targets it never saw, after all the training; the fit
    now predicts NaN for them, as train fidelity reports them."""
    from hffm_env.baselines.calibrate import calibrate
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import AccuracySurrogate

    config = load_scenario("small", overrides=[*OVERRIDES, "data.held_out_samples=0"])
    surrogate, _ = calibrate(lambda: gym.make("hffm/HFFM-v0", scenario=config,
                                              fidelity="train"),
                             seeds=(0,), mixed=0, random_episodes=0,
                             policies=("never", "star"), progress=False)
    assert surrogate.meta["never_measured"] == [f"accuracy_held_out/{t}" for t in surrogate.tasks]
    surrogate.save(tmp_path / "fit.pt")
    loaded = AccuracySurrogate.load(tmp_path / "fit.pt")
    env = gym.make("hffm/HFFM-v0", scenario=config, fidelity="surrogate",
                   surrogate=str(tmp_path / "fit.pt"))
    env.reset(seed=1)
    _, _, _, _, info = env.step(env.action_space.sample())
    # not measured, as in train fidelity: NaN in the round's result, 0 in info
    held_out = list(env.unwrapped.last_result.accuracy_held_out.values())
    assert held_out and all(np.isnan(v) for v in held_out)
    assert set(info["accuracy_held_out"].values()) == {0.0}
    assert 0 < info["accuracy"]["mean"] <= 1
    assert np.isnan(loaded.predict_features(np.zeros((1, len(loaded.x_mean))))[0][
        loaded.targets.index(f"accuracy_held_out/{loaded.tasks[0]}")])
    env.close()
    with pytest.raises(ValueError, match="no episodes to fit"):
        AccuracySurrogate.fit([], surrogate.tasks, 3)


def test_a_refit_beside_an_earlier_calibrations_traces_says_they_are_not_its_own(
        calibrated, tmp_path, capsys):
    """A --from-traces refit over a fit left that fit's traces file beside it, where the
    calibration's own traces always lie."""
    out = tmp_path / "fit.pt"
    out.with_suffix(".traces.json").write_text("an earlier calibration's")
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--from-traces",
                     str(calibrated.with_suffix(".traces.json")), "--out", str(out)]) == 0
    assert "holds an earlier calibration's traces, not the ones this fit was made from" in \
        capsys.readouterr().err
    own = tmp_path / "own.pt"  # a refit from the very traces beside it: nothing to say
    own.with_suffix(".traces.json").write_bytes(calibrated.with_suffix(".traces.json")
                                                .read_bytes())
    assert cli_main(["calibrate", "--scenario", "small", *SETTINGS, "--from-traces",
                     str(own.with_suffix(".traces.json")), "--out", str(own)]) == 0
    assert "earlier calibration's traces" not in capsys.readouterr().err
