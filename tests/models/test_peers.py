"""The peers' math: Hausdorff distances, references and citers, k-medoids, the count regression,
and the BagMeanMLP module. Fast implementations are checked against slow, obvious ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, directed_hausdorff

from models.bag_mean_mlp import BagMeanMLP
from models.hausdorff import (
    citer_radii,
    citers,
    fit_counts_regression,
    hausdorff_distances,
    k_medoids,
    neighbour_label_counts,
    pack_bags,
    references,
    score_counts,
)


def _random_bags(rng: np.random.Generator, n: int, d: int, most: int) -> list[np.ndarray]:
    return [rng.normal(size=(int(rng.integers(1, most + 1)), d)) for _ in range(n)]


def _slow_hausdorff(a: np.ndarray, b: np.ndarray, how: str) -> float:
    if how == "max":
        return max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0])
    d = cdist(a, b)
    return float((d.min(axis=1).sum() + d.min(axis=0).sum()) / (len(a) + len(b)))


# ------------------------------------------------------------------------------ Hausdorff
@pytest.mark.parametrize("how", ["average", "max"])
@pytest.mark.parametrize("block_elements", [1, 50, 1 << 20])
def test_hausdorff_matches_the_slow_reference(how: str, block_elements: int) -> None:
    rng = np.random.default_rng(3)
    bags_a, bags_b = _random_bags(rng, 9, 4, 6), _random_bags(rng, 7, 4, 5)
    xa, sa = pack_bags(bags_a, dtype=torch.float64)
    xb, sb = pack_bags(bags_b, dtype=torch.float64)
    fast = hausdorff_distances(xa, sa, xb, sb, how=how, block_elements=block_elements)
    slow = np.array([[_slow_hausdorff(a, b, how) for b in bags_b] for a in bags_a])
    assert fast.shape == (9, 7) and fast.dtype == torch.float64
    np.testing.assert_allclose(fast.numpy(), slow, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("how", ["average", "max"])
def test_hausdorff_float32_symmetric_zero_diagonal(how: str) -> None:
    rng = np.random.default_rng(4)
    bags = _random_bags(rng, 12, 5, 7)
    x, sizes = pack_bags(bags)
    d = hausdorff_distances(x, sizes, x, sizes, how=how)
    assert d.dtype == torch.float32
    torch.testing.assert_close(d, d.T, rtol=1e-5, atol=1e-5)
    # float32 cancellation in |a|^2 + |b|^2 - 2ab, square-rooted: about 1e-3 for unit features.
    assert float(d.diagonal().abs().max()) < 5e-3
    slow = np.array([[_slow_hausdorff(a, b, how) for b in bags] for a in bags])
    np.testing.assert_allclose(d.numpy(), slow, rtol=1e-4, atol=5e-3)


def test_max_and_average_differ_as_defined() -> None:
    # A = {0}, B = {0, 10}: directed distances 0 (A to B) and 10 (B's far point to A).
    a, b = np.array([[0.0]]), np.array([[0.0], [10.0]])
    x, sizes = pack_bags([a, b], dtype=torch.float64)
    hmax = hausdorff_distances(x[:1], sizes[:1], x[1:], sizes[1:], how="max")
    havg = hausdorff_distances(x[:1], sizes[:1], x[1:], sizes[1:], how="average")
    assert float(hmax) == 10.0
    assert float(havg) == pytest.approx((0.0 + 0.0 + 10.0) / 3)


def test_hausdorff_argument_checks() -> None:
    x, sizes = pack_bags([np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"how must be one of 'average', 'max', got how='min'"):
        hausdorff_distances(x, sizes, x, sizes, how="min")
    with pytest.raises(ValueError, match=r"sizes \(n,\) summing to N"):
        hausdorff_distances(x, torch.tensor([3]), x, sizes)
    with pytest.raises(ValueError, match=r"feature dimensions differ: 3 and 2"):
        hausdorff_distances(x, sizes, torch.zeros(2, 2), sizes)
    with pytest.raises(ValueError, match=r"bag 1 has shape \(0, 3\)"):
        pack_bags([np.zeros((2, 3)), np.zeros((0, 3))])
    with pytest.raises(ValueError, match=r"at least one bag"):
        pack_bags([])


# --------------------------------------------------------------------- references / citers
def _tied_distances(rng: np.random.Generator, n: int, m: int) -> torch.Tensor:
    """Small integer distances, so that ties are frequent."""
    return torch.as_tensor(rng.integers(0, 6, size=(n, m)).astype(np.float64))


def _symmetric(rng: np.random.Generator, n: int) -> torch.Tensor:
    d = _tied_distances(rng, n, n)
    d = torch.minimum(d, d.T)
    d.fill_diagonal_(0.0)
    return d


def _brute_references(d: np.ndarray, k: int, exclude_self: bool) -> list[list[int]]:
    out = []
    for i, row in enumerate(d):
        pool = [j for j in range(d.shape[1]) if not (exclude_self and j == i)]
        out.append(sorted(pool, key=lambda j: (row[j], j))[:k])
    return out


def _brute_cites(train: np.ndarray, z: int, dist_zx: float, c: int, x: int | None) -> bool:
    """Does training bag z count bag x (at distance dist_zx, index x if a training bag) among its
    c nearest among the other training bags and x? Ties count in x's favour."""
    closer = [
        j for j in range(len(train)) if j not in (z, x) and train[z, j] < dist_zx
    ]  # strictly closer competitors
    return len(closer) < c


@pytest.mark.parametrize(("k", "c"), [(1, 1), (3, 2), (5, 7), (30, 30)])
def test_references_and_citers_match_brute_force(k: int, c: int) -> None:
    rng = np.random.default_rng(k * 10 + c)
    train = _symmetric(rng, 11)
    test = _tied_distances(rng, 6, 11)
    t, s = train.numpy(), test.numpy()

    got = references(train, k, exclude_self=True).tolist()
    assert got == _brute_references(t, k, True)
    assert references(test, k).tolist() == _brute_references(s, k, False)

    radii = citer_radii(train, c)
    cites_train = citers(train, radii, exclude_self=True).numpy()
    cites_test = citers(test, radii).numpy()
    for z in range(11):
        for x in range(11):
            expected = x != z and _brute_cites(t, z, t[z, x], c, x)
            assert cites_train[x, z] == expected, (x, z)
        for x in range(6):
            assert cites_test[x, z] == _brute_cites(t, z, s[x, z], c, None), (x, z)


def test_label_counts_are_over_the_union_of_references_and_citers() -> None:
    rng = np.random.default_rng(5)
    train, test = _symmetric(rng, 10), _tied_distances(rng, 4, 10)
    labels = torch.as_tensor(rng.integers(0, 2, size=(10, 3)).astype(np.float64))
    k, c = 3, 2
    radii = citer_radii(train, c)
    for d, exclude in ((train, True), (test, False)):
        counts = neighbour_label_counts(d, labels, k, radii, exclude_self=exclude)
        refs = references(d, k, exclude_self=exclude)
        cited = citers(d, radii, exclude_self=exclude)
        for i in range(d.shape[0]):
            union = set(refs[i].tolist()) | set(cited[i].nonzero().squeeze(1).tolist())
            expected = labels[sorted(union)].sum(0)
            torch.testing.assert_close(counts[i], expected)


def test_neighbourhoods_with_one_training_bag() -> None:
    train = torch.zeros((1, 1))
    radii = citer_radii(train, 5)
    assert torch.isinf(radii).all()  # its neighbourhood among the others holds only the new bag
    counts = neighbour_label_counts(torch.tensor([[2.0]]), torch.ones((1, 2)), 3, radii)
    torch.testing.assert_close(counts, torch.ones((1, 2)))
    counts = neighbour_label_counts(train, torch.ones((1, 2)), 3, radii, exclude_self=True)
    torch.testing.assert_close(counts, torch.zeros((1, 2)))


def test_neighbourhood_argument_checks() -> None:
    d = torch.zeros((3, 3))
    with pytest.raises(ValueError, match=r"k must be an integer >= 1, got k=0"):
        references(d, 0)
    with pytest.raises(ValueError, match=r"c must be an integer >= 1, got c=0"):
        citer_radii(d, 0)
    with pytest.raises(ValueError, match=r"exclude_self needs .* a square matrix"):
        references(torch.zeros((2, 3)), 1, exclude_self=True)


# ------------------------------------------------------------------------------- k-medoids
def _blobs(seed: int) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    points = np.concatenate([c + rng.normal(size=(15, 2)) for c in centres])
    return torch.as_tensor(cdist(points, points)), np.repeat(np.arange(3), 15)


def test_k_medoids_finds_separated_clusters_and_is_deterministic() -> None:
    d, blob = _blobs(0)
    medoids = k_medoids(d, 3, generator=torch.Generator().manual_seed(1))
    assert medoids.dtype == torch.long and medoids.shape == (3,)
    assert sorted(blob[medoids.numpy()].tolist()) == [0, 1, 2]  # one medoid per blob
    again = k_medoids(d, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(medoids, again)
    # Each medoid minimises the sum of distances to the members of its cluster.
    assign = d[:, medoids].argmin(1)
    for j, m in enumerate(medoids.tolist()):
        members = (assign == j).nonzero().squeeze(1)
        cost = d[members][:, members].sum(1)
        assert float(cost[members.tolist().index(m)]) == pytest.approx(float(cost.min()))


def test_k_medoids_are_distinct_training_bags_and_depend_on_the_seed() -> None:
    rng = np.random.default_rng(2)
    bags = _random_bags(rng, 40, 3, 4)
    x, sizes = pack_bags(bags, dtype=torch.float64)
    d = hausdorff_distances(x, sizes, x, sizes, how="max")
    runs = [k_medoids(d, 8, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    for medoids in runs:
        assert len(set(medoids.tolist())) == 8
        assert int(medoids.min()) >= 0 and int(medoids.max()) < 40
    assert len({tuple(m.tolist()) for m in runs}) > 1
    assert torch.equal(k_medoids(d, 40, generator=torch.Generator()), torch.arange(40))


def test_k_medoids_with_duplicate_bags() -> None:
    d = torch.zeros((5, 5))  # five identical bags
    medoids = k_medoids(d, 3, generator=torch.Generator().manual_seed(0))
    assert len(set(medoids.tolist())) == 3


def test_k_medoids_argument_checks() -> None:
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, n=3\], got k=4"):
        k_medoids(torch.zeros((3, 3)), 4, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"non-empty \(n, n\) matrix, got \(2, 3\)"):
        k_medoids(torch.zeros((2, 3)), 1, generator=torch.Generator())


# -------------------------------------------------------------------------- count regression
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_count_regression_solves_the_ridge_normal_equations(l2: float) -> None:
    rng = np.random.default_rng(6)
    counts = torch.as_tensor(rng.integers(0, 8, size=(30, 4)).astype(np.float64))
    targets = torch.as_tensor(rng.choice([-1.0, 1.0], size=(30, 4)))
    w = fit_counts_regression(counts, targets, l2)
    design = np.hstack([counts.numpy(), np.ones((30, 1))])
    penalty = np.diag([l2] * 4 + [0.0])  # the bias is not penalised
    expected = np.linalg.solve(design.T @ design / 30 + penalty, design.T @ targets.numpy() / 30)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(score_counts(counts, w).numpy(), design @ expected, atol=1e-8)


def test_count_regression_with_a_never_seen_label_and_collinear_counts() -> None:
    counts = torch.zeros((6, 2), dtype=torch.float64)
    counts[:, 0] = torch.arange(6.0)
    targets = torch.stack([torch.tensor([-1.0, -1, -1, 1, 1, 1]), -torch.ones(6)], 1)
    w = fit_counts_regression(counts, targets, 0.0)  # column 1 all zero: rank-deficient
    assert bool(torch.isfinite(w).all())
    torch.testing.assert_close(score_counts(counts, w)[:, 1], -torch.ones(6, dtype=torch.float64))


# ------------------------------------------------------------------------------ BagMeanMLP
def test_mlp_shape_repr_gradients_and_reset() -> None:
    torch.manual_seed(0)
    model = BagMeanMLP(7, 3, hidden=16, layers=2, dropout=0.1)
    assert repr(model) == "BagMeanMLP(7, 3, hidden=16, layers=2, dropout=0.1)"
    assert model(torch.randn(5, 7)).shape == (5, 3)
    model(torch.randn(8, 7)).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    before = model.head.weight.detach().clone()
    other = BagMeanMLP(7, 3, hidden=16, layers=2, dropout=0.1)
    for m in (model, other):
        torch.manual_seed(1)
        m.reset_parameters()
    assert not torch.equal(model.head.weight, before)
    for key, value in other.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_mlp_layers_and_eval_mode_is_deterministic() -> None:
    model = BagMeanMLP(4, 2, hidden=8, layers=3, dropout=0.5)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 8), (8, 8), (8, 8), (8, 2)]
    model.eval()
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0, 3), {}, r"in_dim must be an integer >= 1, got in_dim=0"),
        ((4, 0), {}, r"n_labels must be an integer >= 1, got n_labels=0"),
        ((4, 3), {"hidden": 0}, r"hidden must be an integer >= 1, got hidden=0"),
        ((4, 3), {"layers": 1.5}, r"layers must be an integer >= 1, got layers=1.5"),
        ((4, 3), {"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got dropout=1.0"),
    ],
)
def test_mlp_argument_checks(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BagMeanMLP(*args, **kwargs)


def test_mlp_wrong_input_shape() -> None:
    with pytest.raises(ValueError, match=r"pooled bags of shape \(B, 4\), got \(3, 5\)"):
        BagMeanMLP(4, 2)(torch.zeros(3, 5))
