"""Baselines, the benchmark runner and the `hffm bench` command."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import hffm_env  # noqa: F401
from hffm_env.baselines.policies import (
    PAPER_SCHEDULES,
    AdaptivePolicy,
    FixedGridPolicy,
    ModuleAwarePolicy,
    PeriodicPolicy,
    Policy,
    make_policy,
    policy_family,
    policy_names,
)
from hffm_env.baselines.runner import (
    BenchResult,
    EpisodeRecord,
    best_baseline,
    format_paired,
    format_table,
    paired_energy_to_target,
    plot_tradeoffs,
    run_benchmark,
    run_episode,
    summarise,
    verdict,
)
from hffm_env.cli import main as hffm_main
from hffm_env.config import MODULE_TYPES
from hffm_env.fl.schedule import Route
from hffm_env.testing import TINY_OVERRIDES, make_tiny_env
from hffm_env.wrappers import NEVER

TINY = list(TINY_OVERRIDES)
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def _env(fidelity="cost", extra=(), **kwargs):
    return make_tiny_env("small", fidelity, extra, **kwargs)


class _CheckingPolicy:
    """Wraps a policy and checks every action against the space and the masks."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.actions = 0

    def __getattr__(self, name):  # fitted_for and fit of a policy that needs fitting
        return getattr(self.inner, name)

    def reset(self, env, seed=None):
        self.env = env
        self.inner.reset(env, seed)

    def act(self, obs, info):
        action = self.inner.act(obs, info)
        assert self.env.action_space.contains(np.asarray(action, dtype=np.int64))
        self.actions += 1
        return action


@pytest.mark.parametrize("name", policy_names())
def test_every_baseline_runs_an_episode_with_valid_actions(name):
    env = _env(extra=["fl.task_arrival_prob=0.5", "dynamics.dropout_prob=0.1"])
    policy = _CheckingPolicy(make_policy(name))
    assert isinstance(policy.inner, Policy)
    record = run_episode(env, policy, seed=3)
    assert record.rounds == 4 == policy.actions
    assert all(lat > 0 for lat in record.latency_s)


def test_random_policy_is_reproducible_without_a_seed():
    """reset(env, seed=None) goes on from the policy's own stream (seed 0 at construction),
    never from the operating system's entropy."""
    env = _env()
    env.reset(seed=1)
    played = []
    for _ in range(2):
        policy = make_policy("random")
        policy.reset(env)
        played.append([policy.act(None, {}) for _ in range(3)])
    np.testing.assert_array_equal(played[0], played[1])
    assert not np.array_equal(played[0][0], played[0][1])  # it does go on
    env.close()


def test_every_baseline_acts_when_a_whole_cluster_has_dropped_out():
    # a cluster with nobody available has no head (-1); the full action still encodes it
    env = _env(extra=["dynamics.dropout_prob=0.9", "env.episode_rounds=6"])
    headless_rounds = 0
    for name in policy_names():
        policy = _CheckingPolicy(make_policy(name))
        act = policy.act

        def counting_act(obs, info, act=act):
            nonlocal headless_rounds
            headless_rounds += int((env.unwrapped.network.heads < 0).any())
            return act(obs, info)

        policy.act = counting_act
        assert run_episode(env, policy, seed=1).rounds == 6
    assert headless_rounds > 0


def test_a_head_outside_its_cluster_is_refused_by_name():
    layout = _env().unwrapped.layout
    heads = [int(m[0]) for m in layout.cluster_members]
    heads[1] = heads[0]
    with pytest.raises(ValueError, match=r"heads\[1\] = .*not a device of cluster 1"):
        layout.encode(1, 2, heads=heads)


def test_a_baseline_in_train_fidelity_learns_something():
    """It asserted only an accuracy above 0, which an optimiser that never moved passed."""
    from hffm_env.envs.hffm_env import measured

    env = _env("train")
    _, info = env.reset(seed=0)
    untrained = measured(info, "accuracy")
    record = run_episode(env, make_policy("hffm-e2"), seed=0)
    # 0.171 before training, 0.25-0.28 after four tiny rounds on seeds 0-2
    assert np.isfinite(record.accuracy).all() and record.accuracy[-1] > untrained + 0.03


@pytest.mark.parametrize("name,cloud_every", [("hffm-e8", 8), ("hffm-e2", 2),
                                              ("hffm-d2d-e8", 8), ("star", 1)])
def test_paper_schedules_reach_the_cloud_on_time(name, cloud_every):
    env = _env(extra=["env.episode_rounds=16"])
    policy = make_policy(name)
    obs, info = env.reset(seed=0)
    policy.reset(env, 0)
    cloud_rounds = []
    for r in range(1, 17):
        obs, _, _, _, info = env.step(policy.act(obs, info))
        tiers = set(info["schedule"]["tiers"].values())
        assert len(tiers) == 1  # all module types follow the schedule, as in the prototype
        if tiers == {"cloud"}:
            cloud_rounds.append(r)
        else:
            assert tiers == {"edge"}
    assert cloud_rounds == list(range(cloud_every, 17, cloud_every))
    routes = set(info["schedule"]["routes"].tolist())
    expected = int(PAPER_SCHEDULES[name][2])
    assert routes == {expected}


def test_edge_only_never_reaches_the_cloud():
    env = _env()
    record = run_episode(env, make_policy("edge-only"), seed=0)
    assert record.rounds == 4
    env.reset(seed=0)
    policy = make_policy("edge-only")
    policy.reset(env, 0)
    _, _, _, _, info = env.step(policy.act(None, {}))
    assert info["transfers"]["by_link_kind"]["backhaul"]["hops"] == 0


def test_unknown_policy_lists_known_ones():
    with pytest.raises(ValueError, match="known policies"):
        make_policy("oracle")


def test_runner_summaries_and_target():
    result = run_benchmark(lambda: _env("train"), ["hffm-e2", "edge-only"], seeds=[0],
                           progress=False, scenario="small", fidelity="train")
    assert [s.policy for s in result.summaries] == ["hffm-e2", "edge-only"]
    best = max(s.final_accuracy["mean"] for s in result.summaries)
    assert result.target_accuracy == pytest.approx(0.9 * best)
    assert sum(s.reached_target for s in result.summaries) >= 1


def test_runner_builds_one_env_per_seed_when_asked():
    built = []

    def make_env(seed):
        built.append(seed)
        return _env("cost", [f"seed={seed}"])

    result = run_benchmark(make_env, ["star", "never"], seeds=[3, 4], env_per_seed=True,
                           progress=False)
    assert built == [3, 4]
    assert sorted((e.policy, e.seed) for e in result.episodes) == [
        ("never", 3), ("never", 4), ("star", 3), ("star", 4)]
    # each episode is the one its own config seed gives, not the shared env's
    alone = run_episode(_env("cost", ["seed=4"]), make_policy("star"), 4)
    shared = run_episode(_env("cost"), make_policy("star"), 4)
    mine = next(e for e in result.episodes if (e.policy, e.seed) == ("star", 4))
    assert mine.energy_j == alone.energy_j
    assert mine.energy_j != shared.energy_j


def test_bench_command_writes_documented_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    plot = tmp_path / "bench.png"
    code = hffm_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies",
                      "star,hffm-e2", "--episodes", "1", "--no-progress", "--json", str(out),
                      "--plot", str(plot), *sum((["--set", o] for o in TINY), [])])
    assert code == 0
    data = json.loads(out.read_text())
    for key in ("scenario", "fidelity", "seeds", "target_accuracy", "policies", "episodes"):
        assert key in data
    row = data["policies"][0]
    for key in ("latency_per_round_s", "energy_per_round_j", "final_accuracy",
                "final_accuracy_per_task", "episode_return", "energy_to_target_j",
                "latency_to_target_s"):
        assert key in row
    assert row["latency_per_round_s"]["mean"] > 0
    assert plot.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "| star |" in printed
    # The saved JSON reads back (nulls as NaN) into the same table and a plot.
    again = BenchResult.read_json(out)
    assert math.isnan(again.target_accuracy)
    assert format_table(again) in printed
    assert again.to_dict() == data
    plot_tradeoffs(again, tmp_path / "again.png")
    # a .json.gz is gzip-compressed, as traces are (it was plain JSON under that name, and
    # a compressed one was refused as not UTF-8)
    import gzip

    again.write_json(tmp_path / "again.json.gz")
    assert json.loads(gzip.decompress((tmp_path / "again.json.gz").read_bytes())) == data
    assert BenchResult.read_json(tmp_path / "again.json.gz").to_dict() == data
    (tmp_path / "plain.json.gz").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not gzip data"):
        BenchResult.read_json(tmp_path / "plain.json.gz")
    # the config's target, when set, is the bench's default target
    code = hffm_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies",
                      "never", "--episodes", "1", "--no-progress", "--json", str(out), "--force",
                      *sum((["--set", o] for o in [*TINY, "env.target_accuracy=0.4"]), [])])
    assert code == 0 and json.loads(out.read_text())["target_accuracy"] == 0.4
    assert (tmp_path / "again.png").stat().st_size > 1000
    # an existing output is not overwritten without --force, and nothing runs before saying so
    out.write_text("keep")
    rerun = ["bench", "--scenario", "small", "--fidelity", "cost", "--policies", "star",
             "--episodes", "1", "--no-progress", "--json", str(out),
             *sum((["--set", o] for o in TINY), [])]
    assert hffm_main(rerun) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "keep"
    assert hffm_main([*rerun, "--force"]) == 0
    assert json.loads(out.read_text())["policies"][0]["policy"] == "star"


def test_bench_plays_each_seed_on_its_own_data_split_when_asked(tmp_path, capsys):
    """Judging on other data splits took one ``hffm bench --set seed=S`` run per seed."""
    out = tmp_path / "splits.json"
    tiny = sum((["--set", o] for o in TINY), [])
    assert hffm_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies",
                      "never", "--seeds", "1000", "1001", "--data-split-per-seed",
                      "--no-progress", "--json", str(out), *tiny]) == 0
    assert "a data split per seed" in capsys.readouterr().out
    result = BenchResult.read_json(out)
    assert [(e.seed, e.config_seed) for e in result.episodes] == [(1000, 1000), (1001, 1001)]
    # ... the same episodes as one run per seed on that seed's config
    alone = tmp_path / "alone.json"
    assert hffm_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies",
                      "never", "--seeds", "1001", "--set", "seed=1001", "--no-progress",
                      "--json", str(alone), *tiny]) == 0
    assert (json.loads(alone.read_text())["episodes"]
            == json.loads(out.read_text())["episodes"][1:])  # (NaN as null: equal)
    assert hffm_main(["bench", "--scenario", "small", "--fidelity", "surrogate",
                      "--data-split-per-seed", *tiny]) == 2
    assert "a surrogate serves the data split it was fitted on" in capsys.readouterr().err
    # a config seed given too would have no effect: refused, not ignored
    per_seed_run = ["bench", "--scenario", "small", "--fidelity", "cost",
                    "--data-split-per-seed", *tiny]
    assert hffm_main([*per_seed_run, "--set", "seed=7"]) == 2
    assert "so --set seed=7 would have no effect" in capsys.readouterr().err
    config_file = tmp_path / "seeded.yaml"
    config_file.write_text("scenario: small\nseed: 7\n")
    assert hffm_main([*per_seed_run, "--config", str(config_file)]) == 2
    assert "so the --config file's seed 7 would have no effect" in capsys.readouterr().err
    # an agent meets its own training split among the "other" splits: said
    agent = RESULTS / "agents" / "ppo-coarse-stt-plan-4clusters_s0"  # config seed 0
    assert hffm_main(["bench", "--scenario", "small", "--fidelity", "cost", "--agent",
                      str(agent), "--policies", "", "--seeds", "0", "1000",
                      "--set", "env.observe_target=true", "--set", "env.target_accuracy=0.357",
                      "--data-split-per-seed", "--no-progress"]) == 0
    assert ("was trained on config seed 0's data split, which seed 0 plays here"
            in capsys.readouterr().err)


def test_runs_on_more_seeds_merge_into_one_table(tmp_path, capsys):
    """``hffm bench --from-json`` merges saved runs: the union of seeds, each episode once,
    the summaries recomputed; an episode that disagrees with another run's, or a run of
    another target, is refused with the file's name."""
    def bench(seeds, policies, name, target="0.3"):
        out = tmp_path / name
        assert hffm_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies",
                          policies, "--seeds", *seeds, "--no-progress", "--target-accuracy",
                          target, "--json", str(out), *sum((["--set", o] for o in TINY), [])
                          ]) == 0
        return out

    first = bench(["0", "1"], "star,never", "a.json")
    more = bench(["1", "2"], "star", "b.json")  # seed 1 again: the same episode
    whole = bench(["0", "1", "2"], "star", "whole.json")
    merged = tmp_path / "merged.json"
    capsys.readouterr()
    assert hffm_main(["bench", "--from-json", str(first), str(more), "--json", str(merged)]) == 0
    assert "| star |" in capsys.readouterr().out
    result = BenchResult.read_json(merged)
    assert result.seeds == [0, 1, 2]
    rows = {s.policy: s for s in result.summaries}
    assert rows["star"].episodes == 3 and rows["never"].episodes == 2
    star = next(p for p in json.loads(merged.read_text())["policies"] if p["policy"] == "star")
    assert star == json.loads(whole.read_text())["policies"][0]  # as if run at once

    # --policies keeps rows of the files
    assert hffm_main(["bench", "--from-json", str(first), str(more), "--policies", "never"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| ---", "| never"]
    # ... and only the records of the runs whose episodes it keeps (never is in a.json only)
    kept = tmp_path / "never.json"
    assert hffm_main(["bench", "--from-json", str(first), str(more), "--policies", "never",
                      "--json", str(kept)]) == 0
    capsys.readouterr()
    assert BenchResult.read_json(kept).provenance == BenchResult.read_json(first).provenance
    # --seeds keeps those seeds' episodes
    assert hffm_main(["bench", "--from-json", str(first), str(more), "--seeds", "1", "2",
                      "--json", str(kept), "--force"]) == 0
    assert "| star |" in capsys.readouterr().out
    subset = BenchResult.read_json(kept)
    assert subset.seeds == [1, 2] and {e.seed for e in subset.episodes} == {1, 2}
    assert hffm_main(["bench", "--from-json", str(first), "--seeds", "7"]) == 2
    assert "--seeds has 7: the files hold seeds [0, 1]" in capsys.readouterr().err
    assert hffm_main(["bench", "--from-json", str(more), "--policies", "star", "--seeds",
                      "0"]) == 2  # seed 0 is in first.json only
    assert "--seeds has 0: the files hold seeds [1, 2]" in capsys.readouterr().err
    assert hffm_main(["bench", "--from-json", str(first), str(more), "--policies", "never",
                      "--seeds", "2"]) == 2  # never has no episode on seed 2
    assert "the files hold no episode of those policies on those seeds" in \
        capsys.readouterr().err
    assert hffm_main(["bench", "--from-json", str(first), "--policies", "oracle"]) == 2
    assert "the files hold" in capsys.readouterr().err
    # flags of a run have no effect on a merge: refused, not ignored
    assert hffm_main(["bench", "--from-json", str(first), "--agent", "nowhere"]) == 2
    assert "--from-json runs nothing, so --agent has no effect" in capsys.readouterr().err
    assert hffm_main(["bench", "--from-json", str(first), "--json", str(tmp_path / "o.png"),
                      "--plot", str(tmp_path / "o.png")]) == 2
    assert "--json and --plot name one file" in capsys.readouterr().err
    assert hffm_main(["bench", "--from-json", str(first), "--target-fraction", "0"]) == 2
    assert "--target-fraction: 0: must be a number in (0, 1]" in capsys.readouterr().err

    data = json.loads(more.read_text())
    data["episodes"][0]["energy_j"][0] += 1.0  # seed 1 of star no longer agrees
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    assert hffm_main(["bench", "--from-json", str(first), str(changed)]) == 2
    err = capsys.readouterr().err
    assert "changed.json" in err and "star on seed 1 differs" in err
    other_target = bench(["3"], "star", "t.json", target="0.5")
    assert hffm_main(["bench", "--from-json", str(first), str(other_target)]) == 2
    assert "target_accuracy = 0.5" in capsys.readouterr().err
    assert hffm_main(["bench", "--from-json", str(tmp_path / "none.json")]) == 2
    assert "not a bench JSON" in capsys.readouterr().err
    # runs of no accuracy target (cost fidelity's default: NaN) merge with each other
    untargeted = [tmp_path / f"u{k}.json" for k in range(2)]
    for k, out in enumerate(untargeted):
        data = json.loads(first.read_text())
        data["target_accuracy"] = None
        data["episodes"] = [e for e in data["episodes"] if e["seed"] == k]
        out.write_text(json.dumps(data))
    assert hffm_main(["bench", "--from-json", *map(str, untargeted)]) == 0


def test_paper_cost_comparison_matches_the_prototype_star():
    env = gym.make("hffm/HFFM-v0", scenario="paper", fidelity="cost",
                   overrides=[*TINY, "env.episode_rounds=2"])
    record = run_episode(env, make_policy("star"), seed=0)
    # star: every device sends its modules to the cloud over the 4 Mbit/s link (0.1 s delay);
    # the whole model weighs the prototype's 48,000 kbit, so a device holding every module
    # takes 12.1 s; the prototype charges no downlink or computation.
    engine = env.unwrapped.engine
    held_bits = np.array([
        sum(engine.module_bits[m] for m in engine.module_ids if engine.holders(m)[d])
        for d in range(engine.num_devices)
    ])
    assert held_bits.max() == pytest.approx(48e6)
    assert record.latency_s[0] == pytest.approx(12.1)
    assert record.energy_j[0] == pytest.approx(np.sum(0.8 * (0.1 + held_bits / 4e6)))


def test_a_cost_fidelity_bench_notes_that_a_target_compares_nothing(capsys):
    assert hffm_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies",
                      "never,star", "--seeds", "0", "--no-progress", "--target-accuracy",
                      "0.3", "--against", "star", *sum((["--set", o] for o in TINY), [])]) == 0
    assert ("cost fidelity measures no accuracy, so no episode reaches a target: "
            "--target-accuracy, --against compare nothing here") in capsys.readouterr().err


def test_bench_errors_are_one_line(capsys):
    assert hffm_main(["bench", "--scenario", "nope"]) == 2
    assert "known scenarios" in capsys.readouterr().err
    assert hffm_main(["bench", "--policies", "oracle", "--fidelity", "cost"]) == 2
    assert "known policies" in capsys.readouterr().err


def test_plot_groups_families_and_highlights_the_best_baseline(tmp_path):
    result = BenchResult.read_json(RESULTS / "small_ppo_vs_baselines.json")
    # highest mean return among the baselines (this run: tied with fixed-grid and greedy-energy,
    # which play the same schedule; the first in the table wins)
    assert best_baseline(result) == "edge-only-d2d"
    assert policy_family("agent:ppo-menu_s0") == "agents"
    assert {policy_family(name) for name in policy_names()} == {
        "paper schedules", "floors", "tuned", "adaptive heuristics"}
    plot_tradeoffs(result, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    # in a notebook: the figure itself, no file, none left open in pyplot; a short repr and
    # the table as the result's own display
    import io

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    figure = plot_tradeoffs(result)
    assert isinstance(figure, Figure) and len(figure.axes) == 3 and not plt.get_fignums()
    figure.canvas.draw()  # rounds are whole: no tick at 1.5
    assert all(float(t).is_integer() for t in figure.axes[2].get_xticks())
    buffer = io.BytesIO()
    plot_tradeoffs(result, buffer)
    assert buffer.getvalue().startswith(b"\x89PNG")
    shown = repr(result)  # not every round of every episode
    assert shown.startswith("BenchResult(scenario='small'") and "accuracy=[" not in shown
    assert result._repr_markdown_() == format_table(result)


def test_a_cost_fidelity_plot_shows_the_energy_latency_trade_off_not_accuracy_zero():
    """Cost fidelity measures no accuracy: every policy was drawn at final accuracy 0.00."""
    result = run_benchmark(lambda: gym.make("hffm/HFFM-v0", fidelity="cost",
                                            overrides=list(TINY_OVERRIDES)),
                           ["never", "star", "hffm-d2d-e2"], seeds=[1000], progress=False)
    figure = plot_tradeoffs(result)
    costs = figure.axes[0]
    assert costs.get_ylabel() == "latency per round (s)"
    heights = sorted(bar.lines[0].get_ydata()[0] for bar in costs.containers)  # one a policy
    assert heights == pytest.approx(sorted(s.latency_per_round_s["mean"]
                                           for s in result.summaries))
    assert not figure.axes[1].axison and "accuracy not measured in cost fidelity" in \
        figure.axes[1].texts[0].get_text()


def test_the_names_of_points_on_top_of_each_other_stay_readable():
    """Agents of one recipe sit on one point: their names were printed over each other."""
    result = BenchResult.read_json(RESULTS / "small4_ppo_plan_9seeds.json")
    figure = plot_tradeoffs(result)
    figure.canvas.draw()
    for ax in figure.axes[:2]:
        boxes = [(text.get_text(), text.get_window_extent()) for text in ax.texts]
        assert len(boxes) == 7  # the best baseline and six agents
        assert [(a, b) for k, (a, box) in enumerate(boxes) for b, other in boxes[k + 1:]
                if box.overlaps(other)] == []


def test_fixed_grid_is_fitted_explicitly_once_per_scenario_before_it_plays():
    from hffm_env.baselines.policies import FittedPolicy, FixedGridPolicy
    from hffm_env.baselines.runner import fit_if_needed

    env = _env()
    policy = FixedGridPolicy(edge_periods=(1,), cloud_periods=(2, NEVER),
                             routes=(Route.DIRECT,), search_seeds=(0, 1))
    assert isinstance(policy, FittedPolicy)
    with pytest.raises(RuntimeError, match=r"fixed-grid: call fit\(env, rollout\)"):
        policy.reset(env, 0)
    played = []

    def rollout(e, candidate, seed):
        played.append((candidate.name, seed))
        return {"grid-e1-c2-direct": 1.0, "grid-e1-c0-direct": 2.0}[candidate.name]

    policy.fit(env, rollout)
    assert len(played) == 4 and policy.fitted_for(env)
    assert (policy.edge_period, policy.cloud_period) == (1, NEVER)  # the higher mean return
    fit_if_needed(env, policy)  # already fitted for this scenario: no second search
    assert len(played) == 4
    fresh = FixedGridPolicy(edge_periods=(1,), cloud_periods=(2,), routes=(Route.DIRECT,))
    record = run_episode(env, fresh, seed=3)  # the runner fits, then plays
    assert fresh.fitted_for(env) and list(fresh.search_results) == ["grid-e1-c2-direct"]
    assert record.rounds == 4
    told = []  # the bench's progress bar is told of every tuning episode (it stood still)
    tuned = FixedGridPolicy(edge_periods=(1,), cloud_periods=(2, NEVER),
                            routes=(Route.DIRECT,), search_seeds=(0, 1))
    fit_if_needed(env, tuned, lambda name, seed: told.append((name, seed)))
    assert told == [("grid-e1-c2-direct", 0), ("grid-e1-c2-direct", 1),
                    ("grid-e1-c0-direct", 0), ("grid-e1-c0-direct", 1)]


def test_fixed_grid_tunes_on_the_configs_own_split_when_each_seed_has_its_own():
    """With a data split per seed, fixed-grid was tuned anew on each seed's split: on the
    held-out split it was then judged on. It tunes once, on the config's own split."""
    from hffm_env.baselines.policies import FixedGridPolicy

    built, tuned_on = [], []

    def make_env(seed):
        built.append(seed)
        return _env("cost", [] if seed is None else [f"seed={seed}"])

    policy = FixedGridPolicy(edge_periods=(1,), cloud_periods=(2, NEVER), routes=(Route.DIRECT,))
    fit = policy.fit

    def recording_fit(env, rollout):
        tuned_on.append(env.unwrapped.config.seed)
        fit(env, rollout)

    policy.fit = recording_fit
    result = run_benchmark(make_env, [policy, "never"], seeds=[1000, 1001], env_per_seed=True,
                           progress=False)
    assert built == [None, 1000, 1001] and tuned_on == [_env("cost").unwrapped.config.seed]
    assert sorted((e.policy, e.seed) for e in result.episodes) == [
        ("fixed-grid", 1000), ("fixed-grid", 1001), ("never", 1000), ("never", 1001)]
    # ... a policy off the period menu is refused before minutes of tuning, not after
    policy = FixedGridPolicy(edge_periods=(1,), cloud_periods=(2, NEVER), routes=(Route.DIRECT,))
    policy.fit = recording_fit
    tuned_on.clear()

    def short_menu(seed):
        return _env("cost", ["env.period_menu=[1, 2, 4, 0]",
                             *([] if seed is None else [f"seed={seed}"])])

    with pytest.raises(ValueError, match="'hffm-e8': it plays period 8, not on env.period_menu"):
        run_benchmark(short_menu, [policy, "hffm-e8"], seeds=[1000], env_per_seed=True,
                      progress=False)
    assert tuned_on == []
    # ... and without a tuned policy, no env of the config's own split is built
    built.clear()
    run_benchmark(make_env, ["never"], seeds=[1000], env_per_seed=True, progress=False)
    assert built == [1000]


def test_fixed_grid_is_never_scored_on_the_seeds_it_was_tuned_on(capsys):
    """``hffm bench --seeds 0 1000`` tuned fixed-grid on seed 0 and scored it there too, and
    ``search_seeds`` took held-out seeds, without a word."""
    from hffm_env.baselines.policies import FixedGridPolicy
    from hffm_env.baselines.runner import tuning_seed_problem

    with pytest.raises(ValueError, match=r"search_seeds \[1000\]: must be training seeds"):
        FixedGridPolicy(search_seeds=(1000,))
    for bad in ((), 3, ("0",), "0"):
        with pytest.raises(ValueError, match="search_seeds = .*: must be a non-empty tuple"):
            FixedGridPolicy(search_seeds=bad)
    tuned = FixedGridPolicy(search_seeds=[2, 5])
    assert tuned.search_seeds == (2, 5) and tuning_seed_problem(tuned, [1000, 1001]) is None
    assert "tuned on seeds [2, 5], so scoring it on seeds [5]" in tuning_seed_problem(
        tuned, [5, 1000])
    assert tuning_seed_problem(make_policy("star"), [0]) is None  # nothing tuned
    with pytest.raises(ValueError, match=r"policy 'fixed-grid': it is tuned on seeds \[0\]"):
        run_benchmark(lambda: _env("cost"), ["never", "fixed-grid"], seeds=[0, 1000],
                      target_accuracy=0.3, progress=False)
    # hffm bench: named, refused; in the default list, left out with a note
    tiny = sum((["--set", o] for o in TINY), [])
    base = ["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "0", "1000",
            "--no-progress", *tiny]
    assert hffm_main([*base, "--policies", "fixed-grid,never"]) == 2
    assert "policy 'fixed-grid': it is tuned on seeds [0]" in capsys.readouterr().err
    assert hffm_main(base) == 0
    captured = capsys.readouterr()
    assert "leaving out fixed-grid: tuned on some of these seeds [0, 1000]" in captured.err
    assert "| fixed-grid |" not in captured.out and "| never |" in captured.out


def _episode(policy: str, accuracy: list[float], rewards: list[float],
             seed: int = 0) -> EpisodeRecord:
    rounds = len(accuracy)
    return EpisodeRecord(policy, seed, accuracy=accuracy, accuracy_per_task=[{}] * rounds,
                         accuracy_local=accuracy, accuracy_held_out=accuracy,
                         latency_s=[1.0] * rounds, energy_j=[2.0] * rounds, rewards=rewards,
                         end="rounds")


def test_verdict_says_which_side_never_reached_the_target():
    episodes = [_episode("agent", [0.2, 0.5], [1.0, 1.0]), _episode("base", [0.2, 0.3], [3.0])]
    result = BenchResult("small", "train", [0], 0.4, summarise(episodes, 0.4), episodes)
    line = verdict(result, "agent")
    assert "does not beat the best baseline by return, base" in line
    assert "energy to target 4.0 J vs never reached" in line and "nan" not in line
    both = [_episode("agent", [0.5], [1.0]), _episode("base", [0.2, 0.5], [0.5])]
    line = verdict(BenchResult("small", "train", [0], 0.4, summarise(both, 0.4), both), "agent")
    assert "agent beats" in line and "energy to target 2.0 vs 4.0 J (-50%)" in line


def test_verdict_gives_the_return_as_a_difference_not_a_ratio():
    """Returns may be near 0 or of either sign: -1.56 against 0.10 read as -1637%."""
    episodes = [_episode("agent", [0.2], [-1.56]), _episode("base", [0.2], [0.1])]
    line = verdict(BenchResult("small", "cost", [0], 0.4, summarise(episodes, 0.4), episodes),
                   "agent")
    assert "return -1.56 vs 0.10 (-1.66)" in line and "%)" not in line.split(",")[0]


def _seeded(policy: str, seed: int, accuracy: list[float]) -> EpisodeRecord:
    episode = _episode(policy, accuracy, [0.0] * len(accuracy))  # 2 J a round
    episode.seed = seed
    return episode


def test_a_paired_comparison_takes_ratios_seed_by_seed_with_a_t_interval():
    """The README compared means whose spread over seeds (a std of half the mean on other
    data splits) hid or faked any gap; a seed-by-seed ratio with its interval says which."""
    episodes = [*(_seeded("base", s, [0.2, 0.5]) for s in (0, 1, 2)),   # 4 J each
                _seeded("base", 3, [0.2, 0.3]),                           # never
                _seeded("a", 0, [0.5]), _seeded("a", 1, [0.2, 0.2, 0.5]),  # 2 J, 6 J
                _seeded("a", 2, [0.2, 0.5]), _seeded("a", 3, [0.5]),       # 4 J, 2 J
                _seeded("b", 0, [0.5]), _seeded("b", 1, [0.2]), _seeded("b", 3, [0.2])]
    result = BenchResult("small", "train", [0, 1, 2, 3], 0.4, summarise(episodes, 0.4),
                         episodes)
    a, b = paired_energy_to_target(result, "base")
    logs = [math.log(0.5), math.log(1.5), 0.0]
    mean, sd = float(np.mean(logs)), float(np.std(logs, ddof=1))
    half = 4.303 * sd / math.sqrt(3)  # Student's t, 2 degrees of freedom
    assert (a.policy, a.seeds, a.less) == ("a", 3, 1)
    assert a.ratio == pytest.approx(math.exp(mean))
    assert (a.low, a.high) == pytest.approx((math.exp(mean - half), math.exp(mean + half)))
    assert (a.only_policy, a.only_reference, a.neither) == (1, 0, 0)
    # one shared seed: a ratio, no interval; seed 2 unplayed by b is left out
    assert (b.seeds, b.ratio, b.less) == (1, pytest.approx(0.5), 1)
    assert math.isnan(b.low) and (b.only_policy, b.only_reference, b.neither) == (0, 1, 1)
    table = format_paired([a, b])
    assert "| a | 3 | 0.909 | 0.229-3.612 | 1/3 | 1 | 0 | 0 |" in table
    assert "| b | 1 | 0.500 | - | 1/1 | 0 | 1 | 1 |" in table
    with pytest.raises(ValueError, match="'c' is not a policy of the result"):
        paired_energy_to_target(result, "c")
    twice = BenchResult("small", "train", [0], 0.4, result.summaries,
                        [*episodes, _seeded("a", 0, [0.5])])
    with pytest.raises(ValueError, match="a has more than one episode on seed 0"):
        paired_energy_to_target(twice, "base")
    free = _seeded("c", 0, [0.5])
    free.energy_j = [0.0]  # a ratio of 0 J would drop the seed out of every count
    spent_nothing = BenchResult("small", "train", [0], 0.4, summarise([*episodes, free], 0.4),
                                [*episodes, free])
    with pytest.raises(ValueError, match="seed 0: c or base reached the target having spent "
                                         "no energy"):
        paired_energy_to_target(spent_nothing, "base")


def test_the_t_quantile_beyond_the_table_follows_students_t():
    from hffm_env.baselines.runner import _t_975

    # Student's t 97.5% quantiles (scipy.stats.t.ppf(0.975, dof))
    for dof, quantile in ((1, 12.706), (30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980),
                          (1000, 1.962)):
        assert _t_975(dof) == pytest.approx(quantile, abs=6e-4)
    with pytest.raises(ValueError, match="degrees of freedom = 0: must be at least 1"):
        _t_975(0)


def test_bench_against_prints_the_paired_comparison_and_refuses_an_unknown_policy(
        capsys, monkeypatch):
    committed = "docs/results/small4_ppo_plan_more_seeds1009-1017.json"
    assert hffm_main(["bench", "--from-json", committed, "--against", "hffm-d2d-e2"]) == 0
    out = capsys.readouterr().out
    assert "energy to target against hffm-d2d-e2, seed by seed" in out
    assert "| plan:plan_search_small4 | 9 | 0.821 | 0.751-0.897 | 9/9 | 0 | 0 | 0 |" in out
    assert hffm_main(["bench", "--from-json", committed, "--against", "e2"]) == 2
    assert "--against 'e2': not a policy of this bench; it has [" in capsys.readouterr().err
    assert hffm_main(["bench", "--from-json", committed, "--against", "hffm-d2d-e2",
                      "--policies", "plan:plan_search_small4"]) == 2
    assert ("--against 'hffm-d2d-e2': --policies plan:plan_search_small4 leaves it out; add "
            "it to --policies") in capsys.readouterr().err
    import hffm_env.baselines.runner as runner

    def never_played(result, reference):  # as when Ctrl-C stopped a run before it played
        raise ValueError(f"{reference!r} is not a policy of the result")

    monkeypatch.setattr(runner, "paired_energy_to_target", never_played)
    assert hffm_main(["bench", "--from-json", committed, "--against", "hffm-d2d-e2"]) == 0
    captured = capsys.readouterr()  # the table stands, the comparison is a note
    assert "| hffm-d2d-e2 |" in captured.out and "seed by seed" not in captured.out
    assert ("hffm bench: note: no comparison --against hffm-d2d-e2: 'hffm-d2d-e2' is not a "
            "policy of the result") in captured.err

    # a run refuses it before any episode
    monkeypatch.setattr(runner, "run_benchmark", lambda *a, **k: pytest.fail("ran"))
    assert hffm_main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies",
                      "never,star", "--against", "hffm-e2", "--no-progress"]) == 2
    assert "--against 'hffm-e2': not a policy of this bench; it has ['never', 'star']" in \
        capsys.readouterr().err


def test_verdict_says_on_how_many_seeds_each_side_reached_the_target():
    episodes = [_episode("agent", [0.5], [1.0]), _episode("agent", [0.2], [1.0]),
                _episode("base", [0.2, 0.5], [0.5]), _episode("base", [0.5], [0.5])]
    for e, seed in zip(episodes, (0, 1, 0, 1)):
        e.seed = seed
    line = verdict(BenchResult("small", "train", [0, 1], 0.4, summarise(episodes, 0.4),
                               episodes), "agent")
    # ... and compares them where both reached it (the means over other seeds read -33%)
    assert ("energy to target 2.0 vs 3.0 J (-33%, reached on 1/2 vs 2/2 seeds; on the 1 seed "
            "both reached it on, 2.0 vs 4.0 J (-50%))") in line


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"policies": []}, r"policies = \[\]: must be a non-empty list"),
    ({"policies": "star"}, "policies = 'star': must be a non-empty list"),
    ({"policies": [5]}, r"policies\[0\] = 5: must be a policy name or a Policy"),
    ({"policies": ["star", "star"]}, "'star' is given 2 times"),
    ({"seeds": []}, r"seeds = \[\]: must be a non-empty list"),
    ({"seeds": "1000"}, "seeds = '1000'"),
    ({"seeds": [1.5]}, r"seeds\[0\] = 1.5: must be an integer in 0..2\*\*63-1"),
    ({"seeds": [-1]}, r"seeds\[0\] = -1"),
    ({"seeds": [5, 5]}, "seeds: 5 is given twice"),
    ({"target_accuracy": -3}, "target_accuracy = -3"),
    ({"target_accuracy": True}, "target_accuracy = True"),  # read as 1.0 before
    ({"target_fraction": float("nan")}, "target_fraction = nan"),
])
def test_run_benchmark_names_a_bad_argument_before_running_anything(kwargs, message):
    built = []
    call = {"policies": ["star"], "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=message):
        run_benchmark(lambda: built.append(1) or _env(), call.pop("policies"), progress=False,
                      **call)
    assert not built  # (a repeated seed or policy was run and counted twice; 1.5 ran seed 1)


def test_a_make_env_that_returns_no_env_is_named():
    """'NoneType' object has no attribute 'close' hid what went wrong."""
    with pytest.raises(TypeError, match="make_env returned None: expected a Gymnasium env"):
        run_benchmark(lambda: None, ["star"], seeds=[0], progress=False)


def test_run_benchmark_takes_any_iterable_of_seeds_and_policies():
    result = run_benchmark(_env, {"star": 1, "never": 2}, seeds=np.arange(2), progress=False)
    assert sorted((e.policy, e.seed) for e in result.episodes) == [
        ("never", 0), ("never", 1), ("star", 0), ("star", 1)]


def test_a_policy_that_fails_mid_run_is_named(capsys):
    class Failing:
        name = "failing"

        def reset(self, env, seed=None):
            pass

        def act(self, obs, info):
            raise ValueError("cloud_period/encoder = 8: not in the menu")

    with pytest.raises(ValueError, match=r"policy 'failing' on seed 0: cloud_period/encoder"):
        run_benchmark(_env, ["never", Failing()], seeds=[0], progress=False)


def test_a_baseline_off_the_period_menu_is_refused_before_any_episode():
    """hffm-e8 on a menu without 8 failed after the policies before it had played: minutes of
    real training lost, and no --json written."""
    played = []

    class Recording:
        name = "first"

        def reset(self, env, seed=None):
            played.append(seed)

        def act(self, obs, info):
            raise AssertionError("played before the check")

    with pytest.raises(ValueError, match=r"policy 'hffm-e8': it plays period 8, not on "
                       r"env.period_menu \[0, 1, 2\] \(0 is never\); leave it out"):
        run_benchmark(lambda: _env("cost", ["env.period_menu=[0,1,2]"]), [Recording(), "hffm-e8"],
                      seeds=[0], progress=False)
    assert played == []
    from hffm_env.baselines.policies import baselines_on_menu, make_policy, menu_problem

    kept, dropped = baselines_on_menu([1, 2, 4, 0])
    assert dropped == ["hffm-e8", "hffm-d2d-e8", "module-aware"]
    assert "fixed-grid" in kept and "adaptive" in kept and "greedy-energy" in kept
    assert "no finite period" in menu_problem(make_policy("adaptive"), [0])
    assert "plays period 1," in menu_problem(make_policy("adaptive"), [2, 4, 8, 0])
    assert "no point of its grid" in menu_problem(make_policy("fixed-grid"), [4, 0])
    assert "plays period 1" in menu_problem(make_policy("greedy-energy"), [2, 0])
    # fixed-grid searches its grid where it meets the menu
    env = _env("cost", ["env.period_menu=[1,2,4,0]"])
    grid = make_policy("fixed-grid")
    grid.fit(env, lambda e, candidate, seed: -candidate.cloud_period)
    assert grid.cloud_period in (2, 0) and all("-c8-" not in k for k in grid.search_results)
    env.close()


def test_the_table_shows_no_target_without_accuracy_and_no_spread_of_one_episode():
    """Cost fidelity printed 'target accuracy nan' and 'reached 0/3'; one seed '± 0.000'."""
    episodes = [_episode("base", [float("nan")] * 2, [1.0, 1.0])]
    table = format_table(BenchResult("small", "cost", [0], float("nan"),
                                     summarise(episodes, float("nan")), episodes))
    assert "no accuracy measured, no target" in table and "nan" not in table
    row = next(line for line in table.splitlines() if line.startswith("| base"))
    assert "±" not in row and row.endswith("| - |") and "| 2.000 |" in row


def test_rows_over_different_numbers_of_episodes_say_how_many():
    # an interrupted evaluation showed an agent's mean over 3 seeds beside a row of 1 with
    # nothing to tell them apart; a complete run's table is as it was
    episodes = [_episode("agent:A", [0.2], [1.0], seed=s) for s in (0, 1, 2)] + [
        _episode("base", [0.2], [2.0], seed=0)]
    table = format_table(BenchResult("small", "cost", [0, 1, 2], float("nan"),
                                     summarise(episodes, float("nan")), episodes,
                                     interrupted=True))
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert rows["| policy"].endswith("| reached | episodes |")
    assert rows["| agent:A"].endswith("| 3 |") and rows["| base"].endswith("| 1 |")
    complete = [e for e in episodes if e.seed == 0]
    table = format_table(BenchResult("small", "cost", [0], float("nan"),
                                     summarise(complete, float("nan")), complete))
    assert "episodes |" not in table


def test_verdict_compares_with_baselines_only_as_best_baseline_does():
    """With two agents in a result, the verdict of one named the other as the best baseline."""
    from hffm_env.baselines.runner import best_baseline

    episodes = [_episode("agent:A", [0.2], [1.0]), _episode("agent:B", [0.2], [3.0]),
                _episode("base", [0.2], [2.0])]
    result = BenchResult("small", "cost", [0], 0.4, summarise(episodes, 0.4), episodes)
    assert best_baseline(result) == "base"
    assert "best baseline by return, base" in verdict(result, "agent:A")
    # an interrupted run gets none: the best baseline may never have run (it named edge-only
    # the best after a Ctrl-C before `never` ran)
    cut = dataclasses.replace(result, interrupted=True)
    assert verdict(cut, "agent:A").startswith("agent:A: no verdict, the run was interrupted")


@pytest.mark.parametrize("wrapper", ["CoarseActions", "ScheduleMenu", "ActionMaskObservation"])
def test_an_env_whose_spaces_a_wrapper_changed_is_refused_by_name(wrapper):
    """A training make_env (with its action wrapper) failed on the first action, blaming the
    baseline ("action shape (39,): expected (14,)") or the agent's observation entries."""
    from gymnasium.wrappers import RecordEpisodeStatistics

    import hffm_env.wrappers

    wrap = getattr(hffm_env.wrappers, wrapper)
    # the wrapper that changes it is named, not the outermost (which may change nothing)
    with pytest.raises(ValueError, match=f"make_env returned an env whose .*_space is not its "
                                         f"HF-FM env's \\({wrapper} changes it"):
        run_benchmark(lambda: RecordEpisodeStatistics(wrap(_env("cost"))), ["hffm-d2d-e2"],
                      seeds=[1000], progress=False)


def test_baselines_of_equal_return_are_named_whatever_the_order_they_were_played_in():
    """Two schedules that play alike on a short episode tie exactly: the verdict named the
    one played first as the best baseline."""
    from hffm_env.baselines.runner import best_baseline

    named = set()
    for order in (["star", "edge-only", "hffm-e8"], ["star", "hffm-e8", "edge-only"]):
        episodes = [_episode(name, [0.2], [{"star": 1.0}.get(name, 2.0)]) for name in order]
        result = BenchResult("small", "cost", [0], 0.4, summarise(episodes, 0.4), episodes)
        named.add((best_baseline(result), verdict(result, "star")))
    assert named == {("edge-only", next(iter(named))[1])}
    assert "best baseline by return, edge-only" in next(iter(named))[1]


def test_run_benchmark_labels_its_result_with_the_env_so_that_merge_can_check_it():
    """A cost run and a surrogate run merged silently: both were labelled ''."""
    cost = run_benchmark(lambda: _env("cost"), ["never"], seeds=[1000], target_accuracy=0.3,
                         progress=False)
    assert (cost.scenario, cost.fidelity) == ("small", "cost")
    other = run_benchmark(lambda: _env("cost"), ["never"], seeds=[1001], target_accuracy=0.3,
                          progress=False)
    other.fidelity = "surrogate"  # as a surrogate run's (a label given must match the env's)
    with pytest.raises(ValueError, match="fidelity = 'surrogate'"):
        BenchResult.merge([cost, other])
    with pytest.raises(ValueError, match="merge: 1 names for 2 results"):
        BenchResult.merge([cost, cost], names=["a.json"])


def test_a_bench_result_records_the_code_that_played_it(tmp_path):
    """A saved run said nothing of the code, libraries or threads that played it, though merge
    refuses episodes that differ for just those reasons."""
    def run(seed):
        return run_benchmark(lambda: _env("cost"), ["never"], seeds=[seed], target_accuracy=0.3,
                             progress=False)

    first, second = run(1000), run(1001)
    [record] = first.provenance
    # (two runs within a second have equal records: tell them apart as runs at other times)
    second.provenance = [{**second.provenance[0], "time_utc": "later"}]
    assert record["hffm_env"] == hffm_env.__version__ and record["libraries"]["torch"]
    saved = tmp_path / "first.json"
    first.write_json(saved)  # it travels with the file
    assert BenchResult.read_json(saved).provenance == [record]
    # a merge keeps each run's record once (a file given twice: once)
    assert BenchResult.merge([first, second, first]).provenance == [record,
                                                                   *second.provenance]
    data = json.loads(saved.read_text())
    del data["provenance"]  # a file from before: none recorded
    assert BenchResult.from_dict(data).provenance == []
    with pytest.raises(ValueError, match="provenance = 'yesterday': must be a list"):
        BenchResult.from_dict({**data, "provenance": "yesterday"})
    # episodes that differ: the message names each run's code when they differ
    other_torch = {**record, "libraries": {**record["libraries"], "torch": "9.9"}}
    replayed = dataclasses.replace(first, provenance=[other_torch], episodes=[
        dataclasses.replace(first.episodes[0], energy_j=[e + 1 for e in
                                                         first.episodes[0].energy_j])])
    with pytest.raises(ValueError, match=r"run 1: never on seed 1000 differs from the episode "
                                         r"of run 0 .*run 0 ran hffm-env .*, run 1 ran "
                                         r".*torch 9.9"):
        BenchResult.merge([first, replayed])
    with pytest.raises(ValueError) as same_code:
        BenchResult.merge([first, dataclasses.replace(replayed, provenance=[record])])
    assert " ran " not in str(same_code.value)


def test_a_result_says_which_data_split_each_episode_played_and_merge_keeps_one(tmp_path):
    """Runs on the config seed's split and runs with a split per seed merged into one row
    without a word (the settings leave the config seed out), and nothing said which a file
    held."""
    from hffm_env.baselines.runner import data_split

    def run(seeds, per_seed=False, config_seed=0):
        return run_benchmark(
            (lambda s: _env("cost", extra=[f"seed={s}"])) if per_seed
            else (lambda: _env("cost", extra=[f"seed={config_seed}"])),
            ["never"], seeds=seeds, env_per_seed=per_seed, target_accuracy=0.3,
            progress=False)

    shared, per_seed = run([1000, 1001]), run([1002, 1003], per_seed=True)
    assert [e.config_seed for e in shared.episodes] == [0, 0]
    assert [e.config_seed for e in per_seed.episodes] == [1002, 1003]
    assert data_split(shared.episodes) == "config seed 0"
    assert data_split(per_seed.episodes) == "per seed"
    assert "a data split per seed" in format_table(per_seed).splitlines()[0]
    assert "the data split of config seed 0" in format_table(shared).splitlines()[0]
    saved = tmp_path / "per_seed.json"
    per_seed.write_json(saved)
    assert [e.config_seed for e in BenchResult.read_json(saved).episodes] == [1002, 1003]
    # runs of one rule merge; a split per seed and a shared split do not
    assert BenchResult.merge([per_seed, run([1004], per_seed=True)]).seeds == [1002, 1003,
                                                                              1004]
    assert BenchResult.merge([shared, run([1004])]).seeds == [1000, 1001, 1004]
    with pytest.raises(ValueError, match=r"run 1: its episodes' data splits \(config seeds "
                                         r"\[1002, 1003\]\) and the others' make neither"):
        BenchResult.merge([shared, per_seed])
    with pytest.raises(ValueError, match="make neither one shared split"):
        BenchResult.merge([shared, run([1004], config_seed=7)])
    # one seed played on two splits: not the same episode
    with pytest.raises(ValueError, match="never on seed 1000 played on config seed 1000's "
                                         "data split, but on config seed 0's in run 0"):
        BenchResult.merge([shared, run([1000], per_seed=True)])
    # files from before record none: merged as before, no split named
    older = dataclasses.replace(shared, episodes=[dataclasses.replace(e, config_seed=None)
                                                  for e in shared.episodes])
    assert data_split(older.episodes) is None and "split" not in format_table(older)
    assert BenchResult.merge([older, per_seed]).seeds == [1000, 1001, 1002, 1003]
    data = json.loads(saved.read_text())
    data["episodes"][0]["config_seed"] = "0"
    with pytest.raises(ValueError, match=r"episodes\[0\].config_seed = '0': must be an "
                                         r"integer in 0..2\*\*63-1 or null"):
        BenchResult.from_dict(data)


def test_merge_refuses_runs_of_other_settings_and_names_them(tmp_path):
    """Runs of other horizons, weights or rewards, on other seeds, merged into one row: the
    labels (scenario name, fidelity, target) were all that was compared."""
    def run(seed, extra=(), **kwargs):
        return run_benchmark(lambda: _env("cost", extra=extra, **kwargs), ["never"],
                             seeds=[seed], target_accuracy=0.3, progress=False)

    plain = run(1000)
    assert plain.settings["config"]["env"]["episode_rounds"] == 4
    assert plain.settings["reward"] == "accuracy-level"
    with pytest.raises(ValueError, match=r"run 1: played under other settings than run 0 "
                                         r"\(config.env.episode_rounds 4 vs 5"):
        BenchResult.merge([plain, run(1001, ["env.episode_rounds=5"])])
    with pytest.raises(ValueError, match="reward 'accuracy-level' vs 'accuracy-gain'"):
        BenchResult.merge([plain, run(1001, reward="accuracy-gain")])
    merged = BenchResult.merge([plain, run(1001)])  # same settings: one row, two seeds
    assert merged.seeds == [1000, 1001] and merged.settings == plain.settings
    saved = tmp_path / "plain.json"
    plain.write_json(saved)  # the settings travel with the file
    assert BenchResult.read_json(saved).settings == plain.settings
    older = dataclasses.replace(plain, settings=None)  # a file from before: labels only
    assert BenchResult.merge([older, run(1001)]).seeds == [1000, 1001]
    # ... but the others are still checked against the first run that records settings
    with pytest.raises(ValueError, match="run 2: played under other settings than run 1"):
        BenchResult.merge([older, plain, run(1001, ["env.episode_rounds=5"])])
    # what changes neither a fixed schedule's episodes nor this reward is not compared
    observed = run(1001, ["env.observe_target=true", "env.target_accuracy=0.3"])
    assert BenchResult.merge([plain, observed]).seeds == [1000, 1001]
    spend = ["env.reward=spend-to-target", "env.target_accuracy=0.2"]
    with pytest.raises(ValueError, match="config.env.target_accuracy 0.2 vs 0.3"):
        BenchResult.merge([run(1000, spend), run(1001, [*spend, "env.target_accuracy=0.3"])])


def test_a_heuristic_named_agentless_is_a_baseline():
    """Every name starting with "agent" was taken for a trained agent's row."""
    from hffm_env.baselines.policies import is_agent_name

    assert [is_agent_name(n) for n in ("agent", "agent:run", "agent-ppo", "agentless-d2d")] \
        == [True, True, True, False]
    assert policy_family("agentless-d2d") == "other"
    mine = PeriodicPolicy("agentless-d2d", 1, 0, Route.D2D_RELAY)
    result = run_benchmark(lambda: _env("cost"), [mine, "star"], seeds=[1000], progress=False)
    assert best_baseline(result) == "agentless-d2d"
    assert verdict(result, "star").startswith("star does not beat the best baseline")


def test_run_benchmark_refuses_policies_it_would_misplay():
    class Mine:
        name = "mine"

        def reset(self, env, seed):
            pass

        def act(self, obs, info):
            return np.zeros(1)

    with pytest.raises(ValueError, match="policies\\[0\\] = Mine: a class; pass an instance"):
        run_benchmark(lambda: _env("cost"), [Mine], seeds=[1000], progress=False)
    unnamed = Mine()
    unnamed.name = 5
    with pytest.raises(ValueError, match="policies\\[0\\].name = 5: must be a non-empty string"):
        run_benchmark(lambda: _env("cost"), [unnamed], seeds=[1000], progress=False)
    tuned = Mine()
    tuned.fit = lambda env, rollout: None
    with pytest.raises(ValueError, match="has fit\\(\\) but no fitted_for"):
        run_benchmark(lambda: _env("cost"), [tuned], seeds=[1000], progress=False)
    unfittable = Mine()  # fitted_for said "not yet" and fit was an AttributeError
    unfittable.fitted_for = lambda env: False
    with pytest.raises(ValueError, match="'mine' has fitted_for\\(env\\) but no fit"):
        run_benchmark(lambda: _env("cost"), [unfittable], seeds=[1000], progress=False)


def test_a_round_plan_is_named_by_a_string():
    from hffm_env.baselines.plan import RoundPlan

    with pytest.raises(ValueError, match="RoundPlan.name = None"):
        RoundPlan.constant(2, name=None)


# ------------------------------------------------------------------ what each heuristic does
# (the episode test above only sees valid actions: a greedy policy that took the dearer route,
# an adaptive one that turned the wrong way, or module-aware without its gossip all passed)


def test_greedy_energy_takes_each_clusters_cheaper_route():
    from hffm_env.fl.schedule import Schedule, Tier

    env = _env(extra=["env.episode_rounds=6"])
    policy = make_policy("greedy-energy")
    obs, info = env.reset(seed=4)
    policy.reset(env, 4)
    base = env.unwrapped
    cluster_of = base.network.topology.cluster_of_device
    c = base.network.num_clusters
    differing = 0
    for _ in range(6):
        heads = tuple(base.default_heads.tolist())
        energy = {}
        for route in (Route.DIRECT, Route.D2D_RELAY):
            report = base.engine.price_schedule(Schedule.uniform(Tier.EDGE, c, route, heads=heads),
                                                with_compute=False)
            energy[route] = np.bincount(cluster_of, weights=report.energy_by_device_j,
                                        minlength=c)
        action = policy.act(obs, info)
        for k in range(c):
            chosen = Route(int(action[base.layout.slot_names.index(f"route/{k}")]))
            other = Route.D2D_RELAY if chosen == Route.DIRECT else Route.DIRECT
            assert energy[chosen][k] <= energy[other][k], (k, chosen)
            differing += energy[chosen][k] < energy[other][k]
        obs, _, done, _, info = env.step(action)
    assert differing > 0


def test_adaptive_tightens_the_cloud_period_on_drift_and_loosens_it_when_calm():
    env = _env()
    obs, info = env.reset(seed=0)
    policy = make_policy("adaptive")
    policy.reset(env, 0)
    base = env.unwrapped
    names = base.observation_names
    slot = base.layout.slot_names.index("cloud_period/moe")

    def cloud_period(drift, energy_ahead):
        values = dict(zip(names, obs))
        for t in MODULE_TYPES:
            values[f"drift/{t}/global"] = drift
        values["budget/energy"], values["round"] = (0.5, 0.1) if energy_ahead else (0.1, 0.5)
        seen = np.array([values[n] for n in names], dtype=np.float32)
        return base.layout.menu[int(policy.act(seen, info)[slot])]

    start = cloud_period(0.1, energy_ahead=False)  # between the thresholds: unchanged
    assert cloud_period(0.9, energy_ahead=False) == start // 2  # drifting: halved
    assert cloud_period(0.0, energy_ahead=True) == start  # calm and spending: doubled back
    assert cloud_period(0.0, energy_ahead=False) == start  # calm, within budget: kept


def test_module_aware_gossips_its_large_modules_between_aggregations():
    env = _env(extra=["env.episode_rounds=4"])
    policy = make_policy("module-aware")
    obs, info = env.reset(seed=1)
    policy.reset(env, 1)
    gossip_rounds = 0
    for _ in range(4):
        obs, _, _, _, info = env.step(policy.act(obs, info))
        tiers = info["schedule"]["tiers"]
        assert tiers["head"] in ("edge", "cloud")  # small modules: every round
        for t in ("moe", "adapter"):
            assert tiers[t] in ("edge", "d2d_pairs")  # large ones never reach the cloud
            gossip_rounds += tiers[t] == "d2d_pairs"
    assert gossip_rounds > 0


def test_merge_tells_apart_surrogate_fits_and_plans_of_one_name(tmp_path):
    """Runs of two surrogate fits, or of two plans called alike, merged into one row when
    their seeds did not overlap."""
    from hffm_env.baselines.plan import PlanPolicy, RoundPlan
    from hffm_env.config import load_scenario
    from hffm_env.fl.schedule import Tier
    from hffm_env.fl.surrogate import AccuracySurrogate, find_surrogate

    shipped = find_surrogate(load_scenario("small"))
    fits = []
    for k in range(2):
        fit = AccuracySurrogate.load(shipped.path)
        fit.meta["copy"] = k  # the same config, other bytes: another fit
        fits.append(tmp_path / f"fit{k}.pt")
        fit.save(fits[-1])

    def surrogate_run(seed, fit):
        return run_benchmark(lambda: gym.make("hffm/HFFM-v0", fidelity="surrogate",
                                              overrides=["env.episode_rounds=4"],
                                              surrogate=str(fit)),
                             ["never"], seeds=[seed], target_accuracy=0.3, progress=False)

    first = surrogate_run(1000, fits[0])
    assert len(first.settings["surrogate"]) == 16
    assert BenchResult.merge([first, surrogate_run(1001, fits[0])]).seeds == [1000, 1001]
    with pytest.raises(ValueError, match="surrogate '[0-9a-f]+' vs '[0-9a-f]+'"):
        BenchResult.merge([first, surrogate_run(1001, fits[1])])

    cheap = RoundPlan.constant(4).with_tier(0, "moe", Tier.EDGE)
    plans = [PlanPolicy(cheap, name="plan:p"), PlanPolicy(RoundPlan.constant(4), name="plan:p")]
    runs = [run_benchmark(lambda: _env("cost"), [plan], seeds=[1000 + k], progress=False,
                          target_accuracy=0.3) for k, plan in enumerate(plans)]
    with pytest.raises(ValueError, match="plan:p plays something else than plan:p of run 0"):
        BenchResult.merge(runs)


def test_merge_refuses_a_namesake_heuristic_of_other_parameters():
    """Only agents and plans had a fingerprint: two runs of `adaptive`, one of them
    AdaptivePolicy(drift_high=0.5), merged into one row of two different schedules."""
    from hffm_env.baselines.policies import AdaptivePolicy, policy_fingerprint

    assert policy_fingerprint(make_policy("adaptive")) == policy_fingerprint(AdaptivePolicy())
    assert policy_fingerprint(AdaptivePolicy(drift_high=0.5)) != policy_fingerprint(
        AdaptivePolicy())
    assert policy_fingerprint(PeriodicPolicy("x", 1, 2, Route.DIRECT)) != policy_fingerprint(
        PeriodicPolicy("x", 1, 2, Route.D2D_RELAY))
    # parameters held in dicts, or only inside what the constructor built (fixed-grid's grid)
    from hffm_env.baselines.policies import FixedGridPolicy, ModuleAwarePolicy

    assert policy_fingerprint(make_policy("module-aware")) != policy_fingerprint(
        ModuleAwarePolicy(edge_period={"head": 1, "prompt": 1, "encoder": 2, "moe": 8,
                                       "adapter": 4}))
    assert policy_fingerprint(make_policy("fixed-grid")) == policy_fingerprint(
        FixedGridPolicy())
    assert policy_fingerprint(FixedGridPolicy()) != policy_fingerprint(
        FixedGridPolicy(edge_periods=(4,), cloud_periods=(8,)))

    class Weighted(PeriodicPolicy):  # numpy parameters count by their values
        def __init__(self, weights):
            super().__init__("weighted", 1, 2, Route.DIRECT)
            self.weights = weights

    assert policy_fingerprint(Weighted(np.arange(3))) != policy_fingerprint(
        Weighted(np.arange(4)))
    assert policy_fingerprint(Weighted(np.arange(3))) == policy_fingerprint(Weighted([0, 1, 2]))

    def run(seed, policy):
        return run_benchmark(lambda: _env("cost"), [policy], seeds=[seed], progress=False,
                             target_accuracy=0.3)

    default = run(1000, "adaptive")
    assert BenchResult.merge([default, run(1001, AdaptivePolicy())]).seeds == [1000, 1001]
    with pytest.raises(ValueError, match="adaptive plays something else than adaptive of "
                                         "run 0"):
        BenchResult.merge([default, run(1001, AdaptivePolicy(drift_high=0.5))])


def test_an_episode_a_wrapper_cuts_short_is_refused():
    """A TimeLimit below the horizon was scored silently: round 8's accuracy as the final one,
    and merged with whole episodes."""
    with pytest.raises(ValueError, match=r"policy 'never' on seed 1000: the episode was cut "
                       r"after 2 rounds by a wrapper .* \(env.episode_rounds = 4\)"):
        run_benchmark(lambda: gym.wrappers.TimeLimit(_env("cost"), 2), ["never"],
                      seeds=[1000], progress=False)
    with pytest.raises(ValueError, match="policy 'fixed-grid' on seed 1000: tuning "
                       "grid-e1-c2-direct on training seed 0: the episode was cut after 2 rounds"):
        run_benchmark(lambda: gym.wrappers.TimeLimit(_env("cost"), 2), ["fixed-grid"],
                      seeds=[1000], progress=False)
    whole = run_benchmark(lambda: gym.wrappers.TimeLimit(_env("cost"), 4), ["never"],
                          seeds=[1000], progress=False)  # the horizon's own limit cuts nothing
    assert whole.episodes[0].rounds == 4 and whole.episodes[0].end == "rounds"


def test_run_benchmark_wants_a_function_that_builds_the_env():
    env = _env("cost")
    with pytest.raises(TypeError, match="make_env = .*: must be a function that builds"):
        run_benchmark(env, ["never"], seeds=[1000], progress=False)
    env.close()


def test_a_bug_in_a_policy_keeps_its_traceback_and_says_where():
    """A policy's own KeyError came out bare, without the policy or the seed it played."""
    import sys

    class Buggy(Policy):
        name = "buggy"

        def reset(self, env, seed=None):
            pass

        def act(self, obs, info):
            return {}["missing"]

    with pytest.raises(KeyError) as raised:
        run_benchmark(_env, [Buggy()], seeds=[1000], progress=False)
    if sys.version_info >= (3, 11):
        assert raised.value.__notes__ == ["(raised playing policy 'buggy' on seed 1000)"]


def test_a_result_is_labelled_with_its_envs_scenario_and_fidelity():
    """The caller's labels won over the env's: a small cost-fidelity run came out labelled
    paper / train, and merge() trusted the label."""
    with pytest.raises(ValueError, match="scenario = 'paper', but make_env built a 'small' env"):
        run_benchmark(_env, ["never"], seeds=[1000], scenario="paper", progress=False)
    with pytest.raises(ValueError, match="fidelity = 'train', but make_env built a 'cost' env"):
        run_benchmark(_env, ["never"], seeds=[1000], fidelity="train", progress=False)
    result = run_benchmark(_env, ["never"], seeds=[1000], scenario="small", fidelity="cost",
                           progress=False)
    assert (result.scenario, result.fidelity) == ("small", "cost")


@pytest.mark.parametrize(("build", "message"), [
    (lambda: FixedGridPolicy(cloud_periods=("8",)), "cloud_periods[0] = '8': must be an integer"),
    (lambda: FixedGridPolicy(routes=("direct",)), "routes[0] = 'direct': must be a route"),
    (lambda: FixedGridPolicy(routes=(7,)), "routes[0] = 7: must be a route (Route.DIRECT (0)"),
    (lambda: FixedGridPolicy(edge_periods=(4,), cloud_periods=(2,)),
     "fixed-grid: no (edge period, cloud period) pair of edge_periods [4] and cloud_periods"),
    (lambda: FixedGridPolicy(edge_periods=()), "edge_periods = (): must be a non-empty"),
    (lambda: PeriodicPolicy("p", 1.5, 2, Route.DIRECT), "p: edge_period = 1.5: must be an"),
    (lambda: AdaptivePolicy(
        drift_high="x"), "adaptive: drift_high = 'x': must be a finite number"),
    (lambda: AdaptivePolicy(
        drift_high=0.01, drift_low=0.5), "drift_low = 0.5 exceeds drift_high = 0.01"),
    (lambda: ModuleAwarePolicy(
        edge_period={"head": 1, "bogus": 3}), "unknown ['bogus']"),
    (lambda: ModuleAwarePolicy(
        cloud_period={}), "module-aware: cloud_period = {}: must give every module type"),
])
def test_a_baseline_of_bad_parameters_is_refused_when_made(build, message):
    """They failed later, deep inside: a str period in a comparison, a str route's .name,
    numpy on a str threshold; inverted thresholds and an empty dict (the defaults) were
    played silently."""
    with pytest.raises(ValueError) as raised:
        build()
    assert message in str(raised.value)


def test_routes_may_be_given_by_their_integer_values():
    assert PeriodicPolicy("p", 1, 2, np.int64(1)).route is Route.D2D_RELAY
    assert FixedGridPolicy(routes=(0, 1)).grid == FixedGridPolicy().grid


def test_fixed_grid_searches_again_under_another_fidelity_or_reward():
    """Its fit was keyed on the config alone: a search under cost fidelity's returns was
    played under the surrogate's, or under another reward, as if it were theirs."""
    policy = FixedGridPolicy(edge_periods=(1,), cloud_periods=(2,), routes=(Route.DIRECT,))
    cost = make_tiny_env()
    policy.fit(cost, lambda env, candidate, seed: 0.0)
    assert policy.fitted_for(cost) and policy.fitted_for(make_tiny_env())
    assert not policy.fitted_for(make_tiny_env(fidelity="train"))
    assert not policy.fitted_for(make_tiny_env(reward="spend-to-target",
                                               extra=["env.target_accuracy=0.3"]))


def test_fixed_grid_searches_again_under_another_custom_reward_of_the_same_name():
    """Its search key named a custom reward by module and qualname: a search under one lambda
    was taken for another's."""
    def rewards():  # two callables of one module and qualname
        return [lambda inputs, cost_range, weights: 0.0, lambda inputs, cost_range, weights: 1.0]

    first, second = rewards()
    policy = FixedGridPolicy(edge_periods=(1,), cloud_periods=(2,), routes=(Route.DIRECT,))
    env = make_tiny_env(reward=first)
    policy.fit(env, lambda env, candidate, seed: 0.0)
    assert policy.fitted_for(env) and policy.fitted_for(make_tiny_env(reward=first))
    assert not policy.fitted_for(make_tiny_env(reward=second))


def test_bench_leaves_the_surrogate_warning_filter_as_it_was():
    """``warnings.simplefilter("ignore", SurrogateMismatch)`` outlived `hffm bench`: a
    notebook that called main() saw no later mismatch."""
    import warnings

    before = list(warnings.filters)
    assert hffm_main(["bench", "--scenario", "small", "--fidelity", "surrogate", "--policies",
                      "never", "--seeds", "1000", "--no-progress",
                      "--set", "env.episode_rounds=2"]) == 0
    assert warnings.filters == before


def _two_rounds(policy, seed):
    return _episode(policy, [0.2, 0.2], [0.0, 0.0], seed=seed)


def _run(episodes, seeds, interrupted=False, fingerprints=None):
    return BenchResult(scenario="small", fidelity="cost", seeds=seeds, target_accuracy=0.3,
                       summaries=summarise(episodes, 0.3), episodes=episodes,
                       interrupted=interrupted, fingerprints=fingerprints or {})


def test_a_merge_is_interrupted_only_while_an_interrupted_runs_episodes_are_missing():
    """`interrupted` stuck to every merge of an interrupted run, its gaps filled or not (and
    no verdict was given on it), and fingerprints of rows that never played refused merges."""
    cut = _run([_two_rounds("star", 0)], [0, 1], interrupted=True,
               fingerprints={"star": "a", "never": "b"})
    assert BenchResult.merge([cut]).interrupted
    rest = _run([_two_rounds("star", 1), _two_rounds("never", 0), _two_rounds("never", 1)], [0, 1],
                fingerprints={"star": "a", "never": "b"})
    whole = BenchResult.merge([cut, rest])
    assert not whole.interrupted and whole.fingerprints == {"star": "a", "never": "b"}
    partly = BenchResult.merge([cut, _run([_two_rounds("star", 1)], [1],
                                          fingerprints={"star": "a"})])
    assert partly.interrupted and partly.fingerprints == {"star": "a", "never": "b"}
    # a namesake of other parameters that the interrupted run never played: no conflict,
    # and no episode of what it was to play either (its gap stays)
    other = _run([_two_rounds("never", 0), _two_rounds("never", 1), _two_rounds("star", 1)],
                 [0, 1], fingerprints={"never": "c", "star": "a"})
    namesake = BenchResult.merge([cut, other])
    assert namesake.fingerprints == {"star": "a", "never": "c"} and namesake.interrupted
    # merged twice, or written and read back, the gap stays: its seeds are kept
    once = BenchResult.merge([cut])
    assert once.seeds == [0, 1]
    assert BenchResult.merge([once, _run([_two_rounds("never", 0)], [0],
                                         fingerprints={"never": "b"})]).interrupted


@pytest.mark.parametrize(("edit", "message"), [
    (lambda e: e.update(accuracy=[], accuracy_per_task=[], latency_s=[], energy_j=[],
                        rewards=[]), "episodes[0].latency_s = []: must have one entry a round"),
    (lambda e: e.update(accuracy_per_task=[]), "episodes[0].accuracy_per_task = []: must have"),
    (lambda e: e.update(accuracy_per_task=[{"vqa": 5.0}] * 2),
     "must be a list of task -> accuracy in 0..1"),
    (lambda e: e.update(accuracy_local=[0.1]), "episodes[0].accuracy_local = [0.1]: must have"),
    (lambda e: e.update(seed=True), "episodes[0].seed = True: must be an integer"),
])
def test_a_bench_file_of_malformed_episodes_names_the_field(tmp_path, edit, message):
    data = _run([_two_rounds("star", 0)], [0]).to_dict()
    edit(data["episodes"][0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(message)):
        BenchResult.read_json(path)


def test_from_json_keeps_only_the_kept_rows_fingerprints_and_names_a_row_it_would_drop(
        tmp_path, capsys):
    both = tmp_path / "both.json"
    _run([_two_rounds("star", 0), _two_rounds("never", 0), _two_rounds("never", 1)], [0, 1],
         fingerprints={"star": "a", "never": "b"}).write_json(both)
    star = tmp_path / "star.json"
    assert hffm_main(["bench", "--from-json", str(both), "--policies", "star",
                      "--json", str(star)]) == 0
    assert BenchResult.read_json(star).fingerprints == {"star": "a"}
    capsys.readouterr()
    # star has no episode on seed 1: its row vanished without a word
    assert hffm_main(["bench", "--from-json", str(both), "--policies", "star,never",
                      "--seeds", "1"]) == 2
    assert "the files hold no episode of 'star' on --seeds 1; leave it out" in \
        capsys.readouterr().err
    assert hffm_main(["bench", "--from-json", str(both), "--seeds", "1"]) == 2  # (all rows)
    assert "no episode of 'star' on --seeds 1" in capsys.readouterr().err
    # an interrupted run whose kept episodes are none still has its gap
    cut = tmp_path / "cut.json"
    _run([_two_rounds("star", 0)], [0, 1], interrupted=True,
         fingerprints={"star": "a", "never": "b"}).write_json(cut)
    rest = tmp_path / "rest.json"
    _run([_two_rounds("star", 1)], [1], fingerprints={"star": "a"}).write_json(rest)
    merged = tmp_path / "merged.json"
    assert hffm_main(["bench", "--from-json", str(cut), str(rest), "--seeds", "1",
                      "--policies", "star", "--json", str(merged)]) == 0
    assert not BenchResult.read_json(merged).interrupted  # (star on 1: no gap left)
    capsys.readouterr()
    assert hffm_main(["bench", "--from-json", str(cut), str(rest), "--seeds", "1",
                      "--policies", "star,never"]) == 2  # never: never played
    assert "--policies has 'never': the files hold ['star']" in capsys.readouterr().err
