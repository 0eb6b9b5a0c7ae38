"""The `hffm describe` command and its errors."""

import json

from hffm_env.cli import main


def test_describe_paper_text(capsys):
    assert main(["describe", "--scenario", "paper"]) == 0
    out = capsys.readouterr().out
    assert "paper" in out and "module inventory" in out and "adapter/fusion" in out


def test_describe_json_has_network_and_model(capsys):
    assert main(["describe", "--scenario", "small", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"] == "small"
    assert len(report["model"]["devices"]) == 12
    assert {row["module_type"] for row in report["model"]["modules"]} == {
        "encoder", "prompt", "moe", "adapter", "head"}
    assert report["network"]


def test_errors_are_one_line_with_status_2(capsys):
    assert main(["describe", "--scenario", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "known scenarios" in err
    assert main(["describe", "--set", "channel.d2d.bandwidth_hz=-1"]) == 2
    assert "bandwidth_hz" in capsys.readouterr().err


def test_train_takes_every_train_agent_flag_including_help(capsys):
    assert main(["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--total-timesteps" in help_text
    assert help_text.startswith("usage: hffm train")  # named as the user typed it
    assert main(["train", "--algo", "dqn"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'dqn'" in err and err.startswith("usage: hffm train")


def test_pretrain_reports_the_frozen_parts_probes(capsys, tmp_path, monkeypatch):
    from hffm_env.testing import TINY_OVERRIDES

    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))
    tiny = [x for o in TINY_OVERRIDES if o.startswith(("model.", "data.")) for x in ("--set", o)]
    assert main(["pretrain", "--scenario", "small", *tiny]) == 0
    out = capsys.readouterr()
    assert "pre-training" in out.err  # the one line before the work, with the cache folder
    assert str(tmp_path) in out.err
    assert "fused/scene" in out.out and "pre-trained now" in out.out
    assert main(["pretrain", "--scenario", "small", *tiny]) == 0
    assert "loaded from the cache" in capsys.readouterr().out
    assert main(["describe", "--scenario", "small", *tiny]) == 0
    assert "linear-probe accuracy" in capsys.readouterr().out


def test_bench_help_lists_every_policy(capsys):

    from hffm_env.baselines.policies import policy_names

    assert main(["bench", "--help"]) == 0  # a status, as `hffm train --help` returns
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # wrapped at hyphens
    assert all(name in text for name in policy_names())


def test_calibrate_help_states_the_designs_defaults(capsys):
    """The help text spells out the defaults, which live in baselines/calibrate.py."""

    from hffm_env.baselines import calibrate as design
    from hffm_env.baselines.policies import PAPER_SCHEDULES

    assert main(["calibrate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")
    assert f"default: {' '.join(map(str, design.DEFAULT_SEEDS))})" in text
    assert f"(default {design.DEFAULT_MIXED};" in text
    assert f"per seed (default {design.DEFAULT_RANDOM_EPISODES})" in text
    named = [p for p in design.DESIGN_POLICIES if p not in PAPER_SCHEDULES]
    assert len(PAPER_SCHEDULES) == 7
    assert f"the paper's seven schedules, {', '.join(named)})" in text


def test_an_agent_of_another_layout_is_one_line_not_a_traceback(capsys, tmp_path,
                                                                 monkeypatch):
    """A committed three-cluster agent loads, but its spaces do not fit today's four-cluster
    `small`: `hffm bench --agent` and `hffm calibrate --agent` say so before any episode
    (bench played every other agent's episodes first, calibrate trained one and left its
    traces), naming the flag, the file and the overrides it was trained with, and write
    nothing."""
    from pathlib import Path

    from hffm_env.baselines import calibrate, runner

    def no_episode(*args, **kwargs):
        raise AssertionError("an episode ran before the agents were checked")

    monkeypatch.setattr(runner, "run_benchmark", no_episode)
    monkeypatch.setattr(calibrate, "calibrate", no_episode)
    agents = Path(__file__).resolve().parents[1] / "docs/results/agents"
    agent = agents / "ppo-coarse-stt_s0"
    out = tmp_path / "bench.json"
    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
                 "--set", "env.observe_target=true", "--set", "env.target_accuracy=0.357",
                 "--agent", str(agents / "ppo-coarse-stt-plan-4clusters_s0"),
                 "--agent", str(agent),
                 "--policies", "never", "--no-progress", "--json", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    err = lines[-1]
    assert err.startswith("hffm bench: error: --agent: ") and "ppo-coarse-stt_s0" in err
    assert "does not fit this env's spaces" in err and "placement.num_edge_servers=3" in err
    # ... after a note naming the settings that differ (it came only for agents that fit)
    assert any("note: agent:ppo-coarse-stt_s0 was trained with" in line
               and "placement.num_edge_servers=3 (here 4)" in line for line in lines), lines
    assert not out.exists()
    traces = tmp_path / "traces.json.gz"
    assert main(["calibrate", "--scenario", "small", "--seeds", "0", "--policies", "--mixed",
                 "0", "--random-episodes", "0", "--agent", str(agent), "--no-progress",
                 "--out", str(tmp_path / "fit.pt"), "--traces", str(traces)]) == 2
    err = capsys.readouterr().err  # with an empty cache the pre-training notice comes first
    last = err.strip().splitlines()[-1]
    assert last.startswith("hffm calibrate: error: --agent: ") and "does not fit" in last, err
    assert "Traceback" not in err and not (tmp_path / "fit.pt").exists()
    assert not traces.exists()


def test_bench_refuses_flags_it_would_ignore(capsys, tmp_path):
    """A target fraction under a fixed target, and run flags with --from-json, were ignored."""
    for argv, message in (
            (["--target-fraction", "0.5", "--target-accuracy", "0.3"],
             "--target-accuracy fixes the target already"),
            (["--target-fraction", "0.5", "--set", "env.target_accuracy=0.3"],
             "env.target_accuracy = 0.3 fixes the target already"),
            (["--from-json", str(tmp_path / "a.json"), "--fidelity", "cost"],
             "--from-json runs nothing, so --fidelity has no effect"),
            (["--from-json", str(tmp_path / "a.json"), "--target-fraction", "0.5"],
             "so --target-fraction has no effect")):
        assert main(["bench", "--policies", "never", *argv]) == 2
        assert message in capsys.readouterr().err


def test_bench_merges_saved_runs_with_an_empty_policies_list_and_json_to_a_dash_file(
        tmp_path, capsys, monkeypatch):
    import json

    saved = tmp_path / "a.json"
    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
                 "--policies", "never", "star", "--target-accuracy", "0.3", "--no-progress",
                 "--json", str(saved)]) == 0
    table = capsys.readouterr().out  # cost fidelity, a target given: still none reachable
    assert "no accuracy measured, no target" in table and "0/1" not in table
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_text("a file named -")  # not the stdout of --json -
    assert main(["bench", "--from-json", str(saved), "--policies", "", "--json", "-"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert [p["policy"] for p in merged["policies"]] == ["never", "star"]  # '' keeps every row
    # rows of different seed sets are merged, with a note saying so
    more = tmp_path / "b.json"
    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1001",
                 "--policies", "never", "--target-accuracy", "0.3", "--no-progress",
                 "--json", str(more)]) == 0
    capsys.readouterr()
    assert main(["bench", "--from-json", str(saved), str(more)]) == 0
    assert "note: the rows are not on the same seeds (never on 2, star on 1; 2 in all)" in \
        capsys.readouterr().err
    assert main(["bench", "--from-json", str(saved), str(saved)]) == 0
    assert "note" not in capsys.readouterr().err


def test_bench_json_to_stdout_and_a_closed_pipe(capsys):
    """`--json -` wrote a file named '-'; `| head` ended in 'error: Broken pipe', status 2."""
    import json

    from hffm_env.arguments import run_command

    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies", "never",
                 "--seeds", "1000", "--seeds", "1001", "--no-progress", "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert [p["policy"] for p in json.loads(captured.out)["policies"]] == ["never"]
    assert json.loads(captured.out)["seeds"] == [1000, 1001]  # repeated flags add up
    assert "| never |" in captured.err

    def reader_gone():
        raise BrokenPipeError(32, "Broken pipe")

    assert run_command(reader_gone, "hffm") == 141
    assert "error" not in capsys.readouterr().err


def test_bench_writes_its_files_before_a_reader_that_leaves_early(tmp_path, monkeypatch):
    """`hffm bench --json a.json --plot b.png | head -1` printed the table first: the reader
    left, and the plot was never written."""
    import io
    import sys

    class GoneAfterALine(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", GoneAfterALine())
    json_file, plot = tmp_path / "a.json", tmp_path / "b.png"
    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies", "never",
                 "--seeds", "1000", "--no-progress", "--json", str(json_file),
                 "--plot", str(plot)]) == 141
    assert json_file.stat().st_size and plot.stat().st_size


def test_train_ends_quietly_when_its_reader_leaves(monkeypatch, capsys):
    """`hffm train ... | head -1` ended in a BrokenPipeError traceback (status 1)."""
    import hffm_env.agents.command as command

    def reader_gone(argv, prog):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(command, "_main", reader_gone)
    assert main(["train", "--total-timesteps", "8"]) == 141
    assert "Traceback" not in capsys.readouterr().err


def test_set_takes_several_overrides_at_once_as_train_agent_does(capsys):
    import json

    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--policies", "never",
                 "--seeds", "1000", "--no-progress", "--json", "-",
                 "--set", "env.episode_rounds=3", "fl.local_steps=2",
                 "--set", "env.energy_weight=0"]) == 0
    episode = json.loads(capsys.readouterr().out)["episodes"][0]
    assert len(episode["energy_j"]) == 3 and episode["rewards"][0] != 0.0


def test_bench_notes_an_agent_judged_on_training_seeds_and_takes_device_auto(capsys):
    """`hffm bench --agent` on seeds below 1000 ran without a word (train refuses them for
    its evaluation), and `--device auto`, which `hffm train` takes, was refused."""
    from pathlib import Path

    agent = Path(__file__).resolve().parents[1] / \
        "docs/results/agents/ppo-coarse-stt-plan-4clusters_s0"
    settings = ["--set", "env.observe_target=true", "--set", "env.target_accuracy=0.357",
                "--set", "env.episode_rounds=2"]
    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "3", "1000",
                 "--agent", str(agent), "--policies", "", "--no-progress", "--device", "auto",
                 *settings]) == 0
    assert "note: seeds [3] are training seeds (below 1000)" in capsys.readouterr().err
    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "3",
                 "--policies", "never", "--no-progress", *settings]) == 0
    assert "training seeds" not in capsys.readouterr().err  # no agent, no note


def test_from_json_refuses_two_agents_of_one_name(tmp_path, capsys):
    """Agents are named by their run folder; two folders called alike (out/stt and out4/stt)
    pooled into one row when their runs were merged."""
    import shutil
    from pathlib import Path

    agents = Path(__file__).resolve().parents[1] / "docs/results/agents"
    settings = ["--set", "env.observe_target=true", "--set", "env.target_accuracy=0.357",
                "--set", "env.episode_rounds=2", "--scenario", "small", "--fidelity", "cost",
                "--policies", "never", "--no-progress"]
    files = []
    for folder, agent, seed in (("a", "_s0", "1000"), ("b", "_s1", "1001"), ("c", "_s0", "1002")):
        copy = tmp_path / folder / "stt"
        shutil.copytree(agents / f"ppo-coarse-stt-plan-4clusters{agent}", copy)
        files.append(tmp_path / f"{folder}.json")
        assert main(["bench", *settings, "--seeds", seed, "--agent", str(copy),
                     "--json", str(files[-1])]) == 0
    capsys.readouterr()
    assert main(["bench", "--from-json", str(files[0]), str(files[1])]) == 2
    assert "agent:stt plays something else than agent:stt of" in capsys.readouterr().err
    assert main(["bench", "--from-json", str(files[0]), str(files[2])]) == 0  # the same agent


def test_version_is_the_packages_one(capsys):
    """`hffm --version` was a usage error, and pyproject.toml wrote the version a second time."""
    from importlib.metadata import version

    import hffm_env

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hffm {hffm_env.__version__}"
    assert version("hffm-env") == hffm_env.__version__  # the installed metadata reads it


def test_a_custom_period_menu_leaves_out_the_baselines_that_do_not_fit_it(capsys, tmp_path):
    """bench played star .. hffm-e2 and then stopped at hffm-e8 with no --json; train
    trained, then its comparison failed the same way."""
    import hffm_env.agents.command as train_agent

    menu = ["--set", "env.period_menu=[1,2,4,0]", "--set", "env.episode_rounds=2"]
    out = tmp_path / "bench.json"
    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
                 "--no-progress", "--json", str(out), *menu]) == 0
    assert ("note: leaving out hffm-e8, hffm-d2d-e8, module-aware: their periods are not on "
            "env.period_menu [1, 2, 4, 0]") in capsys.readouterr().err
    rows = [p["policy"] for p in json.loads(out.read_text())["policies"]]
    assert "hffm-e2" in rows and "hffm-e8" not in rows and "fixed-grid" in rows
    assert main(["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
                 "--policies", "star,hffm-e8", "--no-progress", *menu]) == 2
    assert "--policies has 'hffm-e8': it plays period 8" in capsys.readouterr().err
    assert train_agent.main(["--scenario", "small", "--fidelity", "cost", "--eval-policies",
                             "hffm-e8", "--out", str(tmp_path / "run"), *menu]) == 2
    assert "--eval-policies has 'hffm-e8': it plays period 8" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before training


def test_the_commands_read_the_config_file_once(tmp_path, config_file_reads, capsys):
    """`hffm` read the --config file for its preset, then again for its values."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text("scenario: paper\nenv:\n  episode_rounds: 6\n")
    assert main(["describe", "--config", str(config_file), "--json"]) == 0
    assert config_file_reads == [str(config_file)]
    assert json.loads(capsys.readouterr().out)["scenario"] == "paper"  # the file's preset


def test_input_paths_given_with_an_equals_sign_expand_the_home_folder(tmp_path, monkeypatch,
                                                                       capsys):
    """`--config=~/x.yaml` reaches the program with its ~ (the shell expands it only after a
    space): hffm train expanded it, the other commands said 'no such file'."""
    import shutil
    from pathlib import Path

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "variant.yaml").write_text("name: variant\n")
    assert main(["describe", "--config=~/variant.yaml", "--json"]) == 0
    assert '"scenario": "variant"' in capsys.readouterr().out
    results = Path(__file__).resolve().parents[1] / "docs/results"
    shutil.copy(results / "tradeoff_small.json", tmp_path / "run.json")
    assert main(["bench", "--from-json=~/run.json"]) == 0
    assert "| hffm-d2d-e2 |" in capsys.readouterr().out


def test_bench_plays_a_policy_of_your_own_by_module_and_class(tmp_path, capsys, monkeypatch):
    """`hffm bench --policies` took only the shipped baselines' names: a policy of one's own
    could be benchmarked only from Python."""
    import json
    import sys

    (tmp_path / "mypolicies.py").write_text(
        "from hffm_env.fl.schedule import Route\n"
        "from hffm_env.wrappers import full_action\n\n\n"
        "class CloudEveryFourth:\n"
        "    name = 'd2d-edge1-cloud4'\n\n"
        "    def reset(self, env, seed=None):\n"
        "        self.env = env.unwrapped\n\n"
        "    def act(self, obs, info):\n"
        "        return full_action(self.env, 1, 4, Route.D2D_RELAY)\n\n\n"
        "NOT_A_POLICY = 3\n\n\n"
        "class Exits:\n"
        "    def __init__(self):\n"
        "        raise SystemExit(3)\n\n\n"
        "class Unnamed(CloudEveryFourth):\n"
        "    name = 5\n\n\n"
        "def broken():\n"
        "    return 1 / 0\n\n\n"
        "def needs_one(x):\n"
        "    return x\n")
    base = ["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000",
            "--no-progress"]
    assert main([*base, "--policies", "mypolicies:CloudEveryFourth"]) == 2
    assert "cannot import 'mypolicies': ModuleNotFoundError" in capsys.readouterr().err
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mypolicies", raising=False)
    out = tmp_path / "mine.json"
    assert main([*base, "--policies", "never,mypolicies:CloudEveryFourth", "--against",
                 "never", "--json", str(out)]) == 0
    rows = [p["policy"] for p in json.loads(out.read_text())["policies"]]
    assert rows == ["never", "d2d-edge1-cloud4"]  # in the order given
    for spec, message in (("mypolicies:Nope", "mypolicies has no 'Nope'"),
                          ("mypolicies:NOT_A_POLICY", "3 is not a Policy"),
                          ("mypolicies:broken", "building it failed: ZeroDivisionError"),
                          ("mypolicies:needs_one", "cannot be built without arguments"),
                          ("agent:run1", "rows come from --agent"),
                          ("mypolicies:Exits", "building it failed: SystemExit: 3"),
                          ("mypolicies:Unnamed", "its name = 5: must be a non-empty string"),
                          ("mypolicies", "known policies are"),
                          (":x", "must be module:attribute")):
        assert main([*base, "--policies", spec]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (spec, err)


def test_bench_config_of_an_agent_folder_is_the_config_it_was_trained_on(tmp_path, capsys):
    """Benching an agent on its own settings meant retyping every override (`--config
    agent.json` failed on its other keys)."""
    import json
    import shutil
    from pathlib import Path

    agent = Path(__file__).resolve().parents[1] / "docs/results/agents" \
        / "ppo-coarse-stt-plan-term-4clusters_s0"
    base = ["bench", "--fidelity", "cost", "--seeds", "1000", "--policies", "never",
            "--no-progress"]
    out = tmp_path / "own.json"
    assert main([*base, "--config", str(agent), "--agent", str(agent), "--json",
                 str(out)]) == 0
    assert "was trained with" not in capsys.readouterr().err  # nothing differs
    settings = json.loads(out.read_text())["settings"]["config"]["env"]
    assert (settings["reward"], settings["target_accuracy"]) == ("spend-to-target", 0.357)
    assert main([*base, "--config", str(agent / "agent.json"), "--set",
                 "env.episode_rounds=4", "--agent", str(agent)]) == 0  # --set on top
    assert "env.episode_rounds=16 (here 4)" in capsys.readouterr().err
    # its model.zip names the agent as --agent takes it ("not UTF-8 text" as a config file)
    assert main([*base, "--config", str(agent / "model.zip"), "--agent", str(agent)]) == 0
    assert "was trained with" not in capsys.readouterr().err
    assert main([*base, "--config", str(agent), "--scenario", "paper"]) == 2
    assert "the agent was trained on scenario 'small'" in capsys.readouterr().err
    bare = tmp_path / "bare"
    shutil.copytree(agent, bare)
    info = json.loads((bare / "agent.json").read_text())
    for key in ("config", "overrides"):
        info.pop(key, None)
    (bare / "agent.json").write_text(json.dumps(info))
    # an agent.json that does not record its settings: its run's train_args.json says, as it
    # does for the notes of other settings (the two read one rule; --config refused here)
    assert main([*base, "--config", str(bare), "--agent", str(bare)]) == 0
    assert "was trained with" not in capsys.readouterr().err
    (bare / "train_args.json").unlink()
    assert main([*base, "--config", str(bare)]) == 2
    assert "does not say what it was trained on (no config, nor a scenario and overrides), " \
        "and its run has no train_args.json that does" in capsys.readouterr().err
    info["overrides"] = ["env.nosuch=1"]  # recorded, but not loadable: the reason, not "none"
    (bare / "agent.json").write_text(json.dumps(info))
    assert main([*base, "--config", str(bare)]) == 2
    assert "records do not load: unknown config key env.nosuch" in capsys.readouterr().err
    assert main([*base, "--config", str(tmp_path)]) == 2  # a folder, no agent in it
    assert "a folder without agent.json; give a YAML or JSON file" in capsys.readouterr().err
    for named in (agent, agent / "model.zip"):  # (the weights: "not UTF-8 text" before)
        assert main(["train", "--config", str(named), "--out", str(tmp_path / "t")]) == 2
        assert "an agent folder; training takes a YAML or JSON config file" in \
            capsys.readouterr().err


def test_a_bench_cut_short_keeps_and_says_what_finished(tmp_path, capsys, monkeypatch):
    """A policy's error threw away every episode played before it (no --json, no table), and
    an interrupted bench said nothing of the policies it never played."""
    import sys

    import pytest

    (tmp_path / "cutshort.py").write_text(
        "class Crashes:\n"
        "    name = 'crashes'\n\n"
        "    def reset(self, env, seed=None):\n"
        "        pass\n\n"
        "    def act(self, obs, info):\n"
        "        raise RuntimeError('a bug of its own')\n\n\n"
        "class Stops(Crashes):\n"
        "    name = 'stops'\n\n"
        "    def act(self, obs, info):\n"
        "        raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cutshort", raising=False)
    base = ["bench", "--scenario", "small", "--fidelity", "cost", "--seeds", "1000", "1001",
            "--no-progress", "--set", "env.episode_rounds=2"]
    out = tmp_path / "kept.json"
    with pytest.raises(RuntimeError, match="a bug of its own"):
        main([*base, "--policies", "never,cutshort:Crashes,star", "--json", str(out)])
    captured = capsys.readouterr()
    kept = json.loads(out.read_text())
    assert kept["interrupted"] is True and len(kept["episodes"]) == 2
    assert "| never |" in captured.out
    assert ("stopped by the error below after 2 of 6 episodes; not played: crashes, star; "
            f"what finished is tabled above, marked interrupted, and in {out}\n" in captured.err)
    assert main([*base, "--policies", "never,cutshort:Stops,star"]) == 130
    assert "interrupted after 2 of 6 episodes; not played: stops, star" in capsys.readouterr().err


def test_a_long_seed_list_is_said_as_a_range():
    """2000 seeds listed one by one ran 12,000 characters to the right of a table's header
    (and across a plot's title)."""
    from hffm_env.baselines.runner import seeds_words

    assert seeds_words([1000, 1001, 1002]) == "[1000, 1001, 1002]"
    assert seeds_words(range(1000, 3000)) == "1000..2999 (2000 seeds)"
    assert seeds_words([*range(1000, 1011), 1020]) == "[1000, 1001, ..., 1020] (12 seeds)"


def test_describe_refuses_two_config_seeds(capsys):
    """--seed 3 --set seed=5 described seed 3 without a word."""
    assert main(["describe", "--seed", "3", "--set", "seed=5"]) == 2
    assert "--seed 3 and --set seed=5 both set the config seed" in capsys.readouterr().err
