"""Shared output of the benchmark scripts."""

from __future__ import annotations

import sys
from typing import Any

from hffm_env import jsonio


def emit_json(results: Any, target: str | None) -> None:
    """Write ``results`` as strict JSON (:mod:`hffm_env.jsonio`: NaN and infinity as null):
    to stdout when ``target`` is ``"-"``, to the file ``target`` otherwise, nowhere when
    ``target`` is None (``--json [FILE]`` not given)."""
    if target is None:
        return
    if target == "-":
        jsonio.dump(results, sys.stdout)
        print()
        return
    with open(target, "w") as handle:
        jsonio.dump(results, handle)
