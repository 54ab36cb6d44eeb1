"""Registry of trainable models: a dict of learner classes plus one resolver.

Learners are imported lazily, one module at a time: most pull in torch_geometric or
scikit-learn, which take seconds to import, and a search needs only its own model and peers.
"""

from __future__ import annotations

import importlib

from tuner.errors import MimlTuneError, did_you_mean
from tuner.learners.base import Learner

# Registered name -> "module:Class". The name is also the class's ``name`` attribute.
_LEARNERS: dict[str, str] = {
    "gamil_c": "tuner.learners.gamil_c:GamilCLearner",
    "mulsupcon": "tuner.learners.mulsupcon:MulSupConLearner",
    "mulsupcon_ld": "tuner.learners.mulsupcon_ld:MulSupConLDLearner",
    "sarb": "tuner.learners.sarb:SARBLearner",
    "bag_mean_linear": "tuner.learners.bag_mean_linear:BagMeanLinearLearner",
    "bag_mean_mlp": "tuner.learners.bag_mean_mlp:BagMeanMLPLearner",
    "miml_knn": "tuner.learners.miml_knn:MIMLkNNLearner",
    "mimlsvm": "tuner.learners.mimlsvm:MIMLSVMLearner",
}

# The classic methods a search scores on its own folds beside the tuned model.
PEERS = ("bag_mean_linear", "bag_mean_mlp", "miml_knn", "mimlsvm")

_LOADED: dict[str, type[Learner]] = {}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def learner_names() -> list[str]:
    """Names of the registered models."""
    return sorted(_LEARNERS)


def resolve_learner(name: str) -> type[Learner]:
    """Returns the learner class registered under ``name`` (case and '-'/'_' insensitive)."""
    key = _normalise(name)
    if key not in _LEARNERS:
        raise MimlTuneError(
            f"unknown model {name!r}{did_you_mean(name, learner_names())}; registered models: "
            f"{', '.join(learner_names())}"
        )
    if key not in _LOADED:
        module, _, cls_name = _LEARNERS[key].partition(":")
        cls = getattr(importlib.import_module(module), cls_name)
        if cls.name != key:
            raise RuntimeError(
                f"{_LEARNERS[key]} is registered as {key!r}, names itself {cls.name!r}"
            )
        _LOADED[key] = cls
    return _LOADED[key]


__all__ = ["PEERS", "Learner", "learner_names", "resolve_learner"]
