"""Every knob of an HF-FM scenario, as frozen dataclasses with units in their names.

A scenario is one :class:`ScenarioConfig`: the network (placement, channel, compute, dynamics,
costs), the data, the model, the federated engine and the Gymnasium view. Presets are functions
(:func:`paper`, :func:`small`) that return configs; :func:`load_scenario` builds one from a preset
name, a dict / JSON / YAML file and ``key=value`` overrides, and rejects anything it does not know
with an error that names the field, the value and what is allowed.

Validation lives in each dataclass's ``__post_init__`` so that no invalid config can exist.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, cast, get_args, get_origin, get_type_hints, overload

import numpy as np

from hffm_env.arguments import error_line
from hffm_env.files import require_path

# (SEED_MAX re-exported: the range of config, bench and training seeds)
from hffm_env.seeding import SEED_MAX
from hffm_env.values import is_finite_real, shown

__all__ = [
    "ServerLattice",
    "DEFAULT_TARGET_FRACTION",
    "NEVER",
    "config_differences",
    "differences_line",
    "format_differences",
    "dict_differences",
    "ConfigError",
    "PlacementConfig",
    "LinkConfig",
    "BackhaulConfig",
    "ChannelConfig",
    "ComputeConfig",
    "DynamicsConfig",
    "CostConfig",
    "DataConfig",
    "ModelConfig",
    "FLConfig",
    "EnvConfig",
    "ScenarioConfig",
    "SCENARIOS",
    "paper",
    "small",
    "medium",
    "scenario_names",
    "get_scenario",
    "from_dict",
    "to_dict",
    "apply_overrides",
    "require_config",
    "parse_override",
    "resolve_scenario",
    "split_module_id",
    "module_id_of",
    "ACCURACY_KINDS",
    "FUSION",
    "task_module_ids",
    "load_config_file",
    "load_scenario",
    "MODULE_TYPES",
    "TASKS",
    "MIN_QUESTION_LENGTH",
    "IMAGE_TOKENS",
    "AUDIO_TOKENS",
    "REQUESTS_PER_TASK_ARRIVAL",
    "TARGET_REWARDS",
    "REWARD_SPLITS",
    "SEED_MAX",
    "FIDELITIES",
    "EPISODE_ENDS",
    "check_memory",
    "PRETRAINING",
    "REWARD_NAMES",
    "estimate_memory_bytes",
    "MAX_CONFIG_FILE_BYTES",
]

MODULE_TYPES: tuple[str, ...] = ("encoder", "prompt", "moe", "adapter", "head")
"""The five trainable module types of the M3T model, in the order used everywhere."""


def split_module_id(module_id: str) -> tuple[str, str]:
    """A module id ``"<type>/<name>"`` as ``(type, name)`` (``"encoder/image"`` ->
    ``("encoder", "image")``); an id without ``"/"`` is all type, with name ``""``."""
    module_type, _, name = module_id.partition("/")
    return module_type, name


FUSION = "fusion"
"""The name of the shared modules every device holds: ``moe/fusion`` and ``adapter/fusion``."""


def module_id_of(module_type: str, name: str) -> str:
    """A module's id, ``"<type>/<name>"`` (the inverse of :func:`split_module_id`): the name is
    an encoder's modality, a prompt's or head's task, or :data:`FUSION` for the MoE and the
    adapter."""
    return f"{module_type}/{name}"


def task_module_ids(task: str) -> tuple[str, str]:
    """The two modules a device needs to serve ``task``: its prompt and its head."""
    return module_id_of("prompt", task), module_id_of("head", task)


ACCURACY_KINDS: tuple[str, ...] = ("accuracy", "accuracy_local", "accuracy_held_out")
"""The accuracies a round measures, per task: on the global test set, on each device's own
test data, on the held-out cluster's (what info, saved benches and the surrogate carry)."""

MODALITIES: tuple[str, ...] = ("image", "audio", "text")
"""Modalities a device can sense."""

TASKS: tuple[str, ...] = ("vqa", "count", "scene")
"""Tasks a device can run (see :mod:`hffm_env.data` for their classes and chance levels)."""

MIN_QUESTION_LENGTH: int = 7
"""Tokens of the longest question template (:data:`hffm_env.data.scenes.QUESTION_TYPES`),
``<cls>`` included; ``data.question_length`` must be >= it."""

MIN_CELL_PX = 1.8
"""The narrowest placement cell (``data.image_size_px`` / :func:`grid_size`) a config may
give: :mod:`hffm_env.data.scenes` always paints the pixel holding an object's centre in its
colour (an object smaller than a pixel would cover no pixel centre and be counted unseen), and
from 1.8 px on that pixel lies inside the object's own cell, away from every other object's."""


def grid_size(max_objects: int) -> int:
    """Side of the scenes' placement grid: at least 3, and at least twice as many cells as
    objects so that environments' layouts have room to differ."""
    return max(3, math.ceil(math.sqrt(2 * max_objects)))


IMAGE_TOKENS: int = 16
"""Tokens per image: the image extractor pools its last feature map to a 4 x 4 grid
(:data:`hffm_env.models.extractors.IMAGE_GRID`)."""

AUDIO_TOKENS: int = 8
"""Tokens per audio clip."""

DEFAULT_TARGET_FRACTION: float = 0.9
"""Without a target accuracy, the benchmarks' energy to target is judged at this fraction of
the best policy's mean final accuracy."""

REQUESTS_PER_TASK_ARRIVAL: int = 2
"""Module requests a task arrival opens (the task's prompt and head): with
``fl.task_arrival_prob`` > 0, ``fl.max_pending_requests`` must leave room for them."""


LABEL_FAMILIES: tuple[str, ...] = ("scene", "count", "question")
"""Label families a cluster's data can be skewed over (``DataConfig.label_skew``)."""


REWARD_NAMES: tuple[str, ...] = ("accuracy-level", "accuracy-gain", "cost-to-target",
                                  "spend-to-target")
"""Rewards ``env.reward`` can name (implemented in :mod:`hffm_env.envs.reward`)."""
TARGET_REWARDS: tuple[str, ...] = ("cost-to-target", "spend-to-target")
"""Rewards that need ``env.target_accuracy``."""
REWARD_SPLITS: tuple[str, ...] = ("team", "cost-share")
"""How the multi-agent env splits the reward (:class:`hffm_env.envs.parallel.HFFMParallelEnv`):
every agent the env's reward, or each edge agent its cluster's share of the cost terms."""
SURROGATE_NOISE: tuple[str, ...] = ("none", "residuals")
"""What ``env.surrogate_noise`` can name (see :class:`EnvConfig`)."""


MAX_DISTANCE_M = 1e6
"""Largest distance (area side, radii, spacings) a scenario may use: 1,000 km."""

MAX_DEVICES = 100_000
"""Most devices (and edge servers) a scenario may have; memory is checked separately."""


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range. The message names the field."""


# --------------------------------------------------------------------------------------------
# validation helpers


def _label(owner: str, name: str) -> str:
    """The key a value was given under: ``owner.name``, or ``name`` at the top level."""
    return f"{owner}.{name}" if owner else name


def _is_optional(hint: Any) -> bool:
    """Whether ``hint`` is a union (``X | None``, ``Optional[X]``)."""
    origin = get_origin(hint)
    return origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>")


def _kind(value: Any, hint: Any) -> str | None:
    """What a field of type ``hint`` must be, when ``value`` is not of that kind; None when it
    is. Numbers are only told from what is no number at all: the range checks of each class
    judge them (and refuse ``True`` for a number), with the range in their message."""
    origin = get_origin(hint)
    if _is_optional(hint):
        if value is None and type(None) in get_args(hint):
            return None
        inner = next(a for a in get_args(hint) if a is not type(None))
        wanted = _kind(value, inner)
        return None if wanted is None else f"{wanted}, or null"
    if origin is tuple:
        item = get_args(hint)[0]
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or any(
                _kind(v, item) is not None for v in value):
            kind = _kind(object(), item) or "a value"  # an object() is never of a field's kind
            return f"a list of {kind.split(' ', 1)[1]}s"  # "a string"
        return None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return None if isinstance(value, hint) else (
            f"an instance of {hint.__name__} (dicts go through hffm_env.config.from_dict)")
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if hint in (int, float):
        return None if isinstance(value, numbers.Real) else (
            "an integer" if hint is int else "a number")
    return None


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _check_types(owner: str, config: Any) -> None:
    """Every field of the dataclass ``config`` of its declared kind: a config built in Python
    skips the coercion of :func:`from_dict`, and ``mobility="false"`` turned mobility on."""
    kind: type = type(config)
    for name, hint in _field_hints(kind).items():
        value = getattr(config, name)
        if hint is bool and getattr(getattr(value, "dtype", None), "kind", "") == "b" \
                and getattr(value, "shape", None) == ():  # numpy's booleans, as bools
            value = bool(value)
        elif float in (hint, *get_args(hint)) and is_finite_real(value):
            # numpy's too; 0, 0.0 and -0.0 alike (equal configs must share cache keys); an
            # integer too large for a float, NaN and inf are left to the range checks
            value = float(value) + 0.0
        elif int in (hint, *get_args(hint)) and type(value).__module__ == "numpy" \
                and isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        elif isinstance(value, os.PathLike) and _kind("", hint) is None:  # a path, as a str
            value = os.fspath(value)
        elif get_origin(hint) is tuple and hasattr(value, "tolist"):  # a numpy array
            value = tuple(value.tolist())
        elif get_origin(hint) is tuple and isinstance(value, (list, range, tuple)):
            # (a list would make the frozen config unhashable; numpy's scalars as Python's)
            value = tuple(cast(Any, v).item() if type(v).__module__ == "numpy"
                          and getattr(v, "ndim", 1) == 0 else v for v in value)
        object.__setattr__(config, name, value)  # (frozen: the same value, in plain types)
        wanted = _kind(value, hint)
        if wanted is not None:
            raise ConfigError(f"{_label(owner, name)} = {value!r}: must be {wanted}")


def _check_probability(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                and 0.0 <= value <= 1.0):
            raise ConfigError(f"{_label(owner, name)} = {value!r}: must be a probability in [0, 1]")


def _check_range(owner: str, low: float, high: float, **values: float) -> None:
    """Finite numbers in ``[low, high]``: the physically meaningful range of a quantity (beyond
    it, rates, gains or costs overflow to 0 or infinity)."""
    for name, value in values.items():
        # (is_finite_real: math.isfinite raised OverflowError on an integer of 400 digits)
        if not (isinstance(value, (int, float)) and is_finite_real(value)
                and low <= value <= high):
            raise ConfigError(f"{_label(owner, name)} = {shown(value)}: must be a number in "
                              f"[{low:g}, {high:g}]")


def _check_positive_at_most(owner: str, high: float, **values: float) -> None:
    """Finite numbers in ``(0, high]``."""
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and is_finite_real(value)
                and 0 < value <= high):
            raise ConfigError(f"{_label(owner, name)} = {shown(value)}: must be a number in "
                              f"(0, {high:g}]")


def _check_int_between(owner: str, low: int, high: int, **values: int) -> None:
    """Integers in ``[low, high]``; the upper bounds keep loops and allocations finite."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{_label(owner, name)} = {value!r}: must be an integer in "
                              f"[{low}, {high}]")


def _check_choice(owner: str, name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{_label(owner, name)} = {value!r}: must be one of {list(allowed)}")


def _check_subset(owner: str, name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not values:
        raise ConfigError(f"{_label(owner, name)} = {values!r}: must name at least one of "
                          f"{list(allowed)}")
    for value in values:
        if value not in allowed:
            raise ConfigError(f"{_label(owner, name)} contains {value!r}: allowed are "
                              f"{list(allowed)}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{_label(owner, name)} = {values!r}: names must not repeat")


# --------------------------------------------------------------------------------------------
# network


@dataclass(frozen=True)
class PlacementConfig:
    """Where the edge servers and devices are, and how devices are grouped into clusters.

    ``placement="clustered"`` follows the prototype: servers uniform with a minimum spacing, one
    cluster centre per server drawn in a disc around it, ``devices_per_cluster`` devices drawn in
    a disc around that centre; each device belongs to its server's cluster.
    ``placement="uniform"`` draws devices uniformly over the area and associates each one with
    its nearest server (clusters then have unequal sizes; ``devices_per_cluster`` is ignored).
    """

    placement: str = "clustered"
    area_side_m: float = 5000.0
    num_edge_servers: int = 10
    num_devices: int = 40
    devices_per_cluster: int = 4
    min_server_spacing_m: float = 500.0
    cluster_centre_radius_m: float = 1000.0
    device_radius_m: float = 500.0
    max_placement_attempts: int = 10_000

    def __post_init__(self) -> None:
        _check_types("placement", self)
        owner = "placement"
        _check_choice(owner, "placement", self.placement, ("clustered", "uniform"))
        _check_positive_at_most(owner, MAX_DISTANCE_M, area_side_m=self.area_side_m)
        _check_range(
            owner, 0.0, MAX_DISTANCE_M,
            min_server_spacing_m=self.min_server_spacing_m,
            cluster_centre_radius_m=self.cluster_centre_radius_m,
            device_radius_m=self.device_radius_m,
        )
        _check_int_between(owner, 1, MAX_DEVICES, num_edge_servers=self.num_edge_servers,
                           num_devices=self.num_devices,
                           devices_per_cluster=self.devices_per_cluster)
        _check_int_between(owner, 1, 10_000_000,
                           max_placement_attempts=self.max_placement_attempts)
        # (uniform placement ignores devices_per_cluster)
        if self.placement == "clustered" and self.devices_per_cluster > self.num_devices:
            raise ConfigError(
                f"{owner}.devices_per_cluster = {self.devices_per_cluster}: more devices per "
                f"cluster than devices (num_devices = {self.num_devices})"
            )
        if self.placement == "clustered":
            expected = self.num_edge_servers * self.devices_per_cluster
            if self.num_devices != expected:
                raise ConfigError(
                    f"{owner}.num_devices = {self.num_devices}: clustered placement needs "
                    f"num_edge_servers x devices_per_cluster = {self.num_edge_servers} x "
                    f"{self.devices_per_cluster} = {expected} devices"
                )
        elif self.num_devices < self.num_edge_servers:
            raise ConfigError(
                f"{owner}.num_devices = {self.num_devices}: fewer devices than edge servers "
                f"({self.num_edge_servers}) would leave clusters empty"
            )
        # A packing bound: discs of radius spacing/2 around each server, whose centres lie in the
        # square, must fit in the square grown by spacing/2. Denser than hexagonal packing is
        # impossible, so beyond this bound rejection sampling would loop forever.
        if self.num_edge_servers > 1 and self.min_server_spacing_m > 0:
            half = self.min_server_spacing_m / 2.0
            grown_area = (self.area_side_m + 2 * half) ** 2
            packed_area = self.num_edge_servers * 2 * math.sqrt(3) * half**2
            diagonal = self.area_side_m * math.sqrt(2)
            if self.min_server_spacing_m > diagonal:  # (no two points of the square are so
                # far apart; the bound below lets 2 servers through, and placement searched on
                # for max_placement_attempts: minutes)
                raise ConfigError(
                    f"{owner}.min_server_spacing_m = {self.min_server_spacing_m}: more than the "
                    f"area's diagonal ({diagonal:.0f} m for area_side_m = {self.area_side_m}), "
                    f"so no {self.num_edge_servers} edge servers fit; enlarge the area or "
                    "reduce the spacing")
            lattice = ServerLattice.densest(self.area_side_m, self.min_server_spacing_m)
            if packed_area > grown_area or (self.num_edge_servers > 2
                                            and self.num_edge_servers > lattice.capacity):
                # (beyond the lattice random placement jams too: accepted, such a config failed
                # at the reset of some seeds, mid-training; not a division: half**2
                # underflows to 0 at 1e-300)
                packed = int(grown_area / (2 * math.sqrt(3) * half**2))
                why = (f"at most about {packed} fit" if packed_area > grown_area else
                       f"a hexagonal or square lattice at that spacing holds {lattice.capacity}"
                       ", and random placement fails on some seeds beyond it")
                raise ConfigError(
                    f"{owner}.area_side_m = {self.area_side_m}: too small to place "
                    f"{self.num_edge_servers} edge servers at least {self.min_server_spacing_m} m "
                    f"apart ({why}); enlarge the area, reduce num_edge_servers or "
                    "min_server_spacing_m"
                )


def _steps_in(length_m: float, step_m: float) -> int:
    """Whole steps in a length, at most 1e15 (a spacing of 5e-324 m makes it infinite)."""
    return int(min(length_m // step_m, 1e15))


@dataclass(frozen=True)
class ServerLattice:
    """Sites at least ``spacing_m`` apart in rows across a square of side ``side_m``: a
    hexagonal lattice (odd rows shifted by half a spacing) or a square one. Server placement
    falls back to it when random placement jams, so a layout the config accepts always places
    (:func:`hffm_env.sim.topology.place_network`); the config refuses more servers than it
    holds (two servers: up to the square's diagonal, at opposite corners)."""

    side_m: float
    spacing_m: float
    row_step_m: float
    odd_offset_m: float

    @classmethod
    def densest(cls, side_m: float, spacing_m: float) -> ServerLattice:
        """The lattice of the two that holds more sites (the hexagonal one on a tie)."""
        # (a hair wider than the spacing: sites must stay at least spacing_m apart in floats)
        step = spacing_m * (1 + 1e-9)
        hexagonal = cls(side_m, step, step * math.sqrt(3) / 2, step / 2)
        square = cls(side_m, step, step, 0.0)
        return max((hexagonal, square), key=lambda lattice: lattice.capacity)

    def _sites_in_row(self, row: int) -> int:
        start = self.odd_offset_m if row % 2 else 0.0
        return _steps_in(self.side_m - start, self.spacing_m) + 1 if start <= self.side_m else 0

    @property
    def rows(self) -> int:
        """How many rows of sites fit, one every :attr:`row_step_m` from the square's edge."""
        return _steps_in(self.side_m, self.row_step_m) + 1

    @property
    def capacity(self) -> int:
        """How many sites fit (counted, not listed: a tiny spacing holds astronomically many)."""
        rows = self.rows
        return (rows + 1) // 2 * self._sites_in_row(0) + rows // 2 * self._sites_in_row(1)

    def first_sites(self, count: int) -> np.ndarray:
        """The first ``count`` sites, row by row from the corner at the origin (``count`` x 2,
        metres); at most :attr:`capacity`."""
        if count > self.capacity:
            raise ValueError(f"count = {count}: the lattice holds {self.capacity} sites")
        sites: list[tuple[float, float]] = []
        row = 0
        while len(sites) < count:
            start = self.odd_offset_m if row % 2 else 0.0
            for k in range(min(self._sites_in_row(row), count - len(sites))):
                sites.append((start + k * self.spacing_m, row * self.row_step_m))
            row += 1
        return np.asarray(sites, dtype=float).reshape(count, 2)


@dataclass(frozen=True)
class LinkConfig:
    """A wireless link kind: its bandwidth, the transmit power used to compute the rate, and the
    power charged for energy (the prototype computes rates and energy with different powers)."""

    bandwidth_hz: float
    tx_power_w: float
    energy_power_w: float

    def __post_init__(self) -> None:
        _check_types("channel.link", self)
        # the owner label is replaced by the key (channel.uplink, ...) when built from a dict
        # (below 1 Hz the noise power N0 * B underflows to 0 and the rate to infinity)
        _check_range("channel.link", 1.0, 1e12, bandwidth_hz=self.bandwidth_hz)
        _check_positive_at_most("channel.link", 1e4, tx_power_w=self.tx_power_w,
                                energy_power_w=self.energy_power_w)


@dataclass(frozen=True)
class BackhaulConfig:
    """A wired link with a fixed delay and rate (edge -> cloud, and device -> cloud in the star
    topology, as in the prototype): latency = ``latency_s + bits / rate_bps``."""

    latency_s: float = 0.1
    rate_bps: float = 4e6
    energy_power_w: float = 0.8

    def __post_init__(self) -> None:
        _check_types("channel.backhaul", self)
        _check_range("channel.backhaul", 0.0, 1e4, latency_s=self.latency_s)
        _check_positive_at_most("channel.backhaul", 1e15, rate_bps=self.rate_bps)
        _check_positive_at_most("channel.backhaul", 1e4, energy_power_w=self.energy_power_w)


@dataclass(frozen=True)
class ChannelConfig:
    """Path loss, fading, noise and the link kinds.

    Path gain ``g = 10^(path_loss_db_at_ref/10) * (d / ref_distance_m)^-path_loss_exponent``,
    times ``|h|^2`` with Rayleigh fading ``h ~ CN(0, 2)`` (unit variance per component, as the
    prototype) when ``rayleigh_fading``. Noise power is ``N0 * B``. Rate is
    ``B log2(1 + P g / (N0 B))``.

    ``prototype_noise_quirk`` mirrors the M3T-FFM prototype, which multiplies N0 (mW/Hz) by the
    bandwidth in kHz, so its noise power is 1/1000 of the physical value. It is on only in the
    ``paper`` scenario, to reproduce the paper's numbers; leave it off for physics.

    Outage (``outage_snr_db`` set): an uplink or D2D transmission attempt fails when its
    instantaneous SNR (a fresh Rayleigh draw per attempt) is below ``outage_snr_db``; a failed
    attempt is repeated, up to ``max_transmissions`` attempts in all, each costing the full
    transmission time and energy; after the last failed attempt the exchange fails for the
    round (the module stays stale). ``None`` (default): links never fail.

    ``model`` names the class that computes all of this, from
    ``hffm_env.sim.channel.CHANNEL_MODELS``: ``"shannon"`` (default) is
    :class:`~hffm_env.sim.channel.Channel`; a subclass registered with
    ``hffm_env.sim.channel.register_channel_model`` (in a module that env subprocesses import
    too) is chosen by its name.
    """

    path_loss_db_at_ref: float = -30.0
    ref_distance_m: float = 1.0
    path_loss_exponent: float = 3.0
    noise_density_dbm_per_hz: float = -174.0
    rayleigh_fading: bool = True
    prototype_noise_quirk: bool = False
    min_distance_m: float = 1.0
    uplink: LinkConfig = field(default_factory=lambda: LinkConfig(1e6, 1.0, 0.6))
    downlink: LinkConfig = field(default_factory=lambda: LinkConfig(1e6, 10.0, 10.0))
    d2d: LinkConfig = field(default_factory=lambda: LinkConfig(8e6, 0.2, 0.6))
    backhaul: BackhaulConfig = field(default_factory=BackhaulConfig)
    d2d_radius_m: float = 30.0
    outage_snr_db: float | None = None
    max_transmissions: int = 4
    model: str = "shannon"

    def __post_init__(self) -> None:
        _check_types("channel", self)
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"channel.model = {self.model!r}: must be the name of a channel "
                              "model (hffm_env.sim.channel.CHANNEL_MODELS)")
        # free space is 2, dense urban and indoor up to about 6
        _check_range("channel", 1.0, 8.0, path_loss_exponent=self.path_loss_exponent)
        _check_range("channel", -300.0, 0.0, path_loss_db_at_ref=self.path_loss_db_at_ref)
        _check_range("channel", -300.0, 0.0,
                     noise_density_dbm_per_hz=self.noise_density_dbm_per_hz)
        # (from a millimetre: a shorter reference underflows the path gain over km to 0)
        _check_range("channel", 1e-3, 1e4, ref_distance_m=self.ref_distance_m,
                     min_distance_m=self.min_distance_m)
        _check_positive_at_most("channel", MAX_DISTANCE_M, d2d_radius_m=self.d2d_radius_m)
        _check_int_between("channel", 1, 100, max_transmissions=self.max_transmissions)
        if self.outage_snr_db is not None and not (
            isinstance(self.outage_snr_db, (int, float))
            and is_finite_real(self.outage_snr_db)
            and -300.0 <= self.outage_snr_db <= 300.0
        ):
            raise ConfigError(
                f"channel.outage_snr_db = {self.outage_snr_db!r}: must be a number of dB in "
                "[-300, 300] or null (no outage)"
            )


@dataclass(frozen=True)
class ComputeConfig:
    """Local computation cost: latency ``cycles_per_sample * samples / f`` and energy
    ``kappa * f^2 * cycles`` per device, with each device's CPU frequency drawn uniformly in
    ``[cpu_freq_hz_min, cpu_freq_hz_max]`` per scenario instance."""

    enabled: bool = True
    cycles_per_sample: float = 2e7
    cpu_freq_hz_min: float = 0.5e9
    cpu_freq_hz_max: float = 2.0e9
    kappa: float = 1e-28  # effective switched capacitance, J per cycle per Hz^2

    def __post_init__(self) -> None:
        _check_types("compute", self)
        _check_positive_at_most("compute", 1e15, cycles_per_sample=self.cycles_per_sample)
        _check_positive_at_most("compute", 1e12, cpu_freq_hz_min=self.cpu_freq_hz_min,
                                cpu_freq_hz_max=self.cpu_freq_hz_max)
        _check_positive_at_most("compute", 1e-20, kappa=self.kappa)
        if self.cpu_freq_hz_min > self.cpu_freq_hz_max:
            raise ConfigError(
                f"compute.cpu_freq_hz_min = {self.cpu_freq_hz_min}: must not exceed "
                f"compute.cpu_freq_hz_max = {self.cpu_freq_hz_max}"
            )


@dataclass(frozen=True)
class DynamicsConfig:
    """Optional dynamics, all seeded: random-waypoint mobility (devices keep their cluster;
    rates and D2D graphs, hence the env's candidate partners, follow them) and per-round device
    dropout."""

    mobility: bool = False
    speed_mps_min: float = 0.5
    speed_mps_max: float = 2.0
    round_duration_s: float = 10.0
    dropout_prob: float = 0.0

    def __post_init__(self) -> None:
        _check_types("dynamics", self)
        _check_range("dynamics", 0.0, 1e3, speed_mps_min=self.speed_mps_min,
                     speed_mps_max=self.speed_mps_max)
        _check_positive_at_most("dynamics", 1e6, round_duration_s=self.round_duration_s)
        _check_probability("dynamics", dropout_prob=self.dropout_prob)
        if self.speed_mps_min > self.speed_mps_max:
            raise ConfigError(
                f"dynamics.speed_mps_min = {self.speed_mps_min}: must not exceed "
                f"dynamics.speed_mps_max = {self.speed_mps_max}"
            )


@dataclass(frozen=True)
class CostConfig:
    """What the cost accountant charges.

    ``model_payload_bits``: when set, module sizes are rescaled so that the whole trainable model
    weighs this many bits in float32 (the prototype ships a 6 MB = 48,000 kbit payload per
    exchange; a lower ``model.precision_bits`` sends it in fewer); when ``None`` the module
    inventory's own sizes are used.
    """

    charge_downlink: bool = True
    model_payload_bits: float | None = None

    def __post_init__(self) -> None:
        _check_types("cost", self)
        if self.model_payload_bits is not None:
            _check_positive_at_most("cost", 1e15, model_payload_bits=self.model_payload_bits)


# --------------------------------------------------------------------------------------------
# data, model, engine, env


@dataclass(frozen=True)
class DataConfig:
    """Procedural multi-modal scenes and how they are split over devices.

    Each device senses a subset of ``modalities`` (each of image/audio is missing with its
    ``p_missing_*`` probability, text always present) and runs the tasks of ``tasks`` that its
    modalities can serve (each kept with ``task_keep_prob``, at least one). Labels are skewed by
    a Dirichlet(``dirichlet_alpha``) split shared within a cluster, for every label family named
    in ``label_skew`` (``scene``: the environment; ``count``: the number of objects;
    ``question``: the VQA question template, and so the answer type). Availability can be
    correlated within a cluster: with ``cluster_missing_sensor_prob`` a whole cluster lacks one
    sensor (image or audio, its devices then never have it), and each task is dropped by a whole
    cluster with ``cluster_task_drop_prob`` (every task stays run by at least one cluster,
    and by at least one of its devices).
    Sample counts per device are log-normal around ``samples_per_device`` with spread
    ``sample_count_sigma``, at least ``min_samples_per_device`` (>= 2: a training and a test
    sample). ``held_out_samples`` scenes are drawn from one extra cluster's skew that no device
    trains on (accuracy on unseen data; 0 turns it off). ``question_length`` (tokens) is at least
    :data:`MIN_QUESTION_LENGTH`, the longest question.
    """

    modalities: tuple[str, ...] = MODALITIES
    tasks: tuple[str, ...] = TASKS
    image_size_px: int = 32
    audio_length: int = 256  # samples per audio clip
    question_length: int = 8  # tokens per question, <cls> included
    max_objects: int = 3
    noise_std: float = 0.1
    samples_per_device: int = 200
    min_samples_per_device: int = 40
    sample_count_sigma: float = 0.4
    test_fraction: float = 0.25
    dirichlet_alpha: float = 0.5
    p_missing_image: float = 0.25
    p_missing_audio: float = 0.25
    task_keep_prob: float = 0.8
    label_skew: tuple[str, ...] = ("scene", "count", "question")
    cluster_missing_sensor_prob: float = 0.0
    cluster_task_drop_prob: float = 0.0
    pretrain_samples: int = 6000
    global_test_samples: int = 1500
    held_out_samples: int = 600

    def __post_init__(self) -> None:
        _check_types("data", self)
        _check_subset("data", "modalities", tuple(self.modalities), MODALITIES)
        _check_subset("data", "tasks", tuple(self.tasks), TASKS)
        # (an image or a clip of one sample has no structure for the extractors to read)
        _check_int_between("data", 2, 256, image_size_px=self.image_size_px)
        _check_int_between("data", 1, 256, max_objects=self.max_objects)
        if self.max_objects == 1 and "count" in self.tasks:
            # (count's classes are 1..max_objects objects: one class scored 1.0 untrained)
            raise ConfigError("data.max_objects = 1: the count task needs at least 2 (its "
                              "classes are 1..max_objects objects); or drop count from "
                              "data.tasks")
        if "image" in self.modalities:
            g = grid_size(self.max_objects)
            if self.image_size_px / g < MIN_CELL_PX:  # objects would cover no pixel
                raise ConfigError(
                    f"data.image_size_px = {self.image_size_px}: too small for data.max_objects "
                    f"= {self.max_objects}, whose {g} x {g} placement grid leaves "
                    f"{self.image_size_px / g:.2f} px a cell (at least {MIN_CELL_PX}, so that "
                    f"every object counted is seen): image_size_px >= "
                    f"{math.ceil(MIN_CELL_PX * g)}, or fewer objects")
        _check_int_between("data", MIN_QUESTION_LENGTH, 256,
                           question_length=self.question_length)
        _check_int_between("data", 2, 16_384, audio_length=self.audio_length)
        _check_int_between(
            "data", 1, 1_000_000, samples_per_device=self.samples_per_device,
            pretrain_samples=self.pretrain_samples, global_test_samples=self.global_test_samples,
        )
        # a training and a test sample on every device
        _check_int_between("data", 2, 1_000_000,
                           min_samples_per_device=self.min_samples_per_device)
        _check_int_between("data", 0, 1_000_000, held_out_samples=self.held_out_samples)
        if self.label_skew:
            _check_subset("data", "label_skew", tuple(self.label_skew), LABEL_FAMILIES)
        _check_probability(
            "data", cluster_missing_sensor_prob=self.cluster_missing_sensor_prob,
            cluster_task_drop_prob=self.cluster_task_drop_prob,
        )
        _check_range("data", 0.0, 100.0, noise_std=self.noise_std)
        _check_range("data", 0.0, 5.0, sample_count_sigma=self.sample_count_sigma)
        _check_positive_at_most("data", 1e6, dirichlet_alpha=self.dirichlet_alpha)
        _check_probability(
            "data", p_missing_image=self.p_missing_image, p_missing_audio=self.p_missing_audio,
            task_keep_prob=self.task_keep_prob,
        )
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction = {self.test_fraction!r}: must be in (0, 1)")


@dataclass(frozen=True)
class ModelConfig:
    """The M3T model: frozen per-modality extractors and fusion backbone (pre-trained once and
    cached), and the five trainable module types (encoder, prompt, moe, adapter, head).

    ``precision_bits`` (8, 16 or 32) is how module copies travel to and from devices: the
    transfers are priced at it and what arrives is rounded to it (float16; int8 with a float32
    scale per tensor, charged too), so a cheaper wire costs accuracy; servers and heads average
    and forward in float32 (:func:`hffm_env.models.inventory.on_the_wire`).

    ``pretrained_path`` loads a local Hugging Face checkpoint of the fusion backbone instead of
    pre-training one; nothing is ever fetched from a hub. Its sizes (hidden, layers, heads,
    intermediate) then replace the four here. A relative path is taken from the current folder
    when the config is made, and kept absolute.
    """

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    feature_dim: int = 32
    num_prompt_tokens: int = 2
    num_experts: int = 4
    expert_hidden: int = 16
    moe_top_k: int = 2
    moe_balance_weight: float = 0.01
    lora_rank: int = 4
    lora_alpha: float = 8.0
    precision_bits: int = 32
    pretrain_steps: int = 400
    pretrain_batch_size: int = 64
    pretrain_lr: float = 2e-3
    pretrained_path: str | None = None

    def __post_init__(self) -> None:
        _check_types("model", self)
        if self.pretrained_path is not None:
            if not self.pretrained_path.strip():
                raise ConfigError(f"model.pretrained_path = {self.pretrained_path!r}: must name "
                                  "a checkpoint folder, or be null (None) for a backbone "
                                  "pre-trained here")
            # resolved once, here: a relative path named another folder after a chdir, and a
            # config saved with a run (agent.json) is read again from other folders
            object.__setattr__(self, "pretrained_path",
                               str(Path(self.pretrained_path).expanduser().resolve()))
        _check_int_between(
            "model", 1, 4096, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, feature_dim=self.feature_dim,
            expert_hidden=self.expert_hidden, pretrain_batch_size=self.pretrain_batch_size,
        )
        _check_int_between(
            "model", 1, 256, num_layers=self.num_layers, num_heads=self.num_heads,
            num_prompt_tokens=self.num_prompt_tokens, num_experts=self.num_experts,
            moe_top_k=self.moe_top_k, lora_rank=self.lora_rank,
        )
        _check_int_between("model", 0, 10_000_000, pretrain_steps=self.pretrain_steps)
        _check_choice("model", "precision_bits", self.precision_bits, (8, 16, 32))
        _check_positive_at_most("model", 1e4, lora_alpha=self.lora_alpha)
        _check_positive_at_most("model", 10.0, pretrain_lr=self.pretrain_lr)
        _check_range("model", 0.0, 1e3, moe_balance_weight=self.moe_balance_weight)
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size = {self.hidden_size}: must be divisible by "
                f"model.num_heads = {self.num_heads}"
            )
        if self.moe_top_k > self.num_experts:
            raise ConfigError(
                f"model.moe_top_k = {self.moe_top_k}: must not exceed "
                f"model.num_experts = {self.num_experts}"
            )


@dataclass(frozen=True)
class FLConfig:
    """The federated engine: local training per round and module arrivals.

    ``optimizer_state="reset"`` clears each device's AdamW moments every round (devices are
    stateless between rounds, as in FedAvg); ``"persist"`` keeps them.
    ``task_arrival_prob`` is the per-round probability that some device gains a new task whose
    prompt and head it must receive by module relaying.
    ``eval_samples_per_device``: each device's model is scored on its own fixed slice of the
    global test set, this long; the slices are taken in turn from the set (wrapping), so every
    round is scored on the same samples (accuracy differences between rounds carry no sampling
    noise), and together the devices cover the set when ``num_devices *
    eval_samples_per_device`` reaches its size (``small``'s 12 devices score 576 of its 900
    scenes, and a task is scored on the slices of the devices that run it: not exactly
    class-balanced). ``eval_held_out_samples_per_device`` does the same on the held-out
    cluster's scenes (``data.held_out_samples``).

    The evaluation budget: the global accuracy is measured every round (the observation and
    every reward read it); the local and held-out accuracy only every
    ``eval_local_every_rounds`` rounds, on an episode's last round and at reset (every round
    when ``env.accuracy_local_mix > 0``, since the reward then reads it). Rounds that did not
    measure them say so in ``info["measured"]``.
    """

    local_steps: int = 2
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0
    optimizer_state: str = "reset"
    task_arrival_prob: float = 0.0
    max_pending_requests: int = 4
    eval_samples_per_device: int = 48
    eval_held_out_samples_per_device: int = 32
    eval_local_every_rounds: int = 4

    def __post_init__(self) -> None:
        _check_types("fl", self)
        _check_int_between("fl", 1, 10_000, local_steps=self.local_steps,
                           batch_size=self.batch_size)
        _check_int_between("fl", 1, 1_000, max_pending_requests=self.max_pending_requests)
        _check_int_between("fl", 1, 1_000_000,
                           eval_local_every_rounds=self.eval_local_every_rounds)
        _check_int_between("fl", 1, 1_000_000,
                           eval_samples_per_device=self.eval_samples_per_device,
                           eval_held_out_samples_per_device=(
                               self.eval_held_out_samples_per_device))
        _check_positive_at_most("fl", 10.0, lr=self.lr)
        _check_range("fl", 0.0, 10.0, weight_decay=self.weight_decay)
        _check_choice("fl", "optimizer_state", self.optimizer_state, ("reset", "persist"))
        _check_probability("fl", task_arrival_prob=self.task_arrival_prob)
        if self.task_arrival_prob > 0 and self.max_pending_requests < REQUESTS_PER_TASK_ARRIVAL:
            raise ConfigError(
                f"fl.max_pending_requests = {self.max_pending_requests}: must be >= "
                f"{REQUESTS_PER_TASK_ARRIVAL} when fl.task_arrival_prob > 0 (an arrival "
                "requests the task's prompt and head; with fewer no task ever arrives)")


NEVER = 0
"""A period of 0 in ``env.period_menu``: that tier is never due."""


MAX_EPISODE_ROUNDS = 1_000_000
"""The longest episode ``env.episode_rounds`` allows (and a saved surrogate's horizon)."""


@dataclass(frozen=True)
class EnvConfig:
    """The Gymnasium view: episode length, action menus, reward weights and budget.

    A period of 0 (:data:`NEVER`) in ``period_menu`` means "never". ``reward`` names the reward
    (:mod:`hffm_env.envs.reward`: ``accuracy-level``, ``accuracy-gain``, ``cost-to-target`` or
    ``spend-to-target``; the last two need ``target_accuracy``); its costs are normalised so
    that ``never`` costs 0 and ``star`` costs 1 per round (``spend-to-target`` charges the
    rounds until the target as a share of ``star``, computation included).
    ``accuracy_local_mix`` mixes the local (personalised) accuracy into the accuracy term:
    0 = global only (default), 1 = local only.
    ``surrogate_noise`` (surrogate fidelity only): ``"none"`` plays the surrogate's mean
    prediction; ``"residuals"`` adds, each episode, the out-of-fold residuals of one recorded
    real episode to the global accuracy per task, drawn with the reset seed
    (:meth:`hffm_env.fl.surrogate.AccuracySurrogate.residual_episode`), so that a learner sees
    the round-to-round noise real training has.
    ``observe_target`` adds ``target/reached`` and ``target/gap`` to the observation
    (:mod:`hffm_env.envs.observation`; needs ``target_accuracy``): the target rewards charge
    costs only until the target is first reached, and the accuracy often falls back below it
    after a cloud round, so without these entries the reward depends on a past the agent cannot
    see. Off by default, so that agents trained without them keep their observation shape.
    """

    episode_rounds: int = 16
    energy_budget_j: float | None = None
    period_menu: tuple[int, ...] = (1, 2, 4, 8, 0)
    d2d_partner_k: int = 3
    reward: str = "accuracy-level"
    accuracy_weight: float = 1.0
    latency_weight: float = 0.01
    energy_weight: float = 0.15
    target_accuracy: float | None = None
    target_miss_penalty: float = 1.0
    accuracy_local_mix: float = 0.0
    surrogate_noise: str = "none"
    observe_target: bool = False

    def __post_init__(self) -> None:
        _check_types("env", self)
        _check_int_between("env", 1, MAX_EPISODE_ROUNDS, episode_rounds=self.episode_rounds)
        _check_choice("env", "surrogate_noise", self.surrogate_noise, SURROGATE_NOISE)
        _check_int_between("env", 1, 64, d2d_partner_k=self.d2d_partner_k)
        if self.energy_budget_j is not None:
            _check_positive_at_most("env", 1e15, energy_budget_j=self.energy_budget_j)
        if not self.period_menu or len(self.period_menu) > 64 or any(
            isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 1_000_000
            for p in self.period_menu
        ):
            raise ConfigError(
                f"env.period_menu = {self.period_menu!r}: must be a list of 1 to 64 integers "
                "in [0, 1000000] (0 means never)"
            )
        repeated = sorted({p for p in self.period_menu if self.period_menu.count(p) > 1})
        if repeated:  # two action values for one period: a policy would learn them twice
            raise ConfigError(f"env.period_menu = {list(self.period_menu)!r}: repeats "
                              f"{repeated}; each period may appear once")
        # bounded, so that no weight can turn a finite cost into an infinite reward
        _check_range("env", 0.0, 1e6, accuracy_weight=self.accuracy_weight,
                     latency_weight=self.latency_weight, energy_weight=self.energy_weight)
        _check_probability("env", accuracy_local_mix=self.accuracy_local_mix)
        _check_choice("env", "reward", self.reward, REWARD_NAMES)
        _check_range("env", 0.0, 1e6, target_miss_penalty=self.target_miss_penalty)
        if self.target_accuracy is not None:
            _check_probability("env", target_accuracy=self.target_accuracy)
        elif self.reward in TARGET_REWARDS:
            raise ConfigError(
                f"env.target_accuracy = None: the {self.reward} reward needs a target accuracy "
                "in [0, 1], e.g. env.target_accuracy=0.4"
            )
        if self.observe_target and self.target_accuracy is None:
            raise ConfigError(
                "env.observe_target = True: needs env.target_accuracy (a value in [0, 1]) to "
                "observe the distance to; set one or env.observe_target=false"
            )


@dataclass(frozen=True)
class ScenarioConfig:
    """One complete scenario. ``seed`` fixes what the env is built with: the data split, the
    modules' initial values and the first layout (clusters, hence the action's sizes). Each
    episode's own draws (placement, speeds, channels) come from the seed given to
    ``reset(seed=...)``; an unseeded first ``reset()`` draws fresh entropy, as Gymnasium's
    envs do."""

    name: str = "custom"
    seed: int = 0
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fl: FLConfig = field(default_factory=FLConfig)
    env: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        _check_types("", self)  # the name, and each section an instance of its class
        _check_int_between("", 0, SEED_MAX, seed=self.seed)


# --------------------------------------------------------------------------------------------
# presets


def paper() -> ScenarioConfig:
    """The M3T-FFM prototype's network (arXiv 2509.03695): 10 edge servers, 40 devices in
    clusters of 4 over 5 km x 5 km, its link parameters and 6 MB payload, its noise quirk, no
    computation or downlink charges (the prototype charged neither), and its homogeneous
    devices with a Dirichlet(0.1) label split per cluster.

    Not the prototype's learning setup (ViLT with bottleneck adapters, two VQA data sets,
    lr 1e-4, 50 rounds): the model, data and training are this package's (docs/RESULTS.md,
    "the prototype's network"), so accuracies are not comparable with the paper's."""
    return ScenarioConfig(
        name="paper",
        placement=PlacementConfig(),
        channel=ChannelConfig(prototype_noise_quirk=True),
        compute=ComputeConfig(enabled=False),
        dynamics=DynamicsConfig(),
        cost=CostConfig(charge_downlink=False, model_payload_bits=48_000e3),
        # the prototype's devices are homogeneous (every modality, every task, the whole
        # model); only the labels differ, by a Dirichlet(0.1) split per cluster
        data=DataConfig(p_missing_image=0.0, p_missing_audio=0.0, task_keep_prob=1.0,
                        dirichlet_alpha=0.1, samples_per_device=160, pretrain_samples=4000,
                        global_test_samples=1500),
        # 40 slices of 48 cover the 1,500 global test scenes; a fifth of small's per-device
        # evaluation keeps a step of 40 devices affordable
        fl=FLConfig(local_steps=4, lr=1e-2, eval_samples_per_device=48),
    )


def small() -> ScenarioConfig:
    """A fast scenario for tests and demos: 12 devices in 4 clusters of 3 around edge servers in
    1 km x 1 km, physically correct noise, computation and downlink charged, and a small data
    budget.

    Four clusters, not three: with a Dirichlet(0.1) label split per cluster three clusters left
    hierarchical schedules only about 7 points above edge-only (the trade-off targets ask for
    8, with hffm-e8 clearly between); four meet them (docs/RESULTS.md, "Why four clusters").
    ``placement.num_edge_servers=3 placement.devices_per_cluster=4`` restores the earlier
    layout, on which the committed PPO agents were trained."""
    return ScenarioConfig(
        name="small",
        placement=PlacementConfig(
            area_side_m=1000.0,
            num_edge_servers=4,
            num_devices=12,
            devices_per_cluster=3,
            min_server_spacing_m=300.0,
            cluster_centre_radius_m=150.0,
            device_radius_m=40.0,
        ),
        channel=ChannelConfig(),
        data=DataConfig(samples_per_device=160, pretrain_samples=4000, global_test_samples=900,
                        dirichlet_alpha=0.1),
        fl=FLConfig(local_steps=4, lr=1e-2),
    )


def medium() -> ScenarioConfig:
    """A larger network for scaling studies: 100 devices around 10 edge servers, dropout and
    mobility on. Meant for ``fidelity="cost"`` or patient training runs."""
    return ScenarioConfig(
        name="medium",
        placement=PlacementConfig(
            area_side_m=3000.0,
            num_edge_servers=10,
            num_devices=100,
            devices_per_cluster=10,
            min_server_spacing_m=400.0,
            cluster_centre_radius_m=300.0,
            device_radius_m=60.0,
        ),
        dynamics=DynamicsConfig(mobility=True, dropout_prob=0.05),
        data=DataConfig(dirichlet_alpha=0.1, cluster_missing_sensor_prob=0.2,
                        cluster_task_drop_prob=0.2, pretrain_samples=4000),
        fl=FLConfig(local_steps=4, lr=1e-2, task_arrival_prob=0.1),
    )


SCENARIOS: dict[str, Callable[[], ScenarioConfig]] = {
    "paper": paper,
    "small": small,
    "medium": medium,
}
"""Preset scenarios by name."""


def scenario_names() -> list[str]:
    """The names of the preset scenarios."""
    return list(SCENARIOS)


def get_scenario(name: str) -> ScenarioConfig:
    """The preset scenario called ``name``; unknown names raise :class:`ConfigError` listing the
    known ones."""
    if not isinstance(name, str) or name not in SCENARIOS:
        looks_like_file = isinstance(name, Path) or isinstance(name, str) and (
            name.endswith((".json", ".yaml", ".yml")) or "/" in name or os.sep in name)
        hint = ("; a config file is given as config_file= (the commands' --config)"
                if looks_like_file else "")
        raise ConfigError(
            f"scenario = {shown(name)}: unknown; known scenarios are {scenario_names()}{hint}"
        )
    return SCENARIOS[name]()


# --------------------------------------------------------------------------------------------
# memory


def estimate_memory_bytes(config: ScenarioConfig, fidelity: str = "train",
                          trainable_parameters: int | None = None) -> dict[str, float]:
    """A rough estimate (within a factor of about 2 for the presets) of the memory an env of
    ``config`` needs, by part: the fixed cost of the libraries; the network's per-pair state
    (every device pair inside a cluster has a D2D channel, and the pairs within
    ``channel.d2d_radius_m`` are edges of a networkx graph); the indices of the data split;
    in ``train`` fidelity only (the others draw no scene) the scenes of every device and
    of the test sets, their frozen features and the batched training and evaluation work per
    device; the model's backbone; and, given its ``trainable_parameters`` (known once the
    model is built),
    every device's copy of the trainable modules. With ``fidelity=``:data:`PRETRAINING`, the
    libraries, the pretext scenes and the model with its gradients and AdamW's moments only.
    Used to refuse a config the machine cannot hold before it is allocated."""
    data, model, fl, placement = config.data, config.model, config.fl, config.placement
    if fidelity == PRETRAINING:  # the model and its pretext scenes only: no network, no split
        raw = 4.0 * (3 * data.image_size_px**2 + data.audio_length + data.question_length)
        parts = {"libraries": 400e6, "pre-training scenes": data.pretrain_samples * raw,
                 "model": _backbone_parameters(model) * 4.0 * 4.0}  # (+ grads and moments)
        parts["total"] = sum(parts.values())
        return parts
    devices = placement.num_devices
    # D2D pairs, and the share of them in radio range: two points uniform in a disc of radius
    # R are within r of each other with probability about (r / R)^2 (exact for small r/R);
    # "uniform" placement's clusters are unequal, taken here at their mean size and as discs
    # of their mean area
    per_cluster = devices / placement.num_edge_servers
    pairs = placement.num_edge_servers * per_cluster * (per_cluster - 1) / 2
    spread_m = (placement.device_radius_m if placement.placement == "clustered"
                else placement.area_side_m / math.sqrt(math.pi * placement.num_edge_servers))
    radius_m = config.channel.d2d_radius_m
    in_range = 1.0 if spread_m <= radius_m else (radius_m / spread_m) ** 2  # (spread may be 0)
    # bytes per pair (channel draws, rates, relay tables) and per graph edge (networkx's
    # adjacency dicts, both ways): measured on one cluster of 1,000 and of 2,000 devices
    # (a device's count is drawn around samples_per_device and floored at the minimum)
    per_device = max(data.samples_per_device * math.exp(data.sample_count_sigma**2 / 2),
                     data.min_samples_per_device)
    samples = devices * per_device + data.global_test_samples + data.held_out_samples
    parts = {"libraries": 400e6,
             "network": pairs * 250.0 + (pairs * in_range + devices) * 800.0,
             # the split's indices (owner, permutation, train/test), drawn in every fidelity
             "sample indices": devices * per_device * 24.0}
    if fidelity == "train":
        raw = 4.0 * (3 * data.image_size_px**2 + data.audio_length + data.question_length)
        tokens = (IMAGE_TOKENS + AUDIO_TOKENS + data.question_length
                  + len(data.tasks) * model.num_prompt_tokens)
        parts["scenes"] = samples * raw
        parts["features"] = samples * tokens * model.feature_dim * 4.0
        parts["pre-training scenes"] = data.pretrain_samples * raw  # on a first build only
        hidden, layers, intermediate = _backbone_sizes(model)
        width = (16 * hidden + 2 * intermediate) * layers + model.num_experts * model.expert_hidden
        batch = max(fl.batch_size, min(fl.eval_samples_per_device, 64))
        parts["training and evaluation"] = devices * batch * tokens * width * 4.0
    # the model's backbone (attention and MLP weights of each layer), built in every fidelity
    # (the modules' sizes come from it); pre-training adds its gradients and AdamW's moments
    parts["model"] = _backbone_parameters(model) * 4.0 * (4.0 if fidelity == "train" else 1.0)
    if trainable_parameters is not None:
        # float32 values of every module for every device, and a round's snapshot of them
        # (1.5 copies at the peak: measured 147 kB a device for small's 28k parameters, on
        # 1,000 and 4,000 devices); real training adds the gradients and AdamW's two moments
        copies = 4.5 if fidelity == "train" else 1.5
        parts["module copies"] = devices * trainable_parameters * 4.0 * copies
    parts["total"] = sum(parts.values())
    return parts


def _backbone_parameters(model: ModelConfig) -> int:
    """The backbone's attention and MLP weights, all layers."""
    hidden, layers, intermediate = _backbone_sizes(model)
    return layers * (4 * hidden**2 + 2 * hidden * intermediate)


def _backbone_sizes(model: ModelConfig) -> tuple[int, int, int]:
    """The backbone's hidden size, layers and intermediate size: with
    ``model.pretrained_path``, the checkpoint's (from its config.json; the model uses them,
    not the config's), else the config's. A config.json that cannot be read leaves the
    config's: loading the checkpoint reports it."""
    sizes = (model.hidden_size, model.num_layers, model.intermediate_size)
    if model.pretrained_path is None:
        return sizes
    try:
        found = json.loads((Path(model.pretrained_path) / "config.json").read_text())
    except (OSError, ValueError):
        return sizes
    if not isinstance(found, dict):
        return sizes
    named = tuple(found.get(k) for k in ("hidden_size", "num_hidden_layers",
                                         "intermediate_size"))
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in named):
        return sizes
    return cast("tuple[int, int, int]", named)  # (as checked)


PRETRAINING = "pre-training"
"""What :func:`estimate_memory_bytes` and :func:`check_memory` take, beside a fidelity, for
pre-training alone (``hffm pretrain``): the model with its gradients and AdamW's moments and
the pretext scenes."""

FIDELITIES: tuple[str, ...] = ("train", "surrogate", "cost")
"""How an env measures accuracy: ``train`` (real federated training), ``surrogate`` (a fit
of real training) or ``cost`` (none: network costs only)."""

EPISODE_ENDS: tuple[str, ...] = ("rounds", "energy_budget")
"""What ends an episode (the horizon, ``env.episode_rounds``; the energy budget,
``env.energy_budget_j``), as the env's ``info["end"]`` names it at the last step."""


def check_memory(config: ScenarioConfig, fidelity: str = "train",
                 trainable_parameters: int | None = None) -> None:
    """Raise :class:`ConfigError` with the estimate when ``config`` would need more memory than
    this machine has (:func:`estimate_memory_bytes`; ``fidelity``: one of
    :data:`FIDELITIES`, or :data:`PRETRAINING` for pre-training alone)."""
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: nothing to check against
        return
    parts = estimate_memory_bytes(config, fidelity, trainable_parameters)
    if parts["total"] > available:
        detail = ", ".join(f"{k} {v / 2**30:.1f}" for k, v in parts.items() if k != "total")
        cheaper = (" (or, for the network alone, fidelity 'cost', which draws no scene)"
                   if fidelity == "train" else "")
        largest = max((k for k in parts if k not in ("total", "libraries")), key=lambda k: parts[k])
        raise ConfigError(
            f"scenario {config.name!r} "
            f"({fidelity if fidelity == PRETRAINING else f'{fidelity} fidelity'}) needs about "
            f"{parts['total'] / 2**30:.1f} GiB of memory ({detail} GiB); this machine has "
            f"{available / 2**30:.1f} GiB. The largest part, {largest}, grows with "
            f"{_MEMORY_SETTINGS[largest]}: reduce them{cheaper}"
        )


_MEMORY_SETTINGS = {
    "network": "placement.num_devices and the cluster sizes (D2D pairs), and "
               "channel.d2d_radius_m (graph edges)",
    "sample indices": "placement.num_devices and data.samples_per_device",
    "scenes": "placement.num_devices, data.samples_per_device, data.image_size_px and "
              "data.audio_length",
    "features": "placement.num_devices, data.samples_per_device and model.feature_dim",
    "pre-training scenes": "data.pretrain_samples and data.image_size_px",
    "training and evaluation": "placement.num_devices, fl.batch_size, "
                               "fl.eval_samples_per_device and the model's sizes",
    "model": "model.hidden_size, model.intermediate_size and model.num_layers (or the "
             "checkpoint's, with model.pretrained_path)",
    "module copies": "placement.num_devices and the trainable modules' sizes (model.num_experts, "
                     "model.expert_hidden, model.lora_rank, model.hidden_size, ...)",
}
"""The settings each part of :func:`estimate_memory_bytes` grows with, for its message."""


# --------------------------------------------------------------------------------------------
# dicts, files and overrides


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain nested dicts (tuples become lists), ready for JSON or YAML."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [convert(v) for v in value]
        return value

    return convert(config)


def config_differences(a: ScenarioConfig, b: ScenarioConfig) -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in a, value in b)`` for every setting where the two differ."""
    return dict_differences(to_dict(a), to_dict(b))


def differences_line(made_on: ScenarioConfig, config: ScenarioConfig, shown: int = 6) -> str:
    """``key=value (here value), ...`` for the settings where ``made_on`` (what an agent was
    trained or a plan searched on) differs from ``config`` (this run's), the first ``shown``
    of them and how many more; ``""`` when they agree."""
    return format_differences(config_differences(made_on, config), shown)


def format_differences(diff: Sequence[tuple[str, Any, Any]], shown: int = 6) -> str:
    """``key=value (here value), ...`` for ``(key, there, here)`` triples
    (:func:`config_differences`), the first ``shown`` of them and how many more."""
    line = ", ".join(f"{k}={a!r} (here {b!r})" for k, a, b in diff[:shown])
    return line + (f", and {len(diff) - shown} more" if len(diff) > shown else "")


def dict_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in a, value in b)`` wherever two nested dicts differ (None for a
    key one of them lacks), sorted by key."""

    def flat(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, Mapping):
            return {k: v for key, sub in value.items()
                    for k, v in flat(sub, f"{prefix}{key}.").items()}
        return {prefix[:-1]: value}

    left, right = flat(a), flat(b)
    return [(k, left.get(k), right.get(k)) for k in sorted(left.keys() | right.keys())
            if left.get(k) != right.get(k)]


def _digits(value: int) -> str:
    """A huge integer described by its length (``str()`` refuses ints beyond 4,300 digits)."""
    return f"a {len(str(abs(value))) if abs(value) < 10**4000 else 'more than 4000'}-digit number"


def _coerce(path: str, value: Any, annotation: Any) -> Any:
    """Turn a JSON/YAML value into the annotated type, or raise a ConfigError naming ``path``."""
    if isinstance(value, numbers.Real) and not isinstance(value, (int, float)):
        value = value.item() if hasattr(value, "item") else value  # numpy's numbers as Python's
    elif isinstance(value, np.bool_):  # (not a numbers.Real)
        value = bool(value)
    elif isinstance(value, np.ndarray) and value.ndim == 1:  # a sweep's values, as a list
        value = value.tolist()
    origin = get_origin(annotation)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{path} = {shown(value)}: must be a mapping of {annotation.__name__} fields"
            )
        return _build(annotation, value, path)
    if _is_optional(annotation):
        args = get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if inner[0] in (int, float, str):  # (a wrong value could have meant "none")
            try:
                return _coerce(path, value, inner[0])
            except ConfigError as err:
                raise ConfigError(f"{err}, or null for none (null or ~ in an override or a "
                                  "config file, None in Python)") from None
        return _coerce(path, value, inner[0])
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} = {shown(value)}: must be a list")
        (item_type, *_rest) = get_args(annotation)
        return tuple(_coerce(f"{path}[{i}]", v, item_type) for i, v in enumerate(value))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path} = {shown(value)}: must be true or false"
                          + _typed_hint(path, value, annotation))
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not (math.isfinite(value) and value.is_integer())
        ):
            raise ConfigError(f"{path} = {shown(value)}: must be an integer"
                              + _typed_hint(path, value, annotation))
        if abs(value) >= 2**63:
            large = f"{value:g}" if isinstance(value, float) else _digits(value)
            raise ConfigError(f"{path} = {large}: too large for an integer (at most "
                              "2**63 - 1)")
        return int(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} = {shown(value)}: must be a number"
                              + _typed_hint(path, value, annotation))
        if isinstance(value, int) and abs(value) >= 2**1023:
            raise ConfigError(f"{path} = {_digits(value)}: too large for a float")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{path} = {shown(value)}: too large for a float") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} = {shown(value)}: must be a string")
        return value
    return value


def _typed_hint(path: str, value: Any, annotation: Any) -> str:
    """What to do about a string that reads as the value that belongs at ``path`` (``"4"``
    for an integer): the values of an overrides dict or a config file are taken as given;
    only ``"key=value"`` strings are parsed. Empty for anything else."""
    if not isinstance(value, str) or len(value) > 40 or value != value.strip():
        return ""  # (a long or padded string is no typo of a number: the plain error)
    try:
        _, parsed = parse_override(f"{path}={value}")
        if isinstance(parsed, str):  # (and no recursion: coercing a string comes back here)
            return ""
        _coerce(path, parsed, annotation)
    except ConfigError:  # it would not fit when parsed either: the plain error says it all
        return ""
    return (f" (a string: give {parsed!r} without quotes in a dict or a config file, or the "
            f"override as one '{path}={value}' string, which is parsed)")


def _build(cls: type, data: Mapping[str, Any], path: str,
           also_allowed: tuple[str, ...] = ()) -> Any:
    """``cls`` from ``data`` (the section at dotted ``path``), each value coerced to its field's
    type; an unknown key names the allowed ones (``also_allowed``: keys the caller took out
    already, such as the top level's ``scenario``)."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names), key=str)  # YAML keys may be numbers or null
    if unknown:
        where = f"{path}." if path else ""
        key = unknown[0]
        head, dot, rest = key.partition(".") if isinstance(key, str) else ("", "", "")
        nest = (f"; a mapping nests its keys (write {head}: {{{rest}: ...}}; dotted keys are "
                "for overrides)" if dot and head in names else "")
        raise ConfigError(
            f"unknown config key {where}{key!s}: allowed keys here are "
            f"{[*also_allowed, *names]}{nest}"
        )
    given = dict(data)
    for f in dataclasses.fields(cls):
        # a section given in part is layered on the field's default (channel.uplink without
        # its powers failed: "LinkConfig.__init__() missing 2 required positional arguments")
        hint = hints[f.name]
        section = given.get(f.name)
        if isinstance(section, Mapping) and isinstance(hint, type) and \
                dataclasses.is_dataclass(hint):
            default = (f.default if f.default is not dataclasses.MISSING
                       else f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else None)
            if default is not None:
                given[f.name] = _deep_merge(dataclasses.asdict(default), section)
    kwargs = {
        key: _coerce(f"{path}.{key}" if path else key, value, hints[key])
        for key, value in given.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{path or cls.__name__}: {err}") from None
    except ConfigError as err:
        raise ConfigError(_relabel(str(err), path)) from None


def _relabel(message: str, path: str) -> str:
    """A validation message labelled with the key the value came from: a class checks its
    fields under its usual name (``channel.link.bandwidth_hz``), but the user wrote
    ``channel.d2d.bandwidth_hz``. Messages that name a nested key already are left alone."""
    label = message.partition(" = ")[0]
    owner, _, name = label.rpartition(".")
    if not path or not owner or owner == path or "." not in label or " " in name:
        return message
    if owner.count(".") != path.count("."):
        return message  # raised deeper down, already under its own key
    return message.replace(f"{owner}.", f"{path}.")


def from_dict(data: Mapping[str, Any], base: ScenarioConfig | None = None) -> ScenarioConfig:
    """A :class:`ScenarioConfig` from nested dicts. Keys missing from ``data`` keep the value of
    ``base`` (or of the preset named by ``data["scenario"]``, or the dataclass defaults). Unknown
    keys raise a :class:`ConfigError` that names them and lists the allowed ones."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config = {data!r}: must be a mapping of sections (placement, "
                          "channel, ..., env) to their fields")
    data = dict(data)
    if "scenario" in data:
        preset = data.pop("scenario")
        if not isinstance(preset, str):
            raise ConfigError(f"scenario = {shown(preset)}: must be a preset name "
                              f"{scenario_names()}")
        base = get_scenario(preset)
    merged = _deep_merge(to_dict(base) if base is not None else {}, data)
    return _build(ScenarioConfig, merged, "", also_allowed=("scenario",))


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"a.b.c=value"`` into the dotted key and a YAML-parsed value (so ``3``, ``1e6``,
    ``true``, ``null`` and ``[1, 2]`` get their natural types)."""
    import yaml

    if not isinstance(text, str):
        raise ConfigError(f"override {text!r}: must be a 'key=value' string, e.g. "
                          "'fl.local_steps=3'")
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: must look like key=value, e.g. fl.local_steps=3")
    try:
        value = yaml.load(raw, Loader=_yaml_unique_key_loader()) if raw.strip() else ""
    except _DuplicateKey as err:
        raise ConfigError(f"override {key}: the key {err.args[0]!r} appears twice in its "
                          "value (one of them would be silently lost)") from None
    except yaml.YAMLError:
        value = raw
    except ValueError as err:  # an integer longer than Python reads (4,300 digits)
        raise ConfigError(f"override {key}: its value cannot be read ({err})") from None
    except RecursionError:
        raise ConfigError(f"override {key}: its value is nested too deeply to be a "
                          "config") from None
    if isinstance(value, str):
        # YAML 1.1 reads "1e6" as a string: the number users mean; "inf" and "nan" too, so
        # that the field's range check says what is allowed (not "must be a number")
        spelled = value.strip().lower().lstrip("+-") in ("inf", "infinity", "nan")
        try:
            value = float(value) if spelled or any(c.isdigit() for c in value) else value
        except ValueError:
            pass
    return key, value


def require_config(config: Any, what: str = "config") -> ScenarioConfig:
    """``config`` if it is a :class:`ScenarioConfig`, else a :class:`ConfigError` naming
    ``what`` and the value (a preset's name or a dict given to the simulator's parts, which
    take a built config, failed deep inside with Python's words)."""
    if not isinstance(config, ScenarioConfig):
        raise ConfigError(f"{what} = {shown(config)}: must be a ScenarioConfig "
                          "(load_scenario('small') builds one from a preset name, a dict or "
                          "a config file)")
    return config


def apply_overrides(
    config: ScenarioConfig, overrides: Mapping[str, Any] | list[str] | None
) -> ScenarioConfig:
    """``config`` with dotted-key overrides applied, e.g. ``{"fl.local_steps": 3}`` or
    ``["channel.d2d.bandwidth_hz=2e6"]``; the result is validated like any config. The same
    key given twice takes the later value; a section given as a mapping and keys inside it
    given dotted merge (``{"fl": {"lr": 0.1}, "fl.local_steps": 2}``), and a setting given both
    ways is refused. The caller's values are never modified."""
    require_config(config)
    if overrides is None:
        return config
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    elif isinstance(overrides, (list, tuple)):
        items = [parse_override(o) for o in overrides]
    else:
        raise ConfigError(f"overrides = {overrides!r}: must be a dict of dotted keys to values, "
                          "a list of 'key=value' strings, or None")
    if not items:
        return config
    given: dict[str, Any] = {}
    for key, value in items:
        if not isinstance(key, str):
            raise ConfigError(f"override key {key!r}: must be a dotted string such as "
                              "'fl.local_steps'")
        given[key] = value  # the same key again: the later value wins
    if "scenario" in given:  # from_dict would start over from that preset, dropping the rest
        raise ConfigError(f"override scenario = {shown(given['scenario'])}: a preset is chosen by "
                          "scenario= (--scenario) or a config file's 'scenario:', not by an "
                          "override, which changes one setting of it")
    nested: dict[str, Any] = {}
    for key, value in given.items():
        _insert_override(nested, key.split("."), value)
    # (not from_dict: an override names no preset, so none is among the allowed keys)
    return _build(ScenarioConfig, _deep_merge(to_dict(config), nested), "")


def _insert_override(nested: dict[str, Any], parts: list[Any], value: Any,
                     above: tuple[Any, ...] = ()) -> None:
    """Put ``value`` at the path ``parts`` of ``nested`` (itself at ``above`` in the config,
    for messages), merging a mapping with what other overrides already put inside it (dicts
    made or copied here: the caller's mappings are never modified). A setting given twice
    (``fl`` as a mapping holding ``lr``, and ``fl.lr``: one would silently replace the other)
    is refused by name, as is a dotted key inside a setting given a plain value (``fl=3`` and
    ``fl.lr``)."""
    node, path = nested, [*above, *parts]
    for depth, part in enumerate(parts[:-1], start=len(above) + 1):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"overrides {_dotted(path[:depth])} = {shown(child)} and {_dotted(path)}: the "
                "second lies inside the first, which is no section; give one of them")
        node = child
    leaf = parts[-1]
    if leaf not in node:
        node[leaf] = _copy_mappings(value)
    elif isinstance(node[leaf], dict) and isinstance(value, Mapping):
        for inner_key, inner_value in value.items():  # a mapping's keys are taken literally
            _insert_override(node[leaf], [inner_key], inner_value, tuple(path))
    elif isinstance(node[leaf], dict):
        raise ConfigError(
            f"overrides {_dotted(path)} = {shown(value)} and a key inside it: the second lies "
            "inside the first, which is no section; give one of them")
    else:
        raise ConfigError(f"overrides: {_dotted(path)} is given twice (once inside a section "
                          "given as a mapping); give it in only one of them")


def _dotted(parts: list[Any]) -> str:
    """``parts`` joined by dots, as a dotted override key is written."""
    return ".".join(str(p) for p in parts)


def _copy_mappings(value: Any) -> Any:
    """``value`` with every mapping in it copied into a new dict (other values as given)."""
    if isinstance(value, Mapping):
        return {k: _copy_mappings(v) for k, v in value.items()}
    return value


class _DuplicateKey(Exception):
    """A key given twice in one mapping of a config file."""


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


@functools.cache
def _yaml_unique_key_loader() -> type:
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping and reads ``2e6`` as
    a number (built once)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": SafeLoader's own
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    if key in seen:
                        raise _DuplicateKey(key)
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader's error says so
                    continue
            return super().construct_mapping(node, deep=deep)

    # YAML 1.1, PyYAML's, reads 010 as octal 8 and 1:30 as 90 (base 60): a seed or a length
    # changed without a word. YAML 1.2 and JSON read decimal integers (0x and 0o spelled out)
    int_tag = "tag:yaml.org,2002:int"
    UniqueKeyLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != int_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    UniqueKeyLoader.add_implicit_resolver(
        int_tag, re.compile(r"^(?:[-+]?[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)$"),
        list("-+0123456789"))
    UniqueKeyLoader.add_constructor(
        int_tag, lambda loader, node: _yaml12_int(loader.construct_scalar(node)))
    # YAML 1.1, PyYAML's, reads 2e6 and 1e-3 as strings (its floats need a dot); YAML 1.2 and
    # JSON read them as numbers, as users mean them
    UniqueKeyLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+.0123456789"))
    return UniqueKeyLoader


def _yaml12_int(text: str) -> int:
    """A YAML 1.2 integer: decimal (leading zeros and all: 010 is ten), ``0x`` hexadecimal or
    ``0o`` octal; anything else (an explicit ``!!int`` tag on other text) raises ValueError."""
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body[:2] in ("0x", "0o"):
        return sign * int(body[2:], 16 if body[1] == "x" else 8)
    return sign * int(body, 10)


MAX_CONFIG_FILE_BYTES = 1_000_000
"""The largest config file read (configs are a few kB; a larger file is not one)."""


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (anything else, via ``yaml.safe_load``) config file."""
    import yaml

    path = require_path(path, "config file", ConfigError)
    _UniqueKeyLoader = _yaml_unique_key_loader()  # noqa: N806  (a class)
    try:
        status = path.stat()
        if stat.S_ISCHR(status.st_mode) or stat.S_ISBLK(status.st_mode) \
                or stat.S_ISFIFO(status.st_mode) or stat.S_ISSOCK(status.st_mode):
            raise ConfigError(f"config file {str(path)!r}: not a regular file")
        if stat.S_ISREG(status.st_mode) and status.st_size > MAX_CONFIG_FILE_BYTES:
            raise ConfigError(f"config file {str(path)!r}: {status.st_size:,} bytes; a config "
                              f"file is at most {MAX_CONFIG_FILE_BYTES:,}")
        text = path.read_text(encoding="utf-8-sig")  # whatever the locale; a BOM allowed
    except OSError as err:
        raise ConfigError(f"config file {str(path)!r}: cannot be read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r}: not UTF-8 text") from None
    try:
        data = (json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
                if path.suffix == ".json" else yaml.load(text, Loader=_UniqueKeyLoader))
    except _DuplicateKey as err:
        raise ConfigError(f"config file {str(path)!r}: the key {err.args[0]!r} appears twice "
                          "in one mapping (one value would be silently lost)") from None
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"config file {str(path)!r}: not valid JSON/YAML "
                          f"({error_line(err)})") from None
    except RecursionError:
        raise ConfigError(f"config file {str(path)!r}: nested too deeply to be a config") from None
    except ValueError as err:  # an integer longer than Python reads (4,300 digits)
        raise ConfigError(f"config file {str(path)!r}: a value cannot be read ({err})") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {str(path)!r}: must hold a mapping at the top level")
    return dict(data)


@overload
def resolve_scenario(
    scenario: str | None, config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | list[str] | None = None,
) -> tuple[str, ScenarioConfig]: ...
@overload
def resolve_scenario(
    scenario: ScenarioConfig | Mapping[str, Any], config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | list[str] | None = None,
) -> tuple[ScenarioConfig | Mapping[str, Any], ScenarioConfig]: ...
def resolve_scenario(
    scenario: str | ScenarioConfig | Mapping[str, Any] | None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | list[str] | None = None,
) -> tuple[str | ScenarioConfig | Mapping[str, Any], ScenarioConfig]:
    """What a run is on, the config file read once: the preset (for a name or None: ``scenario``
    if given, else the one the config file names, ``scenario: paper``, else ``small``; a
    ``scenario`` other than the file's is refused, since the file's would silently win; a
    config or dict as given) and the scenario :func:`load_scenario` builds on it."""
    layers = load_config_file(config_file) if config_file is not None else None
    if scenario is None or isinstance(scenario, str):
        scenario = _preset(scenario, layers, config_file)
    return scenario, _layered_scenario(scenario, layers, config_file, overrides)


def _dict_preset(data: Mapping[str, Any]) -> str:
    """The preset a scenario dict without a ``scenario`` key is layered on: the one its
    ``name`` names (a whole config's dict, ``to_dict`` of a preset's variant, keeps its
    preset), else ``small``, as for a config file."""
    name = data.get("name")
    return name if isinstance(name, str) and name in SCENARIOS else "small"


def _preset(scenario: str | None, layers: Mapping[str, Any] | None,
            config_file: str | Path | None) -> str:
    named = layers.get("scenario") if layers is not None else None
    if scenario is None:
        if isinstance(named, str):
            try:
                get_scenario(named)
            except ConfigError as err:  # (the file named it: say which file)
                raise ConfigError(f"config file {str(config_file)!r}: {err}") from None
            return named
        # a whole config saved to a file (to_dict of paper, say) keeps its preset, as its
        # dict does
        return _dict_preset(layers) if layers is not None else "small"
    if named is not None and named != scenario:
        raise ConfigError(f"config file {str(config_file)!r} names scenario {shown(named)}, but "
                          f"the scenario given is {scenario!r}: give one of them (or the same "
                          "preset)")
    return scenario


def load_scenario(
    scenario: str | ScenarioConfig | Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | list[str] | None = None,
) -> ScenarioConfig:
    """Build a scenario from a preset name (or a config / dict), then a config file, then
    overrides, each layered on the previous one. Without a name, the preset is the one the
    config file names (``scenario: paper``), else ``small``; a name other than the file's is
    refused (:func:`resolve_scenario`). A dict is layered on the preset its ``scenario`` key
    names, else on the one its ``name`` names (so a whole config's dict, :func:`to_dict` of a
    preset's variant, is that config), else on ``small``, as a config file is.
    (:func:`from_dict`, the inverse of :func:`to_dict`, fills what a dict leaves out from the
    dataclass defaults instead.)"""
    return resolve_scenario(scenario, config_file, overrides)[1]


def _layered_scenario(
    scenario: str | ScenarioConfig | Mapping[str, Any],
    layers: Mapping[str, Any] | None,
    config_file: str | Path | None,
    overrides: Mapping[str, Any] | list[str] | None,
) -> ScenarioConfig:
    if layers is not None and "scenario" in layers and not isinstance(scenario, str):
        # the file's preset would replace the config given, not be layered on it
        raise ConfigError(f"config file {str(config_file)!r} names scenario "
                          f"{shown(layers['scenario'])}, but a whole config was given to layer it "
                          "on; drop the file's scenario key, or give the preset's name")
    if isinstance(scenario, ScenarioConfig):
        config = scenario
    elif isinstance(scenario, Mapping):
        config = from_dict(scenario, base=None if "scenario" in scenario else get_scenario(
            _dict_preset(scenario)))
    else:
        config = get_scenario(scenario)
    if layers is not None:
        try:
            config = from_dict(layers, base=config)
        except ConfigError as err:  # (a --set of the same key gives the same words)
            raise ConfigError(f"config file {str(config_file)!r}: {err}") from None
    config = apply_overrides(config, overrides)
    named = layers.get("scenario") if layers is not None else None
    if named is None and isinstance(scenario, Mapping):  # (a dict's own, when it names one)
        named = scenario.get("scenario")
    base = named if isinstance(named, str) else scenario if isinstance(scenario, str) else None
    if base is not None and config.name != base and config.name in SCENARIOS:
        # reports, caches and agents' notes go by the name: another preset's would mislead
        raise ConfigError(f"name = {config.name!r}: the name of another preset, on preset "
                          f"{base!r}; name your variant otherwise (or give scenario "
                          f"{config.name!r})")
    return config
