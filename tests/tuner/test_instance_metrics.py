"""Instance-level metrics through the whole protocol: a .mat file with instance labels, GAMIL-C's
instance predictions scored by the trial, and a metric that needs instance labels refused on data
without them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from tuner.data import load_dataset
from tuner.errors import MimlTuneError
from tuner.metrics import INSTANCE_METRICS
from tuner.search import check_model_fits, search_metrics
from tuner.spec import load_space
from tuner.trial import CVProtocol, run_cv


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _instance_labelled_mat(path: Path, n_bags: int = 60, seed: int = 0) -> Path:
    """Bags whose instances each carry one label, drawn from label-specific Gaussians, so the
    instance labels are learnable from the features; a bag's labels are the union of its
    instances' labels (the MIML assumption), in the LAMDA orientation and +-1 coding."""
    rng = np.random.default_rng(seed)
    n_labels, d = 3, 6
    centres = rng.normal(0, 3, size=(n_labels, d))
    bags = np.empty((n_bags, 1), dtype=object)
    inst = np.empty((n_bags, 1), dtype=object)
    labels = -np.ones((n_labels, n_bags))
    for i in range(n_bags):
        n = int(rng.integers(2, 6))
        which = rng.integers(0, n_labels, size=n)
        bags[i, 0] = centres[which] + rng.normal(0, 1, size=(n, d))
        y = -np.ones((n, n_labels))
        y[np.arange(n), which] = 1
        inst[i, 0] = y
        labels[np.unique(which), i] = 1
    savemat(path, {"bags": bags, "targets": labels, "instance_labels": inst})
    return path


def test_gamil_c_instance_metrics_are_reported_by_the_trial(tmp_path: Path) -> None:
    data = load_dataset(str(_instance_labelled_mat(tmp_path / "inst.mat")))
    assert data.instance_labels is not None
    metrics = search_metrics(data)
    assert set(INSTANCE_METRICS) <= set(metrics)
    config = {
        "hidden": 32,
        "heads": 2,
        "pool_heads": 2,
        "proj_dim": 16,
        "batch_size": 16,
        "lr": 5e-3,
    }
    protocol = CVProtocol(folds=2, repeats=1, seed=0)
    result = run_cv(
        "gamil_c", {**config, "lr": 5e-3}, data, protocol, max_epochs=8, metrics=metrics
    )
    for name in INSTANCE_METRICS:
        assert math.isfinite(result.summary[name]), name
    # Instances drawn around label centres: the instance predictions rank labels well above
    # chance (a random ranking of 3 labels with one relevant has AP about 0.61).
    assert result.summary["instance_average_precision"] > 0.8, result.summary
    # A learner without instance predictions reports NaN, not a made-up number.
    peer = run_cv("bag_mean_linear", {}, data, protocol, metrics=metrics).summary
    assert all(math.isnan(peer[name]) for name in INSTANCE_METRICS)


def test_an_instance_metric_on_data_without_instance_labels_is_refused() -> None:
    spec = load_space("birds").with_overrides(metric="instance_average_precision")
    with pytest.raises(MimlTuneError, match=r"needs instance labels, which dataset 'birds'"):
        check_model_fits(spec, load_dataset("birds"))


def test_an_instance_metric_for_a_model_without_instance_predictions_is_refused(
    tmp_path: Path,
) -> None:
    data = load_dataset(str(_instance_labelled_mat(tmp_path / "inst.mat")))
    spec = load_space("birds", model="sarb").with_overrides(metric="instance_average_precision")
    with pytest.raises(MimlTuneError, match=r"model 'sarb' does not make; choose a bag-level"):
        check_model_fits(spec, data)
