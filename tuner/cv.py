"""Cross-validation protocol: a stratified holdout, then repeated iterative-stratified K-fold.

Multi-label stratification uses the iterative algorithm of Sechidis et al. (2011), as implemented
by ``iterative-stratification``. Everything is deterministic from the seed: the same seed gives
the same holdout and the same folds, so every trial of a search, and the peer model, is judged on
identical splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuner.errors import MimlTuneError


@dataclass(frozen=True)
class Fold:
    """One train/validation split of the development data (indices into it)."""

    repeat: int
    fold: int
    train: np.ndarray
    validation: np.ndarray

    @property
    def key(self) -> str:
        return f"r{self.repeat}f{self.fold}"


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits bags into development and holdout parts, stratified on the labels.

    Args:
        labels: ``(n, L)`` 0/1 label matrix.
        fraction: share of bags held out, in ``[0, 0.5)``; 0 keeps everything for development.
        seed: random seed.

    Returns:
        ``(development, holdout)`` sorted index arrays.
    """
    n = len(labels)
    if not 0 <= fraction < 0.5:
        raise MimlTuneError(f"holdout must be a fraction in [0, 0.5), got {fraction!r}")
    if fraction == 0:
        return np.arange(n), np.arange(0)
    n_holdout = round(n * fraction)
    if n_holdout < 1 or n - n_holdout < 2:
        raise MimlTuneError(
            f"holdout {fraction} of {n} bags leaves {n_holdout} for the holdout and "
            f"{n - n_holdout} for development; use more data or holdout 0"
        )
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # sklearn: seconds

    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_holdout, random_state=seed)
    dev, hold = next(splitter.split(np.zeros((n, 1)), labels))
    return np.sort(dev), np.sort(hold)


def cv_folds(labels: np.ndarray, folds: int, repeats: int, seed: int) -> list[Fold]:
    """Repeated iterative-stratified K-fold splits.

    Repeat ``r`` uses the seed ``seed + r`` so that repeats differ from each other and each is
    reproducible on its own.

    Args:
        labels: ``(n, L)`` 0/1 label matrix of the development data.
        folds: K, the number of folds per repeat (>= 2).
        repeats: how many times the K-fold partition is redrawn (>= 1).
        seed: random seed.

    Returns:
        ``folds * repeats`` folds, repeat-major.
    """
    n = len(labels)
    if folds < 2:
        raise MimlTuneError(f"cv folds must be >= 2, got {folds}")
    if repeats < 1:
        raise MimlTuneError(f"cv repeats must be >= 1, got {repeats}")
    if folds > n:
        raise MimlTuneError(f"cv folds ({folds}) exceeds the number of development bags ({n})")
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    out: list[Fold] = []
    for r in range(repeats):
        splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + r)
        for f, (train, validation) in enumerate(splitter.split(np.zeros((n, 1)), labels)):
            out.append(Fold(r, f, np.sort(train), np.sort(validation)))
    return out


def hide_labels(labels: np.ndarray, known: float, seed: int) -> np.ndarray:
    """Simulates partial labels (SARB): each label of each bag stays known with probability
    ``known`` and is hidden otherwise, independently, from a seeded stream.

    Called on the training part of each fold after the folds are made, so validation and
    holdout bags always keep their full labels.

    Args:
        labels: ``(n, L)`` 0/1 array.
        known: the known-label proportion ``p`` in ``(0, 1]``; 1 hides nothing.
        seed: random seed.

    Returns:
        ``(n, L)`` int8 array: 1 known positive, 0 known negative, -1 unknown.
    """
    if not 0 < known <= 1:
        raise MimlTuneError(
            f"the known-label proportion must be in (0, 1], got {known!r}; "
            "use e.g. 0.1, 0.5 or 0.9 (1 keeps every label)"
        )
    out = np.asarray(labels).astype(np.int8)
    if known < 1:
        hidden = np.random.default_rng(seed).random(out.shape) >= known
        out[hidden] = -1
    return out
