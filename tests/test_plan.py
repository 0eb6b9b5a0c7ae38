"""Round plans (hffm_env.baselines.plan), their search (benchmarks/plan_search.py), cloning
them into a PPO policy (train_agent.py --imitate) and playing them in hffm bench (--plan)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from hffm_env.baselines.plan import PlanPolicy, RoundPlan
from hffm_env.config import MODULE_TYPES
from hffm_env.fl.schedule import Route, Tier

ROOT = Path(__file__).resolve().parents[1]
MENU = (1, 2, 4, 8, 0)


def _plan() -> RoundPlan:
    """Round 0: MoE at the edge, encoder nowhere, the rest at the cloud; then cloud."""
    return (RoundPlan.constant(3).with_tier(0, "moe", Tier.EDGE)
            .with_tier(0, "encoder", Tier.NONE))


@pytest.fixture
def plan_file(tmp_path) -> Path:
    """:func:`_plan` as plan_search.py writes it (under ``"plan"``), in ``cheap.json``."""
    path = tmp_path / "cheap.json"
    path.write_text(json.dumps({"plan": _plan().to_dict()}))
    return path


def test_a_plan_round_is_a_coarse_action_with_periods_0_and_1():
    plan = _plan()
    a0 = plan.coarse_action(0, MENU, num_clusters=4)
    k = len(MODULE_TYPES)
    edge = {t: MENU[i] for t, i in zip(MODULE_TYPES, a0[:k])}
    cloud = {t: MENU[i] for t, i in zip(MODULE_TYPES, a0[k:2 * k])}
    assert edge == {**dict.fromkeys(MODULE_TYPES, 0), "moe": 1}
    assert cloud == {**dict.fromkeys(MODULE_TYPES, 1), "moe": 0, "encoder": 0}
    assert list(a0[2 * k:]) == [int(Route.D2D_RELAY)] * 4
    # past the end the last round repeats: every type at the cloud
    last = plan.coarse_action(10, MENU, num_clusters=4)
    assert [MENU[i] for i in last[k:2 * k]] == [1] * k


def test_the_wrapper_plays_what_the_plan_says(tmp_path):
    """Through CoarseActions, round 0 of the plan aggregates exactly its tiers."""
    import gymnasium as gym

    import hffm_env  # noqa: F401
    from hffm_env.wrappers import CoarseActions

    env = CoarseActions(gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost"))
    env.reset(seed=0)
    plan = _plan()
    schedule = env.unwrapped.decode(env.action(plan.coarse_action(0, MENU, 4)))[0]
    assert dict(schedule.tiers) == plan.round_tiers(0)


def test_json_round_trip_and_bad_files_are_named(tmp_path):
    plan = _plan()
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"plan": plan.to_dict()}))
    assert RoundPlan.read(path) == plan
    bad = plan.to_dict()
    bad["tiers"][1]["moe"] = "d2d_pairs"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"tiers\[1\]\.moe = 'd2d_pairs': allowed"):
        RoundPlan.read(path)
    path.write_text(json.dumps({**plan.to_dict(), "route": "carrier-pigeon"}))
    with pytest.raises(ValueError, match="route = 'carrier-pigeon'"):
        RoundPlan.read(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        RoundPlan.read(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        RoundPlan.read(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="periods 0 and 1"):
        plan.coarse_action(0, (2, 4), 4)


def test_plan_policy_plays_the_cloud_every_round_schedule_like_hffm_d2d_e1():
    """The constant cloud plan is hffm-d2d-e1: the same energies, round by round."""
    import gymnasium as gym

    import hffm_env  # noqa: F401
    from hffm_env.baselines.calibrate import cloud_every_round_schedules
    from hffm_env.baselines.runner import run_episode

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=["env.episode_rounds=4"])
    plan = run_episode(env, PlanPolicy(RoundPlan.constant(4)), seed=3)
    e1 = run_episode(env, cloud_every_round_schedules()[0], seed=3)
    assert plan.energy_j == e1.energy_j
    cheap = run_episode(env, PlanPolicy(_plan()), seed=3)
    assert cheap.energy_j[0] < e1.energy_j[0] and cheap.energy_j[1:] == e1.energy_j[1:]


def test_the_lever_options_play_the_plan_with_cheaper_routes_and_idle_gossip():
    """cheapest_routes picks, per cluster, a route and an available head that the cost model
    prices no dearer than the plan's; gossip_idle turns on pair exchange exactly for the
    module types the plan leaves at tier none, with partners; neither changes the tiers."""
    import gymnasium as gym

    import hffm_env  # noqa: F401
    from hffm_env.baselines.plan import cheapest_routes
    from hffm_env.fl.schedule import Schedule

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=["env.episode_rounds=3"])
    base = env.unwrapped
    obs, info = env.reset(seed=5)
    tiers = _plan().round_tiers(0)
    c = base.layout.num_clusters
    heads = [int(h) for h in base.network.heads]
    routes, chosen = cheapest_routes(base.engine, base.network, tiers, [Route.D2D_RELAY] * c,
                                     heads)

    def price(rs, hs):
        return base.engine.price_schedule(Schedule(tiers=tiers, routes=tuple(rs),
                                                   heads=tuple(hs)), with_compute=False).energy_j

    assert price(routes, chosen) <= price([Route.D2D_RELAY] * c, heads)
    for k, head in enumerate(chosen):
        assert head in base.network.available_members(k)
    for cheap, gossip in ((True, False), (False, True)):
        policy = PlanPolicy(_plan(), cheapest_routes=cheap, gossip_idle=gossip)
        obs, info = env.reset(seed=5)
        policy.reset(env, 5)
        action = policy.act(obs, info)
        layout = base.layout
        named = dict(zip(layout.slot_names, action, strict=True))
        idle = {t for t, tier in tiers.items() if tier == Tier.NONE}
        assert {t for t in MODULE_TYPES if named[f"pair_exchange/{t}"]} == (idle if gossip
                                                                            else set())
        assert any(named[n] for n in layout.slot_names if n.startswith("partner/")) == gossip
        if cheap:
            assert [Route(int(named[f"route/{k}"])) for k in range(c)] == routes
        obs, _, _, _, info = env.step(action)
        assert {t: Tier[v.upper()] if isinstance(v, str) else Tier(v)
                for t, v in info["schedule"]["tiers"].items() if t not in idle} == {
            t: tier for t, tier in tiers.items() if t not in idle}


def _lever_bench(module: str, argv: list[str], tmp_path, monkeypatch) -> dict:
    """The JSON of a lever benchmark (``benchmarks/<module>.py``) run with ``argv``; the
    benchmark modules (cloud_clusters imports action_levers) are unloaded afterwards."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    out = tmp_path / f"{module}.json"
    try:
        bench = importlib.import_module(module)
        assert bench.main([*argv, "--no-progress", "--json", str(out)]) == 0
    finally:
        for name in (module, "action_levers"):
            sys.modules.pop(name, None)
    return json.loads(out.read_text())


def test_action_levers_bench_prices_each_lever_against_the_plan(tmp_path, monkeypatch,
                                                                 plan_file):
    levers = _lever_bench("action_levers", ["--plan", str(plan_file), "--seeds", "1000",
                                            "1001", "--set", "env.episode_rounds=3"],
                          tmp_path, monkeypatch)["levers"]
    assert list(levers) == ["plan", "plan+cheapest-routes", "plan+gossip", "never"]
    assert levers["never"]["energy_per_round_j"]["mean"] > 0.5  # local training is charged
    assert levers["plan"]["transfers_per_round_j"]["mean"] > 0.5
    # choosing routes and heads by the cost model never costs more than the plan's route;
    # gossip only adds D2D transfers
    assert levers["plan+cheapest-routes"]["change_vs_plan_j"]["mean"] <= 0.0
    assert levers["plan+gossip"]["change_vs_plan_j"]["mean"] >= 0.0


def test_the_lever_summary_of_an_interrupted_run_keeps_the_seeds_that_finished(monkeypatch):
    # Ctrl-C left the plan without seed 1: the summary raised a KeyError and nothing was written
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import action_levers

    try:
        episodes = [SimpleNamespace(policy=name, seed=seed, energy_j=[energy])
                    for name, seed, energy in (("plan", 0, 5.0), ("never", 0, 2.0),
                                               ("plan+gossip", 0, 5.5), ("never", 1, 2.0),
                                               ("plan+gossip", 1, 5.5))]
        levers = action_levers.lever_summary(episodes)
    finally:
        del sys.modules["action_levers"]
    assert levers["plan+gossip"]["change_vs_plan_j"] == {"mean": 0.5, "std": 0.0}
    assert levers["plan+gossip"]["change_vs_plan_transfers_pct"]["mean"] == pytest.approx(
        100 * 0.5 / 3.0)


def test_action_levers_bench_names_a_bad_plan(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import action_levers

    try:
        with pytest.raises(SystemExit):
            action_levers.main(["--plan", str(tmp_path / "missing.json")])
    finally:
        del sys.modules["action_levers"]
    assert "--plan" in capsys.readouterr().err


@pytest.fixture
def search_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import plan_search

    yield plan_search
    del sys.modules["plan_search"]
    sys.modules.pop("fixed_schedule_search", None)


@pytest.mark.slow
def test_search_only_accepts_cheaper_plans_and_writes_one_that_reads_back(search_module,
                                                                          tmp_path):
    out = tmp_path / "plan.json"
    assert search_module.main(["--target-accuracy", "0.357", "--seeds", "0", "--rounds", "3",
                               "--max-passes", "1", "--heldout-seeds", "1000",
                               "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    energies = [s["energy_to_target_j"] for s in result["steps"]]
    assert result["steps"][0]["change"] == "start (hffm-d2d-e1)" and math.isfinite(energies[0])
    assert all(b < a for a, b in zip(energies, energies[1:])), energies
    assert len(energies) > 1  # the cloud-every-round start is not the cheapest on seed 0
    plan = RoundPlan.read(out)
    assert len(plan.tiers) == 3
    assert [p["policy"] for p in result["heldout"]["policies"]] == [
        "best-plan", "hffm-d2d-e1", "hffm-d2d-e2"]
    # which fit it searched on (a local calibration is found before the shipped one), and
    # that one pass with changes in it stopped at the cap, not where nothing changed
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import find_surrogate

    assert result["surrogate"] == find_surrogate(load_scenario("small")).record
    assert result["surrogate"]["digest"] != "in memory" and result["converged"] is False


def test_a_baseline_as_a_start_plays_its_tiers(search_module):
    import argparse

    from fixed_schedule_search import env_factory

    make = env_factory(argparse.Namespace(scenario="small", overrides=[]))
    plan, label = search_module.plan_of_policy(make("cost"), "hffm-d2d-e2", 4)
    # edge every round, cloud every second round, over D2D relay
    assert [set(row) for row in plan.tiers] == [{Tier.EDGE}, {Tier.CLOUD}] * 2
    assert plan.route == Route.D2D_RELAY and plan.name == "best-plan"
    assert label == "hffm-d2d-e2"
    # a direct-route baseline's tiers are played over the D2D relay too, and say so (the
    # start was named hffm-e2 at hffm-d2d-e2's price)
    plan, label = search_module.plan_of_policy(make("cost"), "hffm-e2", 4)
    assert [set(row) for row in plan.tiers] == [{Tier.EDGE}, {Tier.CLOUD}] * 2
    assert label == "hffm-e2's tiers over the D2D relay"


def test_a_baselines_start_is_played_where_the_search_runs(search_module, monkeypatch, capsys):
    """--start adaptive was played in cost fidelity, which measures no accuracy: adaptive
    played its cloud every 4th round there and every 2nd on the surrogate searched."""
    played_in = []

    def record(make_env, name, rounds):
        env = make_env()
        played_in.append(env.unwrapped.fidelity)
        env.close()
        raise ValueError("recorded")

    monkeypatch.setattr(search_module, "plan_of_policy", record)
    with pytest.raises(SystemExit):
        search_module.main(["--target-accuracy", "0.357", "--start", "adaptive"])
    assert played_in == ["surrogate"] and "--start adaptive: recorded" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--target-accuracy", "0.357", "--seeds", "1000"], "--seeds [1000]"),
    (["--target-accuracy", "0"], "--target-accuracy 0"),
    (["--target-accuracy", "0.357", "--rounds", "0"], "--rounds: 0"),
    # more rounds than the episode has: --start's tiers were played past its end (a crash)
    (["--target-accuracy", "0.357", "--rounds", "17", "--start", "hffm-d2d-e2"],
     "--rounds 17: the episode has 16 rounds"),
    (["--target-accuracy", "0.357", "--start", "nowhere.json", "--heldout-seeds"],
     "--start: plan 'nowhere.json': no such file"),
])
def test_bad_arguments_are_named(search_module, capsys, argv, message):
    with pytest.raises(SystemExit):
        search_module.main(argv)
    assert message in capsys.readouterr().err


def test_cloning_makes_the_policy_play_the_plan(tmp_path, plan_file, capsys):
    """After cloning (and no PPO step that changes it), the deterministic agent plays the
    plan's actions round by round, and a bad --imitate is refused before any work. A plan
    searched on other settings gets a note naming them, as hffm bench --plan gives (it got
    none)."""
    from hffm_env.agents.command import main as train_main
    from hffm_env.agents.ppo import AgentPolicy

    out = tmp_path / "run"
    recorded = json.loads(plan_file.read_text())
    plan_file.write_text(json.dumps({**recorded, "scenario": "small",
                                     "overrides": ["env.episode_rounds=8"]}))
    assert train_main(["--scenario", "small", "--fidelity", "cost", "--action-mode", "coarse",
                       "--algo", "ppo", "--total-timesteps", "8", "--n-steps", "8",
                       "--learning-rate", "0", "--imitate", str(plan_file),
                       "--imitate-rounds", "64", "--episode-rounds", "4", "--eval-seeds",
                       "1000", "--eval-policies", "never", "--no-progress",
                       "--out", str(out)]) == 0
    assert f"note: the plan {plan_file} was searched with env.episode_rounds=8 (here 4)" in \
        capsys.readouterr().err
    import gymnasium as gym

    import hffm_env  # noqa: F401
    from hffm_env.wrappers import CoarseActions

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=["env.episode_rounds=4"])
    agent = AgentPolicy(out)
    obs, info = env.reset(seed=1000)
    agent.reset(env, 1000)
    coarse = CoarseActions(env)
    for r in range(4):
        action = agent.act(obs, info)
        assert np.array_equal(action, coarse.action(_plan().coarse_action(r, MENU, 4))), r
        obs, _, _, _, info = env.step(action)


@pytest.mark.parametrize("extra, message", [
    (["--action-mode", "full"], "no --resume); here --action-mode full"),
    (["--action-mode", "coarse", "--imitate", "missing.json"], "no such file"),
])
def test_bad_imitate_is_one_error_line(tmp_path, capsys, extra, message):
    from hffm_env.agents.command import main as train_main

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(_plan().to_dict()))
    argv = ["--imitate", str(plan_file), *extra, "--out", str(tmp_path / "run")]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_hffm_bench_plays_a_plan_and_names_a_bad_one(tmp_path, capsys, plan_file):
    from hffm_env.cli import main as hffm

    out = tmp_path / "bench.json"
    assert hffm(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
                 "--plan", str(plan_file), "--policies", "never", "--no-progress",
                 "--json", str(out)]) == 0
    assert [p["policy"] for p in json.loads(out.read_text())["policies"]] == [
        "plan:cheap", "never"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tiers": []}))
    assert hffm(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
                 "--plan", str(bad), "--no-progress"]) == 2
    assert "--plan: plan" in capsys.readouterr().err


def test_hffm_bench_with_no_baseline_runs_only_the_plan(tmp_path, capsys, plan_file):
    """``--policies ''`` leaves the baselines out (a plan or agent alone), and with nothing
    else to run it is one error line."""
    from hffm_env.cli import main as hffm

    out = tmp_path / "bench.json"
    assert hffm(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
                 "--plan", str(plan_file), "--policies", "", "--no-progress",
                 "--json", str(out)]) == 0
    assert [p["policy"] for p in json.loads(out.read_text())["policies"]] == ["plan:cheap"]
    assert hffm(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
                 "--policies", "", "--no-progress"]) == 2
    assert "nothing to run" in capsys.readouterr().err


def test_hffm_bench_notes_a_plan_searched_on_other_settings(tmp_path, capsys):
    """Agents got a note when benched elsewhere than trained; plans played silently."""
    from hffm_env.cli import main as hffm

    searched = Path(__file__).resolve().parents[1] / "docs/results/plan_search_small4.json"
    args = ["bench", "--fidelity", "cost", "--seeds", "1000", "--plan", str(searched),
            "--policies", "", "--no-progress"]
    assert hffm([*args, "--scenario", "small"]) == 0
    assert "note" not in capsys.readouterr().err
    assert hffm([*args, "--scenario", "small", "--set", "fl.local_steps=2"]) == 0
    assert ("plan:plan_search_small4 was searched with fl.local_steps=4 (here 2)"
            in capsys.readouterr().err)


def test_cloud_clusters_bench_saves_each_rules_cloud_hops(tmp_path, monkeypatch, plan_file):
    result = _lever_bench("cloud_clusters", ["--plan", str(plan_file), "--seeds", "1000",
                                             "1001", "--set", "env.episode_rounds=4"],
                          tmp_path, monkeypatch)
    change = {name: row["change_vs_plan_j"]["mean"] for name, row in result["levers"].items()}
    assert list(change) == ["plan", "plan-1-out-rotating", "plan-1-out-from-round-4",
                            "plan-1-out-costliest", "plan-2-out-rotating", "never"]
    # a cluster out of a cloud round skips its cloud hops; the costliest one saves the most of
    # the one-out rules, two out save more; from round 4 on, only the last round saves
    assert change["plan-1-out-costliest"] <= change["plan-1-out-rotating"] < 0.0
    assert change["plan-2-out-rotating"] < change["plan-1-out-rotating"]
    assert change["plan-1-out-rotating"] < change["plan-1-out-from-round-4"] < 0.0
    assert change["never"] < change["plan-2-out-rotating"]
    # the env played what the rule chose: from round 4 on, the first three rounds as the plan
    episodes = {(e["policy"], e["seed"]): e for e in result["bench"]["episodes"]}
    assert episodes[("plan", 1000)]["energy_j"][3] > \
        episodes[("plan-1-out-from-round-4", 1000)]["energy_j"][3]
    assert episodes[("plan", 1000)]["energy_j"][:3] == \
        episodes[("plan-1-out-from-round-4", 1000)]["energy_j"][:3]


def test_plan_policies_and_files_name_what_is_wrong(tmp_path):
    """A path for a plan failed deep in act; deep nesting escaped as a RecursionError."""
    from hffm_env.baselines.plan import PlanPolicy, RoundPlan

    with pytest.raises(TypeError, match="must be a RoundPlan .*RoundPlan.read"):
        PlanPolicy("plan.json")
    nested = tmp_path / "deep.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        RoundPlan.read(nested)
    plan = RoundPlan.constant(3)  # bare TypeErrors, or a silently short action, before
    with pytest.raises(ValueError, match="round_index = '0': must be an integer >= 0"):
        plan.round_tiers("0")
    with pytest.raises(ValueError, match="rounds = '3': must be an integer >= 1"):
        RoundPlan.constant("3")
    with pytest.raises(ValueError, match="num_clusters = -1: must be an integer >= 1"):
        plan.coarse_action(0, (1, 0), num_clusters=-1)
    assert plan.round_tiers(10) == plan.round_tiers(2)  # past the end: the last round


def test_adaptive_names_a_menu_without_a_finite_period():
    import gymnasium as gym

    from hffm_env.baselines.policies import make_policy

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides=["env.period_menu=[0]"])
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"period_menu = \[0\] has no finite period"):
        make_policy("adaptive").reset(env, 0)


def test_the_plan_searched_on_the_shipped_fit_replays_its_held_out_episode(tmp_path):
    """docs/results/plan_search_small4_refit.json was searched on the shipped fit (refitted on
    2026-12-07): its held-out surrogate episode of seed 1000 is what the fit plays today (a
    later refit would leave the committed search, and the README's 29%, stale)."""
    import json

    from hffm_env.cli import main as hffm

    searched = Path(__file__).resolve().parents[1] / "docs/results/plan_search_small4_refit.json"
    out = tmp_path / "replay.json"
    assert hffm(["bench", "--scenario", "small", "--fidelity", "surrogate", "--seeds", "1000",
                 "--plan", str(searched), "--policies", "", "--json", str(out),
                 "--no-progress"]) == 0
    (played,) = json.loads(out.read_text())["episodes"]
    (committed,) = [e for e in json.loads(searched.read_text())["heldout"]["episodes"]
                    if e["policy"] == "best-plan" and e["seed"] == 1000]
    for key in ("accuracy", "energy_j"):
        assert np.allclose(played[key], committed[key], rtol=0, atol=1e-9), key
