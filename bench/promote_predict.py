"""Time of ``miml-tune promote`` (refit + log + register) and ``miml-tune predict`` on Birds.

Runs one search of the ``birds`` space (a reduced trial budget by default: the search is not what
is measured), then promotes its best trial ``--repeats`` times and predicts the 257 Birds bags
with ``models:/NAME@champion`` as many times, each in a fresh process as a user would. Reports
the wall time of each command and the parts promote itself measures.

    python bench/promote_predict.py
    python bench/promote_predict.py --trials 10 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any


def run(workdir: str, env: dict[str, str], *args: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tuner.cli", *args, "--json"],
        cwd=workdir, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"miml-tune {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout)


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="birds")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="mtbench", dir="/tmp")
    env = dict(
        os.environ,
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_TRACKING_URI=f"sqlite:///{workdir}/mlflow.db",
        HOME=workdir,
        TMPDIR=workdir,
    )
    try:
        search_s, summary = run(
            workdir, env, "launch", "--space", args.space, "--trials", str(args.trials)
        )
        name = summary["name"]
        print(
            f"search {name}: {search_s:.0f} s, best trial {summary['best']['trial_id']} "
            f"({summary['best']['epochs']} epochs, config {summary['best']['config']})"
        )
        promote_wall: list[float] = []
        parts: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            seconds, result = run(workdir, env, "promote", "--name", name)
            promote_wall.append(seconds)
            for key, value in result["timing"].items():
                parts.setdefault(key, []).append(value)
        predict_wall: list[float] = []
        predict_inner: list[float] = []
        for _ in range(args.repeats):
            seconds, result = run(
                workdir, env, "predict", "--model", f"models:/{name}@champion", "--data", "birds",
                "--out", f"{workdir}/predictions.csv",
            )  # fmt: skip
            predict_wall.append(seconds)
            predict_inner.append(result["seconds"])
        print(f"\n| step | seconds (median of {args.repeats}) |\n|---|---|")
        print(f"| `promote` command, wall (fresh process) | {spread(promote_wall)} |")
        for key in ("refit_seconds", "log_seconds", "register_seconds", "total_seconds"):
            print(f"| promote: {key.replace('_seconds', '')} | {spread(parts[key])} |")
        print(f"| `predict` command, wall (fresh process, 257 bags) | {spread(predict_wall)} |")
        print(f"| predict: model.predict on 257 bags | {spread(predict_inner)} |")
        print(f"\nholdout {result_metric(workdir, env, name)}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def result_metric(workdir: str, env: dict[str, str], name: str) -> str:
    _, result = run(workdir, env, "promote", "--name", name)
    values = result["holdout"]
    return ", ".join(f"{k} {values[k]:.4f}" for k in ("average_precision", "one_error", "macro_f1"))


if __name__ == "__main__":
    main()
