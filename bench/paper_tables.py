"""The papers' tables: a space's model tuned under a stated budget, scored in CV and on the holdout.

For one shipped space (or several) this runs the space's search protocol without Ray or MLflow:
an Optuna sampler (the search's own, seeded) proposes configurations from the space's domains,
each trial is :func:`tuner.trial.run_cv` (the very function every Ray trial runs) on the
development data, reporting the fold-mean metric epoch by epoch to Optuna's successive-halving
pruner (ASHA's synchronous sibling, same grace period and reduction factor). The best completed
configuration is refit on all development data and scored once on the holdout (or the official
test split); every peer of the space is scored on the same folds and refit the same way. The
holdout chooses nothing.

It exists so the tables can be computed on a GPU machine where Ray's wheel cannot travel: a
search launched with ``miml-tune launch --space NAME`` runs the same trials under Ray Tune.

    python bench/paper_tables.py --space yeast_mulsupcon_ld --trials 12 --data-root ../shared/data
    python bench/paper_tables.py --space scene --trials 6 --cv-repeats 1 --device cuda

Writes ``OUT/NAME.json`` (every number) and prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.learners import resolve_learner
from tuner.metrics import ALL_METRICS, mode_of
from tuner.promote import refit, score
from tuner.search import prepare_data, sampler_for
from tuner.spec import SearchSpec, load_space
from tuner.trial import CVProtocol, run_cv


def suggest(trial: Any, spec: SearchSpec) -> dict[str, Any]:
    """One configuration from the space's domains (epochs capped as the search caps them)."""
    params, config = spec.searched()
    for key, domain in params.items():
        if domain.kind == "choice":
            config[key] = trial.suggest_categorical(key, list(domain.values))
        elif domain.kind == "int":
            config[key] = trial.suggest_int(key, *domain.values)
        else:
            low, high = domain.values
            config[key] = trial.suggest_float(key, low, high, log=domain.kind == "loguniform")
    return config


def tune(spec: SearchSpec, dev: Any, protocol: CVProtocol, device: str) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if spec.mode == "max" else "minimize"
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=spec.grace_period, reduction_factor=int(spec.reduction_factor)
    )
    study = optuna.create_study(
        direction=direction,
        sampler=sampler_for(spec.sampler, spec.seed, spec.trials),
        pruner=pruner,
    )
    study.enqueue_trial(spec.starting_point())  # as the Ray search does (points_to_evaluate)
    results: dict[int, Any] = {}

    def objective(trial: Any) -> float:
        config = suggest(trial, spec)

        def report(row: dict[str, Any]) -> None:
            trial.report(row[spec.metric], row["epoch"])
            if row["epoch"] < row["target_epochs"] and trial.should_prune():
                raise optuna.TrialPruned()

        started = time.monotonic()
        result = run_cv(
            spec.model,
            config,
            dev,
            protocol,
            max_epochs=spec.max_epochs,
            device=device,
            report=report,
        )
        results[trial.number] = {
            "config": config,
            "epochs": result.epochs,
            "summary": result.summary,
            "seconds": round(time.monotonic() - started, 1),
        }
        value = float(result.summary[spec.metric])
        print(f"  trial {trial.number}: {spec.metric} {value:.4f} {config}", flush=True)
        return value

    study.optimize(objective, n_trials=spec.trials, catch=(FloatingPointError,))
    states = [t.state.name for t in study.trials]
    best = results[study.best_trial.number]
    return {
        "best": best,
        "trials": {s.lower(): states.count(s) for s in set(states)},
    }


def run(spec: SearchSpec, data: str | None, device: str, out: Path) -> dict[str, Any]:
    started = time.monotonic()
    full, dev, holdout = prepare_data(spec, data)
    protocol = CVProtocol(spec.cv_folds, spec.cv_repeats, spec.seed, spec.known_labels)
    searched = tune(spec, dev, protocol, device)
    best = searched["best"]
    search_seconds = time.monotonic() - started
    refit_kw = {"seed": spec.seed, "known_labels": spec.known_labels, "device": device}
    model = refit(spec.model, best["config"], dev, epochs=int(best["epochs"]), **refit_kw)
    rows: dict[str, Any] = {
        spec.model: {
            "cv": best["summary"],
            "holdout": score(model, holdout) if holdout is not None else {},
            "config": best["config"],
            "epochs": best["epochs"],
        }
    }
    for peer in spec.peers:
        peer_cv = run_cv(peer, {}, dev, protocol, device=device).summary
        epochs = int(resolve_learner(peer).defaults.get("epochs", 1))
        peer_model = refit(peer, {}, dev, epochs=epochs, **refit_kw)
        rows[peer] = {
            "cv": peer_cv,
            "holdout": score(peer_model, holdout) if holdout is not None else {},
        }
    record = {
        "space": spec.name,
        "model": spec.model,
        "dataset": full.name,
        "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        "budget": {
            "trials": spec.trials,
            "max_epochs": spec.max_epochs,
            "cv": f"{spec.cv_repeats}x{spec.cv_folds}",
            "sampler": spec.sampler,
            "pruner": f"successive halving, grace {spec.grace_period}, eta {spec.reduction_factor}",
        },
        "known_labels": spec.known_labels,
        "bags": {"development": dev.n_bags, "holdout": holdout.n_bags if holdout else 0},
        "holdout_kind": "official test split" if full.has_test_split else "stratified",
        "trials": searched["trials"],
        "search_seconds": round(search_seconds, 1),
        "rows": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{spec.name}.json").write_text(json.dumps(record, indent=2, default=float))
    return record


def markdown(record: dict[str, Any], metrics: list[str]) -> str:
    models = list(record["rows"])
    head = "| metric | " + " | ".join(f"{m} CV | {m} holdout" for m in models) + " |"
    lines = [head, "|---" * (1 + 2 * len(models)) + "|"]
    for metric in metrics:
        arrow = "↑" if mode_of(metric) == "max" else "↓"
        cells = []
        for m in models:
            cv, hold = record["rows"][m]["cv"], record["rows"][m]["holdout"]
            mean, std = cv.get(metric, math.nan), cv.get(f"{metric}_std", math.nan)
            cells += [f"{mean:.4f} ± {std:.4f}", f"{hold.get(metric, math.nan):.4f}"]
        lines.append(f"| {metric} {arrow} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", action="append", required=True, help="repeatable")
    parser.add_argument("--data", help="data file (default: the registry, MIML_TUNE_DATA)")
    parser.add_argument("--data-root", help="folder laid out like ../shared/data")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--cv-repeats", type=int)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/out/paper_tables")
    args = parser.parse_args()
    if args.data_root:
        os.environ["MIML_TUNE_DATA"] = str(Path(args.data_root).resolve())
    torch.set_num_threads(args.threads)
    for name in args.space:
        spec = load_space(name).with_overrides(
            trials=args.trials, max_epochs=args.max_epochs, cv_repeats=args.cv_repeats
        )
        print(f"# {spec.name}: {spec.model} on {spec.dataset}, {spec.trials} trials", flush=True)
        record = run(spec, args.data, args.device, Path(args.out))
        print(
            f"{record['trials']} in {record['search_seconds']} s on {record['device']}; "
            f"best {record['rows'][spec.model]['config']}"
        )
        print(markdown(record, list(ALL_METRICS)), flush=True)


if __name__ == "__main__":
    main()
