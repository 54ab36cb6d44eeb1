"""The report of a finished search: PNG figures, one self-contained HTML page, a terminal table.

Everything is read back from MLflow (the search's parent run and its trial child runs), so a
report can be made on any machine that reaches the tracking store, long after the search:

- ``leaderboard.png``: the top trials' fold-mean metric with fold-std error bars, peers as lines;
- ``history.png``: each trial's final metric in trial order and the best so far;
- ``importances.png``: Optuna's fANOVA importances on a study rebuilt from the completed trials;
- ``parallel.png``: parallel coordinates of the top trials, each parameter scaled to [0, 1];
- ``curves.png``: fold-mean metric by epoch of the top trials and of every pruned trial;
- ``peers.png``: the best trial beside each peer model on every metric (CV mean ± std).

``index.html`` shows them with the leaderboard, the peer comparison and the search's settings;
``report.json`` holds the numbers behind them. The same files go to the parent run's artifacts
under ``report/``.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import tracking
from tuner.errors import MimlTuneError, first_line
from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, mode_of
from tuner.spec import Domain

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_ARTIFACT_DIR = "report"
REPORT_KIND = "miml-tune report"
DATA_FILE = "report.json"
FIGURES = {
    "leaderboard": "leaderboard.png",
    "history": "history.png",
    "importances": "importances.png",
    "parallel": "parallel.png",
    "curves": "curves.png",
    "peers": "peers.png",
}
_DPI = 110
_TOP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_PRUNED = "#8a8a8a"
_NAMED_PRUNED = 4
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_PEER_STYLES = ("--", ":", "-.")
_PEER_COLOURS = ("#b22222", "#6a3d9a", "#006d2c", "#b15928")


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
    domains: dict[str, Domain]
    trials: list[TrialRecord]
    parent_run_id: str
    uri: str

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


def build_report(name: str, uri: str, out: Path | None = None, *, top: int = 5) -> dict[str, Any]:
    """Writes the report of the latest finished search ``name`` in the store ``uri``.

    Args:
        name: the search's name (its MLflow experiment).
        uri: the MLflow tracking URI.
        out: the report folder [``./miml-tune-reports/NAME``]. An existing report folder there is
            replaced; any other existing folder or file is refused.
        top: how many of the best trials the leaderboard, parallel coordinates and learning
            curves show.

    Returns:
        ``{"out": folder, "html": index.html path, "figures": [PNG paths], "table": text}``.

    Raises:
        MimlTuneError: unknown name, no finished search, ``out`` unusable, ``top`` < 1.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise MimlTuneError(f"--top must be an integer >= 1, got {top!r}")
    target = _check_out(Path(out) if out is not None else Path.cwd() / "miml-tune-reports" / name)
    with _quiet():
        record = read_search(name, uri)
        workdir = _make_workdir(target)
        try:
            figures = write_files(record, workdir, top=top)
            _log_artifacts(uri, record.parent_run_id, workdir)
            _swap_in(workdir, target)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    return {
        "out": str(target),
        "html": str(target / "index.html"),
        "figures": [str(target / f) for f in figures],
        "table": summary_table(record, top=top),
    }


def _log_artifacts(uri: str, run_id: str, folder: Path) -> None:
    try:
        tracking.client(uri).log_artifacts(run_id, str(folder), artifact_path=REPORT_ARTIFACT_DIR)
    except Exception as exc:  # the artifact store refused (permissions, a server's proxy)
        first = first_line(exc)
        raise MimlTuneError(
            f"cannot log the report to the search's parent run {run_id} in {uri}: {first}"
        ) from None


# --- reading the search back ----------------------------------------------------------------


def read_search(name: str, uri: str) -> SearchRecord:
    """The latest finished search ``name``: its summary, effective space and trial runs."""
    summary = tracking.read_summary(name, uri)
    parent_id = str(summary["mlflow"]["parent_run_id"])
    mlflow = tracking.client(uri)
    experiment_id = str(mlflow.get_run(parent_id).info.experiment_id)
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
    return SearchRecord(summary, space, domains, trials, parent_id, uri)


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


def space_domains(space: dict[str, Any]) -> dict[str, Domain]:
    """The searched domains of an effective space (``space_effective.json``), epochs capped as
    the search capped them."""
    import yaml

    from tuner.spec import parse_space

    try:
        spec = parse_space(yaml.safe_dump(space), source="space_effective.json")
    except MimlTuneError:
        return {}
    return spec.searched()[0]


def _observed_domains(params: Sequence[dict[str, str]]) -> dict[str, Domain]:
    """Choices of the values seen, for each parameter that varies (when the space is lost)."""
    seen: dict[str, set[str]] = {}
    for row in params:
        for key, value in row.items():
            seen.setdefault(key, set()).add(value)
    out = {}
    for key, values in seen.items():
        if len(values) > 1:
            parsed = [_literal(v) for v in values]
            try:
                ordered = sorted(parsed)
            except TypeError:
                ordered = sorted(parsed, key=str)
            out[key] = Domain("choice", tuple(ordered))
    return out


def _literal(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def typed_param(text: str, domain: Domain | None) -> Any:
    """An MLflow param (a string) as the value the trial had, by its domain."""
    if domain is None:
        return _literal(text)
    if domain.kind == "choice":
        return next((v for v in domain.values if str(v) == text), _literal(text))
    try:
        return int(text) if domain.kind == "int" else float(text)
    except ValueError:
        return text


def _int(text: Any, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


# --- the pure parts: best so far, importances, curves, parallel coordinates --------------------


def best_so_far(values: Sequence[float], mode: str) -> list[float]:
    """The running best of ``values`` under ``mode`` (``max``/``min``); ``nan`` values are
    skipped (they neither count nor reset), and the running best is ``nan`` until the first
    number."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    best = math.nan
    out = []
    for value in values:
        if not math.isnan(value) and (
            math.isnan(best) or (value > best if mode == "max" else value < best)
        ):
            best = value
        out.append(best)
    return out


def optuna_distribution(domain: Domain) -> Any:
    """The Optuna distribution of a space domain."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if domain.kind == "choice":
        return CategoricalDistribution(list(domain.values))
    low, high = domain.values
    if domain.kind == "int":
        return IntDistribution(int(low), int(high))
    return FloatDistribution(float(low), float(high), log=domain.kind == "loguniform")


def importance_study(
    trials: Sequence[TrialRecord], domains: dict[str, Domain], metric: str, mode: str
) -> tuple[Any, list[str]]:
    """An Optuna study of the completed trials with a finite metric, and the parameters that
    vary among them. Trials whose values lie outside the domains are left out."""
    import optuna

    distributions = {k: optuna_distribution(d) for k, d in domains.items()}
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


def in_domain(value: Any, domain: Domain) -> bool:
    """Whether ``value`` is one of a choice's values or lies in a range (ints for ``int``)."""
    if domain.kind == "choice":
        return any(type(value) is type(v) and value == v for v in domain.values)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if domain.kind == "int" and not float(value).is_integer():
        return False
    low, high = domain.values
    return bool(low <= value <= high)


def param_importances(
    trials: Sequence[TrialRecord], domains: dict[str, Domain], metric: str, mode: str
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


@dataclass(frozen=True)
class Curve:
    """A trial's fold-mean metric by epoch."""

    trial_id: str
    status: str
    rank: int
    epochs: tuple[int, ...]
    values: tuple[float, ...]


def learning_curves(ranked: Sequence[TrialRecord], top: int) -> list[Curve]:
    """The curves of the ``top`` best trials and of every pruned trial, best first."""
    out = []
    for i, trial in enumerate(ranked, 1):
        if i > top and trial.status != "pruned":
            continue
        points = [(e, v) for e, v in trial.curve if math.isfinite(v)]
        out.append(
            Curve(
                trial.trial_id,
                trial.status,
                i,
                tuple(e for e, _ in points),
                tuple(v for _, v in points),
            )
        )
    return out


def scaled(value: Any, domain: Domain) -> float:
    """A parameter value on [0, 1] of its domain: a choice by its index, a log range in log."""
    if domain.kind == "choice":
        n = len(domain.values)
        index = next((i for i, v in enumerate(domain.values) if v == value), None)
        if index is None:
            return math.nan
        return 0.5 if n == 1 else index / (n - 1)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    low, high = (float(v) for v in domain.values)
    if domain.kind == "loguniform":
        if x <= 0:
            return math.nan
        x, low, high = math.log(x), math.log(low), math.log(high)
    return min(1.0, max(0.0, (x - low) / (high - low)))


# --- figures --------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    # A bare Figure draws with Agg when saved: no pyplot, no display, no global backend change.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _arrow(metric: str) -> str:
    return "↑" if mode_of(metric) == "max" else "↓"


def _peer_metrics(summary: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    peers = summary.get("peers")
    if peers is None:
        peer = summary.get("peer") or {}
        peers = {peer["model"]: {"metrics": peer["metrics"]}} if peer.get("model") else {}
    return {str(m): dict(p.get("metrics") or {}) for m, p in peers.items()}


def _peer_values(record: SearchRecord) -> dict[str, float]:
    """Each peer's CV mean on the search's metric (peers without it are left out)."""
    out = {}
    for model, metrics in _peer_metrics(record.summary).items():
        value = (metrics.get(record.metric) or {}).get("mean")
        if value is not None and math.isfinite(value):
            out[model] = float(value)
    return out


def _peer_lines(ax: Any, record: SearchRecord, *, vertical: bool) -> None:
    for i, (model, value) in enumerate(_peer_values(record).items()):
        style = {
            "color": _PEER_COLOURS[i % len(_PEER_COLOURS)],
            "linestyle": _PEER_STYLES[i % len(_PEER_STYLES)],
            "linewidth": 1.4,
            "label": f"peer {model} ({value:.4f})",
        }
        (ax.axvline if vertical else ax.axhline)(value, **style)


def _no_data(fig: Figure, title: str, message: str) -> None:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11, color="#444")


def leaderboard_figure(record: SearchRecord, ranked: Sequence[TrialRecord]) -> Figure:
    metric = record.metric
    rows = [t for t in ranked if math.isfinite(t.value(metric))]
    fig = _figure(8, 1.6 + 0.45 * max(1, len(rows)))
    title = f"Leaderboard: {metric} {_arrow(metric)} (fold mean ± std)"
    if not rows:
        _no_data(fig, title, "no trial reported the metric")
        return fig
    ax = fig.add_subplot()
    for y, trial in enumerate(rows):
        done = trial.status == "completed"
        std = trial.std(metric)
        ax.errorbar(
            trial.value(metric),
            y,
            xerr=std if math.isfinite(std) else None,
            fmt="o",
            color=_TOP_COLOURS[0] if done else _PRUNED,
            markerfacecolor=_TOP_COLOURS[0] if done else "white",
            capsize=4,
            markersize=7,
        )
    labels = [
        f"#{ranked.index(t) + 1} {t.trial_id}"
        + ("" if t.status == "completed" else f" ({t.status}, epoch {t.epochs})")
        for t in rows
    ]
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    _peer_lines(ax, record, vertical=True)
    # Reference lines do not widen the axis by themselves: make room for the peers too.
    ends = [
        t.value(metric) + sign * (t.std(metric) if math.isfinite(t.std(metric)) else 0.0)
        for t in rows
        for sign in (-1, 1)
    ] + list(_peer_values(record).values())
    low, high = min(ends), max(ends)
    pad = 0.08 * (high - low) if high > low else 0.05 * max(abs(high), 1.0)
    ax.set_xlim(low - pad, high + pad)
    ax.set_xlabel(f"{metric} (CV fold mean; bars: fold std)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8, handles=_legend_handles(ax, record))
    return fig


def _legend_handles(ax: Any, record: SearchRecord) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color=_TOP_COLOURS[0], label="completed"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color=_PRUNED,
            markerfacecolor="white",
            label="pruned (metric at its last epoch)",
        ),
    ]
    return handles + [h for h in ax.get_lines() if _is_peer(h)]


def _is_peer(line: Any) -> bool:
    return str(line.get_label()).startswith("peer ")


def history_figure(record: SearchRecord) -> Figure:
    metric = record.metric
    fig = _figure(10, 4.2)
    ax = fig.add_subplot()
    x = [t.order + 1 for t in record.trials]
    completed = [t.value(metric) if t.status == "completed" else math.nan for t in record.trials]
    done = [(i, v) for i, v in zip(x, completed, strict=True) if math.isfinite(v)]
    other = [
        (i, t.value(metric))
        for i, t in zip(x, record.trials, strict=True)
        if t.status != "completed" and math.isfinite(t.value(metric))
    ]
    if done:
        ax.scatter(*zip(*done, strict=True), color=_TOP_COLOURS[0], zorder=3, label="completed")
    if other:
        ax.scatter(
            *zip(*other, strict=True),
            facecolors="white",
            edgecolors=_PRUNED,
            zorder=3,
            label="pruned (metric at its last epoch)",
        )
    best = best_so_far(completed, record.mode)
    ax.step(x, best, where="post", color=_TOP_COLOURS[1], linewidth=2, label="best so far")
    _peer_lines(ax, record, vertical=False)
    ax.set_xlabel("trial (in the order the search started them)")
    ax.set_ylabel(f"{metric} (CV fold mean)")
    ax.set_title(f"Optimisation history: {metric} {_arrow(metric)} ({record.mode}imised)")
    ax.set_xticks(_int_ticks(len(x)))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def _int_ticks(n: int) -> list[int]:
    step = max(1, math.ceil(n / 12))
    return list(range(1, n + 1, step))


def importance_figure(record: SearchRecord, importances: dict[str, float] | str) -> Figure:
    title = "Parameter importances (fANOVA, completed trials)"
    if isinstance(importances, str):
        fig = _figure(8, 3)
        _no_data(fig, title, f"No importances: {importances}.")
        return fig
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = _figure(8, 1.4 + 0.45 * len(items))
    ax = fig.add_subplot()
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color=_TOP_COLOURS[0])
    ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=9)
    ax.set_xlim(0, max(1.0, max(v for _, v in items) * 1.15))
    ax.set_xlabel(f"share of {record.metric}'s variance")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def parallel_figure(record: SearchRecord, ranked: Sequence[TrialRecord], top: int) -> Figure:
    import matplotlib as mpl

    metric = record.metric
    rows = [t for t in ranked[:top] if math.isfinite(t.value(metric))]
    params = list(record.domains)
    fig = _figure(max(7.0, 1.7 * (len(params) + 1) + 1.5), 4.8)
    title = f"Parallel coordinates of the top {len(rows)} trials"
    if not rows or not params:
        _no_data(fig, title, "no searched parameter" if rows else "no trial reported the metric")
        return fig
    ax = fig.add_subplot()
    values = [t.value(metric) for t in rows]
    low, high = min(values), max(values)
    norm = mpl.colors.Normalize(low, high if high > low else low + 1e-12)
    cmap = mpl.colormaps["viridis" if record.mode == "max" else "viridis_r"]
    columns = [*params, metric]
    for trial, value in zip(rows, values, strict=True):
        ys = [scaled(trial.params.get(p), record.domains[p]) for p in params]
        ys.append(0.5 if high == low else (value - low) / (high - low))
        ax.plot(
            range(len(columns)),
            ys,
            color=cmap(norm(value)),
            linewidth=2,
            alpha=0.85,
            linestyle="-" if trial.status == "completed" else "--",
            marker="o",
        )
    for i, name in enumerate(columns):
        ax.axvline(i, color="#555", linewidth=0.8)
        for y, text in _axis_labels(record.domains.get(name), low, high):
            ax.text(
                i + 0.05,
                y,
                text,
                fontsize=8,
                va="center",
                ha="left",
                color="#222",
                zorder=4,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.8, "lw": 0},
            )
    ax.set_xticks(range(len(columns)), [f"{c}\n({_kind(record.domains.get(c))})" for c in columns])
    ax.set_xlim(-0.15, len(columns) - 0.4)
    ax.set_ylim(-0.08, 1.08)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title + " (dashed: pruned)" * any(t.status != "completed" for t in rows))
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label=f"{metric} {_arrow(metric)}", pad=0.02)
    return fig


def _kind(domain: Domain | None) -> str:
    return "metric" if domain is None else ("log" if domain.kind == "loguniform" else domain.kind)


def _axis_labels(domain: Domain | None, low: float, high: float) -> list[tuple[float, str]]:
    if domain is None:  # the metric axis
        return [(0.0, f"{low:.4g}"), (1.0, f"{high:.4g}")] if high > low else [(0.5, f"{low:.4g}")]
    if domain.kind == "choice":
        n = len(domain.values)
        if n > 8:  # too many to label each: the ends only
            return [(0.0, str(domain.values[0])), (1.0, str(domain.values[-1]))]
        return [(0.5 if n == 1 else i / (n - 1), str(v)) for i, v in enumerate(domain.values)]
    return [(0.0, f"{domain.values[0]:g}"), (1.0, f"{domain.values[1]:g}")]


def curves_figure(record: SearchRecord, curves: Sequence[Curve]) -> Figure:
    metric = record.metric
    fig = _figure(10, 4.6)
    title = f"Learning curves: {metric} {_arrow(metric)} (fold mean) by epoch"
    drawn = [c for c in curves if c.epochs]
    if not drawn:
        _no_data(fig, title, "no trial logged the metric by epoch")
        return fig
    ax = fig.add_subplot()
    colour = 0
    n_pruned = sum(c.status == "pruned" for c in drawn)
    pruned_labelled = False
    for curve in drawn:
        if curve.status == "pruned":
            label = None if pruned_labelled else f"pruned trials ({n_pruned})"
            pruned_labelled = True
            ax.plot(
                curve.epochs,
                curve.values,
                color=_PRUNED,
                linestyle="--",
                marker="x",
                linewidth=1.3,
                label=label,
            )
            if n_pruned > _NAMED_PRUNED:  # names would pile up: the legend counts them
                continue
            ax.annotate(
                f"{curve.trial_id} pruned",
                (curve.epochs[-1], curve.values[-1]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color=_PRUNED,
            )
        else:
            ax.plot(
                curve.epochs,
                curve.values,
                color=_TOP_COLOURS[colour % len(_TOP_COLOURS)],
                # Distinct markers and widths keep trials with equal curves (a repeated
                # configuration) both visible.
                marker=_MARKERS[colour % len(_MARKERS)],
                markersize=5,
                linewidth=max(1.0, 2.6 - 0.4 * colour),
                alpha=0.9,
                label=f"#{curve.rank} {curve.trial_id}"
                + ("" if curve.status == "completed" else f" ({curve.status})"),
            )
            colour += 1
    _peer_lines(ax, record, vertical=False)
    last = max(e for c in drawn for e in c.epochs)
    ax.set_xticks(_int_ticks(last))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (CV fold mean)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def comparison_rows(record: SearchRecord) -> list[tuple[str, dict[str, float], dict[str, Any]]]:
    """(metric, best's mean/std, {peer: mean/std}) for every metric the best trial has."""
    best = record.summary["best"]["metrics"]
    peers = _peer_metrics(record.summary)
    return [
        (name, best[name], {m: p.get(name) for m, p in peers.items()})
        for name in (*ALL_METRICS, *INSTANCE_METRICS)
        if name in best
    ]


def peers_figure(record: SearchRecord) -> Figure:
    rows = comparison_rows(record)
    peers = list(_peer_metrics(record.summary))
    title = "Best trial vs peers (CV mean ± fold std, same folds)"
    if not rows:
        fig = _figure(8, 3)
        _no_data(fig, title, "the best trial has no metrics")
        return fig
    columns = min(4, len(rows))
    lines = math.ceil(len(rows) / columns)
    fig = _figure(3.0 * columns, 0.6 + 2.3 * lines)
    fig.suptitle(title if peers else "Best trial (no peer models in this search)")
    names = ["best", *peers]
    colours = [_TOP_COLOURS[0], *(_PEER_COLOURS[i % len(_PEER_COLOURS)] for i in range(len(peers)))]
    for i, (metric, best, by_peer) in enumerate(rows):
        ax = fig.add_subplot(lines, columns, i + 1)
        cells = [best, *(by_peer[p] or {"mean": math.nan, "std": math.nan} for p in peers)]
        means = [c["mean"] for c in cells]
        stds = [c["std"] if math.isfinite(c["std"]) else 0.0 for c in cells]
        bars = ax.bar(range(len(cells)), means, yerr=stds, color=colours, capsize=3)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2, label_type="center", color="white")
        ax.set_xticks(range(len(cells)), [_short(n) for n in names], fontsize=8)
        ax.set_title(f"{metric} {_arrow(metric)}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        top_value = max(
            (m + s for m, s in zip(means, stds, strict=True) if math.isfinite(m)), default=1.0
        )
        ax.set_ylim(0, top_value * 1.12 if top_value > 0 else 1.0)
        ax.grid(axis="y", alpha=0.3)
    return fig


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


# --- files ----------------------------------------------------------------------------------


def write_files(record: SearchRecord, folder: Path, *, top: int) -> list[str]:
    """Writes the figures, ``index.html`` and ``report.json`` into ``folder``; returns the PNG
    file names."""
    ranked = record.ranked()
    shown = [t for i, t in enumerate(ranked) if i < top or t.status == "pruned"]
    fetch_curves(record, shown)
    curves = learning_curves(ranked, top)
    importances = param_importances(record.trials, record.domains, record.metric, record.mode)
    figures = {
        "leaderboard": leaderboard_figure(record, ranked[:top]),
        "history": history_figure(record),
        "importances": importance_figure(record, importances),
        "parallel": parallel_figure(record, ranked, top),
        "curves": curves_figure(record, curves),
        "peers": peers_figure(record),
    }
    for key, fig in figures.items():
        fig.savefig(folder / FIGURES[key], dpi=_DPI)
    data = {
        "kind": REPORT_KIND,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "search": record.summary,
        "parent_run_id": record.parent_run_id,
        "leaderboard": [_trial_row(t, i) for i, t in enumerate(ranked, 1)],
        "importances": importances,
        "learning_curves": [
            {
                "trial_id": c.trial_id,
                "status": c.status,
                "rank": c.rank,
                "epochs": list(c.epochs),
                "values": list(c.values),
            }
            for c in curves
        ],
        "figures": list(FIGURES.values()),
    }
    (folder / DATA_FILE).write_text(json.dumps(_json_safe(data), indent=2))
    (folder / "index.html").write_text(render_html(record, ranked, importances, top=top))
    return list(FIGURES.values())


def _trial_row(trial: TrialRecord, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "trial_id": trial.trial_id,
        "run_id": trial.run_id,
        "status": trial.status,
        "epochs": trial.epochs,
        "params": trial.params,
        "metrics": trial.metrics,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _check_out(out: Path) -> Path:
    """The report folder, checked: creatable and writable, and either absent, empty or an
    earlier report (anything else is never replaced)."""
    out = out.expanduser().absolute()
    try:
        if out.exists() and not out.is_dir():
            raise MimlTuneError(f"--out {out} is a file; give a folder")
        existing = next(p for p in (out, *out.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise MimlTuneError(f"--out {out} cannot be created or written to")
        if out.is_dir():
            if not os.access(out.parent, os.W_OK | os.X_OK):
                raise MimlTuneError(f"--out {out}: its folder {out.parent} is not writable")
            if any(out.iterdir()) and not _is_report(out):
                raise MimlTuneError(
                    f"--out {out} exists and is not a miml-tune report folder; choose another "
                    "--out (only an earlier report is replaced)"
                )
    except OSError as exc:
        raise MimlTuneError(f"cannot use --out {out}: {exc.strerror or exc}") from None
    return out


def _is_report(folder: Path) -> bool:
    try:
        return json.loads((folder / DATA_FILE).read_text()).get("kind") == REPORT_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _make_workdir(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        workdir.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the report from others
        return workdir
    except OSError as exc:
        raise MimlTuneError(f"cannot write the report to {target}: {exc.strerror or exc}") from None


def _swap_in(workdir: Path, target: Path) -> None:
    """Puts the finished folder in place of ``target``; an earlier report is removed after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(workdir, target)
    except OSError:
        if old is not None:
            os.replace(old / target.name, target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No artifact progress bars on the terminal."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before_env = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before_env


# --- HTML and the terminal table ------------------------------------------------------------

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.pruned td { color: #777; } tr.error td { color: #a00; } tr.best td { font-weight: 600; }
td.better { background: #e6f4ea; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; } .muted { color: #666; font-size: 0.9em; }
"""


def _fmt(value: Any, std: Any = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.4f}"
    if std is not None and isinstance(std, float) and math.isfinite(std):
        text += f" ± {std:.4f}"
    return text


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{css}>" + "".join(row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _td(text: Any, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{html.escape(str(text))}</td>"


def render_html(
    record: SearchRecord,
    ranked: Sequence[TrialRecord],
    importances: dict[str, float] | str,
    *,
    top: int,
) -> str:
    """The self-contained report page: inline CSS, figures by relative file name."""
    s = record.summary
    metric = record.metric
    esc = html.escape
    settings = _settings(record)
    settings_table = _table(("setting", "value"), [[_td(k), _td(v)] for k, v in settings.items()])
    params = sorted({k for t in ranked for k in t.params if k in record.domains}) or sorted(
        {k for t in ranked for k in t.params}
    )
    board_rows = []
    board_classes = []
    for i, t in enumerate(ranked, 1):
        board_rows.append(
            [
                _td(i, "num"),
                _td(t.trial_id),
                _td(t.status),
                _td(t.epochs, "num"),
                _td(_fmt(t.value(metric)), "num"),
                _td(_fmt(t.std(metric)), "num"),
            ]
            + [_td(t.params.get(p, "")) for p in params]
        )
        board_classes.append("best" if t.trial_id == s["best"]["trial_id"] else t.status)
    board = _table(
        ("rank", "trial", "status", "epochs", f"{metric} {_arrow(metric)}", "fold std", *params),
        board_rows,
        board_classes,
    )
    peers = list(_peer_metrics(s))
    compare_rows = []
    for name, best, by_peer in comparison_rows(record):
        cells = [best, *(by_peer[p] for p in peers)]
        means = [c["mean"] if c else math.nan for c in cells]
        finite = [m for m in means if math.isfinite(m)]
        winner = (max if mode_of(name) == "max" else min)(finite) if finite else math.nan
        compare_rows.append(
            [_td(f"{name} {_arrow(name)}")]
            + [
                _td(
                    _fmt(c["mean"], c["std"]) if c else "–",
                    "num better" if len(finite) > 1 and m == winner else "num",
                )
                for c, m in zip(cells, means, strict=True)
            ]
        )
    compare = _table(
        ("metric", f"best trial {s['best']['trial_id']}", *(f"peer {p}" for p in peers)),
        compare_rows,
    )
    captions = {
        "leaderboard": f"The top {min(top, len(ranked))} trials by {metric} (CV fold mean, "
        "bars: fold std); lines: the peer models on the same folds.",
        "history": "Each trial's final metric in the order the search started the trials, and "
        "the best completed trial so far.",
        "importances": "fANOVA importances (Optuna) on a study rebuilt from the completed trials."
        + (f" {importances}." if isinstance(importances, str) else ""),
        "parallel": "Each parameter scaled to its searched domain (categories by index, log "
        "ranges in log), coloured by the metric.",
        "curves": f"Fold-mean {metric} by epoch of the top trials; pruned trials dashed grey.",
        "peers": "The best trial beside every peer model, every metric, CV mean ± fold std.",
    }
    figures = "".join(
        f'<figure><img src="{esc(FIGURES[k])}" alt="{esc(k)}">'
        f"<figcaption>{esc(captions[k])}</figcaption></figure>"
        for k in FIGURES
    )
    trials = s["trials"]
    title = f"miml-tune report: {s['name']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(title)}</title>
<style>{_CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<p>{esc(s["model"])} on {esc(s["dataset"])}, optimising {esc(metric)} ({esc(record.mode)}):
{trials["total"]} trials ({trials["completed"]} completed, {trials["pruned"]} pruned,
{trials["error"]} failed). Best trial <b>{esc(s["best"]["trial_id"])}</b>:
{esc(metric)} <b>{_fmt(s["best"]["metrics"][metric]["mean"])}</b>
± {_fmt(s["best"]["metrics"][metric]["std"])}.</p>
<h2>Leaderboard</h2>
{board}
<h2>Best trial vs peers</h2>
{compare}
<h2>Figures</h2>
{figures}
<h2>Search settings</h2>
{settings_table}
<p class="muted">Generated {esc(datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))} by miml-tune
{esc(str(s.get("version", "")))} from parent run {esc(record.parent_run_id)}.</p>
</body></html>
"""


def _settings(record: SearchRecord) -> dict[str, str]:
    s = record.summary
    space = record.space
    cv = s.get("cv", {})
    domains = "; ".join(
        f"{k}: {list(d.values) if d.kind == 'choice' else f'{d.kind} {list(d.values)}'}"
        for k, d in record.domains.items()
    )
    fixed = {k: v for k, v in (space.get("params") or {}).items() if k not in record.domains}
    budget = space.get("budget") or {}
    scheduler = space.get("scheduler") or {}
    trials = s["trials"]
    return {
        "search": s["name"],
        "space": s.get("space", ""),
        "model": s["model"],
        "dataset": f"{s['dataset']} (fingerprint {s.get('dataset_fingerprint', '?')})",
        "metric": f"{s['metric']} ({record.mode})",
        "cross-validation": f"{cv.get('repeats', '?')} x {cv.get('folds', '?')}-fold",
        "holdout": f"{s.get('holdout_kind', '?')}"
        + (f", {s['holdout']:g} of the bags" if s.get("holdout_kind") == "stratified" else ""),
        "bags": f"{s['bags']['development']} development, {s['bags']['holdout']} held out",
        "trials": f"{trials['total']} ({trials['completed']} completed, {trials['pruned']} pruned, "
        f"{trials['error']} failed)"
        + (f" of a budget of {budget['trials']}" if "trials" in budget else ""),
        "max epochs": str(budget.get("max_epochs", "?")),
        "sampler": str(s.get("sampler", "")),
        "scheduler": str(s.get("scheduler", ""))
        + (
            f" (grace {scheduler['grace_period']}, factor {scheduler['reduction_factor']:g})"
            if s.get("scheduler") == "asha" and "grace_period" in scheduler
            else ""
        ),
        "seed": str(s.get("seed", "")),
        "searched": domains or "–",
        "fixed": ", ".join(f"{k}={v}" for k, v in fixed.items()) or "–",
        "peers": ", ".join(_peer_metrics(s)) or "none",
        "tracking store": str(s["mlflow"]["tracking_uri"]),
        "parent run": record.parent_run_id,
    }


def summary_table(record: SearchRecord, *, top: int) -> str:
    """The short terminal table: the top trials, then the peers, on the search's metric."""
    metric = record.metric
    ranked = record.ranked()
    s = record.summary
    trials = s["trials"]
    rows = [
        (str(i), t.trial_id, t.status, str(t.epochs), _fmt(t.value(metric), t.std(metric)))
        for i, t in enumerate(ranked[:top], 1)
    ]
    for model, metrics in _peer_metrics(s).items():
        cell = metrics.get(metric) or {}
        rows.append(("peer", model, "", "", _fmt(cell.get("mean"), cell.get("std"))))
    header = ("rank", "trial", "status", "epochs", f"{metric} {_arrow(metric)} (mean ± std)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"search {s['name']!r}: {s['model']} on {s['dataset']}, {trials['total']} trials "
        f"({trials['completed']} completed, {trials['pruned']} pruned, {trials['error']} failed)",
        "",
    ]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
