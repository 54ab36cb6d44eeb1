"""The racing rule: stop a trial's evaluation once the folds show it is clearly worse than the
incumbent (the best trial that finished under the full protocol).

Every trial reports, with every epoch, its objective's value on each validation fold
(``fold_values``). Trials share folds (same repeat indices, same seeds), so a trial's values at
an epoch pair with the incumbent's values at that epoch on the same folds. A one-sided Wilcoxon
signed-rank test over those pairs (:func:`tuner.stats.paired_wilcoxon`) that says the trial
*loses to* the incumbent at the racing level stops it, as ASHA stops a trial at a rung; its run
ends ``pruned``. This is Optuna's ``WilcoxonPruner`` with folds for its evaluation steps: Ray's
``OptunaSearch`` forces a no-op pruner on its study, so the rule runs here, in the driver, as a
Tune stopper.

The exact test cannot reach a small level on few folds (with 3 folds the smallest one-sided
p-value is 1/8), so under the repeats fidelity a trial is raced only once it holds repeats
enough, and never before ASHA's grace period.
"""

from __future__ import annotations

import math
from typing import Any

from tuner.spec import SearchSpec
from tuner.trial import FOLD_VALUES


class Racing:
    """Races every trial against the incumbent, epoch by epoch, on the folds they share.

    Args:
        metric: the search's objective.
        mode: ``max`` or ``min``.
        alpha: the level of the one-sided test that stops a trial.
        min_epoch: trials are not raced before this epoch (ASHA's grace period).
    """

    def __init__(self, metric: str, mode: str, alpha: float, min_epoch: int = 1) -> None:
        self.metric = metric
        self.mode = mode
        self.alpha = alpha
        self.min_epoch = min_epoch
        self.curves: dict[str, dict[int, list[float]]] = {}  # running trials' fold values
        self.incumbent: dict[int, list[float]] = {}
        self.incumbent_id: str | None = None
        self.incumbent_value = math.nan
        self.stopped: dict[str, dict[str, Any]] = {}  # trial id -> the test that stopped it

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        epoch = self._record(trial_id, result)
        if epoch is None or not self.incumbent or epoch < self.min_epoch:
            return False
        curve = self.curves[trial_id]
        theirs = self.incumbent.get(epoch) or self.incumbent[max(self.incumbent)]
        shared = min(len(theirs), len(curve[epoch]))
        if shared < 2:
            return False
        from tuner.stats import paired_wilcoxon

        test = paired_wilcoxon(
            curve[epoch][:shared], theirs[:shared], mode=self.mode, alpha=self.alpha
        )
        if test["verdict"] != "loses to":
            return False
        self.stopped[trial_id] = {
            "epoch": epoch,
            "p_value": test["p_value"],
            "folds": test["folds"],
            "incumbent": self.incumbent_id,
        }
        self.curves.pop(trial_id, None)
        return True

    def replay(self, trial_id: str, rows: list[dict[str, Any]]) -> None:
        """Takes in what a trial that finished before a resume reported, epoch by epoch, so that
        the incumbent survives the resume; nothing is stopped."""
        for row in rows:
            self._record(trial_id, row)
        self.curves.pop(trial_id, None)

    def _record(self, trial_id: str, result: dict[str, Any]) -> int | None:
        """Keeps a result's fold values in the trial's curve; a trial that finished under the
        full protocol may become the incumbent. Returns the epoch to race the trial at, or
        ``None`` (no fold values, or the trial finished)."""
        values = result.get(FOLD_VALUES)
        epoch = int(result.get("epoch", 0) or 0)
        if not values or epoch < 1:
            return None
        self.curves.setdefault(trial_id, {})[epoch] = [float(v) for v in values]
        last = epoch >= int(result.get("target_epochs", epoch))
        if last and float(result.get("full_protocol", 1.0)) >= 1.0:
            self._finished(trial_id, float(result.get(self.metric, math.nan)))
            return None
        return epoch

    def _finished(self, trial_id: str, value: float) -> None:
        curve = self.curves.pop(trial_id, {})
        if math.isnan(value):
            return
        better = (
            value > self.incumbent_value if self.mode == "max" else value < self.incumbent_value
        )
        if self.incumbent_id is None or better:
            self.incumbent, self.incumbent_id, self.incumbent_value = curve, trial_id, value

    def describe(self) -> dict[str, Any]:
        """For the summary: the rule, its level and the trials it stopped."""
        return {
            "rule": "wilcoxon",
            "alpha": self.alpha,
            "min_epoch": self.min_epoch,
            "stopped": len(self.stopped),
        }


def racing_for(spec: SearchSpec) -> Racing | None:
    """The search's racing rule, or ``None`` (``scheduler.racing: none``)."""
    if spec.racing == "none":
        return None
    return Racing(spec.metric, spec.mode, spec.racing_alpha, min_epoch=spec.grace_period)
