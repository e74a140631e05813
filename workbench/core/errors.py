"""Errors written for the user: what was wrong, the value, the allowed range, what to do.

    >>> check_number("scale-sink: gamma", gamma, low=0.0)         # NaN, inf, "abc", True: one InputError
    >>> check_list("eps", eps, "[0.3, 0.5]")                     # a scalar where a list belongs: one InputError

The CLI prints these as one line (no traceback); library users can catch them by type.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class InputError(WorkbenchError, ValueError):
    """Bad input: a value outside its allowed range, an empty text, a malformed file or spec."""


class ModelNotAvailable(WorkbenchError, LookupError):
    """The model is unknown, not fetched yet, or its files fail their checksum."""


class InterventionError(WorkbenchError, RuntimeError):
    """An intervention produced NaN/inf, or cannot apply to this model."""


def is_integer(value: Any) -> bool:
    """An int (numpy integers included), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and \
        type(value).__name__ not in ("bool_", "bool")


def check_range(what: str, value: int, low: int, high: int) -> int:
    """Raise InputError unless low <= value <= high (inclusive), naming the allowed range."""
    if not is_integer(value):
        raise InputError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{what} = {value} is out of range: allowed {low}..{high}")
    return int(value)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    return f"{left}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{right}"


def check_number(what: str, value: Any, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in the interval; NaN, inf, bools and non-numbers are one InputError naming the
    value and the allowed interval (NaN compares False with everything, so `x < 0` checks let it through)."""
    allowed = _interval(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what} must be a number in {allowed}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{what} = {number} is not a finite number: allowed {allowed}")
    if (low is not None and (number < low or (low_open and number == low))) or \
            (high is not None and (number > high or (high_open and number == high))):
        raise InputError(f"{what} = {number:g} is out of range: allowed {allowed}")
    return number


def check_list(what: str, value: Any, example: str) -> list:
    """A list (or tuple, set, array) of items; a string or a scalar where a list belongs is one InputError
    (iterating a string would take each character for an item)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or isinstance(value, dict):
        raise InputError(f"{what}: expected a list, got {value!r}; write e.g. {example}")
    return list(value)
