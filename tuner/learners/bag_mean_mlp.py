"""The MLP peer: binary cross-entropy on standardised pooled bags, AdamW in mini-batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.bag_mean_mlp import BagMeanMLP
from tuner.data.preprocess import BAG_POOLINGS, InstanceStandardizer, pool_bags, pooled_dim
from tuner.learners.base import Learner
from tuner.learners.checks import OwnRNG, check_training_data
from tuner.learners.params import FRACTION, NON_NEGATIVE, POSITIVE, at_least, one_of, param

_PREDICT_BATCH = 4096


@dataclass(frozen=True)
class BagMeanMLPParams:
    """The MLP peer's hyper-parameters and their defaults."""

    bag_pooling: str = param("mean", one_of(BAG_POOLINGS))
    layers: int = param(2, at_least(1))
    hidden: int = param(256, at_least(1))
    dropout: float = param(0.2, FRACTION)
    lr: float = param(1e-3, POSITIVE)
    weight_decay: float = param(1e-4, NON_NEGATIVE)
    batch_size: int = param(64, at_least(1))
    epochs: int = param(50, at_least(1))


class BagMeanMLPLearner(OwnRNG, Learner):
    """Trains :class:`~models.bag_mean_mlp.BagMeanMLP` on pooled bags.

    :meth:`setup` pools each training bag to one vector (``bag_pooling``: ``"mean"``, ``"max"``
    or ``"mean_max"``; the identity on vector data) and standardises the pooled vectors with
    their training statistics. Every :meth:`train_epoch` is one pass over the training bags in
    a seeded random order, in mini-batches of ``batch_size``, minimising the mean binary
    cross-entropy with AdamW (``lr``, ``weight_decay``, constant rate); initialisation and
    dropout use the learner's own seeded RNG, so a seed fixes the predictions.
    """

    name: ClassVar[str] = "bag_mean_mlp"
    training_only: ClassVar[tuple[str, ...]] = ("_x", "_labels", "_order")
    params: ClassVar[type] = BagMeanMLPParams

    def build_model(self) -> BagMeanMLP:
        c = self.config
        return BagMeanMLP(
            pooled_dim(self.n_features, c["bag_pooling"]),
            self.n_labels,
            hidden=c["hidden"],
            layers=c["layers"],
            dropout=c["dropout"],
        )

    def setup(self, bags: Sequence[np.ndarray], labels: np.ndarray) -> None:
        c = self.config
        y = check_training_data(self.name, bags, labels, self.n_features, self.n_labels)
        pooled = pool_bags(bags, c["bag_pooling"])
        self.scaler = InstanceStandardizer().fit([pooled])
        self._x = self._tensor(self.scaler.transform([pooled])[0])
        self._labels = torch.as_tensor(y, dtype=torch.float32, device=self.device)
        self._order = torch.Generator().manual_seed(self.seed)
        self.seed_rng(self.seed + 1)
        with self.own_rng():
            self.model = self.build_model().to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=c["lr"], weight_decay=c["weight_decay"]
        )
        self.epoch = 0

    def encode(self, bags: Sequence[np.ndarray]) -> Tensor:
        """Standardised pooled bags ``(n, pooled_dim)`` on the learner's device."""
        if len(bags) == 0:
            return self._tensor(np.zeros((0, self._x.shape[1])))
        return self._tensor(self.scaler.transform([pool_bags(bags, self.config["bag_pooling"])])[0])

    def train_epoch(self) -> float:
        c = self.config
        self.epoch += 1
        self.model.train()
        order = torch.randperm(len(self._x), generator=self._order).to(self.device)
        total = 0.0
        with self.own_rng():
            for start in range(0, len(order), c["batch_size"]):
                rows = order[start : start + c["batch_size"]]
                logits = self.model(self._x[rows])
                loss = F.binary_cross_entropy_with_logits(logits, self._labels[rows])
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"bag_mean_mlp training loss is {value} in epoch {self.epoch} "
                        f"(lr={c['lr']}); try a smaller learning rate"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += value * len(rows)
        return total / len(order)

    @torch.no_grad()
    def predict(self, encoded: Tensor) -> np.ndarray:
        self.model.eval()
        out = [np.zeros((0, self.n_labels))]
        for start in range(0, len(encoded), _PREDICT_BATCH):
            logits = self.model(encoded[start : start + _PREDICT_BATCH])
            out.append(torch.sigmoid(logits).double().cpu().numpy())
        return np.concatenate(out)

    def _tensor(self, x: np.ndarray) -> Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)
