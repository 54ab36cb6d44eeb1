"""Bag-level MIML metrics, MulSupCon's multi-label metrics and instance-level MIML metrics,
each carrying its direction, behind one resolver.

Every bag-level metric takes ``y_true``, an ``(n_bags, n_labels)`` 0/1 array of the bags' label
sets, and ``scores``, an ``(n_bags, n_labels)`` array of predicted label probabilities, and
returns a float. (For vector data a "bag" is one example; the definitions do not change.) The
names are the single strings used everywhere in the project (search-space YAML,
``tune.report``, MLflow, CLI output), and each carries its direction (``"max"`` or ``"min"``):

==========================  =====  ===========================================================
name                        mode   definition (``Y_i`` relevant labels of bag ``i``, ``L`` labels)
==========================  =====  ===========================================================
``average_precision``       max    example-based label-ranking average precision
``one_error``               min    fraction of bags whose top-ranked label is not relevant
``ranking_loss``            min    fraction of (relevant, irrelevant) label pairs mis-ordered
``macro_f1``                max    unweighted mean over labels of the per-label F1
``hamming_loss``            min    fraction of (bag, label) entries predicted wrongly
``coverage``                min    ranking depth needed to cover all relevant labels, over ``L``
``mean_average_precision``  max    mAP: mean over labels of the per-label average precision
``hamming_accuracy``        max    ``1 - hamming_loss``
``example_f1``              max    mean over bags of ``2 |Y_i & P_i| / (|Y_i| + |P_i|)``
``micro_f1``                max    F1 of all (bag, label) entries pooled
``precision_at_1``          max    fraction of bags whose top-ranked label is relevant
==========================  =====  ===========================================================

:data:`BAG_METRICS` lists the first six, the MIML set, in the order of the GAMIL-C paper's
result table. :data:`MLL_METRICS` is the multi-label set MulSupCon reports (``macro_f1`` is in
both). :data:`ALL_METRICS` is the bag metrics then the MLL ones not already listed.

Conventions:

* **Threshold.** Every metric of predicted label *sets* (Hamming loss and accuracy, macro-,
  micro- and example-F1) predicts a label when its score is ``>= 0.5``: ``P_i`` above is
  ``{j: scores[i, j] >= 0.5}``. Scores are meant as probabilities, so 0.5 is the decision
  point of a calibrated binary classifier per label; the ranking metrics use no threshold.
* **F1 zero division.** Macro-F1 and micro-F1 count an F1 whose ``2 TP + FP + FN`` is 0 (no
  positive and no positive prediction: of one label for macro, of the whole array for micro)
  as 0, like scikit-learn's ``f1_score(average=..., zero_division=0)``. Example-F1 counts a
  bag with ``|Y_i| + |P_i| = 0`` (no relevant label, none predicted: a correct prediction)
  as 1, like ``f1_score(average="samples", zero_division=1)``, so a model is not penalised
  for predicting the empty set on a bag that has no label.
* **Skipped bags.** One-error, ranking loss and average precision are averaged over the bags
  whose label set is neither empty nor complete (a ranking cannot be wrong on those), as the
  classic MIML toolbox does. Precision at 1 is averaged over the bags with at least one
  relevant label (a complete bag scores 1, so it is not ``1 - one_error`` when some bag has
  every label). If no bag qualifies they return ``nan``.
* **Skipped labels.** Mean average precision is averaged over the labels with at least one
  relevant bag (a label's average precision is undefined without a positive; a label that
  every bag has scores 1). It equals scikit-learn's ``average_precision_score(y_true[:, keep],
  scores[:, keep], average="macro")`` on those labels ``keep``, and is ``nan`` if no label
  qualifies.
* **Ties.** Ranking loss counts a (relevant, irrelevant) pair as mis-ordered when the irrelevant
  label's score is ``>=`` the relevant one's, and average precision ranks a label behind every
  label with an equal or higher score, exactly as scikit-learn's ``label_ranking_loss`` and
  ``label_ranking_average_precision_score`` do on the qualifying bags. Mean average precision
  ranks a bag behind every bag of equal or higher score for that label, as scikit-learn's
  ``average_precision_score`` (whose thresholds are the distinct scores) does.
* **Top-label ties.** One-error and precision at 1 take as top-ranked label the *first* one
  (lowest column index) among those tied at the highest score.
* **Coverage.** ``(coverage_error - 1) / L`` with scikit-learn's ``coverage_error``: the mean over
  *all* bags of the number of labels scored ``>=`` the lowest-scored relevant label, minus one,
  normalised by the number of labels (the scale GAMIL-C's table implies). As in scikit-learn, a
  bag with no relevant label contributes 0 to that mean (so, unlike the other bags, it pulls the
  value below ``(|Y_i| - 1) / L``; with every bag empty coverage is ``-1 / L``).

Instance-level metrics: ``instance_<name>`` for every name in :data:`BAG_METRICS` (listed in
:data:`INSTANCE_METRICS`, same directions) measures per-instance label predictions against
per-instance labels. :func:`compute_instances` takes both as sequences of per-bag
``(n_instances_i, n_labels)`` arrays, stacks all instances of all bags as the rows of one
``(sum_i n_instances_i, n_labels)`` array, and applies the bag metric to it: every instance
counts once, whatever its bag (a bag with many instances weighs more), with all the
conventions above read with "instance" for "bag". :func:`compute` refuses them, as it has
only bag-level data.

Input validation raises :class:`ValueError` (these inputs come from code, not from a person):
both arrays must be 2-D with the same shape and at least one bag and one label, ``y_true`` must
hold only 0 and 1 (bool, integer or float dtype), and ``scores`` must be finite.

The functions are vectorised with numpy: a search calls them thousands of times on small arrays
(``n`` about 50-2000 bags, ``L`` about 5-25 labels). The ranking metrics sort each bag's
(for mean average precision, each label's) scores once rather than comparing all pairs.

Example:
    >>> import numpy as np
    >>> from tuner import metrics
    >>> y = np.array([[1, 0, 1], [0, 1, 0]])
    >>> s = np.array([[0.9, 0.2, 0.6], [0.7, 0.4, 0.1]])
    >>> metrics.compute(y, s, ["one_error", "hamming_loss"])
    {'one_error': 0.5, 'hamming_loss': 0.3333333333333333}
    >>> metrics.is_better("hamming_loss", 0.1, 0.2)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tuner.errors import MimlTuneError

__all__ = [
    "ALL_METRICS",
    "BAG_METRICS",
    "INSTANCE_METRICS",
    "METRICS",
    "MLL_METRICS",
    "Metric",
    "average_precision",
    "compute",
    "compute_instances",
    "coverage",
    "example_f1",
    "hamming_accuracy",
    "hamming_loss",
    "is_better",
    "macro_f1",
    "mean_average_precision",
    "micro_f1",
    "mode_of",
    "one_error",
    "precision_at_1",
    "ranking_loss",
    "resolve_metric",
]

_THRESHOLD = 0.5
_MODES = ("max", "min")
_LEVELS = ("bag", "instance")
_INSTANCE_PREFIX = "instance_"

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class Metric:
    """A named metric and the direction in which it improves.

    Args:
        name: the one string used for the metric everywhere, e.g. ``"average_precision"``.
        mode: ``"max"`` if larger is better, ``"min"`` if smaller is better.
        fn: ``fn(y_true, scores) -> float``. For a bag-level metric ``y_true`` is an
            ``(n_bags, n_labels)`` 0/1 array and ``scores`` an ``(n_bags, n_labels)`` array of
            label probabilities; for an instance-level one both are sequences of per-bag
            ``(n_instances_i, n_labels)`` arrays (see :func:`compute_instances`).
        description: one line saying what the metric measures.
        level: ``"bag"`` or ``"instance"``: which data ``fn`` takes.
    """

    name: str
    mode: str
    fn: Callable[[Any, Any], float]
    description: str
    level: str = "bag"

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(
                f"Metric mode must be one of {_MODES}, but got mode={self.mode!r} "
                f"for metric {self.name!r}."
            )
        if self.level not in _LEVELS:
            raise ValueError(
                f"Metric level must be one of {_LEVELS}, but got level={self.level!r} "
                f"for metric {self.name!r}."
            )


# ---------------------------------------------------------------------------------------------
# Validation


def _as_numeric(a: ArrayLike, what: str, row: str = "bag") -> np.ndarray:
    try:
        arr = np.asarray(a)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(
            f"{what} must be a rectangular (n_{row}s, n_labels) array, but could not be "
            f"converted: {exc}"
        ) from exc
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{what} must be a bool, integer or float array, but got dtype {arr.dtype}."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D with shape (n_{row}s, n_labels), but got shape {arr.shape} "
            f"({arr.ndim}-D)."
        )
    return arr


def _validate(
    y_true: ArrayLike,
    scores: ArrayLike,
    *,
    y_name: str = "y_true",
    s_name: str = "scores",
    row: str = "bag",
) -> tuple[BoolArray, FloatArray]:
    """Checks the inputs and returns them as ``(bool labels, float64 scores)``.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of finite scores.
        y_name: what to call ``y_true`` in error messages.
        s_name: what to call ``scores`` in error messages.
        row: what a row is, for error messages: ``"bag"`` or ``"instance"``.

    Returns:
        ``y_true`` as a bool array and ``scores`` as a float64 array, same shape.

    Raises:
        ValueError: on a wrong dtype, dimensionality or shape, on no bags or no labels, on a
            label value other than 0/1, or on a non-finite score.
    """
    y = _as_numeric(y_true, y_name, row)
    s = _as_numeric(scores, s_name, row)
    if y.shape != s.shape:
        raise ValueError(
            f"{y_name} and {s_name} must have the same shape (n_{row}s, n_labels), but got "
            f"{y_name}.shape={y.shape} and {s_name}.shape={s.shape}."
        )
    n, n_labels = y.shape
    if n == 0:
        raise ValueError(f"metrics need at least one {row}, but got {y_name} of shape {y.shape}.")
    if n_labels == 0:
        raise ValueError(f"metrics need at least one label, but got {y_name} of shape {y.shape}.")
    if y.dtype.kind != "b":
        bad = (y != 0) & (y != 1)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            raise ValueError(
                f"{y_name} must contain only 0 and 1, but got {y[i, j].item()!r} at [{i}, {j}] "
                f"({int(bad.sum())} bad value(s) in all)."
            )
    s = s.astype(np.float64, copy=False)
    finite = np.isfinite(s)
    if not finite.all():
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        raise ValueError(
            f"{s_name} must be finite, but got {s[i, j].item()!r} at [{i}, {j}] "
            f"({int((~finite).sum())} non-finite value(s) in all)."
        )
    return y.astype(bool, copy=False), s


# ---------------------------------------------------------------------------------------------
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


def _precision_at_1(y: BoolArray, s: FloatArray) -> float:
    keep = y.any(axis=1)
    if not keep.any():
        return math.nan
    y, s = y[keep], s[keep]
    top = s.argmax(axis=1)  # first index among ties
    return float(np.mean(y[np.arange(y.shape[0]), top]))


_IMPLS: dict[str, Callable[[BoolArray, FloatArray], float]] = {
    "average_precision": _average_precision,
    "one_error": _one_error,
    "ranking_loss": _ranking_loss,
    "macro_f1": _macro_f1,
    "hamming_loss": _hamming_loss,
    "coverage": _coverage,
    "mean_average_precision": _mean_average_precision,
    "hamming_accuracy": _hamming_accuracy,
    "example_f1": _example_f1,
    "micro_f1": _micro_f1,
    "precision_at_1": _precision_at_1,
}


# ---------------------------------------------------------------------------------------------
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


_BAG_LEVEL: tuple[Metric, ...] = (
    Metric(
        "average_precision",
        "max",
        average_precision,
        "example-based label-ranking average precision over bags with a non-trivial label set",
    ),
    Metric(
        "one_error",
        "min",
        one_error,
        "fraction of bags whose top-scored label is not relevant",
    ),
    Metric(
        "ranking_loss",
        "min",
        ranking_loss,
        "fraction of (relevant, irrelevant) label pairs scored in the wrong order",
    ),
    Metric(
        "macro_f1",
        "max",
        macro_f1,
        "mean over labels of the F1 of predictions scores >= 0.5",
    ),
    Metric(
        "hamming_loss",
        "min",
        hamming_loss,
        "fraction of (bag, label) entries predicted wrongly at scores >= 0.5",
    ),
    Metric(
        "coverage",
        "min",
        coverage,
        "ranking depth needed to cover every relevant label, minus one, over n_labels",
    ),
    Metric(
        "mean_average_precision",
        "max",
        mean_average_precision,
        "mean over labels with a relevant bag of the per-label average precision (mAP)",
    ),
    Metric(
        "hamming_accuracy",
        "max",
        hamming_accuracy,
        "fraction of (bag, label) entries predicted correctly at scores >= 0.5",
    ),
    Metric(
        "example_f1",
        "max",
        example_f1,
        "mean over bags of the F1 of the predicted label set (scores >= 0.5)",
    ),
    Metric(
        "micro_f1",
        "max",
        micro_f1,
        "F1 of all (bag, label) entries pooled, predictions scores >= 0.5",
    ),
    Metric(
        "precision_at_1",
        "max",
        precision_at_1,
        "fraction of bags with a relevant label whose top-scored label is relevant",
    ),
)

BAG_METRICS: tuple[str, ...] = (
    "average_precision",
    "one_error",
    "ranking_loss",
    "macro_f1",
    "hamming_loss",
    "coverage",
)
"""The MIML metric names in the default order (that of GAMIL-C's result table)."""

MLL_METRICS: tuple[str, ...] = (
    "mean_average_precision",
    "hamming_accuracy",
    "example_f1",
    "micro_f1",
    "macro_f1",
    "precision_at_1",
)
"""The multi-label metric names MulSupCon reports (``macro_f1`` is shared with the MIML set)."""

ALL_METRICS: tuple[str, ...] = BAG_METRICS + tuple(n for n in MLL_METRICS if n not in BAG_METRICS)
"""Every bag-level metric name: :data:`BAG_METRICS`, then the :data:`MLL_METRICS` not in it."""

INSTANCE_METRICS: tuple[str, ...] = tuple(_INSTANCE_PREFIX + n for n in BAG_METRICS)
"""The instance-level MIML metric names, ``instance_<name>`` for each of :data:`BAG_METRICS`."""


def _instance_metric(bag_metric: Metric) -> Metric:
    name = _INSTANCE_PREFIX + bag_metric.name

    def fn(instance_labels: Sequence[ArrayLike], instance_scores: Sequence[ArrayLike]) -> float:
        return compute_instances(instance_labels, instance_scores, [name])[name]

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = (
        f"``{bag_metric.name}`` of all instances stacked as rows; see :func:`compute_instances`."
    )
    return Metric(
        name,
        bag_metric.mode,
        fn,
        f"{bag_metric.name} of the instances: every bag's instances stacked as the rows",
        level="instance",
    )


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        *_BAG_LEVEL,
        *(_instance_metric(m) for m in _BAG_LEVEL if m.name in BAG_METRICS),
    )
}
"""Registry of every metric by name: the bag-level ones, then the instance-level ones."""


# ---------------------------------------------------------------------------------------------
# Resolver and helpers


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def resolve_metric(name: str) -> Metric:
    """Looks a metric up by name, ignoring case and treating ``-`` and spaces as ``_``.

    Args:
        name: a metric name, e.g. ``"average_precision"`` or ``"Hamming-Loss"``.

    Returns:
        The registered :class:`Metric`.

    Raises:
        MimlTuneError: if the name is not a string or no metric has it; the message lists the
            valid names.
    """
    if not isinstance(name, str):
        raise MimlTuneError(
            f"a metric name must be a string, but got {name!r} ({type(name).__name__}); "
            f"valid names: {', '.join(METRICS)}"
        )
    metric = METRICS.get(_normalise(name))
    if metric is None:
        raise MimlTuneError(f"unknown metric {name!r}; valid names: {', '.join(METRICS)}")
    return metric


def compute(
    y_true: ArrayLike, scores: ArrayLike, names: Sequence[str] | str | None = None
) -> dict[str, float]:
    """Computes several metrics on one prediction, validating the inputs once.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of label probabilities.
        names: metric names to compute, in the order wanted; a single string is one name.
            ``None`` computes all of :data:`BAG_METRICS`.

    Returns:
        ``{canonical name: value}`` in the order of ``names``.

    Raises:
        MimlTuneError: on an unknown metric name, an instance-level one (those need
            :func:`compute_instances`), or an empty ``names``.
        ValueError: on invalid arrays (see the module docstring).
    """
    metrics = _resolve_all(names, BAG_METRICS)
    instance_level = [m.name for m in metrics if m.level == "instance"]
    if instance_level:
        raise MimlTuneError(
            f"compute() takes bag-level metrics only, but got the instance-level "
            f"{', '.join(instance_level)}; compute those with compute_instances(instance_labels, "
            f"instance_scores, names), which needs per-instance labels and scores"
        )
    y, s = _validate(y_true, scores)
    return {m.name: _IMPLS[m.name](y, s) for m in metrics}


def compute_instances(
    instance_labels: Sequence[ArrayLike],
    instance_scores: Sequence[ArrayLike],
    names: Sequence[str] | str | None = None,
) -> dict[str, float]:
    """Computes instance-level metrics: the bag metrics on every bag's instances stacked as rows.

    ``instance_<name>`` is ``<name>`` applied to the ``(sum_i n_instances_i, n_labels)`` arrays
    of all instances of all bags in order, each instance one row (so each instance counts
    once, and the conventions of the bag metric hold with "instance" for "bag").

    Args:
        instance_labels: one ``(n_instances_i, n_labels)`` 0/1 array per bag.
        instance_scores: one ``(n_instances_i, n_labels)`` array of label probabilities per
            bag, in the same bag order and with the same shapes.
        names: instance-level metric names (``instance_<name>``, see
            :data:`INSTANCE_METRICS`) in the order wanted; a single string is one name.
            ``None`` computes all of :data:`INSTANCE_METRICS`.

    Returns:
        ``{canonical name: value}`` in the order of ``names``.

    Raises:
        MimlTuneError: on an unknown metric name, a bag-level one (use :func:`compute`), or an
            empty ``names``.
        ValueError: on invalid arrays: not as many score arrays as label arrays, no bag, or a
            bag whose arrays fail the checks of :func:`compute` (at least one instance each,
            one number of labels for all bags).
    """
    metrics = _resolve_all(names, INSTANCE_METRICS)
    bag_level = [m.name for m in metrics if m.level == "bag"]
    if bag_level:
        raise MimlTuneError(
            f"compute_instances() takes instance-level metrics only, but got the bag-level "
            f"{', '.join(bag_level)}; use compute(y_true, scores, names) for those, or the "
            f"instance-level names {', '.join(INSTANCE_METRICS)}"
        )
    if isinstance(instance_labels, np.ndarray) or isinstance(instance_scores, np.ndarray):
        raise ValueError(
            "instance_labels and instance_scores must be sequences of per-bag "
            "(n_instances_i, n_labels) arrays, but got a single array; wrap one bag as [array]."
        )
    if len(instance_labels) != len(instance_scores):
        raise ValueError(
            f"instance_labels and instance_scores must hold one array per bag each, but got "
            f"{len(instance_labels)} label arrays and {len(instance_scores)} score arrays."
        )
    if len(instance_labels) == 0:
        raise ValueError("instance metrics need at least one bag, but got no bags.")
    ys: list[BoolArray] = []
    ss: list[FloatArray] = []
    for i, (labels, scores) in enumerate(zip(instance_labels, instance_scores, strict=True)):
        y, s = _validate(
            labels,
            scores,
            y_name=f"instance_labels[{i}]",
            s_name=f"instance_scores[{i}]",
            row="instance",
        )
        if ys and y.shape[1] != ys[0].shape[1]:
            raise ValueError(
                f"every bag must have the same number of labels, but instance_labels[0] has "
                f"{ys[0].shape[1]} and instance_labels[{i}] has {y.shape[1]}."
            )
        ys.append(y)
        ss.append(s)
    y_all, s_all = np.concatenate(ys), np.concatenate(ss)
    return {m.name: _IMPLS[m.name[len(_INSTANCE_PREFIX) :]](y_all, s_all) for m in metrics}


def _resolve_all(names: Sequence[str] | str | None, default: tuple[str, ...]) -> list[Metric]:
    """The metrics ``names`` asks for (``default`` when ``None``), resolved in order."""
    if names is None:
        return [METRICS[n] for n in default]
    if isinstance(names, str):
        names = [names]
    metrics = [resolve_metric(n) for n in names]
    if not metrics:
        raise MimlTuneError(
            f"no metric names given; pass names=None to compute all of {', '.join(default)}"
        )
    return metrics


def mode_of(name: str) -> str:
    """The direction of a metric: ``"max"`` or ``"min"``.

    Raises:
        MimlTuneError: on an unknown metric name.
    """
    return resolve_metric(name).mode


def is_better(name: str, a: float, b: float) -> bool:
    """Whether value ``a`` is strictly better than value ``b`` under the metric's direction.

    ``nan`` is never better: ``a = nan`` gives False, and a non-nan ``a`` beats ``b = nan``
    (so a running best may start at ``nan``).

    Args:
        name: metric name.
        a: candidate value.
        b: value to beat.

    Raises:
        MimlTuneError: on an unknown metric name.
    """
    mode = mode_of(name)
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if mode == "max" else a < b
