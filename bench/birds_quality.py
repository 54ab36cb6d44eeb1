"""GAMIL-C on Birds: the search's CV metrics, then holdout scores of the refit best configuration.

Runs (or reads back from MLflow) a search, refits its best configuration on the whole development
data for the best trial's epochs, and scores it on the 20 % holdout the search never saw, with
``bag_mean_linear`` refit and scored the same way beside it.

    python bench/birds_quality.py --space birds                       # run the default budget
    python bench/birds_quality.py --space birds --trials 30 --max-epochs 40 --name birds-large
    python bench/birds_quality.py --name birds --tracking-uri sqlite:////tmp/x/mlflow.db  # reuse
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tuner import tracking
from tuner.metrics import BAG_METRICS, mode_of
from tuner.promote import refit, score
from tuner.search import PEER_MODEL, LaunchOptions, launch, prepare_data
from tuner.spec import load_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="birds")
    parser.add_argument("--name")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--tracking-uri", help="read the finished search NAME from this store")
    parser.add_argument("--out", default="bench/out")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tracking_uri:
        summary = tracking.read_summary(args.name, args.tracking_uri)
        spec = load_space(summary["space"]).with_overrides(seed=summary["seed"])
    else:
        spec = load_space(args.space).with_overrides(trials=args.trials, max_epochs=args.max_epochs)
        started = time.monotonic()
        summary = launch(
            spec,
            LaunchOptions(
                name=args.name,
                tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}",
                storage=str(out / "results"),
                overwrite=True,
            ),
        )
        summary["bench_search_seconds"] = round(time.monotonic() - started, 1)

    _, dev, holdout = prepare_data(spec, None)
    best = summary["best"]
    started = time.monotonic()
    model = refit(spec.model, best["config"], dev, epochs=int(best["epochs"]), seed=spec.seed)
    refit_seconds = time.monotonic() - started
    holdout_best = score(model, holdout)
    holdout_peer = score(refit(PEER_MODEL, {}, dev, epochs=1, seed=spec.seed), holdout)

    result = {
        "search": summary,
        "holdout": {"best": holdout_best, "peer": holdout_peer},
        "refit_seconds": round(refit_seconds, 1),
    }
    name = summary["name"]
    (out / f"{name}_quality.json").write_text(json.dumps(result, indent=2))

    print(f"search {name!r}: {summary['trials']} in {summary.get('elapsed_seconds')} s")
    print(f"best config: {json.dumps(best['config'], sort_keys=True)} ({best['epochs']} epochs)")
    print()
    print(
        f"| metric | GAMIL-C CV ({spec.cv_repeats}x{spec.cv_folds}) | peer CV | "
        "GAMIL-C holdout | peer holdout |"
    )
    print("|---|---|---|---|---|")
    for metric in BAG_METRICS:
        cv, peer = best["metrics"][metric], summary["peer"]["metrics"][metric]
        arrow = "↑" if mode_of(metric) == "max" else "↓"
        print(
            f"| {metric} {arrow} | {cv['mean']:.4f} ± {cv['std']:.4f} | "
            f"{peer['mean']:.4f} ± {peer['std']:.4f} | {holdout_best[metric]:.4f} | "
            f"{holdout_peer[metric]:.4f} |"
        )


if __name__ == "__main__":
    main()
