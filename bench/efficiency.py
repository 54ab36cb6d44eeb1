"""Search strategies side by side at an equal wall-time budget, on Birds with GAMIL-C.

Every run is a real search through miml-tune's own machinery (``tuner.search.launch``: local
Ray, Optuna, ASHA, MLflow in a private sqlite store) with ``--time-budget``; the strategies
differ only in sampler, scheduler and fidelity:

- ``random_fifo``: random sampler, no pruning, every trial under the full protocol;
- ``tpe_asha_epochs``: TPE + ASHA on epochs (every CV repeat from the first epoch);
- ``tpe_asha_repeats``: TPE + ASHA with CV repeats as a second fidelity (the new default);
- ``tpe_asha_repeats_racing``: the same with the racing rule (``scheduler.racing: wilcoxon``).

Runs are interleaved (seed 0: A B C, seed 1: A B C, ...) so that the machine's load falls on
every strategy alike. Each run's best configuration (chosen on the search's CV, never on the
holdout) is then scored under the full 5x3 protocol and, refit on all development data, on the
20 % holdout. ``--report`` reads the runs written so far and prints the table, the anytime
figure and the time-to-random ratio.

    python bench/efficiency.py --budget 240 --seeds 0 1 2            # ~45 min on 2 cores
    python bench/efficiency.py --report                               # table + figure so far
    python bench/efficiency.py --out bench/out/efficiency-racing \
        --strategies tpe_asha_repeats tpe_asha_repeats_racing ...        # racing, back to back

Runs in another ``--out`` folder without random-search runs of their own are compared with
those of the default folder for the time-to-random ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

STRATEGIES: dict[str, dict[str, str]] = {
    "random_fifo": {"sampler": "random", "scheduler": "fifo", "fidelity": "epochs"},
    "tpe_asha_epochs": {"sampler": "tpe", "scheduler": "asha", "fidelity": "epochs"},
    "tpe_asha_repeats": {"sampler": "tpe", "scheduler": "asha", "fidelity": "repeats"},
    "tpe_asha_repeats_racing": {
        "sampler": "tpe",
        "scheduler": "asha",
        "fidelity": "repeats",
        "racing": "wilcoxon",
    },
}
DEFAULT_OUT = Path("bench/out/efficiency")
OUT = DEFAULT_OUT  # --out moves it


def _runs_in(folder: Path, strategy: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"run-{strategy}-s*.json"))]


FIGURE = Path("bench/figures/efficiency_anytime.png")


def run_search(strategy: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from tuner.search import LaunchOptions, launch
    from tuner.spec import load_space

    spec = load_space("birds").with_overrides(
        seed=seed,
        trials=args.trials,
        max_epochs=args.max_epochs,
        cv_repeats=args.repeats,
        time_budget=float(args.budget),
        peers=(),
        grace_period=args.grace,
        **STRATEGIES[strategy],
    )
    name = f"eff-{strategy}-s{seed}"
    storage = OUT / "results"
    started = time.time()
    summary = launch(
        spec,
        LaunchOptions(
            name=name,
            tracking_uri=f"sqlite:///{(OUT / 'mlflow.db').resolve()}",
            storage=str(storage),
            overwrite=True,
        ),
    )
    return {
        "strategy": strategy,
        "seed": seed,
        "budget_s": args.budget,
        "launched_at": started,
        "wall_s": round(time.time() - started, 1),
        "summary": summary,
        "trials": read_trials(storage / name),
        "load": os.getloadavg(),
    }


def read_trials(folder: Path) -> list[dict[str, Any]]:
    """Every trial's reported rows (epoch, objective, protocol, fold-epochs, time), from the
    ``result.json`` files Tune writes in each trial's folder."""
    trials = []
    for path in sorted(folder.glob("*/result.json")):
        rows = []
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows.append(
                {
                    k: row.get(k)
                    for k in (
                        "epoch",
                        "target_epochs",
                        "average_precision",
                        "full_protocol",
                        "fold_epochs",
                        "timestamp",
                        "time_total_s",
                    )
                }
            )
        if rows:
            trials.append({"trial": path.parent.name, "rows": rows})
    return trials


def score_best(run: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """The run's best configuration under the full 5x3 protocol and on the holdout."""
    import torch

    from tuner.promote import refit, score
    from tuner.search import prepare_data
    from tuner.spec import load_space
    from tuner.trial import CVProtocol, run_cv

    torch.set_num_threads(2)
    best = run["summary"]["best"]
    spec = load_space("birds").with_overrides(seed=run["seed"])
    _, dev, holdout = prepare_data(spec, None)
    epochs = int(best["epochs"])
    config = dict(best["config"], epochs=epochs)
    full = run_cv(spec.model, config, dev, CVProtocol(3, 5, spec.seed), max_epochs=epochs)
    model = refit(spec.model, config, dev, epochs=epochs, seed=spec.seed)
    return {
        "cv_5x3": full.summary["average_precision"],
        "cv_5x3_std": full.summary["average_precision_std"],
        "holdout": score(model, holdout)["average_precision"],
    }


def anytime(run: dict[str, Any]) -> list[tuple[float, float, float]]:
    """``(seconds since the first trial started, fold-epochs spent, best full-protocol AP)`` at
    each moment a trial completed under the full protocol."""
    rows = [(t["trial"], r) for t in run["trials"] for r in t["rows"]]
    if not rows:
        return []
    start = min(r["timestamp"] - (r["time_total_s"] or 0) for _, r in rows)
    events = sorted(rows, key=lambda item: item[1]["timestamp"])
    spent: dict[str, float] = {}
    best = -math.inf
    out = []
    for trial, row in events:
        spent[trial] = float(row["fold_epochs"] or 0)
        done = row["epoch"] >= row["target_epochs"] and (row["full_protocol"] or 0) >= 1
        if done and row["average_precision"] is not None and row["average_precision"] > best:
            best = row["average_precision"]
            out.append((row["timestamp"] - start, sum(spent.values()), best))
    return out


def time_to_reach(curve: list[tuple[float, float, float]], target: float) -> float:
    return next((t for t, _, value in curve if value >= target - 1e-12), math.inf)


def report() -> None:
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("run-*.json"))]
    if not runs:
        print("no runs yet")
        return
    by: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by.setdefault(run["strategy"], []).append(run)
    print(
        "| strategy | runs | trials (completed/pruned/stopped) | fold-epochs | best CV AP "
        "(search protocol) | best under 5x3 | holdout AP |"
    )
    print("|---|---|---|---|---|---|---|")
    for strategy in STRATEGIES:
        group = by.get(strategy, [])
        if not group:
            continue

        def med(values: list[float]) -> str:
            values = [v for v in values if v is not None and math.isfinite(v)]
            if not values:
                return "-"
            return f"{statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}]"

        trials = [r["summary"]["trials"] for r in group]
        print(
            f"| {strategy} | {len(group)} | "
            + ", ".join(
                f"{t['total']} ({t['completed']}/{t['pruned']}/{t.get('stopped', 0)})"
                for t in trials
            )
            + f" | {statistics.median(r['summary']['fold_epochs'] for r in group):.0f} | "
            f"{med([r['summary']['best']['metrics']['average_precision']['mean'] for r in group])}"
            f" | {med([r.get('scores', {}).get('cv_5x3') for r in group])}"
            f" | {med([r.get('scores', {}).get('holdout') for r in group])} |"
        )
    for strategy in ("tpe_asha_repeats", "tpe_asha_epochs", "tpe_asha_repeats_racing"):
        ratios = []
        for run in by.get(strategy, []):
            randoms = by.get("random_fifo") or _runs_in(DEFAULT_OUT, "random_fifo")
            random = next((r for r in randoms if r["seed"] == run["seed"]), None)
            if random is None:
                continue
            target = random["summary"]["best"]["metrics"]["average_precision"]["mean"]
            reached = time_to_reach(anytime(run), target)
            ratios.append(reached / random["budget_s"])
            print(
                f"seed {run['seed']}: {strategy} reached random search's final best "
                f"{target:.4f} after {reached:.0f} s of a {random['budget_s']} s budget "
                f"(ratio {reached / random['budget_s']:.2f})"
            )
        if ratios:
            print(f"{strategy}: median ratio (time to reach random's final best / budget): "
                  f"{statistics.median(ratios):.2f}")  # fmt: skip
    loads = [r["load"][0] for r in runs]
    print(f"1-min load during the runs: median {statistics.median(loads):.1f}, "
          f"range {min(loads):.1f}-{max(loads):.1f}")  # fmt: skip
    plot(by)


def plot(by: dict[str, list[dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {
        "random_fifo": "#7f7f7f",
        "tpe_asha_epochs": "#1f77b4",
        "tpe_asha_repeats": "#d62728",
        "tpe_asha_repeats_racing": "#2ca02c",
    }
    for strategy, group in by.items():
        for i, run in enumerate(group):
            curve = anytime(run)
            if not curve:
                continue
            seconds, spent, best = zip(*curve, strict=True)
            label = strategy if i == 0 else None
            style = {"color": colours[strategy], "alpha": 0.8, "where": "post", "label": label}
            axes[0].step([*seconds, run["budget_s"]], [*best, best[-1]], **style)
            axes[1].step(spent, best, **style)
    axes[0].set_xlabel("wall time since the first trial started (s)")
    axes[1].set_xlabel("fold-epochs trained")
    for ax in axes:
        ax.set_ylabel("best CV average precision (full protocol)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("GAMIL-C on Birds: best completed configuration so far, one line per seed")
    fig.tight_layout()
    figure = FIGURE if OUT == DEFAULT_OUT else FIGURE.with_name(f"{OUT.name}_anytime.png")
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    print(f"figure: {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=240, help="seconds of search per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--trials", type=int, default=200, help="more than the budget allows")
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3, help="CV repeats of the search")
    parser.add_argument("--grace", type=int, default=2, help="ASHA grace period (epochs)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder of the runs [%(default)s]"
    )
    parser.add_argument("--report", action="store_true", help="only report the runs so far")
    parser.add_argument("--no-score", action="store_true", help="skip the 5x3 and holdout scoring")
    args = parser.parse_args()
    global OUT
    OUT = args.out
    if args.report:
        report()
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for strategy in args.strategies:
            path = OUT / f"run-{strategy}-s{seed}.json"
            if path.exists():
                continue
            run = run_search(strategy, seed, args)
            path.write_text(json.dumps(run, indent=1, default=str))
            print(f"{strategy} seed {seed}: {run['summary']['trials']} in {run['wall_s']} s",
                  flush=True)  # fmt: skip
    if not args.no_score:
        for path in sorted(OUT.glob("run-*.json")):
            run = json.loads(path.read_text())
            if "scores" not in run:
                run["scores"] = score_best(run, args)
                path.write_text(json.dumps(run, indent=1, default=str))
                print(f"{path.name}: {run['scores']}", flush=True)
    report()


if __name__ == "__main__":
    main()
