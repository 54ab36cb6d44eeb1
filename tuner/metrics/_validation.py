"""Checks of a metric's input arrays, shared by every metric family."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


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
