"""fANOVA parameter importances on an Optuna study rebuilt from a search's completed trials,
over the search's own domains (the spec's Optuna distributions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution

from tuner.report.records import TrialRecord
from tuner.spec import in_domain


def importance_study(
    trials: Sequence[TrialRecord], domains: dict[str, BaseDistribution], metric: str, mode: str
) -> tuple[Any, list[str]]:
    """An Optuna study of the completed trials with a finite metric, and the parameters that
    vary among them. Trials whose values lie outside the domains are left out."""
    import optuna

    distributions = dict(domains)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
    finally:
        optuna.logging.set_verbosity(before)
    used: list[dict[str, Any]] = []
    for trial in trials:
        value = trial.value(metric)
        if trial.status != "completed" or not math.isfinite(value):
            continue
        params = {k: trial.params[k] for k in distributions if k in trial.params}
        if len(params) != len(distributions) or not all(
            in_domain(v, domains[k]) for k, v in params.items()
        ):
            continue
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        )
        used.append(params)
    varying = [k for k in distributions if len({repr(p[k]) for p in used}) > 1]
    return study, varying


def param_importances(
    trials: Sequence[TrialRecord], domains: dict[str, BaseDistribution], metric: str, mode: str
) -> dict[str, float] | str:
    """fANOVA importances of the varying parameters, or the reason there are none."""
    import optuna

    study, varying = importance_study(trials, domains, metric, mode)
    n = len(study.trials)
    if n < 2:
        return f"{n} completed trial{'s' * (n != 1)}: importances need at least 2"
    if not varying:
        return f"no parameter varies across the {n} completed trials"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varying)
    except Exception as exc:  # fANOVA on a degenerate study (e.g. every value equal)
        return f"importances could not be computed: {exc}"
    values = {k: float(v) for k, v in found.items()}
    if not all(math.isfinite(v) for v in values.values()):
        return f"the metric does not vary across the {n} completed trials"
    return values
