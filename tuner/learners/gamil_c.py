"""GAMIL-C as a learner: standardised instances, kNN bag graphs, focal + contrastive training."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from models.losses import focal_loss, info_nce
from tuner.data.graphs import build_bag_graphs
from tuner.data.preprocess import InstanceStandardizer
from tuner.errors import MimlTuneError
from tuner.learners.base import Learner
from tuner.learners.checks import OwnRNG, check_training_data
from tuner.learners.params import FRACTION, NON_NEGATIVE, POSITIVE, at_least, one_of, param

if TYPE_CHECKING:
    from torch_geometric.data import Batch, Data

    from models.gamil_c import GAMILC

# PyG (about 8 s to import: it pulls in torch._dynamo and sympy) and the model are imported where
# a fold trains or predicts, not with this module: a search's driver reads this learner's
# declared hyper-parameters to check a space and never trains it.

POOLINGS = ("attention", "mean")
SCHEDULES = ("cosine", "constant")
LOSSES = ("focal", "bce")
_PREDICT_BATCH = 256


@dataclass(frozen=True)
class GamilCParams:
    """GAMIL-C's hyper-parameters and their defaults (the learner's docstring says what each
    does; ``search_spaces/models/gamil_c.yaml`` searches the paper's grid around them)."""

    batch_size: int = param(64, at_least(1))
    lr: float = param(1e-3, POSITIVE)
    weight_decay: float = param(5e-4, NON_NEGATIVE)
    epochs: int = param(30, at_least(1))
    layers: int = param(2, at_least(1))
    heads: int = param(4, at_least(1))
    hidden: int = param(256, at_least(1))
    dropout: float = param(0.1, FRACTION)
    k: int = param(5, at_least(1))
    tau: float = param(0.5, POSITIVE)
    alpha: float = param(0.5, NON_NEGATIVE)
    beta: float = param(0.5, NON_NEGATIVE)
    gamma: float = param(2.0, NON_NEGATIVE)
    pooling: str = param("attention", one_of(POOLINGS))
    pool_heads: int = param(4, at_least(1))
    contrastive: bool = True
    correlation: bool = True
    correlation_reg: bool = True
    loss: str = param("focal", one_of(LOSSES))
    lambda1: float = param(1e-3, NON_NEGATIVE)
    lambda2: float = param(1e-4, NON_NEGATIVE)
    lambda3: float = param(1e-3, NON_NEGATIVE)
    max_row_mass: float = param(1.0, POSITIVE)
    proj_dim: int = param(128, at_least(1))
    feature_mask: float = param(0.2, FRACTION)
    schedule: str = param("cosine", one_of(SCHEDULES))


class GamilCLearner(OwnRNG, Learner):
    """Trains :class:`~models.gamil_c.GAMILC` on the training bags of one fold.

    :meth:`setup` standardises the instances (statistics of the training instances only), builds
    the kNN bag graphs once, and builds the model and an AdamW optimiser. Each
    :meth:`train_epoch` visits the training bags once in a seeded random order, in mini-batches.
    With ``contrastive`` every batch is seen as two augmented views (each instance feature
    zeroed with probability ``feature_mask``, independently per view; the graph is unchanged):
    the classification loss is taken on the first view's logits and ``beta`` weighs the InfoNCE
    loss between the two views' projected bag vectors (GAMIL-C eq. 21-22). Without it the
    clean graphs are used. The correlation regulariser (eq. 17) is added when both
    ``correlation`` and ``correlation_reg`` are on.

    The learner draws its randomness (initialisation, dropout, masks, batch order) from its own
    streams seeded by ``seed``, so a fold trains identically whatever other folds do in between.
    """

    name: ClassVar[str] = "gamil_c"
    # A one-instance bag is a one-node graph: attention and pooling have nothing to work on.
    vector_data: ClassVar[bool] = False
    training_only: ClassVar[tuple[str, ...]] = ("_graphs", "_labels", "_order")
    params: ClassVar[type] = GamilCParams

    def validate(self) -> None:
        c = self.config
        if c["hidden"] % c["heads"] != 0:
            raise MimlTuneError(
                f"model 'gamil_c': hidden must be divisible by heads (each attention head gets "
                f"hidden // heads channels), got hidden={c['hidden']} and heads={c['heads']}"
            )
        if c["contrastive"] and c["batch_size"] < 2:
            raise MimlTuneError(
                f"model 'gamil_c': batch_size must be >= 2 with contrastive=True (the other bags "
                f"of a batch are the InfoNCE negatives), got batch_size={c['batch_size']}; "
                "raise it or set contrastive=False"
            )

    # ------------------------------------------------------------------------------- setup
    def build_model(self) -> GAMILC:
        from models.gamil_c import GAMILC

        c = self.config
        return GAMILC(
            self.n_features,
            self.n_labels,
            hidden=c["hidden"],
            heads=c["heads"],
            layers=c["layers"],
            dropout=float(c["dropout"]),
            pooling=c["pooling"],
            pool_heads=c["pool_heads"],
            correlation=bool(c["correlation"]),
            alpha=float(c["alpha"]),
            max_row_mass=float(c["max_row_mass"]),
            proj_dim=c["proj_dim"],
        )

    def setup(self, bags: Sequence[np.ndarray], labels: np.ndarray) -> None:
        c = self.config
        y = check_training_data(self.name, bags, labels, self.n_features, self.n_labels)
        if c["contrastive"] and len(bags) < 2:
            raise MimlTuneError(
                f"model 'gamil_c': contrastive training needs at least 2 training bags, "
                f"got {len(bags)}"
            )
        self.scaler = InstanceStandardizer().fit(bags)
        self._graphs = self.encode(bags)
        self._labels = torch.as_tensor(y, dtype=torch.float32, device=self.device)

        self._order = torch.Generator().manual_seed(self.seed)
        self.seed_rng(self.seed + 1)
        with self.own_rng():
            self.model = self.build_model().to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=float(c["lr"]), weight_decay=float(c["weight_decay"])
        )
        # Cosine decay to 1% of lr over the configured epochs: the last epoch, which is what the
        # search scores, is then a settled model rather than one snapshot of a noisy trajectory.
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = (
            torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=max(1, int(c["epochs"])), eta_min=0.01 * float(c["lr"])
            )
            if c["schedule"] == "cosine"
            else None
        )
        self.epoch = 0

    def encode(self, bags: Sequence[np.ndarray]) -> list[Data]:
        """Standardised kNN graphs of ``bags`` (on the learner's device)."""
        graphs = build_bag_graphs(self.scaler.transform(bags), self.config["k"])
        return [graph.to(self.device) for graph in graphs]

    # ---------------------------------------------------------------------------- training
    def train_epoch(self) -> float:
        c = self.config
        self.epoch += 1
        self.model.train()
        order = torch.randperm(len(self._graphs), generator=self._order).tolist()
        batches = [order[i : i + c["batch_size"]] for i in range(0, len(order), c["batch_size"])]
        if c["contrastive"] and len(batches[-1]) < 2:
            batches.pop()  # InfoNCE needs another bag of the batch as a negative
        total, seen = 0.0, 0
        with self.own_rng():
            for indices in batches:
                batch = _batch([self._graphs[i] for i in indices])
                loss = self._batch_loss(batch, self._labels[indices])
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"GAMIL-C training loss is {value} in epoch {self.epoch} "
                        f"(lr={c['lr']}, loss={c['loss']!r}); try a smaller learning rate"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += value * len(indices)
                seen += len(indices)
        if self.scheduler is not None and self.epoch <= int(c["epochs"]):
            self.scheduler.step()
        return total / seen

    def _batch_loss(self, batch: Batch, y: Tensor) -> Tensor:
        c = self.config
        model = self.model
        if c["contrastive"]:
            h1, h2 = model.embed(self._two_views(batch)).chunk(2)
            logits = model.classify(h1)
        else:
            logits = model(batch)
        if c["loss"] == "focal":
            loss = focal_loss(logits, y, gamma=float(c["gamma"]))
        else:
            loss = F.binary_cross_entropy_with_logits(logits, y)
        if c["contrastive"]:
            loss = loss + c["beta"] * info_nce(model.project(h1), model.project(h2), c["tau"])
        if c["correlation"] and c["correlation_reg"]:
            loss = loss + model.correlation_penalty(c["lambda1"], c["lambda2"], c["lambda3"])
        return loss

    def _two_views(self, batch: Batch) -> Data:
        """Both augmented views of ``batch`` as one graph batch of ``2B`` bags.

        Each instance feature is zeroed with probability ``feature_mask``, independently in each
        view; the graphs are unchanged. Bags ``0..B-1`` are the first view, ``B..2B-1`` the
        second: one pass through the encoder instead of two (the bags do not interact, so this
        is the same computation with half the per-operation overhead).
        """
        from torch_geometric.data import Data

        x, n, b = batch.x, batch.num_nodes, batch.num_graphs
        keep = torch.rand((2 * n, x.shape[1]), device=x.device) >= self.config["feature_mask"]
        return Data(
            x=x.repeat(2, 1) * keep,
            edge_index=torch.cat([batch.edge_index, batch.edge_index + n], dim=1),
            edge_attr=batch.edge_attr.repeat(2, 1),
            batch=torch.cat([batch.batch, batch.batch + b]),
            num_graphs=2 * b,
        )

    # -------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(self, encoded: list[Data]) -> np.ndarray:
        self.model.eval()
        out = [np.zeros((0, self.n_labels))]
        for start in range(0, len(encoded), _PREDICT_BATCH):
            batch = _batch(list(encoded[start : start + _PREDICT_BATCH]))
            out.append(torch.sigmoid(self.model(batch)).double().cpu().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def predict_instances(self, encoded: list[Data]) -> list[np.ndarray]:
        """Per-instance label probabilities: each instance classified as a bag of its own.

        Each instance's representation after the GATv2 stack (its whole bag graph as context)
        is read out as the only instance of a bag, then through the head and the correlation
        mixing, then a sigmoid (:meth:`~models.gamil_c.GAMILC.singleton_logits`): the
        probabilities the trained model gives a bag holding just that instance. (The head on
        the raw instance representation, ``instance_logits``, is not a trained prediction
        with attention pooling: on held-out Birds bags its max over instances ranks labels
        below the label-frequency baseline, AP 0.20 against 0.40, where this gives 0.55.)
        Bags are batched as in :meth:`predict`; the
        bags' graphs are disjoint, so an instance's prediction does not depend on the other
        bags of its batch.

        Args:
            encoded: bags returned by :meth:`encode`.

        Returns:
            One ``(n_instances_i, n_labels)`` float64 array per bag, in the order of ``encoded``.
        """
        self.model.eval()
        out: list[np.ndarray] = []
        for start in range(0, len(encoded), _PREDICT_BATCH):
            graphs = list(encoded[start : start + _PREDICT_BATCH])
            probs = torch.sigmoid(self.model.singleton_logits(_batch(graphs)))
            probs_np = probs.double().cpu().numpy()
            sizes = np.cumsum([graph.num_nodes for graph in graphs])[:-1]
            out.extend(np.split(probs_np, sizes))
        return out


def _batch(graphs: list[Data]) -> Batch:
    from torch_geometric.data import Batch

    return Batch.from_data_list(graphs)
