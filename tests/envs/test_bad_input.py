"""Bad input through the Python API: every mistake gets an error that names the argument (or
slot), the value and what is allowed, before anything changes; a closed env says so."""

from __future__ import annotations

import dataclasses
import math
import re
import types

import gymnasium as gym
import numpy as np
import pytest
import torch

import hffm_env
from hffm_env.agents.job import agent_policy
from hffm_env.baselines.plan import PlanPolicy, RoundPlan
from hffm_env.baselines.policies import make_policy, policy_names
from hffm_env.baselines.runner import BenchResult
from hffm_env.config import (
    MODULE_TYPES,
    ConfigError,
    EnvConfig,
    ScenarioConfig,
    apply_overrides,
    from_dict,
    load_config_file,
    load_scenario,
)
from hffm_env.envs.hffm_env import HFFMEnv, measured
from hffm_env.fl.build import build_engine
from hffm_env.fl.schedule import RelaySource, Route, Schedule, SourceKind, Tier
from hffm_env.seeding import RandomStreams
from hffm_env.sim import Network
from hffm_env.testing import TINY_OVERRIDES, integration
from hffm_env.wrappers import ActionMaskObservation, CoarseActions, ScheduleMenu, full_action


def _cost_env(**kwargs) -> HFFMEnv:
    return HFFMEnv("small", **{"fidelity": "cost", **kwargs})


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"device": "gpu"}, ["device = 'gpu'", "allowed cpu"]),
    ({"device": 3}, ["device = 3", "not a device name"]),
    ({"torch_threads": 0}, ["torch_threads = 0", ">= 1"]),
    ({"torch_threads": 2.7}, ["torch_threads = 2.7"]),
    ({"reward": "cost-to-target"}, ["env.target_accuracy = None", "cost-to-target"]),
    ({"reward": "nope"}, ["env.reward = 'nope'", "accuracy-level"]),
    ({"overrides": "env.episode_rounds=3"}, ["overrides = 'env.episode_rounds=3'", "a dict"]),
    ({"overrides": [5]}, ["override 5", "key=value"]),
    ({"config_file": 5}, ["config file = 5", "a path"]),
    ({"progress": "yes"}, ["progress = 'yes'", "True or False"]),
])
def test_a_bad_constructor_argument_is_named_with_its_value(kwargs, names):
    with pytest.raises(ValueError) as raised:
        _cost_env(**kwargs)
    for name in names:
        assert name in str(raised.value)


def test_a_period_not_in_the_menu_says_where_the_menu_is_and_what_0_means():
    layout = _cost_env().layout
    with pytest.raises(ValueError, match=r"cloud_period/encoder = 'never': not in the "
                       r"config's env.period_menu \[1, 2, 4, 8, 0\] \(0 is \"never\"\)"):
        layout.encode(edge_period=1, cloud_period="never")


def test_a_placement_that_does_not_fit_the_action_space_is_refused():
    layout = _cost_env().layout
    members = [m.copy() for m in layout.cluster_members]
    with pytest.raises(ValueError, match="cluster_members of sizes"):
        layout.place(cluster_members=members[:-1])
    with pytest.raises(ValueError, match="partners of shape"):
        layout.place(partners=layout.partners[:, :1])
    layout.place(cluster_members=members[::-1], partners=layout.partners)  # same sizes: fine
    assert [m.tolist() for m in layout.cluster_members] == [m.tolist() for m in members[::-1]]


def test_a_preset_id_refuses_another_scenario():
    """gym.make("hffm/HFFM-Small-v0", scenario="medium") built medium under small's id."""
    with pytest.raises(ValueError, match="scenario = 'medium': hffm/HFFM-Small-v0 is the 'small'"):
        gym.make("hffm/HFFM-Small-v0", scenario="medium", fidelity="cost")
    # ... and so was a preset= that names another (it built paper under small's id)
    for preset in ("paper", "nosuch"):
        with pytest.raises(ValueError, match=f"preset = '{preset}': hffm/HFFM-Small-v0 is the"):
            gym.make("hffm/HFFM-Small-v0", preset=preset, fidelity="cost")
    env = gym.make("hffm/HFFM-Small-v0", scenario="small", fidelity="cost")
    assert env.unwrapped.config.name == "small" and env.spec.id == "hffm/HFFM-Small-v0"
    assert gym.make(env.spec).unwrapped.config.name == "small"
    # Gymnasium's render fallbacks read the entry point's metadata
    listed = gym.make("hffm/HFFM-Small-v0", fidelity="cost", render_mode="rgb_array_list")
    assert type(listed).__name__ == "RenderCollection"


def test_an_unhashable_scenario_is_named():
    with pytest.raises(ConfigError, match=r"scenario = \['small'\]: unknown"):
        HFFMEnv(["small"], fidelity="cost")


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"overrides": {"env.episode_rounds": 0}}, ConfigError, "env.episode_rounds"),
    ({"reward": 5}, ValueError, "reward = 5"),
    ({"reward": lambda i, c, w: {}, "reward_mode": "vector"}, ValueError, "needs a named"),
    ({"overrides": {"placement.placement": "uniform"}}, ConfigError, "placement.placement"),
    ({"fidelity": "surrogate", "surrogate": "/nonexistent/fit.pt"}, FileNotFoundError,
     "fit.pt"),
    # refused only once the engine prices a round: the setting is restored (it stayed)
    ({"overrides": ["compute.cpu_freq_hz_min=1e-300", "compute.cpu_freq_hz_max=1e-300"]},
     ConfigError, "a round's cost overflows"),
])
def test_torch_threads_are_set_only_once_the_rest_is_valid(kwargs, error, message):
    threads = torch.get_num_threads()
    with pytest.raises(error, match=message):
        _cost_env(torch_threads=threads + 1, **kwargs)
    assert torch.get_num_threads() == threads


def test_too_many_torch_threads_are_named():
    with pytest.raises(ValueError, match=r"torch_threads = 2147483648: .*<= 4096"):
        _cost_env(torch_threads=2**31)


def test_step_before_the_first_reset_is_refused():
    env = _cost_env()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.action_space.sample())
    assert env.rounds_done == 0


def test_reset_options_other_than_a_dict_are_refused_and_leave_the_env_usable():
    env, fresh = _cost_env(), _cost_env()
    env.reset(seed=1, options={"anything": 1})  # a dict: ignored, as Gymnasium's envs do
    env.reset(seed=1, options=types.MappingProxyType({"anything": 1}))  # any mapping
    with pytest.raises(ValueError, match="reset options = 'foo': must be None or a dict"):
        env.reset(seed=2, options="foo")
    assert np.array_equal(env.reset(seed=3)[0], fresh.reset(seed=3)[0])


def test_a_numpy_integer_seed_is_the_same_seed():
    a, b = _cost_env(), _cost_env()
    assert np.array_equal(a.reset(seed=np.int64(3))[0], b.reset(seed=3)[0])


@pytest.mark.parametrize("episode_over", [False, True])
def test_a_closed_env_says_so_on_every_use(episode_over):
    env = _cost_env(overrides={"env.episode_rounds": 1}, render_mode="rgb_array")
    env.reset(seed=0)
    action = env.action_space.sample()
    if episode_over:
        env.step(action)
    env.close()
    for use in (lambda: env.step(action), lambda: env.reset(seed=0), env.action_masks,
                lambda: env.decode(action), lambda: env.pending, env.module_inventory,
                env.render):  # an rgb_array frame of the last round came back
        with pytest.raises(RuntimeError, match="the env is closed"):
            use()
    # a refused reset changed nothing first (it reseeded and built a new network, which
    # close() had freed, before it failed)
    with pytest.raises(RuntimeError, match="the env is closed"):
        _ = env.network.num_devices


@pytest.mark.parametrize(("reward", "message"), [
    (lambda i, c, w: None, "returned None"),
    (lambda i, c, w: {"accuracy": "x"}, "accuracy = 'x': must be a finite number"),
    (lambda i, c, w: {"accuracy": float("nan")}, "accuracy = nan"),
    (lambda i, c, w: {"foo": 5.0}, "the term 'foo'"),
    (lambda i: {}, "TypeError"),
])
def test_a_failing_reward_ends_the_episode_loudly(reward, message):
    env = _cost_env(reward=reward)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="the reward failed") as raised:
        env.step(env.action_space.sample())
    assert message in str(raised.value) and "call reset()" in str(raised.value)
    with pytest.raises(RuntimeError, match="call reset"):  # the half-played round is not hidden
        env.step(env.action_space.sample())
    env.reset(seed=0)  # and a new episode starts cleanly


@pytest.mark.parametrize("where", ["step", "reset"])
def test_a_step_or_reset_cut_short_is_not_carried_on_from(where, monkeypatch):
    """Ctrl-C (or any error) inside a round leaves it half played (trained, priced, relays
    served): the next step must not go on from there as if it were whole."""
    env = _cost_env()
    env.reset(seed=0)
    action = env.layout.encode(1, 2)
    if where == "step":
        step_round = env.engine.run_round

        def cut_short(*args, **kwargs):
            step_round(*args, **kwargs)
            raise KeyboardInterrupt

        monkeypatch.setattr(env.engine, "run_round", cut_short)
        with pytest.raises(KeyboardInterrupt):
            env.step(action)
    else:
        env.step(action)
        monkeypatch.setattr(env.engine, "evaluate", lambda *a, **k: (_ for _ in ()).throw(
            KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            env.reset(seed=1)
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="cut short"):
        env.step(action)
    obs, _ = env.reset(seed=0)  # a new episode starts cleanly, as a fresh env's
    fresh = _cost_env()
    assert np.array_equal(obs, fresh.reset(seed=0)[0])
    assert np.array_equal(env.step(action)[0], fresh.step(action)[0])


@pytest.mark.parametrize("energy", [np.float32(-0.5), np.array(-0.5), torch.tensor(-0.5), -0.5])
def test_a_custom_reward_may_return_numpy_or_torch_scalars_and_leave_terms_out(energy):
    env = _cost_env(reward=lambda i, c, w: types.MappingProxyType({"energy": energy}))
    env.reset(seed=0)
    _, reward, *_, info = env.step(env.action_space.sample())
    assert reward == -0.5 and info["reward_terms"] == {"accuracy": 0.0, "latency": 0.0,
                                                       "energy": -0.5}


def test_measured_names_an_unknown_key():
    env = _cost_env()
    _, info = env.reset(seed=0)
    with pytest.raises(ValueError, match="measured key = 'foo': allowed"):
        measured(info, "foo")
    with pytest.raises(ValueError, match=r"measured 'accuracy' task = 'nope': allowed \['vqa'"):
        measured(info, "accuracy", "nope")  # unmeasured in cost fidelity, still a typo
    with pytest.raises(ValueError, match=r"'train_loss' task = 'vqa': allowed \['mean'\]"):
        measured(info, "train_loss", "vqa")


# ------------------------------------------------------------------ actions and wrappers


def test_a_float_action_too_big_for_int64_is_reported_as_given():
    env = _cost_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"slot 0 \(edge_period/encoder\) = 10000000000000000000"):
        env.step(np.full(env.action_space.shape, 1e19))


@pytest.mark.parametrize(("value", "shown"), [(np.nan, "nan"), (np.inf, "inf"), (1.5, "1.5")])
def test_a_float_action_that_is_no_whole_number_names_its_slot(value, shown):
    env = _cost_env()
    env.reset(seed=0)
    action = env.layout.encode(1, 2).astype(float)
    action[5] = value
    with pytest.raises(ValueError, match=rf"slot 5 \(cloud_period/encoder\) = {shown}: must be "
                                         r"a whole number in 0..\d"):
        env.step(action)


@pytest.mark.parametrize(("value", "shown"), [
    (None, "None: must be an integer in 0..4"), ("1", "'1': must be an integer in 0..4"),
    (2**70, "1180591620717411303424: allowed 0..4")])
def test_a_list_action_holding_no_integer_names_its_slot(value, shown):
    # numpy made objects or strings of the whole list: "action dtype object: must be
    # integers", which named no slot (and said 2**70 was no integer)
    env = _cost_env()
    env.reset(seed=0)
    action = env.layout.encode(1, 2).tolist()
    action[5] = value
    with pytest.raises(ValueError, match=re.escape(f"slot 5 (cloud_period/encoder) = {shown}")):
        env.step(action)
    action[5] = 1.0  # a whole float among them passes, as in a float vector
    env.step(action)


def test_a_mask_of_another_length_is_not_split():
    # it returned a mask per slot, all but the first empty
    env = _cost_env()
    with pytest.raises(ValueError, match=r"mask shape \(5,\): expected \(\d+,\)"):
        env.layout.split_mask(np.ones(5, dtype=bool))
    assert len(env.layout.split_mask(env.action_masks())) == len(env.action_space.nvec)


def test_a_ragged_action_is_named():
    env = _cost_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action = \[\[1, 2\], \[3\]\]: not a flat vector"):
        env.step([[1, 2], [3]])


@pytest.mark.parametrize(("bad", "message"), [
    (np.full(14, 1.7), r"slot 0 \(edge_period/encoder\) = 1.7"), (np.full(14, np.nan), "= nan"),
    (np.full(14, np.inf), "= inf"),
    (np.array(["a"] * 14), r"slot 0 \(edge_period/encoder\) = 'a': must be an integer"),
    ([None] * 14, r"slot 0 \(edge_period/encoder\) = None: must be an integer")])
def test_coarse_actions_check_like_the_env(bad, message):
    env = CoarseActions(gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost"))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(bad)


def test_what_the_spaces_contain_the_envs_accept_booleans_included():
    """A boolean action is what contains() says it is: 0s and 1s."""
    env = _cost_env()
    flags = np.zeros(env.action_space.shape, dtype=bool)
    flags[:5] = True
    assert env.action_space.contains(flags)
    played = []
    for action in (flags, flags.astype(np.int64)):
        env.reset(seed=0)
        played.append(env.step(action)[1])
    assert played[0] == played[1]
    menu = ScheduleMenu(gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost"))
    assert menu.action_space.contains(True)
    np.testing.assert_array_equal(menu.action(True), menu.action(1))


@pytest.mark.parametrize(("entry", "message"), [
    ((1, 1, 7), "route 7"), ((1, 1, "star"), "route 'star'"), ((1, 1), "must be (edge"),
    (None, "must be (edge"), ((True, 1, 0), "edge period = True"),
    ((1.0, 2, 1), "edge period = 1.0: not in the config's env.period_menu"),
    ("abc", "schedule 'x' = 'abc': must be (edge"),  # a string is no triple of choices
])
def test_schedule_menu_names_a_bad_entry(entry, message):
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost")
    with pytest.raises(ValueError, match="schedule 'x'") as raised:
        ScheduleMenu(env, {"x": entry})
    assert message in str(raised.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"edge_period": {"encoder": 1}}, "must give every module type"),
    ({"edge_period": {**dict.fromkeys(MODULE_TYPES, 1), "x": 1}}, "unknown ['x']"),
    ({"pair_exchange": "no"}, "pair_exchange/encoder = 'no': must be True or False"),
    ({"pair_exchange": 2}, "pair_exchange/encoder = 2"),
    ({"route": 7}, "route = 7: allowed ['DIRECT (0)'"),
    ({"route": [7] * 4}, "slot 15 (route/0) = 7"),
    ({"route": "star"}, "route = 'star': allowed ['DIRECT (0)'"),
    ({"route": [Route.DIRECT]}, "must be 4 integers, one per cluster"),
    ({"heads": [0]}, "heads = [0]: must be 4 integers"),
    ({"partners": np.full(3, 0)}, "one per device"),
    ({"relay": [99] * 4}, "(relay/0) = 99"),
])
def test_encode_names_a_bad_choice(kwargs, message):
    env = _cost_env()
    env.reset(seed=0)
    choices = {"edge_period": 1, "cloud_period": 1, **kwargs}
    with pytest.raises(ValueError) as raised:
        env.layout.encode(**choices)
    assert message in str(raised.value)


def test_full_action_takes_one_route_for_all_clusters_or_one_per_cluster():
    env = _cost_env()
    env.reset(seed=0)
    star = full_action(env, 1, 1, [Route.STAR] * 4)
    for routes in (2, np.int64(2), Route.STAR, (2, 2, 2, 2), np.full(4, 2)):
        assert np.array_equal(full_action(env, 1, 1, routes), star)


def test_action_mask_observation_needs_an_env_with_masks():
    with pytest.raises(TypeError, match="has no action_masks"):
        ActionMaskObservation(gym.make("CartPole-v1"))


def test_the_action_wrappers_name_an_env_that_is_not_ours_and_a_bad_menu():
    # both raised AttributeError: no attribute 'layout'; a menu of 5: 'int' is not iterable
    for wrapper in (ScheduleMenu, CoarseActions):
        with pytest.raises(TypeError, match=f"{wrapper.__name__}: .* is not an HF-FM env"):
            wrapper(gym.make("CartPole-v1"))
    with pytest.raises(TypeError, match="ScheduleMenu: schedules = 5: must be a mapping"):
        ScheduleMenu(gym.make("hffm/HFFM-v0", scenario="small", fidelity="cost"), 5)


def test_a_surrogate_for_another_fidelity_is_refused_not_ignored():
    with pytest.raises(ConfigError, match="surrogate = 'junk.pt': a fitted surrogate serves only "
                                          "fidelity='surrogate' \\(this env's is 'cost'\\)"):
        _cost_env(surrogate="junk.pt")


# ------------------------------------------------------------------ multi-agent forms


def test_the_aec_env_checks_an_agents_action_when_it_acts():
    integration("pettingzoo")
    aec = hffm_env.env("small", fidelity="cost")
    aec.reset(seed=0)
    size = len(aec.action_space("edge_0").nvec)
    with pytest.raises(ValueError, match=r"action of edge_0, slot 0 \(edge_period/encoder\)"):
        aec.step(np.full(size, -1))
    with pytest.raises(ValueError, match="action of edge_0 = None: every live agent acts"):
        aec.step(None)
    for _ in range(len(aec.agents)):  # the refusals left nothing behind: a full round plays
        aec.step(aec.action_space(aec.agent_selection).sample())
    assert aec.unwrapped.env.rounds_done == 1


def test_the_parallel_env_names_bad_actions_and_agents():
    integration("pettingzoo")
    par = hffm_env.parallel_env("small", fidelity="cost")
    par.reset(seed=0)
    with pytest.raises(ValueError, match="actions = None: must be a dict"):
        par.step(None)
    for agent in ("foo", "edge_9"):
        with pytest.raises(ValueError, match=f"agent '{agent}': unknown"):
            par.action_masks(agent)


# ------------------------------------------------------------------ configs and schedules


def test_config_sections_must_be_their_dataclasses():
    with pytest.raises(ConfigError, match="env = {'episode_rounds': 3}: must be an instance of "):
        ScenarioConfig(env={"episode_rounds": 3})
    for field in ("target_accuracy", "accuracy_local_mix"):
        with pytest.raises(ConfigError, match=f"env.{field} = True"):
            EnvConfig(**{field: True})
    with pytest.raises(ConfigError, match="config = None: must be a ScenarioConfig"):
        apply_overrides(None, {})


def test_a_deeply_nested_config_file_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("env: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_scenario("small", config_file=path)


def test_overrides_may_be_a_tuple_or_empty():
    assert load_scenario("small", overrides=("env.episode_rounds=3",)).env.episode_rounds == 3
    assert load_scenario("small", overrides=[]) == load_scenario("small")


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Schedule(tiers={"encoder": 9}), "Schedule.tiers['encoder'] = 9: allowed"),
    (lambda: Schedule(routes=(7,)), "Schedule.routes[0] = 7: allowed"),
    (lambda: RelaySource(9), "RelaySource.kind = 9: allowed"),
    (lambda: RelaySource(SourceKind.DEVICE, "3"), "RelaySource.device = '3'"),
    (lambda: RoundPlan(tiers=(1,)), "RoundPlan.tiers[0] = 1"),
    # the slot, its module type and the tier by name (it listed the row's raw enum reprs)
    (lambda: RoundPlan(tiers=((0, 2, 4, 0, 0),)),
     "RoundPlan.tiers[0][1] (prompt) = D2D_HEAD (2): allowed tiers are ['NONE (0)'"),
    (lambda: RoundPlan(tiers=((0, 3, 4, 0, "x"),)), "RoundPlan.tiers[0][4] (head) = 'x'"),
    (lambda: RoundPlan(tiers=((0, 3, 4, 0, 0),), route="star"), "RoundPlan.route = 'star'"),
    (lambda: RoundPlan.constant(2).with_tier(9, "moe", Tier.EDGE), "round_index = 9"),
    (lambda: RoundPlan.constant(2).with_tier(0, "foo", Tier.EDGE), "module_type = 'foo'"),
    (lambda: RoundPlan.from_dict([1]), "expected an object"),
])
def test_schedules_and_plans_name_a_bad_field(build, message):
    with pytest.raises(ValueError) as raised:
        build()
    assert message in str(raised.value)


def test_numpy_integers_and_path_likes_pass_but_numpy_booleans_do_not(tmp_path):
    assert Schedule(tiers={"encoder": np.int64(3)}).tier("encoder") is Tier.EDGE
    # (numpy 2 writes np.False_, numpy 1 False)
    with pytest.raises(ValueError, match=re.escape(f"{np.False_!r}: allowed")):
        Schedule(tiers={"encoder": np.False_})
    assert RoundPlan.constant(2).with_tier(np.int64(1), "moe", Tier.EDGE).tiers[1][2] is Tier.EDGE
    path = tmp_path / "c.yaml"
    path.write_text("env: {episode_rounds: 3}")

    class Where:  # an os.PathLike that is not a pathlib.Path
        def __fspath__(self) -> str:
            return str(path)

    assert load_scenario("small", config_file=Where()).env.episode_rounds == 3


def test_a_plan_of_plain_integers_is_stored_as_tiers():
    plan = RoundPlan(tiers=((0, 3, 4, 0, 0),), route=1)
    assert plan.tiers[0][2] is Tier.CLOUD and plan.route is Route.D2D_RELAY
    assert plan.to_dict()["tiers"][0]["moe"] == "cloud"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: HFFMEnv("small", fidelity="surrogate", surrogate=5), "surrogate = 5: must be a path"),
    (lambda: RoundPlan.read(5), "plan = 5: must be a path"),
    # None for a path failed inside pathlib with Python's words
    (lambda: agent_policy(None), "agent = None: must be a path"),
    (lambda: load_config_file(3.5), "config file = 3.5: must be a path"),
    # the simulator's parts take a built config: a name or a dict failed on an attribute
    (lambda: build_engine("small", "cost"), "cfg = 'small': must be a ScenarioConfig "
                                           "(load_scenario('small') builds one"),
    (lambda: Network({"env": {}}, RandomStreams.from_seed(0)),
     "scenario = {'env': {}}: must be a ScenarioConfig"),
    (lambda: Schedule(tiers=[Tier.EDGE]), "Schedule.tiers = [<Tier.EDGE: 3>]: must be a dict"),
    (lambda: from_dict(None), "config = None: must be a mapping"),
    (lambda: make_policy(["star"]), "policy ['star']: unknown"),
    (lambda: PlanPolicy(RoundPlan.constant(1)).act(None, {}), "call reset(env) before act()"),
])
def test_paths_policies_and_plans_name_a_bad_argument(call, message):
    with pytest.raises((ValueError, RuntimeError)) as raised:
        call()
    assert message in str(raised.value)


@pytest.mark.parametrize("name", policy_names())
def test_every_baseline_says_act_needs_reset_first(name):
    with pytest.raises(RuntimeError, match=f"policy '{name}': call reset"):
        make_policy(name).act(np.zeros(3), {})


def test_a_config_whose_reference_costs_overflow_is_refused_when_the_env_is_built():
    # it was accepted and the first step failed in the reward (latency = nan), a traceback
    with pytest.raises(ConfigError, match="a round's cost overflows on this config: .* = inf"):
        _cost_env(overrides={"compute.cpu_freq_hz_min": 1e-300,
                             "compute.cpu_freq_hz_max": 1e-300})
    # a finite round whose episode's total overflows (info's cumulative_energy_j became inf)
    with pytest.raises(ConfigError, match=r"star's energy_j = 1\.\d+e\+30\d .*"
                                          r"env\.episode_rounds = \d+ of them must stay finite"):
        _cost_env(overrides={"channel.backhaul.rate_bps": 1e-300})


def test_wireless_links_whose_rounds_overflow_are_refused_when_the_env_is_built():
    """An SNR that underflows to 0 passed the build (star and never are wired) and ended the
    episode at the first round an agent sent over the uplinks."""
    with pytest.raises(ConfigError, match=r"a cloud round over direct's latency_s = inf"):
        _cost_env(overrides={"channel.uplink.tx_power_w": 1e-300,
                             "channel.path_loss_db_at_ref": -300.0})
    # finite rounds (about 1e307 J each) whose episode's total overflows
    with pytest.raises(ConfigError, match=r"a cloud round over direct's energy_j = .*"
                                          r"env\.episode_rounds = \d+ of them"):
        _cost_env(overrides={"channel.uplink.tx_power_w": 1e-300,
                             "channel.downlink.tx_power_w": 1e-300,
                             "channel.path_loss_db_at_ref": -136.0})


def test_a_round_whose_cost_overflows_says_so_in_one_line(monkeypatch):
    # what the build's prices cannot foresee (a round's own channel draw, say)
    env = _cost_env()
    env.reset(seed=0)
    run_round = env.engine.run_round

    def overflowing(*args, **kwargs):
        result = run_round(*args, **kwargs)
        return dataclasses.replace(result, cost=dataclasses.replace(result.cost,
                                                                    latency_s=math.inf))

    monkeypatch.setattr(env.engine, "run_round", overflowing)
    with pytest.raises(ConfigError, match=r"round 1: its latency_s = inf overflows on this "
                                          "config"):
        env.step(full_action(env, 1, 1, Route.DIRECT))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(full_action(env, 1, 1, Route.DIRECT))


def test_a_network_needs_streams_not_a_seed():
    with pytest.raises(TypeError, match=r"streams = 0: must be a RandomStreams "
                                        r"\(RandomStreams.from_seed\(seed\)\)"):
        Network(load_scenario("small"), 0)


@pytest.mark.parametrize("path", [None, ""])
def test_a_bench_json_path_that_is_none_is_named_not_called_not_json(path):
    """None failed inside pathlib; once checked, it was relabelled "not JSON (...)"; "" read
    the folder "."."""
    with pytest.raises(ValueError) as raised:
        BenchResult.read_json(path)
    assert str(raised.value).startswith(f"bench JSON = {path!r}: must be a path")


def test_a_round_whose_full_measurement_fails_is_still_the_last_result(monkeypatch):
    """An episode ended by the energy budget measures its last round in full; if that fails,
    the episode is over, but ``last_result`` shows the round that was played, not the one
    before it."""
    env = HFFMEnv(scenario="small", overrides=[*TINY_OVERRIDES, "env.energy_budget_j=1e-9",
                                               "fl.eval_local_every_rounds=4"])
    env.reset(seed=0)
    evaluate = env.engine.evaluate

    def fails_in_full(*, full: bool = True):
        if full:
            raise RuntimeError("evaluation failed")
        return evaluate(full=full)

    monkeypatch.setattr(env.engine, "evaluate", fails_in_full)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        env.step(env.layout.encode(1, 1))
    assert env.last_result is not None and env.last_result.round_index == env.rounds_done - 1
    assert not math.isfinite(env.last_result.accuracy_local["mean"])  # what was measured
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.layout.encode(1, 1))


def test_the_librarys_own_calls_name_a_bad_argument(tmp_path):
    """The simulator's, the wrappers' and the bench result's documented calls, given what
    they cannot use, say so by name (they failed deep inside: AttributeError on a str,
    IndexError, matplotlib's or pathlib's words, a plot written beside the folder named)."""
    from hffm_env.baselines.runner import plot_tradeoffs
    from hffm_env.sim import format_network_report
    from hffm_env.wrappers import (
        coarse_num_clusters,
        coarse_slot_names,
        encode_coarse,
        relay_from_edge,
    )

    engine = build_engine(load_scenario("small", overrides=TINY_OVERRIDES), "cost")
    for call, error, says in (
        (lambda: engine.run_round("x"), TypeError, "schedule = 'x': must be a Schedule"),
        (lambda: engine.price_schedule(None), TypeError, "schedule = None: must be a Schedule"),
        (lambda: engine.attach_network("x"), TypeError, "network = 'x': must be a "),
        (lambda: engine.reset(-1), ValueError, "seed = -1: must be an integer"),
        (lambda: engine.reset("x"), ValueError, "seed = 'x': must be an integer"),
        (lambda: engine.network.begin_round("x"), TypeError, "streams = 'x': must be a "),
        (lambda: format_network_report("x"), TypeError, "report = 'x': must be the dict"),
        (lambda: coarse_num_clusters(10), ValueError, "action_size = 10: must be an integer > 10"),
        (lambda: coarse_slot_names(-1), ValueError, "num_clusters = -1: must be an integer >= 1"),
        (lambda: relay_from_edge(4, 3, [True]), ValueError, "present has 1 flags"),
        (lambda: relay_from_edge(-1, 2), ValueError, "slots = -1: must be an integer >= 0"),
        (lambda: encode_coarse("abc", 1, 2, [Route.STAR]), ValueError, "menu = 'abc': must be"),
        (lambda: full_action("notenv", 1, 2, Route.STAR), TypeError, "is not an HF-FM env"),
    ):
        with pytest.raises(error, match=re.escape(says)):
            call()
    from pathlib import Path

    result = BenchResult.read_json(
        Path(__file__).resolve().parents[2] / "docs" / "results" / "tradeoff_small.json")
    folder = tmp_path / "plots"
    folder.mkdir()
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere")
    for path, says in ((folder, "is a folder"), (tmp_path / "no" / "x.png", "does not exist"),
                       (tmp_path / "dangling.png", "a link to .*, which does not exist")):
        with pytest.raises(ValueError, match=f"plot = .*{says}"):
            plot_tradeoffs(result, path)
    for path, says in ((folder, "is a folder"), (tmp_path / "no" / "x.json", "does not exist")):
        with pytest.raises(ValueError, match=f"bench JSON = .*{says}"):
            result.write_json(path)
    assert not (tmp_path / "nowhere").exists() and not list(folder.iterdir())
    with pytest.raises(ValueError, match="bench JSON = .*: is a folder"):
        BenchResult.read_json(folder)
