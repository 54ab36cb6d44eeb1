"""Metrics of predicted label sets: a label is predicted when its score is ``>= 0.5``.

See :mod:`tuner.metrics` for the conventions (the threshold, F1's zero division).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from tuner.metrics._validation import BoolArray, FloatArray, _validate

_THRESHOLD = 0.5

# Implementations on validated arrays: y (n, L) bool, s (n, L) float64.


def _hamming_loss(y: BoolArray, s: FloatArray) -> float:
    return float(np.mean((s >= _THRESHOLD) != y))


def _macro_f1(y: BoolArray, s: FloatArray) -> float:
    pred = s >= _THRESHOLD
    tp = (pred & y).sum(axis=0)
    fp = (pred & ~y).sum(axis=0)
    fn = (~pred & y).sum(axis=0)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(y.shape[1]), where=denom > 0)
    return float(f1.mean())


def _hamming_accuracy(y: BoolArray, s: FloatArray) -> float:
    return 1.0 - _hamming_loss(y, s)


def _example_f1(y: BoolArray, s: FloatArray) -> float:
    pred = s >= _THRESHOLD
    both = (pred & y).sum(axis=1)
    denom = y.sum(axis=1) + pred.sum(axis=1)
    # An empty label set predicted empty is a correct prediction: F1 1 (zero_division=1).
    f1 = np.divide(2.0 * both, denom, out=np.ones(y.shape[0]), where=denom > 0)
    return float(f1.mean())


def _micro_f1(y: BoolArray, s: FloatArray) -> float:
    pred = s >= _THRESHOLD
    tp = int(np.count_nonzero(pred & y))
    denom = 2 * tp + int(np.count_nonzero(pred ^ y))  # 2 TP + FP + FN
    return 2.0 * tp / denom if denom > 0 else 0.0


# Public metric functions


def macro_f1(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Unweighted mean over labels of the F1 of predictions ``scores >= 0.5`` (higher is better).

    A label with no positives and no positive predictions has F1 0, as scikit-learn's
    ``f1_score(average="macro", zero_division=0)``.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The macro-F1 in ``[0, 1]``.
    """
    return _macro_f1(*_validate(y_true, scores))


def hamming_loss(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Fraction of (bag, label) entries where ``scores >= 0.5`` disagrees with ``y_true``.

    Lower is better, best 0.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The Hamming loss in ``[0, 1]``.
    """
    return _hamming_loss(*_validate(y_true, scores))


def hamming_accuracy(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Fraction of (bag, label) entries where ``scores >= 0.5`` agrees with ``y_true``.

    ``1 - hamming_loss``; higher is better, best 1.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The Hamming accuracy in ``[0, 1]``.
    """
    return _hamming_accuracy(*_validate(y_true, scores))


def example_f1(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Example-based F1: mean over bags of ``2 |Y_i & P_i| / (|Y_i| + |P_i|)`` (higher is better).

    ``P_i`` is the set of labels scored ``>= 0.5``. A bag with no relevant and no predicted
    label scores 1, as scikit-learn's ``f1_score(average="samples", zero_division=1)``.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The example-F1 in ``[0, 1]``.
    """
    return _example_f1(*_validate(y_true, scores))


def micro_f1(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Micro-F1: ``2 TP / (2 TP + FP + FN)`` over all (bag, label) entries (higher is better).

    Predictions are ``scores >= 0.5``. With no positive and no positive prediction anywhere it
    is 0, as scikit-learn's ``f1_score(average="micro", zero_division=0)``.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The micro-F1 in ``[0, 1]``.
    """
    return _micro_f1(*_validate(y_true, scores))
