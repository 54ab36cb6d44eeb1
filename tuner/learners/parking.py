"""Setting a fold model's tensors aside while the trial's other folds train.

A trial trains its K x R fold models epoch-synchronously: every fold model trains one epoch,
then the next. Held in memory at once, their weights, gradients and optimiser states are most
of a trial worker's memory (15 models of GAMIL-C at the Birds grid's largest point: about 1
GB, and the C allocator keeps the heap they fragmented). A :class:`Parking` writes a fold
model's tensors to a file in its folder after the fold's epoch and reads them back before the
next one, so a worker holds one fold model's tensors at a time. Training is unchanged: the same
tensor objects get their values back (the optimiser's state is keyed by the parameters
themselves), bit for bit.

The tensors are found on the learner: its attributes that are :class:`torch.nn.Module` (their
parameters and buffers) or :class:`torch.optim.Optimizer` (their per-parameter state). Gradients
are dropped when parked: every learner's step sets them to ``None`` before its backward pass.
A learner without torch state (kNN, SVM) parks nothing.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import torch


def learner_tensors(learner: Any) -> list[torch.Tensor]:
    """The learner's model tensors and optimiser state, each once, in a fixed order."""
    found: dict[int, torch.Tensor] = {}
    for value in vars(learner).values():
        if isinstance(value, torch.nn.Module):
            for tensor in itertools.chain(value.parameters(), value.buffers()):
                found.setdefault(id(tensor), tensor)
        elif isinstance(value, torch.optim.Optimizer):
            for state in value.state.values():
                for item in state.values():
                    if isinstance(item, torch.Tensor):
                        found.setdefault(id(item), item)
    return list(found.values())


class Parking:
    """Fold models parked as files in ``folder``, one file per fold index.

    Args:
        folder: an existing folder the caller owns (and removes); files are named by fold.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._parked: dict[int, list[torch.Tensor]] = {}

    def park(self, index: int, learner: Any) -> None:
        """Writes ``learner``'s tensors to the fold's file and frees their memory."""
        tensors = learner_tensors(learner)
        if not tensors:
            return
        for tensor in tensors:
            if isinstance(tensor, torch.nn.Parameter):
                tensor.grad = None
        torch.save([t.detach() for t in tensors], self._path(index))
        for tensor in tensors:
            tensor.data = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
        self._parked[index] = tensors

    def unpark(self, index: int) -> None:
        """Gives the fold's tensors their values back (nothing if the fold is not parked)."""
        tensors = self._parked.pop(index, None)
        if tensors is None:
            return
        path = self._path(index)
        device = tensors[0].device
        saved = torch.load(path, map_location=device, weights_only=True)
        for tensor, value in zip(tensors, saved, strict=True):
            tensor.data = value
        path.unlink()

    def _path(self, index: int) -> Path:
        return self.folder / f"fold-{index}.pt"
