"""Search-space files: every shipped space loads; every malformed one fails with a clear line."""

from __future__ import annotations

import datetime
import math
import re
from pathlib import Path

import pytest
import yaml
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from tuner.errors import MimlTuneError
from tuner.spec import domain_kind, domain_size, load_space, parse_space, space_names

BASE = {
    "name": "t",
    "model": "gamil_c",
    "dataset": "birds",
    "metric": "average_precision",
    "params": {"lr": [1.0e-3, 5.0e-3], "hidden": 128},
}


def _write(tmp_path: Path, **changes: object) -> Path:
    raw = {**BASE, **changes}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", space_names())
def test_every_shipped_space_loads(name: str) -> None:
    spec = load_space(name)
    assert spec.name == name
    assert spec.params, "a shipped space searches at least one parameter"
    assert spec.mode in ("max", "min")
    assert spec.param_space().keys() == {*spec.params, *spec.fixed}


def test_birds_space_is_the_papers_grid() -> None:
    spec = load_space("birds")
    grid = {k: list(d.choices) for k, d in spec.params.items()}
    assert grid["batch_size"] == [64, 128, 256]
    assert grid["lr"] == [1e-2, 5e-3, 1e-3, 5e-4]
    assert grid["weight_decay"] == [1e-3, 5e-4, 1e-4]
    assert grid["layers"] == [2, 3, 4]
    assert grid["heads"] == [2, 4, 8]
    assert grid["hidden"] == [128, 256, 512]
    assert grid["tau"] == [0.1, 0.2, 0.5, 1.0]
    assert grid["alpha"] == grid["beta"] == [0.1, 0.5, 1.0, 2.0]
    assert {"k", "gamma", "epochs"} <= grid.keys()
    assert (spec.metric, spec.mode, spec.cv_folds, spec.cv_repeats, spec.holdout) == (
        "average_precision",
        "max",
        3,
        5,
        0.2,
    )
    assert spec.grid_size == math.prod(len(v) for v in grid.values())


def test_domains_and_defaults(tmp_path: Path) -> None:
    spec = load_space(
        str(
            _write(
                tmp_path,
                params={
                    "lr": {"loguniform": [1.0e-4, 1.0e-2]},
                    "dropout": {"uniform": [0.0, 0.5]},
                    "k": {"int": [2, 6]},
                    "pooling": {"choice": ["mean", "attention"]},
                    "hidden": 128,
                },
            )
        )
    )
    assert spec.mode == "max"  # taken from the metric when not given
    assert {k: domain_kind(d) for k, d in spec.params.items()} == {
        "lr": "loguniform",
        "dropout": "uniform",
        "k": "int",
        "pooling": "choice",
    }
    assert spec.fixed == {"hidden": 128}
    assert spec.params == {
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "dropout": FloatDistribution(0.0, 0.5),
        "k": IntDistribution(2, 6),
        "pooling": CategoricalDistribution(("mean", "attention")),
    }
    assert domain_size(spec.params["k"]) == 5
    assert math.isinf(spec.grid_size)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochz": 3}, r"unknown key 'epochz'; allowed keys: name, "),
        ({"params": {"lr": [0.1], "hiden": 64}}, r"unknown key params.'hiden' for model 'gamil_c'"),
        ({"params": {"lr": []}}, r"params.lr is an empty list"),
        ({"params": {"lr": {"uniform": [0.1, 0.01]}}}, r"params.lr.uniform is empty"),
        ({"params": {"lr": {"loguniform": [0, 0.1]}}}, r"loguniform needs low > 0"),
        ({"params": {"lr": {"between": [0, 1]}}}, r"params.lr must be a scalar, a list"),
        ({"params": {"layers": [2, "three"]}}, r"params.layers must be an integer"),
        ({"params": {"lr": [0.1], "contrastive": "yes"}}, r"params.contrastive must be true or"),
        ({"params": {"lr": 0.1, "hidden": 64}}, r"params fixes every hyper-parameter, so there"),
        ({"params": {"k": {"uniform": [1, 10]}}}, r"params.k takes integers; use a list or"),
        ({"params": {"layers": {"int": [0, 4]}}}, r"params.layers: .*layers"),
        ({"params": {"lr": {"uniform": [0.1, "x"]}}}, r"params.lr.uniform must be \[low, high\]"),
        ({"params": {"k": {"int": [1.5, 4]}}}, r"params.k.int bounds must be integers"),
        ({"params": {"lr": [0.1, [0.2]]}}, r"params.lr choices must be scalars \(strings, numbers"),
        ({"params": {"lr": [0.1, datetime.date(2024, 1, 1)]}}, r"params.lr choices must be scal"),
        ({"seed": 2**40}, r"seed must be an integer in \[0, 2\*\*31\)"),
        ({"holdout_seed": -1}, r"holdout_seed must be an integer in \[0, 2\*\*31\)"),
        ({"params": {"pooling": ["max"]}}, r"params.pooling: .*pooling"),
        ({"params": {}}, r"params must be a non-empty mapping"),
        ({"metric": "accuracy"}, r"unknown metric 'accuracy'; metrics: "),
        ({"metric": "hamming_loss", "mode": "max"}, r"contradicts metric 'hamming_loss'"),
        ({"model": "resnet"}, r"unknown model 'resnet'; registered models: "),
        ({"cv": {"folds": 1}}, r"cv.folds must be an integer >= 2, got 1"),
        ({"cv": {"folds": 3, "repeat": 2}}, r"unknown key cv.'repeat'"),
        ({"cv": {"folds": "3"}}, r"cv.folds must be an integer"),
        ({"holdout": 0.7}, r"holdout must be a fraction in \[0, 0.5\)"),
        ({"budget": {"trials": 0}}, r"budget.trials must be an integer >= 1, got 0"),
        ({"sampler": "grid"}, r"unknown sampler 'grid'; allowed: tpe, random"),
        ({"scheduler": {"name": "hyperband"}}, r"unknown scheduler 'hyperband'"),
        ({"name": 3}, r"name must be a string, got 3"),
    ],
)
def test_malformed_space_names_file_and_key(tmp_path: Path, changes: dict, message: str) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(MimlTuneError, match=message) as info:
        load_space(str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_key_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(MimlTuneError, match=r"missing required key 'metric'"):
        parse_space(yaml.safe_dump({k: v for k, v in BASE.items() if k != "metric"}))
    with pytest.raises(MimlTuneError, match=r"not valid YAML at line \d"):
        parse_space("name: a\nparams: [unclosed\n  x: 1\n")
    with pytest.raises(MimlTuneError, match=r"must be a mapping of keys"):
        parse_space("- a\n- b\n")


def test_unknown_space_lists_the_shipped_ones() -> None:
    with pytest.raises(MimlTuneError, match=r"unknown space 'nope'; shipped spaces: .*birds"):
        load_space("nope")
    with pytest.raises(MimlTuneError, match=r"space file 'missing.yaml' does not exist"):
        load_space("missing.yaml")


def test_overrides_are_validated() -> None:
    spec = load_space("birds")
    smaller = spec.with_overrides(trials=3, max_epochs=2, cv_repeats=1, seed=None)
    assert (smaller.trials, smaller.max_epochs, smaller.cv_repeats, smaller.seed) == (3, 2, 1, 0)
    with pytest.raises(MimlTuneError, match=r"budget.trials must be an integer >= 1, got -1"):
        spec.with_overrides(trials=-1)
    with pytest.raises(MimlTuneError, match=r"unknown sampler 'annealing'"):
        spec.with_overrides(sampler="annealing")


def test_epochs_choices_collapse_onto_the_budget() -> None:
    spec = load_space("birds")
    assert spec.params["epochs"] == CategoricalDistribution((20, 30, 40))
    assert spec.param_space()["epochs"].categories == [20, 30]  # budget.max_epochs 30
    assert spec.with_overrides(max_epochs=40).param_space()["epochs"].categories == [20, 30, 40]
    assert spec.with_overrides(max_epochs=3).param_space()["epochs"] == 3


@pytest.mark.parametrize("name", space_names())
def test_domains_are_optuna_distributions_that_round_trip_through_json(name: str) -> None:
    spec = load_space(name)
    for key, domain in spec.params.items():
        assert json_to_distribution(distribution_to_json(domain)) == domain, (name, key)


@pytest.mark.parametrize("name", [*space_names(), "every-kind"])
def test_the_tune_space_is_the_same_distributions_to_optuna_search(name: str) -> None:
    """Ray's OptunaSearch converts the Tune ``param_space`` back to Optuna distributions: they
    are the spec's own, so the sampler searches exactly the domains the file states."""
    from ray.tune.search.optuna import OptunaSearch

    if name == "every-kind":
        spec = parse_space(
            yaml.safe_dump(
                {
                    **BASE,
                    "params": {
                        "lr": {"loguniform": [1.0e-4, 1.0e-2]},
                        "tau": {"uniform": [0.1, 1.0]},
                        "k": {"int": [2, 6]},
                        "hidden": [64, 128],
                        "layers": 2,
                    },
                }
            )
        )
    else:
        spec = load_space(name)
    searched, fixed = spec.searched()
    assert OptunaSearch.convert_search_space(spec.param_space()) == searched
    assert {k: v for k, v in spec.param_space().items() if k not in searched} == fixed


@pytest.mark.parametrize(
    "domain",
    [
        IntDistribution(1, 64, log=True),
        IntDistribution(0, 10, step=2),
        FloatDistribution(0.0, 1.0, step=0.25),
        CategoricalDistribution((True, False, None)),
    ],
)
def test_to_tune_round_trips_every_distribution_form(domain: object) -> None:
    from ray.tune.search.optuna import OptunaSearch

    from tuner.spec import to_tune

    assert OptunaSearch.convert_search_space({"x": to_tune(domain)}) == {"x": domain}


def test_holdout_seed_is_separate_from_the_search_seed() -> None:
    spec = load_space("birds")
    assert (spec.seed, spec.holdout_seed) == (0, 0)
    assert spec.with_overrides(seed=5).holdout_seed == 0


def test_effective_space_round_trips(tmp_path: Path) -> None:
    spec = load_space("birds").with_overrides(trials=2)
    again = parse_space(yaml.safe_dump(spec.to_dict()), source="again")
    assert again.to_dict() == spec.to_dict()


def test_a_search_starts_from_the_model_defaults_inside_its_domains() -> None:
    text = """
name: t
model: gamil_c
dataset: birds
metric: average_precision
budget: {trials: 3, max_epochs: 30}
params:
  lr: [1.0e-2, 1.0e-3]          # holds the default 1e-3
  hidden: [64, 128]             # does not hold the default 256: the first choice
  tau: {uniform: [0.1, 1.0]}    # holds the default 0.5
  gamma: {uniform: [3.0, 5.0]}  # does not hold the default 2.0: the middle
  k: {int: [6, 9]}              # does not hold the default 5: the middle, rounded down
  weight_decay: {loguniform: [1.0e-6, 1.0e-4]}  # the geometric middle
  epochs: [20, 40]              # capped to [20, 30], which holds the default 30
"""
    point = parse_space(text).starting_point()
    assert point == pytest.approx(
        {
            "lr": 1e-3,
            "hidden": 64,
            "tau": 0.5,
            "gamma": 4.0,
            "k": 7,
            "weight_decay": 1e-5,
            "epochs": 30,
        }
    )
    # Every shipped space starts inside its own grid.
    for name in space_names():
        spec = load_space(name)
        for key, value in spec.starting_point().items():
            domain = spec.params[key]
            if isinstance(domain, CategoricalDistribution) and key != "epochs":
                assert value in domain.choices, (name, key, value)


@pytest.mark.parametrize("max_epochs", [1, 20, 60])
@pytest.mark.parametrize("name", space_names())
def test_the_starting_point_fits_the_searched_space_under_any_epoch_cap(
    name: str, max_epochs: int
) -> None:
    """Ray's OptunaSearch refuses a warm-start point whose keys differ from the searched ones;
    epochs choices that all collapse onto the cap are no longer searched."""
    from ray.tune.search.optuna import OptunaSearch

    spec = load_space(name).with_overrides(max_epochs=max_epochs)
    searcher = OptunaSearch(
        metric=spec.metric, mode=spec.mode, points_to_evaluate=[spec.starting_point()]
    )
    assert searcher.set_search_properties(spec.metric, spec.mode, spec.param_space())


def test_a_malformed_space_with_model_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nparams: [\n")
    with pytest.raises(MimlTuneError, match=r"bad.yaml: not valid YAML"):
        load_space(str(bad), model="bag_mean_linear")


def test_peer_names_are_normalised() -> None:
    spec = parse_space(
        "name: t\nmodel: gamil_c\ndataset: birds\nmetric: average_precision\n"
        "peers: [Bag-Mean-Linear, bag_mean_linear, miml-knn]\nparams: {lr: [0.001, 0.01]}\n"
    )
    assert spec.peers == ("bag_mean_linear", "miml_knn")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("yeast", "did you mean yeast_mulsupcon or yeast_mulsupcon_ld or yeast_sarb_p10?"),
        ("brids", "did you mean birds?"),
        ("reuter", "did you mean reuters?"),
    ],
)
def test_an_unknown_space_suggests_the_close_names(name: str, suggestion: str) -> None:
    with pytest.raises(MimlTuneError, match=re.escape(suggestion)):
        load_space(name)


def test_an_unknown_model_suggests_the_close_names() -> None:
    from tuner.learners import resolve_learner

    with pytest.raises(MimlTuneError, match=re.escape("'gamil' (did you mean gamil_c?)")):
        resolve_learner("gamil")
    with pytest.raises(MimlTuneError, match=r"unknown model 'xyz'; registered models: "):
        resolve_learner("xyz")
