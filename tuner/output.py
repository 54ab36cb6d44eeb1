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
    lines = [
        f"search {summary['name']!r}: {summary['model']} on {summary['dataset']} "
        f"({summary['bags']['development']} development bags, "
        f"{summary['bags']['holdout']} held out), "
        f"{cv['repeats']}x{cv['folds']}-fold CV, seed {summary['seed']}",
        f"trials: {trials['total']} ({trials['completed']} completed, {trials['pruned']} pruned, "
        f"{trials['error']} failed)",
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
    mlflow = summary["mlflow"]
    lines += [
        "",
        f"MLflow: {mlflow['tracking_uri']} (experiment {summary['name']!r}, "
        f"parent run {mlflow['parent_run_id']})",
    ]
    return "\n".join(lines)
