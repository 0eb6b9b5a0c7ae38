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

__all__ = ["TrainArgs", "train", "AgentPolicy", "make_env_fn", "ALGOS"]

ALGOS = ("ppo", "maskable-ppo")


@dataclass
class TrainArgs:
    """Arguments of a training run (each field is a command-line flag)."""

    scenario: str = field(default="small", metadata={"help": "preset scenario to train on"})
    fidelity: str = field(
        default="train",
        metadata={
            "help": "'train' (real FL training in each step) or 'cost' (network only)"
        },
    )
    algo: str = field(
        default="maskable-ppo",
        metadata={
            "help": "'ppo' (stable-baselines3) or 'maskable-ppo' (sb3-contrib, uses action_masks())"
        },
    )
    total_timesteps: int = field(
        default=2_000,
        metadata={"help": "environment steps (FL rounds) to train for, over all envs"},
    )
    n_envs: int = field(
        default=1, metadata={"help": "parallel envs; more than 1 uses SubprocVecEnv"}
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
            "help": "normalise observations and rewards with running statistics (VecNormalize)"
        },
    )
    checkpoint_every: int = field(
        default=500, metadata={"help": "save a checkpoint every this many timesteps"}
    )
    resume: str | None = field(
        default=None, metadata={"help": "path of a saved model (.zip) to continue training from"}
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
        default_factory=list, metadata={"help": "extra scenario overrides, key=value"}
    )
    eval_seeds: list[int] = field(
        default_factory=lambda: [1000, 1001, 1002],
        metadata={"help": "held-out seeds for the final comparison"},
    )
    eval_policies: list[str] = field(
        default_factory=list, metadata={"help": "baselines to compare with (default: all)"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo = {self.algo!r}: must be one of {list(ALGOS)}")
        if self.fidelity not in ("train", "cost"):
            raise ValueError(f"fidelity = {self.fidelity!r}: must be 'train' or 'cost'")
        for name in ("total_timesteps", "n_envs", "n_steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 1")

    def scenario_overrides(self) -> list[str]:
        """The overrides implied by the reward-weight and episode arguments, then ``overrides``."""
        out = []
        for name in ("accuracy_weight", "latency_weight", "energy_weight", "episode_rounds"):
            value = getattr(self, name)
            if value is not None:
                out.append(f"env.{name}={value}")
        return out + list(self.overrides)


def make_env_fn(args: TrainArgs, rank: int, torch_threads: int | None = None) -> Any:
    """A picklable factory of one monitored env for SB3's vectorised envs."""

    def _init() -> Any:
        import gymnasium as gym
        from stable_baselines3.common.monitor import Monitor

        import hffm_env  # noqa: F401  (registers the ids in a fresh subprocess)

        env = gym.make(
            "hffm/HFFM-v0",
            scenario=args.scenario,
            overrides=args.scenario_overrides(),
            fidelity=args.fidelity,
            device=_env_device(args.device),
            torch_threads=torch_threads,
            # the first env builds the model: its pre-training bar shows on a first run
            progress=args.progress and rank == 0,
        )
        # No reset here: the vectorised env seeds the first reset with ``seed + rank``
        # (``vec_env.seed``), and later resets continue that stream.
        return Monitor(env)

    return _init


def _env_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _algo_class(algo: str) -> Any:
    if algo == "maskable-ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO
    from stable_baselines3 import PPO

    return PPO


class _FLMetricsCallback:
    """Writes the FL metrics of every finished round next to PPO's scalars (``fl/``)."""

    @staticmethod
    def build() -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        class FLMetrics(BaseCallback):
            def _on_step(self) -> bool:
                for info in self.locals.get("infos", []):
                    acc = info.get("accuracy", {}).get("mean")
                    if acc is not None and np.isfinite(acc):
                        self.logger.record_mean("fl/accuracy", acc)
                    if "latency_s" in info:
                        self.logger.record_mean("fl/latency_s", info["latency_s"])
                        self.logger.record_mean("fl/energy_j", info["energy_j"])
                    for key, value in info.get("reward_terms", {}).items():
                        self.logger.record_mean(f"reward_terms/{key}", value)
                return True

        return FLMetrics()


def train(args: TrainArgs) -> dict[str, Any]:
    """Train a scheduler as ``args`` say, evaluate it against the baselines, write results.

    Writes under ``args.out``: ``model.zip``, ``vecnormalize.pkl`` (when normalising),
    ``checkpoints/``, ``runs/{scenario}__{algo}__{seed}__{time}/`` (TensorBoard),
    ``results.json``, ``results.md`` and ``pareto.png``. Returns the results dict.
    """
    import torch
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    set_random_seed(args.seed)
    threads = max(1, (os.cpu_count() or 1) // args.n_envs)
    fns = [
        make_env_fn(args, rank, torch_threads=threads if args.n_envs > 1 else None)
        for rank in range(args.n_envs)
    ]
    vec_env = SubprocVecEnv(fns) if args.n_envs > 1 else DummyVecEnv(fns)
    vec_env.seed(args.seed)
    norm_path = out / "vecnormalize.pkl"
    if args.normalize:
        if args.resume and (Path(args.resume).parent / "vecnormalize.pkl").exists():
            vec_env = VecNormalize.load(str(Path(args.resume).parent / "vecnormalize.pkl"), vec_env)
        else:
            vec_env = VecNormalize(vec_env, norm_obs=True, norm_reward=True, clip_obs=10.0)

    run_name = f"{args.scenario}__{args.algo}__{args.seed}__{int(time.time())}"
    log_dir = out / "runs"
    algo_cls = _algo_class(args.algo)
    device = "cuda" if args.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
    if args.resume:
        model = algo_cls.load(args.resume, env=vec_env, device=device)
    else:
        model = algo_cls(
            "MlpPolicy",
            vec_env,
            n_steps=args.n_steps,
            batch_size=min(args.batch_size, args.n_steps * args.n_envs),
            learning_rate=args.learning_rate,
            seed=args.seed,
            verbose=0,
            tensorboard_log=str(log_dir),
            device=device,
        )
    checkpoint = CheckpointCallback(
        save_freq=max(1, args.checkpoint_every // args.n_envs),
        save_path=str(out / "checkpoints"),
        name_prefix=args.algo,
        save_vecnormalize=args.normalize,
    )
    callbacks = CallbackList([checkpoint, _FLMetricsCallback.build()])
    started = time.perf_counter()
    model.learn(
        total_timesteps=args.total_timesteps,
        callback=callbacks,
        tb_log_name=run_name,
        progress_bar=args.progress,
        reset_num_timesteps=not args.resume,
    )
    train_seconds = time.perf_counter() - started
    model.save(out / "model.zip")
    if args.normalize:
        vec_env.save(str(norm_path))
    vec_env.close()
    (out / "train_args.json").write_text(json.dumps(dataclasses.asdict(args), indent=2))
    return evaluate_against_baselines(args, out / "model.zip", train_seconds=train_seconds)


def evaluate_against_baselines(
    args: TrainArgs, model_path: Path, train_seconds: float = float("nan")
) -> dict[str, Any]:
    """Run the trained agent and the baselines on ``args.eval_seeds`` through the benchmark
    runner; write ``results.json``, ``results.md`` and ``pareto.png`` beside the model."""
    import gymnasium as gym

    from baselines.policies import policy_names
    from baselines.runner import format_table, plot_tradeoffs, run_benchmark

    out = Path(model_path).parent
    agent = AgentPolicy(model_path, name=f"agent-{args.algo}")
    names = args.eval_policies or policy_names()

    def make_env() -> Any:
        return gym.make(
            "hffm/HFFM-v0",
            scenario=args.scenario,
            overrides=args.scenario_overrides(),
            fidelity=args.fidelity,
            device=_env_device(args.device),
        )

    result = run_benchmark(
        make_env,
        [agent, *names],
        seeds=args.eval_seeds,
        progress=args.progress,
        scenario=args.scenario,
        fidelity=args.fidelity,
    )
    payload = result.to_dict()
    payload["train_args"] = dataclasses.asdict(args)
    payload["train_seconds"] = train_seconds
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    table = format_table(result)
    (out / "results.md").write_text(table + "\n")
    plot_tradeoffs(result, out / "pareto.png")
    return payload


class AgentPolicy:
    """A saved SB3 agent as a baselines ``Policy``: observations are normalised with the saved
    ``vecnormalize.pkl`` statistics (if any), actions are deterministic, and MaskablePPO agents
    get the env's action masks."""

    def __init__(self, model_path: str | Path, name: str = "agent") -> None:
        import pickle

        from sb3_contrib import MaskablePPO
        from stable_baselines3 import PPO

        path = Path(model_path)
        if not path.exists():
            raise FileNotFoundError(f"agent {str(path)!r}: no such file")
        self.name = name
        try:
            self.model = MaskablePPO.load(path, device="cpu")
            self.maskable = True
        except Exception:  # not a MaskablePPO archive: plain PPO
            self.model = PPO.load(path, device="cpu")
            self.maskable = False
        self.obs_rms = None
        self.clip_obs = 10.0
        self.epsilon = 1e-8
        norm = path.parent / "vecnormalize.pkl"
        if norm.exists():
            with open(norm, "rb") as handle:
                stats = pickle.load(handle)
            self.obs_rms = stats.obs_rms
            self.clip_obs = stats.clip_obs
            self.epsilon = stats.epsilon
        self.env: Any = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Remember the env (for its action masks)."""
        self.env = env.unwrapped

    def act(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """The agent's deterministic action."""
        x = np.asarray(obs, dtype=np.float32)
        if self.obs_rms is not None:
            x = np.clip(
                (x - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon),
                -self.clip_obs,
                self.clip_obs,
            ).astype(np.float32)
        if self.maskable:
            action, _ = self.model.predict(
                x, deterministic=True, action_masks=self.env.action_masks()
            )
        else:
            action, _ = self.model.predict(x, deterministic=True)
        return np.asarray(action, dtype=np.int64)
