"""Human-readable text for the terminal."""

from __future__ import annotations

import math
from typing import Any

from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, mode_of


def _cell(value: dict[str, float] | None) -> str:
    if not value or math.isnan(value["mean"]):
        return "-"
    return f"{value['mean']:.4f} ± {value['std']:.4f}"


def format_summary(summary: dict[str, Any]) -> str:
    """The end-of-search report: best configuration and its CV metrics beside the peer."""
    best, peer = summary["best"], summary["peer"]
    cv = summary["cv"]
    trials = summary["trials"]
    data = summary.get("data") or {}
    on = data.get("name") or summary["dataset"]
    if data and not data.get("matches_space", True):
        on += f" (the space's dataset: {data['space_dataset']})"
    lines = [
        f"search {summary['name']!r}: {summary['model']} on {on} "
        f"({summary['bags']['development']} development bags, "
        f"{summary['bags']['holdout']} held out), "
        f"{cv['repeats']}x{cv['folds']}-fold CV, seed {summary['seed']}",
        f"trials: {trials['total']} ({trials['completed']} completed, {trials['pruned']} pruned, "
        + (f"{trials['stopped']} stopped by the time budget, " if trials.get("stopped") else "")
        + f"{trials['error']} failed), {summary.get('fold_epochs', 0)} fold-epochs trained"
        + (f" ({summary['fidelity']} fidelity)" if summary.get("fidelity") else ""),
        "",
        f"best trial {best['trial_id']} ({best['epochs']} epochs), optimising "
        f"{summary['metric']} ({summary['mode']}):",
    ]
    width = max(len(k) for k in best["config"]) if best["config"] else 0
    lines += [f"  {k:<{width}}  {v}" for k, v in sorted(best["config"].items())]
    peers = summary.get("peers") or (
        {peer["model"]: {"metrics": peer["metrics"]}} if peer.get("model") else {}
    )
    columns = [("best (mean ± std)", best["metrics"])]
    columns += [(f"{model} (same folds)", p["metrics"]) for model, p in peers.items()]
    widths = [max(22, len(title) + 2) for title, _ in columns]
    lines += [
        "",
        f"  {'metric':<26}"
        + "".join(f"{title:<{w}}" for (title, _), w in zip(columns, widths, strict=True)),
    ]
    for name in (*ALL_METRICS, *INSTANCE_METRICS):
        if name not in best["metrics"]:
            continue
        arrow = "↑" if mode_of(name) == "max" else "↓"
        cells = [_cell(values.get(name)) for _, values in columns]
        lines.append(
            f"  {name + ' ' + arrow:<26}"
            + "".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
        )
    tests = summary.get("comparisons") or {}
    if tests:
        lines += ["", f"paired Wilcoxon signed-rank test over the folds, on {summary['metric']}:"]
        lines += [
            f"  best {t['verdict']} {model} (mean difference {t['mean_difference']:+.4f}, "
            f"p = {t['p_value']:.3g}, {t['folds']} folds)"
            for model, t in tests.items()
        ]
    mlflow = summary["mlflow"]
    lines += [
        "",
        f"MLflow: {mlflow['tracking_uri']} (experiment {summary['name']!r}, "
        f"parent run {mlflow['parent_run_id']})",
    ]
    return "\n".join(lines)


def format_promotion(result: dict[str, Any]) -> str:
    """What ``promote`` did: the version, the alias decision, holdout beside CV metrics."""
    registered = result["registered_model"]
    lines = [
        f"registered {registered} version {result['version']}: {result['model']} trial "
        f"{result['trial_id']} of search {result['name']!r}, refit for {result['epochs']} epochs "
        f"on the development data",
        f"alias {result['alias']!r} "
        + (
            f"-> version {result['version']}"
            if result["alias_moved"]
            else f"stays on version {result['champion_version']}"
        )
        + f" ({result['reason']})",
        "",
        f"  {'metric':<26}{'holdout':<12}CV mean  ({result['holdout_bags']} holdout bags, "
        f"{result['holdout_kind']})",
    ]
    for name in (*ALL_METRICS, *INSTANCE_METRICS):
        if name not in result["holdout"] and name not in result["cv"]:
            continue
        arrow = "↑" if mode_of(name) == "max" else "↓"
        marker = " *" if name == result["metric"] else ""
        holdout, cv = result["holdout"].get(name), result["cv"].get(name)
        lines.append(f"  {name + ' ' + arrow + marker:<26}{_number(holdout):<12}{_number(cv)}")
    timing = result["timing"]
    lines += [
        "",
        f"load with: mlflow.pyfunc.load_model({result['alias_uri']!r}) or "
        f"miml-tune predict --model {result['alias_uri']} --data FILE",
        f"took {timing['total_seconds']:.1f} s (refit {timing['refit_seconds']:.1f} s, log "
        f"{timing['log_seconds']:.1f} s, register {timing['register_seconds']:.1f} s)",
    ]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def format_prediction(result: dict[str, Any]) -> str:
    """A short summary of ``predict``: bags, label sets, and metrics when the data has labels."""
    rule = (
        f"top {result['top_k']}" + (f" above {result['threshold']}" if result["threshold"] else "")
        if result["top_k"]
        else f"score >= {result['threshold']}"
    )
    frequent = ", ".join(f"{k} ({v})" for k, v in result["most_predicted"].items()) or "none"
    lines = [
        f"predicted {result['bags']} bags with {result['model_uri']} ({result['model']}) in "
        f"{result['seconds']:.2f} s; labels by {rule}: {result['labels_per_bag']} per bag",
        f"most predicted: {frequent}",
    ]
    if result.get("metrics"):
        shown = ("average_precision", "one_error", "ranking_loss", "hamming_loss", "macro_f1")
        values = ", ".join(
            f"{k} {result['metrics'][k]:.4f}" for k in shown if k in result["metrics"]
        )
        lines.append(f"against the file's own labels: {values}")
    if result.get("note"):
        lines.append(f"note: {result['note']}")
    if result.get("out"):
        lines.append(f"wrote {result['out']}")
    return "\n".join(lines)
