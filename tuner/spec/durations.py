"""Durations as people write them: ``90``, ``90s``, ``30m``, ``1.5h``, ``2d``."""

from __future__ import annotations

import math
import re

from tuner.errors import MimlTuneError, short

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.ASCII)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float | int, *, what: str = "--time-budget") -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``1.5h`` or ``2d``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(text) if isinstance(text, str) and len(text) < 100 else None
        if match is None:
            raise MimlTuneError(
                f"{what} {short(text, 40)} is not a duration; write seconds or a number with s, "
                "m, h or d (for example 90, 30m, 1.5h)"
            )
        seconds = float(match.group(1)) * _UNIT[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise MimlTuneError(f"{what} must be a positive duration, got {short(text)}")
    return seconds
