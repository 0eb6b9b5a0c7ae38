"""benchmarks/split_predictability.py on committed bench JSON: each split's summary against
the policies' accuracy there, scored leave one split out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs/results"
SPLITS = str(RESULTS / "small4_ppo_plan_splits1000-1008.json")  # nine splits, one per seed
MERGED_OLDER = str(RESULTS / "small4_ppo_plan_term_seeds1000-1008.json")  # older episodes in
NO_SETTINGS = str(RESULTS / "small4_ppo_plan_more_seeds1009-1017.json")  # an older file


@pytest.fixture
def bench(benchmark_script):
    return benchmark_script("split_predictability")


def test_leave_one_out_finds_a_planted_relation_and_none_where_there_is_none(bench):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    x[:, 3] = 1.0  # a feature that does not vary is left out, not divided by 0
    planted = 0.4 + 0.05 * x[:, 1] + rng.normal(scale=0.002, size=30)
    error = planted - bench.leave_one_out(x, planted)
    # (the ridge shrinks the weight a little: most, not all, of the spread is explained)
    assert np.abs(error).mean() < 0.25 * np.abs(planted - bench.others_mean(planted)).mean()
    noise = rng.normal(size=30)
    assert np.abs(noise - bench.leave_one_out(x, noise)).mean() > 0.8 * np.abs(
        noise - bench.others_mean(noise)).mean()
    assert bench.others_mean(np.array([1.0, 2.0, 6.0])) == pytest.approx([4.0, 3.5, 1.5])


def test_every_policy_gets_a_row_per_form_in_the_table_and_json(bench, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert bench.main([SPLITS, "--round", "4", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["splits"] == list(range(1000, 1009)) and written["after_round"] == 4
    # the splits differ, and each summary is that of the split the env plays on that seed
    assert len({json.dumps(f, sort_keys=True) for f in written["features"].values()}) == 9
    import dataclasses

    import gymnasium as gym

    import hffm_env  # noqa: F401
    from hffm_env.baselines.runner import BenchResult
    from hffm_env.config import from_dict

    config = dataclasses.replace(from_dict(BenchResult.read_json(SPLITS).settings["config"]),
                                 seed=1003)
    env = gym.make("hffm/HFFM-v0", scenario=config, fidelity="cost").unwrapped
    assert written["features"]["1003"] == env.data.summary(config.data.tasks)
    env.close()
    assert "hffm-d2d-e2" in written["policies"] and len(written["policies"]) == 5
    rows = written["policies"]["hffm-d2d-e2"]
    assert [r["form"] for r in rows] == ["mean over rounds", "after round 4", "final"]
    episodes = [e for e in BenchResult.read_json(SPLITS).episodes if e.policy == "hffm-d2d-e2"]
    finals = [e.accuracy[-1] for e in episodes]
    assert rows[2]["spread"] == pytest.approx(np.std(finals, ddof=1))
    for r in rows:
        assert r["r2_features"] <= 1
        assert len(r["top_features"]) == 3 and -1 <= r["correlation_round2"] <= 1
    assert "| hffm-d2d-e2 | final |" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "says"), [
    ([MERGED_OLDER], "plan:plan_search_small4 on seed 1000: records no config seed"),
    ([NO_SETTINGS], "records no settings"),
    ([SPLITS, SPLITS], "given twice"),
    ([SPLITS, "--policies", "nosuch"], "--policies 'nosuch': not in the runs"),
    ([SPLITS, "--round", "17"], "--round 17: the episodes have 16 rounds"),
])
def test_what_cannot_be_scored_is_refused_naming_why(bench, argv, says, capsys):
    from hffm_env.arguments import run_command

    try:  # (argparse's own errors exit; the rest are reported by run_command)
        status = run_command(lambda: bench.main(argv), "split_predictability.py")
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    assert says in capsys.readouterr().err


def test_a_bad_file_among_several_is_named(bench, tmp_path, capsys):
    """"it holds no episodes" said nothing of which file."""
    from hffm_env.arguments import run_command

    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**json.loads(Path(SPLITS).read_text()), "episodes": []}))
    assert run_command(lambda: bench.main([SPLITS, str(empty)]),
                       "split_predictability.py") == 2
    assert f"{empty}: " in capsys.readouterr().err


def test_too_few_splits_are_refused(bench, tmp_path, capsys):
    from hffm_env.arguments import run_command

    few = json.loads(Path(SPLITS).read_text())
    few["episodes"] = [e for e in few["episodes"] if e["config_seed"] < 1004]
    few["seeds"] = [1000, 1001, 1002, 1003]
    path = tmp_path / "few.json"
    path.write_text(json.dumps(few))
    assert run_command(lambda: bench.main([str(path)]), "split_predictability.py") == 2
    assert "the runs hold 4 data splits ([1000, 1001, 1002, 1003]): at least 5" in (
        capsys.readouterr().err)


def test_episodes_of_one_round_are_refused(bench, tmp_path, capsys):
    # the round-2 probe read past the end: an IndexError
    from hffm_env.arguments import run_command

    short = json.loads(Path(SPLITS).read_text())
    for episode in short["episodes"]:
        for key in ("accuracy", "accuracy_per_task", "accuracy_local", "accuracy_held_out",
                    "latency_s", "energy_j", "rewards"):
            episode[key] = episode[key][:1]
    path = tmp_path / "short.json"
    path.write_text(json.dumps(short))
    assert run_command(lambda: bench.main([str(path), "--round", "1"]),
                       "split_predictability.py") == 2
    assert "the episodes have 1 round: at least 2 are needed" in capsys.readouterr().err
