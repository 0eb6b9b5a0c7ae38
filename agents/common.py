"""What both training engines share: the run's arguments (:class:`TrainArgs`, one
command-line flag per field), the action wrappers of the action modes, the output folder's
rules, the ``train_args.json`` record and the learning curve (:class:`LearningCurve`).
Nothing here imports an RL library."""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hffm_env import jsonio
from hffm_env.agents.checkpoint import (
    ACTION_MODES,
    CHECKPOINTS,
    ENGINES,
    INFO_FILE,
    MODEL_FILE,
    NORMALIZATION_FILE,
    POLICY_FILE,
    RLLIB_CHECKPOINT_DIR,
    SETTING_FLAGS,
    TRAIN_ARGS_FILE,
    checkpoint_step,
    names_an_agent,
    setting_overrides,
)
from hffm_env.config import FIDELITIES, REWARD_SPLITS, scenario_names
from hffm_env.files import (
    FileBusy,
    lock_file,
    require_path,
    save_figure_atomically,
    write_text_atomically,
)
from hffm_env.provenance import provenance
from hffm_env.seeding import DEFAULT_EVAL_SEEDS

__all__ = [
    "TrainArgs",
    "TrainingInterrupted",
    "ALGOS",
    "ENGINES",
    "LR_SCHEDULES",
    "ACTION_MODES",
    "OUT_FILES",
    "RESULT_FILES",
    "LEARNING_CURVE_CSV",
    "LEARNING_CURVE_PNG",
    "LearningCurve",
    "wrap_actions",
    "env_device",
    "prepare_out",
    "replace_earlier_run",
    "write_train_args",
    "RUN_STATES",
    "out_folder_held",
    "FINETUNE_SEED_OFFSET",
    "PROG",
    "note",
    "note_whole_rollouts",
    "round_metrics",
    "run_name",
]

ALGOS = ("ppo", "maskable-ppo")
LR_SCHEDULES = ("constant", "linear")
FINETUNE_SEED_OFFSET = 500
"""Fine-tuning resets its envs with ``seed + FINETUNE_SEED_OFFSET`` onwards: other training
seeds than the first phase's."""


PROG = "train_agent.py"
"""The command's name in its notes (``hffm train`` when run through ``hffm``)."""


def note(message: str) -> None:
    """A note of the training command on stderr: ``<command>: note: <message>``."""
    print(f"{PROG}: note: {message}", file=sys.stderr)


def note_whole_rollouts(args: TrainArgs, rollout: int, remaining: int,
                        finetune_left: int = 0) -> None:
    """Say when PPO will train more rounds than asked: it collects whole rollouts of
    ``rollout`` rounds (``n_steps`` per env; fine-tuning's are real training, minutes each),
    and a minibatch is at most one rollout."""
    for flag, steps in (("--total-timesteps", remaining), ("--finetune-timesteps", finetune_left)):
        if steps > 0 and steps % rollout:
            note(f"PPO collects whole rollouts of --n-steps x --n-envs = {rollout} rounds, so "
                 f"{flag} leaves {steps} to train and {-(-steps // rollout) * rollout} are "
                 "trained")
    if args.batch_size > rollout:
        note(f"--batch-size {args.batch_size} is more than a rollout; minibatches of {rollout}")


DEFAULT_IMITATE_ROUNDS = 2048
"""Rounds a plan plays to make the demonstrations of ``--imitate``."""


def wrap_actions(env: Any, action_mode: str) -> Any:
    """``env`` as the policy of ``action_mode`` sees it (``full``: unchanged)."""
    from hffm_env.wrappers import CoarseActions, ScheduleMenu

    wrappers = {"full": None, "coarse": CoarseActions, "menu": ScheduleMenu}
    wrapper = wrappers[action_mode]
    try:
        return env if wrapper is None else wrapper(env)
    except ValueError as err:  # e.g. a period menu without the paper's schedules' periods
        raise ValueError(f"action_mode = {action_mode!r}: {err}") from None


def _named_fit(surrogate: Any) -> dict[str, str]:
    """A loaded surrogate as :meth:`TrainArgs.surrogate_fit` names it (``path``: the file the
    run's envs load, so that a fit calibrated into the cache mid-run does not replace it)."""
    return {"origin": surrogate.origin, "digest": surrogate.digest, "path": str(surrogate.path)}


@dataclass
class TrainArgs:
    """Arguments of a training run (each field is a command-line flag)."""

    scenario: str | None = field(
        default=None, metadata={"help": "preset scenario to train on (default: the one the "
                                "--config file names, else small)",
                                "choices": tuple(scenario_names())})
    fidelity: str = field(
        default="train",
        metadata={
            "help": "'train' (real FL training in each step), 'surrogate' (accuracy from the "
            "fitted surrogate, costs from the cost model; see hffm calibrate) or 'cost' "
            "(network only)",
            "choices": FIDELITIES,
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
                  "surrogate training or fine-tuning, else --fidelity)",
                  "choices": FIDELITIES},
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
            "earlier steps included; at least one rollout (--n-steps x --n-envs), and PPO "
            "trains whole rollouts"
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
            "help": "torch device for FL training and the policy: cpu, cuda, cuda:<i>, mps or "
                    "auto (cuda when present)"
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
    lr_schedule: str = field(
        default="constant",
        metadata={"help": "'constant' (--learning-rate throughout) or 'linear' (from "
                  "--learning-rate down to 0 over the whole run, fine-tuning included)",
                  "choices": LR_SCHEDULES},
    )
    normalize: bool | None = field(
        default=None,
        metadata={
            "help": "normalise observations and rewards with running statistics (VecNormalize; "
            "default: on with --engine sb3; RLlib's observations stay in [0, 1], so --engine "
            "rllib refuses it)"
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
    imitate: str | None = field(
        default=None,
        metadata={"help": "a round plan (JSON from the source repository's "
                  "benchmarks/plan_search.py) to clone into the policy by behaviour cloning "
                  "before PPO starts: coarse action mode, sb3 "
                  "engine, a fresh run (see hffm_env.agents.imitation)"},
    )
    imitate_rounds: int | None = field(
        default=None,
        metadata={"help": "with --imitate: rounds the plan plays to make the demonstrations "
                  f"(not counted in --total-timesteps; default {DEFAULT_IMITATE_ROUNDS})"},
    )
    force: bool = field(
        default=False,
        metadata={"help": "replace the results of an earlier run in a non-empty --out"},
    )
    accuracy_weight: float | None = field(
        default=None,
        metadata={"help": "reward weight of the accuracy term (default: the scenario's)"},
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
                  "as in hffm)", "aliases": ("--set",), "nargs": "+", "metavar": "KEY=VALUE"},
    )
    config: str | None = field(
        default=None, metadata={"help": "a YAML/JSON scenario config file, layered on "
                                "--scenario before the overrides (as in hffm)"},
    )
    eval_seeds: list[int] = field(
        default_factory=lambda: list(DEFAULT_EVAL_SEEDS),
        metadata={"help": "held-out seeds for the final comparison"},
    )
    eval_policies: list[str] = field(
        default_factory=list,
        metadata={"help": "baselines to compare with, comma- or space-separated (default: "
                  "all whose periods are on env.period_menu; hffm bench --help lists them); "
                  "module:Class for a policy of your own"}
    )
    evaluate: bool = field(
        default=True,
        metadata={"help": "after training, compare the agent with the baselines on "
                  "--eval-seeds (results.json, results.md, pareto.png); --no-evaluate stops "
                  "after training (hffm bench --agent OUT --config OUT compares it later; "
                  "the command printed at the end gives the evaluation's flags too)"},
    )
    eval_data_split_per_seed: bool = field(
        default=False,
        metadata={"help": "final comparison: each eval seed plays on its own data split (the "
                  "seed is its env's config seed too), as hffm bench --data-split-per-seed; "
                  "train or cost evaluation fidelity (default: every seed on the training "
                  "split)"},
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
                  "choices": REWARD_SPLITS},
    )

    def __post_init__(self) -> None:
        self._surrogate_fit: dict[str, str] | None = None  # (the checks below find the fit)
        # paths as the shell would have expanded them (`--out=~/runs/x` made a folder named
        # "~"); the config file absolute, since agent folders record it and read it again
        # from wherever the agent is used
        for name in ("out", "resume", "surrogate", "imitate", "config"):
            value = getattr(self, name)
            if value is not None:  # ("" was the current folder: an unset $VAR restarted a run)
                require_path(value, name)
            if isinstance(value, str):
                setattr(self, name, os.path.expanduser(value))
        if self.config:
            self.config = os.path.abspath(self.config)
        if self.algo not in ALGOS:
            raise ValueError(f"algo = {self.algo!r}: must be one of {list(ALGOS)}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine = {self.engine!r}: must be one of {list(ENGINES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule = {self.lr_schedule!r}: must be one of "
                             f"{list(LR_SCHEDULES)}")
        if self.reward_split not in REWARD_SPLITS:
            raise ValueError(f"reward_split = {self.reward_split!r}: must be one of "
                             f"{list(REWARD_SPLITS)}")
        if self.reward_split != "team" and not self.multi_agent:
            raise ValueError(f"reward_split = {self.reward_split!r}: only with --multi-agent "
                             "(the single-agent env has one reward)")
        if self.fidelity == "train" and self.finetune_timesteps:
            raise ValueError(f"finetune_timesteps = {self.finetune_timesteps}: fine-tuning adds "
                             "real training after a run on another fidelity; with --fidelity "
                             "train the whole run is real training already (raise "
                             "--total-timesteps instead)")
        if self.engine == "sb3":
            for name in ("address", "multi_agent"):
                if getattr(self, name):
                    raise ValueError(f"{name} = {getattr(self, name)!r}: only with --engine "
                                     "rllib")
            if self.normalize is None:
                self.normalize = True
        else:
            if self.normalize:
                raise ValueError("normalize: RLlib's observations stay in [0, 1], "
                                 "unnormalised; leave --normalize out with --engine rllib")
            if self.algo != "maskable-ppo":
                raise ValueError(f"algo = {self.algo!r}: the RLlib engine trains masked PPO "
                                 "only (--algo maskable-ppo)")
            if self.finetune_timesteps:
                raise ValueError(f"finetune_timesteps = {self.finetune_timesteps}: fine-tuning "
                                 "in another fidelity is the sb3 engine's only")
            if self.multi_agent and self.action_mode != "full":
                raise ValueError(f"action_mode = {self.action_mode!r}: the multi-agent env "
                                 "has its own per-agent actions; use 'full'")
            self.normalize = False  # (train_args.json says so)
        for name, value in (("fidelity", self.fidelity), ("eval_fidelity", self.eval_fidelity)):
            if value is not None and value not in FIDELITIES:
                raise ValueError(f"{name} = {value!r}: must be one of {list(FIDELITIES)}")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode = {self.action_mode!r}: must be one of "
                             f"{list(ACTION_MODES)}")
        if self.finetune_timesteps < 0:
            raise ValueError(f"finetune_timesteps = {self.finetune_timesteps}: must be >= 0")
        if self.imitate is not None:
            conflicts = [given for given, clash in (
                (f"--engine {self.engine}", self.engine != "sb3"),
                (f"--action-mode {self.action_mode}", self.action_mode != "coarse"),
                ("--resume", bool(self.resume))) if clash]
            if conflicts:
                raise ValueError(f"imitate = {self.imitate!r}: cloning a plan needs --engine "
                                 "sb3, --action-mode coarse and a fresh run (no --resume); "
                                 f"here {', '.join(conflicts)}")
            from hffm_env.baselines.plan import RoundPlan

            try:  # a bad file is one error line before any work
                RoundPlan.read(self.imitate)
            except (OSError, ValueError) as err:
                raise ValueError(f"imitate: {err}") from None
            if self.imitate_rounds is None:
                self.imitate_rounds = DEFAULT_IMITATE_ROUNDS
        elif self.imitate_rounds is not None:
            raise ValueError(f"imitate_rounds = {self.imitate_rounds}: only with --imitate (the "
                             "rounds a plan plays for cloning)")
        if self.surrogate is not None and "surrogate" not in (self.fidelity,
                                                               self.final_fidelity):
            raise ValueError(f"surrogate = {self.surrogate!r}: neither training (--fidelity "
                             f"{self.fidelity}) nor the evaluation (--eval-fidelity "
                             f"{self.final_fidelity}) runs the surrogate fidelity")
        if self.eval_data_split_per_seed and self.final_fidelity == "surrogate":
            raise ValueError("eval_data_split_per_seed: a surrogate serves the data split it "
                             "was fitted on; judge other splits with --eval-fidelity train")
        for name in ("total_timesteps", "n_envs", "n_steps", "batch_size", "checkpoint_every",
                     *(("imitate_rounds",) if self.imitate else ())):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)}: must be >= 1")
        if self.batch_size < 2:  # PPO normalises each minibatch's advantages over its rows
            raise ValueError(f"batch_size = {self.batch_size}: must be >= 2")
        if self.n_steps * self.n_envs < 2:
            raise ValueError(f"n_steps = {self.n_steps} with n_envs = {self.n_envs}: a rollout "
                             "needs at least 2 steps (n_steps x n_envs >= 2)")
        self._check_numbers()
        rollout = self.n_steps * self.n_envs
        # PPO trains whole rollouts: one longer than the run would train many times the
        # rounds asked for (a resumed run's remainder gets a note when it trains)
        for flag, steps in (("total_timesteps", self.total_timesteps if self.resume is None
                             else 0), ("finetune_timesteps", self.finetune_steps)):
            if 0 < steps < rollout:
                raise ValueError(
                    f"{flag} = {steps}: less than one rollout ({rollout} rounds: --n-steps "
                    f"{self.n_steps} x --n-envs {self.n_envs}), and PPO trains whole "
                    f"rollouts, so {rollout} would be trained; lower --n-steps or raise "
                    f"--{flag.replace('_', '-')}")
        from hffm_env.config import parse_override, resolve_scenario, scenario_names

        given = {parse_override(o)[0]: o for o in self.overrides}
        for name in SETTING_FLAGS:
            key = f"env.{name}"
            if getattr(self, name) is not None and key in given:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} and --set "
                                 f"{given[key]} give one setting twice; give one of them")

        if self.scenario is not None and self.scenario not in scenario_names():
            raise ValueError(f"scenario = {self.scenario!r}: known are {scenario_names()}")
        # the config file read once, now: every env of the run and its final evaluation are
        # built from this config, not from a file that may be edited while the run trains
        # (a ConfigError now, also for a preset the file names that is not one)
        if self.config and names_an_agent(self.config):
            # (an agent's settings stand in for a config file in hffm bench and the others;
            # a run records a file, which its resume and agent.json name)
            raise ValueError(f"config = {self.config!r}: an agent folder; training takes a "
                             "YAML or JSON config file (hffm bench, describe, pretrain and "
                             "calibrate take agent folders; --resume continues an agent)")
        self.scenario, config = resolve_scenario(self.scenario, self.config,
                                                 self.scenario_overrides())
        self._scenario_config = config
        # (an evaluation that does not run needs no fit)
        needs_fit = [flag for flag, fidelity in (
            ("--fidelity", self.fidelity),
            ("--eval-fidelity", self.final_fidelity if self.evaluate else None))
            if fidelity == "surrogate"]
        if self.surrogate is None and needs_fit:
            from hffm_env.fl.surrogate import SurrogateMissing, find_surrogate

            try:  # not after training, when the evaluation would build its env
                self._surrogate_fit = _named_fit(find_surrogate(config))
            except SurrogateMissing as err:
                raise ValueError(f"{' and '.join(needs_fit)} surrogate: {err} (or --surrogate "
                                 "PATH)") from None

    def _check_numbers(self) -> None:
        """Seeds, rates and the evaluation's policies: refused before any training, since a
        bad one would otherwise surface only when used (after training, for the evaluation)."""
        from hffm_env.seeding import check_seed

        check_seed(self.seed)
        for eval_seed in self.eval_seeds:  # ("eval_seeds = -3": the command's flag and value)
            check_seed(eval_seed, "eval_seeds")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise ValueError(f"learning_rate = {self.learning_rate}: must be a finite number "
                             ">= 0 (0 keeps a cloned policy's weights; with --normalize "
                             "its observation statistics still follow the new rounds)")
        if not (math.isfinite(self.ent_coef) and self.ent_coef >= 0):
            raise ValueError(f"ent_coef = {self.ent_coef}: must be a finite number >= 0")
        if not self.eval_seeds:
            raise ValueError("eval_seeds = []: the final comparison needs at least one seed")
        from hffm_env.seeding import FIRST_HELD_OUT_SEED

        trained_on = self.training_env_seeds()
        if max(trained_on) >= FIRST_HELD_OUT_SEED or set(trained_on) & set(self.eval_seeds):
            raise ValueError(
                f"seed = {self.seed}, n_envs = {self.n_envs}: training would reset its envs "
                f"with seeds {min(trained_on)}"
                f"..{max(trained_on)}, which must stay below {FIRST_HELD_OUT_SEED} (held out "
                f"for evaluation) and apart from eval_seeds = {self.eval_seeds}")
        from hffm_env.arguments import device
        from hffm_env.baselines.policies import make_policy, policy_names

        for name, values in (("eval_seeds", self.eval_seeds),
                             ("eval_policies", self.eval_policies)):
            twice = [v for k, v in enumerate(values) if v in values[:k]]
            if twice:
                raise ValueError(f"{name} has {twice[0]!r} twice: each once (a repeat would "
                                 "count twice in the comparison)")
        unknown = [p for p in self.eval_policies if p not in policy_names() and ":" not in p]
        if unknown:
            raise ValueError(f"eval_policies has {unknown[0]!r}: known policies are "
                             f"{policy_names()} (or module:Class for one of your own)")
        for spec in (p for p in self.eval_policies if ":" in p):  # imported now, not after
            try:                                                  # training
                make_policy(spec)
            except ValueError as err:
                raise ValueError(f"eval_policies: {err}") from None
        if self.surrogate is not None:  # a bad file is one line now, not after training
            from hffm_env.fl.surrogate import AccuracySurrogate

            try:
                self._surrogate_fit = _named_fit(AccuracySurrogate.load(self.surrogate))
            except (OSError, ValueError, KeyError, TypeError) as err:
                what = f"no {err} entry" if isinstance(err, KeyError) else str(err)
                raise ValueError(f"surrogate = {self.surrogate!r}: {what}") from None
        if self.device != "auto":
            try:
                device(self.device)
            except argparse.ArgumentTypeError as err:
                raise ValueError(f"device = {err}") from None

    def training_env_seeds(self) -> list[int]:
        """The seeds training resets its envs with: ``seed`` onwards, one per env (RLlib's env
        runners take ``seed + 1`` onwards: one more), then, when fine-tuning, ``seed +``
        :data:`FINETUNE_SEED_OFFSET` onwards."""
        runners = self.n_envs + 1 if self.engine == "rllib" else self.n_envs
        seeds = list(range(self.seed, self.seed + runners))
        if self.finetune_steps:
            start = self.seed + FINETUNE_SEED_OFFSET
            seeds += list(range(start, start + self.n_envs))
        return seeds

    @property
    def finetune_steps(self) -> int:
        """The fine-tuning steps in ``train`` fidelity the run takes: ``finetune_timesteps``,
        or none when it trains in ``train`` fidelity already."""
        return self.finetune_timesteps if self.fidelity != "train" else 0

    def learning_rate_at(self, timesteps: int) -> float:
        """The learning rate after ``timesteps`` of the run (``lr_schedule``): constant, or
        linear from ``learning_rate`` at 0 to 0 at the run's last step (training plus
        fine-tuning)."""
        if self.lr_schedule == "constant":
            return self.learning_rate
        total = self.total_timesteps + self.finetune_steps
        return self.learning_rate * max(0.0, 1.0 - timesteps / total)

    def surrogate_fit(self, fidelity: str | None = None) -> dict[str, str] | None:
        """The surrogate fit the run's envs in ``fidelity`` play (None: any of its envs), as
        ``{"origin": where it comes from, in words, "digest": of its file as read, "path":
        the file, which every env of the run loads}``
        (:attr:`~hffm_env.fl.surrogate.AccuracySurrogate.origin`, ``digest``: a calibrated fit
        in the cache wins over the shipped one); None when those envs are not of surrogate
        fidelity."""
        if fidelity is not None and fidelity != "surrogate":
            return None
        return self._surrogate_fit

    @property
    def final_fidelity(self) -> str:
        """The fidelity the agent is evaluated in."""
        if self.eval_fidelity is not None:
            return self.eval_fidelity
        # a fine-tuned agent's last steps were real training: judged there too (in cost
        # fidelity its accuracy went unmeasured)
        return ("train" if self.fidelity == "surrogate" or self.finetune_steps > 0
                else self.fidelity)

    def scenario_config(self) -> Any:
        """The :class:`~hffm_env.config.ScenarioConfig` the run trains on: ``scenario``, then
        the ``config`` file as it was when these arguments were made, then
        :meth:`scenario_overrides`. Every env of the run is built from it."""
        return self._scenario_config

    def env_kwargs(self, fidelity: str) -> dict[str, Any]:
        """The ``gym.make(ENV_ID, ...)`` keyword arguments of this run's envs in ``fidelity``:
        the scenario config, the fidelity, the device resolved, and the ``surrogate`` file
        where that fidelity reads one: the one found when the run started (the one rule of
        training, evaluation and RLlib's env runners)."""
        fit = self.surrogate_fit(fidelity)  # (the file found when the run started)
        return {"scenario": self.scenario_config(), "fidelity": fidelity,
                "device": env_device(self.device),
                "surrogate": fit["path"] if fit is not None else None}

    def scenario_overrides(self) -> list[str]:
        """The overrides implied by the reward-weight and episode arguments, then ``overrides``
        (:func:`~hffm_env.agents.checkpoint.setting_overrides`)."""
        return setting_overrides({name: getattr(self, name) for name in SETTING_FLAGS},
                                 self.overrides)


def round_metrics(info: Mapping[str, Any]) -> dict[str, float]:
    """The FL metrics of one round's ``info`` that a training log records, by their log name
    (``fl/accuracy`` when measured, ``fl/latency_s``, ``fl/energy_j``, ``reward_terms/*``):
    the one rule of the SB3 and RLlib engines' logs. Empty for an info that is not a round's
    (e.g. another wrapper's terminal info)."""
    from hffm_env.envs.hffm_env import measured

    if "measured" not in info:
        return {}
    values = {"fl/accuracy": measured(info, "accuracy"),
              "fl/latency_s": info.get("latency_s"), "fl/energy_j": info.get("energy_j")}
    values |= {f"reward_terms/{k}": v for k, v in info.get("reward_terms", {}).items()}
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


def run_name(args: TrainArgs, algo_label: str) -> str:
    """The TensorBoard run's folder name under ``OUT/runs``:
    ``<scenario>__<algo_label>__<seed>__<unix time>``."""
    return f"{args.scenario}__{algo_label}__{args.seed}__{int(time.time())}"


def env_device(device: str) -> str:
    """``device``, with ``auto`` resolved to ``cuda`` when present, else ``cpu``."""
    from hffm_env.devices import resolve_device

    return resolve_device(device)


class TrainingInterrupted(Exception):
    """Ctrl-C during a run: what existed was saved; the message says where, in one line."""


LEARNING_CURVE_CSV = "learning_curve.csv"
LEARNING_CURVE_PNG = "learning_curve.png"
RESULT_FILES = ("results.json", "results.md", "pareto.png")
"""What the comparison with the baselines writes into ``--out``."""
OUT_FILES = (MODEL_FILE, INFO_FILE, NORMALIZATION_FILE, POLICY_FILE, RLLIB_CHECKPOINT_DIR,
             CHECKPOINTS, "runs", TRAIN_ARGS_FILE, LEARNING_CURVE_CSV, LEARNING_CURVE_PNG,
             *RESULT_FILES)
"""What a run writes into ``--out``: what ``--force`` removes (TensorBoard's ``runs/`` too, so
that the new run's curves are not shown beside the old run's; a resumed run adds its own)."""


def _holds_a_run(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier run's outputs (what ``--force`` may replace)."""
    return any((folder / name).exists() for name in (TRAIN_ARGS_FILE, INFO_FILE, MODEL_FILE)) \
        or any((folder / CHECKPOINTS).glob(f"step_*/{INFO_FILE}"))


def _inside_a_runs_checkpoints(folder: Path) -> bool:
    """Whether ``folder`` is a run's ``checkpoints/`` folder (beside the run's own files), which
    the run's ``--force`` would remove with everything in it."""
    return folder.name == CHECKPOINTS and any(
        (folder.parent / name).exists() for name in OUT_FILES if name != CHECKPOINTS)


def refuse_other_training_flags(args: TrainArgs, resume: Any) -> None:
    """``--resume`` of an agent (an :class:`~hffm_env.agents.checkpoint.AgentFolder`) trained
    with another engine, algorithm, action mode, scenario or multi-agent setting than
    ``args`` name is refused, naming the flag: its weights would not fit (a size mismatch
    deep in torch) or would be trained as another policy. Both engines check this."""
    for flag, trained, given in (("--engine", resume.info.engine, args.engine),
                                 ("--algo", resume.info.algo, args.algo),
                                 ("--action-mode", resume.info.action_mode, args.action_mode),
                                 ("--scenario", resume.info.scenario, args.scenario)):
        if trained and trained != given:  # (older folders may not say the scenario)
            raise ValueError(f"resume = {args.resume!r}: was trained with {flag} {trained}, "
                             f"not {given}; resume it with the run's flags (its "
                             "train_args.json)")
    if resume.info.multi_agent != args.multi_agent:
        raise ValueError(f"resume = {args.resume!r}: was trained "
                         f"{'with' if resume.info.multi_agent else 'without'} --multi-agent; "
                         "resume it with the run's flags (its train_args.json)")


def note_resumed_settings(args: TrainArgs, resume: Any, scenario_config: Any) -> None:
    """Notes, when ``--resume`` continues an agent in another fidelity, on another config
    (``scenario_config``, the run's) or with another ``--reward-split``: another setting can
    be the point (a curriculum), but it must not pass unseen. Both engines say them."""
    from hffm_env.config import differences_line

    recorded = resume.info.overrides
    # a checkpoint saved at or after --total-timesteps goes on with the fine-tuning
    fine_tuning = bool(args.finetune_steps) and resume.info.num_timesteps >= args.total_timesteps
    continues_in = "train" if fine_tuning else args.fidelity
    then = resume.info.fidelity
    if then and then != continues_in:
        note(f"resuming {args.resume} in {continues_in} fidelity"
             f"{' (fine-tuning)' if fine_tuning else ''}; its latest steps were trained in "
             f"{then} fidelity")
    # the whole config, not the --set list: a --config file left out changes it too
    trained_config = resume.training_config()
    shown = (differences_line(trained_config, scenario_config)
             if trained_config is not None else "")
    if shown:
        note(f"resuming {args.resume}: it was trained with {shown}")
    elif trained_config is None and recorded is not None \
            and list(recorded) != list(args.scenario_overrides()):
        note(f"resuming {args.resume} with the settings "
             f"{list(args.scenario_overrides())!r}; it was trained with {list(recorded)!r}")
    split = resume.info.reward_split
    if split is not None and split != args.reward_split:
        note(f"resuming {args.resume} with --reward-split {args.reward_split}; it was trained "
             f"with --reward-split {split}")


def prepare_out(args: TrainArgs) -> Path:
    """Check ``--out`` before any work: a file is refused, a non-empty folder too unless
    ``--resume`` or ``--force``; ``--force`` only on a folder that holds an earlier run, and
    not with a ``--resume`` inside it. Nothing is created or removed here (that is
    :func:`replace_earlier_run`, once every other check has passed), so a failed start
    leaves everything as it was."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out = {str(out)!r}: is a file; give a folder for the run's outputs")
    if any(checkpoint_step(folder) is not None or _inside_a_runs_checkpoints(folder)
           for folder in (out.absolute(), *out.absolute().parents)):
        # a run written there would replace a checkpoint of the run around it
        raise ValueError(f"out = {str(out)!r}: is inside a run's {CHECKPOINTS}/ folder; give "
                         "the run's own folder (to continue it) or another --out")
    # resuming continues the run in --out (from its root or one of its own checkpoints); a run
    # resumed from elsewhere, a folder below --out that is not its checkpoint included, must
    # not overwrite what --out holds
    resumed = Path(args.resume).resolve() if args.resume is not None else None
    if resumed is not None and resumed.is_file():  # (OUT/model.zip names the folder OUT)
        resumed = resumed.parent
    resumes_out = resumed is not None and (
        resumed == out.resolve()
        or (resumed.parent.name == CHECKPOINTS and resumed.parent.parent == out.resolve()))
    if resumes_out and args.force:
        raise ValueError(f"--force with --resume {args.resume!r}: --force would remove the "
                         f"run in {str(out)!r} that --resume continues; drop --force")
    occupied = out.is_dir() and any(out.iterdir())
    if occupied and not (resumes_out or args.force):
        raise ValueError(
            f"out = {str(out)!r}: exists and is not empty"
            + (f" and --resume {args.resume!r} is not a run in it" if args.resume else "")
            + "; pass --force to replace the earlier run's results, --resume to continue the "
            "run in it, or another --out"
        )
    if occupied and args.force and not _holds_a_run(out):
        raise ValueError(f"out = {str(out)!r}: holds no earlier run (no train_args.json, "
                         "agent.json, model.zip or checkpoints/step_*), so --force would "
                         "remove files of something else; give an empty or new --out")
    if not out.exists():  # created later: check now that it can be
        import tempfile

        parent = next(p for p in out.absolute().parents if p.exists())
        try:
            tempfile.TemporaryDirectory(dir=parent).cleanup()
        except OSError as err:
            raise ValueError(f"out = {str(out)!r}: cannot be created in {str(parent)!r} "
                             f"({err.strerror})") from None
    return out


def replace_earlier_run(out: Path, args: TrainArgs) -> None:
    """With ``--force``, remove the earlier run's outputs from ``out`` (:data:`OUT_FILES`;
    other files stay); a run resumed in its own ``out`` removes the comparison only
    (:data:`RESULT_FILES`: it judged the agent this run replaces, and an interrupted or
    ``--no-evaluate`` run writes none). Call it after every check of the run's arguments
    has passed."""
    if not out.is_dir():
        return
    from hffm_env.agents.checkpoint import clear_folder

    clear_folder(out, OUT_FILES if args.force else RESULT_FILES)


RUN_STATES = ("running", "interrupted", "finished")
"""``train_args.json``'s ``state``: written ``running`` as the run starts (a run killed
outright, out of memory say, keeps it: its flags are not lost with it), then ``interrupted``
(Ctrl-C, SIGTERM) or ``finished``."""


def write_train_args(out: Path, args: TrainArgs, *, state: str) -> None:
    """``train_args.json``: the run's arguments, its ``state`` (:data:`RUN_STATES`; the
    ``interrupted`` flag is True unless it finished), and the code and machine it ran on
    (:func:`~hffm_env.provenance.provenance`). The records of the runs a resumed run
    continues travel with the weights (``agent.json``'s ``trained_by``)."""
    if state not in RUN_STATES:
        raise ValueError(f"state = {state!r}: allowed {list(RUN_STATES)}")
    payload = {**dataclasses.asdict(args), "state": state,
               "interrupted": state != "finished", "provenance": provenance()}
    write_text_atomically(out / TRAIN_ARGS_FILE, jsonio.dumps(payload))


@contextlib.contextmanager
def out_folder_held(out: str | Path) -> Iterator[None]:
    """Hold ``--out`` for one run, from its first check to its last file: another run
    started on the same folder meanwhile is refused (two runs started together both found it
    empty, both said "agent saved", and one agent was silently lost). The lock is the file
    ``.<name>.hffm-train.lock`` beside the folder, removed at the end (the folders above it
    are created for it: a lock beside a folder yet to be made held nothing); where none can
    be had (not POSIX, a parent that cannot be created), the run goes on without it."""
    folder = Path(out).resolve()
    if not folder.name:  # the file system's root: no folder beside it to hold a lock
        yield
        return
    lock = folder.with_name(f".{folder.name}.hffm-train.lock")
    with contextlib.suppress(OSError):  # (then lock_file holds none, and says so: False)
        folder.parent.mkdir(parents=True, exist_ok=True)
    holding = contextlib.ExitStack()
    try:
        holding.enter_context(lock_file(lock, remove=True))
    except FileBusy:
        raise ValueError(f"out = {str(out)!r}: another run is writing to it (it holds "
                         f"{str(lock)!r}); wait for it to end, or give another --out"
                         ) from None
    with holding:
        yield


@dataclass
class LearningCurve:
    """The return of every training episode, in the order they ended: what
    ``learning_curve.csv`` and ``learning_curve.png`` show.

    Attributes:
        title: the plot's title (scenario, algorithm, seed).
        rows: ``(timesteps when it ended, phase, return, rounds)`` per episode; the return is
            the env's own reward summed over the episode (before any normalisation), the phase
            the fidelity it was played in (``surrogate``, then ``train`` when fine-tuning).
    """

    title: str
    rows: list[tuple[int, str, float, int]] = field(default_factory=list)

    def add(self, timesteps: int, phase: str, episode_return: float, rounds: int) -> None:
        """Record one finished episode."""
        self.rows.append((int(timesteps), phase, float(episode_return), int(rounds)))

    def continue_from(self, folder: Path, timesteps: int) -> None:
        """Start with the episodes of ``folder``'s curve that ended by ``timesteps`` (a resumed
        run continues the curve of the run it resumes); nothing when it has none."""
        path = Path(folder) / LEARNING_CURVE_CSV
        if not path.is_file():
            return
        with path.open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    ended = int(row["timesteps"])
                    parsed = (ended, str(row["phase"]), float(row["episode_return"]),
                              int(row["rounds"]))
                except (KeyError, TypeError, ValueError):  # a hand edit, a cut file
                    raise ValueError(
                        f"{path}: line {line} is not a learning-curve row (timesteps, phase, "
                        f"episode_return, rounds): {row!r}; mend or remove the file (the "
                        "resumed run's curve then starts at its checkpoint)") from None
                if ended <= timesteps:
                    self.add(*parsed)

    def write(self, out: Path, *, plot: bool = True) -> None:
        """Write ``learning_curve.csv`` (one row per episode; whole or not at all) and, with
        ``plot`` and when an episode ended, ``learning_curve.png`` (removed otherwise): every
        episode's return over the timesteps, and its running mean, one colour per phase."""
        out = Path(out)
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["timesteps", "phase", "episode_return", "rounds"])
        writer.writerows(self.rows)
        write_text_atomically(out / LEARNING_CURVE_CSV, table.getvalue())
        if not plot:
            return
        if self.rows:
            self._plot(out / LEARNING_CURVE_PNG)
        else:
            (out / LEARNING_CURVE_PNG).unlink(missing_ok=True)

    def _plot(self, path: Path) -> None:
        import numpy as np
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 4.2), dpi=100)
        ax = fig.subplots()
        for phase, colour in zip(dict.fromkeys(r[1] for r in self.rows), ("tab:blue",
                                 "tab:orange", "tab:green")):
            steps = np.array([r[0] for r in self.rows if r[1] == phase])
            returns = np.array([r[2] for r in self.rows if r[1] == phase])
            window = max(1, returns.size // 20)  # a running mean over a twentieth of the phase
            ax.scatter(steps, returns, s=8, alpha=0.3, color=colour,
                       label=f"{phase} fidelity: episodes")
            if window > 1:
                mean = np.convolve(returns, np.ones(window) / window, mode="valid")
                ax.plot(steps[window - 1:], mean, color=colour, lw=2,
                        label=f"{phase} fidelity: running mean of {window}")
            else:  # too few episodes for a mean: join them
                ax.plot(steps, returns, color=colour, lw=1)
        ax.set_xlabel("timesteps (rounds played)")
        ax.set_ylabel("episode return")
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        fig.tight_layout()
        save_figure_atomically(fig, path)
