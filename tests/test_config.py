"""Config: presets, loading from dicts/files/overrides, and clear errors for bad input."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hffm_env.config import (
    ConfigError,
    PlacementConfig,
    apply_overrides,
    from_dict,
    get_scenario,
    load_scenario,
    paper,
    scenario_names,
    small,
    to_dict,
)


def test_presets_mirror_the_intent():
    p = paper()
    assert p.placement.num_edge_servers == 10 and p.placement.num_devices == 40
    assert p.channel.prototype_noise_quirk is True
    assert p.compute.enabled is False and p.cost.charge_downlink is False
    assert p.cost.model_payload_bits == 48_000e3
    s = small()
    assert s.placement.num_devices == 12 and s.placement.num_edge_servers == 4
    assert s.channel.prototype_noise_quirk is False
    assert set(scenario_names()) >= {"paper", "small"}


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        small().placement.num_devices = 3  # type: ignore[misc]


def test_round_trip_through_dict():
    s = small()
    assert from_dict(to_dict(s)) == s


def test_unknown_scenario_lists_known_ones():
    with pytest.raises(ConfigError, match=r"known scenarios are \['paper', 'small', 'medium'\]$"):
        get_scenario("tiny")
    # a config file's path given as the scenario is pointed to config_file=
    for path in ("/tmp/cfg.json", "cfg.yaml", Path("cfg")):
        with pytest.raises(ConfigError, match="a config file is given as config_file="):
            get_scenario(path)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="placement.num_device.*allowed keys"):
        from_dict({"placement": {"num_device": 3}}, base=small())


def test_overrides_are_typed_and_validated():
    s = apply_overrides(small(), ["channel.d2d.bandwidth_hz=2e6", "fl.local_steps=3"])
    assert s.channel.d2d.bandwidth_hz == 2e6 and s.fl.local_steps == 3
    with pytest.raises(ConfigError, match=r"tx_power_w = -1.0"):
        apply_overrides(small(), {"channel.uplink.tx_power_w": -1.0})
    with pytest.raises(ConfigError, match=r"bandwidth_hz = 0"):
        apply_overrides(small(), ["channel.d2d.bandwidth_hz=0"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        apply_overrides(small(), ["fl.local_steps"])
    with pytest.raises(ConfigError, match="fl.local_steps = 'many': must be an integer$"):
        apply_overrides(small(), ["fl.local_steps=many"])
    # a dict's values are taken as given: "4" is a string there, and the error says what to do
    for value, shown in (("4", "4"), ("true", "True"), ("1e-3", "0.001")):
        key = {"4": "fl.local_steps", "true": "env.observe_target", "1e-3": "fl.lr"}[value]
        with pytest.raises(ConfigError, match=f"{key} = '{value}': must be .*: give {shown} "
                           f"without quotes in a dict .*, or the override as one "
                           f"'{key}={value}' string"):
            apply_overrides(small(), {key: value})
    for key, value in (("fl.local_steps", "4.5"), ("env.observe_target", "1"),
                       ("fl.local_steps", "true"),  # no hint that would fail in its turn,
                       ("fl.local_steps", "4\n"), ("fl.local_steps", "4" + " " * 100)):
        # nor one that echoes a padded or long value twice
        with pytest.raises(ConfigError, match=f"{key} = {re.escape(repr(value))}: must be "
                           "[^(]*$"):
            apply_overrides(small(), {key: value})


def test_overlapping_overrides_are_refused_and_the_callers_values_kept():
    """A section given as a mapping and settings inside it given dotted merge (they were
    refused even when disjoint); a setting given both ways is refused in either order."""
    for order in (["fl.local_steps=2", "fl={lr: 0.1}"], ["fl={lr: 0.1}", "fl.local_steps=2"]):
        s = apply_overrides(small(), order)
        assert (s.fl.lr, s.fl.local_steps) == (0.1, 2)
    for order in (["fl.lr=0.2", "fl={lr: 0.1}"], ["fl={lr: 0.1}", "fl.lr=0.2"]):
        with pytest.raises(ConfigError, match="fl.lr is given twice"):
            apply_overrides(small(), order)
    for order in (["fl=3", "fl.lr=0.1"], ["fl.lr=0.1", "fl=3"]):
        with pytest.raises(ConfigError, match="overrides fl = 3 and .*no section"):
            apply_overrides(small(), order)
    section = {"d2d": {"bandwidth_hz": 2e6}}
    s = apply_overrides(small(), {"channel": section, "channel.d2d.tx_power_w": 0.1})
    assert (s.channel.d2d.bandwidth_hz, s.channel.d2d.tx_power_w) == (2e6, 0.1)
    with pytest.raises(ConfigError, match="channel.d2d.bandwidth_hz is given twice"):
        apply_overrides(small(), {"channel": section, "channel.d2d.bandwidth_hz": 1e6})
    assert section == {"d2d": {"bandwidth_hz": 2e6}}
    s = apply_overrides(small(), ["fl.lr=0.5", "fl.lr=0.2"])  # the same key: the later wins
    assert s.fl.lr == 0.2


def test_overrides_read_integers_as_written_and_say_what_is_allowed():
    """YAML 1.1 read seed=010 as octal 8 and round_duration_s=1:30 as 90 (base 60); -0.0 and
    0.0 were two cache keys; inf was "must be a number"; numpy's scalars were refused in
    optional fields."""
    import numpy as np

    from hffm_env.config import DataConfig, EnvConfig, apply_overrides, parse_override
    from hffm_env.models.pretrain import cache_key

    assert parse_override("seed=010") == ("seed", 10)
    assert parse_override("env.period_menu=[01, 02, 04, 010, 0]")[1] == [1, 2, 4, 10, 0]
    assert parse_override("data.samples_per_device=0x10")[1] == 16
    with pytest.raises(ConfigError, match="dynamics.round_duration_s = '1:30': must be a number"):
        apply_overrides(small(), ["dynamics.round_duration_s=1:30"])
    with pytest.raises(ConfigError, match=r"fl.lr = inf: must be a number in \(0, 10\]"):
        apply_overrides(small(), ["fl.lr=inf"])
    negative, zero = (apply_overrides(small(), [f"data.noise_std={v}"]) for v in ("-0.0", "0"))
    assert cache_key(negative.model, negative.data) == cache_key(zero.model, zero.data)
    assert EnvConfig(target_accuracy=np.float32(0.5)).target_accuracy == 0.5
    assert EnvConfig(period_menu=(np.int64(1), 2, 4, 8, 0)).period_menu == (1, 2, 4, 8, 0)
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_override("fl.lr=" + "[" * 3000 + "]" * 3000)
    # an integer too large for a float, built in Python, is refused by name (OverflowError)
    with pytest.raises(ConfigError, match=r"data.noise_std = 10+\.\.\.0+: must be a number"):
        DataConfig(noise_std=10**400)


def test_more_devices_per_cluster_than_devices():
    with pytest.raises(ConfigError, match="devices_per_cluster = 50: more devices per cluster"):
        PlacementConfig(num_devices=40, devices_per_cluster=50, num_edge_servers=1)
    # uniform placement ignores devices_per_cluster: it refused two devices for two servers
    uniform = PlacementConfig(placement="uniform", num_devices=2, num_edge_servers=2)
    assert uniform.devices_per_cluster > uniform.num_devices


def test_area_too_small_for_spacing_says_so():
    with pytest.raises(ConfigError, match="area_side_m = 1000.0: too small to place 100"):
        PlacementConfig(area_side_m=1000.0, num_edge_servers=100, num_devices=400)


@pytest.mark.parametrize("preset", ["paper", "medium", "small"])
def test_a_whole_config_saved_to_a_file_loads_back(tmp_path, preset):
    """to_dict(paper()) written to a file was layered on small and refused ("the name of
    another preset"), where the same dict loaded."""
    import json

    import yaml

    from hffm_env.config import load_scenario, to_dict

    config = load_scenario(preset)
    (tmp_path / "c.json").write_text(json.dumps(to_dict(config)))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(to_dict(config)))
    for name in ("c.json", "c.yaml"):
        assert load_scenario(config_file=tmp_path / name) == config


def test_yaml_and_json_files(tmp_path):
    yml = tmp_path / "s.yaml"
    yml.write_text("scenario: paper\nfl:\n  local_steps: 5\n")
    s = load_scenario(config_file=yml, overrides=["env.episode_rounds=7"])
    assert s.name == "paper" and s.fl.local_steps == 5 and s.env.episode_rounds == 7
    assert load_scenario("paper", config_file=yml) == load_scenario(config_file=yml)
    # another preset given by name: the file's would silently win (as resolve_scenario says)
    with pytest.raises(ConfigError, match="names scenario 'paper', but the scenario given is "
                                          "'small'"):
        load_scenario("small", config_file=yml)
    assert load_scenario() == load_scenario("small")
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"data": {"dirichlet_alpha": 0.1}}))
    assert load_scenario("small", config_file=js).data.dirichlet_alpha == 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_scenario("small", config_file=bad)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_scenario("small", config_file=tmp_path / "missing.yaml")
    # a typo in the file names the file (a --set of the key said the same words), and the
    # top level's allowed keys include the scenario the file may name
    typo = tmp_path / "typo.yaml"
    typo.write_text("fl: {lrr: 1}\n")
    with pytest.raises(ConfigError, match="config file '.*typo.yaml': unknown config key fl.lrr"):
        load_scenario("small", config_file=typo, overrides=["fl.lr=0.1"])
    # a dict reads as the same file does: on small (it was on the dataclass defaults, 40
    # devices), and a preset's name under its own scenario key is refused as the file's is
    rounds = tmp_path / "rounds.yaml"
    rounds.write_text("env: {episode_rounds: 4}\n")
    assert load_scenario({"env": {"episode_rounds": 4}}) == load_scenario(config_file=rounds)
    assert load_scenario({"env": {"episode_rounds": 4}}).placement == small().placement
    with pytest.raises(ConfigError, match="name = 'paper': the name of another preset, on "
                                          "preset 'small'"):
        load_scenario({"scenario": "small", "name": "paper"})
    paper = load_scenario("paper", overrides=["fl.lr=0.01"])
    assert load_scenario(to_dict(paper)) == paper  # a whole config's dict is itself
    # ... and a preset's name alone is that preset (it was small's settings labelled paper)
    assert load_scenario({"name": "paper"}) == load_scenario("paper")
    # a file's unknown preset names the file; --set lists no scenario among its keys
    nope = tmp_path / "nope.yaml"
    nope.write_text("scenario: nope\n")
    with pytest.raises(ConfigError, match="config file '.*nope.yaml': scenario = 'nope': "
                                          "unknown"):
        load_scenario(config_file=nope)
    with pytest.raises(ConfigError, match="allowed keys here are \\['name', "):
        load_scenario("small", overrides=["foo=1"])
    typo.write_text("episodes: []\n")  # a bench JSON given for a config
    with pytest.raises(ConfigError, match="unknown config key episodes: allowed keys here are "
                                          "\\['scenario', 'name', "):
        load_scenario("small", config_file=typo)


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match="data.dirichlet_alpha = 0"):
        apply_overrides(small(), {"data.dirichlet_alpha": 0})
    with pytest.raises(ConfigError, match="data.tasks contains 'dance'"):
        apply_overrides(small(), {"data.tasks": ["dance"]})
    with pytest.raises(ConfigError, match="env.period_menu"):
        apply_overrides(small(), {"env.period_menu": [-1]})
    with pytest.raises(ConfigError, match=r"env.period_menu = \[1, 2, 2, 0\]: repeats \[2\]"):
        apply_overrides(small(), {"env.period_menu": [1, 2, 2, 0]})


@pytest.mark.parametrize("override, message", [
    ({"data.min_samples_per_device": 1},
     r"data.min_samples_per_device = 1: must be an integer in \[2, "),
    ({"data.question_length": 6}, r"data.question_length = 6: must be an integer in \[7, 256\]"),
    # an image or clip of one sample: the extractors' first layers have nothing to read
    ({"data.image_size_px": 1}, r"data.image_size_px = 1: must be an integer in \[2, 256\]"),
    ({"data.audio_length": 1}, r"data.audio_length = 1: must be an integer in \[2, 16384\]"),
    ({"fl.task_arrival_prob": 0.1, "fl.max_pending_requests": 1},
     r"fl.max_pending_requests = 1: must be >= 2 when fl.task_arrival_prob > 0"),
])
def test_what_the_data_and_engine_need_is_checked_when_the_config_is_built(override, message):
    # each was accepted here and failed later, building the data (or silently never happened:
    # a task arrival with one request slot)
    with pytest.raises(ConfigError, match=message):
        apply_overrides(small(), override)
    apply_overrides(small(), {"fl.max_pending_requests": 1})  # fine without arrivals


def test_the_shortest_question_length_fits_the_longest_template():
    from hffm_env.config import MIN_QUESTION_LENGTH
    from hffm_env.data.scenes import QUESTION_TYPES

    assert MIN_QUESTION_LENGTH == 1 + max(len(q.split()) for q in QUESTION_TYPES)  # + <cls>


def test_numpy_numbers_are_taken_as_python_numbers():
    import numpy as np

    config = apply_overrides(small(), {"env.episode_rounds": np.int64(3), "fl.lr": np.float32(0.5)})
    assert type(config.env.episode_rounds) is int and config.env.episode_rounds == 3
    assert type(config.fl.lr) is float and config.fl.lr == 0.5
    # numpy's booleans and 1-d arrays too (a sweep's values: "must be true or false", "must
    # be a list" before); a 2-d array is still no list of numbers
    config = apply_overrides(small(), {"dynamics.mobility": np.True_,
                                       "env.period_menu": np.array([1, 2, 0])})
    assert config.dynamics.mobility is True and config.env.period_menu == (1, 2, 0)
    assert type(config.env.period_menu[0]) is int
    with pytest.raises(ConfigError, match="env.period_menu"):
        apply_overrides(small(), {"env.period_menu": np.array([[1, 2]])})


def test_a_tiny_server_spacing_is_checked_without_dividing_by_zero():
    # half the spacing squared underflows to 0: the packing bound divided by it
    cfg = apply_overrides(small(), {"placement.min_server_spacing_m": 1e-300})
    assert cfg.placement.min_server_spacing_m == 1e-300  # (a config object is always truthy)


@pytest.mark.parametrize(("name", "text", "key"), [
    ("c.yaml", "env: {episode_rounds: 3}\nenv: {episode_rounds: 4}\n", "'env'"),
    ("c.yaml", "fl:\n  lr: 0.1\n  lr: 0.2\n", "'lr'"),
    ("c.json", '{"fl": {"lr": 0.1, "lr": 0.2}}', "'lr'"),
])
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, name, text, key):
    path = tmp_path / name
    path.write_text(text)  # the last value was silently kept
    with pytest.raises(ConfigError, match=f"the key {key} appears twice"):
        load_scenario("small", config_file=path)


@pytest.mark.parametrize(("overrides", "message"), [
    # Python refuses to read or print integers beyond 4,300 digits: raw ValueErrors before
    (["env.episode_rounds=" + "9" * 5000], "override env.episode_rounds: its value cannot"),
    ({"env.episode_rounds": 10**5000}, "episode_rounds = a more than 4000-digit number"),
    ({"env.accuracy_weight": 10**400}, "accuracy_weight = a 401-digit number: too large"),
])
def test_an_integer_too_long_to_read_is_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_scenario("small", overrides=overrides)


@pytest.mark.parametrize("name", ["c.json", "c.yaml"])
def test_a_config_file_with_an_integer_too_long_to_read_is_named(tmp_path, name):
    (tmp_path / name).write_text('{"env": {"episode_rounds": %s}}' % ("9" * 5000))
    with pytest.raises(ConfigError, match=f"config file .*{name}': a value cannot be read"):
        load_scenario("small", config_file=tmp_path / name)


@pytest.mark.parametrize("name", ["c.json", "c.yaml"])
def test_config_files_are_read_as_utf8_with_or_without_a_bom(tmp_path, name):
    """Files were read in the locale's encoding (under a Latin-1 locale a UTF-8 comment broke
    a YAML file), and a BOM broke every JSON one."""
    text = ('{"fl": {"lr": 0.02}}' if name.endswith(".json")
            else "# the learning rate — doubled\nfl: {lr: 0.02}\n")
    (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_scenario("small", config_file=tmp_path / name).fl.lr == 0.02


def test_yaml_merge_keys_still_work_and_an_unhashable_key_is_one_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("channel:\n  uplink: &link {bandwidth_hz: 2000000.0, tx_power_w: 0.5}\n"
                    "  d2d: {<<: *link, bandwidth_hz: 4000000.0}\n")
    d2d = load_scenario("small", config_file=path).channel.d2d
    assert (d2d.bandwidth_hz, d2d.tx_power_w) == (4e6, 0.5)
    path.write_text("? [1, 2]\n: 3\n")
    with pytest.raises(ConfigError, match="not valid JSON/YAML"):
        load_scenario("small", config_file=path)


def test_hffm_refuses_a_scenario_other_than_the_config_files_preset(tmp_path, capsys):
    from hffm_env.cli import main

    path = tmp_path / "c.yaml"
    path.write_text("scenario: paper\nenv: {episode_rounds: 3}\n")
    assert main(["describe", "--scenario", "small", "--config", str(path)]) == 2
    assert ("c.yaml' names scenario 'paper', but the scenario given is 'small'"
            in capsys.readouterr().err)  # it gave paper
    for given in ([], ["--scenario", "paper"]):  # without --scenario: the file's preset
        assert main(["describe", *given, "--config", str(path)]) == 0
        assert capsys.readouterr().out.startswith("scenario paper")


def test_train_takes_the_config_files_preset_and_refuses_another(tmp_path):
    """train_agent.py trained on the file's preset but recorded (and named) --scenario's."""
    from hffm_env.agents.common import TrainArgs

    path = tmp_path / "c.yaml"
    path.write_text("scenario: paper\n")
    assert TrainArgs(config=str(path), fidelity="cost").scenario == "paper"
    assert TrainArgs(fidelity="cost").scenario == "small"
    with pytest.raises(ConfigError, match="names scenario 'paper', but the scenario given"):
        TrainArgs(scenario="small", config=str(path), fidelity="cost")


def test_the_token_counts_the_memory_estimate_uses_are_the_extractors():
    import torch

    from hffm_env.config import AUDIO_TOKENS, IMAGE_TOKENS, DataConfig
    from hffm_env.models.extractors import IMAGE_GRID, AudioExtractor

    assert IMAGE_GRID * IMAGE_GRID == IMAGE_TOKENS
    data = DataConfig()
    audio = AudioExtractor(8, data.audio_length)(torch.zeros(2, data.audio_length))
    assert audio.shape[1] == AUDIO_TOKENS


def test_module_ids_split_into_type_and_name():
    from hffm_env.config import split_module_id

    assert split_module_id("encoder/image") == ("encoder", "image")
    assert split_module_id("adapter/fusion/x") == ("adapter", "fusion/x")
    assert split_module_id("moe") == ("moe", "")


def test_a_preset_is_not_an_override():
    """overrides=["scenario=paper"] started over from paper, dropping every earlier layer."""
    with pytest.raises(ConfigError, match="override scenario = 'paper': a preset is chosen"):
        load_scenario("small", overrides=["fl.lr=0.5", "scenario=paper"])


def test_a_config_file_must_be_a_small_regular_file(tmp_path):
    """/dev/zero read until memory ran out."""
    import os

    from hffm_env.config import MAX_CONFIG_FILE_BYTES

    if os.path.exists("/dev/zero"):
        with pytest.raises(ConfigError, match="not a regular file"):
            load_scenario("small", config_file="/dev/zero")
    with pytest.raises(ConfigError, match="cannot be read"):  # stat failing is one error too
        load_scenario("small", config_file="x" * 300 + ".yaml")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_CONFIG_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="a config file is at most"):
        load_scenario("small", config_file=big)


def test_the_env_takes_the_config_files_preset_and_refuses_another(tmp_path):
    import gymnasium as gym

    import hffm_env  # noqa: F401

    file = tmp_path / "paper.yaml"
    file.write_text("scenario: paper\n")
    assert gym.make("hffm/HFFM-v0", fidelity="cost", config_file=str(file)).unwrapped \
        .config.name == "paper"
    assert gym.make("hffm/HFFM-v0", fidelity="cost").unwrapped.config.name == "small"
    with pytest.raises(ConfigError, match="names scenario 'paper', but the scenario given is"):
        gym.make("hffm/HFFM-v0", scenario="medium", fidelity="cost", config_file=str(file))


def test_the_memory_estimate_counts_the_floor_of_samples_per_device():
    from hffm_env.config import estimate_memory_bytes

    floor = apply_overrides(small(), {"data.min_samples_per_device": 100_000})
    assert estimate_memory_bytes(floor, "train")["scenes"] > \
        50 * estimate_memory_bytes(small(), "train")["scenes"]


def test_the_memory_estimate_counts_d2d_pairs_and_no_scenes_without_training():
    """One cluster of 5,000 devices: 12.5 million D2D pairs, about 10 GB of channel state and
    graph edges, which the estimate once left out; cost fidelity draws no scene at all."""
    from hffm_env.config import estimate_memory_bytes

    one_cluster = apply_overrides(small(), {
        "placement.num_edge_servers": 1, "placement.num_devices": 5000,
        "placement.devices_per_cluster": 5000})
    cost = estimate_memory_bytes(one_cluster, "cost")
    assert "scenes" not in cost and "features" not in cost
    assert 5e9 < cost["network"] < 2e10
    spread = apply_overrides(one_cluster, {"placement.num_edge_servers": 100,
                                           "placement.devices_per_cluster": 50,
                                           "placement.area_side_m": 20000.0})
    assert estimate_memory_bytes(spread, "cost")["network"] < cost["network"] / 50
    assert estimate_memory_bytes(one_cluster, "train")["scenes"] > 1e9
    # the split's indices are drawn in every fidelity (24 bytes a sample)
    huge = apply_overrides(small(), {"data.samples_per_device": 10**6})
    assert estimate_memory_bytes(huge, "cost")["sample indices"] >= 12 * 10**6 * 24


def test_a_negative_zero_spread_is_a_zero_spread():
    """-0.0 passed the config's check and failed in numpy's lognormal; it plays as 0.0 (the
    test only made and reset the envs)."""
    import gymnasium as gym

    import hffm_env  # noqa: F401

    def played(overrides: dict) -> tuple:
        env = gym.make("hffm/HFFM-v0", fidelity="cost", overrides=overrides)
        obs, _ = env.reset(seed=0)
        env.action_space.seed(0)
        obs, *_ = env.step(env.action_space.sample())
        core = env.unwrapped
        out = (core.config, obs, core.network.topology.device_xy_m.copy())
        env.close()
        return out

    for key, others in (("data.sample_count_sigma", {}),
                        ("dynamics.speed_mps_max", {"dynamics.mobility": True,
                                                    "dynamics.speed_mps_min": 0.0})):
        negative, positive = played({**others, key: -0.0}), played({**others, key: 0.0})
        assert negative[0] == positive[0]  # (-0.0 == 0.0)
        np.testing.assert_array_equal(negative[1], positive[1])  # the same episode
        np.testing.assert_array_equal(negative[2], positive[2])


def test_a_variant_named_after_another_preset_is_refused(tmp_path):
    """A config file with ``name: small`` on preset paper gave reports headed "scenario
    small" about paper's 40 devices."""
    file = tmp_path / "variant.yaml"
    file.write_text("name: small\n")
    with pytest.raises(ConfigError, match="name = 'small': the name of another preset, on "
                                          "preset 'paper'"):
        load_scenario("paper", config_file=file)
    with pytest.raises(ConfigError, match="name = 'medium'"):
        load_scenario("small", overrides=["name=medium"])
    assert load_scenario("paper", overrides=["name=my-paper"]).name == "my-paper"
    assert load_scenario("small", overrides=["name=small"]).name == "small"


def test_a_file_naming_a_preset_is_not_layered_on_a_whole_config(tmp_path):
    """The file's preset replaced the config given (its horizon, clusters and name), silently."""
    mine = load_scenario("small", overrides={"env.episode_rounds": 4, "name": "mine"})
    named = tmp_path / "tweak.yaml"
    named.write_text("scenario: small\nenv:\n  energy_weight: 0.3\n")
    with pytest.raises(ConfigError, match="names scenario 'small', but a whole config was"):
        load_scenario(mine, config_file=named)
    plain = tmp_path / "plain.yaml"
    plain.write_text("env:\n  energy_weight: 0.3\n")
    layered = load_scenario(mine, config_file=plain)
    assert (layered.name, layered.env.episode_rounds, layered.env.energy_weight) == \
        ("mine", 4, 0.3)


@pytest.mark.parametrize(("build", "message"), [
    (lambda c: c.DynamicsConfig(mobility="false"), "dynamics.mobility = 'false': must be true"),
    (lambda c: c.ComputeConfig(enabled="no"), "compute.enabled = 'no': must be true or false"),
    (lambda c: c.ChannelConfig(outage_snr_db=True), r"channel.outage_snr_db = True: must be a"),
    (lambda c: c.ChannelConfig(uplink={"bandwidth_hz": 1e6}),
     r"channel.uplink = \{.*\}: must be an instance of LinkConfig"),
    (lambda c: c.ModelConfig(pretrained_path=5), "model.pretrained_path = 5: must be a string"),
    (lambda c: c.ModelConfig(pretrained_path=" "), "model.pretrained_path = ' ': must name"),
    (lambda c: c.DataConfig(max_objects=1), "data.max_objects = 1: the count task needs"),
    (lambda c: c.DataConfig(label_skew=None), "data.label_skew = None: must be a list of str"),
    (lambda c: c.DataConfig(test_fraction="0.5"), "data.test_fraction = '0.5': must be a num"),
    (lambda c: c.EnvConfig(period_menu=1.5), "env.period_menu = 1.5: must be a list of int"),
    (lambda c: c.ScenarioConfig(seed=-1), r"^seed = -1: must be an integer in \[0, "),
    (lambda c: c.ScenarioConfig(name=3), "^name = 3: must be a string"),
])
def test_a_config_built_in_python_is_checked_like_one_read_from_a_file(build, message):
    """Dataclasses built directly skipped from_dict's coercion: mobility="false" turned
    mobility on, enabled="no" charged computation, a dict for a link or None for a list
    failed deep in the simulator; and ScenarioConfig's own keys were labelled scenario.seed."""
    import hffm_env.config as config

    with pytest.raises(ConfigError, match=message):
        build(config)
    # what means the same is taken, as plain types: lists, arrays and ranges for tuples,
    # numpy's booleans, paths
    assert config.DataConfig(tasks=["vqa"]).tasks == ("vqa",)
    assert config.EnvConfig(period_menu=np.array([1, 2, 0])).period_menu == (1, 2, 0)
    assert config.EnvConfig(period_menu=range(1, 3)).period_menu == (1, 2)
    assert config.DynamicsConfig(mobility=np.True_).mobility is True
    steps = config.FLConfig(local_steps=np.int64(3), lr=np.float32(0.5))
    assert (type(steps.local_steps), type(steps.lr)) == (int, float)
    assert config.ModelConfig(pretrained_path=Path("/ckpt")).pretrained_path == "/ckpt"
    hash(config.DataConfig(tasks=["vqa"]))


def test_a_checkpoint_path_is_kept_absolute(tmp_path, monkeypatch):
    """A relative pretrained_path named another folder after a chdir (and in a config saved
    with a run, read from elsewhere): it is resolved when the config is made."""
    import hffm_env.config as config

    monkeypatch.chdir(tmp_path)
    made_here = config.ModelConfig(pretrained_path="ckpt")
    monkeypatch.chdir("/")
    assert made_here.pretrained_path == str(tmp_path.resolve() / "ckpt")
    assert config.ModelConfig(pretrained_path="~/ckpt").pretrained_path == str(
        Path.home().resolve() / "ckpt")
    assert config.ModelConfig(**config.to_dict(made_here)) == made_here


def test_extreme_radio_values_are_refused_or_priced():
    """A bandwidth of 1e-300 Hz underflowed the noise to 0, so the link was free; a reference
    distance of 1e-300 m made every round fail; a device radius of 0 divided by zero in the
    memory estimate."""
    import gymnasium as gym

    with pytest.raises(ConfigError, match=r"channel.uplink.bandwidth_hz = 1e-300: must be a "
                                          r"number in \[1, 1e\+12\]"):
        apply_overrides(small(), {"channel.uplink.bandwidth_hz": 1e-300})
    with pytest.raises(ConfigError, match=r"channel.ref_distance_m = 1e-300: must be a number "
                                          r"in \[0.001, 10000\]"):
        apply_overrides(small(), {"channel.ref_distance_m": 1e-300})
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost",
                   overrides={"placement.device_radius_m": 0.0})
    env.reset(seed=0)
    assert np.isfinite(env.step(env.action_space.sample())[1])
    env.close()


def test_exponent_numbers_read_as_numbers_in_yaml_files_and_lists(tmp_path):
    """PyYAML reads 2e6 as a string (YAML 1.1): a file's bandwidth_hz: 2e6 was refused as not
    a number, and so was --set env.period_menu=[1,2,1e3], while --set ...=2e6 worked."""
    path = tmp_path / "c.yaml"
    path.write_text("channel:\n  d2d: {bandwidth_hz: 2e6}\n  uplink: {bandwidth_hz: .5e7}\n"
                    "fl: {lr: 3.e-3}\nenv: {period_menu: [1, 2, 1e3, 0]}\n")
    config = load_scenario("small", config_file=path)
    assert (config.channel.d2d.bandwidth_hz, config.channel.uplink.bandwidth_hz) == (2e6, 5e6)
    assert config.fl.lr == 3e-3 and config.env.period_menu == (1, 2, 1000, 0)
    assert apply_overrides(small(), ["env.period_menu=[1,2,1e3]"]).env.period_menu == (1, 2, 1000)
    with pytest.raises(ConfigError, match="override channel.uplink: the key 'bandwidth_hz' "
                                          "appears twice"):
        apply_overrides(small(), ["channel.uplink={bandwidth_hz: 1e6, bandwidth_hz: 2e6}"])
    path.write_text("name: '2e6'\n")  # quoted: a string, as YAML means
    assert load_scenario("small", config_file=path).name == "2e6"


def test_a_value_of_yaml_aliases_is_shown_bounded(tmp_path):
    """343 bytes of nested YAML aliases under fl.lr made a 1.4 GB error line (and a
    MemoryError); the value is shown cut, wherever it came from."""
    rows = ["    - &a [1,1,1,1,1,1,1,1,1]"] + [
        f"    - &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefg", "bcdefgh")]
    config = tmp_path / "laughs.yaml"
    config.write_text("fl:\n  lr:\n" + "\n".join(rows) + "\n")
    with pytest.raises(ConfigError, match=r"fl.lr = \[\[1, 1, 1, 1, 1, 1, \.\.\.\]") as refused:
        load_scenario("small", config_file=config)
    assert len(str(refused.value)) < 1000 and str(refused.value).endswith("must be a number")
    with pytest.raises(ConfigError) as refused:
        load_scenario("small", overrides=[f"fl.lr={list(range(10_000))}"])
    assert len(str(refused.value)) < 1000
    config.write_text("scenario:\n" + "\n".join(rows) + "\n")  # the preset's name too
    with pytest.raises(ConfigError, match="must be a preset name") as refused:
        load_scenario(None, config_file=config)
    assert len(str(refused.value)) < 1000


def test_an_optional_settings_bad_value_says_how_to_give_none():
    # "none" read as a string: "must be a number", with no word of null
    with pytest.raises(ConfigError, match=r"env.energy_budget_j = 'none': must be a number, "
                                          r"or null for none \(null or ~"):
        apply_overrides(small(), ["env.energy_budget_j=none"])
    for none in ("null", "~"):
        assert apply_overrides(small(), [f"env.energy_budget_j={none}"]).env.energy_budget_j is None


def test_a_section_given_in_part_keeps_the_rest_of_its_default():
    # a link without its powers failed: "LinkConfig.__init__() missing 2 required positional
    # arguments" (layered on a preset it worked)
    from hffm_env.config import ChannelConfig, from_dict

    config = from_dict({"channel": {"uplink": {"bandwidth_hz": 2e6}}})
    assert config.channel.uplink.bandwidth_hz == 2e6
    assert config.channel.uplink.tx_power_w == ChannelConfig().uplink.tx_power_w
