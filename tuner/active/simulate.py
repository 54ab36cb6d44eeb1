"""``miml-tune active simulate``: the pool-based active-learning experiment, the known labels
playing the expert.

For each seed: a stratified ``start`` fraction of the space's development bags is labelled, the
rest is the pool. Each round trains the configuration (fixed: the search's best, or the model's
starting point) on the labelled bags, scores it on the holdout, asks each strategy for the
``batch`` pool bags to label next, and adds them with their true labels. The holdout is never
in the pool and never chooses anything: it only scores. Every strategy of a seed starts from the
same labelled bags and trains with the same seeds, so strategies are compared paired.

Results: the holdout metrics after every round (the learning curve, x = bags labelled), the
area under each curve (normalised: the mean metric over the labelled range), the labelled
fraction a strategy needs to reach 95 % of the metric of a model trained on every development
bag, and a Wilcoxon signed-rank test of each strategy's area against ``random`` over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.active.strategies import STRATEGIES, Pool, bag_vectors, query, resolve_strategy
from tuner.data import MIMLDataset
from tuner.errors import MimlTuneError

CURVE_METRICS = ("average_precision", "macro_f1")
REACH = 0.95  # the share of the full-label metric a strategy is asked to reach


@dataclass
class Curve:
    """One strategy's learning curve for one seed: labelled counts and holdout metrics."""

    strategy: str
    seed: int
    labelled: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    queried: list[str] = field(default_factory=list)  # bag ids, in the order queried


def check_settings(
    strategies: Sequence[str], start: float, batch: int, rounds: int, seeds: int, n_dev: int
) -> None:
    """One line for a setting that cannot run: unknown strategy, fractions, counts."""
    for name in strategies:
        resolve_strategy(name)
    repeated = sorted({name for name in strategies if list(strategies).count(name) > 1})
    if repeated:
        raise MimlTuneError(
            f"--strategies names {', '.join(repeated)} more than once; name each strategy once"
        )
    if not strategies:
        raise MimlTuneError(f"--strategies is empty; choose among {', '.join(STRATEGIES)}")
    if not 0 < start < 1:
        raise MimlTuneError(f"--start must be a fraction in (0, 1), got {start}")
    for flag, value in (("--batch", batch), ("--rounds", rounds), ("--seeds", seeds)):
        if value < 1:
            raise MimlTuneError(f"{flag} must be at least 1, got {value}")
    first = round(n_dev * start)
    if first < 2:
        raise MimlTuneError(
            f"--start {start} of {n_dev} development bags labels {first}; label at least 2"
        )
    if first + batch * rounds > n_dev:
        raise MimlTuneError(
            f"{first} bags to start with plus {rounds} rounds of {batch} is "
            f"{first + batch * rounds}, more than the {n_dev} development bags; lower --rounds "
            f"or --batch"
        )


def initial_labelled(labels: np.ndarray, start: float, seed: int) -> np.ndarray:
    """A stratified ``start`` fraction of the bags: exactly ``round(n * start)`` of them (sorted
    indices). The iterative stratification of iterstrat treats the size as a target, so a
    split that misses it is trimmed or filled at random (seeded)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = len(labels)
    size = round(n * start)
    splitter = MultilabelStratifiedShuffleSplit(
        n_splits=1, train_size=size, test_size=n - size, random_state=seed
    )
    chosen, rest = next(splitter.split(np.zeros((n, 1)), labels))
    rng = np.random.default_rng(seed)
    if len(chosen) > size:
        chosen = rng.choice(chosen, size=size, replace=False)
    elif len(chosen) < size:
        chosen = np.concatenate([chosen, rng.choice(rest, size=size - len(chosen), replace=False)])
    return np.sort(chosen)


def train_and_score(
    model: str,
    config: Mapping[str, Any],
    train: MIMLDataset,
    scored: Sequence[MIMLDataset],
    seed: int,
) -> tuple[Any, list[np.ndarray]]:
    """Trains ``model`` with ``config`` on ``train`` for its epochs; its scores on each of
    ``scored``."""
    from tuner.learners import resolve_learner
    from tuner.serving import predict_bags

    learner = resolve_learner(model)(
        dict(config), n_features=train.n_features, n_labels=train.n_labels, seed=seed
    )
    learner.setup(list(train.bags), train.labels)
    for _ in range(learner.epochs):
        learner.train_epoch()
    return learner, [predict_bags(learner, list(part.bags)) for part in scored]


def holdout_metrics(holdout: MIMLDataset, scores: np.ndarray) -> dict[str, float]:
    from tuner.metrics import compute

    return compute(holdout.labels, scores, names=list(CURVE_METRICS))


def run_curve(
    strategy: str,
    seed: int,
    model: str,
    config: Mapping[str, Any],
    dev: MIMLDataset,
    holdout: MIMLDataset,
    first: np.ndarray,
    batch: int,
    rounds: int,
    on_round: Callable[[Curve], None] | None = None,
) -> Curve:
    """One strategy's learning curve from the labelled bags ``first`` of ``dev``."""
    curve = Curve(strategy, seed, metrics={m: [] for m in CURVE_METRICS})
    labelled = list(first)
    instances = np.concatenate(dev.bags).astype(np.float64)
    mean, std = instances.mean(axis=0), instances.std(axis=0)
    for round_ in range(rounds + 1):
        pool_idx = np.setdiff1d(np.arange(len(dev.bags)), labelled)
        train = dev.subset(np.asarray(labelled))
        parts = [holdout] if round_ == rounds else [holdout, dev.subset(pool_idx)]
        _, scores = train_and_score(model, config, train, parts, seed * 1000 + round_)
        curve.labelled.append(len(labelled))
        for name, value in holdout_metrics(holdout, scores[0]).items():
            curve.metrics[name].append(float(value))
        if on_round is not None:
            on_round(curve)
        if round_ == rounds:
            break
        pool = Pool(
            scores[1],
            bag_vectors([dev.bags[i] for i in pool_idx], mean, std),
            float(train.labels.sum(axis=1).mean()),
        )
        picked, _ = query(strategy, pool, batch, seed=seed * 1000 + round_)
        new = pool_idx[picked]
        curve.queried.extend(dev.bag_ids[i] for i in new)
        labelled.extend(int(i) for i in new)
    return curve


def area(labelled: Sequence[int], values: Sequence[float]) -> float:
    """Area under a learning curve, normalised by its labelled range: the mean value of the
    metric over the range (trapezoids), comparable across settings."""
    x, y = np.asarray(labelled, dtype=float), np.asarray(values, dtype=float)
    if len(x) < 2 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def fraction_to_reach(curve: Curve, full: float, n_dev: int, metric: str) -> float | None:
    """The labelled fraction of the development bags at which the curve first reaches
    :data:`REACH` of ``full`` (the metric with every development bag labelled); ``None`` if it
    does not within the rounds run."""
    for count, value in zip(curve.labelled, curve.metrics[metric], strict=True):
        if value >= REACH * full:
            return count / n_dev
    return None


def summarise(
    curves: Sequence[Curve], full: Mapping[int, dict[str, float]], n_dev: int
) -> dict[str, Any]:
    """Per strategy: the mean curve, the areas (mean and per seed), the fraction to reach 95 %
    of the full-label metric, and the paired test of the areas against ``random``."""
    from tuner.stats import paired_wilcoxon

    by: dict[str, list[Curve]] = {}
    for curve in curves:
        by.setdefault(curve.strategy, []).append(curve)
    out: dict[str, Any] = {}
    for strategy, group in by.items():
        group = sorted(group, key=lambda c: c.seed)
        entry: dict[str, Any] = {"labelled": group[0].labelled, "seeds": [c.seed for c in group]}
        for metric in CURVE_METRICS:
            areas = [area(c.labelled, c.metrics[metric]) for c in group]
            reach = [fraction_to_reach(c, full[c.seed][metric], n_dev, metric) for c in group]
            entry[metric] = {
                "curve_mean": np.mean([c.metrics[metric] for c in group], axis=0).tolist(),
                "curve_std": np.std([c.metrics[metric] for c in group], axis=0).tolist(),
                "area": float(np.mean(areas)),
                "area_per_seed": areas,
                "fraction_to_95": (
                    float(np.median([r for r in reach if r is not None]))
                    if all(r is not None for r in reach)
                    else None
                ),
            }
        out[strategy] = entry
    control = {c.seed: c for c in by.get("random", [])}
    for strategy, entry in out.items():
        if strategy == "random" or not control:
            continue
        for metric in CURVE_METRICS:
            seeds = [s for s in entry["seeds"] if s in control]
            ours = [entry[metric]["area_per_seed"][entry["seeds"].index(s)] for s in seeds]
            theirs = [area(control[s].labelled, control[s].metrics[metric]) for s in seeds]
            entry[metric]["vs_random"] = paired_wilcoxon(ours, theirs, mode="max")
    return out


def full_label_reference(
    model: str, config: Mapping[str, Any], dev: MIMLDataset, holdout: MIMLDataset, seed: int
) -> dict[str, float]:
    """The holdout metrics of the configuration trained on every development bag."""
    _, scores = train_and_score(model, config, dev, [holdout], seed * 1000 + 999)
    return {k: float(v) for k, v in holdout_metrics(holdout, scores[0]).items()}


def verdict_line(strategy: str, entry: Mapping[str, Any], metric: str) -> str:
    """``uncertainty: area 0.6123 (random 0.6011), beats random (p 0.031)``-style line."""
    stats = entry[metric]
    test = stats.get("vs_random")
    reach = stats["fraction_to_95"]
    reached = f"{reach:.0%} labelled to reach 95 %" if reach is not None else "95 % not reached"
    if test is None:
        return f"{strategy}: area {stats['area']:.4f}, {reached}"
    p = test["p_value"]
    shown = "-" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3g}"
    return (
        f"{strategy}: area {stats['area']:.4f}, {reached}, {test['verdict']} random "
        f"(Wilcoxon over {test['folds']} seeds, p {shown})"
    )
