"""SARB: shapes, repr, determinism, gradient flow, partial BCE, blending math, k-means."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from models.sarb import SARB, kmeans, partial_bce

IN_DIM, N_LABELS = 6, 3
SMALL = {"hidden": 8, "n_regions": 3, "n_prototypes": 2}

# Six examples, three classes: class 0 has one known positive (row 0), class 1 one (row 1),
# class 2 none; rows 2..5 hold the unknown labels.
LABELS = torch.tensor([[1, 0, -1], [0, 1, -1], [-1, -1, -1], [-1, 0, 0], [0, -1, -1], [0, 0, 0]])


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(seed: int = 0, **kwargs) -> SARB:
    torch.manual_seed(seed)
    return SARB(IN_DIM, N_LABELS, **{**SMALL, **kwargs})


def _x(seed: int = 0, n: int = 6) -> torch.Tensor:
    return torch.randn(n, IN_DIM, generator=torch.Generator().manual_seed(seed))


def test_output_shapes() -> None:
    model = _model()
    x = _x()
    assert model.tokens(x).shape == (6, 3, 8)
    attention = model.attention(model.tokens(x))
    assert attention.shape == (6, N_LABELS, 3)
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(6, N_LABELS))
    f = model.features(x)
    assert f.shape == (6, N_LABELS, 8)
    assert model.classify(f).shape == (6, N_LABELS)
    assert model(x).shape == (6, N_LABELS)
    assert model.prototypes.shape == (N_LABELS, 2, 8)
    assert model(x[:0]).shape == (0, N_LABELS)


def test_defaults_and_repr() -> None:
    model = SARB(103, 14)
    assert repr(model) == "SARB(103, 14, hidden=128, n_regions=8, n_prototypes=10)"
    assert model.dropout == 0.1
    assert model.alpha.item() == pytest.approx(0.5) and model.beta.item() == pytest.approx(0.5)
    assert repr(_model()) == "SARB(6, 3, hidden=8, n_regions=3, n_prototypes=2)"


def test_features_are_convex_combinations_of_the_tokens() -> None:
    model = _model().eval()
    x = _x()
    tokens = model.tokens(x)
    f = model.features(x)
    # With one region every class sees the same token.
    single = _model(n_regions=1).eval()
    fs = single.features(x)
    torch.testing.assert_close(fs[:, 0], fs[:, 2])
    torch.testing.assert_close(fs[:, 0], single.tokens(x)[:, 0])
    # With several, each f_c lies within the tokens' per-coordinate range.
    low, high = tokens.min(dim=1).values, tokens.max(dim=1).values
    assert bool((f >= low.unsqueeze(1) - 1e-5).all() and (f <= high.unsqueeze(1) + 1e-5).all())


def test_same_seed_gives_identical_logits() -> None:
    x = _x()
    a, b, c = _model(3).eval(), _model(3).eval(), _model(4).eval()
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert not torch.equal(a(x), c(x))


def test_dropout_only_in_training() -> None:
    model = _model(dropout=0.5)
    x = _x()
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x), model(x))


def _full_loss(model: SARB, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    f = model.features(x)
    loss = partial_bce(model.classify(f), labels.float(), labels >= 0)
    for mixed, target, valid in (model.instance_blend(f, labels), model.prototype_blend(f, labels)):
        loss = loss + partial_bce(model.classify(mixed), target, valid)
    return loss


def test_gradients_reach_every_parameter() -> None:
    model = _model()
    x = _x()
    with torch.no_grad():
        model.set_prototypes(model.features(x), LABELS)
    torch.manual_seed(0)
    _full_loss(model, x, LABELS).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert bool(parameter.grad.abs().sum() > 0), name


def test_alpha_and_beta_are_learnable_and_receive_gradient() -> None:
    model = _model(alpha_init=0.3, beta_init=0.8)
    assert model.alpha.item() == pytest.approx(0.3) and model.beta.item() == pytest.approx(0.8)
    names = {name for name, _ in model.named_parameters()}
    assert {"alpha_logit", "beta_logit"} <= names
    x = _x()
    with torch.no_grad():
        model.set_prototypes(model.features(x), LABELS)
    optimiser = torch.optim.SGD([model.alpha_logit, model.beta_logit], lr=1.0)
    f = model.features(x).detach()
    mixed, target, valid = model.instance_blend(f, LABELS)
    partial_bce(model.classify(mixed), target, valid).backward()
    assert model.alpha_logit.grad is not None and float(model.alpha_logit.grad) != 0
    assert model.beta_logit.grad is None  # ILRB alone does not touch beta
    mixed, target, valid = model.prototype_blend(f, LABELS)
    partial_bce(model.classify(mixed), target, valid).backward()
    assert model.beta_logit.grad is not None and float(model.beta_logit.grad) != 0
    before = (model.alpha.item(), model.beta.item())
    optimiser.step()
    assert (model.alpha.item(), model.beta.item()) != before
    assert 0 < model.alpha.item() < 1 and 0 < model.beta.item() < 1


def test_reset_parameters_restores_coefficients_and_forgets_prototypes() -> None:
    model = _model(0).eval()
    other = _model(9).eval()
    x = _x()
    with torch.no_grad():
        model.set_prototypes(model.features(x), LABELS)
        model.alpha_logit.fill_(2.0)
    assert int(model.prototype_counts.sum()) > 0
    torch.manual_seed(0)
    model.reset_parameters()
    torch.manual_seed(0)
    other.reset_parameters()
    assert model.alpha.item() == pytest.approx(0.5)
    assert int(model.prototype_counts.sum()) == 0 and not bool(model.prototypes.any())
    torch.testing.assert_close(model(x), other(x), rtol=0, atol=0)  # same seed, same weights


# --------------------------------------------------------------------------------- partial BCE
def test_partial_bce_ignores_unknown_labels() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 4.0, -2.0]], requires_grad=True)
    labels = torch.tensor([[1, -1, 0], [-1, 1, -1]])
    known = labels >= 0
    loss = partial_bce(logits, labels.float(), known)
    expected = F.binary_cross_entropy_with_logits(
        logits[known], labels[known].float(), reduction="mean"
    )
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad is not None
    assert bool((logits.grad[~known] == 0).all())
    assert bool((logits.grad[known] != 0).all())
    # Changing the logits of unknown labels changes nothing.
    moved = logits.detach().clone()
    moved[~known] = 100.0
    torch.testing.assert_close(partial_bce(moved, labels.float(), known), expected.detach())


def test_partial_bce_with_nothing_known_is_zero_and_attached() -> None:
    logits = torch.randn(2, 3, requires_grad=True)
    loss = partial_bce(logits, torch.full((2, 3), -1.0), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and not bool(logits.grad.any())


# ------------------------------------------------------------------------------------ blending
def test_instance_blend_math() -> None:
    model = _model(alpha_init=0.3)
    f = torch.randn(6, N_LABELS, 8)
    torch.manual_seed(0)
    blended, target, valid = model.instance_blend(f, LABELS)
    # Unknown labels of classes 0 and 1 are blended (each class has one known positive);
    # class 2 has none, so nothing of it is.
    expected_valid = (LABELS == -1) & torch.tensor([True, True, False])
    assert torch.equal(valid, expected_valid)
    torch.testing.assert_close(target, torch.full((6, N_LABELS), 0.7))
    for n, c in expected_valid.nonzero().tolist():
        partner = 0 if c == 0 else 1  # the only known positive of the class
        torch.testing.assert_close(blended[n, c], 0.3 * f[n, c] + 0.7 * f[partner, c])
    torch.testing.assert_close(blended[~valid], f[~valid], rtol=0, atol=0)


def test_instance_blend_draws_partners_among_the_known_positives() -> None:
    model = _model()
    labels = torch.tensor([[1], [1], [0], [-1]]).repeat(1, N_LABELS)
    f = torch.zeros(4, N_LABELS, 8)
    f[0], f[1] = 1.0, 3.0  # blends with row 0 give 0.5, with row 1 give 1.5
    seen = set()
    torch.manual_seed(0)
    for _ in range(40):
        blended, _, valid = model.instance_blend(f, labels)
        assert valid[3].all() and not valid[:3].any()
        seen.update(round(v, 4) for v in blended[3, :, 0].tolist())
    assert seen == {0.5, 1.5}  # both positives, never the known negative (0 -> 0.0)


def test_prototype_blend_math_and_classes_without_prototypes() -> None:
    model = _model(beta_init=0.25, n_prototypes=1)
    f = torch.randn(6, N_LABELS, 8)
    model.set_prototypes(f, LABELS)
    assert model.prototype_counts.tolist() == [1, 1, 0]  # class 2 has no known positive
    torch.testing.assert_close(model.prototypes[0, 0], f[0, 0])  # one positive: it is the centre
    torch.testing.assert_close(model.prototypes[1, 0], f[1, 1])
    blended, target, valid = model.prototype_blend(f, LABELS)
    assert torch.equal(valid, (LABELS == -1) & torch.tensor([True, True, False]))
    torch.testing.assert_close(target, torch.full((6, N_LABELS), 0.75))
    for n, c in valid.nonzero().tolist():
        torch.testing.assert_close(blended[n, c], 0.25 * f[n, c] + 0.75 * model.prototypes[c, 0])
    torch.testing.assert_close(blended[~valid], f[~valid], rtol=0, atol=0)


def test_prototypes_before_any_are_set_blend_nothing() -> None:
    model = _model()
    f = torch.randn(6, N_LABELS, 8)
    blended, _, valid = model.prototype_blend(f, LABELS)
    assert not valid.any()
    torch.testing.assert_close(blended, f, rtol=0, atol=0)


def test_set_prototypes_uses_kmeans_over_known_positives_only() -> None:
    model = _model(n_prototypes=2)
    f = torch.zeros(8, N_LABELS, 8)
    labels = torch.full((8, N_LABELS), -1)
    labels[:4, 0] = 1  # two tight clusters of known positives for class 0
    f[:2, 0], f[2:4, 0] = 5.0, -5.0
    f[4:, 0] = 100.0  # unknown rows must not pull the prototypes
    labels[0, 1] = 1
    model.set_prototypes(f, labels, generator=torch.Generator().manual_seed(0))
    assert model.prototype_counts.tolist() == [2, 1, 0]
    centres = sorted(model.prototypes[0, :, 0].tolist())
    assert centres == [-5.0, 5.0]


def test_blending_checks_shapes() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"representations of shape \(B, 3, 8\)"):
        model.instance_blend(torch.zeros(2, 3, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"labels of shape \(2, 3\)"):
        model.prototype_blend(torch.zeros(2, 3, 8), torch.zeros(3, 3))


# -------------------------------------------------------------------------------------- k-means
def test_kmeans_finds_separated_clusters_deterministically() -> None:
    g = torch.Generator().manual_seed(1)
    points = torch.cat([torch.randn(20, 2, generator=g) * 0.1 + m for m in (-4.0, 0.0, 4.0)])
    a = kmeans(points, 3, generator=torch.Generator().manual_seed(5))
    b = kmeans(points, 3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    means = sorted(a.mean(dim=1).tolist())
    assert means == pytest.approx([-4.0, 0.0, 4.0], abs=0.1)


def test_kmeans_returns_at_most_the_distinct_points() -> None:
    points = torch.tensor([[1.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    centres = kmeans(points, 5, generator=torch.Generator().manual_seed(0))
    assert centres.shape == (2, 2)
    assert sorted(map(tuple, centres.tolist())) == [(1.0, 1.0), (2.0, 0.0)]
    with pytest.raises(ValueError, match=r"points of shape \(N >= 1, H\)"):
        kmeans(torch.zeros(0, 2), 2)


# ------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": 0}, r"hidden must be an integer >= 1, got hidden=0"),
        ({"n_regions": 2.0}, r"n_regions must be an integer >= 1, got n_regions=2.0"),
        ({"n_prototypes": True}, r"n_prototypes must be an integer >= 1"),
        ({"dropout": 1.0}, r"dropout must satisfy 0 <= dropout < 1, got dropout=1.0"),
        ({"alpha_init": 0.0}, r"alpha_init must be a number in \(0, 1\), got alpha_init=0.0"),
        ({"beta_init": math.nan}, r"beta_init must be a number in \(0, 1\), got beta_init=nan"),
    ],
)
def test_argument_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SARB(IN_DIM, N_LABELS, **kwargs)


def test_input_shape_is_checked() -> None:
    with pytest.raises(ValueError, match=r"x of shape \(B, 6\), got \(2, 5\)"):
        _model()(torch.zeros(2, 5))
