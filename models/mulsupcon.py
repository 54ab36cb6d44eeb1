"""MulSupCon: multi-label supervised contrastive learning in a MoCo framework, for vector data."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models._checks import check_positive_int, is_real
from models.losses import POSITIVE_SETS, contrastive_log_prob, multi_label_supcon_loss


class LabelledQueue(nn.Module):
    """A first-in first-out queue of past keys and what is known about them (MoCo's queue).

    Each named field is a ``(size, dim)`` buffer; :meth:`push` writes a batch of rows over the
    oldest ones, :meth:`contents` returns the rows pushed so far (at most ``size``), oldest
    first. An empty queue returns empty tensors, so the first batch contrasts only with itself
    (MoCo fills its queue with random vectors instead; random keys would need random labels).

    Args:
        size: capacity ``>= 1``.
        fields: name -> row width, e.g. ``{"keys": 128, "labels": 14}``.

    Shapes:
        - **push** inputs: ``(n, dim)`` per field with ``n <= size``
        - **contents** outputs: ``(min(pushed, size), dim)`` per field
    """

    ptr: Tensor
    filled: Tensor

    def __init__(self, size: int, fields: dict[str, int]) -> None:
        super().__init__()
        check_positive_int("size", size)
        self.size = int(size)
        self.fields = dict(fields)
        for name, dim in self.fields.items():
            self.register_buffer(name, torch.zeros(self.size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def reset_parameters(self) -> None:
        """Empties the queue."""
        self.ptr.zero_()
        self.filled.zero_()

    def __len__(self) -> int:
        return int(self.filled)

    @torch.no_grad()
    def push(self, **rows: Tensor) -> None:
        """Writes one batch of rows, the same number for every field, over the oldest rows."""
        if set(rows) != set(self.fields):
            raise ValueError(
                f"push needs exactly the fields {sorted(self.fields)}, got {sorted(rows)}"
            )
        n = {int(t.shape[0]) for t in rows.values()}
        if len(n) != 1 or next(iter(n)) > self.size:
            raise ValueError(
                f"push needs the same number of rows (at most size={self.size}) for every field, "
                f"got { ({k: tuple(t.shape) for k, t in rows.items()}) }"
            )
        count = next(iter(n))
        index = (int(self.ptr) + torch.arange(count, device=self.ptr.device)) % self.size
        for name, value in rows.items():
            getattr(self, name)[index] = value.detach().to(getattr(self, name).dtype)
        self.ptr.fill_((int(self.ptr) + count) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + count))

    def contents(self) -> dict[str, Tensor]:
        """The stored rows of every field, oldest first."""
        filled, ptr = int(self.filled), int(self.ptr)
        start = ptr if filled == self.size else 0
        index = (start + torch.arange(filled, device=self.ptr.device)) % self.size
        return {name: getattr(self, name)[index] for name in self.fields}

    def extra_repr(self) -> str:
        return f"size={self.size}, fields={self.fields}"


def mlp_backbone(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """The vector-data encoder of MulSupCon: three ``Linear -> ReLU -> Dropout`` layers."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(3):
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*layers)


def projection_head(hidden: int, proj_dim: int, batchnorm: bool) -> nn.Sequential:
    """The projection head :math:`g`: ``Linear -> [BatchNorm] -> ReLU -> Linear``.

    With ``batchnorm`` the hidden layer is batch-normalised (SimCLR, MoCo v3): it removes the
    component that all ReLU backbone features share, which otherwise makes every projection
    point the same way at the start.
    """
    layers: list[nn.Module] = [nn.Linear(hidden, hidden)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(), nn.Linear(hidden, proj_dim)]
    return nn.Sequential(*layers)


def random_mask(x: Tensor, ratio: float) -> Tensor:
    """The vector augmentation of MulSupCon: each input element zeroed with probability ``ratio``.

    Draws from the global torch generator (learners wrap calls in their own RNG stream). On
    standardised features zero is the training mean, so a masked element carries no information.

    Shapes:
        - **x**: ``(B, d)``; **output**: ``(B, d)``
    """
    if not is_real(ratio) or not 0 <= ratio < 1:
        raise ValueError(f"mask ratio must satisfy 0 <= ratio < 1, got ratio={ratio!r}")
    if ratio == 0:
        return x
    return x * (torch.rand(x.shape, device=x.device) >= ratio).to(x.dtype)


class MulSupCon(nn.Module):
    r"""MulSupCon (PAPERS.md section 2; Zhang & Wu, AAAI 2024) for vector data.

    **Encoders.** The query encoder is the backbone :math:`f` (three ``Linear -> ReLU ->
    Dropout`` layers of width ``hidden``) followed by the projection head :math:`g`
    (``Linear -> ReLU -> Linear`` to ``proj_dim``), output L2-normalised:
    :math:`z_q = g(f(x)) / \|g(f(x))\|`. The key encoder is a copy whose parameters follow the
    query encoder's by momentum, :math:`\theta_k \leftarrow m \theta_k + (1 - m) \theta_q`
    (MoCo), with no gradient.

    **Contrast set.** :math:`\mathcal{A}` is the keys of the current batch (the second augmented
    view, so each anchor's own key is one of its positives) followed by the :class:`LabelledQueue`
    of past keys and their labels. :meth:`pretrain_loss` computes
    :math:`\log p_{ia}` (eq. 1's inner term) and the loss of the chosen positive sets: ``"all"``
    (identical label sets), ``"any"`` (a shared label) or ``"mulsupcon"`` (one positive set per
    label of the anchor, eq. 4-5); see :func:`~models.losses.multi_label_supcon_loss`.

    **Classifier.** After pre-training, :meth:`forward` gives BCE logits from a linear layer on
    the backbone features (the projection head is dropped, as in the paper); the learner either
    freezes the backbone (linear probe) or fine-tunes it at a lower learning rate.

    Args:
        in_dim: input feature dimension ``d``.
        n_labels: number of labels ``L``.
        hidden: backbone width (default 256).
        proj_dim: projection width (default 128).
        dropout: dropout after each backbone layer, ``0 <= dropout < 1`` (default 0.1).
        tau: temperature ``> 0`` (default 0.1, the paper's).
        momentum: key-encoder momentum ``m`` in ``[0, 1)`` (default 0.999, the paper's).
        queue_size: number of past keys kept, ``>= 1`` (default 1024).
        positives: ``"all"``, ``"any"`` or ``"mulsupcon"`` (default).
        head_batchnorm: batch-normalise the projection head's hidden layer (default False, the
            paper's head); see :func:`projection_head`.

    Shapes:
        - **x**: ``(B, in_dim)``; **labels**: ``(B, n_labels)`` 0/1
        - **features** output: ``(B, hidden)``
        - **query** / **key** output: ``(B, proj_dim)``, unit rows
        - **forward** output: logits ``(B, n_labels)``
        - **pretrain_loss** output: scalar
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
        positives: str = "mulsupcon",
        head_batchnorm: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(head_batchnorm, bool):
            raise ValueError(
                f"head_batchnorm must be True or False, got head_batchnorm={head_batchnorm!r}"
            )
        for name, value in (
            ("in_dim", in_dim),
            ("n_labels", n_labels),
            ("hidden", hidden),
            ("proj_dim", proj_dim),
            ("queue_size", queue_size),
        ):
            check_positive_int(name, value)
        if not is_real(dropout) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must satisfy 0 <= dropout < 1, got dropout={dropout!r}")
        if not is_real(tau) or not tau > 0:
            raise ValueError(f"tau must be a finite number > 0, got tau={tau!r}")
        if not is_real(momentum) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must satisfy 0 <= momentum < 1, got momentum={momentum!r}")
        if positives not in POSITIVE_SETS:
            raise ValueError(
                f"positives must be one of {POSITIVE_SETS}, got positives={positives!r}"
            )
        self.in_dim, self.n_labels = int(in_dim), int(n_labels)
        self.hidden, self.proj_dim = int(hidden), int(proj_dim)
        self.dropout, self.tau, self.momentum = float(dropout), float(tau), float(momentum)
        self.queue_size = int(queue_size)
        self.positives = positives

        self.head_batchnorm = bool(head_batchnorm)
        self.backbone = mlp_backbone(self.in_dim, self.hidden, self.dropout)
        self.projection = projection_head(self.hidden, self.proj_dim, self.head_batchnorm)
        self.classifier = nn.Linear(self.hidden, self.n_labels)
        self.key_backbone = copy.deepcopy(self.backbone)
        self.key_projection = copy.deepcopy(self.projection)
        for param in self._key_parameters():
            param.requires_grad_(False)
        self.queue = LabelledQueue(self.queue_size, self._queue_fields())
        self.reset_parameters()

    def _queue_fields(self) -> dict[str, int]:
        return {"keys": self.proj_dim, "labels": self.n_labels}

    def _key_parameters(self) -> list[nn.Parameter]:
        return [*self.key_backbone.parameters(), *self.key_projection.parameters()]

    def _query_parameters(self) -> list[nn.Parameter]:
        return [*self.backbone.parameters(), *self.projection.parameters()]

    def reset_parameters(self) -> None:
        """Re-initialises the query encoder and classifier, copies them to the key encoder and
        empties the queue."""
        for module in (*self.backbone, *self.projection, self.classifier):
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        with torch.no_grad():
            # parameters and buffers (the head's batch-norm statistics)
            self.key_backbone.load_state_dict(self.backbone.state_dict())
            self.key_projection.load_state_dict(self.projection.state_dict())
        self.queue.reset_parameters()

    # ----------------------------------------------------------------------------- encoders
    def features(self, x: Tensor) -> Tensor:
        """Backbone features :math:`f(x)`, ``(B, hidden)``."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (B, {self.in_dim}), got {tuple(x.shape)}"
            )
        return self.backbone(x)

    def query(self, x: Tensor) -> Tensor:
        """L2-normalised query projections :math:`z_q`, ``(B, proj_dim)``."""
        return F.normalize(self.projection(self.features(x)), dim=1)

    @torch.no_grad()
    def key(self, x: Tensor) -> Tensor:
        """L2-normalised key projections :math:`z_k` from the momentum encoder (no gradient)."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (B, {self.in_dim}), got {tuple(x.shape)}"
            )
        return F.normalize(self.key_projection(self.key_backbone(x)), dim=1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        r""":math:`\theta_k \leftarrow m\,\theta_k + (1 - m)\,\theta_q` for every key parameter."""
        for key, query in zip(self._key_parameters(), self._query_parameters(), strict=True):
            key.mul_(self.momentum).add_(query.detach(), alpha=1 - self.momentum)

    def forward(self, x: Tensor) -> Tensor:
        """Classifier logits ``(B, n_labels)`` on the backbone features."""
        return self.classifier(self.features(x))

    # ------------------------------------------------------------------------- pre-training
    def pretrain_loss(self, x_query: Tensor, x_key: Tensor, labels: Tensor) -> Tensor:
        """The contrastive loss of one batch, seen as two views; updates the key encoder by
        momentum first and pushes the batch's keys onto the queue after, as MoCo does.

        Args:
            x_query: the first augmented view, encoded by the query encoder.
            x_key: the second augmented view, encoded by the momentum key encoder.
            labels: 0/1 labels of the batch.
        """
        if labels.shape != (x_query.shape[0], self.n_labels) or x_key.shape != x_query.shape:
            raise ValueError(
                f"pretrain_loss needs two views (B, {self.in_dim}) and labels (B, "
                f"{self.n_labels}), got {tuple(x_query.shape)}, {tuple(x_key.shape)} and "
                f"{tuple(labels.shape)}"
            )
        h = self.features(x_query)
        q = F.normalize(self.projection(h), dim=1)
        self.momentum_update()
        k = self.key(x_key)
        stored = self.queue.contents()
        keys = torch.cat([k, stored["keys"]])
        key_labels = torch.cat([labels.to(k.dtype), stored["labels"]])
        loss, extra = self._contrastive(h, q, keys, key_labels, labels, stored)
        self.queue.push(keys=k, labels=labels, **extra)
        return loss

    def _contrastive(
        self,
        h: Tensor,
        q: Tensor,
        keys: Tensor,
        key_labels: Tensor,
        labels: Tensor,
        stored: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss given the contrast set, and the extra per-row fields to enqueue."""
        log_prob = contrastive_log_prob(q, keys, self.tau)
        return multi_label_supcon_loss(log_prob, labels, key_labels, self.positives), {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_dim}, {self.n_labels}, hidden={self.hidden}, "
            f"proj_dim={self.proj_dim}, positives={self.positives!r}, tau={self.tau}, "
            f"momentum={self.momentum}, queue_size={self.queue_size})"
        )
