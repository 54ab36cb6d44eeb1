"""The report's figures, drawn with matplotlib on bare ``Figure`` objects (no pyplot, no display):
the leaderboard, the optimisation history, the importances, parallel coordinates, learning curves
and the best trial beside the peers; with the pure helpers behind them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner.metrics import mode_of
from tuner.report.records import SearchRecord, TrialRecord, comparison_rows, peer_metrics
from tuner.spec import domain_kind

if TYPE_CHECKING:
    from matplotlib.figure import Figure


FIGURES = {
    "leaderboard": "leaderboard.png",
    "history": "history.png",
    "importances": "importances.png",
    "parallel": "parallel.png",
    "curves": "curves.png",
    "peers": "peers.png",
}
DPI = 110
_TOP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_PRUNED = "#8a8a8a"
_NAMED_PRUNED = 4
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_PEER_STYLES = ("--", ":", "-.")
_PEER_COLOURS = ("#b22222", "#6a3d9a", "#006d2c", "#b15928")


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


def axis_choices(domain: CategoricalDistribution) -> list[Any]:
    """A categorical domain's choices in the order its axis shows them, bottom to top: numbers
    ascending (as on a numeric axis, whatever order the space file lists them in), other
    choices as listed."""
    choices = list(domain.choices)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in choices)
    return sorted(choices) if numeric else choices


def scaled(value: Any, domain: BaseDistribution) -> float:
    """A parameter value on [0, 1] of its domain, small at 0: a choice by its place in
    :func:`axis_choices`, a log range in log."""
    if isinstance(domain, CategoricalDistribution):
        n = len(domain.choices)
        index = next((i for i, v in enumerate(axis_choices(domain)) if v == value), None)
        if index is None:
            return math.nan
        return 0.5 if n == 1 else index / (n - 1)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    if not isinstance(domain, (FloatDistribution, IntDistribution)):
        return math.nan
    low, high = float(domain.low), float(domain.high)
    if domain.log:
        if x <= 0:
            return math.nan
        x, low, high = math.log(x), math.log(low), math.log(high)
    return min(1.0, max(0.0, (x - low) / (high - low)))


def _figure(width: float, height: float) -> Figure:
    # A bare Figure draws with Agg when saved: no pyplot, no display, no global backend change.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def arrow(metric: str) -> str:
    return "↑" if mode_of(metric) == "max" else "↓"


def _peer_values(record: SearchRecord) -> dict[str, float]:
    """Each peer's CV mean on the search's metric (peers without it are left out)."""
    out = {}
    for model, metrics in peer_metrics(record.summary).items():
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
    title = f"Leaderboard: {metric} {arrow(metric)} (fold mean ± std)"
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
    ax.set_title(f"Optimisation history: {metric} {arrow(metric)} ({record.mode}imised)")
    ax.set_xticks(_int_ticks(len(x)))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def _int_ticks(n: int) -> list[int]:
    step = max(1, math.ceil(n / 12))
    return list(range(1, n + 1, step))


FEW_TRIALS = 20  # fewer completed trials than this: importances are a rough guide


def importance_figure(record: SearchRecord, importances: dict[str, float] | str) -> Figure:
    completed = sum(t.status == "completed" for t in record.trials)
    title = f"Parameter importances (fANOVA, {completed} completed trials)"
    if isinstance(importances, str):
        fig = _figure(8, 3)
        _no_data(fig, title, f"No importances: {importances}.")
        return fig
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = _figure(8, 1.6 + 0.45 * len(items))
    ax = fig.add_subplot()
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color=_TOP_COLOURS[0])
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=9)
    ax.set_xlim(0, max(1.0, max(v for _, v in items) * 1.15))
    ax.set_xlabel(f"share of {record.metric}'s variance")
    if completed < FEW_TRIALS:
        title += f"\nfrom fewer than {FEW_TRIALS} completed trials: a rough guide, not a ranking"
    ax.set_title(title, fontsize=10)
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
    for rank, (trial, value) in enumerate(zip(rows, values, strict=True)):
        ys = [scaled(trial.params.get(p), record.domains[p]) for p in params]
        share = 0.5 if high == low else (value - low) / (high - low)
        ys.append(share if record.mode == "max" else 1 - share)  # the better end at the top
        ax.plot(
            range(len(columns)),
            ys,
            color=cmap(norm(value)),
            linewidth=3 if rank == 0 else 1.6,
            alpha=0.9,
            linestyle="-" if trial.status == "completed" else "--",
            marker="o",
            zorder=3 + len(rows) - rank,  # the best on top of every other line
            label="best" if rank == 0 else None,
        )
    for i, name in enumerate(columns):
        ax.axvline(i, color="#555", linewidth=0.8)
        for y, text in _axis_labels(record.domains.get(name), low, high, record.mode):
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
    fig.colorbar(sm, ax=ax, label=f"{metric} {arrow(metric)}", pad=0.02)
    return fig


def _kind(domain: BaseDistribution | None) -> str:
    if domain is None:
        return "metric"
    kind = domain_kind(domain)
    return "log" if kind == "loguniform" else kind


def _axis_labels(
    domain: BaseDistribution | None, low: float, high: float, mode: str = "max"
) -> list[tuple[float, str]]:
    if domain is None:  # the metric axis, its better end at the top (see parallel_figure)
        if not high > low:
            return [(0.5, f"{low:.4g}")]
        ends = [(0.0, f"{low:.4g}"), (1.0, f"{high:.4g}")]
        return ends if mode == "max" else [(1.0, f"{low:.4g}"), (0.0, f"{high:.4g}")]
    if isinstance(domain, CategoricalDistribution):
        choices = axis_choices(domain)
        n = len(choices)
        if n > 8:  # too many to label each: the ends only
            return [(0.0, str(choices[0])), (1.0, str(choices[-1]))]
        return [(0.5 if n == 1 else i / (n - 1), str(v)) for i, v in enumerate(choices)]
    if not isinstance(domain, (FloatDistribution, IntDistribution)):
        return []
    return [(0.0, f"{domain.low:g}"), (1.0, f"{domain.high:g}")]


def curves_figure(record: SearchRecord, curves: Sequence[Curve]) -> Figure:
    metric = record.metric
    fig = _figure(10, 4.6)
    title = f"Learning curves: {metric} {arrow(metric)} (fold mean) by epoch"
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


def peers_figure(record: SearchRecord) -> Figure:
    rows = comparison_rows(record)
    peers = list(peer_metrics(record.summary))
    title = "Best trial vs peers (CV mean ± fold std, same folds)"
    if not rows:
        fig = _figure(8, 3)
        _no_data(fig, title, "the best trial has no metrics")
        return fig
    columns = min(4, len(rows))
    lines = math.ceil(len(rows) / columns)
    crowded = len(peers) > 1  # names upright below each panel: taller rows
    fig = _figure(3.0 * columns, 0.6 + (3.1 if crowded else 2.3) * lines)
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
        # Peer names side by side overlap ("bestag_mearbalgearean..."): upright when crowded.
        ax.set_xticks(
            range(len(cells)),
            [_short(n) for n in names],
            fontsize=8,
            rotation=90 if crowded else 0,
        )
        ax.set_title(f"{metric} {arrow(metric)}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        top_value = max(
            (m + s for m, s in zip(means, stds, strict=True) if math.isfinite(m)), default=1.0
        )
        ax.set_ylim(0, top_value * 1.12 if top_value > 0 else 1.0)
        ax.grid(axis="y", alpha=0.3)
    return fig


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
