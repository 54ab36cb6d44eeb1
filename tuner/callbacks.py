"""Ray Tune callbacks of a search: MLflow child runs and the live progress line."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from ray.tune import Callback

from tuner import tracking
from tuner.metrics import is_better


class TrialRuns(Callback):
    """Writes one MLflow child run per trial under the search's parent run, from the driver.

    Every run it opens it also closes: FINISHED with status ``completed`` or ``pruned`` (ASHA
    stopped it before its last epoch), FAILED with status ``error`` and the error message.
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str) -> None:
        self.uri = uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.runs: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.devices: set[str] = set()
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

    def _run_for(self, trial: Any) -> str:
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            from mlflow.entities import Param

            run = self.mlflow.create_run(
                self.experiment_id,
                run_name=str(trial),
                tags={
                    "mlflow.parentRunId": self.parent_run_id,
                    tracking.ROLE_TAG: "trial",
                    tracking.TRIAL_TAG: trial.trial_id,
                    tracking.STATUS_TAG: "running",
                },
            )
            run_id = str(run.info.run_id)
            self.runs[trial.trial_id] = run_id
            params = tracking.flatten_params(trial.config)
            self.mlflow.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run_for(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        run_id = self._run_for(trial)
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

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        last = self.last.get(trial.trial_id) or trial.last_result or {}
        status = "pruned" if is_pruned(last) else "completed"
        self.mlflow.set_tag(run_id, tracking.STATUS_TAG, status)
        self.mlflow.set_tag(run_id, "miml_tune.epochs", str(last.get("epoch", 0)))
        self.mlflow.set_terminated(run_id, "FINISHED")
        self.runs.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self._run_for(trial)
        self.mlflow.set_tag(run_id, tracking.STATUS_TAG, "error")
        message = tracking.trial_error_message(trial)
        self.mlflow.set_tag(run_id, tracking.ERROR_TAG, message[:4000])
        self.mlflow.set_terminated(run_id, "FAILED")
        self.runs.pop(trial.trial_id, None)

    def close_open_runs(self, status: str = "KILLED") -> None:
        """Ends the runs of trials that never finished (the driver was interrupted)."""
        for run_id in list(self.runs.values()):
            self.mlflow.set_tag(run_id, tracking.STATUS_TAG, "interrupted")
            self.mlflow.set_terminated(run_id, status)
        self.runs.clear()


def is_pruned(last_result: dict[str, Any]) -> bool:
    """A trial that stopped before its own last epoch was stopped by the scheduler."""
    return int(last_result.get("epoch", 0)) < int(last_result.get("target_epochs", 0))


class ProgressLine(Callback):
    """One live status line: trials running / done / pruned / failed, best so far, elapsed."""

    def __init__(
        self, metric: str, total: int, stream: TextIO | None = None, every: float = 1.0
    ) -> None:
        self.metric = metric
        self.total = total
        self.stream = stream or sys.stderr
        self.every = every
        self.started = time.monotonic()
        self.status: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.best: float = math.nan
        self._printed = 0.0
        self._last_line = ""
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.status[trial.trial_id] = "running"

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self.last[trial.trial_id] = result

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = self.last.get(trial.trial_id) or trial.last_result or {}
        pruned = is_pruned(last)
        self.status[trial.trial_id] = "pruned" if pruned else "done"
        value = last.get(self.metric, math.nan)
        if (
            not pruned
            and isinstance(value, (int, float))
            and (math.isnan(self.best) or is_better(self.metric, float(value), self.best))
        ):
            self.best = float(value)
        self._show(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.status[trial.trial_id] = "failed"
        self._show(force=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._show()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._show(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        counts = {
            k: list(self.status.values()).count(k) for k in ("running", "done", "pruned", "failed")
        }
        elapsed = int(time.monotonic() - self.started)
        best = "-" if math.isnan(self.best) else f"{self.best:.4f}"
        return (
            f"trials {sum(counts.values())}/{self.total}: {counts['running']} running, "
            f"{counts['done']} done, {counts['pruned']} pruned, {counts['failed']} failed | "
            f"best {self.metric} {best} | {elapsed // 60:02d}:{elapsed % 60:02d}"
        )

    def _show(self, force: bool = False) -> None:
        """On a terminal, rewrites the line every second; in a log, writes a line when the counts
        change (at most every 5 s) and otherwise once a minute."""
        now = time.monotonic()
        text = self.line()
        if not force:
            since = now - self._printed
            if self._tty and since < self.every:
                return
            same = text.split(" | ")[0] == self._last_line.split(" | ")[0]
            if not self._tty and since < (60 * self.every if same else 5 * self.every):
                return
        self._printed = now
        self._last_line = text
        self.stream.write(f"\r{text}" if self._tty else f"{text}\n")
        self.stream.flush()
