"""MIML-kNN (Zhang 2010): labels of a bag's references and citers under a Hausdorff distance."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from models.hausdorff import (
    HAUSDORFF_VARIANTS,
    citer_radii,
    fit_counts_regression,
    hausdorff_distances,
    neighbour_label_counts,
    pack_bags,
    score_counts,
)
from tuner.data.preprocess import InstanceStandardizer
from tuner.learners.base import Learner
from tuner.learners.checks import check_training_data
from tuner.learners.params import NON_NEGATIVE, at_least, one_of, param


@dataclass(frozen=True)
class MIMLkNNParams:
    """MIML-kNN's hyper-parameters and their defaults."""

    k: int = param(10, at_least(1))
    c: int = param(20, at_least(1))
    distance: str = param("average", one_of(HAUSDORFF_VARIANTS))
    standardize: bool = True
    l2: float = param(1e-3, NON_NEGATIVE)
    epochs: int = param(1, at_least(1))


class MIMLkNNLearner(Learner):
    """MIML-kNN, the classic nearest-neighbour peer (Zhang, ICTAI 2010).

    :meth:`setup` standardises the instances with the training instances' statistics
    (``standardize=False`` only centres them: the papers' distances on raw features). The first
    :meth:`train_epoch` does all the work, in closed form: Hausdorff distances (``distance``:
    ``"average"``, the paper's, or ``"max"``) between the training bags; each training bag's
    counter vector over its ``k`` references and its citers (the training bags that count it
    among their ``c`` nearest), leave-one-out; and one linear model per label on the counter
    vectors, fit by ridge least squares against targets +1/-1 (see
    :func:`models.hausdorff.fit_counts_regression`). Later epochs change nothing and return the
    same loss, the mean squared training error.

    :meth:`encode` computes the distances from the bags to the training bags once;
    :meth:`predict` turns a bag's linear score :math:`y_l` (the paper predicts label ``l`` when
    :math:`y_l > 0`) into :math:`p_l = \\sigma(2 y_l)`. The map is strictly increasing, so the
    ranking metrics see the paper's scores unchanged (no ties from clipping), and it crosses
    0.5 exactly at :math:`y_l = 0`, so the metrics' 0.5 threshold is the paper's decision
    rule. The factor 2 makes :math:`p_l` agree to first order with the least-squares estimate
    of :math:`P(l)` one gets with 0/1 targets, :math:`(y_l + 1) / 2`; the values are scores
    in (0, 1), not calibrated probabilities. The method is deterministic: ``seed`` is unused.
    """

    name: ClassVar[str] = "miml_knn"
    params: ClassVar[type] = MIMLkNNParams

    def setup(self, bags: Sequence[np.ndarray], labels: np.ndarray) -> None:
        y = check_training_data(self.name, bags, labels, self.n_features, self.n_labels)
        self.scaler = InstanceStandardizer().fit(bags)
        self._x, self._sizes = pack_bags(self._instances(bags))
        self._x = self._x.to(self.device)
        self._labels = torch.as_tensor(y, dtype=torch.float32, device=self.device)
        self._weights: Tensor | None = None
        self._loss = math.nan

    def encode(self, bags: Sequence[np.ndarray]) -> Tensor:
        """``(n, n_train)`` Hausdorff distances from ``bags`` to the training bags."""
        if len(bags) == 0:
            return torch.zeros((0, len(self._sizes)), device=self.device)
        x, sizes = pack_bags(self._instances(bags))
        return self._distances(x.to(self.device), sizes)

    def train_epoch(self) -> float:
        if self._weights is None:
            c = self.config
            distances = self._distances(self._x, self._sizes)
            self._radii = citer_radii(distances, c["c"])
            counts = neighbour_label_counts(
                distances, self._labels, c["k"], self._radii, exclude_self=True
            )
            targets = 2.0 * self._labels - 1.0
            weights = fit_counts_regression(counts, targets, c["l2"])
            loss = float((score_counts(counts, weights) - targets.double()).pow(2).mean())
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"MIML-kNN training loss is {loss} in epoch 1 (l2={c['l2']}); try a larger l2"
                )
            self._weights, self._loss = weights, loss
        return self._loss

    @torch.no_grad()
    def predict(self, encoded: Tensor) -> np.ndarray:
        if self._weights is None:
            raise RuntimeError("MIMLkNNLearner.predict() called before train_epoch()")
        counts = neighbour_label_counts(encoded, self._labels, self.config["k"], self._radii)
        scores = score_counts(counts, self._weights)
        return torch.sigmoid(2.0 * scores).cpu().numpy()

    def _distances(self, x: Tensor, sizes: Tensor) -> Tensor:
        return hausdorff_distances(x, sizes, self._x, self._sizes, how=self.config["distance"])

    def _instances(self, bags: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Standardised instances, or with ``standardize=False`` only centred (which leaves
        every distance unchanged and keeps float32 distances accurate on raw features)."""
        scaled = self.scaler.transform(bags)
        if self.config["standardize"]:
            return scaled
        return [(bag * self.scaler.std_).astype(np.float32) for bag in scaled]
