"""Action wrappers: coarse periods and a menu of named schedules."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import hffm_env  # noqa: F401  (registers the env ids)
from hffm_env.baselines.policies import make_policy
from hffm_env.fl.schedule import Route
from hffm_env.wrappers import (
    PAPER_MENU,
    ActionMaskObservation,
    CoarseActions,
    ScheduleMenu,
    coarse_num_clusters,
    coarse_slot_names,
    encode_coarse,
    full_action,
)


def test_coarse_actions_play_the_periodic_schedules(make_env):
    env = CoarseActions(make_env())
    env.reset(seed=3)
    menu = env.menu
    clusters = env.unwrapped.layout.num_clusters
    assert env.action_space.nvec.tolist() == [len(menu)] * 10 + [3] * clusters
    coarse = np.array([menu.index(1)] * 5 + [menu.index(2)] * 5 + [int(Route.D2D_RELAY)] * clusters)
    policy = make_policy("hffm-d2d-e2")
    policy.reset(env, 3)
    np.testing.assert_array_equal(env.action(coarse), policy.act(None, {}))
    assert env.action_masks().shape == (int(env.action_space.nvec.sum()),)
    with pytest.raises(ValueError, match=r"slot 10 \(route/0\) = 7"):
        env.step(np.concatenate([coarse[:10], [7] * clusters]))
    check_env(env)


def test_the_coarse_layout_is_one_rule(make_env):
    """The plan's coarse actions and the imitation's cluster count each spelled the wrapper's
    slot order themselves: the three now read coarse_slot_names (and its inverse)."""
    env = CoarseActions(make_env())
    env.reset(seed=3)
    clusters = env.unwrapped.layout.num_clusters
    full_names = env.unwrapped.layout.slot_names
    assert all(name in full_names for name in coarse_slot_names(clusters))
    assert coarse_num_clusters(len(env.action_space.nvec)) == clusters
    edge = {"encoder": 1, "prompt": 2, "moe": 1, "adapter": 2, "head": 1}
    cloud = {"encoder": 2, "prompt": 4, "moe": 2, "adapter": 4, "head": 2}
    routes = [Route.D2D_RELAY] + [Route.DIRECT] * (clusters - 1)
    full = env.action(encode_coarse(env.menu, edge, cloud, routes))
    value = dict(zip(full_names, full.tolist(), strict=True))
    menu = env.unwrapped.layout.menu
    assert {t: menu[value[f"edge_period/{t}"]] for t in edge} == edge
    assert {t: menu[value[f"cloud_period/{t}"]] for t in cloud} == cloud
    assert [value[f"route/{c}"] for c in range(clusters)] == [int(r) for r in routes]
    # one period for every type, as layout.encode takes it
    assert (encode_coarse(env.menu, 1, cloud, routes)[:5] == env.menu.index(1)).all()
    # bad input is named (a route 7 or a route too few passed, as a vector the space refuses;
    # a type left out was a KeyError, a period off the menu "x not in tuple")
    for args, says in (((edge, cloud, [7] * clusters), "routes[0] = 7: allowed"),
                       ((edge, cloud, routes[:-1], clusters),
                        f"must be a list of {clusters} routes"),
                       (({"encoder": 1}, cloud, routes), "edge_period = {'encoder': 1}"),
                       ((edge, 3, routes), "cloud_period/encoder = 3: not in the config's")):
        with pytest.raises(ValueError, match=re.escape(says)):
            encode_coarse(env.menu, *args)


def test_schedule_menu_is_discrete_over_named_schedules(make_env):
    env = ScheduleMenu(make_env())
    env.reset(seed=4)
    assert env.action_space == gym.spaces.Discrete(len(PAPER_MENU))
    for i, name in enumerate(env.names):
        policy = make_policy(name)
        policy.reset(env, 4)
        np.testing.assert_array_equal(env.action(i), policy.act(None, {}))
    with pytest.raises(ValueError, match="0..7"):
        env.step(8)
    with pytest.raises(ValueError, match="cloud period = 3"):
        ScheduleMenu(make_env(), {"odd": (1, 3, Route.DIRECT)})
    check_env(env)


def test_action_mask_observation_carries_the_mask_of_the_outer_action_space(make_env):
    env = ActionMaskObservation(make_env())
    obs, info = env.reset(seed=5)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["action_mask"], info["action_mask"])
    assert not obs["action_mask"].all()  # the full space has masked values to show
    obs, *_, info = env.step(env.action_space.sample(mask=None))
    np.testing.assert_array_equal(obs["action_mask"], info["action_mask"])
    check_env(env)
    for inner in (ScheduleMenu, CoarseActions):  # info's mask is the wrapper's, as obs's
        wrapped = ActionMaskObservation(inner(make_env()))
        obs, info = wrapped.reset(seed=5)
        size = (len(PAPER_MENU),) if inner is ScheduleMenu else (
            int(wrapped.action_space.nvec.sum()),)
        assert obs["action_mask"].shape == size
        np.testing.assert_array_equal(obs["action_mask"], info["action_mask"])
        obs, *_, info = wrapped.step(wrapped.action_space.sample())
        np.testing.assert_array_equal(obs["action_mask"], info["action_mask"])
    with pytest.raises(TypeError, match="neither MultiDiscrete nor Discrete"):
        ActionMaskObservation(gym.make("Pendulum-v1"))


def test_action_mask_observation_refuses_a_mask_of_another_space(make_env):
    """A user's action wrapper that changes the space but has no action_masks() let the
    base env's mask through under the wrapper's declared shape."""

    class TwoChoices(gym.ActionWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.action_space = gym.spaces.Discrete(2)

        def action(self, action):
            return full_action(self.env, 1, 2 if action == 0 else 1, Route.DIRECT)

    env = ActionMaskObservation(TwoChoices(make_env()))
    with pytest.raises(TypeError, match=r"has shape \(\d+,\), but its action space "
                                        r"Discrete\(2\) needs \(2,\)"):
        env.reset(seed=0)


def test_stacked_action_wrappers_are_refused_when_built(make_env):
    """ScheduleMenu(CoarseActions(env)) built, then failed at its first step."""
    with pytest.raises(TypeError, match="already changes the action space"):
        ScheduleMenu(CoarseActions(make_env()))
    with pytest.raises(TypeError, match="already changes the action space"):
        CoarseActions(ScheduleMenu(make_env()))
    # a mask observed below an action wrapper would describe the full action
    for wrapper in (CoarseActions, ScheduleMenu):
        with pytest.raises(TypeError, match="put it outermost"):
            wrapper(ActionMaskObservation(make_env()))
