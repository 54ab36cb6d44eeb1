"""Loss functions of the papers' models: sigmoid focal loss and InfoNCE (NT-Xent)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def focal_loss(
    logits: Tensor, targets: Tensor, gamma: float = 2.0, reduction: str = "mean"
) -> Tensor:
    r"""Sigmoid focal loss for multi-label classification (Lin et al., 2017; GAMIL-C section 6).

    .. math::
        \mathrm{FL}(z, y) = -(1 - p_t)^{\gamma} \log p_t, \qquad
        p_t = \begin{cases} \sigma(z) & y = 1 \\ 1 - \sigma(z) & y = 0 \end{cases}

    computed stably from the binary cross-entropy with logits, ``-log p_t``, with
    ``1 - p_t = -expm1(log p_t)``. With ``gamma = 0`` it is exactly the binary cross-entropy.
    There is no class-balancing factor (GAMIL-C uses none).

    Args:
        logits: raw scores ``z``.
        targets: 0/1 labels (soft targets in ``[0, 1]`` are accepted), the shape of ``logits``.
        gamma: focusing parameter, ``>= 0`` (default 2.0).
        reduction: ``"mean"`` over all elements (default), ``"sum"`` or ``"none"``.

    Shapes:
        - **logits**, **targets**: ``(B, L)`` (any shape, the same for both)
        - **output**: scalar, or the input shape with ``reduction="none"``
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"focal_loss needs logits and targets of the same shape, "
            f"got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"focal_loss needs a finite gamma >= 0, got {gamma=}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"focal_loss reduction must be one of {_REDUCTIONS}, got {reduction=}")
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log p_t
    loss = bce if gamma == 0 else (-torch.expm1(-bce)).pow(gamma) * bce
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def info_nce(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    r"""Symmetric InfoNCE / NT-Xent between two views of the same bags (GAMIL-C eq. 21-22).

    The ``2B`` vectors of both views are L2-normalised; for the anchor ``u_i`` (view 1 of bag
    ``i``) the positive is ``v_i`` (view 2 of the same bag) and the negatives are the other
    ``2B - 2`` vectors of the batch, both views of every other bag:

    .. math::
        \ell(u_i) = -\log \frac{\exp(\cos(u_i, v_i) / \tau)}
            {\sum_{a \ne u_i} \exp(\cos(u_i, a) / \tau)}

    and likewise for every ``v_i``. The loss is the mean over all ``2B`` anchors, so it is
    symmetric in the two views.

    Args:
        z1: projected representations of the first view.
        z2: projected representations of the second view, row ``i`` the same bag as in ``z1``.
        tau: temperature ``> 0``.

    Shapes:
        - **z1**, **z2**: ``(B, D)`` with ``B >= 2``
        - **output**: scalar
    """
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"info_nce needs two (B, D) tensors of the same shape, "
            f"got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 2:
        raise ValueError(
            f"info_nce needs at least 2 bags per batch (the other bags are the negatives), "
            f"got B={z1.shape[0]}"
        )
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"info_nce needs a finite temperature tau > 0, got {tau=}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.t()) / tau
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, positive)
