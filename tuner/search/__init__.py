"""The search: a Ray Tune ``Tuner`` with an Optuna sampler and ASHA over the CV trial.

Data flow (DESIGN.md): the space is validated, the dataset is loaded and checked once in the
driver, split into development and holdout parts (the holdout never reaches a trial), the
development part goes into Ray's object store, and each trial runs the CV protocol of one
configuration, reporting fold means epoch by epoch. The peers are scored on the very same folds
so that every search result can be read against them.

One job per module: :mod:`.driver` (launch, resume), :mod:`.options`, :mod:`.algorithms`
(sampler, scheduler, searcher), :mod:`.data`, :mod:`.cluster` (Ray and resources),
:mod:`.storage` (the search's folder), :mod:`.fit` (the Tune experiment), :mod:`.results`,
:mod:`.runs` and :mod:`.trial_runs` (MLflow), :mod:`.progress` (what the terminal shows).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.search.algorithms import (
        describe_searcher,
        finished_in_study,
        sampler_for,
        scheduler_for,
    )
    from tuner.search.cluster import (
        check_storage_for_cluster,
        mount_table,
        storage_is_shared,
        trials_at_once,
    )
    from tuner.search.data import check_model_fits, prepare_data, search_metrics
    from tuner.search.driver import launch, resume
    from tuner.search.options import (
        DATA_PATH_TAG,
        DEFAULT_STORAGE,
        MAX_FAILURES,
        PEER_MODEL,
        STATE_FILE,
        LaunchOptions,
        parse_address,
    )
    from tuner.search.results import leaderboard, leaderboard_csv, rank


# Each public name -> the module that defines it. Imported on first use (PEP 562): the command
# line imports this package before it reads a space file, and its modules pull in Ray Tune,
# Optuna, torch and scikit-learn, which take seconds; a launch starts them in the background.
_HOMES = {
    "describe_searcher": "algorithms",
    "finished_in_study": "algorithms",
    "sampler_for": "algorithms",
    "scheduler_for": "algorithms",
    "check_storage_for_cluster": "cluster",
    "mount_table": "cluster",
    "storage_is_shared": "cluster",
    "trials_at_once": "cluster",
    "check_model_fits": "data",
    "prepare_data": "data",
    "search_metrics": "data",
    "launch": "driver",
    "resume": "driver",
    "DATA_PATH_TAG": "options",
    "DEFAULT_STORAGE": "options",
    "MAX_FAILURES": "options",
    "PEER_MODEL": "options",
    "STATE_FILE": "options",
    "LaunchOptions": "options",
    "parse_address": "options",
    "leaderboard": "results",
    "leaderboard_csv": "results",
    "rank": "results",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DATA_PATH_TAG",
    "DEFAULT_STORAGE",
    "MAX_FAILURES",
    "PEER_MODEL",
    "STATE_FILE",
    "LaunchOptions",
    "check_model_fits",
    "check_storage_for_cluster",
    "describe_searcher",
    "finished_in_study",
    "launch",
    "leaderboard",
    "leaderboard_csv",
    "mount_table",
    "parse_address",
    "prepare_data",
    "rank",
    "resume",
    "sampler_for",
    "scheduler_for",
    "search_metrics",
    "storage_is_shared",
    "trials_at_once",
]
