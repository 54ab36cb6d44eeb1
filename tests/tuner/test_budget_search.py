"""The search budget end to end, through the real CLI, local Ray and a sqlite MLflow store: CV
repeats as a second fidelity (pruned trials paid for fewer fold models, every trial compared at
a rung on the same folds, only full-protocol trials completed), a time budget that ends the
search cleanly, and a resume that runs the trials the budget left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.searches import SMALL_SPACE, cli

pytestmark = pytest.mark.slow

# More trials than any machine trains in the budget, so the budget (not the count) ends it.
TRIALS = 200
SPACE: dict[str, Any] = {
    **SMALL_SPACE,
    "name": "budgeted",
    "cv": {"folds": 3, "repeats": 2},
    "budget": {"trials": TRIALS, "max_epochs": 4, "concurrency": 1, "time": "45s"},
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2, "fidelity": "repeats"},
    "sampler": "random",
    # A learning rate that learns next to one that cannot: ASHA prunes the latter at a rung.
    "params": {**SMALL_SPACE["params"], "lr": [5.0e-3, 1.0e-7], "k": 3, "epochs": 4},
}


def _runs(uri: str) -> tuple[Any, list[Any], Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("budgeted")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("miml_tune.role") == "search"]
    children = [r for r in runs if r.data.tags.get("miml_tune.role") == "trial"]
    assert len(parents) == 1
    return parents[0], children, client


def test_a_budgeted_search_with_the_repeats_fidelity_ends_cleanly_and_resumes(
    workdir: Path,
) -> None:
    space = workdir / "budgeted.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result = cli(workdir, "launch", "--space", str(space), "--tracking-uri", uri, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    budget = summary["time_budget"]
    assert budget["spent"] and budget["seconds"] == 45.0
    trials = summary["trials"]
    assert trials["completed"] >= 1 and trials["total"] < TRIALS, trials
    assert summary["best"]["protocol"] == "full"
    state = workdir / "miml-tune-results" / "budgeted" / "miml_tune_search.json"
    assert json.loads(state.read_text())["status"] == "budget_spent"

    parent, children, client = _runs(uri)
    assert parent.info.status == "FINISHED"
    assert all(r.info.status != "RUNNING" for r in children)
    assert {r.info.run_name for r in children} == {f"trial-{r.data.tags['miml_tune.trial_id']}"
                                                   for r in children}  # fmt: skip
    by_status: dict[str, list[Any]] = {}
    for run in children:
        by_status.setdefault(run.data.tags["miml_tune.status"], []).append(run)
    assert parent.data.metrics["fold_epochs"] == sum(
        r.data.metrics.get("fold_epochs", 0) for r in children
    )

    # Repeats as a fidelity: a completed trial trained 2 repeats x 3 folds x 4 epochs; one
    # pruned at a rung trained fewer fold models, and says it stopped short of the protocol.
    for run in by_status["completed"]:
        assert run.data.metrics["fold_epochs"] == 24
        assert run.data.tags["miml_tune.protocol"] == "full"
    assert by_status.get("pruned"), "the learning rate of 1e-7 is pruned at a rung"
    for run in by_status["pruned"]:
        assert run.data.metrics["fold_epochs"] < 24
        if run.data.tags["miml_tune.epochs"] == "1":  # dropped at the first rung: one repeat
            assert run.data.metrics["fold_epochs"] == 3
            assert run.data.tags["miml_tune.protocol"] == "partial (1 repeats)"
    # Every trial reaching a rung (epochs 1 and 2) was measured there on the same repeats.
    for rung, repeats in ((1, 1), (2, 2)):
        seen = set()
        for run in children:
            history = client.get_metric_history(run.info.run_id, "cv_repeats_done")
            seen |= {m.value for m in history if m.step == rung}
        assert seen <= {float(repeats)}, (rung, seen)

    # The budget's search can go on: resume (with a budget of its own) runs trials it left,
    # the finished ones staying as they were.
    before = {r.info.run_name: r.info.run_id for r in children}
    resumed = cli(
        workdir, "resume", "--name", "budgeted", "--tracking-uri", uri, "--json",
        "--time-budget", "25s",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = json.loads(resumed.stdout)
    assert after["time_budget"]["seconds"] == 25.0
    assert trials["total"] < after["trials"]["total"] <= TRIALS
    parent, children, _ = _runs(uri)
    assert parent.info.status == "FINISHED" and len(children) == after["trials"]["total"]
    assert all(r.info.status != "RUNNING" for r in children)
    ids = {r.info.run_name: r.info.run_id for r in children}
    assert len(ids) == len(children) and all(ids[name] == run for name, run in before.items())
    assert json.loads(state.read_text())["status"] == "budget_spent"
