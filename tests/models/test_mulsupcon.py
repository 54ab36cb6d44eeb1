"""MulSupCon: queue, momentum update, masking, shapes, repr, determinism, gradients, checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from models.losses import contrastive_log_prob, multi_label_supcon_loss
from models.mulsupcon import LabelledQueue, MulSupCon, random_mask

IN_DIM, N_LABELS = 7, 4
SMALL = {"hidden": 16, "proj_dim": 8, "queue_size": 12}


def _model(seed: int = 0, **kwargs) -> MulSupCon:
    torch.manual_seed(seed)
    return MulSupCon(IN_DIM, N_LABELS, **{**SMALL, **kwargs})


def _batch(seed: int = 0, b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, IN_DIM, generator=gen)
    y = (torch.rand(b, N_LABELS, generator=gen) > 0.5).float()
    y[0, 0] = 1.0
    return x, y


def test_queue_is_first_in_first_out() -> None:
    queue = LabelledQueue(5, {"keys": 2, "labels": 1})
    assert len(queue) == 0 and queue.contents()["keys"].shape == (0, 2)
    rows = torch.arange(16, dtype=torch.float32).reshape(8, 2)
    queue.push(keys=rows[:3], labels=torch.arange(3.0).unsqueeze(1))
    assert len(queue) == 3
    torch.testing.assert_close(queue.contents()["keys"], rows[:3])
    queue.push(keys=rows[3:6], labels=torch.arange(3.0, 6.0).unsqueeze(1))  # wraps around
    assert len(queue) == 5
    torch.testing.assert_close(queue.contents()["keys"], rows[1:6])  # oldest (row 0) dropped
    torch.testing.assert_close(queue.contents()["labels"].squeeze(1), torch.arange(1.0, 6.0))
    queue.push(keys=rows[6:8], labels=torch.zeros(2, 1))
    torch.testing.assert_close(queue.contents()["keys"], rows[3:8])
    queue.reset_parameters()
    assert len(queue) == 0
    with pytest.raises(ValueError, match="exactly the fields"):
        queue.push(keys=rows[:1])
    with pytest.raises(ValueError, match="at most size=5"):
        queue.push(keys=rows[:6], labels=torch.zeros(6, 1))
    assert "size=5" in repr(queue)


def test_momentum_update_math() -> None:
    model = _model(momentum=0.9)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)  # the query encoder moved away from the key encoder
    before = [p.clone() for p in model.key_backbone.parameters()]
    query = [p.clone() for p in model.backbone.parameters()]
    model.momentum_update()
    for key, old, q in zip(model.key_backbone.parameters(), before, query, strict=True):
        torch.testing.assert_close(key, 0.9 * old + 0.1 * q)
    assert not any(p.requires_grad for p in model.key_backbone.parameters())


def test_keys_start_as_a_copy_of_the_query_encoder() -> None:
    model = _model(dropout=0.0).eval()
    x, _ = _batch()
    torch.testing.assert_close(model.key(x), model.query(x))


def test_pretrain_loss_matches_the_loss_function_and_fills_the_queue() -> None:
    model = _model(dropout=0.0, momentum=0.5)
    x, y = _batch()
    x2, y2 = _batch(seed=1)
    model.pretrain_loss(x, x, y)  # first batch: the queue now holds its 6 keys
    assert len(model.queue) == 6
    reference = copy.deepcopy(model)
    loss = model.pretrain_loss(x2, x2 + 0.1, y2)
    reference.momentum_update()
    keys = torch.cat([reference.key(x2 + 0.1), reference.queue.contents()["keys"]])
    labels = torch.cat([y2, reference.queue.contents()["labels"]])
    expected = multi_label_supcon_loss(
        contrastive_log_prob(reference.query(x2), keys, reference.tau), y2, labels
    )
    torch.testing.assert_close(loss, expected)
    assert len(model.queue) == 12


@pytest.mark.parametrize(
    ("positives", "head_batchnorm"),
    [("all", False), ("any", False), ("mulsupcon", False), ("mulsupcon", True)],
)
def test_every_positive_set_trains_and_reaches_every_parameter(
    positives: str, head_batchnorm: bool
) -> None:
    model = _model(positives=positives, head_batchnorm=head_batchnorm)
    x, y = _batch()
    model.pretrain_loss(x, x, y)
    loss = model.pretrain_loss(random_mask(x, 0.5), random_mask(x, 0.5), y)
    loss = loss + model(x).pow(2).sum()
    assert bool(torch.isfinite(loss))
    loss.backward()
    for name, param in model.named_parameters():
        if name.startswith("key_"):
            assert param.grad is None, name
            continue
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name


def test_output_shapes_repr_and_defaults() -> None:
    model = _model()
    x, _ = _batch()
    assert model(x).shape == (6, N_LABELS)
    assert model.features(x).shape == (6, 16)
    q = model.query(x)
    assert q.shape == (6, 8)
    torch.testing.assert_close(q.norm(dim=1), torch.ones(6))
    assert repr(MulSupCon(103, 14)) == (
        "MulSupCon(103, 14, hidden=256, proj_dim=128, positives='mulsupcon', tau=0.1, "
        "momentum=0.999, queue_size=1024)"
    )
    assert len([m for m in model.backbone if isinstance(m, torch.nn.Linear)]) == 3


def test_same_seed_same_outputs_and_reset_parameters() -> None:
    x, _ = _batch()
    a, b = _model(seed=3).eval(), _model(seed=3).eval()
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert not torch.allclose(a(x), _model(seed=4).eval()(x))
    a.pretrain_loss(x, x, torch.ones(6, N_LABELS))
    with torch.no_grad():
        for p in a.parameters():
            p.fill_(0.3)
    torch.manual_seed(3)
    a.reset_parameters()
    assert len(a.queue) == 0
    for p, q in zip(a.key_backbone.parameters(), a.backbone.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not bool((a.classifier.weight == 0.3).all())


def test_head_batchnorm_spreads_the_initial_projections() -> None:
    """Without batch-norm every ReLU feature vector shares a large common component, so the
    initial projections point nearly the same way (mean cosine ~0.95 on standardised inputs);
    batch-norm in the head removes most of it (~0.3; the last layer's ReLU inputs are still
    positive). The key encoder starts with the same statistics."""
    x = torch.randn(256, 30, generator=torch.Generator().manual_seed(0))

    def mean_cosine(model: MulSupCon) -> float:
        model.train()
        z = model.query(x).detach()
        cos = z @ z.t()
        return float((cos.sum() - cos.diagonal().sum()) / (len(z) * (len(z) - 1)))

    torch.manual_seed(0)
    plain = MulSupCon(30, N_LABELS, dropout=0.0)
    torch.manual_seed(0)
    normed = MulSupCon(30, N_LABELS, dropout=0.0, head_batchnorm=True)
    assert mean_cosine(plain) > 0.9
    assert mean_cosine(normed) < 0.5
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in normed.key_projection)
    normed.projection[1].running_mean.fill_(0.3)
    normed.reset_parameters()
    torch.testing.assert_close(
        normed.key_projection[1].running_mean, normed.projection[1].running_mean
    )
    assert float(normed.projection[1].running_mean.abs().sum()) == 0


def test_random_mask() -> None:
    torch.manual_seed(0)
    x = torch.ones(200, 50)
    masked = random_mask(x, 0.5)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert 0.45 < float((masked == 0).float().mean()) < 0.55
    assert random_mask(x, 0.0) is x
    with pytest.raises(ValueError, match="0 <= ratio < 1"):
        random_mask(x, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_dim": 0}, r"in_dim must be an integer >= 1, got in_dim=0"),
        ({"hidden": True}, r"hidden must be an integer >= 1, got hidden=True"),
        ({"proj_dim": 0}, r"proj_dim must be an integer >= 1"),
        ({"queue_size": 0}, r"queue_size must be an integer >= 1"),
        ({"dropout": 1.0}, r"dropout must satisfy 0 <= dropout < 1"),
        ({"tau": 0.0}, r"tau must be a finite number > 0, got tau=0.0"),
        ({"momentum": 1.0}, r"momentum must satisfy 0 <= momentum < 1, got momentum=1.0"),
        ({"positives": "some"}, r"positives must be one of .*got positives='some'"),
        ({"head_batchnorm": 1}, r"head_batchnorm must be True or False, got head_batchnorm=1"),
    ],
)
def test_argument_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MulSupCon(**{"in_dim": IN_DIM, "n_labels": N_LABELS, **SMALL, **kwargs})


def test_wrong_shapes_are_reported() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"x of shape \(B, 7\), got \(2, 3\)"):
        model(torch.ones(2, 3))
    with pytest.raises(ValueError, match="pretrain_loss needs two views"):
        model.pretrain_loss(torch.ones(2, IN_DIM), torch.ones(2, IN_DIM), torch.ones(3, 4))


def test_overfitting_a_real_batch_drives_the_loss_towards_its_floor() -> None:
    """Regression for "the loss stays at log K": on 64 pooled Birds bags seen unmasked, the
    MulSupCon loss must fall far below log K, towards its analytic floor (the loss when every
    anchor's contrast distribution equals its positive weights; it is > 0 with shared labels)."""
    from tuner.data import load_dataset
    from tuner.data.preprocess import pool_bags

    torch.set_num_threads(1)
    data = load_dataset("birds")
    pooled = pool_bags(data.bags[:64], "mean")
    pooled = (pooled - pooled.mean(axis=0)) / (pooled.std(axis=0) + 1e-8)
    x = torch.as_tensor(pooled, dtype=torch.float32)
    y = torch.as_tensor(data.labels[:64], dtype=torch.float32)
    # floor of eq. 4-5 with contrast set = batch keys + a queue holding the same rows
    keys = torch.cat([y, y])
    weights = (y / keys.sum(dim=0).clamp_min(1)) @ keys.t()
    target = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
    safe = torch.where(target > 0, target, torch.ones_like(target))
    floor = float(-(weights * safe.log()).sum() / y.sum())
    log_k = math.log(128)
    torch.manual_seed(0)
    model = MulSupCon(38, 19, hidden=64, proj_dim=32, dropout=0.0, momentum=0.9, queue_size=64)
    params = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" not in n]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    for _ in range(200):
        loss = model.pretrain_loss(x, x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = float(loss.detach())
    # Seen: log K 4.85, floor 3.39, final 3.63.
    assert floor < log_k - 1.0
    assert final < log_k - 1.0 and final < floor + 0.4, (final, floor, log_k)
