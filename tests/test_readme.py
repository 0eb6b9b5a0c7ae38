"""The README's Python blocks run as written (in cost fidelity, where they name none: the
default, real training, would pre-train the `small` model first), so that a renamed argument,
method or wrapper cannot leave the quick tour showing code that fails; and every file the
README and docs/ link to or show exists."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import pytest

import hffm_env
from hffm_env.testing import integration

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OPTIONAL = ("torchrl", "pettingzoo")  # the integrations extra (CI installs it)


def python_blocks() -> list[str]:
    """Every ```python block of the README, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"),
                      flags=re.S | re.M)


def test_the_readme_python_blocks_run(monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 3, "the README's quick tour lost its Python blocks"
    made: list = []  # every env the blocks make, closed at the end
    make, parallel_env = gym.make, hffm_env.parallel_env

    def make_in_cost_fidelity(*args, **kwargs):
        kwargs.setdefault("fidelity", "cost")
        made.append(make(*args, **kwargs))
        return made[-1]

    def recorded_parallel_env(*args, **kwargs):
        made.append(parallel_env(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(gym, "make", make_in_cost_fidelity)
    monkeypatch.setattr(hffm_env, "parallel_env", recorded_parallel_env)
    try:
        for k, block in enumerate(blocks):
            for name in (m for m in OPTIONAL if m in block):
                integration(name)  # without the extra: skip here (the blocks before it ran)
            try:  # each in a namespace of its own: a reader copies one block, not all before
                exec(compile(block, f"README.md python block {k + 1}", "exec"), {})
            except Exception as err:
                pytest.fail(f"README python block {k + 1} fails: {type(err).__name__}: {err}")
    finally:
        for env in made:
            env.close()


def test_every_link_and_image_of_the_docs_exists():
    """A moved results file or section must not leave the README (or docs/RESULTS.md, which
    holds the full record) pointing at nothing: relative links and images resolve, and an
    in-page anchor names a heading of its file."""
    documents = [README, *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for doc in documents:
        text = doc.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(#[^)\s]*)?\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            linked = (doc.parent / target).resolve() if target else doc
            if not linked.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
            elif anchor and linked.suffix == ".md" and anchor[1:] not in _anchors(linked):
                broken.append(f"{doc.relative_to(ROOT)}: {target}{anchor}")
    assert not broken, f"links to nothing: {broken}"


def _anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings (outside code blocks)."""
    anchors, in_code = set(), False
    for line in markdown.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (heading := re.match(r"#{1,6} (.*)", line)):
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(slug.replace(" ", "-"))
    return anchors
