"""Instance-level data: every bag's per-instance labels and scores stacked as rows.

``instance_<name>`` applies the bag metric ``<name>`` to these stacked arrays (see
:func:`tuner.metrics.compute_instances`), so each instance counts once, whatever its bag.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from tuner.metrics._validation import BoolArray, FloatArray, _validate


def stack_instances(
    instance_labels: Sequence[ArrayLike], instance_scores: Sequence[ArrayLike]
) -> tuple[BoolArray, FloatArray]:
    """Checks per-bag instance arrays and stacks them as the rows of one array each.

    Args:
        instance_labels: one ``(n_instances_i, n_labels)`` 0/1 array per bag.
        instance_scores: one ``(n_instances_i, n_labels)`` array of label probabilities per
            bag, in the same bag order and with the same shapes.

    Returns:
        ``(labels, scores)``, each ``(sum_i n_instances_i, n_labels)``: bool labels and float64
        scores, the bags' instances in bag order.

    Raises:
        ValueError: not as many score arrays as label arrays, no bag, or a bag whose arrays
            fail the checks of the bag metrics (at least one instance each, one number of
            labels for all bags).
    """
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
    return np.concatenate(ys), np.concatenate(ss)
