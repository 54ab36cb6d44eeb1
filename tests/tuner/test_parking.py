"""Fold models parked in files between their epochs: same results, memory freed, no files left."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from tuner.data import load_dataset
from tuner.learners.parking import Parking, learner_tensors
from tuner.trial import CVProtocol, RepeatsSchedule, run_cv


@pytest.fixture(scope="module")
def birds():  # type: ignore[no-untyped-def]
    return load_dataset("birds")


@pytest.mark.parametrize(
    ("model", "config"),
    [
        ("gamil_c", {"hidden": 128, "heads": 2, "layers": 2, "epochs": 3}),
        ("sarb", {"epochs": 3}),
    ],
)
def test_a_parked_trial_gives_bit_identical_results(birds, model: str, config: dict) -> None:  # type: ignore[no-untyped-def]
    protocol = CVProtocol(folds=3, repeats=2, seed=0)
    schedule = RepeatsSchedule((1,), repeats=2, growth=2)  # a repeat added and caught up
    held = run_cv(model, config, birds, protocol, schedule=schedule, park=False)
    parked = run_cv(model, config, birds, protocol, schedule=schedule, park=True)
    assert parked.per_fold == held.per_fold
    assert [r["train_loss"] for r in parked.history] == [r["train_loss"] for r in held.history]


def test_a_parked_learner_holds_no_tensor_memory_and_gets_its_values_back(birds) -> None:  # type: ignore[no-untyped-def]
    from tuner.learners import resolve_learner

    learner = resolve_learner("gamil_c")(
        {"hidden": 128, "heads": 2, "layers": 2}, n_features=birds.n_features, n_labels=19
    )
    learner.setup(birds.bags[:60], birds.labels[:60])
    learner.train_epoch()  # the optimiser now has state
    before = [t.clone() for t in learner_tensors(learner)]
    assert sum(t.numel() for t in before) > 100_000
    with tempfile.TemporaryDirectory() as folder:
        parking = Parking(folder)
        parking.park(0, learner)
        assert sum(t.numel() for t in learner_tensors(learner)) == 0
        assert all(p.grad is None for p in learner.model.parameters())
        assert [p.name for p in Path(folder).iterdir()] == ["fold-0.pt"]
        parking.unpark(0)
        assert list(Path(folder).iterdir()) == []
        after = learner_tensors(learner)
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        assert learner.optimizer.state[next(learner.model.parameters())]["exp_avg"].numel() > 0


def test_run_cv_removes_its_parking_folder(birds, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run_cv("bag_mean_mlp", {"epochs": 2}, birds, CVProtocol(3, 1, 0), park=True)
    assert list(tmp_path.iterdir()) == []
