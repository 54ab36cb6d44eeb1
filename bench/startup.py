"""The fixed cost of a launch: from the command to the first trial training, before and after.

Runs the README's quick launch (``miml-tune launch --space birds --trials 4 --max-epochs 3
--cv-repeats 1``) as a new user would, in a fresh process and a fresh folder, for each checkout
given, interleaved (A B A B ...), and reads from Tune's own trial files when the first trial's
function started (its first result's ``timestamp - time_total_s``) and when its first epoch
was reported. Medians and every run are printed with the machine's load.

The breakdown of the fixed cost: the launch runs under a small wrapper (:data:`WRAPPER`) that
stamps the wall clock around the driver's phases (the data, the Ray start) by wrapping the
driver's own functions, whichever module of the checkout holds them, so the same script
measures a checkout from before the search became a package and one from after:
- imports: the command's start to the driver's first phase (Python, click, the libraries);
- data: loading and splitting the Birds set;
- checks: the tracking store and the storage folder;
- ray: the embedded cluster's start;
- to trial: from Ray's start to the first trial's function starting (the MLflow run and
  experiment, Tune's set-up, the trial worker's start and imports);
- first epoch: the first trial's function start to its first reported epoch.

    python bench/startup.py --checkout before=/tmp/old-main --checkout after=. --runs 3

``--warm`` adds, for each checkout, the same launch onto a local Ray head kept running between
launches (``ray start --head --block`` on 127.0.0.1, token authentication on, started by this
script before the runs and stopped after by ending that process): what a user who launches
again and again gets with ``--address 127.0.0.1:PORT``. Its ``ray`` phase is the attach.

    python bench/startup.py --checkout after=. --runs 3 --warm
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs the CLI with the driver's phases stamped: each wrapped function records its start and end.
WRAPPER = r"""
import importlib.abc, importlib.util, json, os, sys, time, atexit
stamps = {}
def timed(original, label):
    def run(*args, **kwargs):
        stamps.setdefault(label + "_start", time.time())
        try:
            return original(*args, **kwargs)
        finally:
            stamps.setdefault(label + "_end", time.time())
    return run
def patch(module):
    for name, label in (("prepare_data", "data"), ("load_data", "data"), ("start_ray", "ray"),
                        ("_start_ray", "ray")):
        if hasattr(module, name):
            setattr(module, name, timed(getattr(module, name), label))
class Stamper(importlib.abc.MetaPathFinder):
    # Patches the driver's module once the CLI imports it, so imports happen when they would.
    def find_spec(self, fullname, path, target=None):
        if fullname not in ("tuner.search.driver", "tuner.search"):
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        execute = spec.loader.exec_module
        def exec_module(module):
            execute(module)
            patch(module)
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Stamper())
atexit.register(lambda: open(os.environ["MT_STAMPS"], "w").write(json.dumps(stamps)))
from tuner.cli import main
sys.argv = ["miml-tune", *sys.argv[1:]]
main()
"""

COMMAND = ["launch", "--space", "birds", "--trials", "4", "--max-epochs", "3", "--cv-repeats", "1"]


def one_launch(checkout: Path, address: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mt-startup-") as tmp:
        env = dict(os.environ, PYTHONPATH=str(checkout.resolve()), HOME=tmp, TMPDIR=tmp)
        env.update(RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true")
        env.pop("MLFLOW_TRACKING_URI", None)
        if address:  # what Ray asks of a client of a cluster with token authentication
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=WARM_TOKEN)
        env["MT_STAMPS"] = stamps_path = str(Path(tmp, "stamps.json"))
        load = os.getloadavg()[0]
        started = time.time()
        proc = subprocess.run(
            [sys.executable, "-c", WRAPPER, *COMMAND, "--json"]
            + (["--address", address] if address else []),
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
        stamps = json.loads(Path(stamps_path).read_text())
        return {
            "imports_s": round(stamps["data_start"] - started, 1),
            "data_s": round(stamps["data_end"] - stamps["data_start"], 1),
            "checks_s": round(stamps["ray_start"] - stamps["data_end"], 1),
            "ray_s": round(stamps["ray_end"] - stamps["ray_start"], 1),
            "to_trial_s": round(trial_start - stamps["ray_end"], 1),
            "first_epoch_s": round(first_epoch - trial_start, 1),
            "to_first_trial_s": round(trial_start - started, 1),
            "to_first_epoch_s": round(first_epoch - started, 1),
            "total_s": round(ended - started, 1),
            "load": round(load, 1),
        }


WARM_PORT = 6390
WARM_TOKEN = secrets.token_hex(32)  # the head's token authentication, as a user's cluster has it


def start_head() -> subprocess.Popen[bytes]:
    """``ray start --head --block`` on loopback: it stays in the foreground, and ends the head's
    processes when it is stopped (:func:`stop_head`), so no other Ray on the machine is touched."""
    import socket

    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    env["RAY_AUTH_TOKEN"] = WARM_TOKEN
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
         "--node-ip-address", "127.0.0.1", "--port", str(WARM_PORT),
         "--include-dashboard", "false", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", WARM_PORT)) == 0:
                time.sleep(5)  # the raylet registers after the GCS listens
                return proc
        time.sleep(0.5)
    stop_head(proc)
    raise SystemExit("the local Ray head did not start in 120 s")


def stop_head(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", required=True, help="LABEL=PATH")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm", action="store_true", help="also onto a running local head")
    args = parser.parse_args()
    checkouts = dict(item.split("=", 1) for item in args.checkout)
    cases: list[tuple[str, Path, str | None]] = [
        (label, Path(path), None) for label, path in checkouts.items()
    ]
    address = f"127.0.0.1:{WARM_PORT}"
    if args.warm:
        cases += [(f"{label}, warm head", Path(path), address) for label, path in checkouts.items()]
        head = start_head()
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in cases}
    try:
        for i in range(args.runs):
            for label, path, where in cases:
                result = one_launch(path, where)
                results[label].append(result)
                print(f"run {i + 1} {label}: {result}", flush=True)
    finally:
        if args.warm:
            stop_head(head)
    print(f"\ncommand: miml-tune {' '.join(COMMAND)}")
    phases = ["imports_s", "data_s", "checks_s", "ray_s", "to_trial_s", "first_epoch_s"]
    print(
        "| checkout | "
        + " | ".join(p.removesuffix("_s") for p in phases)
        + " | to first trial (s) | to first epoch (s) | whole launch (s) | load |"
    )
    print("|---" * (len(phases) + 5) + "|")
    for label, runs in results.items():

        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        print(
            f"| {label} | "
            + " | ".join(str(med(p)) for p in phases)
            + f" | {med('to_first_trial_s')} | {med('to_first_epoch_s')} | "
            f"{med('total_s')} | {min(r['load'] for r in runs)}-{max(r['load'] for r in runs)} |"
        )


if __name__ == "__main__":
    main()
