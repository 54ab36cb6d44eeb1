"""Pieces every learner shares: configuration checks with readable messages, training-data
checks, and private random-number streams."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from tuner.errors import MimlTuneError


class OwnRNG:
    """Mixin: a learner's own CPU (and CUDA) random streams, used inside :meth:`own_rng`.

    Each fold's learner then trains identically whatever other folds do in between, because
    the global torch generator is saved and restored around every use.
    """

    device: torch.device

    def seed_rng(self, seed: int) -> None:
        """Starts the learner's streams from ``seed``."""
        self._cpu_rng = torch.Generator().manual_seed(seed).get_state()
        self._device_rng = (
            torch.Generator(device=self.device).manual_seed(seed).get_state()
            if self.device.type == "cuda"
            else None
        )

    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """Runs the block on this learner's RNG streams, leaving the global ones as they were."""
        cuda = self.device.type == "cuda"
        saved = torch.get_rng_state()
        saved_device = torch.cuda.get_rng_state(self.device) if cuda else None
        torch.set_rng_state(self._cpu_rng)
        if cuda and self._device_rng is not None:
            torch.cuda.set_rng_state(self._device_rng, self.device)
        try:
            yield
        finally:
            self._cpu_rng = torch.get_rng_state()
            torch.set_rng_state(saved)
            if cuda and saved_device is not None:
                self._device_rng = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_device, self.device)


class Checker:
    """Value checks of one learner's configuration, with messages that name the parameter."""

    def __init__(self, model: str, config: dict[str, Any]) -> None:
        self.model, self.config = model, config

    def fail(self, key: str, rule: str) -> None:
        raise MimlTuneError(
            f"model {self.model!r}: {key} must be {rule}, got {key}={self.config[key]!r}"
        )

    def integer(self, key: str, *, minimum: int) -> None:
        value = self.config[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            self.fail(key, f"an integer >= {minimum}")
        self.config[key] = int(value)

    def real(self, key: str, rule: str, ok: Any) -> None:
        value = self.config[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(float(value))
            or not ok(float(value))
        ):
            self.fail(key, f"a finite number {rule}")
        self.config[key] = float(value)

    def boolean(self, key: str) -> None:
        value = self.config[key]
        if not isinstance(value, (bool, np.bool_)):
            self.fail(key, "True or False")
        self.config[key] = bool(value)

    def choice(self, key: str, choices: tuple[str, ...]) -> None:
        if self.config[key] not in choices:
            self.fail(key, f"one of {', '.join(map(repr, choices))}")


def check_training_data(
    model: str, bags: Sequence[np.ndarray], labels: np.ndarray, n_features: int, n_labels: int
) -> np.ndarray:
    """The labels as a float array, after checking that bags and labels fit the learner."""
    y = np.asarray(labels)
    if len(bags) == 0:
        raise MimlTuneError(f"model {model!r}: there are no training bags")
    if y.shape != (len(bags), n_labels):
        raise MimlTuneError(
            f"model {model!r}: labels must have shape ({len(bags)}, {n_labels}) "
            f"(bags x labels), got {y.shape}"
        )
    for i, bag in enumerate(bags):
        shape = np.shape(bag)
        if len(shape) != 2 or shape[0] < 1 or shape[1] != n_features:
            raise MimlTuneError(
                f"model {model!r}: bag {i} has shape {shape}; expected (n_instances >= 1, "
                f"{n_features})"
            )
    return y.astype(np.float32)
