"""Pieces every learner shares: training-data checks and private random-number streams.

(Hyper-parameter checks are derived from each learner's declaration: :mod:`tuner.learners.params`.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

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
