"""benchmarks/tradeoff.py: the Pareto front, the target checks, and a tiny real run."""

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

from hffm_env.testing import TINY_OVERRIDES

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RESULTS = BENCHMARKS.parent / "docs/results"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("tradeoff_bench", BENCHMARKS / "tradeoff.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def _stat(mean, std=0.0):
    return {"mean": mean, "std": std, "n": 3}


def test_pareto_front():
    from hffm_env.baselines.runner import pareto_front

    # name -> (energy, accuracy); c is dominated by b, e by a, f (same cost as d) by d
    points = {"a": (10.0, 0.5), "b": (2.0, 0.4), "c": (3.0, 0.4), "d": (1.0, 0.3),
              "e": (12.0, 0.5), "f": (1.0, 0.2), "g": (float("nan"), 0.9)}
    assert pareto_front(points) == ["d", "b", "a"]


def test_targets_pass_and_miss_with_their_numbers(bench):
    finals = {"star": 0.50, "hffm-e2": 0.51, "hffm-e8": 0.45, "hffm-d2d-e2": 0.50,
              "hffm-d2d-e8": 0.44, "edge-only": 0.40, "edge-only-d2d": 0.40, "never": 0.35}
    energy = {"star": 10, "hffm-e2": 9, "hffm-e8": 8, "hffm-d2d-e2": 4, "hffm-d2d-e8": 2,
              "edge-only": 7, "edge-only-d2d": 1.5, "never": 1}
    returns = {name: (2.0 if name == "hffm-d2d-e2" else 1.0) for name in finals}
    rows = {name: {"final_accuracy": _stat(finals[name], 0.01),
                   "energy_per_round_j": _stat(energy[name]),
                   "episode_return": _stat(returns[name])} for name in finals}
    from hffm_env.baselines.runner import pareto_front

    front = pareto_front({n: (energy[n], finals[n]) for n in finals})
    for name in rows:
        rows[name]["pareto"] = name in front
    checks = bench.check_targets(rows)
    assert all(c["pass"] for c in checks), [c for c in checks if not c["pass"]]
    rows["edge-only"]["final_accuracy"] = _stat(0.47, 0.01)  # gaps shrink below 8 points
    rows["never"]["episode_return"] = _stat(5.0)
    missed = [c["target"] for c in bench.check_targets(rows) if not c["pass"]]
    assert any("star >= edge-only" in t for t in missed)
    assert any("best mean return" in t for t in missed)


def test_tiny_real_run_and_its_rescoring(bench):
    overrides = [*TINY_OVERRIDES, "env.episode_rounds=2"]
    result = bench.run_scenario("small", [1000, 1001], overrides, "cpu", vary_data_split=True)
    assert set(result["rows"]) == set(bench.SCHEDULES)
    assert result["data_split"] == "per seed"
    for row in result["rows"].values():
        assert 0.0 <= row["final_accuracy"]["mean"] <= 1.0
        assert 0.0 <= row["final_accuracy_held_out"]["mean"] <= 1.0
    assert result["rows"]["never"]["energy_per_round_j"]["mean"] < (
        result["rows"]["star"]["energy_per_round_j"]["mean"])
    text = bench.format_result(result)
    assert "| never |" in text and ("PASS" in text or "MISS" in text)
    assert "data split per seed" in text
    assert "per seed" in result["checks"][0]["value"]  # the gap seed by seed
    # rescoring under the same reward reproduces every return (each seed's own cost scale);
    # another energy weight changes them
    same = bench.rescore(result, overrides)
    for name, row in result["rows"].items():
        assert same["rows"][name]["episode_return"]["mean"] == pytest.approx(
            row["episode_return"]["mean"], abs=1e-9)
    assert same["data_split"] == "per seed"
    other = bench.rescore(result, [*overrides, "env.energy_weight=0.9"])
    assert other["rows"]["star"]["episode_return"]["mean"] != pytest.approx(
        result["rows"]["star"]["episode_return"]["mean"])
    # ... and says so in its settings, so that it never merges with a run of the old weights
    assert other["settings"]["config"]["env"]["energy_weight"] == 0.9
    # ... and names the code that rescored it after the code that played it
    assert other["provenance"][:-1] == result["provenance"] and len(result["provenance"]) == 1
    assert other["provenance"][-1]["time_utc"] >= result["provenance"][0]["time_utc"]
    assert same["settings"] == result["settings"]
    # the run's own config is the base (its overrides were lost, and with them its horizon)
    recorded = bench.rescore(result, [])
    assert recorded["settings"] == result["settings"]
    for name, row in result["rows"].items():
        assert recorded["rows"][name]["episode_return"]["mean"] == pytest.approx(
            row["episode_return"]["mean"], abs=1e-9)
    # a reward that reads the accuracy at reset cannot be rescored from saved rounds
    from hffm_env.config import ConfigError

    with pytest.raises(ConfigError, match="accuracy-gain reward needs"):
        bench.rescore(result, [*overrides, "env.reward=accuracy-gain"])
    # a file older than the local accuracy's record: its returns were all rescored to 0
    older = copy.deepcopy(result)
    for episode in older["episodes"]:
        del episode["accuracy_local"]
    rescored = bench.rescore(older, overrides)
    for name, row in result["rows"].items():
        assert rescored["rows"][name]["episode_return"]["mean"] == pytest.approx(
            row["episode_return"]["mean"], abs=1e-9)
    older["settings"]["config"]["env"]["accuracy_local_mix"] = 0.5  # a reward that reads it
    with pytest.raises(ConfigError, match="accuracy_local_mix = 0.5 pays the devices' local"):
        bench.rescore(older, [])


def test_rescoring_takes_only_the_rewards_settings(bench):
    """--rescore --set placement.num_devices=8 recorded 8 devices as the settings of episodes
    played with 12 (a merge then trusted them)."""
    import json

    from hffm_env.config import ConfigError

    data = json.loads((BENCHMARKS.parent / "docs/results/tradeoff_small.json").read_text())
    for override in ("env.episode_rounds=3", "fl.lr=0.1",
                     "env.accuracy_local_mix=0.5"):
        with pytest.raises(ConfigError, match=f"--set {override.split('=')[0]}: rescoring "
                                              "scores the recorded rounds anew"):
            bench.rescore(data, [override])


def test_options_that_would_be_ignored_are_refused(bench, capsys):
    for argv, says in ((["--rescore"], "--rescore rescores saved runs"),
                       (["--from-json", "x.json", "--set", "fl.lr=0.1"], "changes nothing"),
                       # checked before the first scenario trains (minutes lost before)
                       (["--scenarios", "small", "nope"], "invalid choice: 'nope'"),
                       # read as played: these printed the saved run's table without a word
                       (["--from-json", "x.json", "--scenarios", "paper", "--seeds", "1005"],
                        "--scenarios, --seeds with --from-json"),
                       # its seeds are held out, as its help says (seed 5 ran, unremarked)
                       (["--seeds", "1000", "5"], "5: held-out seeds are 1000 and above")):
        with pytest.raises(SystemExit):
            bench.main(argv)
        assert says in capsys.readouterr().err


def test_a_plot_file_refused_only_where_it_would_be_written(bench, tmp_path, capsys):
    """With two results --plot FILE writes FILE_<scenario>.png: an existing FILE itself was
    refused all the same; one of the files written is refused."""
    saved = [str(RESULTS / f"tradeoff_{s}.json") for s in ("small", "paper")]
    plot = tmp_path / "fig.png"
    plot.write_bytes(b"an older figure")
    assert bench.main(["--from-json", *saved, "--plot", str(plot)]) == 0
    assert (tmp_path / "fig_small.png").exists() and (tmp_path / "fig_paper.png").exists()
    assert plot.read_bytes() == b"an older figure"
    with pytest.raises(SystemExit):  # now fig_small.png exists
        bench.main(["--from-json", *saved, "--plot", str(plot)])
    assert f"--plot '{tmp_path / 'fig_small.png'}': exists" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["tradeoff_small.json", "tradeoff_paper.json"])
def test_the_committed_trade_off_runs_meet_every_target(bench, name):
    """The README's verdict on the trade-off targets is the committed runs' own: their
    recorded rows re-checked by today's ``check_targets`` (so a rerun that misses one, or a
    change to a target, shows here)."""
    import json

    data = json.loads((BENCHMARKS.parent / "docs/results" / name).read_text())
    rows = data["rows"]
    assert set(rows) == {"star", "hffm-e2", "hffm-e8", "hffm-d2d-e2", "hffm-d2d-e8",
                         "edge-only", "edge-only-d2d", "never"}
    assert all(s["final_accuracy"]["n"] == 3 for s in rows.values())  # three held-out seeds
    checks = bench.check_targets(rows)
    assert len(checks) == 8 and all(c["pass"] for c in checks), [
        c for c in checks if not c["pass"]]


def test_an_interrupted_run_keeps_its_episodes_without_a_verdict(bench, monkeypatch, tmp_path,
                                                                 capsys):
    """Ctrl-C during real training: the finished episodes are written, no PASS/MISS is drawn
    from part of the seeds (or from a schedule with no episode), no further scenario runs,
    and the exit status is 130."""
    import json

    import hffm_env.baselines.runner as runner

    real = runner.run_benchmark
    calls = []

    def cut_short(make_env, policies, seeds, **kwargs):
        result = real(make_env, list(policies)[:2], seeds[:1], **kwargs)
        calls.append(result.scenario)  # (labelled with its env's)
        result.interrupted = True
        return result

    monkeypatch.setattr(runner, "run_benchmark", cut_short)
    out = tmp_path / "cut.json"
    argv = ["--scenarios", "small", "paper", "--seeds", "1000", "--json", str(out),
            *[x for o in (*TINY_OVERRIDES, "env.episode_rounds=2") for x in ("--set", o)]]
    assert bench.main(argv) == 130
    saved = json.loads(out.read_text())
    assert calls == ["small"] and saved["interrupted"] and saved["checks"] == []
    assert saved["episodes"]  # what finished is kept
    assert "no target checks" in capsys.readouterr().out


def test_a_run_interrupted_before_any_episode_is_still_reported(bench):
    # format_result read the round count from the first episode: StopIteration
    text = bench.format_result({"scenario": "small", "seeds": [1000], "episodes": [],
                                "rows": {}, "checks": [], "interrupted": True})
    assert "0 rounds" in text and "(interrupted)" in text
    # ... and rescoring such a run says there is nothing to rescore (UnboundLocalError before)
    import json

    from hffm_env.config import ConfigError

    saved = json.loads((BENCHMARKS.parent / "docs/results/tradeoff_small.json").read_text())
    with pytest.raises(ConfigError, match="the small run holds no episodes"):
        bench.rescore({**saved, "episodes": [], "interrupted": True}, [])


def test_rescoring_a_run_whose_accuracies_went_unmeasured_says_so(bench):
    """A run whose final rounds went unevaluated (accuracies null) was rescored into
    "'float' object has no attribute 'numerator'" (statistics.stdev of NaN gaps): its
    accuracy checks now say the accuracy was not measured, and miss."""
    import json

    from hffm_env import jsonio

    saved = json.loads((BENCHMARKS.parent / "docs/results/tradeoff_small.json").read_text())
    for episode in saved["episodes"]:
        episode["accuracy"] = [None] * len(episode["accuracy"])
    out = bench.rescore(saved, [])
    unmeasured = [c for c in out["checks"] if c["value"] == bench.NOT_MEASURED]
    # the four gaps, |star - hffm-e2| and the lowest final accuracy
    assert len(unmeasured) == 6 and not any(c["pass"] for c in unmeasured)
    bench.check_result(json.loads(json.dumps(jsonio.json_safe(out))))
    assert "not measured" in bench.format_result(out)


def test_every_committed_bench_reads_back():
    """The committed bench JSON files are the README's evidence; the checks on a saved bench
    grow stricter (an episode's end, its rewards, the statistics' shape), and none may come
    to refuse what a real run wrote."""
    import json

    from hffm_env.baselines.runner import BenchResult

    read = 0
    for path in sorted((BENCHMARKS.parent / "docs" / "results").rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "episodes" in data and "policies" in data:
            BenchResult.read_json(path)  # raises, naming the field, if refused
            read += 1
    assert read >= 60  # (68 when written)
