"""SARB: semantic-aware representation blending for multi-label learning with partial labels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._checks import check_positive_ints, is_real


class SARB(nn.Module):
    r"""SARB on feature vectors (PAPERS.md section 4; Pu et al., AAAI 2022).

    Training labels are partial: ``1`` known positive, ``0`` known negative, ``-1`` unknown.
    The model learns one *category-specific* representation :math:`f^n_c` per example ``n``
    and class ``c`` (CSRL), scores each with its own classifier, and, during training,
    complements the unknown labels by *blending* category-specific representations: with
    another example's representation of the same class where that label is known positive
    (ILRB) or with a prototype of the class (PLRB). At inference the blending modules are off:
    :meth:`forward` is backbone, CSRL and classifier only.

    **Backbone** (paper eq. 1, :math:`f^n = \phi(I^n)`, a ResNet-101 feature map of
    :math:`W \times H` positions). A vector has no spatial positions, so the backbone is an
    MLP that maps it to ``n_regions`` *tokens* of width ``hidden``, the stand-in for the
    feature-map positions :math:`f^n_{wh}`:

    .. math::
        t^n = \mathrm{LayerNorm}\big(\mathrm{reshape}_{R \times H}(
              W_2\,\mathrm{Dropout}(\mathrm{GELU}(W_1 x^n)))\big) \in \mathbb{R}^{R \times H}.

    Each token is a different learned linear read-out of the same hidden code, so the class
    embeddings below can attend to different "regions" of it. ``n_regions=1`` removes the
    attention (every class then sees the same token and differs only in its classifier).

    **CSRL by semantic decoupling** (paper eq. 2, the SD module of SSGRL, Chen et al. 2019).
    The paper's class embeddings :math:`x_c` are GloVe word vectors; labels here are often
    anonymous, so :math:`x_c \in \mathbb{R}^H` are learnable parameters. With
    :math:`U, V \in \mathbb{R}^{H \times H}`, :math:`P \in \mathbb{R}^{H \times H}` and
    :math:`w_a \in \mathbb{R}^{H}`:

    .. math::
        \tilde f^n_{c,r} = P^\top \tanh\big((U^\top t^n_r) \odot (V^\top x_c)\big), \quad
        a^n_{c,r} = \mathrm{softmax}_r\big(w_a^\top \tilde f^n_{c,r}\big), \quad
        f^n_c = \sum_r a^n_{c,r}\, t^n_r.

    **Classifier** (paper eq. 3, :math:`s^n_c = \phi_c(f^n_c)`): a transform shared by the
    classes then one linear read-out per class,
    :math:`s^n_c = w_c^\top \mathrm{Dropout}(\mathrm{GELU}(W_o f^n_c)) + b_c`. SSGRL's gated
    graph propagation between the classes is not used (SARB's blending acts on
    :math:`f^n_c` before the classifier either way).

    **ILRB** (paper eq. 4-5), :meth:`instance_blend`. For an unknown label ``c`` of example
    ``n``, an example ``m`` of the same batch whose label ``c`` is known positive is drawn
    uniformly and :math:`\hat f^n_c = \alpha f^n_c + (1 - \alpha) f^m_c` is scored with
    target :math:`\hat y^n_c = 1 - \alpha` (the unknown label counted as 0, the partner's as 1).
    :math:`\alpha = \sigma(a)` is learnable, :math:`a` starting at
    :math:`\mathrm{logit}(\text{alpha\_init})`; the gradient reaches it through both the blend
    and the target. Labels ``c`` with no known positive in the batch are not blended.

    **PLRB** (paper eq. 6-8), :meth:`prototype_blend` and :meth:`set_prototypes`. For each
    class, k-means (:func:`kmeans`) over the category-specific representations :math:`f^n_c` of
    the training examples whose label ``c`` is known positive gives up to ``n_prototypes``
    prototypes :math:`p_{c,k}` (fewer when the class has fewer known positives; a class with
    none has no prototype and is not blended). An unknown label ``c`` of example ``n`` is
    blended with a uniformly drawn prototype of its class,
    :math:`\hat f^n_c = \beta f^n_c + (1 - \beta) p_{c,k}`, target :math:`1 - \beta`, with
    :math:`\beta = \sigma(b)` learnable. The prototypes are constants (no gradient); the learner
    recomputes them on a schedule.

    **Loss** (paper eq. 9), :func:`partial_bce`: binary cross-entropy averaged over the known
    labels only, for the plain scores and, after the warm-up, for the blended ones.

    Args:
        in_dim: input vector dimension ``d``.
        n_labels: number of labels ``L``.
        hidden: token and category-specific representation width ``H`` (default 128).
        n_regions: number of tokens ``R`` the backbone produces (default 8).
        n_prototypes: maximum number of prototypes ``K`` per class (default 10).
        dropout: dropout in the backbone and the classifier, ``0 <= dropout < 1``
            (default 0.1).
        alpha_init: initial ILRB coefficient :math:`\alpha`, in ``(0, 1)`` (default 0.5).
        beta_init: initial PLRB coefficient :math:`\beta`, in ``(0, 1)`` (default 0.5).

    Shapes:
        - **input** ``x``: ``(B, in_dim)``
        - **tokens** output: ``(B, n_regions, hidden)``
        - **features** output (category-specific :math:`f^n_c`): ``(B, n_labels, hidden)``
        - **attention** output: ``(B, n_labels, n_regions)``
        - **classify** input ``(B, n_labels, hidden)``, output logits ``(B, n_labels)``
        - **forward** output: logits ``(B, n_labels)``
        - **labels** for the blending methods: ``(B, n_labels)`` in {1, 0, -1}
        - **prototypes** buffer: ``(n_labels, n_prototypes, hidden)``; **prototype_counts**:
          ``(n_labels,)``
    """

    prototypes: Tensor
    prototype_counts: Tensor

    def __init__(
        self,
        in_dim: int,
        n_labels: int,
        *,
        hidden: int = 128,
        n_regions: int = 8,
        n_prototypes: int = 10,
        dropout: float = 0.1,
        alpha_init: float = 0.5,
        beta_init: float = 0.5,
    ) -> None:
        super().__init__()
        check_positive_ints(
            in_dim=in_dim,
            n_labels=n_labels,
            hidden=hidden,
            n_regions=n_regions,
            n_prototypes=n_prototypes,
        )
        if not is_real(dropout) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must satisfy 0 <= dropout < 1, got dropout={dropout!r}")
        for key, coefficient in (("alpha_init", alpha_init), ("beta_init", beta_init)):
            if not is_real(coefficient) or not 0 < coefficient < 1:
                raise ValueError(f"{key} must be a number in (0, 1), got {key}={coefficient!r}")

        self.in_dim, self.n_labels = int(in_dim), int(n_labels)
        self.hidden, self.n_regions = int(hidden), int(n_regions)
        self.n_prototypes = int(n_prototypes)
        self.dropout = float(dropout)
        self.alpha_init, self.beta_init = float(alpha_init), float(beta_init)

        h = self.hidden
        self.input = nn.Linear(self.in_dim, h)
        self.to_tokens = nn.Linear(h, self.n_regions * h)
        self.token_norm = nn.LayerNorm(h)
        self.class_embeddings = nn.Parameter(torch.empty(self.n_labels, h))
        self.sd_u = nn.Linear(h, h, bias=False)
        self.sd_v = nn.Linear(h, h, bias=False)
        self.sd_p = nn.Linear(h, h)
        self.sd_attention = nn.Linear(h, 1)
        self.transform = nn.Linear(h, h)
        self.class_weight = nn.Parameter(torch.empty(self.n_labels, h))
        self.class_bias = nn.Parameter(torch.empty(self.n_labels))
        self.alpha_logit = nn.Parameter(torch.empty(()))
        self.beta_logit = nn.Parameter(torch.empty(()))
        self.register_buffer("prototypes", torch.zeros(self.n_labels, self.n_prototypes, h))
        self.register_buffer("prototype_counts", torch.zeros(self.n_labels, dtype=torch.long))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialises every layer, sets :math:`\\alpha, \\beta` back to their initial values
        and forgets the prototypes."""
        for module in self.modules():
            reset = getattr(module, "reset_parameters", None)
            if module is not self and callable(reset):
                reset()
        bound = 1 / math.sqrt(self.hidden)
        with torch.no_grad():
            nn.init.normal_(self.class_embeddings)
            nn.init.uniform_(self.class_weight, -bound, bound)
            nn.init.uniform_(self.class_bias, -bound, bound)
            self.alpha_logit.fill_(_logit(self.alpha_init))
            self.beta_logit.fill_(_logit(self.beta_init))
            self.prototypes.zero_()
            self.prototype_counts.zero_()

    # ------------------------------------------------------------------------ representation
    @property
    def alpha(self) -> Tensor:
        """The ILRB coefficient :math:`\\alpha = \\sigma(a) \\in (0, 1)` (a 0-d tensor)."""
        return torch.sigmoid(self.alpha_logit)

    @property
    def beta(self) -> Tensor:
        """The PLRB coefficient :math:`\\beta = \\sigma(b) \\in (0, 1)` (a 0-d tensor)."""
        return torch.sigmoid(self.beta_logit)

    def tokens(self, x: Tensor) -> Tensor:
        """Backbone: ``(B, in_dim)`` vectors -> ``(B, n_regions, hidden)`` tokens."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"SARB expects x of shape (B, {self.in_dim}), got {tuple(x.shape)}")
        h = F.dropout(F.gelu(self.input(x)), self.dropout, self.training)
        t = self.to_tokens(h).view(x.shape[0], self.n_regions, self.hidden)
        return self.token_norm(t)

    def attention(self, tokens: Tensor) -> Tensor:
        """Semantic-decoupling attention ``(B, n_labels, n_regions)`` over ``tokens``."""
        u = self.sd_u(tokens).unsqueeze(1)  # (B, 1, R, H)
        v = self.sd_v(self.class_embeddings)[None, :, None, :]  # (1, L, 1, H)
        scores = self.sd_attention(self.sd_p(torch.tanh(u * v))).squeeze(-1)  # (B, L, R)
        return torch.softmax(scores, dim=-1)

    def features(self, x: Tensor) -> Tensor:
        """Category-specific representations :math:`f^n_c`: ``(B, n_labels, hidden)``."""
        t = self.tokens(x)
        return self.attention(t) @ t

    def classify(self, f: Tensor) -> Tensor:
        """Per-class scores: ``(B, n_labels, hidden)`` -> logits ``(B, n_labels)``."""
        g = F.dropout(F.gelu(self.transform(f)), self.dropout, self.training)
        return (g * self.class_weight).sum(dim=-1) + self.class_bias

    def forward(self, x: Tensor) -> Tensor:
        """Label logits ``(B, n_labels)`` (inference path: no blending)."""
        return self.classify(self.features(x))

    # ------------------------------------------------------------------------------ blending
    def instance_blend(self, f: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """ILRB (paper eq. 4-5) within a batch; draws partners from the global torch RNG.

        Args:
            f: category-specific representations ``(B, L, H)``.
            labels: ``(B, L)`` in {1, 0, -1}.

        Returns:
            ``(blended, targets, valid)``: ``(B, L, H)`` blended representations, ``(B, L)``
            targets :math:`1 - \\alpha` and the ``(B, L)`` boolean mask of the entries that were
            blended (unknown labels whose class has a known positive in the batch); entries
            outside the mask hold ``f`` unchanged and must not enter the loss.
        """
        self._check_blend_inputs(f, labels)
        positive = labels == 1
        counts = positive.sum(dim=0)  # (L,)
        valid = (labels == -1) & (counts > 0)
        # Column c of `order` lists the batch rows whose label c is known positive first (in
        # row order); a uniform draw among the first counts[c] entries picks the partner m.
        order = torch.argsort((~positive).to(torch.int8), dim=0, stable=True)
        draw = torch.rand(labels.shape, device=f.device)
        pick = (draw * counts).long().clamp_max((counts - 1).clamp_min(0))
        partner = order.gather(0, pick)  # (B, L)
        classes = torch.arange(self.n_labels, device=f.device).expand_as(partner)
        alpha = self.alpha
        mixed = alpha * f + (1 - alpha) * f[partner, classes]
        blended = torch.where(valid.unsqueeze(-1), mixed, f)
        return blended, (1 - alpha).expand(labels.shape), valid

    def prototype_blend(self, f: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """PLRB (paper eq. 7-8) with the stored prototypes; draws them from the global RNG.

        Args:
            f: category-specific representations ``(B, L, H)``.
            labels: ``(B, L)`` in {1, 0, -1}.

        Returns:
            ``(blended, targets, valid)`` as for :meth:`instance_blend`, with targets
            :math:`1 - \\beta` and ``valid`` the unknown labels of classes that have prototypes.
        """
        self._check_blend_inputs(f, labels)
        counts = self.prototype_counts  # (L,)
        valid = (labels == -1) & (counts > 0)
        draw = torch.rand(labels.shape, device=f.device)
        pick = (draw * counts).long().clamp_max((counts - 1).clamp_min(0))  # (B, L)
        classes = torch.arange(self.n_labels, device=f.device).expand_as(pick)
        beta = self.beta
        mixed = beta * f + (1 - beta) * self.prototypes[classes, pick]
        blended = torch.where(valid.unsqueeze(-1), mixed, f)
        return blended, (1 - beta).expand(labels.shape), valid

    @torch.no_grad()
    def set_prototypes(
        self, f: Tensor, labels: Tensor, *, generator: torch.Generator | None = None
    ) -> None:
        """Recomputes the class prototypes (paper eq. 6) by k-means per class.

        Args:
            f: category-specific representations of the training examples ``(N, L, H)``.
            labels: ``(N, L)`` in {1, 0, -1}; only known positives (1) contribute.
            generator: seeds the k-means initialisation.
        """
        self._check_blend_inputs(f, labels)
        self.prototypes.zero_()
        self.prototype_counts.zero_()
        for c in range(self.n_labels):
            members = f[labels[:, c] == 1, c]
            if members.shape[0] == 0:
                continue  # no known positive: the class gets no prototype and is not blended
            centres = kmeans(members, self.n_prototypes, generator=generator)
            self.prototypes[c, : centres.shape[0]] = centres.to(self.prototypes.dtype)
            self.prototype_counts[c] = centres.shape[0]

    def _check_blend_inputs(self, f: Tensor, labels: Tensor) -> None:
        if f.dim() != 3 or f.shape[1:] != (self.n_labels, self.hidden):
            raise ValueError(
                f"SARB expects representations of shape (B, {self.n_labels}, {self.hidden}), "
                f"got {tuple(f.shape)}"
            )
        if labels.shape != f.shape[:2]:
            raise ValueError(
                f"SARB expects labels of shape {tuple(f.shape[:2])}, got {tuple(labels.shape)}"
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_dim}, {self.n_labels}, hidden={self.hidden}, "
            f"n_regions={self.n_regions}, n_prototypes={self.n_prototypes})"
        )


def partial_bce(logits: Tensor, targets: Tensor, known: Tensor) -> Tensor:
    """Binary cross-entropy averaged over the known entries only (paper eq. 9).

    Args:
        logits: ``(B, L)``.
        targets: ``(B, L)`` in [0, 1] on the known entries (anything finite elsewhere).
        known: ``(B, L)`` boolean mask; unknown entries contribute neither loss nor gradient.

    Returns:
        A scalar; zero (still attached to ``logits``) when no entry is known.
    """
    safe = torch.where(known, targets, torch.zeros_like(targets))
    loss = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")
    weight = known.to(logits.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


@torch.no_grad()
def kmeans(
    x: Tensor, k: int, *, iterations: int = 25, generator: torch.Generator | None = None
) -> Tensor:
    """Lloyd's k-means with k-means++ initialisation, deterministic under ``generator``.

    Args:
        x: ``(N, H)`` points, ``N >= 1``.
        k: wanted number of clusters; ``min(k, number of distinct points)`` are returned.
        iterations: Lloyd iterations after the initialisation.
        generator: a CPU :class:`torch.Generator` for the initialisation.

    Returns:
        ``(k', H)`` cluster centres, ``1 <= k' <= k``.
    """
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"kmeans expects points of shape (N >= 1, H), got {tuple(x.shape)}")
    points = x.detach().float().cpu()
    k = min(int(k), int(torch.unique(points, dim=0).shape[0]))
    first = int(torch.randint(points.shape[0], (1,), generator=generator))
    centres = [points[first]]
    nearest = (points - centres[0]).pow(2).sum(dim=1)
    for _ in range(1, k):
        # k-means++: the next centre is drawn with probability proportional to the squared
        # distance to the nearest centre so far (never an existing centre: its weight is 0).
        index = int(torch.multinomial(nearest, 1, generator=generator))
        centres.append(points[index])
        nearest = torch.minimum(nearest, (points - points[index]).pow(2).sum(dim=1))
    c = torch.stack(centres)
    for _ in range(iterations):
        assign = torch.cdist(points, c).argmin(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, points)
        sizes = torch.bincount(assign, minlength=k).unsqueeze(1)
        updated = torch.where(sizes > 0, sums / sizes.clamp_min(1), c)  # empty cluster: stay
        if torch.equal(updated, c):
            break
        c = updated
    return c.to(x.device, x.dtype)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))
