"""Orchestration overhead: one fixed configuration's full CV inside a Tune trial vs called directly.

Both runs use one CPU thread, the same data, folds and seed, and must give the same metrics. The
Tune run is a complete ``launch()`` of a one-trial search (OptunaSearch, the MLflow callbacks, the
object store, a worker process that imports torch and PyG). Three ratios against the direct run:

- ``trial``: the trial's own running time as Tune measures it (``time_total_s``): what every
  trial of a search pays for being run by Tune (reporting each epoch, waiting for the driver).
- ``search``: ``Tuner.fit()`` wall time, adding the one-off start of the worker process and its
  imports (reused by the next trials of a search with ``reuse_actors``).
- ``launch``: the whole ``launch()``, adding the MLflow store, the peer model's CV and the
  summary; Ray's own start-up is printed separately.

    python bench/overhead.py [--epochs 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

CONFIG = {"hidden": 256, "heads": 4, "batch_size": 64, "lr": 5.0e-3, "beta": 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from tuner.search import LaunchOptions, launch, prepare_data
    from tuner.spec import parse_space
    from tuner.trial import CVProtocol, run_cv

    space = {
        "name": "overhead",
        "model": "gamil_c",
        "dataset": "birds",
        "metric": "average_precision",
        "cv": {"folds": 3, "repeats": args.repeats},
        "budget": {"trials": 1, "max_epochs": args.epochs},
        "scheduler": {"name": "fifo"},
        "params": {**CONFIG, "epochs": args.epochs, "k": [5]},
    }
    spec = parse_space(yaml.safe_dump(space), source="overhead")
    _, dev, _ = prepare_data(spec, None)

    torch.set_num_threads(1)
    started = time.monotonic()
    direct = run_cv(
        "gamil_c",
        {**CONFIG, "epochs": args.epochs, "k": 5},
        dev,
        CVProtocol(3, args.repeats, 0),
    )
    direct_s = time.monotonic() - started

    import ray

    started = time.monotonic()
    ray.init(
        address="local", _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False
    )
    ray_init_s = time.monotonic() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        summary = launch(
            spec,
            LaunchOptions(tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}", storage=tmp),
        )
        tune_s = time.monotonic() - started
    ray.shutdown()

    same = abs(
        summary["best"]["metrics"]["average_precision"]["mean"]
        - direct.summary["average_precision"]
    )
    result = {
        "epochs": args.epochs,
        "folds": 3 * args.repeats,
        "direct_seconds": round(direct_s, 1),
        "trial_seconds": summary["best"]["seconds"],
        "search_seconds": summary["timing"]["search_seconds"],
        "launch_seconds": round(tune_s, 1),
        "ray_init_seconds": round(ray_init_s, 1),
        "ratio_trial": round(summary["best"]["seconds"] / direct_s, 3),
        "ratio_search": round(summary["timing"]["search_seconds"] / direct_s, 3),
        "ratio_launch": round(tune_s / direct_s, 3),
        "same_result": same < 1e-9,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
