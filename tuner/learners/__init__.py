"""Registry of trainable models: a dict of learner classes plus one resolver."""

from __future__ import annotations

from tuner.errors import MimlTuneError
from tuner.learners.base import Learner

_REGISTRY: dict[str, type[Learner]] = {}


def _load() -> dict[str, type[Learner]]:
    # Imported lazily: the learners pull in torch_geometric, which takes seconds to import.
    if not _REGISTRY:
        from tuner.learners.bag_mean_linear import BagMeanLinearLearner
        from tuner.learners.gamil_c import GamilCLearner

        for cls in (GamilCLearner, BagMeanLinearLearner):
            _REGISTRY[cls.name] = cls
    return _REGISTRY


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def learner_names() -> list[str]:
    """Names of the registered models."""
    return sorted(_load())


def resolve_learner(name: str) -> type[Learner]:
    """Returns the learner class registered under ``name`` (case and '-'/'_' insensitive)."""
    registry = _load()
    key = _normalise(name)
    if key not in registry:
        raise MimlTuneError(
            f"unknown model {name!r}; registered models: {', '.join(sorted(registry))}"
        )
    return registry[key]


__all__ = ["Learner", "learner_names", "resolve_learner"]
