"""Per-label logistic regression on the mean instance of each bag: the simple MIML baseline."""

from __future__ import annotations

from torch import Tensor, nn

from models._checks import check_positive_ints


class BagMeanLinear(nn.Module):
    r"""One logistic regression per label on bag means.

    Each bag is summarised by the mean of its instances, :math:`\bar{x}_i = \frac{1}{n_i}
    \sum_j x_{ij}`, and every label gets an independent linear score
    :math:`z_{il} = w_l^\top \bar{x}_i + b_l`. It is the baseline any MIML model has to beat.
    The bag means are computed by the caller (usually standardised first), so the module is a
    plain linear layer. :meth:`reset_parameters` sets the weights to zero, the usual starting
    point of a convex fit such as L-BFGS, which makes the fit independent of any seed.

    Args:
        in_dim: instance feature dimension ``d``.
        n_labels: number of labels ``L``.

    Shapes:
        - **input**: bag means ``(B, in_dim)``
        - **output**: logits ``(B, n_labels)``
    """

    def __init__(self, in_dim: int, n_labels: int) -> None:
        super().__init__()
        check_positive_ints(in_dim=in_dim, n_labels=n_labels)
        self.in_dim = int(in_dim)
        self.n_labels = int(n_labels)
        self.linear = nn.Linear(self.in_dim, self.n_labels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero weights and biases: every label starts at probability 0.5."""
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    @property
    def weight(self) -> Tensor:
        """The ``(n_labels, in_dim)`` weight matrix (what an L2 penalty applies to)."""
        return self.linear.weight

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(
                f"BagMeanLinear expects bag means of shape (B, {self.in_dim}), got {tuple(x.shape)}"
            )
        return self.linear(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_dim}, {self.n_labels})"
