"""Shared output of the benchmark scripts."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(results: Any, target: str | None) -> None:
    """Write ``results`` as JSON: to stdout when ``target`` is ``"-"``, to the file ``target``
    otherwise, nowhere when ``target`` is None (``--json [FILE]`` not given)."""
    if target is None:
        return
    if target == "-":
        json.dump(results, sys.stdout, indent=2)
        print()
        return
    with open(target, "w") as handle:
        json.dump(results, handle, indent=2)
