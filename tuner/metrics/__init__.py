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

from tuner.metrics.ranking import (
    average_precision,
    coverage,
    mean_average_precision,
    one_error,
    precision_at_1,
    ranking_loss,
)
from tuner.metrics.registry import (
    ALL_METRICS,
    BAG_METRICS,
    INSTANCE_METRICS,
    METRICS,
    MLL_METRICS,
    Metric,
    compute,
    compute_instances,
    is_better,
    mode_of,
    resolve_metric,
)
from tuner.metrics.sets import example_f1, hamming_accuracy, hamming_loss, macro_f1, micro_f1

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
