"""k-nearest-neighbour graphs over the instances of each bag (GAMIL-C, section 1 of PAPERS.md).

PyG's ``knn_graph`` needs pyg-lib, which cannot be installed here, so the neighbours are found in
plain torch: the bags are padded into one ``(B, max_n, d)`` tensor and all within-bag distances
are computed at once, a chunk of bags at a time.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from tuner.errors import MimlTuneError

if TYPE_CHECKING:
    from torch_geometric.data import Data  # imported when graphs are built: seconds

# Upper bound on the elements of one chunk's padded (bags, max_n, d) feature tensor; the
# distance and cosine tensors of a chunk are smaller whenever max_n <= d, and at most
# max_n / d times larger otherwise. 2**22 float64 values are 32 MiB.
_CHUNK_ELEMENTS = 1 << 22


def build_bag_graphs(bags: Sequence[np.ndarray | Tensor], k: int) -> list[Data]:
    """Builds one directed k-nearest-neighbour graph per bag.

    Every instance receives edges from its ``k`` nearest other instances of the same bag
    (Euclidean distance in the given feature space, which should already be standardised);
    ``k`` is clipped to ``n_i - 1`` for a bag of ``n_i`` instances, and a one-instance bag gets a
    single self-loop. Edges point from the neighbour to the centre instance (PyG's
    ``flow="source_to_target"``: ``edge_index[0]`` is the neighbour, ``edge_index[1]`` the
    instance whose neighbourhood it is), so message passing aggregates each instance's
    neighbours. Distance ties are broken by the lower instance index, so the graph is
    deterministic. The edge attribute is the cosine similarity of the two endpoints (GAMIL-C
    eq. 6), ``0`` where either endpoint is the zero vector.

    Args:
        bags: ``B`` arrays or tensors of shape ``(n_i, d)``, ``n_i >= 1``, the same ``d`` for all.
        k: number of neighbours per instance, ``k >= 1``.

    Returns:
        ``B`` :class:`~torch_geometric.data.Data` objects (on the CPU) with ``x``: ``(n_i, d)``
        float32, ``edge_index``: ``(2, E_i)`` int64 and ``edge_attr``: ``(E_i, 1)`` float32, where
        ``E_i = n_i * min(k, n_i - 1)`` (``1`` for a one-instance bag). The edges of one bag are
        ordered by centre instance, then by neighbour rank (nearest first).

    Raises:
        MimlTuneError: ``k`` is not an integer ``>= 1``, or a bag is empty, not 2-D, has a
            different feature dimension from the first bag, or holds non-finite values.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise MimlTuneError(f"the number of neighbours k must be an integer >= 1, got k={k!r}")
    k = int(k)
    features = _as_float_tensors(bags)
    if not features:
        return []
    d = features[0].shape[1]

    graphs: list[Data | None] = [None] * len(features)
    # Bags of similar size share a chunk, so padding wastes little work on uneven data.
    order = sorted(range(len(features)), key=lambda i: features[i].shape[0])
    start = 0
    while start < len(order):
        # Grow the chunk while its padded tensors stay under the budget (sizes only increase).
        stop = start + 1
        while stop < len(order):
            n = features[order[stop]].shape[0]
            if (stop - start + 1) * n * max(n, d) > _CHUNK_ELEMENTS:
                break
            stop += 1
        chunk = order[start:stop]
        for index, graph in zip(chunk, _knn_chunk([features[i] for i in chunk], k), strict=True):
            graphs[index] = graph
        start = stop
    return [graph for graph in graphs if graph is not None]


def _as_float_tensors(bags: Sequence[np.ndarray | Tensor]) -> list[Tensor]:
    """Validated float32 CPU copies of the bags (the graphs must not share the caller's memory)."""
    arrays: list[np.ndarray] = []
    for i, bag in enumerate(bags):
        a = bag.detach().cpu().numpy() if isinstance(bag, Tensor) else np.asarray(bag)
        if a.ndim != 2:
            raise MimlTuneError(
                f"bag {i} must be a 2-D (instances, features) array, got shape {a.shape}"
            )
        if a.shape[0] == 0:
            raise MimlTuneError(f"bag {i} has no instances; every bag needs at least one")
        if arrays and a.shape[1] != arrays[0].shape[1]:
            raise MimlTuneError(
                f"bag {i} has {a.shape[1]} features but bag 0 has {arrays[0].shape[1]}; "
                "every bag must have the same feature dimension"
            )
        arrays.append(a)
    if not arrays:
        return []
    flat = np.concatenate(arrays, axis=0).astype(np.float32)
    if not np.isfinite(flat).all():
        bad = next(i for i, a in enumerate(arrays) if not np.isfinite(a).all())
        raise MimlTuneError(f"bag {bad} holds NaN or infinite feature values")
    sizes = [a.shape[0] for a in arrays]
    return [x.clone() for x in torch.from_numpy(flat).split(sizes)]


def _knn_chunk(features: list[Tensor], k: int) -> list[Data]:
    """kNN graphs of a chunk of bags, padded to the largest bag and computed together."""
    b, d = len(features), features[0].shape[1]
    sizes = torch.tensor([x.shape[0] for x in features])
    max_n = int(sizes.max())
    bag_of = torch.repeat_interleave(torch.arange(b), sizes)
    slot_of = torch.arange(int(sizes.sum())) - torch.repeat_interleave(
        sizes.cumsum(0) - sizes, sizes
    )
    padded = torch.zeros(b, max_n, d, dtype=torch.float64)
    padded[bag_of, slot_of] = torch.cat(features).to(torch.float64)

    # Direct differences rather than the |x|^2 + |y|^2 - 2xy expansion: duplicate instances get
    # exactly zero distance, so ties are real ties and resolve by index.
    dist = torch.cdist(padded, padded, compute_mode="donot_use_mm_for_euclid_dist")
    slot = torch.arange(max_n)
    pad_column = slot.view(1, 1, -1) >= sizes.view(-1, 1, 1)
    dist = dist.masked_fill(pad_column | torch.eye(max_n, dtype=torch.bool), float("inf"))
    # A stable sort keeps equal distances in index order: deterministic ties. In a one-instance
    # bag every distance is inf, so its first "neighbour" is the instance itself: the self-loop.
    width = max(min(k, max_n - 1), 1)
    neighbours = torch.sort(dist, dim=-1, stable=True).indices[..., :width]

    unit = padded / padded.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cosine = torch.bmm(unit, unit.transpose(1, 2))  # (b, max_n, max_n); 0 for a zero vector
    attr = torch.gather(cosine, 2, neighbours)

    per_centre = torch.where(sizes > 1, (sizes - 1).clamp(max=k), torch.ones_like(sizes))
    valid = (slot.view(1, -1, 1) < sizes.view(-1, 1, 1)) & (
        torch.arange(width).view(1, 1, -1) < per_centre.view(-1, 1, 1)
    )
    centre = slot.view(1, -1, 1).expand(b, max_n, width)
    # Boolean indexing walks (bag, centre, rank) in order: per bag, by centre, nearest first.
    counts = (sizes * per_centre).tolist()
    sources = neighbours[valid].split(counts)
    from torch_geometric.data import Data  # seconds on the first call

    targets = centre[valid].split(counts)
    attrs = attr[valid].to(torch.float32).unsqueeze(1).split(counts)
    return [
        Data(x=x, edge_index=torch.stack([source, target]), edge_attr=edge_attr.clone())
        for x, source, target, edge_attr in zip(features, sources, targets, attrs, strict=True)
    ]
