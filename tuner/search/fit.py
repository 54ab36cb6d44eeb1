"""The Tune experiment of a search: the trainable, the Tuner (new or restored) and its fit."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from tuner.data import MIMLDataset
from tuner.errors import MimlTuneError, first_line
from tuner.search.algorithms import (
    JOURNAL_FILE,
    describe_searcher,
    finished_in_study,
    forget_searcher,
    make_searcher,
    repeats_schedule,
    running_searcher,
    sampler_for,
    scheduler_for,
)
from tuner.search.budget import TimeBudget
from tuner.search.cluster import trials_at_once
from tuner.search.data import search_metrics
from tuner.search.options import LaunchOptions
from tuner.search.racing import Racing
from tuner.search.storage import RunFolder, download_searcher_state, finished_trials
from tuner.spec import SearchSpec
from tuner.trial import CVProtocol, search_trainable


class DriverCallbacks(Callback):
    """The callbacks of a search's Tune run config: what Tune pickles (into its ``tuner.pkl``)
    is only the search folder's URI; every hook goes to the live callbacks that the driver running
    the search registered under it in this process (:func:`fit_tuner`). A resumed search thus
    runs its own driver's callbacks, nothing is swapped into Tune's restored configuration."""

    def __init__(self, key: str) -> None:
        self.key = key

    def live(self) -> list[Any]:
        driver = _DRIVERS.get(self.key)
        if driver is None:
            raise MimlTuneError(
                f"no miml-tune driver runs the search at {self.key} in this process; continue "
                "it with `miml-tune resume`, not with Ray Tune directly"
            )
        return driver.callbacks

    def _each(self, hook: str, **info: Any) -> None:
        for callback in self.live():
            getattr(callback, hook)(**info)

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self._each(
            "setup", stop=stop, num_samples=num_samples, total_num_samples=total_num_samples,
            **info,
        )  # fmt: skip

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._each("on_step_begin", iteration=iteration, trials=trials, **info)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._each("on_step_end", iteration=iteration, trials=trials, **info)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_start", iteration=iteration, trials=trials, trial=trial, **info)

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_restore", iteration=iteration, trials=trials, trial=trial, **info)

    def on_trial_save(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_save", iteration=iteration, trials=trials, trial=trial, **info)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._each(
            "on_trial_result", iteration=iteration, trials=trials, trial=trial, result=result,
            **info,
        )  # fmt: skip

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_complete", iteration=iteration, trials=trials, trial=trial, **info)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_recover", iteration=iteration, trials=trials, trial=trial, **info)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._each("on_trial_error", iteration=iteration, trials=trials, trial=trial, **info)

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        self._each(
            "on_checkpoint", iteration=iteration, trials=trials, trial=trial,
            checkpoint=checkpoint, **info,
        )  # fmt: skip

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._each("on_experiment_end", trials=trials, **info)


class DriverStopper(Stopper):
    """The stopper of a search's Tune run config, pickled as the search folder's URI: it asks
    the driver's live :class:`~tuner.search.budget.TimeBudget` (registered under that URI), the
    one the driver's summary and trial runs read."""

    def __init__(self, key: str) -> None:
        self.key = key

    def budget(self) -> TimeBudget | None:
        driver = _DRIVERS.get(self.key)
        return driver.budget if driver is not None else None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        driver = _DRIVERS.get(self.key)
        if driver is None:
            return False
        if driver.budget is not None and driver.budget(trial_id, result):
            return True
        return driver.racing is not None and driver.racing(trial_id, result)

    def stop_all(self) -> bool:
        budget = self.budget()
        return budget is not None and budget.stop_all()


@dataclass
class _Driver:
    callbacks: list[Any]
    budget: TimeBudget | None
    racing: Racing | None = None


_DRIVERS: dict[str, _Driver] = {}  # search folder URI -> what its driver runs in this process


def fit_tuner(
    spec: SearchSpec,
    dev: MIMLDataset,
    protocol: CVProtocol,
    folder: RunFolder,
    trial_runs: Any,
    options: LaunchOptions,
    restore: bool = False,
    budget: TimeBudget | None = None,
    racing: Racing | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """Runs (or, with ``restore``, continues) the Tune experiment; returns its results and, for a
    resumed search, what was restored. With a time ``budget`` the experiment ends when it is
    spent, trials still training stopped, like a search that ran all its trials. With ``racing``
    a trial stops once the folds show it clearly worse than the best finished trial."""
    import ray
    from ray import tune

    from tuner.search.progress import ProgressLine, SearcherCheck

    # Tune saves its experiment state at most every 10 s by default: a driver killed in between
    # would, on resume, run again trials that had finished. Every second instead (the MLflow
    # runs of finished trials are closed only once a save holds them, see TrialRuns).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # Tune logs every failed trial's whole traceback on the terminal; the progress line says
    # one line per failed trial instead, and the trace stays in the trial's run and folder.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
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
            folds=protocol.splits(dev.labels),  # made once here, not in every trial worker
        ),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    progress = ProgressLine(
        spec.metric,
        spec.trials,
        stream=options.progress,
        budget_seconds=budget.seconds if budget is not None else None,
        repeats=protocol.repeats,
    )
    callbacks: list[Any] = [trial_runs, progress]
    resumed: dict[str, Any] | None = None
    running = functools.partial(running_searcher, folder.uri)
    forget_searcher(folder.uri)  # whatever a fit before this one in the process set up
    if restore:
        # Tune restores the run config the launch pickled (DriverCallbacks and DriverStopper
        # under this folder's URI): they find this driver's callbacks and budget.
        tuner, resumed = _restore_tuner(spec, folder, trainable)
        progress.count_restored(resumed["trials_before"])
        check = SearcherCheck(running, resumed["sampler"], resumed["trials_before"])
        callbacks = [check, *callbacks]
    else:
        run_config = tune.RunConfig(
            name=folder.name,
            storage_path=folder.root,
            callbacks=[DriverCallbacks(folder.uri)],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=options.max_failures, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            stop=DriverStopper(folder.uri),  # the time budget and the racing rule, if any
        )
        tuner = tune.Tuner(
            trainable,
            param_space=spec.param_space(),
            tune_config=tune.TuneConfig(
                search_alg=make_searcher(spec, folder),
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
    _DRIVERS[folder.uri] = _Driver(callbacks, budget, racing)
    try:
        # Ray's driver prints the raylet's notices (a worker that died, say) on stdout, which is
        # the summary's (launch --json): they go to stderr, with the progress line.
        with contextlib.redirect_stdout(sys.stderr):
            results = tuner.fit()
    finally:
        _DRIVERS.pop(folder.uri, None)
    ended = sum(1 for r in results if trial_ended(r.metrics, r.error))
    spent = budget is not None and budget.spent
    if not spent and (ended < len(results) or len(results) < spec.trials):
        # Tune catches Ctrl-C itself, saves its state and returns: this search did not finish.
        raise KeyboardInterrupt(
            f"search interrupted with {ended} of {spec.trials} trials done; continue it with "
            f"`miml-tune resume --name {folder.name}`"
        )
    if resumed is not None:
        # The searcher that ran is the one restored and checked, and it saw every trial.
        searcher = running()
        resumed["searcher"], resumed["sampler"] = describe_searcher(searcher)
        resumed["restored_by_tune"] = resumed["searcher"]
        resumed["trials_after"] = finished_in_study(searcher)
    forget_searcher(folder.uri)
    return results, resumed


def trial_ended(metrics: Mapping[str, Any] | None, error: Any) -> bool:
    """Whether a trial of a fit's results ended: it failed, the scheduler stopped it (Tune marks
    that result ``done``), or it reported its last epoch (the only report carrying
    ``per_fold``). Tune also marks TERMINATED the trials it stops when interrupted, so its count
    of terminated trials would count those as done. And ``done`` alone misses trials that
    finished before a resume: when a trial's function returns, Tune sets ``done`` on its last
    result in place, without marking the trial for its next experiment save, so the restored
    trial can lack it."""
    metrics = metrics or {}
    return error is not None or bool(metrics.get("done")) or "per_fold" in metrics


def _restore_tuner(
    spec: SearchSpec, folder: RunFolder, trainable: Any
) -> tuple[Any, dict[str, Any]]:
    """Tune's experiment restored, after its saved searcher state is checked: the search's
    Optuna searcher, saved for this folder, with the configured sampler, whose study holds every
    trial that had finished. Tune runs the searcher the launch pickled and restores it from that
    state as the run starts; :class:`SearcherCheck` checks it again there, before any trial.
    Ray Tune has restored experiments with a plain random search in place of the configured
    searcher; a search never goes on like that."""
    from ray import tune

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
    if not folder.is_uri and not (Path(folder.path) / JOURNAL_FILE).is_file():
        raise MimlTuneError(
            f"the search at {folder.uri} has no stored Optuna study ({JOURNAL_FILE}): it was "
            "launched by an older miml-tune; launch it again with --overwrite"
        )
    finished = finished_trials(folder)
    expected = type(sampler_for(spec.sampler, spec.seed, spec.trials)).__name__
    # The saved state is checked first, on a copy, so that a search that cannot go on fails
    # before Ray does anything.
    check = make_searcher(spec, folder)
    with tempfile.TemporaryDirectory(prefix="mt-searcher-") as tmp:
        if download_searcher_state(folder, Path(tmp)) is None:
            raise MimlTuneError(
                f"the Tune experiment at {folder.uri} holds no saved searcher state, so the "
                f"{spec.sampler} sampler's history cannot be restored; launch the search again "
                "with --overwrite"
            )
        check.restore_from_dir(tmp)
    if check.key != folder.uri:
        # Its study's journal is where the search was launched (or it has none).
        whose = f"the search at {check.key}" if check.key else "an older miml-tune"
        raise MimlTuneError(
            f"the searcher saved at {folder.uri} was saved by {whose}; resume a search where it "
            "was launched, or launch it again with --overwrite"
        )
    kind, sampler = describe_searcher(check)
    told = finished_in_study(check)
    if kind != "OptunaSearch" or sampler != expected or told < len(finished):
        raise MimlTuneError(
            f"the searcher saved at {folder.uri} is {kind} with {sampler} and {told} finished "
            f"trials, not OptunaSearch with {expected} and {len(finished)}; refusing to go on "
            "with a different search (launch again with --overwrite)"
        )
    info = {"searcher": kind, "sampler": sampler, "trials_before": len(finished)}
    return tuner, info
