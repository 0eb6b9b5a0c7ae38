"""The Gymnasium env: checkers, determinism, masks, bad actions, vector reward, vector envs,
rendering. All on tiny budgets of the `small` scenario (other presets in cost fidelity)."""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import time
import warnings

import gymnasium as gym
import matplotlib.collections
import matplotlib.text
import networkx as nx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import hffm_env
from hffm_env.envs.registration import scenario_env_id
from hffm_env.envs.render import RgbFrames, render_figure, render_rgb
from hffm_env.testing import TINY_OVERRIDES

TINY = list(TINY_OVERRIDES)


@pytest.fixture(scope="module")
def env():
    env = gym.make("hffm/HFFM-v0", scenario="small", overrides=TINY)
    yield env
    env.close()


SMALL_NETWORK = ["placement.num_edge_servers=3", "placement.num_devices=12",
                 "placement.devices_per_cluster=4"]
"""The larger presets keep their physics, data and dynamics but run with 12 devices: the
checkers test the API, and 40 or 100 devices of real training made them take minutes."""


def _ids_and_kwargs():
    yield "hffm/HFFM-v0", {"overrides": TINY}
    for name in hffm_env.scenario_names():
        network = [] if name == "small" else SMALL_NETWORK
        yield scenario_env_id(name), {"overrides": [*TINY, *network]}
        # cost fidelity on each preset's own network: nothing is trained, so it is cheap
        yield scenario_env_id(name), {"fidelity": "cost"}


@pytest.mark.parametrize("env_id,kwargs", list(_ids_and_kwargs()))
def test_registered_ids_pass_both_checkers(env_id, kwargs):
    assert env_id in gym.registry
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)
    env.close()


def test_registration_is_idempotent_and_string_entry_point_works():
    before = set(gym.registry)
    hffm_env.register_envs()
    assert set(gym.registry) == before
    code = (
        "import gymnasium as gym; "
        "e = gym.make('hffm_env:hffm/HFFM-v0', fidelity='cost'); "
        "print(e.observation_space.shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().startswith("(")


def _rollout(env, seed, steps=4):
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    trace = [obs]
    rewards = []
    for _ in range(steps):
        action = rng.integers(0, env.action_space.nvec)
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.stack(trace), np.array(rewards), info


def test_same_seed_same_rollout_in_two_envs():
    a = gym.make("hffm/HFFM-v0", overrides=TINY)
    b = gym.make("hffm/HFFM-v0", overrides=TINY)
    obs_a, rew_a, info_a = _rollout(a, seed=7)
    obs_b, rew_b, info_b = _rollout(b, seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    assert info_a["accuracy"] == info_b["accuracy"]
    assert info_a["energy_j"] == info_b["energy_j"]
    obs_c, _, _ = _rollout(a, seed=8)
    assert not np.array_equal(obs_a, obs_c)


def test_cost_fidelity_does_not_depend_on_the_thread_count():
    import torch

    threads = torch.get_num_threads()
    try:
        rollouts = []
        for n in (1, 2):
            env = gym.make("hffm/HFFM-v0", fidelity="cost", torch_threads=n,
                           overrides=["dynamics.dropout_prob=0.2", "dynamics.mobility=true"])
            rollouts.append(_rollout(env, seed=3, steps=8)[:2])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*rollouts):
        np.testing.assert_array_equal(a, b)


def test_a_pickled_surrogate_env_keeps_the_fit_it_played(fresh_cache, tmp_path):
    """A copy ran find_surrogate again, so a fit written to the cache since (a later `hffm
    calibrate`) silently replaced the shipped one it had played."""
    import shutil

    import torch

    from hffm_env.files import load_tensors
    from hffm_env.fl.surrogate import SurrogateMismatch, surrogate_path

    def other_fit(source, target):  # the same fit with one member's weights scaled
        record = load_tensors(source)
        for name in record["members"][0]:
            record["members"][0][name] = record["members"][0][name] * 1.5
        torch.save(record, target)

    env = gym.make("hffm/HFFM-v0", fidelity="surrogate", overrides=["env.episode_rounds=2"])
    played = env.unwrapped.surrogate
    blob = pickle.dumps(env)
    other_fit(played.path, surrogate_path(env.unwrapped.config))  # now first in the search
    assert gym.make(env.spec).unwrapped.surrogate.digest != played.digest  # (spec: the cache)
    copy = pickle.loads(blob).unwrapped.surrogate
    assert (copy.path, copy.digest) == (played.path.resolve(), played.digest)
    # the very file it played, changed since: said
    mine = tmp_path / "fits" / played.path.name  # (named by its key: no warning about it)
    mine.parent.mkdir()
    shutil.copy(played.path, mine)
    blob = pickle.dumps(gym.make("hffm/HFFM-v0", fidelity="surrogate", surrogate=str(mine),
                                 overrides=["env.episode_rounds=2"]))
    other_fit(mine, mine)
    with pytest.warns(SurrogateMismatch, match="changed since this env was pickled"):
        pickle.loads(blob)


def test_the_reset_accuracy_is_scored_before_round_ones_task_arrival():
    """Reset drew round 1's arrival before scoring: the new task counted 0 at reset, so its
    arrival was paid there, while step scores a round before the next one's arrival."""
    env = gym.make("hffm/HFFM-v0", overrides=[*TINY, "fl.task_arrival_prob=1.0"],
                   fidelity="train")
    _, info = env.reset(seed=0)
    engine = env.unwrapped.engine
    request = engine.pending[0]  # round 1's arrival
    task = request.module_id.split("/")[1]
    k = engine.tasks.index(task)
    assert engine.device_tasks[request.device, k]
    engine.device_tasks[request.device, k] = False
    assert engine.evaluate().accuracy == info["accuracy"]


def test_a_float64_default_dtype_changes_nothing_and_is_left_as_it_was():
    # (the model computes in float32: a float64 default built float64 weights beside
    # float32 scenes, and real training failed deep in a convolution)
    import torch

    expected = _rollout(gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="train"), seed=2,
                        steps=2)
    torch.set_default_dtype(torch.float64)
    try:
        env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="train")
        assert torch.get_default_dtype() == torch.float64
        obs, rewards, info = _rollout(env, seed=2, steps=2)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    np.testing.assert_array_equal(obs, expected[0])
    np.testing.assert_array_equal(rewards, expected[1])


def _layout(value):
    """Keys, types and shapes of an info value, recursively (what must never change)."""
    if isinstance(value, dict):
        return {k: _layout(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.kind, value.shape)
    return type(value).__name__


def _no_nan(value, where="info"):
    if isinstance(value, dict):
        for k, v in value.items():
            _no_nan(v, f"{where}[{k!r}]")
    elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
        assert np.isfinite(value).all(), where
    elif isinstance(value, float):
        assert np.isfinite(value), where


@pytest.mark.parametrize("fidelity", ["train", "cost"])
def test_info_has_one_layout_and_no_nan(fidelity):
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity=fidelity,
                   overrides=[*TINY, "dynamics.dropout_prob=0.3", "fl.task_arrival_prob=0.5"])
    obs, info = env.reset(seed=0)
    layout = _layout(info)
    rng = np.random.default_rng(1)
    infos = [info]
    for _ in range(4):
        mask = info["action_mask"]
        assert np.array_equal(mask, env.unwrapped.action_masks())
        obs, reward, terminated, truncated, info = env.step(rng.integers(0, env.action_space.nvec))
        infos.append(info)
    for info in infos:
        assert _layout(info) == layout
        _no_nan(info)
    assert reward == pytest.approx(sum(info["reward_terms"].values()))
    assert set(info["reward_terms"]) == {"accuracy", "latency", "energy"}
    assert info["latency_s"] > 0 and info["energy_j"] > 0
    assert info["measured"]["accuracy"] is (fidelity == "train")
    assert infos[0]["measured"]["train_loss"] is False
    n, c = env.unwrapped.network.num_devices, env.unwrapped.network.num_clusters
    assert info["available"].shape == (n,) and info["idle_clusters"].shape == (c,)
    assert info["schedule"]["partner"].shape == (n,) and info["schedule"]["heads"].shape == (c,)
    assert env.observation_space.contains(obs)


def test_info_schedule_shows_the_decoded_action(env):
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.layout.encode(1, 2))
    assert info["schedule"]["tiers"]["head"] == "edge"
    assert 0.0 <= info["accuracy"]["mean"] <= 1.0


def test_bad_actions_name_the_slot(env):
    env.reset(seed=0)
    nvec = env.action_space.nvec
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(len(nvec) + 1, dtype=np.int64))
    bad = np.zeros(len(nvec), dtype=np.int64)
    bad[0] = nvec[0]
    with pytest.raises(ValueError, match=r"slot 0 \(edge_period/encoder\) = .*allowed 0\.\."):
        env.step(bad)
    with pytest.raises(ValueError, match=r"slot 0 \(edge_period/encoder\) = 0.5: must be a "
                                         "whole number"):
        env.step(np.full(len(nvec), 0.5))
    with pytest.raises(ValueError, match=r"slot 0 \(edge_period/encoder\) = 'a': must be an "
                                         "integer"):
        env.step(np.full(len(nvec), "a"))


def test_bad_scenario_fails_at_make():
    with pytest.raises(hffm_env.ConfigError, match="known scenarios"):
        gym.make("hffm/HFFM-v0", scenario="nope")
    with pytest.raises(hffm_env.ConfigError, match="fl.local_steps"):
        gym.make("hffm/HFFM-v0", overrides=["fl.local_steps=0"], fidelity="cost")


def test_masks_agree_with_decoder(env):
    env.reset(seed=3)
    unwrapped = env.unwrapped
    mask = unwrapped.action_masks()
    assert mask.dtype == bool and mask.shape == (int(env.action_space.nvec.sum()),)
    # every slot keeps at least one allowed value
    start = 0
    rng = np.random.default_rng(0)
    action = np.zeros(len(env.action_space.nvec), dtype=np.int64)
    for slot, size in enumerate(env.action_space.nvec):
        allowed = np.flatnonzero(mask[start:start + size])
        assert allowed.size > 0
        action[slot] = rng.choice(allowed)
        start += size
    schedule, report = unwrapped.decode(action)
    # a masked-in action needs no repair of heads or relays (pairs may still conflict)
    assert report.head_repairs == 0 and report.relay_repairs == 0
    # a masked-out partner choice is repaired (dropped), not obeyed
    partner_slots = [i for i, n in enumerate(unwrapped.layout.slot_names)
                     if n.startswith("partner/")]
    offsets = np.concatenate([[0], np.cumsum(env.action_space.nvec)])
    masked_choices = [(slot, int(np.flatnonzero(~mask[offsets[slot]:offsets[slot + 1]])[0]))
                      for slot in partner_slots if not mask[offsets[slot]:offsets[slot + 1]].all()]
    assert masked_choices, "seed 3 should mask some partner choice; pick another seed"
    for slot, choice in masked_choices:
        action2 = action.copy()
        action2[partner_slots] = 0
        action2[slot] = choice
        _, report2 = unwrapped.decode(action2)
        assert report2.pair_repairs == 1, unwrapped.layout.slot_names[slot]


# Gymnasium's passive checker warns on any non-scalar reward; the vector mode returns one
# on purpose (the MO-Gymnasium convention).
@pytest.mark.filterwarnings("ignore:.*The reward returned by `step\\(\\)` must be")
def test_vector_reward():
    env = gym.make("hffm/HFFM-v0", overrides=TINY, reward_mode="vector")
    env.reset(seed=1)
    _, reward, _, _, info = env.step(env.unwrapped.layout.encode(1, 0))
    assert isinstance(reward, np.ndarray) and reward.shape == (3,)
    space = env.unwrapped.reward_space
    assert space.shape == (3,) and np.isfinite(space.low).all() and np.isfinite(space.high).all()
    assert space.contains(reward)
    terms = info["reward_terms"]
    np.testing.assert_allclose(reward, [terms["accuracy"], terms["latency"], terms["energy"]],
                               rtol=1e-6)
    assert reward[1] < 0 and reward[2] < 0
    # a scalar reward has no reward space (TorchRL reads one as the reward's shape)
    assert not hasattr(gym.make("hffm/HFFM-v0", overrides=TINY).unwrapped, "reward_space")


def test_energy_budget_terminates():
    env = gym.make("hffm/HFFM-v0", overrides=TINY + ["env.energy_budget_j=1e-9"],
                   fidelity="cost")
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(env.unwrapped.layout.encode(1, 1))
    assert terminated and not truncated and info["end"] == "energy_budget"


def test_the_horizon_terminates_the_episode():
    """The last round is part of the task (it pays the final accuracy): terminated, so that
    a learner does not bootstrap a value beyond it; truncated stays for outside limits."""
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost")
    env.reset(seed=0)
    action = env.unwrapped.layout.encode(1, 2)
    ends = [env.step(action)[2:] for _ in range(4)]
    assert [(term, trunc) for term, trunc, _ in ends] == [(False, False)] * 3 + [(True, False)]
    assert ends[-1][2]["end"] == "rounds"
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)


def test_async_vector_env_rollout():
    # One torch thread per worker: forked workers must not reuse the parent's OpenMP pool.
    envs = gym.vector.AsyncVectorEnv(
        [lambda: gym.make("hffm/HFFM-v0", overrides=TINY, torch_threads=1)] * 2
    )
    obs, _ = envs.reset(seed=[0, 1])
    assert obs.shape[0] == 2
    obs, rewards, _, _, _ = envs.step(envs.action_space.sample())
    assert rewards.shape == (2,)
    envs.close()


def _prints_ok(script: str, **environment: str) -> None:
    """Run ``script`` in a fresh interpreter, with ``environment`` added to this one's, and
    check that it finished (a hang of its forked workers stops it after 240 s)."""
    run = subprocess.run([sys.executable, "-c", script + "print('ok')\n"],
                         capture_output=True, text=True, timeout=240,
                         env={**os.environ, **environment})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_async_vector_env_with_the_default_fork_context_in_cost_fidelity():
    # in a subprocess: if construction left an OpenMP pool behind, the forked workers hang.
    # A round's result comes back from the workers (its transfer table's read cache did
    # not pickle: the worker died, and the vector env with it)
    script = (
        "import gymnasium as gym, hffm_env\n"
        "envs = gym.vector.AsyncVectorEnv([lambda: gym.make('hffm/HFFM-v0', "
        "fidelity='cost')] * 2)\n"
        "envs.reset(seed=0); envs.step(envs.action_space.sample())\n"
        "results = envs.get_attr('last_result')\n"
        "assert all(r.transfers.columns()['size_bits'].size > 0 for r in results)\n"
        "envs.step(envs.action_space.sample()); envs.close()\n"
    )
    _prints_ok(script)


def test_a_rounds_result_pickles_and_deep_copies_with_its_transfers():
    import copy

    env = gym.make("hffm/HFFM-v0", fidelity="cost")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    result = env.unwrapped.last_result
    for copied in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
        mine, theirs = result.transfers.columns(), copied.transfers.columns()
        assert mine.keys() == theirs.keys()
        assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
        assert not theirs["size_bits"].flags.writeable  # rebuilt read-only, as the original
    env.close()


def test_forked_workers_do_not_hang_after_torch_ran_in_the_parent():
    # a surrogate env loads its fit with torch's threads in the parent, and a caller's own
    # torch work (a policy update) does the same before forking real-training workers: the
    # workers hung for good in OpenMP (guard_forks was registered by real training only)
    script = (
        "import torch, gymnasium as gym, hffm_env\n"
        "from hffm_env.testing import TINY_OVERRIDES\n"
        "torch.set_num_threads(2)\n"
        "envs = gym.make_vec('hffm/HFFM-v0', num_envs=2, vectorization_mode='async', "
        "fidelity='surrogate', overrides=['env.episode_rounds=2'])\n"
        "envs.reset(seed=0); envs.step(envs.action_space.sample()); envs.close()\n"
        "x = torch.randn(512, 512); (x @ x).sum()  # the parent's own multi-threaded work\n"
        "envs = gym.vector.AsyncVectorEnv([lambda: gym.make('hffm/HFFM-v0', fidelity='train', "
        "overrides=list(TINY_OVERRIDES))] * 2)\n"
        "envs.reset(seed=0); envs.close()\n"
    )
    _prints_ok(script, OMP_NUM_THREADS="2")


def test_async_vector_env_in_train_fidelity_as_the_readme_shows_it():
    # gym.make_vec builds one env in the parent (real training: OpenMP threads run), then
    # forks the workers, which hung for good inside their first convolution
    script = (
        "import torch, gymnasium as gym, hffm_env\n"
        "from hffm_env.testing import TINY_OVERRIDES\n"
        "torch.set_num_threads(2)\n"
        "envs = gym.make_vec('hffm/HFFM-v0', num_envs=2, vectorization_mode='async', "
        "overrides=list(TINY_OVERRIDES))\n"
        "envs.reset(seed=0); envs.step(envs.action_space.sample()); envs.close()\n"
    )
    _prints_ok(script, OMP_NUM_THREADS="2")


def test_env_pickles_light_and_rebuilds_the_same_env():
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost")
    env.reset(seed=0)
    blob = pickle.dumps(env.unwrapped)
    assert len(blob) < 1_000_000
    clone = pickle.loads(blob)
    assert clone.observation_space == env.observation_space
    np.testing.assert_array_equal(_rollout(clone, seed=4)[0], _rollout(env.unwrapped, seed=4)[0])


def test_a_copy_is_of_the_env_built_not_of_inputs_edited_since(tmp_path):
    """The pickle held the caller's overrides list and the config file's path: a list extended
    or a file edited after gym.make changed what a pickle or deepcopy rebuilt."""
    import copy

    overrides = [*TINY, "dynamics.dropout_prob=0.3"]
    config_file = tmp_path / "config.yaml"
    config_file.write_text("dynamics:\n  speed_mps_max: 3.0\n")
    env = gym.make("hffm/HFFM-v0", overrides=overrides, config_file=str(config_file),
                   fidelity="cost")
    overrides.append("dynamics.dropout_prob=0.9")
    config_file.write_text("dynamics:\n  speed_mps_max: 9.0\n")
    for clone in (pickle.loads(pickle.dumps(env.unwrapped)), copy.deepcopy(env.unwrapped)):
        assert clone.config == env.unwrapped.config
        np.testing.assert_array_equal(_rollout(clone, seed=4)[0],
                                      _rollout(env.unwrapped, seed=4)[0])


def test_the_config_file_is_read_once_at_build(tmp_path, config_file_reads):
    """The env read it twice (its preset, then its values): a file written in between gave
    a preset of one version and values of another."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text("scenario: small\ndynamics:\n  speed_mps_max: 3.0\n")
    env = gym.make("hffm/HFFM-v0", overrides=TINY, config_file=str(config_file),
                   fidelity="cost")
    assert config_file_reads == [str(config_file)]
    assert env.unwrapped.config.dynamics.speed_mps_max == 3.0
    assert env.unwrapped.config.name == "small"


def test_render_modes():
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(env.unwrapped.layout.encode(1, 1))
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert frame.std() > 0  # something was drawn
    figure = render_figure(env.unwrapped)
    texts = {t.get_text() for t in figure.findobj(matplotlib.text.Text)}
    assert {"encoder", "head", "d2d", "edge server", "cloud"} <= texts  # the legend
    assert "accuracy: not measured" in texts  # cost fidelity measures no accuracy
    cost = env.unwrapped.last_result.cost
    assert f"round 1: {cost.energy_j:.3g} J, episode total {cost.energy_j:.3g} J" in texts
    # every hop of every transfer of the round is drawn on the topology (above the neighbours)
    flows = env.unwrapped.last_result.transfers.flows()
    hops = sum(len(flow["route"]) - 1 for flow in flows)
    drawn = [c for c in figure.axes[0].collections
             if isinstance(c, matplotlib.collections.LineCollection) and c.get_zorder() == 2]
    assert hops > 0 and sum(len(c.get_segments()) for c in drawn) == hops
    text = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost", render_mode="ansi")
    text.reset(seed=0)
    assert "round 0" in text.render() and "accuracy not measured" in text.render()
    silent = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost")
    silent.reset(seed=0)
    with pytest.warns(UserWarning, match="without specifying any render mode"):
        assert silent.render() is None  # it returned None without a word (Gymnasium's warn)


def _canvas_pixels(figure):
    figure.canvas.draw()  # under Agg human mode paints the figure; drawing it is the saver's
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def test_human_mode_draws_each_reset_and_step_in_one_figure_and_close_closes_it(
        headless_pyplot):
    plt = headless_pyplot
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost", render_mode="human")
    assert "human" in env.metadata["render_modes"] and env.metadata["render_fps"] > 0
    assert not plt.get_fignums()  # the window opens at the first frame
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # under Agg: no "cannot be shown", nothing to wait for
        env.reset(seed=0)
        (number,) = plt.get_fignums()
        figure = plt.figure(number)
        assert figure.axes[0].get_title() == "small: round 0/4 (cost fidelity)"
        at_reset = _canvas_pixels(figure)
        assert at_reset.std() > 0
        env.step(env.unwrapped.layout.encode(1, 1))
        assert plt.get_fignums() == [number]  # the same figure, drawn again
        assert figure.axes[0].get_title() == "small: round 1/4 (cost fidelity)"
        assert not np.array_equal(_canvas_pixels(figure), at_reset)
        assert env.render() is None
    env.close()
    assert not plt.get_fignums()
    env.close()  # a second close is allowed (Gymnasium's checker calls it)


def test_gymnasium_render_checks_pass_in_every_mode(headless_pyplot):
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost", render_mode="human")
    assert env.unwrapped.render_mode == "human"  # the env's own, not pygame's HumanRendering
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped)  # renders in each of metadata's modes, human included
    env.close()
    assert not headless_pyplot.get_fignums()


def test_human_frames_are_paced_at_render_fps_with_a_gui_canvas(headless_pyplot,
                                                                monkeypatch):
    """With a window (a canvas that needs a GUI framework), each frame shows the figure and
    runs its event loop for 1 / render_fps seconds, as pyplot.pause would; Agg plays the GUI
    canvas here, whose event loop sleeps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    monkeypatch.setattr(FigureCanvasAgg, "required_interactive_framework", "tk")
    monkeypatch.delenv("DISPLAY", raising=False)  # headless: showing is a silent no-op
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost", render_mode="human")
    started = time.perf_counter()
    env.reset(seed=0)
    env.step(env.unwrapped.layout.encode(1, 1))
    assert time.perf_counter() - started >= 2 / env.metadata["render_fps"]
    (number,) = headless_pyplot.get_fignums()
    assert _canvas_pixels(headless_pyplot.figure(number)).std() > 0
    env.close()
    assert not headless_pyplot.get_fignums()


def test_a_human_window_the_user_closed_reopens_though_a_new_figure_took_its_number(
        headless_pyplot):
    """pyplot gives a closed figure's number to the next one: the env kept painting its
    closed figure, found by number, and never reopened its window."""
    plt = headless_pyplot
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost", render_mode="human")
    env.reset(seed=0)
    (number,) = plt.get_fignums()
    plt.close(number)  # the user closes the window ...
    mine = plt.figure()  # ... and makes a figure of their own, which gets its number
    assert mine.number == number
    env.step(env.unwrapped.layout.encode(1, 1))
    assert len(plt.get_fignums()) == 2  # the env's window is back, beside the user's
    assert plt.gcf() is mine  # whose figure stays current
    assert not mine.axes  # and is not painted on
    env.close()
    assert plt.get_fignums() == [number]


@pytest.mark.parametrize("fps", [0, -1.0, float("nan"), None, "4"])
def test_a_bad_render_fps_is_refused_by_name_at_the_first_human_frame(fps, headless_pyplot):
    """With a window, 1 / fps was a ZeroDivisionError (or a TypeError) from deep inside the
    first reset; headless, the bad value passed unnoticed until a window was opened."""
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost", render_mode="human")
    env.unwrapped.metadata = {**env.unwrapped.metadata, "render_fps": fps}
    with pytest.raises(ValueError, match=r"metadata\['render_fps'\] = .*must be a finite"):
        env.reset(seed=0)
    env.unwrapped.metadata = {**env.unwrapped.metadata, "render_fps": 4}
    env.reset(seed=0)  # usable again
    env.close()


def test_a_human_env_dropped_without_close_closes_its_window(headless_pyplot):
    """pyplot held every dropped env's figure (matplotlib warns past 20 open figures)."""
    import gc

    for seed in range(3):
        env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost", render_mode="human")
        env.reset(seed=seed)
        assert len(headless_pyplot.get_fignums()) == 1
        del env
        gc.collect()
    assert not headless_pyplot.get_fignums()


def test_kept_frames_match_fresh_ones_when_tick_labels_would_move_a_title():
    """Latencies of nearly one value (1.035 s and so on) made the curve's y axis write an
    offset ("+1.035") that lifted the panel's title in a full draw only: the kept frame
    printed the title over it (1,359 pixels differed in round 2 of this episode)."""
    env = gym.make("hffm/HFFM-v0", fidelity="cost", render_mode="rgb_array",
                   overrides=[*TINY, "env.episode_rounds=12"])
    env.reset(seed=1)
    for _ in range(12):
        env.step(env.unwrapped.layout.encode(1, 1))
        assert np.array_equal(env.render(), render_rgb(env.unwrapped))
    env.close()


def test_rgb_frames_reuse_one_figure_and_match_fresh_ones(monkeypatch):
    """An env draws its rgb_array frames on one figure made at the first frame (the axes,
    legend and still parts are not rebuilt), and each frame is what a figure of its own
    shows, round after round and across episodes; a frame is a copy that later ones do not
    draw over, and none registers with pyplot."""
    import matplotlib.figure
    import matplotlib.pyplot as plt

    made = []
    make_figure = matplotlib.figure.Figure.__init__

    def counting_init(figure, *args, **kwargs):
        made.append(figure)
        make_figure(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "__init__", counting_init)
    env = gym.make("hffm/HFFM-v0", fidelity="cost", render_mode="rgb_array",
                   overrides=[*TINY, "dynamics.dropout_prob=0.3", "dynamics.mobility=true"])
    core = env.unwrapped
    frames, fresh, figures_made = [], [], 0
    for seed in (0, 1):
        env.reset(seed=seed)
        for _ in range(3):
            before = len(made)
            frames.append(env.render())
            figures_made += len(made) - before
            fresh.append(render_rgb(core))
            env.step(core.layout.encode(1, 1))
    assert figures_made == 1
    assert all(np.array_equal(frame, own) for frame, own in zip(frames, fresh, strict=True))
    assert not np.array_equal(frames[0], frames[1])
    assert not plt.get_fignums()


def test_reused_frames_match_fresh_ones_where_accuracy_is_measured(env):
    """Train fidelity: the reset's accuracy is measured before any round is plotted (an
    empty curve with a y axis), then every round's."""
    frames = RgbFrames()
    env.reset(seed=0)
    for _ in range(2):
        assert np.array_equal(frames.frame(env.unwrapped), render_rgb(env.unwrapped))
        env.step(env.unwrapped.layout.encode(1, 1))


def test_module_inventory(env):
    table = env.unwrapped.module_inventory()
    types = {row["module_type"] for row in table}
    assert types == {"encoder", "prompt", "moe", "adapter", "head"}
    assert all(row["size_bits"] == row["num_params"] * 32 for row in table)
    # what the cost model charges per module is the table's wire_bits
    charged = env.unwrapped.engine.module_bits
    assert {row["module_id"]: row["wire_bits"] for row in table} == charged
    fixed = gym.make("hffm/HFFM-v0", overrides=[*TINY, "cost.model_payload_bits=8000000"],
                     fidelity="cost")
    rows = fixed.unwrapped.module_inventory()
    assert sum(row["wire_bits"] for row in rows) == pytest.approx(8e6)
    assert {row["module_id"]: row["wire_bits"] for row in rows} == \
        fixed.unwrapped.engine.module_bits


def test_cost_fidelity_reports_nan_accuracy():
    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="cost")
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.unwrapped.layout.encode(1, 1))
    assert not info["measured"]["accuracy"] and info["accuracy"]["mean"] == 0.0
    assert info["reward_terms"]["accuracy"] == 0.0
    from hffm_env.envs.hffm_env import measured

    assert math.isnan(measured(info, "accuracy"))  # what the NaN of the name is


def test_partner_slots_name_the_current_rounds_nearest_mates_under_mobility():
    """With mobility the nearest mates change every round; partner slot value 1 must name the
    nearest mate of the round being played, not of the episode's first round."""
    env = gym.make("hffm/HFFM-v0", fidelity="cost", overrides=["dynamics.mobility=true"])
    env.reset(seed=5)
    core = env.unwrapped
    first_round = core.layout.partners[:, 0].copy()
    changed = paired = 0
    for _ in range(6):
        nearest = core.layout.partners[:, 0].copy()  # this round's mates
        changed += int(not np.array_equal(nearest, first_round))
        action = core.layout.encode(edge_period=0, cloud_period=0, pair_exchange=True,
                                    partners=np.ones(core.layout.num_devices, dtype=np.int64))
        env.step(action)
        for i, j in core.last_schedule.pairs:
            assert nearest[i] == j or nearest[j] == i, (i, j, nearest)
            paired += 1
    env.close()
    assert changed and paired  # the mates did move, and pairs were formed to check


def test_a_pair_flag_without_a_pair_is_no_gossip_for_the_surrogate_either():
    """A pair flag with no partner chosen formed no pair and moved nothing, yet its round was
    labelled d2d_pairs, and the surrogate predicted accuracy for that gossip: `never` with
    every flag on earned 0.37 more return than `never` on the shipped fit."""
    returns = []
    for flags in (False, True):
        env = gym.make("hffm/HFFM-v0", fidelity="surrogate", overrides=["env.episode_rounds=4"])
        env.reset(seed=0)
        core = env.unwrapped
        action = core.layout.encode(edge_period=0, cloud_period=0, pair_exchange=flags)
        total = 0.0
        for _ in range(4):
            total += env.step(action)[1]
            assert not core.last_schedule.pairs
            assert set(core.last_schedule.tier_names().values()) == {"none"}
        returns.append(total)
    assert returns[0] == returns[1]
    # with partners, pairs form and the flagged types gossip
    env.reset(seed=0)
    env.step(core.layout.encode(edge_period=0, cloud_period=0, pair_exchange={
        **dict.fromkeys(("encoder", "prompt", "adapter", "head"), False), "moe": True},
        partners=np.ones(core.layout.num_devices, dtype=np.int64)))
    assert core.last_schedule.pairs and core.last_schedule.tier_names()["moe"] == "d2d_pairs"


def test_a_dropped_requester_can_only_wait_and_relay_info_lines_up_with_what_was_served():
    """A relay to a requester that dropped out was allowed by the mask, neither repaired nor
    served; info's relay_source then packed the requests given a source, so its k-th was
    not relayed_device's k-th."""
    from hffm_env.fl.schedule import Route
    from hffm_env.wrappers import full_action

    env = gym.make("hffm/HFFM-v0", fidelity="cost", overrides=[
        "fl.task_arrival_prob=0.5", "dynamics.dropout_prob=0.4"])
    core = env.unwrapped
    slots = core.layout.split_mask(np.ones(core.action_space.nvec.sum(), dtype=bool))
    first_relay = len(slots) - core.config.fl.max_pending_requests
    dropped = 0
    for seed in range(6):
        env.reset(seed=seed)
        terminated = False
        while not terminated:
            masks = core.layout.split_mask(core.action_masks())
            for k, request in enumerate(core.pending):
                if not core.network.available[request.device]:
                    dropped += 1
                    assert masks[first_relay + k].tolist() == [True] + [False] * (
                        len(masks[first_relay + k]) - 1)
            waiting = sum(not core.network.available[r.device] for r in core.pending)
            slots = core.layout.num_requests
            from_edge = [1] * len(core.pending) + [0] * (slots - len(core.pending))
            action = core.layout.encode(1, 0, Route.DIRECT, relay=from_edge)
            # full_action relays from the edge to the present requesters, the others wait
            relay = core.layout.block(full_action(env, 1, 0, Route.DIRECT), "relay")
            assert relay[:len(core.pending)].tolist() == [
                int(bool(core.network.available[r.device])) for r in core.pending]
            _, _, terminated, _, info = env.step(action)
            assert info["repairs"]["relays"] == waiting  # (edge asked for each: repaired)
            relayed = info["relayed_device"][info["relayed_device"] >= 0]
            sources = info["schedule"]["relay_source"]
            assert (sources >= 0).sum() == len(relayed)
            assert (sources[: len(relayed)] == 1).all()  # the edge, for each one served
    assert dropped  # (requesters did drop out: the case was met)


def test_relay_value_is_the_inverse_of_decoding_every_feasible_source():
    from hffm_env.fl.schedule import RelaySource, SourceKind
    from hffm_env.testing import make_tiny_env

    env = make_tiny_env(extra=["fl.task_arrival_prob=1.0"])
    env.reset(seed=0)
    core = env.unwrapped
    while not core.engine.pending:
        env.step(core.layout.encode(0, 0))  # never aggregate: requests stay pending
    request = core.engine.pending[0]
    checked = 0
    for source in [None, *core.engine.relay_candidates(request)]:
        value = core.layout.relay_value(request, source)
        relay = [value] + [0] * (core.layout.num_requests - 1)
        schedule, report = core.decode(core.layout.encode(0, 0, relay=relay))
        assert schedule.relay_sources.get(request) == source and report.relay_repairs == 0
        checked += 1
    assert checked >= 3  # wait, edge, cloud (and mates holding the module)
    outsider = next(d for d in range(core.layout.num_devices)
                    if d not in core.layout.cluster_members[
                        int(core.network.topology.cluster_of_device[request.device])])
    with pytest.raises(ValueError, match=f"relay source device {outsider}"):
        core.layout.relay_value(request, RelaySource(SourceKind.DEVICE, outsider))
    env.close()


def test_editing_info_never_reaches_the_env():
    """info's arrays are the caller's: zeroing them changes nothing the env plays next (with
    dropout, a chosen head that dropped out is repaired to the network's default head) nor
    what it recorded."""

    def play(edit):
        env = gym.make("hffm/HFFM-v0", fidelity="cost", overrides=["dynamics.dropout_prob=0.5"])
        _, info = env.reset(seed=0)
        core, outcomes = env.unwrapped, []
        for _ in range(6):
            if edit:
                for value in (info["schedule"]["heads"], info["cost"]["energy_by_device_j"],
                              info["cost"]["energy_by_cluster_j"],
                              info["cost"]["latency_by_cluster_s"]):
                    value[...] = 0
            if core.last_result is not None:
                outcomes.append(core.last_result.cost.energy_by_device_j.tolist())
                outcomes.append(core.last_result.cost.energy_by_cluster_j.tolist())
            last = [int(m[-1]) for m in core.layout.cluster_members]
            _, reward, _, _, info = env.step(core.layout.encode(1, 2, route=1, heads=last))
            outcomes.append((reward, info["schedule"]["heads"].tolist()))
        env.close()
        return outcomes

    assert play(edit=True) == play(edit=False)


def test_the_frame_shows_the_round_just_played_not_the_next_one():
    """render draws the network of the round played (who took part, where devices stood),
    while env.network already holds the next round's draw."""
    env = gym.make("hffm/HFFM-v0", fidelity="cost", render_mode="ansi",
                   overrides=["dynamics.dropout_prob=0.3", "dynamics.mobility=true"])
    env.reset(seed=0)
    core = env.unwrapped
    differs = 0
    for _ in range(4):
        info = env.step(core.layout.encode(1, 1))[-1]
        played = core.played_round
        np.testing.assert_array_equal(played.available, info["available"])
        differs += not np.array_equal(played.available, core.network.available)
        assert played.topology is not core.network.topology  # the devices moved on
        assert f"available {int(info['available'].sum())}/" in env.render()
    assert differs  # the next round's dropout differs from the played one's
    env.close()


def test_the_played_round_is_a_view_no_caller_can_edit_the_next_round_through():
    # at reset it is the network of the round about to be played: clearing its availability
    # played that round with no device (0 J against 7.28 J)
    env = gym.make("hffm/HFFM-v0", fidelity="cost")
    env.reset(seed=0)
    played = env.unwrapped.played_round
    with pytest.raises(ValueError, match="read-only"):
        played.available[:] = False
    with pytest.raises(nx.NetworkXError, match="Frozen graph"):
        played.d2d_graphs[0].add_edge(0, 1)
    assert env.unwrapped.network.available.all()
    env.close()


def test_a_pickled_env_keeps_its_spec():
    env = gym.make("hffm/HFFM-v0", fidelity="cost", overrides=["env.episode_rounds=4"])
    again = pickle.loads(pickle.dumps(env.unwrapped))
    assert again.spec == env.unwrapped.spec and again.spec.id == "hffm/HFFM-v0"
    env.close()
    again.close()


def test_a_round_leaves_no_reference_cycles():
    """networkx caches its .nodes/.edges/.degree views on the graph, pointing back at it: every
    round's D2D graphs (hundreds of MB with clusters of 1,000) waited for a full garbage
    collection. The simulator reads the graphs without those views."""
    import gc

    from hffm_env.fl.schedule import Route

    env = gym.make("hffm/HFFM-v0", overrides=[*TINY, "dynamics.mobility=true"], fidelity="cost")
    env.reset(seed=0)
    action = env.unwrapped.layout.encode(1, 2, Route.D2D_RELAY)
    env.step(action)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            env.step(action)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


def test_a_closed_train_env_frees_its_model_without_the_cycle_collector():
    """The evaluator's batched forward closed over the evaluator itself (a cycle), so a closed
    train env's model and data stayed in memory until a full garbage collection."""
    import gc
    import weakref

    env = gym.make("hffm/HFFM-v0", overrides=TINY, fidelity="train")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    held = {name: weakref.ref(thing) for name, thing in (
        ("env", env.unwrapped), ("model", env.unwrapped.engine.model),
        ("engine", env.unwrapped.engine))}
    gc.collect()
    gc.disable()
    try:
        env.close()
        del env
        alive = [name for name, ref in held.items() if ref() is not None]
    finally:
        gc.enable()
    assert alive == []


def test_the_relay_mask_allows_every_source_that_can_serve_the_request(make_env):
    """A mask that allowed only "wait" in every relay slot passed: masked-in actions needed
    no repair, but no masked agent could ever relay a module."""
    env = make_env(extra=["fl.task_arrival_prob=1.0"])
    base = env.unwrapped
    offsets = np.concatenate([[0], np.cumsum(env.action_space.nvec)])
    checked = 0
    for seed in range(5):
        env.reset(seed=seed)
        mask = base.action_masks()
        for r, request in enumerate(base.pending):
            slot = base.layout.slot_names.index(f"relay/{r}")
            allowed = mask[offsets[slot]:offsets[slot + 1]]
            sources = base.engine.relay_candidates(request)
            assert len(sources) >= 2  # the edge and the cloud at least
            for source in sources:
                assert allowed[base.layout.relay_value(request, source)], (request, source)
            assert allowed[0]  # waiting is always allowed
            assert allowed.sum() == len(sources) + 1  # and nothing that cannot serve it
            checked += 1
    assert checked > 0


def test_the_round_just_played_cannot_be_edited_through_its_views():
    """env.last_schedule handed out the env's own Schedule (its tiers dict could be edited)
    and env.last_result a RoundResult whose fields could be reassigned."""
    import dataclasses

    from hffm_env.fl.schedule import Tier

    env = gym.make("hffm/HFFM-v0", fidelity="cost", overrides=list(TINY_OVERRIDES))
    try:
        env.reset(seed=0)
        core = env.unwrapped
        env.step(core.layout.encode(1, 1))
        played = dict(core.last_schedule.tiers)
        core.last_schedule.tiers["moe"] = Tier.NONE  # a copy: the record stays as played
        assert dict(core.last_schedule.tiers) == played and played["moe"] != Tier.NONE
        with pytest.raises(dataclasses.FrozenInstanceError):
            core.last_result.round_index = 99
    finally:
        env.close()


def test_make_tiny_env_takes_extra_overrides_as_a_list_or_dict_later_ones_winning():
    from hffm_env.config import ConfigError
    from hffm_env.testing import make_tiny_env

    # a section given whole replaces the tiny settings inside it (refused as a conflict)
    env = make_tiny_env(extra=["env={episode_rounds: 2}"])
    assert env.unwrapped.config.env.episode_rounds == 2
    assert env.unwrapped.config.fl.local_steps == 1  # the other tiny settings stay
    env.close()
    # a section given whole keeps the tiny settings it does not set (they were dropped:
    # pre-training on 4,000 samples instead of 600)
    section = {"samples_per_device": 20}
    env = make_tiny_env(extra={"data": section})
    data = env.unwrapped.config.data
    assert (data.samples_per_device, data.pretrain_samples) == (20, 600)
    assert section == {"samples_per_device": 20}  # (the caller's dict is not changed)
    env.close()
    env = make_tiny_env(extra={"env.episode_rounds": 3})  # "must look like key=value"
    assert env.unwrapped.config.env.episode_rounds == 3
    env.close()
    # one string is not a list of them (it was split into characters: "override 'e'")
    with pytest.raises(ConfigError, match=r"extra = 'env.episode_rounds=2': must be a list"):
        make_tiny_env(extra="env.episode_rounds=2")
