"""The surrogate fidelity: features, fitting, files and the env that uses it."""

from __future__ import annotations

import numpy as np
import pytest

from hffm_env.config import MODULE_TYPES, apply_overrides, small
from hffm_env.fl.schedule import Tier
from hffm_env.fl.surrogate import (
    AccuracySurrogate,
    RoundTrace,
    SurrogateMissing,
    TierHistory,
    episode_features,
    find_surrogate,
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


def test_save_and_load_give_the_same_predictions(fitted, tmp_path):
    path = tmp_path / "s.pt"
    fitted.save(path)
    loaded = AccuracySurrogate.load(path)
    x = episode_features(_synthetic_episodes(1, 2)[0], HORIZON)
    np.testing.assert_allclose(loaded.predict_features(x), fitted.predict_features(x),
                               rtol=1e-6)
    with pytest.raises(SurrogateMissing, match="no fitted surrogate"):
        AccuracySurrogate.load(tmp_path / "missing.pt")


def test_a_missing_surrogate_says_how_to_fit_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HFFM_CACHE_DIR", str(tmp_path))
    cfg = apply_overrides(small(), ["env.episode_rounds=7"])  # no surrogate ships for this
    with pytest.raises(SurrogateMissing, match="hffm calibrate --scenario small"):
        find_surrogate(cfg)


def test_the_key_names_the_seeding_scheme_but_not_the_seed(monkeypatch):
    import hffm_env.fl.surrogate as surrogate

    cfg = small()
    assert surrogate_key(apply_overrides(cfg, ["seed=5"])) == surrogate_key(cfg)
    before = surrogate_key(cfg)
    # another scheme draws another data split from the same config seed: never reuse a fit
    monkeypatch.setattr(surrogate, "SEEDING_SCHEME", "some-later-scheme")
    assert surrogate_key(cfg) != before


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
    env.close()
