"""PPO schedulers on stable-baselines3: PPO on the MultiDiscrete action, and sb3-contrib's
MaskablePPO using the env's ``action_masks()``.

:func:`train_sb3` runs the training of one job (:func:`hffm_env.agents.job.train` adds the
evaluation): vectorised envs, observation and reward normalisation (saved with the model),
TensorBoard logs with the FL metrics beside PPO's, the learning curve (every training
episode's return, ``learning_curve.csv`` and ``.png``), periodic checkpoints and ``--resume``.
:class:`AgentPolicy` wraps a saved agent in the baselines' ``Policy`` protocol.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import numpy as np

import hffm_env.agents.common as common
from hffm_env.agents.common import (
    FINETUNE_SEED_OFFSET,
    LearningCurve,
    TrainArgs,
    TrainingInterrupted,
    env_device,
    note,
    note_resumed_settings,
    note_whole_rollouts,
    prepare_out,
    refuse_other_training_flags,
    replace_earlier_run,
    round_metrics,
    run_name,
    wrap_actions,
    write_train_args,
)
from hffm_env.arguments import interrupts_held
from hffm_env.baselines.policies import EnvBound
from hffm_env.envs.registration import ENV_ID
from hffm_env.progress import PROGRESS_LINE_EVERY_S

__all__ = ["train_sb3", "AgentPolicy", "make_env_fn"]


def make_env_fn(args: TrainArgs, rank: int, torch_threads: int | None = None,
                in_subprocess: bool = False, fidelity: str | None = None) -> Any:
    """A picklable factory of one monitored env for SB3's vectorised envs. In a worker
    subprocess, Ctrl-C is left to the main process (which saves the run and closes the
    workers) instead of killing each worker with its own traceback. (SIGTERM is not: Python
    ends worker processes with it when the main one exits without closing them.) A worker
    prints the package's warnings as the command that started it does."""
    from hffm_env.arguments import command_prog

    prog = command_prog()  # here, in the command's process; the worker runs none

    def _init() -> Any:
        import gymnasium as gym
        from stable_baselines3.common.monitor import Monitor

        import hffm_env  # noqa: F401  (registers the ids in a fresh subprocess)

        if in_subprocess:
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if prog is not None:
                from hffm_env.arguments import print_own_warnings_as_lines

                print_own_warnings_as_lines(prog)
        env = gym.make(
            ENV_ID,
            **args.env_kwargs(fidelity or args.fidelity),  # the config file as the run started
            torch_threads=torch_threads,
            # the first env builds the model: its pre-training bar shows on a first run
            progress=args.progress and rank == 0,
        )
        env = wrap_actions(env, args.action_mode)
        # No reset here: the vectorised env seeds the first reset with ``seed + rank``
        # (``vec_env.seed``), and later resets continue that stream.
        return Monitor(env)

    return _init


class _FLMetricsCallback:
    """Writes the FL metrics of every finished round next to PPO's scalars (``fl/``)."""

    @staticmethod
    def build() -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        class FLMetrics(BaseCallback):
            def _on_step(self) -> bool:
                for info in self.locals.get("infos", []):
                    for key, value in round_metrics(info).items():
                        self.logger.record_mean(key, value)
                return True

        return FLMetrics()


def _learning_curve_callback(curve: LearningCurve) -> Any:
    """Adds every episode that ends (Monitor's ``info["episode"]``: the raw return, before
    normalisation) to ``curve``, in the phase named by the callback's ``phase``."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Episodes(BaseCallback):
        phase = ""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                episode = info.get("episode")
                if episode is not None:
                    curve.add(self.model.num_timesteps, self.phase, episode["r"], episode["l"])
            return True

    return Episodes()


def _lr_schedule_callback(args: TrainArgs) -> Any:
    """Sets the learning rate of each update from the run's timesteps when its rollout
    starts (:meth:`TrainArgs.learning_rate_at`), so that one schedule spans a resumed run and
    the fine-tuning, and a resumed run uses ``--learning-rate`` rather than the archive's.
    (SB3's own schedules follow each ``learn`` call's progress instead. The loader replaces
    the archive's ``lr_schedule`` whatever it holds, so the archive still loads without
    unpickling.)"""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.utils import ConstantSchedule

    class LearningRate(BaseCallback):
        def _on_rollout_start(self) -> None:
            self.model.lr_schedule = ConstantSchedule(
                args.learning_rate_at(self.model.num_timesteps))

        def _on_step(self) -> bool:
            return True

    return LearningRate()


def _progress_lines_callback(phase: str, every_s: float | None = None) -> Any:
    """Prints a line to stderr when a ``learn`` call starts and then every ``every_s`` seconds:
    timesteps done of the call's total, rate and time left. SB3's progress bar (rich) draws
    only on a terminal; redirected to a file or a CI log it shows nothing until the end."""
    from stable_baselines3.common.callbacks import BaseCallback

    interval = PROGRESS_LINE_EVERY_S if every_s is None else every_s

    class ProgressLines(BaseCallback):
        def _on_training_start(self) -> None:
            self.total = int(self.locals["total_timesteps"]) - self.model.num_timesteps
            self.first = self.model.num_timesteps
            self.started = self.last = time.perf_counter()
            print(f"{common.PROG}: {phase}: {self.total:,} timesteps", file=sys.stderr, flush=True)

        def _on_step(self) -> bool:
            now = time.perf_counter()
            if now - self.last >= interval:
                self.last = now
                done = self.model.num_timesteps - self.first
                rate = done / max(now - self.started, 1e-9)
                left = max(self.total - done, 0) / max(rate, 1e-9)
                print(f"{common.PROG}: {phase}: {done:,}/{self.total:,} timesteps "
                      f"({done / max(self.total, 1):.0%}), {rate:.1f}/s, about "
                      f"{left / 60:.1f} min left", file=sys.stderr, flush=True)
            return True

    return ProgressLines()


def _checkpoint_callback(checkpoint: Any, every: int) -> Any:
    """Calls ``checkpoint(timesteps)`` (which saves an agent folder) each time ``every`` more
    timesteps have passed, at the start of a rollout, i.e. right after a policy update: a
    checkpoint's weights, optimiser and statistics belong to the same step. Resuming from it
    continues those; its envs restart from their seeds (the episodes in progress are lost,
    and the first episodes are played again), so a resumed run is reproducible but not the
    uninterrupted run bit for bit."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Checkpoints(BaseCallback):
        def _init_callback(self) -> None:
            self.next_at = (self.model.num_timesteps // every + 1) * every

        def _on_rollout_start(self) -> None:
            done = self.model.num_timesteps  # the callback's own count lags until a step
            if done >= self.next_at:
                checkpoint(done)
                self.next_at = (done // every + 1) * every

        def _on_step(self) -> bool:
            return True

    return Checkpoints()


def _trained_steps_callback() -> Any:
    """Keeps ``trained``: the timesteps of the last whole policy update, i.e. the count at the
    start of the rollout in progress (PPO trains a rollout once it is whole). An interrupt
    mid-rollout loses that rollout untrained: the agent saved then must say so, or a resumed
    run counts the lost steps as trained and may skip the update they were for."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import unwrap_vec_normalize

    from hffm_env.agents.checkpoint import Normalization

    class TrainedSteps(BaseCallback):
        trained = 0
        # VecNormalize's statistics at that count (None: not normalised, or no rollout yet):
        # the lost rollout's observations are in the live ones, and a resumed run, whose envs
        # restart from their seeds, would count them twice
        statistics: Normalization | None = None

        def _on_rollout_start(self) -> None:
            self.trained = self.model.num_timesteps
            env = self.model.get_env()
            vec_normalize = unwrap_vec_normalize(env) if env is not None else None
            self.statistics = (Normalization.of(vec_normalize) if vec_normalize is not None
                               else None)

        def _on_step(self) -> bool:
            return True

    return TrainedSteps()


def train_sb3(args: TrainArgs) -> float:
    """Train a scheduler with stable-baselines3 as ``args`` say; return the training time (s).

    Writes under ``args.out``: the agent folder (``model.zip``, ``agent.json``,
    ``vecnormalize.npz`` when normalising; see :mod:`~hffm_env.agents.checkpoint`), checkpoints
    as agent folders in ``checkpoints/step_<N>/``, ``runs/{scenario}__{algo}__{seed}__{time}_1/``
    (TensorBoard; ``_0`` when resumed, ``..._finetune_0`` for the fine-tuning),
    ``learning_curve.csv`` and ``learning_curve.png`` (a resumed run continues the curve of the
    run it resumes) and ``train_args.json``. Ctrl-C saves the agent folder
    and the learning curve and raises :class:`TrainingInterrupted`.
    """
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecNormalize

    from hffm_env.agents.checkpoint import (
        CHECKPOINTS,
        AgentFileError,
        AgentInfo,
        Normalization,
        algo_class,
        checkpoint_folder,
        find_agent,
        load_model,
        save_agent,
        saved_checkpoints,
        trained_on,
        training_process,
    )
    from hffm_env.config import differences_line
    from hffm_env.provenance import provenance

    out = prepare_out(args)
    scenario_config = args.scenario_config()  # the config file as the run started
    try:
        resume = find_agent(args.resume) if args.resume else None
    except AgentFileError as err:
        raise AgentFileError(f"--resume: {err}") from None
    if resume is not None:
        refuse_other_training_flags(args, resume)
    if resume is not None and args.normalize and resume.normalization is None:
        raise ValueError(f"resume = {args.resume!r}: has no normalisation statistics; "
                         "resume it with --no-normalize")
    if resume is not None and not args.normalize and resume.normalization is not None:
        raise ValueError(f"resume = {args.resume!r}: was trained on normalised observations "
                         "(its vecnormalize.npz); resume it without --no-normalize")
    if resume is not None:  # the run resumed in its own --out: its later checkpoints stay
        later = [folder.name for step, folder in saved_checkpoints(out).items()
                 if step > resume.info.num_timesteps]
        if later:
            note(f"{out / CHECKPOINTS} keeps the checkpoints after step "
                 f"{resume.info.num_timesteps} of the run this one replaces ({', '.join(later)})"
                 "; the ones this run saves overwrite those of the same step")
    if resume is not None:  # another config or fidelity can be the point (a curriculum)
        note_resumed_settings(args, resume, scenario_config)
    this_process = provenance()  # in every agent folder it saves (agent.json's trained_by)
    set_random_seed(args.seed)
    threads = max(1, (os.cpu_count() or 1) // args.n_envs)
    subprocess = args.n_envs > 1

    def worker_stopped(err: BaseException, phase: str) -> ChildProcessError:
        # the pipe's error says nothing of why: the worker printed its own error
        return ChildProcessError(
            f"a worker of the vector env (--n-envs {args.n_envs}) stopped "
            f"({type(err).__name__} on its pipe) {phase}; its own error, if it raised one, is "
            "printed above")

    def vector_env(fidelity: str, seed: int, stats: Normalization | None) -> Any:
        fns = [
            make_env_fn(args, rank, torch_threads=threads if subprocess else None,
                        in_subprocess=subprocess, fidelity=fidelity)
            for rank in range(args.n_envs)
        ]
        # a SubprocVecEnv is built in two steps, so that the workers it started can be ended
        # if starting fails
        vec: VecEnv = SubprocVecEnv.__new__(SubprocVecEnv) if subprocess else DummyVecEnv(fns)
        try:
            if subprocess:
                vec.__init__(fns)  # type: ignore[misc]
            vec.seed(seed)
            if args.normalize:
                vec = VecNormalize(vec, norm_obs=True, norm_reward=True, clip_obs=10.0)
                if stats is not None:
                    stats.apply_to(vec)  # an AgentFileError: statistics of another size
        except (EOFError, BrokenPipeError, ConnectionResetError) as err:
            _stop_vec_env(vec)
            if not subprocess:
                raise
            raise worker_stopped(err, "while starting") from err
        except BaseException:
            _stop_vec_env(vec)
            raise
        return vec

    try:
        vec_env = vector_env(args.fidelity, args.seed,
                             resume.normalization if resume is not None else None)
    except AgentFileError as err:  # statistics of another observation size
        if resume is None:  # only a resumed run applies statistics: not that error
            raise
        raise AgentFileError(f"resume = {args.resume!r}: {err}"
                             f"{trained_on(resume.folder, 'resume it')}") from None

    try:
        tensorboard_run = run_name(args, args.algo)
        log_dir = out / "runs"
        algo_cls = algo_class(args.algo)
        device = env_device(args.device)  # the policy trains where the env does
        batch_size = min(args.batch_size, args.n_steps * args.n_envs)
        if resume is not None:
            # the run's own settings, as for the learning rate (the archive holds the first run's)
            model = load_model(resume, vec_env.observation_space, vec_env.action_space,
                               env=vec_env, device=device,
                               settings={"n_steps": args.n_steps, "batch_size": batch_size,
                                         "ent_coef": args.ent_coef, "seed": args.seed})
            model.tensorboard_log = str(log_dir)
            _start_fresh_episode(model, vec_env, normalized=bool(args.normalize))
        else:
            model = algo_cls(
                "MlpPolicy",
                vec_env,
                n_steps=args.n_steps,
                batch_size=batch_size,
                learning_rate=args.learning_rate,
                ent_coef=args.ent_coef,
                seed=args.seed,
                verbose=0,
                tensorboard_log=str(log_dir),
                device=device,
            )

        if args.imitate is not None and resume is None:
            from hffm_env.agents.imitation import clone_plan
            from hffm_env.baselines.plan import RoundPlan, searched_config

            searched = searched_config(args.imitate)
            shown = differences_line(searched, scenario_config) if searched is not None else ""
            if shown:  # (a note, as hffm bench --plan gives: cloning elsewhere can be the point)
                note(f"the plan {args.imitate} was searched with {shown}")

            # (TrainArgs gives --imitate its default rounds)
            rounds = cast(int, args.imitate_rounds)
            cloning_started = time.perf_counter()
            report = clone_plan(model, vec_env, RoundPlan.read(args.imitate),
                                tuple(scenario_config.env.period_menu), rounds,
                                normalized=bool(args.normalize))
            # (said here: the "trained N s" of the summary times PPO's phases only)
            print(f"cloned plan {args.imitate}: {report.rounds} demonstration rounds, "
                  f"{report.epochs} epochs, the policy reproduces {report.match:.0%} of its "
                  f"actions (loss {report.loss:.3f}; "
                  f"{time.perf_counter() - cloning_started:.0f} s)")

        # the fidelity of the latest steps the policy trained on: agent.json's (a fine-tuned
        # agent's is "train"; a resumed run that trains nothing keeps its checkpoint's)
        trained_fidelity = ((resume.info.fidelity or args.fidelity) if resume is not None
                            else args.fidelity)
        # this process's phases (the step each began at, its fidelity) for trained_by
        phases: list[tuple[int, str]] = []

        def save(where: Path) -> None:
            info = AgentInfo(algo=args.algo, clip_range=float(model.clip_range(1.0)),
                             num_timesteps=int(model.num_timesteps),
                             scenario=cast(str, args.scenario),  # TrainArgs names the preset
                             fidelity=trained_fidelity, action_mode=args.action_mode,
                             normalized=bool(args.normalize),
                             overrides=tuple(args.scenario_overrides()),
                             config_file=args.config, config=asdict(scenario_config),
                             trained_by=training_process(
                                 resume.info if resume is not None else None, this_process,
                                 model.num_timesteps, args.surrogate_fit(args.fidelity),
                                 phases=phases or [(int(model.num_timesteps),
                                                    trained_fidelity)]))
            save_agent(out / where, model, info, vec_env if args.normalize else None)

        replace_earlier_run(out, args)  # everything built: --force may remove the earlier run
        out.mkdir(parents=True, exist_ok=True)
        write_train_args(out, args, state="running")  # (kept by a run killed outright)
        curve = LearningCurve(f"{args.scenario}, {args.algo}, seed {args.seed}")
        if resume is not None:  # continue the curve of the run resumed (a checkpoint's run)
            curve.continue_from(resume.run_folder, resume.info.num_timesteps)
        episodes = _learning_curve_callback(curve)

        def checkpoint(timesteps: int) -> None:
            """The agent folder ``checkpoints/step_<timesteps>``, after the learning curve so far
            (which a resumed run continues, dropping rows past its step; a run killed outright,
            out of memory say, lost it all)."""
            curve.write(out, plot=False)
            save(checkpoint_folder(timesteps))

        rollout = args.n_steps * args.n_envs

        def whole(steps: int) -> int:
            """``steps`` up to whole rollouts: what PPO trains anyway, so the bar ends at 100%."""
            return -(-steps // rollout) * rollout

        trained_steps = _trained_steps_callback()
        trained_steps.trained = int(model.num_timesteps)  # a resumed run's, until a rollout
        # trained_steps first: at a rollout's start it counts the update that just ended
        # before a checkpoint (seconds of saving a Ctrl-C may land in) is written
        callbacks = CallbackList([trained_steps,
                                  _checkpoint_callback(checkpoint, args.checkpoint_every),
                                  _FLMetricsCallback.build(), episodes,
                                  _lr_schedule_callback(args)])

        def stopped(phase: str) -> TrainingInterrupted:
            """After Ctrl-C: the agent folder and the learning curve saved as they are, its
            timesteps those of its last whole update (the rollout in progress is lost)."""
            seen = int(model.num_timesteps)
            model.num_timesteps = trained_steps.trained
            if seen > model.num_timesteps and trained_steps.statistics is not None \
                    and args.normalize:  # the statistics of those steps, too
                trained_steps.statistics.apply_to(vec_env)
            with interrupts_held(common.PROG):
                save(Path("."))
                curve.write(out)
                write_train_args(out, args, state="interrupted")
            planned = whole(args.total_timesteps) + (
                whole(args.finetune_steps) if args.finetune_steps > 0 else 0)
            lost = (f", the last {seen - model.num_timesteps} in a rollout not yet trained on"
                    if seen > model.num_timesteps else "")
            return TrainingInterrupted(
                f"interrupted at {seen} of {planned} timesteps{lost} ({phase}); model and "
                f"statistics of {model.num_timesteps} timesteps saved in {out}")

        def learn(steps: int, log_name: str, reset: bool, fidelity: str, phase: str) -> None:
            """``model.learn`` in ``fidelity``; Ctrl-C saves the agent folder and the learning
            curve and raises TrainingInterrupted."""
            nonlocal trained_fidelity
            episodes.phase = trained_fidelity = fidelity
            phases.append((int(model.num_timesteps), fidelity))
            bar = args.progress and sys.stderr.isatty()
            phase_callbacks = callbacks
            if args.progress and not bar:  # a file or CI log: lines instead of the bar
                phase_callbacks = CallbackList([
                    callbacks, _progress_lines_callback(f"{args.algo} on {fidelity} fidelity")])
            try:
                # SB3's bar (rich) writes to stdout, between the results a caller may capture
                with contextlib.redirect_stdout(sys.stderr):
                    model.learn(total_timesteps=steps, callback=phase_callbacks,
                                tb_log_name=log_name, progress_bar=bar, reset_num_timesteps=reset)
            except (EOFError, BrokenPipeError, ConnectionResetError) as err:
                if not subprocess:
                    raise
                raise worker_stopped(err, phase) from err
            except KeyboardInterrupt:
                raise stopped(phase) from None
            finally:
                # each learn() opens a logger of its own (TensorBoard's writer thread, files)
                # and leaves it open: a notebook that trains thrice kept three threads
                with contextlib.suppress(AttributeError):  # (no logger before learn() set it)
                    model.logger.close()

        done = int(model.num_timesteps)  # a resumed run's earlier steps, of either phase
        remaining = args.total_timesteps - done
        # fine-tuning began where the first phase's whole rollouts ended; a checkpoint not yet
        # trained in real training (the first phase's last one included) has none of it (a
        # folder that does not say its fidelity: counted from the steps alone, as before)
        fine_tuned = (max(0, done - whole(args.total_timesteps))
                      if resume is not None and resume.info.fidelity in ("train", "") else 0)
        finetune_left = args.finetune_steps - fine_tuned
        started = time.perf_counter()
        if resume is not None and remaining <= 0 and finetune_left <= 0:
            note(f"the checkpoint has {done} timesteps already, --total-timesteps is "
                 f"{args.total_timesteps}: nothing left to train; it is saved"
                 f"{' and evaluated' if args.evaluate else ''} as it is")
        note_whole_rollouts(args, rollout, remaining, finetune_left)

        if remaining > 0:
            learn(whole(remaining), tensorboard_run, resume is None, args.fidelity,
                  "while training")
            trained_steps.trained = int(model.num_timesteps)  # the phase's last update ran
        if finetune_left > 0:
            # fine-tune on real training: same policy, optimiser and running statistics, on
            # other training seeds than the first phase's
            stats = Normalization.of(vec_env) if args.normalize else None
            if remaining > 0:  # the agent as the first phase left it, to compare with
                checkpoint(int(model.num_timesteps))
            vec_env.close()
            try:  # (real training's env: its model may be pre-trained first, minutes)
                vec_env = vector_env("train", args.seed + FINETUNE_SEED_OFFSET, stats)
            except KeyboardInterrupt:  # the first phase's agent is kept, as a checkpoint is
                raise stopped("while building the fine-tuning env") from None
            model.set_env(vec_env)
            # SB3 keeps the last 100 episodes' returns across learn() calls: the fine-tuning's
            # ep_rew_mean must average real-training episodes only
            model.ep_info_buffer = None
            learn(whole(finetune_left), f"{tensorboard_run}__finetune", False, "train",
                  "while fine-tuning")
        train_seconds = time.perf_counter() - started
        # a Ctrl-C in the final save left a folder half new (model.zip without its agent.json,
        # no train_args.json): the save ends first, then the run stops
        with interrupts_held(common.PROG, replay=True):
            save(Path("."))
            curve.write(out)
            write_train_args(out, args, state="finished")
    except BaseException:
        # an error, Ctrl-C (after its held save) or SIGTERM: the workers of SubprocVecEnv
        # end here, or a caller's Python session would keep them
        _stop_vec_env(vec_env)
        raise
    vec_env.close()
    return train_seconds


def _stop_vec_env(vec_env: Any) -> None:
    """Close a vector env after an error without waiting for its workers: a worker whose
    step failed (or that the kernel killed) never answers, and SB3's ``close`` would wait for
    it forever; one still in a real-training round would take that long. SubprocVecEnv's
    workers are ended (SIGTERM) and joined; a DummyVecEnv's envs close in this process."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    inner = vec_env
    while hasattr(inner, "venv"):  # VecNormalize and other wrappers
        inner = inner.venv
    if not isinstance(inner, SubprocVecEnv):
        with contextlib.suppress(Exception):  # the error under way is the one to report
            vec_env.close()
        return
    if inner.closed:
        return
    for process in inner.processes:
        if process.is_alive():
            process.terminate()
    for process in inner.processes:
        process.join(timeout=10)
        if process.is_alive():  # stuck where SIGTERM is not handled
            process.kill()
            process.join()
    for remote in inner.remotes:
        remote.close()
    inner.closed = True


def _start_fresh_episode(model: Any, vec_env: Any, *, normalized: bool) -> None:
    """Reset the envs of a resumed run the way SB3's ``learn`` would, but without counting
    the reset observation in the restored statistics: the checkpoint's statistics already
    counted the reset of the episode that was in progress, so a resumed run ends with the
    same counts as an uninterrupted one. SB3 keeps this state in private fields, and ``learn``
    resets the envs itself while ``_last_obs`` is None: were they renamed, the resumed run
    would count one reset more, which ``tests/test_agent_files.py`` checks."""
    if normalized:
        vec_env.training = False
    model._last_obs = vec_env.reset()
    if normalized:
        vec_env.training = True
        model._last_original_obs = vec_env.get_original_obs()
    model._last_episode_starts = np.ones((vec_env.num_envs,), dtype=bool)


class AgentPolicy(EnvBound):
    """A saved agent folder (or its ``model.zip``) as a baselines ``Policy``: observations are
    normalised with the saved statistics (if any), actions are deterministic, and MaskablePPO
    agents get the env's action masks. The folder is checked at once (one clean
    :class:`~hffm_env.agents.checkpoint.AgentFileError` for a bad one); the weights load, without
    unpickling anything, at the first :meth:`reset`, for that env's spaces.

    The agent plays the full action space of a bare env (a coarse or menu agent wraps it
    itself). The env it was trained on: ``gym.make("hffm/HFFM-v0",
    scenario=policy.agent.training_config(), fidelity=...)`` (None when the folder does
    not say)."""

    def __init__(self, model_path: str | Path, name: str = "agent") -> None:
        from hffm_env.agents.checkpoint import SettingsCheck, find_agent

        self.name = name
        self.agent = find_agent(model_path)
        self.maskable = self.agent.info.algo == "maskable-ppo"
        self.wrapper: Any = None  # the action wrapper of a coarse or menu agent
        self.model: Any = None
        self.env = None
        self.check_settings = SettingsCheck(self.agent)

    @property
    def fingerprint(self) -> str:
        """A digest of the agent's files (:attr:`AgentFolder.fingerprint`)."""
        return self.agent.fingerprint

    def reset(self, env: Any, seed: int | None = None) -> None:
        """Remember the env (for its action masks); load the weights on first use; warn
        (:class:`~hffm_env.agents.checkpoint.OtherSettingsWarning`) when the env is of other
        settings than the agent was trained on."""
        from hffm_env.agents.checkpoint import load_model

        self.check_settings(self.name, env)
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
