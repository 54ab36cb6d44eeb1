"""The search's parent run in MLflow: its tags, parameters, peers and, at the end, its results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuner import tracking
from tuner.data import MIMLDataset
from tuner.search.options import DATA_PATH_TAG, LaunchOptions
from tuner.search.results import data_file, leaderboard_csv
from tuner.spec import SearchSpec


def data_tags(options: LaunchOptions) -> dict[str, str]:
    """Where the data came from, so that ``promote`` can read the same file again."""
    tags = {}
    if options.data:
        tags[DATA_PATH_TAG] = str(Path(options.data).expanduser().resolve())
    for key in ("bag_key", "label_key"):
        if getattr(options, key):
            tags[f"miml_tune.{key}"] = str(getattr(options, key))
    return tags


def mlflow_dataset(spec: SearchSpec, full: MIMLDataset) -> dict[str, str]:
    """The search's data as an MLflow dataset input (see :func:`tuner.tracking.log_dataset_input`):
    named as the summary names it, its fingerprint as the digest. A small dict of strings, so the
    trial-run callback can carry it to Ray and back."""
    data = data_file(spec, full)
    profile = {
        "bags": full.n_bags,
        "instances": full.n_instances,
        "features": full.n_features,
        "labels": full.n_labels,
    }
    return {
        "name": full.name if data["matches_space"] else data["name"],
        "digest": full.fingerprint(),
        "source": full.source,
        "profile": json.dumps(profile),
    }


def log_parent_start(
    mlflow: Any,
    parent_id: str,
    spec: SearchSpec,
    full: MIMLDataset,
    dev: MIMLDataset,
    holdout: MIMLDataset | None,
) -> None:
    from mlflow.entities import Param

    params = {
        "space": spec.name,
        "model": spec.model,
        "dataset": full.name,
        "dataset_source": full.source,
        "metric": spec.metric,
        "mode": spec.mode,
        "seed": spec.seed,
        "sampler": spec.sampler,
        "scheduler": spec.scheduler,
        "cv_folds": spec.cv_folds,
        "cv_repeats": spec.cv_repeats,
        "holdout": spec.holdout,
        "holdout_seed": spec.holdout_seed,
        "trials": spec.trials,
        "max_epochs": spec.max_epochs,
        "n_dev_bags": dev.n_bags,
        "n_holdout_bags": holdout.n_bags if holdout else 0,
        "holdout_kind": "official test split" if full.has_test_split else "stratified",
        "known_labels": spec.known_labels,
    }
    mlflow.log_batch(parent_id, params=[Param(k, str(v)) for k, v in params.items()])
    tracking.log_dataset_input(mlflow, parent_id, mlflow_dataset(spec, full))
    mlflow.log_text(parent_id, spec.text or json.dumps(spec.to_dict(), indent=2), "space.yaml")
    mlflow.log_dict(parent_id, spec.to_dict(), "space_effective.json")


def log_peers(mlflow: Any, parent_id: str, peers: dict[str, dict[str, Any]]) -> None:
    """The peers' CV metrics on the parent run, as ``peer.<model>.<metric>``."""
    for i, (model, summary) in enumerate(peers.items()):
        values = tracking.numeric_metrics(summary)
        # The first peer also under plain "peer.<metric>", as before there were several.
        prefixes = [f"peer.{model}."] + (["peer."] if i == 0 else [])
        peer_metrics = {f"{p}{k}": v for p in prefixes for k, v in values.items()}
        tracking.log_metrics(mlflow, parent_id, peer_metrics, step=0)


def log_parent_end(
    mlflow: Any, parent_id: str, summary: dict[str, Any], board: list[dict[str, Any]]
) -> None:
    best = summary["best"]
    mlflow.log_dict(parent_id, best["config"], "best_config.json")
    mlflow.log_dict(parent_id, summary, tracking.SUMMARY_ARTIFACT)
    mlflow.log_text(parent_id, leaderboard_csv(board, summary["metric"]), "leaderboard.csv")
    metrics = {f"best.{k}": v["mean"] for k, v in best["metrics"].items()}
    metrics |= {f"best.{k}_std": v["std"] for k, v in best["metrics"].items()}
    metrics |= {f"trials.{k}": float(v) for k, v in summary["trials"].items()}
    metrics["fold_epochs"] = float(summary.get("fold_epochs", 0))
    for peer, test in (summary.get("comparisons") or {}).items():
        metrics[f"vs.{peer}.p_value"] = test["p_value"]
        metrics[f"vs.{peer}.mean_difference"] = test["mean_difference"]
    tracking.log_metrics(mlflow, parent_id, tracking.numeric_metrics(metrics), step=0)
    mlflow.set_tag(parent_id, "miml_tune.best_trial", best["trial_id"])
    for peer, test in (summary.get("comparisons") or {}).items():
        mlflow.set_tag(parent_id, f"miml_tune.vs.{peer}", test["verdict"])
