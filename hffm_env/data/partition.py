"""How scenes are spread over devices: who senses what, who runs which task, and non-IID data.

Heterogeneity, all drawn from one generator:

- **modalities**: text is always present; image and audio are each missing with
  ``p_missing_image`` / ``p_missing_audio``, but never both (a device with neither keeps one of
  the two at random); a device whose draw serves none of ``tasks`` (e.g. only vqa is configured
  and it lost its camera) gets every configured modality back;
- **tasks**: each task the device's modalities can serve is kept with ``task_keep_prob``, at
  least one; a task that no device ends up running though some cluster (or, without cluster
  profiles, the config) keeps it goes to the first device of the first such cluster able to
  serve it (or, if none can, to that cluster's first device, with its cluster's sensors
  back), so every configured task is trained somewhere (this repair draws no random number);
- **cluster-correlated availability**: before the device draws, each cluster may lose one
  sensor for all its devices (``cluster_missing_sensor_prob``: a cluster without cameras, or
  without microphones) and may drop each task for all its devices (``cluster_task_drop_prob``;
  every task stays with at least one cluster), so what one cluster cannot learn, another can;
- **label skew**: per cluster, one Dirichlet(``dirichlet_alpha``) draw over each label family of
  ``label_skew``: scene classes, object counts and question templates (and so VQA answer
  types), shared by the cluster's devices (as in the prototype), so clusters differ from each
  other on every task;
- **unequal sizes**: each device's sample count is log-normal around ``samples_per_device``
  (spread ``sample_count_sigma``), floored at ``min_samples_per_device``.

Each device's samples are split into train and test by ``test_fraction``. A balanced global
test set (every scene class equally often, every task and modality) and a *held-out cluster*
(``held_out_samples`` scenes under a skew of its own that no device trains on) are generated
beside them. Pre-training draws its own data elsewhere (:mod:`hffm_env.models.pretrain`).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hffm_env.config import ConfigError, DataConfig
from hffm_env.data.scenes import (
    NUM_SCENE_CLASSES,
    QUESTION_TYPES,
    SceneBatch,
    can_serve,
    generate_scenes,
)

__all__ = [
    "ClusterProfile",
    "DeviceProfile",
    "FederatedData",
    "LabelSkew",
    "draw_cluster_profiles",
    "draw_label_skew",
    "draw_network_profiles",
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
    """Reject a config under which no device could ever run any of its tasks, and warn of a
    task no device can run (never trained or scored: the mean accuracy leaves it out, and
    info's per-task accuracy reads 0 for it every round, as for anything not measured).

    Checked against the modality sets devices can actually draw, not just the configured ones:
    with ``p_missing_image = 1`` (and audio never missing) no device has an image, so a
    vqa-only config is as unservable as one without ``image`` in ``modalities``.
    """
    reachable = modality_set_probabilities(config)
    unservable = [t for t in config.tasks if not any(can_serve(t, mods) for mods in reachable)]
    if not unservable:
        return
    every = len(unservable) == len(config.tasks)
    problem = (
        f"data.tasks = {list(config.tasks)}: "
        f"{'no task can' if every else ', '.join(unservable) + ' cannot'} be served by the "
        f"modality sets devices can have ({[list(m) for m in reachable]}, from "
        f"data.modalities = {list(config.modalities)}, p_missing_image = "
        f"{config.p_missing_image}, p_missing_audio = {config.p_missing_audio}); vqa needs "
        "image and text, count and scene need image or audio")
    if every:
        raise ConfigError(problem)
    warnings.warn(f"{problem}: no device trains or scores it (its accuracy in info reads 0, "
                  "not measured); drop it from data.tasks", UserWarning, stacklevel=3)


@dataclass(frozen=True)
class ClusterProfile:
    """What a whole cluster can sense and run: its devices draw their own profiles inside it."""

    modalities: tuple[str, ...]
    tasks: tuple[str, ...]


def draw_cluster_profiles(
    config: DataConfig, num_clusters: int, rng: np.random.Generator
) -> list[ClusterProfile]:
    """Each cluster's sensors and tasks (see the module docstring). With both cluster
    probabilities at 0 every cluster allows everything and no random number is drawn."""
    _check_servable(config)  # (before any draw: no servable task left nothing to draw from)
    allowed = tuple(config.modalities)
    sensors = [m for m in _SENSORS if m in allowed]
    out: list[ClusterProfile] = []
    for _ in range(num_clusters):
        held = list(allowed)
        if len(sensors) == 2 and config.cluster_missing_sensor_prob > 0:
            if rng.random() < config.cluster_missing_sensor_prob:
                held.remove(sensors[int(rng.integers(2))])
        servable = [t for t in config.tasks if can_serve(t, held)]
        if not servable:  # e.g. a vqa-only config in a cluster without cameras
            held, servable = list(allowed), [t for t in config.tasks if can_serve(t, allowed)]
        tasks = list(servable)
        if config.cluster_task_drop_prob > 0:
            tasks = [t for t in servable if rng.random() >= config.cluster_task_drop_prob]
            if not tasks:
                tasks = [servable[int(rng.integers(len(servable)))]]
        out.append(ClusterProfile(tuple(held), tuple(t for t in config.tasks if t in tasks)))
    # every task stays learnable somewhere: a task no cluster kept goes back to one that can
    # serve it
    for task in config.tasks:
        if any(task in c.tasks for c in out) or not can_serve(task, allowed):
            continue  # (a task no device can run is warned of, never handed to a cluster)
        able = [k for k, c in enumerate(out) if can_serve(task, c.modalities)]
        if not able:  # every cluster lost a sensor it needs: one cluster gets its sensors back
            k = int(rng.integers(len(out)))
            out[k] = ClusterProfile(allowed, out[k].tasks)
            able = [k]
        k = able[int(rng.integers(len(able)))]
        kept = set(out[k].tasks) | {task}
        out[k] = ClusterProfile(out[k].modalities, tuple(t for t in config.tasks if t in kept))
    return out


def draw_profiles(
    config: DataConfig,
    num_devices: int,
    rng: np.random.Generator,
    cluster_of_device: np.ndarray | None = None,
    clusters: list[ClusterProfile] | None = None,
) -> list[DeviceProfile]:
    """Draw each device's modalities and tasks (see the module docstring), inside its
    cluster's profile when ``clusters`` (and ``cluster_of_device``) are given."""
    _check_servable(config)
    if num_devices < 1:
        raise ConfigError(f"placement.num_devices = {num_devices}: must be >= 1")
    if clusters is not None and cluster_of_device is None:
        raise ValueError("draw_profiles: clusters given without cluster_of_device, so no device "
                         "has a cluster whose profile it could draw inside")
    missing = {"image": config.p_missing_image, "audio": config.p_missing_audio}
    profiles = []
    for d in range(num_devices):
        limits = (clusters[int(cluster_of_device[d])]
                  if clusters is not None and cluster_of_device is not None else None)
        modalities = limits.modalities if limits else tuple(config.modalities)
        task_menu = limits.tasks if limits else tuple(config.tasks)
        available = set(modalities)
        # draw in the config's order: iterating the set would tie draws to string hashing,
        # which changes from process to process (PYTHONHASHSEED), so one seed would give
        # different profiles in different runs
        held = {m for m in modalities if rng.random() >= missing.get(m, 0.0)}
        sensors = [m for m in _SENSORS if m in available]
        if sensors and not held.intersection(sensors):
            held.add(sensors[int(rng.integers(len(sensors)))])
        servable = [t for t in task_menu if can_serve(t, held)]
        if not servable:  # e.g. only vqa is configured and this device lost its camera
            held = set(available)
            servable = [t for t in task_menu if can_serve(t, held)]
        tasks = [t for t in servable if rng.random() < config.task_keep_prob]
        if not tasks:
            tasks = [servable[int(rng.integers(len(servable)))]]
        profiles.append(DeviceProfile(
            modalities=tuple(m for m in config.modalities if m in held),
            tasks=tuple(t for t in config.tasks if t in tasks),
        ))
    _give_every_task_a_device(config, profiles, cluster_of_device, clusters)
    return profiles


def _give_every_task_a_device(config: DataConfig, profiles: list[DeviceProfile],
                              cluster_of_device: np.ndarray | None,
                              clusters: list[ClusterProfile] | None) -> None:
    """The device-level end of "every task stays learnable somewhere" (in place): the cluster
    step keeps each task with some cluster, but each of its devices may still lose the sensor
    or drop the task. Deterministic, so that draws where nothing is lost stay as they were."""
    for task in config.tasks:
        if any(task in p.tasks for p in profiles):
            continue
        if clusters is not None and cluster_of_device is not None:
            keeping = [k for k, c in enumerate(clusters) if task in c.tasks]
            members = [int(d) for k in keeping for d in np.flatnonzero(cluster_of_device == k)]
        else:
            members = list(range(len(profiles)))
        if not members:  # no cluster keeps it (or its only cluster has no device): nothing to do
            continue
        able = [d for d in members if can_serve(task, profiles[d].modalities)]
        d = int(able[0] if able else members[0])
        modalities = set(profiles[d].modalities)
        if not able:  # its sensors back: the cluster's (or the config's) allowed modalities
            limits = (clusters[int(cluster_of_device[d])].modalities
                      if clusters is not None and cluster_of_device is not None
                      else config.modalities)
            modalities |= set(limits)
            if not can_serve(task, modalities):  # the config cannot serve it (warned of)
                continue
        kept = set(profiles[d].tasks) | {task}
        profiles[d] = DeviceProfile(
            modalities=tuple(m for m in config.modalities if m in modalities),
            tasks=tuple(t for t in config.tasks if t in kept))


def draw_network_profiles(
    config: DataConfig, cluster_of_device: np.ndarray, rng: np.random.Generator
) -> tuple[list[ClusterProfile], list[DeviceProfile]]:
    """Every cluster's profile, then every device's inside it: the first draws of
    :func:`build_federated_data`, so the same generator state gives the same profiles
    (``hffm describe`` relies on it)."""
    cluster_of_device = np.asarray(cluster_of_device, dtype=np.int64)
    clusters = draw_cluster_profiles(config, int(cluster_of_device.max()) + 1, rng)
    profiles = draw_profiles(config, cluster_of_device.size, rng, cluster_of_device, clusters)
    return clusters, profiles


@dataclass(frozen=True)
class LabelSkew:
    """Per cluster, the Dirichlet proportions of every skewed label family; a family that is
    not skewed is ``None`` (drawn from the scene generator's own priors)."""

    scene: np.ndarray  # (C, NUM_SCENE_CLASSES); uniform rows when scene is not skewed
    count: np.ndarray | None  # (C, max_objects)
    question: np.ndarray | None  # (C, len(QUESTION_TYPES))


def draw_label_skew(config: DataConfig, num_clusters: int, rng: np.random.Generator) -> LabelSkew:
    """One Dirichlet(``dirichlet_alpha``) draw per cluster for each family of ``label_skew``."""

    def dirichlet(classes: int) -> np.ndarray:
        draw = rng.dirichlet(np.full(classes, config.dirichlet_alpha), size=num_clusters)
        # tiny alphas can underflow to exact zeros (or NaN rows): keep every row a distribution
        draw = np.nan_to_num(draw, nan=0.0)
        draw[draw.sum(axis=1) <= 0] = 1.0
        return draw / draw.sum(axis=1, keepdims=True)

    skew = set(config.label_skew)
    scene = (dirichlet(NUM_SCENE_CLASSES) if "scene" in skew
             else np.full((num_clusters, NUM_SCENE_CLASSES), 1.0 / NUM_SCENE_CLASSES))
    count = dirichlet(config.max_objects) if "count" in skew else None
    question = dirichlet(len(QUESTION_TYPES)) if "question" in skew else None
    return LabelSkew(scene=scene, count=count, question=question)


def _skewed_scenes(
    config: DataConfig, skew: LabelSkew, cluster_of_sample: np.ndarray, rng: np.random.Generator
) -> SceneBatch:
    """Scenes whose labels follow each sample's cluster skew (rows of ``skew``)."""
    cdf = np.cumsum(skew.scene, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(cluster_of_sample.size)
    scene_class = (u[:, None] > cdf[cluster_of_sample]).sum(axis=1).astype(np.int64)
    # a floor keeps every label possible (a cluster is skewed, not blind): weights of exactly
    # zero would make some scenes impossible to generate when their other labels force them
    floor = 1e-3
    count_w = None if skew.count is None else skew.count[cluster_of_sample] + floor
    question_w = None if skew.question is None else skew.question[cluster_of_sample] + floor
    return generate_scenes(cluster_of_sample.size, config, rng, scene_class=scene_class,
                           count_weights=count_w, question_weights=question_w)


@dataclass
class FederatedData:
    """The federated split of one scenario instance.

    Attributes:
        clusters: per cluster, the sensors and tasks its devices may have.
        profiles: per device, its modalities and tasks.
        pool: every device's samples, concatenated.
        train_idx: per device, indices into ``pool`` of its training samples.
        test_idx: per device, indices into ``pool`` of its held-out samples.
        skew: per cluster, the label proportions of every skewed family.
        global_test: a test set balanced over scene classes that no device trains on.
        held_out: scenes of one extra cluster (its own skew) that no device trains on; empty
            when ``held_out_samples`` is 0.
        num_samples: ``(N,)`` training samples per device (the aggregation weights).
        has_scenes: False when built with ``scenes=False``: ``pool``, ``global_test`` and
            ``held_out`` are then empty and ``train_idx``/``test_idx`` index the pool that
            would have been drawn (only their lengths mean anything).
    """

    clusters: list[ClusterProfile]
    profiles: list[DeviceProfile]
    pool: SceneBatch
    train_idx: list[np.ndarray]
    test_idx: list[np.ndarray]
    skew: LabelSkew
    global_test: SceneBatch
    held_out: SceneBatch
    num_samples: np.ndarray
    has_scenes: bool = True

    @property
    def label_dist(self) -> np.ndarray:
        """``(num_clusters, num_scene_classes)``: the scene-class proportions per cluster."""
        return self.skew.scene

    def summary(self, tasks: tuple[str, ...] | list[str]) -> dict[str, float]:
        """Numbers that describe this split without training on it (what a scheduler or a
        surrogate could read before the first round), each in [0, 1] but the last:

        - ``samples_<task>``: per task of ``tasks``, the share of all training samples that
          sit on devices running it;
        - ``devices_<sensor>``: per sensor (image, audio), the share of devices that have it;
        - ``skew_from_uniform`` / ``skew_between_clusters``: the clusters' label proportions'
          mean total-variation distance from uniform and from their mean over clusters,
          averaged over the three label families (scene, count, question; one that is not
          skewed is uniform: 0);
        - ``samples_per_device``: the mean training samples per device.
        """
        counts = np.asarray(self.num_samples, dtype=float)
        out = {f"samples_{task}": float(sum(n for n, p in zip(counts, self.profiles)
                                            if task in p.tasks) / counts.sum())
               for task in tasks}
        out |= {f"devices_{sensor}": float(np.mean([sensor in p.modalities
                                                    for p in self.profiles]))
                for sensor in _SENSORS}
        families = (self.skew.scene, self.skew.count, self.skew.question)

        def mean_distance(to: Callable[[np.ndarray], np.ndarray | float]) -> float:
            return float(np.mean([0.0 if f is None else 0.5 * np.abs(f - to(f)).sum(axis=1).mean()
                                  for f in families]))

        out["skew_from_uniform"] = mean_distance(lambda f: 1.0 / f.shape[1])
        out["skew_between_clusters"] = mean_distance(lambda f: f.mean(axis=0))
        out["samples_per_device"] = float(counts.mean())
        return out

    def device_batch(self, device: int, split: str = "train") -> SceneBatch:
        """The samples of ``device`` in ``split`` (``"train"`` or ``"test"``)."""
        if split not in ("train", "test"):
            raise ValueError(f"split = {split!r}: must be 'train' or 'test'")
        if not self.has_scenes:
            raise ValueError("this split was built without scenes (scenes=False, as cost and "
                             "surrogate fidelity build it): build it with scenes=True")
        idx = self.train_idx if split == "train" else self.test_idx
        return self.pool.subset(idx[device])


def build_federated_data(
    config: DataConfig, cluster_of_device: np.ndarray, rng: np.random.Generator,
    *, scenes: bool = True,
) -> FederatedData:
    """Profiles, skewed device data, the global test set and the held-out cluster, all from
    ``rng``.

    The profiles are drawn first (:func:`draw_network_profiles`), then the label skew and the
    sample counts, so a generator from the same seed gives the same profiles, skew and
    ``num_samples`` with or without ``scenes``. ``scenes=False`` draws no scene at all (the
    pool and both test sets are empty): what pricing a round needs, at a fraction of the
    memory (a scene of ``small`` is about 50 KB, a thousand devices' about 2 GB).
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
    clusters, profiles = draw_network_profiles(config, cluster_of_device, rng)
    num_clusters = int(cluster_of_device.max()) + 1
    # one extra row: the held-out cluster's own skew
    skew = draw_label_skew(config, num_clusters + 1, rng)
    # (+ 0.0 makes a -0.0, which the config accepts as 0, the 0 numpy accepts)
    scale = rng.lognormal(0.0, config.sample_count_sigma + 0.0, size=num_devices)
    counts = np.maximum(
        config.min_samples_per_device, np.round(config.samples_per_device * scale)
    ).astype(np.int64)
    device_of_sample = np.repeat(np.arange(num_devices), counts)
    if scenes:
        pool = _skewed_scenes(config, skew, cluster_of_device[device_of_sample], rng)
    else:
        pool = generate_scenes(0, config, rng)

    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    train_idx, test_idx = [], []
    for start, count in zip(starts, counts):
        order = start + rng.permutation(count)
        num_test = int(np.clip(round(config.test_fraction * count), 1, count - 1))
        test_idx.append(np.sort(order[:num_test]))
        train_idx.append(np.sort(order[num_test:]))

    if scenes:
        balanced = rng.permutation(np.arange(config.global_test_samples) % NUM_SCENE_CLASSES)
        global_test = generate_scenes(config.global_test_samples, config, rng,
                                      scene_class=balanced.astype(np.int64))
        held_out = _skewed_scenes(
            config, skew, np.full(config.held_out_samples, num_clusters, dtype=np.int64), rng
        )
    else:
        global_test = held_out = pool
    cluster_skew = LabelSkew(
        scene=skew.scene[:num_clusters],
        count=None if skew.count is None else skew.count[:num_clusters],
        question=None if skew.question is None else skew.question[:num_clusters],
    )
    return FederatedData(
        clusters=clusters,
        profiles=profiles,
        pool=pool,
        train_idx=train_idx,
        test_idx=test_idx,
        skew=cluster_skew,
        global_test=global_test,
        held_out=held_out,
        num_samples=np.array([len(ix) for ix in train_idx], dtype=np.int64),
        has_scenes=scenes,
    )
