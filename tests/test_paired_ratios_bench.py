"""benchmarks/paired_ratios.py on committed bench JSON: the runner's seed-by-seed rows, per
run, in a table, JSON and a figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hffm_env.arguments import run_command
from hffm_env.baselines.runner import BenchResult, paired_energy_to_target

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/results"
RUNS = [str(RESULTS / "small4_ppo_plan_more_seeds1009-1017.json"),
        str(RESULTS / "small4_ppo_plan_splits1009-1017.json")]


@pytest.fixture
def paired_ratios(benchmark_script):
    return benchmark_script("paired_ratios")


def test_each_run_gets_the_runners_rows_for_the_policies_asked(paired_ratios, tmp_path,
                                                                capsys):
    out, plot = tmp_path / "p.json", tmp_path / "p.png"
    plan = "plan:plan_search_small4"
    assert paired_ratios.main([*RUNS, "--labels", "training split", "own splits",
                               "--policies", plan, "--json", str(out), "--plot",
                               str(plot)]) == 0
    written = json.loads(out.read_text())
    assert written["against"] == "hffm-d2d-e2" and written["target_ratio"] == 0.7
    assert [run["label"] for run in written["runs"]] == ["training split", "own splits"]
    for run, path in zip(written["runs"], RUNS):
        (row,) = [r for r in paired_energy_to_target(BenchResult.read_json(path),
                                                     "hffm-d2d-e2") if r.policy == plan]
        assert run["rows"] == [{**row.__dict__}]
    # the plan's lead on the training split holds seed by seed; on its own splits it does not
    first, second = (run["rows"][0] for run in written["runs"])
    assert first["high"] < 1 and second["low"] < 1 < second["high"]
    out = capsys.readouterr().out
    assert "| plan:plan_search_small4 | 9 | 0.821 | 0.751-0.897 | 9/9 |" in out
    # ... and every run in one table: a row each, with k/n where both did not reach it always
    assert "| training split | 0.821 (0.751-0.897) |" in out
    assert "| own splits | 0.899 (0.764-1.059) |" in out
    agent = "agent:ppo-coarse-stt-plan-4clusters_s0"  # missed the target on split 1012
    matrix = paired_ratios.format_matrix(
        paired_ratios.paired_runs(RUNS, "hffm-d2d-e2", ["a", "b"], [agent]), "hffm-d2d-e2")
    assert f"| against hffm-d2d-e2, seed by seed | {agent} |" in matrix
    # ... saying who missed it: a seed the agent missed is out of its ratio, which flatters it
    assert "| a | 0.835 (0.746-0.935) |" in matrix
    assert "| b | 0.926 (0.785-1.092), 8/9 (missed on 1) |" in matrix
    assert plot.stat().st_size > 10_000


def test_bad_labels_and_policies_are_refused_by_name(paired_ratios, capsys):
    assert run_command(lambda: paired_ratios.main([*RUNS, "--labels", "one"]),
                       "paired_ratios.py") == 2
    assert "--labels: 1 labels for 2 files" in capsys.readouterr().err
    assert run_command(lambda: paired_ratios.main([*RUNS, "--policies", "star"]),
                       "paired_ratios.py") == 2
    assert f"--policies 'star': not in {RUNS[0]} against hffm-d2d-e2" in \
        capsys.readouterr().err
    assert run_command(lambda: paired_ratios.main([RUNS[0], "--against", "star"]),
                       "paired_ratios.py") == 2
    assert f"{RUNS[0]}: --against 'star': not a policy of this run (it has [" in \
        capsys.readouterr().err


def test_a_run_without_a_target_is_refused_not_shown_empty(paired_ratios, tmp_path, capsys):
    """Its row was printed with every cell empty."""
    bench = json.loads(Path(RUNS[0]).read_text())
    path = tmp_path / "untargeted.json"
    path.write_text(json.dumps({**bench, "target_accuracy": None}))
    assert run_command(lambda: paired_ratios.main([str(path)]), "paired_ratios.py") == 2
    assert "untargeted.json: target_accuracy = null: the run has no target accuracy" in \
        capsys.readouterr().err
