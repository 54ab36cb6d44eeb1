"""The guard of a resumed search: it goes on only with the configured Optuna searcher, restored by
Tune with its history, never with a random search that Tune put in its place (Ray issue 30861).
The searchers here are built, filled and saved through public APIs only: the study through the
search's stored storage, the saved state through Tune's ``save_to_dir`` / ``restore_from_dir``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator

from tuner.errors import MimlTuneError
from tuner.search import describe_searcher, finished_in_study
from tuner.search.algorithms import StudySearch, load_study_of, study_storage
from tuner.search.progress import SearcherCheck
from tuner.search.storage import search_folder

SPACE = {"lr": tune.loguniform(1e-4, 1e-1)}


def _searcher(tmp_path: Path, sampler: optuna.samplers.BaseSampler, **kwargs: Any) -> StudySearch:
    folder = search_folder(str(tmp_path), "check")
    searcher = StudySearch(
        metric="ap", mode="max", sampler=sampler, storage=study_storage(folder),
        study_name=folder.name, key=folder.uri, **kwargs,
    )  # fmt: skip
    assert searcher.set_search_properties("ap", "max", SPACE)
    return searcher


def _restored(tmp_path: Path, sampler: optuna.samplers.BaseSampler, finished: int) -> StudySearch:
    """A searcher whose study holds ``finished`` trials, saved and restored as Tune does it."""
    launched = _searcher(tmp_path, sampler)
    for i in range(finished):
        launched.add_evaluated_point({"lr": 1e-3 * (i + 1)}, 0.5)
    saved = tmp_path / "saved"
    saved.mkdir()
    launched.save_to_dir(str(saved))
    resumed = _searcher(tmp_path, sampler)
    resumed.restore_from_dir(str(saved))
    return resumed


def test_the_restored_optuna_searcher_with_its_history_passes(tmp_path: Path) -> None:
    searcher = ConcurrencyLimiter(_restored(tmp_path, optuna.samplers.TPESampler(seed=0), 3), 2)
    assert describe_searcher(searcher) == ("OptunaSearch", "TPESampler")
    assert finished_in_study(searcher) == 3
    SearcherCheck(lambda: searcher, "TPESampler", 3).setup()


def test_the_study_is_stored_in_the_search_folder(tmp_path: Path) -> None:
    """The study outlives the searcher: ``optuna.load_study`` reads it from the folder's journal,
    with its sampler named; the starting point is enqueued once, however often Tune sets up a
    searcher over the study."""
    start = {"lr": 1e-2}
    for _ in range(2):
        _searcher(tmp_path, optuna.samplers.TPESampler(seed=0), starting_point=start)
    study = load_study_of(search_folder(str(tmp_path), "check"))
    assert study is not None
    assert study.user_attrs["sampler"] == "TPESampler"
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert study.ask({"lr": lr}).params == start
    assert load_study_of(search_folder(str(tmp_path), "elsewhere")) is None


def _random_search(tmp_path: Path) -> Any:
    return BasicVariantGenerator()


def _nothing(tmp_path: Path) -> Any:
    return None


def _another_sampler(tmp_path: Path) -> Any:
    return _restored(tmp_path, optuna.samplers.RandomSampler(seed=0), 3)


def _history_lost(tmp_path: Path) -> Any:
    return _restored(tmp_path, optuna.samplers.TPESampler(seed=0), 0)


def _not_restored(tmp_path: Path) -> Any:
    searcher = _searcher(tmp_path, optuna.samplers.TPESampler(seed=0))
    for i in range(3):
        searcher.add_evaluated_point({"lr": 1e-3 * (i + 1)}, 0.5)
    return searcher


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (_random_search, "runs BasicVariantGenerator"),
        (_nothing, "runs no searcher"),
        (_another_sampler, "with RandomSampler"),
        (_history_lost, "holding 0 finished trials"),
        (_not_restored, "not restored from its saved state"),
    ],
    ids=["random search in its place", "none of ours", "another sampler", "history lost",
         "not restored"],
)  # fmt: skip
def test_a_searcher_that_is_not_the_restored_one_stops_the_search(
    tmp_path: Path, build: Callable[[Path], Any], why: str
) -> None:
    searcher = build(tmp_path)
    with pytest.raises(MimlTuneError, match=why) as info:
        SearcherCheck(lambda: searcher, "TPESampler", 3).setup()
    assert "stopped before any trial ran" in str(info.value)
