"""Holdout and repeated iterative-stratified K-fold: partitions, determinism, stratification."""

from __future__ import annotations

import numpy as np
import pytest

from tuner.cv import cv_folds, holdout_split
from tuner.errors import MimlTuneError


@pytest.fixture
def labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    y = (rng.random((120, 6)) < [0.5, 0.3, 0.2, 0.1, 0.05, 0.4]).astype(np.uint8)
    return y


def test_folds_partition_each_repeat(labels: np.ndarray) -> None:
    folds = cv_folds(labels, folds=3, repeats=5, seed=0)
    assert len(folds) == 15
    assert [(f.repeat, f.fold) for f in folds[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    for r in range(5):
        repeat = [f for f in folds if f.repeat == r]
        validation = np.concatenate([f.validation for f in repeat])
        assert sorted(validation.tolist()) == list(range(len(labels)))
        for f in repeat:
            assert not set(f.train) & set(f.validation)
            assert len(f.train) + len(f.validation) == len(labels)


def test_folds_are_deterministic_and_repeats_differ(labels: np.ndarray) -> None:
    a = cv_folds(labels, 3, 2, seed=7)
    b = cv_folds(labels, 3, 2, seed=7)
    c = cv_folds(labels, 3, 2, seed=8)
    assert all(np.array_equal(x.validation, y.validation) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.validation, y.validation) for x, y in zip(a, c, strict=True))
    assert not np.array_equal(a[0].validation, a[3].validation)


def test_folds_are_stratified(labels: np.ndarray) -> None:
    overall = labels.mean(axis=0)
    for fold in cv_folds(labels, 3, 1, seed=0):
        share = labels[fold.validation].mean(axis=0)
        assert np.all(np.abs(share - overall) < 0.06)


def test_holdout_is_disjoint_stratified_and_deterministic(labels: np.ndarray) -> None:
    dev, hold = holdout_split(labels, 0.2, seed=0)
    assert len(hold) == 24 and len(dev) == 96
    assert not set(dev) & set(hold)
    assert np.all(np.abs(labels[hold].mean(0) - labels.mean(0)) < 0.08)
    dev2, hold2 = holdout_split(labels, 0.2, seed=0)
    assert np.array_equal(hold, hold2) and np.array_equal(dev, dev2)
    dev0, hold0 = holdout_split(labels, 0.0, seed=0)
    assert len(hold0) == 0 and len(dev0) == 120


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda y: cv_folds(y, 1, 1, 0), r"cv folds must be >= 2, got 1"),
        (lambda y: cv_folds(y, 3, 0, 0), r"cv repeats must be >= 1, got 0"),
        (lambda y: cv_folds(y[:2], 3, 1, 0), r"cv folds \(3\) exceeds the number"),
        (lambda y: holdout_split(y, 0.5, 0), r"holdout must be a fraction in \[0, 0.5\)"),
        (lambda y: holdout_split(y[:3], 0.1, 0), r"leaves 0 for the holdout"),
    ],
)
def test_bad_protocols(labels: np.ndarray, call, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        call(labels)
