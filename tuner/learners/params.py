"""A learner's hyper-parameters, declared once as a frozen dataclass and checked from it.

Each learner declares its hyper-parameters as a frozen dataclass whose fields, types and defaults
*are* the hyper-parameters; a field's allowed values, where they are narrower than its type, sit
beside it in the field's metadata (scikit-learn's ``_parameter_constraints`` idea, kept next to
the field it constrains)::

    @dataclass(frozen=True)
    class BagMeanLinearParams:
        l2: float = param(1e-3, NON_NEGATIVE)
        max_iter: int = param(200, at_least(1))
        epochs: int = param(1, at_least(1))

    class BagMeanLinearLearner(Learner):
        params = BagMeanLinearParams

Everything else is derived from the declaration: :attr:`Learner.defaults <tuner.learners.base.
Learner.defaults>` (a read-only mapping), the check of a configuration (:func:`check_config`:
unknown keys, types, ranges and choices, with messages that name the key, the value and what is
allowed) and the test that every default search space agrees with its model. Supported field
types are ``int``, ``float``, ``bool`` and ``str``: what a YAML space and MLflow can carry.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from tuner.errors import MimlTuneError

T = TypeVar("T")

_TYPES: tuple[type, ...] = (bool, int, float, str)


@dataclass(frozen=True)
class Interval:
    """Numbers between ``low`` and ``high`` (``None``: unbounded on that side).

    ``closed`` says which ends belong to the interval, as in scikit-learn's ``Interval``:
    ``"left"`` is ``[low, high)``, ``"right"`` ``(low, high]``, ``"both"`` ``[low, high]``,
    ``"neither"`` ``(low, high)``.
    """

    low: float | None
    high: float | None
    closed: Literal["left", "right", "both", "neither"] = "left"

    def __post_init__(self) -> None:
        if self.closed not in ("left", "right", "both", "neither"):
            raise ValueError(
                f"closed must be one of 'left', 'right', 'both', 'neither', got {self.closed=}"
            )
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"an interval needs low < high, got {self.low=} and {self.high=}")

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, numbers.Real):
            return False
        value = float(value)
        left = self.closed in ("left", "both")
        right = self.closed in ("right", "both")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        return not (
            self.high is not None and (value > self.high or (value == self.high and not right))
        )

    def __str__(self) -> str:
        left = self.closed in ("left", "both")
        right = self.closed in ("right", "both")
        if self.high is None:
            return f"{'>=' if left else '>'} {self.low}" if self.low is not None else "any value"
        if self.low is None:
            return f"{'<=' if right else '<'} {self.high}"
        return f"in {'[' if left else '('}{self.low}, {self.high}{']' if right else ')'}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (kept in the order given, which messages show)."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError("Options needs at least one choice, got none")

    def __contains__(self, value: object) -> bool:
        return value in self.choices

    def __str__(self) -> str:
        return f"one of {', '.join(map(repr, self.choices))}"


Rule = Interval | Options

#: The intervals most hyper-parameters use.
POSITIVE = Interval(0, None, closed="neither")  # learning rates, temperatures
NON_NEGATIVE = Interval(0, None, closed="left")  # penalties, loss weights
FRACTION = Interval(0, 1, closed="left")  # dropout and masking probabilities: [0, 1)


def at_least(minimum: int) -> Interval:
    """Integers (or numbers) ``>= minimum``."""
    return Interval(minimum, None, closed="left")


def one_of(choices: typing.Iterable[Any]) -> Options:
    """One of ``choices`` (a module's tuple of names, such as ``BAG_POOLINGS``)."""
    return Options(tuple(choices))


def param(default: T, rule: Rule | None = None) -> T:
    """A hyper-parameter field: its default and, where there is one, the rule on its values.

    Typed as returning ``T`` so that ``lr: float = param(1e-3, POSITIVE)`` reads (and type
    checks) as a plain default; at run time it is the :func:`dataclasses.field` holding both.
    """
    return typing.cast(T, dataclasses.field(default=default, metadata={"rule": rule}))


@dataclass(frozen=True)
class Declared:
    """One declared hyper-parameter: its name, type, default and rule."""

    name: str
    type: type
    default: Any
    rule: Rule | None

    def describe(self) -> str:
        """What the value must be, as a message says it (``"an integer >= 1"``)."""
        if self.type is bool:
            return "True or False"
        if self.type is str:
            return str(self.rule) if self.rule is not None else "a string"
        kind = "an integer" if self.type is int else "a finite number"
        return f"{kind} {self.rule}" if self.rule is not None else kind

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has the declared type and obeys the rule."""
        if self.type is bool:
            return isinstance(value, (bool, np.bool_))
        if self.type is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
        elif self.type is float:
            ok = (
                isinstance(value, numbers.Real)
                and not isinstance(value, (bool, np.bool_))
                and math.isfinite(float(value))
            )
        else:
            ok = isinstance(value, str) or (self.rule is not None and value in self.rule)
        return ok and (self.rule is None or value in self.rule)

    def check(self, model: str, value: Any) -> Any:
        """``value`` as the declared type (``int``, ``float``, ``bool``, ``str``); a
        :class:`~tuner.errors.MimlTuneError` naming the model, the key, the rule and the value
        when it does not fit."""
        if not self.accepts(value):
            raise MimlTuneError(
                f"model {model!r}: {self.name} must be {self.describe()}, got {self.name}={value!r}"
            )
        return value if self.type is str else self.type(value)


def declared(params: type) -> Mapping[str, Declared]:
    """The hyper-parameters a frozen dataclass declares, by name, in declaration order.

    Raises:
        TypeError: ``params`` is not a frozen dataclass, or a field has no default, a type
            other than ``int``, ``float``, ``bool`` or ``str``, or a default that breaks its own
            type or rule (a mistake in the declaration, found when the learner is defined).
    """
    return _declared(params)


@functools.cache
def _declared(params: type) -> Mapping[str, Declared]:
    if not (dataclasses.is_dataclass(params) and isinstance(params, type)):
        raise TypeError(f"params must be a frozen dataclass, got {params!r}")
    if not params.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{params.__name__} must be frozen: @dataclass(frozen=True)")
    hints = typing.get_type_hints(params)
    out: dict[str, Declared] = {}
    for f in dataclasses.fields(params):
        kind = hints[f.name]
        if kind not in _TYPES:
            raise TypeError(
                f"{params.__name__}.{f.name}: a hyper-parameter is an int, float, bool or str, "
                f"got {kind!r}"
            )
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{params.__name__}.{f.name} has no default; every one needs one")
        entry = Declared(f.name, kind, f.default, f.metadata.get("rule"))
        if type(f.default) is not kind or not entry.accepts(f.default):
            raise TypeError(
                f"{params.__name__}.{f.name}: the default {f.default!r} is not "
                f"{entry.describe()} (declared type {kind.__name__})"
            )
        out[f.name] = entry
    return types.MappingProxyType(out)


def defaults_of(params: type) -> Mapping[str, Any]:
    """The declared defaults, ``{name: default}``, as a read-only mapping."""
    return types.MappingProxyType({k: d.default for k, d in declared(params).items()})


def check_config(params: type, model: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The complete configuration: ``config`` over the declared defaults, each value checked
    against its declaration and converted to the declared type.

    Args:
        params: the learner's frozen dataclass of hyper-parameters.
        model: the learner's registered name, for messages.
        config: hyper-parameters to set; the others take their defaults.

    Raises:
        MimlTuneError: a key is not declared (the message lists the allowed keys), or a value has
            the wrong type or breaks its rule (the message names the key, the value and the rule).
    """
    fields = declared(params)
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise MimlTuneError(
            f"model {model!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(fields))}"
        )
    return {
        name: entry.check(model, config[name]) if name in config else entry.default
        for name, entry in fields.items()
    }


__all__ = [
    "FRACTION",
    "NON_NEGATIVE",
    "POSITIVE",
    "Declared",
    "Interval",
    "Options",
    "Rule",
    "at_least",
    "check_config",
    "declared",
    "defaults_of",
    "one_of",
    "param",
]
