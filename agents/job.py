"""One training job from end to end: train with the chosen engine, then compare the agent
with every baseline on held-out seeds (what ``train_agent.py`` and ``hffm train`` run), and
saved agent folders of either engine as baselines ``Policy`` objects (``hffm bench --agent``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hffm_env.agents.common as common
from hffm_env import jsonio
from hffm_env.agents.checkpoint import OtherSettingsWarning
from hffm_env.agents.common import TrainArgs, TrainingInterrupted, note, out_folder_held
from hffm_env.arguments import interrupts_held
from hffm_env.envs.registration import ENV_ID
from hffm_env.files import write_text_atomically
from hffm_env.seeding import DEFAULT_EVAL_SEEDS

__all__ = [
    "train", "agent_label", "agent_policy", "evaluate_against_baselines", "evaluation_baselines",
]


def train(args: TrainArgs) -> dict[str, Any]:
    """Train a scheduler as ``args`` say (:func:`~hffm_env.agents.ppo.train_sb3` or
    :func:`~hffm_env.agents.rllib.train_rllib`), evaluate it against the baselines, and write
    ``results.json``, ``results.md`` and ``pareto.png`` beside the agent folder in
    ``args.out`` (not with ``args.evaluate`` False: then the dict has ``train_seconds``
    only). Returns the results dict. Ctrl-C saves the agent folder and raises
    :class:`TrainingInterrupted`."""
    if args.engine == "rllib":
        try:
            from hffm_env.agents.rllib import train_rllib as train_engine
        except ImportError as err:
            raise ValueError(f"engine = 'rllib': needs Ray RLlib ({err}); "
                             "pip install 'hffm-env[rllib]'") from None
    else:
        from hffm_env.agents.ppo import train_sb3 as train_engine
    if args.evaluate:  # a baseline that cannot play: refused now, not after training
        evaluation_baselines(args)
    else:  # (a note, not a refusal: --no-evaluate is often added to a run's command line)
        unused = [flag for flag, given in (
            ("--eval-seeds", args.eval_seeds != list(DEFAULT_EVAL_SEEDS)),
            ("--eval-fidelity", args.eval_fidelity is not None),
            ("--eval-policies", bool(args.eval_policies)),
            ("--eval-data-split-per-seed", args.eval_data_split_per_seed)) if given]
        if unused:
            note(f"--no-evaluate: {', '.join(unused)} go unused (they set the comparison it "
                 "skips; hffm bench --agent takes them)")
    fit = args.surrogate_fit()
    if fit is not None:  # (a calibrated fit in the cache wins, unseen)
        note(f"accuracy predicted by {fit['origin']}")
    with out_folder_held(args.out):  # from the check of --out to the results' last file
        return _train_and_evaluate(args, train_engine)


def _train_and_evaluate(args: TrainArgs, train_engine: Callable[[TrainArgs], float]
                        ) -> dict[str, Any]:
    train_seconds = train_engine(args)
    out = Path(args.out)
    if not args.evaluate:
        return {"train_seconds": train_seconds}
    def results_stamp() -> int | None:  # (an earlier run's results.json may be there)
        found = out / "results.json"
        return found.stat().st_mtime_ns if found.exists() else None

    before = results_stamp()
    try:
        return evaluate_against_baselines(args, out, train_seconds=train_seconds)
    except KeyboardInterrupt:
        written = results_stamp() not in (None, before)
        raise TrainingInterrupted(
            f"interrupted during the comparison with the baselines; the trained agent is saved "
            f"in {out}" + ("; results.json, results.md and pareto.png are whole" if written
                           else f"; `hffm bench --agent {out}` runs the comparison")
        ) from None


def evaluation_baselines(args: TrainArgs, say: bool = False) -> list[str]:
    """The baselines the agent is compared with: ``args.eval_policies``, each refused (a
    ``ValueError``) when its periods are not on the config's ``env.period_menu``; by default
    every baseline that fits the menu (with ``say``, a note on stderr names the others)."""
    from hffm_env.baselines.policies import baselines_on_menu, off_menu
    from hffm_env.baselines.runner import tuned_on_seeds

    menu = args.scenario_config().env.period_menu
    misfit = off_menu(args.eval_policies, menu)
    if misfit:
        raise ValueError(f"eval_policies has {misfit}")
    names, dropped = baselines_on_menu(menu, args.eval_policies or None)
    tuned_here = tuned_on_seeds(names, args.eval_seeds)
    if tuned_here and args.eval_policies:  # named: refused now, not after training
        name, problem = next(iter(tuned_here.items()))
        raise ValueError(f"eval_policies has {name!r}, but {problem}")
    names = [n for n in names if n not in tuned_here]
    if dropped and say:
        note(f"the comparison leaves out {', '.join(dropped)}: their periods are not on "
             f"env.period_menu {list(menu)}")
    if tuned_here and say:
        note(f"the comparison leaves out {', '.join(tuned_here)}: tuned on some of the "
             f"eval_seeds {args.eval_seeds} (judge it on held-out seeds, 1000 and up)")
    return names


def evaluate_against_baselines(
    args: TrainArgs, agent_path: Path, train_seconds: float = float("nan")
) -> dict[str, Any]:
    """Run the trained agent (an agent folder) and the baselines on ``args.eval_seeds`` (each on
    its own data split with ``args.eval_data_split_per_seed``) through the benchmark runner;
    write ``results.json``, ``results.md`` and ``pareto.png`` into that folder. Ctrl-C keeps
    the episodes that finished and sets ``interrupted``."""
    import gymnasium as gym

    from hffm_env.baselines.runner import (
        format_table,
        plot_tradeoffs,
        run_benchmark,
        seed_data_split,
        verdict,
    )

    out = Path(agent_path)
    agent = agent_policy(out, name=agent_label(out))
    names = evaluation_baselines(args, say=True)

    config = args.scenario_config()  # the config file as the run started
    if args.eval_data_split_per_seed and config.seed in args.eval_seeds:
        note(f"the agent trained on config seed {config.seed}'s data split, which eval seed "
             f"{config.seed} plays: leave it out to judge the agent on splits it has not seen")

    def make_env(config_seed: int | None = None) -> Any:
        return gym.make(ENV_ID, **{**args.env_kwargs(args.final_fidelity),
                                   "scenario": seed_data_split(config, config_seed)})

    with warnings.catch_warnings():  # the other data splits were noted above
        warnings.simplefilter("ignore", OtherSettingsWarning)
        result = run_benchmark(
            make_env,
            [agent, *names],
            seeds=args.eval_seeds,
            env_per_seed=args.eval_data_split_per_seed,
            target_accuracy=config.env.target_accuracy,  # the target rewards' own, when set
            progress=args.progress,
            fidelity=args.final_fidelity,  # (labelled with the env's scenario, as bench does)
        )
    payload = result.to_dict()
    payload["train_args"] = dataclasses.asdict(args)
    payload["train_seconds"] = train_seconds
    payload["verdict"] = verdict(result, agent.name)
    table = format_table(result)
    # the three together: a Ctrl-C while they are written waits for them (then stops the run)
    with interrupts_held(common.PROG, replay=True):
        write_text_atomically(out / "results.json", jsonio.dumps(payload))
        write_text_atomically(out / "results.md",
                              f"{table}\n\n**Verdict:** {payload['verdict']}\n")
        plot_tradeoffs(result, out / "pareto.png")
    return payload


def agent_label(path: str | Path) -> str:
    """``agent:<run folder>`` for a run folder or its ``model.zip`` or ``policy.pt`` (what
    training writes), ``agent:<run folder>/step_<N>`` for one of its checkpoints, else
    ``agent:<file stem>``: short names that stay distinct across training runs (so that runs
    of two agents never merge into one row)."""
    from hffm_env.agents.checkpoint import checkpoint_step

    file = Path(path).resolve()
    inside = file.stem in ("model", "policy") and file.parent.name  # model.zip, policy.pt
    folder = file if file.is_dir() else file.parent if inside else None
    if folder is None:
        return f"agent:{file.stem}"
    if checkpoint_step(folder) is not None:  # the same step of two runs: name the run too
        return f"agent:{folder.parent.parent.name}/{folder.name}"
    return f"agent:{folder.name}"


def agent_policy(model_path: str | Path, name: str | None = None) -> Any:
    """A saved agent folder of either engine as a baselines ``Policy``: an
    :class:`~hffm_env.agents.ppo.AgentPolicy` (stable-baselines3) or an
    :class:`~hffm_env.agents.rllib.RLlibAgentPolicy`, named ``name``, by default as ``hffm
    bench --agent`` names it (:func:`agent_label`: two agents in one run get two rows, and
    the rows match the command's). The folder is checked at once (one clean
    :class:`~hffm_env.agents.checkpoint.AgentFileError`)."""
    from hffm_env.agents.checkpoint import AgentFileError, find_agent

    agent = find_agent(model_path)
    if name is None:
        name = agent_label(model_path)
    if agent.info.engine == "rllib":
        try:
            from hffm_env.agents.rllib import RLlibAgentPolicy
        except ImportError as err:
            raise AgentFileError(f"{model_path}: an RLlib agent needs Ray RLlib to run "
                                 f"({err}); pip install 'hffm-env[rllib]'") from None
        return RLlibAgentPolicy(agent, name=name)
    from hffm_env.agents.ppo import AgentPolicy

    return AgentPolicy(model_path, name=name)
