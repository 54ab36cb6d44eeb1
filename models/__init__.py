"""The papers' models as plain torch / PyG modules, one per file, plus their losses.

Nothing here imports Ray, MLflow, click or the ``tuner`` package: a model can be used, tested and
packaged on its own. The names below are imported on first use (PEP 562): ``models.gamil_c``
pulls in PyG, seconds that a user of another model need not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.bag_mean_linear import BagMeanLinear
    from models.gamil_c import GAMILC
    from models.losses import focal_loss, info_nce

_HOMES = {
    "BagMeanLinear": "bag_mean_linear",
    "GAMILC": "gamil_c",
    "focal_loss": "losses",
    "info_nce": "losses",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


__all__ = ["GAMILC", "BagMeanLinear", "focal_loss", "info_nce"]
