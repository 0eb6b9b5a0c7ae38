"""Training on Ray RLlib: masked PPO on the single-agent env or on the multi-agent env (one
policy shared by the edge agents plus the cloud's), on local env runners or a Ray cluster.

    pip install -e ".[rllib]"
    hffm train --engine rllib --n-envs 4 --total-timesteps 20000 --out out/rllib
    hffm train --engine rllib --multi-agent --n-envs 4 --out out/rllib-ma
    hffm train --engine rllib --address auto --n-envs 64 ...   # join a running Ray cluster

It takes the same :class:`~hffm_env.agents.common.TrainArgs` as the stable-baselines3 path and
ends with the same comparison against every baseline
(:func:`hffm_env.agents.job.evaluate_against_baselines`).
What differs:

- ``--n-envs`` is the number of RLlib env runners (Ray actors, one env each; ``1`` samples
  in the driver, without extra processes). ``--address`` joins an existing Ray cluster
  (``ray start --head`` on one machine, ``ray start --address=...`` on the others); without
  it a local Ray instance is started and stopped.
- PPO's hyper-parameters are set to stable-baselines3's defaults (discount 0.99, GAE lambda
  0.95, clip 0.2, 10 epochs, value coefficient 0.5, gradient clip 0.5, no KL penalty, two
  tanh layers of 64 for the policy and for the value function), so both engines train the
  same algorithm; ``--n-steps`` is the rollout length per env runner, ``--batch-size`` the
  minibatch.
- Actions are always masked (``--algo maskable-ppo``): :class:`MaskedPPOModule` adds
  ``log(mask)`` to the logits of every action slot, the mask coming with the observation
  (:class:`hffm_env.wrappers.ActionMaskObservation`; on the multi-agent env,
  ``infos[agent]["action_mask"]``).
- Observations are already in ``[0, 1]`` and are not normalised further (``--normalize``
  is the SB3 path's VecNormalize); rewards are not normalised either.
- Fine-tuning with another fidelity (``--finetune-timesteps``) is the SB3 path's only.

TensorBoard (``OUT/runs/<run>/``): ``rollout/ep_rew_mean``, ``rollout/ep_len_mean``,
``fl/accuracy``, ``fl/latency_s``, ``fl/energy_j``, ``reward_terms/*`` (as the SB3 path), and
``train/policy_loss``, ``train/value_loss``, ``train/entropy``, ``train/approx_kl`` and
``train/learning_rate`` per module (the rate the learner holds after the update, i.e. the next
update's). No learning curve files: RLlib reports episode returns as means per iteration.

An agent folder of this engine holds ``agent.json`` (``"engine": "rllib"``), ``policy.pt``
(each module's weights as plain tensors, read with ``torch.load(weights_only=True)`` by
``hffm bench --agent``; the network is rebuilt from ``agent.json``, nothing is unpickled) and
``rllib/``, RLlib's own checkpoint of the whole algorithm (optimiser, counters), which
``--resume`` restores. RLlib's checkpoints contain pickles: resume only runs you trust.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.utils.torch_utils import FLOAT_MIN
from ray.rllib.utils.typing import AgentID, MultiAgentDict
from ray.tune.registry import register_env

import hffm_env.agents.common as common
from hffm_env.agents.checkpoint import (
    INFO_FILE,
    POLICY_FILE,
    RLLIB_CHECKPOINT_DIR,
    AgentFileError,
    AgentFolder,
    AgentInfo,
    SettingsCheck,
    action_size_words,
    checkpoint_folder,
    entries_differ,
    trained_on,
)
from hffm_env.arguments import error_line, interrupts_held
from hffm_env.envs.registration import ENV_ID
from hffm_env.files import load_tensors, non_finite_tensors
from hffm_env.values import shown

__all__ = [
    "MaskedPPOModule",
    "MultiAgentHFFM",
    "RLlibAgentPolicy",
    "make_rllib_env",
    "module_of",
    "rllib_config",
    "train_rllib",
    "POLICY_FILE",
    "HIDDEN_SIZES",
    "join_cluster",
    "model_config",
]

CHECKPOINT_DIR = RLLIB_CHECKPOINT_DIR
HIDDEN_SIZES = (64, 64)
"""The policy's and the value function's hidden layers (stable-baselines3's MlpPolicy)."""
CLIP_PARAM = 0.2
"""PPO's clip range (stable-baselines3's default; agent.json records it)."""
ENV_NAME = "hffm_rllib"
EDGE_MODULE, CLOUD_MODULE = "edge", "cloud"


def module_of(agent_id: str, *args: Any, **kwargs: Any) -> str:
    """The module an agent of the multi-agent env acts with: one shared by the edge agents,
    one for the cloud (RLlib's ``policy_mapping_fn``)."""
    return CLOUD_MODULE if agent_id.startswith("cloud") else EDGE_MODULE


def model_config(hidden: tuple[int, ...] = HIDDEN_SIZES) -> dict[str, Any]:
    """RLlib's default-model settings for ``hidden`` tanh layers, separate actor and critic."""
    return {"fcnet_hiddens": list(hidden), "fcnet_activation": "tanh",
            "vf_share_layers": False}


class MaskedPPOModule(DefaultPPOTorchRLModule):
    """RLlib's default PPO module on ``obs["observation"]`` whose action logits are masked
    by ``obs["action_mask"]`` (one entry per value of every action slot, concatenated: the
    layout of RLlib's multi-categorical logits), in every forward pass, so a forbidden value
    is never sampled and never counted in the policy's log-probabilities or entropy."""

    def __init__(self, *, observation_space: spaces.Dict | None = None, **kwargs: Any) -> None:
        if not isinstance(observation_space, spaces.Dict) or set(observation_space) != {
                "observation", "action_mask"}:
            raise ValueError(f"MaskedPPOModule: the observation space must be Dict(observation, "
                             f"action_mask), got {observation_space}")
        self.masked_observation_space = observation_space
        super().__init__(observation_space=observation_space["observation"], **kwargs)

    def get_ctor_args_and_kwargs(self) -> tuple[tuple, dict[str, Any]]:
        """What RLlib's checkpoint records to rebuild the module: the masked ``Dict`` space
        this constructor takes (the base class records the inner ``Box`` it was given, so
        ``RLModule.from_checkpoint`` refused its own checkpoint)."""
        args, kwargs = super().get_ctor_args_and_kwargs()
        return args, {**kwargs, "observation_space": self.masked_observation_space}

    @staticmethod
    def _split(batch: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The mask and a shallow copy of ``batch`` whose observation is the plain vector
        (the batch itself is not changed: the learner reuses it for several passes)."""
        obs = batch[Columns.OBS]
        plain = dict(batch)
        plain[Columns.OBS] = obs["observation"]
        return obs["action_mask"], plain

    @staticmethod
    def _masked(out: dict[str, Any], mask: Any) -> dict[str, Any]:
        logits = out[Columns.ACTION_DIST_INPUTS]
        out[Columns.ACTION_DIST_INPUTS] = logits + torch.clamp(
            torch.log(mask.to(logits.dtype)), min=FLOAT_MIN)
        return out

    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, plain = self._split(batch)
        return self._masked(super()._forward_inference(plain, **kwargs), mask)

    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, plain = self._split(batch)
        return self._masked(super()._forward_exploration(plain, **kwargs), mask)

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mask, plain = self._split(batch)
        return self._masked(super()._forward_train(plain, **kwargs), mask)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Any:
        """The value of the plain observation (the mask does not enter the critic)."""
        if isinstance(batch[Columns.OBS], dict):
            _, batch = self._split(batch)
        return super().compute_values(batch, embeddings)


def _mask_space(size: int) -> spaces.Box:
    # (gymnasium's hint names float and integer dtypes only; Box takes bool as well)
    return spaces.Box(0, 1, shape=(size,), dtype=np.bool_)  # type: ignore[arg-type, unused-ignore]


class MultiAgentHFFM(MultiAgentEnv):
    """:class:`~hffm_env.envs.parallel.HFFMParallelEnv` as an RLlib ``MultiAgentEnv``: the same
    agents, actions, rewards and infos; each observation is ``{"observation": Box,
    "action_mask": flat bool mask}`` (the parallel env's ``infos[agent]["action_mask"]``), an
    edge agent's observation ending in a one-hot of its cluster (``env_config``'s
    ``agent_indicator``, default on: the edge agents share one module)."""

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        from hffm_env.envs.parallel import HFFMParallelEnv

        config = dict(env_config or {})
        split = config.pop("reward_split", "team")
        # one module shared by the edge agents: it must tell which cluster it acts for
        indicator = config.pop("agent_indicator", True)
        if config.get("info", "full") != "full":  # _flat reads each agent's flat mask there
            raise ValueError(f"env_config info = {config['info']!r}: the RLlib adapter reads "
                             "the action mask from the parallel env's full infos; leave "
                             "info out")
        self.parallel = HFFMParallelEnv(reward_split=split, agent_indicator=indicator,
                                        **_env_kwargs(config))
        names: list[str] = self.parallel.possible_agents  # (RLlib's hint: any hashable ids)
        self.agents = self.possible_agents = list(names)
        self.observation_spaces = {
            a: spaces.Dict({
                "observation": self.parallel.observation_space(a)["observation"],
                "action_mask": _mask_space(int(self.parallel.action_space(a).nvec.sum())),
            }) for a in names}
        self.action_spaces = {a: self.parallel.action_space(a) for a in names}

    @staticmethod
    def _flat(obs: dict[str, Any], infos: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        return {a: {"observation": o["observation"], "action_mask": infos[a]["action_mask"]}
                for a, o in obs.items()}

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Reset the parallel env; every agent observes."""
        obs, infos = self.parallel.reset(seed=seed, options=options)
        self.agents = list(self.parallel.agents)  # (the live ones: all, until the end)
        return self._flat(obs, infos), infos

    def step(
            self, action_dict: MultiAgentDict) -> tuple[dict, dict, dict, dict, dict]:
        """One round with every agent's action."""
        actions = cast("dict[str, Any]", action_dict)  # keyed by this env's agent names
        obs, rewards, terms, truncs, infos = self.parallel.step(
            {a: np.asarray(v, dtype=np.int64) for a, v in actions.items()})
        terms["__all__"] = all(terms.values())
        truncs["__all__"] = all(truncs.values())
        self.agents = list(self.parallel.agents)  # (none once the episode ended)
        return self._flat(obs, infos), rewards, terms, truncs, infos

    def close(self) -> None:
        """Close the parallel env."""
        self.parallel.close()


def _env_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The HFFMEnv keyword arguments of an env config (see :func:`env_config`) once the
    adapter's own keys are taken out: all of them, every one checked by name by the env (an
    unknown key is an error, not a silently different env), without progress bars unless
    asked for."""
    return {"progress": False, **config}


def make_rllib_env(config: dict[str, Any]) -> Any:
    """The env an RLlib env runner steps, from :func:`env_config`'s dict: the multi-agent
    adapter, or the single-agent env with its action wrapper and the mask in the observation."""
    import hffm_env  # noqa: F401  (registers the ids in a fresh Ray worker)
    from hffm_env.agents.common import wrap_actions
    from hffm_env.wrappers import ActionMaskObservation

    config = dict(config)
    if config.pop("multi_agent", False):
        config.pop("action_mode", None)
        return MultiAgentHFFM(config)
    action_mode = config.pop("action_mode", "full")
    config.pop("reward_split", None)
    env = gym.make(ENV_ID, **_env_kwargs(config))
    return ActionMaskObservation(wrap_actions(env, action_mode))


register_env(ENV_NAME, make_rllib_env)


def env_config(args: common.TrainArgs, agent_indicator: bool = True) -> dict[str, Any]:
    """The plain-data env config of a run (what every env runner builds its env from): the
    scenario as a dict, from the config file as the run started; ``agent_indicator`` (the
    multi-agent env's edge observations end in a one-hot of the cluster) stays on except to
    resume a run that had none."""
    from hffm_env.config import to_dict

    kwargs = args.env_kwargs(args.fidelity)
    config = {**kwargs, "scenario": to_dict(kwargs["scenario"]),
              "action_mode": args.action_mode, "multi_agent": args.multi_agent,
              "reward_split": args.reward_split}
    if args.multi_agent:
        config["agent_indicator"] = agent_indicator
    return config


class _FLMetrics(RLlibCallback):
    """Logs each round's FL metrics from the env runners (``fl/*``, ``reward_terms/*``)."""

    def on_episode_step(self, *, episode: Any, metrics_logger: Any = None,
                        **kwargs: Any) -> None:
        from hffm_env.agents.common import round_metrics

        info = _round_info(episode.get_infos(-1))
        if info is None or metrics_logger is None:
            return
        for key, value in round_metrics(info).items():
            metrics_logger.log_value(key, value, reduce="mean", window=100)


def _round_info(infos: Any) -> dict[str, Any] | None:
    """The single-agent env's info of the round, from a single- or multi-agent step's infos."""
    if not isinstance(infos, dict):
        return None
    if "measured" in infos:
        return infos
    for value in infos.values():
        if isinstance(value, dict) and "env" in value:
            return value["env"]
    return None


def _learning_rate(args: common.TrainArgs) -> float | list[list[float]]:
    """RLlib's ``lr``: the constant, or the linear schedule as RLlib's piecewise-linear
    ``[[timestep, lr], ...]`` over the sampled env steps (:meth:`TrainArgs.learning_rate_at`
    at the first and the last step)."""
    if args.lr_schedule == "constant":
        return args.learning_rate
    end = args.total_timesteps
    return [[0, args.learning_rate_at(0)], [end, args.learning_rate_at(end)]]


def rllib_rollout(args: common.TrainArgs) -> int:
    """Rounds per training iteration: ``n_steps`` from each env runner (one without
    ``--n-envs``, where the local runner samples)."""
    return args.n_steps * max(1, args.n_envs if args.n_envs > 1 else 0)


def rllib_config(args: common.TrainArgs, agent_indicator: bool = True) -> PPOConfig:
    """RLlib's PPO config for a run (see the module docstring for what maps to what;
    ``agent_indicator``: :func:`env_config`'s)."""
    runners = args.n_envs if args.n_envs > 1 else 0
    rollout = rllib_rollout(args)
    config = (
        PPOConfig()
        .environment(ENV_NAME, env_config=env_config(args, agent_indicator))
        .env_runners(num_env_runners=runners, num_envs_per_env_runner=1,
                     rollout_fragment_length=args.n_steps, num_cpus_per_env_runner=1)
        # a minibatch is at most a rollout, as in the sb3 engine (RLlib refuses more)
        .training(train_batch_size_per_learner=rollout,
                  minibatch_size=min(args.batch_size, rollout), num_epochs=10,
                  lr=_learning_rate(args), gamma=0.99, lambda_=0.95, clip_param=CLIP_PARAM,
                  vf_loss_coeff=0.5, entropy_coeff=args.ent_coef, grad_clip=0.5, use_kl_loss=False,
                  vf_clip_param=float("inf"))
        .callbacks(_FLMetrics)
        .debugging(seed=args.seed)
    )
    from hffm_env.agents.common import env_device

    if env_device(args.device).startswith("cuda"):  # the policy too, not only FL training
        config = config.learners(num_gpus_per_learner=1)
    if args.multi_agent:
        spec = RLModuleSpec(module_class=MaskedPPOModule, model_config=model_config())
        # (RLlib types agent ids as any hashable; the multi-agent env's are names)
        mapping = cast("Callable[[AgentID, Any], str]", module_of)
        config = config.multi_agent(policies={EDGE_MODULE, CLOUD_MODULE},
                                    policy_mapping_fn=mapping).rl_module(
            rl_module_spec=MultiRLModuleSpec(rl_module_specs={EDGE_MODULE: spec,
                                                              CLOUD_MODULE: spec}))
    else:
        config = config.rl_module(rl_module_spec=RLModuleSpec(
            module_class=MaskedPPOModule, model_config=model_config()))
    return config


def _log(writer: Any, result: dict[str, Any], step: int) -> None:
    """Write one iteration's results under the SB3 path's TensorBoard names. In a
    multi-agent run ``rollout/ep_rew_mean`` is the team return, the cloud agent's (RLlib's
    episode return sums every agent's: 5 times the team's on ``small``), and each agent's
    own is ``rollout/ep_rew_mean/<agent>``."""
    from hffm_env.envs.parallel import CLOUD

    runners = result.get("env_runners", {})
    names = {"episode_return_mean": "rollout/ep_rew_mean", "episode_len_mean":
             "rollout/ep_len_mean"}
    per_agent = runners.get("agent_episode_returns_mean")
    values = dict(runners)
    if isinstance(per_agent, dict) and CLOUD in per_agent:  # (the multi-agent env's)
        values["episode_return_mean"] = per_agent[CLOUD]
        values.update({f"rollout/ep_rew_mean/{agent}": value
                       for agent, value in per_agent.items()})
    for key, value in values.items():
        tag = names.get(key, key if key.startswith(("fl/", "reward_terms/", "rollout/"))
                        else None)
        if tag is not None and isinstance(value, (int, float)) and np.isfinite(value):
            writer.add_scalar(tag, float(value), step)
    learner_names = {"policy_loss": "policy_loss", "vf_loss": "value_loss",
                     "entropy": "entropy", "mean_kl_loss": "approx_kl",
                     "default_optimizer_learning_rate": "learning_rate"}
    for module, stats in result.get("learners", {}).items():
        if not isinstance(stats, dict) or module.startswith("__"):
            continue
        prefix = "train" if module == DEFAULT_MODULE_ID else f"train/{module}"
        for key, tag in learner_names.items():
            value = stats.get(key)
            if isinstance(value, (int, float, np.floating)) and np.isfinite(value):
                writer.add_scalar(f"{prefix}/{tag}", float(value), step)


def _sampled(result: dict[str, Any]) -> int:
    return int(result.get("env_runners", {}).get("num_env_steps_sampled_lifetime", 0))


def save_rllib_agent(folder: Path, algo: Any, info: AgentInfo) -> None:
    """Write an agent folder: ``agent.json``, ``policy.pt`` (weights only) and ``rllib/``
    (RLlib's checkpoint), staged beside the target and moved into place."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = algo.learner_group.get_weights()
    tensors = {module: {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}
               for module, state in weights.items()}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".saving-") as tmp:
        staged = Path(tmp)
        algo.save_to_path(str((staged / CHECKPOINT_DIR).resolve()))
        torch.save(tensors, staged / POLICY_FILE)
        (staged / INFO_FILE).write_text(info.to_json())
        for item in staged.iterdir():
            target = folder / item.name
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)


def _auto_address() -> str | None:
    """What Ray's ``address="auto"`` would join: ``RAY_ADDRESS``, else the address that
    ``ray start`` recorded on this machine (None: neither)."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        return recorded.read_text().strip() or None
    except OSError:
        return None


def join_cluster(address: str) -> None:
    """``ray.init(address=...)``, with one clean line (a ``ValueError`` naming the address)
    when there is no cluster there or it refuses this client."""
    import socket

    import ray

    resolved = _auto_address() if address == "auto" else address
    host, _, port = (resolved or "").rpartition(":")
    if resolved is not None and host and port.isdigit() and "://" not in resolved:
        try:  # Ray itself keeps retrying for minutes when nothing listens there
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as err:
            where = "" if resolved == address else f" (the last one started, {resolved})"
            raise ValueError(f"address = {address!r}: cannot join a Ray cluster there{where} "
                             f"(nothing answers: {err}); start one with `ray start --head`"
                             ) from None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except Exception as err:  # noqa: BLE001  (Ray raises many kinds; all mean "cannot join")
        first = next((line for line in str(err).splitlines() if line.strip()), repr(err))
        raise ValueError(f"address = {address!r}: cannot join a Ray cluster there "
                         f"({type(err).__name__}: {first.strip()[:300]})") from None


def train_rllib(args: common.TrainArgs) -> float:
    """Train as ``args`` say on RLlib; return the training time (s). Writes the agent folder,
    checkpoints in ``checkpoints/step_<N>/``, ``runs/`` and ``train_args.json`` into
    ``args.out``, as :func:`~hffm_env.agents.ppo.train_sb3` does (but no learning curve)."""
    import ray
    from torch.utils.tensorboard import SummaryWriter

    from hffm_env.agents.checkpoint import (
        AgentFileError,
        find_agent,
        training_process,
    )
    from hffm_env.agents.common import (
        TrainingInterrupted,
        note_resumed_settings,
        note_whole_rollouts,
        prepare_out,
        refuse_other_training_flags,
        replace_earlier_run,
        run_name,
        write_train_args,
    )
    from hffm_env.progress import progress_bar
    from hffm_env.provenance import provenance

    out = prepare_out(args)
    resume = find_agent(args.resume) if args.resume else None
    if resume is not None:
        refuse_other_training_flags(args, resume)
        note_resumed_settings(args, resume, args.scenario_config())
    started_ray = not ray.is_initialized()
    if started_ray:
        if args.address:
            join_cluster(args.address)
        else:  # one CPU per env runner plus the driver, even on a smaller machine
            cpus = max(os.cpu_count() or 1, args.n_envs + 1)
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    writer, algo = None, None
    # a multi-agent run resumed from a folder written before the edge agents' indicator keeps
    # the observation its weights were trained on
    indicator = resume.info.agent_indicator if resume is not None else True
    try:
        algo = rllib_config(args, indicator).build_algo()
        if resume is not None:
            try:
                algo.restore_from_path(str((resume.folder / CHECKPOINT_DIR).resolve()))
            except (RuntimeError, ValueError, KeyError) as err:  # e.g. other spaces' weights
                raise AgentFileError(
                    f"--resume {args.resume!r}: its checkpoint does not fit this run "
                    f"({error_line(err, 300)})"
                    f"{trained_on(resume.folder, 'resume it')}") from None
        replace_earlier_run(out, args)  # all built: --force may remove the earlier run
        out.mkdir(parents=True, exist_ok=True)
        write_train_args(out, args, state="running")  # (kept by a run killed outright)
        steps = resume.info.num_timesteps if resume is not None else 0
        first_step = steps  # (one phase: RLlib does not fine-tune in another fidelity)
        scenario_config = asdict(args.scenario_config())  # the config file as the run started
        this_process = provenance()  # in every agent folder it saves (trained_by)

        def save(where: Path) -> None:
            info = AgentInfo(algo=args.algo, clip_range=CLIP_PARAM, num_timesteps=int(steps),
                             scenario=cast(str, args.scenario),  # TrainArgs names the preset
                             fidelity=args.fidelity, action_mode=args.action_mode,
                             engine="rllib", multi_agent=bool(args.multi_agent),
                             agent_indicator=bool(args.multi_agent) and indicator,
                             reward_split=args.reward_split if args.multi_agent else None,
                             hidden_sizes=HIDDEN_SIZES,
                             overrides=tuple(args.scenario_overrides()),
                             config_file=args.config, config=scenario_config,
                             trained_by=training_process(
                                 resume.info if resume is not None else None, this_process,
                                 steps, args.surrogate_fit(args.fidelity),
                                 phases=[(first_step, args.fidelity)]))
            save_rllib_agent(out / where, algo, info)

        writer = SummaryWriter(str(out / "runs" / run_name(args, f"rllib-{args.algo}")))
        every = args.checkpoint_every
        next_at = (steps // every + 1) * every
        started = time.perf_counter()
        note_whole_rollouts(args, rllib_rollout(args), args.total_timesteps - steps)
        bar = progress_bar(total=args.total_timesteps, initial=min(steps, args.total_timesteps),
                   disable=not args.progress, desc="rllib ppo", unit="step")
        try:
            while steps < args.total_timesteps:
                result = algo.train()
                bar.update(max(0, min(_sampled(result), args.total_timesteps) - steps))
                steps = _sampled(result)
                _log(writer, result, steps)
                if steps >= next_at and steps < args.total_timesteps:
                    save(checkpoint_folder(steps))
                    next_at = (steps // every + 1) * every
        except KeyboardInterrupt:
            with interrupts_held(common.PROG):
                save(Path("."))
                write_train_args(out, args, state="interrupted")
            raise TrainingInterrupted(
                f"interrupted at {steps} of {args.total_timesteps} timesteps (while "
                f"training); model saved in {out}") from None
        finally:
            bar.close()
        train_seconds = time.perf_counter() - started
        # a Ctrl-C here left policy.pt without train_args.json: the save ends, then the run
        # stops (the algorithm and Ray are stopped below either way)
        with interrupts_held(common.PROG, replay=True):
            save(Path("."))
            write_train_args(out, args, state="finished")
    finally:
        if algo is not None:  # its env runners, also when a caller's Ray session lives on
            algo.stop()
        if writer is not None:
            writer.close()
        if started_ray:
            ray.shutdown()
    return train_seconds


class RLlibAgentPolicy:
    """An RLlib agent folder as a baselines ``Policy``: deterministic (the most likely value
    of every slot under the mask). A multi-agent agent plays through
    :meth:`HFFMParallelEnv.over <hffm_env.envs.parallel.HFFMParallelEnv.over>` on the
    single-agent env it is handed: each edge agent and the cloud act on their own
    observation, and their actions are assembled into the env's action."""

    def __init__(self, agent: AgentFolder, name: str = "agent") -> None:
        self.name = name
        self.agent = agent
        self.modules: dict[str, MaskedPPOModule] = {}
        self.weights: dict[str, dict[str, torch.Tensor]] | None = None
        self.wrapper: Any = None
        self.view: Any = None
        self.env: Any = None
        self.check_settings = SettingsCheck(self.agent)

    def _weights(self) -> dict[str, dict[str, torch.Tensor]]:
        if self.weights is None:
            path = self.agent.folder / POLICY_FILE
            try:
                weights = load_tensors(path)
            except (ValueError, OSError) as err:  # any unreadable file: one clean line
                raise AgentFileError(f"{path}: not a weights file: {err}") from None
            if not (isinstance(weights, dict) and all(
                    isinstance(state, dict) and all(isinstance(t, torch.Tensor)
                                                    for t in state.values())
                    for state in weights.values())):
                raise AgentFileError(f"{path}: not a weights file (a mapping of module id to "
                                     f"its tensors by name; holds {shown(weights)})")
            self.weights = weights
        return self.weights

    def _module(self, module_id: str, observation_space: spaces.Dict,
                action_space: spaces.Space) -> MaskedPPOModule:
        if module_id not in self.modules:
            weights = self._weights()
            if module_id not in weights:
                raise AgentFileError(f"{self.agent.folder / POLICY_FILE}: no weights for module "
                                     f"{module_id!r} (has {sorted(weights)})")
            module = MaskedPPOModule(observation_space=observation_space,
                                     action_space=action_space, inference_only=False,
                                     model_config=model_config(
                                         tuple(self.agent.info.hidden_sizes)))
            state = weights[module_id]
            if non_finite_tensors(state):
                raise AgentFileError(f"{self.agent.folder / POLICY_FILE}: module {module_id!r}: "
                                     "its weights are not finite (NaN or infinite)")
            try:
                module.load_state_dict(state)
            except RuntimeError as err:
                other_entries = entries_differ(err)
                if other_entries:
                    raise AgentFileError(f"{self.agent.folder / POLICY_FILE}: module "
                                         f"{module_id!r}: its weights are not the entries of "
                                         f"the network agent.json describes: {other_entries}"
                                         ) from None
                # torch's first line is a bare header: the first size it names is the news
                sizes = next((line.strip() for line in str(err).splitlines()
                              if "size mismatch" in line), error_line(err, 200))
                inner = getattr(observation_space, "spaces", {}).get(
                    "observation", observation_space)
                raise AgentFileError(
                    f"{self.agent.folder / POLICY_FILE}: module {module_id!r} does not fit this "
                    f"env's spaces (observation {inner.shape}, "
                    f"{action_size_words(action_space)}): {sizes}"
                    f"{trained_on(self.agent.folder)}") from None
            module.eval()
            self.modules[module_id] = module
        return self.modules[module_id]

    @property
    def fingerprint(self) -> str:
        """A digest of the agent's files (:attr:`AgentFolder.fingerprint`)."""
        return self.agent.fingerprint

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Remember the env (its masks; the multi-agent view of it); read the weights on
        first use; warn (:class:`~hffm_env.agents.checkpoint.OtherSettingsWarning`) when the
        env is of other settings than the agent was trained on."""
        from hffm_env.agents.common import wrap_actions

        self.check_settings(self.name, env)
        self._weights()
        self.env = env.unwrapped
        if self.agent.info.multi_agent:
            from hffm_env.envs.parallel import HFFMParallelEnv

            self.view = HFFMParallelEnv.over(
                self.env, agent_indicator=self.agent.info.agent_indicator)
            self.wrapper = None
        else:
            self.view = None
            self.wrapper = (wrap_actions(env, self.agent.info.action_mode)
                            if self.agent.info.action_mode != "full" else None)

    def _decide(self, module_id: str, observation: np.ndarray, mask: np.ndarray,
                action_space: spaces.Space) -> np.ndarray:
        space = spaces.Dict({"observation": spaces.Box(0.0, 1.0, shape=observation.shape,
                                                       dtype=np.float32),
                             "action_mask": _mask_space(int(mask.size))})
        module = self._module(module_id, space, action_space)
        batch = {Columns.OBS: {
            "observation": torch.as_tensor(observation, dtype=torch.float32)[None],
            "action_mask": torch.as_tensor(np.asarray(mask, dtype=bool))[None]}}
        with torch.no_grad():
            logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
        dist = module.get_inference_action_dist_cls().from_logits(logits).to_deterministic()
        return np.asarray(dist.sample()[0], dtype=np.int64)

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> Any:
        """The agent's deterministic action for the env's observation."""
        if self.view is not None:
            observations, infos = self.view.observe(obs, info)
            actions = {a: self._decide(module_of(a), observations[a]["observation"],
                                       infos[a]["action_mask"], self.view.action_space(a))
                       for a in self.view.possible_agents}
            return self.view.joint_action(actions)
        source = self.wrapper if self.wrapper is not None else self.env
        space = source.action_space
        action = self._decide(DEFAULT_MODULE_ID, np.asarray(obs, dtype=np.float32),
                              np.asarray(source.action_masks(), dtype=bool), space)
        if isinstance(space, spaces.Discrete):
            action = np.int64(action.reshape(-1)[0])
        return self.wrapper.action(action) if self.wrapper is not None else action
