"""Tests for tuner.metrics: scikit-learn and slow pure-Python references, ties, degenerate bags."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import (
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


REFERENCES: dict[str, Callable[[Rows, Scores], float]] = {
    "average_precision": ref_average_precision,
    "one_error": ref_one_error,
    "ranking_loss": ref_ranking_loss,
    "macro_f1": ref_macro_f1,
    "hamming_loss": ref_hamming_loss,
    "coverage": ref_coverage,
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


SKLEARN: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "average_precision": _sk_on_qualifying(label_ranking_average_precision_score),
    "ranking_loss": _sk_on_qualifying(label_ranking_loss),
    "coverage": lambda y, s: (coverage_error(y, s) - 1) / y.shape[1],
    "hamming_loss": lambda y, s: float(sk_hamming_loss(y, (s >= 0.5).astype(int))),
    "macro_f1": lambda y, s: float(
        f1_score(y, (s >= 0.5).astype(int), average="macro", zero_division=0)
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
    got = metrics.compute(y, s)
    for name, ref in REFERENCES.items():
        _assert_same(got[name], ref(yl, sl))


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied"])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_sklearn(seed: int, tied: bool) -> None:
    y, s = _random_case(1000 + seed, tied=tied)
    got = metrics.compute(y, s)
    for name, sk in SKLEARN.items():
        _assert_same(got[name], sk(y, s))


@pytest.mark.parametrize("tied", [False, True], ids=["continuous", "tied"])
def test_search_sized_input_matches_sklearn_and_reference(tied: bool) -> None:
    rng = np.random.default_rng(99)
    y = (rng.random((700, 25)) < 0.2).astype(int)
    s = rng.choice([0.1, 0.5, 0.9], size=y.shape) if tied else rng.random(y.shape)
    got = metrics.compute(y, s)
    yl, sl = _to_lists(y, s)
    for name, ref in REFERENCES.items():
        _assert_same(got[name], ref(yl, sl))
    for name, sk in SKLEARN.items():
        _assert_same(got[name], sk(y, s))


@pytest.mark.parametrize("seed", range(10))
def test_each_public_function_agrees_with_compute(seed: int) -> None:
    y, s = _random_case(2000 + seed, tied=bool(seed % 2))
    got = metrics.compute(y, s)
    for name in metrics.BAG_METRICS:
        _assert_same(metrics.METRICS[name].fn(y, s), got[name])
        _assert_same(getattr(metrics, name)(y, s), got[name])


def test_input_formats_give_same_values() -> None:
    y, s = _random_case(7, tied=True)
    want = metrics.compute(y, s)
    for yy, ss in [
        (y.astype(bool), s),
        (y.astype(np.float32), s.astype(np.float32)),
        (y.astype(np.uint8), s),
        (y.tolist(), s.tolist()),
    ]:
        got = metrics.compute(yy, ss)
        for name in metrics.BAG_METRICS:
            _assert_same(got[name], want[name])


def test_single_label_ranking_metrics_are_nan() -> None:
    y = np.array([[1], [0], [1]])
    s = np.array([[0.7], [0.2], [0.4]])
    got = metrics.compute(y, s)
    yl, sl = _to_lists(y, s)
    for name in ("average_precision", "one_error", "ranking_loss"):
        assert math.isnan(got[name])
    for name in ("macro_f1", "hamming_loss", "coverage"):
        _assert_same(got[name], REFERENCES[name](yl, sl))


def test_inputs_not_modified() -> None:
    y, s = _random_case(3, tied=False)
    y0, s0 = y.copy(), s.copy()
    metrics.compute(y, s)
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
    got = metrics.compute(y, s)
    mean_relevant = y.sum(axis=1).mean()
    assert got == {
        "average_precision": 1.0,
        "one_error": 0.0,
        "ranking_loss": 0.0,
        "macro_f1": 1.0,
        "hamming_loss": 0.0,
        "coverage": pytest.approx((mean_relevant - 1) / y.shape[1]),
    }


def test_worst_predictions_reach_each_worst_value() -> None:
    y = _nondegenerate_labels()
    s = 1.0 - y
    n_labels = y.shape[1]
    got = metrics.compute(y, s)
    # Every relevant label is tied at the bottom behind all labels: precision |Y_i| / L.
    want_ap = float(np.mean(y.sum(axis=1) / n_labels))
    assert got == {
        "average_precision": pytest.approx(want_ap),
        "one_error": 1.0,
        "ranking_loss": 1.0,
        "macro_f1": 0.0,
        "hamming_loss": 1.0,
        "coverage": pytest.approx((n_labels - 1) / n_labels),
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
    assert set(metrics.METRICS) == set(metrics.BAG_METRICS)
    for name, metric in metrics.METRICS.items():
        assert metric.name == name
        assert metric.description
        assert callable(metric.fn)


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("average_precision", "max"),
        ("macro_f1", "max"),
        ("hamming_loss", "min"),
        ("one_error", "min"),
        ("coverage", "min"),
        ("ranking_loss", "min"),
    ],
)
def test_directions(name: str, mode: str) -> None:
    assert metrics.mode_of(name) == mode
    assert metrics.resolve_metric(name).mode == mode


def test_resolve_normalises_name() -> None:
    assert metrics.resolve_metric("Average-Precision") is metrics.METRICS["average_precision"]
    assert metrics.resolve_metric(" hamming loss ") is metrics.METRICS["hamming_loss"]


def test_resolve_unknown_name_lists_valid_names() -> None:
    with pytest.raises(MimlTuneError, match=r"unknown metric 'nope'; valid names: .*") as info:
        metrics.resolve_metric("nope")
    for name in metrics.BAG_METRICS:
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
