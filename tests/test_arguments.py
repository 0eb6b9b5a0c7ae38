"""Bad command-line input, for every command: refused while parsing where a flag can be checked
alone, else one ``prog: error:`` line and status 2; never a traceback, never after the work."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from hffm_env import arguments
from hffm_env.cli import main as hffm

ROOT = Path(__file__).resolve().parents[1]


def status(argv: list[str]) -> int:
    """``hffm argv``'s exit status (argparse exits with 2 on a flag it refuses)."""
    try:
        return hffm(argv)
    except SystemExit as done:
        return int(done.code or 0)


@pytest.mark.parametrize("check,text", [
    (arguments.seed, "-1"), (arguments.seed, str(2**63)), (arguments.seed, "x"),
    (arguments.positive_int, "0"), (arguments.non_negative_int, "-1"),
    (arguments.probability, "nan"), (arguments.probability, "1.5"), (arguments.probability, "-0.1"),
    (arguments.device, "cuda:99"), (arguments.device, "gpu"),
    (arguments.episode_count, "100000000000"), (arguments.episode_count, "0"),
])
def test_argument_types_refuse_bad_values_naming_them(check, text):
    with pytest.raises(argparse.ArgumentTypeError, match=text.replace("*", r"\*")):
        check(text)


def test_argument_types_pass_good_values():
    assert arguments.seed("0") == 0 and arguments.seed(str(2**63 - 1)) == 2**63 - 1
    assert arguments.probability("0.357") == 0.357 and arguments.positive_int("3") == 3
    assert arguments.device("cpu") == "cpu"
    # every command takes --device auto, as `hffm train` does (bench refused it)
    import torch

    assert arguments.device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_output_files_are_checked_before_any_work_and_left_untouched(tmp_path):
    check = arguments.output_file(arguments.PLOT_SUFFIXES)
    for bad, why in ((tmp_path, "is a folder"), (tmp_path / "no/x.png", "does not exist"),
                     ("", "must be a non-empty file name"),  # (was "is a folder": '.')
                     (tmp_path / "x.txt", "allowed suffixes"),
                     (Path("/proc/hffm-test.png"), "cannot be written")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            check(str(bad))
    existing = tmp_path / "old.png"
    existing.write_bytes(b"kept")
    assert check(str(existing)) == str(existing) and existing.read_bytes() == b"kept"
    fresh = tmp_path / "new.png"
    assert check(str(fresh)) == str(fresh) and not fresh.exists()  # the probe leaves nothing
    assert arguments.output_file(stdout=True)("-") == "-"


def test_output_files_expand_a_tilde_and_refuse_dangling_links_and_overlong_names(
        tmp_path, monkeypatch):
    """`--json=~/x.json` (the shell leaves that ~) was refused as a missing folder '~'; a
    dangling link was refused with "File exists"; a 251-byte name passed and failed after
    the work, at the write's temporary name."""
    check = arguments.output_file()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check("~/x.json") == str(tmp_path / "x.json")
    (tmp_path / "link.json").symlink_to(tmp_path / "gone" / "x.json")
    with pytest.raises(argparse.ArgumentTypeError, match="a link to .*gone.*does not exist"):
        check(str(tmp_path / "link.json"))
    with pytest.raises(argparse.ArgumentTypeError, match="file name of 251 bytes; at most 241"):
        check(str(tmp_path / ("x" * 246 + ".json")))
    assert check(str(tmp_path / ("x" * 236 + ".json"))).endswith(".json")


def test_train_paths_expand_a_tilde_and_the_config_is_recorded_absolute(tmp_path,
                                                                        monkeypatch):
    """`hffm train --out=~/runs/x` made a folder named "~" in the working folder, and agent
    folders recorded --config as typed, read again relative to wherever they were used."""
    from hffm_env.agents.common import TrainArgs

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs/c.yaml").write_text("fl: {lr: 0.02}\n")
    args = TrainArgs(out="~/runs/x", config="cfgs/c.yaml")
    assert args.out == str(tmp_path / "runs/x")
    assert args.config == str(tmp_path / "cfgs/c.yaml")


def test_error_line_is_one_line_cut_where_asked():
    """One rule for quoting a library's message inside ours (five modules spelled it)."""
    err = ValueError("while parsing\n  in <unicode string>, line 1\n\nexpected a key")
    assert arguments.error_line(err) == (
        "while parsing in <unicode string>, line 1 expected a key")
    assert arguments.error_line(err, 13) == "while parsing..."
    assert arguments.error_line(RuntimeError()) == "RuntimeError"
    missing = FileNotFoundError(2, "No such file or directory", "/x/y")
    assert arguments.error_line(missing, 5) == "/x/y:..."


def test_run_command_reports_user_errors_in_one_line_and_keeps_bugs_loud(capsys, monkeypatch):
    monkeypatch.delenv("HFFM_DEBUG", raising=False)

    def missing() -> int:
        return len(Path("/nonexistent/file.json").read_text())

    assert arguments.run_command(missing, "tool") == 2
    assert capsys.readouterr().err == ("tool: error: /nonexistent/file.json: No such file or "
                                       "directory\n")
    assert arguments.run_command(lambda: int("x"), "tool") == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(TypeError):  # a bug is not a user error: it keeps its traceback
        arguments.run_command(lambda: len(5), "tool")
    monkeypatch.setenv("HFFM_DEBUG", "1")
    with pytest.raises(ValueError):
        arguments.run_command(lambda: int("x"), "tool")


def test_a_commands_own_warnings_are_one_line_and_others_keep_pythons_form(capsys):
    """A warning raised in the package's code printed a full path and a line of its source
    under the command's output; another library's keeps Python's form."""
    import warnings

    from hffm_env.fl import engine

    def main() -> int:
        warnings.warn_explicit("the rates are too high", RuntimeWarning, engine.__file__, 7)
        warnings.warn_explicit("a library's advice", UserWarning, warnings.__file__, 1)
        return 0

    def show(message, category, filename, lineno, file=None, line=None):
        # Python's own showwarning, as outside pytest (which records them instead)
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    before = warnings.formatwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        assert arguments.run_command(main, "tool") == 0
    assert warnings.formatwarning is before
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "tool: warning: the rates are too high (RuntimeWarning at " \
                     "hffm_env/fl/engine.py:7)"
    assert err[1].endswith("warnings.py:1: UserWarning: a library's advice")
    # recorders still get every warning: pytest.warns, catch_warnings(record=True)
    with pytest.warns(RuntimeWarning, match="the rates are too high"):
        assert arguments.run_command(main, "tool") == 0
    assert capsys.readouterr().err == ""


def test_sigterm_stops_a_command_as_ctrl_c_does(capsys, monkeypatch):
    """SIGTERM (`kill`, `timeout`, schedulers) ended a command on the spot: nothing saved,
    nothing said. Now it is Ctrl-C's KeyboardInterrupt, and the handler is put back after."""
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    saved = []

    def work() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("SIGTERM did not stop the work")
        except KeyboardInterrupt:
            saved.append("what was done")  # a command's Ctrl-C handler saving
            raise

    assert arguments.run_command(work, "tool") == 130
    assert saved and capsys.readouterr().err == "tool: interrupted\n"
    assert signal.getsignal(signal.SIGTERM) == before
    # parsing is inside too (a --device check imports torch: a second Ctrl-C may fall in)
    import hffm_env.cli as cli

    def interrupted_parser():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted_parser)
    assert hffm(["describe"]) == 130 and "hffm describe: interrupted" in capsys.readouterr().err


def test_interrupts_wait_for_a_held_block_and_are_said_once_each(capsys):
    import os
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with arguments.interrupts_held("tool"):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        finished = True
    assert finished and capsys.readouterr().err.count("tool: still saving") == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.parametrize("argv,says", [
    (["describe", "--seed", "-1"], "--seed: -1"),
    (["bench", "--seeds", "-1"], "--seeds: -1"),
    (["bench", "--target-accuracy", "nan"], "--target-accuracy: nan"),
    (["bench", "--json", "/proc/x.json"], "--json: '/proc/x.json': cannot be written"),
    (["bench", "--device", "cuda:99"], "--device: 'cuda:99'"),
    (["calibrate", "--out", "/nonexistent/s.pt"], "folder '/nonexistent' does not exist"),
    (["calibrate", "--seeds", "1000"], "--seeds [1000]: must be training seeds 0..999"),
    (["train", "--seed", "-1"], "--seed -1"),
    (["train", "--ent-coef", "nan"], "--ent-coef nan"),
    (["train", "--eval-policies", "nope"], "--eval-policies has 'nope'"),
    (["train", "--fidelity", "surrogate", "--surrogate", "/nonexistent.pt"],
     "--surrogate '/nonexistent.pt'"),
    (["train", "--out", "/proc/hffm-run"], "--out '/proc/hffm-run': cannot be created"),
])
def test_hffm_refuses_bad_flags_in_one_line_before_running(argv, says, capsys, monkeypatch):
    import hffm_env.baselines.runner as runner

    monkeypatch.setattr(runner, "run_benchmark", lambda *a, **k: pytest.fail("it ran"))
    assert status(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(("hffm", "usage"))


@pytest.mark.parametrize("content,says", [
    ('{"tiers": 5}', "tiers = 5: expected a list of rounds"),
    ('{"tiers": [{"encoder": ["cloud"], "prompt": "cloud", "moe": "cloud", "adapter": "cloud",'
     ' "head": "cloud"}]}', "tiers[0].encoder = ['cloud']"),
    (b"\xff\xfe", "not JSON"),
])
def test_a_bad_plan_file_is_one_line(content, says, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    plan.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert hffm(["bench", "--fidelity", "cost", "--plan", str(plan), "--policies", ""]) == 2
    assert says in capsys.readouterr().err


def _bench_with(**changes) -> str:
    """A valid one-episode bench JSON (two rounds) with ``changes``: top-level keys, or an
    episode's."""
    import json

    episode = {"policy": "a", "seed": 1000, "accuracy": [0.2, 0.3], "latency_s": [1.0, 1.0],
               "energy_j": [2.0, 2.0], "rewards": [0.1, 0.1], "accuracy_per_task": [{}, {}],
               "end": "rounds"}
    stats = {"mean": 0.3, "std": 0.0, "n": 1}
    summary = {"policy": "a", "episodes": 1, "reached_target": 1, "final_accuracy_per_task": {},
               **dict.fromkeys(("latency_per_round_s", "energy_per_round_j", "final_accuracy",
                                "final_accuracy_local", "final_accuracy_held_out",
                                "episode_return", "energy_to_target_j", "latency_to_target_s"),
                               stats)}
    data = {"scenario": "small", "fidelity": "cost", "seeds": [1000], "target_accuracy": 0.3,
            "policies": [summary], "episodes": [episode]}
    for key, value in changes.items():
        (episode if key in episode else summary if key in summary else data)[key] = value
    return json.dumps(data)


BENCH_JSON = ["bench", "--from-json"]
TRACES = ["calibrate", "--from-traces"]


@pytest.mark.parametrize("command,content,says", [
    (BENCH_JSON, "[]", "expected a JSON object"),
    (BENCH_JSON, '{"episodes": []}', "holds no episodes"),
    (BENCH_JSON, '{"episodes": [5], "scenario": "small"}', "fidelity = 'missing'"),
    # field by field, where Python's words (or a silent load) came out before
    (BENCH_JSON, '{"scenario": "s", "fidelity": "cost", "seeds": [0], "target_accuracy": "x",'
     ' "policies": [], "episodes": [{}]}', "target_accuracy = 'x': must be an accuracy"),
    (BENCH_JSON, '{"scenario": "s", "fidelity": "cost", "seeds": [0], "target_accuracy": null,'
     ' "policies": [{"policy": "a", "extra": 1}], "episodes": [{}]}',
     "policies[0] = ['extra']: unknown fields"),
    (BENCH_JSON, '{"scenario": "s", "fidelity": "cost", "seeds": [0], "target_accuracy": null,'
     ' "policies": [], "episodes": [{"policy": "a", "seed": 0, "rewards": [[1, 2]]}]}',
     "episodes[0].rewards = [[1, 2]]: must be a list of numbers"),
    # impossible values a table was printed from (a fuzz of --from-json)
    (BENCH_JSON, _bench_with(target_accuracy=float("nan")),
     "target_accuracy = nan: must be an accuracy in 0..1"),
    (BENCH_JSON, _bench_with(accuracy=[5.0, 0.3]),
     "episodes[0].accuracy = [5.0, 0.3]: must be accuracies in 0..1"),
    (BENCH_JSON, _bench_with(energy_j=[None, 1.0]),
     "episodes[0].energy_j = [None, 1.0]: must be finite numbers >= 0"),
    (BENCH_JSON, _bench_with(accuracy=[0.3]), "episodes[0].accuracy = [0.3]: must have one "
     "entry a round (2, as latency_s)"),
    (BENCH_JSON, _bench_with(settings="x"), "settings = 'x': must be an object"),
    (BENCH_JSON, _bench_with(latency_s=[10**400, 1.0]),  # (math.isfinite overflowed on it)
     "must be finite numbers >= 0"),
    (BENCH_JSON, _bench_with(fingerprints=["a"]), "fingerprints = ['a']: must map row names"),
    # read back without a word, then tabled and merged beside whole episodes
    (BENCH_JSON, _bench_with(fidelity="banana"),
     "fidelity = 'banana': must be one of ['train', 'surrogate', 'cost']"),
    (BENCH_JSON, _bench_with(end="weird"), "episodes[0].end = 'weird': must be what ended the "
     "episode, one of ['rounds', 'energy_budget']"),
    (BENCH_JSON, _bench_with(rewards=[None, 0.1]),
     "episodes[0].rewards = [None, 0.1]: must be finite numbers"),
    (BENCH_JSON, _bench_with(seed=-1), "episodes[0].seed = -1: must be an integer in 0..2**63-1"),
    (BENCH_JSON, _bench_with(final_accuracy={"std": 0.0, "n": 1}),
     "policies[0].final_accuracy = {'n': 1, 'std': 0.0}: must be statistics: {mean, std, n}"),
    (BENCH_JSON, _bench_with(final_accuracy_per_task={"vqa": {"a": 1}}),
     "policies[0].final_accuracy_per_task = {'vqa': {'a': 1}}: must map tasks to statistics"),
    (BENCH_JSON, "{", "not JSON"),
    (TRACES, "[]", "holds no episodes"),
    (TRACES, '{"rounds": 1}', "no 'episodes' entry"),
    (TRACES, "", "not a traces"),
])
def test_a_bad_bench_json_or_traces_file_is_one_line(command, content, says, tmp_path, capsys):
    path = tmp_path / "input.json"
    path.write_text(content)
    assert hffm([*command, str(path)]) == 2
    assert says in capsys.readouterr().err


@pytest.mark.parametrize("script,args,says", [
    ("energy_floor.py", ["/nonexistent.json"], "/nonexistent.json: No such file"),
    ("paired_ratios.py", ["/nonexistent.json"], "/nonexistent.json: No such file"),
    ("env_step.py", ["--scenario", "nope"], "invalid choice: 'nope'"),
    ("soak.py", ["--episodes", "5", "--warmup", "6"], "--warmup 6: must be less than"),
    # equal: the growth would be measured between one sample and itself (a PASS of nothing)
    ("soak.py", ["--episodes", "5", "--warmup", "5"], "--warmup 5: must be less than"),
    # refused while parsing, not after the real training it would have recorded
    ("surrogate_error.py", ["--save-traces", "/nonexistent/t.json.gz"],
     "folder '/nonexistent' does not exist"),
    ("surrogate_error.py", ["--surrogate", "/nonexistent.pt", "--speed-steps", "0"],
     "/nonexistent.pt"),
    ("model_quality.py", ["--samples", "10"], "--samples 10: at least one batch"),
    # scenes held in memory: 2e9 failed allocating 14.9 GiB after the model was built
    ("model_quality.py", ["--samples", "2000000000"], "at most 1,000,000 scenes"),
    ("round_throughput.py", ["--repeats", "0"], "--repeats: 0"),
])
def test_benchmark_scripts_refuse_bad_input_in_one_line(script, args, says):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
