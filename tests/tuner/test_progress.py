"""The live progress line of a search (issue 13): what runs, how far, what is left."""

from __future__ import annotations


def test_the_progress_line_shows_the_running_trials_and_the_budget_left() -> None:
    """Each running trial's epoch of its target and current objective, and the time budget
    left (issue 13); the counts it begins with are as before."""
    import io
    from types import SimpleNamespace

    from tuner.search.progress import ProgressLine

    line = ProgressLine("average_precision", 10, stream=io.StringIO(), budget_seconds=600)
    first, second = SimpleNamespace(trial_id="ab12_00003"), SimpleNamespace(trial_id="ab12_00004")
    line.on_trial_start(0, [], first)
    line.on_trial_start(0, [], second)
    result = {"epoch": 4, "target_epochs": 30, "average_precision": 0.6123, "fold_epochs": 12}
    line.on_trial_result(0, [], first, result)
    text = line.line()
    assert text.startswith("trials 2/10: 2 running, 0 done, 0 pruned, 0 failed | "), text
    assert "| 12 fold-epochs | 00:00 (budget left 10:00) | " in text, text
    assert text.endswith("| 00003 epoch 4/30 0.612, 00004 starting"), text
