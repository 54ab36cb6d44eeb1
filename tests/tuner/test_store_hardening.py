"""Bad tracking stores and output paths are one line each (issue 12, items 6 to 9): a file that is
not a database, a damaged (truncated) store, a store that does not exist for the commands that
read a search back (none is created), and ``predict --out`` naming a folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.searches import assert_one_line_error, run_main

READERS = {
    "best": ["best", "--name", "birds"],
    "report": ["report", "--name", "birds"],
    "promote": ["promote", "--name", "birds"],
    "predict": ["predict", "--model", "models:/birds@champion", "--data", "birds"],
}


@pytest.fixture(autouse=True)
def _in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _store(tmp_path: Path) -> Path:
    """A real MLflow sqlite store with an experiment and a run in it."""
    from mlflow.tracking import MlflowClient

    path = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    experiment = client.create_experiment("birds", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(experiment)
    for step in range(200):
        client.log_metric(run.info.run_id, "average_precision", step / 200, step=step)
    client.set_terminated(run.info.run_id)
    return path


def test_a_file_that_is_not_a_database_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    uri = f"sqlite:///{junk}"
    result = run_main(capsys, "launch", "--space", "birds", "--tracking-uri", uri)
    assert_one_line_error(result, str(junk), "is not an SQLite database")
    assert not (tmp_path / "miml-tune-results").exists()
    for args in READERS.values():
        result = run_main(capsys, *args, "--tracking-uri", uri)
        assert_one_line_error(result, "is not an SQLite database")


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_missing_store_is_named_and_not_created(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fresh").mkdir()
    store = tmp_path / "fresh" / "mlflow.db"
    result = run_main(capsys, *READERS[command], "--tracking-uri", f"sqlite:///{store}")
    assert_one_line_error(result, f"no MLflow store at {store}", "--tracking-uri")
    assert not store.exists()


@pytest.mark.parametrize("command", sorted(READERS))
def test_a_damaged_store_is_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store(tmp_path)
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])  # truncated: the header is intact, pages are not
    result = run_main(capsys, *READERS[command], "--tracking-uri", f"sqlite:///{store}")
    assert_one_line_error(result, "database disk image is malformed", "damaged", "--tracking-uri")


def test_predict_out_naming_a_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out.csv").mkdir()
    result = run_main(capsys, *READERS["predict"], "--out", "out.csv")
    assert_one_line_error(result, "--out out.csv is a folder", ".csv")


OPEN = """
import os, sys, time
from mlflow.tracking import MlflowClient  # imported before the start line: the race is the open
from tuner import tracking
go, uri, name = sys.argv[1:]
open(go + "." + name, "w").close()  # ready
while not os.path.exists(go):
    time.sleep(0.01)
client = tracking.open_store(uri)
run = client.create_run(tracking.ensure_experiment(client, name, uri))
client.set_terminated(run.info.run_id)
"""


def test_processes_opening_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    uri, go = f"sqlite:///{tmp_path / 'new.db'}", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(go), uri, f"search-{i}"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("go.search-*"))) < 4:  # all have imported MLflow
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        go.touch()
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)
    assert [p.returncode for p in procs] == [0] * 4, [e[-1500:] for e in errors]
    client = MlflowClient(tracking_uri=uri)
    names = {e.name for e in client.search_experiments()} - {"Default"}
    assert names == {f"search-{i}" for i in range(4)}
    for experiment in client.search_experiments():
        if experiment.name != "Default":
            assert len(client.search_runs([experiment.experiment_id])) == 1
