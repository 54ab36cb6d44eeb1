"""MulSupCon as a learner: pooled, standardised bags; contrastive pre-training, then BCE."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.losses import POSITIVE_SETS
from models.mulsupcon import MulSupCon, random_mask
from tuner.data.preprocess import BAG_POOLINGS, InstanceStandardizer, pool_bags, pooled_dim
from tuner.errors import MimlTuneError
from tuner.learners.base import Learner
from tuner.learners.checks import OwnRNG, check_training_data
from tuner.learners.params import FRACTION, NON_NEGATIVE, POSITIVE, at_least, one_of, param

CLASSIFIERS = ("finetune", "linear")
OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("cosine", "warm_restarts", "constant")
THRESHOLDS = ("fixed", "train", "train_global")
# Candidate decision thresholds: a coarse grid, so that a threshold chosen on training rows
# cannot fit them too finely.
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
_PREDICT_BATCH = 1024
_FLOOR = 0.01  # schedules decay to 1% of the initial rate


class LinearProbe:
    """Multi-label logistic regression on frozen features, fitted by full-batch L-BFGS.

    The features are standardised on the rows it is fitted on (ReLU features have arbitrary
    scales, which would make one ``l2`` mean different things from epoch to epoch), and the
    objective is ``mean_i sum_j BCE(z_ij, y_ij) + l2 * ||W||_F^2`` (per label, scikit-learn's
    ``C = 1 / (2 n l2)``). :meth:`fit` starts from the previous solution, so refits along
    training are cheap. :meth:`as_linear` folds the standardisation into plain weights.

    Shapes:
        - **fit** ``features``: ``(n, h)``, ``labels``: ``(n, L)``
        - **logits** output: ``(m, L)``
    """

    def __init__(self, l2: float, max_iter: int = 100) -> None:
        self.l2, self.max_iter = float(l2), int(max_iter)
        self.weight: Tensor | None = None  # (h, L)
        self.bias: Tensor | None = None  # (L,)
        self.mean: Tensor | None = None
        self.std: Tensor | None = None

    def fit(self, features: Tensor, labels: Tensor) -> LinearProbe:
        features, labels = features.detach().double(), labels.detach().double()
        self.mean = features.mean(dim=0)
        std = features.std(dim=0, unbiased=False)
        self.std = torch.where(std > 1e-8, std, torch.ones_like(std))
        z = (features - self.mean) / self.std
        n, h = z.shape
        if self.weight is None or self.bias is None or self.weight.shape[0] != h:
            freq = labels.mean(dim=0).clamp(1e-3, 1 - 1e-3)
            self.weight = torch.zeros(h, labels.shape[1], dtype=torch.float64)
            self.bias = torch.log(freq / (1 - freq))
        weight = self.weight.clone().requires_grad_(True)
        bias = self.bias.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [weight, bias], max_iter=self.max_iter, line_search_fn="strong_wolfe"
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            bce = F.binary_cross_entropy_with_logits(z @ weight + bias, labels, reduction="sum")
            loss = bce / n + self.l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():  # predict() runs under no_grad
            optimizer.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()
        return self

    def logits(self, features: Tensor) -> Tensor:
        weight, bias = self.as_linear()
        return features.double() @ weight + bias

    def as_linear(self) -> tuple[Tensor, Tensor]:
        """``(W', b')`` with ``features @ W' + b'`` equal to the probe's logits."""
        if self.weight is None or self.bias is None or self.mean is None or self.std is None:
            raise RuntimeError("the probe is not fitted")
        weight = self.weight / self.std.unsqueeze(1)
        return weight, self.bias - self.mean @ weight


@dataclass(frozen=True)
class MulSupConTrainingParams:
    """The hyper-parameters MulSupCon and MulSupCon_LD share, with their defaults (the
    learner's docstring gives the cross-validated figures behind them)."""

    lr: float = param(1e-3, POSITIVE)
    weight_decay: float = param(1e-4, NON_NEGATIVE)
    optimizer: str = param("adamw", one_of(OPTIMIZERS))
    schedule: str = param("cosine", one_of(SCHEDULES))
    restart_epochs: int = param(50, at_least(1))
    batch_size: int = param(32, at_least(1))
    tau: float = param(0.1, POSITIVE)
    momentum: float = param(0.99, FRACTION)
    queue_size: int = param(1024, at_least(1))
    mask_ratio: float = param(0.5, FRACTION)
    hidden: int = param(256, at_least(1))
    proj_dim: int = param(128, at_least(1))
    head_batchnorm: bool = False
    dropout: float = param(0.2, FRACTION)
    classifier: str = param("finetune", one_of(CLASSIFIERS))
    classifier_lr: float = param(1e-3, POSITIVE)
    classifier_weight_decay: float = param(1e-5, NON_NEGATIVE)
    backbone_lr_mult: float = param(1.0, POSITIVE)
    pretrain_epochs: int = param(20, at_least(0))
    epochs: int = param(50, at_least(1))
    probe_every: int = param(5, at_least(1))
    probe_l2: float = param(1e-3, POSITIVE)
    bag_pooling: str = param("mean", one_of(BAG_POOLINGS))
    threshold: str = param("train_global", one_of(THRESHOLDS))


@dataclass(frozen=True)
class MulSupConParams(MulSupConTrainingParams):
    """MulSupCon's hyper-parameters: the shared ones plus the positive sets of the loss."""

    positives: str = param("mulsupcon", one_of(POSITIVE_SETS))


class MulSupConLearner(OwnRNG, Learner):
    """Trains :class:`~models.mulsupcon.MulSupCon` on the training bags of one fold.

    **Data.** Each bag is pooled to one vector (``bag_pooling``; the identity on vector data,
    whose bags hold one instance), then standardised with the training rows' statistics.

    **Epochs.** ``epochs`` is the trial's total. The first ``pretrain_epochs`` train the encoder
    with the contrastive loss: each mini-batch (seeded order) is seen as two views, each input
    element zeroed with probability ``mask_ratio`` independently per view; the query encoder
    takes the first, the momentum key encoder the second. The remaining epochs train the BCE
    classifier on unmasked inputs: ``classifier="linear"`` freezes the backbone (linear probe,
    dropout off), ``"finetune"`` trains it too at ``classifier_lr * backbone_lr_mult`` (at
    ``classifier_lr`` when there was no pre-training). Each stage has its own optimiser
    (``optimizer``: Adam or AdamW) and its own schedule over its own epochs (``cosine`` decays
    to 1% of the rate; ``warm_restarts`` restarts that decay after ``restart_epochs``, then
    twice as long each time, MulSupCon_LD's
    ``CosineAnnealingWarmRestarts(T_0, T_mult=2)``). With
    ``pretrain_epochs >= epochs`` the trial only pre-trains and scores the probe below; with
    ``pretrain_epochs = 0`` it is plain BCE training of the MLP, which needs
    ``classifier="finetune"`` (:meth:`validate` rejects a linear probe on a never-trained,
    frozen encoder).

    **Predictions during pre-training: a linear probe.** ASHA prunes on every epoch's validation
    metric, but the contrastive encoder has no label output until the classifier stage. So
    :meth:`predict` then scores a logistic-regression probe (:class:`LinearProbe`, L-BFGS,
    ``probe_l2``) fitted on the training rows' current backbone features. It is refitted
    every ``probe_every`` epochs and at the last pre-training epoch, and cached in between
    (every fold's learner is asked to predict every epoch; refitting for each call would cost
    more than the epoch). A probe, rather than a head trained alongside the encoder, measures
    exactly what the paper's linear evaluation measures, is deterministic, and needs no extra
    hyper-parameters beyond its penalty; it uses only the fold's training rows. When the
    classifier stage starts, the classifier is initialised with the last probe, so the score
    does not drop back to chance at the switch and fine-tuning starts from a sensible head.

    **Decision thresholds.** The metrics that binarise (F1s, Hamming) threshold at 0.5.
    ``threshold="fixed"`` predicts the sigmoid probabilities as they are. The other choices
    pick thresholds ``t_j`` on the fold's TRAINING rows only (eval-mode predictions, once per
    epoch, cached), from the coarse grid 0.05, 0.10, ..., 0.95 (ties go to the value nearest
    0.5), and :meth:`predict` returns ``sigmoid(logit(p_ij) - logit(t_j))``, whose 0.5 point
    is ``t_j``: a monotone per-label map, so every per-label ranking (``mean_average_precision``)
    is unchanged. ``"train_global"``: one ``t`` for all labels, maximising example-F1; the
    shift is then the same for every label, so the label rankings (``average_precision``,
    ``one_error``, ``ranking_loss``, ``coverage``) are unchanged too. ``"train"``: each label's
    ``t_j`` maximises that label's F1; it reorders labels within a bag, so it can cost
    label-ranking AP and suits a macro-F1 target. (The paper's thresholds were chosen on the
    test set; these never see the rows they predict.) The default is ``"train_global"``,
    chosen by 3-fold CV on yeast's official training split (example-F1 0.605 -> 0.625,
    macro-F1 0.399 -> 0.422).

    **Defaults** (3-fold CV on yeast's official training rows, MulSupCon_LD; example-F1 /
    macro-F1 / mAP): 40 pre-training + 20 fine-tuning epochs with the backbone at 0.1x the
    classifier's rate and dropout 0.1 gave 0.627 / 0.371 / 0.444, below plain BCE training of
    the same MLP (``pretrain_epochs=0``: 0.604 / 0.452 / 0.504): the slow backbone barely moved
    from the contrastive features. 20 + 30 epochs, the backbone at the classifier's rate
    (``backbone_lr_mult=1``) and dropout 0.2 give 0.649 / 0.433 / 0.492. ``head_batchnorm``
    (batch-norm in the projection head) traded example-F1 for macro-F1 and mAP (0.629 / 0.447 /
    0.502), so it is searched, not the default.

    Randomness (initialisation, dropout, masks) comes from the learner's own stream, and the
    batch order from a generator seeded by ``seed``.
    """

    name: ClassVar[str] = "mulsupcon"
    # The training rows choose the thresholds and fit the probe; both are cached by a predict
    # call, which a saved model has made (tuner.promote predicts before saving).
    training_only: ClassVar[tuple[str, ...]] = ("_x", "_y", "_order")
    params: ClassVar[type] = MulSupConParams

    def validate(self) -> None:
        c = self.config
        if int(c["pretrain_epochs"]) == 0 and c["classifier"] == "linear":
            raise MimlTuneError(
                f"model {self.name!r}: classifier='linear' freezes the backbone, so it needs "
                "pre-training (a linear probe on a frozen random encoder learns nothing from it), "
                "got pretrain_epochs=0 and classifier='linear'; set pretrain_epochs >= 1, or use "
                "classifier='finetune' to train backbone and classifier with BCE from scratch"
            )
        if c["queue_size"] < c["batch_size"]:
            raise MimlTuneError(
                f"model {self.name!r}: queue_size must be >= batch_size (one batch of keys is "
                f"pushed onto the queue per step), got queue_size={c['queue_size']} and "
                f"batch_size={c['batch_size']}; raise queue_size or lower batch_size"
            )

    # ------------------------------------------------------------------------------- setup
    def build_model(self) -> MulSupCon:
        c = self.config
        return MulSupCon(
            pooled_dim(self.n_features, c["bag_pooling"]),
            self.n_labels,
            hidden=c["hidden"],
            proj_dim=c["proj_dim"],
            dropout=c["dropout"],
            tau=c["tau"],
            momentum=c["momentum"],
            queue_size=c["queue_size"],
            head_batchnorm=c["head_batchnorm"],
            positives=c["positives"],
        )

    def setup(self, bags: Sequence[np.ndarray], labels: np.ndarray) -> None:
        c = self.config
        y = check_training_data(self.name, bags, labels, self.n_features, self.n_labels)
        pooled = pool_bags(bags, c["bag_pooling"])
        self.scaler = InstanceStandardizer().fit([pooled])
        self._x = self.encode(bags)
        self._y = torch.as_tensor(y, dtype=torch.float32, device=self.device)
        self._order = torch.Generator().manual_seed(self.seed)
        self.seed_rng(self.seed + 1)
        with self.own_rng():
            self.model = self.build_model()
            self.model.to(self.device)
        encoder = [
            param
            for name, param in self.model.named_parameters()
            if param.requires_grad and not name.startswith("classifier.")
        ]
        self.optimizer = self._optimizer([{"params": encoder}], c["lr"], c["weight_decay"])
        self.scheduler = self._scheduler(int(c["pretrain_epochs"]))
        self.probe = LinearProbe(c["probe_l2"])
        self._probe_epoch: int | None = None
        self.classifier_stage = False
        self.epoch = 0
        self._offset_key: tuple[str, int, bool] | None = None
        self._chosen = np.full(self.n_labels, 0.5)  # (L,) decision thresholds t_j
        self._offsets: Tensor | None = None  # (L,) logit(t_j), subtracted from the logits

    def _optimizer(
        self, groups: list[dict[str, Any]], lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if self.config["optimizer"] == "adamw" else torch.optim.Adam
        return cls(groups, lr=lr, weight_decay=weight_decay)

    def _scheduler(self, epochs: int) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The stage's schedule as a factor on every group's rate, so that the backbone keeps
        its ``backbone_lr_mult`` ratio to the classifier all along (an absolute ``eta_min``,
        as in torch's cosine schedulers, would not)."""
        schedule = self.config["schedule"]
        if schedule == "constant":
            return None
        period = int(self.config["restart_epochs"])

        def factor(epoch: int) -> float:
            if schedule == "cosine":
                position = min(epoch, max(1, epochs)) / max(1, epochs)
            else:  # warm restarts with T_0 = restart_epochs and T_mult = 2
                length = period
                while epoch >= length:
                    epoch, length = epoch - length, 2 * length
                position = epoch / length
            return _FLOOR + (1 - _FLOOR) * 0.5 * (1 + math.cos(math.pi * position))

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def encode(self, bags: Sequence[np.ndarray]) -> Tensor:
        """Pooled, standardised bags, ``(n, pooled_dim)`` float32 on the learner's device."""
        width = pooled_dim(self.n_features, self.config["bag_pooling"])
        if len(bags) == 0:
            return torch.zeros(0, width, device=self.device)
        pooled = pool_bags(bags, self.config["bag_pooling"])
        (x,) = self.scaler.transform([pooled])
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    # ---------------------------------------------------------------------------- training
    def train_epoch(self) -> float:
        c = self.config
        self.epoch += 1
        pretraining = self.epoch <= int(c["pretrain_epochs"])
        if not pretraining and not self.classifier_stage:
            self._start_classifier_stage()
        order = torch.randperm(len(self._x), generator=self._order).tolist()
        size = int(c["batch_size"])
        total, seen = 0.0, 0
        with self.own_rng():
            self._train_mode(pretraining)
            for start in range(0, len(order), size):
                indices = order[start : start + size]
                if pretraining and len(indices) == 1 < len(order):
                    # A one-row remainder: batch-norm in the projection head cannot normalise
                    # it, and one anchor against the queue is a negligible step; skip it.
                    continue
                x, y = self._x[indices], self._y[indices]
                if pretraining:
                    ratio = float(c["mask_ratio"])
                    loss = self.model.pretrain_loss(random_mask(x, ratio), random_mask(x, ratio), y)
                else:
                    loss = F.binary_cross_entropy_with_logits(self.model(x), y)
                value = float(loss.detach())
                if not math.isfinite(value):
                    stage = "pre-training" if pretraining else "classifier"
                    raise FloatingPointError(
                        f"{self.name} {stage} loss is {value} in epoch {self.epoch} "
                        f"(lr={c['lr']}, classifier_lr={c['classifier_lr']}); "
                        "try a smaller learning rate"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                if loss.requires_grad:
                    loss.backward()
                    self.optimizer.step()
                total += value * len(indices)
                seen += len(indices)
        if self.scheduler is not None and self.epoch <= int(c["epochs"]):
            self.scheduler.step()
        return total / seen

    def _train_mode(self, pretraining: bool) -> None:
        self.model.train()
        if not pretraining and self.config["classifier"] == "linear":
            self.model.backbone.eval()  # a frozen encoder: no dropout either

    def _start_classifier_stage(self) -> None:
        c = self.config
        self._init_classifier()
        lr = float(c["classifier_lr"])
        groups: list[dict[str, Any]] = [{"params": list(self.model.classifier.parameters())}]
        if c["classifier"] == "finetune":
            # A pre-trained backbone is fine-tuned gently; a never-trained one (plain supervised
            # training, pretrain_epochs=0) learns at the classifier's rate.
            mult = float(c["backbone_lr_mult"]) if int(c["pretrain_epochs"]) > 0 else 1.0
            groups.append({"params": list(self.model.backbone.parameters()), "lr": lr * mult})
        else:
            self.model.backbone.requires_grad_(False)
        self.optimizer = self._optimizer(groups, lr, float(c["classifier_weight_decay"]))
        self.scheduler = self._scheduler(int(c["epochs"]) - int(c["pretrain_epochs"]))
        self.classifier_stage = True

    def _init_classifier(self) -> None:
        """Starts the classifier from the linear probe on the pre-trained features (from the
        label frequencies' log-odds when there was no pre-training)."""
        if int(self.config["pretrain_epochs"]) == 0:
            with torch.no_grad():
                freq = self._y.mean(dim=0).clamp(1e-3, 1 - 1e-3)
                self.model.classifier.bias.copy_(torch.log(freq / (1 - freq)))
            return
        self._fitted_probe()
        weight, bias = self.probe.as_linear()
        with torch.no_grad():
            self.model.classifier.weight.copy_(weight.t())
            self.model.classifier.bias.copy_(bias)

    # -------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def _features(self, x: Tensor) -> Tensor:
        self.model.eval()
        parts = [
            self.model.features(x[i : i + _PREDICT_BATCH]) for i in range(0, len(x), _PREDICT_BATCH)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, self.model.hidden, device=x.device)

    def _fitted_probe(self) -> LinearProbe:
        """The probe, refitted if it is older than ``probe_every`` epochs or if pre-training
        has just ended."""
        last = min(self.epoch, int(self.config["pretrain_epochs"]))
        stale = (
            self._probe_epoch is None
            or last - self._probe_epoch >= int(self.config["probe_every"])
            or (last == int(self.config["pretrain_epochs"]) and self._probe_epoch != last)
        )
        if stale:
            self.probe.fit(self._features(self._x), self._y)
            self._probe_epoch = last
        return self.probe

    @torch.no_grad()
    def _logits(self, encoded: Tensor) -> Tensor:
        """Uncalibrated logits, ``(n, L)`` float64: the classifier's, or the probe's during
        pre-training."""
        if self.classifier_stage:
            self.model.eval()
            logits = torch.cat(
                [
                    self.model(encoded[i : i + _PREDICT_BATCH])
                    for i in range(0, len(encoded), _PREDICT_BATCH)
                ]
            )
        else:
            logits = self._fitted_probe().logits(self._features(encoded))
        return logits.double()

    def thresholds(self) -> np.ndarray:
        """The current per-label decision thresholds ``t_j``, ``(L,)``: all 0.5 with
        ``threshold="fixed"``, else chosen on the training rows (cached per epoch)."""
        return self._chosen_thresholds()[0].copy()

    def _chosen_thresholds(self) -> tuple[np.ndarray, Tensor]:
        """``t_j`` and ``logit(t_j)`` for the current state, computed once per epoch from the
        training rows' eval-mode predictions (never from the rows being predicted)."""
        how = self.config["threshold"]
        if how == "fixed":
            zeros = torch.zeros(self.n_labels, dtype=torch.float64, device=self.device)
            return np.full(self.n_labels, 0.5), zeros
        key = (how, self.epoch, self.classifier_stage)
        if self._offsets is None or self._offset_key != key:
            probs = torch.sigmoid(self._logits(self._x)).cpu().numpy()
            chosen = choose_thresholds(self._y.cpu().numpy() > 0.5, probs, per_label=how == "train")
            self._offsets = torch.as_tensor(
                np.log(chosen / (1.0 - chosen)), dtype=torch.float64, device=self.device
            )
            self._chosen, self._offset_key = chosen, key
        return self._chosen, self._offsets

    @torch.no_grad()
    def predict(self, encoded: Tensor) -> np.ndarray:
        if len(encoded) == 0:
            return np.zeros((0, self.n_labels))
        logits = self._logits(encoded) - self._chosen_thresholds()[1]
        return torch.sigmoid(logits).cpu().numpy()


def choose_thresholds(labels: np.ndarray, probs: np.ndarray, *, per_label: bool) -> np.ndarray:
    """Decision thresholds from :data:`THRESHOLD_GRID` that maximise F1 on the given rows.

    ``per_label=True``: each label's threshold maximises that label's F1 (a label with no
    positive row gets 0.5). ``per_label=False``: one threshold for all labels, maximising the
    example-based F1 (an empty label set predicted empty counts 1, as in the metric). Ties go
    to the candidate nearest 0.5.

    Args:
        labels: ``(n, L)`` bool.
        probs: ``(n, L)`` probabilities.

    Returns:
        ``(L,)`` float64 thresholds in ``(0, 1)``.
    """
    grid = THRESHOLD_GRID[np.argsort(np.abs(THRESHOLD_GRID - 0.5), kind="stable")]
    pred = probs[:, :, None] >= grid  # (n, L, G)
    hit = pred & labels[:, :, None]
    if per_label:
        tp = hit.sum(axis=0)  # (L, G)
        denom = pred.sum(axis=0) + labels.sum(axis=0)[:, None]
        f1 = np.divide(2.0 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
        return grid[f1.argmax(axis=1)].astype(np.float64)
    tp = hit.sum(axis=1)  # (n, G)
    denom = pred.sum(axis=1) + labels.sum(axis=1)[:, None]
    f1 = np.divide(2.0 * tp, denom, out=np.ones(tp.shape), where=denom > 0).mean(axis=0)
    return np.full(labels.shape[1], grid[f1.argmax()], dtype=np.float64)
