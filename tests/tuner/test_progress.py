"""What a search shows while it runs (issue 13): the live table on a terminal, plain event lines
in a log."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from tuner.search.progress import ProgressLine


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _two_running(stream: io.StringIO, budget: float | None = 600) -> ProgressLine:
    line = ProgressLine("average_precision", 10, stream=stream, budget_seconds=budget, repeats=5)
    first = SimpleNamespace(trial_id="ab12_00003", config={"lr": 0.01, "layers": 2})
    second = SimpleNamespace(trial_id="ab12_00004", config={"lr": 0.001, "layers": 4})
    line.on_trial_start(0, [], first)
    line.on_trial_start(0, [], second)
    result = {
        "epoch": 4,
        "target_epochs": 30,
        "average_precision": 0.6123,
        "fold_epochs": 12,
        "cv_repeats_done": 1,
    }
    line.on_trial_result(0, [], first, result)
    return line


def test_the_status_line_counts_ended_trials_and_shows_the_budget_left() -> None:
    line = _two_running(io.StringIO())
    text = line.line()
    assert text.startswith("trials 0/10 ended: 2 running, 0 done, 0 pruned, 0 failed | "), text
    assert text.endswith("| 12 fold-epochs | 00:00 (budget left 10:00)"), text
    assert line.rows() == [
        "  00003  epoch 4/30    repeats 1/5  average_precision 0.6123",
        "  00004  starting",
    ]


def test_the_best_trial_is_named_and_an_eta_follows_the_pace_without_a_budget() -> None:
    line = _two_running(io.StringIO(), budget=None)
    done = {"epoch": 30, "target_epochs": 30, "average_precision": 0.65, "full_protocol": 1.0}
    trial = SimpleNamespace(trial_id="ab12_00003", last_result=done)
    line.on_trial_result(0, [], trial, done)
    line.started -= 100  # the first trial ended after 100 s
    line.on_trial_complete(0, [], trial)
    text = line.line()
    assert "trials 1/10 ended: 1 running, 1 done" in text, text
    assert "best average_precision 0.6500 (trial 00003)" in text, text
    assert re.search(r"\(ETA ~1[45]:\d\d\)$", text), text  # 9 trials left at 100 s each


def test_on_a_terminal_the_table_is_redrawn_in_place(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "200")  # the status on one line
    stream = _Terminal()
    line = _two_running(stream)
    line._show(force=True)
    line._show(force=True)
    out = stream.getvalue()
    # The second drawing goes back up over the first's three lines (status and two trials).
    last = out.rsplit("\033[2F", 1)
    assert len(last) == 2, out
    assert last[1].startswith("\r\033[J")
    drawn = last[1][len("\r\033[J") :].split("\n")
    assert drawn[0].startswith("trials 0/10 ended: 2 running")
    assert drawn[1:] == [
        "  00003  epoch 4/30    repeats 1/5  average_precision 0.6123",
        "  00004  starting",
    ]


def test_off_a_terminal_each_event_is_one_plain_line() -> None:
    stream = io.StringIO()
    line = _two_running(stream)
    pruned = {"epoch": 5, "target_epochs": 30, "average_precision": 0.51, "full_protocol": 0.0,
              "cv_repeats_done": 1}  # fmt: skip
    trial = SimpleNamespace(trial_id="ab12_00004", last_result=pruned)
    line.on_trial_result(0, [], trial, pruned)
    line.on_trial_complete(0, [], trial)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "trial 00003 started: layers=2, lr=0.01",
        "trial 00004 started: layers=4, lr=0.001",
        "trial 00004 pruned at epoch 5/30, partial (1 repeats) protocol: average_precision 0.5100",
        # A trial ended, so the counts changed: the status line follows.
        "trials 1/10 ended: 1 running, 0 done, 1 pruned, 0 failed | best average_precision - | "
        "12 fold-epochs | 00:00 (budget left 10:00)",
    ]
    assert "\033" not in stream.getvalue()


def test_a_real_launch_on_a_terminal_shows_the_live_table(finished_search) -> None:  # type: ignore[no-untyped-def]
    """The shared small search ran with its standard error on a pseudo-terminal: what a person
    saw there (issue 13)."""
    import pytest

    out = finished_search.terminal
    # What is starting, at once, before anything else.
    assert out.startswith("\r\x1b[Kmiml-tune launch: reading space"), out[:300]
    # The table is redrawn in place: back up over its lines, clear, draw again.
    assert re.search(r"\x1b\[\d+F\r\x1b\[J", out), out[-2000:]
    screens = [part.split("\n") for part in re.split(r"(?:\x1b\[\d+F)?\r\x1b\[J", out)]
    tables = [s for s in screens if s[0].startswith("trials ")]
    if not tables:
        pytest.fail(f"no live table was drawn: {out[-2000:]}")
    status = re.compile(
        r"trials \d/4 ended: \d running, \d done, \d pruned, \d failed \| best average_precision "
        r"(-|0\.\d{4} \(trial \w+\)) \| \d+ fold-epochs \| \d\d:\d\d"
    )
    assert all(status.match(t[0]) for t in tables), [t[0] for t in tables]
    # A running trial's row: its id, epoch of its target, repeats reached of 1, current value.
    row = re.compile(r"  \w+  epoch \d/6 +repeats 1/1  average_precision 0\.\d{4}$")
    assert any(row.match(line) for t in tables for line in t[1:]), tables[-3:]
    # Events above the table, and the last drawing counts every trial as ended.
    assert re.search(r"\x1b\[Jtrial \w+ (done|pruned) at epoch \d/6", out), out[-2000:]
    assert tables[-1][0].startswith("trials 4/4 ended: 0 running"), tables[-1]


def test_a_search_says_where_to_watch_it_in_mlflow(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tuner.tracking import where_to_watch

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    server = where_to_watch("http://127.0.0.1:5001/", "7", "birds")
    assert server == (
        "MLflow: experiment 'birds' at "
        "http://127.0.0.1:5001/#/experiments/7/runs?viewStateShareKey=miml-tune"
    )
    local = where_to_watch(f"sqlite:///{tmp_path / 'mlflow.db'}", "3", "birds")
    assert "watch it with `miml-tune ui`, then http://127.0.0.1:5000/#/experiments/3/runs" in local
    other = where_to_watch("sqlite:////elsewhere/m.db", "3", "birds")
    assert "`miml-tune ui --tracking-uri sqlite:////elsewhere/m.db`" in other


def test_on_a_narrow_terminal_the_status_breaks_between_its_parts() -> None:
    from tuner.search.progress import fit

    status = (
        "trials 2/4 ended: 1 running, 2 done, 0 pruned, 0 failed | best average_precision "
        "0.5996 (trial 38d030ee) | 36 fold-epochs | 00:13 (ETA ~00:13)"
    )
    assert fit(status, 200) == [status]
    assert fit(status, 79) == [
        "trials 2/4 ended: 1 running, 2 done, 0 pruned, 0 failed",
        "best average_precision 0.5996 (trial 38d030ee) | 36 fold-epochs",
        "00:13 (ETA ~00:13)",
    ]
    assert all(len(line) <= 30 for line in fit(status, 30))
