"""MulSupCon_LD: multi-label contrastive learning weighted by recovered label distributions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models._checks import is_real
from models.losses import (
    contrastive_log_prob,
    distribution_weighted_supcon_loss,
    label_distribution_recovery_loss,
    positive_mask,
    rbf_similarity,
)
from models.mulsupcon import MulSupCon

RECOVERIES = ("cld", "rld")


class MulSupConLD(MulSupCon):
    r"""MulSupCon_LD (PAPERS.md section 3; Chen et al.): :class:`~models.mulsupcon.MulSupCon`
    with ANY positives and a label-distribution head whose output weighs the contrastive loss.

    **Label distributions.** A linear head on the query's backbone features gives
    :math:`d_i = \mathrm{softmax}(W f(x_i) + b)`, ``(B, L)``, rows summing to 1. The queue also
    stores each key's logical labels and distribution; the keys of the current batch take the
    distributions :math:`d` of the same samples (as the paper's Algorithm 1 stacks ``D[i]`` with
    the queued ones).

    **Loss of one batch** (eq. 6-13), with :math:`\mathcal{P}(i)` the ANY positives in
    :math:`\mathcal{A}` = batch keys + queue and :math:`\log p_{ia}` as in MulSupCon:

    .. math::
        \mathcal{L} = \frac{1}{|\{i : \mathcal{P}(i) \neq \varnothing\}|}\sum_i \Big[
            -\sum_{j \in y_i} \sum_{p \in \mathcal{P}_j(i)} d_p^j y_p^j \log p_{ip}
            + \sum_{p \in \mathcal{P}(i)} C_{ip} \|d_i - d_p\|^2
            + \alpha \sum_{p \in \mathcal{P}(i)} \|y_p - d_p\|^2 \Big]
            + \beta \|W\|_F^2

    Choices where the paper is ambiguous:

    - ``fc(q)`` reads on the backbone features :math:`f(x)` (``hidden`` wide), not on the
      normalised projection: the paper then trains this same fc with BCE as the classifier, and
      the classifier sits on the backbone.
    - ``recovery="rld"``: :math:`C_{ip} = \exp(-\|z_i - z_p\|^2 / 2\sigma^2)` on the query and key
      projections (eq. 6). ``recovery="cld"``: eq. 10 defines :math:`C^{(2)}` as a
      log-probability, which is :math:`\le 0`; minimising :math:`\sum C \|d_i - d_p\|^2` with it
      would push similar samples' distributions apart, the opposite of the smoothness the text
      describes. We use the probability :math:`C_{ip} = p_{ip} = \exp(\log p_{ip}) \in [0, 1]`,
      a similarity on the same scale as the RBF kernel.
    - :math:`C` is detached (a fixed weight, as DLDL's similarity graph), and so are the
      distributions in the contrastive term (weights, eq. 12): otherwise the contrastive term
      would move the distributions towards whichever labels are already easiest to contrast.
      The distributions learn from :math:`\mathcal{G}`, :math:`\mathcal{H}` and the penalty.
    - The paper sums over anchors and repeats :math:`\beta \|W\|_F^2` in every anchor's loss;
      we average over the anchors that have a positive and add the penalty once per batch.

    Args:
        in_dim, n_labels, hidden, proj_dim, dropout, tau, momentum, queue_size, head_batchnorm: as
            :class:`~models.mulsupcon.MulSupCon` (``positives`` is fixed to ``"any"``).
        alpha: weight of the constraint :math:`\mathcal{H}`, ``>= 0`` (default 0.1).
        beta: weight of :math:`\|W\|_F^2` on the distribution head, ``>= 0`` (default 0.001).
        recovery: ``"cld"`` (default, the paper's better variant) or ``"rld"``.
        sigma: RBF width for ``"rld"``, ``> 0`` (default 0.01, the paper's).

    Shapes:
        as :class:`~models.mulsupcon.MulSupCon`, plus
        - **distributions** output: ``(B, n_labels)``, rows summing to 1
    """

    def __init__(
        self,
        in_dim: int,
        n_labels: int,
        *,
        hidden: int = 256,
        proj_dim: int = 128,
        dropout: float = 0.1,
        tau: float = 0.1,
        momentum: float = 0.999,
        queue_size: int = 1024,
        alpha: float = 0.1,
        beta: float = 0.001,
        recovery: str = "cld",
        sigma: float = 0.01,
        head_batchnorm: bool = False,
    ) -> None:
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not is_real(value) or not value >= 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {name}={value!r}")
        if recovery not in RECOVERIES:
            raise ValueError(f"recovery must be one of {RECOVERIES}, got recovery={recovery!r}")
        if not is_real(sigma) or not sigma > 0:
            raise ValueError(f"sigma must be a finite number > 0, got sigma={sigma!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.recovery, self.sigma = recovery, float(sigma)
        super().__init__(
            in_dim,
            n_labels,
            hidden=hidden,
            proj_dim=proj_dim,
            dropout=dropout,
            tau=tau,
            momentum=momentum,
            queue_size=queue_size,
            positives="any",
            head_batchnorm=head_batchnorm,
        )
        self.distribution_head = nn.Linear(self.hidden, self.n_labels)
        self.distribution_head.reset_parameters()

    def _queue_fields(self) -> dict[str, int]:
        return {**super()._queue_fields(), "distributions": self.n_labels}

    def reset_parameters(self) -> None:
        """As :meth:`MulSupCon.reset_parameters`, and re-initialises the distribution head."""
        super().reset_parameters()
        head = getattr(self, "distribution_head", None)  # absent while the base class builds
        if head is not None:
            head.reset_parameters()

    def distributions(self, x: Tensor) -> Tensor:
        """Label distributions :math:`\\mathrm{softmax}(W f(x) + b)`, ``(B, n_labels)``."""
        return torch.softmax(self.distribution_head(self.features(x)), dim=1)

    @torch.no_grad()
    def init_classifier_from_distribution_head(self) -> None:
        """Copies the distribution head into the BCE classifier (the paper trains that fc with
        BCE after pre-training)."""
        self.classifier.weight.copy_(self.distribution_head.weight)
        self.classifier.bias.copy_(self.distribution_head.bias)

    def _contrastive(
        self,
        h: Tensor,
        q: Tensor,
        keys: Tensor,
        key_labels: Tensor,
        labels: Tensor,
        stored: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        d = torch.softmax(self.distribution_head(h), dim=1)
        key_distributions = torch.cat([d, stored["distributions"]])
        log_prob = contrastive_log_prob(q, keys, self.tau)
        if self.recovery == "rld":
            similarity = rbf_similarity(q.detach(), keys, self.sigma)
        else:
            similarity = log_prob.detach().exp()
        contrastive = distribution_weighted_supcon_loss(
            log_prob, labels, key_labels, key_distributions.detach()
        )
        recovery = label_distribution_recovery_loss(
            d,
            key_distributions,
            key_labels,
            positive_mask(labels, key_labels, "any"),
            similarity,
            self.alpha,
        )
        penalty = self.beta * self.distribution_head.weight.pow(2).sum()
        return contrastive + recovery + penalty, {"distributions": d.detach()}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_dim}, {self.n_labels}, hidden={self.hidden}, "
            f"proj_dim={self.proj_dim}, recovery={self.recovery!r}, alpha={self.alpha}, "
            f"beta={self.beta}, tau={self.tau}, momentum={self.momentum}, "
            f"queue_size={self.queue_size})"
        )
