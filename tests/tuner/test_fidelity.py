"""CV repeats as a second fidelity, the paired test over folds, and the time budget's parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from tuner.data import load_dataset
from tuner.errors import MimlTuneError
from tuner.search.progress import is_pruned, protocol_reached
from tuner.search.results import compare_with_peers
from tuner.spec import parse_duration
from tuner.stats import paired_wilcoxon
from tuner.trial import CVProtocol, RepeatsSchedule, run_cv, rung_milestones


@pytest.mark.parametrize(
    ("max_epochs", "grace", "factor", "expected"),
    [
        (30, 5, 3, [5, 15]),  # the birds space: Ray's ASHA rungs at 5 and 15
        (12, 2, 3, [2, 6]),
        (6, 2, 2, [2, 4]),
        (30, 10, 3, [10]),  # a rung at max_t is no rung: the trial ends there anyway
        (5, 5, 3, []),
        (30, 5, 1.0, []),
    ],
)
def test_rung_milestones(max_epochs: int, grace: int, factor: float, expected: list[int]) -> None:
    assert rung_milestones(max_epochs, grace, factor) == expected


def test_repeats_grow_by_the_factor_at_each_rung_passed() -> None:
    schedule = RepeatsSchedule((2, 6), repeats=5, growth=3)
    assert [schedule.at(e) for e in range(1, 10)] == [1, 1, 3, 3, 3, 3, 5, 5, 5]
    assert RepeatsSchedule((), repeats=4).at(1) == 4  # no rungs: the full protocol at once


@pytest.fixture(scope="module")
def birds():  # type: ignore[no-untyped-def]
    return load_dataset("birds")


def test_a_trial_under_the_repeats_fidelity_ends_exactly_as_under_the_full_protocol(
    birds,  # type: ignore[no-untyped-def]
) -> None:
    protocol = CVProtocol(folds=3, repeats=3, seed=0)
    config = {"epochs": 5}
    full = run_cv("bag_mean_mlp", config, birds, protocol)
    rows: list[dict] = []
    cheap = run_cv(
        "bag_mean_mlp",
        config,
        birds,
        protocol,
        schedule=RepeatsSchedule((2,), 3, 3),
        report=rows.append,
    )
    # Same folds, same seeds, repeats caught up: the final scores are the full protocol's.
    assert cheap.per_fold == full.per_fold
    assert cheap.summary["average_precision"] == full.summary["average_precision"]
    assert cheap.summary["full_protocol"] == 1.0 and cheap.summary["fold_epochs"] == 9 * 5
    # Up to the rung it trained one repeat: a trial pruned there paid 3 x 2 fold-epochs, not 9 x 2.
    at_rung = rows[1]
    assert (at_rung["epoch"], at_rung["cv_repeats_done"], at_rung["fold_epochs"]) == (2, 1, 6)
    assert full.history[1]["fold_epochs"] == 18
    assert is_pruned(at_rung) and protocol_reached(at_rung) == "partial (1 repeats)"
    assert not is_pruned(rows[-1]) and protocol_reached(rows[-1]) == "full"
    # The first rung's value is the first repeat's folds alone, as for every other trial.
    first = full.history[1]  # the full run's epoch 2 over all 9 folds differs from it
    assert at_rung["average_precision"] != first["average_precision"]


def test_a_last_epoch_on_a_rung_reports_the_rung_value_first(birds) -> None:  # type: ignore[no-untyped-def]
    rows: list[dict] = []
    run_cv(
        "bag_mean_mlp",
        {"epochs": 2},
        birds,
        CVProtocol(folds=3, repeats=2, seed=0),
        schedule=RepeatsSchedule((2,), 2, 2),
        report=rows.append,
    )
    assert [(r["epoch"], r["cv_repeats_done"]) for r in rows] == [(1, 1), (2, 1), (2, 2)]
    assert "per_fold" in rows[-1] and len(rows[-1]["per_fold"]["average_precision"]) == 6


def test_a_trial_that_never_reported_is_not_completed() -> None:
    assert is_pruned({})
    assert not is_pruned({"epoch": 3, "target_epochs": 3})
    assert is_pruned({"epoch": 3, "target_epochs": 3, "full_protocol": 0.0})


FOLDS_A = [0.61, 0.64, 0.59, 0.66, 0.63, 0.60, 0.65, 0.62, 0.67]
FOLDS_B = [0.55, 0.60, 0.58, 0.61, 0.57, 0.59, 0.60, 0.56, 0.62]


def test_the_paired_test_agrees_with_scipy() -> None:
    result = paired_wilcoxon(FOLDS_A, FOLDS_B, mode="max")
    diff = np.subtract(FOLDS_A, FOLDS_B)
    reference = wilcoxon(diff, alternative="greater")
    assert result["verdict"] == "beats"
    assert result["p_value"] == pytest.approx(reference.pvalue)
    assert result["statistic"] == pytest.approx(reference.statistic)
    assert result["mean_difference"] == pytest.approx(diff.mean())
    assert result["folds"] == 9
    worse = paired_wilcoxon(FOLDS_B, FOLDS_A, mode="max")
    assert worse["verdict"] == "loses to"
    assert worse["p_value"] == pytest.approx(wilcoxon(-diff, alternative="less").pvalue)


def test_the_paired_test_follows_the_metric_direction_and_ties_on_noise() -> None:
    # For a loss, lower is better: A's larger values lose.
    assert paired_wilcoxon(FOLDS_A, FOLDS_B, mode="min")["verdict"] == "loses to"
    noisy = [a + (0.01 if i % 2 else -0.01) for i, a in enumerate(FOLDS_A)]
    assert paired_wilcoxon(noisy, FOLDS_A, mode="max")["verdict"] == "ties with"
    same = paired_wilcoxon(FOLDS_A, FOLDS_A, mode="max")
    assert same["verdict"] == "ties with" and same["p_value"] == 1.0
    nan = [math.nan, *FOLDS_A[1:]]
    assert paired_wilcoxon(nan, FOLDS_B, mode="max")["folds"] == 8
    with pytest.raises(ValueError, match="same folds"):
        paired_wilcoxon(FOLDS_A, FOLDS_B[:5], mode="max")
    with pytest.raises(ValueError, match="mode"):
        paired_wilcoxon(FOLDS_A, FOLDS_B, mode="up")


def test_the_best_is_compared_with_each_peer_on_shared_folds() -> None:
    best = {"folds": {"average_precision": FOLDS_A}}
    peers = {
        "bag_mean_linear": {"average_precision": 0.6, "per_fold": {"average_precision": FOLDS_B}},
        "old": {"average_precision": 0.6},  # launched before per-fold values were kept
        "other_folds": {"per_fold": {"average_precision": FOLDS_B[:3]}},
    }
    tests = compare_with_peers(best, peers, "average_precision")
    assert list(tests) == ["bag_mean_linear"] and tests["bag_mean_linear"]["verdict"] == "beats"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("1.5h", 5400.0), ("2d", 172800.0), (45, 45.0)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "0", "10 minutes", "1e9999", "x" * 500])
def test_bad_durations_are_one_line(text: str) -> None:
    with pytest.raises(MimlTuneError, match="--time-budget") as info:
        parse_duration(text)
    assert len(str(info.value)) < 200 and "\n" not in str(info.value)
