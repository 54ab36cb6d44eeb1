"""Best-trial selection and the sampler / scheduler factories of the search."""

from __future__ import annotations

import math

import optuna
import pytest

from tuner.errors import MimlTuneError
from tuner.search import leaderboard_csv, rank, sampler_for, scheduler_for
from tuner.search.algorithms import asha_settings, repeats_schedule, tpe_startup_trials
from tuner.spec import load_space


def _row(order: int, status: str, value: float, std: float = 0.01) -> dict:
    return {
        "trial_id": f"t{order}",
        "order": order,
        "status": status,
        "epochs": 3,
        "config": {"lr": 0.1 * (order + 1)},
        "metrics": {
            "average_precision": value,
            "average_precision_std": std,
            "hamming_loss": 1 - value,
            "hamming_loss_std": std,
        },
        "error": "boom" if status == "error" else "",
    }


def test_rank_orders_completed_by_metric_then_std_then_order() -> None:
    rows = [
        _row(0, "completed", 0.70, 0.05),
        _row(1, "pruned", 0.90),
        _row(2, "completed", 0.70, 0.02),
        _row(3, "error", math.nan),
        _row(4, "completed", 0.75),
        _row(5, "completed", 0.70, 0.02),
    ]
    assert [r["trial_id"] for r in rank(rows, "average_precision")] == [
        "t4",
        "t2",
        "t5",
        "t0",
        "t1",
        "t3",
    ]
    # A minimised metric ranks the other way round.
    assert rank(rows, "hamming_loss")[0]["trial_id"] == "t4"
    rows_min = [_row(0, "completed", 0.2), _row(1, "completed", 0.8)]
    assert rank(rows_min, "hamming_loss")[0]["trial_id"] == "t1"


def test_leaderboard_csv_has_a_row_per_trial() -> None:
    text = leaderboard_csv(
        rank([_row(0, "completed", 0.5), _row(1, "error", math.nan)], "average_precision"),
        "average_precision",
    )
    lines = text.strip().splitlines()
    assert lines[0].startswith("rank,trial_id,status,epochs,average_precision,")
    assert len(lines) == 3 and lines[2].endswith("boom")


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("random", optuna.samplers.RandomSampler),
        ("cmaes", optuna.samplers.CmaEsSampler),
        ("gp", optuna.samplers.GPSampler),
        ("qmc", optuna.samplers.QMCSampler),
    ],
)
def test_every_sampler_builds_seeded(name: str, cls: type) -> None:
    assert isinstance(sampler_for(name, seed=3), cls)


def test_unknown_sampler() -> None:
    with pytest.raises(MimlTuneError, match=r"unknown sampler 'anneal'; allowed: tpe, random"):
        sampler_for("anneal", 0)


def test_schedulers_follow_the_space() -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    spec = load_space("birds")
    assert isinstance(scheduler_for(spec), ASHAScheduler)
    settings = asha_settings(spec)
    assert settings["time_attr"] == "epoch" and settings["max_t"] == spec.max_epochs
    assert settings["metric"] == spec.metric and settings["mode"] == spec.mode
    short = spec.with_overrides(max_epochs=3)  # a grace period beyond the budget is capped
    assert asha_settings(short)["grace_period"] == 3
    assert isinstance(scheduler_for(spec.with_overrides(scheduler="fifo")), FIFOScheduler)
    # The trials' repeats schedule counts on the rungs ASHA places with these settings.
    assert repeats_schedule(spec).milestones == (5, 15)
    assert repeats_schedule(spec.with_overrides(fidelity="epochs")) is None
    assert repeats_schedule(spec.with_overrides(scheduler="fifo")) is None


def test_tpe_startup_scales_with_the_budget() -> None:
    assert [tpe_startup_trials(n) for n in (2, 12, 30, 200)] == [3, 4, 10, 10]
    assert type(sampler_for("tpe", 0, trials=12)).__name__ == "TPESampler"
