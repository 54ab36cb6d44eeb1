"""Ray Tune callbacks that talk to the person: the live progress line, and the check that a
resumed search runs the searcher it saved."""

from __future__ import annotations

import math
import shutil
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
    """What a search is doing, as it does it.

    On a terminal, a small table rewritten in place every second: a status line (trials ended
    of the budget, running / done / pruned / failed, the best value and its trial, fold-epochs,
    elapsed, the time budget left or a rough ETA), then one row per running trial (its epoch of
    its target, the repeats it is measured on, its current objective). Off a terminal (a log,
    CI, ``miml-tune jobs logs``) one plain line per event: a trial started, ended (done, pruned
    or failed, with its value), and the status line once a minute.

    Args:
        metric: the objective.
        total: trials the search runs.
        stream: where to write (standard error by default).
        every: seconds between two refreshes of the table.
        budget_seconds: the search's time budget, if any.
        repeats: the protocol's CV repeats (a running trial shows how many it has reached).
    """

    def __init__(
        self,
        metric: str,
        total: int,
        stream: TextIO | None = None,
        every: float = 1.0,
        budget_seconds: float | None = None,
        repeats: int | None = None,
    ) -> None:
        self.budget_seconds = budget_seconds
        self.metric = metric
        self.total = total
        self.repeats = repeats
        self.stream = stream or sys.stderr
        self.every = every
        self.started = time.monotonic()
        self.status: dict[str, str] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.best: float = math.nan
        self.best_trial = ""
        self.restored = 0  # trials a resumed search had finished before
        self._printed = 0.0
        self._drawn = 0  # lines of the table now on the terminal
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def count_restored(self, finished: int) -> None:
        """A resumed search: ``finished`` trials were done before this driver started."""
        self.restored = finished

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.status[trial.trial_id] = "running"
        config = getattr(trial, "config", None)
        detail = f": {short_config(config, 200)}" if isinstance(config, dict) and config else ""
        self._event(f"trial {_short(trial.trial_id)} started{detail}")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        first = "epoch" not in self.last.get(trial.trial_id, {})
        self.last[trial.trial_id] = result
        if self._tty:
            self._show(force=first)  # a trial's first epoch is shown as soon as it is reported

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = self.last.get(trial.trial_id) or trial.last_result or {}
        pruned = is_pruned(last)
        self.status[trial.trial_id] = "pruned" if pruned else "done"
        value = last.get(self.metric, math.nan)
        best = ""
        if (
            not pruned
            and isinstance(value, (int, float))
            and math.isfinite(value)
            and (math.isnan(self.best) or is_better(self.metric, float(value), self.best))
        ):
            self.best, self.best_trial = float(value), trial.trial_id
            best = " (best so far)"
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
        where = f"epoch {last.get('epoch', 0)}/{last.get('target_epochs', '?')}"
        self._event(
            f"trial {_short(trial.trial_id)} {self.status[trial.trial_id]} at {where}, "
            f"{protocol_reached(last)} protocol: {self.metric} {shown}{best}",
            ended=True,
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from tuner.tracking import trial_error_message

        self.status[trial.trial_id] = "failed"
        # One line per failed trial; its whole trace is in its MLflow run and its Tune folder.
        reason = trial_error_message(trial)[:300]
        self._event(f"trial {_short(trial.trial_id)} failed: {reason}", ended=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._show()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._show(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0

    def line(self) -> str:
        """The status line: counts, best, fold-epochs, elapsed and what is left."""
        counts = {
            k: list(self.status.values()).count(k) for k in ("running", "done", "pruned", "failed")
        }
        ended = counts["done"] + counts["pruned"] + counts["failed"] + self.restored
        elapsed = time.monotonic() - self.started
        best = "-" if math.isnan(self.best) else f"{self.best:.4f}"
        if self.best_trial:
            best += f" (trial {_short(self.best_trial)})"
        earlier = f", {self.restored} before resume" if self.restored else ""
        return (
            f"trials {ended}/{self.total} ended{earlier}: {counts['running']} running, "
            f"{counts['done']} done, {counts['pruned']} pruned, {counts['failed']} failed | "
            f"best {self.metric} {best} | {self.fold_epochs()} fold-epochs | "
            f"{_clock(elapsed)}{self._left(elapsed, ended - self.restored)}"
        )

    def _left(self, elapsed: float, ended: int) -> str:
        """The time budget left, else a rough ETA from the pace of the trials ended so far."""
        if self.budget_seconds:
            return f" (budget left {_clock(max(0, int(self.budget_seconds) - int(elapsed)))})"
        remaining = self.total - ended - self.restored
        if ended == 0 or remaining <= 0:
            return ""
        return f" (ETA ~{_clock(elapsed / ended * remaining)})"

    def rows(self, shown: int = 8) -> list[str]:
        """One row per running trial: id, epoch of target, repeats reached, current objective."""
        running = [t for t, state in self.status.items() if state == "running"]
        out: list[str] = []
        for trial_id in running[:shown]:
            last = self.last.get(trial_id) or {}
            if "epoch" not in last:
                out.append(f"  {_short(trial_id)}  starting")
                continue
            value = last.get(self.metric)
            shown_value = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
            repeats = last.get("cv_repeats_done")
            of = f"/{self.repeats}" if self.repeats else ""
            reached = f"  repeats {int(repeats)}{of}" if repeats is not None else ""
            epoch = f"epoch {last['epoch']}/{last.get('target_epochs', '?')}"
            out.append(f"  {_short(trial_id)}  {epoch:<12}{reached}  {self.metric} {shown_value}")
        if len(running) > shown:
            out.append(f"  ... and {len(running) - shown} more running")
        return out

    def fold_epochs(self) -> int:
        """Fold models x epochs trained so far by this driver's trials."""
        return sum(int(r.get("fold_epochs", 0) or 0) for r in self.last.values())

    def _event(self, text: str, ended: bool = False) -> None:
        """One line about one trial: above the table on a terminal; in a log a plain line, and
        the status line after it when a trial ``ended`` (the counts changed)."""
        if self._tty:
            self.stream.write(self._erase() + text + "\n")
            self._drawn = 0
            self._show(force=True)
        else:
            self.stream.write(text + "\n")
            if ended:
                self._show(force=True)
            self.stream.flush()

    def _erase(self) -> str:
        """Escape codes that move to the table's first line and clear it and what follows."""
        up = f"\033[{self._drawn - 1}F" if self._drawn > 1 else ""
        return f"{up}\r\033[J"

    def _show(self, force: bool = False) -> None:
        """On a terminal, redraws the table every second; in a log, writes the status line once
        a minute (events have their own lines)."""
        now = time.monotonic()
        since = now - self._printed
        if not force and since < (self.every if self._tty else 60 * self.every):
            return
        self._printed = now
        if self._tty:
            # Each line clipped to the terminal's width: a wrapped line would take two rows,
            # and the next drawing would go back up one row too few.
            width = max(20, shutil.get_terminal_size().columns - 1)
            lines = [line[:width] for line in (*fit(self.line(), width), *self.rows())]
            self.stream.write(self._erase() + "\n".join(lines))
            self._drawn = len(lines)
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


def fit(status: str, width: int) -> list[str]:
    """The status line in lines of at most ``width`` characters, broken between its
    ``" | "``-separated parts (a part longer than the width is cut)."""
    lines: list[str] = []
    for part in status.split(" | "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " | " + part
        else:
            lines.append(part[:width])
    return lines


def _short(trial_id: str) -> str:
    """``00003`` of Tune's ``ab12cd_00003``."""
    return trial_id.rsplit("_", 1)[-1]


def _clock(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    clock = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{hours}:{clock}" if hours else clock
