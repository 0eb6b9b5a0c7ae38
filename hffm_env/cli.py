"""The ``hffm`` command: describe a scenario, pre-train its model, benchmark policies, train a
scheduler, fit the accuracy surrogate.

Errors in what the user typed (an unknown scenario, a bad override, an unreadable file) print one
line on stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shlex
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hffm_env import ENV_ID, __version__, arguments, jsonio
from hffm_env.config import (
    DEFAULT_TARGET_FRACTION,
    FIDELITIES,
    ConfigError,
    ScenarioConfig,
    load_scenario,
    scenario_names,
)
from hffm_env.files import FileBusy, lock_file, remove_staging_files
from hffm_env.seeding import DEFAULT_EVAL_SEEDS, FIRST_HELD_OUT_SEED, check_training_seeds

if TYPE_CHECKING:
    from hffm_env.seeding import RandomStreams
    from hffm_env.sim import Topology

__all__ = [
    "main", "build_parser", "describe_scenario", "format_description", "format_pretrain_info",
]


def _add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario", default=None,
        help=f"preset scenario name, one of {scenario_names()} (default: the one the --config "
        "file names, else small)",
    )
    parser.add_argument("--config", type=arguments.input_path,
                        metavar="FILE", help="YAML or JSON file layered on the preset, or an "
                        "agent folder (or its agent.json or model.zip): the settings it was "
                        "trained on")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", nargs="+", action="extend", default=[], dest="overrides",
        help="override config values, e.g. --set channel.d2d.bandwidth_hz=2e6 fl.lr=0.02 "
        "(as train_agent.py takes them; repeated flags add up)",
    )


def _scenario_from_args(args: argparse.Namespace) -> ScenarioConfig:
    """The scenario of ``--scenario``, ``--config`` and ``--set``. Without ``--scenario``,
    the preset the ``--config`` file names, else ``small``; a ``--scenario`` that differs from
    the file's preset is refused (the file's would silently win). A ``--config`` that names
    an agent (:func:`~hffm_env.agents.checkpoint.names_an_agent`: its folder, ``agent.json``
    or weights) stands for the config the agent was trained on."""
    from hffm_env.config import apply_overrides, resolve_scenario

    trained = _agent_training_config(args.config)
    if trained is not None:
        if args.scenario is not None and args.scenario != trained.name:
            raise ConfigError(f"--config {args.config}: the agent was trained on scenario "
                              f"{trained.name!r}, but --scenario is {args.scenario!r}: give "
                              "one of them")
        args.scenario = trained.name
        return apply_overrides(trained, args.overrides)
    args.scenario, config = resolve_scenario(args.scenario, args.config, args.overrides)
    return config


def _config_flags(args: argparse.Namespace) -> str:
    """``--scenario``, ``--config`` and ``--set`` as given (after :func:`_scenario_from_args`),
    quoted for a shell: what a command line this command suggests needs to build the same
    config."""
    flags = [f"--scenario {shlex.quote(str(args.scenario))}"]
    if getattr(args, "config", None):
        flags.append(f"--config {shlex.quote(str(args.config))}")
    flags += [f"--set {shlex.quote(str(o))}" for o in getattr(args, "overrides", None) or []]
    return " ".join(flags)


def _agent_training_config(path: str | None) -> ScenarioConfig | None:
    """The config the agent at ``path`` (a folder holding ``agent.json``, or that file, or
    the agent's weights beside it, as ``--agent`` takes them) was trained on; None when
    ``path`` is no agent's; a ``ConfigError`` when the folder does not say."""
    if path is None:
        return None
    if Path(path).is_dir() and not (Path(path) / "agent.json").is_file():
        raise ConfigError(f"--config {path}: a folder without agent.json; give a YAML or JSON "
                          "file, or an agent folder")
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    from hffm_env.agents.checkpoint import AgentFileError, find_agent, names_an_agent

    if not names_an_agent(path):
        return None  # a config file

    try:
        agent = find_agent(folder)
    except AgentFileError as err:
        raise ConfigError(f"--config: {err}") from None
    try:
        return agent.load_training_config()
    except ValueError as err:  # what it lacks, or the error of what it records
        raise ConfigError(f"--config {path}: {err}; give the settings with --scenario, "
                          "--config FILE and --set") from None


def describe_scenario(config: ScenarioConfig, seed: int | None = None) -> dict[str, Any]:
    """Everything a scenario contains, as JSON-able dicts: the network (placement, D2D graphs,
    link rates, the cost of a 1 MB payload per tier) and the model side (modalities and tasks
    per device, the module inventory with sizes, chance level per task)."""
    from hffm_env.config import check_memory
    from hffm_env.seeding import RandomStreams
    from hffm_env.sim import Network, describe_network

    check_memory(config, "cost")  # the network and the model it builds, before allocating
    seed = config.seed if seed is None else seed
    report: dict[str, Any] = {"scenario": config.name, "seed": seed}
    streams = RandomStreams.from_seed(seed)  # as the env draws its layout and data split
    network = Network(config, streams)
    report["network"] = describe_network(config, seed=seed, network=network)
    report["model"] = _describe_model_side(config, network.topology, streams)
    return report


def _describe_model_side(config: ScenarioConfig, topology: Topology,
                         streams: RandomStreams) -> dict[str, Any]:
    """The model side of :func:`describe_scenario` for the layout ``topology``, its profiles
    drawn from ``streams.data`` as the env draws them."""
    from hffm_env.data import draw_network_profiles, task_specs
    from hffm_env.models import M3TModel, ModuleInventory, backbone_shape, cached_pretrain_info

    _, profiles = draw_network_profiles(config.data, topology.cluster_of_device, streams.data)
    devices: list[dict[str, Any]] = []
    for d, profile in enumerate(profiles):
        devices.append({
            "device": d,
            "cluster": int(topology.cluster_of_device[d]),
            "modalities": list(profile.modalities),
            "tasks": list(profile.tasks),
        })
    clusters = []
    for c in range(topology.num_clusters):
        members = [dev for dev in devices if dev["cluster"] == c]
        clusters.append({
            "cluster": c,
            "devices": len(members),
            "modalities": {m: sum(m in dev["modalities"] for dev in members)
                           for m in config.data.modalities},
            "tasks": {t: sum(t in dev["tasks"] for dev in members) for t in config.data.tasks},
        })
    model = M3TModel(config.model, config.data, backbone=backbone_shape(config.model))
    inventory = ModuleInventory(model)
    specs = task_specs(config.data)
    return {
        "pretrained": cached_pretrain_info(config.model, config.data),
        "modality_counts": {m: sum(m in p.modalities for p in profiles)
                            for m in config.data.modalities},
        "task_counts": {t: sum(t in p.tasks for p in profiles) for t in config.data.tasks},
        "clusters": clusters,
        "devices": devices,
        "tasks": {
            t: {"classes": specs[t].num_classes, "chance": specs[t].chance}
            for t in config.data.tasks
        },
        "modules": inventory.as_table(config.cost.model_payload_bits),
        "total_trainable_bits": inventory.total_bits,
        "total_wire_bits": sum(inventory.wire_bits(config.cost.model_payload_bits).values()),
    }


def format_description(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`describe_scenario`'s report."""
    from hffm_env.sim import format_network_report

    lines = [f"scenario {report['scenario']} (seed {report['seed']})", ""]
    lines.append(format_network_report(report["network"]))
    model = report["model"]
    lines += ["", "Model side"]
    lines.append("  modalities (devices): " + ", ".join(
        f"{m} {n}" for m, n in model["modality_counts"].items()))
    lines.append("  tasks (devices):      " + ", ".join(
        f"{t} {n}" for t, n in model["task_counts"].items()))
    lines.append("  per cluster (devices with each modality | task):")
    for c in model["clusters"]:
        mods = " ".join(f"{m[0]}{n}" for m, n in c["modalities"].items())
        tasks = " ".join(f"{t}{n}" for t, n in c["tasks"].items())
        lines.append(f"    cluster {c['cluster']:>3}: {c['devices']:>3} devices | {mods} | {tasks}")
    lines.append("  tasks:")
    for t, spec in model["tasks"].items():
        lines.append(f"    {t:<8} {spec['classes']:>3} classes, chance {spec['chance']:.3f}")
    lines.append("  module inventory:")
    lines.append(f"    {'module':<18} {'type':<8} {'params':>9} {'size':>12} {'on the wire':>12}")
    for row in model["modules"]:
        lines.append(
            f"    {row['module_id']:<18} {row['module_type']:<8} {row['num_params']:>9,} "
            f"{row['size_bits'] / 8e3:>9.1f} kB {row['wire_bits'] / 8e3:>9.1f} kB"
        )
    lines.append(f"    total trainable: {model['total_trainable_bits'] / 8e6:.3f} MB, "
                 f"{model['total_wire_bits'] / 8e6:.3f} MB on the wire")
    if model["total_wire_bits"] != model["total_trainable_bits"]:
        lines.append("    (the scenario fixes the model's payload on the wire: "
                     "cost.model_payload_bits)")
    lines += format_pretrain_info(model["pretrained"], report["scenario"])
    return "\n".join(lines)


def format_pretrain_info(info: dict[str, Any] | None, scenario: str) -> list[str]:
    """Lines about the frozen parts: how well linear probes on them solve each downstream task
    (a high fused score leaves little for the federated modules to learn)."""
    if info is None:
        return ["  frozen parts: not pre-trained yet (hffm pretrain --scenario "
                f"{scenario} builds and caches them)"]
    where = info.get("cache_file", "?")
    lines = [f"  frozen parts: pre-trained in {info.get('seconds', float('nan')):.0f} s, "
             + (f"cached in {where}" if where not in (None, "None") else "not cached")]
    probes = info.get("downstream_probe_accuracy", {})
    if probes:
        lines.append("  linear-probe accuracy of the frozen parts on the downstream tasks:")
        for key, value in probes.items():
            lines.append(f"    {key:<14} {value:.3f}")
    pretext = info.get("probe_accuracy", {})
    if pretext:
        lines.append("  pretext accuracy (held out): " + ", ".join(
            f"{k} {v:.3f}" for k, v in pretext.items()))
    return lines


def _cmd_describe(args: argparse.Namespace) -> int:
    config = _scenario_from_args(args)
    if args.seed is not None and any(o.split("=", 1)[0].strip() == "seed"
                                     for o in args.overrides):  # (--seed silently won)
        raise ConfigError(f"--seed {args.seed} and --set seed={config.seed} both set the "
                          "config seed; give one of them")
    report = describe_scenario(config, seed=args.seed)
    if args.json:
        jsonio.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(format_description(report))
    return 0


def _agent_policies(paths: Sequence[str], config: ScenarioConfig, command: str = "bench") -> list:
    """The trained agents at ``paths`` (``--agent``) as policies named by ``agent_label``,
    each loaded for the spaces of an env of ``config`` before any episode runs; a file that
    is not an agent, or an agent of other spaces, is a ``ConfigError`` naming it and why.
    An agent trained on other settings gets a note naming them first
    (:func:`_note_training_configs`): when they change its spaces, the error has its reason."""
    if not paths:
        return []
    import gymnasium as gym

    from hffm_env.agents.job import agent_label, agent_policy

    policies = []
    for path in paths:
        try:
            policies.append(agent_policy(path, name=agent_label(path)))
        except ValueError as err:  # AgentFileError: the message names the file and why
            raise ConfigError(f"--agent: {err}") from None
    _note_training_configs(policies, config, command)
    # (the spaces are the same in every fidelity: the cheapest env checks them)
    env = gym.make(ENV_ID, scenario=config, fidelity="cost")
    try:
        with _agent_errors():
            for policy in policies:
                policy.reset(env)
    finally:
        env.close()
    return policies


def _note_training_configs(agents: Sequence[Any], config: Any, command: str = "bench") -> None:
    """One line on stderr for each agent trained on other settings than this ``command``'s
    (another reward, horizon or layout, say): a note, since playing it elsewhere can be the
    point."""
    for policy in agents:
        stopped = policy.agent.interrupted_note()
        if stopped:
            print(f"hffm {command}: note: {policy.name}: {stopped}", file=sys.stderr)
        custom = policy.agent.info.custom_reward
        if custom is not None:  # the command's env plays a named reward (config.env.reward)
            print(f"hffm {command}: note: {policy.name} was trained under the reward {custom} "
                  f"(here {config.env.reward})", file=sys.stderr)
        trained = policy.agent.training_config()
        if trained is not None:
            if custom is not None:  # its config's env.reward is not what it trained under
                from hffm_env.agents.checkpoint import with_reward_of

                trained = with_reward_of(trained, config)
            _note_other_settings(f"{policy.name} was trained", trained, config, command)
        else:  # (the agents' own warning of it is silenced: _agent_errors)
            print(f"hffm {command}: note: {policy.name}: {policy.agent.settings_unchecked()}",
                  file=sys.stderr)


def _note_other_settings(
    what: str, made_on: ScenarioConfig, config: ScenarioConfig, command: str = "bench"
) -> None:
    """``hffm <command>: note: <what> with key=value (here value), ...`` on stderr when the
    config an agent or plan was made on differs from this run's; nothing when they agree."""
    from hffm_env.config import differences_line

    shown = differences_line(made_on, config)
    if shown:
        print(f"hffm {command}: note: {what} with {shown}", file=sys.stderr)


@contextlib.contextmanager
def _agent_errors() -> Iterator[None]:
    """An agent that loads but does not fit the env it is played on (other spaces: another
    layout or observation) fails at its first episode; say so in one line, as ``--agent``.
    The agents' warnings of other settings are silenced: the command noted them already
    (:func:`_note_training_configs`)."""
    from hffm_env.agents.checkpoint import AgentFileError, OtherSettingsWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OtherSettingsWarning)
            yield
    except AgentFileError as err:
        raise ConfigError(f"--agent: {err}") from None


def _plan_policies(
    paths: Sequence[str], config: ScenarioConfig | None = None, command: str = "bench"
) -> list:
    """The round plans at ``paths`` (``--plan``, JSON from ``benchmarks/plan_search.py``) as
    policies named ``plan:<file stem>``; a bad file is a ``ConfigError`` naming it and why.
    With ``config``, a plan searched on other settings (its file says which) gets a note on
    stderr from ``hffm <command>``, as an agent does."""
    from hffm_env.baselines.plan import PlanPolicy, RoundPlan

    policies = []
    for path in paths:
        try:
            policies.append(PlanPolicy(RoundPlan.read(path), name=f"plan:{Path(path).stem}"))
        except (ValueError, OSError) as err:
            raise ConfigError(f"--plan: {err}") from None
        if config is not None:
            _note_searched_config(policies[-1].name, path, config, command)
    return policies


def _note_searched_config(
    name: str, path: str, config: ScenarioConfig, command: str = "bench"
) -> None:
    """A note when the plan file's ``scenario`` and ``overrides`` (plan_search.py records
    them) give other settings than ``config``; silent when the file does not say."""
    from hffm_env.baselines.plan import searched_config

    searched = searched_config(path)
    if searched is not None:
        _note_other_settings(f"{name} was searched", searched, config, command)


def _cmd_bench(args: argparse.Namespace) -> int:
    for flag, target in (("--json", args.json), ("--plot", args.plot)):
        if target and target != "-" and Path(target).exists() and not args.force:
            raise ConfigError(f"{flag} {target!r}: exists; pass --force to overwrite it")
    if args.json and args.plot and _same_file(args.json, args.plot):
        raise ConfigError(f"--json and --plot name one file, {args.json!r}: the plot would "
                          "overwrite the JSON")
    if args.from_json:
        ignored = [flag for flag, given in (
            ("--agent", args.agent), ("--plan", args.plan), ("--set", args.overrides),
            ("--config", args.config), ("--episodes", args.episodes),
            ("--scenario", args.scenario), ("--fidelity", args.fidelity),
            ("--device", args.device), ("--surrogate", args.surrogate),
            ("--data-split-per-seed", args.data_split_per_seed),
            ("--target-accuracy", args.target_accuracy is not None),
            ("--target-fraction", args.target_fraction is not None),
        ) if given]
        if ignored:  # they would be silently ignored: the saved runs are merged as they are
            raise ConfigError(f"--from-json runs nothing, so {ignored[0]} has no effect; merge "
                              "the saved runs alone, or run the bench without --from-json")
        return _bench_from_json(args)
    config = _scenario_from_args(args)  # fails early, with one line, on a bad scenario
    args.fidelity, args.device = args.fidelity or "train", args.device or "cpu"
    targeted = [flag for flag, given in (
        ("--target-accuracy", args.target_accuracy is not None),
        ("--target-fraction", args.target_fraction is not None),
        ("--against", args.against is not None)) if given]
    if args.fidelity == "cost" and targeted:  # (kept: a JSON records its target for merges)
        print(f"hffm bench: note: cost fidelity measures no accuracy, so no episode reaches a "
              f"target: {', '.join(targeted)} compare nothing here (--fidelity train or "
              "surrogate measures it)", file=sys.stderr)
    if args.surrogate is not None and args.fidelity != "surrogate":
        raise ConfigError(f"--surrogate {args.surrogate!r}: a fit serves --fidelity surrogate "
                          f"only (this bench runs {args.fidelity!r})")
    if args.data_split_per_seed and args.fidelity == "surrogate":
        raise ConfigError("--data-split-per-seed: a surrogate serves the data split it was "
                          f"fitted on (config seed {config.seed}'s); judge other splits with "
                          "--fidelity train")
    if args.data_split_per_seed and config.seed != load_scenario(config.name).seed:
        given = ("--set seed=" if any(o.split("=", 1)[0].strip() == "seed"
                                      for o in args.overrides) else "the --config file's seed ")
        raise ConfigError(f"--data-split-per-seed makes each seed its env's config seed, so "
                          f"{given}{config.seed} would have no effect; give one of them")
    if args.target_fraction is not None:  # a fixed target would silently win over it
        fixed = ("--target-accuracy" if args.target_accuracy is not None
                 else f"env.target_accuracy = {config.env.target_accuracy}"
                 if config.env.target_accuracy is not None else None)
        if fixed:
            raise ConfigError(f"--target-fraction {args.target_fraction}: {fixed} fixes the "
                              "target already; give one of them")
    from hffm_env.baselines.policies import (
        PAPER_SCHEDULES,
        baselines_on_menu,
        make_policy,
        off_menu,
        policy_names,
    )

    if args.policies is not None:  # "" or none (no baseline) with --agent or --plan
        names = arguments.split_names(args.policies)
        if not names and not (args.agent or args.plan):
            raise ConfigError("--policies is empty and there is no --agent or --plan: "
                              "nothing to run")
    else:
        names = (list(PAPER_SCHEDULES) if config.name == "paper" and args.fidelity == "cost"
                 else policy_names())
        names, dropped = baselines_on_menu(config.env.period_menu, names)
        if dropped:  # a custom menu: the baselines that fit it, not an error half-way through
            print(f"hffm bench: note: leaving out {', '.join(dropped)}: their periods are not "
                  f"on env.period_menu {list(config.env.period_menu)}", file=sys.stderr)
    try:  # policies of your own, module:Class, imported and checked now
        own = {n: make_policy(n) for n in names if ":" in n}
    except ValueError as err:
        raise ConfigError(f"--policies: {err}") from None
    in_order = list(names)  # the table's order
    names = [n for n in names if ":" not in n]
    unknown = [n for n in names if n not in policy_names()]
    if unknown:
        raise ConfigError(f"--policies has {unknown[0]!r}: known policies are {policy_names()} "
                          "(or module:Class for one of your own)")
    misfit = off_menu(names, config.env.period_menu)
    if misfit:  # named: refused now, not after the others' episodes
        raise ConfigError(f"--policies has {misfit}")
    seeds = args.seeds or (
        [FIRST_HELD_OUT_SEED + k for k in range(args.episodes)] if args.episodes
        else list(DEFAULT_EVAL_SEEDS))
    import gymnasium as gym

    from hffm_env.baselines.runner import run_benchmark, seed_data_split, tuned_on_seeds

    if args.policies is None:  # the default list: what cannot be judged on these seeds goes
        tuned_here = list(tuned_on_seeds(names, seeds))
        if tuned_here:
            names = [n for n in names if n not in tuned_here]
            print(f"hffm bench: note: leaving out {', '.join(tuned_here)}: tuned on some of "
                  f"these seeds {seeds} (judge it on held-out seeds, {FIRST_HELD_OUT_SEED} "
                  "and up)", file=sys.stderr)

    agents = _agent_policies(args.agent, config)
    training_seeds = sorted(s for s in seeds if s < FIRST_HELD_OUT_SEED)
    if agents and training_seeds:  # training resets its envs with seeds below them
        print(f"hffm bench: note: seeds {training_seeds} are training seeds (below "
              f"{FIRST_HELD_OUT_SEED}): an agent may have trained on them; judge agents on "
              "held-out seeds", file=sys.stderr)
    if args.data_split_per_seed:  # an agent's own data split among the "other" splits
        for policy in agents:
            trained = policy.agent.training_config()
            if trained is not None and trained.seed in seeds:
                print(f"hffm bench: note: {policy.name} was trained on config seed "
                      f"{trained.seed}'s data split, which seed {trained.seed} plays here: "
                      "leave that seed out to judge it on splits it has not seen",
                      file=sys.stderr)
    policies: list = [*agents, *_plan_policies(args.plan, config),
                      *(own[n] if n in own else n for n in in_order if n in own or n in names)]
    _check_against(args.against, [getattr(p, "name", p) for p in policies])
    if args.fidelity == "surrogate":  # which fit: a calibrated one in the cache wins
        from hffm_env.fl.surrogate import SurrogateMismatch, SurrogateMissing, find_surrogate

        try:  # a bad or unfit file is one line here, before any episode
            with warnings.catch_warnings(record=True) as mismatch:
                warnings.simplefilter("always", SurrogateMismatch)
                fit = find_surrogate(config, args.surrogate)
        except (ValueError, SurrogateMissing) as err:  # (a missing file is the latter)
            given = "--surrogate" if args.surrogate is not None else "--fidelity surrogate"
            raise ConfigError(f"{given}: {err}") from None
        print(f"hffm bench: accuracy predicted by {fit.origin}", file=sys.stderr)
        for note in mismatch:  # once, as a note (each env built would warn again: they
            print(f"hffm bench: note: {note.message}", file=sys.stderr)  # are silenced below)

    if args.data_split_per_seed and (agents or args.plan):
        print("hffm bench: note: each seed plays on its own data split (its config seed): "
              "the agents and plans meet splits they were not made on", file=sys.stderr)

    def make_env(config_seed: int | None = None) -> Any:
        return gym.make(ENV_ID, scenario=seed_data_split(config, config_seed),
                        fidelity=args.fidelity, device=args.device, surrogate=args.surrogate)

    # (inside, not for the rest of the process: main() is called from notebooks too)
    with _agent_errors(), warnings.catch_warnings():
        if args.fidelity == "surrogate":
            warnings.simplefilter("ignore", SurrogateMismatch)
            for noted in mismatch:  # (a damaged cached fit, say: noted once, above)
                warnings.filterwarnings("ignore", message=re.escape(str(noted.message)))
        try:
            result = run_benchmark(
                make_env, policies, seeds=seeds, env_per_seed=args.data_split_per_seed,
                target_accuracy=(args.target_accuracy if args.target_accuracy is not None
                                 else config.env.target_accuracy),
                target_fraction=(DEFAULT_TARGET_FRACTION if args.target_fraction is None
                                 else args.target_fraction), progress=not args.no_progress,
                scenario=config.name, fidelity=args.fidelity,
            )
        except Exception as err:  # a policy's error: the episodes before it are kept
            partial = getattr(err, "partial_result", None)
            if partial is not None:
                try:
                    _report_bench(partial, args)
                    _say_unplayed(partial, policies, seeds, "stopped by the error below", args)
                except Exception as failed:  # (the policy's error is the news, not this)
                    print(f"hffm bench: what finished before the error below could not be "
                          f"written: {arguments.error_line(failed, 300)}", file=sys.stderr)
            raise
    if not result.episodes:  # (a JSON without episodes is no bench JSON: --from-json refuses it)
        print("hffm bench: interrupted before any episode finished; nothing written",
              file=sys.stderr)
        return 130
    _report_bench(result, args)
    if result.interrupted:
        _say_unplayed(result, policies, seeds, "interrupted", args)
    return 130 if result.interrupted else 0


def _say_unplayed(result: Any, policies: Sequence[Any], seeds: Sequence[int], why: str,
                  args: argparse.Namespace) -> None:
    """One line on stderr: a bench cut short (``why``) after how many of its episodes, which
    policies it played on no seed, and where what finished was written; with a fixed target
    (``--target-accuracy`` or the config's), a rerun of the rest merges with it (``hffm
    bench --from-json``; a target relative to the best policy depends on who played)."""
    names = [getattr(p, "name", p) for p in policies]
    played = {e.policy for e in result.episodes}
    missing = [str(n) for n in names if n not in played]
    files = [f for f in (args.json, args.plot) if f and f != "-"]  # (- is stdout)
    fixed = args.target_accuracy is not None or result.settings is not None and (
        result.settings.get("config", {}).get("env", {}).get("target_accuracy") is not None)
    print(f"hffm bench: {why} after {len(result.episodes)} of {len(names) * len(seeds)} "
          "episodes" + (f"; not played: {', '.join(missing)}" if missing else "")
          + "; what finished is tabled above, marked interrupted"
          + (f", and in {', '.join(map(str, files))}" if files else "")
          + ("; merge a rerun of the rest with --from-json" if fixed and files else ""),
          file=sys.stderr)


def _bench_from_json(args: argparse.Namespace) -> int:
    """``hffm bench --from-json A.json B.json ...``: merge saved runs (more seeds, more
    policies) into one table, JSON and plot; runs nothing."""
    from hffm_env.baselines.runner import BenchResult, format_table

    results = []
    for path in args.from_json:
        try:
            result = BenchResult.read_json(path)
            format_table(BenchResult.merge([result]))  # reads every field, so a bad one is
            results.append(result)                     # named with its file here
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
            what = f"no {error} entry" if isinstance(error, KeyError) else str(error)
            raise ConfigError(f"--from-json {path!r}: not a bench JSON ({what})") from None
    try:
        result = BenchResult.merge(results, names=args.from_json)
    except ValueError as error:
        raise ConfigError(f"--from-json: {error}") from None
    keep = arguments.split_names(args.policies)
    if keep and args.against is not None and args.against not in keep:
        raise ConfigError(f"--against {args.against!r}: --policies {','.join(keep)} leaves it "
                          "out; add it to --policies")
    known = [s.policy for s in result.summaries]
    if keep:  # keep these rows (any name in the files, agents' included)
        missing = [p for p in keep if p not in known]
        if missing:
            raise ConfigError(f"--policies has {missing[0]!r}: the files hold {known}")
    if args.seeds:  # keep these seeds' episodes
        absent = [s for s in args.seeds if s not in result.seeds]
        if absent:
            raise ConfigError(f"--seeds has {absent[0]}: the files hold seeds {result.seeds}")
    if keep or args.seeds:
        # merged again from each file's kept episodes: the runs none of whose episodes are
        # kept leave no provenance record behind
        # (what each run was to play is cut alike: a row or seed left out is no gap)
        kept = [(path, replace(
                    run, episodes=[e for e in run.episodes if (not keep or e.policy in keep)
                                   and (not args.seeds or e.seed in args.seeds)],
                    fingerprints={p: d for p, d in run.fingerprints.items()
                                  if not keep or p in keep},
                    seeds=[s for s in run.seeds if not args.seeds or s in args.seeds]))
                for path, run in zip(args.from_json, results)]
        if not any(run.episodes for _, run in kept):
            raise ConfigError(f"--policies {','.join(keep or [])} and --seeds "
                              f"{' '.join(map(str, args.seeds or []))}: the files hold no "
                              "episode of those policies on those seeds")
        # an interrupted run none of whose episodes are kept still says what it had yet to
        # play there (its gap), without its provenance record
        kept = [(path, run if run.episodes else replace(run, provenance=[]))
                for path, run in kept if run.episodes or run.interrupted]
        result = BenchResult.merge([run for _, run in kept], names=[path for path, _ in kept])
        rows = {s.policy for s in result.summaries}
        lost = [p for p in keep or known if p not in rows]
        if lost:  # (its row would vanish from the table without a word)
            raise ConfigError(f"--policies and --seeds: the files hold no episode of "
                              f"{lost[0]!r} on --seeds "
                              f"{' '.join(map(str, args.seeds or result.seeds))}; leave it out "
                              "with --policies")
    _check_against(args.against, [s.policy for s in result.summaries])
    seeds = {s.policy: sorted({e.seed for e in result.episodes if e.policy == s.policy})
             for s in result.summaries}
    if len({tuple(v) for v in seeds.values()}) > 1:  # rows of other seeds do not compare
        shown = ", ".join(f"{p} on {len(v)}" for p, v in seeds.items())
        print(f"hffm bench: note: the rows are not on the same seeds ({shown}; "
              f"{len(result.seeds)} in all): compare rows of one seed set, or rerun the "
              "missing episodes", file=sys.stderr)
    _report_bench(result, args)
    return 0


def _check_against(against: str | None, names: list[str]) -> None:
    """Refuse ``--against`` naming a policy that is not among ``names`` (before any episode
    of a run)."""
    if against is not None and against not in names:
        raise ConfigError(f"--against {against!r}: not a policy of this bench; it has "
                          f"{names}")


def _report_bench(result: Any, args: argparse.Namespace) -> None:
    """Write the JSON file and the plot that ``args`` asks for, then print the table and,
    with ``--against``, the seed-by-seed comparison (files first: a reader that leaves
    early, ``| head``, must not cost them)."""
    from hffm_env.baselines.runner import (
        format_paired,
        format_table,
        paired_energy_to_target,
        plot_tradeoffs,
    )

    to_stdout = args.json == "-"  # the JSON alone on stdout (for jq); the rest to stderr
    report = sys.stderr if to_stdout else sys.stdout
    if args.json and not to_stdout:
        result.write_json(args.json)
    if args.plot:
        plot_tradeoffs(result, args.plot)
    print(format_table(result), file=report)
    if args.against is not None:
        try:
            print(f"\n{format_paired(paired_energy_to_target(result, args.against))}",
                  file=report)
        except ValueError as error:  # it never played (interrupted), or twice on a seed
            print(f"hffm bench: note: no comparison --against {args.against}: {error}",
                  file=sys.stderr)
    if to_stdout:
        sys.stdout.write(jsonio.dumps(result.to_dict()) + "\n")
    elif args.json:
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {args.plot}", file=report)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    config = _scenario_from_args(args)  # fails early, with one line, on a bad scenario
    from hffm_env.config import PRETRAINING, check_memory
    from hffm_env.models import build_model

    check_memory(config, PRETRAINING)  # the model and pretext scenes, before allocating
    model = build_model(config.model, config.data, device=args.device,
                        progress=not args.no_progress)
    info = {**model.pretrain_info,
            "cache_file": None if model.cache_file is None else str(model.cache_file)}
    if args.json:
        jsonio.dump(info, sys.stdout)
        sys.stdout.write("\n")
    else:
        state = "loaded from the cache" if info.get("cached") else "pre-trained now"
        print(f"scenario {config.name}: frozen parts {state}")
        print("\n".join(format_pretrain_info(info, config.name)))
    return 0


def _resolved(path: str | Path) -> Path:
    """The file ``path`` names (existing or not), to tell whether two paths name one."""
    return Path(path).expanduser().resolve()


def _same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (existing or not)."""
    return _resolved(a) == _resolved(b)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    config = _scenario_from_args(args)  # fails early, with one line, on a bad scenario
    check_training_seeds(args.seeds or [], "--seeds")
    if args.exclude_seeds and not args.from_traces:
        raise ConfigError("--exclude-seeds leaves episodes out of a refit: it needs "
                          "--from-traces")
    if args.from_traces:
        played = [flag for flag, given in (
            ("--agent", args.agent), ("--plan", args.plan),
            ("--cloud-every-round", args.cloud_every_round), ("--seeds", args.seeds),
            ("--policies", args.policies is not None), ("--mixed", args.mixed is not None),
            ("--random-episodes", args.random_episodes is not None),
            ("--design-seed", args.design_seed is not None),
            ("--device", args.device)) if given]
        if played:
            raise ConfigError(f"{played[0]} shapes the real episodes a calibration plays; "
                              "--from-traces refits without training: pass one of them")
        repeated = sorted({p for p in args.from_traces
                           if sum(_same_file(p, q) for q in args.from_traces) > 1})
        if repeated:  # its episodes would count twice in the fit
            raise ConfigError(f"--from-traces names {repeated[0]!r} twice")
    from hffm_env.baselines import calibrate as design

    if args.design_seed == design.HELD_OUT_DESIGN_SEED:
        print(f"hffm calibrate: note: --design-seed {args.design_seed} draws the mixed "
              "schedules benchmarks/surrogate_error.py holds out: a fit of them is not judged "
              "on unseen schedules there", file=sys.stderr)
    args.seeds = list(design.DEFAULT_SEEDS) if args.seeds is None else args.seeds
    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"--seeds has {repeated[0]} twice (its episodes would be played and "
                          "fitted twice)")
    for flag, paths in (("--plan", args.plan), ("--agent", args.agent)):
        again = arguments.first_repeated(paths, key=_resolved)
        if again is not None:  # its episodes would be played and fitted twice
            raise ConfigError(f"{flag} names {again!r} twice (its episodes would be played "
                              "and fitted twice)")
    args.mixed = design.DEFAULT_MIXED if args.mixed is None else args.mixed
    if args.random_episodes is None:
        args.random_episodes = design.DEFAULT_RANDOM_EPISODES
    args.device = args.device or "cpu"
    if args.traces and args.from_traces:
        raise ConfigError("--traces records the episodes a calibration plays; --from-traces "
                          "plays none: pass one of them")
    inputs = [*(args.from_traces or ()), *([args.traces] if args.traces else ())]
    if args.out and any(_same_file(args.out, path) for path in inputs):
        raise ConfigError(f"--out {args.out!r}: the fitted surrogate would overwrite the "
                          "traces; write it elsewhere")
    from hffm_env.baselines.policies import policy_names

    args.policies = (design.DESIGN_POLICIES if args.policies is None
                     else tuple(arguments.split_names(args.policies)))
    unknown = [p for p in args.policies if p not in policy_names()]
    if unknown:
        raise ConfigError(f"--policies has {unknown[0]!r}: known policies are {policy_names()}")
    import gymnasium as gym

    from hffm_env.baselines.calibrate import calibrate
    from hffm_env.fl.surrogate import (
        SurrogateMissing,
        find_surrogate,
        surrogate_key,
        surrogate_path,
    )

    out = Path(args.out) if args.out else surrogate_path(config)
    traces = None if args.from_traces else (
        Path(args.traces) if args.traces else out.with_suffix(".traces.json"))
    if not args.force:  # files the user named (or beside one): hours of training
        named = [("--out", out if args.out else None),
                 ("--traces", traces if args.traces or args.out else None)]
        for flag, target in named:
            if target is not None and target.exists():
                raise ConfigError(f"{flag} {str(target)!r}: exists; pass --force to overwrite "
                                  "it" + (" (the traces are written next to --out)"
                                          if flag == "--traces" and not args.traces else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_traces:  # refit only: no training
        from hffm_env.baselines.calibrate import fit_traces, read_traces
        from hffm_env.fl.surrogate import traces_key

        try:
            per_file = [(path, read_traces(path, traces_key(config), config.data.tasks))
                        for path in args.from_traces]
        except ValueError as error:
            raise ConfigError(f"--from-traces {error}") from None
        recorded = [e for _, episodes in per_file for e in episodes]
        # the same episode in two files (a copy) would weigh twice; within one file repeats
        # are as recorded (earlier calibrations replayed random's episodes of a seed, and the
        # shipped fit was fitted on them)
        first_in: dict[tuple[str, int, str], str] = {}
        for path, episodes in per_file:
            for e in episodes:
                rounds = jsonio.dumps([r.to_dict() for r in e["rounds"]])
                episode = (str(e["policy"]), int(e["seed"]), rounds)
                where = first_in.setdefault(episode, path)
                if where != path:
                    raise ConfigError(f"--from-traces: the same {episode[0]} episode on seed "
                                      f"{episode[1]} is in {where} and {path} (a copy?); its "
                                      "rounds would be fitted twice: give it once")
        absent = sorted(set(args.exclude_seeds) - {int(e["seed"]) for e in recorded})
        if absent:  # a typo would leave in what was meant to be left out
            raise ConfigError(f"--exclude-seeds {absent[0]}: no episode of the traces has that "
                              f"seed (they hold seeds "
                              f"{sorted({int(e['seed']) for e in recorded})})")
        held_out = sorted({int(e["seed"]) for e in recorded
                           if int(e["seed"]) >= FIRST_HELD_OUT_SEED} - set(args.exclude_seeds))
        if held_out:  # a surrogate fitted on them would be judged on its own training data
            raise ConfigError(f"--from-traces: episodes of held-out seeds {held_out} (seeds "
                              f"{FIRST_HELD_OUT_SEED}+ are for evaluation); leave them out "
                              "with --exclude-seeds")
        episodes = [e for e in recorded if int(e["seed"]) not in args.exclude_seeds]
        if not episodes:
            raise ConfigError(f"--exclude-seeds {args.exclude_seeds} leaves no episode of "
                              f"{args.from_traces} to fit")
        surrogate = fit_traces(episodes, list(config.data.tasks), config.env.episode_rounds,
                               {"scenario": config.name,
                                "traces": [str(p) for p in args.from_traces],
                                "excluded_seeds": sorted(args.exclude_seeds),
                                "seeds": sorted({int(e["seed"]) for e in episodes}),
                                "training_s": float("nan")})
    else:
        agents = _agent_policies(args.agent, config, "calibrate")
        from hffm_env.baselines.calibrate import cloud_every_round_schedules, read_traces
        from hffm_env.fl.surrogate import traces_key

        schedules = cloud_every_round_schedules() if args.cloud_every_round else []
        schedules += _plan_policies(args.plan, config, "calibrate")
        assert traces is not None
        from hffm_env.baselines.policies import off_menu

        misfit = off_menu(args.policies, config.env.period_menu)
        if misfit:  # refused now, not after hours of the others' real training
            raise ConfigError(f"--policies has {misfit}")
        traces.parent.mkdir(parents=True, exist_ok=True)
        episodes = len(args.seeds) * (len(args.policies) + args.random_episodes + args.mixed
                                      + len(schedules) + len(agents))
        if episodes == 0:
            raise ConfigError("the calibration design is empty: name --policies, or pass "
                              "--mixed, --random-episodes, --cloud-every-round, --plan or "
                              "--agent")
        # the traces are replaced only by a finished run, so that they always belong to the
        # fit beside them; until then the episodes go to a .partial file of this run's own
        writing = _partial(traces)
        # a second run of these traces would write into the first's .partial file
        with _one_calibration_of(traces, writing):
            # (traces are keyed by config: the fit needs the settings they were recorded with)
            again = (f"hffm calibrate {_config_flags(args)} --from-traces "
                     f"{shlex.quote(str(writing))} --out FILE")
            if writing.exists() and not args.force:  # an interrupted run's: hours of episodes
                raise ConfigError(f"{str(writing)!r}: the episodes of an unfinished calibration "
                                  "(interrupted, or its fit failed); "
                                  f"fit them (`{again}`) or move them, or pass --force to start "
                                  "over")
            writing.unlink(missing_ok=True)
            print(f"hffm calibrate: real training of {episodes} episodes of scenario "
                  f"{config.name} (seeds {args.seeds}); traces to {traces} (to {writing.name} "
                  "until the run finishes)")
            try:
                with _agent_errors():
                    surrogate, _ = calibrate(
                        lambda: gym.make(ENV_ID, scenario=config, fidelity="train",
                                         device=args.device),
                        args.seeds, mixed=args.mixed, random_episodes=args.random_episodes,
                        progress=not args.no_progress, traces_path=writing,
                        policies=args.policies, agents=agents, schedules=schedules,
                        design_seed=args.design_seed or 0,
                    )
            except KeyboardInterrupt:
                kept = (len(read_traces(writing, traces_key(config))) if writing.exists() else 0)
                if kept:
                    print(f"hffm calibrate: interrupted; {kept} of {episodes} episodes are in "
                          f"{writing}: fit them with `{again}`", file=sys.stderr)
                else:
                    print("hffm calibrate: interrupted before its first episode ended; nothing "
                          "was kept", file=sys.stderr)
                return 130
            writing.replace(traces)
    surrogate.meta["config_key"] = surrogate_key(config)  # checked when loaded by path
    serving = out.resolve() == surrogate_path(config).resolve()
    if serving:
        try:
            before = find_surrogate(config).origin
        except (SurrogateMissing, ValueError):
            before = "none"
    _save_surrogate(surrogate, out)
    beside = out.with_suffix(".traces.json")
    if args.from_traces and beside.exists() and beside.resolve() not in {
            Path(p).resolve() for p in args.from_traces}:
        print(f"hffm calibrate: note: {beside}, beside the fit, holds an earlier "
              "calibration's traces, not the ones this fit was made from (its meta names "
              "them)", file=sys.stderr)
    fit = surrogate.meta["fit_mae"]
    accuracy = [v for k, v in fit.items() if k.startswith("accuracy/")]
    print(f"wrote {out} ({surrogate.meta['rounds']} rounds of "
          f"{surrogate.meta['episodes']} episodes); in-sample mean absolute "
          f"error of global accuracy per task {sum(accuracy) / len(accuracy):.3f} (held-out error: "
          "benchmarks/surrogate_error.py in the source repository)")
    if serving:  # say so: every later surrogate run of this config changes
        print(f"surrogate fidelity on this config now uses this fit (before: {before}); "
              "delete the file to go back")
    else:
        print(f"use it with --surrogate {shlex.quote(str(out))} (hffm bench, train_agent.py) "
              f"or gym.make(..., fidelity='surrogate', surrogate={str(out)!r})")
    return 0


@contextlib.contextmanager
def _one_calibration_of(traces: Path, writing: Path) -> Iterator[None]:
    """Hold the lock of ``traces`` (``.<name>.lock`` beside it, removed afterwards): a second
    calibration of the same traces would write into the first's ``.partial`` file and lose
    its episodes, so it is refused with a ``ConfigError``."""
    try:
        with lock_file(traces.with_name(f".{traces.name}.lock"), remove=True) as locked:
            if locked:  # temporary files of these names are a killed calibration's
                remove_staging_files(traces)
                remove_staging_files(writing)
            yield
    except FileBusy:
        raise ConfigError(f"another hffm calibrate is writing {traces} now (its episodes go to "
                          f"{writing.name}); wait for it, or write elsewhere with --out or "
                          "--traces") from None


def _save_surrogate(surrogate: Any, out: Path) -> None:
    """``surrogate.save(out)`` under ``out``'s lock (``.<name>.lock`` beside it, removed
    afterwards), first removing the temporary files a killed save of ``out`` left beside it;
    a second calibration saving to ``out`` at that moment waits for the first (a save takes
    a second; the fit before it may have taken hours)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with lock_file(out.with_name(f".{out.name}.lock"), remove=True, on_busy=lambda: print(
            f"hffm calibrate: waiting for another process that is saving {out}",
            file=sys.stderr, flush=True)) as locked:
        if locked:  # only a killed save's temporary files can be there now
            remove_staging_files(out)
        surrogate.save(out)


def _partial(traces: Path) -> Path:
    """Where a calibration writes ``traces`` until it finishes: ``x.partial.json`` for
    ``x.json`` (``x.partial.json.gz`` for ``x.json.gz``, which is written compressed)."""
    from hffm_env.files import GZIP_SUFFIX

    gz = traces.suffix == GZIP_SUFFIX
    stem = traces.name.removesuffix(GZIP_SUFFIX).removesuffix(".json")
    return traces.with_name(f"{stem}.partial.json{GZIP_SUFFIX if gz else ''}")


def _cmd_train(args: argparse.Namespace) -> int:
    import hffm_env.agents.command as train_agent

    return train_agent.main(args.train_args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hffm`` command."""
    parser = argparse.ArgumentParser(
        prog="hffm",
        description="Hierarchical federated foundation models over wireless networks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    describe = sub.add_parser("describe", help="print what a scenario contains")
    _add_scenario_arguments(describe)
    describe.add_argument("--seed", type=arguments.seed, default=None,
                          help="the config seed (default: the config's): its data split "
                          "and the placement the env is built with (an episode's reset(seed=S) "
                          "draws a placement of its own)")
    describe.add_argument("--json", action="store_true", help="print JSON instead of text")
    describe.set_defaults(func=_cmd_describe)

    bench = sub.add_parser("bench", help="compare policies on held-out seeds")
    _add_scenario_arguments(bench)
    bench.add_argument("--fidelity", choices=FIDELITIES, default=None,
                       help="'train': real FL training; 'surrogate': accuracy from the fitted "
                       "surrogate; 'cost': network costs only (default: train)")
    bench.add_argument("--policies", nargs="*", action="extend", metavar="NAME",
                       help="baseline names, comma- or space-separated: star, edge-only, "
                       "edge-only-d2d, hffm-e2, hffm-e8, hffm-d2d-e2, hffm-d2d-e8, never, random, "
                       "fixed-grid, adaptive, module-aware, greedy-energy (default: all whose "
                       "periods are on env.period_menu, which all are on the presets'; the "
                       "paper's seven schedules for --scenario paper --fidelity cost; '' for "
                       "none, with --agent or --plan); module:Class plays a policy of your "
                       "own (PYTHONPATH=. for a module in this folder)")
    bench.add_argument("--episodes", type=arguments.episode_count, default=None,
                       help=f"episodes per policy on the held-out seeds {FIRST_HELD_OUT_SEED}, "
                       f"{FIRST_HELD_OUT_SEED + 1}, ... (default {len(DEFAULT_EVAL_SEEDS)})")
    bench.add_argument("--seeds", type=arguments.seed, nargs="+", action="extend", default=None,
                       help="explicit evaluation seeds (overrides --episodes; repeated flags "
                       "add up); with --from-json, the seeds whose episodes to keep")
    bench.add_argument("--data-split-per-seed", action="store_true",
                       help="play each seed on its own data split (device profiles, label "
                       "skew, test sets): the seed is its env's config seed too, instead of "
                       "the config's seed for every episode (train and cost fidelity: a "
                       "surrogate serves the split it was fitted on; fixed-grid tunes once, "
                       "on the config's own split)")
    bench.add_argument("--agent", type=arguments.input_path,
                       action="append", default=[], metavar="PATH",
                       help="a trained agent folder (or its model.zip) to evaluate too "
                       "(repeatable); loading never unpickles")
    bench.add_argument("--plan", type=arguments.input_path,
                       action="append", default=[], metavar="FILE",
                       help="a round plan (JSON from the source repository's "
                       "benchmarks/plan_search.py) to evaluate too (repeatable)")
    bench.add_argument("--target-accuracy", type=arguments.probability, default=None,
                       help="accuracy target for energy/latency-to-target (default: "
                       "env.target_accuracy when set, else a fraction of the best final "
                       "accuracy)")
    bench.add_argument("--target-fraction", type=arguments.fraction, default=None,
                       help="fraction of the best policy's final accuracy used as target "
                       f"when no target accuracy is set (default {DEFAULT_TARGET_FRACTION})")
    bench.add_argument("--device", type=arguments.device, default=None,
                       help="torch device for FL training: cpu, cuda, cuda:<i>, mps or auto "
                       "(cuda when present; default: cpu)")
    bench.add_argument("--surrogate", type=arguments.input_path, metavar="FILE", default=None,
                       help="with --fidelity surrogate: a fitted surrogate (hffm calibrate "
                       "--out FILE; default: the cache's fit for this config, else the shipped "
                       "one)")
    bench.add_argument("--json", type=arguments.output_file(stdout=True), metavar="FILE",
                       help="write the results as JSON (- for stdout, the table then to "
                       "stderr)")
    bench.add_argument("--plot", type=arguments.output_file(arguments.PLOT_SUFFIXES),
                       metavar="FILE", help="write the trade-off plot (.png, .pdf or .svg)")
    bench.add_argument("--force", action="store_true",
                       help="overwrite existing --json and --plot files")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench.add_argument("--from-json", type=arguments.input_path, nargs="+", metavar="FILE",
                       help="run nothing: merge saved bench JSON files (e.g. the same "
                       "policies on more seeds) into one table, --json and --plot; "
                       "--policies and --seeds keep those rows and seeds")
    bench.add_argument("--against", metavar="POLICY", default=None,
                       help="after the table, every other policy's energy to target against "
                       "this one's, seed by seed: the geometric mean ratio over the seeds "
                       "both reached it on, its 95%% interval, and on how many seeds each "
                       "side reached it (e.g. --against hffm-d2d-e2, or agent:NAME)")
    bench.set_defaults(func=_cmd_bench)

    pretrain = sub.add_parser(
        "pretrain", help="pre-train and cache the frozen parts of a scenario's model now")
    _add_scenario_arguments(pretrain)
    pretrain.add_argument("--device", type=arguments.device, default="cpu",
                          help="torch device the built model is placed on: cpu, cuda, "
                          "cuda:<i>, mps or auto (cuda when present); pre-training itself runs "
                          "on one CPU thread, so that its weights are the same on any machine")
    pretrain.add_argument("--json", action="store_true", help="print JSON instead of text")
    pretrain.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    pretrain.set_defaults(func=_cmd_pretrain)

    calibrate = sub.add_parser(
        "calibrate", help="fit the surrogate fidelity on real training of a scenario")
    _add_scenario_arguments(calibrate)
    calibrate.add_argument("--seeds", type=arguments.seed, nargs="+", action="extend",
                           default=None,
                           help="training seeds to calibrate on (default: 0 1)")
    calibrate.add_argument("--design-seed", type=arguments.seed, default=None,
                           help="draws the --mixed schedules (default 0): another seed per "
                           "calibration run adds other schedules, not only other seeds of "
                           "the same ones")
    calibrate.add_argument("--mixed", type=arguments.non_negative_int, default=None,
                           help="schedules with per-module-type periods drawn at random, per "
                           "seed (default 8; beside the named policies and random)")
    calibrate.add_argument("--policies", nargs="*", action="extend", default=None,
                           metavar="NAME",
                           help="named baselines in the design, comma- or space-separated "
                           "(default: the paper's seven "
                           "schedules, never, adaptive, module-aware, greedy-energy)")
    calibrate.add_argument("--agent", type=arguments.input_path,
                           action="append", default=[], metavar="PATH",
                           help="a trained agent folder (or its model.zip) to play in the "
                           "design too, one episode per seed (repeatable): its own real rounds "
                           "teach the surrogate where the agent took it")
    calibrate.add_argument("--plan", type=arguments.input_path,
                           action="append", default=[], metavar="FILE",
                           help="a round plan (JSON from the source repository's "
                           "benchmarks/plan_search.py) to play in the design too, one "
                           "episode per seed (repeatable)")
    calibrate.add_argument("--cloud-every-round", action="store_true",
                           help="add cloud aggregation every round over the D2D relay and its "
                           "MoE-every-K variants (hffm-d2d-e1, hffm-d2d-e1-moeK), one episode "
                           "per seed each: the schedules energy-to-target learners favour")
    calibrate.add_argument("--random-episodes", type=arguments.non_negative_int, default=None,
                           help="episodes of the random policy per seed (default 1)")
    calibrate.add_argument("--out", type=arguments.output_file(), metavar="FILE",
                           help="where to write the surrogate (default: the cache, where "
                           "fidelity='surrogate' finds it)")
    calibrate.add_argument("--traces", type=arguments.output_file(), metavar="FILE",
                           help="where to write the traces (default: next to --out)")
    calibrate.add_argument("--force", action="store_true",
                           help="overwrite an existing --out or --traces file (the cache's "
                           "fit, without --out, is always refitted), and start over an "
                           "interrupted run's .partial traces")
    calibrate.add_argument("--from-traces", type=arguments.input_path, metavar="FILE", nargs="+",
                           help="refit on traces written by earlier runs (no training)")
    calibrate.add_argument("--exclude-seeds", type=arguments.seed, nargs="+", default=[],
                           metavar="SEED",
                           help="with --from-traces: leave these seeds' episodes out of the "
                           "fit (to judge it on them: the source repository's "
                           "benchmarks/surrogate_error.py --traces FILE --seeds SEED ...)")
    calibrate.add_argument("--device", type=arguments.device, default=None,
                           help="torch device for FL training: cpu, cuda, cuda:<i>, mps or "
                           "auto (cuda when present; default: cpu)")
    calibrate.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    calibrate.set_defaults(func=_cmd_calibrate)

    train = sub.add_parser("train", help="train a PPO scheduler (same flags as train_agent.py)",
                           add_help=False)
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hffm`` console script: the exit status (0 done, ``--help`` and
    ``--version`` included; 2 for bad arguments or files, one line on stderr; 130 after Ctrl-C
    or SIGTERM; 141 when stdout's reader left), returned rather than raised, so that Python
    code and notebooks can call ``main([...])``."""
    argv = list(sys.argv[1:] if argv is None else argv)

    def run() -> int | None:
        if argv[:1] == ["train"]:
            # everything after "train" belongs to train_agent.py, --help included (argparse's
            # REMAINDER would refuse a first argument that starts with "--")
            import hffm_env.agents.command as train_agent

            return train_agent.main(argv[1:], prog="hffm train")
        # parsing too: a --device check imports torch, a second that Ctrl-C may fall in
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # argparse: --help or --version (0), a bad flag (2, printed)
            return int(done.code or 0)  # a status, as `hffm train` returns it, not an exception
        return args.func(args)

    # errors, warnings and Ctrl-C name the subcommand, as its parse errors and notes do
    # ("hffm bench: error: ..." for a bad flag, "hffm: error: ..." for a bad file was two voices)
    prog = f"hffm {argv[0]}" if argv[:1] and argv[0] in SUBCOMMANDS else "hffm"
    return arguments.run_command(run, prog, argv)


SUBCOMMANDS = ("describe", "bench", "pretrain", "calibrate")
"""The subcommands :func:`main` runs itself (``train`` runs as ``train_agent.py`` does, under
its own name ``hffm train``)."""


if __name__ == "__main__":
    sys.exit(main())
