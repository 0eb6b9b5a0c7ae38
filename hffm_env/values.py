"""The one test of what counts as an integer or a real number in arguments the package checks:
numpy's scalars count, booleans do not (``True`` is an ``int`` to Python, not a count or an
id to anyone passing it)."""

from __future__ import annotations

import numbers
from typing import Any, TypeGuard

__all__ = ["is_integer", "is_real"]


def is_integer(value: Any) -> TypeGuard[int]:
    """An integer: Python's or numpy's, not a boolean (numpy's ``bool_`` is no integer).
    (To a type checker an ``int``: numpy's behave as one wherever the package reads them.)"""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> TypeGuard[float]:
    """A real number: an integer or a float, Python's or numpy's, not a boolean (NaN and
    infinities included: say ``math.isfinite`` where they are not allowed)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
