"""Bag-level distances and neighbourhoods of the classic MIML methods: MIML-kNN and MIMLSVM.

Both methods of PAPERS.md's peer section work on bags only through a Hausdorff distance between
their instance sets:

* MIMLSVM (Zhou & Zhang, "Multi-instance multi-label learning with application to scene
  classification", NIPS 2006 / 2007) clusters the training bags by k-medoids under the (maximal)
  Hausdorff distance and re-describes every bag by its distances to the medoids;
* MIML-kNN (Zhang, "A k-nearest neighbor based multi-instance multi-label learning algorithm",
  ICTAI 2010) describes a bag by the labels of its references (nearest training bags) and
  citers (training bags that count it among their nearest), under the average Hausdorff
  distance.

Everything here is plain torch. Bags are *packed*: the instances of all bags stacked in one
``(N, d)`` matrix, bag after bag, with a ``(n,)`` vector of bag sizes, so bags of very different
sizes (Reuters: 2 to 26 instances) cost what they hold, not what the largest bag holds.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from models._checks import check_positive_int

HAUSDORFF_VARIANTS = ("average", "max")

# Elements of one block of the instance-distance matrix (float32: 4 MiB): small enough to stay
# in cache, large enough that the per-block overhead is negligible.
_BLOCK_ELEMENTS = 1 << 20


def pack_bags(
    bags: Sequence[np.ndarray | Tensor], *, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Stacks bags for :func:`hausdorff_distances`.

    Args:
        bags: ``n`` arrays of shape ``(n_i, d)`` with ``n_i >= 1``.
        dtype: floating type of the packed instances.

    Returns:
        ``x``: ``(N, d)`` instances, bag after bag (``N = sum n_i``); ``sizes``: ``(n,)`` int64.
    """
    if len(bags) == 0:
        raise ValueError("pack_bags needs at least one bag, got an empty sequence")
    arrays = [torch.as_tensor(np.asarray(b) if not isinstance(b, Tensor) else b) for b in bags]
    d = arrays[0].shape[-1] if arrays[0].dim() == 2 else -1
    for i, a in enumerate(arrays):
        if a.dim() != 2 or a.shape[0] < 1 or a.shape[1] != d:
            raise ValueError(
                f"bag {i} has shape {tuple(a.shape)}; every bag must be (n_instances >= 1, {d})"
            )
    sizes = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
    return torch.cat(arrays).to(dtype), sizes


def hausdorff_distances(
    x_a: Tensor,
    sizes_a: Tensor,
    x_b: Tensor,
    sizes_b: Tensor,
    *,
    how: str = "average",
    block_elements: int = _BLOCK_ELEMENTS,
) -> Tensor:
    r"""Hausdorff distances between every bag of ``A`` and every bag of ``B``.

    With the Euclidean instance distance :math:`d(a, b) = \lVert a - b \rVert_2`:

    * ``how="max"``, the (maximal) Hausdorff distance of MIMLSVM (Zhou & Zhang 2007, eq. 1;
      Edgar 1995):

      .. math::
          H(A, B) = \max\Big\{\max_{a \in A} \min_{b \in B} d(a, b),\;
                               \max_{b \in B} \min_{a \in A} d(a, b)\Big\}

    * ``how="average"``, the average Hausdorff distance of MIML-kNN (Zhang 2010, eq. 1):

      .. math::
          \mathrm{avgH}(A, B) = \frac{\sum_{a \in A} \min_{b \in B} d(a, b)
                                    + \sum_{b \in B} \min_{a \in A} d(a, b)}{|A| + |B|}

    The bags of each set are grouped by size, so that a block of squared instance distances
    between ``m_a`` bags of size ``s_a`` and ``m_b`` bags of size ``s_b`` is a dense
    ``(m_a, s_a, m_b, s_b)`` tensor whose per-bag minima are plain reductions; blocks hold about
    ``block_elements`` distances. The root is taken after the minima (it commutes with them).
    Squared distances come from :math:`\lVert a \rVert^2 + \lVert b \rVert^2 - 2 a^\top b`:
    in float32 a distance is off by about ``1e-3`` for standardised features (the root of the
    cancellation error; a bag is at about ``1e-3`` from itself), negligible beside typical bag
    distances; pass float64 instances for exact ones.

    Args:
        x_a: ``(N_a, d)`` packed instances of the ``n_a`` bags of ``A`` (see :func:`pack_bags`).
        sizes_a: ``(n_a,)`` bag sizes, each >= 1, summing to ``N_a``.
        x_b: ``(N_b, d)`` packed instances of ``B``.
        sizes_b: ``(n_b,)`` bag sizes.
        how: ``"average"`` or ``"max"``.
        block_elements: rough size of one block of the instance-distance matrix.

    Returns:
        ``(n_a, n_b)`` distances, in the dtype and on the device of ``x_a``.
    """
    if how not in HAUSDORFF_VARIANTS:
        raise ValueError(
            f"how must be one of {', '.join(map(repr, HAUSDORFF_VARIANTS))}, got how={how!r}"
        )
    for name, x, sizes in (("A", x_a, sizes_a), ("B", x_b, sizes_b)):
        if x.dim() != 2 or sizes.dim() != 1 or int(sizes.sum()) != x.shape[0]:
            raise ValueError(
                f"bags {name}: instances must be (N, d) and sizes (n,) summing to N, got "
                f"{tuple(x.shape)} and sizes summing to {int(sizes.sum())}"
            )
        if sizes.numel() and int(sizes.min()) < 1:
            raise ValueError(f"bags {name}: every bag needs at least one instance")
    if x_a.shape[1] != x_b.shape[1]:
        raise ValueError(f"feature dimensions differ: {x_a.shape[1]} and {x_b.shape[1]}")
    device, dtype = x_a.device, x_a.dtype
    x_b = x_b.to(device=device, dtype=dtype)
    sizes_a, sizes_b = sizes_a.to(device), sizes_b.to(device)
    n_a, n_b = sizes_a.numel(), sizes_b.numel()
    out = torch.empty((n_a, n_b), dtype=dtype, device=device)
    if n_a == 0 or n_b == 0:
        return out

    groups_b = _size_groups(x_b, sizes_b)
    for size_a, bags_a, xa in _size_groups(x_a, sizes_a):
        sq_a = xa.pow(2).sum(1)
        for size_b, bags_b, xb in groups_b:
            sq_b = xb.pow(2).sum(1)
            m_b = len(bags_b)
            # Whole bags of A per block, so that a block holds about block_elements distances.
            step = max(1, block_elements // (size_a * xb.shape[0]))
            for first in range(0, len(bags_a), step):
                rows = slice(first * size_a, min(len(bags_a), first + step) * size_a)
                a, sq = xa[rows], sq_a[rows]
                m_a = a.shape[0] // size_a
                # (m_a, size_a, m_b, size_b) squared instance distances.
                dist = (sq.unsqueeze(1) + sq_b - 2.0 * a @ xb.T).clamp_min_(0.0)
                dist = dist.view(m_a, size_a, m_b, size_b)
                a_to_b = dist.amin(dim=3)  # (m_a, size_a, m_b): each a to its nearest b
                b_to_a = dist.amin(dim=1)  # (m_a, m_b, size_b): each b to its nearest a
                if how == "max":
                    block = torch.maximum(a_to_b.amax(dim=1), b_to_a.amax(dim=2)).sqrt_()
                else:
                    total = a_to_b.sqrt_().sum(dim=1) + b_to_a.sqrt_().sum(dim=2)
                    block = total / (size_a + size_b)
                out[bags_a[first : first + m_a].unsqueeze(1), bags_b.unsqueeze(0)] = block
    return out


def _size_groups(x: Tensor, sizes: Tensor) -> list[tuple[int, Tensor, Tensor]]:
    """Bags grouped by size: ``(size, bag indices (m,), instances (m * size, d))`` per size."""
    starts = torch.cumsum(sizes, 0) - sizes
    groups = []
    for size in torch.unique(sizes).tolist():
        bags = (sizes == size).nonzero().squeeze(1)
        rows = (starts[bags].unsqueeze(1) + torch.arange(size, device=sizes.device)).reshape(-1)
        groups.append((int(size), bags, x[rows]))
    return groups


def _check_count(name: str, value: int, n: int) -> int:
    check_positive_int(name, value)
    return min(int(value), n)


def references(distances: Tensor, k: int, *, exclude_self: bool = False) -> Tensor:
    """The ``k`` references of each bag: its nearest training bags (Zhang 2010, section 3).

    Ties are broken by the lower training index (a stable sort), so the result is deterministic.

    Args:
        distances: ``(n, n_train)`` distances from the bags to the training bags.
        k: number of references; capped at the number of candidates.
        exclude_self: the bags are the training bags themselves (``n == n_train``, same order):
            a bag is not its own reference (leave-one-out).

    Returns:
        ``(n, k')`` int64 indices into the training bags, nearest first, ``k' = min(k,
        candidates)``.
    """
    d = _candidates(distances, exclude_self)
    k = _check_count("k", k, d.shape[1] - int(exclude_self))
    return torch.sort(d, dim=1, stable=True).indices[:, :k]


def citer_radii(train_distances: Tensor, c: int) -> Tensor:
    """Distance from each training bag to its ``c``-th nearest other training bag.

    Args:
        train_distances: ``(n_train, n_train)`` distances between the training bags.
        c: neighbourhood size of the citers.

    Returns:
        ``(n_train,)`` radii; ``inf`` when ``c >= n_train`` (fewer than ``c`` other training
        bags, so any bag is among a training bag's ``c`` nearest).
    """
    n = train_distances.shape[0]
    c = _check_count("c", c, n)
    if c >= n:  # at most c - 1 other training bags: every bag is among the c nearest
        return torch.full((n,), float("inf"), dtype=train_distances.dtype)
    d = _candidates(train_distances, True)
    return torch.sort(d, dim=1).values[:, c - 1]


def citers(distances: Tensor, radii: Tensor, *, exclude_self: bool = False) -> Tensor:
    r"""Which training bags cite each bag (Zhang 2010, section 3).

    Training bag :math:`Z` cites bag :math:`X` when :math:`X` is among the ``c`` nearest
    neighbours of :math:`Z` among the other training bags and :math:`X`; ties count in
    :math:`X`'s favour. That is, fewer than ``c`` other training bags are strictly closer to
    :math:`Z` than :math:`X`, i.e. :math:`d(Z, X) \le r_c(Z)` with :math:`r_c` from
    :func:`citer_radii`.

    Args:
        distances: ``(n, n_train)`` distances from the bags to the training bags.
        radii: ``(n_train,)`` from :func:`citer_radii`.
        exclude_self: the bags are the training bags themselves: a bag does not cite itself.

    Returns:
        ``(n, n_train)`` boolean mask, ``True`` where the training bag cites the bag.
    """
    mask = distances <= radii.unsqueeze(0)
    if exclude_self:
        mask.fill_diagonal_(False)
    return mask


def neighbour_label_counts(
    distances: Tensor, train_labels: Tensor, k: int, radii: Tensor, *, exclude_self: bool = False
) -> Tensor:
    r"""MIML-kNN's labelling counter vector (Zhang 2010, eq. 2).

    :math:`C_l(X) = \sum_{Z \in R_k(X) \cup C_c(X)} [\,l \in Y_Z\,]`: for each label, how many
    of the bag's references *or* citers (each bag counted once) carry it.

    Args:
        distances: ``(n, n_train)`` distances from the bags to the training bags.
        train_labels: ``(n_train, L)`` 0/1 labels of the training bags.
        k: number of references.
        radii: ``(n_train,)`` citer radii (:func:`citer_radii` with ``c``).
        exclude_self: the bags are the training bags (leave-one-out neighbourhoods).

    Returns:
        ``(n, L)`` counts, in ``train_labels``' dtype.
    """
    neighbours = citers(distances, radii, exclude_self=exclude_self)
    if distances.shape[1] - int(exclude_self) > 0:
        neighbours.scatter_(1, references(distances, k, exclude_self=exclude_self), True)
    return neighbours.to(train_labels.dtype) @ train_labels


def fit_counts_regression(counts: Tensor, targets: Tensor, l2: float) -> Tensor:
    r"""MIML-kNN's linear classifiers on the counter vectors (Zhang 2010, eq. 3-4).

    Label :math:`l` scores a bag by :math:`y_l(X) = \sum_{j=1}^{L} w_{lj} C_j(X) + b_l`, and
    the weights minimise the sum-of-squares error against targets :math:`\pm 1` over the
    training bags, in closed form (the paper solves the normal equations by SVD). Two small
    additions to the paper: a bias :math:`b_l` (unpenalised; it makes a label that never occurs
    in the training bags score :math:`-1` whatever the counts), and a ridge
    ``l2 * ||W||^2`` on the mean squared error that keeps the system well-posed when
    counts are collinear. Solved as one least-squares problem in float64 (``gelsd``: the
    minimum-norm solution when ``l2 = 0`` and the counts are rank-deficient).

    Args:
        counts: ``(n, L)`` counter vectors of the training bags (:func:`neighbour_label_counts`).
        targets: ``(n, n_labels)`` targets, usually ``+1`` / ``-1``.
        l2: ridge strength, >= 0.

    Returns:
        ``(L + 1, n_labels)`` float64 weights; the last row is the bias. Score new counts with
        :func:`score_counts`.
    """
    n, width = counts.shape
    design = torch.cat([counts.double(), counts.new_ones((n, 1), dtype=torch.float64)], 1)
    lhs, rhs = design / n**0.5, targets.double() / n**0.5
    if l2 > 0:
        ridge = torch.zeros((width, width + 1), dtype=torch.float64)
        ridge[:, :width] = torch.eye(width, dtype=torch.float64) * l2**0.5
        lhs = torch.cat([lhs, ridge])
        rhs = torch.cat([rhs, rhs.new_zeros((width, rhs.shape[1]))])
    return torch.linalg.lstsq(lhs, rhs, driver="gelsd").solution


def score_counts(counts: Tensor, weights: Tensor) -> Tensor:
    """``(n, n_labels)`` float64 scores :math:`y_l(X)` of counter vectors ``(n, L)``."""
    return counts.double() @ weights[:-1] + weights[-1]


def k_medoids(
    distances: Tensor, k: int, *, generator: torch.Generator, max_iter: int = 100
) -> Tensor:
    r"""k-medoids clustering of bags from their distance matrix (MIMLSVM's first step).

    Zhou & Zhang (2007, Fig. 2) cluster the training bags with k-medoids under the Hausdorff
    distance. The medoids start from a k-medoids++ seeding (the first uniformly at random, each
    next one drawn with probability proportional to its squared distance to the nearest chosen
    medoid), then alternate: assign every bag to its nearest medoid; make each cluster's
    medoid the member with the smallest sum of distances to the cluster's other members (ties:
    the current medoid, then the lowest index). It stops when the medoids no longer change or
    after ``max_iter`` rounds.

    Args:
        distances: ``(n, n)`` symmetric distances between the bags, zero diagonal.
        k: number of medoids, ``1 <= k <= n``.
        generator: seeds the initial medoids; the same seed gives the same medoids.
        max_iter: most assignment / update rounds.

    Returns:
        ``(k,)`` int64 indices of the medoid bags, sorted.
    """
    n = distances.shape[0]
    if distances.dim() != 2 or distances.shape[1] != n or n == 0:
        raise ValueError(
            f"distances must be a non-empty (n, n) matrix, got {tuple(distances.shape)}"
        )
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, n={n}], got k={k!r}")
    d = distances.double()
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    nearest = d[chosen[0]].clone()
    for _ in range(1, k):
        weights = nearest.pow(2)
        weights[chosen] = 0.0
        if float(weights.sum()) <= 0.0:  # duplicates only: take any bag not chosen yet
            weights = torch.ones(n, dtype=d.dtype)
            weights[chosen] = 0.0
        pick = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(pick)
        nearest = torch.minimum(nearest, d[pick])
    medoids = torch.tensor(chosen, dtype=torch.long)
    for _ in range(max_iter):
        assign = d[:, medoids].argmin(dim=1)  # (n,): cluster of each bag
        assign[medoids] = torch.arange(k)  # a medoid stays in its own cluster
        updated = medoids.clone()
        for j in range(k):
            members = (assign == j).nonzero().squeeze(1)
            cost = d[members][:, members].sum(dim=1)
            best = cost.min()
            current = (members == medoids[j]).nonzero().squeeze(1)
            if float(cost[current]) > float(best):
                updated[j] = members[int((cost == best).nonzero()[0])]
        if torch.equal(updated, medoids):
            break
        medoids = updated
    return torch.sort(medoids).values


def _candidates(distances: Tensor, exclude_self: bool) -> Tensor:
    if distances.dim() != 2:
        raise ValueError(f"distances must be (n, n_train), got {tuple(distances.shape)}")
    if not exclude_self:
        return distances
    if distances.shape[0] != distances.shape[1]:
        raise ValueError(
            "exclude_self needs the training bags against themselves, a square matrix; got "
            f"{tuple(distances.shape)}"
        )
    d = distances.clone()
    d.fill_diagonal_(float("inf"))
    return d
