"""The Tune experiment of a search: the trainable, the Tuner (new or restored) and its fit."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuner import tracking
from tuner.data import MIMLDataset
from tuner.errors import MimlTuneError, first_line
from tuner.search.algorithms import (
    describe_searcher,
    finished_in_study,
    make_searcher,
    repeats_schedule,
    sampler_for,
    scheduler_for,
)
from tuner.search.budget import TimeBudget
from tuner.search.cluster import trials_at_once
from tuner.search.data import search_metrics
from tuner.search.options import LaunchOptions
from tuner.search.storage import RunFolder, download_searcher_state, finished_trials
from tuner.spec import SearchSpec
from tuner.trial import CVProtocol, RepeatsSchedule, tune_trainable


def search_trainable(
    config: dict[str, Any],
    *,
    data: MIMLDataset,
    model: str,
    protocol: CVProtocol,
    max_epochs: int,
    metrics: Sequence[str],
    metric: str,
    schedule: RepeatsSchedule | None = None,
) -> None:
    """The search's Tune function: :func:`tuner.trial.tune_trainable`, with an error raised by
    the trial itself (a diverging loss, a bad configuration) announced to the driver before it
    is raised, so that the driver does not retry it: only a trial whose worker process died is
    retried (Tune's ``max_failures`` counts both kinds alike)."""
    from ray import tune

    try:
        tune_trainable(
            config, data=data, model=model, protocol=protocol, max_epochs=max_epochs,
            metrics=metrics, schedule=schedule,
        )  # fmt: skip
    except Exception as exc:
        # Tune checks that every result carries the searched metric: NaN, which the scheduler,
        # the searcher and the MLflow callback all skip.
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]
        tune.report({metric: math.nan, tracking.APPLICATION_ERROR: message})
        raise


def fit_tuner(
    spec: SearchSpec,
    dev: MIMLDataset,
    protocol: CVProtocol,
    folder: RunFolder,
    trial_runs: Any,
    options: LaunchOptions,
    restore: bool = False,
    budget: TimeBudget | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """Runs (or, with ``restore``, continues) the Tune experiment; returns its results and, for a
    resumed search, what was restored. With a time ``budget`` the experiment ends when it is
    spent, trials still training stopped, like a search that ran all its trials."""
    import ray
    from ray import tune

    from tuner.search.progress import ProgressLine, SearcherCheck

    # Tune saves its experiment state at most every 10 s by default: a driver killed in between
    # would, on resume, run again trials that had finished. Every second instead (the MLflow
    # runs of finished trials are closed only once a save holds them, see TrialRuns).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    concurrency = spec.concurrency or trials_at_once(ray.cluster_resources(), options)
    trainable = tune.with_resources(
        tune.with_parameters(
            search_trainable,
            data=dev,
            model=spec.model,
            protocol=protocol,
            max_epochs=spec.max_epochs,
            metrics=search_metrics(dev),
            metric=spec.metric,
            schedule=repeats_schedule(spec),
        ),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    progress = ProgressLine(spec.metric, spec.trials, stream=options.progress)
    run_config = tune.RunConfig(
        name=folder.name,
        storage_path=folder.root,
        callbacks=[trial_runs, progress],
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=options.max_failures, fail_fast=False),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        stop=budget,
    )
    resumed: dict[str, Any] | None = None
    if restore:
        tuner, searcher, resumed = _restore_tuner(spec, folder, trainable)
        progress.count_restored(resumed["trials_before"])
        internal = tuner._local_tuner
        check = SearcherCheck(searcher, resumed["sampler"], resumed["trials_before"])
        run_config.callbacks = [check, *(run_config.callbacks or [])]
        internal._run_config.callbacks = run_config.callbacks
        internal._run_config.failure_config = run_config.failure_config
        internal._run_config.verbose = 0
        internal._run_config.stop = budget
    else:
        searcher = make_searcher(spec)
        tuner = tune.Tuner(
            trainable,
            param_space=spec.param_space(),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler_for(spec),
                num_samples=spec.trials,
                max_concurrent_trials=concurrency,
                reuse_actors=True,
                # ASHA carries metric and mode itself; Tune refuses them twice.
                metric=spec.metric if spec.scheduler == "fifo" else None,
                mode=spec.mode if spec.scheduler == "fifo" else None,
            ),
            run_config=run_config,
        )
    # Ray's driver prints the raylet's notices (a worker that died, say) on stdout, which is
    # the summary's (launch --json): they go to stderr, with the progress line.
    with contextlib.redirect_stdout(sys.stderr):
        results = tuner.fit()
    analysis = getattr(results, "_experiment_analysis", None)  # Tune's Trial objects
    unfinished = [
        t for t in getattr(analysis, "trials", []) if t.status not in ("TERMINATED", "ERROR")
    ]
    spent = budget is not None and budget.spent
    if unfinished or (len(results) < spec.trials and not spent):
        # Tune catches Ctrl-C itself, saves its state and returns: this search did not finish.
        raise KeyboardInterrupt(
            f"search interrupted with {len(results) - len(unfinished)} of {spec.trials} trials "
            f"done; continue it with `miml-tune resume --name {folder.name}`"
        )
    if resumed is not None:
        # The searcher that ran is the one restored and checked, and it saw every trial.
        resumed["searcher"], resumed["sampler"] = describe_searcher(searcher)
        resumed["trials_after"] = finished_in_study(searcher)
    return results, resumed


def _restore_tuner(
    spec: SearchSpec, folder: RunFolder, trainable: Any
) -> tuple[Any, Any, dict[str, Any]]:
    """Tune's experiment restored, with the searcher restored from the experiment folder and
    checked: an Optuna searcher with the configured sampler whose study holds every trial that
    had finished. Ray Tune has restored experiments with a plain random search in place of the
    configured searcher; a search never goes on like that."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    try:
        tuner = tune.Tuner.restore(
            folder.uri,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
            param_space=spec.param_space(),
        )
    except Exception as exc:
        first = first_line(exc)
        raise MimlTuneError(
            f"cannot restore the Tune experiment at {folder.uri}: {first}; launch the search "
            "again with --overwrite"
        ) from None
    internal: Any = tuner._local_tuner
    restored = describe_searcher(internal._tune_config.search_alg)[0]
    finished = finished_trials(folder)
    expected = type(sampler_for(spec.sampler, spec.seed, spec.trials)).__name__
    # Whatever Tune unpickled, the searcher that continues is one built as the launch built it;
    # Tune gives it the saved state of the launch's searcher (its Optuna study) as the run
    # starts, and SearcherCheck checks that before the first trial. The saved state is checked
    # here first, on a copy, so that a search that cannot go on fails before Ray does anything.
    check = make_searcher(spec)
    with tempfile.TemporaryDirectory(prefix="mt-searcher-") as tmp:
        if download_searcher_state(folder, Path(tmp)) is None:
            raise MimlTuneError(
                f"the Tune experiment at {folder.uri} holds no saved searcher state, so the "
                f"{spec.sampler} sampler's history cannot be restored; launch the search again "
                "with --overwrite"
            )
        check.restore_from_dir(tmp)
    sampler = describe_searcher(check)[1]
    told = finished_in_study(check)
    if not isinstance(check, OptunaSearch) or sampler != expected or told < len(finished):
        raise MimlTuneError(
            f"the searcher saved at {folder.uri} is {type(check).__name__} with {sampler} and "
            f"{told} finished trials, not OptunaSearch with {expected} and {len(finished)}; "
            "refusing to go on with a different search (launch again with --overwrite)"
        )
    searcher = make_searcher(spec)
    internal._tune_config.search_alg = searcher
    info = {
        "searcher": type(searcher).__name__,
        "sampler": sampler,
        "trials_before": len(finished),
        "restored_by_tune": restored,
    }
    return tuner, searcher, info
