"""The search's algorithms by name: the Optuna sampler, the Tune scheduler, the Optuna searcher
and what a searcher holds (its sampler, its finished trials)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuner.errors import MimlTuneError
from tuner.spec import SearchSpec
from tuner.trial import RepeatsSchedule, rung_milestones


def sampler_for(name: str, seed: int, trials: int = 100) -> Any:
    """The Optuna sampler registered under ``name``, seeded.

    TPE starts with random trials before it models anything; Optuna's default of 10 would leave
    a 12-trial search random, so a third of the budget (3 to 10 trials) is used instead.
    """
    import optuna

    startup = max(3, min(10, trials // 3))
    factories: dict[str, Callable[[], Any]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    }
    if name not in factories:
        raise MimlTuneError(f"unknown sampler {name!r}; allowed: {', '.join(factories)}")
    return factories[name]()


def scheduler_for(spec: SearchSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch",
        metric=spec.metric,
        mode=spec.mode,
        max_t=spec.max_epochs,
        grace_period=min(spec.grace_period, spec.max_epochs),
        reduction_factor=spec.reduction_factor,
    )


def make_searcher(spec: SearchSpec) -> Any:
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(
        metric=spec.metric,
        mode=spec.mode,
        sampler=sampler_for(spec.sampler, spec.seed, spec.trials),
        points_to_evaluate=[spec.starting_point()],
    )


def describe_searcher(searcher: Any) -> tuple[str, str]:
    """``(searcher class, sampler class)`` of a Tune searcher, through its wrappers."""
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    while isinstance(searcher, ConcurrencyLimiter | SearchGenerator):
        searcher = searcher.searcher
    return type(searcher).__name__, type(getattr(searcher, "_sampler", None)).__name__


def finished_in_study(searcher: Any) -> int:
    """Trials the searcher's Optuna study holds as finished (complete, pruned or failed)."""
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    while isinstance(searcher, ConcurrencyLimiter | SearchGenerator):
        searcher = searcher.searcher
    study = getattr(searcher, "_ot_study", None)
    return sum(t.state.is_finished() for t in study.trials) if study is not None else 0


def repeats_schedule(spec: SearchSpec) -> RepeatsSchedule | None:
    """The CV repeats a trial trains at each epoch under ``fidelity: repeats``: one repeat up to
    ASHA's first rung, ``reduction_factor`` times more at each rung survived, all of them at the
    trial's last epoch. ``None`` (every repeat from the first epoch) under ``fidelity: epochs``,
    without ASHA, or with a single repeat."""
    if spec.fidelity != "repeats" or spec.scheduler != "asha" or spec.cv_repeats < 2:
        return None
    grace = min(spec.grace_period, spec.max_epochs)
    milestones = rung_milestones(spec.max_epochs, grace, spec.reduction_factor)
    if not milestones:
        return None
    return RepeatsSchedule(tuple(milestones), spec.cv_repeats, growth=spec.reduction_factor)
