"""End to end: the real CLI, real local Ray, a real sqlite MLflow store, the real Birds data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED_DATA
from tests.searches import SMALL_SPACE, assert_one_line_error, cli

pytestmark = pytest.mark.slow

# Small but real: GAMIL-C with settings that learn in a few epochs, searched over lr and K.
TEST_SPACE = {
    **SMALL_SPACE,
    "name": "birds-small",
    "budget": {"trials": 4, "max_epochs": 12},
    "scheduler": {"name": "asha", "grace_period": 4, "reduction_factor": 2},
    "params": {
        "lr": [5.0e-3, 3.0e-3],
        "k": [3, 5],
        "epochs": 12,
        "batch_size": 32,
        "hidden": 128,
        "heads": 4,
        "beta": 0.1,
    },
}


def test_launch_logs_a_search_and_beats_the_peer(workdir: Path) -> None:
    space = workdir / "space.yaml"
    space.write_text(yaml.safe_dump(TEST_SPACE))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result = cli(workdir, "launch", "--space", str(space), "--tracking-uri", uri, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert "trials 4/4 ended" in result.stderr  # the live progress line, last shown at the end
    assert re.search(r"^trial \w+ (done|pruned) at epoch \d+/\d+", result.stderr, re.M)  # events

    assert summary["trials"]["total"] == 4
    assert summary["trials"]["completed"] >= 1
    assert summary["trials"]["error"] == 0
    assert set(summary["best"]["config"]) >= {"lr", "k", "hidden"}
    bags = summary["bags"]
    assert bags["development"] + bags["holdout"] == 257 and abs(bags["holdout"] - 51) <= 1
    best_ap = summary["best"]["metrics"]["average_precision"]["mean"]
    peer_ap = summary["peer"]["metrics"]["average_precision"]["mean"]
    assert best_ap > peer_ap, (best_ap, peer_ap)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("birds-small")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("miml_tune.role") == "search"]
    children = [r for r in runs if r.data.tags.get("miml_tune.role") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["seed"] == "0"
    assert parent.data.tags["miml_tune.dataset_fingerprint"] == summary["dataset_fingerprint"]
    assert parent.data.tags["miml_tune.version"]
    # The data file by name, and as the runs' MLflow dataset input (the UI's Dataset column).
    source = parent.data.params["dataset_source"]
    assert summary["data"] == {
        "name": Path(source).name,
        "path": source,
        "space_dataset": "birds",
        "matches_space": True,
    }
    for run in (parent, children[0]):
        (logged,) = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert logged.dataset.digest == summary["dataset_fingerprint"]
        assert logged.dataset.name == "birds"
        assert json.loads(logged.dataset.source) == {"uri": source}
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"space.yaml", "best_config.json", "leaderboard.csv", "best.json"} <= artifacts
    board = Path(client.download_artifacts(parent.info.run_id, "leaderboard.csv")).read_text()
    assert len(board.strip().splitlines()) == 5
    statuses = set()
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        statuses.add(child.data.tags["miml_tune.status"])
        history = client.get_metric_history(child.info.run_id, "average_precision")
        steps = sorted(m.step for m in history)
        assert steps == list(range(1, len(steps) + 1)) and steps
        assert "average_precision_std" in child.data.metrics
        if child.data.tags["miml_tune.status"] == "completed":
            assert {f"fold{i:02d}.average_precision" for i in range(3)} <= child.data.metrics.keys()
        assert child.data.params["hidden"] == "128"
    assert statuses <= {"completed", "pruned"} and "completed" in statuses

    again = cli(workdir, "best", "--name", "birds-small", "--tracking-uri", uri, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["best"] == summary["best"]
    text = cli(workdir, "best", "--name", "birds-small", "--tracking-uri", uri)
    assert "average_precision ↑" in text.stdout and "bag_mean_linear" in text.stdout
    # The decisive summary (issue 13): headline metrics only, a verdict against the peer on the
    # objective, and the next commands with this search's name and store filled in.
    assert "the tuned model against the peers on average_precision (same folds):" in text.stdout
    # The store is the working folder's mlflow.db, which a bare command finds: not repeated.
    assert "\n  figures:   miml-tune report --name birds-small\n" in text.stdout
    assert "macro_f1" not in text.stdout and "more metrics with --all-metrics" in text.stdout
    every = cli(workdir, "best", "--name", "birds-small", "--tracking-uri", uri, "--all-metrics")
    assert "macro_f1" in every.stdout and "precision_at_1" in every.stdout


def test_diverging_trial_is_an_error_and_the_search_goes_on(workdir: Path) -> None:
    space = dict(TEST_SPACE, name="diverge", sampler="random")
    # lr 1e9 makes the loss non-finite in the first epoch; the seeded random sampler proposes
    # 1e-3, 1e9, 1e-3 (Optuna's RandomSampler with seed 0), so one of three trials fails.
    space["params"] = dict(TEST_SPACE["params"], lr=[1.0e9, 1.0e-3], k=3, epochs=2)
    space["budget"] = {"trials": 3, "max_epochs": 2}
    path = workdir / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    # Through --data when the shared copy of the Birds file is there (same bags as the bundled).
    shared = SHARED_DATA / "miml" / "birds.arff"
    data = ["--data", str(shared)] if shared.is_file() else []
    result = cli(workdir, "launch", "--space", str(path), "--tracking-uri", uri, "--json", *data)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    if data:
        parent = summary["mlflow"]["parent_run_id"]
        from mlflow.tracking import MlflowClient

        source = MlflowClient(tracking_uri=uri).get_run(parent).data.params["dataset_source"]
        assert source == str(shared.resolve())
    assert summary["trials"] == {"total": 3, "completed": 2, "pruned": 0, "stopped": 0, "error": 1}
    assert summary["best"]["config"]["lr"] == 1.0e-3

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("diverge")
    runs = client.search_runs([experiment.experiment_id])
    failed = [r for r in runs if r.data.tags.get("miml_tune.status") == "error"]
    assert len(failed) == 1
    assert failed[0].info.status == "FAILED"
    assert failed[0].data.params["lr"] == "1000000000.0"
    assert "NonFiniteLossError" in failed[0].data.tags["miml_tune.error"]
    assert "loss is nan" in failed[0].data.tags["miml_tune.error"]
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_trials_that_could_never_be_scheduled_are_refused(workdir: Path) -> None:
    uri = f"sqlite:///{workdir / 'store.db'}"
    result = cli(
        workdir, "launch", "--space", "birds", "--tracking-uri", uri, "--cpus-per-trial", "64"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --cpus-per-trial 64 exceeds the")
    assert not (workdir / "store.db").exists(), "nothing may be written to MLflow"
    assert not (workdir / "miml-tune-results").exists(), "nor to the storage folder"


def test_partial_label_search_on_mulan_yeast_with_its_official_test_split(workdir: Path) -> None:
    """A shipped SARB space on real Mulan data through the real CLI: the official test split is
    the holdout, the peers train on the same hidden labels and are scored on the same folds."""
    yeast = SHARED_DATA / "mulan" / "yeast-train.arff"
    if not yeast.is_file():
        pytest.skip(f"Mulan yeast not found at {yeast} (set MIML_TUNE_SHARED_DATA)")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    args = ["--trials", "2", "--max-epochs", "3", "--concurrency", "2", "--json"]
    result = cli(
        workdir, "launch", "--space", "yeast_sarb_p50", "--data", str(yeast),
        "--tracking-uri", uri, *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["model"] == "sarb" and summary["dataset"] == "yeast"
    assert summary["holdout_kind"] == "official test split"
    assert summary["bags"] == {"development": 1500, "holdout": 917}
    assert summary["known_labels"] == 0.5
    assert set(summary["peers"]) == {"bag_mean_linear", "bag_mean_mlp"}
    best = summary["best"]["metrics"]
    assert {"mean_average_precision", "example_f1", "precision_at_1"} <= set(best)
    # Trained on half the labels for three epochs, SARB still ranks labels better than the
    # label-frequency predictor does on yeast's training folds (mAP about 0.30).
    assert best["mean_average_precision"]["mean"] > 0.35, best


def test_a_search_whose_every_trial_fails_says_so_once_and_is_not_resumed(workdir: Path) -> None:
    space = dict(TEST_SPACE, name="all-fail", sampler="random", peers=[])
    space["params"] = dict(TEST_SPACE["params"], lr=[1.0e9, 2.0e9], k=3, epochs=1)
    space["budget"] = {"trials": 2, "max_epochs": 1}
    path = workdir / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result = cli(workdir, "launch", "--space", str(path), "--tracking-uri", uri)
    assert result.returncode == 2
    # One line per failed trial and the error; the tracebacks are in the trials' runs.
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: search 'all-fail' finished")
    assert len(result.stderr.strip().splitlines()) <= 12, result.stderr[-3000:]

    resumed = cli(workdir, "resume", "--name", "all-fail", "--tracking-uri", uri)
    assert_one_line_error(resumed, "every trial failed", "nothing to resume", "--overwrite")


def _finished_trials(folder: Path, epochs: int) -> int:
    """Trials whose Tune result file reached their last epoch."""
    finished = 0
    for path in folder.rglob("result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        finished += any(row.get("epoch") == epochs for row in rows)
    return finished


def test_an_interrupted_search_counts_only_the_trials_that_ended(workdir: Path) -> None:
    """Ctrl-C while a trial trains: Tune stops it (and marks it TERMINATED), but the message
    counts only the trials that finished."""
    import re
    import signal
    import subprocess
    import sys
    import threading
    import time

    from tests.searches import cli_env

    space = dict(TEST_SPACE, name="interrupted", sampler="random", peers=[])
    space["scheduler"] = {"name": "fifo"}
    space["budget"] = {"trials": 4, "max_epochs": 12, "concurrency": 1}
    path = workdir / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "launch", "--space", str(path), "--tracking-uri", uri],
        cwd=workdir, env=cli_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    folder = workdir / "miml-tune-results" / "interrupted"
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 400
        while not any(", 1 done," in line for line in lines):  # the next trial now trains
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.1)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
        reader.join(timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    err = "".join(lines)
    assert proc.returncode == 130, err[-3000:]
    said = re.search(r"interrupted with (\d+) of 4 trials done", err)
    assert said, err[-3000:]
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("result.json"))
    assert int(said.group(1)) == _finished_trials(folder, 12) < 4, (said.group(0), files)
