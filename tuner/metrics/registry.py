"""Every metric by name, with its direction, behind one resolver; computing several at once.

See :mod:`tuner.metrics` for the metrics, their names and directions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from numpy.typing import ArrayLike

from tuner.errors import MimlTuneError
from tuner.metrics._validation import BoolArray, FloatArray, _validate
from tuner.metrics.instances import stack_instances
from tuner.metrics.ranking import (
    _average_precision,
    _coverage,
    _mean_average_precision,
    _one_error,
    _precision_at_1,
    _ranking_loss,
    average_precision,
    coverage,
    mean_average_precision,
    one_error,
    precision_at_1,
    ranking_loss,
)
from tuner.metrics.sets import (
    _example_f1,
    _hamming_accuracy,
    _hamming_loss,
    _macro_f1,
    _micro_f1,
    example_f1,
    hamming_accuracy,
    hamming_loss,
    macro_f1,
    micro_f1,
)

_MODES = ("max", "min")
_LEVELS = ("bag", "instance")
_INSTANCE_PREFIX = "instance_"


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
    y_all, s_all = stack_instances(instance_labels, instance_scores)
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
