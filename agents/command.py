"""The training command: ``train_agent.py`` and ``hffm train`` (one parser, one ``main``).

Train a PPO scheduler for hffm-env and compare it with the heuristic baselines.

    python train_agent.py --scenario small --total-timesteps 2000 --out out/small

Every field of :class:`hffm_env.agents.common.TrainArgs` is a flag (``--total-timesteps``,
``--n-envs``, ``--algo {ppo,maskable-ppo}``, ...); ``--help`` lists them with their help
lines. The same job runs as ``hffm train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path

from hffm_env.agents.checkpoint import MODEL_FILE, POLICY_FILE
from hffm_env.agents.common import LEARNING_CURVE_PNG, TrainArgs
from hffm_env.agents.job import train
from hffm_env.arguments import USER_ERRORS, report_user_error, run_command, split_names

__all__ = [
    "DESCRIPTION",
    "build_parser",
    "parse_args",
    "main",
    "flags_of",
]

#: The parser's description (a constant, not the docstring's line, so that ``--help`` also
#: works under ``python -OO``, which strips docstrings).
DESCRIPTION = "Train a PPO scheduler for hffm-env and compare it with the heuristic baselines."


def _flag_type(annotation: object) -> tuple[type, bool]:
    """The element type of a field's annotation and whether it is a list."""
    origin = typing.get_origin(annotation)
    if origin is list:
        return typing.get_args(annotation)[0], True
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _flag_type(inner[0])
    return annotation, False  # type: ignore[return-value]


def _default_of(f: dataclasses.Field[typing.Any]) -> typing.Any:
    """A :class:`TrainArgs` field's default value (every field has one: each is a flag)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is dataclasses.MISSING:
        raise TypeError(f"TrainArgs.{f.name} has no default: every flag needs one")
    return f.default_factory()


def build_parser(parser: argparse.ArgumentParser | None = None,
                 prog: str = "train_agent.py") -> argparse.ArgumentParser:
    """An argument parser with one flag per :class:`TrainArgs` field (``prog`` names the
    command in usage lines: ``hffm train`` when run through ``hffm``)."""
    parser = parser or argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    hints = typing.get_type_hints(TrainArgs)
    for f in dataclasses.fields(TrainArgs):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        kind, is_list = _flag_type(hints[f.name])
        default = _default_of(f)
        if "default" not in help_:  # some help lines already say what the default means
            help_ = f"{help_} (default: {default})"
        flags = (flag, *f.metadata.get("aliases", ()))
        choices = f.metadata.get("choices")
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default,
                                help=help_)
        elif is_list:  # repeated flags add up: --set a=1 --set b=2 (None: the default)
            parser.add_argument(*flags, dest=f.name, type=kind,
                                nargs=f.metadata.get("nargs", "*"), action="extend",
                                default=None, metavar=f.metadata.get("metavar"), help=help_)
        else:
            parser.add_argument(*flags, type=kind, default=default, choices=choices,
                                help=help_)
    return parser


def flags_of(args: TrainArgs, **changes: object) -> list[str]:
    """The command-line flags that give ``args`` (with ``changes``): each field that differs
    from its default, as :func:`build_parser` reads it back."""
    out = []
    values = {**dataclasses.asdict(args), **changes}
    if values["resume"]:  # cloning a plan starts a run; a resumed run has it already
        values["imitate"] = values["imitate_rounds"] = None
    for f in dataclasses.fields(TrainArgs):
        default = _default_of(f)
        value, flag = values[f.name], "--" + f.name.replace("_", "-")
        if value == default or (isinstance(value, tuple) and list(value) == default):
            continue
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            out += [flag, *map(str, value)]
        elif value is not None:
            out += [flag, str(value)]
    return out


def parse_args(argv: Sequence[str] | None = None, prog: str = "train_agent.py") -> TrainArgs:
    """Parse the command line into :class:`TrainArgs`."""
    namespace = build_parser(prog=prog).parse_args(argv)
    if namespace.eval_policies is not None:  # a,b as hffm bench takes them, or a b
        namespace.eval_policies = split_names(namespace.eval_policies)
        if not namespace.eval_policies:  # [] would read as every baseline
            raise ValueError("--eval-policies is empty: name baselines, or leave the flag out "
                             "for all of them")
    return TrainArgs(**{k: v for k, v in vars(namespace).items() if v is not None
                        or k not in _LIST_FIELDS})


_LIST_FIELDS = {f.name for f in dataclasses.fields(TrainArgs)
                if typing.get_origin(typing.get_type_hints(TrainArgs)[f.name]) is list}


_FIELD_MENTION = re.compile(r"(?<![\w./-])([a-z_]+)( = | has )")
_LEADING_FIELD = re.compile(r"^([a-z_]+)(: )")  # "imitate: ..." (not a path's last part)


def _as_flag(err: BaseException) -> BaseException:
    """``err`` with the :class:`TrainArgs` field names it mentions (``total_timesteps = 0``)
    written as the flags the user typed (``--total-timesteps 0``). A config error keeps its
    words: its names are the scenario config's keys (``seed`` there is the config seed)."""
    from hffm_env.config import ConfigError

    if isinstance(err, ConfigError) or len(err.args) != 1 or not isinstance(err.args[0], str):
        return err

    def flag(match: re.Match) -> str:
        name, joiner = match.groups()
        if name not in _FIELDS:
            return match.group(0)
        return "--" + name.replace("_", "-") + (" " if joiner == " = " else joiner)

    err.args = (_FIELD_MENTION.sub(flag, _LEADING_FIELD.sub(flag, err.args[0], count=1)),)
    return err


_FIELDS = {f.name for f in dataclasses.fields(TrainArgs)}


def bench_command(args: TrainArgs) -> str:
    """The ``hffm bench`` command that compares the agent in ``args.out`` with the baselines
    as the run's own comparison does: on the settings it trained on (``--config`` of the
    agent folder), the evaluation's fidelity, seeds, policies and data splits."""
    out = str(args.out)
    flags = ["--agent", out, "--config", out, "--fidelity", args.final_fidelity,
             "--seeds", *map(str, args.eval_seeds)]
    if args.eval_policies:  # (none given: bench's default, as the comparison's)
        flags += ["--policies", *args.eval_policies]
    if args.surrogate is not None and args.final_fidelity == "surrogate":
        flags += ["--surrogate", str(args.surrogate)]  # (the fit the comparison played)
    if args.eval_data_split_per_seed:
        flags.append("--data-split-per-seed")
    return f"hffm bench {shlex.join(flags)}"


def main(argv: Sequence[str] | None = None, prog: str = "train_agent.py") -> int:
    """Run the training job; print the comparison table. Exit status 0 when done, 2 for bad
    arguments or files (one line on stderr, led by ``prog``), 130 after Ctrl-C or SIGTERM
    (what existed was saved), 141 when stdout's reader left (``| head``)."""
    return run_command(lambda: _main(argv, prog), prog, argv)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    import hffm_env.agents.common as common
    from hffm_env.agents.common import TrainingInterrupted

    common.PROG = prog  # the notes name the command that was run

    try:
        args = parse_args(argv, prog)
    except USER_ERRORS as err:
        return report_user_error(_as_flag(err), prog)
    except SystemExit as done:  # argparse: --help (0) or a bad flag (2, already printed)
        return int(done.code or 0)
    try:
        results = train(args)
    except USER_ERRORS as err:  # ConfigError, AgentFileError and unreadable files included
        return report_user_error(_as_flag(err), prog)
    except TrainingInterrupted as stop:
        print(f"{prog}: {stop}; continue with\n  {prog} "
              f"{shlex.join(flags_of(args, resume=args.out, force=False))}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        # interrupted after an agent was saved (SB3's model.zip, RLlib's policy.pt)?
        if any(Path(args.out, name).exists() for name in (MODEL_FILE, POLICY_FILE)):
            print(f"{prog}: interrupted; the agent saved in {args.out} is kept (continue "
                  f"with --resume {args.out}, or evaluate it with {bench_command(args)})",
                  file=sys.stderr)
        else:
            print(f"{prog}: interrupted before training started; nothing was saved",
                  file=sys.stderr)
        return 130
    has_curve = Path(args.out, LEARNING_CURVE_PNG).exists()
    if not args.evaluate:
        print(f"agent saved in {args.out}{f' with {LEARNING_CURVE_PNG}' if has_curve else ''} "
              f"(trained {results.get('train_seconds', float('nan')):.0f} s; not compared "
              f"with the baselines: {bench_command(args)} does it)")
        return 0
    print(Path(args.out, "results.md").read_text(encoding="utf-8"))
    if results.get("interrupted"):
        print(f"{prog}: evaluation interrupted; the agent and the finished episodes are "
              f"in {args.out}", file=sys.stderr)
        return 130
    curve = f", {LEARNING_CURVE_PNG}" if has_curve else ""
    print(f"results written to {args.out}/results.json, results.md, pareto.png{curve} "
          f"(trained {results.get('train_seconds', float('nan')):.0f} s)")
    return 0
