"""Ray Tune callbacks that talk to the person: the live progress line, and the check that a
resumed search runs the searcher it saved."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ray.tune import Callback

from tuner.errors import MimlTuneError
from tuner.metrics import is_better


class SearcherCheck(Callback):
    """Checks, as a resumed experiment starts and before any trial, that the searcher Tune runs
    is the restored one: the search's Optuna searcher with ``sampler``, restored by Tune from its
    saved state, whose study holds at least ``finished`` finished trials. Ray Tune has restored
    experiments with a plain random search in place of the configured searcher (Ray issue
    30861); a search never goes on like that.

    Args:
        running: returns the searcher Tune runs (``None`` when Tune set up none of the search's
            own, see :func:`tuner.search.algorithms.running_searcher`).
        sampler: the sampler class the search was launched with.
        finished: trials Tune's saved experiment holds as finished.
    """

    def __init__(self, running: Callable[[], Any], sampler: str, finished: int) -> None:
        self.running = running
        self.sampler = sampler
        self.finished = finished

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        from tuner.search.algorithms import describe_searcher, finished_in_study, was_restored

        searcher = self.running()
        kind, sampler = describe_searcher(searcher)
        told = finished_in_study(searcher)
        restored = was_restored(searcher)
        same = kind == "OptunaSearch" and sampler == self.sampler
        if not same or told < self.finished or not restored:
            how = "" if restored or kind != "OptunaSearch" else " not restored from its saved state"
            raise MimlTuneError(
                f"the resumed search runs {kind} with {sampler}{how} holding {told} finished "
                f"trials, not the restored OptunaSearch with {self.sampler} holding "
                f"{self.finished}; stopped before any trial ran (launch again with --overwrite)"
            )


def is_pruned(last_result: dict[str, Any]) -> bool:
    """A trial that stopped before its own last epoch, or before it was measured on every fold
    of the protocol (CV repeats as a fidelity), was stopped early: it cannot be the best."""
    if "epoch" not in last_result:
        return True  # stopped before its first report
    early = int(last_result["epoch"]) < int(last_result.get("target_epochs", 0))
    return early or float(last_result.get("full_protocol", 1.0)) < 1.0


def protocol_reached(last_result: dict[str, Any]) -> str:
    """``full`` or ``partial (R of the protocol's repeats)`` for a trial's last result."""
    if float(last_result.get("full_protocol", 1.0)) >= 1.0:
        return "full"
    return f"partial ({int(last_result.get('cv_repeats_done', 0))} repeats)"


def short_config(config: dict[str, Any], width: int = 500) -> str:
    """``key=value, ...`` of a configuration, short enough for a run's description."""
    text = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items())
    )
    return text if len(text) <= width else text[: width - 3] + "..."


class ProgressLine(Callback):
    """One live status line: trials running / done / pruned / failed, best so far, elapsed."""

    def __init__(
        self,
        metric: str,
        total: int,
        stream: TextIO | None = None,
        every: float = 1.0,
        budget_seconds: float | None = None,
    ) -> None:
        self.budget_seconds = budget_seconds
        self.metric = metric
        self.total = total
        self.stream = stream or sys.stderr
        self.every = every
        self.started = time.monotonic()
        self.status: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.best: float = math.nan
        self.restored = 0  # trials a resumed search had finished before
        self._printed = 0.0
        self._last_line = ""
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def count_restored(self, finished: int) -> None:
        """A resumed search: ``finished`` trials were done before this driver started."""
        self.restored = finished

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
        from tuner.tracking import trial_error_message

        self.status[trial.trial_id] = "failed"
        # One line per failed trial; its whole trace is in its MLflow run and its Tune folder.
        reason = trial_error_message(trial)[:300]
        start = "\n" if self._tty else ""  # off the line that a terminal rewrites
        self.stream.write(f"{start}trial {trial.trial_id} failed: {reason}\n")
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
        earlier = f", {self.restored} before resume" if self.restored else ""
        left = ""
        if self.budget_seconds:
            rest = max(0, int(self.budget_seconds) - elapsed)
            left = f" (budget left {rest // 60:02d}:{rest % 60:02d})"
        return (
            f"trials {sum(counts.values()) + self.restored}/{self.total}{earlier}: "
            f"{counts['running']} running, "
            f"{counts['done']} done, {counts['pruned']} pruned, {counts['failed']} failed | "
            f"best {self.metric} {best} | {self.fold_epochs()} fold-epochs | "
            f"{elapsed // 60:02d}:{elapsed % 60:02d}{left}{self._running()}"
        )

    def _running(self, shown: int = 3) -> str:
        """The running trials' epochs and current objective: `` | 00003 epoch 4/30 0.612``."""
        parts: list[str] = []
        for trial_id, state in self.status.items():
            if state != "running" or len(parts) == shown:
                continue
            last = self.last.get(trial_id) or {}
            short = trial_id.rsplit("_", 1)[-1]
            value = last.get(self.metric)
            if "epoch" not in last:
                parts.append(f"{short} starting")
            else:
                shown_value = f" {value:.3f}" if isinstance(value, (int, float)) else ""
                parts.append(
                    f"{short} epoch {last['epoch']}/{last.get('target_epochs', '?')}{shown_value}"
                )
        return f" | {', '.join(parts)}" if parts else ""

    def fold_epochs(self) -> int:
        """Fold models x epochs trained so far by this driver's trials."""
        return sum(int(r.get("fold_epochs", 0) or 0) for r in self.last.values())

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
        self.stream.write(f"\r\033[K{text}" if self._tty else f"{text}\n")
        self.stream.flush()
