"""A multi-layer perceptron on pooled bags: the non-linear vector peer of the MIML models."""

from __future__ import annotations

import numbers

from torch import Tensor, nn

from models._checks import check_positive_ints


class BagMeanMLP(nn.Module):
    r"""An MLP with one sigmoid output per label, on one pooled vector per bag.

    Each bag is first summarised by the caller (usually its mean instance,
    :math:`\bar{x}_i = \frac{1}{n_i} \sum_j x_{ij}`, standardised), so on vector data (one
    instance per bag) this is the ordinary multi-label MLP (BP-MLL's architecture with the
    binary cross-entropy loss, Zhang & Zhou 2006). ``layers`` hidden blocks
    :math:`h \leftarrow \mathrm{Dropout}(\mathrm{ReLU}(W h + b))` of width ``hidden`` are
    followed by a linear map to the label logits.

    Args:
        in_dim: width of the pooled bag vector.
        n_labels: number of labels ``L``.
        hidden: width of the hidden layers.
        layers: number of hidden layers (>= 1).
        dropout: dropout probability after each hidden layer, in ``[0, 1)``.

    Shapes:
        - **input**: pooled bags ``(B, in_dim)``
        - **output**: logits ``(B, n_labels)``
    """

    def __init__(
        self,
        in_dim: int,
        n_labels: int,
        *,
        hidden: int = 256,
        layers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        check_positive_ints(in_dim=in_dim, n_labels=n_labels, hidden=hidden, layers=layers)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, numbers.Real)
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be a number in [0, 1), got dropout={dropout!r}")
        self.in_dim: int = int(in_dim)
        self.n_labels: int = int(n_labels)
        self.hidden: int = int(hidden)
        self.layers: int = int(layers)
        self.dropout: float = float(dropout)
        blocks: list[nn.Module] = []
        width = self.in_dim
        for _ in range(self.layers):
            blocks += [nn.Linear(width, self.hidden), nn.ReLU(), nn.Dropout(self.dropout)]
            width = self.hidden
        self.body: nn.Sequential = nn.Sequential(*blocks)
        self.head: nn.Linear = nn.Linear(width, self.n_labels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation of every linear layer (Kaiming-uniform weights)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(
                f"BagMeanMLP expects pooled bags of shape (B, {self.in_dim}), got {tuple(x.shape)}"
            )
        return self.head(self.body(x))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_dim}, {self.n_labels}, hidden={self.hidden}, "
            f"layers={self.layers}, dropout={self.dropout})"
        )
