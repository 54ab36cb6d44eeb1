"""Resume after a SIGKILL: a real search through the CLI is killed once some trials finished, the
Ray processes its driver started are stopped by PID, and ``miml-tune resume`` finishes it with the
same trials, the same Optuna TPE searcher and the same MLflow parent run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.searches import SMALL_SPACE, assert_one_line_error, cli, cli_env
from tests.servers import assert_gone, descendants

pytestmark = pytest.mark.slow

TRIALS = 6


def _space(workdir: Path) -> Path:
    space = {
        **SMALL_SPACE,
        "name": "resumable",
        "budget": {"trials": TRIALS, "max_epochs": 3, "concurrency": 1},
        "scheduler": {"name": "fifo"},
        "sampler": "tpe",
        "params": {**SMALL_SPACE["params"], "epochs": 3},
    }
    path = workdir / "resumable.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def _trial_runs(uri: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("resumable")
    if experiment is None:
        return []
    return list(client.search_runs([experiment.experiment_id]))


def _kill_after_finished(workdir: Path, uri: str, space: Path, finished: int) -> None:
    """Launches the search and SIGKILLs its driver, then every process it started, once
    ``finished`` trial runs are FINISHED in MLflow."""
    # The store exists before the driver starts: this test reads it while the driver writes, and
    # two processes creating a fresh sqlite store at once race on its schema migrations.
    _trial_runs(uri)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "launch", "--space", str(space), "--tracking-uri", uri],
        cwd=workdir, env=cli_env(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    children: set[int] = set()
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            children.update(descendants(proc.pid))
            done = 0
            runs = _trial_runs(uri)
            done = sum(
                r.info.status == "FINISHED"
                for r in runs
                if r.data.tags.get("miml_tune.role") == "trial"
            )
            if done >= finished:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the search did not finish two trials in time")
        children.update(descendants(proc.pid))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for pid in children:  # the embedded Ray the driver started, now orphaned
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert_gone([proc.pid, *children])


def test_resume_after_sigkill_finishes_the_search_without_rerunning(workdir: Path) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    space = _space(workdir)
    _kill_after_finished(workdir, uri, space, finished=2)
    state = json.loads((workdir / "miml-tune-results" / "resumable" / "miml_tune_search.json")
                       .read_text())  # fmt: skip
    assert state["status"] == "running"  # as the killed driver left it

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    before = {
        r.data.tags["miml_tune.trial_id"]: r
        for r in _trial_runs(uri)
        if r.data.tags.get("miml_tune.role") == "trial" and r.info.status == "FINISHED"
    }
    assert len(before) >= 2

    def curve(run_id: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in client.get_metric_history(run_id, "average_precision")]

    history = {t: curve(r.info.run_id) for t, r in before.items()}

    result = cli(workdir, "resume", "--name", "resumable", "--tracking-uri", uri, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["trials"]["total"] == TRIALS
    resumed = summary["resumed"]
    assert resumed["searcher"] == "OptunaSearch" and resumed["sampler"] == "TPESampler"
    assert resumed["trials_before"] >= len(before)
    assert resumed["trials_after"] == TRIALS  # the restored study saw every trial

    runs = _trial_runs(uri)
    parents = [r for r in runs if r.data.tags.get("miml_tune.role") == "search"]
    children = [r for r in runs if r.data.tags.get("miml_tune.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].info.run_id == summary["mlflow"]["parent_run_id"] == state["parent_run_id"]
    assert parents[0].data.tags["miml_tune.resumes"] == "1"
    assert len(children) == TRIALS
    assert len({r.data.tags["miml_tune.trial_id"] for r in children}) == TRIALS
    assert all(r.info.status == "FINISHED" for r in children), [r.info for r in children]
    after = {r.data.tags["miml_tune.trial_id"]: r for r in children}
    for trial_id, run in before.items():  # no finished trial ran again
        assert after[trial_id].info.run_id == run.info.run_id
        assert after[trial_id].info.end_time == run.info.end_time
        assert curve(run.info.run_id) == history[trial_id]
    assert summary["best"]["trial_id"] in after
    for run in children:  # a trial run again has a run of its own: one value per epoch
        steps = [step for step, _ in curve(run.info.run_id)]
        assert len(steps) == len(set(steps)), (run.data.tags["miml_tune.trial_id"], steps)
    for old in (r for r in runs if r.data.tags.get("miml_tune.role") == "superseded"):
        again = after[old.data.tags["miml_tune.trial_id"]]
        assert again.data.tags["miml_tune.superseded_run"] == old.info.run_id
        assert int(again.data.tags["miml_tune.attempt"]) >= 2 and old.info.status == "KILLED"
    state = json.loads((workdir / "miml-tune-results" / "resumable" / "miml_tune_search.json")
                       .read_text())  # fmt: skip
    assert state["status"] == "finished"

    again = cli(workdir, "resume", "--name", "resumable", "--tracking-uri", uri)
    assert_one_line_error(
        again, "search resumable finished; nothing to resume", "miml-tune best --name resumable"
    )
    unknown = cli(workdir, "resume", "--name", "nosuch", "--tracking-uri", uri)
    assert_one_line_error(unknown, "no search named 'nosuch'", "searches there: resumable")
