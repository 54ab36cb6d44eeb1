"""The two learners: configuration checks, ablations, determinism, and real learning on Birds."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from tests.learning import Split, birds_split, single_thread
from tuner.errors import MimlTuneError
from tuner.learners import learner_names, resolve_learner
from tuner.learners.bag_mean_linear import BagMeanLinearLearner, BagMeanLinearParams
from tuner.learners.gamil_c import GamilCLearner, GamilCParams

# Small enough for a 2-core CI machine, large enough to show real learning.
SMALL = {
    "hidden": 64,
    "heads": 2,
    "pool_heads": 2,
    "proj_dim": 32,
    "batch_size": 32,
    "lr": 3e-3,
    "epochs": 12,
}
ABLATIONS = [
    {"contrastive": False},
    {"correlation": False},
    {"correlation_reg": False},
    {"loss": "bce"},
    {"pooling": "mean"},
]


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


def _learner(cls, split: Split, config: dict, seed: int = 0):
    return cls(config, n_features=split.n_features, n_labels=split.n_labels, seed=seed)


# ----------------------------------------------------------------------------------- registry
def test_registry() -> None:
    assert learner_names() == [
        "bag_mean_linear",
        "bag_mean_mlp",
        "gamil_c",
        "miml_knn",
        "mimlsvm",
        "mulsupcon",
        "mulsupcon_ld",
        "sarb",
    ]
    assert resolve_learner("GAMIL-C") is GamilCLearner
    assert resolve_learner("bag-mean-linear") is BagMeanLinearLearner


def test_defaults_come_from_the_declaration() -> None:
    # The values themselves are declared once, in GamilCParams and BagMeanLinearParams; the
    # declaration is what these tests read (tests/tuner/test_params.py checks its derivations).
    assert GamilCLearner.params is GamilCParams
    assert BagMeanLinearLearner.params is BagMeanLinearParams
    assert dict(GamilCLearner.defaults) == dataclasses.asdict(GamilCParams())
    assert dict(BagMeanLinearLearner.defaults) == dataclasses.asdict(BagMeanLinearParams())
    learner = GamilCLearner({}, n_features=3, n_labels=2)
    assert learner.config == dataclasses.asdict(GamilCParams())
    assert learner.epochs == GamilCParams.epochs


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"loss": "mse"}, r"loss must be one of 'focal', 'bce', got loss='mse'"),
        ({"pooling": "max"}, r"pooling must be one of 'attention', 'mean', got pooling='max'"),
        ({"batch_size": 0}, r"batch_size must be an integer >= 1, got batch_size=0"),
        ({"batch_size": 1}, r"batch_size must be >= 2 with contrastive=True.*batch_size=1"),
        ({"lr": 0.0}, r"lr must be a finite number > 0, got lr=0.0"),
        ({"lr": "fast"}, r"lr must be a finite number > 0, got lr='fast'"),
        ({"weight_decay": -1e-4}, r"weight_decay must be a finite number >= 0"),
        ({"epochs": 2.5}, r"epochs must be an integer >= 1, got epochs=2.5"),
        ({"layers": 0}, r"layers must be an integer >= 1, got layers=0"),
        ({"hidden": 30, "heads": 4}, r"hidden must be divisible by heads.*hidden=30 and heads=4"),
        ({"dropout": 1.0}, r"dropout must be a finite number in \[0, 1\), got dropout=1.0"),
        ({"feature_mask": -0.1}, r"feature_mask must be a finite number in \[0, 1\)"),
        ({"k": 0}, r"k must be an integer >= 1, got k=0"),
        ({"tau": 0}, r"tau must be a finite number > 0, got tau=0"),
        ({"alpha": -1.0}, r"alpha must be a finite number >= 0, got alpha=-1.0"),
        ({"beta": float("nan")}, r"beta must be a finite number >= 0, got beta=nan"),
        ({"gamma": -2.0}, r"gamma must be a finite number >= 0"),
        ({"lambda1": -1.0}, r"lambda1 must be a finite number >= 0"),
        ({"max_row_mass": 0.0}, r"max_row_mass must be a finite number > 0"),
        ({"proj_dim": 0}, r"proj_dim must be an integer >= 1"),
        ({"pool_heads": 0}, r"pool_heads must be an integer >= 1"),
        ({"contrastive": "yes"}, r"contrastive must be True or False, got contrastive='yes'"),
        ({"correlation": 1}, r"correlation must be True or False, got correlation=1"),
        ({"hiden": 64}, r"model 'gamil_c' has no hyper-parameter 'hiden'; allowed: alpha, "),
    ],
)
def test_gamil_c_config_checks(config: dict, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        GamilCLearner(config, n_features=3, n_labels=2)


def test_gamil_c_batch_size_one_is_fine_without_contrastive() -> None:
    GamilCLearner({"batch_size": 1, "contrastive": False}, n_features=3, n_labels=2)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"l2": -1.0}, r"l2 must be a finite number >= 0, got l2=-1.0"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1, got max_iter=0"),
        ({"epochs": True}, r"epochs must be an integer >= 1, got epochs=True"),
        ({"lr": 0.1}, r"model 'bag_mean_linear' has no hyper-parameter 'lr'; allowed: epochs, l2"),
    ],
)
def test_bag_mean_linear_config_checks(config: dict, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        BagMeanLinearLearner(config, n_features=3, n_labels=2)


# ------------------------------------------------------------------------------ real learning
def test_gamil_c_beats_the_label_frequency_predictor(birds: Split) -> None:
    learner = _learner(GamilCLearner, birds, SMALL)
    learner.setup(birds.train_bags, birds.train_labels)
    encoded = learner.encode(birds.test_bags)
    losses = [learner.train_epoch() for _ in range(learner.epochs)]
    scores = learner.predict(encoded)
    assert scores.shape == birds.test_labels.shape
    assert bool(((scores > 0) & (scores < 1)).all())
    assert losses[-1] < losses[0]
    baseline = birds.label_frequency_ap()
    ap = birds.average_precision(scores)
    # Seen: baseline 0.396, GAMIL-C 0.597 after 12 epochs of this small configuration.
    assert ap > baseline + 0.1, (ap, baseline)


def test_bag_mean_linear_beats_the_label_frequency_predictor(birds: Split) -> None:
    learner = _learner(BagMeanLinearLearner, birds, {})
    learner.setup(birds.train_bags, birds.train_labels)
    encoded = learner.encode(birds.test_bags)
    loss = learner.train_epoch()
    scores = learner.predict(encoded)
    # Later epochs do nothing more and report the final loss.
    assert learner.train_epoch() == loss
    np.testing.assert_array_equal(learner.predict(encoded), scores)
    baseline = birds.label_frequency_ap()
    ap = birds.average_precision(scores)
    # Seen: baseline 0.396, bag-mean logistic regression 0.648.
    assert ap > baseline + 0.1, (ap, baseline)


# --------------------------------------------------------------------------------- machinery
@pytest.mark.parametrize(
    "ablation", ABLATIONS, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items())
)
def test_every_ablation_trains(tiny: Split, ablation: dict) -> None:
    learner = _learner(GamilCLearner, tiny, {**SMALL, **ablation, "batch_size": 16})
    learner.setup(tiny.train_bags, tiny.train_labels)
    loss = learner.train_epoch()
    scores = learner.predict(learner.encode(tiny.test_bags))
    assert np.isfinite(loss) and loss > 0
    assert scores.shape == (20, tiny.n_labels)
    assert bool(((scores > 0) & (scores < 1)).all())
    assert (learner.model.M is not None) is learner.config["correlation"]


def test_same_seed_same_predictions_whatever_runs_in_between(tiny: Split) -> None:
    config = {**SMALL, "batch_size": 16}
    a = _learner(GamilCLearner, tiny, config, seed=7)
    b = _learner(GamilCLearner, tiny, config, seed=7)
    other = _learner(GamilCLearner, tiny, config, seed=8)
    for learner in (a, other, b):
        learner.setup(tiny.train_bags, tiny.train_labels)
    encoded = a.encode(tiny.test_bags)
    for _ in range(2):
        a.train_epoch()
        other.train_epoch()  # interleaved, as the trial does with folds
    torch.manual_seed(123)  # and the global RNG moved on
    for _ in range(2):
        b.train_epoch()
    np.testing.assert_array_equal(a.predict(encoded), b.predict(encoded))
    assert not np.array_equal(a.predict(encoded), other.predict(encoded))
    torch.manual_seed(123)
    expected = torch.get_rng_state()
    a.train_epoch()
    assert torch.equal(torch.get_rng_state(), expected)  # training leaves the global RNG alone


def test_last_batch_of_one_is_dropped_with_contrastive(tiny: Split) -> None:
    learner = _learner(GamilCLearner, tiny, {**SMALL, "batch_size": 2})
    learner.setup(tiny.train_bags[:5], tiny.train_labels[:5])  # batches of 2, 2 and 1
    assert np.isfinite(learner.train_epoch())


def test_contrastive_needs_two_training_bags(tiny: Split) -> None:
    learner = _learner(GamilCLearner, tiny, SMALL)
    with pytest.raises(MimlTuneError, match="at least 2 training bags, got 1"):
        learner.setup(tiny.train_bags[:1], tiny.train_labels[:1])


def test_non_finite_loss_raises_floating_point_error(tiny: Split) -> None:
    learner = _learner(GamilCLearner, tiny, SMALL)
    learner.setup(tiny.train_bags, tiny.train_labels)
    with torch.no_grad():
        learner.model.input.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"loss is nan in epoch 1"):
        learner.train_epoch()


@pytest.mark.parametrize("cls", [GamilCLearner, BagMeanLinearLearner])
def test_setup_checks_the_data(tiny: Split, cls) -> None:
    learner = cls({}, n_features=5, n_labels=tiny.n_labels)
    with pytest.raises(MimlTuneError, match=r"bag 0 has shape \(\d+, 38\); expected"):
        learner.setup(tiny.train_bags, tiny.train_labels)
    learner = cls({}, n_features=tiny.n_features, n_labels=3)
    with pytest.raises(MimlTuneError, match=r"labels must have shape \(40, 3\)"):
        learner.setup(tiny.train_bags, tiny.train_labels)


@pytest.mark.parametrize("cls", [GamilCLearner, BagMeanLinearLearner])
def test_predict_no_bags(tiny: Split, cls) -> None:
    learner = _learner(cls, tiny, SMALL if cls is GamilCLearner else {})
    learner.setup(tiny.train_bags, tiny.train_labels)
    learner.train_epoch()
    assert learner.predict(learner.encode([])).shape == (0, tiny.n_labels)


def test_encode_uses_the_training_statistics(tiny: Split) -> None:
    learner = _learner(GamilCLearner, tiny, SMALL)
    learner.setup(tiny.train_bags, tiny.train_labels)
    (graph,) = learner.encode(tiny.test_bags[:1])
    expected = (tiny.test_bags[0] - learner.scaler.mean_) / learner.scaler.std_
    np.testing.assert_allclose(graph.x.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_gamil_c_cosine_schedule_decays_to_one_percent(tiny: Split) -> None:
    learner = _learner(
        GamilCLearner,
        tiny,
        {"epochs": 3, "lr": 1e-2, "hidden": 16, "heads": 2, "pool_heads": 1, "proj_dim": 8},
    )
    learner.setup(tiny.train_bags, tiny.train_labels)
    rates = []
    for _ in range(3):
        learner.train_epoch()
        rates.append(learner.optimizer.param_groups[0]["lr"])
    assert rates[0] < 1e-2 and rates[-1] == pytest.approx(1e-4)
    with pytest.raises(MimlTuneError, match=r"schedule"):
        GamilCLearner({"schedule": "step"}, n_features=3, n_labels=2)


# -------------------------------------------------------------------------- instance predictions
def test_gamil_c_predict_instances_shapes_and_order(tiny: Split) -> None:
    learner = _learner(GamilCLearner, tiny, SMALL)
    learner.setup(tiny.train_bags, tiny.train_labels)
    learner.train_epoch()
    encoded = learner.encode(tiny.test_bags)
    probs = learner.predict_instances(encoded)
    assert isinstance(probs, list) and len(probs) == len(tiny.test_bags)
    for bag, p in zip(tiny.test_bags, probs, strict=True):
        assert p.shape == (bag.shape[0], tiny.n_labels) and p.dtype == np.float64
        assert bool(((p > 0) & (p < 1)).all())
    # Reversing the bags reverses the predictions.
    backwards = learner.predict_instances(encoded[::-1])
    for p, q in zip(probs, backwards[::-1], strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)
    assert learner.predict_instances(learner.encode([])) == []


def test_gamil_c_predict_instances_batched_equals_per_bag(
    tiny: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = _learner(GamilCLearner, tiny, SMALL)
    learner.setup(tiny.train_bags, tiny.train_labels)
    learner.train_epoch()  # leaves the model in training mode: prediction must switch it
    encoded = learner.encode(tiny.test_bags)
    alone = [learner.predict_instances([graph])[0] for graph in encoded]
    import tuner.learners.gamil_c as gamil_c_module

    monkeypatch.setattr(gamil_c_module, "_PREDICT_BATCH", 7)  # 20 bags: batches of 7, 7, 6
    batched = learner.predict_instances(encoded)
    assert len(batched) == len(alone)
    for p, q in zip(batched, alone, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)
    # Eval mode (no dropout): a second call gives the same numbers.
    again = learner.predict_instances(encoded)
    for p, q in zip(batched, again, strict=True):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize(
    "ablation",
    [{}, {"pooling": "mean"}, {"correlation": False}],
    ids=["attention", "mean", "nocorr"],
)
def test_gamil_c_instance_of_a_one_instance_bag_is_the_bag(tiny: Split, ablation: dict) -> None:
    # An instance is predicted as a bag of its own: for a bag holding one instance, the
    # instance prediction is the bag prediction (pooling, head and correlation mixing alike).
    learner = _learner(GamilCLearner, tiny, {**SMALL, **ablation})
    learner.setup(tiny.train_bags, tiny.train_labels)
    learner.train_epoch()
    encoded = learner.encode([bag[:1] for bag in tiny.test_bags])
    bag_probs = learner.predict(encoded)
    instance_probs = np.concatenate(learner.predict_instances(encoded))
    np.testing.assert_allclose(instance_probs, bag_probs, rtol=1e-5, atol=1e-6)


def test_gamil_c_instance_predictions_rank_bag_labels(birds: Split) -> None:
    # Birds has no instance labels; the check available is that the strongest instance of each
    # held-out bag ranks the bag's labels far better than the label frequencies do.
    learner = _learner(GamilCLearner, birds, SMALL)
    learner.setup(birds.train_bags, birds.train_labels)
    encoded = learner.encode(birds.test_bags)
    for _ in range(learner.epochs):
        learner.train_epoch()
    probs = learner.predict_instances(encoded)
    strongest = np.stack([p.max(axis=0) for p in probs])
    baseline = birds.label_frequency_ap()
    ap = birds.average_precision(strongest)
    # Seen: baseline 0.396, max over instances 0.553 (bag predictions 0.578).
    assert ap > baseline + 0.1, (ap, baseline)
    # Instances of one bag differ: the predictions are per instance, not the bag's copied.
    assert np.mean([p.std(axis=0).max() for p in probs if len(p) > 1]) > 0.01
