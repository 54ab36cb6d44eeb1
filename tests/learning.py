"""What the learner tests share: a train/test split of real bags, the label-frequency baseline
every model must beat, and one intra-op thread for small models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import label_ranking_average_precision_score

from tuner.cv import hide_labels


def single_thread() -> Iterator[None]:
    """Body of the tests' ``one_thread`` fixtures: these models are too small to gain from
    intra-op threads, and threads that oversubscribe a busy 2-core machine spin and slow
    training down by an order of magnitude."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Split:
    """Training and held-out bags with their labels."""

    train_bags: list[np.ndarray]
    train_labels: np.ndarray
    test_bags: list[np.ndarray]
    test_labels: np.ndarray

    @property
    def n_features(self) -> int:
        return self.train_bags[0].shape[1]

    @property
    def n_labels(self) -> int:
        return self.train_labels.shape[1]

    def average_precision(self, scores: np.ndarray) -> float:
        """Example-based AP over test bags with at least one positive and one negative label."""
        counts = self.test_labels.sum(axis=1)
        rows = (counts > 0) & (counts < self.n_labels)
        return float(label_ranking_average_precision_score(self.test_labels[rows], scores[rows]))

    def label_frequency_ap(self) -> float:
        """The trivial predictor: every bag scored by the (full) training label frequencies."""
        scores = np.tile(self.train_labels.mean(axis=0), (len(self.test_bags), 1))
        return self.average_precision(scores)

    def partial(self, known: float, seed: int = 0) -> np.ndarray:
        """The training labels with each hidden with probability ``1 - known`` (-1 = unknown)."""
        return hide_labels(self.train_labels, known, seed)

    def head(self, n_train: int, n_test: int) -> Split:
        """The first ``n_train`` training and ``n_test`` held-out bags."""
        return Split(
            self.train_bags[:n_train],
            self.train_labels[:n_train],
            self.test_bags[:n_test],
            self.test_labels[:n_test],
        )


def split(bags: Sequence[np.ndarray], labels: np.ndarray, seed: int = 0) -> Split:
    """A seeded random two-thirds / one-third split."""
    perm = np.random.default_rng(seed).permutation(len(bags))
    cut = len(perm) * 2 // 3
    train, test = perm[:cut], perm[cut:]
    return Split([bags[i] for i in train], labels[train], [bags[i] for i in test], labels[test])


def birds_split() -> Split:
    """The bundled Birds MIML data, split two-thirds / one-third with seed 0."""
    from tuner.data import load_dataset

    data = load_dataset("birds")
    return split(list(data.bags), data.labels)
