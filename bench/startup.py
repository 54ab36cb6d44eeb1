"""The fixed cost of a launch: from the command to the first trial training, before and after.

Runs the README's quick launch (``miml-tune launch --space birds --trials 4 --max-epochs 3
--cv-repeats 1``) as a new user would, in a fresh process and a fresh folder, for each checkout
given, interleaved (A B A B ...), and reads from Tune's own trial files when the first trial's
function started (its first result's ``timestamp - time_total_s``) and when its first epoch
was reported. Medians and every run are printed with the machine's load.

    python bench/startup.py --checkout before=/tmp/old-main --checkout after=. --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = ["launch", "--space", "birds", "--trials", "4", "--max-epochs", "3", "--cv-repeats", "1"]


def one_launch(checkout: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mt-startup-") as tmp:
        env = dict(os.environ, PYTHONPATH=str(checkout.resolve()), HOME=tmp, TMPDIR=tmp)
        env.update(RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true")
        env.pop("MLFLOW_TRACKING_URI", None)
        load = os.getloadavg()[0]
        started = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "tuner.cli", *COMMAND, "--json"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        ended = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"{checkout}: launch failed: {proc.stderr[-2000:]}")
        firsts = []
        for path in Path(tmp, "miml-tune-results", "birds").glob("*/result.json"):
            row = json.loads(path.read_text().splitlines()[0])
            firsts.append((row["timestamp"] - row["time_total_s"], row["timestamp"]))
        trial_start, first_epoch = min(firsts)
        return {
            "to_first_trial_s": round(trial_start - started, 1),
            "to_first_epoch_s": round(first_epoch - started, 1),
            "total_s": round(ended - started, 1),
            "load": round(load, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", required=True, help="LABEL=PATH")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    checkouts = dict(item.split("=", 1) for item in args.checkout)
    results: dict[str, list[dict[str, float]]] = {label: [] for label in checkouts}
    for i in range(args.runs):
        for label, path in checkouts.items():
            result = one_launch(Path(path))
            results[label].append(result)
            print(f"run {i + 1} {label}: {result}", flush=True)
    print(f"\ncommand: miml-tune {' '.join(COMMAND)}")
    print("| checkout | to first trial (s) | to first epoch (s) | whole launch (s) | load |")
    print("|---|---|---|---|---|")
    for label, runs in results.items():

        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        print(
            f"| {label} | {med('to_first_trial_s')} | {med('to_first_epoch_s')} | "
            f"{med('total_s')} | {min(r['load'] for r in runs)}-{max(r['load'] for r in runs)} |"
        )


if __name__ == "__main__":
    main()
