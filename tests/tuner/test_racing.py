"""The racing rule (issue 11): a trial stops once a one-sided Wilcoxon test over the folds it
shares with the incumbent says it is worse; unit cases on fixed fold values, the space's and the
command line's settings, and a real search through the CLI where the rule stops the trials of a
learning rate that cannot learn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy.stats import wilcoxon

from tests.searches import SMALL_SPACE, cli
from tuner.errors import MimlTuneError
from tuner.search.racing import Racing, racing_for
from tuner.spec import parse_space
from tuner.trial import FOLD_VALUES

GOOD = [0.61, 0.58, 0.64, 0.60, 0.57, 0.63]


def _result(epoch: int, values: list[float], target: int = 4, full: float = 1.0) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "target_epochs": target,
        "full_protocol": full,
        "average_precision": sum(values) / len(values),
        FOLD_VALUES: values,
    }


def _with_incumbent(alpha: float = 0.05, min_epoch: int = 1) -> Racing:
    racing = Racing("average_precision", "max", alpha, min_epoch=min_epoch)
    for epoch in range(1, 5):
        assert not racing("best", _result(epoch, [v - 0.02 * (4 - epoch) for v in GOOD]))
    assert racing.incumbent_id == "best"
    return racing


def test_a_trial_worse_on_every_shared_fold_is_stopped_and_the_p_value_is_scipys() -> None:
    racing = _with_incumbent()
    worse = [v - 0.1 for v in GOOD]
    assert racing("bad", _result(2, worse))
    stopped = racing.stopped["bad"]
    incumbent_at_2 = [v - 0.04 for v in GOOD]
    expected = wilcoxon(
        [b - a for a, b in zip(worse, incumbent_at_2, strict=True)], alternative="greater"
    )
    assert stopped["p_value"] == pytest.approx(expected.pvalue)
    assert stopped["p_value"] < 0.05 and stopped["folds"] == 6 and stopped["incumbent"] == "best"
    assert racing.describe()["stopped"] == 1


def test_few_folds_mixed_folds_or_a_better_trial_are_not_stopped() -> None:
    racing = _with_incumbent()
    # Three folds: the exact one-sided test's smallest p-value is 1/8, above the level.
    assert not racing("three", _result(2, [v - 0.1 for v in GOOD[:3]], full=0.5))
    # Worse on some folds, better on others: the folds cannot tell them apart.
    mixed = [v + (0.05 if i % 2 else -0.05) for i, v in enumerate(GOOD)]
    assert not racing("mixed", _result(4, mixed))
    assert not racing("better", _result(3, [v + 0.1 for v in GOOD]))
    assert racing.stopped == {}


def test_nothing_is_stopped_before_an_incumbent_or_before_the_grace_period() -> None:
    racing = Racing("average_precision", "max", 0.05, min_epoch=3)
    assert not racing("first", _result(2, [0.1] * 6))  # no trial has finished yet
    racing = _with_incumbent(min_epoch=3)
    assert not racing("early", _result(2, [v - 0.2 for v in GOOD]))
    assert racing("early", _result(3, [v - 0.2 for v in GOOD]))


def test_a_better_finished_trial_becomes_the_incumbent_and_a_worse_one_does_not() -> None:
    racing = _with_incumbent()
    for epoch in range(1, 5):
        racing("weaker", _result(epoch, [v - 0.001 for v in GOOD]))
    assert racing.incumbent_id == "best"
    for epoch in range(1, 5):
        racing("stronger", _result(epoch, [v + 0.05 for v in GOOD]))
    assert racing.incumbent_id == "stronger"
    # A trial longer than the incumbent is compared with the incumbent's last epoch.
    assert racing("long", _result(6, [v - 0.01 for v in GOOD], target=8))


def test_a_partial_protocol_trial_at_its_last_epoch_is_not_an_incumbent() -> None:
    racing = Racing("average_precision", "max", 0.05)
    racing("partial", _result(4, GOOD[:3], full=0.5))
    assert racing.incumbent_id is None


def test_min_mode_stops_a_trial_whose_loss_is_higher() -> None:
    racing = Racing("hamming_loss", "min", 0.05)
    losses = [0.10, 0.12, 0.09, 0.11, 0.13, 0.10]
    racing("best", {**_result(1, losses, target=1), "hamming_loss": 0.11})
    assert racing.incumbent_id == "best"
    assert racing("worse", _result(1, [v + 0.05 for v in losses], target=2))


def _space(**scheduler: Any) -> str:
    space = {**SMALL_SPACE, "scheduler": {**SMALL_SPACE["scheduler"], **scheduler}}
    return yaml.safe_dump(space)


def test_the_space_and_the_command_line_set_the_rule() -> None:
    spec = parse_space(_space(racing="wilcoxon", racing_alpha=0.1))
    assert (spec.racing, spec.racing_alpha) == ("wilcoxon", 0.1)
    racing = racing_for(spec)
    assert racing is not None and racing.alpha == 0.1 and racing.min_epoch == spec.grace_period
    assert spec.to_dict()["scheduler"]["racing"] == "wilcoxon"
    plain = parse_space(_space())
    assert plain.racing == "none" and racing_for(plain) is None
    assert "racing" not in plain.to_dict()["scheduler"]
    assert racing_for(plain.with_overrides(racing="wilcoxon")) is not None


@pytest.mark.parametrize(
    ("scheduler", "says"),
    [
        ({"racing": "sprint"}, "unknown scheduler.racing 'sprint'; allowed: none, wilcoxon"),
        ({"racing_alpha": 0.9}, "scheduler.racing_alpha must be a number in (0, 0.5], got 0.9"),
        ({"racing_alpha": "low"}, "scheduler.racing_alpha"),
    ],
)
def test_a_bad_racing_setting_is_one_line(scheduler: dict[str, Any], says: str) -> None:
    with pytest.raises(MimlTuneError) as caught:
        parse_space(_space(**scheduler))
    assert says in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow
def test_a_search_with_racing_stops_the_trials_that_cannot_learn(workdir: Path) -> None:
    """FIFO (no ASHA), six shared folds: only the racing rule can stop a trial early."""
    space = {
        **SMALL_SPACE,
        "name": "raced",
        "cv": {"folds": 3, "repeats": 2},
        "budget": {"trials": 4, "max_epochs": 3, "concurrency": 1},
        "scheduler": {"name": "fifo", "grace_period": 1, "racing": "wilcoxon"},
        "sampler": "random",
        "seed": 1,
        "params": {**SMALL_SPACE["params"], "lr": [5.0e-3, 1.0e-7], "k": 3, "epochs": 3},
    }
    path = workdir / "raced.yaml"
    path.write_text(yaml.safe_dump(space))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result = cli(workdir, "launch", "--space", str(path), "--tracking-uri", uri, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["racing"]["rule"] == "wilcoxon" and summary["racing"]["stopped"] >= 1

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("raced")
    runs = client.search_runs([experiment.experiment_id], "tags.`miml_tune.role` = 'trial'")
    assert len(runs) == 4
    raced = [r for r in runs if "miml_tune.pruned_by" in r.data.tags]
    assert len(raced) == summary["racing"]["stopped"]
    for run in raced:
        assert run.data.params["lr"] == "1e-07", run.data.params
        assert run.data.tags["miml_tune.status"] == "pruned"
        assert run.data.tags["miml_tune.pruned_by"].startswith("racing: worse than trial ")
        assert int(run.data.tags["miml_tune.epochs"]) < 3
        assert run.data.metrics["fold_epochs"] < 6 * 3
    for run in runs:
        if run.data.params["lr"] == "0.005":
            assert run.data.tags["miml_tune.status"] == "completed"
            assert run.data.metrics["fold_epochs"] == 6 * 3
    assert summary["best"]["config"]["lr"] == 5.0e-3


def test_a_resume_replays_finished_trials_so_the_incumbent_survives(tmp_path: Path) -> None:
    """The incumbent is rebuilt from the result files of trials that finished before a resume:
    a trial's rows as Tune wrote them, read back by trial id."""
    from tuner.search.storage import search_folder, trial_histories

    folder = search_folder(str(tmp_path), "raced")
    rows = {
        "t1": [_result(e, [v - 0.02 * (4 - e) for v in GOOD]) for e in range(1, 5)],
        "t2": [_result(e, [v - 0.1 for v in GOOD]) for e in range(1, 3)],  # did not finish
    }
    for i, (trial_id, trial_rows) in enumerate(rows.items()):
        trial_dir = tmp_path / "raced" / f"search_trainable_{trial_id}_{i}"
        trial_dir.mkdir(parents=True)
        lines = [json.dumps({**row, "trial_id": trial_id}) for row in trial_rows]
        (trial_dir / "result.json").write_text("\n".join(lines) + "\n")
    (tmp_path / "raced" / "junk").mkdir()
    (tmp_path / "raced" / "junk" / "result.json").write_text("{not json")
    histories = trial_histories(folder, ["t1", "t2"])
    assert sorted(histories) == ["t1", "t2"] and len(histories["t1"]) == 4

    racing = Racing("average_precision", "max", 0.05)
    for trial_id, trial_rows in histories.items():
        racing.replay(trial_id, trial_rows)
    assert racing.incumbent_id == "t1" and sorted(racing.incumbent) == [1, 2, 3, 4]
    assert racing.stopped == {} and racing.curves == {}
    assert racing("t3", _result(2, [v - 0.1 for v in GOOD]))  # raced against t1 at once
