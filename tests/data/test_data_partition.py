"""The federated split: profiles, Dirichlet label skew per cluster, unequal counts, errors."""

import numpy as np
import pytest

from hffm_env.config import ConfigError, DataConfig
from hffm_env.data import (
    NUM_SCENE_CLASSES,
    QUESTION_TYPES,
    build_federated_data,
    can_serve,
    draw_network_profiles,
    draw_profiles,
)

CLUSTERS = np.repeat(np.arange(4), 5)  # 20 devices, 4 clusters


def _small_config(**kwargs):
    base = dict(samples_per_device=80, min_samples_per_device=20, pretrain_samples=50,
                global_test_samples=100, held_out_samples=60)
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
    # profiles come first, so draw_network_profiles from the same seed agrees (hffm describe)
    for cfg in (_small_config(), _small_config(cluster_missing_sensor_prob=0.5,
                                               cluster_task_drop_prob=0.3)):
        data = build_federated_data(cfg, CLUSTERS, np.random.default_rng(0))
        assert draw_network_profiles(cfg, CLUSTERS, np.random.default_rng(0)) == (
            data.clusters, data.profiles)
    # with no cluster-level draws the plain device draw agrees too
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
    # one task of several that no device can run: said (its info accuracy reads 0)
    with pytest.warns(UserWarning, match=r"data.tasks = \['vqa', 'count', 'scene'\]: vqa "
                                         r"cannot be served .* drop it from data.tasks"):
        draw_profiles(DataConfig(modalities=("image",)), 4, np.random.default_rng(0))
    # ... also where clusters drop tasks (medium: "high <= 0" from deep in numpy), and a task
    # no device can run is not handed to a cluster as if it could
    from hffm_env.data.partition import draw_cluster_profiles

    with pytest.raises(ConfigError, match="data.tasks"):
        draw_cluster_profiles(DataConfig(tasks=("vqa",), modalities=("audio", "text"),
                                         cluster_task_drop_prob=0.2), 4,
                              np.random.default_rng(0))
    with pytest.warns(UserWarning, match="vqa cannot be served"):
        clusters = draw_cluster_profiles(DataConfig(tasks=("vqa", "count"),
                                                    modalities=("audio", "text"),
                                                    cluster_task_drop_prob=0.5), 4,
                                         np.random.default_rng(0))
    assert all("vqa" not in c.tasks for c in clusters)


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
    assert len(data.held_out) == cfg.held_out_samples


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


def _family_tv(data, family):
    """Mean pairwise total variation between clusters of a label family's frequencies."""
    if family == "count":
        values, classes = data.pool.labels["count"], 3
    else:
        values, classes = data.pool.question_type, len(QUESTION_TYPES)
    per_cluster = []
    for c in range(4):
        devices = np.flatnonzero(CLUSTERS == c)
        picked = np.concatenate([values[data.train_idx[d]] for d in devices])
        per_cluster.append(np.bincount(picked, minlength=classes) / len(picked))
    return np.mean([_tv(per_cluster[i], per_cluster[j])
                    for i in range(4) for j in range(i + 1, 4)])


@pytest.mark.parametrize("family", ["count", "question"])
def test_every_label_family_is_skewed_per_cluster_when_asked(family):
    skewed = build_federated_data(_small_config(dirichlet_alpha=0.1, samples_per_device=200),
                                  CLUSTERS, np.random.default_rng(0))
    plain = build_federated_data(
        _small_config(dirichlet_alpha=0.1, samples_per_device=200, label_skew=("scene",)),
        CLUSTERS, np.random.default_rng(0))
    assert _family_tv(skewed, family) > 0.3
    assert _family_tv(plain, family) < 0.25
    assert _family_tv(skewed, family) > _family_tv(plain, family) + 0.15
    assert skewed.skew.count.shape == (4, 3) and plain.skew.count is None


def test_cluster_correlated_availability():
    cfg = _small_config(cluster_missing_sensor_prob=1.0, cluster_task_drop_prob=0.5,
                        p_missing_image=0.0, p_missing_audio=0.0, task_keep_prob=1.0)
    data = build_federated_data(cfg, np.repeat(np.arange(8), 3), np.random.default_rng(3))
    for c, cluster in enumerate(data.clusters):
        # every cluster lost one sensor, and its devices never have it
        assert len([m for m in ("image", "audio") if m in cluster.modalities]) == 1
        for d in np.flatnonzero(np.repeat(np.arange(8), 3) == c):
            assert set(data.profiles[d].modalities) <= set(cluster.modalities)
            assert set(data.profiles[d].tasks) <= set(cluster.tasks)
    # some cluster dropped a task it could serve, and every task is still run somewhere
    assert any(len(c.tasks) < len([t for t in cfg.tasks if can_serve(t, c.modalities)])
               for c in data.clusters)
    for task in cfg.tasks:
        assert any(task in p.tasks for p in data.profiles), task


def test_held_out_cluster_has_its_own_skew():
    data = build_federated_data(_small_config(dirichlet_alpha=0.1, held_out_samples=400),
                                CLUSTERS, np.random.default_rng(0))
    held = np.bincount(data.held_out.scene_class, minlength=NUM_SCENE_CLASSES) / 400
    assert held.max() > 0.4  # skewed like a cluster, not balanced like the global test set
    assert len(build_federated_data(_small_config(held_out_samples=0), CLUSTERS,
                                    np.random.default_rng(0)).held_out) == 0


def test_every_task_is_run_somewhere_even_when_every_cluster_lost_its_sensor():
    """With three clusters that each lose a sensor, all of them lose the camera on some seeds;
    one cluster then gets its sensors back, so that vqa is still run somewhere."""
    from hffm_env.data.partition import draw_cluster_profiles

    cfg = _small_config(cluster_missing_sensor_prob=1.0)
    cameraless = 0
    for seed in range(200):
        clusters = draw_cluster_profiles(cfg, 3, np.random.default_rng(seed))
        cameraless += sum("image" not in c.modalities for c in clusters) == 2  # one restored
        for task in cfg.tasks:
            assert any(task in c.tasks for c in clusters), (seed, task)
    assert cameraless  # the case arose


@pytest.mark.parametrize("clustered", [True, False])
def test_every_task_is_run_by_some_device_when_each_device_may_lose_it(clustered):
    """The cluster step kept every task with some cluster, but each of its devices could still
    lose the sensor or drop the task: on 657 of 2000 seeds here no device ran some task (its
    prompt and head never trained, its accuracy read 0), without a word."""
    cfg = _small_config(cluster_task_drop_prob=0.6, task_keep_prob=0.6, p_missing_image=0.5)
    cluster_of_device = np.arange(4)  # one device a cluster
    repaired = 0
    for seed in range(300):
        if clustered:
            clusters, profiles = draw_network_profiles(cfg, cluster_of_device,
                                                       np.random.default_rng(seed))
        else:
            clusters, profiles = None, draw_profiles(cfg, 2, np.random.default_rng(seed))
        for task in cfg.tasks:
            runners = [d for d, p in enumerate(profiles) if task in p.tasks]
            assert runners, (seed, task)
            repaired += len(runners) == 1
        for d, profile in enumerate(profiles):
            assert all(can_serve(t, profile.modalities) for t in profile.tasks)
            if clusters is not None:  # inside its cluster's profile
                assert set(profile.tasks) <= set(clusters[d].tasks)
                assert set(profile.modalities) <= set(clusters[d].modalities)
    assert repaired


def test_a_split_without_scenes_has_the_same_profiles_skew_and_counts():
    """Cost and surrogate fidelity build the split with scenes=False: what they price must be
    what real training of the same seed would price."""
    full = build_federated_data(_small_config(), CLUSTERS, np.random.default_rng(4))
    bare = build_federated_data(_small_config(), CLUSTERS, np.random.default_rng(4),
                                scenes=False)
    assert bare.profiles == full.profiles and bare.clusters == full.clusters
    np.testing.assert_array_equal(bare.num_samples, full.num_samples)
    np.testing.assert_array_equal(bare.label_dist, full.label_dist)
    assert [len(ix) for ix in bare.test_idx] == [len(ix) for ix in full.test_idx]
    assert full.has_scenes and not bare.has_scenes
    assert len(bare.pool) == len(bare.global_test) == len(bare.held_out) == 0
    assert full.device_batch(0).image.shape[0] == full.num_samples[0]
    with pytest.raises(ValueError, match="built without scenes"):
        bare.device_batch(0)


@pytest.mark.parametrize("fidelity", ["cost", "surrogate"])
def test_only_train_fidelity_draws_scenes(fidelity):
    import gymnasium as gym

    import hffm_env  # noqa: F401

    env = gym.make("hffm/HFFM-v0", scenario="small", fidelity=fidelity).unwrapped
    assert not env.data.has_scenes and len(env.data.pool) == 0
    assert env.data.num_samples.sum() > 0


def test_a_splits_summary_reads_its_profiles_counts_and_skew():
    cfg = _small_config(dirichlet_alpha=0.3, samples_per_device=200)
    data = build_federated_data(cfg, CLUSTERS, np.random.default_rng(3), scenes=False)
    summary = data.summary(cfg.tasks)
    counts = data.num_samples.astype(float)
    for task in cfg.tasks:  # the share of training samples on devices that run the task
        runs = np.array([task in p.tasks for p in data.profiles])
        assert summary[f"samples_{task}"] == pytest.approx(counts[runs].sum() / counts.sum())
    assert summary["devices_image"] == pytest.approx(
        np.mean(["image" in p.modalities for p in data.profiles]))
    assert summary["samples_per_device"] == pytest.approx(counts.mean())
    # skew: the mean over the three families of the clusters' distance from uniform
    families = (data.skew.scene, data.skew.count, data.skew.question)
    assert summary["skew_from_uniform"] == pytest.approx(np.mean(
        [np.mean([_tv(row, np.full(len(row), 1 / len(row))) for row in f]) for f in families]))
    assert 0 < summary["skew_between_clusters"] < 1
    # no skew at all: both distances are 0 (the families not skewed count as uniform)
    plain = build_federated_data(_small_config(label_skew=()), CLUSTERS,
                                 np.random.default_rng(3), scenes=False)
    flat = plain.summary(cfg.tasks)
    assert flat["skew_from_uniform"] == pytest.approx(0) and flat[
        "skew_between_clusters"] == pytest.approx(0)


def test_a_noise_sweep_changes_the_noise_only():
    """noise_std 0 skipped the noise draws, so the splits, the global test set and the
    held-out scenes drawn after them were others than at any other noise level."""
    built = {noise: build_federated_data(_small_config(noise_std=noise), CLUSTERS,
                                         np.random.default_rng(0))
             for noise in (0.0, 0.1)}
    clean, noisy = built[0.0], built[0.1]
    for a, b in zip(clean.train_idx + clean.test_idx, noisy.train_idx + noisy.test_idx):
        assert np.array_equal(a, b)
    for part in ("pool", "global_test", "held_out"):
        for task, labels in getattr(clean, part).labels.items():
            assert np.array_equal(labels, getattr(noisy, part).labels[task]), (part, task)
    assert not np.array_equal(clean.pool.image, noisy.pool.image)  # the noise itself differs
