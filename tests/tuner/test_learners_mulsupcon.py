"""MulSupCon and MulSupCon_LD learners: checks, the probe, the two stages, determinism, and
real learning on Birds (pooled) and Mulan yeast."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from tests.learning import Split, birds_split, single_thread, split
from tuner.errors import MimlTuneError
from tuner.learners import resolve_learner
from tuner.learners.mulsupcon import (
    THRESHOLD_GRID,
    MulSupConLearner,
    MulSupConParams,
    MulSupConTrainingParams,
    choose_thresholds,
)
from tuner.learners.mulsupcon_ld import MulSupConLDLearner, MulSupConLDParams

# Small enough for a 2-core CI machine, large enough to show real learning.
SMALL = {
    "hidden": 64,
    "proj_dim": 32,
    "batch_size": 32,
    "queue_size": 128,
    "pretrain_epochs": 6,
    "epochs": 12,
    "probe_every": 3,
}
LEARNERS = [MulSupConLearner, MulSupConLDLearner]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    yield from single_thread()


@pytest.fixture(scope="module")
def birds() -> Split:
    return birds_split()


@pytest.fixture(scope="module")
def tiny(birds: Split) -> Split:
    return birds.head(40, 20)


def _learner(cls, split: Split, config: dict, seed: int = 0):
    return cls(config, n_features=split.n_features, n_labels=split.n_labels, seed=seed)


def _trained(cls, split: Split, config: dict, seed: int = 0):
    learner = _learner(cls, split, config, seed)
    learner.setup(split.train_bags, split.train_labels)
    losses = [learner.train_epoch() for _ in range(learner.epochs)]
    return learner, losses


# ------------------------------------------------------------------------------- configuration
def test_registry_and_defaults() -> None:
    assert resolve_learner("mulsupcon") is MulSupConLearner
    assert resolve_learner("MulSupCon-LD") is MulSupConLDLearner
    # The values are declared once: the shared ones in MulSupConTrainingParams, then positives
    # (MulSupCon only) and the label-distribution terms (MulSupCon_LD only).
    shared = dataclasses.asdict(MulSupConTrainingParams())
    assert dict(MulSupConLearner.defaults) == {**shared, "positives": MulSupConParams.positives}
    ld = dict(MulSupConLDLearner.defaults)
    assert "positives" not in ld  # always ANY
    assert ld == dataclasses.asdict(MulSupConLDParams())
    assert set(ld) - set(shared) == {"alpha", "beta", "recovery", "sigma", "head_init"}
    assert {k: ld[k] for k in shared} == shared
    assert MulSupConLearner({}, n_features=3, n_labels=2).epochs == MulSupConParams.epochs


COMMON_CHECKS = [
    ({"lr": 0.0}, r"lr must be a finite number > 0, got lr=0.0"),
    ({"classifier_lr": -1.0}, r"classifier_lr must be a finite number > 0"),
    ({"weight_decay": -1e-4}, r"weight_decay must be a finite number >= 0"),
    ({"classifier_weight_decay": "x"}, r"classifier_weight_decay must be a finite number >= 0"),
    ({"optimizer": "sgd"}, r"optimizer must be one of 'adamw', 'adam', got optimizer='sgd'"),
    ({"schedule": "step"}, r"schedule must be one of 'cosine', 'warm_restarts', 'constant'"),
    ({"restart_epochs": 0}, r"restart_epochs must be an integer >= 1"),
    ({"batch_size": 0}, r"batch_size must be an integer >= 1, got batch_size=0"),
    ({"tau": 0}, r"tau must be a finite number > 0, got tau=0"),
    ({"momentum": 1.0}, r"momentum must be a finite number in \[0, 1\), got momentum=1.0"),
    ({"queue_size": 0}, r"queue_size must be an integer >= 1"),
    ({"queue_size": 16, "batch_size": 32}, r"queue_size must be >= batch_size.*queue_size=16"),
    ({"mask_ratio": 1.0}, r"mask_ratio must be a finite number in \[0, 1\)"),
    ({"hidden": 0}, r"hidden must be an integer >= 1"),
    ({"proj_dim": 2.5}, r"proj_dim must be an integer >= 1, got proj_dim=2.5"),
    ({"dropout": -0.1}, r"dropout must be a finite number in \[0, 1\)"),
    ({"classifier": "mlp"}, r"classifier must be one of 'finetune', 'linear'"),
    ({"backbone_lr_mult": 0.0}, r"backbone_lr_mult must be a finite number > 0"),
    ({"pretrain_epochs": -1}, r"pretrain_epochs must be an integer >= 0"),
    ({"epochs": True}, r"epochs must be an integer >= 1, got epochs=True"),
    ({"probe_every": 0}, r"probe_every must be an integer >= 1"),
    ({"probe_l2": 0.0}, r"probe_l2 must be a finite number > 0"),
    ({"bag_pooling": "sum"}, r"bag_pooling must be one of 'mean', 'max', 'mean_max'"),
    ({"head_batchnorm": "yes"}, r"head_batchnorm must be True or False"),
    (
        {"pretrain_epochs": 0, "classifier": "linear"},
        r"classifier='linear' freezes the backbone, so it needs pre-training.*pretrain_epochs=0",
    ),
    (
        {"threshold": "test"},
        r"threshold must be one of 'fixed', 'train', 'train_global', got threshold='test'",
    ),
]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        *COMMON_CHECKS,
        ({"positives": "some"}, r"positives must be one of 'all', 'any', 'mulsupcon'"),
        ({"alpha": 0.1}, r"model 'mulsupcon' has no hyper-parameter 'alpha'"),
    ],
)
def test_mulsupcon_config_checks(config: dict, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        MulSupConLearner(config, n_features=3, n_labels=2)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        *COMMON_CHECKS,
        ({"alpha": -1.0}, r"alpha must be a finite number >= 0, got alpha=-1.0"),
        ({"beta": float("inf")}, r"beta must be a finite number >= 0, got beta=inf"),
        ({"sigma": 0.0}, r"sigma must be a finite number > 0, got sigma=0.0"),
        ({"recovery": "ld"}, r"recovery must be one of 'cld', 'rld', got recovery='ld'"),
        ({"head_init": "zero"}, r"head_init must be one of 'probe', 'distribution_head'"),
        ({"positives": "all"}, r"model 'mulsupcon_ld' has no hyper-parameter 'positives'"),
    ],
)
def test_mulsupcon_ld_config_checks(config: dict, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        MulSupConLDLearner(config, n_features=3, n_labels=2)


# ------------------------------------------------------------------------------ real learning
@pytest.mark.parametrize("cls", LEARNERS)
def test_beats_the_label_frequency_predictor_on_birds(birds: Split, cls) -> None:
    learner, losses = _trained(cls, birds, SMALL)
    scores = learner.predict(learner.encode(birds.test_bags))
    assert scores.shape == birds.test_labels.shape
    assert bool(((scores > 0) & (scores < 1)).all())
    assert losses[-1] < losses[SMALL["pretrain_epochs"]]  # the classifier stage learns
    baseline = birds.label_frequency_ap()
    ap = birds.average_precision(scores)
    # Seen: baseline 0.396; MulSupCon 0.574, MulSupCon_LD 0.585 (pooled bags, 12 epochs).
    assert ap > baseline + 0.1, (ap, baseline)


@pytest.fixture(scope="module")
def yeast(shared_data) -> Split:
    from tuner.data.mulan import read_mulan_arff

    data = read_mulan_arff(shared_data / "mulan" / "yeast-train.arff")
    test = np.asarray(data.test_mask)
    train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
    return Split(
        [data.bags[i] for i in train_rows],
        np.asarray(data.labels)[train_rows],
        [data.bags[i] for i in test_rows],
        np.asarray(data.labels)[test_rows],
    )


@pytest.mark.parametrize("cls", LEARNERS)
def test_beats_the_label_frequency_predictor_on_yeast(yeast: Split, cls) -> None:
    learner, _ = _trained(cls, yeast, {**SMALL, "pretrain_epochs": 5, "epochs": 15})
    scores = learner.predict(learner.encode(yeast.test_bags))
    baseline = yeast.label_frequency_ap()
    ap = yeast.average_precision(scores)
    # Seen: baseline 0.705; MulSupCon 0.743, MulSupCon_LD 0.742 (official split, 15 epochs).
    assert ap > baseline + 0.03, (ap, baseline)


def test_the_probe_scores_pre_training_epochs(birds: Split) -> None:
    learner = _learner(MulSupConLearner, birds, SMALL)
    learner.setup(birds.train_bags, birds.train_labels)
    encoded = learner.encode(birds.test_bags)
    learner.train_epoch()
    first = learner.predict(encoded)
    assert not learner.classifier_stage and learner._probe_epoch == 1
    assert birds.average_precision(first) > birds.label_frequency_ap() + 0.05
    weight = learner.probe.weight.clone()
    learner.train_epoch()
    learner.predict(encoded)  # the probe is cached until probe_every epochs have passed
    assert learner._probe_epoch == 1 and torch.equal(learner.probe.weight, weight)
    for _ in range(2):
        learner.train_epoch()
    learner.predict(encoded)
    assert learner._probe_epoch == 4


@pytest.mark.parametrize("cls", LEARNERS)
def test_the_classifier_starts_from_the_last_probe(tiny: Split, cls) -> None:
    learner = _learner(cls, tiny, {**SMALL, "pretrain_epochs": 2, "epochs": 3})
    learner.setup(tiny.train_bags, tiny.train_labels)
    encoded = learner.encode(tiny.test_bags)
    for _ in range(2):
        learner.train_epoch()
    probe = learner.predict(encoded)
    learner._start_classifier_stage()
    np.testing.assert_allclose(learner.predict(encoded), probe, rtol=1e-4, atol=1e-5)


def test_the_ld_head_can_initialise_the_classifier(tiny: Split) -> None:
    config = {**SMALL, "pretrain_epochs": 1, "epochs": 2, "head_init": "distribution_head"}
    learner = _learner(MulSupConLDLearner, tiny, config)
    learner.setup(tiny.train_bags, tiny.train_labels)
    learner.train_epoch()
    learner._start_classifier_stage()
    torch.testing.assert_close(
        learner.model.classifier.weight, learner.model.distribution_head.weight
    )


def test_linear_probe_keeps_the_backbone_frozen(tiny: Split) -> None:
    config = {**SMALL, "pretrain_epochs": 1, "epochs": 3, "classifier": "linear"}
    learner = _learner(MulSupConLearner, tiny, config)
    learner.setup(tiny.train_bags, tiny.train_labels)
    learner.train_epoch()
    before = [p.clone() for p in learner.model.backbone.parameters()]
    classifier = learner.model.classifier.weight.clone()
    learner.train_epoch()
    learner.train_epoch()
    for a, b in zip(before, learner.model.backbone.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(classifier, learner.model.classifier.weight)
    # fine-tuning moves the backbone, at classifier_lr * backbone_lr_mult
    tuned = _learner(
        MulSupConLearner, tiny, {**config, "classifier": "finetune", "backbone_lr_mult": 0.1}
    )
    tuned.setup(tiny.train_bags, tiny.train_labels)
    tuned.train_epoch()
    tuned.train_epoch()
    rates = [group["lr"] for group in tuned.optimizer.param_groups]
    assert rates[1] == pytest.approx(rates[0] * 0.1)


# --------------------------------------------------------------------------------- machinery
VARIANTS = [
    (MulSupConLearner, {"positives": "all"}),
    (MulSupConLearner, {"positives": "any"}),
    (MulSupConLearner, {"positives": "mulsupcon", "bag_pooling": "mean_max"}),
    (MulSupConLearner, {"pretrain_epochs": 0, "schedule": "constant", "optimizer": "adam"}),
    (MulSupConLDLearner, {"recovery": "cld"}),
    (MulSupConLDLearner, {"recovery": "rld", "sigma": 0.5, "schedule": "warm_restarts"}),
]


@pytest.mark.parametrize(("cls", "variant"), VARIANTS, ids=lambda v: str(v))
def test_every_variant_trains(tiny: Split, cls, variant: dict) -> None:
    config = {**SMALL, "batch_size": 16, "pretrain_epochs": 1, "epochs": 2, **variant}
    config["pretrain_epochs"] = variant.get("pretrain_epochs", 1)
    learner = _learner(cls, tiny, config)
    learner.setup(tiny.train_bags, tiny.train_labels)
    encoded = learner.encode(tiny.test_bags)
    for _ in range(2):
        loss = learner.train_epoch()
        assert np.isfinite(loss)
        scores = learner.predict(encoded)
        assert scores.shape == (20, tiny.n_labels)
        assert bool(((scores >= 0) & (scores <= 1)).all())  # a probe on 40 bags can saturate


@pytest.mark.parametrize("cls", LEARNERS)
def test_head_batchnorm_survives_a_one_row_last_batch(tiny: Split, cls) -> None:
    """Regression: 40 training bags in batches of 13 leave one row, which batch-norm in the
    projection head cannot normalise in training mode; pre-training skips it."""
    config = {**SMALL, "batch_size": 13, "pretrain_epochs": 1, "epochs": 2, "head_batchnorm": True}
    learner = _learner(cls, tiny, config)
    learner.setup(tiny.train_bags, tiny.train_labels)
    assert len(tiny.train_bags) % 13 == 1
    for _ in range(2):
        assert np.isfinite(learner.train_epoch())
    assert learner.predict(learner.encode(tiny.test_bags)).shape == (20, tiny.n_labels)


@pytest.mark.parametrize("cls", LEARNERS)
def test_same_seed_same_predictions_whatever_runs_in_between(tiny: Split, cls) -> None:
    config = {**SMALL, "batch_size": 16, "pretrain_epochs": 1, "epochs": 3}
    a, b = _learner(cls, tiny, config, seed=7), _learner(cls, tiny, config, seed=7)
    other = _learner(cls, tiny, config, seed=8)
    for learner in (a, other, b):
        learner.setup(tiny.train_bags, tiny.train_labels)
    encoded = a.encode(tiny.test_bags)
    for _ in range(2):
        a.train_epoch()
        other.train_epoch()
    torch.manual_seed(123)
    for _ in range(2):
        b.train_epoch()
    np.testing.assert_array_equal(a.predict(encoded), b.predict(encoded))
    assert not np.array_equal(a.predict(encoded), other.predict(encoded))
    torch.manual_seed(123)
    expected = torch.get_rng_state()
    a.train_epoch()
    assert torch.equal(torch.get_rng_state(), expected)


def test_non_finite_loss_raises_floating_point_error(tiny: Split) -> None:
    learner = _learner(MulSupConLearner, tiny, SMALL)
    learner.setup(tiny.train_bags, tiny.train_labels)
    with torch.no_grad():
        learner.model.backbone[0].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"pre-training loss is nan in epoch 1"):
        learner.train_epoch()


@pytest.mark.parametrize("cls", LEARNERS)
def test_setup_checks_the_data_and_predicts_no_bags(tiny: Split, cls) -> None:
    with pytest.raises(MimlTuneError, match=r"bag 0 has shape \(\d+, 38\); expected"):
        cls({}, n_features=5, n_labels=tiny.n_labels).setup(tiny.train_bags, tiny.train_labels)
    with pytest.raises(MimlTuneError, match=r"labels must have shape \(40, 3\)"):
        cls({}, n_features=tiny.n_features, n_labels=3).setup(tiny.train_bags, tiny.train_labels)
    learner = _learner(cls, tiny, SMALL)
    learner.setup(tiny.train_bags, tiny.train_labels)
    assert learner.predict(learner.encode([])).shape == (0, tiny.n_labels)


def test_encode_pools_then_uses_the_training_statistics(tiny: Split) -> None:
    learner = _learner(MulSupConLearner, tiny, {**SMALL, "bag_pooling": "max"})
    learner.setup(tiny.train_bags, tiny.train_labels)
    train_max = np.stack([bag.max(axis=0) for bag in tiny.train_bags]).astype(np.float64)
    mean, std = train_max.mean(axis=0), train_max.std(axis=0)
    std[std == 0] = 1.0
    (row,) = learner.encode(tiny.test_bags[:1]).numpy()
    np.testing.assert_allclose(row, (tiny.test_bags[0].max(axis=0) - mean) / std, rtol=1e-4)


def test_runs_in_the_cross_validation_protocol(birds: Split) -> None:
    from tuner.data import load_dataset
    from tuner.trial import CVProtocol, run_cv

    config = {**SMALL, "pretrain_epochs": 2, "epochs": 3}
    result = run_cv("mulsupcon_ld", config, load_dataset("birds"), CVProtocol(2, 1, 0))
    assert result.epochs == 3 and len(result.history) == 3
    assert 0.4 < result.summary["average_precision"] <= 1.0


# ------------------------------------------------------------------------ decision thresholds
def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    """F1 of one 0/1 vector, 1 when there is nothing to find and nothing was predicted."""
    tp, denom = int((y & pred).sum()), int(y.sum() + pred.sum())
    return 2 * tp / denom if denom else 1.0


def test_choose_thresholds_matches_a_brute_force_search() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random((60, 5)) < [0.1, 0.3, 0.5, 0.7, 0.0]
    probs = np.clip(0.3 * labels + rng.random((60, 5)) * 0.8, 0, 1)
    per_label = choose_thresholds(labels, probs, per_label=True)
    for j in range(5):
        scores = [
            _f1(labels[:, j], probs[:, j] >= t) if labels[:, j].any() else 0.0
            for t in THRESHOLD_GRID
        ]
        best = max(scores)
        ties = [t for t, f in zip(THRESHOLD_GRID, scores, strict=True) if f == best]
        assert per_label[j] == min(ties, key=lambda t: abs(t - 0.5)), j
    assert per_label[4] == 0.5  # no positive row: nothing to choose from
    (glob,) = set(choose_thresholds(labels, probs, per_label=False))
    example = [
        np.mean([_f1(y, p >= t) for y, p in zip(labels, probs, strict=True)])
        for t in THRESHOLD_GRID
    ]
    assert max(example) == pytest.approx(example[list(THRESHOLD_GRID).index(glob)])


@pytest.mark.parametrize("how", ["train", "train_global"])
def test_thresholds_come_from_the_training_rows_only(tiny: Split, how: str) -> None:
    config = {**SMALL, "batch_size": 16, "pretrain_epochs": 1, "epochs": 3, "threshold": how}
    a, b = _learner(MulSupConLearner, tiny, config), _learner(MulSupConLearner, tiny, config)
    for learner in (a, b):
        learner.setup(tiny.train_bags, tiny.train_labels)
    held_out = a.encode(tiny.test_bags)
    noise = torch.randn(200, held_out.shape[1]) * 5  # very different "held-out" rows for b
    for _ in range(3):  # both stages: the probe's epoch, then the classifier's
        a.train_epoch()
        b.train_epoch()
        a.predict(held_out)
        b.predict(noise)
        np.testing.assert_array_equal(a.thresholds(), b.thresholds())
        train = torch.sigmoid(a._logits(a._x)).numpy()
        expected = choose_thresholds(tiny.train_labels > 0.5, train, per_label=how == "train")
        np.testing.assert_array_equal(a.thresholds(), expected)
    assert not np.all(a.thresholds() == 0.5)  # something was chosen
    np.testing.assert_array_equal(a.predict(held_out), b.predict(held_out))


def test_the_threshold_transform_keeps_the_rankings(tiny: Split) -> None:
    from tuner.metrics import compute

    config = {**SMALL, "batch_size": 16, "pretrain_epochs": 1, "epochs": 3}
    scores, cuts = {}, {}
    for how in ("fixed", "train", "train_global"):
        learner, _ = _trained(MulSupConLearner, tiny, {**config, "threshold": how})
        scores[how] = learner.predict(learner.encode(tiny.test_bags))
        cuts[how] = learner.thresholds()
    fixed = scores["fixed"]
    np.testing.assert_array_equal(cuts["fixed"], 0.5)
    for how in ("train", "train_global"):
        # 0.5 on the calibrated scale is t_j on the raw one, and each label's order is kept
        np.testing.assert_array_equal(scores[how] >= 0.5, fixed >= cuts[how])
        for j in range(tiny.n_labels):
            assert np.all(np.diff(scores[how][np.argsort(fixed[:, j], kind="stable"), j]) >= 0)
        mean_ap = compute(tiny.test_labels, scores[how], "mean_average_precision")
        assert mean_ap == pytest.approx(compute(tiny.test_labels, fixed, "mean_average_precision"))
    # one threshold for all labels: the label ranking in every bag is kept too
    assert tiny.average_precision(scores["train_global"]) == pytest.approx(
        tiny.average_precision(fixed)
    )


def test_train_thresholds_keep_the_rankings_on_yeast(shared_data) -> None:
    """The threshold rules only move the 0.5 cut: on real data (yeast's official training rows,
    two thirds to train, the rest to score; its test split is never touched here) per-label mAP
    is the same under every rule, and label-ranking AP under the global one."""
    from tuner.data import load_dataset
    from tuner.metrics import compute

    data = load_dataset("yeast", data=shared_data / "mulan" / "yeast-train.arff")
    dev = data.subset(np.flatnonzero(~np.asarray(data.test_mask)))
    held = split(list(dev.bags), dev.labels)
    config = {**SMALL, "threshold": "train_global"}
    learner = MulSupConLearner(config, n_features=data.n_features, n_labels=data.n_labels)
    learner.setup(held.train_bags, held.train_labels)
    for _ in range(learner.epochs):
        learner.train_epoch()
    encoded = learner.encode(held.test_bags)
    names = ["example_f1", "mean_average_precision", "average_precision"]
    results = {}
    for how in ("fixed", "train", "train_global"):
        learner.config["threshold"] = how  # same trained model, another decision rule
        results[how] = compute(held.test_labels, learner.predict(encoded), names)
    for how in ("train", "train_global"):
        assert results[how]["mean_average_precision"] == pytest.approx(
            results["fixed"]["mean_average_precision"]
        )
    assert results["train_global"]["average_precision"] == pytest.approx(
        results["fixed"]["average_precision"]
    )


def test_pre_training_on_birds_lowers_the_contrastive_loss() -> None:
    """Regression for "the contrastive loss stays at log K": pre-training on pooled Birds bags
    (unmasked views, as the searched mask_ratio 0) must lower the loss clearly within a few
    epochs. Epoch 1 is left out: its queue is still filling, so its contrast set is smaller."""
    config = {**SMALL, "mask_ratio": 0.0, "dropout": 0.0, "pretrain_epochs": 10, "epochs": 10}
    birds = _birds_all()
    learner = MulSupConLearner(config, n_features=38, n_labels=19, seed=0)
    learner.setup(birds.bags, birds.labels)
    losses = [learner.train_epoch() for _ in range(10)]
    log_k = np.log(SMALL["queue_size"] + SMALL["batch_size"])
    # Seen: log K 5.08; epoch 2 4.98, epoch 10 4.84 (the loss's floor on Birds is about 3.8).
    assert losses[1] < log_k
    assert losses[-1] < losses[1] - 0.08, losses


def _birds_all():
    from tuner.data import load_dataset

    return load_dataset("birds")
