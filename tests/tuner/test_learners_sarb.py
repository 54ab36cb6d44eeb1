"""The SARB learner: configuration checks, partial labels, blending schedule, determinism, and
real learning from partially labelled Birds (and Mulan yeast when the shared data holds it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from tests.learning import Split, birds_split, single_thread
from tuner.errors import MimlTuneError
from tuner.learners import resolve_learner
from tuner.learners.sarb import SARBLearner, SARBParams

# Small enough for a 2-core CI machine, large enough to show real learning.
SMALL = {"hidden": 32, "n_regions": 4, "batch_size": 16, "epochs": 12, "warmup_epochs": 3}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    yield from single_thread()


@pytest.fixture(scope="module")
def birds(shared_data) -> Split:
    return birds_split()


@pytest.fixture(scope="module")
def tiny(birds: Split) -> Split:
    """40 training and 20 test bags of Birds, for tests that only need the machinery to run."""
    return birds.head(40, 20)


def _learner(split: Split, config: dict, seed: int = 0) -> SARBLearner:
    return SARBLearner(config, n_features=split.n_features, n_labels=split.n_labels, seed=seed)


def _trained(split: Split, config: dict, labels: np.ndarray, seed: int = 0) -> SARBLearner:
    learner = _learner(split, config, seed)
    learner.setup(split.train_bags, labels)
    for _ in range(learner.epochs):
        learner.train_epoch()
    return learner


# ----------------------------------------------------------------------------------- registry
def test_registry_and_defaults() -> None:
    assert resolve_learner("SARB") is SARBLearner
    assert SARBLearner.partial_labels is True and SARBLearner.vector_data is True
    # The values are declared once, in SARBParams.
    assert SARBLearner.params is SARBParams
    assert dict(SARBLearner.defaults) == dataclasses.asdict(SARBParams())
    assert SARBLearner({}, n_features=3, n_labels=2).epochs == SARBParams.epochs


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"lr": 0.0}, r"lr must be a finite number > 0, got lr=0.0"),
        ({"weight_decay": -1.0}, r"weight_decay must be a finite number >= 0"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got batch_size=0"),
        ({"epochs": 2.5}, r"epochs must be an integer >= 1, got epochs=2.5"),
        ({"lr_decay_every": 0}, r"lr_decay_every must be an integer >= 1"),
        ({"lr_decay": 0.0}, r"lr_decay must be a finite number in \(0, 1\], got lr_decay=0.0"),
        ({"lr_decay": 1.5}, r"lr_decay must be a finite number in \(0, 1\]"),
        ({"warmup_epochs": -1}, r"warmup_epochs must be an integer >= 0, got warmup_epochs=-1"),
        ({"hidden": 0}, r"hidden must be an integer >= 1, got hidden=0"),
        ({"n_regions": "4"}, r"n_regions must be an integer >= 1, got n_regions='4'"),
        ({"dropout": 1.0}, r"dropout must be a finite number in \[0, 1\), got dropout=1.0"),
        ({"ilrb": "yes"}, r"ilrb must be True or False, got ilrb='yes'"),
        ({"plrb": 1}, r"plrb must be True or False, got plrb=1"),
        ({"learn_coefficients": None}, r"learn_coefficients must be True or False"),
        ({"alpha_init": 1.0}, r"alpha_init must be a finite number in \(0, 1\), got alpha_init"),
        ({"beta_init": 0.0}, r"beta_init must be a finite number in \(0, 1\), got beta_init=0.0"),
        ({"n_prototypes": 0}, r"n_prototypes must be an integer >= 1, got n_prototypes=0"),
        ({"prototype_every": 0}, r"prototype_every must be an integer >= 1"),
        ({"ilrb_weight": -0.5}, r"ilrb_weight must be a finite number >= 0"),
        ({"plrb_weight": float("inf")}, r"plrb_weight must be a finite number >= 0"),
        ({"bag_pooling": "sum"}, r"bag_pooling must be one of 'mean', 'max', 'mean_max'"),
        ({"alpha": 0.5}, r"model 'sarb' has no hyper-parameter 'alpha'; allowed: alpha_init, "),
    ],
)
def test_config_checks(config: dict, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        SARBLearner(config, n_features=3, n_labels=2)


def test_setup_checks_the_data(tiny: Split) -> None:
    learner = SARBLearner(SMALL, n_features=5, n_labels=tiny.n_labels)
    with pytest.raises(MimlTuneError, match=r"bag 0 has shape \(\d+, 38\); expected"):
        learner.setup(tiny.train_bags, tiny.train_labels)
    learner = _learner(tiny, SMALL)
    with pytest.raises(MimlTuneError, match=r"labels must have shape \(40, 19\)"):
        learner.setup(tiny.train_bags, tiny.train_labels[:, :3])
    bad = tiny.train_labels.astype(np.int8)
    bad[0, 0] = 2
    with pytest.raises(MimlTuneError, match=r"must be 1 \(positive\), 0 \(negative\) or -1.*2.0"):
        learner.setup(tiny.train_bags, bad)


# ------------------------------------------------------------------------------- preprocessing
def test_encode_pools_and_uses_the_training_statistics(tiny: Split) -> None:
    learner = _learner(tiny, {**SMALL, "bag_pooling": "mean_max"})
    learner.setup(tiny.train_bags, tiny.partial(0.5))
    assert learner.model.in_dim == 2 * tiny.n_features
    train = np.stack([np.concatenate([b.mean(0), b.max(0)]) for b in tiny.train_bags])
    mean, std = train.mean(0), train.std(0)
    std[std == 0] = 1.0
    bag = tiny.test_bags[0]
    expected = (np.concatenate([bag.mean(0), bag.max(0)]) - mean) / std
    np.testing.assert_allclose(learner.encode([bag])[0].numpy(), expected, rtol=1e-4, atol=1e-4)
    learner.train_epoch()
    assert learner.predict(learner.encode([])).shape == (0, tiny.n_labels)


# -------------------------------------------------------------------------- blending schedule
def test_warmup_then_prototypes_on_schedule(tiny: Split) -> None:
    config = {**SMALL, "epochs": 8, "warmup_epochs": 2, "prototype_every": 3}
    learner = _learner(tiny, config)
    learner.setup(tiny.train_bags, tiny.partial(0.5))
    alphas, betas, blending = [], [], []
    for _ in range(8):
        learner.train_epoch()
        blending.append(learner.blending())
        alphas.append(learner.model.alpha.item())
        betas.append(learner.model.beta.item())
    assert blending == [False, False, True, True, True, True, True, True]
    assert learner.prototype_epochs == [3, 6]
    # During the warm-up alpha and beta get no gradient and stay at their initial value.
    assert alphas[:2] == [0.5, 0.5] and betas[:2] == [0.5, 0.5]
    assert alphas[-1] != 0.5 and betas[-1] != 0.5
    assert int(learner.model.prototype_counts.sum()) > 0


def test_prototypes_follow_the_training_of_the_model(tiny: Split) -> None:
    config = {**SMALL, "epochs": 4, "warmup_epochs": 0, "prototype_every": 2}
    learner = _learner(tiny, config)
    learner.setup(tiny.train_bags, tiny.partial(0.5))
    learner.train_epoch()
    first = learner.model.prototypes.clone()
    learner.train_epoch()
    torch.testing.assert_close(learner.model.prototypes, first, rtol=0, atol=0)  # kept
    learner.train_epoch()
    assert learner.prototype_epochs == [1, 3]
    assert not torch.equal(learner.model.prototypes, first)  # recomputed on the newer model


@pytest.mark.parametrize(
    ("ilrb", "plrb"), [(True, False), (False, True), (False, False)], ids=["ilrb", "plrb", "none"]
)
def test_ablations(tiny: Split, ilrb: bool, plrb: bool) -> None:
    config = {**SMALL, "epochs": 3, "warmup_epochs": 1, "ilrb": ilrb, "plrb": plrb}
    learner = _learner(tiny, config)
    learner.setup(tiny.train_bags, tiny.partial(0.5))
    losses = [learner.train_epoch() for _ in range(3)]
    assert all(np.isfinite(losses))
    assert (learner.model.alpha.item() != 0.5) is ilrb
    assert (learner.model.beta.item() != 0.5) is plrb
    assert (learner.prototype_epochs == [2]) is plrb


def test_fixed_coefficients(tiny: Split) -> None:
    config = {**SMALL, "epochs": 3, "warmup_epochs": 1, "learn_coefficients": False}
    learner = _learner(tiny, {**config, "alpha_init": 0.3, "beta_init": 0.6})
    learner.setup(tiny.train_bags, tiny.partial(0.5))
    losses = [learner.train_epoch() for _ in range(3)]
    assert all(np.isfinite(losses)) and learner.prototype_epochs == [2]
    assert learner.model.alpha.item() == pytest.approx(0.3)
    assert learner.model.beta.item() == pytest.approx(0.6)


def test_every_label_known_trains_without_blending(tiny: Split) -> None:
    learner = _learner(tiny, {**SMALL, "epochs": 3, "warmup_epochs": 0})
    learner.setup(tiny.train_bags, tiny.train_labels)  # plain 0/1, as the protocol gives at p=1
    losses = [learner.train_epoch() for _ in range(3)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not learner.blending() and learner.prototype_epochs == []
    assert learner.model.alpha.item() == 0.5 and learner.model.beta.item() == 0.5


def test_class_without_known_positive_gets_no_prototype(tiny: Split) -> None:
    labels = tiny.partial(0.5)
    labels[:, 0] = np.where(labels[:, 0] == 1, -1, labels[:, 0])  # no known positive of label 0
    labels[:, 1] = 0  # label 1 known negative everywhere
    learner = _learner(tiny, {**SMALL, "epochs": 2, "warmup_epochs": 0})
    learner.setup(tiny.train_bags, labels)
    assert all(np.isfinite([learner.train_epoch() for _ in range(2)]))
    counts = learner.model.prototype_counts.tolist()
    assert counts[0] == 0 and counts[1] == 0
    positives = (labels == 1).sum(axis=0)
    assert counts[2:] == [min(10, int(n)) for n in positives[2:]]


# --------------------------------------------------------------------------------- machinery
def test_same_seed_same_predictions_whatever_runs_in_between(tiny: Split) -> None:
    config = {**SMALL, "warmup_epochs": 1}
    labels = tiny.partial(0.5)
    a, b, other = _learner(tiny, config, 7), _learner(tiny, config, 7), _learner(tiny, config, 8)
    for learner in (a, other, b):
        learner.setup(tiny.train_bags, labels)
    encoded = a.encode(tiny.test_bags)
    for _ in range(3):
        a.train_epoch()
        other.train_epoch()  # interleaved, as the trial does with folds
    torch.manual_seed(123)  # and the global RNG moved on
    for _ in range(3):
        b.train_epoch()
    np.testing.assert_array_equal(a.predict(encoded), b.predict(encoded))
    torch.testing.assert_close(a.model.prototypes, b.model.prototypes, rtol=0, atol=0)
    assert not np.array_equal(a.predict(encoded), other.predict(encoded))
    torch.manual_seed(123)
    expected = torch.get_rng_state()
    a.train_epoch()
    assert torch.equal(torch.get_rng_state(), expected)  # training leaves the global RNG alone


def test_step_schedule(tiny: Split) -> None:
    learner = _learner(tiny, {**SMALL, "lr": 1e-2, "lr_decay_every": 2, "lr_decay": 0.5})
    learner.setup(tiny.train_bags, tiny.train_labels)
    rates = []
    for _ in range(4):
        learner.train_epoch()
        rates.append(learner.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1e-2, 5e-3, 5e-3, 2.5e-3])


def test_non_finite_loss_raises_floating_point_error(tiny: Split) -> None:
    learner = _learner(tiny, SMALL)
    learner.setup(tiny.train_bags, tiny.partial(0.5))
    with torch.no_grad():
        learner.model.input.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"loss is nan in epoch 1"):
        learner.train_epoch()


def test_runs_in_the_cv_protocol_with_hidden_labels(shared_data) -> None:
    from tuner.data import load_dataset
    from tuner.trial import CVProtocol, run_cv

    data = load_dataset("birds")
    config = {**SMALL, "epochs": 3, "warmup_epochs": 1}
    result = run_cv("sarb", config, data, CVProtocol(folds=2, repeats=1, known_labels=0.5))
    assert result.epochs == 3 and len(result.history) == 3
    assert len(result.per_fold["average_precision"]) == 2
    assert 0 < result.summary["average_precision"] <= 1
    assert np.isfinite(result.summary["train_loss"])


# ------------------------------------------------------------------------------ real learning
def test_beats_the_label_frequency_predictor_on_birds_with_half_the_labels(birds: Split) -> None:
    labels = birds.partial(0.5)
    assert (labels == -1).mean() == pytest.approx(0.5, abs=0.02)
    learner = _learner(birds, {"lr": 3e-3})  # otherwise the defaults (epochs, warm-up)
    learner.setup(birds.train_bags, labels)
    encoded = learner.encode(birds.test_bags)
    losses = [learner.train_epoch() for _ in range(learner.epochs)]
    scores = learner.predict(encoded)
    assert scores.shape == birds.test_labels.shape
    assert bool(((scores > 0) & (scores < 1)).all())
    warmup = learner.config["warmup_epochs"]
    assert 1 < warmup < learner.epochs
    # the warm-up loss falls (blending adds terms afterwards)
    assert losses[warmup - 1] < losses[0]
    baseline = birds.label_frequency_ap()
    ap = birds.average_precision(scores)
    # Seen: baseline 0.396 (from the full labels), SARB 0.618 from half of them.
    assert ap > baseline + 0.1, (ap, baseline)


def test_beats_the_label_frequency_predictor_on_yeast_with_half_the_labels(shared_data) -> None:
    try:
        from tuner.data.mulan import read_mulan_arff
    except ImportError:
        pytest.skip("tuner.data.mulan.read_mulan_arff is not available yet")
    path = shared_data / "mulan" / "yeast-train.arff"
    if not path.is_file():
        pytest.skip(f"Mulan yeast not found at {path}")
    data = read_mulan_arff(path)
    assert data.test_mask is not None
    train, test = np.flatnonzero(~data.test_mask), np.flatnonzero(data.test_mask)
    split = Split(
        [data.bags[i] for i in train],
        data.labels[train],
        [data.bags[i] for i in test],
        data.labels[test],
    )
    learner = _learner(split, {"lr": 3e-3, "batch_size": 64, "epochs": 8, "warmup_epochs": 3})
    learner.setup(split.train_bags, split.partial(0.5))
    for _ in range(learner.epochs):
        learner.train_epoch()
    baseline = split.label_frequency_ap()
    ap = split.average_precision(learner.predict(learner.encode(split.test_bags)))
    # Seen: baseline 0.705, SARB 0.745 (yeast's frequent labels make the baseline strong).
    assert ap > baseline + 0.02, (ap, baseline)
