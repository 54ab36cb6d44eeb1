"""MulSupCon_LD as a learner: the MulSupCon learner with the label-distribution model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from models.mulsupcon_ld import RECOVERIES, MulSupConLD
from tuner.data.preprocess import pooled_dim
from tuner.learners.mulsupcon import MulSupConLearner, MulSupConTrainingParams
from tuner.learners.params import NON_NEGATIVE, POSITIVE, one_of, param

HEAD_INITS = ("probe", "distribution_head")


@dataclass(frozen=True)
class MulSupConLDParams(MulSupConTrainingParams):
    """MulSupCon_LD's hyper-parameters: MulSupCon's shared ones (positives are always ANY, so
    there is no ``positives``) plus the label-distribution terms and the classifier's start."""

    alpha: float = param(0.1, NON_NEGATIVE)
    beta: float = param(0.001, NON_NEGATIVE)
    recovery: str = param("cld", one_of(RECOVERIES))
    sigma: float = param(0.01, POSITIVE)
    head_init: str = param("probe", one_of(HEAD_INITS))


class MulSupConLDLearner(MulSupConLearner):
    """Trains :class:`~models.mulsupcon_ld.MulSupConLD` on the training bags of one fold.

    Everything is as in :class:`~tuner.learners.mulsupcon.MulSupConLearner` (pooling,
    standardisation, two masked views, the probe during pre-training, the classifier stage,
    the ``threshold`` choices and their yeast numbers),
    except the model: positives are always ANY (so there is no ``positives`` parameter), the
    loss is the distribution-weighted contrastive loss plus the label-distribution recovery
    terms (``alpha``, ``beta``, ``recovery``, ``sigma``).

    ``head_init`` picks the classifier's starting point when the classifier stage begins:
    ``"probe"`` (the linear probe on the pre-trained features, as for MulSupCon) or
    ``"distribution_head"`` (the paper's choice: the fully connected layer that produced the
    label distributions is trained further with BCE).
    """

    name: ClassVar[str] = "mulsupcon_ld"
    params: ClassVar[type] = MulSupConLDParams

    def build_model(self) -> MulSupConLD:
        c = self.config
        return MulSupConLD(
            pooled_dim(self.n_features, c["bag_pooling"]),
            self.n_labels,
            hidden=c["hidden"],
            proj_dim=c["proj_dim"],
            dropout=c["dropout"],
            tau=c["tau"],
            momentum=c["momentum"],
            queue_size=c["queue_size"],
            head_batchnorm=c["head_batchnorm"],
            alpha=c["alpha"],
            beta=c["beta"],
            recovery=c["recovery"],
            sigma=c["sigma"],
        )

    def _init_classifier(self) -> None:
        if self.config["head_init"] == "probe" or int(self.config["pretrain_epochs"]) == 0:
            super()._init_classifier()
            return
        model = self.model
        if not isinstance(model, MulSupConLD):  # pragma: no cover - built by _build_model
            raise TypeError(f"expected a MulSupConLD model, got {type(model).__name__}")
        with torch.no_grad():
            model.init_classifier_from_distribution_head()
