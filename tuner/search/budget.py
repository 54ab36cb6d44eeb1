"""The search's time budget: a Tune stopper that ends the search once its wall time is spent."""

from __future__ import annotations

import time
from typing import Any

from ray.tune.stopper import Stopper


class TimeBudget(Stopper):
    """Stops every trial once ``seconds`` of wall time have passed since the driver started the
    search (or resumed it: a resumed search gets the budget afresh). Trials still training then
    end as ``stopped``; the best is chosen among the trials that finished under the full
    protocol, as in a search that ran all its trials."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.started = time.monotonic()
        self.spent = False

    def __getstate__(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["seconds"])  # type: ignore[misc]

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        if not self.spent and time.monotonic() - self.started >= self.seconds:
            self.spent = True
        return self.spent
