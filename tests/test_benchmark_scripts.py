"""The benchmark scripts that had no run test: model_quality.py, env_step.py and
round_throughput.py, on tiny settings, writing their JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    yield
    for name in ("model_quality", "env_step", "round_throughput", "render_frames", "tradeoff",
                 "_output"):
        sys.modules.pop(name, None)


def test_model_quality_is_the_same_on_a_rerun(benchmarks, tmp_path):
    """It trained for a wall-clock budget: two runs of one seed gave other accuracies."""
    import model_quality

    from hffm_env.testing import TINY_OVERRIDES

    # the tiny model the session has pre-trained already (the small one's takes 30 s)
    tiny = [arg for kv in TINY_OVERRIDES for arg in ("--set", kv)]
    argv = ["--samples", "64", "--test-samples", "32", "--epochs", "2", *tiny]
    runs = []
    for k in range(2):
        out = tmp_path / f"q{k}.json"
        status = model_quality.main([*argv, "--json", str(out)])
        runs.append(json.loads(out.read_text()))
        assert status == (0 if runs[-1]["passes"] else 1)  # 1: the bar is missed
    assert runs[0]["steps"] == 2 and runs[0]["tasks"] == runs[1]["tasks"]
    assert runs[0]["overrides"] == list(TINY_OVERRIDES)
    with pytest.raises(SystemExit):  # less than one batch
        model_quality.main(["--samples", "10"])


def test_an_existing_output_file_is_refused_without_force(benchmarks, tmp_path, capsys):
    """Every script replaced an existing --json or --plot file (a committed result, when
    docs/RESULTS.md's commands were tried with small settings) without a word."""
    import model_quality
    import tradeoff

    kept = tmp_path / "kept.json"
    kept.write_text("a committed result")
    with pytest.raises(SystemExit):
        model_quality.main(["--samples", "64", "--json", str(kept)])
    assert f"--json '{kept}': exists; pass --force" in capsys.readouterr().err
    assert kept.read_text() == "a committed result"
    # tradeoff.py's plots, one per result, by name: two results of one scenario wrote one file
    runs = [str(BENCHMARKS.parent / "docs/results/tradeoff_small.json"),
            str(BENCHMARKS.parent / "docs/results/tradeoff_small_splits.json")]
    plot = tmp_path / "t.png"
    assert tradeoff.main(["--from-json", *runs, "--plot", str(plot)]) == 1  # splits: MISSes
    assert sorted(p.name for p in tmp_path.glob("t_*.png")) == ["t_1_small.png", "t_2_small.png"]
    with pytest.raises(SystemExit):
        tradeoff.main(["--from-json", *runs, "--plot", str(plot)])
    assert "t_1_small.png': exists; pass --force" in capsys.readouterr().err
    assert tradeoff.main(["--from-json", *runs, "--plot", str(plot), "--force"]) == 1


def test_two_outputs_naming_one_file_are_refused_force_or_not(benchmarks, tmp_path, capsys,
                                                               monkeypatch):
    """--save-traces X --json X left the summary where the real episodes had been, and
    --json X --plot X the plot where the JSON was."""
    import surrogate_error
    import tradeoff

    same = tmp_path / "same.png"
    for main, argv in ((tradeoff.main, ["--from-json", str(BENCHMARKS.parent / "docs/results"
                                                         / "tradeoff_small.json"),
                                        "--json", str(same), "--plot", str(same), "--force"]),
                       (surrogate_error.main, ["--save-traces", str(same), "--json",
                                               str(same)])):
        with pytest.raises(SystemExit):
            main(argv)
        assert "name one file" in capsys.readouterr().err and not same.exists()
    sys.modules.pop("surrogate_error", None)


def test_an_output_naming_a_file_the_run_reads_is_refused_force_or_not(benchmarks, tmp_path,
                                                                       capsys):
    """surrogate_error.py --traces X --json X --force replaced 33 minutes of real training with
    the summary; energy_floor.py and the others read a bench file they could write over."""
    import shutil

    import action_levers
    import cloud_clusters
    import energy_floor
    import paired_ratios
    import plan_search
    import split_predictability
    import surrogate_error
    import tradeoff

    results = BENCHMARKS.parent / "docs/results"
    traces = tmp_path / "heldout.json.gz"
    shutil.copy(results / "surrogate/heldout_small.json.gz", traces)
    bench = tmp_path / "bench.json"
    shutil.copy(results / "small4_ppo_plan_9seeds.json", bench)
    plan = tmp_path / "plan.json"
    shutil.copy(results / "plan_search_small4.json", plan)
    before = {traces: traces.read_bytes(), bench: bench.read_bytes(), plan: plan.read_bytes()}
    for main, argv, flag in (
            (action_levers.main, ["--plan", str(plan), "--json", str(plan), "--force"],
             "--plan"),
            (cloud_clusters.main, ["--plan", str(plan), "--json", str(plan)], "--plan"),
            (plan_search.main, ["--target-accuracy", "0.357", "--start", str(plan), "--json",
                                str(plan), "--force"], "--start"),
            (surrogate_error.main, ["--surrogate", str(plan), "--json", str(plan), "--force"],
             "--surrogate"),
            (surrogate_error.main, ["--traces", str(traces), "--speed-steps", "0", "--json",
                                    str(traces), "--force"], "--traces"),
            (energy_floor.main, [str(bench), "--json", str(bench), "--force"], "bench_json"),
            (split_predictability.main, [str(bench), "--json", str(bench)], "bench_json"),
            (paired_ratios.main, [str(bench), "--json", str(bench), "--force"], "bench_json"),
            (tradeoff.main, ["--from-json", str(bench), "--json", str(bench), "--force"],
             "--from-json")):
        with pytest.raises(SystemExit):
            main(argv)
        assert f"is the {flag} file this run reads" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in before} == before
    sys.modules.pop("surrogate_error", None)


def test_tradeoff_exits_1_when_a_target_check_misses(benchmarks, capsys):
    """tradeoff.py printed MISS and exited 0, so automation could not tell a missed target
    from a met one (the other judging scripts exit 1)."""
    import tradeoff

    results = BENCHMARKS.parent / "docs/results"
    assert tradeoff.main(["--from-json", str(results / "tradeoff_small.json")]) == 0
    assert "MISS" not in capsys.readouterr().out
    assert tradeoff.main(["--from-json", str(results / "tradeoff_small_splits.json")]) == 1
    assert "MISS" in capsys.readouterr().out


@pytest.mark.parametrize(("edit", "said"), [
    # a verdict of text and a bad episode were re-printed as if read; a row of text failed
    # with Python's words ("'str' object has no attribute 'get'")
    (lambda r: r["checks"][0].update({"pass": "no"}), r"checks\[0\]\.pass = 'no': must be true"),
    (lambda r: r["episodes"][0].update(latency_s="a"), r"episodes\[0\]\.latency_s = 'a': must be"),
    (lambda r: r["rows"].update(star="high"), "rows = .*: must map schedule names to rows"),
    (lambda r: r["rows"]["star"].update(final_accuracy="high"),
     "rows.star.final_accuracy = 'high': must be {mean, std, n}"),
])
def test_tradeoff_refuses_a_hand_edited_result_naming_the_field(benchmarks, tmp_path, capsys,
                                                                edit, said):
    import re

    import tradeoff

    from hffm_env.arguments import run_command

    result = json.loads((BENCHMARKS.parent / "docs/results/tradeoff_small.json").read_text())
    edit(result)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps([result, result]))
    assert run_command(lambda: tradeoff.main(["--from-json", str(path)]), "tradeoff.py") == 2
    assert re.search(f"edited.json: not a tradeoff.py result \\(result 0: {said}",
                     capsys.readouterr().err)


def test_tradeoffs_best_return_check_names_a_tie_whatever_the_rows_order(benchmarks):
    """Ties went by the rows' order, where runner.best_baseline breaks them by name."""
    import tradeoff

    rows = json.loads((BENCHMARKS.parent / "docs/results/tradeoff_small.json").read_text())[
        "rows"]
    top = max(r["episode_return"]["mean"] for r in rows.values()) + 1.0
    for name in ("hffm-e8", "edge-only"):
        rows[name]["episode_return"]["mean"] = top
    said = set()
    for order in (list(rows), list(reversed(rows))):
        checks = tradeoff.check_targets({n: rows[n] for n in order})
        said.add(next(c["value"] for c in checks if "best mean return" in c["target"]))
    assert said == {f"best: edge-only ({top:.2f})"}


def test_a_benchmark_json_object_records_the_code_that_made_it(benchmarks, tmp_path):
    """The scripts' JSON said nothing of the version, libraries or threads that measured it."""
    from _output import emit_json

    import hffm_env

    emit_json({"ratio": 2.0}, str(tmp_path / "a.json"))
    record = json.loads((tmp_path / "a.json").read_text())["provenance"]
    assert record["hffm_env"] == hffm_env.__version__ and record["libraries"]["torch"]
    emit_json({"provenance": ["of the run that played it"]}, str(tmp_path / "b.json"))
    assert json.loads((tmp_path / "b.json").read_text())["provenance"] == [
        "of the run that played it"]  # a bench result's own is kept
    emit_json([{"row": 1}], str(tmp_path / "c.json"))  # rows stay rows
    assert json.loads((tmp_path / "c.json").read_text()) == [{"row": 1}]
    # a bench result read from a file older than records and written again: its episodes were
    # not played by this run, and bench readers take a list of records there
    emit_json({"episodes": [], "policies": []}, str(tmp_path / "d.json"))
    assert "provenance" not in json.loads((tmp_path / "d.json").read_text())
    # ... while a script's object that counts its episodes (soak.py) gets this run's
    emit_json({"episodes": 3, "steps_per_s": 400.0}, str(tmp_path / "e.json"))
    assert "provenance" in json.loads((tmp_path / "e.json").read_text())


def test_env_step_times_episodes_of_one_round(benchmarks, tmp_path):
    """Its warm-up step ended a one-round episode, and the first timed step raised."""
    import env_step

    out = tmp_path / "step.json"
    assert env_step.main(["--scenarios", "small", "--fidelities", "cost", "--steps", "2",
                          "--set", "env.episode_rounds=1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["fidelity"] == "cost"


def test_env_step_judges_every_target_it_states(benchmarks, tmp_path):
    import env_step

    out = tmp_path / "step.json"
    assert env_step.main(["--scenarios", "small", "--fidelities", "cost", "--steps", "1",
                          "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    (row,) = written["rows"]
    assert written["provenance"]["libraries"]["torch"]  # timings say what measured them
    assert {"meets_warm_make_target", "meets_pickle_target"} <= set(row)
    assert row["meets_pickle_target"] == (row["pickle_bytes"] < env_step.PICKLE_TARGET_BYTES)


def test_round_throughput_reports_its_ratios(benchmarks, tmp_path, capsys):
    import round_throughput

    from hffm_env.testing import TINY_OVERRIDES

    out = tmp_path / "rounds.json"
    sets = [f"--set={o}" for o in TINY_OVERRIDES]
    status = round_throughput.main([*sets, "--repeats", "3", "--json", str(out)])
    result = json.loads(out.read_text())
    # every script's exit status says whether the targets it judges are met (some said 0
    # on a miss, soak.py and render_frames.py 1)
    assert status == (0 if all(result["targets_met"].values()) else 1)
    # the ways run interleaved, and each ratio is the median of the repetitions' own ratios
    # (timing one way's runs, then the next's, let a machine slowing mid-run skew them)
    times = result["times_s"]
    assert {way: len(t) for way, t in times.items()} == {
        "batched": 3, "sequential": 3, "fused": 3}
    assert result["sequential_over_batched"] == pytest.approx(sorted(
        s / b for s, b in zip(times["sequential"], times["batched"], strict=True))[1])
    assert result["batched_s"] == pytest.approx(sorted(times["batched"])[1])
    assert result["targets_met"]["sequential_over_batched>=2"] == (
        result["sequential_over_batched"] >= 2)
    # ... and prints a verdict for each, as the README says every judging script does
    printed = capsys.readouterr().out
    for target, met in result["targets_met"].items():
        ratio = target.split(">=")[0].split("<=")[0].replace("_over_", " / ")
        assert any(ratio in line and line.endswith("PASS" if met else "MISS")
                   for line in printed.splitlines()), (target, printed)


def test_every_benchmark_describes_itself_in_help(benchmarks):
    """Each script's --help opens with its docstring's first paragraph (several cut it at
    its first line, mid-sentence) and ends with the rest of it: what it measures, its
    targets, its JSON, example commands (only the first paragraph was shown); a docstring
    stripped by ``python -OO`` gives a line instead of an AttributeError."""
    import ast
    import subprocess

    from _output import description, help_texts

    assert description(None) == "An hffm-env benchmark."
    assert description("One question?\nIts line two.\n\nDetails.") == (
        "One question?\nIts line two.")
    assert help_texts("One question?\n\nDetails.\n\n    run it")["epilog"] == (
        "Details.\n\n    run it")
    assert help_texts(None)["epilog"] is None
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) >= 10
    for script in scripts:
        source = script.read_text()
        assert ast.get_docstring(ast.parse(source)), script.name
        assert "_parser(__doc__" in source or "help_texts(__doc__)" in source, script.name
        assert "__doc__." not in source, script.name
    shown = subprocess.run([sys.executable, str(BENCHMARKS / "soak.py"), "--help"],
                           capture_output=True, text=True, check=True).stdout
    assert "Target: growth under 5%" in shown and "python benchmarks/soak.py --episodes" in shown


def test_render_frames_times_kept_and_fresh_frames_of_one_picture(benchmarks, tmp_path):
    import render_frames

    from hffm_env.testing import TINY_OVERRIDES

    out = tmp_path / "frames.json"
    tiny = [arg for kv in TINY_OVERRIDES for arg in ("--set", kv)]
    render_frames.main(["--episodes", "1", *tiny, "--json", str(out)])  # (its speed: not here)
    result = json.loads(out.read_text())
    assert result["frames"] == 5 and result["frames_differing"] == 0  # a reset and 4 rounds
    assert result["kept_frame_ms"] > 0 and result["speedup"] > 0
    assert result["overrides"] == list(TINY_OVERRIDES)
