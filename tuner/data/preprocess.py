"""Preprocessing fitted on the training bags of a fold and applied unchanged to any other bags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuner.errors import MimlTuneError


class InstanceStandardizer:
    """Standardises instance features to zero mean and unit variance over the training instances.

    The statistics are taken over all instances of all bags given to :meth:`fit` (not over bag
    means), with the population standard deviation. A feature that is constant over the training
    instances gets a standard deviation of 1, so it is only centred, never divided by zero.

    Example:
        >>> scaler = InstanceStandardizer().fit(train_bags)
        >>> train_x = scaler.transform(train_bags)
        >>> InstanceStandardizer.from_dict(scaler.to_dict()).transform(new_bags)
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    @property
    def n_features(self) -> int | None:
        """Feature dimension seen by :meth:`fit`, or ``None`` before fitting."""
        return None if self.mean_ is None else int(self.mean_.shape[0])

    def fit(self, bags: Sequence[np.ndarray]) -> InstanceStandardizer:
        """Computes the per-feature mean and standard deviation of all training instances.

        Args:
            bags: arrays of shape ``(n_i, d)``; at least one instance in total.

        Returns:
            ``self``, fitted.
        """
        arrays = _check_bags(bags, None)
        if not arrays or sum(a.shape[0] for a in arrays) == 0:
            raise MimlTuneError("cannot fit the standardiser: the training bags hold no instances")
        stacked = np.concatenate(arrays, axis=0).astype(np.float64)
        if not np.isfinite(stacked).all():
            raise MimlTuneError(
                "cannot fit the standardiser: the training bags hold NaN or infinite values"
            )
        mean = stacked.mean(axis=0)
        std = stacked.std(axis=0)
        # Exactly constant columns (max == min), not a tolerance: a feature on a tiny scale is
        # still informative and must be scaled up, not left alone.
        constant = stacked.max(axis=0) == stacked.min(axis=0)
        std[constant] = 1.0
        self.mean_, self.std_ = mean, std
        return self

    def transform(self, bags: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Standardises every bag with the fitted statistics.

        Args:
            bags: arrays of shape ``(n_i, d)`` with the ``d`` seen by :meth:`fit`.

        Returns:
            New float32 arrays of the same shapes.
        """
        if self.mean_ is None or self.std_ is None:
            raise MimlTuneError("the standardiser is not fitted; call fit(training_bags) first")
        arrays = _check_bags(bags, self.mean_.shape[0])
        return [((a - self.mean_) / self.std_).astype(np.float32) for a in arrays]

    def fit_transform(self, bags: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`fit` then :meth:`transform` on the same bags."""
        return self.fit(bags).transform(bags)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: ``{"mean": [...], "std": [...]}`` (plain floats)."""
        if self.mean_ is None or self.std_ is None:
            raise MimlTuneError("the standardiser is not fitted; there is nothing to serialise")
        return {"mean": [float(v) for v in self.mean_], "std": [float(v) for v in self.std_]}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> InstanceStandardizer:
        """Rebuilds a fitted standardiser from :meth:`to_dict`'s output."""
        if not isinstance(state, Mapping) or set(state) != {"mean", "std"}:
            keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise MimlTuneError(
                f"a standardiser state must be a mapping with exactly the keys 'mean' and 'std', "
                f"got {keys}"
            )
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if mean.ndim != 1 or mean.shape != std.shape or mean.size == 0:
            raise MimlTuneError(
                "a standardiser state needs 'mean' and 'std' as equally long non-empty lists, "
                f"got lengths {mean.size} and {std.size}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise MimlTuneError(
                "a standardiser state needs finite means and finite positive standard deviations"
            )
        scaler = cls()
        scaler.mean_, scaler.std_ = mean, std
        return scaler

    def __repr__(self) -> str:
        state = "unfitted" if self.mean_ is None else f"n_features={self.n_features}"
        return f"{type(self).__name__}({state})"


def _check_bags(bags: Sequence[np.ndarray], n_features: int | None) -> list[np.ndarray]:
    arrays = [np.asarray(bag) for bag in bags]
    for i, a in enumerate(arrays):
        if a.ndim != 2:
            raise MimlTuneError(
                f"bag {i} must be a 2-D (instances, features) array, got shape {a.shape}"
            )
        expected = arrays[0].shape[1] if n_features is None else n_features
        if a.shape[1] != expected:
            what = "bag 0 has" if n_features is None else "the standardiser was fitted on"
            raise MimlTuneError(
                f"bag {i} has {a.shape[1]} features but {what} {expected}; "
                "every bag must have the same feature dimension"
            )
    return arrays


BAG_POOLINGS = ("mean", "max", "mean_max")


def pool_bags(bags: Sequence[np.ndarray], how: str) -> np.ndarray:
    """One vector per bag, so vector models (MulSupCon, SARB, the MLP) can run on MIML data.

    Args:
        bags: ``n`` arrays of shape ``(n_instances_i, d)``, at least one instance each.
        how: ``"mean"`` (``d`` columns), ``"max"`` (``d``) or ``"mean_max"`` (``2d``: the mean
            then the max). On vector data (one instance per bag) every choice is the identity,
            except ``mean_max``, which repeats the vector.

    Returns:
        ``(n, d)`` or ``(n, 2d)`` float64 array.
    """
    if how not in BAG_POOLINGS:
        raise MimlTuneError(
            f"unknown bag pooling {how!r}; allowed: {', '.join(map(repr, BAG_POOLINGS))}"
        )
    arrays = _check_bags(bags, None)
    if not arrays:
        raise MimlTuneError("cannot pool an empty list of bags")
    for i, a in enumerate(arrays):
        if a.shape[0] == 0:
            raise MimlTuneError(f"bag {i} has no instances; every bag needs at least one")
    parts = []
    if how in ("mean", "mean_max"):
        parts.append(np.stack([a.mean(axis=0, dtype=np.float64) for a in arrays]))
    if how in ("max", "mean_max"):
        parts.append(np.stack([a.max(axis=0).astype(np.float64) for a in arrays]))
    return np.concatenate(parts, axis=1)


def pooled_dim(n_features: int, how: str) -> int:
    """Width of :func:`pool_bags`'s output for ``n_features`` instance features."""
    return 2 * n_features if how == "mean_max" else n_features
