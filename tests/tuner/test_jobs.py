"""Searches as Ray jobs, end to end: a real Ray head (token authentication on) and a real
``mlflow server``, both on 127.0.0.1; ``miml-tune submit`` and ``miml-tune jobs`` through the real
command line; the runs read back from the server; every process stopped by PID.
Bad input (a malformed address, a cluster nobody runs, a bad launch option) fails on this machine
with one line, before anything is sent."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import short_tmpdir
from tests.rayhead import RayHead, ray_head
from tests.searches import SMALL_SPACE, assert_one_line_error, cli, cli_env
from tests.servers import MlflowServer, free_port, mlflow_server, post_json

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Cluster:
    head: RayHead
    mlflow: MlflowServer


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One Ray head and one MLflow server for the module's tests, started side by side (each
    takes 10-15 s on two cores); both stopped by PID and checked gone."""
    folder = short_tmpdir()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        with ThreadPoolExecutor(max_workers=1) as pool:
            serving = mlflow_server(folder)
            started = pool.submit(serving.__enter__)
            try:
                head = stack.enter_context(ray_head(num_cpus=2))
            finally:
                server = started.result()  # wait for it even when the head failed
                stack.push(serving)
        yield Cluster(head, server)


def _space(workdir: Path, name: str, **budget: int) -> Path:
    """A small Birds space file: GAMIL-C, hidden 64, one repeat of 2-fold CV, no peers."""
    space = {
        **SMALL_SPACE,
        "name": name,
        "cv": {"folds": 2, "repeats": 1},
        "budget": {"trials": 2, "max_epochs": 2, **budget},
        "peers": [],
        "params": {**SMALL_SPACE["params"], "epochs": budget.get("max_epochs", 2), "hidden": 64},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def _run(workdir: Path, head: RayHead, *args: str) -> Any:
    return cli(workdir, *args, env=cli_env(workdir, **head.client_env()), timeout=120)


def _status(workdir: Path, head: RayHead, job_id: str) -> dict[str, Any]:
    result = _run(workdir, head, "jobs", "status", job_id, "--address", head.address, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(json.loads(result.stdout))


def _wait(workdir: Path, head: RayHead, job_id: str, until: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        info = _status(workdir, head, job_id)
        if info["status"] in until:
            return info
        time.sleep(2)
    pytest.fail(f"job {job_id} not {until} in {JOB_TIMEOUT_S:.0f} s: {info}")


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run.get("data", {}).get("tags", [])}


def _runs(server: MlflowServer, experiment: str) -> dict[str, list[dict[str, Any]]]:
    """The experiment's runs on the server (REST API), by their miml_tune.role tag."""
    api = f"{server.url}/api/2.0/mlflow"
    found = post_json(f"{api}/experiments/search", {"max_results": 1000})
    [experiment_id] = [
        e["experiment_id"] for e in found.get("experiments", []) if e["name"] == experiment
    ]
    runs = post_json(f"{api}/runs/search", {"experiment_ids": [experiment_id]}).get("runs", [])
    by_role: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_role.setdefault(_tags(run).get("miml_tune.role", ""), []).append(run)
    return by_role


def _wait_trials_started(server: MlflowServer, experiment: str) -> None:
    """Waits until the search's parent run and a first trial run exist on the server."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(ValueError):
            if _runs(server, experiment).get("trial"):
                return
        time.sleep(1)
    pytest.fail(f"no trial of {experiment} started in {JOB_TIMEOUT_S:.0f} s")


def _driver_attached(head: RayHead, job_id: str) -> bool:
    """Whether the job's driver connected to the cluster itself (a Ray job id was given to it),
    rather than starting an embedded Ray of its own inside the job."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(
        head.address, headers={"Authorization": f"Bearer {head.token}"} if head.token else None
    )
    return client.get_job_info(job_id).job_id is not None


def test_submit_a_search_as_a_job(cluster: Cluster, workdir: Path) -> None:
    head, server = cluster.head, cluster.mlflow
    space = _space(workdir, "jobs-birds")
    submit = (
        "submit", "--address", head.address, "--tracking-uri", server.url, "--json",
        "--", "launch", "--space", str(space), "--name", "jobs-birds",
    )  # fmt: skip

    # Token authentication: without the token nothing is sent, and the line says what to set.
    refused = cli(workdir, *submit)
    assert_one_line_error(refused, head.address, "RAY_AUTH_TOKEN")

    result = _run(workdir, head, *submit)
    assert result.returncode == 0, result.stderr[-3000:]
    submitted = json.loads(result.stdout)
    job_id = submitted["job_id"]
    assert job_id.startswith("miml-tune-jobs-birds-")
    assert submitted["address"] == head.address
    # The space file was shipped in the job's working folder under its own name.
    assert "--space jobs-birds.yaml" in submitted["entrypoint"]
    assert "--address auto" in submitted["entrypoint"]
    # The default storage, relative, is pinned to this machine's folder (the head is here), so
    # a later `resume` finds the search.
    assert submitted["entrypoint"].endswith(f"--storage {workdir / 'miml-tune-results'}")

    info = _wait(workdir, head, job_id, {"SUCCEEDED", "FAILED", "STOPPED"})
    logs = _run(workdir, head, "jobs", "logs", job_id, "--address", head.address)
    assert logs.returncode == 0, logs.stderr[-2000:]
    assert info["status"] == "SUCCEEDED", (info, logs.stdout[-4000:])
    assert "jobs-birds" in logs.stdout
    assert _driver_attached(head, job_id)

    listed = _run(workdir, head, "jobs", "list", "--address", head.address, "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = {row["job_id"]: row for row in json.loads(listed.stdout)}
    assert rows[job_id]["status"] == "SUCCEEDED"
    assert rows[job_id]["start_time"]
    assert "tuner.cli launch" in rows[job_id]["entrypoint"]

    # The runs, as the tracking server has them: one finished search, its two trials.
    by_role = _runs(server, "jobs-birds")
    [parent] = by_role["search"]
    assert parent["info"]["status"] == "FINISHED"
    trials = by_role["trial"]
    assert len(trials) == 2
    for trial in trials:
        assert trial["info"]["status"] in ("FINISHED", "FAILED")
        assert _tags(trial)["mlflow.parentRunId"] == parent["info"]["run_id"]

    unknown = _run(workdir, head, "jobs", "status", "no-such-job", "--address", head.address)
    assert_one_line_error(unknown, "no-such-job", "jobs list")


def test_stop_a_running_job(cluster: Cluster, workdir: Path) -> None:
    head, server = cluster.head, cluster.mlflow
    space = _space(workdir, "jobs-long", trials=50, max_epochs=50)
    result = _run(
        workdir, head,
        "submit", "--address", head.address, "--tracking-uri", server.url, "--json",
        "--", "launch", "--space", str(space),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = json.loads(result.stdout)["job_id"]
    _wait(workdir, head, job_id, {"RUNNING"})
    _wait_trials_started(server, "jobs-long")

    stopped = _run(workdir, head, "jobs", "stop", job_id, "--address", head.address)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert stopped.stdout.strip() == f"{job_id}: STOPPED"
    assert _status(workdir, head, job_id)["status"] == "STOPPED"
    # Stopped as by Ctrl-C: the search ended its runs (none left RUNNING), so it can be resumed.
    by_role = _runs(server, "jobs-long")
    [parent] = by_role["search"]
    assert parent["info"]["status"] == "KILLED", _tags(parent)
    for trial in by_role.get("trial", []):
        assert trial["info"]["status"] != "RUNNING"


def test_bad_input_fails_here_in_one_line(workdir: Path) -> None:
    space = _space(workdir, "jobs-bad")
    launch = ("--", "launch", "--space", str(space))

    malformed = cli(workdir, "submit", "--address", "foo", *launch)
    assert_one_line_error(malformed, "'foo'", "http(s)://HOST:PORT")

    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = cli(workdir, "submit", "--address", nobody, *launch)
    assert_one_line_error(unreachable, nobody, "unreachable")
    for args in (("list",), ("status", "x"), ("logs", "x"), ("stop", "x")):
        assert_one_line_error(cli(workdir, "jobs", *args, "--address", nobody), "unreachable")

    bad_option = cli(workdir, "submit", "--address", nobody, *launch, "--trials", "x")
    assert_one_line_error(bad_option, "--trials", "'x'")

    not_launch = cli(workdir, "submit", "--address", nobody, "--", "promote", "--name", "x")
    assert_one_line_error(not_launch, "launch", "resume", "'promote'")

    remote_file_store = cli(
        workdir, "submit", "--address", "http://10.0.0.1:8265",
        "--tracking-uri", "sqlite:///mlflow.db", *launch,
    )  # fmt: skip
    assert_one_line_error(remote_file_store, "http(s)://")

    # Checked here as launch checks them, before anything is sent.
    negative = cli(workdir, "submit", "--address", nobody, *launch, "--gpus-per-trial", "-1")
    assert_one_line_error(negative, "--gpus-per-trial must be >= 0")
    remote_relative = cli(
        workdir, "submit", "--address", "http://10.0.0.1:8265",
        "--tracking-uri", "http://10.0.0.1:5000", *launch,
    )  # fmt: skip
    assert_one_line_error(remote_relative, "is relative", "s3://")

    # Credentials in the URI would reach the job's environment, which the job list shows.
    for where in (("--tracking-uri", "http://ana:s3cret@10.0.0.1:5000"),):
        for placed in ((*where, *launch), (*launch, *where)):
            secret = cli(workdir, "submit", "--address", "http://10.0.0.1:8265", *placed)
            line = assert_one_line_error(secret, "MLFLOW_TRACKING_PASSWORD", "10.0.0.1:5000")
            assert "s3cret" not in line and "ana" not in line


def test_a_data_file_travels_with_the_files_read_beside_it(tmp_path: Path) -> None:
    from tuner.jobs import companion_files

    for name in ("yeast-train.arff", "yeast-test.arff", "yeast.xml", "birds.arff", "birds.xml"):
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in companion_files(tmp_path / "yeast-train.arff")) == [
        "yeast-test.arff",
        "yeast.xml",
    ]
    assert [p.name for p in companion_files(tmp_path / "birds.arff")] == ["birds.xml"]
    (tmp_path / "alone.arff").write_text("x")
    assert companion_files(tmp_path / "alone.arff") == []
