"""The PettingZoo form: one agent per edge server plus the cloud, over the same engine."""

from __future__ import annotations

import numpy as np
import pytest

import hffm_env
from hffm_env.config import MODULE_TYPES
from hffm_env.testing import TINY_OVERRIDES, integration

pettingzoo_test = integration("pettingzoo.test")


def _parallel(scenario="small", fidelity="cost", **kwargs):
    return hffm_env.parallel_env(scenario, fidelity=fidelity, overrides=list(TINY_OVERRIDES),
                                 **kwargs)


def _index_zero(env):
    """Every agent's action of index 0 in every slot."""
    return {a: np.zeros(len(env.action_space(a).nvec), dtype=np.int64)
            for a in env.possible_agents}


@pytest.mark.parametrize("scenario,fidelity", [
    ("small", "cost"), ("paper", "cost"), ("small", "train"),
    pytest.param("paper", "train", marks=pytest.mark.slow),
])
def test_pettingzoo_api_and_seed_tests(scenario, fidelity):
    env = _parallel(scenario, fidelity)
    pettingzoo_test.parallel_api_test(env, num_cycles=8)
    pettingzoo_test.parallel_seed_test(lambda: _parallel(scenario, fidelity))
    assert env.possible_agents == [f"edge_{c}" for c in range(env.num_clusters)] + ["cloud_0"]


def test_the_agent_indicator_tells_the_edge_agents_apart():
    """One policy shared by the edge agents saw the same entries from each of them and could
    not tell which cluster it acted for: the indicator ends each edge observation in a
    one-hot of its cluster; the cloud's is the whole single-agent observation."""
    plain, marked = _parallel(), _parallel(agent_indicator=True)
    pettingzoo_test.parallel_api_test(marked, num_cycles=4)
    obs, _ = plain.reset(seed=3)
    marked_obs, _ = marked.reset(seed=3)
    clusters = marked.num_clusters
    for c, agent in enumerate(marked.possible_agents[:-1]):
        seen = marked_obs[agent]["observation"]
        assert marked.observation_space(agent).contains(marked_obs[agent])
        assert np.array_equal(seen[:-clusters], obs[agent]["observation"])
        assert seen[-clusters:].tolist() == np.eye(clusters)[c].tolist()
    assert np.array_equal(marked_obs["cloud_0"]["observation"], obs["cloud_0"]["observation"])
    from hffm_env.envs.parallel import HFFMParallelEnv

    view = HFFMParallelEnv.over(marked.env, agent_indicator=True)
    assert np.array_equal(view.observe(*marked.env.reset(seed=3))[0]["edge_1"]["observation"],
                          marked_obs["edge_1"]["observation"])
    with pytest.raises(ValueError, match="agent_indicator = 'yes': must be True or False"):
        _parallel(agent_indicator="yes")


def test_aec_form_passes_the_api_test():
    pettingzoo_test.api_test(hffm_env.env("small", fidelity="cost",
                                          overrides=list(TINY_OVERRIDES)), num_cycles=8)


def test_joint_action_combines_edge_periods_and_keeps_each_clusters_choices():
    env = _parallel()
    env.reset(seed=1)
    layout = env.env.layout
    menu = layout.menu
    actions = {a: np.zeros(len(env.action_space(a).nvec), dtype=np.int64) for a in env.agents}
    # edge_0 wants every type every 4 rounds, edge_1 every 2, the others never: 2 wins
    for agent in env.agents[:-1]:
        actions[agent][:5] = menu.index({"edge_0": 4, "edge_1": 2}.get(agent, 0))
    actions["edge_1"][5 + 2] = 1  # pair exchange of moe
    actions["edge_2"][10] = 2  # route: star
    actions["cloud_0"][:] = menu.index(8)
    full = env.joint_action(actions)
    block = layout.block
    assert [menu[i] for i in block(full, "edge_period")] == [2] * 5
    assert [menu[i] for i in block(full, "cloud_period")] == [8] * 5
    assert block(full, "pair_exchange").tolist() == [0, 0, 1, 0, 0]
    assert block(full, "route").tolist() == [0, 0, 2] + [0] * (env.num_clusters - 3)
    # every agent's masked random action decodes without a head or relay repair
    obs, _ = env.reset(seed=2)
    for _ in range(3):
        sampled = {a: env.action_space(a).sample(mask=obs[a]["action_mask"]) for a in env.agents}
        schedule, report = env.env.decode(env.joint_action(sampled))
        assert report.head_repairs == 0 and report.relay_repairs == 0
        obs, *_ = env.step(sampled)


def test_masks_in_observation_and_info_agree_and_other_clusters_requests_are_not_mine():
    """(The test checked padding partner slots of a smaller cluster, which the env never
    has, and no request: now the relay slots, with requests pending.)"""
    env = hffm_env.parallel_env("small", fidelity="cost",
                                overrides=[*TINY_OVERRIDES, "fl.task_arrival_prob=1.0"])
    obs, infos = env.reset(seed=3)
    checked = 0
    for _ in range(3):
        owners = [int(env.env.network.cluster_of_device[r.device]) for r in env.env.pending]
        full_masks = env.env.layout.split_mask(env.env.action_masks())
        for agent in env.agents:
            flat = infos[agent]["action_mask"]
            assert flat.dtype == bool
            np.testing.assert_array_equal(np.concatenate(obs[agent]["action_mask"]), flat)
            assert env.observation_space(agent).contains(obs[agent])
            if agent == "cloud_0":
                continue
            c = int(agent.removeprefix("edge_"))
            for k, name in enumerate(env.slot_names[agent]):
                if not name.startswith("relay/") or int(name.split("/")[1]) >= len(owners):
                    continue
                r = int(name.split("/")[1])
                mask = obs[agent]["action_mask"][k]
                if owners[r] == c:  # its own cluster's request: the env's choices for it
                    full = full_masks[env.env.layout.slot_names.index(name)]
                    np.testing.assert_array_equal(mask, full)
                else:  # another cluster's: only the default
                    assert mask.tolist() == [1] + [0] * (len(mask) - 1), (agent, name)
                checked += 1
        sampled = {a: env.action_space(a).sample(mask=obs[a]["action_mask"]) for a in env.agents}
        obs, _, _, _, infos = env.step(sampled)
    assert checked > 0  # requests were pending, in every cluster's view
    env.close()


def test_cost_share_rewards_split_the_team_costs():
    team, split = _parallel(), _parallel(reward_split="cost-share")
    team.reset(seed=4)
    split.reset(seed=4)
    actions = {a: team.action_space(a).sample() for a in team.agents}
    _, team_rewards, _, _, infos = team.step(actions)
    _, split_rewards, _, _, _ = split.step(actions)
    terms = infos["cloud_0"]["env"]["reward_terms"]
    edges = [split_rewards[f"edge_{c}"] for c in range(team.num_clusters)]
    costs = terms["latency"] + terms["energy"]
    assert sum(edges) - team.num_clusters * terms["accuracy"] == pytest.approx(costs)
    assert split_rewards["cloud_0"] == team_rewards["cloud_0"] == pytest.approx(
        sum(terms.values()))
    assert len(set(team_rewards.values())) == 1


def test_a_costlier_cluster_never_earns_more_under_cost_share():
    """Cost terms can be positive (a round cheaper than the reward's `never` reference): the
    split charges each cluster its share of the cost above a free round, so a cluster with a
    larger share of the latency (the only cost weighed here) gets no more than a faster one."""
    env = hffm_env.parallel_env("small", fidelity="cost", reward_split="cost-share",
                                overrides=["env.episode_rounds=8", "env.energy_weight=0"])
    env.reset(seed=3)
    positive = 0
    while env.agents:
        actions = {a: env.action_space(a).sample() for a in env.agents}
        _, rewards, _, _, infos = env.step(actions)
        info = infos["cloud_0"]["env"]
        terms = info["reward_terms"]
        positive += terms["latency"] > 0
        latency = np.asarray(info["cost"]["latency_by_cluster_s"])
        energy = np.asarray(info["cost"]["energy_charged_to_cluster_j"])
        cost_part = [rewards[f"edge_{c}"] - terms["accuracy"] for c in range(len(latency))]
        for i in range(len(latency)):
            for j in range(len(latency)):
                if latency[i] >= latency[j] and energy[i] >= energy[j]:
                    assert cost_part[i] <= cost_part[j] + 1e-12, (i, j, latency, energy)
        assert sum(cost_part) == pytest.approx(terms["latency"] + terms["energy"])
    assert positive  # the case the split must handle arose
    env.close()


def test_cost_share_charges_a_cluster_its_edge_servers_energy():
    """A cluster on the direct route makes its edge server send each member the aggregate (at
    10 W); cost-share split the energy by the devices' energy alone, so that cost was spread
    over every cluster and the cluster choosing the route was charged less than it caused
    (here cluster 3, whose devices compute more, was charged most)."""
    from hffm_env.fl.schedule import Route

    env = hffm_env.parallel_env("small", fidelity="cost", reward_split="cost-share",
                                overrides=["env.latency_weight=0"])
    env.reset(seed=1000)
    never = env.env.layout.menu.index(0)
    actions = {"cloud_0": np.full(len(env.slot_names["cloud_0"]), never)}
    for c in range(env.num_clusters):  # an edge round (period 1: index 0), cluster 0 direct
        action = np.zeros(len(env.slot_names[f"edge_{c}"]), dtype=np.int64)
        action[env.slot_names[f"edge_{c}"].index("route")] = (
            Route.DIRECT if c == 0 else Route.D2D_RELAY)
        actions[f"edge_{c}"] = action
    _, rewards, _, _, infos = env.step(actions)
    cost = infos["cloud_0"]["env"]["cost"]
    charged = np.asarray(cost["energy_charged_to_cluster_j"])
    assert charged.sum() == pytest.approx(cost["energy_j"])
    devices = np.asarray(cost["energy_by_cluster_j"])
    # cluster 0's edge server paid a quarter of the round: charged to cluster 0 (the others
    # gathered at their heads over D2D, which their devices paid)
    assert charged[0] - devices[0] > 0.2 * cost["energy_j"]
    assert np.allclose(charged[1:], devices[1:])
    terms = infos["cloud_0"]["env"]["reward_terms"]
    cost_part = [rewards[f"edge_{c}"] - terms["accuracy"] for c in range(env.num_clusters)]
    assert cost_part[0] == min(cost_part)


def test_bad_input_names_the_agent_and_slot():
    env = _parallel()
    env.reset(seed=0)
    bad = {a: np.zeros(len(env.action_space(a).nvec), dtype=np.int64) for a in env.agents}
    bad["edge_1"][10] = 9
    with pytest.raises(ValueError, match=r"edge_1, slot 10 \(route\) = 9: allowed 0..2"):
        env.step(bad)
    with pytest.raises(ValueError, match="not live agents"):
        env.step({"edge_9": bad["edge_0"]})
    # joint_action (how a multi-agent policy drives a single-agent env) dropped it unsaid
    good = _index_zero(env)
    with pytest.raises(ValueError, match=r"actions for \['edge_9'\]: no such agent"):
        env.joint_action({**good, "edge_9": good["edge_0"]})
    with pytest.raises(ValueError, match="actions = 3: must be a dict"):
        env.joint_action(3)
    with pytest.raises(ValueError, match="reward_split"):
        _parallel(reward_split="selfish")
    assert env.agents  # nothing was played


def test_view_over_a_single_agent_env_observes_and_acts_as_the_parallel_env():
    from hffm_env.envs.hffm_env import HFFMEnv
    from hffm_env.envs.parallel import HFFMParallelEnv

    parallel = _parallel()
    single = HFFMEnv("small", fidelity="cost", overrides=list(TINY_OVERRIDES))
    view = HFFMParallelEnv.over(single)
    observations, _ = parallel.reset(seed=3)
    obs, info = single.reset(seed=3)
    for _ in range(3):
        mine, infos = view.observe(obs, info)
        for agent in parallel.possible_agents:
            np.testing.assert_array_equal(mine[agent]["observation"],
                                          observations[agent]["observation"])
        actions = {a: parallel.action_space(a).sample(mask=observations[a]["action_mask"])
                   for a in parallel.agents}
        observations, rewards, *_ = parallel.step(actions)
        obs, reward, *_, info = single.step(view.joint_action(actions))
        assert rewards["cloud_0"] == pytest.approx(reward)
    with pytest.raises(TypeError, match="expected an HFFMEnv"):
        HFFMParallelEnv.over(parallel)


def test_edges_of_the_multi_agent_api_are_refused_by_name():
    """A failing second reward call left the round played and the agents live; an AEC step
    after the end was a KeyError; over() took a vector-reward env and failed mid-step."""
    import math

    from hffm_env.envs.hffm_env import HFFMEnv
    from hffm_env.envs.parallel import HFFMParallelEnv

    def log_cost(i, c, w):  # math.log(0) on the round at no cost
        return {"accuracy": 0.0, "latency": -0.01 * math.log(i.latency_s), "energy": 0.0}

    par = hffm_env.parallel_env("small", fidelity="cost", reward_split="cost-share",
                                reward=log_cost, overrides=list(TINY_OVERRIDES))
    par.reset(seed=0)
    with pytest.raises(RuntimeError, match="the episode ends: call reset"):
        par.step(_index_zero(par))
    with pytest.raises(RuntimeError, match="call reset"):
        par.step(_index_zero(par))
    with pytest.raises(ValueError, match="reward_mode = 'vector'"):
        HFFMParallelEnv.over(HFFMEnv("small", fidelity="cost", reward_mode="vector"))
    aec = hffm_env.env("small", fidelity="cost",
                       overrides=[*TINY_OVERRIDES, "env.episode_rounds=1"])
    aec.reset(seed=0)
    for agent in aec.agent_iter():
        *_, done, cut, _ = aec.last()
        aec.step(None if done or cut else aec.action_space(agent).sample())
    with pytest.raises(RuntimeError, match="call reset"):
        aec.step(None)


def test_flat_masks_state_and_the_space_dicts_for_centralised_critics():
    """skrl's multi-agent wrapper (IPPO/MAPPO) read ``observation_spaces``/``action_spaces``,
    called ``state()`` and could not tensorise the per-slot mask."""
    import copy
    import pickle

    flat = _parallel(action_mask="flat")
    per_slot = _parallel()
    obs_flat, infos = flat.reset(seed=3)
    obs_slots, _ = per_slot.reset(seed=3)
    for agent in flat.possible_agents:
        assert flat.observation_spaces[agent] is flat.observation_space(agent)
        assert flat.action_spaces[agent] is flat.action_space(agent)
        mask = obs_flat[agent]["action_mask"]
        assert mask.dtype == np.int8 and mask.shape == (flat.action_space(agent).nvec.sum(),)
        np.testing.assert_array_equal(mask, np.concatenate(obs_slots[agent]["action_mask"]))
        np.testing.assert_array_equal(mask, infos[agent]["action_mask"])
        assert flat.observation_space(agent).contains(obs_flat[agent])
    state = flat.state()
    assert flat.state_space.contains(state)
    np.testing.assert_array_equal(state, obs_flat["cloud_0"]["observation"])
    obs_flat, *_ = flat.step(_index_zero(flat))
    np.testing.assert_array_equal(flat.state(), obs_flat["cloud_0"]["observation"])
    with pytest.raises(ValueError, match="action_mask = 'dense'"):
        _parallel(action_mask="dense")
    with pytest.raises(RuntimeError, match="call reset"):
        _parallel().state()
    # a copy starts without an episode, as the single-agent env it holds does
    for copied in (copy.deepcopy(flat), pickle.loads(pickle.dumps(flat))):
        assert copied.agents == [] and flat.agents
        with pytest.raises(RuntimeError, match="call reset"):
            copied.state()
    # ... and a closed one holds none (state() gave the stale state, agents the live list)
    flat.close()
    assert flat.agents == []
    with pytest.raises(RuntimeError, match="call reset"):
        flat.state()


def test_one_hot_masks_and_numeric_infos_for_libraries_that_tensorise_everything():
    """TorchRL's PettingZooWrapper gives a mask the shape of the one-hot action and makes a
    tensor of every info value: the cloud's flat mask and the nested single-agent info could
    not be wrapped."""
    from hffm_env.envs.hffm_env import measured
    from hffm_env.envs.parallel import NUMERIC_INFO

    one_hot = _parallel(action_mask="one-hot", info="numeric")
    full = _parallel()
    obs, infos = one_hot.reset(seed=4)
    obs_full, infos_full = full.reset(seed=4)
    menu = len(one_hot.env.layout.menu)
    for agent in one_hot.possible_agents:
        mask, nvec = obs[agent]["action_mask"], one_hot.action_space(agent).nvec
        # the cloud's slots are all periods, of one size: one row per slot; the edge's mixed
        assert mask.shape == ((len(MODULE_TYPES), menu) if agent == "cloud_0"
                              else (int(nvec.sum()),))
        np.testing.assert_array_equal(mask.ravel(), infos_full[agent]["action_mask"])
        assert one_hot.observation_space(agent).contains(obs[agent])
        assert list(infos[agent]) == list(NUMERIC_INFO)
        assert all(type(v) is float for v in infos[agent].values())
    for _ in range(2):
        actions = {a: one_hot.action_space(a).sample() for a in one_hot.agents}
        obs, _, _, _, infos = one_hot.step(actions)
        obs_full, _, _, _, infos_full = full.step(actions)
        played = infos_full["edge_1"]["env"]
        assert infos["edge_1"] == pytest.approx(
            {k: measured(played, k) if k in played["measured"] else played[k]
             for k in NUMERIC_INFO}, nan_ok=True)
        assert infos["edge_1"]["energy_j"] > 0 and infos["edge_1"]["round"] == played["round"]
    with pytest.raises(ValueError, match="info = 'tensors': must be one of"):
        _parallel(info="tensors")


def test_each_edge_agent_observes_its_own_cluster_and_the_shared_entries():
    """The view test compared two outputs of the same slicing: an edge agent shown cluster 0's
    entries passed."""
    par = _parallel()
    observations, infos = par.reset(seed=2)
    full = dict(zip(par.env.observation_names, par.state().tolist(), strict=True))
    shared = [n for n in par.env.observation_names if not n.startswith("cluster/")]
    for c in range(par.num_clusters):
        mine = observations[f"edge_{c}"]["observation"]
        own = [full[f"cluster/{c}/{key}"] for key in ("uplink", "d2d_rate", "d2d_density",
                                                       "available")]
        np.testing.assert_allclose(mine[len(shared):], own)
        np.testing.assert_allclose(mine[:len(shared)], [full[n] for n in shared])
    uplinks = {full[f"cluster/{c}/uplink"] for c in range(par.num_clusters)}
    assert len(uplinks) > 1, "clusters should differ, or the test could not tell them apart"


def test_pettingzoo_render_test_passes_in_every_mode(headless_pyplot):
    """PettingZoo's render test builds the env with render_mode="human" first, then plays and
    renders in each of metadata's modes (it drives the AEC form: agent_iter, last)."""
    pettingzoo_test.render_test(lambda render_mode=None: hffm_env.env(
        "small", fidelity="cost", overrides=list(TINY_OVERRIDES), render_mode=render_mode))
    assert not headless_pyplot.get_fignums()  # every env it played was closed, and its window


def test_human_mode_of_the_parallel_env_draws_its_rounds_and_passes_the_api_test(
        headless_pyplot):
    plt = headless_pyplot
    env = _parallel(render_mode="human")
    assert {"human", "rgb_array", "ansi"} <= set(env.metadata["render_modes"])
    assert env.metadata["render_fps"] > 0
    env.reset(seed=0)
    (number,) = plt.get_fignums()
    title = plt.figure(number).axes[0].get_title
    assert title().startswith("small: round 0/")
    env.step({a: env.action_space(a).sample() for a in env.agents})
    assert title().startswith("small: round 1/") and env.render() is None
    pettingzoo_test.parallel_api_test(env, num_cycles=3)
    assert plt.get_fignums() == [number]  # one window, drawn over
    env.close()
    assert not plt.get_fignums()


def test_an_agent_left_out_of_the_actions_is_refused_by_name():
    """A missing agent played index 0 in every slot: the cloud agent left out sent every
    module type to the cloud every round (0.31 J became 7.55 J), without a word."""
    env = _parallel()
    env.reset(seed=0)
    actions = {a: env.action_space(a).sample() for a in env.agents}
    del actions["cloud_0"]
    with pytest.raises(ValueError, match=r"actions: none for \['cloud_0'\]; every agent acts"):
        env.step(actions)
    actions = {a: env.action_space(a).sample() for a in env.agents}
    actions["edge_1"] = None  # (None was the defaults too)
    with pytest.raises(ValueError, match="action of edge_1 = None: every live agent acts"):
        env.step(actions)
    assert env.agents  # refused before the round: the episode goes on
    env.close()
