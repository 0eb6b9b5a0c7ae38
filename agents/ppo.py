"""PPO schedulers: stable-baselines3 PPO on the MultiDiscrete action, and sb3-contrib's
MaskablePPO using the env's ``action_masks()``.

:func:`train` runs one training job from :class:`TrainArgs` (the arguments of
``train_agent.py`` and ``hffm train``): vectorised envs, observation and reward normalisation
(saved with the model), TensorBoard logs with the FL metrics beside PPO's, periodic
checkpoints, ``--resume``, and at the end an evaluation against every baseline on held-out seeds.
:class:`AgentPolicy` wraps a saved agent in the baselines' ``Policy`` protocol.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hffm_env.config import scenario_names

__all__ = ["TrainArgs", "train", "AgentPolicy", "agent_policy", "TrainingInterrupted",
           "make_env_fn", "prepare_out", "evaluate_against_baselines", "ALGOS", "ENGINES"]

ALGOS = ("ppo", "maskable-ppo")
ENGINES = ("sb3", "rllib")
ACTION_MODES = ("full", "coarse", "menu")


def wrap_actions(env: Any, action_mode: str) -> Any:
    """``env`` as the policy of ``action_mode`` sees it (``full``: unchanged)."""
    from hffm_env.wrappers import CoarseActions, ScheduleMenu

    wrappers = {"full": None, "coarse": CoarseActions, "menu": ScheduleMenu}
    wrapper = wrappers[action_mode]
    return env if wrapper is None else wrapper(env)


@dataclass
class TrainArgs:
    """Arguments of a training run (each field is a command-line flag)."""

    scenario: str = field(default="small", metadata={"help": "preset scenario to train on",
                                                     "choices": tuple(scenario_names())})
    fidelity: str = field(
        default="train",
        metadata={
            "help": "'train' (real FL training in each step), 'surrogate' (accuracy from the "
            "fitted surrogate, costs from the cost model; see hffm calibrate) or 'cost' "
            "(network only)",
            "choices": ("train", "surrogate", "cost"),
        },
    )
    surrogate: str | None = field(
        default=None,
        metadata={"help": "fitted surrogate file for --fidelity surrogate (default: the one "
                  "for this config in the cache or shipped with the package)"},
    )
    finetune_timesteps: int = field(
        default=0,
        metadata={"help": "after training, this many more steps in 'train' fidelity (real "
                  "training), same policy and normalisation statistics"},
    )
    eval_fidelity: str | None = field(
        default=None,
        metadata={"help": "fidelity of the final comparison (default: 'train' after "
                  "surrogate training, else --fidelity)",
                  "choices": ("train", "surrogate", "cost")},
    )
    ent_coef: float = field(default=0.01, metadata={"help": "PPO entropy bonus"})
    action_mode: str = field(
        default="full",
        metadata={"help": "'full' (every slot: periods, pairs, routes, heads, partners, relays), "
                  "'coarse' (periods per module type and a route per cluster; "
                  "hffm_env.wrappers.CoarseActions) or 'menu' (Discrete over the paper's "
                  "schedules and never, chosen each round; hffm_env.wrappers.ScheduleMenu)",
                  "choices": ACTION_MODES},
    )
    algo: str = field(
        default="maskable-ppo",
        metadata={
            "help": "'ppo' (stable-baselines3) or 'maskable-ppo' (sb3-contrib, uses "
            "action_masks())",
            "choices": ALGOS,
        },
    )
    total_timesteps: int = field(
        default=2_000,
        metadata={
            "help": "environment steps (FL rounds) in total over all envs, a resumed run's "
            "earlier steps included"
        },
    )
    n_envs: int = field(
        default=1, metadata={"help": "parallel envs; more than 1 uses SubprocVecEnv (with "
                             "--engine rllib: the number of env runners)"}
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "training seed (evaluation uses held-out seeds)"
        },
    )
    device: str = field(
        default="cpu",
        metadata={
            "help": "torch device for FL training and the policy (cpu, cuda, auto)"
        },
    )
    out: str = field(
        default="out",
        metadata={
            "help": "output folder: model, normalisation statistics, logs, checkpoints, results"
        },
    )
    n_steps: int = field(
        default=64, metadata={"help": "PPO rollout length per env before each update"}
    )
    batch_size: int = field(default=64, metadata={"help": "PPO minibatch size"})
    learning_rate: float = field(default=3e-4, metadata={"help": "PPO learning rate"})
    normalize: bool = field(
        default=True,
        metadata={
            "help": "normalise observations and rewards with running statistics (VecNormalize; "
            "sb3 engine only, RLlib's observations stay in [0, 1])"
        },
    )
    checkpoint_every: int = field(
        default=500, metadata={"help": "save a checkpoint every this many timesteps"}
    )
    resume: str | None = field(
        default=None,
        metadata={
            "help": "agent folder (or its model.zip) to continue from, e.g. "
            "OUT/checkpoints/step_00000512: restores policy, optimiser and normalisation "
            "statistics (nothing is unpickled); --total-timesteps stays the total"
        },
    )
    force: bool = field(
        default=False,
        metadata={"help": "replace the results of an earlier run in a non-empty --out"},
    )
    accuracy_weight: float | None = field(
        default=None,
        metadata={"help": "reward weight of the accuracy gain (default: the scenario's)"},
    )
    latency_weight: float | None = field(
        default=None,
        metadata={"help": "reward weight of the normalised latency (default: the scenario's)"},
    )
    energy_weight: float | None = field(
        default=None,
        metadata={"help": "reward weight of the normalised energy (default: the scenario's)"},
    )
    episode_rounds: int | None = field(
        default=None, metadata={"help": "rounds per episode (default: the scenario's)"}
    )
    overrides: list[str] = field(
        default_factory=list,
        metadata={"help": "scenario overrides, key=value (also --set KEY=VALUE, repeatable, "
                  "as in hffm)", "aliases": ("--set",)},
    )
    config: str | None = field(
        default=None, metadata={"help": "a YAML/JSON scenario config file, layered on "
                                "--scenario before the overrides (as in hffm)"},
    )
    eval_seeds: list[int] = field(
        default_factory=lambda: [1000, 1001, 1002],
        metadata={"help": "held-out seeds for the final comparison"},
    )
    eval_policies: list[str] = field(
        default_factory=list, metadata={"help": "baselines to compare with (default: all)"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    engine: str = field(
        default="sb3",
        metadata={"help": "'sb3' (stable-baselines3 on this machine) or 'rllib' (Ray RLlib: "
                  "--n-envs env runners, --address for a Ray cluster, --multi-agent; "
                  "pip install 'hffm-env[rllib]'; see agents/rllib.py)",
                  "choices": ENGINES},
    )
    address: str | None = field(
        default=None,
        metadata={"help": "RLlib: the Ray cluster to join ('auto' or host:port; default: "
                  "start a local Ray instance)"},
    )
    multi_agent: bool = field(
        default=False,
        metadata={"help": "RLlib: train the multi-agent env (hffm_env.parallel_env), one "
                  "policy shared by the edge agents and one for the cloud"},
    )
    reward_split: str = field(
        default="team",
        metadata={"help": "with --multi-agent: 'team' (every agent gets the env's reward) or "
                  "'cost-share' (each edge agent its cluster's share of the cost terms)",
                  "choices": ("team", "cost-share")},
    )

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo = {self.algo!r}: must be one of {list(ALGOS)}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine = {self.engine!r}: must be one of {list(ENGINES)}")
        if self.reward_split not in ("team", "cost-share"):
            raise ValueError(f"reward_split = {self.reward_split!r}: must be 'team' or "
                             "'cost-share'")
        if self.engine == "sb3":
            for name in ("address", "multi_agent"):
                if getattr(self, name):
                    raise ValueError(f"{name} = {getattr(self, name)!r}: only with --engine "
                                     "rllib")
        else:
            if self.algo != "maskable-ppo":
                raise ValueError(f"algo = {self.algo!r}: the RLlib engine trains masked PPO "
                                 "only (--algo maskable-ppo)")
            if self.finetune_timesteps:
                raise ValueError(f"finetune_timesteps = {self.finetune_timesteps}: fine-tuning "
                                 "in another fidelity is the sb3 engine's only")
            if self.multi_agent and self.action_mode != "full":
                raise ValueError(f"action_mode = {self.action_mode!r}: the multi-agent env "
                                 "has its own per-agent actions; use 'full'")
        for name, value in (("fidelity", self.fidelity), ("eval_fidelity", self.eval_fidelity)):
            if value is not None and value not in ("train", "surrogate", "cost"):
                raise ValueError(f"{name} = {value!r}: must be 'train', 'surrogate' or 'cost'")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode = {self.action_mode!r}: must be one of "
                             f"{list(ACTION_MODES)}")
        if self.finetune_timesteps < 0:
            raise ValueError(f"finetune_timesteps = {self.finetune_timesteps}: must be >= 0")
        for name in ("total_timesteps", "n_envs", "n_steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 1")
        from hffm_env.config import load_scenario, scenario_names

        if self.scenario not in scenario_names():
            raise ValueError(f"scenario = {self.scenario!r}: known are {scenario_names()}")
        load_scenario(self.scenario, config_file=self.config,
                      overrides=self.scenario_overrides())  # a ConfigError before any work

    @property
    def final_fidelity(self) -> str:
        """The fidelity the agent is evaluated in."""
        if self.eval_fidelity is not None:
            return self.eval_fidelity
        return "train" if self.fidelity == "surrogate" else self.fidelity

    def scenario_overrides(self) -> list[str]:
        """The overrides implied by the reward-weight and episode arguments, then ``overrides``."""
        out = []
        for name in ("accuracy_weight", "latency_weight", "energy_weight", "episode_rounds"):
            value = getattr(self, name)
            if value is not None:
                out.append(f"env.{name}={value}")
        return out + list(self.overrides)


def make_env_fn(args: TrainArgs, rank: int, torch_threads: int | None = None,
                in_subprocess: bool = False, fidelity: str | None = None) -> Any:
    """A picklable factory of one monitored env for SB3's vectorised envs. In a worker
    subprocess, Ctrl-C is left to the main process (which saves the run and closes the
    workers) instead of killing each worker with its own traceback."""

    def _init() -> Any:
        import gymnasium as gym
        from stable_baselines3.common.monitor import Monitor

        import hffm_env  # noqa: F401  (registers the ids in a fresh subprocess)

        if in_subprocess:
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)
        env = gym.make(
            "hffm/HFFM-v0",
            scenario=args.scenario,
            config_file=args.config,
            overrides=args.scenario_overrides(),
            fidelity=fidelity or args.fidelity,
            device=_env_device(args.device),
            torch_threads=torch_threads,
            surrogate=args.surrogate if (fidelity or args.fidelity) == "surrogate" else None,
            # the first env builds the model: its pre-training bar shows on a first run
            progress=args.progress and rank == 0,
        )
        env = wrap_actions(env, args.action_mode)
        # No reset here: the vectorised env seeds the first reset with ``seed + rank``
        # (``vec_env.seed``), and later resets continue that stream.
        return Monitor(env)

    return _init


def _env_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TrainingInterrupted(Exception):
    """Ctrl-C during a run: what existed was saved; the message says where, in one line."""


OUT_FILES = ("model.zip", "agent.json", "vecnormalize.npz", "checkpoints", "train_args.json",
             "results.json", "results.md", "pareto.png")
"""What a run writes into ``--out`` (TensorBoard runs in ``runs/`` have unique names)."""


def prepare_out(args: TrainArgs) -> Path:
    """Check ``--out`` before any work: a file is refused, a non-empty folder too unless
    ``--resume`` or ``--force`` (which removes the earlier run's results and checkpoints).
    Nothing is created here, so a failed start leaves nothing behind."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out = {str(out)!r}: is a file; give a folder for the run's outputs")
    if out.is_dir() and any(out.iterdir()) and not (args.resume or args.force):
        raise ValueError(
            f"out = {str(out)!r}: exists and is not empty; pass --force to replace the "
            "earlier run's results, --resume to continue one, or another --out"
        )
    if args.force and out.is_dir():
        from agents.checkpoint import clear_folder

        clear_folder(out, OUT_FILES)
    return out


class _FLMetricsCallback:
    """Writes the FL metrics of every finished round next to PPO's scalars (``fl/``)."""

    @staticmethod
    def build() -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        class FLMetrics(BaseCallback):
            def _on_step(self) -> bool:
                from hffm_env.envs.hffm_env import measured

                for info in self.locals.get("infos", []):
                    if "measured" not in info:  # e.g. the terminal info of another wrapper
                        continue
                    acc = measured(info, "accuracy")
                    if np.isfinite(acc):
                        self.logger.record_mean("fl/accuracy", acc)
                    if "latency_s" in info:
                        self.logger.record_mean("fl/latency_s", info["latency_s"])
                        self.logger.record_mean("fl/energy_j", info["energy_j"])
                    for key, value in info.get("reward_terms", {}).items():
                        self.logger.record_mean(f"reward_terms/{key}", value)
                return True

        return FLMetrics()


def _checkpoint_callback(save: Any, every: int) -> Any:
    """Saves an agent folder each time ``every`` more timesteps have passed, at the start of a
    rollout, i.e. right after a policy update: a checkpoint's weights, optimiser and
    statistics belong to the same step, so resuming from it loses nothing but the episode in
    progress."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpoints(BaseCallback):
        def _init_callback(self) -> None:
            self.next_at = (self.model.num_timesteps // every + 1) * every

        def _on_rollout_start(self) -> None:
            done = self.model.num_timesteps  # the callback's own count lags until a step
            if done >= self.next_at:
                save(Path("checkpoints") / f"step_{done:08d}")
                self.next_at = (done // every + 1) * every

        def _on_step(self) -> bool:
            return True

    return Checkpoints()


def train(args: TrainArgs) -> dict[str, Any]:
    """Train a scheduler as ``args`` say, evaluate it against the baselines, write results.

    Writes under ``args.out``: the agent folder (``model.zip``, ``agent.json``,
    ``vecnormalize.npz`` when normalising; see :mod:`agents.checkpoint`), checkpoints as agent
    folders in ``checkpoints/step_<N>/``, ``runs/{scenario}__{algo}__{seed}__{time}/``
    (TensorBoard), ``train_args.json``, ``results.json``, ``results.md`` and ``pareto.png``.
    Returns the results dict. Ctrl-C saves the agent folder and raises
    :class:`TrainingInterrupted`.
    """
    if args.engine == "rllib":
        try:
            from agents.rllib import train_rllib
        except ImportError as err:
            raise ValueError(f"engine = 'rllib': needs Ray RLlib ({err}); "
                             "pip install 'hffm-env[rllib]'") from None
        return train_rllib(args)
    import torch
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    from agents.checkpoint import (
        AgentInfo,
        Normalization,
        algo_class,
        find_agent,
        load_model,
        save_agent,
    )

    out = prepare_out(args)
    resume = find_agent(args.resume) if args.resume else None
    if resume is not None and resume.info.algo != args.algo:
        raise ValueError(f"resume = {args.resume!r}: was trained with --algo "
                         f"{resume.info.algo}, not {args.algo}")
    if resume is not None and args.normalize and resume.normalization is None:
        raise ValueError(f"resume = {args.resume!r}: has no normalisation statistics; "
                         "resume it with --no-normalize")
    set_random_seed(args.seed)
    threads = max(1, (os.cpu_count() or 1) // args.n_envs)
    subprocess = args.n_envs > 1

    def vector_env(fidelity: str, seed: int, stats: Normalization | None) -> Any:
        fns = [
            make_env_fn(args, rank, torch_threads=threads if subprocess else None,
                        in_subprocess=subprocess, fidelity=fidelity)
            for rank in range(args.n_envs)
        ]
        vec = SubprocVecEnv(fns) if subprocess else DummyVecEnv(fns)
        vec.seed(seed)
        if args.normalize:
            vec = VecNormalize(vec, norm_obs=True, norm_reward=True, clip_obs=10.0)
            if stats is not None:
                stats.apply_to(vec)
        return vec

    vec_env = vector_env(args.fidelity, args.seed,
                         resume.normalization if resume is not None else None)

    run_name = f"{args.scenario}__{args.algo}__{args.seed}__{int(time.time())}"
    log_dir = out / "runs"
    algo_cls = algo_class(args.algo)
    device = "cuda" if args.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
    if resume is not None:
        model = load_model(resume, vec_env.observation_space, vec_env.action_space,
                           env=vec_env, device=device)
        model.tensorboard_log = str(log_dir)
        _start_fresh_episode(model, vec_env, normalized=args.normalize)
    else:
        model = algo_cls(
            "MlpPolicy",
            vec_env,
            n_steps=args.n_steps,
            batch_size=min(args.batch_size, args.n_steps * args.n_envs),
            learning_rate=args.learning_rate,
            ent_coef=args.ent_coef,
            seed=args.seed,
            verbose=0,
            tensorboard_log=str(log_dir),
            device=device,
        )

    def save(where: Path) -> None:
        info = AgentInfo(algo=args.algo, clip_range=float(model.clip_range(1.0)),
                         num_timesteps=int(model.num_timesteps), scenario=args.scenario,
                         fidelity=args.fidelity, action_mode=args.action_mode)
        save_agent(out / where, model, info, vec_env if args.normalize else None)

    callbacks = CallbackList([_checkpoint_callback(save, args.checkpoint_every),
                              _FLMetricsCallback.build()])
    def learn(steps: int, log_name: str, reset: bool, phase: str) -> None:
        """``model.learn``; Ctrl-C saves the agent folder and raises TrainingInterrupted."""
        try:
            model.learn(total_timesteps=steps, callback=callbacks, tb_log_name=log_name,
                        progress_bar=args.progress, reset_num_timesteps=reset)
        except KeyboardInterrupt:
            save(Path("."))
            _write_train_args(out, args, interrupted=True)
            model.get_env().close()
            raise TrainingInterrupted(
                f"interrupted at {model.num_timesteps} of {args.total_timesteps} timesteps "
                f"({phase}); model and statistics saved in {out} (continue with --resume {out})"
            ) from None

    remaining = args.total_timesteps - int(model.num_timesteps)
    started = time.perf_counter()
    if remaining > 0:
        learn(remaining, run_name, resume is None, "while training")
    if args.finetune_timesteps > 0 and args.fidelity != "train":
        # fine-tune on real training: same policy, optimiser and running statistics, on
        # other training seeds than the first phase's
        stats = Normalization.of(vec_env) if args.normalize else None
        vec_env.close()
        vec_env = vector_env("train", args.seed + 500, stats)
        model.set_env(vec_env)
        learn(args.finetune_timesteps, f"{run_name}__finetune", False, "while fine-tuning")
    train_seconds = time.perf_counter() - started
    save(Path("."))
    vec_env.close()
    _write_train_args(out, args, interrupted=False)
    try:
        return evaluate_against_baselines(args, out, train_seconds=train_seconds)
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted while the evaluation started; the trained agent is saved in {out}"
        ) from None


def _start_fresh_episode(model: Any, vec_env: Any, *, normalized: bool) -> None:
    """Reset the envs of a resumed run the way SB3's ``learn`` would, but without counting
    the reset observation in the restored statistics: the checkpoint's statistics already
    counted the reset of the episode that was in progress, so a resumed run ends with the
    same counts as an uninterrupted one."""
    if normalized:
        vec_env.training = False
    model._last_obs = vec_env.reset()
    if normalized:
        vec_env.training = True
        model._last_original_obs = vec_env.get_original_obs()
    model._last_episode_starts = np.ones((vec_env.num_envs,), dtype=bool)


def _write_train_args(out: Path, args: TrainArgs, *, interrupted: bool) -> None:
    payload = {**dataclasses.asdict(args), "interrupted": interrupted}
    (out / "train_args.json").write_text(json.dumps(payload, indent=2))


def evaluate_against_baselines(
    args: TrainArgs, agent_path: Path, train_seconds: float = float("nan")
) -> dict[str, Any]:
    """Run the trained agent (an agent folder) and the baselines on ``args.eval_seeds``
    through the benchmark runner; write ``results.json``, ``results.md`` and ``pareto.png``
    into that folder. Ctrl-C keeps the episodes that finished and sets ``interrupted``."""
    import gymnasium as gym

    from baselines.policies import policy_names
    from baselines.runner import format_table, plot_tradeoffs, run_benchmark, verdict

    out = Path(agent_path)
    agent = agent_policy(out, name=f"agent-{args.engine}-{args.algo}"
                         if args.engine != "sb3" else f"agent-{args.algo}")
    names = args.eval_policies or policy_names()

    def make_env() -> Any:
        return gym.make(
            "hffm/HFFM-v0",
            scenario=args.scenario,
            config_file=args.config,
            overrides=args.scenario_overrides(),
            fidelity=args.final_fidelity,
            device=_env_device(args.device),
            surrogate=args.surrogate if args.final_fidelity == "surrogate" else None,
        )

    result = run_benchmark(
        make_env,
        [agent, *names],
        seeds=args.eval_seeds,
        progress=args.progress,
        scenario=args.scenario,
        fidelity=args.final_fidelity,
    )
    payload = result.to_dict()
    payload["train_args"] = dataclasses.asdict(args)
    payload["train_seconds"] = train_seconds
    payload["verdict"] = verdict(result, agent.name)
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    table = format_table(result)
    (out / "results.md").write_text(f"{table}\n\n**Verdict:** {payload['verdict']}\n")
    plot_tradeoffs(result, out / "pareto.png")
    return payload


def agent_policy(model_path: str | Path, name: str = "agent") -> Any:
    """A saved agent folder of either engine as a baselines ``Policy``: an
    :class:`AgentPolicy` (stable-baselines3) or an :class:`agents.rllib.RLlibAgentPolicy`.
    The folder is checked at once (one clean :class:`~agents.checkpoint.AgentFileError`)."""
    from agents.checkpoint import AgentFileError, find_agent

    agent = find_agent(model_path)
    if agent.info.engine == "rllib":
        try:
            from agents.rllib import RLlibAgentPolicy
        except ImportError as err:
            raise AgentFileError(f"{model_path}: an RLlib agent needs Ray RLlib to run "
                                 f"({err}); pip install 'hffm-env[rllib]'") from None
        return RLlibAgentPolicy(agent, name=name)
    return AgentPolicy(model_path, name=name)


class AgentPolicy:
    """A saved agent folder (or its ``model.zip``) as a baselines ``Policy``: observations are
    normalised with the saved statistics (if any), actions are deterministic, and MaskablePPO
    agents get the env's action masks. The folder is checked at once (one clean
    :class:`~agents.checkpoint.AgentFileError` for a bad one); the weights load, without
    unpickling anything, at the first :meth:`reset`, for that env's spaces."""

    def __init__(self, model_path: str | Path, name: str = "agent") -> None:
        from agents.checkpoint import find_agent

        self.name = name
        self.agent = find_agent(model_path)
        self.maskable = self.agent.info.algo == "maskable-ppo"
        self.wrapper: Any = None  # the action wrapper of a coarse or menu agent
        self.model: Any = None
        self.env: Any = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Remember the env (for its action masks); load the weights on first use."""
        from agents.checkpoint import load_model

        self.env = env.unwrapped
        self.wrapper = None
        if self.agent.info.action_mode != "full":
            self.wrapper = wrap_actions(env, self.agent.info.action_mode)
        space = self.wrapper.action_space if self.wrapper is not None else env.action_space
        if self.model is None:
            self.model = load_model(self.agent, env.observation_space, space)

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The agent's deterministic action."""
        norm = self.agent.normalization
        x = norm.normalize_obs(obs) if norm is not None else np.asarray(obs, dtype=np.float32)
        source = self.wrapper if self.wrapper is not None else self.env
        masks = source.action_masks() if self.maskable else None
        action, _ = self.model.predict(x, deterministic=True, **(
            {"action_masks": masks} if self.maskable else {}))
        action = np.asarray(action, dtype=np.int64)
        return self.wrapper.action(action) if self.wrapper is not None else action
