"""The one test of what counts as an integer or a real number in arguments the package checks:
numpy's scalars count, booleans do not (``True`` is an ``int`` to Python, not a count or an
id to anyone passing it); and how a value given is shown in an error (:func:`shown`)."""

from __future__ import annotations

import math
import numbers
import reprlib
from typing import Any, TypeGuard

__all__ = ["is_integer", "is_real", "is_finite_real", "shown"]

_SHOWN = reprlib.Repr()  # (keyword arguments only from Python 3.12)
_SHOWN.maxlevel = 2
for _name in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset",
              "maxdeque"):
    setattr(_SHOWN, _name, 6)
_SHOWN.maxstring = _SHOWN.maxlong = _SHOWN.maxother = 200


def is_integer(value: Any) -> TypeGuard[int]:
    """An integer: Python's or numpy's, not a boolean (numpy's ``bool_`` is no integer).
    (To a type checker an ``int``: numpy's behave as one wherever the package reads them.)"""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> TypeGuard[float]:
    """A real number: an integer or a float, Python's or numpy's, not a boolean (NaN and
    infinities included: say ``math.isfinite`` where they are not allowed)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_real(value: Any) -> TypeGuard[float]:
    """A real number (:func:`is_real`) that is finite: not NaN, not infinite, and not an
    integer too large to be a float (``math.isfinite`` raises on one; a JSON file can hold
    it)."""
    try:
        return is_real(value) and math.isfinite(value)
    except OverflowError:
        return False


def shown(value: Any) -> str:
    """``repr(value)`` for an error message, bounded: containers nested deeper than 2 levels or
    longer than 6 items, and strings over 200 characters, are cut with ``...`` (a few
    hundred bytes of YAML aliases expand to millions of items; their repr took gigabytes)."""
    return _SHOWN.repr(value)
