"""focal_loss and info_nce against hand-computed values, BCE equivalence and argument checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import (
    contrastive_log_prob,
    distribution_weighted_supcon_loss,
    focal_loss,
    info_nce,
    label_distribution_recovery_loss,
    multi_label_supcon_loss,
    positive_mask,
    rbf_similarity,
)


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


# ------------------------------------------------------------ MulSupCon / MulSupCon_LD losses


def _contrastive_batch(seed: int = 0, b: int = 5, k: int = 9, n_labels: int = 4):
    gen = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(b, 6, generator=gen), dim=1)
    keys = F.normalize(torch.randn(k, 6, generator=gen), dim=1)
    ya = (torch.rand(b, n_labels, generator=gen) > 0.5).float()
    ya[0] = 0  # an anchor without labels is skipped
    ya[1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    yk = (torch.rand(k, n_labels, generator=gen) > 0.5).float()
    yk[:b] = ya  # the batch's own keys come first, as in the model
    return q, keys, ya, yk


def _slow_supcon(log_prob, ya, yk, positives: str) -> float:
    """Eq. 1 (ALL / ANY) and eq. 4-5 (MulSupCon) by explicit loops."""
    b, k = log_prob.shape
    total, count = 0.0, 0
    for i in range(b):
        labels_i = {j for j in range(ya.shape[1]) if ya[i, j] > 0}
        if positives == "mulsupcon":
            for j in labels_i:
                members = [a for a in range(k) if yk[a, j] > 0]
                if members:
                    total += -sum(float(log_prob[i, a]) for a in members) / len(members)
                    count += 1
            continue
        members = []
        for a in range(k):
            labels_a = {j for j in range(ya.shape[1]) if yk[a, j] > 0}
            same = labels_a == labels_i if positives == "all" else bool(labels_a & labels_i)
            if labels_i and same:
                members.append(a)
        if members:
            total += -sum(float(log_prob[i, a]) for a in members) / len(members)
            count += 1
    return total / count


@pytest.mark.parametrize("positives", ["all", "any", "mulsupcon"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_label_supcon_loss_matches_a_slow_loop(positives: str, seed: int) -> None:
    q, keys, ya, yk = _contrastive_batch(seed)
    log_prob = contrastive_log_prob(q, keys, 0.1)
    fast = multi_label_supcon_loss(log_prob, ya, yk, positives)
    assert fast.item() == pytest.approx(_slow_supcon(log_prob, ya, yk, positives), rel=1e-5)


def test_contrastive_log_prob_is_a_log_softmax_of_cosines() -> None:
    q, keys, _, _ = _contrastive_batch()
    log_prob = contrastive_log_prob(q, keys, 0.5)
    torch.testing.assert_close(log_prob.exp().sum(dim=1), torch.ones(5))
    s = float(q[2] @ keys[3]) / 0.5
    norm = math.log(sum(math.exp(float(q[2] @ keys[a]) / 0.5) for a in range(9)))
    assert log_prob[2, 3].item() == pytest.approx(s - norm, rel=1e-5)


def test_mulsupcon_single_label_reduces_to_supcon() -> None:
    q, keys, _, _ = _contrastive_batch()
    gen = torch.Generator().manual_seed(3)
    ya = F.one_hot(torch.randint(0, 3, (5,), generator=gen), 3).float()
    yk = torch.cat([ya, F.one_hot(torch.randint(0, 3, (4,), generator=gen), 3).float()])
    log_prob = contrastive_log_prob(q, keys, 0.1)
    for rule in ("all", "any"):
        torch.testing.assert_close(
            multi_label_supcon_loss(log_prob, ya, yk, "mulsupcon"),
            multi_label_supcon_loss(log_prob, ya, yk, rule),
        )


def test_positive_sets() -> None:
    ya = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    yk = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    assert positive_mask(ya, yk, "all").tolist() == [
        [True, False, False, False],
        [False, False, False, False],  # no label: no positive, not even the empty key
    ]
    assert positive_mask(ya, yk, "any").tolist() == [
        [True, True, False, False],
        [False, False, False, False],
    ]


def test_supcon_without_positives_is_a_zero_with_a_graph() -> None:
    log_prob = torch.randn(2, 3, requires_grad=True).log_softmax(dim=1)
    empty = torch.zeros(2, 4)
    for positives in ("all", "any", "mulsupcon"):
        loss = multi_label_supcon_loss(log_prob, empty, torch.ones(3, 4), positives)
        assert loss.item() == 0.0 and loss.requires_grad


def test_distribution_weighted_loss_by_hand() -> None:
    log_prob = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    ya = torch.tensor([[1.0, 1.0, 0.0]])
    yk = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    d = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    # key 0 shares labels 0 and 1: weight 0.6 + 0.3; key 1 shares label 1: 0.5; key 2 none.
    expected = -(0.9 * math.log(0.5) + 0.5 * math.log(0.3))
    loss = distribution_weighted_supcon_loss(log_prob, ya, yk, d)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_label_distribution_recovery_loss_by_hand() -> None:
    da = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    dk = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    yk = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    positives = torch.tensor([[True, True], [False, False]])
    similarity = torch.tensor([[0.2, 0.4], [0.9, 0.9]])
    # anchor 0: G = 0.2 * 0 + 0.4 * (0.25 + 0.25); H = (0.25 + 0.25) + 0; anchor 1 skipped.
    loss = label_distribution_recovery_loss(da, dk, yk, positives, similarity, alpha=0.5)
    assert loss.item() == pytest.approx(0.4 * 0.5 + 0.5 * 0.5, rel=1e-6)


def test_rbf_similarity() -> None:
    q = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = rbf_similarity(q, keys, sigma=1.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, math.exp(-1.0)]]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: contrastive_log_prob(torch.ones(2, 3), torch.ones(4, 2), 0.1), r"\(B, D\)"),
        (lambda: contrastive_log_prob(torch.ones(2, 3), torch.ones(4, 3), 0.0), "tau > 0"),
        (lambda: positive_mask(torch.ones(2, 3), torch.ones(4, 3), "some"), "positives must"),
        (
            lambda: multi_label_supcon_loss(torch.ones(2, 4), torch.ones(2, 3), torch.ones(5, 3)),
            "log_prob",
        ),
        (lambda: rbf_similarity(torch.ones(1, 2), torch.ones(1, 2), 0.0), "sigma > 0"),
    ],
)
def test_contrastive_argument_checks(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
