"""The papers' models as plain torch / PyG modules, one per file, plus their losses.

Nothing here imports Ray, MLflow, click or the ``tuner`` package: a model can be used, tested and
packaged on its own.
"""

from models.bag_mean_linear import BagMeanLinear
from models.gamil_c import GAMILC
from models.losses import focal_loss, info_nce

__all__ = ["GAMILC", "BagMeanLinear", "focal_loss", "info_nce"]
