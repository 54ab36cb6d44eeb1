"""MulSupConLD: both recoveries, the loss against the loss functions, gradients, checks."""

from __future__ import annotations

import copy

import pytest
import torch

from models.losses import (
    contrastive_log_prob,
    distribution_weighted_supcon_loss,
    label_distribution_recovery_loss,
    positive_mask,
    rbf_similarity,
)
from models.mulsupcon import random_mask
from models.mulsupcon_ld import MulSupConLD

IN_DIM, N_LABELS = 7, 4
SMALL = {"hidden": 16, "proj_dim": 8, "queue_size": 12}


def _model(seed: int = 0, **kwargs) -> MulSupConLD:
    torch.manual_seed(seed)
    return MulSupConLD(IN_DIM, N_LABELS, **{**SMALL, **kwargs})


def _batch(seed: int = 0, b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, IN_DIM, generator=gen)
    y = (torch.rand(b, N_LABELS, generator=gen) > 0.5).float()
    y[0, 0] = 1.0
    return x, y


@pytest.mark.parametrize("recovery", ["cld", "rld"])
def test_every_recovery_trains_and_reaches_every_parameter(recovery: str) -> None:
    model = _model(recovery=recovery, sigma=0.5)
    x, y = _batch()
    model.pretrain_loss(x, x, y)
    assert model.queue.contents()["distributions"].shape == (6, N_LABELS)
    loss = model.pretrain_loss(random_mask(x, 0.5), random_mask(x, 0.5), y)
    loss = loss + model(x).pow(2).sum()
    assert bool(torch.isfinite(loss))
    loss.backward()
    for name, param in model.named_parameters():
        if name.startswith("key_"):
            continue
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name


@pytest.mark.parametrize("recovery", ["cld", "rld"])
def test_pretrain_loss_is_the_sum_of_its_terms(recovery: str) -> None:
    model = _model(dropout=0.0, recovery=recovery, sigma=0.7, alpha=0.3, beta=0.05)
    x, y = _batch()
    x2, y2 = _batch(seed=1)
    model.pretrain_loss(x, x, y)
    reference = copy.deepcopy(model)
    loss = model.pretrain_loss(x2, x2, y2)
    reference.momentum_update()
    stored = reference.queue.contents()
    keys = torch.cat([reference.key(x2), stored["keys"]])
    labels = torch.cat([y2, stored["labels"]])
    d = reference.distributions(x2)
    dists = torch.cat([d, stored["distributions"]])
    q = reference.query(x2)
    log_prob = contrastive_log_prob(q, keys, reference.tau)
    similarity = rbf_similarity(q, keys, 0.7) if recovery == "rld" else log_prob.exp()
    expected = (
        distribution_weighted_supcon_loss(log_prob, y2, labels, dists)
        + label_distribution_recovery_loss(
            d, dists, labels, positive_mask(y2, labels, "any"), similarity, 0.3
        )
        + 0.05 * reference.distribution_head.weight.pow(2).sum()
    )
    torch.testing.assert_close(loss, expected)


def test_distributions_sum_to_one_and_the_head_initialises_the_classifier() -> None:
    model = _model()
    x, _ = _batch()
    d = model.distributions(x)
    torch.testing.assert_close(d.sum(dim=1), torch.ones(6))
    model.init_classifier_from_distribution_head()
    torch.testing.assert_close(model.classifier.weight, model.distribution_head.weight)
    assert model.positives == "any"


def test_repr_and_reset() -> None:
    assert repr(MulSupConLD(103, 14)) == (
        "MulSupConLD(103, 14, hidden=256, proj_dim=128, recovery='cld', alpha=0.1, beta=0.001, "
        "tau=0.1, momentum=0.999, queue_size=1024)"
    )
    model = _model()
    with torch.no_grad():
        model.distribution_head.weight.fill_(0.3)
    model.reset_parameters()
    assert not bool((model.distribution_head.weight == 0.3).all())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -1.0}, r"alpha must be a finite number >= 0, got alpha=-1.0"),
        ({"beta": float("nan")}, r"beta must be a finite number >= 0, got beta=nan"),
        ({"recovery": "kld"}, r"recovery must be one of \('cld', 'rld'\), got recovery='kld'"),
        ({"sigma": 0.0}, r"sigma must be a finite number > 0, got sigma=0.0"),
        ({"tau": -1.0}, r"tau must be a finite number > 0"),
    ],
)
def test_argument_checks(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MulSupConLD(IN_DIM, N_LABELS, **{**SMALL, **kwargs})
