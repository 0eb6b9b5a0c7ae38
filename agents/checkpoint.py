"""Agent folders: saving and loading trained schedulers without running code from files.

An *agent folder* is what ``train_agent.py`` writes as its final model and as every
checkpoint (``checkpoints/step_<N>/``):

- ``model.zip``: stable-baselines3's archive (policy weights, optimiser state, hyper-parameters);
- ``agent.json``: plain data: the algorithm, PPO's clip range, the timesteps trained, the
  scenario and fidelity;
- ``vecnormalize.npz`` (when training normalised observations and rewards): the running
  statistics as plain arrays.

SB3's archive stores some entries (spaces, schedules, the policy class, rollout state) as
cloudpickle blobs, and ``pickle.load`` of a ``VecNormalize`` runs whatever the file says.
Loading here never unpickles: every serialized entry of the archive is replaced through SB3's
``custom_objects`` by a value rebuilt from the env and ``agent.json`` (an archive with any other
serialized entry is refused), the weights are read by ``torch.load(weights_only=True)``, and
normalisation statistics come from the ``.npz`` (read with ``allow_pickle=False``). This holds
for evaluation (``hffm bench --agent``) and for ``--resume`` alike.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import shlex
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from hffm_env import jsonio
from hffm_env.arguments import error_line
from hffm_env.files import require_path
from hffm_env.values import is_finite_real, shown

if TYPE_CHECKING:  # (SB3 is imported when a model is saved or loaded, not before)
    from stable_baselines3.common.policies import BasePolicy

    from hffm_env.config import ScenarioConfig

__all__ = [
    "AgentFileError",
    "AgentFolder",
    "AgentInfo",
    "Normalization",
    "algo_class",
    "checkpoint_folder",
    "checkpoint_step",
    "saved_checkpoints",
    "clear_folder",
    "find_agent",
    "load_model",
    "save_agent",
    "OtherSettingsWarning",
    "SettingsCheck",
    "action_size_words",
    "names_an_agent",
    "plays_its_configs_reward",
    "with_reward_of",
    "trained_on",
    "training_process",
    "ALGO_CLASSES",
    "SETTING_FLAGS",
    "setting_overrides",
    "INFO_FILE",
    "POLICY_FILE",
    "ACTION_MODES",
    "ENGINES",
]

SETTING_FLAGS = ("accuracy_weight", "latency_weight", "energy_weight", "episode_rounds")
"""Training flags that set ``env.<name>`` of the scenario config (as ``--set env.<name>=...``
would); ``train_args.json`` records them beside its ``overrides``."""


def setting_overrides(settings: Mapping[str, Any], overrides: Iterable[str]) -> list[str]:
    """A run's scenario overrides: ``env.<name>=value`` for each of :data:`SETTING_FLAGS` that
    ``settings`` gives (not None), then ``overrides`` (the ``--set`` values). The one rule of
    training's config (:meth:`TrainArgs.scenario_overrides`) and of reading it back from
    ``train_args.json``."""
    flags = [f"env.{name}={settings[name]}" for name in SETTING_FLAGS
             if settings.get(name) is not None]
    return [*flags, *overrides]

MODEL_FILE = "model.zip"
INFO_FILE = "agent.json"
NORMALIZATION_FILE = "vecnormalize.npz"
POLICY_FILE = "policy.pt"  # an RLlib agent's weights (hffm_env.agents.rllib)
CHECKPOINTS = "checkpoints"  # a run's checkpoints: OUT/checkpoints/step_<N>/
TRAIN_ARGS_FILE = "train_args.json"  # a training run's flags and state (agents.common)
RLLIB_CHECKPOINT_DIR = "rllib"  # an RLlib agent's own checkpoint, for --resume


def checkpoint_folder(timesteps: int) -> Path:
    """Where a run saves its checkpoint after ``timesteps``, relative to its ``--out``."""
    return Path(CHECKPOINTS) / f"step_{timesteps:08d}"


def checkpoint_step(folder: Path) -> int | None:
    """The timesteps after which ``folder`` was saved, if it is a run's checkpoint folder
    (:func:`checkpoint_folder`: ``<out>/checkpoints/step_<N>``), else None."""
    named = re.fullmatch(r"step_(\d+)", folder.name)
    return int(named.group(1)) if named and folder.parent.name == CHECKPOINTS else None


def saved_checkpoints(out: Path) -> dict[int, Path]:
    """The checkpoint folders of the run in ``out``, by the timesteps they were saved after."""
    found = {checkpoint_step(p): p for p in (out / CHECKPOINTS).glob("step_*")}
    return {step: found[step] for step in sorted(s for s in found if s is not None)}

ALGO_CLASSES = {"ppo": "stable_baselines3.PPO", "maskable-ppo": "sb3_contrib.MaskablePPO"}
"""Algorithm name -> the SB3 class that trains and loads it."""

# The serialized (cloudpickled) entries SB3's PPO and MaskablePPO write. Each is rebuilt or
# reset when loading; any other serialized entry makes the archive one we do not load.
_REPLACED_ENTRIES = (
    "policy_class", "observation_space", "action_space", "lr_schedule", "clip_range",
    "rollout_buffer_class", "_last_obs", "_last_original_obs", "_last_episode_starts",
    "ep_info_buffer",
    "ep_success_buffer",
)


class AgentFileError(ValueError):
    """An agent path that is not a loadable agent folder; the message says why, in one line."""


ACTION_MODES = ("full", "coarse", "menu")
"""How a policy acts: the env's full action, :class:`hffm_env.wrappers.CoarseActions` or
:class:`hffm_env.wrappers.ScheduleMenu`."""

ENGINES = ("sb3", "rllib")
"""What trains an agent: stable-baselines3 (``model.zip``) or RLlib (``policy.pt``)."""

_MAX_HIDDEN_SIZE = 1 << 16  # a layer wider than this is a typo in agent.json, not a network
_MAX_TIMESTEPS = 2**63 - 1  # stable-baselines3 and the logs count timesteps in int64
SB3_CLIP_RANGE = 0.2
"""stable-baselines3 PPO's default clip range: loading takes it for an ``agent.json`` that
names none."""


@dataclass(frozen=True)
class AgentInfo:
    """The plain-data description of a saved agent (``agent.json``)."""

    algo: str
    # PPO's clip range; None: the model's (save_agent records it), SB3_CLIP_RANGE when loaded
    clip_range: float | None = None
    num_timesteps: int = 0
    scenario: str = ""
    fidelity: str = ""  # of its latest training steps ("train" once fine-tuned)
    action_mode: str = "full"  # "coarse": the policy acts through hffm_env.wrappers.CoarseActions
    engine: str = "sb3"  # "rllib": policy.pt and rllib/ instead of model.zip (agents/rllib.py)
    multi_agent: bool = False  # RLlib only: an edge module and a cloud module
    # multi-agent only: the edge module's observation ends in a one-hot of its cluster (the
    # parallel env's agent_indicator); False in folders written before it was added
    agent_indicator: bool = False
    # multi-agent only: how the reward was split among the agents (HFFMParallelEnv's
    # reward_split, --reward-split); None: single-agent, or a folder written before it was said
    reward_split: str | None = None
    hidden_sizes: tuple[int, ...] = (64, 64)  # RLlib only: the network to rebuild
    normalized: bool | None = None  # trained on VecNormalize (vecnormalize.npz); None: not said
    overrides: tuple[str, ...] | None = None  # the run's scenario overrides; None: not said
    config_file: str | None = None  # the run's --config file, if any
    # the whole scenario config trained on, as plain data: the folder still says when it has
    # moved away from its --config file, or the file has changed since; None: not recorded
    config: dict[str, Any] | None = None
    # the custom reward callable trained under (its module.qualname, reward_label); None: the
    # config's named env.reward (a callable cannot be recorded in the config)
    custom_reward: str | None = None
    # the training processes that made these weights, oldest first, across resumes, one
    # entry per phase of each: {"timesteps": [from, to], "fidelity", "provenance": its
    # record (hffm_env.provenance), and "surrogate": the fit, on the surrogate}; () in
    # folders written before it was recorded (no "fidelity" in those before 2026-12-07)
    trained_by: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        """Refuse a value of the wrong kind (a hand-edited ``agent.json``), naming the field
        and the value as the file spells it."""
        def refuse(name: str, allowed: str) -> None:
            value = getattr(self, name)
            try:  # as the file spells it, unless too long to read
                text = json.dumps(list(value) if isinstance(value, tuple) else value)
            except (TypeError, ValueError):
                text = ""
            raise ValueError(f"{name} = {text if 0 < len(text) <= 200 else shown(value)}: "
                             f"must be {allowed}")

        def number(value: Any) -> bool:  # finite, numpy's included, not a boolean
            return is_finite_real(value)

        for name in ("algo", "scenario", "fidelity"):
            if not isinstance(getattr(self, name), str):
                refuse(name, "a string")
        if self.config is not None and not isinstance(self.config, dict):
            from hffm_env.config import ScenarioConfig, to_dict

            if isinstance(self.config, ScenarioConfig):  # as plain data, as the file holds it
                object.__setattr__(self, "config", to_dict(self.config))
        if self.action_mode not in ACTION_MODES:
            refuse("action_mode", f"one of {list(ACTION_MODES)}")
        if self.engine not in ENGINES:
            refuse("engine", f"one of {list(ENGINES)}")
        if not (number(self.num_timesteps) and int(self.num_timesteps) == self.num_timesteps
                and 0 <= self.num_timesteps <= _MAX_TIMESTEPS):
            refuse("num_timesteps", f"an integer in 0..{_MAX_TIMESTEPS}")
        if self.clip_range is not None and not (number(self.clip_range)
                                                and self.clip_range > 0):
            refuse("clip_range", "a number > 0 (PPO's clip range) or null (not said: "
                   "SB3's 0.2 when loaded)")
        if not isinstance(self.multi_agent, bool):
            refuse("multi_agent", "true or false")
        if self.multi_agent and self.engine != "rllib":
            refuse("multi_agent", "false for an agent trained with stable-baselines3")
        if not isinstance(self.agent_indicator, bool):
            refuse("agent_indicator", "true or false")
        if self.agent_indicator and not self.multi_agent:
            refuse("agent_indicator", "false for a single-agent policy")
        from hffm_env.config import REWARD_SPLITS

        if self.reward_split is not None and not (self.multi_agent
                                                  and self.reward_split in REWARD_SPLITS):
            refuse("reward_split", f"one of {list(REWARD_SPLITS)} for a multi-agent policy, "
                   "or absent")
        if self.normalized is not None and not isinstance(self.normalized, bool):
            refuse("normalized", "true, false or absent")
        sizes = self.hidden_sizes
        if not (isinstance(sizes, (list, tuple)) and sizes and all(
                number(h) and h == int(h) and 1 <= h <= _MAX_HIDDEN_SIZE for h in sizes)):
            refuse("hidden_sizes", f"a non-empty list of layer widths in 1..{_MAX_HIDDEN_SIZE}")
        if self.overrides is not None and not (isinstance(self.overrides, (list, tuple)) and all(
                isinstance(o, str) for o in self.overrides)):
            refuse("overrides", "a list of KEY=VALUE strings (or absent)")
        if self.config_file is not None and not isinstance(self.config_file, str):
            refuse("config_file", "a path (or absent)")
        if self.config is not None and not isinstance(self.config, dict):
            refuse("config", "the scenario config as a mapping (or absent)")
        if self.custom_reward is not None and not (isinstance(self.custom_reward, str)
                                                   and self.custom_reward):
            refuse("custom_reward", "the module.qualname of a reward callable (or absent)")

    def training_config(self) -> ScenarioConfig | None:
        """The scenario config the agent was trained on (:meth:`load_training_config`);
        ``None`` when the folder does not say (written before it was recorded) or what it
        records does not load."""
        try:
            return self.load_training_config()
        except ValueError:
            return None

    def load_training_config(self) -> ScenarioConfig:
        """The scenario config the agent was trained on: the one recorded whole, else (not
        recorded, or no longer a config of this version) the one ``scenario``,
        ``config_file`` and ``overrides`` build. Raises ``ValueError`` saying why there is
        none: nothing recorded, or the error of what is recorded."""
        from hffm_env.config import ConfigError, from_dict, load_scenario

        recorded: ConfigError | None = None
        if self.config is not None:
            try:
                return from_dict(self.config)
            except ConfigError as err:
                recorded = err
        if not self.scenario or self.overrides is None:
            if recorded is not None:
                raise ValueError(f"the config its agent.json records does not load: "
                                 f"{recorded}") from None
            raise ValueError("its agent.json does not say what it was trained on (no config, "
                             "nor a scenario and overrides)")
        try:
            rebuilt = load_scenario(self.scenario, config_file=self.config_file,
                                    overrides=list(self.overrides))
        except (ConfigError, OSError) as err:
            raise ValueError(f"the settings its agent.json records do not load: {err}"
                             ) from None
        if recorded is not None:  # (a config of an older version): say which one is used
            warnings.warn(f"the config its agent.json records does not load ({recorded}); "
                          f"rebuilt instead from its scenario {shown(self.scenario)}, "
                          "config file and overrides", UserWarning, stacklevel=2)
        return rebuilt

    def to_json(self) -> str:
        """As JSON text."""
        return jsonio.dumps(asdict(self))


@dataclass(frozen=True)
class Normalization:
    """VecNormalize's running statistics as plain arrays (``vecnormalize.npz``)."""

    obs_mean: np.ndarray
    obs_var: np.ndarray
    obs_count: float
    ret_mean: float
    ret_var: float
    ret_count: float
    returns: np.ndarray
    clip_obs: float
    clip_reward: float
    gamma: float
    epsilon: float
    norm_obs: bool
    norm_reward: bool

    @classmethod
    def of(cls, vec_normalize: Any) -> Normalization:
        """The statistics of a live ``VecNormalize``; one that normalises rewards only
        (``norm_obs=False``: SB3 keeps no observation statistics then) gets the identity's,
        sized to its observations."""
        v = vec_normalize
        obs_rms = getattr(v, "obs_rms", None) if v.norm_obs else None
        shape = v.observation_space.shape
        return cls(
            obs_mean=(np.zeros(shape) if obs_rms is None
                      else np.asarray(obs_rms.mean, dtype=np.float64)),
            obs_var=(np.ones(shape) if obs_rms is None
                     else np.asarray(obs_rms.var, dtype=np.float64)),
            obs_count=0.0 if obs_rms is None else float(obs_rms.count),
            ret_mean=float(np.asarray(v.ret_rms.mean)), ret_var=float(np.asarray(v.ret_rms.var)),
            ret_count=float(v.ret_rms.count),
            returns=np.asarray(v.returns, dtype=np.float64),
            clip_obs=float(v.clip_obs), clip_reward=float(v.clip_reward), gamma=float(v.gamma),
            epsilon=float(v.epsilon), norm_obs=bool(v.norm_obs), norm_reward=bool(v.norm_reward),
        )

    def save(self, path: Path) -> None:
        """Write as ``.npz`` (plain arrays only)."""
        with open(path, "wb") as handle:
            # (Any: numpy's hint would check each array against savez's allow_pickle too)
            arrays: dict[str, Any] = {k: np.asarray(v) for k, v in asdict(self).items()}
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> Normalization:
        """Read a ``.npz`` written by :meth:`save` (never unpickles)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                values = {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            # numpy's advice to load a pickle "unsafely" would run any code a file holds
            why = str(err).split(". If you trust the file", 1)[0] or type(err).__name__
            if isinstance(err, EOFError):
                why += "; an empty or cut file?"
            raise AgentFileError(f"{path}: not normalisation statistics ({why})") from None
        missing = [f for f in cls.__dataclass_fields__ if f not in values]
        if missing:
            raise AgentFileError(f"{path}: normalisation statistics lack {missing}")
        arrays = {"obs_mean", "obs_var", "returns"}
        flags = {"norm_obs", "norm_reward"}
        # (Any: an array, a flag or a number, as each field takes it)
        fields: dict[str, Any] = {}
        for k in cls.__dataclass_fields__:
            v = values[k]
            try:
                fields[k] = (np.asarray(v, dtype=np.float64) if k in arrays
                             else bool(v) if k in flags else float(v))
            except (TypeError, ValueError) as err:
                raise AgentFileError(f"{path}: {k} = {shown(v)} is not a normalisation "
                                     f"statistic of the right type ({error_line(err, 120)})"
                                     ) from None
        stats = cls(**fields)
        stats.check(path)
        return stats

    def check(self, path: Path | str) -> None:
        """Refuse statistics no ``VecNormalize`` writes (``path`` names the file): means and
        counts not finite, variances, counts or clip bounds below 0."""
        problems = {
            "obs_mean": not np.all(np.isfinite(self.obs_mean)),
            "obs_var": not np.all(np.isfinite(self.obs_var)) or np.any(self.obs_var < 0),
            "obs_count": not (math.isfinite(self.obs_count) and self.obs_count >= 0),
            "ret_mean": not math.isfinite(self.ret_mean),
            "ret_var": not (math.isfinite(self.ret_var) and self.ret_var >= 0),
            "ret_count": not (math.isfinite(self.ret_count) and self.ret_count >= 0),
            "clip_obs": not self.clip_obs > 0,
            "clip_reward": not self.clip_reward > 0,
            "epsilon": not (math.isfinite(self.epsilon) and self.epsilon > 0),
        }
        bad = [name for name, wrong in problems.items() if wrong]
        if bad:
            raise AgentFileError(f"{path}: {bad[0]} = {getattr(self, bad[0])!r} is not a "
                                 "normalisation statistic (finite means, variances and counts "
                                 ">= 0, clip bounds and epsilon > 0)")

    def apply_to(self, vec_normalize: Any) -> None:
        """Restore these statistics into a ``VecNormalize`` of the same observation size."""
        v = vec_normalize
        shape = v.observation_space.shape
        if shape != self.obs_mean.shape:
            raise AgentFileError(
                f"normalisation statistics are for observations of shape {self.obs_mean.shape}, "
                f"the env's are {shape}"
            )
        if self.norm_obs or hasattr(v, "obs_rms"):  # (none kept when rewards only)
            from stable_baselines3.common.running_mean_std import RunningMeanStd

            v.obs_rms = getattr(v, "obs_rms", None) or RunningMeanStd(shape=shape)
            v.obs_rms.mean, v.obs_rms.var = self.obs_mean.copy(), self.obs_var.copy()
            v.obs_rms.count = self.obs_count
        v.ret_rms.mean, v.ret_rms.var = np.float64(self.ret_mean), np.float64(self.ret_var)
        v.ret_rms.count = self.ret_count
        if self.returns.shape == v.returns.shape:
            v.returns = self.returns.copy()
        v.clip_obs, v.clip_reward, v.gamma, v.epsilon = (self.clip_obs, self.clip_reward,
                                                         self.gamma, self.epsilon)
        v.norm_obs, v.norm_reward = self.norm_obs, self.norm_reward

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """An observation as the trained policy saw it."""
        if np.shape(obs) != self.obs_mean.shape:
            raise AgentFileError(
                f"normalisation statistics are for observations of shape {self.obs_mean.shape}, "
                f"the env's are {np.shape(obs)}")
        if not self.norm_obs:
            return np.asarray(obs, dtype=np.float32)
        x = (np.asarray(obs, dtype=np.float64) - self.obs_mean) / np.sqrt(self.obs_var
                                                                          + self.epsilon)
        return np.clip(x, -self.clip_obs, self.clip_obs).astype(np.float32)


@dataclass(frozen=True)
class AgentFolder:
    """A checked agent folder: where its files are and what ``agent.json`` says."""

    folder: Path
    info: AgentInfo
    normalization: Normalization | None

    @property
    def model_path(self) -> Path:
        """The SB3 archive."""
        return self.folder / MODEL_FILE

    @property
    def fingerprint(self) -> str:
        """A digest of the agent's own files (``agent.json``, the weights, the normalisation
        statistics; not the results a run writes beside them): two agents of one name but
        other files are told apart by it (:meth:`BenchResult.merge`)."""
        import hashlib

        digest = hashlib.sha256()
        for name in (INFO_FILE, MODEL_FILE, NORMALIZATION_FILE, POLICY_FILE):
            if (self.folder / name).is_file():
                digest.update(name.encode())
                digest.update((self.folder / name).read_bytes())
        return digest.hexdigest()[:16]

    @property
    def run_folder(self) -> Path:
        """The run this agent belongs to: the run's ``--out`` for a checkpoint
        (:func:`checkpoint_folder`), else the folder itself."""
        checkpoint = checkpoint_step(self.folder) is not None
        return self.folder.parent.parent if checkpoint else self.folder

    def training_config(self) -> ScenarioConfig | None:
        """The scenario config the agent was trained on (:meth:`load_training_config`);
        ``None`` when neither ``agent.json`` nor the run's ``train_args.json`` says, or what
        they say no longer loads."""
        try:
            return self.load_training_config()
        except ValueError:
            return None

    def interrupted_note(self) -> str:
        """When this is the agent of a run that Ctrl-C stopped (its ``train_args.json`` says
        ``interrupted``): that, with the timesteps it has of those the run asked for, in
        words; empty otherwise (a checkpoint is part of a run by design)."""
        if checkpoint_step(self.folder) is not None:
            return ""
        args = _train_args(self.folder)
        try:
            asked = int(args["total_timesteps"]) + int(args.get("finetune_timesteps") or 0)
            interrupted = args.get("interrupted") is True
        except (ValueError, TypeError, KeyError, AttributeError):  # no run's file, or not one
            return ""
        if not interrupted:
            return ""
        return (f"{self.folder}: its training run was interrupted at "
                f"{self.info.num_timesteps} of {asked} timesteps (train_args.json): the agent "
                "is as training left it (--resume continues it)")

    def settings_unchecked(self) -> str:
        """Why an env's settings cannot be checked against the agent's training config (the
        error of :meth:`load_training_config`: nothing recorded, or what is recorded does not
        load), in words; empty when they can."""
        try:
            self.load_training_config()
        except ValueError as err:
            return (f"{self.folder}: {err}, so the env's settings go unchecked (an agent "
                    "saved with AgentInfo(config=env.unwrapped.config) records them)")
        return ""

    def load_training_config(self) -> ScenarioConfig:
        """The scenario config the agent was trained on: :meth:`AgentInfo.load_training_config`,
        else (a folder written before ``agent.json`` recorded its settings) the one its run's
        ``train_args.json`` gives. Raises ``ValueError`` saying why there is none. Read once
        per folder object: its warning (a recorded config rebuilt) is said once, not at
        every check that asks."""
        loaded = self.__dict__.get("_training_config")
        if loaded is None:
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                try:
                    loaded = (self._read_training_config(), None)
                except ValueError as err:
                    loaded = (None, str(err))
            object.__setattr__(self, "_training_config", loaded)  # (frozen: a cache only)
            for warning in said:
                warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                       warning.lineno)
        config, error = loaded
        if config is None:
            raise ValueError(error)
        return cast("ScenarioConfig", config)

    def _read_training_config(self) -> ScenarioConfig:
        try:
            return self.info.load_training_config()
        except ValueError as err:
            if self.info.overrides is not None:  # recorded: train_args.json says no more
                raise
            unrecorded = err
        args = _train_args(self.run_folder)
        try:
            info = replace(self.info, scenario=args["scenario"], config_file=args.get("config"),
                           overrides=tuple(setting_overrides(args, args.get("overrides") or [])))
        except (KeyError, TypeError, AttributeError, ValueError):  # none, or not what
            # train_agent writes (a hand-edited file AgentInfo refuses)
            raise ValueError(f"{unrecorded}, and its run has no train_args.json that does"
                             ) from None
        return info.load_training_config()


_SAFE_MODELS = ("; a model of your own loads when it is a PPO or MaskablePPO with a constant "
                "learning rate and policy_kwargs of plain values, such as net_arch")
_SAFE_ENTRY_FIX = {
    "learning_rate": "set model.learning_rate to a number before saving it",
    "policy_kwargs": "train with policy_kwargs of plain values only (net_arch, ortho_init, "
                     "...; an activation or optimiser class is code)",
}
"""What to change, for the serialized entries a model of one's own most often has."""


def _safe_models(entry: str) -> str:
    """:data:`_SAFE_MODELS`, with what to change for ``entry`` when it is a common one (the
    learning-rate advice was given for an activation class in ``policy_kwargs`` too)."""
    fix = _SAFE_ENTRY_FIX.get(entry)
    return _SAFE_MODELS + (f": {fix}" if fix else "")


def _unsafe_entries(data: dict[str, Any]) -> list[str]:
    """The entries of an SB3 archive's ``data`` that only unpickling could read (a schedule
    function, an activation class), except those loading replaces with its own values."""
    return [key for key, item in data.items()
            if isinstance(item, dict) and ":serialized:" in item
            and key not in _REPLACED_ENTRIES]


def _check_saving(model: Any, info: AgentInfo, vec_normalize: Any) -> None:
    """Refuse, before anything is written, a folder that would not load: another engine
    (RLlib folders are written by agents/rllib.py), a model of another class than
    ``info.algo``'s, statistics said and not given (or given and not said), statistics that
    are no ``VecNormalize``'s, a recorded config that does not load."""
    if info.engine != "sb3":
        raise AgentFileError(f"save_agent: info.engine = {info.engine!r}: it writes "
                             "stable-baselines3 agents ('sb3'); RLlib runs write their own")
    expected = ALGO_CLASSES.get(info.algo)
    made = f"{type(model).__module__.split('.')[0]}.{type(model).__name__}"
    if made != expected:
        raise AgentFileError(f"save_agent: the model is a {made}, but info.algo = "
                             f"{info.algo!r} is {expected or 'not an algorithm hffm plays'}; "
                             f"known: {ALGO_CLASSES}")
    if info.normalized != (vec_normalize is not None):
        raise AgentFileError(f"save_agent: info.normalized = {info.normalized} but "
                             f"vec_normalize is {'given' if vec_normalize is not None else 'None'}"
                             "; pass the VecNormalize the model was trained on, or none")
    from stable_baselines3.common.vec_env import VecNormalize

    if vec_normalize is not None and not isinstance(vec_normalize, VecNormalize):
        raise AgentFileError(f"save_agent: vec_normalize = {vec_normalize!r}: must be the "
                             "stable-baselines3 VecNormalize the model was trained on")
    if info.config is not None:
        from hffm_env.config import ConfigError, from_dict

        try:
            from_dict(info.config)
        except ConfigError as err:
            raise AgentFileError(f"save_agent: info.config does not load: {err}") from None


def _vec_env_of(model: Any) -> Any:
    """The ``VecEnv`` ``model`` trained on, below SB3's ``VecEnv`` wrappers (VecNormalize,
    VecMonitor, ...); None when it has none."""
    get_env = getattr(model, "get_env", None)
    venv = get_env() if callable(get_env) else None
    while venv is not None and not hasattr(venv, "envs") and hasattr(venv, "venv"):
        venv = venv.venv
    return venv


def _training_env(model: Any) -> tuple[list[Any], Any] | None:
    """The HF-FM env ``model`` trained on and the wrappers around it (outermost first), where
    that is at hand (a ``DummyVecEnv``, under any ``VecEnv`` wrappers); None otherwise."""
    import gymnasium as gym

    envs = getattr(_vec_env_of(model), "envs", None)
    if not envs:
        return None
    layers, env = [], envs[0]
    while isinstance(env, gym.Wrapper):
        layers.append(env)
        env = env.env
    if not hasattr(env, "layout"):  # not an HF-FM env underneath: nothing to compare with
        return None
    return layers, env


def _played_through(model: Any, info: AgentInfo) -> str:
    """Why ``hffm bench --agent`` would not play ``model`` as it was trained, read from the
    env it trained on where that is at hand (:func:`_training_env`): an observation wrapper
    (its transformation is not saved, so the policy would play on raw observations), or
    actions through a wrapper ``info.action_mode`` does not name; empty when neither, or
    when the env cannot be asked (envs in worker processes, a ``SubprocVecEnv``, are asked
    by wrapper class)."""
    import gymnasium as gym

    from hffm_env.wrappers import ActionMaskObservation, CoarseActions, ScheduleMenu

    found = _training_env(model)
    if found is not None:
        layers, env = found

        def wrapped_by(kind: Any) -> str | None:
            return next((type(layer).__name__ for layer in layers if isinstance(layer, kind)),
                        None)
    else:  # envs in worker processes (SubprocVecEnv): asked there, by wrapper class
        venv = _vec_env_of(model)
        if not callable(getattr(venv, "env_is_wrapped", None)):
            return ""

        def wrapped_by(kind: Any) -> str | None:
            for one in kind if isinstance(kind, tuple) else (kind,):
                if any(venv.env_is_wrapped(one)):
                    return str(one.__name__)
            return None

    observed = wrapped_by((ActionMaskObservation, gym.ObservationWrapper))
    if observed is not None:
        return (f"the model trained on observations {observed} transforms, "
                "which an agent folder does not keep (hffm bench --agent would play it on "
                "the env's own); train on the env's observations, normalised by "
                "VecNormalize if at all")
    through = {"coarse": CoarseActions, "menu": ScheduleMenu}.get(info.action_mode)
    acts_through = wrapped_by((CoarseActions, ScheduleMenu))
    if through is None and (acts_through is not None if found is None
                            else model.action_space != env.action_space):
        return (f"the model acts in {model.action_space}, not the env's full action space; "
                "set info.action_mode ('coarse' for CoarseActions, 'menu' for ScheduleMenu)")
    if through is not None and wrapped_by(through) is None:
        return (f"info.action_mode = {info.action_mode!r}, but the model trained without "
                f"{through.__name__}")
    return ""


def save_agent(folder: Path, model: Any, info: AgentInfo, vec_normalize: Any = None) -> None:
    """Write an agent folder (``model.zip``, ``agent.json``, ``vecnormalize.npz``), each file
    written beside its target and moved into place, so a crash never leaves half a file.

    For a model trained with code of your own: ``info`` says what it is (``algo`` ``"ppo"``
    or ``"maskable-ppo"``, matching the model's class) and what it was trained on (best
    ``config=env.unwrapped.config``, or ``scenario`` and ``overrides``), so that ``hffm
    bench --agent`` plays it and notes other settings. ``vec_normalize``: the
    ``VecNormalize`` whose statistics the policy was trained on; by default the one the
    model's env is wrapped in, if any (saved without them, a policy trained on normalised
    observations would play on raw ones). ``info.num_timesteps`` left at 0 takes the
    model's; ``info.custom_reward`` left out names the env's reward callable when it is not
    a named reward (a config cannot hold it; played under another reward, the agent warns).
    A model that could not be loaded without running code from the file (a
    learning-rate schedule, an activation class in ``policy_kwargs``), whose class is not
    ``info.algo``'s, or whose env (when at hand) shows it would not be played as it was
    trained (an observation wrapper, actions through a wrapper ``info.action_mode`` does
    not name: ``"coarse"`` for ``CoarseActions``, ``"menu"`` for ``ScheduleMenu``), raises
    :class:`AgentFileError` and writes nothing."""
    from stable_baselines3.common.vec_env import unwrap_vec_normalize

    folder = Path(folder)
    if not isinstance(info, AgentInfo):
        raise AgentFileError(f"save_agent: info = {shown(info)}: must be an AgentInfo, e.g. "
                             "AgentInfo(algo='ppo', config=env.unwrapped.config)")
    if vec_normalize is None and info.normalized is not False:
        get_env = getattr(model, "get_env", None)
        vec_normalize = unwrap_vec_normalize(get_env()) if callable(get_env) else None
    trained: Any = getattr(model, "num_timesteps", None)  # (SB3's count of the steps)
    if info.num_timesteps == 0 and isinstance(trained, int) and trained > 0:
        info = replace(info, num_timesteps=trained)
    clip = getattr(model, "clip_range", None)  # (SB3 keeps PPO's as a schedule of progress)
    if callable(clip) and is_finite_real(used := clip(1.0)):
        if info.clip_range is None:  # not said: the model's (loading sets it)
            info = replace(info, clip_range=float(used))
        elif not math.isclose(info.clip_range, float(used)):
            raise AgentFileError(f"save_agent: info.clip_range = {info.clip_range!r}, but the "
                                 f"model's is {float(used)!r}; leave info.clip_range out (a "
                                 "loaded or resumed model takes agent.json's)")
    if info.normalized is None:  # what is saved says it: statistics or none
        info = replace(info, normalized=vec_normalize is not None)
    if info.custom_reward is None and (found := _training_env(model)) is not None \
            and not plays_its_configs_reward(found[1]):  # (the config cannot say it)
        from hffm_env.envs.reward import reward_label

        info = replace(info, custom_reward=reward_label(found[1].reward_function))
    _check_saving(model, info, vec_normalize)
    mismatch = _played_through(model, info)
    if mismatch:
        raise AgentFileError(f"save_agent: {mismatch}")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _stage_and_move(model, info, vec_normalize, folder)
    except BaseException:
        # the folder made for it, left empty (a refused model; Ctrl-C inside model.save), read
        # as a run's, or as the latest checkpoint, which --resume then found no model.zip in
        if created and folder.exists() and not any(folder.iterdir()):
            folder.rmdir()
        raise
    if vec_normalize is None and (folder / NORMALIZATION_FILE).exists():
        (folder / NORMALIZATION_FILE).unlink()


def _stage_and_move(model: Any, info: AgentInfo, vec_normalize: Any, folder: Path) -> None:
    """:func:`save_agent`'s writing: every file staged in a temporary folder inside ``folder``,
    then moved in."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".saving-") as tmp:
        staged = Path(tmp)
        model.save(staged / MODEL_FILE)
        with zipfile.ZipFile(staged / MODEL_FILE) as archive:
            foreign = _unsafe_entries(json.loads(archive.read("data").decode()))
        if foreign:
            raise AgentFileError(f"save_agent: the model's {foreign[0]!r} can only be saved as "
                                 f"code, which hffm does not load{_safe_models(foreign[0])}")
        (staged / INFO_FILE).write_text(info.to_json())
        if vec_normalize is not None:
            Normalization.of(vec_normalize).save(staged / NORMALIZATION_FILE)
        for item in staged.iterdir():
            item.replace(folder / item.name)


class OtherSettingsWarning(UserWarning):
    """An agent is played on other settings than it was trained on (the ``hffm`` commands
    print a note of their own instead)."""


class SettingsCheck:
    """Warn (:class:`OtherSettingsWarning`) when an agent plays an env of other settings than
    it was trained on, once per difference: playing it elsewhere can be the point, but a
    result of other settings must not pass unnoticed. Called at every episode's reset, it reads
    the training config once and compares each env's config once (nothing when the folder
    does not say what it was trained on: then a warning says once that nothing is checked)."""

    def __init__(self, agent: AgentFolder) -> None:
        self.agent = agent
        self._trained: Any = None
        self._read = False
        self._last: Any = None  # the config compared last (held: an id could be reused)
        self._said: set[str] = set()

    def __call__(self, name: str, env: Any) -> None:
        """Check ``env`` for the agent's row ``name``."""
        by_callable = self._check_reward(name, getattr(env, "unwrapped", env))
        config = getattr(getattr(env, "unwrapped", env), "config", None)
        if config is None or config is self._last:
            return
        self._last = config
        if self._training_config(name) is None:
            return
        from hffm_env.config import differences_line

        # a config's env.reward is not the reward played where a callable was: said above
        trained = with_reward_of(self._trained, config) if by_callable else self._trained
        line = differences_line(trained, config)
        if line and line not in self._said:
            self._said.add(line)
            warnings.warn(f"{name} was trained with {line}", OtherSettingsWarning, stacklevel=3)

    def _training_config(self, name: str, stacklevel: int = 4) -> Any:
        """The agent's training config, read once (None, and a warning once, when the folder
        does not say: a result of other settings could pass unseen; ``stacklevel``: the
        warning's, pointing where :meth:`__call__` was called from)."""
        if not self._read:
            self._trained, self._read = self.agent.training_config(), True
            if self._trained is None:
                warnings.warn(f"{name}: {self.agent.settings_unchecked()}",
                              OtherSettingsWarning, stacklevel=stacklevel)
        return self._trained

    def _check_reward(self, name: str, env: Any) -> bool:
        """Where a reward other than its config's (a callable, which no config records) was
        trained under or is played under, compare the two rewards by name and warn when
        they differ; whether it did (otherwise the configs' ``env.reward`` says it, in
        :meth:`__call__`)."""
        from hffm_env.envs.reward import reward_label

        played = getattr(env, "reward_function", None)
        trained = self.agent.info.custom_reward
        if played is None or (trained is None and plays_its_configs_reward(env)):
            return False
        if trained is None:  # trained under the config's named reward, if the folder says
            config = self._training_config(name, stacklevel=5)
            trained = config.env.reward if config is not None else None
        here = reward_label(played)
        line = f"the reward {trained} (here {here})" if trained else ""
        if trained != here and line and line not in self._said:
            self._said.add(line)
            warnings.warn(f"{name} was trained under {line}", OtherSettingsWarning,
                          stacklevel=4)
        return True


def plays_its_configs_reward(env: Any) -> bool:
    """Whether an HF-FM env plays the reward its config names (``env.reward``), not a
    callable given in its place (which no config records)."""
    from hffm_env.envs.reward import get_reward

    return bool(env.reward_function is get_reward(env.config.env.reward))


def with_reward_of(trained: ScenarioConfig, config: ScenarioConfig) -> ScenarioConfig:
    """``trained`` with ``config``'s ``env.reward``: for comparing the rest of two configs
    where a reward callable made a config's ``env.reward`` say nothing of what was played."""
    return replace(trained, env=replace(trained.env, reward=config.env.reward))


def names_an_agent(path: str | Path) -> bool:
    """Whether ``path`` names an agent rather than a file of its own: a folder, or a file an
    agent folder holds (``agent.json``, ``model.zip``, ``policy.pt``), as ``--agent`` takes
    them (``--config`` reads an agent's training config from it)."""
    return Path(path).is_dir() or Path(path).name in (INFO_FILE, MODEL_FILE, POLICY_FILE)


def find_agent(path: str | Path) -> AgentFolder:
    """Check an agent folder (or the ``model.zip`` inside one) without loading any weights.

    Raises :class:`AgentFileError` with one line: no such path, not a zip archive, no
    ``agent.json``, an unknown algorithm, or an archive with serialized entries this loader
    does not replace (a file crafted to run code)."""
    path = require_path(path, "agent", AgentFileError)
    if not path.exists():
        raise AgentFileError(f"{path}: no such file or folder")
    folder = path if path.is_dir() else path.parent
    if _read_info(folder, required=False).engine == "rllib":
        return _check_rllib_agent(folder, _read_info(folder))
    model = folder / MODEL_FILE if path.is_dir() else path
    if path.is_file() and path.name != MODEL_FILE:
        raise AgentFileError(
            f"{path}: expected an agent folder or its {MODEL_FILE} (train_agent.py writes "
            f"{MODEL_FILE}, {INFO_FILE} and {NORMALIZATION_FILE} together)"
        )
    if not model.is_file():
        saved = saved_checkpoints(folder.parent) if folder.name == CHECKPOINTS else {}
        if saved:  # a run's checkpoints folder: its step folders are the agents
            raise AgentFileError(f"{folder}: a run's checkpoints folder; name one of its "
                                 f"checkpoints (the latest: {saved[max(saved)]})")
        saved = saved_checkpoints(folder)
        if saved:  # a run that ended before its final save: killed, out of memory say
            recorded = _train_args(folder)
            state = recorded.get("state") if isinstance(recorded, dict) else None
            how = (" (its train_args.json still says it is running: killed?)"
                   if state == "running" else "")
            raise AgentFileError(f"{folder}: no {MODEL_FILE} in this folder: its run ended "
                                 f"before its final save{how}; its latest checkpoint is "
                                 f"{saved[max(saved)]} (--resume or --agent that)")
        raise AgentFileError(f"{folder}: no {MODEL_FILE} in this folder")
    try:
        with zipfile.ZipFile(model) as archive:
            names = set(archive.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise AgentFileError(f"{model}: not a stable-baselines3 archive (no data or "
                                     "policy.pth inside)")
            data = json.loads(archive.read("data").decode())
    except zipfile.BadZipFile:
        raise AgentFileError(f"{model}: not a zip archive") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AgentFileError(f"{model}: unreadable 'data' entry ({err})") from None
    if not isinstance(data, dict):
        raise AgentFileError(f"{model}: its 'data' entry is not a JSON object")
    foreign = _unsafe_entries(data)
    if foreign:
        raise AgentFileError(
            f"{model}: refusing serialized entry {foreign[0]!r} (loading it would run code "
            f"from the file; only {list(_REPLACED_ENTRIES)} are replaced safely"
            f"{_safe_models(foreign[0])})"
        )
    info = _read_info(folder)
    info_path = folder / INFO_FILE
    if info.algo not in ALGO_CLASSES:
        raise AgentFileError(f"{info_path}: algo = {info.algo!r}: known are "
                             f"{list(ALGO_CLASSES)}")
    policy_class = data.get("policy_class")
    policy_module = policy_class.get("__module__") if isinstance(policy_class, dict) else None
    if isinstance(policy_module, str):  # (a masked policy loaded as PPO played unmasked)
        masked = "maskable" in policy_module
        if masked != (info.algo == "maskable-ppo"):
            raise AgentFileError(
                f"{info_path}: algo = {info.algo!r}, but {MODEL_FILE} holds a "
                f"{'masked' if masked else 'plain'} policy ({policy_module}): the algo is "
                f"{'maskable-ppo' if masked else 'ppo'}")
    norm_path = folder / NORMALIZATION_FILE
    if info.normalized is False and norm_path.is_file():
        raise AgentFileError(f"{folder}: {INFO_FILE} says the agent was not trained on "
                             f"normalised observations (normalized: false), yet "
                             f"{NORMALIZATION_FILE} is here; remove the one that is wrong")
    if info.normalized and not norm_path.is_file():
        raise AgentFileError(f"{folder}: no {NORMALIZATION_FILE}, yet {INFO_FILE} says the "
                             "agent was trained on normalised observations")
    if info.normalized is None and not norm_path.is_file():
        # Written before agent.json said so: nothing tells whether statistics were lost.
        warnings.warn(f"{folder}: {INFO_FILE} does not say whether the agent was trained on "
                      f"normalised observations, and there is no {NORMALIZATION_FILE}: it "
                      "plays on raw observations (add \"normalized\": false to "
                      f"{INFO_FILE} if that is right)", UserWarning, stacklevel=2)
    normalization = Normalization.load(norm_path) if norm_path.exists() else None
    return AgentFolder(folder, info, normalization)


def _check_rllib_agent(folder: Path, info: AgentInfo) -> AgentFolder:
    """An RLlib agent folder (``hffm_env.agents.rllib``): ``policy.pt`` beside ``agent.json``."""
    if not (folder / POLICY_FILE).is_file():
        raise AgentFileError(f"{folder}: no {POLICY_FILE} (an RLlib agent folder written by "
                             "train_agent.py --engine rllib has one)")
    if info.algo != "maskable-ppo":
        raise AgentFileError(f"{folder / INFO_FILE}: algo = {info.algo!r}: the RLlib engine "
                             "writes 'maskable-ppo'")
    return AgentFolder(folder, info, None)


def _read_info(folder: Path, *, required: bool = True) -> AgentInfo:
    """``agent.json`` of ``folder``; without one, an error (or, unless ``required``, the
    defaults, so that the caller's own checks name what is missing first)."""
    info_path = folder / INFO_FILE
    if not info_path.is_file():
        if not required:
            return AgentInfo(algo="")
        raise AgentFileError(
            f"{folder}: no {INFO_FILE} (an agent folder written by train_agent.py has one; "
            "for a model you trained yourself, write the folder with "
            "hffm_env.agents.checkpoint.save_agent(folder, model, AgentInfo(algo='ppo' or "
            "'maskable-ppo', scenario=..., fidelity=..., overrides=[...]), vec_normalize))")
    try:
        raw = json.loads(info_path.read_text())
        if not isinstance(raw, dict) or "algo" not in raw:
            raise ValueError("must be a JSON object with at least 'algo'")
        info = AgentInfo(**{k: raw[k] for k in AgentInfo.__dataclass_fields__ if k in raw})
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        if not required:
            return AgentInfo(algo="")
        raise AgentFileError(f"{info_path}: unreadable, not JSON ({err})") from None
    except ValueError as err:
        if not required:
            return AgentInfo(algo="")
        raise AgentFileError(f"{info_path}: {err}") from None
    return replace(info, num_timesteps=int(info.num_timesteps),
                   hidden_sizes=tuple(int(h) for h in info.hidden_sizes),
                   overrides=None if info.overrides is None else tuple(info.overrides),
                   # a record of what trained it: what is not one is left out
                   trained_by=tuple(r for r in info.trained_by if isinstance(r, dict))
                   if isinstance(info.trained_by, (list, tuple)) else ())


def training_process(resumed: AgentInfo | None, record: dict[str, Any], timesteps: int,
                     surrogate: dict[str, str] | None = None, *,
                     phases: Sequence[tuple[int, str]] = ()) -> tuple[dict[str, Any], ...]:
    """``trained_by`` for an agent saved at ``timesteps`` by this process (whose provenance
    ``record`` it is), resuming the agent ``resumed`` (None: a fresh run): that agent's
    processes, then one entry per phase of this one (``phases``: the step each began at and
    its fidelity, in order; a fine-tuning run has two), with the timesteps it trained, its
    fidelity and, on the surrogate, the fit it played (``surrogate``: its origin, digest and
    path, :meth:`~hffm_env.agents.common.TrainArgs.surrogate_fit`). A process that trained
    nothing (a resume with no step left) gets one entry of the first phase's fidelity;
    without ``phases``, one entry without a fidelity, the fit attached when given."""
    start = resumed.num_timesteps if resumed is not None else 0
    earlier = resumed.trained_by if resumed is not None else ()

    def entry(steps: list[int], fidelity: str | None) -> dict[str, Any]:
        fit = dict(surrogate) if surrogate is not None and fidelity in ("surrogate", None) \
            else None
        return {"timesteps": steps, **({"fidelity": fidelity} if fidelity else {}),
                "provenance": record, **({"surrogate": fit} if fit is not None else {})}

    ends = [int(s) for s, _ in phases[1:]] + [int(timesteps)]
    this = [entry([max(start, int(s)), end], fidelity)
            for (s, fidelity), end in zip(phases, ends) if end > max(start, int(s))]
    if not this:  # trained nothing (or not said by phase): the process is still said
        this = [entry([start, int(timesteps)], phases[0][1] if phases else None)]
    return (*earlier, *this)


def algo_class(algo: str) -> Any:
    """The SB3 class of an algorithm name (see :data:`ALGO_CLASSES`)."""
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    from stable_baselines3 import PPO

    return PPO


def load_model(agent: AgentFolder, observation_space: Any, action_space: Any, *,
               env: Any = None, device: str = "cpu",
               settings: dict[str, Any] | None = None) -> Any:
    """Load the SB3 model of ``agent`` for these spaces without unpickling anything: the
    archive's serialized entries are replaced by the spaces, the algorithm's policy class, the
    saved clip range, and empty rollout state (a resumed run starts a fresh episode).
    ``settings`` replace saved attributes (a resumed run's ``n_steps``, ``batch_size``,
    ``ent_coef`` and ``seed``: the ones it is given, not the archive's)."""
    cls = algo_class(agent.info.algo)
    policy: type[BasePolicy]  # (sb3-contrib's masked policy is no ActorCriticPolicy)
    if agent.info.algo == "maskable-ppo":
        from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

        policy = MaskableActorCriticPolicy
    else:
        from stable_baselines3.common.policies import ActorCriticPolicy

        policy = ActorCriticPolicy
    custom = dict.fromkeys(_REPLACED_ENTRIES)
    custom.update(policy_class=policy, observation_space=observation_space,
                  action_space=action_space,
                  clip_range=SB3_CLIP_RANGE if agent.info.clip_range is None
                  else agent.info.clip_range,
                  **(settings or {}))
    try:
        model = cls.load(agent.model_path, env=env, device=device, custom_objects=custom)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, IndexError) as err:
        # (IndexError: torch's weights-only unpickler on text that starts like an opcode)
        raise AgentFileError(f"{agent.model_path}: corrupt weights ({type(err).__name__}: "
                             f"{error_line(err, 200)})") from None
    except (AssertionError, AttributeError, TypeError) as err:  # SB3 on a hand-edited entry
        raise AgentFileError(f"{agent.model_path}: corrupt or unreadable model "
                             f"({type(err).__name__}: {error_line(err, 200)})") from None
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = first.rstrip(":")
        if "state_dict" not in str(err):  # not the weights of other spaces: a damaged file
            raise AgentFileError(f"{agent.model_path}: corrupt or unreadable model "
                                 f"({type(err).__name__}: {first[:200]})") from None
        other_entries = entries_differ(err)
        if other_entries:  # the policy the archive itself describes is not its weights'
            raise AgentFileError(f"{agent.model_path}: corrupt model (its weights are not "
                                 f"the entries of the policy it describes: {other_entries})"
                                 ) from None
        raise AgentFileError(
            f"{agent.model_path}: does not fit this env's spaces (observation "
            f"{observation_space.shape}, {action_size_words(action_space)}): {first}"
            f"{_weights_expect(agent.model_path, observation_space, action_space)}"
            f"{trained_on(agent.folder)}"
        ) from None
    problem = _unusable(model)
    if problem:
        raise AgentFileError(f"{agent.model_path}: {problem}")
    return model


def entries_differ(err: BaseException) -> str:
    """torch's lines on missing or unexpected entries when ``err`` (of ``load_state_dict``)
    names no entry of another size: weights edited or of another network, not of other
    spaces (which change sizes only); empty when an entry has another size."""
    text = str(err)
    if "size mismatch" in text:
        return ""
    return " ".join(line.strip() for line in text.splitlines()[1:3])[:200]


_HYPERPARAMETERS = {"gamma": (0.0, 1.0), "gae_lambda": (0.0, 1.0), "ent_coef": (0.0, None),
                    "vf_coef": (0.0, None), "max_grad_norm": (0.0, None)}
"""The saved numbers PPO computes with and their ranges (low, high; None: unbounded): a
value of another type failed mid-training, one out of range (gamma 1.5) trained on."""


def _unusable(model: Any) -> str:
    """Why a loaded model cannot act or train (a hand-edited or diverged archive): a
    hyperparameter that is not a finite number, or weights that are not finite; empty when
    it can."""
    from hffm_env.files import non_finite_tensors

    for name, (low, high) in _HYPERPARAMETERS.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        if not is_finite_real(value):
            return f"corrupt model ({name} = {value!r}: must be a finite number)"
        if value < low or high is not None and value > high:
            allowed = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
            return f"corrupt model ({name} = {value!r}: must be {allowed})"
    bad = non_finite_tensors(model.policy.state_dict())
    if bad:
        return (f"its weights are not finite (NaN or infinite in {bad[0]}"
                f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}): the run that saved "
                "them diverged, or the file was edited; use an earlier checkpoint")
    return ""


def _weights_expect(model_path: Path, observation_space: Any, action_space: Any) -> str:
    """What the archive's policy weights take and give, beside what this env has (``; its
    weights take 57 inputs and give 62 action logits, here 57 and 156``): a coarse or menu
    agent saved as a full one shows as other logits. Empty when the weights do not say."""
    import torch

    try:
        with zipfile.ZipFile(model_path) as archive, archive.open("policy.pth") as file:
            weights = torch.load(io.BytesIO(file.read()), map_location="cpu", weights_only=True)
        logits = int(weights["action_net.weight"].shape[0])
        inputs = next(int(w.shape[1]) for name, w in weights.items()
                      if name.startswith("mlp_extractor.policy_net.") and w.ndim == 2)
    except Exception:  # noqa: BLE001 - a hint only: the error above stands without it
        return ""
    nvec = getattr(action_space, "nvec", None)
    here_logits = int(np.sum(nvec)) if nvec is not None else int(getattr(action_space, "n", 0))
    here_inputs = int(np.prod(getattr(observation_space, "shape", None) or (0,)))
    why = []
    if logits != here_logits:
        why.append("a coarse or menu agent needs its action_mode in agent.json")
    if inputs != here_inputs:
        why.append("the observation has other entries: env.observe_target, the layout's "
                   "clusters and devices (--config AGENT_FOLDER plays it on its own settings)")
    return (f"; its weights take {inputs} inputs and give {logits} action logits, here "
            f"{here_inputs} and {here_logits}" + (f" ({'; '.join(why)})" if why else ""))


def action_size_words(space: Any) -> str:
    """The size of an action space in words (``39 action slots``, ``8 actions``), for an
    error saying what a policy's weights do not fit."""
    nvec = getattr(space, "nvec", None)
    if nvec is not None:
        return f"{len(nvec)} action slots"
    return f"{getattr(space, 'n', '?')} actions"


def trained_on(folder: Path, use: str = "evaluate it") -> str:
    """Where the agent's ``train_args.json`` says it was trained, to build the same env (a
    clause for an error message; ``use``: what to do on that env)."""
    args = _train_args(folder)
    try:
        settings = setting_overrides(args, args.get("overrides") or [])
        config = args.get("config")  # a --config file, layered before the --set values
        sets = " ".join([*([f"--config {shlex.quote(str(config))}"] if config else []),
                         *(f"--set {shlex.quote(str(o))}" for o in settings)])
        return (f"; it was trained on scenario {args['scenario']!r}"
                + (f" with {sets}" if sets else "") + f": {use} on that env")
    except (KeyError, TypeError, AttributeError):  # none, or not what train_agent writes
        return ""


def _train_args(folder: Path) -> Any:
    """The run's ``train_args.json`` as read from ``folder``; ``None`` when it is missing or
    not JSON."""
    try:
        return json.loads((folder / TRAIN_ARGS_FILE).read_text())
    except (OSError, ValueError):
        return None


def clear_folder(folder: Path, names: tuple[str, ...]) -> None:
    """Remove the named files and folders of ``folder`` (what a forced rerun replaces)."""
    for name in names:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
