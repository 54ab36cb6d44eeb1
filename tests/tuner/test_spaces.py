"""Every shipped space, and every model's default space, loads and runs one tiny trial on its data.

The trial is the search's own trial function (:func:`tuner.trial.run_cv`) with the first value of
every searched domain, two epochs and 2-fold CV on a small stratified part of the space's real
dataset, so a space whose grid names a value its model rejects, or whose model cannot run on its
data, fails here and not an hour into a search.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from optuna.distributions import CategoricalDistribution

from tests.conftest import SHARED_DATA
from tuner.data import load_dataset
from tuner.errors import MimlTuneError
from tuner.learners import learner_names
from tuner.search import check_model_fits, prepare_data
from tuner.spec import SearchSpec, load_space, model_space_names, space_names

TINY_BAGS = 120


@pytest.fixture(autouse=True)
def data_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unbundled datasets are found in the shared benchmark folder, as users point at theirs."""
    monkeypatch.setenv("MIML_TUNE_DATA", str(SHARED_DATA))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _first_config(spec: SearchSpec) -> dict[str, Any]:
    config = dict(spec.fixed)
    for key, domain in spec.params.items():
        config[key] = (
            domain.choices[0] if isinstance(domain, CategoricalDistribution) else domain.low
        )
    config["epochs"] = 2
    return config


def _tiny_trial(spec: SearchSpec) -> None:
    from tuner.learners import resolve_learner
    from tuner.trial import CVProtocol, run_cv

    try:
        _, dev, _ = prepare_data(spec, None)
    except MimlTuneError as exc:
        if "not bundled" in str(exc) or "MIML_TUNE_DATA" in str(exc):
            pytest.skip(f"{spec.dataset} data not available: {exc}")
        raise
    # A small seeded sample keeps the trial to seconds on any dataset.
    if dev.n_bags > TINY_BAGS:
        keep = np.sort(np.random.default_rng(0).choice(dev.n_bags, TINY_BAGS, replace=False))
        dev = dev.subset(keep)
    config = _first_config(spec)
    if "epochs" not in resolve_learner(spec.model).defaults:
        config.pop("epochs")
    protocol = CVProtocol(folds=2, repeats=1, seed=0, known_labels=spec.known_labels)
    result = run_cv(spec.model, config, dev, protocol, max_epochs=2)
    assert 1 <= result.epochs <= 2
    assert math.isfinite(result.summary["train_loss"])
    value = result.summary[spec.metric]
    assert math.isfinite(value), (spec.name, spec.metric, value)
    assert len(result.per_fold[spec.metric]) == 2


@pytest.mark.parametrize("name", space_names())
def test_every_shipped_space_runs_a_tiny_trial(name: str) -> None:
    spec = load_space(name)
    assert spec.model in learner_names()
    assert spec.grid_size > 1
    for peer in spec.peers:
        assert peer in learner_names()
    _tiny_trial(spec)


@pytest.mark.parametrize("model", model_space_names())
def test_every_model_default_space_runs_on_birds(model: str) -> None:
    spec = load_space("birds", model=model)
    assert spec.model == model
    assert spec.name == f"birds-{model}"
    _tiny_trial(spec)


def test_every_registered_model_has_a_default_space() -> None:
    assert model_space_names() == learner_names()


def test_vector_models_run_on_vector_data_via_model_option() -> None:
    spec = load_space("birds", model="bag_mean_mlp")
    assert spec.dataset == "birds"
    if not (SHARED_DATA / "mulan" / "yeast-train.arff").is_file():
        pytest.skip(f"Mulan yeast not found under {SHARED_DATA}")
    yeast = load_space("yeast_mulsupcon", model="bag_mean_mlp")
    _tiny_trial(yeast)


def test_gamil_c_refuses_vector_data_with_one_line() -> None:
    if not (SHARED_DATA / "mulan" / "yeast-train.arff").is_file():
        pytest.skip(f"Mulan yeast not found under {SHARED_DATA}")
    spec = load_space("yeast_mulsupcon", model="gamil_c")
    full = load_dataset(spec.dataset)
    with pytest.raises(MimlTuneError, match=r"gamil_c.*needs bags of several instances"):
        check_model_fits(spec, full)


def test_official_test_split_is_the_holdout() -> None:
    if not (SHARED_DATA / "mulan" / "yeast-train.arff").is_file():
        pytest.skip(f"Mulan yeast not found under {SHARED_DATA}")
    spec = load_space("yeast_mulsupcon")
    full, dev, holdout = prepare_data(spec, None)
    assert full.has_test_split
    assert (dev.n_bags, holdout.n_bags if holdout else 0) == (1500, 917)
    assert not dev.test_mask.any() and holdout is not None and holdout.test_mask.all()


@pytest.mark.parametrize("known", [0, 1.5, -0.1])
def test_known_label_proportion_outside_0_1_is_refused(known: float) -> None:
    with pytest.raises(MimlTuneError, match=r"known_labels must be a proportion in \(0, 1\]"):
        load_space("birds", model="sarb").with_overrides(known_labels=known)


def test_sarb_spaces_state_their_known_label_proportion() -> None:
    sarb = [load_space(n) for n in space_names() if load_space(n).model == "sarb"]
    assert sorted({s.known_labels for s in sarb}) == [0.1, 0.5, 0.9]
    for s in sarb:
        assert np.isclose(s.known_labels * 100, int(s.name.rsplit("p", 1)[1]))
