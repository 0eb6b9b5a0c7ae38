"""Shared output of the benchmark scripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from hffm_env import arguments, jsonio
from hffm_env.files import write_text_atomically
from hffm_env.provenance import provenance

_json_stdout: IO[str] | None = None


def description(doc: str | None) -> str:
    """A script's ``--help`` description: its docstring's first paragraph (the docstring is
    None under ``python -OO``: then a generic line)."""
    return doc.strip().split("\n\n")[0] if doc else "An hffm-env benchmark."


def help_texts(doc: str | None) -> dict[str, Any]:
    """``argparse.ArgumentParser`` keywords for a script's ``--help``: its docstring's first
    paragraph as the description (:func:`description`) and the rest (what it measures, its
    targets, what its JSON holds, example commands) as the epilog, laid out as written."""
    rest = doc.strip().split("\n\n", 1)[1] if doc and "\n\n" in doc.strip() else None
    return {"description": description(doc), "epilog": rest,
            "formatter_class": argparse.RawDescriptionHelpFormatter}


def add_json_option(parser: argparse.ArgumentParser, what: str = "results") -> None:
    """The scripts' one ``--json [FILE]`` flag: write ``what`` as JSON to FILE, or to stdout
    without FILE; and ``--force`` (call :func:`prepare_outputs` on the parsed arguments)."""
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                        type=arguments.output_file(stdout=True),
                        help=f"write {what} as JSON to FILE (stdout without FILE)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing output files (refused without it: a rerun "
                        "must not silently replace a committed result)")


def prepare_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    inputs: Sequence[tuple[str, str | Path | Sequence[str | Path] | None]] = (),
                    checked_later: Sequence[str] = ()) -> None:
    """Before any work: refuse an output that names a file the run reads (``inputs``: flag,
    file or files), then :func:`refuse_existing` ``--json`` and ``--plot`` files, then
    :func:`claim_stdout_for_json`. For script entry points, right after parsing.
    ``checked_later``: flags (``"plot"``) whose value is not the file written (one file a
    scenario, say): not refused for existing here (the script checks the files it writes
    itself, :func:`refuse_existing` and :func:`refuse_inputs`, once it knows them)."""
    outputs = [(f"--{flag}", getattr(args, flag, None)) for flag in ("json", "plot")]
    refuse_inputs(parser, outputs, inputs)
    refuse_existing(parser, args, [(flag, target) for flag, target in outputs
                                   if flag.removeprefix("--") not in checked_later])
    claim_stdout_for_json(args.json)


def refuse_inputs(parser: argparse.ArgumentParser,
                  outputs: Sequence[tuple[str, str | Path | None]],
                  inputs: Sequence[tuple[str, str | Path | Sequence[str | Path] | None]]
                  ) -> None:
    """Exit with an error when one of ``outputs`` (flag, file) names a file the run reads
    (``inputs``: flag, file or files), force or not: ``--force`` replaces an earlier result,
    never the input (that destroyed real traces)."""
    read = {Path(path).resolve(): flag for flag, given in inputs if given is not None
            for path in ([given] if isinstance(given, (str, Path)) else given)}
    for flag, target in outputs:
        if target is not None and str(target) != "-" and Path(target).resolve() in read:
            parser.error(f"{flag} {str(target)!r} is the {read[Path(target).resolve()]} file "
                         "this run reads: write the result elsewhere")


def refuse_existing(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    outputs: list[tuple[str, str | Path | None]]) -> None:
    """Exit with an error naming the flag when one of ``outputs`` (flag, file the script will
    write; ``"-"`` and None are no file) exists and ``args.force`` is not set: a rerun must
    not silently replace a committed result; and, force or not, when two of them name one
    file (:func:`refuse_one_file_twice`)."""
    refuse_one_file_twice(parser, outputs)
    if getattr(args, "force", False):
        return
    for flag, target in outputs:
        if target is not None and str(target) != "-" and Path(target).exists():
            parser.error(f"{flag} {str(target)!r}: exists; pass --force to overwrite it")


def refuse_one_file_twice(parser: argparse.ArgumentParser,
                          outputs: list[tuple[str, str | Path | None]]) -> None:
    """Exit with an error naming both flags when two of ``outputs`` (flag, file) name one
    file: the one written last would replace the other (``--save-traces X --json X`` left
    the summary where the real episodes had been)."""
    written = [(flag, Path(target).resolve()) for flag, target in outputs
               if target is not None and str(target) != "-"]
    for k, (flag, path) in enumerate(written):
        twice = next((other for other, seen in written[:k] if seen == path), None)
        if twice is not None:
            parser.error(f"{twice} and {flag} name one file, {str(path)!r}: give each its own")


def exit_status(*met: bool) -> int:
    """The scripts' one exit status for what they judge: 0 when every target in ``met`` is
    met, 1 when one is missed (so automation can read a MISS without parsing the output;
    2 stays bad arguments)."""
    return 0 if all(met) else 1


def add_overrides_option(parser: argparse.ArgumentParser,
                         help: str = "scenario override (repeatable)") -> None:
    """The scripts' one ``--set KEY=VALUE`` flag (repeatable), parsed into ``overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help=help)


def claim_stdout_for_json(target: str | None) -> None:
    """With ``--json`` and no FILE (``target`` ``"-"``), keep stdout for the JSON alone: what
    the script prints for people (tables, verdicts) goes to stderr from here on, so that
    ``script --json | jq`` reads valid JSON. For script entry points (it is not undone)."""
    global _json_stdout
    if target == "-" and _json_stdout is None:
        _json_stdout = sys.stdout
        sys.stdout = sys.stderr


def emit_json(results: Any, target: str | None) -> None:
    """Write ``results`` as strict JSON (:mod:`hffm_env.jsonio`: NaN and infinity as null):
    to stdout when ``target`` is ``"-"`` (the stdout :func:`claim_stdout_for_json` kept), to
    the file ``target`` otherwise, nowhere when ``target`` is None (``--json [FILE]`` not
    given). A JSON object gets this run's :func:`~hffm_env.provenance.provenance` record under
    ``"provenance"``, unless it holds episodes: a bench result carries the records of the runs
    that played them (none, in a file older than records, that is read and written again)."""
    if target is None:
        return
    if isinstance(results, dict) and "provenance" not in results and not _holds_episodes(results):
        results = {**results, "provenance": provenance()}
    if target == "-":
        out = _json_stdout if _json_stdout is not None else sys.stdout
        jsonio.dump(results, out)
        out.write("\n")
        out.flush()
        return
    write_text_atomically(target, jsonio.dumps(results))


def _holds_episodes(results: dict[str, Any]) -> bool:
    """Whether ``results`` is a bench result (a list of episodes beside the policies'
    summaries), not a script's object that counts its episodes."""
    return isinstance(results.get("episodes"), list) and "policies" in results
