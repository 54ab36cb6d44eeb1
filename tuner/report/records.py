"""A finished search read back from MLflow: its summary, effective space, searched domains and
trial runs, and each trial's learning curve."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from tuner import tracking
from tuner.errors import MimlTuneError
from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, mode_of

STORAGE_TAG = "miml_tune.storage"  # the parent run's tag naming the search's folder (its URI)


@dataclass
class TrialRecord:
    """One trial as its MLflow child run recorded it."""

    run_id: str
    trial_id: str
    status: str
    start_time: int
    epochs: int
    params: dict[str, Any]
    metrics: dict[str, float]
    order: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)

    def value(self, metric: str) -> float:
        return float(self.metrics.get(metric, math.nan))

    def std(self, metric: str) -> float:
        return float(self.metrics.get(f"{metric}_std", math.nan))


@dataclass
class SearchRecord:
    """A finished search as read back from MLflow."""

    summary: dict[str, Any]
    space: dict[str, Any]
    domains: dict[str, BaseDistribution]
    trials: list[TrialRecord]
    parent_run_id: str
    uri: str
    storage: str | None = None  # the search's folder, where its Optuna study is stored

    @property
    def metric(self) -> str:
        return str(self.summary["metric"])

    @property
    def mode(self) -> str:
        return str(self.summary.get("mode") or mode_of(self.metric))

    def ranked(self) -> list[TrialRecord]:
        """Best first, by the leaderboard's rule (completed, then pruned, then failed; ties:
        lower fold std, then the earlier trial)."""
        from tuner.search import rank

        rows = [
            {
                "trial": t,
                "order": t.order,
                "status": t.status if t.status in ("completed", "pruned") else "error",
                "metrics": t.metrics,
            }
            for t in self.trials
        ]
        return [row["trial"] for row in rank(rows, self.metric)]


def read_search(name: str, uri: str) -> SearchRecord:
    """The latest finished search ``name``: its summary, effective space and trial runs."""
    summary = tracking.read_summary(name, uri)
    parent_id = str(summary["mlflow"]["parent_run_id"])
    mlflow = tracking.client(uri)
    parent = mlflow.get_run(parent_id)
    experiment_id = str(parent.info.experiment_id)
    storage = parent.data.tags.get(STORAGE_TAG)
    with tempfile.TemporaryDirectory(prefix="miml-tune-report-") as tmp:
        try:
            path = mlflow.download_artifacts(parent_id, "space_effective.json", tmp)
            space = dict(json.loads(Path(path).read_text()))
        except Exception:  # a search logged before the effective space was: infer the domains
            space = {}
    runs = _trial_runs(mlflow, experiment_id, parent_id)
    domains = space_domains(space) if space else {}
    if not domains:
        domains = _observed_domains([r.data.params for r in runs])
    trials = []
    for run in runs:
        tags = run.data.tags
        trials.append(
            TrialRecord(
                run_id=str(run.info.run_id),
                trial_id=str(tags.get(tracking.TRIAL_TAG, run.info.run_name or run.info.run_id)),
                status=str(tags.get(tracking.STATUS_TAG, "unknown")),
                start_time=int(run.info.start_time or 0),
                epochs=_int(tags.get("miml_tune.epochs"), 0),
                params={k: typed_param(v, domains.get(k)) for k, v in run.data.params.items()},
                metrics={k: float(v) for k, v in run.data.metrics.items()},
            )
        )
    trials.sort(key=lambda t: (t.start_time, t.trial_id))
    for i, trial in enumerate(trials):
        trial.order = i
    return SearchRecord(summary, space, domains, trials, parent_id, uri, storage)


def _trial_runs(mlflow: Any, experiment_id: str, parent_id: str) -> list[Any]:
    query = f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{tracking.ROLE_TAG}` = 'trial'"
    runs: list[Any] = []
    token = None
    while True:
        page = mlflow.search_runs(
            [experiment_id], filter_string=query, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return runs


def fetch_curves(record: SearchRecord, trials: Sequence[TrialRecord]) -> None:
    """Reads each trial's fold-mean metric by epoch (``TrialRecord.curve``) from MLflow: the
    last attempt's, for a trial that was retried or restarted by a resume (its run holds one
    curve per attempt, each starting again at epoch 1)."""
    mlflow = tracking.client(record.uri)
    for trial in trials:
        if not trial.curve:
            history = mlflow.get_metric_history(trial.run_id, record.metric)
            points = [(int(m.step), float(m.value)) for m in sorted(history, key=_logged_order)]
            trial.curve = last_attempt(points)


def _logged_order(metric: Any) -> tuple[int, int]:
    return (int(metric.timestamp), int(metric.step))


def last_attempt(points: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """The ``(epoch, value)`` points after the last restart (an epoch not above the one
    before), in logged order; an epoch logged twice in a row keeps its last value."""
    start = 0
    for i in range(1, len(points)):
        if points[i][0] < points[i - 1][0]:
            start = i
    by_step = dict(points[start:])
    return sorted(by_step.items())


def space_domains(space: dict[str, Any]) -> dict[str, BaseDistribution]:
    """The searched domains of an effective space (``space_effective.json``), epochs capped as
    the search capped them."""
    import yaml

    from tuner.spec import parse_space

    try:
        spec = parse_space(yaml.safe_dump(space), source="space_effective.json")
    except MimlTuneError:
        return {}
    return spec.searched()[0]


def _observed_domains(params: Sequence[dict[str, str]]) -> dict[str, BaseDistribution]:
    """Choices of the values seen, for each parameter that varies (when the space is lost)."""
    seen: dict[str, set[str]] = {}
    for row in params:
        for key, value in row.items():
            seen.setdefault(key, set()).add(value)
    out: dict[str, BaseDistribution] = {}
    for key, values in seen.items():
        if len(values) > 1:
            parsed = [_literal(v) for v in values]
            try:
                ordered = sorted(parsed)
            except TypeError:
                ordered = sorted(parsed, key=str)
            out[key] = CategoricalDistribution(tuple(ordered))
    return out


def _literal(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def typed_param(text: str, domain: BaseDistribution | None) -> Any:
    """An MLflow param (a string) as the value the trial had, by its domain."""
    if domain is None:
        return _literal(text)
    if isinstance(domain, CategoricalDistribution):
        return next((v for v in domain.choices if str(v) == text), _literal(text))
    try:
        return int(text) if isinstance(domain, IntDistribution) else float(text)
    except ValueError:
        return text


def _int(text: Any, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def peer_metrics(summary: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    peers = summary.get("peers")
    if peers is None:
        peer = summary.get("peer") or {}
        peers = {peer["model"]: {"metrics": peer["metrics"]}} if peer.get("model") else {}
    return {str(m): dict(p.get("metrics") or {}) for m, p in peers.items()}


def comparison_rows(record: SearchRecord) -> list[tuple[str, dict[str, float], dict[str, Any]]]:
    """(metric, best's mean/std, {peer: mean/std}) for every metric the best trial has."""
    best = record.summary["best"]["metrics"]
    peers = peer_metrics(record.summary)
    return [
        (name, best[name], {m: p.get(name) for m, p in peers.items()})
        for name in (*ALL_METRICS, *INSTANCE_METRICS)
        if name in best
    ]
