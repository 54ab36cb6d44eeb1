"""Paired comparisons over CV folds.

Two models scored on the very same folds (the search's trials and its peers are) give paired
values; the Wilcoxon signed-rank test over the fold differences says whether one is better
than the other by more than the folds' noise. Knows nothing of trials, Ray or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

ALPHA = 0.05  # the significance level behind "beats" and "loses to"


def paired_wilcoxon(
    model: Sequence[float], other: Sequence[float], *, mode: str, alpha: float = ALPHA
) -> dict[str, Any]:
    """Wilcoxon signed-rank test of ``model`` against ``other`` over paired fold values.

    Two one-sided tests (Wilcoxon 1945; ``scipy.stats.wilcoxon``, exact distribution for small
    samples without ties, the normal approximation otherwise): ``model`` *beats* ``other``
    when it is better at level ``alpha`` in the metric's direction ``mode`` (``max`` or
    ``min``), *loses to* it when it is worse, and otherwise *ties with* it (the folds cannot
    tell them apart).

    Args:
        model: the model's value on each fold.
        other: the other model's value on the same folds, in the same order.
        mode: ``max`` when larger is better, ``min`` when smaller is.
        alpha: significance level.

    Returns:
        ``{"verdict", "p_value", "statistic", "folds", "mean_difference"}``: ``p_value`` of
        the one-sided test in the direction of the verdict (of "better" for a tie),
        ``mean_difference`` = mean(model - other).

    Raises:
        ValueError: the two sequences differ in length, or ``mode`` is neither max nor min.
    """
    from scipy.stats import wilcoxon

    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    a, b = np.asarray(model, dtype=float), np.asarray(other, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same folds, got {a.size} and {b.size} values")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = (a - b)[keep] if mode == "max" else (b - a)[keep]  # > 0: the model is better
    out: dict[str, Any] = {
        "folds": int(keep.sum()),
        "mean_difference": float(np.mean((a - b)[keep])) if keep.any() else math.nan,
    }
    if not np.any(diff != 0):
        return out | {"verdict": "ties with", "p_value": 1.0, "statistic": math.nan}
    better = wilcoxon(diff, alternative="greater")
    worse = wilcoxon(diff, alternative="less")
    if better.pvalue < alpha:
        verdict, test = "beats", better
    elif worse.pvalue < alpha:
        verdict, test = "loses to", worse
    else:
        verdict, test = "ties with", better
    return out | {
        "verdict": verdict,
        "p_value": float(test.pvalue),
        "statistic": float(test.statistic),
    }
