"""A fitted accuracy surrogate: real-training behaviour at cost-fidelity speed.

Real training costs about half a second per round on ``small``; reinforcement learning wants
10^5 rounds. :class:`AccuracySurrogate` predicts what real training would measure after a
round (global, local and held-out accuracy per task, training loss per task and module drift)
from the aggregation history alone, so that the ``surrogate`` fidelity can pair it with the
real cost model. It is never hand-written: it is fitted (a small ensemble of MLPs) on traces
of real training of the same scenario (``hffm calibrate``), and ``benchmarks/surrogate_error.py``
reports its error on schedules and seeds it was not fitted on.

Inputs (:class:`TierHistory`, one rule for fitting and prediction), per module type: this
round's tier (one-hot), the rounds since its last edge-or-higher and cloud aggregation, and how
many D2D, edge and cloud aggregations it has had, all over the horizon; plus the round over
the horizon and the fraction of devices available. What the history cannot know (the reset
seed's fading, mini-batches and layout) is noise the surrogate averages over; the data split is
the config seed's, and a fit serves that config seed only (:func:`surrogate_key`).

That noise is not small next to the differences a scheduler weighs (a round's global accuracy
moves by about 0.01 between seeds), and a target crossing is decided by it: a schedule that
lands near the target in many rounds crosses early more often than its mean curve says. So a
fit also keeps its *out-of-fold residuals* (:func:`out_of_fold_residuals`: real minus
predicted, every round of every calibration episode, each predicted by a fit that did not see
that episode's seed), and the env can add one recorded episode's residuals to the mean
(``env.surrogate_noise="residuals"``): noise with the size, round profile and cross-task
correlation that real training showed, resampled, never invented.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from hffm_env import jsonio
from hffm_env.arguments import error_line
from hffm_env.config import (
    ACCURACY_KINDS,
    MAX_EPISODE_ROUNDS,
    MODULE_TYPES,
    SCENARIOS,
    ChannelConfig,
    ScenarioConfig,
)
from hffm_env.devices import float32_default
from hffm_env.files import (
    load_tensors,
    non_finite_tensors,
    require_path,
    write_atomically,
)
from hffm_env.fl.evaluation import Evaluation, mean_over_tasks
from hffm_env.fl.schedule import CLUSTER_TIERS, PeriodClock, Schedule, Tier
from hffm_env.seeding import SEEDING_SCHEME
from hffm_env.values import is_finite_real, is_integer, is_real

if TYPE_CHECKING:  # (the engine imports torch models: not needed to read a fit)
    from hffm_env.fl.engine import RoundResult

__all__ = [
    "AccuracySurrogate",
    "RoundTrace",
    "SurrogateMismatch",
    "SurrogateMissing",
    "SurrogateRounds",
    "TierHistory",
    "find_surrogate",
    "out_of_fold_residuals",
    "surrogate_key",
    "traces_key",
    "surrogate_path",
    "target_names",
    "named_targets",
    "SURROGATE_FORMAT",
    "PACKAGED_DIR",
    "episode_features",
]

SURROGATE_FORMAT = 2
TIERS: tuple[Tier, ...] = tuple(Tier)
SCOPES = ("cluster", "global")


_CONSTANT_SPREAD = 1.5e-6
"""A feature spread at most this is one that never varied in the traces
(:meth:`AccuracySurrogate.fit` stores its spread plus 1e-6)."""


class SurrogateMismatch(UserWarning):
    """A surrogate given by path was fitted for another configuration than the env's."""


class SurrogateMissing(FileNotFoundError):
    """No fitted surrogate for this scenario config."""


_TRAINING_SECTIONS = ("model", "data", "fl", "placement", "dynamics", "channel")
"""The config's sections that change what real training measures (with the horizon and the
config seed: :func:`_training_inputs`)."""


_PRICE_ONLY_CHANNEL = {"uplink": ("energy_power_w",), "downlink": ("energy_power_w",),
                       "d2d": ("energy_power_w",),
                       "backhaul": ("energy_power_w", "latency_s", "rate_bps")}
"""The channel settings that only price a round (the energy charged per second, the wired
backhaul's delay and rate): no transfer succeeds or fails by them, so training measures the
same whatever they are."""


TRAINING_REVISION: int = 2
"""Enters the surrogate and traces keys of configs whose real training changed since their
fits could have been made (see :func:`_training_inputs`); the presets' keys are unchanged."""


def _training_inputs(cfg: ScenarioConfig) -> dict[str, Any]:
    """Everything that changes what real training measures: the model, data, engine,
    placement, dynamics and channel configs (but the channel's price-only settings,
    :data:`_PRICE_ONLY_CHANNEL`, which enter as their defaults: one fit serves a sweep of
    energy prices), the horizon, the seeding scheme and the config seed (it draws the data
    split and the modules' initial values). The seed enters only when it is not 0, so that
    the keys of fits and traces made on seed 0 stay what they were; :data:`TRAINING_REVISION`
    enters only for a wire below 32 bits, a weight decay above 0 or noiseless scenes, the
    configs whose real training changed (a split the task repair changes still keeps its
    key: calibrate it again), and the pre-training key only with a checkpoint or small
    objects' scenes."""
    parts = {name: dataclasses.asdict(getattr(cfg, name)) for name in _TRAINING_SECTIONS}
    defaults = dataclasses.asdict(ChannelConfig())
    for link, names in _PRICE_ONLY_CHANNEL.items():
        for name in names:
            parts["channel"][link][name] = defaults[link][name]
    inputs = {"seeding": SEEDING_SCHEME, "parts": parts, "episode_rounds": cfg.env.episode_rounds}
    if cfg.seed != 0:
        inputs["config_seed"] = cfg.seed
    from hffm_env.data import centre_pixel_paints, noiseless
    from hffm_env.models.pretrain import cache_key

    if cfg.model.precision_bits != 32 or cfg.fl.weight_decay != 0.0 or noiseless(cfg.data):
        # real training of these configs changed on 2026-12-07 (a wire of 8 or 16 bits now
        # rounds what it delivers; weight decay no longer shrinks modules a device holds but
        # does not read; a noiseless config's splits are drawn otherwise): fits and traces
        # made before must not be found under the same key
        inputs["training_revision"] = TRAINING_REVISION

    if cfg.model.pretrained_path is not None or centre_pixel_paints(cfg.data):
        # the frozen parts training reads can change under the same settings: a checkpoint
        # replaced at its path, or small objects' scenes drawn otherwise since 2026-12-07
        # (pre-training's own key sees both; the presets' frozen parts are neither)
        inputs["pretrained"] = cache_key(cfg.model, cfg.data)
    return inputs


def surrogate_key(cfg: ScenarioConfig) -> str:
    """A hex digest of everything that changes what training measures: the model, data,
    engine, placement, dynamics and channel configs, the horizon, the format, the seeding
    scheme (:data:`~hffm_env.seeding.SEEDING_SCHEME`) and the config seed, which together
    decide the data split: a fit of one split is not reused for another, where its error was
    never measured (``benchmarks/surrogate_error.py`` measures it on the split it was fitted
    on; on ``small`` another config seed's split put it 0.08 off). Costs (the cost and
    compute sections, the channel's price-only settings) and reward weights do not enter it."""
    return jsonio.digest({"format": SURROGATE_FORMAT, **_training_inputs(cfg)}, length=24)


def traces_key(cfg: ScenarioConfig) -> str:
    """The digest of :func:`surrogate_key` without the surrogate's file format: what recorded
    real-training traces are traces of (a refit in a newer format reads the same traces)."""
    return jsonio.digest(_training_inputs(cfg), length=24)


def surrogate_path(cfg: ScenarioConfig, folder: str | Path | None = None) -> Path:
    """Where the fitted surrogate of ``cfg`` is cached (``$HFFM_CACHE_DIR`` by default)."""
    from hffm_env.models.pretrain import default_cache_dir

    base = Path(folder).expanduser() if folder is not None else default_cache_dir()
    return base / f"surrogate-{surrogate_key(cfg)}.pt"


PACKAGED_DIR = Path(__file__).resolve().parent.parent / "surrogates"
"""Surrogates fitted for the presets ship with the package (``hffm_env/surrogates``)."""


def find_surrogate(cfg: ScenarioConfig, path: str | Path | None = None) -> AccuracySurrogate:
    """The fitted surrogate for ``cfg``: the file ``path`` if given, else the cache
    (``hffm calibrate`` writes there), else the ones shipped for the presets. Raises
    :class:`SurrogateMissing` saying how to fit one."""
    if path is not None:  # a file given by hand: check that it can serve this config
        surrogate = _serving(AccuracySurrogate.load(path), cfg, f"surrogate = {str(path)!r}")
        # the key it was fitted for: recorded by `hffm calibrate`, else in a cache file's name
        named = re.fullmatch(r"surrogate-([0-9a-f]+)\.pt", Path(path).name)
        fitted_for = surrogate.meta.get("config_key") or (named and named.group(1))
        serves = {surrogate_key(c) for c in _configs_a_fit_may_serve(cfg, surrogate.horizon)}
        if fitted_for and fitted_for not in serves:
            warnings.warn(f"surrogate = {str(path)!r} was fitted for another configuration (key "
                          f"{fitted_for}, this one {surrogate_key(cfg)}: another layout, data "
                          "split or training setting); its error was not measured here",
                          SurrogateMismatch, stacklevel=2)
        elif not fitted_for:  # a copy of a fit that did not record its key, renamed
            warnings.warn(f"surrogate = {str(path)!r} does not say which configuration it was "
                          f"fitted for (no config_key, and its name is not surrogate-<key>.pt); "
                          f"if not for this one (key {surrogate_key(cfg)}), its error was not "
                          "measured here", SurrogateMismatch, stacklevel=2)
        return surrogate
    damaged: list[ValueError] = []
    for fitted_cfg in _configs_a_fit_may_serve(cfg):
        name = surrogate_path(fitted_cfg).name
        for candidate in (surrogate_path(fitted_cfg), PACKAGED_DIR / name):
            if candidate.is_file():  # named by the config's key; checked all the same
                try:
                    surrogate = AccuracySurrogate.load(candidate)
                except ValueError as err:  # a damaged file (a killed copy) hides no other fit
                    damaged.append(err)
                    continue
                if damaged:
                    warnings.warn(f"{damaged[0]}; using {candidate} instead (remove the damaged "
                                  "file, or fit it again with `hffm calibrate --force`)",
                                  RuntimeWarning, stacklevel=2)
                recorded = surrogate.meta.get("config_key")
                serves = {surrogate_key(c)
                          for c in _configs_a_fit_may_serve(cfg, surrogate.horizon)}
                if recorded and recorded not in serves:  # (a copy filed here)
                    warnings.warn(f"{candidate} was fitted for another configuration (key "
                                  f"{recorded}, this one {surrogate_key(cfg)}); its error was "
                                  "not measured here (fit this one: hffm calibrate)",
                                  SurrogateMismatch, stacklevel=2)
                return _serving(surrogate, cfg, str(candidate))
    if damaged:
        raise ValueError(f"{damaged[0]} (remove it, or fit it again with `hffm calibrate "
                         "--force`)")
    raise SurrogateMissing(
        f"fidelity='surrogate': no fitted surrogate for this configuration (key "
        f"{surrogate_key(cfg)}; looked in {surrogate_path(cfg).parent} and {PACKAGED_DIR})"
        f"{_off_the_shipped_fit(cfg)}. Fit one on real training with "
        + (f"`hffm calibrate --scenario {cfg.name}` plus the same --config file and --set "
           "overrides" if cfg.name in SCENARIOS else "`hffm calibrate --config FILE` (a file of "
           f"this config, {cfg.name!r}, on its preset)")
        + " (minutes of training), or pass a fitted file (gym.make's surrogate=PATH; "
        "hffm bench, hffm train and benchmarks/surrogate_error.py take --surrogate FILE)"
    )


def _off_the_shipped_fit(cfg: ScenarioConfig) -> str:
    """Where ``cfg`` leaves the fit shipped for its preset: ``; the fit shipped for small is
    of the preset as it is, and this config differs in what training measures:
    fl.local_steps=4 (here 1), ...``; empty when no fit ships for the preset or the
    difference is elsewhere (another horizon, say)."""
    from hffm_env.config import config_differences, format_differences, load_scenario

    if cfg.name not in SCENARIOS:
        return ""
    preset = load_scenario(cfg.name)
    if not (PACKAGED_DIR / surrogate_path(preset).name).is_file():
        return ""
    measured = (*_TRAINING_SECTIONS, "seed")
    price_only = {f"channel.{link}.{name}" for link, names in _PRICE_ONLY_CHANNEL.items()
                  for name in names}  # (the key's own rule: _training_inputs)
    differ = [(k, a, b) for k, a, b in config_differences(preset, cfg)
              if k.split(".")[0] in measured and k not in price_only]
    if not differ:
        return ""
    return (f"; the fit shipped for {cfg.name} is of the preset as it is, and this config "
            f"differs in what training measures: {format_differences(differ, 4)}")


def _serving(surrogate: AccuracySurrogate, cfg: ScenarioConfig, where: str
             ) -> AccuracySurrogate:
    """``surrogate`` if it predicts ``cfg``'s tasks for at least its episode, else a
    ``ValueError`` that starts with ``where``."""
    if tuple(surrogate.tasks) != tuple(cfg.data.tasks):
        raise ValueError(f"{where}: fitted for tasks {list(surrogate.tasks)}, this config runs "
                         f"{list(cfg.data.tasks)}")
    if surrogate.horizon < cfg.env.episode_rounds:
        raise ValueError(f"{where}: fitted on {surrogate.horizon}-round episodes, shorter than "
                         f"env.episode_rounds = {cfg.env.episode_rounds}")
    return surrogate


def _configs_a_fit_may_serve(cfg: ScenarioConfig,
                             horizon: int | None = None) -> list[ScenarioConfig]:
    """``cfg``, then ``cfg`` at a longer ``horizon`` (default: its preset's, or every preset's
    for a renamed variant): a fit of longer episodes serves shorter ones (training does not
    know when the episode ends; a file given by path is taken on the same terms, at its own
    horizon), so ``env.episode_rounds=10`` on ``small`` finds the shipped fit of 16 rounds."""
    from hffm_env.config import get_scenario

    if horizon is not None:
        horizons = [horizon]
    elif cfg.name in SCENARIOS:
        horizons = [get_scenario(cfg.name).env.episode_rounds]
    else:  # the name is not part of the key: the preset it was built on may have a fit
        horizons = sorted({make().env.episode_rounds for make in SCENARIOS.values()})
    return [cfg] + [dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, episode_rounds=h))
                    for h in horizons if h > cfg.env.episode_rounds]


def target_names(tasks: Sequence[str]) -> list[str]:
    """The surrogate's outputs, in order (:func:`named_targets` names a round's values so)."""
    names = [f"{kind}/{t}" for kind in (*ACCURACY_KINDS, "loss") for t in tasks]
    return names + [f"drift/{m}/{s}" for m in MODULE_TYPES for s in SCOPES]


def named_targets(tasks: Sequence[str], accuracy: Callable[[str, str], float],
                  loss: Mapping[str, float] | None,
                  drift: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """A round's measurements by :func:`target_names`: ``accuracy(kind, task)`` for each of
    :data:`ACCURACY_KINDS`, the ``loss`` per task (None: NaN, at reset) and the ``drift`` per
    module type (a value per scope of :data:`SCOPES`)."""
    out = {f"{kind}/{t}": accuracy(kind, t) for kind in ACCURACY_KINDS for t in tasks}
    out |= {f"loss/{t}": float("nan") if loss is None else float(loss[t]) for t in tasks}
    for m, values in drift.items():
        out |= {f"drift/{m}/{scope}": value for scope, value in zip(SCOPES, values, strict=True)}
    return out


@dataclass
class RoundTrace:
    """What one round of real training measured (NaN: not measured), with its inputs."""

    tiers: dict[str, str] | None  # module type -> tier name; None for the state at reset
    available_fraction: float
    targets: dict[str, float] = field(default_factory=dict)  # target name -> value

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (NaN as None)."""
        return {"tiers": self.tiers, "available_fraction": self.available_fraction,
                "targets": jsonio.json_safe(self.targets)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundTrace:
        """Inverse of :meth:`to_dict`. A value a fit could not learn from raises
        ``ValueError`` naming it: ``tiers`` (null, or module type -> tier name),
        ``available_fraction`` (0..1), ``targets`` (name -> number or null: accuracies in
        0..1, losses and drifts finite and >= 0)."""
        tiers = data["tiers"]
        if tiers is not None:
            if not isinstance(tiers, Mapping):
                raise ValueError(f"tiers = {tiers!r}: must be null or a mapping of module type "
                                 "to tier name")
            names = [tier.name.lower() for tier in Tier]
            for module_type, tier in tiers.items():
                if module_type not in MODULE_TYPES:
                    raise ValueError(f"tiers: module type {module_type!r}: allowed "
                                     f"{list(MODULE_TYPES)}")
                if not isinstance(tier, str) or tier.lower() not in names:
                    raise ValueError(f"tiers[{module_type!r}] = {tier!r}: allowed {names}")
            missing = [t for t in MODULE_TYPES if t not in tiers]
            if missing:  # (read as none: features of a round that was not played)
                raise ValueError(f"tiers: no tier of {missing}: a played round gives every "
                                 f"module type {list(MODULE_TYPES)}")
        fraction = data["available_fraction"]
        if not is_finite_real(fraction) or not 0 <= fraction <= 1:
            raise ValueError(f"available_fraction = {fraction!r}: must be a number in 0..1")
        targets = data["targets"]
        if not isinstance(targets, Mapping):
            raise ValueError(f"targets = {targets!r}: must be a mapping of target name to value")
        values: dict[str, float] = {}
        for name, value in jsonio.nulls_to_nan(targets).items():
            kind = str(name).split("/")[0]
            low, high = (0.0, 1.0) if kind in ACCURACY_KINDS else (0.0, MAX_TARGET_VALUE)
            if not ((is_real(value) and value != value)  # NaN: not measured
                    or (is_finite_real(value) and low <= value <= high)):
                allowed = ("in 0..1" if kind in ACCURACY_KINDS
                           else f"in 0..{MAX_TARGET_VALUE:g} (a fit in float32 squares it)")
                raise ValueError(f"targets[{name!r}] = {value!r}: must be null or a number "
                                 f"{allowed}")
            values[str(name)] = float(value)
        return cls(None if tiers is None else {str(k): str(v).lower() for k, v in tiers.items()},
                   float(fraction), values)


class TierHistory:
    """The surrogate's input features, built round by round from the tiers aggregated."""

    def __init__(self, horizon: int) -> None:
        self.horizon = float(max(horizon, 1))
        self.reset()

    def reset(self) -> None:
        """Back to the state at reset (no round played)."""
        self.round = 0
        self.clock = PeriodClock()  # the rounds since each type's last edge and cloud round
        self.counts = {t: {"d2d": 0, "edge": 0, "cloud": 0} for t in MODULE_TYPES}

    @staticmethod
    def feature_names() -> list[str]:
        """Name of every feature, in order."""
        names = ["round", "available"]
        for t in MODULE_TYPES:
            names += [f"{t}/tier/{tier.name.lower()}" for tier in TIERS]
            names += [f"{t}/since_edge", f"{t}/since_cloud"]
            names += [f"{t}/count/{k}" for k in ("d2d", "edge", "cloud")]
        return names

    def step(self, tiers: Mapping[str, Tier | str] | None, available_fraction: float) \
            -> np.ndarray:
        """Advance past one round that aggregated at ``tiers`` (None: the state at reset,
        nothing advanced) and return its features."""
        current: dict[str, Tier | None] = dict.fromkeys(MODULE_TYPES)
        if tiers is not None:
            self.round += 1
            aggregated: dict[str, Tier] = {}
            for t in MODULE_TYPES:
                value = tiers.get(t, Tier.NONE)
                tier = Tier[value.upper()] if isinstance(value, str) else Tier(value)
                aggregated[t] = tier
                if tier == Tier.CLOUD:
                    self.counts[t]["cloud"] += 1
                elif tier in CLUSTER_TIERS:  # the period clock's rule, less the cloud
                    self.counts[t]["edge"] += 1
                elif tier == Tier.D2D_PAIRS:
                    self.counts[t]["d2d"] += 1
            self.clock.advance(aggregated)
            current.update(aggregated)
        h = self.horizon
        values = [self.round / h, float(available_fraction)]
        for t in MODULE_TYPES:
            values += [1.0 if current[t] == tier else 0.0 for tier in TIERS]
            values += [self.clock.since_edge[t] / h, self.clock.since_cloud[t] / h]
            values += [self.counts[t][k] / h for k in ("d2d", "edge", "cloud")]
        return np.asarray(values, dtype=np.float32)


def episode_features(rounds: Sequence[RoundTrace], horizon: int) -> np.ndarray:
    """``(len(rounds), F)`` features of one episode's rounds (the first may be the reset)."""
    history = TierHistory(horizon)
    return np.stack([history.step(r.tiers, r.available_fraction) for r in rounds])


MAX_TARGET_VALUE = 1e9
"""The largest loss or drift a trace may hold: a fit standardises its targets in float32, whose
squares overflow near 1e19 (a diverged run's loss of 1e20 made a fit that wrote and then would
not load). Real runs' losses and drifts are below 100."""


def _target_matrix(rounds: Sequence[RoundTrace], names: Sequence[str]) -> np.ndarray:
    """``(len(rounds), len(names))`` measured values of one episode (NaN: not measured).
    Raises ``ValueError`` naming a value above :data:`MAX_TARGET_VALUE` (a live calibration's
    rounds are not read through :meth:`RoundTrace.from_dict`)."""
    values = np.array([[r.targets.get(n, float("nan")) for n in names] for r in rounds],
                      dtype=np.float64).reshape(len(rounds), len(names))
    too_large = np.argwhere(np.abs(np.nan_to_num(values)) > MAX_TARGET_VALUE)
    if too_large.size:
        r, k = too_large[0]
        raise ValueError(f"surrogate fit: round {r}'s {names[k]} = {values[r, k]:g}: above "
                         f"{MAX_TARGET_VALUE:g} (a diverged run?); leave such episodes out")
    return values.astype(np.float32)


class _MLP(nn.Module):
    def __init__(self, inputs: int, outputs: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AccuracySurrogate:
    """An ensemble of small MLPs from :class:`TierHistory` features to standardised targets
    (:func:`target_names`). Build it with :meth:`fit` or :meth:`load`.

    ``residuals`` (optional, ``(episodes, rounds + 1, targets)``, NaN where not measured): the
    out-of-fold residuals of the calibration episodes (:func:`out_of_fold_residuals`), which
    :meth:`residual_episode` resamples as noise."""

    def __init__(self, tasks: Sequence[str], horizon: int, members: list[_MLP],
                 x_stats: tuple[np.ndarray, np.ndarray], y_stats: tuple[np.ndarray, ...],
                 meta: dict[str, Any], residuals: np.ndarray | None = None) -> None:
        self.tasks = tuple(tasks)
        self.horizon = int(horizon)
        self.targets = target_names(self.tasks)
        self.members = members
        first = members[0].net[0]
        self.hidden = int(first.out_features) if isinstance(first, nn.Linear) else 0
        """The width of the hidden layers (the weights')."""
        self.x_mean, x_std = (np.asarray(a, dtype=np.float32) for a in x_stats)
        # a feature that never varied in the traces (spread 0, stored as the 1e-6 added to
        # it): its standardised value was 0 throughout, so a spread of 1 fits the same
        # weights, and a value it never took is not blown up a million-fold (availability
        # 0.9 predicted one flat curve when every trace had 1.0)
        self.constant_features = x_std <= _CONSTANT_SPREAD
        self.x_std = np.where(self.constant_features, np.float32(1.0), x_std)
        self._x_spread = x_std  # (as fitted: what save() writes, and load() reads back)
        self._constant_index = np.flatnonzero(self.constant_features)
        self._warned_unseen = False
        # mean, std, and the lowest and highest value seen in the traces: predictions are
        # clipped to that range (an MLP extrapolates without bounds)
        self.y_mean, self.y_std, self.y_low, self.y_high = (
            np.asarray(a, dtype=np.float32) for a in y_stats)
        self.meta = dict(meta)
        self.path: Path | None = None
        """The file it was loaded from (:meth:`load`); ``None`` when fitted in this process."""
        self.file_digest: str | None = None
        """16 hex digits of the SHA-256 of the bytes :meth:`load` read (:attr:`digest`)."""
        self.residuals = None if residuals is None else np.asarray(residuals, dtype=np.float32)
        # numpy copies of the weights: one round's prediction is a few small matmuls, far
        # below torch's per-call overhead
        self._layers = [
            [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
             for m in net.net if isinstance(m, nn.Linear)]
            for net in members
        ]

    @property
    def digest(self) -> str:
        """A digest of the file it was loaded from, as it was read (16 hex digits of its
        SHA-256, whatever the path holds since), the one name of a fit in records (a bench's
        settings, an agent's training processes); ``"in memory"`` when fitted in this
        process."""
        return self.file_digest if self.file_digest is not None else "in memory"

    @property
    def record(self) -> dict[str, Any]:
        """Which fit this is, as plain data for a result's JSON: :attr:`origin`,
        :attr:`digest` and the ``config_key`` it was fitted for (a local ``hffm calibrate``
        fit in the cache is found before the shipped one: a result must say which it ran on)."""
        return {"origin": self.origin, "digest": self.digest,
                "config_key": self.meta.get("config_key")}

    @property
    def origin(self) -> str:
        """Where it came from, in words: the fit shipped with the package, a file (a
        calibrated fit in the cache, or one given by path), or this process."""
        if self.path is None:
            return "a fit made in this process"
        if self.path.resolve().parent == PACKAGED_DIR.resolve():
            return f"the fit shipped with the package ({self.path.name})"
        return f"the fit in {self.path}"

    # ----------------------------------------------------------------------------------------

    @staticmethod
    def check_schedule(schedule: Schedule) -> None:
        """Raise ``ValueError`` when ``schedule`` asks for what the features do not describe:
        clusters left out of the cloud (``Schedule.cloud_clusters``; the features know each
        module type's tier, for every cluster at once)."""
        if not all(schedule.cloud_clusters):
            raise ValueError(f"Schedule.cloud_clusters = {schedule.cloud_clusters}: the "
                             "surrogate does not model clusters left out of the cloud; play "
                             "it in train or cost fidelity")

    @classmethod
    def fit(cls, episodes: Sequence[Sequence[RoundTrace]], tasks: Sequence[str], horizon: int,
            *, seed: int = 0, members: int = 4, hidden: int = 64, iterations: int = 3000,
            lr: float = 3e-3, weight_decay: float = 1e-4,
            meta: dict[str, Any] | None = None) -> AccuracySurrogate:
        """Fit on real-training ``episodes`` (full batch AdamW, masked squared error in
        standardised units; unmeasured targets are ignored)."""
        names = target_names(tasks)
        longest = max((len(e) - 1 for e in episodes), default=0)
        if longest > horizon:  # (its round feature would pass 1: rounds never seen in use)
            raise ValueError(f"surrogate fit: an episode of {longest} rounds, longer than the "
                             f"horizon {horizon}")
        if not episodes:
            raise ValueError("surrogate fit: no episodes to fit")
        if not (is_integer(members) and members >= 1 and is_integer(hidden) and hidden >= 1):
            raise ValueError(f"surrogate fit: members = {members!r}, hidden = {hidden!r}: "
                             "must be integers >= 1")
        x = np.concatenate([episode_features(e, horizon) for e in episodes])
        y = np.concatenate([_target_matrix(e, names) for e in episodes])
        # a target a config never measures (held-out accuracy with data.held_out_samples=0)
        # is predicted NaN, as train fidelity reports it; the global accuracy, measured every
        # round, must be there
        never = ~np.isfinite(y).any(axis=0)
        missing = [n for n, no in zip(names, never, strict=True)
                   if no and n.split("/")[0] == "accuracy"]
        if missing:
            raise ValueError(f"surrogate fit: no measured value of {missing}")
        y = np.where(never, np.float32(0.0), y)  # (placeholders: masked out of the loss)
        # a feature that never varied: its own value and no spread, exactly (a float32 mean
        # of 280 values of 0.9 is not 0.9, and its spread was not 0: it was not told apart)
        constant = x.max(0) == x.min(0)
        x_mean = np.where(constant, x[0], x.mean(0))
        x_std = np.where(constant, 0.0, x.std(0)) + 1e-6
        y_mean = np.nanmean(y, 0)
        y_std = np.nanstd(y, 0) + 1e-6
        # the range predictions are clipped to: NaN for a target never measured
        y_low = np.where(never, np.nan, np.nanmin(y, 0))
        y_high = np.where(never, np.nan, np.nanmax(y, 0))
        xt = torch.as_tensor((x - x_mean) / x_std)
        yt = torch.as_tensor(np.nan_to_num((y - y_mean) / y_std))
        mask = torch.as_tensor(np.isfinite(y) & ~never, dtype=torch.float32)
        nets = []
        for k in range(members):
            # (float32 nets whatever the caller's default dtype: the inputs are float32)
            with torch.random.fork_rng(devices=[]), float32_default():
                torch.default_generator.manual_seed(seed * 1000 + k)  # (CPU only; the
                net = _MLP(x.shape[1], y.shape[1], hidden)            # caller's untouched)
            opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
            for _ in range(iterations):
                opt.zero_grad()
                loss = (((net(xt) - yt) ** 2) * mask).sum() / mask.sum()
                loss.backward()
                opt.step()
            net.eval()
            nets.append(net)
        facts = {"rounds": int(len(x)), "episodes": len(episodes), "seed": seed,
                 "members": members, "hidden": hidden, "iterations": iterations,
                 "never_measured": [n for n, no in zip(names, never, strict=True) if no]}
        clash = sorted(set(meta or {}) & set(facts))
        if clash:  # (meta={"hidden": 8} saved a file its own load refused)
            raise ValueError(f"meta: {clash} are facts of the fit itself; give other keys")
        info = {**facts, **(meta or {})}
        surrogate = cls(tasks, horizon, nets, (x_mean, x_std), (y_mean, y_std, y_low, y_high),
                        info)
        pred = surrogate.predict_features(x)
        err = np.abs(pred - y)
        surrogate.meta["fit_mae"] = {n: float(np.nanmean(err[:, j])) for j, n in enumerate(names)
                                     if np.isfinite(err[:, j]).any()}
        return surrogate

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """``(B, targets)`` predictions in real units for features ``(B, F)``: the ensemble
        mean, clipped to the range of values seen in the traces."""
        x = np.asarray(x, dtype=np.float32)
        constant = self._constant_index
        if not self._warned_unseen and constant.size:
            unseen = (np.abs(x[:, constant] - self.x_mean[constant]) > 1e-6).any(axis=0)
            if unseen.any():
                self._warned_unseen = True
                feature = int(constant[np.argmax(unseen)])  # (the first that moved)
                first = TierHistory.feature_names()[feature]
                mean = float(self.x_mean[feature])
                warnings.warn(f"the surrogate's traces never had {first} other than {mean:g}; "
                              "its predictions for other values are extrapolation (calibrate "
                              "for this config: hffm calibrate)", SurrogateMismatch,
                              stacklevel=3)
        z = (x - self.x_mean) / self.x_std
        total = np.zeros((z.shape[0], len(self.targets)), dtype=np.float32)
        for layers in self._layers:
            h = z
            for k, (w, b) in enumerate(layers):
                h = h @ w + b
                if k < len(layers) - 1:
                    h = h * 0.5 * (1.0 + np.tanh(0.5 * h))  # SiLU, without overflow
            total += h
        out = total / len(self._layers) * self.y_std + self.y_mean
        return np.clip(out, self.y_low, self.y_high)

    def predict(self, features: np.ndarray, noise: np.ndarray | None = None) -> dict[str, float]:
        """Target name -> predicted value for one round's features ``(F,)``; ``noise``
        (``(targets,)``, e.g. a row of :meth:`residual_episode`) is added before clipping to
        the range seen in the traces."""
        row = self.predict_features(np.asarray(features)[None])[0]
        if noise is not None:
            row = np.clip(row + noise, self.y_low, self.y_high)
        return {n: float(v) for n, v in zip(self.targets, row, strict=True)}

    def residual_noise(self) -> np.ndarray:
        """Every calibration episode's out-of-fold residuals as noise for :meth:`predict`,
        ``(episodes, rounds + 1, targets)``: the global accuracy per task only (measured every
        round, what rewards and targets read), zero elsewhere and where a round was not
        measured; past the end of an episode that ended early (an energy budget), its last
        round's, as for rounds past the recorded ones. Raises ``ValueError`` when the fit kept
        no residuals, or none of a measured accuracy."""
        if self.residuals is None or len(self.residuals) == 0:
            raise ValueError("this surrogate kept no out-of-fold residuals (fitted before they "
                             "were recorded, or on one episode); refit it with `hffm calibrate "
                             "--from-traces ...` to use env.surrogate_noise='residuals'")
        keep = np.array([n.startswith("accuracy/") for n in self.targets])
        measured = keep & np.isfinite(self.residuals)
        if not measured.any():  # the noise would be zero throughout: no noise, silently
            raise ValueError("this surrogate's out-of-fold residuals hold no measured accuracy "
                             "(every entry is NaN); refit it with `hffm calibrate --from-traces "
                             "...` to use env.surrogate_noise='residuals'")
        noise = np.where(measured, self.residuals, 0.0).astype(np.float32)
        # (episodes, rounds + 1): measured is 3-d, so this is an array, never numpy's scalar
        measured_rounds = cast(np.ndarray, measured.any(axis=-1))
        for episode, rows in zip(noise, measured_rounds, strict=True):
            last = int(np.flatnonzero(rows)[-1]) if rows.any() else -1
            if 0 <= last < len(episode) - 1:  # an episode that ended early
                episode[last + 1:] = episode[last]
        return noise

    def keep_residuals(self, residuals: np.ndarray, **about: Any) -> None:
        """Keep the calibration episodes' out-of-fold residuals (``(episodes, rounds + 1,
        targets)``, :func:`out_of_fold_residuals`) as the noise of
        ``env.surrogate_noise="residuals"``, with a summary in ``meta["residuals"]``:
        ``about`` (how they were made), the number of episodes, and the spread and mean
        absolute value of their mean accuracy over the rounds played."""
        array = np.asarray(residuals)
        if array.ndim != 3 or array.shape[-1] != len(self.targets):
            raise ValueError(f"residuals of shape {array.shape}: must be (episodes, rounds + 1, "
                             f"{len(self.targets)} targets)")
        self.residuals = array
        accuracy = [j for j, n in enumerate(self.targets) if n.startswith("accuracy/")]
        mean = np.nanmean(array[:, 1:, accuracy], axis=-1)
        self.meta["residuals"] = {**about, "episodes": len(array),
                                  "mean_accuracy_std": float(np.nanstd(mean)),
                                  "mean_accuracy_mae": float(np.nanmean(np.abs(mean)))}

    def residual_episode(self, rng: np.random.Generator) -> np.ndarray:
        """One episode of :meth:`residual_noise`, drawn uniformly with ``rng``:
        ``(rounds + 1, targets)``."""
        noise = self.residual_noise()
        return noise[int(rng.integers(len(noise)))]

    # ----------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the surrogate (weights, normalisation, meta) to ``path`` atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "format": SURROGATE_FORMAT, "tasks": list(self.tasks), "horizon": self.horizon,
            "hidden": self.hidden, "inputs": len(TierHistory.feature_names()),
            "members": [net.state_dict() for net in self.members],
            "x_stats": [torch.as_tensor(self.x_mean), torch.as_tensor(self._x_spread)],
            "y_stats": [torch.as_tensor(a) for a in (self.y_mean, self.y_std, self.y_low,
                                                      self.y_high)],
            "meta": json.dumps(self.meta),
        }
        if self.residuals is not None:
            record["residuals"] = torch.as_tensor(self.residuals)
        # (two processes saving one path wrote into one .tmp: a reader found half a file)
        write_atomically(path, lambda handle: torch.save(record, handle))

    @classmethod
    def load(cls, path: str | Path) -> AccuracySurrogate:
        """Read a surrogate written by :meth:`save` (tensors and plain data only)."""
        path = require_path(path, "surrogate")
        if not path.is_file():
            raise SurrogateMissing(f"no fitted surrogate at {path}")
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            record = load_tensors(path)  # no pickled code
        except (ValueError, OSError) as err:
            raise ValueError(f"{path}: not a fitted surrogate: {err}") from None
        if not isinstance(record, dict) or record.get("format") != SURROGATE_FORMAT:
            record = record if isinstance(record, dict) else {}
            raise ValueError(f"{path}: surrogate format {record.get('format')!r}, this version "
                             f"reads {SURROGATE_FORMAT}; run `hffm calibrate` again")
        try:
            loaded = cls._from_record(record)
            loaded.path, loaded.file_digest = path, digest
            return loaded
        except _BadRecord as err:
            raise ValueError(f"{path}: not a usable fitted surrogate: {err}; run `hffm "
                             "calibrate` again") from None

    @classmethod
    @float32_default()
    def _from_record(cls, record: dict[str, Any]) -> AccuracySurrogate:
        """The surrogate of a loaded record, each field checked (:class:`_BadRecord` names the
        first that is missing or malformed, instead of an error from deep in torch)."""
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                shown = repr(record.get(name, "missing"))[:80]
                raise _BadRecord(f"{name} = {shown}: {what}")

        tasks, horizon = record.get("tasks"), record.get("horizon")
        need(isinstance(tasks, list) and bool(tasks) and all(isinstance(t, str) for t in tasks),
             "tasks", "must be a list of task names")
        need(is_integer(horizon) and 1 <= horizon <= MAX_EPISODE_ROUNDS, "horizon",
             f"must be an integer in 1..{MAX_EPISODE_ROUNDS} (episode rounds)")
        tasks, horizon = cast("list[str]", tasks), cast(int, horizon)  # as need() checked
        inputs, outputs = len(TierHistory.feature_names()), len(target_names(tasks))
        need(record.get("inputs") == inputs, "inputs", f"this version's features are {inputs}")
        hidden = record.get("hidden")
        need(isinstance(hidden, int) and hidden >= 1, "hidden", "must be an integer >= 1")
        members = record.get("members")
        need(isinstance(members, list) and bool(members), "members", "must be a non-empty list")
        hidden, members = cast(int, hidden), cast("list[Any]", members)  # as need() checked
        nets = []
        with torch.random.fork_rng(devices=[]):  # the layers' initial draws (overwritten by
            for k, state in enumerate(members):  # the state) leave the caller's stream alone
                net = _MLP(inputs, outputs, hidden)
                try:
                    net.load_state_dict(state)
                except (RuntimeError, TypeError, AttributeError) as err:
                    raise _BadRecord(f"members[{k}]: weights of another shape or kind "
                                     f"({error_line(err, 120)})") from None
                if non_finite_tensors(net.state_dict()):
                    raise _BadRecord(f"members[{k}]: non-finite weights")
                net.eval()
                nets.append(net)
        stats = {}
        for name, count, size in (("x_stats", 2, inputs), ("y_stats", 4, outputs)):
            value = record.get(name)
            need(isinstance(value, (list, tuple)) and len(value) == count
                 and all(isinstance(t, torch.Tensor) and tuple(t.shape) == (size,)
                         # (an output range is NaN for a target never measured)
                         and bool((torch.isfinite(t) | (torch.isnan(t) & (
                             j >= 2 and name == "y_stats"))).all())
                         for j, t in enumerate(value)),
                 name, f"must be {count} finite vectors of {size}")
            vectors = cast("Sequence[torch.Tensor]", value)  # as need() checked
            stats[name] = tuple(t.numpy() for t in vectors)
        # a fit's spreads are > 0 (it adds 1e-6) and its output range is a range: a zero
        # spread made every prediction NaN, reported as "not measured" without a word
        low, high = stats["y_stats"][2], stats["y_stats"][3]
        never = np.isnan(low) & np.isnan(high)  # (a target never measured: predicted NaN)
        is_accuracy = np.array([n.split("/")[0] in ACCURACY_KINDS
                                for n in target_names(tasks)])
        need(bool((stats["x_stats"][1] > 0).all()), "x_stats", "its spreads must be > 0")
        need(bool((stats["y_stats"][1] > 0).all())
             and bool((never | (low <= high)).all()), "y_stats",
             "its spreads must be > 0 and each output's low <= high (both NaN: never measured)")
        need(not bool(never[[n.startswith("accuracy/") for n in target_names(tasks)]].any()),
             "y_stats", "the global accuracy's range must be finite (it is measured every "
             "round)")
        # the range predictions are clipped to: accuracies within [0, 1], losses and drifts
        # not below 0 (an edited file predicted accuracies of 1.3)
        need(bool((never | (low >= 0)).all()) and bool((never | (high <= 1))[is_accuracy].all()),
             "y_stats", "its output range must lie within [0, 1] for accuracies and >= 0 for "
             "losses and drifts")
        text = record.get("meta")
        try:  # anything but text is no JSON object (json.loads would raise TypeError on it)
            meta = json.loads(text) if isinstance(text, (str, bytes, bytearray)) else None
        except json.JSONDecodeError:
            meta = None
        need(isinstance(meta, dict), "meta", "must be a JSON object")
        meta = cast("dict[str, Any]", meta)  # as need() checked
        key = meta.get("config_key")
        if not (key is None or isinstance(key, str) and re.fullmatch(r"[0-9a-f]+", key)):
            raise _BadRecord(f"meta.config_key = {str(key)[:80]!r}: must be a hex digest "
                             "(surrogate_key) or absent")
        residuals = record.get("residuals")
        need(residuals is None or (
            isinstance(residuals, torch.Tensor) and residuals.ndim == 3
            and residuals.shape[0] >= 1 and 2 <= residuals.shape[1] <= horizon + 1
            and residuals.shape[-1] == outputs
            and not bool(torch.isinf(residuals).any())), "residuals",
             f"must be None or (episodes >= 1, rounds + 1 in 2..{horizon + 1}, {outputs}), "
             "finite or NaN (not measured)")
        x_stats = cast("tuple[np.ndarray, np.ndarray]", stats["x_stats"])  # 2, as checked
        return cls(tasks, horizon, nets, x_stats, stats["y_stats"], meta,
                   None if residuals is None else residuals.numpy())


class _BadRecord(ValueError):
    """A field of a surrogate file that is missing or malformed."""


def out_of_fold_residuals(episodes: Sequence[Sequence[RoundTrace]], groups: Sequence[int],
                          tasks: Sequence[str], horizon: int, *, folds: int = 4,
                          seed: int = 0, **fit_kwargs: Any) -> np.ndarray:
    """Real minus predicted for every round of every episode, each episode predicted by a fit
    on the folds that do not hold its group (``groups``: one label per episode, e.g. its seed,
    so that the residuals are those of unseen seeds, as in use). The distinct groups are dealt
    round-robin into ``min(folds, groups)`` folds; needs at least two groups. Returns
    ``(episodes, rounds of the longest, targets)``, NaN where a round was not measured or an
    episode is shorter than the longest."""
    if len(episodes) != len(groups):
        raise ValueError(f"out_of_fold_residuals: {len(episodes)} episodes, {len(groups)} groups")
    distinct = sorted(set(groups))
    if len(distinct) < 2:
        raise ValueError(f"out_of_fold_residuals: needs at least 2 groups, got {distinct}")
    folds = min(folds, len(distinct))
    fold_of = {g: k % folds for k, g in enumerate(distinct)}
    names = target_names(tasks)
    longest = max(len(e) for e in episodes)
    out = np.full((len(episodes), longest, len(names)), np.nan, dtype=np.float32)
    for k in range(folds):
        held = [i for i, g in enumerate(groups) if fold_of[g] == k]
        fitted = AccuracySurrogate.fit([e for e, g in zip(episodes, groups, strict=True)
                                        if fold_of[g] != k], tasks, horizon, seed=seed,
                                       **fit_kwargs)
        # a fold's fit meets feature values only the other folds played (an agent's tiers,
        # another seed's availability): that is the out-of-fold error itself, not a config
        # to calibrate for, so its warning is not the user's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SurrogateMismatch)
            for i in held:
                rounds = episodes[i]
                real = _target_matrix(rounds, names)
                out[i, :len(rounds)] = real - fitted.predict_features(
                    episode_features(rounds, horizon))
    return out


class SurrogateRounds:
    """The surrogate fidelity's rounds of one episode: the features of the tiers played so far
    (:class:`TierHistory`), the fitted surrogate's prediction for each round, with one
    episode of its out-of-fold residuals added when ``resample_noise``, as the accuracies,
    losses and drift that train fidelity would have measured.

    As in train fidelity, a round that the evaluation budget does not measure in full reports
    only the global accuracy (local and held-out NaN); :attr:`prediction` keeps the whole
    prediction for a round measured afterwards (the last round of a budget-ended episode).
    The drift at reset is 0 (every copy starts equal)."""

    def __init__(self, surrogate: AccuracySurrogate, tasks: Sequence[str], num_devices: int,
                 *, resample_noise: bool) -> None:
        self.surrogate = surrogate
        self.tasks = tuple(tasks)
        self.num_devices = num_devices
        self.resample_noise = resample_noise
        # features scaled by the horizon the surrogate was fitted at
        self.history = TierHistory(surrogate.horizon)
        self.prediction: Evaluation | None = None
        """The last round's whole prediction, measured in full or not."""
        self.loss_per_task: dict[str, float] = {}
        """The last round's predicted training loss per task."""
        self.drift: dict[str, tuple[float, float]] = {t: (0.0, 0.0) for t in MODULE_TYPES}
        """Per module type, the predicted drift from the cluster and global means."""
        self._noise: np.ndarray | None = None  # this episode's, (rounds + 1, targets)

    def reset(self, rng: np.random.Generator, available_fraction: float) -> Evaluation:
        """A new episode (its noise drawn with ``rng``); the prediction at reset."""
        self.history.reset()
        self._noise = self.surrogate.residual_episode(rng) if self.resample_noise else None
        return self.play(None, available_fraction)

    def play(self, tiers: Mapping[str, Tier] | None, available_fraction: float,
             full: bool = True) -> Evaluation:
        """The prediction after a round that aggregated at ``tiers`` (None: at reset) with
        ``available_fraction`` of the devices available; ``full``: the evaluation budget
        measures the local and held-out accuracy this round."""
        features = self.history.step(tiers, available_fraction)
        noise = None
        if self._noise is not None:  # past the recorded rounds: its last round's
            noise = self._noise[min(self.history.round, len(self._noise) - 1)]
        pred = self.surrogate.predict(features, noise)

        def per_task(kind: str) -> dict[str, float]:
            out = {t: pred[f"{kind}/{t}"] for t in self.tasks}
            out["mean"] = mean_over_tasks(out)
            return out

        accuracy, accuracy_local, accuracy_held_out = (per_task(k) for k in ACCURACY_KINDS)
        self.prediction = Evaluation(accuracy, accuracy_local, accuracy_held_out,
                                     np.full((self.num_devices, len(self.tasks)), np.nan))
        self.loss_per_task = {t: pred[f"loss/{t}"] for t in self.tasks}
        self.drift = {m: (0.0, 0.0) if tiers is None
                      else (pred[f"drift/{m}/{SCOPES[0]}"], pred[f"drift/{m}/{SCOPES[1]}"])
                      for m in MODULE_TYPES}
        if full:
            return self.prediction
        return Evaluation.unmeasured(self.tasks, self.num_devices, self.prediction.accuracy)

    def measured(self, result: RoundResult, scores: Evaluation) -> RoundResult:
        """The engine's ``result`` of the round (a :class:`~hffm_env.fl.engine.RoundResult`,
        priced, nothing measured) with the accuracies ``scores`` (from :meth:`play`) and the
        predicted losses: a new result, the engine's left as it was."""
        return dataclasses.replace(
            result, accuracy=scores.accuracy, accuracy_local=scores.accuracy_local,
            accuracy_held_out=scores.accuracy_held_out,
            loss_per_task=dict(self.loss_per_task),
            train_loss=float(np.mean(list(self.loss_per_task.values()))))
