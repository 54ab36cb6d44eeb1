"""The six bag-level MIML metrics, each carrying its direction, behind one resolver.

Every metric takes ``y_true``, an ``(n_bags, n_labels)`` 0/1 array of the bags' label sets, and
``scores``, an ``(n_bags, n_labels)`` array of predicted label probabilities, and returns a float.
The names are the single strings used everywhere in the project (search-space YAML,
``tune.report``, MLflow, CLI output), and each carries its direction (``"max"`` or ``"min"``):

======================  =====  ===============================================================
name                    mode   definition (``Y_i`` relevant labels of bag ``i``, ``L`` labels)
======================  =====  ===============================================================
``average_precision``   max    example-based label-ranking average precision
``one_error``           min    fraction of bags whose top-ranked label is not relevant
``ranking_loss``        min    fraction of (relevant, irrelevant) label pairs mis-ordered
``macro_f1``            max    unweighted mean over labels of the per-label F1
``hamming_loss``        min    fraction of (bag, label) entries predicted wrongly
``coverage``            min    ranking depth needed to cover all relevant labels, over ``L``
======================  =====  ===============================================================

:data:`BAG_METRICS` lists them in the order of the GAMIL-C paper's result table.

Conventions:

* **Threshold.** Hamming loss and macro-F1 predict a label when its score is ``>= 0.5``.
* **macro-F1 zero division.** A label's F1 is ``2 TP / (2 TP + FP + FN)``; a label with no
  positives and no positive predictions counts as 0, like scikit-learn's
  ``f1_score(average="macro", zero_division=0)``.
* **Skipped bags.** One-error, ranking loss and average precision are averaged over the bags
  whose label set is neither empty nor complete (a ranking cannot be wrong on those), as the
  classic MIML toolbox does. If no bag qualifies they return ``nan``.
* **Ties.** Ranking loss counts a (relevant, irrelevant) pair as mis-ordered when the irrelevant
  label's score is ``>=`` the relevant one's, and average precision ranks a label behind every
  label with an equal or higher score, exactly as scikit-learn's ``label_ranking_loss`` and
  ``label_ranking_average_precision_score`` do on the qualifying bags.
* **One-error ties.** The top-ranked label is the *first* one (lowest column index) among those
  tied at the highest score; the bag is an error when that label is not relevant.
* **Coverage.** ``(coverage_error - 1) / L`` with scikit-learn's ``coverage_error``: the mean over
  *all* bags of the number of labels scored ``>=`` the lowest-scored relevant label, minus one,
  normalised by the number of labels (the scale GAMIL-C's table implies). As in scikit-learn, a
  bag with no relevant label contributes 0 to that mean (so, unlike the other bags, it pulls the
  value below ``(|Y_i| - 1) / L``; with every bag empty coverage is ``-1 / L``).

Input validation raises :class:`ValueError` (these inputs come from code, not from a person):
both arrays must be 2-D with the same shape and at least one bag and one label, ``y_true`` must
hold only 0 and 1 (bool, integer or float dtype), and ``scores`` must be finite.

The functions are vectorised with numpy: a search calls them thousands of times on small arrays
(``n`` about 50-700 bags, ``L`` about 5-25 labels). The ranking metrics sort each bag's
scores once rather than comparing all label pairs.

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

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tuner.errors import MimlTuneError

__all__ = [
    "BAG_METRICS",
    "METRICS",
    "Metric",
    "average_precision",
    "compute",
    "coverage",
    "hamming_loss",
    "is_better",
    "macro_f1",
    "mode_of",
    "one_error",
    "ranking_loss",
    "resolve_metric",
]

_THRESHOLD = 0.5
_MODES = ("max", "min")

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class Metric:
    """A named metric and the direction in which it improves.

    Args:
        name: the one string used for the metric everywhere, e.g. ``"average_precision"``.
        mode: ``"max"`` if larger is better, ``"min"`` if smaller is better.
        fn: ``fn(y_true, scores) -> float`` with ``y_true`` an ``(n_bags, n_labels)`` 0/1 array
            and ``scores`` an ``(n_bags, n_labels)`` array of label probabilities.
        description: one line saying what the metric measures.
    """

    name: str
    mode: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    description: str

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(
                f"Metric mode must be one of {_MODES}, but got mode={self.mode!r} "
                f"for metric {self.name!r}."
            )


# ---------------------------------------------------------------------------------------------
# Validation


def _as_numeric(a: ArrayLike, what: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(
            f"{what} must be a rectangular (n_bags, n_labels) array, but could not be "
            f"converted: {exc}"
        ) from exc
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{what} must be a bool, integer or float array, but got dtype {arr.dtype}."
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{what} must be 2-D with shape (n_bags, n_labels), but got shape {arr.shape} "
            f"({arr.ndim}-D)."
        )
    return arr


def _validate(y_true: ArrayLike, scores: ArrayLike) -> tuple[BoolArray, FloatArray]:
    """Checks the inputs and returns them as ``(bool labels, float64 scores)``.

    Args:
        y_true: ``(n_bags, n_labels)`` array of 0/1.
        scores: ``(n_bags, n_labels)`` array of finite scores.

    Returns:
        ``y_true`` as a bool array and ``scores`` as a float64 array, same shape.

    Raises:
        ValueError: on a wrong dtype, dimensionality or shape, on no bags or no labels, on a
            label value other than 0/1, or on a non-finite score.
    """
    y = _as_numeric(y_true, "y_true")
    s = _as_numeric(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(
            f"y_true and scores must have the same shape (n_bags, n_labels), but got "
            f"y_true.shape={y.shape} and scores.shape={s.shape}."
        )
    n, n_labels = y.shape
    if n == 0:
        raise ValueError(f"metrics need at least one bag, but got arrays of shape {y.shape}.")
    if n_labels == 0:
        raise ValueError(f"metrics need at least one label, but got arrays of shape {y.shape}.")
    if y.dtype.kind != "b":
        bad = (y != 0) & (y != 1)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            raise ValueError(
                f"y_true must contain only 0 and 1, but got {y[i, j].item()!r} at [{i}, {j}] "
                f"({int(bad.sum())} bad value(s) in all)."
            )
    s = s.astype(np.float64, copy=False)
    finite = np.isfinite(s)
    if not finite.all():
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        raise ValueError(
            f"scores must be finite, but got {s[i, j].item()!r} at [{i}, {j}] "
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


_IMPLS: dict[str, Callable[[BoolArray, FloatArray], float]] = {
    "average_precision": _average_precision,
    "one_error": _one_error,
    "ranking_loss": _ranking_loss,
    "macro_f1": _macro_f1,
    "hamming_loss": _hamming_loss,
    "coverage": _coverage,
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


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
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
    )
}
"""Registry of the bag-level metrics by name."""

BAG_METRICS: tuple[str, ...] = (
    "average_precision",
    "one_error",
    "ranking_loss",
    "macro_f1",
    "hamming_loss",
    "coverage",
)
"""All metric names in the default order (that of GAMIL-C's result table)."""


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
            f"valid names: {', '.join(BAG_METRICS)}"
        )
    metric = METRICS.get(_normalise(name))
    if metric is None:
        raise MimlTuneError(f"unknown metric {name!r}; valid names: {', '.join(BAG_METRICS)}")
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
        MimlTuneError: on an unknown metric name, or an empty ``names``.
        ValueError: on invalid arrays (see the module docstring).
    """
    if names is None:
        metrics = [METRICS[n] for n in BAG_METRICS]
    else:
        if isinstance(names, str):
            names = [names]
        metrics = [resolve_metric(n) for n in names]
        if not metrics:
            raise MimlTuneError(
                f"no metric names given; pass names=None to compute all of {', '.join(BAG_METRICS)}"
            )
    y, s = _validate(y_true, scores)
    return {m.name: _IMPLS[m.name](y, s) for m in metrics}


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
