"""SARB as a learner: pooled, standardised bags; partial BCE plus representation blending."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from models.sarb import SARB, partial_bce
from tuner.data.preprocess import BAG_POOLINGS, InstanceStandardizer, pool_bags, pooled_dim
from tuner.errors import MimlTuneError
from tuner.learners.base import Learner
from tuner.learners.checks import OwnRNG, check_training_data
from tuner.learners.params import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    Interval,
    at_least,
    one_of,
    param,
)

_PREDICT_BATCH = 512


@dataclass(frozen=True)
class SARBParams:
    """SARB's hyper-parameters and their defaults (the paper's 20 epochs with blending from
    epoch 5; the rest searched in ``search_spaces/models/sarb.yaml``)."""

    lr: float = param(1e-3, POSITIVE)
    weight_decay: float = param(5e-4, NON_NEGATIVE)
    batch_size: int = param(16, at_least(1))
    epochs: int = param(20, at_least(1))
    lr_decay_every: int = param(10, at_least(1))
    lr_decay: float = param(0.1, Interval(0, 1, closed="right"))
    warmup_epochs: int = param(5, at_least(0))
    hidden: int = param(64, at_least(1))
    n_regions: int = param(4, at_least(1))
    dropout: float = param(0.3, FRACTION)
    ilrb: bool = True
    plrb: bool = True
    alpha_init: float = param(0.5, Interval(0, 1, closed="neither"))
    beta_init: float = param(0.5, Interval(0, 1, closed="neither"))
    learn_coefficients: bool = True
    n_prototypes: int = param(10, at_least(1))
    prototype_every: int = param(5, at_least(1))
    ilrb_weight: float = param(1.0, NON_NEGATIVE)
    plrb_weight: float = param(1.0, NON_NEGATIVE)
    bag_pooling: str = param("mean", one_of(BAG_POOLINGS))


class SARBLearner(OwnRNG, Learner):
    """Trains :class:`~models.sarb.SARB` on partial labels of the training bags of one fold.

    :meth:`setup` pools each bag to one vector (``bag_pooling``; the identity on vector data),
    standardises the pooled vectors with the statistics of the training rows, and builds the
    model and an AdamW optimiser with the paper's step schedule (the learning rate is multiplied
    by ``lr_decay`` every ``lr_decay_every`` epochs). Labels arrive in {1, 0, -1} (``-1``
    unknown, hidden by the CV protocol); with every label known they are plain 0/1.

    Each :meth:`train_epoch` visits the training rows once in a seeded random order. The loss
    is the partial BCE over the known labels; after ``warmup_epochs`` epochs, ILRB (``ilrb``)
    and PLRB (``plrb``) add the partial BCE of the blended representations of the unknown
    labels against their targets :math:`1 - \\alpha` and :math:`1 - \\beta`, weighted by
    ``ilrb_weight`` and ``plrb_weight``. :math:`\\alpha` and :math:`\\beta` are learnt, or
    stay at ``alpha_init`` and ``beta_init`` with ``learn_coefficients=False`` (the paper's
    fixed-coefficient ablation). The PLRB prototypes are recomputed from the whole training
    set (model in eval mode) at the start of the first blending epoch and every
    ``prototype_every`` epochs after it. Training labels with no unknown entry give no blending
    target, so such a fold trains on the partial (here: full) BCE alone.

    All randomness (initialisation, dropout, blending partners, k-means, batch order) comes
    from the learner's own streams seeded by ``seed``.
    """

    name: ClassVar[str] = "sarb"
    training_only: ClassVar[tuple[str, ...]] = ("_x", "_labels", "_order")
    partial_labels: ClassVar[bool] = True
    params: ClassVar[type] = SARBParams

    # ------------------------------------------------------------------------------- setup
    def build_model(self) -> SARB:
        c = self.config
        return SARB(
            pooled_dim(self.n_features, c["bag_pooling"]),
            self.n_labels,
            hidden=c["hidden"],
            n_regions=c["n_regions"],
            n_prototypes=c["n_prototypes"],
            dropout=float(c["dropout"]),
            alpha_init=float(c["alpha_init"]),
            beta_init=float(c["beta_init"]),
        )

    def setup(self, bags: Sequence[np.ndarray], labels: np.ndarray) -> None:
        c = self.config
        y = check_training_data(self.name, bags, labels, self.n_features, self.n_labels)
        if not np.isin(y, (-1.0, 0.0, 1.0)).all():
            bad = sorted({float(v) for v in np.unique(y)} - {-1.0, 0.0, 1.0})[:5]
            raise MimlTuneError(
                f"model 'sarb': training labels must be 1 (positive), 0 (negative) or -1 "
                f"(unknown), got also {bad}; pass 0/1 labels, with -1 where a label is hidden"
            )
        self.in_dim = pooled_dim(self.n_features, c["bag_pooling"])
        self.scaler = InstanceStandardizer().fit([pool_bags(bags, c["bag_pooling"])])
        self._x = self.encode(bags)
        self._labels = torch.as_tensor(y, dtype=torch.long, device=self.device)
        self._any_unknown = bool((self._labels == -1).any())

        self._order = torch.Generator().manual_seed(self.seed)
        self._kmeans_rng = torch.Generator().manual_seed(self.seed + 2)
        self.seed_rng(self.seed + 1)
        with self.own_rng():
            self.model = self.build_model().to(self.device)
        # The paper's "fixed alpha / beta" ablation: the blending coefficients stay at their
        # initial values.
        self.model.alpha_logit.requires_grad_(bool(c["learn_coefficients"]))
        self.model.beta_logit.requires_grad_(bool(c["learn_coefficients"]))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=float(c["lr"]), weight_decay=float(c["weight_decay"])
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=int(c["lr_decay_every"]), gamma=float(c["lr_decay"])
        )
        self.epoch = 0
        #: Epochs (1-based) at whose start the prototypes were recomputed.
        self.prototype_epochs: list[int] = []

    def encode(self, bags: Sequence[np.ndarray]) -> Tensor:
        """Pooled, standardised bags ``(n, in_dim)`` (on the learner's device)."""
        if len(bags) == 0:
            return torch.zeros((0, self.in_dim), device=self.device)
        (x,) = self.scaler.transform([pool_bags(bags, self.config["bag_pooling"])])
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    # ---------------------------------------------------------------------------- training
    def blending(self) -> bool:
        """Whether the current epoch blends (it is past the warm-up and a module is on)."""
        c = self.config
        return (
            self.epoch > int(c["warmup_epochs"])
            and bool(c["ilrb"] or c["plrb"])
            and self._any_unknown
        )

    def train_epoch(self) -> float:
        c = self.config
        self.epoch += 1
        blend = self.blending()
        if blend and c["plrb"]:
            first = int(c["warmup_epochs"]) + 1
            if (self.epoch - first) % int(c["prototype_every"]) == 0:
                self._recompute_prototypes()
        self.model.train()
        order = torch.randperm(len(self._x), generator=self._order).tolist()
        size = int(c["batch_size"])
        total, seen = 0.0, 0
        with self.own_rng():
            for start in range(0, len(order), size):
                indices = order[start : start + size]
                loss = self._batch_loss(self._x[indices], self._labels[indices], blend)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"SARB training loss is {value} in epoch {self.epoch} "
                        f"(lr={c['lr']}); try a smaller learning rate"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += value * len(indices)
                seen += len(indices)
        self.scheduler.step()
        return total / seen

    def _batch_loss(self, x: Tensor, y: Tensor, blend: bool) -> Tensor:
        c = self.config
        model = self.model
        f = model.features(x)
        known = y >= 0
        loss = partial_bce(model.classify(f), y.float(), known)
        if blend and c["ilrb"]:
            mixed, target, valid = model.instance_blend(f, y)
            loss = loss + c["ilrb_weight"] * partial_bce(model.classify(mixed), target, valid)
        if blend and c["plrb"]:
            mixed, target, valid = model.prototype_blend(f, y)
            loss = loss + c["plrb_weight"] * partial_bce(model.classify(mixed), target, valid)
        return loss

    @torch.no_grad()
    def _recompute_prototypes(self) -> None:
        self.model.eval()
        f = torch.cat(
            [
                self.model.features(self._x[i : i + _PREDICT_BATCH])
                for i in range(0, len(self._x), _PREDICT_BATCH)
            ]
        )
        self.model.set_prototypes(f, self._labels, generator=self._kmeans_rng)
        self.prototype_epochs.append(self.epoch)

    # -------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(self, encoded: Tensor) -> np.ndarray:
        self.model.eval()
        out = [np.zeros((0, self.n_labels))]
        for start in range(0, len(encoded), _PREDICT_BATCH):
            logits = self.model(encoded[start : start + _PREDICT_BATCH])
            out.append(torch.sigmoid(logits).double().cpu().numpy())
        return np.concatenate(out)
