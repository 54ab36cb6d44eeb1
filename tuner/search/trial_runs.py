"""Ray Tune callback writing one MLflow child run per trial, from the driver."""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune import Callback

from tuner import tracking
from tuner.search.budget import TimeBudget
from tuner.search.progress import is_pruned, protocol_reached, short_config
from tuner.search.racing import Racing
from tuner.tracking import APPLICATION_ERROR

ATTEMPT_TAG = "miml_tune.attempt"  # 1, then 2 for a trial run again after a resume, ...


class TrialRuns(Callback):
    """Writes one MLflow child run per trial under the search's parent run, from the driver.

    Every run it opens it also closes: FINISHED with status ``completed`` or ``pruned`` (ASHA
    stopped it before its last epoch), FAILED with status ``error`` and the error message.

    With ``experiment_folder`` (the Tune experiment's path or URI) a finished trial's run is
    closed only once Tune has saved an experiment state after the trial ended: a driver killed in
    between leaves the run RUNNING, and the resume (which reruns what Tune's state did not hold
    as finished) closes or continues it; a run shown finished is never run again.

    A trial that Tune retries (its worker process died) keeps its run, tagged with the number of
    retries; a resumed search adopts the runs of the trials its earlier driver started.
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        parent_run_id: str,
        experiment_folder: str | None = None,
        budget: TimeBudget | None = None,
        *,
        dataset: dict[str, str] | None = None,
        racing: Racing | None = None,
    ) -> None:
        self.uri = uri
        self.dataset = dataset
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.experiment_folder = experiment_folder
        self.budget = budget
        self.racing = racing
        self.stopped: set[str] = set()  # trials the time budget stopped
        self.never_started: set[str] = set()  # paths of trials that ended without a run
        self.started: set[str] = set()  # trials this driver opened a run for
        self.runs: dict[str, str] = {}
        self.earlier: dict[str, str] = {}  # trial id -> run id, from an earlier driver
        self.attempts: dict[str, int] = {}  # trial id -> attempts begun before this driver
        self.last: dict[str, dict[str, Any]] = {}
        self.devices: set[str] = set()
        self.errors: dict[str, str] = {}
        self.retries: dict[str, int] = {}
        self.pending: list[tuple[float, str, str, dict[str, str]]] = []
        self._next_check = 0.0
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_client"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = None

    @property
    def mlflow(self) -> Any:
        if self._client is None:
            self._client = tracking.client(self.uri)
        return self._client

    def adopt_existing_runs(self, tune_trials: dict[str, dict[str, Any]]) -> int:
        """Takes over the runs an earlier driver of this search opened (found by the trial-id tag
        under the parent run). ``tune_trials`` is what Tune's saved state says of each trial
        (``status``, ``last_result``): a run still RUNNING whose trial Tune holds as finished is
        closed as that trial ended; the others are continued when Tune runs their trial again.
        Returns the number of runs adopted."""
        runs = self.mlflow.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.mlflow.parentRunId = '{self.parent_run_id}' and "
                f"tags.{tracking.ROLE_TAG} = 'trial'"
            ),
            max_results=50_000,
        )
        for run in runs:
            trial_id = run.data.tags.get(tracking.TRIAL_TAG)
            if not trial_id:
                continue
            run_id = str(run.info.run_id)
            known = tune_trials.get(trial_id) or {}
            if not known:
                # Started just before the driver died, after Tune's last save: Tune (and its
                # searcher) never heard of it, so the run is set aside, not counted as a trial.
                self._close(
                    run_id,
                    "KILLED",
                    {
                        tracking.ROLE_TAG: "discarded",
                        tracking.STATUS_TAG: "discarded",
                        tracking.ERROR_TAG: "started after Tune last saved its state, before "
                        "the driver stopped; the resumed search does not know this trial",
                    },
                )
                continue
            self.earlier[trial_id] = run_id
            self.attempts[trial_id] = int(run.data.tags.get(ATTEMPT_TAG, "1"))
            if run.info.status == "RUNNING" and known.get("status") in ("TERMINATED", "ERROR"):
                last = known.get("last_result") or {}
                if known["status"] == "TERMINATED":
                    tags = self._finished_tags(last)
                    self._close(run_id, "FINISHED", tags)
                else:
                    message = str(last.get(APPLICATION_ERROR) or "the trial failed (recorded by "
                                  "Tune before the driver stopped)")  # fmt: skip
                    self._close(run_id, "FAILED", self._error_tags(message))
        return len(self.earlier)

    def _run_for(self, trial: Any) -> str:
        run_id = self.runs.get(trial.trial_id)
        if run_id is not None:
            return run_id
        earlier = self.earlier.pop(trial.trial_id, None)
        attempt = 1
        if earlier is not None:
            # Tune runs the trial again after a resume, from epoch 1: a new run holds the new
            # attempt, so every curve has one value per epoch; the interrupted attempt's run
            # stays, marked superseded (not a trial of the search any more).
            attempt = self.attempts.get(trial.trial_id, 1) + 1
            self._close(
                earlier,
                "KILLED",
                {tracking.ROLE_TAG: "superseded", tracking.STATUS_TAG: "superseded"},
            )
        from mlflow.entities import Param

        run = self.mlflow.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.trial_id}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "mlflow.note.content": short_config(trial.config),
                tracking.ROLE_TAG: "trial",
                tracking.TRIAL_TAG: trial.trial_id,
                tracking.STATUS_TAG: "running",
                ATTEMPT_TAG: str(attempt),
                **({"miml_tune.superseded_run": earlier} if earlier else {}),
            },
        )
        run_id = str(run.info.run_id)
        self.runs[trial.trial_id] = run_id
        self.started.add(trial.trial_id)
        params = tracking.flatten_params(trial.config)
        self.mlflow.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        if self.dataset is not None:
            tracking.log_dataset_input(self.mlflow, run_id, self.dataset)
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_for(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        run_id = self._run_for(trial)
        if APPLICATION_ERROR in result:
            # The trial raised an error of its own and is about to fail: failing again would
            # give the same error, so Tune must not retry it (see tuner.trial.search_trainable).
            trial.max_failures = 0
            self.errors[trial.trial_id] = str(result[APPLICATION_ERROR])
            return
        self.last[trial.trial_id] = result
        step = int(result.get("epoch", 0))
        tracking.log_metrics(self.mlflow, run_id, tracking.numeric_metrics(result), step=step)
        folds: dict[str, float] = {}
        # Callbacks get the result as reported (schedulers and searchers get a flattened copy).
        for metric, values in (result.get("per_fold") or {}).items():
            for i, value in enumerate(values):
                if isinstance(value, (int, float)) and math.isfinite(value):
                    folds[f"fold{i:02d}.{metric}"] = float(value)
        if folds:
            tracking.log_metrics(self.mlflow, run_id, folds, step=step)
        if "device" in result and trial.trial_id not in self.devices:
            self.devices.add(trial.trial_id)
            self.mlflow.set_tag(run_id, "miml_tune.device", str(result["device"]))

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Tune retries the trial (its worker died): the same run goes on, the retry counted."""
        run_id = self._run_for(trial)
        self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
        self.mlflow.set_tag(run_id, "miml_tune.retries", str(self.retries[trial.trial_id]))
        self.mlflow.set_tag(run_id, "miml_tune.last_failure", tracking.trial_error_message(trial))
        self.last.pop(trial.trial_id, None)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        last = self.last.get(trial.trial_id) or trial.last_result or {}
        tags = self._finished_tags(last)
        if tags[tracking.STATUS_TAG] == "stopped":
            self.stopped.add(trial.trial_id)
        self._finish(trial.trial_id, run_id, "FINISHED", tags)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        message = self.errors.get(trial.trial_id) or tracking.trial_error_message(trial)
        self._finish(trial.trial_id, run_id, "FAILED", self._error_tags(message))

    def _finished_tags(self, last: dict[str, Any]) -> dict[str, str]:
        status = "pruned" if is_pruned(last) else "completed"
        raced = self.racing.stopped.get(str(last.get("trial_id"))) if self.racing else None
        if status == "pruned" and raced is None and self.budget is not None and self.budget.spent:
            status = "stopped"  # still training when the search's time budget ran out
        tags = {
            tracking.STATUS_TAG: status,
            "miml_tune.epochs": str(last.get("epoch", 0)),
            "miml_tune.protocol": protocol_reached(last),
        }
        if status == "pruned" and raced is not None:
            tags["miml_tune.pruned_by"] = (
                f"racing: worse than trial {raced['incumbent']} on {raced['folds']} folds at "
                f"epoch {raced['epoch']} (one-sided Wilcoxon p = {raced['p_value']:.3g})"
            )
        return tags

    @staticmethod
    def _error_tags(message: str) -> dict[str, str]:
        return {tracking.STATUS_TAG: "error", tracking.ERROR_TAG: message[:4000]}

    def _finish(self, trial_id: str, run_id: str, status: str, tags: dict[str, str]) -> None:
        self.runs.pop(trial_id, None)
        if self.experiment_folder is None:
            self._close(run_id, status, tags)
        else:
            self.pending.append((time.time(), run_id, status, tags))

    def _close(self, run_id: str, status: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.mlflow.set_tag(run_id, key, value)
        self.mlflow.set_terminated(run_id, status)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.pending or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + 0.5
        saved = _saved_at(self.experiment_folder)
        while self.pending and self.pending[0][0] < saved:
            _, run_id, status, tags = self.pending.pop(0)
            self._close(run_id, status, tags)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # A trial the experiment ended before it started (the time budget ran out while it was
        # PENDING, or while Tune was handing it a reused worker) has no run and is not a trial
        # of the search yet; a resume runs it.
        self.never_started = {
            str(t.path)
            for t in trials
            if t.trial_id not in self.started and t.trial_id not in self.earlier
        }
        self.flush()

    def flush(self) -> None:
        """Closes the runs of every trial that ended (the experiment ended, or was stopped and
        Tune saved its state on the way out)."""
        while self.pending:
            _, run_id, status, tags = self.pending.pop(0)
            self._close(run_id, status, tags)

    def end_open_runs(self, last_results: dict[str, dict[str, Any]]) -> None:
        """After the experiment ended: closes the runs of trials Tune stopped without a
        completion hook (trials still training when the time budget ran out), as ``stopped``
        (or ``pruned``), with their last results ``{trial id: metrics}``."""
        self.flush()
        for trial_id, run_id in list(self.runs.items()):
            last = last_results.get(trial_id) or self.last.get(trial_id) or {}
            tags = self._finished_tags(last)
            if tags[tracking.STATUS_TAG] == "stopped":
                self.stopped.add(trial_id)
            self._close(run_id, "FINISHED", tags)
            del self.runs[trial_id]

    def close_open_runs(self, status: str = "KILLED") -> None:
        """Ends the runs of trials that never finished (the driver was interrupted)."""
        self.flush()
        for run_id in list(self.runs.values()):
            self.mlflow.set_tag(run_id, tracking.STATUS_TAG, "interrupted")
            self.mlflow.set_terminated(run_id, status)
        self.runs.clear()


def _saved_at(experiment_folder: str | None) -> float:
    """When Tune last finished writing its experiment state (a file's modification time, in
    seconds since the epoch); 0 when it cannot be read."""
    if experiment_folder is None:
        return 0.0
    try:
        import pyarrow.fs

        fs, path = pyarrow.fs.FileSystem.from_uri(experiment_folder)
        entries = fs.get_file_info(pyarrow.fs.FileSelector(path))
    except Exception:  # the storage cannot be listed now: try again at the next step
        return 0.0
    times = [
        e.mtime.timestamp()
        for e in entries
        if e.base_name.startswith("experiment_state-") and e.mtime is not None
    ]
    return max(times, default=0.0)
