"""Argument checks the models share: messages name the argument, the rule and the value."""

from __future__ import annotations

import math
import numbers


def check_positive_int(name: str, value: object) -> None:
    """Raises ``ValueError`` unless ``value`` is an integer >= 1 (``bool`` is not an integer)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}")


def check_positive_ints(**values: object) -> None:
    """:func:`check_positive_int` on each keyword, in order."""
    for name, value in values.items():
        check_positive_int(name, value)


def is_real(value: object) -> bool:
    """True for a finite real number that is not a ``bool``."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
