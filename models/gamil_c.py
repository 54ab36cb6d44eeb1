"""GAMIL-C: graph attention MIML with label correlation and contrastive learning."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GATv2Conv, global_mean_pool
from torch_geometric.utils import scatter, softmax

from models._checks import check_positive_ints, is_real

POOLINGS = ("attention", "mean")


class GAMILC(nn.Module):
    r"""GAMIL-C (also called GATMIML): a bag is a kNN graph of its instances, encoded by GATv2
    layers, pooled by multi-head attention to one vector, mapped to label logits which a learnable
    label-correlation matrix mixes (PAPERS.md section 1).

    **Encoder** (eq. 8-12). Instances are first projected, :math:`h^{(0)} = \mathrm{ELU}(W_0 x)`,
    then each of the ``layers`` GATv2 layers computes, per head,

    .. math::
        e_{pq} = a^\top \mathrm{LeakyReLU}(W [h_p \,\|\, h_q \,\|\, e^{attr}_{pq}]),\quad
        \alpha_{pq} = \mathrm{softmax}_{q \in \mathcal{N}(p)}(e_{pq}),\quad
        h'_p = \big\|_{k=1}^{K} \sum_q \alpha^k_{pq} W^k h_q

    with the cosine-similarity edge attribute of eq. 6 entering the attention
    (``GATv2Conv(edge_dim=1)``, self-loops added), followed by
    :math:`h \leftarrow \mathrm{LayerNorm}(h + \mathrm{Dropout}(\mathrm{ELU}(h')))`.

    **Pooling** (eq. 13). With ``pooling="attention"``, ``pool_heads`` gate vectors
    :math:`w_m` score each instance, :math:`s_{pm} = w_m^\top \tanh(V h_p)`; per head a softmax
    over the instances of each bag gives :math:`\beta_{pm}`, and the bag vector is
    :math:`g = U [\sum_p \beta_{p1} h_p \| \dots \| \sum_p \beta_{pM} h_p]`. With
    ``pooling="mean"`` (the ablation) :math:`g = \frac{1}{n} \sum_p h_p`.

    **Head** (eq. 18). :math:`z = \mathrm{MLP}(g) \in \mathbb{R}^L`.

    **Label correlation** (eq. 14-17), when ``correlation=True``. With a learnable
    :math:`M \in \mathbb{R}^{L \times L}` (initialised to zeros, so training starts from
    :math:`C = I`):

    .. math::
        S = \tanh\big((M + M^\top) / 2\big), \qquad
        C_{\mathrm{off}} = \mathrm{diag}(r)\,(S - \mathrm{diag}(S)), \quad
        r_i = \min\Big(1, \frac{\text{max\_row\_mass}}{\sum_{j \ne i} |S_{ij}|}\Big),

    :math:`C = I + C_{\mathrm{off}}` and :math:`z' = (1 - \alpha) z + \alpha z C`. Rows whose
    off-diagonal L1 mass is within ``max_row_mass`` are left untouched; heavier rows are scaled
    down to exactly that mass (so :math:`C_{\mathrm{off}}` is symmetric as long as no row is
    scaled). Since :math:`zC = z + z C_{\mathrm{off}}`, the mixing equals
    :math:`z' = z + \alpha z C_{\mathrm{off}}`: ``alpha`` weighs the correlation term against the
    unchanged logits, which is why the paper's grid can search ``alpha`` up to 2 although eq. 16
    reads as an interpolation. :meth:`correlation_penalty` is the regulariser of eq. 17.

    Args:
        in_dim: instance feature dimension ``d``.
        n_labels: number of labels ``L``.
        hidden: width of the instance and bag representations (default 256); divisible by
            ``heads``.
        heads: attention heads per GATv2 layer, concatenated to ``hidden`` (default 4).
        layers: number of GATv2 layers (default 2; the paper's grid searches 2-4).
        dropout: dropout after each GATv2 layer and in the head, ``0 <= dropout < 1``
            (default 0.1).
        pooling: ``"attention"`` (default) or ``"mean"``.
        pool_heads: gate vectors of the attention pooling (default 4; unused with mean pooling).
        correlation: learn and apply the label-correlation matrix (default ``True``).
        alpha: weight of the correlation term, ``>= 0`` (default 0.5).
        max_row_mass: bound on each row's off-diagonal L1 mass, ``> 0`` (default 1.0).
        proj_dim: output width of the projection head for the contrastive loss (default 128).

    Shapes:
        - **input**: a :class:`~torch_geometric.data.Batch` (or one
          :class:`~torch_geometric.data.Data`) with ``x``: ``(N, in_dim)``,
          ``edge_index``: ``(2, E)``, ``edge_attr``: ``(E, 1)``, ``batch``: ``(N,)`` for ``B``
          bags holding ``N`` instances in all
        - **forward** / **classify** output: logits ``(B, n_labels)``
        - **embed** output: bag vectors ``(B, hidden)``
        - **project** output: ``(B, proj_dim)``
        - **instance_logits** / **singleton_logits** output: ``(N, n_labels)``
    """

    def __init__(
        self,
        in_dim: int,
        n_labels: int,
        *,
        hidden: int = 256,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.1,
        pooling: str = "attention",
        pool_heads: int = 4,
        correlation: bool = True,
        alpha: float = 0.5,
        max_row_mass: float = 1.0,
        proj_dim: int = 128,
    ) -> None:
        super().__init__()
        check_positive_ints(
            in_dim=in_dim,
            n_labels=n_labels,
            hidden=hidden,
            heads=heads,
            layers=layers,
            pool_heads=pool_heads,
            proj_dim=proj_dim,
        )
        if hidden % heads != 0:
            raise ValueError(
                f"hidden must be divisible by heads (each head gets hidden // heads channels), "
                f"got hidden={hidden} and heads={heads}"
            )
        if not is_real(dropout) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must satisfy 0 <= dropout < 1, got dropout={dropout!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got pooling={pooling!r}")
        if not isinstance(correlation, bool):
            raise ValueError(f"correlation must be True or False, got correlation={correlation!r}")
        if not is_real(alpha) or not alpha >= 0:
            raise ValueError(f"alpha must be a finite number >= 0, got alpha={alpha!r}")
        if not is_real(max_row_mass) or not max_row_mass > 0:
            raise ValueError(
                f"max_row_mass must be a finite number > 0, got max_row_mass={max_row_mass!r}"
            )

        self.in_dim, self.n_labels = int(in_dim), int(n_labels)
        self.hidden, self.heads, self.layers = int(hidden), int(heads), int(layers)
        self.dropout = float(dropout)
        self.pooling = pooling
        self.pool_heads = int(pool_heads)
        self.correlation = correlation
        self.alpha = float(alpha)
        self.max_row_mass = float(max_row_mass)
        self.proj_dim = int(proj_dim)

        self.input = nn.Linear(self.in_dim, self.hidden)
        self.convs = nn.ModuleList(
            GATv2Conv(
                self.hidden, self.hidden // self.heads, heads=self.heads, edge_dim=1, concat=True
            )
            for _ in range(self.layers)
        )
        # Residual connections + LayerNorm around every GATv2 layer: without them a 4-layer stack
        # trained on ~200 bags loses the instance features to repeated neighbourhood averaging
        # (over-smoothing) and its gradients shrink through the attention softmaxes; the skip
        # path keeps each instance's own features and a well-conditioned gradient at any depth.
        self.norms = nn.ModuleList(nn.LayerNorm(self.hidden) for _ in range(self.layers))
        if pooling == "attention":
            self.gate: nn.Module | None = nn.Sequential(
                nn.Linear(self.hidden, self.hidden),
                nn.Tanh(),
                nn.Linear(self.hidden, self.pool_heads),
            )
            self.pool_out: nn.Module | None = nn.Linear(self.pool_heads * self.hidden, self.hidden)
        else:
            self.gate = None
            self.pool_out = None
        self.head = nn.Sequential(
            nn.Linear(self.hidden, self.hidden),
            nn.ELU(),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden, self.n_labels),
        )
        self.projection = nn.Sequential(
            nn.Linear(self.hidden, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.proj_dim),
        )
        self.M: nn.Parameter | None = (
            nn.Parameter(torch.zeros(self.n_labels, self.n_labels)) if correlation else None
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialises every layer; the correlation parameters ``M`` go back to zeros."""
        for module in self.modules():
            reset = getattr(module, "reset_parameters", None)
            if module is not self and callable(reset):
                reset()
        if self.M is not None:
            with torch.no_grad():
                self.M.zero_()

    # ----------------------------------------------------------------------------- encoder
    def instance_embeddings(self, data: Data | Batch) -> Tensor:
        """Instance representations after the GATv2 stack, ``(N, hidden)``."""
        x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
        if x is None or x.dim() != 2 or x.shape[1] != self.in_dim:
            shape = None if x is None else tuple(x.shape)
            raise ValueError(f"GAMILC expects data.x of shape (N, {self.in_dim}), got {shape}")
        h = F.dropout(F.elu(self.input(x)), self.dropout, self.training)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            update = F.elu(conv(h, edge_index, edge_attr))
            h = norm(h + F.dropout(update, self.dropout, self.training))
        return h

    def embed(self, data: Data | Batch) -> Tensor:
        """Bag vectors ``(B, hidden)``: the encoder followed by the pooling of eq. 13."""
        h = self.instance_embeddings(data)
        batch, n_bags = _batch_vector(data, h)
        if self.gate is None or self.pool_out is None:
            return global_mean_pool(h, batch, size=n_bags)
        weights = softmax(self.gate(h), batch, num_nodes=h.shape[0])  # (N, pool_heads)
        pooled = scatter(
            weights.unsqueeze(-1) * h.unsqueeze(1), batch, dim=0, dim_size=n_bags, reduce="sum"
        )  # (B, pool_heads, hidden)
        return self.pool_out(pooled.reshape(n_bags, self.pool_heads * self.hidden))

    def project(self, h: Tensor) -> Tensor:
        """Projection head for the contrastive loss: ``(B, hidden)`` -> ``(B, proj_dim)``."""
        return self.projection(h)

    # ------------------------------------------------------------------------------ labels
    def classify(self, h: Tensor) -> Tensor:
        """Logits ``(B, n_labels)`` of bag vectors ``(B, hidden)``: eq. 18, then eq. 16."""
        return self.mix_labels(self.head(h))

    def forward(self, data: Data | Batch) -> Tensor:
        """Label logits ``(B, n_labels)`` after the correlation mixing."""
        return self.classify(self.embed(data))

    def instance_logits(self, data: Data | Batch) -> Tensor:
        """The head applied to each instance's representation: ``(N, n_labels)`` (no mixing).

        The head is trained on pooled bag vectors; with attention pooling these come out of the
        pooling's output layer, not the instance space, so the head's reading of a raw instance
        representation is not a trained prediction. :meth:`singleton_logits` is.
        """
        return self.head(self.instance_embeddings(data))

    def singleton_logits(self, data: Data | Batch) -> Tensor:
        """Logits ``(N, n_labels)`` of each instance as a bag of its own, in its bag's context.

        Each instance's representation (after the GATv2 stack over its whole bag graph) is
        pooled as the only instance of a bag: every attention head gives it weight 1 (eq. 13),
        so the pooled vector is the representation repeated ``pool_heads`` times through the
        pooling's output layer (mean pooling: the representation itself). Then the head
        (eq. 18) and the correlation mixing (eq. 16), exactly as :meth:`forward` does for a bag.
        For a bag of one instance it equals :meth:`forward`.
        """
        h = self.instance_embeddings(data)
        if self.pool_out is not None:
            h = self.pool_out(h.repeat(1, self.pool_heads))
        return self.classify(h)

    def correlation_offdiag(self) -> Tensor | None:
        """:math:`C_{\\mathrm{off}}` ``(L, L)`` (eq. 14-15), or ``None`` without correlation."""
        if self.M is None:
            return None
        m = self.M
        s = torch.tanh((m + m.t()) / 2)
        s = s * (1 - torch.eye(self.n_labels, device=s.device, dtype=s.dtype))
        mass = s.abs().sum(dim=1, keepdim=True)
        # Clamping the denominator at the bound gives a factor of exactly 1 (and no gradient
        # through it) for rows within the bound, and avoids 0/0 at the all-zero start.
        return s * (self.max_row_mass / mass.clamp_min(self.max_row_mass))

    def correlation_matrix(self) -> Tensor:
        """:math:`C = I + C_{\\mathrm{off}}` ``(L, L)``; the identity without correlation."""
        c_off = self.correlation_offdiag()
        eye = torch.eye(self.n_labels, device=self.input.weight.device)
        return eye if c_off is None else eye + c_off

    def mix_labels(self, z: Tensor) -> Tensor:
        """:math:`z' = (1 - \\alpha) z + \\alpha z C = z + \\alpha z C_{\\mathrm{off}}` (eq. 16)."""
        c_off = self.correlation_offdiag()
        if c_off is None:
            return z
        return z + self.alpha * (z @ c_off)

    def correlation_penalty(self, lambda1: float, lambda2: float, lambda3: float) -> Tensor:
        """Regulariser of eq. 17 (a zero scalar without correlation).

        ``lambda1 * mean|C_off| + lambda2 * ||C_off||_F^2 + lambda3 * mean_i sum_j |C_off_ij|``:
        sparsity, stability and row sparsity; the mean in the first term runs over all ``L^2``
        entries.
        """
        c_off = self.correlation_offdiag()
        if c_off is None:
            return torch.zeros((), device=self.input.weight.device)
        magnitude = c_off.abs()
        return (
            lambda1 * magnitude.mean()
            + lambda2 * c_off.pow(2).sum()
            + lambda3 * magnitude.sum(dim=1).mean()
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_dim}, {self.n_labels}, hidden={self.hidden}, "
            f"heads={self.heads}, layers={self.layers}, pooling={self.pooling!r}, "
            f"correlation={self.correlation})"
        )


def _batch_vector(data: Data | Batch, h: Tensor) -> tuple[Tensor, int]:
    """The instance-to-bag index and the number of bags (one bag for a plain ``Data``)."""
    batch = getattr(data, "batch", None)
    if batch is None:
        return torch.zeros(h.shape[0], dtype=torch.long, device=h.device), 1
    n_bags = getattr(data, "num_graphs", None)
    return batch, int(n_bags) if n_bags is not None else int(batch.max()) + 1
