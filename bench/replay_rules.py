"""Replays a finished search's recorded trials under other stopping rules (a counterfactual
estimate, not a search).

Every trial of a search leaves its epoch-by-epoch results in Tune's ``result.json`` (the
objective, its value on each fold, the fold-epochs trained, the seconds of each epoch). A rule
that stops trials no later than the search's own did can be replayed on those records exactly,
trial by trial, in the order the results arrived: a trial it stops loses its later epochs, and
the search's wall time shrinks by the share of trial-seconds it saves. What the replay cannot
know: the trials the sampler would have proposed instead (TPE sees other values), and the order
results would have come in on a shorter run. So it ranks rules; a real search confirms one.

    python bench/replay_rules.py /tmp/mtbenchXXXX/miml-tune-results/birds --wall 2352

Rules (all with the search's rungs: grace 5, reduction factor 3, max 30 epochs by default):
    ray_asha       Ray's ASHAScheduler as the search ran it (a trial continues at a rung when
                   its value is at least the (1 - 1/rf) percentile of the values recorded there
                   before it); must reproduce the search's own decisions.
    optuna_sh      Optuna's SuccessiveHalvingPruner's rule: promoted when among the top
                   floor(n / rf) of the n values at the rung, itself included (the best one
                   while n < rf).
    sync_sh        synchronous successive halving as an oracle: at each rung, the top
                   floor(n / rf) of all n trials that reach it go on, as if every trial's value
                   there were known before any is promoted (what pausing trials until a rung is
                   full would give). A trial it promotes that the search stopped has no record
                   past its stop; it is charged the median cost of the trials stopped at the
                   next rung and counted as stopped there.
    +racing        the search's racing rule (tuner.search.racing.Racing: a one-sided Wilcoxon
                   test over the shared folds against the incumbent, level 0.05, from the grace
                   period on) on top of the rule before it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tuner.search.racing import Racing
from tuner.trial import rung_milestones


def read_trials(folder: Path) -> dict[str, list[dict[str, Any]]]:
    trials = {}
    for path in sorted(folder.glob("*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            trials[rows[0]["trial_id"]] = sorted(rows, key=lambda r: r["epoch"])
    return trials


def events(trials: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Every result in the order it arrived (Tune's wall clock, then the trial's own time)."""
    out = [(tid, row) for tid, rows in trials.items() for row in rows]
    return sorted(out, key=lambda e: (e[1]["timestamp"], e[1]["time_total_s"]))


def promoted(rule: str, value: float, recorded: list[float], rf: float) -> bool:
    if rule == "ray_asha":
        return not recorded or value >= float(np.nanpercentile(recorded, (1 - 1 / rf) * 100))
    competing = sorted([*recorded, value], reverse=True)
    keep = max(1, int(len(competing) // rf))
    return value >= competing[keep - 1]


def outcome(
    kept: dict[str, list[dict[str, Any]]], metric: str, rule: str, *, raced: int
) -> dict[str, Any]:
    """What a replayed rule spent and chose: each trial's results up to where the rule stopped
    it; only a trial that ended under the full protocol can be the best."""
    completed = {
        tid: rows[-1][metric]
        for tid, rows in kept.items()
        if rows[-1]["epoch"] >= rows[-1]["target_epochs"] and rows[-1]["full_protocol"] >= 1
    }
    best = max(completed, key=completed.__getitem__) if completed else None
    return {
        "rule": rule,
        "completed": len(completed),
        "raced": raced,
        "fold_epochs": float(sum(rows[-1]["fold_epochs"] for rows in kept.values())),
        "trial_seconds": sum(r["time_this_iter_s"] for rows in kept.values() for r in rows),
        "best": best,
        "best_value": completed.get(best, math.nan) if best else math.nan,
    }


def replay_sync(
    trials: dict[str, list[dict[str, Any]]], *, metric: str, milestones: list[int], rf: float
) -> dict[str, Any]:
    alive = set(trials)
    stopped: dict[str, int] = {}
    for milestone in milestones:
        reached = {
            tid: trials[tid][milestone - 1][metric]
            for tid in alive
            if trials[tid][-1]["target_epochs"] > milestone and len(trials[tid]) >= milestone
        }
        keep = sorted(reached, key=reached.__getitem__, reverse=True)[: int(len(reached) // rf)]
        for tid in set(reached) - set(keep):
            stopped[tid] = milestone
        alive -= set(reached) - set(keep)
    unknown = {tid for tid in alive if trials[tid][-1]["epoch"] < trials[tid][-1]["target_epochs"]}
    kept = {
        tid: [r for r in rows if r["epoch"] <= stopped.get(tid, math.inf)]
        for tid, rows in trials.items()
        if tid not in unknown
    }
    cut = [rows for tid, rows in kept.items() if stopped.get(tid) == milestones[-1]]
    extra_fe = float(np.median([rows[-1]["fold_epochs"] for rows in cut])) if cut else 0.0
    extra_s = (
        float(np.median([sum(r["time_this_iter_s"] for r in rows) for rows in cut])) if cut else 0.0
    )
    out = outcome(kept, metric, f"sync_sh (oracle; {len(unknown)} charged)", raced=0)
    out["fold_epochs"] += len(unknown) * extra_fe
    out["trial_seconds"] += len(unknown) * extra_s
    return out


def replay(
    trials: dict[str, list[dict[str, Any]]],
    rule: str,
    *,
    metric: str,
    milestones: list[int],
    rf: float,
    racing_alpha: float | None,
    grace: int,
) -> dict[str, Any]:
    rungs: dict[int, list[float]] = {m: [] for m in milestones}
    racing = Racing(metric, "max", racing_alpha, min_epoch=grace) if racing_alpha else None
    stopped: dict[str, int] = {}
    raced: dict[str, int] = {}
    for tid, row in events(trials):
        if tid in stopped:
            continue
        epoch, value = row["epoch"], row[metric]
        if racing is not None and racing(tid, row):
            stopped[tid] = raced[tid] = epoch
            continue
        if epoch in rungs and epoch < row["target_epochs"]:
            if not promoted(rule, value, rungs[epoch], rf):
                stopped[tid] = epoch
            rungs[epoch].append(value)
    kept = {
        tid: [r for r in rows if r["epoch"] <= stopped.get(tid, math.inf)]
        for tid, rows in trials.items()
    }
    return outcome(kept, metric, rule + (" +racing" if racing_alpha else ""), raced=len(raced))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a search's Tune folder (its trials' results)")
    parser.add_argument("--metric", default="average_precision")
    parser.add_argument("--grace", type=int, default=5)
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--wall", type=float, help="the search's wall seconds, to scale")
    args = parser.parse_args()
    trials = read_trials(args.folder)
    milestones = rung_milestones(args.max_epochs, args.grace, args.reduction_factor)
    common = {
        "metric": args.metric,
        "milestones": milestones,
        "rf": args.reduction_factor,
        "grace": args.grace,
    }
    rows = [
        replay(trials, rule, racing_alpha=alpha, **common)
        for rule in ("ray_asha", "optuna_sh")
        for alpha in (None, 0.05)
    ]
    rows.append(
        replay_sync(trials, metric=args.metric, milestones=milestones, rf=args.reduction_factor)
    )
    base = rows[0]
    print(f"{len(trials)} trials, rungs at {milestones}")
    print("| rule | completed | raced | fold-epochs | trial-seconds | est. wall | best |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        share = row["trial_seconds"] / base["trial_seconds"]
        wall = f"{args.wall * share:.0f} s ({share:.2f})" if args.wall else f"{share:.2f}"
        print(
            f"| {row['rule']} | {row['completed']} | {row['raced']} | {row['fold_epochs']:.0f} "
            f"| {row['trial_seconds']:.0f} | {wall} | {row['best']} {row['best_value']:.4f} |"
        )


if __name__ == "__main__":
    main()
