"""Checks of ``launch``'s counting options, made before anything starts.

Shared by ``miml-tune launch`` and by ``miml-tune submit``, which makes them on this machine
before the command reaches the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuner.errors import MimlTuneError

# Each integer option's lowest allowed value; all are below 2**31 (Ray and Optuna seeds are int32).
COUNT_FLOORS = {
    "trials": 1,
    "max_epochs": 1,
    "cv_folds": 2,
    "cv_repeats": 1,
    "concurrency": 1,
    "seed": 0,
}


def check_counts(options: Mapping[str, Any]) -> None:
    """Raises :class:`MimlTuneError` naming the flag when a count given is out of its range.

    Args:
        options: ``launch``'s options by parameter name (``max_epochs``); a missing or None
            value is not checked (the space's own value is used).
    """
    for key, low in COUNT_FLOORS.items():
        value = options.get(key)
        if value is not None and not low <= value < 2**31:
            flag = "--" + key.replace("_", "-")
            raise MimlTuneError(f"{flag} must be an integer in [{low}, 2**31), got {value}")
