"""Strict JSON for every file and stream the package writes.

Python's ``json`` writes NaN and infinity as the bare words ``NaN`` and ``Infinity``, which are
not JSON: ``jq``, JavaScript and most other readers refuse the whole file. Every writer here
goes through :func:`dumps` (or :func:`dump`), which writes a float that is not finite (an
unmeasured score, a target never reached) as ``null`` and refuses anything else that is not
JSON. :func:`nulls_to_nan` reads such nulls back as NaN where a reader wants floats.

    from hffm_env import jsonio
    Path("out.json").write_text(jsonio.dumps({"energy_j": float("nan")}))   # {"energy_j": null}
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import IO, Any

import numpy as np

__all__ = ["digest", "dump", "dumps", "json_safe", "nulls_to_nan"]


def json_safe(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by ``None`` (written ``null``),
    numpy scalars and arrays turned into Python numbers and lists, and tuples into lists;
    dicts and lists are copied, other leaves returned as they are."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def nulls_to_nan(value: Any) -> Any:
    """The inverse for numbers: ``value`` with every ``None`` in its dicts and lists read back
    as NaN."""
    if isinstance(value, dict):
        return {key: nulls_to_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [nulls_to_nan(item) for item in value]
    return float("nan") if value is None else value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`json_safe` ``(value)``, indented by 2 unless ``indent`` is
    given; raises ``ValueError`` rather than write anything that is not JSON."""
    kwargs.setdefault("indent", 2)
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def dump(value: Any, handle: IO[str], **kwargs: Any) -> None:
    """Write :func:`dumps` ``(value)`` to the text stream ``handle``."""
    handle.write(dumps(value, **kwargs))


def digest(value: Any, *, length: int,
           default: Callable[[Any], Any] | None = str) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``value`` as JSON with sorted keys:
    the one way cache keys and fingerprints are made, so equal values give equal digests in
    every process. ``default`` turns what JSON cannot hold into what it can (``str`` unless
    given; ``None`` refuses it with ``TypeError``)."""
    text = json.dumps(value, sort_keys=True, default=default)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
