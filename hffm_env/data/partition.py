"""How scenes are spread over devices: who senses what, who runs which task, and non-IID data.

Heterogeneity, all drawn from one generator:

- **modalities**: text is always present; image and audio are each missing with
  ``p_missing_image`` / ``p_missing_audio``, but never both (a device with neither keeps one of
  the two at random); a device whose draw serves none of ``tasks`` (e.g. only vqa is configured
  and it lost its camera) gets every configured modality back;
- **tasks**: each task the device's modalities can serve is kept with ``task_keep_prob``, at
  least one;
- **label skew**: one Dirichlet(``dirichlet_alpha``) draw over scene classes per cluster, shared
  by the cluster's devices (as in the prototype), so clusters differ from each other;
- **unequal sizes**: each device's sample count is log-normal around ``samples_per_device``
  (spread ``sample_count_sigma``), floored at ``min_samples_per_device``.

Each device's samples are split into train and test by ``test_fraction``. A disjoint
pre-training set (uniform classes) and a balanced global test set are generated beside them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from hffm_env.config import ConfigError, DataConfig
from hffm_env.data.scenes import NUM_SCENE_CLASSES, SceneBatch, can_serve, generate_scenes

__all__ = [
    "DeviceProfile",
    "FederatedData",
    "draw_profiles",
    "build_federated_data",
    "modality_set_probabilities",
]

_SENSORS: tuple[str, ...] = ("image", "audio")
"""Modalities that may be missing; a device always keeps at least one of those allowed."""


@dataclass(frozen=True)
class DeviceProfile:
    """What one device senses and which tasks it runs."""

    modalities: tuple[str, ...]
    tasks: tuple[str, ...]


def modality_set_probabilities(config: DataConfig) -> dict[tuple[str, ...], float]:
    """The probability of every modality set the missing-modality draw gives a device (before
    the no-servable-task fallback of :func:`draw_profiles`); sets of probability 0 are left out.

    ``text`` is present whenever ``config.modalities`` allows it. ``image`` and ``audio`` (when
    allowed) are each missing independently with ``p_missing_image`` / ``p_missing_audio``; when
    both are drawn missing the device keeps one of them, image or audio with equal odds. So when
    only one of them is allowed, it is always present.
    """
    allowed = tuple(config.modalities)
    sensors = [m for m in _SENSORS if m in allowed]
    p_missing = {"image": config.p_missing_image, "audio": config.p_missing_audio}
    probs: dict[tuple[str, ...], float] = {}
    for kept_flags in itertools.product((True, False), repeat=len(sensors)):
        kept = {m for m, k in zip(sensors, kept_flags) if k}
        p = 1.0
        for m, k in zip(sensors, kept_flags):
            p *= (1.0 - p_missing[m]) if k else p_missing[m]
        if sensors and not kept:  # never both missing: one of them, chosen evenly, stays
            targets, share = [{m} for m in sensors], p / len(sensors)
        else:
            targets, share = [kept], p
        for target in targets:
            key = tuple(m for m in allowed if m in target or m == "text")
            probs[key] = probs.get(key, 0.0) + share
    return {k: v for k, v in probs.items() if v > 0.0}


def _check_servable(config: DataConfig) -> None:
    """Reject a config under which no device could ever run any of its tasks.

    Checked against the modality sets devices can actually draw, not just the configured ones:
    with ``p_missing_image = 1`` (and audio never missing) no device has an image, so a
    vqa-only config is as unservable as one without ``image`` in ``modalities``.
    """
    reachable = modality_set_probabilities(config)
    if not any(can_serve(t, mods) for t in config.tasks for mods in reachable):
        raise ConfigError(
            f"data.tasks = {list(config.tasks)}: no task can be served by the modality sets "
            f"devices can have ({[list(m) for m in reachable]}, from data.modalities = "
            f"{list(config.modalities)}, p_missing_image = {config.p_missing_image}, "
            f"p_missing_audio = {config.p_missing_audio}); vqa needs image and text, count and "
            "scene need image or audio"
        )


def draw_profiles(
    config: DataConfig, num_devices: int, rng: np.random.Generator
) -> list[DeviceProfile]:
    """Draw each device's modalities and tasks (see the module docstring)."""
    _check_servable(config)
    if num_devices < 1:
        raise ConfigError(f"placement.num_devices = {num_devices}: must be >= 1")
    available = set(config.modalities)
    missing = {"image": config.p_missing_image, "audio": config.p_missing_audio}
    profiles = []
    for _ in range(num_devices):
        # draw in the config's order: iterating the set would tie draws to string hashing,
        # which changes from process to process (PYTHONHASHSEED), so one seed would give
        # different profiles in different runs
        held = {m for m in config.modalities if rng.random() >= missing.get(m, 0.0)}
        sensors = [m for m in ("image", "audio") if m in available]
        if sensors and not held.intersection(sensors):
            held.add(sensors[int(rng.integers(len(sensors)))])
        servable = [t for t in config.tasks if can_serve(t, held)]
        if not servable:  # e.g. only vqa is configured and this device lost its camera
            held = set(available)
            servable = [t for t in config.tasks if can_serve(t, held)]
        tasks = [t for t in servable if rng.random() < config.task_keep_prob]
        if not tasks:
            tasks = [servable[int(rng.integers(len(servable)))]]
        profiles.append(DeviceProfile(
            modalities=tuple(m for m in config.modalities if m in held),
            tasks=tuple(t for t in config.tasks if t in tasks),
        ))
    return profiles


@dataclass
class FederatedData:
    """The federated split of one scenario instance.

    Attributes:
        profiles: per device, its modalities and tasks.
        pool: every device's samples, concatenated.
        train_idx: per device, indices into ``pool`` of its training samples.
        test_idx: per device, indices into ``pool`` of its held-out samples.
        label_dist: ``(num_clusters, num_scene_classes)`` the Dirichlet proportions per cluster.
        pretrain: a disjoint set for central pre-training (uniform classes).
        global_test: a test set balanced over scene classes that no device trains on.
        num_samples: ``(N,)`` training samples per device (the aggregation weights).
    """

    profiles: list[DeviceProfile]
    pool: SceneBatch
    train_idx: list[np.ndarray]
    test_idx: list[np.ndarray]
    label_dist: np.ndarray
    pretrain: SceneBatch
    global_test: SceneBatch
    num_samples: np.ndarray

    def device_batch(self, device: int, split: str = "train") -> SceneBatch:
        """The samples of ``device`` in ``split`` (``"train"`` or ``"test"``)."""
        if split not in ("train", "test"):
            raise ValueError(f"split = {split!r}: must be 'train' or 'test'")
        idx = self.train_idx if split == "train" else self.test_idx
        return self.pool.subset(idx[device])


def build_federated_data(
    config: DataConfig, cluster_of_device: np.ndarray, rng: np.random.Generator
) -> FederatedData:
    """Profiles, skewed device data, pre-training and global test sets, all from ``rng``.

    The profiles are drawn first, so :func:`draw_profiles` with a generator from the same seed
    returns the same profiles (``hffm describe`` relies on it).
    """
    raw = np.asarray(cluster_of_device)
    if raw.ndim != 1 or raw.size == 0 or not np.issubdtype(raw.dtype, np.integer) or (
        raw.min() < 0
    ):
        raise ValueError(
            "cluster_of_device must be a non-empty 1-D array of integer cluster ids >= 0, got "
            f"{raw.dtype} {raw.shape}"
        )
    cluster_of_device = raw.astype(np.int64)
    num_devices = cluster_of_device.size
    if config.min_samples_per_device < 2:
        raise ConfigError(
            f"data.min_samples_per_device = {config.min_samples_per_device}: must be >= 2 "
            "so that every device has a training and a test sample"
        )
    profiles = draw_profiles(config, num_devices, rng)
    num_clusters = int(cluster_of_device.max()) + 1
    label_dist = rng.dirichlet(np.full(NUM_SCENE_CLASSES, config.dirichlet_alpha),
                               size=num_clusters)
    scale = rng.lognormal(0.0, config.sample_count_sigma, size=num_devices)
    counts = np.maximum(
        config.min_samples_per_device, np.round(config.samples_per_device * scale)
    ).astype(np.int64)
    # Scene classes per sample, drawn from the device's cluster distribution (vectorised by
    # inverse-CDF sampling on one uniform draw per sample).
    device_of_sample = np.repeat(np.arange(num_devices), counts)
    cdf = np.cumsum(label_dist, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(device_of_sample.size)
    rows = cdf[cluster_of_device[device_of_sample]]
    scene_class = (u[:, None] > rows).sum(axis=1).astype(np.int64)
    pool = generate_scenes(int(counts.sum()), config, rng, scene_class=scene_class)

    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    train_idx, test_idx = [], []
    for start, count in zip(starts, counts):
        order = start + rng.permutation(count)
        num_test = int(np.clip(round(config.test_fraction * count), 1, count - 1))
        test_idx.append(np.sort(order[:num_test]))
        train_idx.append(np.sort(order[num_test:]))

    pretrain = generate_scenes(config.pretrain_samples, config, rng)
    balanced = rng.permutation(np.arange(config.global_test_samples) % NUM_SCENE_CLASSES)
    global_test = generate_scenes(config.global_test_samples, config, rng,
                                  scene_class=balanced.astype(np.int64))
    return FederatedData(
        profiles=profiles,
        pool=pool,
        train_idx=train_idx,
        test_idx=test_idx,
        label_dist=label_dist,
        pretrain=pretrain,
        global_test=global_test,
        num_samples=np.array([len(ix) for ix in train_idx], dtype=np.int64),
    )
