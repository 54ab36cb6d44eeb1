"""The interface every trainable model exposes to the trial: one fold, one epoch at a time."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from tuner.learners.params import check_config, defaults_of


class Learner(abc.ABC):
    """Trains one model on the training part of one fold, one epoch at a time.

    A learner owns everything between raw bags and probabilities: the preprocessing fitted on
    its training bags (feature scaling, bag graphs, bag pooling), the model, the optimiser and the
    training loop. The trial builds one learner per fold and calls, epoch-synchronously,
    :meth:`train_epoch` then :meth:`predict` on each.

    Subclasses set :attr:`name` and :attr:`params`, a frozen dataclass whose fields, types and
    defaults are the complete set of hyper-parameters they accept (see
    :mod:`tuner.learners.params`). :attr:`defaults` is derived from it. A configuration key
    outside the declaration is an error, so a typo in a search space fails loudly instead of
    silently doing nothing; every value is checked against its declared type and rule before
    :meth:`validate` checks the rules between parameters.

    Args:
        config: hyper-parameters; missing keys take their defaults.
        n_features: instance feature dimension ``d``.
        n_labels: number of labels ``L``.
        seed: seeds the model's initialisation and the order of the training batches.
        device: where the model trains.
    """

    name: ClassVar[str]
    #: The hyper-parameters: a frozen dataclass (fields, types, defaults and rules).
    params: ClassVar[type]
    #: ``{name: default}`` of :attr:`params`, read-only; derived, never set by a subclass.
    defaults: ClassVar[Mapping[str, Any]]
    #: True for learners that train on partial labels: :meth:`setup` then receives labels in
    #: {1, 0, -1} with -1 for an unknown label (SARB). The others receive 0 in its place.
    partial_labels: ClassVar[bool] = False
    #: True for learners that run on ordinary vector data (one instance per bag) too.
    vector_data: ClassVar[bool] = True
    #: Attributes needed only to train (encoded training bags, batch order), left out when a
    #: trained learner is saved as a model; ``optimizer`` and ``scheduler`` always are.
    training_only: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "defaults" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} sets defaults; declare the hyper-parameters as a frozen "
                "dataclass in params instead (defaults is derived from it)"
            )
        if "params" in cls.__dict__:
            cls.defaults = defaults_of(cls.params)  # also checks the declaration

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        n_features: int,
        n_labels: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config: dict[str, Any] = check_config(self.params, self.name, config)
        self.n_features = int(n_features)
        self.n_labels = int(n_labels)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.validate()

    def validate(self) -> None:  # noqa: B027 (optional hook, no checks by default)
        """Checks the rules between hyper-parameters in :attr:`config` (``hidden`` divisible by
        ``heads``); each value has already been checked against its declaration.

        Called at the end of ``__init__``. Subclasses raise :class:`~tuner.errors.MimlTuneError`
        naming the parameters, the values received and what is allowed.
        """

    def build_model(self) -> torch.nn.Module:
        """The untrained torch model of this configuration, built from :attr:`config`,
        :attr:`n_features`, :attr:`n_labels` and the sizes :meth:`setup` fixed: :meth:`setup`
        trains it, and a saved learner's weights load into it (no pickle)."""
        raise NotImplementedError(f"model {self.name!r} has no torch model")

    @property
    def epochs(self) -> int:
        """Number of epochs this configuration trains for (1 for closed-form learners)."""
        return int(self.config.get("epochs", 1))

    @abc.abstractmethod
    def setup(self, bags: Sequence[np.ndarray], labels: np.ndarray) -> None:
        """Fits preprocessing on the training bags, encodes them, builds model and optimiser.

        Args:
            bags: ``n`` arrays of shape ``(n_instances_i, n_features)``.
            labels: ``(n, n_labels)`` array of 0/1 (with -1 for unknown labels when
                :attr:`partial_labels` is True).
        """

    @abc.abstractmethod
    def encode(self, bags: Sequence[np.ndarray]) -> Any:
        """Applies the fitted preprocessing to bags to predict (done once, reused every epoch)."""

    @abc.abstractmethod
    def train_epoch(self) -> float:
        """Trains one epoch on the training bags given to :meth:`setup`; returns the mean loss."""

    @abc.abstractmethod
    def predict(self, encoded: Any) -> np.ndarray:
        """Returns ``(n, n_labels)`` probabilities for bags returned by :meth:`encode`."""

    def predict_instances(self, encoded: Any) -> list[np.ndarray] | None:
        """Per-instance label probabilities, one ``(n_instances_i, n_labels)`` array per bag, for
        learners that predict instances (GAMIL-C); ``None`` for the others."""
        return None
