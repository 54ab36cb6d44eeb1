"""The baseline learner: per-label logistic regression on standardised bag means, fit by L-BFGS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.bag_mean_linear import BagMeanLinear
from tuner.data.preprocess import InstanceStandardizer
from tuner.errors import MimlTuneError
from tuner.learners.base import Learner
from tuner.learners.params import NON_NEGATIVE, at_least, param


@dataclass(frozen=True)
class BagMeanLinearParams:
    """The linear baseline's hyper-parameters and their defaults."""

    l2: float = param(1e-3, NON_NEGATIVE)
    max_iter: int = param(200, at_least(1))
    epochs: int = param(1, at_least(1))


class BagMeanLinearLearner(Learner):
    """Fits :class:`~models.bag_mean_linear.BagMeanLinear` by full-batch L-BFGS.

    :meth:`setup` averages each training bag's instances and standardises these bag means
    (statistics of the training bag means). The objective is the mean binary cross-entropy plus
    ``l2 * ||W||_F^2`` (the biases are not penalised); it is convex, so the fit starts from zero
    weights and needs no seed. The first :meth:`train_epoch` runs the whole fit (at most
    ``max_iter`` L-BFGS iterations); later epochs change nothing and return the final loss.
    """

    name: ClassVar[str] = "bag_mean_linear"
    training_only: ClassVar[tuple[str, ...]] = ("_x", "_y")
    params: ClassVar[type] = BagMeanLinearParams

    def build_model(self) -> BagMeanLinear:
        return BagMeanLinear(self.n_features, self.n_labels)

    def setup(self, bags: Sequence[np.ndarray], labels: np.ndarray) -> None:
        y = np.asarray(labels)
        if len(bags) == 0 or y.shape != (len(bags), self.n_labels):
            raise MimlTuneError(
                f"model {self.name!r}: labels must have shape ({len(bags)}, {self.n_labels}) "
                f"(bags x labels) for {len(bags)} bags (at least one), got {y.shape}"
            )
        means = self._means(bags)
        self.scaler = InstanceStandardizer().fit([means])
        self._x = self._tensor(self.scaler.transform([means])[0])
        self._y = torch.as_tensor(y, dtype=torch.float32, device=self.device)
        self.model = self.build_model().to(self.device)
        self._final_loss: float | None = None

    def encode(self, bags: Sequence[np.ndarray]) -> Tensor:
        """Standardised bag means ``(n, n_features)`` on the learner's device."""
        return self._tensor(self.scaler.transform([self._means(bags)])[0])

    def train_epoch(self) -> float:
        if self._final_loss is None:
            self.model.train()
            optimizer = torch.optim.LBFGS(
                self.model.parameters(),
                lr=1.0,
                max_iter=self.config["max_iter"],
                history_size=20,
                line_search_fn="strong_wolfe",
            )

            def closure() -> Tensor:
                optimizer.zero_grad()
                loss = self._objective()
                loss.backward()
                return loss

            optimizer.step(closure)
            with torch.no_grad():
                final = float(self._objective())
            if not math.isfinite(final):
                raise FloatingPointError(
                    f"bag_mean_linear training loss is {final} in epoch 1 "
                    f"(l2={self.config['l2']}); try a larger l2"
                )
            self._final_loss = final
        return self._final_loss

    def _objective(self) -> Tensor:
        logits = self.model(self._x)
        bce = F.binary_cross_entropy_with_logits(logits, self._y)
        return bce + self.config["l2"] * self.model.weight.pow(2).sum()

    @torch.no_grad()
    def predict(self, encoded: Tensor) -> np.ndarray:
        self.model.eval()
        return torch.sigmoid(self.model(encoded)).double().cpu().numpy()

    def _means(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        means = np.zeros((len(bags), self.n_features))
        for i, bag in enumerate(bags):
            a = np.asarray(bag, dtype=np.float64)
            if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != self.n_features:
                raise MimlTuneError(
                    f"model {self.name!r}: bag {i} has shape {a.shape}; expected "
                    f"(n_instances >= 1, {self.n_features})"
                )
            means[i] = a.mean(axis=0)
        return means

    def _tensor(self, x: np.ndarray) -> Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)
