"""focal_loss and info_nce against hand-computed values, BCE equivalence and argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import focal_loss, info_nce


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_focal_loss_hand_computed() -> None:
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    expected = []
    for z, y in zip(logits.flatten().tolist(), targets.flatten().tolist(), strict=True):
        p_t = _sigmoid(z) if y == 1 else 1 - _sigmoid(z)
        expected.append(-((1 - p_t) ** 2) * math.log(p_t))
    out = focal_loss(logits, targets, gamma=2.0, reduction="none")
    torch.testing.assert_close(out.flatten(), torch.tensor(expected))
    assert focal_loss(logits, targets).item() == pytest.approx(sum(expected) / 4, rel=1e-6)
    assert focal_loss(logits, targets, reduction="sum").item() == pytest.approx(sum(expected))
    # First element by hand: p = 0.5, so (0.5)^2 * ln 2.
    assert out[0, 0].item() == pytest.approx(0.25 * math.log(2.0))


def test_focal_loss_with_gamma_zero_is_bce() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=gen) * 4
    targets = (torch.rand(16, 7, generator=gen) > 0.5).float()
    torch.testing.assert_close(
        focal_loss(logits, targets, gamma=0.0),
        F.binary_cross_entropy_with_logits(logits, targets),
    )


def test_focal_loss_down_weights_easy_examples() -> None:
    targets = torch.tensor([[1.0, 1.0]])
    logits = torch.tensor([[4.0, -4.0]])  # one easy, one hard positive
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    focal = focal_loss(logits, targets, reduction="none")
    ratio = focal / bce
    assert ratio[0, 0] < 1e-3 < 0.9 < ratio[0, 1] <= 1.0


def test_focal_loss_is_stable_for_large_logits() -> None:
    logits = torch.tensor([[100.0, -100.0, 100.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    loss = focal_loss(logits, targets)
    loss.backward()
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(100.0 / 3, rel=1e-4)  # the one confident mistake
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gamma": -1.0}, r"gamma >= 0, got gamma=-1.0"),
        ({"gamma": float("nan")}, r"gamma >= 0"),
        ({"reduction": "max"}, r"reduction must be one of .*got reduction='max'"),
    ],
)
def test_focal_loss_argument_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        focal_loss(torch.zeros(2, 3), torch.zeros(2, 3), **kwargs)


def test_focal_loss_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(2, 4\)"):
        focal_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def _info_nce_reference(z1: list[list[float]], z2: list[list[float]], tau: float) -> float:
    def unit(v: list[float]) -> list[float]:
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    vectors = [unit(v) for v in z1 + z2]
    b = len(z1)
    total = 0.0
    for i, anchor in enumerate(vectors):
        positive = (i + b) % (2 * b)
        scores = {
            j: math.exp(sum(a * c for a, c in zip(anchor, other, strict=True)) / tau)
            for j, other in enumerate(vectors)
            if j != i
        }
        total += -math.log(scores[positive] / sum(scores.values()))
    return total / (2 * b)


def test_info_nce_hand_computed() -> None:
    z1 = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    z2 = [[2.0, 0.5], [0.1, 1.0], [-1.0, 1.0]]
    for tau in (0.1, 0.5, 1.0):
        got = info_nce(torch.tensor(z1), torch.tensor(z2), tau).item()
        assert got == pytest.approx(_info_nce_reference(z1, z2, tau), rel=1e-5)


def test_info_nce_two_bags_by_hand() -> None:
    # Orthogonal bags, identical views: each anchor sees its positive at cos 1 and two
    # negatives at cos 0, so the loss is -log(e^(1/tau) / (e^(1/tau) + 2)).
    z = torch.eye(2)
    tau = 0.5
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))
    assert info_nce(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_is_symmetric_and_scale_invariant() -> None:
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 5, generator=gen), torch.randn(8, 5, generator=gen)
    torch.testing.assert_close(info_nce(z1, z2, 0.2), info_nce(z2, z1, 0.2))
    torch.testing.assert_close(info_nce(z1, z2, 0.2), info_nce(3 * z1, 0.5 * z2, 0.2))


def test_info_nce_prefers_aligned_views() -> None:
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(16, 8, generator=gen)
    aligned = info_nce(z, z + 0.01 * torch.randn(16, 8, generator=gen), 0.1)
    shuffled = info_nce(z, z[torch.randperm(16, generator=gen)], 0.1)
    assert aligned < shuffled


def test_info_nce_gradients_are_finite() -> None:
    z1 = torch.randn(4, 3, requires_grad=True)
    z2 = torch.randn(4, 3, requires_grad=True)
    info_nce(z1, z2, 0.1).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


@pytest.mark.parametrize(
    ("z1", "z2", "tau", "message"),
    [
        (torch.zeros(1, 3), torch.zeros(1, 3), 0.5, r"at least 2 bags .* got B=1"),
        (torch.zeros(4, 3), torch.zeros(4, 2), 0.5, r"same shape, got \(4, 3\) and \(4, 2\)"),
        (torch.zeros(4), torch.zeros(4), 0.5, r"two \(B, D\) tensors"),
        (torch.ones(4, 3), torch.ones(4, 3), 0.0, r"tau > 0, got tau=0.0"),
        (torch.ones(4, 3), torch.ones(4, 3), -1.0, r"tau > 0, got tau=-1.0"),
    ],
)
def test_info_nce_argument_checks(z1, z2, tau, message) -> None:
    with pytest.raises(ValueError, match=message):
        info_nce(z1, z2, tau)
