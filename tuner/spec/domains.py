"""A hyper-parameter's domain is an Optuna distribution; this module reads one from YAML, writes
it back, and translates it for Ray Tune.

A space file writes a domain as a list of choices or one of ``{choice: [...]}``,
``{uniform: [low, high]}``, ``{loguniform: [low, high]}``, ``{int: [low, high]}`` (bounds
inclusive). :func:`parse_domain` turns it into an Optuna ``CategoricalDistribution``,
``FloatDistribution`` (``log=True`` for ``loguniform``) or ``IntDistribution``, which validate
themselves and serialise with :func:`optuna.distributions.distribution_to_json`. The Ray Tune
``param_space``, the starting point, the model checks and the report's importances all read
these same objects.
"""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tuner.errors import MimlTuneError, first_line, one_line, short

DOMAIN_KINDS = ("choice", "uniform", "loguniform", "int")
_CHOICE_TYPES = (str, int, float, bool, type(None))


def parse_domain(value: Any, source: str, where: str) -> BaseDistribution | None:
    """The distribution a YAML value states, or ``None`` for a fixed scalar.

    Args:
        value: the value of ``params.KEY`` as YAML loaded it.
        source: the space file, for the error message.
        where: the key (``params.lr``), for the error message.

    Raises:
        MimlTuneError: one line naming the file, the key, the value and what is allowed.
    """
    if isinstance(value, list):
        if not value:
            raise MimlTuneError(f"{source}: {where} is an empty list; give at least one value")
        if not all(isinstance(v, _CHOICE_TYPES) for v in value):
            raise MimlTuneError(
                f"{source}: {where} choices must be scalars (strings, numbers, true/false or "
                f"null), got {short(value)}"
            )
        return _build(CategoricalDistribution, source, where, value)
    if not isinstance(value, dict):
        return None
    if len(value) != 1 or next(iter(value)) not in DOMAIN_KINDS:
        raise MimlTuneError(
            f"{source}: {where} must be a scalar, a list of choices, or one of "
            f"{{{', '.join(f'{k}: ...' for k in DOMAIN_KINDS)}}}, got {short(value)}"
        )
    kind, body = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(body, list):
            raise MimlTuneError(f"{source}: {where}.choice must be a list, got {short(body)}")
        return parse_domain(body, source, where)
    if (
        not isinstance(body, list)
        or len(body) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in body)
    ):
        raise MimlTuneError(
            f"{source}: {where}.{kind} must be [low, high] numbers, got {short(body)}"
        )
    low, high = body
    if kind == "int" and not all(isinstance(b, int) for b in body):
        raise MimlTuneError(f"{source}: {where}.int bounds must be integers, got {short(body)}")
    if not low < high:
        raise MimlTuneError(
            f"{source}: {where}.{kind} is empty: low {short(low)} must be below high {short(high)}"
        )
    if kind == "loguniform" and low <= 0:
        raise MimlTuneError(f"{source}: {where}.loguniform needs low > 0, got {short(low)}")
    if kind == "int":
        return _build(IntDistribution, source, where, low, high)
    return _build(FloatDistribution, source, where, low, high, log=kind == "loguniform")


def _build(cls: type[BaseDistribution], source: str, where: str, *args: Any, **kw: Any) -> Any:
    try:
        return cls(*args, **kw)
    except ValueError as exc:  # Optuna's own checks, should a case above not catch it first
        raise MimlTuneError(f"{source}: {where}: {one_line(first_line(exc))}") from None


def domain_kind(domain: BaseDistribution) -> str:
    """The space-file name of a domain: ``choice``, ``uniform``, ``loguniform`` or ``int``."""
    if isinstance(domain, CategoricalDistribution):
        return "choice"
    if isinstance(domain, IntDistribution):
        return "int"
    if isinstance(domain, FloatDistribution):
        return "loguniform" if domain.log else "uniform"
    raise TypeError(f"not a search-space domain: {domain!r}")


def domain_size(domain: BaseDistribution) -> float:
    """Number of points (``inf`` for a continuous range)."""
    if isinstance(domain, CategoricalDistribution):
        return len(domain.choices)
    if isinstance(domain, IntDistribution):
        return (domain.high - domain.low) // domain.step + 1
    return math.inf


def domain_to_yaml(domain: BaseDistribution) -> Any:
    """The domain as a space file writes it (what :func:`parse_domain` reads back)."""
    if isinstance(domain, CategoricalDistribution):
        return list(domain.choices)
    if isinstance(domain, (IntDistribution, FloatDistribution)):
        return {domain_kind(domain): [domain.low, domain.high]}
    raise TypeError(f"not a search-space domain: {domain!r}")


def to_tune(domain: BaseDistribution) -> Any:
    """The Ray Tune domain that ``OptunaSearch`` converts back to exactly ``domain``."""
    from ray import tune

    if isinstance(domain, CategoricalDistribution):
        return tune.choice(list(domain.choices))
    if isinstance(domain, IntDistribution):
        if domain.log:
            return tune.lograndint(domain.low, domain.high + 1)  # upper bound exclusive
        if domain.step != 1:
            return tune.qrandint(domain.low, domain.high, domain.step)  # upper bound inclusive
        return tune.randint(domain.low, domain.high + 1)  # upper bound exclusive
    if isinstance(domain, FloatDistribution):
        if domain.log:
            return tune.loguniform(domain.low, domain.high)
        if domain.step is not None:
            return tune.quniform(domain.low, domain.high, domain.step)
        return tune.uniform(domain.low, domain.high)
    raise TypeError(f"not a search-space domain: {domain!r}")


def in_domain(value: Any, domain: BaseDistribution) -> bool:
    """Whether ``value`` is one of a choice's values (same type too: ``True`` is not ``1``) or
    lies in a range (on its step, and an integer for an :class:`IntDistribution`)."""
    if isinstance(domain, CategoricalDistribution):
        return any(type(value) is type(v) and value == v for v in domain.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not isinstance(domain, (IntDistribution, FloatDistribution)):
        return False
    if isinstance(domain, IntDistribution) and not float(value).is_integer():
        return False
    if not domain.low <= value <= domain.high:
        return False
    if domain.step is None:
        return True
    steps = (value - domain.low) / domain.step
    return math.isclose(steps, round(steps), abs_tol=1e-8)
