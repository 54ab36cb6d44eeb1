"""A finished search's results: the leaderboard, its ranking and CSV, and the summary."""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

from tuner import __version__
from tuner.data import MIMLDataset
from tuner.data.registry import resolve_dataset
from tuner.errors import MimlTuneError
from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, mode_of
from tuner.search.progress import is_pruned, protocol_reached
from tuner.spec import SearchSpec


class EveryTrialFailed(MimlTuneError):
    """Every trial of a search raised: running them again would fail the same way."""


def leaderboard(
    results: Any, metric: str, stopped: Collection[str] = (), never_started: Collection[str] = ()
) -> list[dict[str, Any]]:
    """One row per trial, best first: completed trials ranked by the metric (ties: lower fold
    std, then the earlier trial), then pruned trials, trials the time budget stopped, then
    failed ones; trials that never started (their paths in ``never_started``) are left out.
    Only a trial that trained its last epoch under the full CV protocol is
    ``completed``: a trial that stopped with fewer repeats (or epochs) can never be the best.
    A completed trial's row keeps its per-fold values (``folds``) for paired tests."""
    rows = []
    for order, result in enumerate(results):
        if str(result.path) in never_started:
            continue
        metrics = dict(result.metrics or {})
        trial_id = metrics.get("trial_id") or Path(result.path).name
        status = "error" if result.error else "completed"
        if status == "completed" and is_pruned(metrics):
            status = "stopped" if trial_id in stopped else "pruned"
        per_fold = metrics.get("per_fold") if status == "completed" else None
        rows.append(
            {
                "trial_id": trial_id,
                "order": order,
                "status": status,
                "epochs": metrics.get("epoch", 0),
                "protocol": protocol_reached(metrics),
                "fold_epochs": int(metrics.get("fold_epochs", 0) or 0),
                "folds": {k: [float(x) for x in v] for k, v in (per_fold or {}).items()},
                "config": dict(result.config or {}),
                "metrics": {
                    k: v
                    for k, v in metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                },
                "error": str(result.error).splitlines()[-1][:500] if result.error else "",
            }
        )
    return rank(rows, metric)


def rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    sign = 1.0 if mode_of(metric) == "max" else -1.0
    status_order = {"completed": 0, "pruned": 1, "stopped": 2, "error": 3}

    def key(row: dict[str, Any]) -> tuple[float, float, float, int]:
        value = row["metrics"].get(metric, math.nan)
        std = row["metrics"].get(f"{metric}_std", math.inf)
        missing = value is None or math.isnan(value)
        return (
            status_order[row["status"]],
            math.inf if missing else -sign * value,
            std if std is not None and not math.isnan(std) else math.inf,
            row["order"],
        )

    return sorted(rows, key=key)


def summarise_search(
    spec: SearchSpec,
    name: str,
    full: MIMLDataset,
    dev: MIMLDataset,
    holdout: MIMLDataset | None,
    board: list[dict[str, Any]],
    peers: dict[str, dict[str, Any]],
    uri: str,
    experiment_id: str,
    parent_id: str,
) -> dict[str, Any]:
    completed = [r for r in board if r["status"] == "completed"]
    if not completed:
        errors = "; ".join(r["error"] for r in board if r["error"])[:500]
        stopped = sum(r["status"] == "stopped" for r in board)
        failed = board and all(r["status"] == "error" for r in board)
        raise (EveryTrialFailed if failed else MimlTuneError)(
            f"search {name!r} finished with no completed trial"
            + (f" (errors: {errors})" if errors else "")
            + (
                f"; the time budget stopped {stopped} trial(s) before any completed under the "
                "full protocol: give it more time (--time-budget), or resume it"
                if stopped
                else ""
            )
        )
    best = completed[0]
    return {
        "name": name,
        "space": spec.name,
        "model": spec.model,
        "dataset": full.name,
        "dataset_fingerprint": full.fingerprint(),
        "data": data_file(spec, full),
        "metric": spec.metric,
        "mode": spec.mode,
        "seed": spec.seed,
        "sampler": spec.sampler,
        "scheduler": spec.scheduler,
        "cv": {"folds": spec.cv_folds, "repeats": spec.cv_repeats},
        "holdout": spec.holdout,
        "holdout_kind": "official test split" if full.has_test_split else "stratified",
        "known_labels": spec.known_labels,
        "bags": {"development": dev.n_bags, "holdout": holdout.n_bags if holdout else 0},
        "fidelity": spec.fidelity,
        "trials": {
            "total": len(board),
            **{s: sum(r["status"] == s for r in board) for s in STATUSES},
        },
        "fold_epochs": sum(r["fold_epochs"] for r in board),
        "best": {
            "trial_id": best["trial_id"],
            "epochs": best["epochs"],
            "seconds": round(float(best["metrics"].get("time_total_s", math.nan)), 1),
            "config": best["config"],
            "metrics": _mean_std(best["metrics"]),
            "protocol": best["protocol"],
            "fold_epochs": best["fold_epochs"],
        },
        "comparisons": compare_with_peers(best, peers, spec.metric),
        # "peer" is the first peer (the summary's shape before there were several).
        "peer": next(
            ({"model": m, "metrics": _mean_std(v)} for m, v in peers.items()),
            {"model": None, "metrics": {}},
        ),
        "peers": {m: {"metrics": _mean_std(v)} for m, v in peers.items()},
        "mlflow": {
            "tracking_uri": uri,
            "experiment_id": experiment_id,
            "parent_run_id": parent_id,
        },
        "version": __version__,
    }


STATUSES = ("completed", "pruned", "stopped", "error")


def data_file(spec: SearchSpec, full: MIMLDataset) -> dict[str, Any]:
    """The file the search read, beside the dataset its space names: ``name`` (the file's name),
    ``path``, ``space_dataset`` and ``matches_space``: false when the file's name is neither the
    space's dataset nor its registered file (``--data other.arff`` for a space on birds), so that
    a summary never calls other data by the space's name."""
    path = Path(full.source)
    names = {Path(spec.dataset).stem}
    with contextlib.suppress(MimlTuneError):  # the space names a file, not a registered dataset
        names.add(Path(resolve_dataset(spec.dataset).filename).stem)
    stem = _comparable(path.stem)
    return {
        "name": path.name,
        "path": full.source,
        "space_dataset": spec.dataset,
        "matches_space": any(_comparable(n) in stem for n in names),
    }


def _comparable(name: str) -> str:
    return name.lower().replace("-", "_")


def compare_with_peers(
    best: dict[str, Any], peers: dict[str, dict[str, Any]], metric: str
) -> dict[str, dict[str, Any]]:
    """The best trial against each peer on ``metric``: a paired Wilcoxon signed-rank test over
    the folds they share (:func:`tuner.stats.paired_wilcoxon`). A peer whose per-fold values
    are unknown (a search launched by an older miml-tune) is left out."""
    from tuner.stats import paired_wilcoxon

    ours = (best.get("folds") or {}).get(metric)
    out = {}
    for model, summary in peers.items():
        theirs = (summary.get("per_fold") or {}).get(metric)
        if ours and theirs and len(ours) == len(theirs):
            out[model] = paired_wilcoxon(ours, theirs, mode=mode_of(metric))
    return out


def _mean_std(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        name: {"mean": float(metrics[name]), "std": float(metrics.get(f"{name}_std", math.nan))}
        for name in (*ALL_METRICS, *INSTANCE_METRICS)
        if name in metrics
    }


def leaderboard_csv(board: list[dict[str, Any]], metric: str) -> str:
    params = sorted({k for row in board for k in row["config"]})
    out = io.StringIO()
    writer = csv.writer(out)
    head = ["rank", "trial_id", "status", "epochs"]
    names = [n for n in (*ALL_METRICS, *INSTANCE_METRICS) if any(n in r["metrics"] for r in board)]
    metrics = [m for name in names for m in (name, f"{name}_std")]
    writer.writerow([*head, *metrics, *params, "error"])
    for i, row in enumerate(board, 1):
        writer.writerow(
            [i, row["trial_id"], row["status"], row["epochs"]]
            + [row["metrics"].get(m, "") for m in metrics]
            + [row["config"].get(p, "") for p in params]
            + [row["error"]]
        )
    return out.getvalue()
