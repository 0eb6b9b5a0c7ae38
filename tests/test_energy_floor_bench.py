"""benchmarks/energy_floor.py on a committed bench JSON: the floor is a floor."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs/results/small_ppo_vs_baselines.json"


@pytest.fixture
def energy_floor(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import energy_floor

    yield energy_floor
    del sys.modules["energy_floor"]


def test_no_policy_reaches_the_target_below_the_floor(energy_floor):
    bench = json.loads(BENCH.read_text())
    result = energy_floor.energy_floor(bench, "hffm-d2d-e2")
    checked = 0
    for episode in bench["episodes"]:
        reached = energy_floor.first_reached(episode["accuracy"], bench["target_accuracy"])
        if reached is not None:
            spent = sum(episode["energy_j"][:reached + 1])
            assert spent >= result["seeds"][str(episode["seed"])]["floor_j"] - 1e-9, episode
            checked += 1
    assert checked >= 3 * 8  # the hierarchical schedules and agents on every seed
    assert result["target_energy_j"] == pytest.approx(0.7 * result["best_energy_to_target_j"])


def test_a_run_without_never_is_refused_by_name(energy_floor, tmp_path, capsys):
    bench = json.loads(BENCH.read_text())
    bench["episodes"] = [e for e in bench["episodes"] if e["policy"] != "never"]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bench))
    from hffm_env.arguments import run_command

    assert run_command(lambda: energy_floor.main([str(path)]), "energy_floor.py") == 2
    assert "'never' episode" in capsys.readouterr().err


@pytest.mark.parametrize(("edit", "said"), [
    # a seed of text passed as another seed; text as energies failed in float() with
    # Python's words; a run without a target said no policy reached one
    (lambda e: e.update(seed="3"), "episodes[0].seed = '3': must be an integer"),
    (lambda e: e.update(energy_j="abc"), "episodes[0].energy_j = 'abc': must be a list of"),
    (None, "target_accuracy = null: the run has no target accuracy"),
    # policy summaries were not checked: a traceback from PolicySummary() or from the plot
    ("policies", "policies[0].episodes = 'missing': must be a count"),
])
def test_a_hand_edited_bench_is_refused_naming_the_field(energy_floor, tmp_path, capsys,
                                                         edit, said):
    bench = json.loads(BENCH.read_text())
    if edit is None:
        bench["target_accuracy"] = None
    elif edit == "policies":
        bench["policies"][0] = {"policy": bench["policies"][0]["policy"]}
    else:
        edit(bench["episodes"][0])
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bench))
    from hffm_env.arguments import run_command

    assert run_command(lambda: energy_floor.main([str(path)]), "energy_floor.py") == 2
    assert f"b.json: {said}" in capsys.readouterr().err


def test_a_best_baseline_that_missed_a_seed_is_named_not_silently_dropped(energy_floor,
                                                                         tmp_path, capsys):
    # the printout ended at the floor and the plot lost both lines, without a word why
    bench = json.loads(BENCH.read_text())
    missed = next(e for e in bench["episodes"] if e["policy"] == "hffm-d2d-e2")
    missed["accuracy"] = [0.0 if a is not None else None for a in missed["accuracy"]]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bench))
    result = energy_floor.energy_floor(bench, "hffm-d2d-e2")
    assert result["best_missed_seeds"] == [missed["seed"]]
    assert result["best_energy_to_target_j"] is None and result["target_energy_j"] is None
    assert energy_floor.main([str(path)]) == 0
    assert (f"hffm-d2d-e2 missed the target on seed(s) {missed['seed']}"
            in capsys.readouterr().out)


def test_energy_to_target_plot(energy_floor, tmp_path):
    path = tmp_path / "energy_to_target.png"
    assert energy_floor.main([str(BENCH), "--plot", str(path)]) == 0
    assert path.stat().st_size > 10_000


@pytest.mark.parametrize("script, args, shown", [
    ("energy_floor.py", ["docs/results/small4_ppo_plan_energy.json"], "mean floor 13.3 J"),
    ("tradeoff.py", ["--from-json", "docs/results/tradeoff_small.json"], "| star |"),
    ("paired_ratios.py", ["docs/results/small4_ppo_plan_9seeds.json"], "seed by seed"),
])
def test_json_to_stdout_is_json_alone(script, args, shown):
    # the table was printed to stdout before the JSON: `script --json | jq` failed
    import subprocess

    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert isinstance(json.loads(run.stdout), dict)
    assert shown in run.stderr  # what people read is still shown, on stderr
