"""fANOVA parameter importances of a search's completed trials.

The trials come from the search's own Optuna study, stored in its folder, when this machine can
read it; otherwise from a study rebuilt from the MLflow trial runs over the search's domains
(the spec's Optuna distributions). Either way the trials are the same: those MLflow records as
completed under the full protocol, with a finite metric, inside the domains. The stored study
alone cannot tell them apart, as Ray's ``OptunaSearch`` records a trial the scheduler stopped
early as complete, with its value at the rung where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution

from tuner.errors import first_line
from tuner.report.records import SearchRecord, TrialRecord
from tuner.spec import in_domain


@dataclass(frozen=True)
class Importances:
    """A search's importances and the trials they were computed on.

    Attributes:
        values: fANOVA importance of each varying parameter, or the reason there are none.
        source: where the trials came from, a sentence for the report.
        stored: whether they came from the search's stored Optuna study.
    """

    values: dict[str, float] | str
    source: str
    stored: bool


def search_importances(record: SearchRecord) -> Importances:
    """The importances of ``record``'s completed trials, from its stored Optuna study when it
    holds every one of them (at least 2), else from a study rebuilt from its MLflow runs."""
    study, why = stored_importance_study(record)
    if study is not None:
        n = len(study.trials)
        varying = [k for k in study.trials[0].params if _varies(t.params[k] for t in study.trials)]
        return Importances(
            _fanova(study, varying),
            f"importances from the search's stored Optuna study ({n} complete trials)",
            stored=True,
        )
    n = len(completed_trials(record.trials, record.domains, record.metric))
    return Importances(
        param_importances(record.trials, record.domains, record.metric, record.mode),
        f"importances rebuilt from MLflow runs ({n} completed trial{'s' * (n != 1)}): {why}",
        stored=False,
    )


def stored_importance_study(record: SearchRecord) -> tuple[Any | None, str]:
    """A study of the trials of the search's stored Optuna study that MLflow records as the
    completed ones (same parameters, same value), or ``None`` and why it cannot be used."""
    import optuna

    where = record.storage
    if not where:
        return None, "the parent run does not name the search's folder"
    from tuner.search.algorithms import load_study_of
    from tuner.search.storage import is_remote_uri, search_folder

    if is_remote_uri(where):
        return None, f"the search's folder {where} is not on this machine"
    root, _, name = where.rstrip("/").rpartition("/")
    try:
        folder = search_folder(root, name)
        if not Path(folder.path).is_dir():
            return None, f"the search's folder {folder.path} is not on this machine"
        stored = load_study_of(folder)
    except Exception as exc:  # an unreadable or corrupt journal
        return None, f"the stored Optuna study in {where} could not be read: {first_line(exc)}"
    if stored is None:
        return None, f"{folder.path} holds no stored Optuna study"
    pool = stored.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    chosen = []
    for trial, value in completed_trials(record.trials, record.domains, record.metric):
        match = next((t for t in pool if _same(t, trial, value)), None)
        if match is None:
            return None, f"the stored study does not hold trial {trial.trial_id} as MLflow does"
        pool.remove(match)
        chosen.append(match)
    if len(chosen) < 2:
        return None, f"the stored study holds {len(chosen)} of them; importances need at least 2"
    study = _new_study(stored.direction)
    study.add_trials(chosen)
    return study, ""


def completed_trials(
    trials: Sequence[TrialRecord], domains: dict[str, BaseDistribution], metric: str
) -> list[tuple[TrialRecord, float]]:
    """The trials importances are computed on, with their metric: completed under the full
    protocol, with a finite metric, every searched parameter inside its domain."""
    out = []
    for trial in trials:
        value = trial.value(metric)
        if trial.status != "completed" or not math.isfinite(value):
            continue
        params = {k: trial.params[k] for k in domains if k in trial.params}
        if len(params) == len(domains) and all(in_domain(v, domains[k]) for k, v in params.items()):
            out.append((trial, value))
    return out


def importance_study(
    trials: Sequence[TrialRecord], domains: dict[str, BaseDistribution], metric: str, mode: str
) -> tuple[Any, list[str]]:
    """An Optuna study of the completed trials with a finite metric, and the parameters that
    vary among them. Trials whose values lie outside the domains are left out."""
    import optuna

    distributions = dict(domains)
    study = _new_study("maximize" if mode == "max" else "minimize")
    used: list[dict[str, Any]] = []
    for trial, value in completed_trials(trials, domains, metric):
        params = {k: trial.params[k] for k in distributions}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=value)
        )
        used.append(params)
    varying = [k for k in distributions if _varies(p[k] for p in used)]
    return study, varying


def param_importances(
    trials: Sequence[TrialRecord], domains: dict[str, BaseDistribution], metric: str, mode: str
) -> dict[str, float] | str:
    """fANOVA importances of the varying parameters, or the reason there are none."""
    study, varying = importance_study(trials, domains, metric, mode)
    return _fanova(study, varying)


def _fanova(study: Any, varying: list[str]) -> dict[str, float] | str:
    import optuna

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


def _new_study(direction: Any) -> Any:
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        return optuna.create_study(direction=direction)
    finally:
        optuna.logging.set_verbosity(before)


def _varies(values: Any) -> bool:
    return len({repr(v) for v in values}) > 1


def _same(stored: Any, trial: TrialRecord, value: float) -> bool:
    """Whether a stored Optuna trial is the MLflow trial: its parameters (MLflow logs them as
    text, read back by their domains) and its value (the last result Tune reported)."""
    return (
        stored.value is not None
        and _equal(stored.value, value)
        and all(k in trial.params and _equal(v, trial.params[k]) for k, v in stored.params.items())
    )


def _equal(a: Any, b: Any) -> bool:
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    if numbers:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)
