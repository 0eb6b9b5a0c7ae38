"""The provenance record every JSON result carries (hffm_env.provenance)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

import hffm_env
from hffm_env import jsonio, provenance
from hffm_env.provenance import describe

CLONE = Path(hffm_env.__file__).resolve().parent.parent


def _git_head(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_a_record_names_the_code_libraries_threads_and_command():
    record = provenance.provenance()
    assert json.loads(jsonio.dumps(record)) == record  # plain JSON data
    assert record["hffm_env"] == hffm_env.__version__
    assert record["libraries"]["torch"] == torch.__version__
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["command"] and record["time_utc"].endswith("+00:00")
    line = describe(record)
    assert f"hffm-env {hffm_env.__version__}" in line and torch.__version__ in line
    assert describe(None) == "unrecorded code"


@pytest.mark.skipif(not (CLONE / ".git").exists(), reason="the package is not run from a clone")
def test_a_clone_records_its_commit_and_whether_tracked_files_changed():
    head = subprocess.run(["git", "-C", str(CLONE), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    changes = subprocess.run(["git", "-C", str(CLONE), "status", "--porcelain",
                              "--untracked-files=no"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert provenance.provenance()["source"] == {"commit": head, "dirty": bool(changes)}
    assert f"at {head[:10]}" in describe(provenance.provenance())


def test_no_commit_outside_the_clones_top_level_or_without_git(tmp_path, monkeypatch):
    """A regular install inside another repository (a venv in a project) must not report that
    repository's commit; a machine without git reports none."""
    project = tmp_path / "project"
    site = project / ".venv" / "site-packages"
    site.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    assert provenance.checkout_of(site) is None  # inside a repository, not its top level
    assert provenance.checkout_of(project) is None  # a repository of no package
    (project / "pyproject.toml").write_text("")
    subprocess.run(["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-q", "--allow-empty", "-m", "first"], check=True)
    assert provenance.checkout_of(project)["dirty"] is False  # pyproject.toml is untracked
    # git's variables from a hook or a shell do not turn it to another repository
    other = tmp_path / "other"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    head = _git_head(project)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert provenance.checkout_of(project)["commit"] == head
    monkeypatch.delenv("GIT_DIR")
    # a changed file whose name is not UTF-8, listed unquoted: changes, not an error
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "config", "core.quotepath", "false"], check=True)
    odd = Path(os.fsdecode(bytes(project) + b"/caf\xe9.txt"))
    odd.write_text("a")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "odd name"], check=True)
    odd.write_text("b")
    assert provenance.checkout_of(project)["dirty"] is True
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert provenance.checkout_of(project) is None


def test_the_command_is_the_running_commands_own_words():
    """``main(argv)`` called from Python (a notebook, a test) recorded the interpreter's argv,
    not the command that made the file."""
    from hffm_env import arguments

    seen = []
    assert arguments.run_command(lambda: seen.append(provenance.provenance()["command"]),
                                 "hffm train", ["--seed", "1"]) == 0
    assert seen == [["hffm", "train", "--seed", "1"]]
    assert arguments.command_line() is None  # restored after the command
    import sys  # outside a command: the script's file name and its arguments
    assert provenance.provenance()["command"] == [Path(sys.argv[0]).name, *sys.argv[1:]]
