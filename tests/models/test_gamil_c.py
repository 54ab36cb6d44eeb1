"""GAMILC: shapes, repr, determinism, gradient flow, ablations, argument checks, correlation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

from models import GAMILC
from tuner.data.graphs import build_bag_graphs

IN_DIM, N_LABELS = 6, 5
SMALL = {"hidden": 16, "heads": 2, "pool_heads": 3, "proj_dim": 8}


def _graphs(seed: int = 0, count: int = 7) -> list[Data]:
    rng = np.random.default_rng(seed)
    bags = [rng.normal(size=(int(rng.integers(1, 9)), IN_DIM)) for _ in range(count)]
    return build_bag_graphs(bags, 3)


def _batch(seed: int = 0, count: int = 7) -> Batch:
    return Batch.from_data_list(_graphs(seed, count))


def _model(seed: int = 0, **kwargs) -> GAMILC:
    torch.manual_seed(seed)
    return GAMILC(IN_DIM, N_LABELS, **{**SMALL, **kwargs})


def test_output_shapes() -> None:
    batch = _batch()
    model = _model()
    n = batch.num_nodes
    assert model(batch).shape == (7, N_LABELS)
    h = model.embed(batch)
    assert h.shape == (7, 16)
    assert model.project(h).shape == (7, 8)
    assert model.instance_logits(batch).shape == (n, N_LABELS)
    assert model.instance_embeddings(batch).shape == (n, 16)
    assert model(_graphs()[0]).shape == (1, N_LABELS)  # a plain Data is one bag


def test_defaults_and_repr() -> None:
    model = GAMILC(38, 19)
    assert repr(model) == (
        "GAMILC(38, 19, hidden=256, heads=4, layers=2, pooling='attention', correlation=True)"
    )
    assert len(model.convs) == 2 and model.proj_dim == 128 and model.alpha == 0.5
    small = GAMILC(3, 2, hidden=8, heads=8, layers=3, pooling="mean", correlation=False)
    assert repr(small) == (
        "GAMILC(3, 2, hidden=8, heads=8, layers=3, pooling='mean', correlation=False)"
    )


def test_same_seed_gives_identical_logits() -> None:
    batch = _batch()
    a, b = _model(seed=3).eval(), _model(seed=3).eval()
    torch.testing.assert_close(a(batch), b(batch), rtol=0, atol=0)
    c = _model(seed=4).eval()
    assert not torch.allclose(a(batch), c(batch))


def test_batched_logits_equal_per_bag_logits() -> None:
    graphs = _graphs()
    model = _model().eval()
    with torch.no_grad():
        together = model(Batch.from_data_list(graphs))
        alone = torch.cat([model(Batch.from_data_list([g])) for g in graphs])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_bag_logits_do_not_depend_on_instance_order(pooling: str) -> None:
    rng = np.random.default_rng(5)
    bag = rng.normal(size=(9, IN_DIM))
    perm = rng.permutation(9)
    model = _model(pooling=pooling).eval()
    with torch.no_grad():
        a = model(build_bag_graphs([bag], 3)[0])
        b = model(build_bag_graphs([bag[perm]], 3)[0])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("correlation", [True, False])
@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_gradient_reaches_every_parameter(pooling: str, correlation: bool) -> None:
    batch = _batch()
    model = _model(pooling=pooling, correlation=correlation)
    weights = torch.randn(7, N_LABELS, generator=torch.Generator().manual_seed(0))
    h = model.embed(batch)
    loss = (model.classify(h) * weights).sum() + model.project(h).pow(2).sum()
    loss.backward()
    names = [name for name, _ in model.named_parameters()]
    assert ("M" in names) is correlation
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert bool(param.grad.abs().sum() > 0), name


def test_instance_logits_apply_the_head_to_each_instance() -> None:
    batch = _batch()
    model = _model().eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model.instance_logits(batch), model.head(model.instance_embeddings(batch))
        )


@pytest.mark.parametrize(
    ("layers", "pooling", "correlation"),
    list(itertools.product([1, 2, 3, 4], ["attention", "mean"], [True, False])),
)
def test_every_ablation_builds_and_runs(layers: int, pooling: str, correlation: bool) -> None:
    model = _model(layers=layers, pooling=pooling, correlation=correlation)
    out = model(_batch())
    assert out.shape == (7, N_LABELS) and bool(torch.isfinite(out).all())
    assert len(model.convs) == layers


def test_reset_parameters() -> None:
    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.3)
    torch.manual_seed(1)
    model.reset_parameters()
    assert bool((model.M == 0).all())
    assert not bool((model.input.weight == 0.3).all())
    other = _model()
    torch.manual_seed(1)
    other.reset_parameters()
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_dim": 0}, r"in_dim must be an integer >= 1, got in_dim=0"),
        ({"n_labels": 2.5}, r"n_labels must be an integer >= 1, got n_labels=2.5"),
        ({"hidden": 0}, r"hidden must be an integer >= 1, got hidden=0"),
        ({"hidden": True}, r"hidden must be an integer >= 1, got hidden=True"),
        ({"heads": 0}, r"heads must be an integer >= 1, got heads=0"),
        ({"hidden": 30, "heads": 4}, r"hidden must be divisible by heads.*hidden=30 and heads=4"),
        ({"layers": 0}, r"layers must be an integer >= 1, got layers=0"),
        ({"dropout": 1.0}, r"dropout must satisfy 0 <= dropout < 1, got dropout=1.0"),
        ({"dropout": -0.1}, r"dropout must satisfy 0 <= dropout < 1, got dropout=-0.1"),
        ({"pooling": "max"}, r"pooling must be one of \('attention', 'mean'\), got pooling='max'"),
        ({"pool_heads": 0}, r"pool_heads must be an integer >= 1, got pool_heads=0"),
        ({"correlation": "yes"}, r"correlation must be True or False, got correlation='yes'"),
        ({"alpha": -0.5}, r"alpha must be a finite number >= 0, got alpha=-0.5"),
        ({"alpha": float("inf")}, r"alpha must be a finite number >= 0, got alpha=inf"),
        ({"max_row_mass": 0.0}, r"max_row_mass must be a finite number > 0, got max_row_mass=0"),
        ({"proj_dim": 0}, r"proj_dim must be an integer >= 1, got proj_dim=0"),
    ],
)
def test_argument_checks(kwargs: dict, message: str) -> None:
    args = {"in_dim": IN_DIM, "n_labels": N_LABELS, **SMALL, **kwargs}
    with pytest.raises(ValueError, match=message):
        GAMILC(**args)


def test_wrong_feature_dimension_is_reported() -> None:
    with pytest.raises(ValueError, match=r"data.x of shape \(N, 4\), got \(3, 6\)"):
        GAMILC(4, 2, **SMALL)(build_bag_graphs([np.ones((3, IN_DIM))], 2)[0])


def _set_m(model: GAMILC, scale: float, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.M.copy_(torch.randn(N_LABELS, N_LABELS, generator=gen) * scale)


def test_correlation_starts_at_the_identity() -> None:
    model = _model()
    torch.testing.assert_close(model.correlation_matrix(), torch.eye(N_LABELS))
    z = torch.randn(4, N_LABELS)
    torch.testing.assert_close(model.mix_labels(z), z)


@pytest.mark.parametrize("max_row_mass", [0.3, 1.0, 2.5])
def test_correlation_matrix_properties(max_row_mass: float) -> None:
    model = _model(max_row_mass=max_row_mass)
    _set_m(model, scale=3.0)
    m = model.M.detach()
    s = torch.tanh((m + m.t()) / 2)
    s.fill_diagonal_(0)
    c = model.correlation_matrix().detach()
    c_off = model.correlation_offdiag().detach()
    torch.testing.assert_close(torch.diagonal(c), torch.ones(N_LABELS))
    torch.testing.assert_close(c - torch.eye(N_LABELS), c_off)
    mass = c_off.abs().sum(dim=1)
    assert bool((mass <= max_row_mass + 1e-6).all())
    for i in range(N_LABELS):
        row_mass = float(s[i].abs().sum())
        if row_mass <= max_row_mass:  # untouched
            torch.testing.assert_close(c_off[i], s[i])
        else:  # scaled down to exactly the bound, same direction
            assert float(mass[i]) == pytest.approx(max_row_mass, rel=1e-5)
            torch.testing.assert_close(c_off[i], s[i] * max_row_mass / row_mass)


def test_correlation_is_symmetric_when_no_row_is_scaled() -> None:
    model = _model(max_row_mass=100.0)
    _set_m(model, scale=2.0)
    c_off = model.correlation_offdiag().detach()
    torch.testing.assert_close(c_off, c_off.t())
    assert bool((torch.diagonal(c_off) == 0).all())


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_mixing_equation(alpha: float) -> None:
    model = _model(alpha=alpha)
    _set_m(model, scale=1.0)
    z = torch.randn(4, N_LABELS, generator=torch.Generator().manual_seed(9))
    c = model.correlation_matrix()
    mixed = model.mix_labels(z)
    torch.testing.assert_close(mixed, (1 - alpha) * z + alpha * z @ c)
    torch.testing.assert_close(mixed, z + alpha * z @ model.correlation_offdiag())


def test_correlation_penalty() -> None:
    model = _model()
    assert model.correlation_penalty(1.0, 1.0, 1.0).item() == 0.0  # starts at C_off = 0
    _set_m(model, scale=1.0)
    c_off = model.correlation_offdiag().detach()
    expected = (
        0.1 * c_off.abs().mean() + 0.2 * (c_off**2).sum() + 0.3 * c_off.abs().sum(dim=1).mean()
    )
    penalty = model.correlation_penalty(0.1, 0.2, 0.3)
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)
    penalty.backward()
    assert bool(model.M.grad.abs().sum() > 0)
    off = _model(correlation=False)
    assert off.correlation_penalty(0.1, 0.2, 0.3).item() == 0.0
    assert off.correlation_offdiag() is None
    torch.testing.assert_close(off.correlation_matrix(), torch.eye(N_LABELS))
