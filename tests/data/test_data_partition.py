"""The federated split: profiles, Dirichlet label skew per cluster, unequal counts, errors."""

import numpy as np
import pytest

from hffm_env.config import ConfigError, DataConfig
from hffm_env.data import NUM_SCENE_CLASSES, build_federated_data, can_serve, draw_profiles

CLUSTERS = np.repeat(np.arange(4), 5)  # 20 devices, 4 clusters


def _small_config(**kwargs):
    base = dict(samples_per_device=80, min_samples_per_device=20, pretrain_samples=50,
                global_test_samples=100)
    base.update(kwargs)
    return DataConfig(**base)


def _tv(p, q):
    return 0.5 * np.abs(p - q).sum()


def _empirical(data, devices):
    labels = np.concatenate([data.pool.scene_class[data.train_idx[d]] for d in devices])
    return np.bincount(labels, minlength=NUM_SCENE_CLASSES) / len(labels)


def test_deterministic_from_the_seed():
    a = build_federated_data(_small_config(), CLUSTERS, np.random.default_rng(0))
    b = build_federated_data(_small_config(), CLUSTERS, np.random.default_rng(0))
    c = build_federated_data(_small_config(), CLUSTERS, np.random.default_rng(1))
    assert a.profiles == b.profiles
    np.testing.assert_array_equal(a.pool.image, b.pool.image)
    assert all(np.array_equal(x, y) for x, y in zip(a.train_idx, b.train_idx))
    assert not np.array_equal(a.num_samples, c.num_samples)
    # profiles come first, so draw_profiles from the same seed agrees (hffm describe)
    assert draw_profiles(_small_config(), 20, np.random.default_rng(0)) == a.profiles


@pytest.mark.parametrize("alpha,skewed", [(0.1, True), (100.0, False)])
def test_dirichlet_skew_differs_across_clusters_and_is_shared_within(alpha, skewed):
    data = build_federated_data(_small_config(dirichlet_alpha=alpha, samples_per_device=200),
                                CLUSTERS, np.random.default_rng(0))
    per_cluster = [_empirical(data, np.flatnonzero(CLUSTERS == c)) for c in range(4)]
    between = np.mean([_tv(per_cluster[i], per_cluster[j])
                       for i in range(4) for j in range(i + 1, 4)])
    if skewed:
        assert between > 0.4, between
    else:
        assert between < 0.15, between
    # devices of one cluster follow their cluster's proportions
    np.testing.assert_allclose(data.label_dist.sum(axis=1), 1.0)
    first = np.flatnonzero(CLUSTERS == 0)
    assert _tv(_empirical(data, first[:2]), _empirical(data, first[2:])) < 0.25


def test_unequal_counts_and_disjoint_splits():
    data = build_federated_data(_small_config(), CLUSTERS, np.random.default_rng(0))
    assert len(set(data.num_samples.tolist())) > 5
    for train, test in zip(data.train_idx, data.test_idx):
        assert len(test) >= 1 and len(train) >= 1
        assert not set(train) & set(test)
    assert data.num_samples.min() >= 1
    assert len(data.global_test) == 100
    assert np.bincount(data.global_test.scene_class).max() - np.bincount(
        data.global_test.scene_class).min() <= 1


def test_profiles_only_assign_servable_tasks():
    profiles = draw_profiles(DataConfig(p_missing_image=0.5, p_missing_audio=0.5), 300,
                             np.random.default_rng(0))
    for p in profiles:
        assert "text" in p.modalities
        assert {"image", "audio"} & set(p.modalities)
        assert p.tasks and all(can_serve(t, p.modalities) for t in p.tasks)
    assert any("image" not in p.modalities for p in profiles)
    assert any("audio" not in p.modalities for p in profiles)


def test_unservable_tasks_are_rejected_naming_the_field():
    cfg = DataConfig(tasks=("vqa",), modalities=("audio", "text"))
    with pytest.raises(ConfigError, match="data.tasks"):
        draw_profiles(cfg, 4, np.random.default_rng(0))


def test_too_few_samples_per_device_is_rejected():
    with pytest.raises(ConfigError, match="data.min_samples_per_device"):
        build_federated_data(_small_config(min_samples_per_device=1), CLUSTERS,
                             np.random.default_rng(0))


def test_modality_sets_never_lose_both_sensors():
    from hffm_env.data import modality_set_probabilities

    probs = modality_set_probabilities(DataConfig(p_missing_image=0.5, p_missing_audio=0.5))
    assert sum(probs.values()) == pytest.approx(1.0)
    assert ("text",) not in probs
    assert probs[("image", "text")] == pytest.approx(0.25 + 0.125)
    only_audio = modality_set_probabilities(DataConfig(modalities=("audio", "text")))
    assert only_audio == {("audio", "text"): 1.0}


def test_vqa_only_devices_all_get_an_image():
    profiles = draw_profiles(DataConfig(tasks=("vqa",), p_missing_image=0.9), 50,
                             np.random.default_rng(0))
    assert all("image" in p.modalities and p.tasks == ("vqa",) for p in profiles)
    with pytest.raises(ConfigError, match="data.tasks"):
        draw_profiles(DataConfig(tasks=("vqa",), p_missing_image=1.0, p_missing_audio=0.0), 5,
                      np.random.default_rng(0))
    with pytest.raises(ConfigError, match="data.tasks"):
        draw_profiles(DataConfig(modalities=("text",)), 5, np.random.default_rng(0))


def test_counts_are_floored_and_split_by_test_fraction():
    cfg = _small_config(sample_count_sigma=2.0, test_fraction=0.25)
    data = build_federated_data(cfg, CLUSTERS, np.random.default_rng(0))
    totals = np.array([len(a) + len(b) for a, b in zip(data.train_idx, data.test_idx)])
    assert totals.min() == cfg.min_samples_per_device  # sigma 2 sends some below the floor
    assert len(data.pool) == totals.sum()
    covered = np.sort(np.concatenate(data.train_idx + data.test_idx))
    np.testing.assert_array_equal(covered, np.arange(len(data.pool)))
    fractions = np.array([len(t) for t in data.test_idx]) / totals
    assert np.abs(fractions - 0.25).max() < 0.05
    np.testing.assert_array_equal(data.num_samples, [len(t) for t in data.train_idx])
    assert len(data.device_batch(3, "test")) == len(data.test_idx[3])
    with pytest.raises(ValueError, match="split"):
        data.device_batch(0, "validation")
    assert len(data.pretrain) == cfg.pretrain_samples


def test_tiny_alpha_and_bad_clusters():
    data = build_federated_data(_small_config(dirichlet_alpha=1e-3), CLUSTERS,
                                np.random.default_rng(0))
    assert np.isfinite(data.label_dist).all()
    np.testing.assert_allclose(data.label_dist.sum(axis=1), 1.0)
    for bad in (np.array([]), np.array([[0, 1]]), np.array([0, -1]), np.array([0.5, 1.0])):
        with pytest.raises(ValueError, match="cluster_of_device"):
            build_federated_data(_small_config(), bad, np.random.default_rng(0))


def test_profiles_do_not_depend_on_string_hashing():
    """Same seed, same profiles in every process, whatever PYTHONHASHSEED is."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np; from hffm_env.config import DataConfig; "
            "from hffm_env.data import draw_profiles; "
            "print(draw_profiles(DataConfig(), 30, np.random.default_rng(0)))")
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
