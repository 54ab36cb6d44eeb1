"""The guard of a resumed search: it goes on only with the configured Optuna searcher and its
history, never with a random search that Tune put in its place."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from tuner.errors import MimlTuneError
from tuner.search import describe_searcher, finished_in_study
from tuner.search.progress import SearcherCheck


def _optuna(sampler: optuna.samplers.BaseSampler, finished: int) -> OptunaSearch:
    searcher = OptunaSearch(
        space={"lr": tune.loguniform(1e-4, 1e-1)}, metric="ap", mode="max", sampler=sampler
    )
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    for i in range(finished):
        searcher._ot_study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-3 * (i + 1)}, distributions={"lr": lr}, value=0.5
            )
        )
    return searcher


def test_the_restored_optuna_searcher_with_its_history_passes() -> None:
    searcher = ConcurrencyLimiter(_optuna(optuna.samplers.TPESampler(seed=0), 3), 2)
    assert describe_searcher(searcher) == ("OptunaSearch", "TPESampler")
    assert finished_in_study(searcher) == 3
    SearcherCheck(searcher, "TPESampler", 3).setup()


@pytest.mark.parametrize(
    ("searcher", "why"),
    [
        (BasicVariantGenerator(), "runs BasicVariantGenerator"),
        (_optuna(optuna.samplers.RandomSampler(seed=0), 3), "with RandomSampler"),
        (_optuna(optuna.samplers.TPESampler(seed=0), 0), "holding 0 finished trials"),
    ],
    ids=["random search in its place", "another sampler", "history lost"],
)
def test_a_searcher_that_is_not_the_restored_one_stops_the_search(searcher: Any, why: str) -> None:
    with pytest.raises(MimlTuneError, match=why) as info:
        SearcherCheck(searcher, "TPESampler", 3).setup()
    assert "stopped before any trial ran" in str(info.value)
