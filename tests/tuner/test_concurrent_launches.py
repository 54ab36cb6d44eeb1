"""Launches at the same moment into one new sqlite store (issue 12): searches of different names
all finish with all their runs, and of two launches of one name exactly one runs while the other
exits 2 with one line. Real CLI processes, each with its own embedded Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.searches import SMALL_SPACE, cli_env

pytestmark = pytest.mark.slow

TRIALS = 1
TINY = {
    **SMALL_SPACE,
    "cv": {"folds": 2, "repeats": 1},
    "budget": {"trials": TRIALS, "max_epochs": 1, "concurrency": 1},
    "scheduler": {"name": "fifo"},
    "peers": [],
    "params": {**SMALL_SPACE["params"], "epochs": 1},
}


def _launch_at_once(
    workdir: Path, space: Path, uri: str, names: list[str]
) -> list[tuple[int, str, str]]:
    """``launch`` of each name, all started at the same moment; (exit status, stdout, stderr)."""
    command = [sys.executable, "-m", "tuner.cli", "launch", "--space", str(space)]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [
        subprocess.Popen(  # type: ignore[call-overload]
            [*command, "--name", name, "--tracking-uri", uri, "--json"],
            cwd=workdir,
            env=cli_env(workdir),
            **pipes,
        )
        for name in names
    ]
    try:
        outputs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:  # stopped by PID, whatever happened
            p.kill()
            p.wait(timeout=30)
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]


def test_launches_at_once_into_one_new_store(workdir: Path) -> None:
    space = workdir / "tiny.yaml"
    space.write_text(yaml.safe_dump(TINY))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    assert not (workdir / "mlflow.db").exists()
    # Two names and two launches of a third, all at once into the new store: the two names
    # finish, and of the third exactly one runs while the other is one line.
    names = ["c0", "c1", "same", "same"]
    ended = _launch_at_once(workdir, space, uri, names)
    same = ended[2:]
    for name, (code, _, err) in zip(names[:2], ended[:2], strict=True):
        assert code == 0, (name, err[-3000:])
    assert sorted(code for code, _, _ in same) == [0, 2], [err[-2000:] for _, _, err in same]
    refused = next(err for code, _, err in same if code == 2).strip().splitlines()
    assert len(refused) == 1 and refused[0].startswith("error: "), refused
    assert "same" in refused[0]
    # Then c0 again: a name that finished before.
    (again,) = _launch_at_once(workdir, space, uri, ["c0"])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    summaries = [json.loads(out) for code, out, _ in ended if code == 0]
    again_summary = json.loads(again[1]) if again[0] == 0 else {}
    assert sorted(s["name"] for s in summaries) == ["c0", "c1", "same"]
    for summary in summaries:
        experiment = client.get_experiment_by_name(summary["name"])
        runs = client.search_runs([experiment.experiment_id])
        parents = [r for r in runs if r.data.tags.get("miml_tune.role") == "search"]
        trials = [r for r in runs if r.data.tags.get("miml_tune.role") == "trial"]
        mine = [p for p in parents if p.info.run_id == summary["mlflow"]["parent_run_id"]]
        assert len(mine) == 1 and mine[0].info.status == "FINISHED", summary["name"]
        assert len(parents) == (2 if summary["name"] == "c0" else 1), summary["name"]
        assert len(trials) == TRIALS * len(parents), summary["name"]
        assert summary["trials"]["total"] == TRIALS
        assert all(r.info.status == "FINISHED" for r in trials), summary["name"]

    # A launch of a name that finished before says it adds a new parent run beside the old one.
    assert again[0] == 0, again[2][-3000:]
    notes = [line for line in again[2].splitlines() if line.startswith("note: search 'c0' ran")]
    assert len(notes) == 1 and "adds a new parent run to MLflow experiment 'c0'" in notes[0]
    experiment = client.get_experiment_by_name("c0")
    parents = client.search_runs([experiment.experiment_id], "tags.`miml_tune.role` = 'search'")
    assert again_summary["mlflow"]["parent_run_id"] in {p.info.run_id for p in parents}
