"""Label-ranking metrics: they read the order of the scores, no threshold.

See :mod:`tuner.metrics` for the conventions (skipped bags and labels, ties, coverage's scale).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from tuner.metrics._validation import BoolArray, FloatArray, IntArray, _validate

# Implementations on validated arrays: y (n, L) bool, s (n, L) float64.


def _ranked_bags(y: BoolArray, s: FloatArray) -> tuple[BoolArray, FloatArray]:
    """The bags whose label set is neither empty nor complete, which a ranking can get wrong."""
    n_rel = y.sum(axis=1)
    keep = (n_rel > 0) & (n_rel < y.shape[1])
    return y[keep], s[keep]


def _ranks_with_ties(y: BoolArray, s: FloatArray) -> tuple[BoolArray, IntArray, IntArray]:
    """Pessimistic ranks of every label, in each bag's descending-score order.

    Sorting each bag costs ``O(L log L)`` instead of the ``O(L^2)`` of comparing all label pairs.
    The order within a group of tied scores does not matter: every member of the group gets the
    rank of the group's last position, as scikit-learn ranks ties.

    Args:
        y: ``(m, L)`` relevance of the bags to rank.
        s: ``(m, L)`` their scores.

    Returns:
        ``(relevant, rank, relevant_rank)``, each ``(m, L)`` with column ``p`` the label at
        position ``p`` of the bag's descending-score order: whether it is relevant, the number
        of labels scored ``>=`` it, and the number of relevant labels among those.
    """
    n_labels = s.shape[1]
    order = np.argsort(-s, axis=1, kind="stable")
    sorted_s = np.take_along_axis(s, order, axis=1)
    relevant = np.take_along_axis(y, order, axis=1)
    group_end = np.ones(s.shape, dtype=bool)
    group_end[:, :-1] = sorted_s[:, :-1] != sorted_s[:, 1:]
    positions = np.where(group_end, np.arange(n_labels), n_labels)
    # Last position of each position's tie group: the next group end at or after it.
    last = np.minimum.accumulate(positions[:, ::-1], axis=1)[:, ::-1]
    relevant_rank = np.take_along_axis(np.cumsum(relevant, axis=1, dtype=np.intp), last, axis=1)
    return relevant, last + 1, relevant_rank


def _one_error(y: BoolArray, s: FloatArray) -> float:
    y, s = _ranked_bags(y, s)
    if y.shape[0] == 0:
        return math.nan
    top = s.argmax(axis=1)  # first index among ties
    return float(np.mean(~y[np.arange(y.shape[0]), top]))


def _ranking_loss(y: BoolArray, s: FloatArray) -> float:
    y, s = _ranked_bags(y, s)
    if y.shape[0] == 0:
        return math.nan
    relevant, rank, relevant_rank = _ranks_with_ties(y, s)
    # Irrelevant labels scored >= a relevant label, summed over the relevant labels.
    misordered = np.where(relevant, rank - relevant_rank, 0).sum(axis=1)
    n_rel = y.sum(axis=1)
    return float(np.mean(misordered / (n_rel * (y.shape[1] - n_rel))))


def _average_precision(y: BoolArray, s: FloatArray) -> float:
    y, s = _ranked_bags(y, s)
    if y.shape[0] == 0:
        return math.nan
    relevant, rank, relevant_rank = _ranks_with_ties(y, s)
    precision = np.where(relevant, relevant_rank / rank, 0.0)
    return float(np.mean(precision.sum(axis=1) / y.sum(axis=1)))


def _coverage(y: BoolArray, s: FloatArray) -> float:
    lowest_relevant = np.where(y, s, np.inf).min(axis=1)
    # Scores are finite, so a bag with no relevant label covers 0 labels, as in scikit-learn.
    depth = (s >= lowest_relevant[:, None]).sum(axis=1)
    return float((depth.mean() - 1.0) / y.shape[1])


def _mean_average_precision(y: BoolArray, s: FloatArray) -> float:
    # Per label, rank the bags: the label-ranking computation on the transposed arrays.
    keep = y.any(axis=0)
    if not keep.any():
        return math.nan
    yt, st = y[:, keep].T, s[:, keep].T
    relevant, rank, relevant_rank = _ranks_with_ties(yt, st)
    precision = np.where(relevant, relevant_rank / rank, 0.0)
    return float(np.mean(precision.sum(axis=1) / yt.sum(axis=1)))


def _precision_at_1(y: BoolArray, s: FloatArray) -> float:
    keep = y.any(axis=1)
    if not keep.any():
        return math.nan
    y, s = y[keep], s[keep]
    top = s.argmax(axis=1)  # first index among ties
    return float(np.mean(y[np.arange(y.shape[0]), top]))


# Public metric functions


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Example-based label-ranking average precision (higher is better, best 1).

    For each bag with a label set that is neither empty nor complete, the mean over its
    relevant labels ``j`` of ``|{k relevant: s_k >= s_j}| / |{k: s_k >= s_j}|``; then the mean
    over those bags. Equals scikit-learn's ``label_ranking_average_precision_score`` on them.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The average precision in ``(0, 1]``, or ``nan`` if no bag qualifies.
    """
    return _average_precision(*_validate(y_true, scores))


def one_error(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Fraction of bags whose top-scored label is not relevant (lower is better, best 0).

    Ties at the top go to the lowest column index. Only bags whose label set is neither empty
    nor complete count.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The one-error in ``[0, 1]``, or ``nan`` if no bag qualifies.
    """
    return _one_error(*_validate(y_true, scores))


def ranking_loss(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Fraction of (relevant, irrelevant) label pairs scored in the wrong order (lower is better).

    A pair is wrong when the irrelevant label scores ``>=`` the relevant one. Averaged per bag
    over ``|Y_i| * (L - |Y_i|)`` pairs, then over the bags whose label set is neither empty nor
    complete. Equals scikit-learn's ``label_ranking_loss`` on those bags.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The ranking loss in ``[0, 1]``, or ``nan`` if no bag qualifies.
    """
    return _ranking_loss(*_validate(y_true, scores))


def coverage(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Normalised coverage: ``(sklearn coverage_error - 1) / L`` over all bags (lower is better).

    Per bag, the number of labels scored ``>=`` its lowest-scored relevant label (0 for a bag
    with no relevant label); the mean over bags, minus one, divided by the number of labels.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The coverage, at most ``(L - 1) / L``; its best value for given labels is
        ``(mean_i |Y_i| - 1) / L``.
    """
    return _coverage(*_validate(y_true, scores))


def mean_average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """mAP: mean over labels of the per-label average precision (higher is better, best 1).

    For each label ``j`` with at least one relevant bag, the mean over its relevant bags ``i``
    of ``|{k relevant to j: s_kj >= s_ij}| / |{k: s_kj >= s_ij}|``; then the unweighted mean
    over those labels. Equals scikit-learn's ``average_precision_score(average="macro")`` on
    them.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The mean average precision in ``(0, 1]``, or ``nan`` if no label has a relevant bag.
    """
    return _mean_average_precision(*_validate(y_true, scores))


def precision_at_1(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Fraction of bags whose top-scored label is relevant (higher is better, best 1).

    Ties at the top go to the lowest column index. Only bags with at least one relevant label
    count (a bag with every label relevant counts, and scores 1).

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.

    Returns:
        The precision at 1 in ``[0, 1]``, or ``nan`` if no bag has a relevant label.
    """
    return _precision_at_1(*_validate(y_true, scores))
