"""Faults during a search: a trial whose worker process dies is retried and finishes in the same
MLflow run; an unreachable MLflow tracking server is reported before anything starts. (A trial
that raises, or whose loss is not finite, is an error once and the search goes on: see
test_search.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.searches import SMALL_SPACE, assert_one_line_error, cli, cli_env
from tests.servers import assert_gone, descendants, free_port


def _trial_worker(driver: int) -> int | None:
    """The PID of the Ray worker process running a trial of the search ``driver`` leads."""
    for pid in descendants(driver):
        try:
            title = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if title.startswith("ray::ImplicitFunc.train"):
            return pid
    return None


@pytest.mark.slow
def test_a_trial_whose_worker_dies_is_retried_in_the_same_run(workdir: Path) -> None:
    space = {
        **SMALL_SPACE,
        "name": "faults",
        "budget": {"trials": 2, "max_epochs": 4, "concurrency": 1},
        "scheduler": {"name": "fifo"},
        "sampler": "random",
        "params": {**SMALL_SPACE["params"], "epochs": 4},
    }
    path = workdir / "faults.yaml"
    path.write_text(yaml.safe_dump(space))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "launch", "--space", str(path), "--tracking-uri", uri,
         "--json"],
        cwd=workdir, env=cli_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    started: set[int] = set()
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            started.update(descendants(proc.pid))
            worker = _trial_worker(proc.pid)
            if worker is not None:
                time.sleep(0.5)  # inside the trial's first epochs
                os.kill(worker, signal.SIGKILL)
                killed = worker
            time.sleep(0.1)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed is not None, "no trial worker was seen"
    assert proc.returncode == 0, err[-3000:]
    assert_gone(started, timeout=30)
    summary = json.loads(out)
    assert summary["trials"] == {"total": 2, "completed": 2, "pruned": 0, "stopped": 0, "error": 0}

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("faults")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("miml_tune.role") == "trial"]
    assert len(trials) == 2  # the retried trial kept its run
    retried = [r for r in trials if r.data.tags.get("miml_tune.retries")]
    assert len(retried) == 1, [r.data.tags for r in trials]
    run = retried[0]
    assert run.data.tags["miml_tune.retries"] == "1"
    assert run.info.status == "FINISHED" and run.data.tags["miml_tune.status"] == "completed"
    failure = run.data.tags["miml_tune.last_failure"].lower()
    assert any(word in failure for word in ("actor", "worker", "died", "crash")), failure
    assert run.data.metrics["average_precision"] > 0


def test_an_unreachable_tracking_server_is_reported_before_anything_starts(workdir: Path) -> None:
    port = free_port()
    result = cli(
        workdir, "launch", "--space", "birds", "--tracking-uri", f"http://127.0.0.1:{port}",
        "--trials", "2",
    )  # fmt: skip
    assert_one_line_error(result, f"http://127.0.0.1:{port}", "unreachable")
    assert not (workdir / "miml-tune-results").exists()
    assert not (workdir / "ray").exists()  # no Ray started (its session folder is under TMPDIR)
