"""Errors written for the user: what was wrong, the value, the allowed range, what to do.

The CLI prints these as one line (no traceback); library users can catch them by type.
"""


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class InputError(WorkbenchError, ValueError):
    """Bad input: a value outside its allowed range, an empty text, a malformed file or spec."""


class ModelNotAvailable(WorkbenchError, LookupError):
    """The model is unknown, not fetched yet, or its files fail their checksum."""


class InterventionError(WorkbenchError, RuntimeError):
    """An intervention produced NaN/inf, or cannot apply to this model."""


def check_range(what: str, value: int, low: int, high: int) -> int:
    """Raise InputError unless low <= value <= high (inclusive), naming the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{what} = {value} is out of range: allowed {low}..{high}")
    return value
