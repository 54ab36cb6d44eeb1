"""Fractional GPU shares pack trials: a local Ray cluster that declares one logical GPU runs four
trials at once with ``--gpus-per-trial 0.25`` and two with ``0.5``. This machine has no CUDA, so
the trials also show the CPU fallback: they train on CPU, say so in MLflow, and the driver warns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.searches import SMALL_SPACE, cli_env

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
import ray
from tuner.search import LaunchOptions, launch
from tuner.spec import parse_space

ray.init(address="local", num_cpus=4, num_gpus=1, _node_ip_address="127.0.0.1",
         include_dashboard=False, log_to_driver=False)
spec = parse_space(open(sys.argv[1]).read())
summary = launch(spec, LaunchOptions(
    tracking_uri=sys.argv[2], storage=sys.argv[3], cpus_per_trial=0.5,
    gpus_per_trial=float(sys.argv[4]), name=spec.name))
ray.shutdown()
print(json.dumps(summary))
"""


def _max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The most intervals open at one moment (an end at the moment another starts: not both)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = running = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def test_max_overlap_counts_intervals_open_together() -> None:
    assert _max_overlap([(0, 10), (5, 15), (10, 20)]) == 2
    assert _max_overlap([(0, 1), (1, 2), (2, 3)]) == 1
    assert _max_overlap([(0, 9)] * 4) == 4


def _search(workdir: Path, gpus: float) -> tuple[dict[str, Any], list[Any], str]:
    name = f"pack-{int(gpus * 100)}"
    space = {
        **SMALL_SPACE,
        "name": name,
        "budget": {"trials": 8, "max_epochs": 3},
        "scheduler": {"name": "fifo"},
        "sampler": "random",
        "params": {**SMALL_SPACE["params"], "epochs": 3},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), uri, str(workdir / "results"), str(gpus)],
        cwd=workdir,
        env=cli_env(workdir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`miml_tune.role` = 'trial'"
    )
    return summary, runs, proc.stderr


# One share size (a 0.5 share packing 2 was the same test at 70 s more of CI).
@pytest.mark.parametrize(("gpus", "at_once"), [(0.25, 4)])
def test_gpu_shares_pack_trials_and_fall_back_to_cpu(
    workdir: Path, gpus: float, at_once: int
) -> None:
    summary, runs, stderr = _search(workdir, gpus)
    assert summary["trials"]["total"] == 8 and summary["trials"]["completed"] == 8
    assert len(runs) == 8
    # A trial's span: from its run's start (the driver's on_trial_start) to its last result
    # (the driver logs each result as it arrives; the run itself is closed a little later, once
    # Tune has saved the trial as finished).
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    spans = [
        (
            r.info.start_time,
            max(m.timestamp for m in client.get_metric_history(r.info.run_id, "average_precision")),
        )
        for r in runs
    ]
    overlap = _max_overlap(spans)
    # One logical GPU: 1 / gpus trials fit on it (the CPUs would hold 8).
    assert overlap == at_once, spans
    assert {r.data.tags["miml_tune.device"] for r in runs} == {"cpu"}
    assert "sees no CUDA device: trials will train on CPU" in stderr
