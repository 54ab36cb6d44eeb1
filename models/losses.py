"""Loss functions of the papers' models: focal loss, InfoNCE, and the multi-label supervised
contrastive losses of MulSupCon and MulSupCon_LD."""

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


POSITIVE_SETS = ("all", "any", "mulsupcon")


def contrastive_log_prob(queries: Tensor, keys: Tensor, tau: float) -> Tensor:
    r"""Log-probability of every key given every query, the inner term of MulSupCon eq. 1 and 4.

    .. math::
        \log p_{ia} = \frac{s_{ia}}{\tau} - \log \sum_{a' \in \mathcal{A}}
            \exp\Big(\frac{s_{ia'}}{\tau}\Big), \qquad s_{ia} = z_q^{(i)} \cdot z_k^{(a)}

    The vectors are expected L2-normalised already (the models normalise their projections),
    so :math:`s` is a cosine similarity.

    Args:
        queries: query vectors :math:`z_q`.
        keys: the contrast set :math:`\mathcal{A}` (the batch's keys, then the queue).
        tau: temperature ``> 0``.

    Shapes:
        - **queries**: ``(B, D)``; **keys**: ``(K, D)`` with ``K >= 1``
        - **output**: ``(B, K)``
    """
    if queries.dim() != 2 or keys.dim() != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"contrastive_log_prob needs (B, D) queries and (K, D) keys, "
            f"got {tuple(queries.shape)} and {tuple(keys.shape)}"
        )
    if keys.shape[0] < 1:
        raise ValueError("contrastive_log_prob needs at least one key")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"contrastive_log_prob needs a finite temperature tau > 0, got {tau=}")
    return F.log_softmax(queries @ keys.t() / tau, dim=1)


def positive_mask(anchor_labels: Tensor, key_labels: Tensor, positives: str) -> Tensor:
    r"""Which keys are positives of which anchor, by the ALL or ANY rule of MulSupCon.

    ``"all"``: :math:`\mathcal{P}(i) = \{a : y^{(a)} = y^{(i)}\}`; ``"any"``:
    :math:`\mathcal{P}(i) = \{a : y^{(a)} \cap y^{(i)} \neq \varnothing\}`; ``"mulsupcon"``: the
    union of the per-label sets :math:`\mathcal{P}_j(i)`, which is the ANY set. An anchor without
    any label has no positive under every rule.

    Shapes:
        - **anchor_labels**: ``(B, L)`` 0/1; **key_labels**: ``(K, L)`` 0/1
        - **output**: ``(B, K)`` bool
    """
    if positives not in POSITIVE_SETS:
        raise ValueError(f"positives must be one of {POSITIVE_SETS}, got {positives=}")
    ya, yk = anchor_labels > 0.5, key_labels > 0.5
    labelled = ya.any(dim=1, keepdim=True)
    if positives == "all":
        return (ya.unsqueeze(1) == yk.unsqueeze(0)).all(dim=2) & labelled
    return (ya.float() @ yk.float().t()) > 0


def multi_label_supcon_loss(
    log_prob: Tensor, anchor_labels: Tensor, key_labels: Tensor, positives: str = "mulsupcon"
) -> Tensor:
    r"""Multi-label supervised contrastive loss with the ALL, ANY or MulSupCon positive sets.

    With ``"all"`` or ``"any"`` it is SupCon (MulSupCon eq. 1) averaged over the anchors that
    have at least one positive:
    :math:`\mathcal{L}_i = -\frac{1}{|\mathcal{P}(i)|} \sum_{p \in \mathcal{P}(i)} \log p_{ip}`.

    With ``"mulsupcon"`` (eq. 4-5) every label ``j`` of anchor ``i`` has its own positive set
    :math:`\mathcal{P}_j(i) = \{a : y^{(a)}_j = 1\}`:

    .. math::
        \mathcal{L}_i = \sum_{j \in y^{(i)}} \frac{-1}{|\mathcal{P}_j(i)|}
            \sum_{p \in \mathcal{P}_j(i)} \log p_{ip}, \qquad
        \mathcal{L} = \frac{\sum_i \mathcal{L}_i}{\sum_i |y^{(i)}|}

    computed as one matrix product: :math:`\mathcal{L}_i = -\sum_a W_{ia} \log p_{ia}` with
    :math:`W = (Y_{\mathcal{B}} / n) Y_{\mathcal{A}}^\top`, :math:`n_j` the number of keys with
    label ``j``. A label no key carries (empty :math:`\mathcal{P}_j`) is skipped and not counted
    in :math:`\sum_i |y^{(i)}|`; anchors without labels contribute nothing. With no positive at all
    the loss is a zero that still belongs to the graph.

    Args:
        log_prob: :func:`contrastive_log_prob` of the anchors against the keys.
        anchor_labels: 0/1 labels of the anchors.
        key_labels: 0/1 labels of the keys.
        positives: ``"all"``, ``"any"`` or ``"mulsupcon"`` (default).

    Shapes:
        - **log_prob**: ``(B, K)``; **anchor_labels**: ``(B, L)``; **key_labels**: ``(K, L)``
        - **output**: scalar
    """
    _check_pairs("multi_label_supcon_loss", log_prob, anchor_labels, key_labels)
    ya = (anchor_labels > 0.5).to(log_prob.dtype)
    yk = (key_labels > 0.5).to(log_prob.dtype)
    if positives == "mulsupcon":
        per_label = yk.sum(dim=0)  # n_j = |P_j|, the same for every anchor
        counted = ya * (per_label > 0)
        weights = (counted / per_label.clamp_min(1)) @ yk.t()
        denominator = counted.sum()
    else:
        mask = positive_mask(anchor_labels, key_labels, positives).to(log_prob.dtype)
        size = mask.sum(dim=1, keepdim=True)
        weights = mask / size.clamp_min(1)
        denominator = (size > 0).sum().to(log_prob.dtype)
    total = -(weights * log_prob).sum()
    return total / denominator if float(denominator) > 0 else total * 0


def distribution_weighted_supcon_loss(
    log_prob: Tensor, anchor_labels: Tensor, key_labels: Tensor, key_distributions: Tensor
) -> Tensor:
    r"""MulSupCon_LD's contrastive term, each positive weighted by its label distribution
    (MulSupCon_LD eq. 12-13, first term):

    .. math::
        \mathcal{L}_i = -\sum_{j \in y_i} \sum_{p \in \mathcal{P}_j(i)} d_p^j\, y_p^j\, \log p_{ip}
            = -\sum_a \Big(\sum_j y_i^j y_a^j d_a^j\Big) \log p_{ia}

    averaged over the anchors that have at least one (ANY) positive. Unlike eq. 4 there is no
    :math:`1/|\mathcal{P}_j|`: the distributions do the weighing. The paper sums over the
    anchors (eq. 14); the mean keeps the step size independent of the batch size.

    Args:
        log_prob: :func:`contrastive_log_prob` of the anchors against the keys.
        anchor_labels, key_labels: 0/1 labels.
        key_distributions: label distributions :math:`d_a` of the keys (rows sum to 1); pass them
            detached to use them as weights only.

    Shapes:
        - **log_prob**: ``(B, K)``; **anchor_labels**: ``(B, L)``; **key_labels**,
          **key_distributions**: ``(K, L)``
        - **output**: scalar
    """
    _check_pairs("distribution_weighted_supcon_loss", log_prob, anchor_labels, key_labels)
    if key_distributions.shape != key_labels.shape:
        raise ValueError(
            "distribution_weighted_supcon_loss needs key distributions shaped like the key "
            f"labels, got {tuple(key_distributions.shape)} and {tuple(key_labels.shape)}"
        )
    ya = (anchor_labels > 0.5).to(log_prob.dtype)
    yk = (key_labels > 0.5).to(log_prob.dtype)
    weights = ya @ (yk * key_distributions).t()
    has_positive = positive_mask(anchor_labels, key_labels, "any").any(dim=1)
    total = -(weights * log_prob).sum()
    count = int(has_positive.sum())
    return total / count if count else total * 0


def label_distribution_recovery_loss(
    anchor_distributions: Tensor,
    key_distributions: Tensor,
    key_labels: Tensor,
    positives: Tensor,
    similarity: Tensor,
    alpha: float,
) -> Tensor:
    r"""Smoothness plus constraint of MulSupCon_LD (eq. 7-9 and 11, without the
    :math:`\beta \|W\|_F^2` term, which belongs to the model's head):

    .. math::
        \mathcal{G}_i = \sum_{p \in \mathcal{P}(i)} C_{ip} \|d_i - d_p\|_2^2, \qquad
        \mathcal{H}_i = \sum_{p \in \mathcal{P}(i)} \|y_p - d_p\|_2^2, \qquad
        \mathcal{G}_i + \alpha \mathcal{H}_i

    averaged over the anchors that have at least one positive.

    Args:
        anchor_distributions: :math:`d_i` of the anchors.
        key_distributions: :math:`d_p` of the keys.
        key_labels: logical labels :math:`y_p` of the keys.
        positives: the positive mask :math:`\mathcal{P}(i)` (:func:`positive_mask`).
        similarity: :math:`C_{ip} \ge 0` (RBF kernel or contrastive probability).
        alpha: weight of :math:`\mathcal{H}`, ``>= 0``.

    Shapes:
        - **anchor_distributions**: ``(B, L)``; **key_distributions**, **key_labels**: ``(K, L)``;
          **positives**, **similarity**: ``(B, K)``
        - **output**: scalar
    """
    b, k = positives.shape
    if (
        anchor_distributions.shape[0] != b
        or key_distributions.shape != key_labels.shape
        or key_distributions.shape[0] != k
        or similarity.shape != positives.shape
        or anchor_distributions.shape[1] != key_distributions.shape[1]
    ):
        raise ValueError(
            "label_distribution_recovery_loss got inconsistent shapes: anchors "
            f"{tuple(anchor_distributions.shape)}, keys {tuple(key_distributions.shape)}, "
            f"labels {tuple(key_labels.shape)}, positives {tuple(positives.shape)}, "
            f"similarity {tuple(similarity.shape)}"
        )
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"label_distribution_recovery_loss needs a finite alpha >= 0, {alpha=}")
    mask = positives.to(anchor_distributions.dtype)
    distance = torch.cdist(anchor_distributions, key_distributions).pow(2)  # (B, K)
    smoothness = (mask * similarity * distance).sum()
    misfit = (key_distributions - key_labels.to(key_distributions.dtype)).pow(2).sum(dim=1)
    constraint = (mask * misfit.unsqueeze(0)).sum()
    count = int(positives.any(dim=1).sum())
    total = smoothness + alpha * constraint
    return total / count if count else total * 0


def rbf_similarity(queries: Tensor, keys: Tensor, sigma: float) -> Tensor:
    r"""RBF kernel :math:`C_{ip} = \exp(-\|z_i - z_p\|^2 / 2\sigma^2)` (MulSupCon_LD eq. 6).

    Shapes:
        - **queries**: ``(B, D)``; **keys**: ``(K, D)``
        - **output**: ``(B, K)`` in ``[0, 1]``
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"rbf_similarity needs a finite sigma > 0, got {sigma=}")
    return torch.exp(-torch.cdist(queries, keys).pow(2) / (2 * sigma**2))


def _check_pairs(name: str, log_prob: Tensor, anchor_labels: Tensor, key_labels: Tensor) -> None:
    if (
        log_prob.dim() != 2
        or anchor_labels.dim() != 2
        or key_labels.dim() != 2
        or log_prob.shape != (anchor_labels.shape[0], key_labels.shape[0])
        or anchor_labels.shape[1] != key_labels.shape[1]
    ):
        raise ValueError(
            f"{name} needs log_prob (B, K), anchor labels (B, L) and key labels (K, L), got "
            f"{tuple(log_prob.shape)}, {tuple(anchor_labels.shape)} and {tuple(key_labels.shape)}"
        )
