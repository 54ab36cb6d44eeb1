"""The validated search, :class:`SearchSpec`, and the checks it passes after parsing and after
command-line overrides."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner.errors import MimlTuneError, one_line, short
from tuner.spec.domains import domain_kind, domain_size, domain_to_yaml, to_tune

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
FIDELITIES = ("repeats", "epochs")
RACING_RULES = ("none", "wilcoxon")
SCHEDULERS = ("asha", "fifo")
DEFAULT_PEERS = ("bag_mean_linear",)


@dataclass(frozen=True)
class SearchSpec:
    """A validated search: what to tune, on which data, judged how, within which budget.

    ``params`` maps each searched hyper-parameter to its domain, an Optuna distribution
    (:mod:`tuner.spec.domains`); ``fixed`` holds the values that are not searched.
    """

    name: str
    model: str
    dataset: str
    metric: str
    mode: str
    params: dict[str, BaseDistribution]
    fixed: dict[str, Any]
    description: str = ""
    cv_folds: int = 3
    cv_repeats: int = 5
    holdout: float = 0.2
    holdout_seed: int = 0
    seed: int = 0
    trials: int = 16
    max_epochs: int = 30
    concurrency: int | None = None
    scheduler: str = "asha"
    grace_period: int = 5
    reduction_factor: float = 3.0
    fidelity: str = "repeats"  # ASHA's resources: epochs alone, or CV repeats and epochs
    racing: str = "none"  # wilcoxon: stop a trial the folds show clearly worse than the best
    racing_alpha: float = 0.05  # the level of the racing rule's one-sided test
    time_budget: float | None = None  # seconds of wall time; None: no limit
    sampler: str = "tpe"
    known_labels: float = 1.0
    peers: tuple[str, ...] = DEFAULT_PEERS
    source: str = "<memory>"
    text: str = field(default="", repr=False)

    @property
    def grid_size(self) -> float:
        """Number of configurations in the searched domains (``inf`` if any is continuous)."""
        return math.prod(domain_size(d) for d in self.params.values()) if self.params else 1

    def searched(self) -> tuple[dict[str, BaseDistribution], dict[str, Any]]:
        """The searched domains and the fixed values, after the budget's epoch cap.

        ``epochs`` choices above the budget's ``max_epochs`` collapse onto it, so the sampler
        does not spend trials on values that would all train the same number of epochs, and the
        logged configuration says how long a trial really trained.
        """
        params = dict(self.params)
        fixed = dict(self.fixed)
        epochs = params.get("epochs")
        if isinstance(epochs, CategoricalDistribution):
            choices: tuple[Any, ...] = epochs.choices  # integers: check_params saw to it
            capped = tuple(dict.fromkeys(min(int(v), self.max_epochs) for v in choices))
            if len(capped) == 1:
                del params["epochs"]
                fixed["epochs"] = capped[0]
            else:
                params["epochs"] = CategoricalDistribution(capped)
        elif isinstance(fixed.get("epochs"), int):
            fixed["epochs"] = min(fixed["epochs"], self.max_epochs)
        return params, fixed

    def param_space(self) -> dict[str, Any]:
        """Ray Tune ``param_space``: searched domains plus fixed values (epochs capped)."""
        params, fixed = self.searched()
        return {**fixed, **{k: to_tune(d) for k, d in params.items()}}

    def starting_point(self) -> dict[str, Any]:
        """The first configuration a search tries: the model's own defaults, wherever a searched
        domain holds them (else the domain's first choice, or the middle of a range).

        Starting there, the search never reports worse cross-validated results than the model's
        defaults on the same folds; a small budget then explores around a known-good point
        instead of depending on where the random start lands.
        """
        from tuner.learners import resolve_learner

        defaults = resolve_learner(self.model).defaults
        point: dict[str, Any] = {}
        for key, domain in self.searched()[0].items():
            default = defaults.get(key)
            if key == "epochs" and default is not None:
                default = min(int(default), self.max_epochs)
            if isinstance(domain, CategoricalDistribution):
                point[key] = default if default in domain.choices else domain.choices[0]
                continue
            if not isinstance(domain, (IntDistribution, FloatDistribution)):
                raise TypeError(f"{key}: not a search-space domain: {domain!r}")
            low, high = domain.low, domain.high
            if default is not None and not isinstance(default, bool) and low <= default <= high:
                point[key] = default
            elif isinstance(domain, IntDistribution):
                point[key] = (low + high) // 2
            elif domain.log:
                point[key] = math.sqrt(low * high)
            else:
                point[key] = (low + high) / 2
        return point

    def with_overrides(self, **overrides: Any) -> SearchSpec:
        """A copy with command-line overrides (``None`` values ignored), validated again."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise MimlTuneError(f"unknown search option(s) {unknown}")
        spec = dataclasses.replace(self, **changes)
        check_settings(spec, where=f"{self.source} (with command-line options)")
        return spec

    def to_dict(self) -> dict[str, Any]:
        """The effective space as plain data (what a YAML file with these settings would say)."""
        return {
            "name": self.name,
            "description": self.description,
            "model": self.model,
            "dataset": self.dataset,
            "metric": self.metric,
            "mode": self.mode,
            "cv": {"folds": self.cv_folds, "repeats": self.cv_repeats},
            "holdout": self.holdout,
            "holdout_seed": self.holdout_seed,
            "seed": self.seed,
            "budget": {
                "trials": self.trials,
                "max_epochs": self.max_epochs,
                **({"concurrency": self.concurrency} if self.concurrency else {}),
                **({"time": self.time_budget} if self.time_budget else {}),
            },
            "scheduler": {
                "name": self.scheduler,
                "grace_period": self.grace_period,
                "reduction_factor": self.reduction_factor,
                "fidelity": self.fidelity,
                **(
                    {"racing": self.racing, "racing_alpha": self.racing_alpha}
                    if self.racing != "none"
                    else {}
                ),
            },
            "sampler": self.sampler,
            **({"known_labels": self.known_labels} if self.known_labels < 1 else {}),
            "peers": list(self.peers),
            "params": {
                **self.fixed,
                **{k: domain_to_yaml(d) for k, d in self.params.items()},
            },
        }


def type_name(kind: type | tuple[type, ...]) -> str:
    """``an integer or a number`` for ``(int, float)``: the words of an error message."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def key_text(key: Any) -> str:
    """A key as an error message writes it after a dot (``params.lr``): as it is when it is a
    short printable word, else quoted and shortened."""
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 60 and " " not in key:
        return key
    return short(key, 60)


def metric_mode(metric: str, source: str) -> str:
    """The direction of a registered metric."""
    from tuner.metrics import METRICS

    if metric not in METRICS:
        raise MimlTuneError(
            f"{source}: unknown metric {short(metric)}; metrics: {', '.join(sorted(METRICS))}"
        )
    return METRICS[metric].mode


def check_settings(spec: SearchSpec, *, where: str) -> None:
    """Checks everything but the model's parameters (also re-run after CLI overrides)."""
    mode = metric_mode(spec.metric, where)
    if spec.mode != mode:
        raise MimlTuneError(
            f"{where}: mode {short(spec.mode)} contradicts metric {spec.metric!r}, which is "
            f"{'maximised' if mode == 'max' else 'minimised'} (mode: {mode})"
        )
    checks: list[tuple[str, Any, bool, str]] = [
        ("cv.folds", spec.cv_folds, spec.cv_folds >= 2, "an integer >= 2"),
        ("cv.repeats", spec.cv_repeats, spec.cv_repeats >= 1, "an integer >= 1"),
        ("holdout", spec.holdout, 0 <= spec.holdout < 0.5, "a fraction in [0, 0.5)"),
        (
            "known_labels",
            spec.known_labels,
            0 < spec.known_labels <= 1,
            "a proportion in (0, 1] (e.g. 0.1, 0.5, 0.9; 1 keeps every training label)",
        ),
        ("seed", spec.seed, 0 <= spec.seed < 2**31, "an integer in [0, 2**31)"),
        (
            "holdout_seed",
            spec.holdout_seed,
            0 <= spec.holdout_seed < 2**31,
            "an integer in [0, 2**31)",
        ),
        ("budget.trials", spec.trials, spec.trials >= 1, "an integer >= 1"),
        ("budget.max_epochs", spec.max_epochs, spec.max_epochs >= 1, "an integer >= 1"),
        (
            "budget.concurrency",
            spec.concurrency,
            spec.concurrency is None or spec.concurrency >= 1,
            "an integer >= 1",
        ),
        ("scheduler.grace_period", spec.grace_period, spec.grace_period >= 1, "an integer >= 1"),
        (
            "scheduler.reduction_factor",
            spec.reduction_factor,
            spec.reduction_factor > 1,
            "a number > 1",
        ),
    ]
    for key, value, ok, rule in checks:
        if not ok:
            raise MimlTuneError(f"{where}: {key} must be {rule}, got {short(value)}")
    if spec.fidelity not in FIDELITIES:
        raise MimlTuneError(
            f"{where}: unknown scheduler.fidelity {short(spec.fidelity)}; allowed: "
            f"{', '.join(FIDELITIES)} (repeats: a trial adds CV repeats as it survives ASHA's "
            "rungs; epochs: every repeat from the first epoch)"
        )
    if spec.racing not in RACING_RULES:
        raise MimlTuneError(
            f"{where}: unknown scheduler.racing {short(spec.racing)}; allowed: "
            f"{', '.join(RACING_RULES)} (wilcoxon: stop a trial once a one-sided Wilcoxon test "
            "over the folds it shares with the best trial says it is worse)"
        )
    if not (isinstance(spec.racing_alpha, (int, float)) and 0 < spec.racing_alpha <= 0.5):
        raise MimlTuneError(
            f"{where}: scheduler.racing_alpha must be a number in (0, 0.5], got "
            f"{short(spec.racing_alpha)}"
        )
    if spec.time_budget is not None and not (
        math.isfinite(spec.time_budget) and spec.time_budget > 0
    ):
        raise MimlTuneError(
            f"{where}: budget.time must be a positive duration, got {short(spec.time_budget)}"
        )
    if spec.scheduler not in SCHEDULERS:
        raise MimlTuneError(
            f"{where}: unknown scheduler {short(spec.scheduler)}; allowed: {', '.join(SCHEDULERS)}"
        )
    if spec.sampler not in SAMPLERS:
        raise MimlTuneError(
            f"{where}: unknown sampler {short(spec.sampler)}; allowed: {', '.join(SAMPLERS)}"
        )
    from tuner.learners import learner_names

    for peer in spec.peers:
        if peer not in learner_names():
            raise MimlTuneError(
                f"{where}: unknown peer {short(peer)}; registered models: "
                f"{', '.join(learner_names())}"
            )


def _domain_values(domain: BaseDistribution) -> tuple[Any, ...]:
    """The values a model must accept: a choice's values, a range's bounds."""
    if isinstance(domain, CategoricalDistribution):
        return tuple(domain.choices)
    if isinstance(domain, (IntDistribution, FloatDistribution)):
        return (domain.low, domain.high)
    raise TypeError(f"not a search-space domain: {domain!r}")


def check_params(spec: SearchSpec) -> None:
    """Checks parameter names and value types against the model's declared hyper-parameters."""
    from tuner.learners import resolve_learner

    try:
        learner = resolve_learner(spec.model)
    except MimlTuneError as exc:
        raise MimlTuneError(f"{spec.source}: model: {one_line(str(exc))}") from None
    defaults = learner.defaults
    for key in [*spec.fixed, *spec.params]:
        if key not in defaults:
            raise MimlTuneError(
                f"{spec.source}: unknown key params.{short(key, 60)} for model {learner.name!r}; "
                f"allowed keys: {', '.join(sorted(defaults))}"
            )
    for key, value in spec.fixed.items():
        _check_value_type(spec.source, key, value, defaults[key])
    for key, domain in spec.params.items():
        default = defaults[key]
        # Before the bounds' types: a float range's bounds are floats, whatever the YAML said.
        if (
            isinstance(default, int)
            and not isinstance(default, bool)
            and not isinstance(domain, (CategoricalDistribution, IntDistribution))
        ):
            raise MimlTuneError(
                f"{spec.source}: params.{key_text(key)} takes integers; use a list or "
                "{int: [lo, hi]}"
                f", not {domain_kind(domain)}"
            )
        for value in _domain_values(domain):
            _check_value_type(spec.source, key, value, default)
    # Let the model reject out-of-range values now rather than in the middle of the search,
    # each value judged beside the fixed ones (hidden=100 is fine with heads=5, not with 8).
    for key, values in [(k, (v,)) for k, v in spec.fixed.items()] + [
        (k, _domain_values(d)) for k, d in spec.params.items()
    ]:
        for value in values:
            try:
                learner({**spec.fixed, key: value}, n_features=2, n_labels=2)
            except MimlTuneError as exc:
                raise MimlTuneError(
                    f"{spec.source}: params.{key_text(key)}: {one_line(str(exc))}"
                ) from None


def _check_value_type(source: str, key: str, value: Any, default: Any) -> None:
    expected: tuple[type, ...]
    if isinstance(default, bool):
        expected = (bool,)
    elif isinstance(default, int):
        expected = (int,)
    elif isinstance(default, float):
        expected = (int, float)
    elif isinstance(default, str):
        expected = (str,)
    else:
        return
    if (isinstance(value, bool) and bool not in expected) or not isinstance(value, expected):
        raise MimlTuneError(
            f"{source}: params.{key_text(key)} must be {type_name(expected)} "
            f"(like the default {default!r}), got {short(value)}"
        )
