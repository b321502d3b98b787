"""Checks of values a user gives (configuration, plan arguments, command line).

Each check returns the value in its plain form (``float``, ``int``, ``str``) or raises
one line naming ``name`` and the reason: ``TypeError`` for the wrong kind of value,
``ValueError`` for a value out of its bounds. Booleans are never numbers (``True`` is
not 1 s). Bounds are inclusive (``minimum``, ``maximum``) or exclusive (``above``);
``unit`` only words the message.

Kernel module: imports nothing from ncsynth.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["real", "integer", "choice", "text", "is_finite_number"]


def _is_number(value) -> bool:
    # numpy's bool is no numbers.Real; Python's bool is an int
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_number(value) -> bool:
    """Whether ``value`` is a finite real number (not None, NaN, inf, a bool or text)."""
    return _is_number(value) and math.isfinite(value)


def _number(x) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _bounds(minimum, maximum, above, unit: str) -> str:
    parts = [f"> {_number(above)}" if above is not None else None,
             f">= {_number(minimum)}" if minimum is not None else None,
             f"<= {_number(maximum)}" if maximum is not None else None]
    text = " and ".join(p for p in parts if p)
    return (text + (f" {unit}" if unit else "")) if text else ""


def real(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
         above: float | None = None, unit: str = "") -> float:
    """A finite real number within the bounds, as a float."""
    bounds = _bounds(minimum, maximum, above, unit)
    wanted = "a finite number" + (f" {bounds}" if bounds else (f" of {unit}" if unit else ""))
    if not _is_number(value):
        raise TypeError(f"{name} must be {wanted}, got {value!r}")
    x = float(value)
    if not (math.isfinite(x) and (above is None or x > above)
            and (minimum is None or x >= minimum) and (maximum is None or x <= maximum)):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return x


def integer(name: str, value, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """An integer (not a float, not a bool) within the inclusive bounds, as an int."""
    bounds = _bounds(minimum, maximum, None, "")
    wanted = "an integer" + (f" {bounds}" if bounds else "")
    if not (isinstance(value, numbers.Integral) and _is_number(value)):
        raise TypeError(f"{name} must be {wanted}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def choice(name: str, value, options) -> str:
    """One of ``options`` (compared exactly: "SIM" is not "sim")."""
    if value not in tuple(options) or isinstance(value, bool):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, "
                         f"got {value!r}")
    return value


def text(name: str, value, *, empty: bool = False) -> str:
    """A string; an empty (or blank) one only when ``empty``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {value!r}")
    if not empty and not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value
