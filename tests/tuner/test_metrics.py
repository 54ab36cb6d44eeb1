"""Tests for tuner.metrics: scikit-learn and slow pure-Python references, ties, degenerate bags,
the MulSupCon metric set and the instance-level metrics."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    coverage_error,
    f1_score,
    label_ranking_average_precision_score,
    label_ranking_loss,
)
from sklearn.metrics import hamming_loss as sk_hamming_loss

from tuner import metrics
from tuner.errors import MimlTuneError

Rows = list[list[int]]
Scores = list[list[float]]

# ---------------------------------------------------------------------------------------------
# Slow, obviously-correct references: plain loops over bags, labels and label pairs.


def _to_lists(y: np.ndarray, s: np.ndarray) -> tuple[Rows, Scores]:
    return [[int(v) for v in row] for row in y], [[float(v) for v in row] for row in s]


def _qualifying(y: Rows) -> list[int]:
    """Bags whose label set is neither empty nor complete."""
    return [i for i, row in enumerate(y) if 0 < sum(row) < len(row)]


def ref_hamming_loss(y: Rows, s: Scores) -> float:
    wrong = 0
    total = 0
    for yi, si in zip(y, s, strict=True):
        for yij, sij in zip(yi, si, strict=True):
            predicted = 1 if sij >= 0.5 else 0
            wrong += predicted != yij
            total += 1
    return wrong / total


def ref_macro_f1(y: Rows, s: Scores) -> float:
    n_labels = len(y[0])
    f1s = []
    for j in range(n_labels):
        tp = fp = fn = 0
        for yi, si in zip(y, s, strict=True):
            predicted = si[j] >= 0.5
            if predicted and yi[j] == 1:
                tp += 1
            elif predicted and yi[j] == 0:
                fp += 1
            elif not predicted and yi[j] == 1:
                fn += 1
        f1s.append(0.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / n_labels


def ref_one_error(y: Rows, s: Scores) -> float:
    bags = _qualifying(y)
    if not bags:
        return math.nan
    errors = 0
    for i in bags:
        top = 0
        for j in range(1, len(s[i])):
            if s[i][j] > s[i][top]:  # strict: the first of tied maxima stays on top
                top = j
        errors += y[i][top] == 0
    return errors / len(bags)


def ref_ranking_loss(y: Rows, s: Scores) -> float:
    bags = _qualifying(y)
    if not bags:
        return math.nan
    total = 0.0
    for i in bags:
        relevant = [j for j in range(len(y[i])) if y[i][j] == 1]
        irrelevant = [k for k in range(len(y[i])) if y[i][k] == 0]
        wrong = sum(1 for j in relevant for k in irrelevant if s[i][k] >= s[i][j])
        total += wrong / (len(relevant) * len(irrelevant))
    return total / len(bags)


def ref_average_precision(y: Rows, s: Scores) -> float:
    bags = _qualifying(y)
    if not bags:
        return math.nan
    total = 0.0
    for i in bags:
        relevant = [j for j in range(len(y[i])) if y[i][j] == 1]
        precisions = []
        for j in relevant:
            at_or_above = [k for k in range(len(y[i])) if s[i][k] >= s[i][j]]
            relevant_at_or_above = [k for k in at_or_above if y[i][k] == 1]
            precisions.append(len(relevant_at_or_above) / len(at_or_above))
        total += sum(precisions) / len(precisions)
    return total / len(bags)


def ref_coverage(y: Rows, s: Scores) -> float:
    n_labels = len(y[0])
    depths = []
    for yi, si in zip(y, s, strict=True):
        depth = 0
        for j in range(n_labels):
            if yi[j] == 1:
                # Labels ranked at or above j (ties ranked above): how deep to go to reach j.
                depth = max(depth, sum(1 for k in range(n_labels) if si[k] >= si[j]))
        depths.append(depth)
    return (sum(depths) / len(depths) - 1) / n_labels


def ref_mean_average_precision(y: Rows, s: Scores) -> float:
    """Per label, the area under the step precision-recall curve over its distinct thresholds."""
    aps = []
    for j in range(len(y[0])):
        column = [(s[i][j], y[i][j]) for i in range(len(y))]
        n_pos = sum(rel for _, rel in column)
        if n_pos == 0:
            continue
        ap, prev_recall = 0.0, 0.0
        for threshold in sorted({score for score, _ in column}, reverse=True):
            predicted = [rel for score, rel in column if score >= threshold]
            recall = sum(predicted) / n_pos
            ap += (recall - prev_recall) * sum(predicted) / len(predicted)
            prev_recall = recall
        aps.append(ap)
    return sum(aps) / len(aps) if aps else math.nan


def ref_hamming_accuracy(y: Rows, s: Scores) -> float:
    right = sum(
        (sij >= 0.5) == (yij == 1)
        for yi, si in zip(y, s, strict=True)
        for yij, sij in zip(yi, si, strict=True)
    )
    return right / (len(y) * len(y[0]))


def ref_example_f1(y: Rows, s: Scores) -> float:
    total = 0.0
    for yi, si in zip(y, s, strict=True):
        relevant = {j for j, v in enumerate(yi) if v == 1}
        predicted = {j for j, v in enumerate(si) if v >= 0.5}
        if not relevant and not predicted:
            total += 1.0
        else:
            total += 2 * len(relevant & predicted) / (len(relevant) + len(predicted))
    return total / len(y)


def ref_micro_f1(y: Rows, s: Scores) -> float:
    tp = fp = fn = 0
    for yi, si in zip(y, s, strict=True):
        for yij, sij in zip(yi, si, strict=True):
            predicted = sij >= 0.5
            tp += predicted and yij == 1
            fp += predicted and yij == 0
            fn += (not predicted) and yij == 1
    return 0.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def ref_precision_at_1(y: Rows, s: Scores) -> float:
    bags = [i for i, row in enumerate(y) if sum(row) > 0]
    if not bags:
        return math.nan
    hits = 0
    for i in bags:
        top = 0
        for j in range(1, len(s[i])):
            if s[i][j] > s[i][top]:  # strict: the first of tied maxima stays on top
                top = j
        hits += y[i][top] == 1
    return hits / len(bags)


REFERENCES: dict[str, Callable[[Rows, Scores], float]] = {
    "average_precision": ref_average_precision,
    "one_error": ref_one_error,
    "ranking_loss": ref_ranking_loss,
    "macro_f1": ref_macro_f1,
    "hamming_loss": ref_hamming_loss,
    "coverage": ref_coverage,
    "mean_average_precision": ref_mean_average_precision,
    "hamming_accuracy": ref_hamming_accuracy,
    "example_f1": ref_example_f1,
    "micro_f1": ref_micro_f1,
    "precision_at_1": ref_precision_at_1,
}


# ---------------------------------------------------------------------------------------------
# scikit-learn versions under this module's conventions (ranking metrics on qualifying bags).


def _sk_on_qualifying(fn: Callable[[np.ndarray, np.ndarray], float]):
    def wrapped(y: np.ndarray, s: np.ndarray) -> float:
        n_rel = y.sum(axis=1)
        keep = (n_rel > 0) & (n_rel < y.shape[1])
        if not keep.any():
            return math.nan
        return float(fn(y[keep], s[keep]))

    return wrapped


def _sk_mean_average_precision(y: np.ndarray, s: np.ndarray) -> float:
    keep = y.any(axis=0)  # labels with a relevant bag
    if not keep.any():
        return math.nan
    return float(average_precision_score(y[:, keep], s[:, keep], average="macro"))


SKLEARN: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "average_precision": _sk_on_qualifying(label_ranking_average_precision_score),
    "ranking_loss": _sk_on_qualifying(label_ranking_loss),
    "coverage": lambda y, s: (coverage_error(y, s) - 1) / y.shape[1],
    "hamming_loss": lambda y, s: float(sk_hamming_loss(y, (s >= 0.5).astype(int))),
    "macro_f1": lambda y, s: float(
        f1_score(y, (s >= 0.5).astype(int), average="macro", zero_division=0)
    ),
    "mean_average_precision": _sk_mean_average_precision,
    "hamming_accuracy": lambda y, s: 1.0 - float(sk_hamming_loss(y, (s >= 0.5).astype(int))),
    "example_f1": lambda y, s: float(
        f1_score(y, (s >= 0.5).astype(int), average="samples", zero_division=1)
    ),
    "micro_f1": lambda y, s: float(
        f1_score(y, (s >= 0.5).astype(int), average="micro", zero_division=0)
    ),
}


def _random_case(seed: int, *, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    """Random labels (with some empty and complete bags) and scores, continuous or heavily tied."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    n_labels = int(rng.integers(2, 13))
    p = rng.uniform(0.05, 0.95)
    y = (rng.random((n, n_labels)) < p).astype(int)
    special = rng.random(n)
    y[special < 0.08] = 0
    y[special > 0.92] = 1
    if tied:
        levels = rng.choice(
            [0.0, 0.25, 0.5, 0.75, 1.0], size=int(rng.integers(1, 4)), replace=False
        )
        s = rng.choice(levels, size=(n, n_labels))
    else:
        s = rng.random((n, n_labels))
    return y, s


def _assert_same(got: float, want: float) -> None:
    if math.isnan(want):
        assert math.isnan(got), f"expected nan, got {got}"
    else:
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


SEEDS = range(40)


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied"])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_slow_reference(seed: int, tied: bool) -> None:
    y, s = _random_case(seed, tied=tied)
    yl, sl = _to_lists(y, s)
    got = metrics.compute(y, s, metrics.ALL_METRICS)
    assert set(REFERENCES) == set(metrics.ALL_METRICS)
    for name, ref in REFERENCES.items():
        _assert_same(got[name], ref(yl, sl))


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied"])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_sklearn(seed: int, tied: bool) -> None:
    y, s = _random_case(1000 + seed, tied=tied)
    got = metrics.compute(y, s, metrics.ALL_METRICS)
    for name, sk in SKLEARN.items():
        _assert_same(got[name], sk(y, s))


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied"])
def test_search_sized_input_matches_sklearn_and_reference(tied: bool) -> None:
    rng = np.random.default_rng(99)
    y = (rng.random((700, 25)) < 0.2).astype(int)
    s = rng.choice([0.1, 0.5, 0.9], size=y.shape) if tied else rng.random(y.shape)
    got = metrics.compute(y, s, metrics.ALL_METRICS)
    yl, sl = _to_lists(y, s)
    for name, ref in REFERENCES.items():
        _assert_same(got[name], ref(yl, sl))
    for name, sk in SKLEARN.items():
        _assert_same(got[name], sk(y, s))


@pytest.mark.parametrize("seed", range(10))
def test_each_public_function_agrees_with_compute(seed: int) -> None:
    y, s = _random_case(2000 + seed, tied=bool(seed % 2))
    got = metrics.compute(y, s, metrics.ALL_METRICS)
    for name in metrics.ALL_METRICS:
        _assert_same(metrics.METRICS[name].fn(y, s), got[name])
        _assert_same(getattr(metrics, name)(y, s), got[name])


def test_input_formats_give_same_values() -> None:
    y, s = _random_case(7, tied=True)
    want = metrics.compute(y, s, metrics.ALL_METRICS)
    for yy, ss in [
        (y.astype(bool), s),
        (y.astype(np.float32), s.astype(np.float32)),
        (y.astype(np.uint8), s),
        (y.tolist(), s.tolist()),
    ]:
        got = metrics.compute(yy, ss, metrics.ALL_METRICS)
        for name in metrics.ALL_METRICS:
            _assert_same(got[name], want[name])


def test_single_label_ranking_metrics_are_nan() -> None:
    y = np.array([[1], [0], [1]])
    s = np.array([[0.7], [0.2], [0.4]])
    got = metrics.compute(y, s, metrics.ALL_METRICS)
    yl, sl = _to_lists(y, s)
    for name in ("average_precision", "one_error", "ranking_loss"):
        assert math.isnan(got[name])
    for name in set(metrics.ALL_METRICS) - {"average_precision", "one_error", "ranking_loss"}:
        _assert_same(got[name], REFERENCES[name](yl, sl))
    assert got["precision_at_1"] == 1.0  # the only label is the top one of every bag with it
    # Relevant scores 0.7 and 0.4, irrelevant 0.2: a perfect ranking of the bags.
    assert got["mean_average_precision"] == 1.0


def test_inputs_not_modified() -> None:
    y, s = _random_case(3, tied=False)
    y0, s0 = y.copy(), s.copy()
    metrics.compute(y, s, metrics.ALL_METRICS)
    metrics.compute_instances([y, y[:1]], [s, s[:1]])
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(s, s0)


# ---------------------------------------------------------------------------------------------
# Degenerate and pinned cases

RANKING = ("average_precision", "one_error", "ranking_loss")


@pytest.mark.parametrize("degenerate_row", [[1, 1, 1], [0, 0, 0]], ids=["all", "none"])
def test_degenerate_bag_is_skipped_by_ranking_metrics(degenerate_row: list[int]) -> None:
    y_ok = np.array([[1, 0, 0], [0, 1, 1]])
    s_ok = np.array([[0.2, 0.9, 0.1], [0.3, 0.8, 0.6]])
    y = np.vstack([y_ok, [degenerate_row]])
    s = np.vstack([s_ok, [[0.9, 0.1, 0.5]]])
    with_row = metrics.compute(y, s, RANKING)
    without = metrics.compute(y_ok, s_ok, RANKING)
    assert with_row == without
    # Bag 0: the relevant label is second behind an irrelevant one; bag 1 is ranked perfectly.
    assert without == {
        "average_precision": pytest.approx((0.5 + 1.0) / 2),
        "one_error": 0.5,
        "ranking_loss": pytest.approx((0.5 + 0.0) / 2),
    }


def test_all_bags_degenerate_gives_nan_for_ranking_metrics() -> None:
    y = np.array([[1, 1, 1], [0, 0, 0], [1, 1, 1]])
    s = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.3], [0.5, 0.5, 0.5]])
    got = metrics.compute(y, s)
    for name in RANKING:
        assert math.isnan(got[name]), name
    assert got["hamming_loss"] == pytest.approx(2 / 9)
    for name in ("macro_f1", "hamming_loss", "coverage"):
        assert math.isfinite(got[name])


def test_coverage_counts_bag_without_relevant_label_as_zero() -> None:
    # Bag 0 needs depth 2 (labels scored >= 0.4), bag 1 has no relevant label: depth 0.
    y = np.array([[0, 1, 0, 0], [0, 0, 0, 0]])
    s = np.array([[0.9, 0.4, 0.1, 0.2], [0.3, 0.2, 0.1, 0.0]])
    assert metrics.coverage(y, s) == pytest.approx(((2 + 0) / 2 - 1) / 4)
    assert metrics.coverage(y[1:], s[1:]) == pytest.approx(-1 / 4)


def test_coverage_counts_ties_with_the_lowest_relevant_label() -> None:
    y = np.array([[1, 0, 0, 1]])
    s = np.array([[0.5, 0.5, 0.5, 0.5]])
    assert metrics.coverage(y, s) == pytest.approx((4 - 1) / 4)


@pytest.mark.parametrize(
    ("relevant", "expected"),
    [([0, 1, 0], 1.0), ([1, 0, 0], 0.0), ([1, 1, 0], 0.0), ([0, 1, 1], 1.0)],
)
def test_one_error_takes_first_of_tied_top_labels(relevant: list[int], expected: float) -> None:
    s = np.array([[0.9, 0.9, 0.1]])
    assert metrics.one_error(np.array([relevant]), s) == expected


def test_one_error_all_scores_tied_uses_first_label() -> None:
    s = np.full((2, 4), 0.3)
    y = np.array([[1, 0, 0, 0], [0, 0, 1, 0]])
    assert metrics.one_error(y, s) == 0.5


def test_ranking_loss_and_average_precision_ties_match_sklearn_pessimism() -> None:
    # A relevant and an irrelevant label tied: the pair counts as mis-ordered and the relevant
    # label is ranked behind its tie.
    y = np.array([[1, 0, 0]])
    s = np.array([[0.6, 0.6, 0.1]])
    assert metrics.ranking_loss(y, s) == pytest.approx(0.5)
    assert metrics.average_precision(y, s) == pytest.approx(0.5)
    assert metrics.ranking_loss(y, s) == pytest.approx(label_ranking_loss(y, s))
    assert metrics.average_precision(y, s) == pytest.approx(
        label_ranking_average_precision_score(y, s)
    )


def test_macro_f1_label_without_positives_or_predictions_counts_zero() -> None:
    y = np.array([[1, 0], [1, 0], [0, 0]])
    s = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.4]])
    assert metrics.macro_f1(y, s) == pytest.approx((1.0 + 0.0) / 2)
    assert metrics.macro_f1(y, s) == pytest.approx(
        f1_score(y, (s >= 0.5).astype(int), average="macro", zero_division=0)
    )


def test_threshold_is_inclusive_at_one_half() -> None:
    y = np.array([[1, 0]])
    s = np.array([[0.5, 0.4999999]])
    assert metrics.hamming_loss(y, s) == 0.0
    assert metrics.macro_f1(y, s) == 0.5  # label 1: no positives, no predictions -> 0


def _nondegenerate_labels() -> np.ndarray:
    return np.array(
        [
            [1, 0, 0, 1],
            [0, 1, 0, 0],
            [0, 1, 1, 0],
            [1, 0, 1, 1],
            [0, 0, 1, 0],
        ]
    )


def test_perfect_predictions_reach_each_best_value() -> None:
    y = _nondegenerate_labels()
    s = y.astype(float)
    got = metrics.compute(y, s, metrics.ALL_METRICS)
    mean_relevant = y.sum(axis=1).mean()
    assert got == {
        "average_precision": 1.0,
        "one_error": 0.0,
        "ranking_loss": 0.0,
        "macro_f1": 1.0,
        "hamming_loss": 0.0,
        "coverage": pytest.approx((mean_relevant - 1) / y.shape[1]),
        "mean_average_precision": 1.0,
        "hamming_accuracy": 1.0,
        "example_f1": 1.0,
        "micro_f1": 1.0,
        "precision_at_1": 1.0,
    }


def test_worst_predictions_reach_each_worst_value() -> None:
    y = _nondegenerate_labels()
    s = 1.0 - y
    n_labels = y.shape[1]
    got = metrics.compute(y, s, metrics.ALL_METRICS)
    # Every relevant label is tied at the bottom behind all labels: precision |Y_i| / L.
    want_ap = float(np.mean(y.sum(axis=1) / n_labels))
    # Per label, every relevant bag is tied at the bottom behind all bags: its prevalence.
    want_map = float(np.mean(y.mean(axis=0)))
    assert got == {
        "average_precision": pytest.approx(want_ap),
        "one_error": 1.0,
        "ranking_loss": 1.0,
        "macro_f1": 0.0,
        "hamming_loss": 1.0,
        "coverage": pytest.approx((n_labels - 1) / n_labels),
        "mean_average_precision": pytest.approx(want_map),
        "hamming_accuracy": 0.0,
        "example_f1": 0.0,
        "micro_f1": 0.0,
        "precision_at_1": 0.0,
    }


# ---------------------------------------------------------------------------------------------
# Registry, resolver, directions


def test_registry_names_and_order() -> None:
    assert metrics.BAG_METRICS == (
        "average_precision",
        "one_error",
        "ranking_loss",
        "macro_f1",
        "hamming_loss",
        "coverage",
    )
    assert metrics.MLL_METRICS == (
        "mean_average_precision",
        "hamming_accuracy",
        "example_f1",
        "micro_f1",
        "macro_f1",
        "precision_at_1",
    )
    assert metrics.ALL_METRICS == (
        "average_precision",
        "one_error",
        "ranking_loss",
        "macro_f1",
        "hamming_loss",
        "coverage",
        "mean_average_precision",
        "hamming_accuracy",
        "example_f1",
        "micro_f1",
        "precision_at_1",
    )
    assert len(set(metrics.ALL_METRICS)) == len(metrics.ALL_METRICS)
    assert set(metrics.MLL_METRICS) <= set(metrics.ALL_METRICS)
    assert metrics.INSTANCE_METRICS == (
        "instance_average_precision",
        "instance_one_error",
        "instance_ranking_loss",
        "instance_macro_f1",
        "instance_hamming_loss",
        "instance_coverage",
    )
    assert list(metrics.METRICS) == [*metrics.ALL_METRICS, *metrics.INSTANCE_METRICS]
    for name, metric in metrics.METRICS.items():
        assert metric.name == name
        assert metric.description
        assert callable(metric.fn)
        assert metric.level == ("instance" if name in metrics.INSTANCE_METRICS else "bag")


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("average_precision", "max"),
        ("macro_f1", "max"),
        ("hamming_loss", "min"),
        ("one_error", "min"),
        ("coverage", "min"),
        ("ranking_loss", "min"),
        ("mean_average_precision", "max"),
        ("hamming_accuracy", "max"),
        ("example_f1", "max"),
        ("micro_f1", "max"),
        ("precision_at_1", "max"),
    ],
)
def test_directions(name: str, mode: str) -> None:
    assert metrics.mode_of(name) == mode
    assert metrics.resolve_metric(name).mode == mode
    assert metrics.mode_of(f"instance_{name}" if name in metrics.BAG_METRICS else name) == mode


def test_directions_agree_with_perfect_and_worst_predictions() -> None:
    # Each metric's direction points from the worst predictions to the perfect ones.
    y = _nondegenerate_labels()
    best = metrics.compute(y, y.astype(float), metrics.ALL_METRICS)
    worst = metrics.compute(y, 1.0 - y, metrics.ALL_METRICS)
    for name in metrics.ALL_METRICS:
        assert metrics.is_better(name, best[name], worst[name]), name


def test_resolve_normalises_name() -> None:
    assert metrics.resolve_metric("Average-Precision") is metrics.METRICS["average_precision"]
    assert metrics.resolve_metric(" hamming loss ") is metrics.METRICS["hamming_loss"]


def test_resolve_unknown_name_lists_valid_names() -> None:
    with pytest.raises(MimlTuneError, match=r"unknown metric 'nope'; valid names: .*") as info:
        metrics.resolve_metric("nope")
    for name in metrics.METRICS:
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_resolve_non_string_name() -> None:
    with pytest.raises(MimlTuneError, match=r"must be a string, but got 3 \(int\)"):
        metrics.resolve_metric(3)  # type: ignore[arg-type]


def test_mode_of_unknown_name() -> None:
    with pytest.raises(MimlTuneError, match="valid names: average_precision"):
        metrics.mode_of("accuracy")


def test_metric_rejects_bad_mode() -> None:
    with pytest.raises(ValueError, match=r"mode must be one of \('max', 'min'\).*'maximize'"):
        metrics.Metric("x", "maximize", metrics.hamming_loss, "x")


@pytest.mark.parametrize(
    ("name", "a", "b", "expected"),
    [
        ("average_precision", 0.8, 0.7, True),
        ("average_precision", 0.7, 0.8, False),
        ("average_precision", 0.8, 0.8, False),
        ("hamming_loss", 0.1, 0.2, True),
        ("hamming_loss", 0.2, 0.1, False),
        ("hamming_loss", 0.1, 0.1, False),
        ("coverage", math.nan, 0.5, False),
        ("macro_f1", math.nan, 0.5, False),
        ("macro_f1", math.nan, math.nan, False),
        ("one_error", 0.3, math.nan, True),
        ("macro_f1", 0.3, math.nan, True),
    ],
)
def test_is_better(name: str, a: float, b: float, expected: bool) -> None:
    assert metrics.is_better(name, a, b) is expected


def test_is_better_unknown_name() -> None:
    with pytest.raises(MimlTuneError, match="unknown metric 'auc'"):
        metrics.is_better("auc", 0.5, 0.4)


def test_compute_subset_keeps_requested_order() -> None:
    y, s = _random_case(11, tied=False)
    got = metrics.compute(y, s, ["coverage", "Macro-F1", "one_error"])
    assert list(got) == ["coverage", "macro_f1", "one_error"]
    full = metrics.compute(y, s)
    assert list(full) == list(metrics.BAG_METRICS)
    for name, value in got.items():
        _assert_same(value, full[name])


def test_compute_single_string_name() -> None:
    y, s = _random_case(12, tied=False)
    assert list(metrics.compute(y, s, "ranking_loss")) == ["ranking_loss"]


def test_compute_unknown_name() -> None:
    y, s = _random_case(13, tied=False)
    with pytest.raises(MimlTuneError, match="unknown metric 'f1'; valid names:"):
        metrics.compute(y, s, ["hamming_loss", "f1"])


def test_compute_empty_names() -> None:
    y, s = _random_case(14, tied=False)
    with pytest.raises(MimlTuneError, match="no metric names given; pass names=None"):
        metrics.compute(y, s, [])


# ---------------------------------------------------------------------------------------------
# Input validation

GOOD_Y = np.array([[1, 0], [0, 1]])
GOOD_S = np.array([[0.9, 0.1], [0.2, 0.7]])


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        (np.array([1, 0]), np.array([0.9, 0.1]), r"y_true must be 2-D .* got shape \(2,\)"),
        (GOOD_Y, GOOD_S[None], r"scores must be 2-D .* got shape \(1, 2, 2\)"),
        (GOOD_Y, GOOD_S[:, :1], r"same shape .* y_true.shape=\(2, 2\) and scores.shape=\(2, 1\)"),
        (GOOD_Y[:1], GOOD_S, r"same shape"),
        (np.zeros((0, 3)), np.zeros((0, 3)), r"at least one bag, .* shape \(0, 3\)"),
        (np.zeros((2, 0)), np.zeros((2, 0)), r"at least one label, .* shape \(2, 0\)"),
        (np.array([[1, 2], [0, 1]]), GOOD_S, r"only 0 and 1, but got 2 at \[0, 1\]"),
        (np.array([[1, 0], [-1, 1]]), GOOD_S, r"only 0 and 1, but got -1 at \[1, 0\]"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), GOOD_S, r"only 0 and 1, but got 0.5 at \[0, 1\]"),
        (np.array([[1.0, np.nan], [0, 1]]), GOOD_S, r"only 0 and 1, but got nan"),
        (GOOD_Y, np.array([[0.9, np.nan], [0.2, 0.7]]), r"finite, but got nan at \[0, 1\]"),
        (
            GOOD_Y,
            np.array([[0.9, 0.1], [np.inf, -np.inf]]),
            r"finite, but got inf at \[1, 0\] \(2 non-finite",
        ),
        (np.array([["a", "b"]]), np.array([[0.1, 0.2]]), r"y_true must be a bool, integer or"),
        (GOOD_Y, GOOD_S.astype(complex), r"scores must be a bool, integer or float array"),
        ([[1, 0], [1]], GOOD_S, r"y_true must be a rectangular \(n_bags, n_labels\) array"),
    ],
)
def test_invalid_inputs_raise_value_error(y: object, s: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metrics.compute(y, s)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        metrics.hamming_loss(y, s)  # type: ignore[arg-type]


def test_validation_error_is_plain_value_error_not_project_error() -> None:
    with pytest.raises(ValueError) as info:
        metrics.coverage(GOOD_Y, GOOD_S[:1])
    assert not isinstance(info.value, MimlTuneError)


# ---------------------------------------------------------------------------------------------
# MulSupCon's metric set: pinned and degenerate cases


def test_mean_average_precision_pinned_with_ties() -> None:
    # Label 0: relevant bags scored 0.9 and 0.5, an irrelevant one tied at 0.5 and one at 0.1:
    # precisions 1/1 and 2/3. Label 1: relevant bag 0.2 behind two others: 1/3. Label 2 has no
    # relevant bag and is skipped.
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    s = np.array([[0.9, 0.8, 0.1], [0.5, 0.7, 0.2], [0.5, 0.2, 0.3], [0.1, 0.0, 0.4]])
    want = ((1 + 2 / 3) / 2 + 1 / 3) / 2
    assert metrics.mean_average_precision(y, s) == pytest.approx(want)
    assert metrics.mean_average_precision(y, s) == pytest.approx(
        average_precision_score(y[:, :2], s[:, :2], average="macro")
    )


def test_mean_average_precision_label_every_bag_has_scores_one() -> None:
    y = np.array([[1, 1], [1, 0], [1, 0]])
    s = np.array([[0.1, 0.2], [0.9, 0.3], [0.5, 0.1]])
    # Label 0 is relevant to every bag: 1. Label 1's one relevant bag is second: 1/2.
    assert metrics.mean_average_precision(y, s) == pytest.approx((1.0 + 1 / 2) / 2)
    assert metrics.mean_average_precision(y, s[:, ::-1]) == pytest.approx((1.0 + 1 / 3) / 2)


def test_mean_average_precision_differs_from_label_ranking_average_precision() -> None:
    # mAP ranks bags per label, average_precision ranks labels per bag: not the same quantity.
    y, s = _random_case(5, tied=False)
    got = metrics.compute(y, s, ["average_precision", "mean_average_precision"])
    assert got["average_precision"] != pytest.approx(got["mean_average_precision"])


def test_example_f1_empty_label_set_predicted_empty_counts_one() -> None:
    y = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 0]])
    s = np.array([[0.1, 0.2, 0.3], [0.6, 0.2, 0.3], [0.9, 0.1, 0.7]])
    # Bag 0: nothing relevant, nothing predicted: 1. Bag 1: nothing relevant, one predicted: 0.
    # Bag 2: |Y| = 2, |P| = 2, one in common: 2 * 1 / 4.
    assert metrics.example_f1(y, s) == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert metrics.example_f1(y, s) == pytest.approx(
        f1_score(y, (s >= 0.5).astype(int), average="samples", zero_division=1)
    )


def test_micro_f1_pools_entries_unlike_macro_f1() -> None:
    # Label 0: TP 3. Label 1: FN 1. Micro 2*3 / (6 + 1); macro (1 + 0) / 2.
    y = np.array([[1, 0], [1, 0], [1, 1]])
    s = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    assert metrics.micro_f1(y, s) == pytest.approx(6 / 7)
    assert metrics.macro_f1(y, s) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("relevant", "expected"),
    [([0, 1, 0], 0.0), ([1, 0, 0], 1.0), ([1, 1, 0], 1.0), ([0, 1, 1], 0.0)],
)
def test_precision_at_1_takes_first_of_tied_top_labels(
    relevant: list[int], expected: float
) -> None:
    s = np.array([[0.9, 0.9, 0.1]])
    assert metrics.precision_at_1(np.array([relevant]), s) == expected


def test_precision_at_1_counts_complete_bags_unlike_one_error() -> None:
    y = np.array([[1, 1, 1], [0, 1, 0], [0, 0, 0]])
    s = np.array([[0.1, 0.2, 0.3], [0.9, 0.2, 0.3], [0.5, 0.5, 0.5]])
    # Bag 0 (complete) is a hit, bag 1 a miss, bag 2 (empty) is skipped; one-error sees bag 1.
    assert metrics.precision_at_1(y, s) == 0.5
    assert metrics.one_error(y, s) == 1.0


def test_threshold_is_inclusive_at_one_half_for_mll_metrics() -> None:
    y = np.array([[1, 0]])
    s = np.array([[0.5, 0.4999999]])
    assert metrics.hamming_accuracy(y, s) == 1.0
    assert metrics.example_f1(y, s) == 1.0
    assert metrics.micro_f1(y, s) == 1.0


MLL_ONLY = (
    "mean_average_precision",
    "hamming_accuracy",
    "example_f1",
    "micro_f1",
    "precision_at_1",
)


def test_mll_metrics_every_label_relevant() -> None:
    y = np.ones((4, 3), dtype=int)
    s = np.array([[0.9, 0.2, 0.6], [0.1, 0.7, 0.3], [0.4, 0.4, 0.8], [0.6, 0.6, 0.6]])
    got = metrics.compute(y, s, MLL_ONLY)
    n_pred = (s >= 0.5).sum(axis=1)
    assert got == {
        "mean_average_precision": 1.0,  # every bag relevant: precision 1 at every threshold
        "hamming_accuracy": pytest.approx(n_pred.sum() / 12),
        "example_f1": pytest.approx(np.mean(2 * n_pred / (3 + n_pred))),
        "micro_f1": pytest.approx(2 * n_pred.sum() / (2 * n_pred.sum() + 12 - n_pred.sum())),
        "precision_at_1": 1.0,
    }


def test_mll_metrics_no_label_relevant() -> None:
    y = np.zeros((3, 4), dtype=int)
    s = np.array([[0.1, 0.2, 0.3, 0.4], [0.6, 0.2, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]])
    got = metrics.compute(y, s, MLL_ONLY)
    assert math.isnan(got["mean_average_precision"])
    assert math.isnan(got["precision_at_1"])
    assert got["hamming_accuracy"] == pytest.approx(11 / 12)
    assert got["example_f1"] == pytest.approx(2 / 3)  # bags 0 and 2 predict nothing: 1 each
    assert got["micro_f1"] == 0.0  # one false positive, no true positive
    # Nothing relevant and nothing predicted anywhere: micro-F1 0 (zero_division=0).
    assert metrics.micro_f1(y, np.zeros_like(s)) == 0.0
    assert metrics.example_f1(y, np.zeros_like(s)) == 1.0


def test_mll_metrics_all_zero_scores() -> None:
    y = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1]])
    s = np.zeros(y.shape)
    got = metrics.compute(y, s, MLL_ONLY)
    yl, sl = _to_lists(y, s)
    assert got == {
        # All bags tied for every label: each label's AP is its prevalence.
        "mean_average_precision": pytest.approx((2 / 4 + 1 / 4 + 2 / 4) / 3),
        "hamming_accuracy": pytest.approx(1 - 5 / 12),
        "example_f1": pytest.approx(1 / 4),  # only the empty bag is right
        "micro_f1": 0.0,
        "precision_at_1": pytest.approx(2 / 3),  # ties go to label 0: bags 0 and 3 of 0, 1, 3
    }
    for name in MLL_ONLY:
        _assert_same(got[name], REFERENCES[name](yl, sl))
    for name in ("mean_average_precision", "hamming_accuracy", "example_f1", "micro_f1"):
        _assert_same(got[name], SKLEARN[name](y, s))


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied"])
def test_large_input_matches_sklearn(tied: bool) -> None:
    rng = np.random.default_rng(7)
    y = (rng.random((2000, 20)) < rng.uniform(0.02, 0.4, size=20)).astype(int)
    y[:50] = 0
    s = rng.choice([0.0, 0.3, 0.5, 0.8], size=y.shape) if tied else rng.random(y.shape)
    got = metrics.compute(y, s, metrics.ALL_METRICS)
    for name, sk in SKLEARN.items():
        _assert_same(got[name], sk(y, s))


# ---------------------------------------------------------------------------------------------
# Instance-level metrics


def _random_instances(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-bag instance labels and (partly tied) scores, bags of 1-6 instances."""
    rng = np.random.default_rng(seed)
    n_labels = int(rng.integers(2, 8))
    sizes = rng.integers(1, 7, size=int(rng.integers(1, 15)))
    labels = [(rng.random((n, n_labels)) < 0.3).astype(int) for n in sizes]
    scores = [rng.choice([0.1, 0.5, 0.9], size=(n, n_labels)) for n in sizes[: len(sizes) // 2]]
    scores += [rng.random((n, n_labels)) for n in sizes[len(sizes) // 2 :]]
    return labels, scores


@pytest.mark.parametrize("seed", range(20))
def test_instance_metrics_are_bag_metrics_of_stacked_instances(seed: int) -> None:
    labels, scores = _random_instances(seed)
    got = metrics.compute_instances(labels, scores)
    assert list(got) == list(metrics.INSTANCE_METRICS)
    y, s = np.concatenate(labels), np.concatenate(scores)
    yl, sl = _to_lists(y, s)
    for name in metrics.BAG_METRICS:
        _assert_same(got[f"instance_{name}"], REFERENCES[name](yl, sl))
        _assert_same(
            metrics.METRICS[f"instance_{name}"].fn(labels, scores), got[f"instance_{name}"]
        )


def test_instance_metrics_count_every_instance_once() -> None:
    # Bag 0 has three instances all wrong, bag 1 one instance right: 3 of 4 instances wrong on
    # both labels, not the 1 of 2 a mean over bags would give.
    labels = [np.array([[1, 0], [1, 0], [1, 0]]), np.array([[0, 1]])]
    scores = [np.array([[0.1, 0.9]] * 3), np.array([[0.2, 0.8]])]
    got = metrics.compute_instances(labels, scores, ["instance_hamming_loss", "instance_one_error"])
    assert got == {"instance_hamming_loss": 0.75, "instance_one_error": 0.75}


def test_compute_instances_names_and_order() -> None:
    labels, scores = _random_instances(3)
    full = metrics.compute_instances(labels, scores)
    got = metrics.compute_instances(labels, scores, ["Instance-Coverage", "instance_macro_f1"])
    assert list(got) == ["instance_coverage", "instance_macro_f1"]
    for name, value in got.items():
        _assert_same(value, full[name])
    one = metrics.compute_instances(labels, scores, "instance_one_error")
    assert list(one) == ["instance_one_error"]


def test_compute_refuses_instance_metrics_naming_compute_instances() -> None:
    y, s = _random_case(4, tied=False)
    with pytest.raises(
        ValueError,
        match=r"instance-level instance_average_precision; .*"
        r"compute_instances\(instance_labels, instance_scores, names\)",
    ):
        metrics.compute(y, s, ["average_precision", "instance_average_precision"])


def test_compute_instances_refuses_bag_metrics() -> None:
    labels, scores = _random_instances(4)
    with pytest.raises(MimlTuneError, match=r"bag-level one_error; use compute\(y_true"):
        metrics.compute_instances(labels, scores, ["instance_coverage", "one_error"])
    with pytest.raises(MimlTuneError, match="no metric names given"):
        metrics.compute_instances(labels, scores, [])
    with pytest.raises(MimlTuneError, match="unknown metric 'instance_auc'"):
        metrics.compute_instances(labels, scores, ["instance_auc"])


GOOD_BAGS_Y = [np.array([[1, 0], [0, 1]]), np.array([[1, 1]])]
GOOD_BAGS_S = [np.array([[0.9, 0.1], [0.2, 0.7]]), np.array([[0.6, 0.3]])]


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        (GOOD_BAGS_Y, GOOD_BAGS_S[:1], r"one array per bag each, but got 2 label arrays and 1"),
        ([], [], r"at least one bag, but got no bags"),
        (np.zeros((2, 2)), np.zeros((2, 2)), r"sequences of per-bag .* wrap one bag as \[array\]"),
        (
            GOOD_BAGS_Y,
            [GOOD_BAGS_S[0], np.array([[0.6, 0.3, 0.1]])],
            r"instance_labels\[1\] and instance_scores\[1\] must have the same shape "
            r"\(n_instances, n_labels\)",
        ),
        (
            [GOOD_BAGS_Y[0], np.array([[1, 1, 0]])],
            [GOOD_BAGS_S[0], np.array([[0.6, 0.3, 0.1]])],
            r"same number of labels, but instance_labels\[0\] has 2 and instance_labels\[1\] has 3",
        ),
        (
            [GOOD_BAGS_Y[0], np.zeros((0, 2))],
            [GOOD_BAGS_S[0], np.zeros((0, 2))],
            r"at least one instance, but got instance_labels\[1\] of shape \(0, 2\)",
        ),
        (
            [GOOD_BAGS_Y[0], np.array([[1, 2]])],
            GOOD_BAGS_S,
            r"instance_labels\[1\] must contain only 0 and 1, but got 2 at \[0, 1\]",
        ),
        (
            GOOD_BAGS_Y,
            [GOOD_BAGS_S[0], np.array([[np.nan, 0.3]])],
            r"instance_scores\[1\] must be finite, but got nan at \[0, 0\]",
        ),
        (
            [np.array([1, 0])],
            [np.array([0.9, 0.1])],
            r"instance_labels\[0\] must be 2-D with shape \(n_instances, n_labels\)",
        ),
    ],
)
def test_compute_instances_invalid_inputs(labels: object, scores: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        metrics.compute_instances(labels, scores)  # type: ignore[arg-type]


def test_metric_rejects_bad_level() -> None:
    with pytest.raises(ValueError, match=r"level must be one of \('bag', 'instance'\).*'bags'"):
        metrics.Metric("x", "max", metrics.hamming_loss, "x", level="bags")
