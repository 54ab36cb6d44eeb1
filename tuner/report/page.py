"""The report's self-contained HTML page and its short terminal table."""

from __future__ import annotations

import datetime
import html
import math
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from tuner.metrics import mode_of
from tuner.report.figures import FIGURES, arrow
from tuner.report.importances import Importances
from tuner.report.records import SearchRecord, TrialRecord, comparison_rows, peer_metrics
from tuner.spec import domain_kind, domain_to_yaml

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
.wide { overflow-x: auto; max-width: 100%; } .wide th { white-space: nowrap; }
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


_BOARD_COLUMNS = ("rank", "trial", "status", "epochs trained", "fold std")


def leaderboard_header(metric: str, params: Sequence[str]) -> tuple[str, ...]:
    """The leaderboard's column names, each once: a parameter named like a column of the
    board's own (a searched ``epochs`` beside the epochs each trial trained) says so."""
    own = (*_BOARD_COLUMNS[:4], f"{metric} {arrow(metric)}", _BOARD_COLUMNS[4])
    taken = {*own, "epochs"}
    return (*own, *(f"{p} (param)" if p in taken else p for p in params))


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
    importances: Importances,
    *,
    top: int,
    extra: str = "",
) -> str:
    """The self-contained report page: inline CSS, figures by relative file name; ``extra`` is
    HTML of further sections (active learning), placed before the settings."""
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
        leaderboard_header(metric, params),
        board_rows,
        board_classes,
    )
    peers = list(peer_metrics(s))
    compare_rows = []
    for name, best, by_peer in comparison_rows(record):
        cells = [best, *(by_peer[p] for p in peers)]
        means = [c["mean"] if c else math.nan for c in cells]
        finite = [m for m in means if math.isfinite(m)]
        winner = (max if mode_of(name) == "max" else min)(finite) if finite else math.nan
        compare_rows.append(
            [_td(f"{name} {arrow(name)}")]
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
        "importances": f"fANOVA importances (Optuna) of the completed trials: {importances.source}."
        + (f" {importances.values}." if isinstance(importances.values, str) else ""),
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
<div class="wide">{board}</div>
<h2>Best trial vs peers</h2>
{compare}
<h2>Figures</h2>
{figures}
{extra}<h2>Search settings</h2>
{settings_table}
<p class="muted">Generated {esc(datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))} by miml-tune
{esc(str(s.get("version", "")))} from parent run {esc(record.parent_run_id)}.</p>
</body></html>
"""


def _settings(record: SearchRecord) -> dict[str, str]:
    s = record.summary
    space = record.space
    cv = s.get("cv", {})
    domains = "; ".join(f"{k}: {_describe(d)}" for k, d in record.domains.items())
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
        "peers": ", ".join(peer_metrics(s)) or "none",
        "tracking store": str(s["mlflow"]["tracking_uri"]),
        "parent run": record.parent_run_id,
    }


def _describe(domain: BaseDistribution) -> str:
    """``[64, 128]`` for a choice, ``loguniform [0.0001, 0.01]`` for a range."""
    if isinstance(domain, CategoricalDistribution):
        return str(list(domain.choices))
    kind = domain_kind(domain)
    return f"{kind} {domain_to_yaml(domain)[kind]}"


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
    for model, metrics in peer_metrics(s).items():
        cell = metrics.get(metric) or {}
        rows.append(("peer", model, "", "", _fmt(cell.get("mean"), cell.get("std"))))
    header = ("rank", "trial", "status", "epochs", f"{metric} {arrow(metric)} (mean ± std)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        f"search {s['name']!r}: {s['model']} on {s['dataset']}, {trials['total']} trials "
        f"({trials['completed']} completed, {trials['pruned']} pruned, {trials['error']} failed)",
        "",
    ]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
