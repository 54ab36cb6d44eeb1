"""From the best trial to a model scored on data the search never saw.

:func:`refit` trains the chosen configuration on the whole development data for the trial's
number of epochs, with the search's seed; :func:`score` scores it on the holdout (or the official
test split). The holdout is used here, after the search, and nowhere before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tuner.data import MIMLDataset
from tuner.learners import Learner, resolve_learner
from tuner.metrics import ALL_METRICS, compute
from tuner.trial import CVProtocol


def refit(
    model: str,
    config: Mapping[str, Any],
    dev: MIMLDataset,
    *,
    epochs: int,
    seed: int,
    known_labels: float = 1.0,
    device: torch.device | str = "cpu",
) -> Learner:
    """Trains ``model`` with ``config`` on all of ``dev`` for ``epochs`` epochs.

    With ``known_labels < 1`` (SARB's protocol) the development labels are hidden exactly as
    the search hid each fold's training labels.
    """
    learner_cls = resolve_learner(model)
    if "epochs" in learner_cls.defaults:
        config = {**config, "epochs": epochs}
    learner = learner_cls(
        config, n_features=dev.n_features, n_labels=dev.n_labels, seed=seed, device=device
    )
    protocol = CVProtocol(seed=seed, known_labels=known_labels)
    learner.setup(dev.bags, protocol.training_labels(dev.labels, 0, learner_cls.partial_labels))
    for _ in range(learner.epochs):
        learner.train_epoch()
    return learner


def score(
    learner: Learner, data: MIMLDataset, metrics: Sequence[str] = ALL_METRICS
) -> dict[str, float]:
    """Every metric of ``learner`` on ``data`` (holdout or official test split)."""
    return compute(data.labels, learner.predict(learner.encode(data.bags)), names=list(metrics))
