"""The surrogate fidelity: features, fitting, files and the env that uses it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hffm_env.config import MODULE_TYPES, apply_overrides, small
from hffm_env.envs.action import DecodeReport
from hffm_env.fl.schedule import Tier
from hffm_env.fl.surrogate import (
    AccuracySurrogate,
    RoundTrace,
    SurrogateMissing,
    TierHistory,
    episode_features,
    find_surrogate,
    out_of_fold_residuals,
    surrogate_key,
    target_names,
)
from hffm_env.testing import TINY_OVERRIDES

TASKS = ("vqa", "count", "scene")
HORIZON = 6


def _synthetic_episodes(count: int, seed: int) -> list[list[RoundTrace]]:
    """Episodes of random tiers whose accuracy is a known function of the cloud rounds."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(count):
        rounds, clouds = [], 0
        for r in range(HORIZON + 1):
            tiers = None
            if r:
                tiers = {t: str(rng.choice(["none", "edge", "cloud"])) for t in MODULE_TYPES}
                clouds += tiers["head"] == "cloud"
            value = 0.2 + 0.5 * clouds / HORIZON
            targets = dict.fromkeys(target_names(TASKS), 0.1)
            targets.update({f"accuracy/{t}": value for t in TASKS})
            rounds.append(RoundTrace(tiers, 1.0, targets))
        episodes.append(rounds)
    return episodes


@pytest.fixture(scope="module")
def fitted() -> AccuracySurrogate:
    return AccuracySurrogate.fit(_synthetic_episodes(40, 0), TASKS, HORIZON, iterations=600,
                                 members=2)


def test_history_features_count_rounds_since_and_totals():
    history = TierHistory(4)
    names = TierHistory.feature_names()
    assert len(history.step(None, 1.0)) == len(names)
    history.step({t: Tier.CLOUD for t in MODULE_TYPES}, 1.0)
    x = dict(zip(names, history.step({t: "none" for t in MODULE_TYPES}, 0.5), strict=True))
    assert x["round"] == 0.5 and x["available"] == 0.5
    assert x["head/since_cloud"] == 0.25 and x["head/count/cloud"] == 0.25
    assert x["head/tier/none"] == 1.0 and x["head/tier/cloud"] == 0.0


def test_fit_recovers_a_known_relation_on_held_out_episodes(fitted):
    held_out = _synthetic_episodes(10, 1)
    errors = []
    for rounds in held_out:
        pred = fitted.predict_features(episode_features(rounds, HORIZON))
        real = np.array([r.targets["accuracy/vqa"] for r in rounds])
        errors.append(np.abs(pred[:, fitted.targets.index("accuracy/vqa")] - real))
    assert float(np.mean(errors)) < 0.03


def test_fitting_leaves_the_callers_torch_random_stream_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = AccuracySurrogate.fit(_synthetic_episodes(4, 0), TASKS, HORIZON, iterations=2,
                                  members=1)
    torch.testing.assert_close(torch.rand(3), expected)
    again = AccuracySurrogate.fit(_synthetic_episodes(4, 0), TASKS, HORIZON, iterations=2,
                                  members=1)  # and the fit is still a function of its seed
    x = episode_features(_synthetic_episodes(1, 2)[0], HORIZON)
    np.testing.assert_array_equal(first.predict_features(x), again.predict_features(x))


def test_a_live_calibrations_diverged_round_is_refused_by_name_not_fitted_unloadable():
    # a loss of 1e20 (finite, its square overflows float32) gave a fit that wrote and then
    # would not load; traces read from a file are refused earlier (RoundTrace.from_dict)
    episodes = _synthetic_episodes(4, 0)
    episodes[1][2].targets["loss/" + TASKS[0]] = 1e20
    with pytest.raises(ValueError, match=f"round 2's loss/{TASKS[0]} = 1e\\+20: above 1e\\+09"):
        AccuracySurrogate.fit(episodes, TASKS, HORIZON, iterations=2, members=1)


def test_loading_leaves_the_callers_torch_random_stream_alone(tmp_path):
    import torch

    fitted = AccuracySurrogate.fit(_synthetic_episodes(4, 0), TASKS, HORIZON, iterations=2,
                                   members=2)
    fitted.save(tmp_path / "s.pt")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    AccuracySurrogate.load(tmp_path / "s.pt")  # (every surrogate-fidelity env loads one)
    torch.testing.assert_close(torch.rand(3), expected)


def test_a_float64_default_dtype_fits_and_loads_the_same_surrogate(tmp_path):
    import torch

    x = episode_features(_synthetic_episodes(1, 2)[0], HORIZON)
    expected = AccuracySurrogate.fit(_synthetic_episodes(4, 0), TASKS, HORIZON, iterations=2,
                                     members=1).predict_features(x)
    torch.set_default_dtype(torch.float64)
    try:
        fitted = AccuracySurrogate.fit(_synthetic_episodes(4, 0), TASKS, HORIZON,
                                       iterations=2, members=1)
        fitted.save(tmp_path / "s.pt")
        loaded = AccuracySurrogate.load(tmp_path / "s.pt")
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    np.testing.assert_array_equal(fitted.predict_features(x), expected)
    np.testing.assert_array_equal(loaded.predict_features(x), expected)


def test_save_and_load_give_the_same_predictions(fitted, tmp_path):
    path = tmp_path / "s.pt"
    fitted.save(path)
    loaded = AccuracySurrogate.load(path)
    x = episode_features(_synthetic_episodes(1, 2)[0], HORIZON)
    np.testing.assert_allclose(loaded.predict_features(x), fitted.predict_features(x),
                               rtol=1e-6)
    with pytest.raises(SurrogateMissing, match="no fitted surrogate"):
        AccuracySurrogate.load(tmp_path / "missing.pt")


@pytest.mark.parametrize("junk", [b"timesteps,return\n1,2\n", b"root:x:0:0", b"\x80\x02"])
def test_a_file_that_is_not_a_surrogate_is_one_error_naming_it(tmp_path, junk):
    path = tmp_path / "junk.pt"
    path.write_bytes(junk)
    with pytest.raises(ValueError, match="junk.pt: not a fitted surrogate"):
        AccuracySurrogate.load(path)


def _without(record, key):
    return {k: v for k, v in record.items() if k != key}


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: _without(r, "tasks"), "tasks = 'missing'"),
    # a horizon no episode can have was blamed on env.episode_rounds when the env was built
    (lambda r: {**r, "horizon": 10**12}, r"horizon = 1000000000000: must be an integer in "
                                         r"1\.\.1000000 \(episode rounds\)"),
    (lambda r: {**r, "meta": "x"}, "meta = 'x': must be a JSON object"),
    (lambda r: {**r, "hidden": r["hidden"] + 1}, r"members\[0\]: weights of another shape"),
    (lambda r: {**r, "x_stats": [t[:-1] for t in r["x_stats"]]}, "x_stats = .*finite vectors"),
    (lambda r: {**r, "members": []}, "members = \\[\\]: must be a non-empty list"),
    (lambda r: {**r, "members": [{k: v * float("nan") for k, v in r["members"][0].items()}]},
     r"members\[0\]: non-finite weights"),
    (lambda r: {**r, "residuals": r["residuals"][..., :-1]}, "residuals = "),
    (lambda r: {**r, "x_stats": [r["x_stats"][0], r["x_stats"][1] * 0]},
     "x_stats = .*its spreads must be > 0"),
    (lambda r: {**r, "y_stats": [*r["y_stats"][:2], r["y_stats"][3] + 1, r["y_stats"][3]]},
     "y_stats = .*low <= high"),
    # accepted before: accuracies predicted up to 1.3, a raw TypeError in find_surrogate, an
    # IndexError at the first reset, infinite noise used as zero
    (lambda r: {**r, "y_stats": [*r["y_stats"][:3], r["y_stats"][3] + 2]},
     "y_stats = .*within \\[0, 1\\] for accuracies"),
    (lambda r: {**r, "meta": r["meta"].replace('"hidden"', '"config_key": [1], "hidden"')},
     "meta.config_key = '\\[1\\]': must be a hex digest"),
    (lambda r: {**r, "residuals": r["residuals"][:, :0]}, "residuals = .*rounds \\+ 1 in 2"),
    (lambda r: {**r, "residuals": r["residuals"][:0]}, "residuals = .*episodes >= 1"),
    (lambda r: {**r, "residuals": r["residuals"] + float("inf")}, "residuals = .*finite or NaN"),
    # a range is NaN only for a target never measured, both ends, and never the global
    # accuracy's (measured every round)
    (lambda r: {**r, "y_stats": [*r["y_stats"][:2], r["y_stats"][2] * float("nan"),
                                 r["y_stats"][3]]}, "y_stats = .*low <= high"),
    (lambda r: {**r, "y_stats": [*r["y_stats"][:2], *(t * float("nan") for t in
                                                      r["y_stats"][2:])]},
     "y_stats = .*the global accuracy's range must be finite"),
    (lambda r: {**r, "y_stats": [r["y_stats"][0] * float("nan"), *r["y_stats"][1:]]},
     "y_stats = .*finite vectors"),
    (lambda r: {**r, "y_stats": [*r["y_stats"][:3], r["y_stats"][3] + float("inf")]},
     "y_stats = .*finite vectors"),
])
def test_a_malformed_surrogate_file_names_its_field(fitted, tmp_path, damage, message):
    """Fields that failed deep in torch or numpy (a KeyError, a state-dict mismatch, a
    broadcast error at reset) or that loaded and silently predicted nothing (no members, NaN
    weights) are refused by name when the file is read."""
    import torch

    with_residuals = AccuracySurrogate(
        fitted.tasks, fitted.horizon, fitted.members, (fitted.x_mean, fitted.x_std),
        (fitted.y_mean, fitted.y_std, fitted.y_low, fitted.y_high), fitted.meta,
        np.zeros((2, HORIZON + 1, len(fitted.targets)), dtype=np.float32))
    with_residuals.save(tmp_path / "good.pt")
    record = torch.load(tmp_path / "good.pt", weights_only=True)
    torch.save(damage(record), tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=f"bad.pt: not a usable fitted surrogate: {message}"):
        AccuracySurrogate.load(tmp_path / "bad.pt")


def test_a_cached_surrogate_of_other_tasks_is_refused_by_name(fitted, tmp_path, monkeypatch):
    from hffm_env.fl.surrogate import surrogate_path

    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))
    cfg = apply_overrides(small(), ["data.tasks=[vqa, count]", f"env.episode_rounds={HORIZON}"])
    fitted.save(surrogate_path(cfg))  # fitted for three tasks, filed under this config's key
    with pytest.raises(ValueError, match=r"surrogate-.*\.pt: fitted for tasks \['vqa', 'count', "):
        find_surrogate(cfg)


def test_a_fit_filed_in_the_cache_under_another_configs_name_warns(tmp_path, monkeypatch):
    """By path a fit was checked against the key it records; from the cache it was trusted by
    its file name (a copy of another config's fit filed there served without a word)."""
    import warnings

    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import SurrogateMismatch, surrogate_path

    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))
    shipped = find_surrogate(load_scenario("small"))  # records the preset's key
    other = load_scenario("small", overrides=["seed=7"])
    shipped.save(surrogate_path(other))
    with pytest.warns(SurrogateMismatch, match="was fitted for another configuration"):
        find_surrogate(other)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SurrogateMismatch)
        find_surrogate(load_scenario("small"))  # its own name: no word
        # a fit of the preset's 16 rounds serves shorter episodes: filed under their name too
        shorter = load_scenario("small", overrides=["env.episode_rounds=8"])
        shipped.save(surrogate_path(shorter))
        find_surrogate(shorter)


def test_a_surrogate_given_by_path_is_checked_against_the_config(fitted, tmp_path):
    path = tmp_path / "fit.pt"
    fitted.meta["config_key"] = surrogate_key(apply_overrides(small(), ["seed=9"]))
    fitted.save(path)
    del fitted.meta["config_key"]
    six = apply_overrides(small(), [f"env.episode_rounds={HORIZON}"])
    with pytest.warns(UserWarning, match="fitted for another configuration"):
        find_surrogate(six, path)
    with pytest.raises(ValueError, match="fitted on 6-round episodes, shorter than"):
        find_surrogate(small(), path)  # 16 rounds
    other_tasks = apply_overrides(six, ["data.tasks=[vqa, count]"])
    with pytest.raises(ValueError, match=r"fitted for tasks \['vqa', 'count', 'scene'\]"):
        find_surrogate(other_tasks, path)
    # a file that records no key (the shipped ones) is known by its name; a fit of longer
    # episodes serves shorter ones without a warning
    import warnings

    named = tmp_path / f"surrogate-{surrogate_key(six)}.pt"
    fitted.save(named)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        find_surrogate(six, named)
        find_surrogate(apply_overrides(six, ["env.episode_rounds=4"]), named)
    with pytest.warns(UserWarning, match="fitted for another configuration"):
        find_surrogate(apply_overrides(six, ["fl.local_steps=7"]), named)


def test_a_missing_surrogate_says_how_to_fit_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))
    cfg = apply_overrides(small(), ["fl.lr=0.02"])  # no surrogate ships for this
    with pytest.raises(SurrogateMissing, match="hffm calibrate --scenario small"):
        find_surrogate(cfg)
    # ... and which settings leave the shipped fit (the key alone, a hash, did not say)
    with pytest.raises(SurrogateMissing, match=r"the fit shipped for small is of the preset "
                       r"as it is, and this config differs in what training measures: "
                       r"fl.lr=0.01 \(here 0.02\)\. Fit one"):
        find_surrogate(cfg)
    with pytest.raises(SurrogateMissing, match=r"channel.uplink.tx_power_w=1.0 \(here 0.3\), "
                                               r"fl.lr=0.01 \(here 0.02\)\."):
        find_surrogate(apply_overrides(cfg, ["channel.uplink.tx_power_w=0.3"]))


def test_the_key_names_the_seeding_scheme_and_the_config_seed(monkeypatch):
    import hffm_env.fl.surrogate as surrogate

    cfg = small()
    # another config seed draws another data split: a fit of seed 0's is not its fit
    assert surrogate_key(apply_overrides(cfg, ["seed=5"])) != surrogate_key(cfg)
    assert surrogate_key(cfg) == "bca699d86950c05526dcbd89"  # the shipped fit's, unchanged
    before = surrogate_key(cfg)
    # another scheme draws another data split from the same config seed: never reuse a fit
    monkeypatch.setattr(surrogate, "SEEDING_SCHEME", "some-later-scheme")
    assert surrogate_key(cfg) != before


def test_the_key_moves_for_configs_whose_real_training_changed(monkeypatch):
    """Real training of a wire below 32 bits or a weight decay above 0 changed on 2026-12-07:
    their fits and traces made before must not be found under the key they had; every other
    config keeps its key (and the presets their shipped fits)."""
    import hffm_env.fl.surrogate as surrogate

    changed = [apply_overrides(small(), [o]) for o in
               ("model.precision_bits=16", "model.precision_bits=8", "fl.weight_decay=0.01",
                "data.noise_std=0")]  # (noiseless: its splits are drawn otherwise)
    unchanged = [small(), apply_overrides(small(), ["fl.lr=0.02"])]
    keys = {id(c): (surrogate_key(c), surrogate.traces_key(c)) for c in changed + unchanged}
    monkeypatch.setattr(surrogate, "TRAINING_REVISION", surrogate.TRAINING_REVISION + 1)
    for cfg in changed:
        assert (surrogate_key(cfg), surrogate.traces_key(cfg)) != keys[id(cfg)]
    for cfg in unchanged:
        assert (surrogate_key(cfg), surrogate.traces_key(cfg)) == keys[id(cfg)]


def test_the_key_follows_the_frozen_parts_where_they_can_change(monkeypatch):
    """Small objects' scenes are drawn otherwise since 2026-12-07 (their pre-training key
    moved, their fits' did not); a checkpoint can be replaced at its path. There the key reads
    pre-training's own; the presets' keys do not (their frozen parts are neither)."""
    import hffm_env.models.pretrain as pretrain

    small_objects = apply_overrides(small(), ["data.image_size_px=16"])
    before = surrogate_key(small_objects), surrogate_key(small())
    monkeypatch.setattr(pretrain, "CODE_VERSION", "another")  # other frozen parts
    assert surrogate_key(small_objects) != before[0]
    assert surrogate_key(small()) == before[1] == "bca699d86950c05526dcbd89"


def test_env_in_surrogate_fidelity_is_a_checked_deterministic_env(fitted, tmp_path):
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    import hffm_env  # noqa: F401  (registers the env ids)

    path = tmp_path / "s.pt"
    fitted.save(path)
    overrides = [*TINY_OVERRIDES, f"env.episode_rounds={HORIZON}"]

    def episode(tier_action: int) -> list[float]:
        env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate",
                       overrides=overrides, surrogate=str(path))
        env.reset(seed=5)
        layout = env.unwrapped.layout
        action = layout.encode(1, tier_action)
        out = []
        for _ in range(HORIZON):
            _, reward, _, _, info = env.step(action)
            assert info["measured"]["accuracy"]
            out.append(reward)
        env.close()
        return out

    assert episode(1) == episode(1)  # same seed, same episode
    assert sum(episode(1)) != sum(episode(0))  # cloud every round vs never: other accuracy
    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate", overrides=overrides,
                   surrogate=str(path))
    check_env(env.unwrapped)
    # a schedule that leaves a cluster out of the cloud is refused, before the round is played
    env.reset(seed=5)
    base = env.unwrapped
    schedule, _ = base.decode(base.layout.encode(1, 1))
    split = replace(schedule, cloud_clusters=(False,) + (True,) * (base.layout.num_clusters - 1))
    base.decode = lambda action: (split, DecodeReport())
    with pytest.raises(ValueError, match="surrogate does not model clusters left out"):
        env.step(base.layout.encode(1, 1))
    assert base.rounds_done == 0
    del base.decode  # the refusal changed nothing: the episode goes on
    env.step(base.layout.encode(1, 1))
    assert base.rounds_done == 1
    env.close()


def test_a_surrogate_episode_reports_what_train_fidelity_would_measure(fitted, tmp_path):
    """The local and held-out accuracy only on the rounds the evaluation budget measures (here
    4th and the last), the drift at reset 0, as in train fidelity."""
    import gymnasium as gym

    path = tmp_path / "s.pt"
    fitted.save(path)
    overrides = [*TINY_OVERRIDES, f"env.episode_rounds={HORIZON}",
                 "fl.eval_local_every_rounds=4"]
    measured = {}
    for fidelity in ("surrogate", "train"):
        given = str(path) if fidelity == "surrogate" else None
        env = gym.make("hffm/HFFM-v0", scenario="small", fidelity=fidelity,
                       overrides=overrides, surrogate=given)
        _, info = env.reset(seed=5)
        assert all(v == (0.0, 0.0) for v in env.unwrapped.drift.values())
        flags = [(info["measured"]["accuracy_local"], info["measured"]["accuracy_held_out"])]
        for _ in range(HORIZON):
            info = env.step(env.unwrapped.layout.encode(1, 2))[-1]
            flags.append((info["measured"]["accuracy_local"],
                          info["measured"]["accuracy_held_out"]))
        measured[fidelity] = flags
        env.close()
    assert measured["surrogate"] == measured["train"]
    assert [local for local, _ in measured["surrogate"]] == [True, False, False, False, True,
                                                            False, True]


def _noisy_episodes(count: int, seed: int) -> list[list[RoundTrace]]:
    """The synthetic episodes plus measurement noise: what the residuals should recover."""
    rng = np.random.default_rng(seed)
    episodes = _synthetic_episodes(count, seed)
    for rounds in episodes:
        for r in rounds:
            for t in TASKS:
                r.targets[f"accuracy/{t}"] += float(rng.normal(0.0, 0.02))
    return episodes


def test_out_of_fold_residuals_are_real_minus_a_fit_that_never_saw_the_group():
    episodes = _noisy_episodes(24, 3)
    groups = [k % 4 for k in range(24)]  # e.g. four seeds
    settings = {"iterations": 400, "members": 1}
    residuals = out_of_fold_residuals(episodes, groups, TASKS, HORIZON, folds=2, **settings)
    assert residuals.shape == (24, HORIZON + 1, len(target_names(TASKS)))
    # groups 0 and 2 form one fold: episode 0 is predicted by a fit on groups 1 and 3 only
    other = AccuracySurrogate.fit([e for e, g in zip(episodes, groups, strict=True)
                                   if g in (1, 3)], TASKS, HORIZON, **settings)
    real = np.array([[r.targets[n] for n in other.targets] for r in episodes[0]])
    np.testing.assert_allclose(
        residuals[0], real - other.predict_features(episode_features(episodes[0], HORIZON)),
        atol=1e-5)
    j = target_names(TASKS).index("accuracy/vqa")
    # at least the injected noise (0.02): an unseen episode's noise cannot be predicted
    assert 0.015 < float(np.std(residuals[:, 1:, j])) < 0.1
    with pytest.raises(ValueError, match="at least 2 groups"):
        out_of_fold_residuals(episodes, [0] * 24, TASKS, HORIZON)


def _with_residuals(fitted: AccuracySurrogate, residuals: np.ndarray) -> AccuracySurrogate:
    """``fitted`` keeping ``residuals`` as its out-of-fold residuals."""
    return AccuracySurrogate(fitted.tasks, fitted.horizon, fitted.members,
                             (fitted.x_mean, fitted.x_std),
                             (fitted.y_mean, fitted.y_std, fitted.y_low, fitted.y_high),
                             fitted.meta, residuals)


def test_residual_episodes_perturb_only_the_global_accuracy_and_survive_save(fitted, tmp_path):
    names = target_names(TASKS)
    residuals = np.full((3, HORIZON + 1, len(names)), 0.05, dtype=np.float32)
    residuals[1, 2, names.index("accuracy/vqa")] = np.nan  # a round that was not measured
    noisy = _with_residuals(fitted, residuals)
    noisy.save(tmp_path / "noisy.pt")
    loaded = AccuracySurrogate.load(tmp_path / "noisy.pt")
    np.testing.assert_array_equal(loaded.residuals, residuals)
    noise = loaded.residual_episode(np.random.default_rng(0))
    accuracy = np.array([n.startswith("accuracy/") for n in names])
    assert np.all(noise[:, ~accuracy] == 0.0)  # losses, drift, local accuracy: the mean
    measured = np.isclose(noise[:, accuracy], 0.05)
    assert measured.sum() >= measured.size - 1  # all but the unmeasured round, which adds 0
    with pytest.raises(ValueError, match="kept no out-of-fold residuals"):
        fitted.residual_episode(np.random.default_rng(0))
    # residuals that measured nothing would be no noise at all, without a word
    silent = _with_residuals(fitted, np.full_like(residuals, np.nan))
    with pytest.raises(ValueError, match="hold no measured accuracy"):
        silent.residual_episode(np.random.default_rng(0))


def test_surrogate_noise_resamples_recorded_residuals_with_the_reset_seed(fitted, tmp_path):
    import gymnasium as gym

    import hffm_env  # noqa: F401  (registers the env ids)
    from hffm_env.config import ConfigError

    names = target_names(TASKS)
    rng = np.random.default_rng(0)
    residuals = rng.normal(0.0, 0.01, (5, HORIZON + 1, len(names))).astype(np.float32)
    noisy = _with_residuals(fitted, residuals)
    noisy.save(tmp_path / "noisy.pt")
    fitted.save(tmp_path / "plain.pt")
    base = [*TINY_OVERRIDES, f"env.episode_rounds={HORIZON}"]

    def curve(path: str, noise: str, seed: int) -> np.ndarray:
        env = gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate",
                       overrides=[*base, f"env.surrogate_noise={noise}"], surrogate=path)
        env.reset(seed=seed)
        action = env.unwrapped.layout.encode(1, 2)
        out = [env.step(action)[-1]["accuracy"]["vqa"] for _ in range(HORIZON)]
        env.close()
        return np.array(out)

    path = str(tmp_path / "noisy.pt")
    mean = curve(path, "none", 5)
    noisy_curve = curve(path, "residuals", 5)
    np.testing.assert_array_equal(noisy_curve, curve(path, "residuals", 5))  # same seed
    # the added noise is one recorded episode's residuals, round by round (from round 2: the
    # first round's mean sits at the lowest value of the traces, where the sum is clipped)
    j = names.index("accuracy/vqa")
    matches = [k for k in range(5) if np.allclose(
        (noisy_curve - mean)[1:], residuals[k, 2:, j], atol=1e-5)]
    assert len(matches) == 1
    drawn = {tuple(np.round(curve(path, "residuals", s) - mean, 6)) for s in range(6)}
    assert len(drawn) > 1  # other seeds draw other episodes
    with pytest.raises(ConfigError, match="surrogate_noise"):
        gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate",
                 overrides=[*base, "env.surrogate_noise=residuals"],
                 surrogate=str(tmp_path / "plain.pt"))
    # residuals that measured nothing are refused when the env is built, not played as none
    silent = _with_residuals(fitted, np.full_like(residuals, np.nan))
    silent.save(tmp_path / "silent.pt")
    with pytest.raises(ConfigError, match="surrogate_noise = 'residuals': .*no measured"):
        gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate",
                 overrides=[*base, "env.surrogate_noise=residuals"],
                 surrogate=str(tmp_path / "silent.pt"))
    # a reward reading the local accuracy every round reads the fit where it never measured
    with pytest.warns(UserWarning, match="accuracy_local_mix = 0.5 in surrogate fidelity"):
        gym.make("hffm/HFFM-v0", scenario="small", fidelity="surrogate",
                 overrides=[*base, "env.accuracy_local_mix=0.5"], surrogate=path).close()


def test_a_shorter_episode_finds_the_fit_of_its_presets_horizon(tmp_path, monkeypatch):
    # it raised SurrogateMissing, while the same file given by path served it
    from hffm_env.fl.surrogate import PACKAGED_DIR, surrogate_path

    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))  # the shipped fit, not a local one
    preset = small()
    found = find_surrogate(apply_overrides(preset, {"env.episode_rounds": 10}))
    shipped = AccuracySurrogate.load(PACKAGED_DIR / surrogate_path(preset).name)
    x = np.random.default_rng(0).random((3, shipped.x_mean.shape[-1]))
    np.testing.assert_array_equal(found.predict_features(x), shipped.predict_features(x))
    with pytest.raises(SurrogateMissing):  # a longer one than the fits' is still refused
        find_surrogate(apply_overrides(preset, {"env.episode_rounds": 40}))


def test_a_renamed_variant_of_a_shorter_horizon_finds_the_shipped_fit():
    """The longer-horizon fallback went by the preset's name, so renaming a variant (as the
    config loader asks of variants) lost the shipped fit, and the error suggested
    `hffm calibrate --scenario my-small`, which does not exist."""
    import gymnasium as gym

    import hffm_env  # noqa: F401
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import SurrogateMissing, find_surrogate

    renamed = load_scenario("small", overrides={"name": "my-small", "env.episode_rounds": 4})
    plain = load_scenario("small", overrides={"env.episode_rounds": 4})
    assert find_surrogate(renamed).path == find_surrogate(plain).path
    env = gym.make("hffm/HFFM-v0", fidelity="surrogate", scenario=renamed)
    env.reset(seed=0)
    with pytest.raises(SurrogateMissing, match=r"hffm calibrate --config FILE` \(a file of "
                                               r"this config, 'my-small'"):
        find_surrogate(load_scenario("small", overrides={"name": "my-small", "fl.lr": 0.5}))


def test_a_renamed_fit_that_does_not_say_its_config_warns(tmp_path):
    """A copy of a fit that records no config_key (as the shipped fit did until 2026-12-07)
    under another name was used for any config without a word; under its own name
    (surrogate-<key>.pt) it is checked."""
    import warnings

    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import AccuracySurrogate, SurrogateMismatch, find_surrogate

    small = load_scenario("small")
    shipped = find_surrogate(small).path
    unsaid = AccuracySurrogate.load(shipped)
    unsaid.meta.pop("config_key", None)
    copy = tmp_path / "mine.pt"
    unsaid.save(copy)
    with pytest.warns(SurrogateMismatch, match="does not say which configuration"):
        find_surrogate(load_scenario("small", overrides=["seed=7"]), copy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SurrogateMismatch)
        find_surrogate(small, shipped)  # its name says its key: this config's


def test_the_noise_of_an_episode_that_ended_early_goes_on_as_its_last_round():
    """Its rounds past the end were NaN, read as 0: those draws played the noiseless mean."""
    from hffm_env.config import load_scenario
    from hffm_env.fl.surrogate import AccuracySurrogate, find_surrogate

    fit = AccuracySurrogate.load(find_surrogate(load_scenario("small")).path)
    full = fit.residual_noise()
    accuracy = [j for j, n in enumerate(fit.targets) if n.startswith("accuracy/")]
    # the shipped fit's episodes all ran through: its noise is what it always was
    keep = np.zeros(len(fit.targets), dtype=bool)
    keep[accuracy] = True
    np.testing.assert_array_equal(
        full, np.where(keep & np.isfinite(fit.residuals), fit.residuals, 0.0))
    ended = fit.residuals.copy()
    ended[0, 10:] = np.nan  # the first episode ended after round 9
    fit.residuals = ended
    noise = fit.residual_noise()
    np.testing.assert_array_equal(noise[0, 10:], np.repeat(noise[0, 9:10], len(noise[0]) - 10,
                                                           axis=0))
    np.testing.assert_array_equal(noise[1:], full[1:])  # the others as they were


def test_a_damaged_cached_fit_gives_way_to_the_shipped_one(tmp_path, monkeypatch):
    """A cache file cut by a killed copy blocked surrogate fidelity although the package ships
    a fit of the config, and the error passed on torch's advice to load unsafely."""
    import warnings

    from hffm_env.fl.surrogate import PACKAGED_DIR, surrogate_path

    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))
    preset = small()
    cached = surrogate_path(preset)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"garbage\n")
    with pytest.warns(RuntimeWarning, match=r"not a fitted surrogate: not a torch file .* using "
                                            r".*surrogates.* instead \(remove the damaged file"):
        found = find_surrogate(preset)
    assert found.path == PACKAGED_DIR / cached.name
    # where nothing else serves the config, the damage is the error, with what to do
    other = apply_overrides(preset, ["fl.lr=0.02"])
    surrogate_path(other).write_bytes(b"garbage\n")
    with warnings.catch_warnings(), pytest.raises(ValueError, match=r"not a fitted surrogate: "
                                                  r"not a torch file.*hffm calibrate --force"):
        warnings.simplefilter("error")
        find_surrogate(other)


def test_hffm_bench_says_a_damaged_cached_fit_once(tmp_path, monkeypatch, capsys):
    # it was a note of its own, then the same text again as each env was built
    import warnings

    from hffm_env.cli import main
    from hffm_env.fl.surrogate import surrogate_path

    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))
    surrogate_path(small()).write_bytes(b"garbage\n")
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert main(["bench", "--scenario", "small", "--fidelity", "surrogate", "--policies",
                     "never", "--seeds", "1000", "1001", "--no-progress"]) == 0
    said = capsys.readouterr().err + "".join(str(w.message) for w in warned)
    assert said.count("not a fitted surrogate") == 1


def test_a_feature_that_never_varied_is_not_blown_up_and_its_change_is_said(fitted, tmp_path):
    """Every synthetic trace had availability 1.0 (spread 0, stored as 1e-6): at 0.9 the
    standardised input was -1e5 and every round predicted one flat, clipped value."""
    import warnings

    from hffm_env.fl.surrogate import SurrogateMismatch

    names = TierHistory.feature_names()
    assert fitted.constant_features[names.index("available")]
    fitted.save(tmp_path / "fit.pt")
    loaded = AccuracySurrogate.load(tmp_path / "fit.pt")  # (the spreads as fitted, kept)
    assert (loaded.constant_features == fitted.constant_features).all()
    cloud = dict.fromkeys(MODULE_TYPES, Tier.CLOUD)

    def curve(fraction):
        history = TierHistory(HORIZON)
        history.step(None, fraction)
        return [loaded.predict(history.step(cloud, fraction))["accuracy/vqa"] for _ in range(4)]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the values the traces had: no word
        seen = curve(1.0)
    with pytest.warns(SurrogateMismatch, match="never had available other than 1"):
        unseen = curve(0.9)
    assert seen[-1] > seen[0] + 0.1  # (the known relation: cloud rounds raise it)
    assert unseen[-1] > unseen[0] + 0.1 and np.allclose(unseen, seen, atol=0.05)
    # a constant that float32 means and spreads round (0.9 over 280 rows: its spread came out
    # 3.4e-6, and 1.0 was standardised to 29,038) is told apart too
    at_09 = [[RoundTrace(r.tiers, 0.9, r.targets) for r in e] for e in _synthetic_episodes(40, 0)]
    fit = AccuracySurrogate.fit(at_09, TASKS, HORIZON, iterations=2, members=1)
    assert fit.constant_features[names.index("available")]
    assert fit.x_mean[names.index("available")] == np.float32(0.9)


def test_meta_cannot_overwrite_what_the_fit_is():
    # meta={"hidden": 8} saved a file its own load refused
    with pytest.raises(ValueError, match=r"meta: \['hidden'\] are facts of the fit itself"):
        AccuracySurrogate.fit(_synthetic_episodes(4, 0), TASKS, HORIZON, iterations=2,
                              members=1, meta={"hidden": 8})


def test_an_episode_longer_than_the_horizon_is_not_fitted():
    # its round feature went past 1, to rounds the env never plays
    long = _synthetic_episodes(2, 0)
    long[0] = long[0] + long[0][1:]
    with pytest.raises(ValueError, match="an episode of 12 rounds, longer than the horizon 6"):
        AccuracySurrogate.fit(long, TASKS, HORIZON, iterations=2, members=1)


def test_the_price_only_channel_settings_do_not_change_the_key():
    """Only the energy charged per second and the wired backhaul's delay and rate: the
    shipped fit was refused for a sweep of energy prices ('differs in what training
    measures'); the transmit power, which moves outage and routes, still changes it."""
    base = surrogate_key(small())
    for override in ("channel.uplink.energy_power_w=0.3", "channel.d2d.energy_power_w=2",
                     "channel.backhaul.rate_bps=1e6", "channel.backhaul.latency_s=0.5"):
        assert surrogate_key(apply_overrides(small(), [override])) == base, override
    assert surrogate_key(apply_overrides(small(), ["channel.uplink.tx_power_w=0.3"])) != base


def test_a_missing_fit_names_only_what_training_measures(tmp_path, monkeypatch):
    # the price-only settings were named among what "differs in what training measures"
    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))
    config = apply_overrides(small(), ["channel.backhaul.rate_bps=1e6",
                                       "channel.uplink.energy_power_w=0.3", "fl.local_steps=3"])
    with pytest.raises(SurrogateMissing, match="differs in what training measures: "
                                               "fl.local_steps=4 \\(here 3\\)\\. Fit"):
        find_surrogate(config)
