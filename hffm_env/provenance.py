"""Where a result came from: the record every JSON result the package writes carries.

A result file outlives the code that wrote it. Episodes are bit-identical only across runs of
one version, library set and torch thread count, so a reader comparing or merging two files
needs to know which code, libraries and machine made each. :func:`provenance` is that record:

    from hffm_env.provenance import provenance
    provenance()["source"]   # {"commit": "3f9c...", "dirty": False} in a clone, else None

``hffm bench --json`` (and ``run_benchmark``'s :class:`~hffm_env.baselines.runner.BenchResult`),
a training run's ``results.json`` and ``train_args.json``, ``hffm calibrate``'s traces and the
benchmark scripts' JSON objects hold it under ``"provenance"``.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["LIBRARIES", "checkout_of", "describe", "provenance"]

LIBRARIES = ("torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib", "transformers",
             "peft", "networkx")
"""The distributions whose versions a record names (those installed)."""


def provenance() -> dict[str, Any]:
    """This process's record: the package version, the source checkout's commit (``source``:
    ``{"commit", "dirty"}`` when the package runs from a git clone's top level, as an editable
    install does, else None; read when this module is imported, as the code that runs is
    loaded, so a commit made while a long run goes on is not taken for its code), Python's
    and :data:`LIBRARIES`' versions, the platform, the CPU count, torch's thread count (None
    where torch is not loaded), the command (the words of the ``hffm`` command or script
    running, else the script's file name and ``sys.argv[1:]``) and the time it was made (UTC,
    ISO 8601). Plain JSON data; never raises."""
    torch = sys.modules.get("torch")  # what ran on it, if anything did
    return {
        "hffm_env": _package_version(),
        "source": dict(_SOURCE) if _SOURCE is not None else None,  # the caller's to change
        "python": platform.python_version(),
        "libraries": dict(_library_versions()),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "command": _command(),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def describe(record: Any) -> str:
    """One line naming the code a :func:`provenance` record ran (version, commit, torch and
    its threads), for messages that compare two runs; ``"unrecorded code"`` for anything that
    is not a record (files written before records were kept)."""
    if not isinstance(record, dict):
        return "unrecorded code"
    source = record.get("source")
    commit = (f" at {str(source.get('commit'))[:10]}{'+changes' if source.get('dirty') else ''}"
              if isinstance(source, dict) else "")
    libraries = record.get("libraries")
    torch = libraries.get("torch") if isinstance(libraries, dict) else None
    threads = record.get("torch_threads")
    return (f"hffm-env {record.get('hffm_env')}{commit}, torch {torch}"
            + (f" on {threads} thread(s)" if threads is not None else ""))


def _command() -> list[str]:
    from hffm_env.arguments import command_line

    running = command_line()  # a command's own words, also when its main(argv) was called
    if running is not None:
        return running
    return [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]


def _package_version() -> str:
    from hffm_env import __version__

    return __version__


@functools.lru_cache(maxsize=1)
def _library_versions() -> tuple[tuple[str, str], ...]:
    found = []
    for name in LIBRARIES:
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            pass
    return tuple(found)


def checkout_of(root: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git clone whose top level is ``root`` (a folder with
    ``.git`` and ``pyproject.toml``, as a clone of this project is), else None: a regular
    install inside some other repository (a venv in a project) reports no commit, nor does a
    machine without git."""
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        changes = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, ValueError, subprocess.SubprocessError):  # no git, not a repository,
        return None  # a hung git, output that is not text
    return {"commit": commit.strip(), "dirty": bool(changes.strip())}


def _git(root: Path, *args: str) -> str:
    # git's own variables (GIT_DIR, GIT_WORK_TREE from a hook or a shell) would point it at
    # another repository than root's
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          errors="replace", check=True, timeout=5,
                          env={**env, "GIT_OPTIONAL_LOCKS": "0"}).stdout


_SOURCE = checkout_of(Path(__file__).resolve().parent.parent)
"""The commit of the code this process loaded (:func:`checkout_of` of the package's clone)."""
