"""Orchestration overhead: one fixed configuration's full CV inside a Tune trial vs called directly.

Both runs use one CPU thread, the same data, folds and seed. The Tune run is a complete
``launch()`` of a one-trial search (OptunaSearch, ASHA, the MLflow callbacks, the object store,
a worker process that imports torch and PyG), timed with Ray already started, since a search
starts Ray once, not per trial. The Ray start-up time is printed separately.

    python bench/overhead.py [--epochs 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

CONFIG = {"hidden": 128, "heads": 4, "batch_size": 64, "lr": 5.0e-3, "beta": 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
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
        "launch_seconds_with_ray_running": round(tune_s, 1),
        "ray_init_seconds": round(ray_init_s, 1),
        "ratio": round(tune_s / direct_s, 3),
        "ratio_including_ray_init": round((tune_s + ray_init_s) / direct_s, 3),
        "same_result": same < 1e-9,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
