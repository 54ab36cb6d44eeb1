"""Hyper-parameters declared once: every learner's frozen dataclass, what is derived from it
(defaults, checks), and the agreement of the default search spaces and the models' constructors
with it."""

from __future__ import annotations

import dataclasses
import inspect
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tuner.errors import MimlTuneError
from tuner.learners import learner_names, resolve_learner
from tuner.learners.base import Learner
from tuner.learners.params import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    Declared,
    Interval,
    Options,
    at_least,
    check_config,
    declared,
    one_of,
    param,
)

LEARNERS = learner_names()
RANGES = ("uniform", "loguniform", "int")


def _model_spaces() -> list[Path]:
    return sorted(Path(str(resources.files("search_spaces"))).joinpath("models").glob("*.yaml"))


def _entries() -> list[tuple[str, Declared]]:
    return [(name, d) for name in LEARNERS for d in declared(resolve_learner(name).params).values()]


# ------------------------------------------------------------------------------ the rules
@pytest.mark.parametrize(
    ("rule", "text", "inside", "outside"),
    [
        (POSITIVE, "> 0", [1e-9, 5], [0, -1.0]),
        (NON_NEGATIVE, ">= 0", [0, 0.0, 3], [-1e-9]),
        (FRACTION, "in [0, 1)", [0, 0.5], [1, 1.0, -0.1]),
        (at_least(1), ">= 1", [1, 7], [0, 0.5]),
        (Interval(0, 1, closed="right"), "in (0, 1]", [1, 1e-6], [0, 1.5]),
        (Interval(0, 1, closed="neither"), "in (0, 1)", [0.5], [0, 1]),
        (Interval(0, 1, closed="both"), "in [0, 1]", [0, 1], [-0.1, 1.1]),
        (Interval(None, 2, closed="neither"), "< 2", [-5, 1.9], [2, 3]),
        (one_of(("a", "b")), "one of 'a', 'b'", ["a", "b"], ["c", 1, None]),
    ],
)
def test_rules(rule: Any, text: str, inside: list, outside: list) -> None:
    assert str(rule) == text
    for value in inside:
        assert value in rule, value
    for value in outside:
        assert value not in rule, value
    assert "1" not in Interval(0, 2)  # numbers only


def test_rules_check_their_own_arguments() -> None:
    with pytest.raises(ValueError, match=r"closed must be one of .*got self.closed='open'"):
        Interval(0, 1, closed="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"needs low < high, got self.low=1 and self.high=0"):
        Interval(1, 0)
    with pytest.raises(ValueError, match=r"at least one choice"):
        Options(())


# ------------------------------------------------------------------------- the declaration
@dataclasses.dataclass(frozen=True)
class _Toy:
    rate: float = param(0.1, POSITIVE)
    depth: int = param(2, at_least(1))
    kind: str = param("a", one_of(("a", "b")))
    flag: bool = True


class _ToyLearner(Learner):
    name: ClassVar[str] = "toy"
    params: ClassVar[type] = _Toy

    def setup(self, bags: Any, labels: Any) -> None:
        raise NotImplementedError

    def encode(self, bags: Any) -> Any:
        raise NotImplementedError

    def train_epoch(self) -> float:
        raise NotImplementedError

    def predict(self, encoded: Any) -> Any:
        raise NotImplementedError


def test_a_learner_derives_defaults_and_checks_from_its_declaration() -> None:
    assert dict(_ToyLearner.defaults) == {"rate": 0.1, "depth": 2, "kind": "a", "flag": True}
    with pytest.raises(TypeError):
        _ToyLearner.defaults["rate"] = 1.0  # type: ignore[index]
    learner = _ToyLearner({"rate": 1, "depth": 3}, n_features=2, n_labels=2)
    assert learner.config == {"rate": 1.0, "depth": 3, "kind": "a", "flag": True}
    assert type(learner.config["rate"]) is float
    assert learner.epochs == 1  # no epochs declared: closed form
    with pytest.raises(MimlTuneError, match=r"model 'toy' has no hyper-parameter 'rte', 'x'; "):
        _ToyLearner({"rte": 1.0, "x": 0}, n_features=2, n_labels=2)
    with pytest.raises(MimlTuneError, match=r"allowed: depth, flag, kind, rate$"):
        _ToyLearner({"rte": 1.0}, n_features=2, n_labels=2)
    with pytest.raises(MimlTuneError, match=r"depth must be an integer >= 1, got depth='3'"):
        _ToyLearner({"depth": "3"}, n_features=2, n_labels=2)


def test_a_learner_cannot_set_defaults_by_hand() -> None:
    with pytest.raises(TypeError, match=r"_Bad sets defaults; declare .* frozen dataclass"):

        class _Bad(_ToyLearner):
            defaults: ClassVar[dict[str, Any]] = {"rate": 0.1}


def test_mistakes_in_a_declaration_fail_when_it_is_read() -> None:
    @dataclasses.dataclass
    class NotFrozen:
        rate: float = 0.1

    @dataclasses.dataclass(frozen=True)
    class NoDefault:
        rate: float

    @dataclasses.dataclass(frozen=True)
    class ListType:
        sizes: list = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class IntForFloat:
        rate: float = param(1, POSITIVE)

    @dataclasses.dataclass(frozen=True)
    class DefaultOutside:
        rate: float = param(0.0, POSITIVE)

    cases = [
        (dict, r"must be a frozen dataclass"),
        (NotFrozen, r"NotFrozen must be frozen"),
        (NoDefault, r"NoDefault.rate has no default"),
        (ListType, r"ListType.sizes: a hyper-parameter is an int, float, bool or str"),
        (IntForFloat, r"IntForFloat.rate: the default 1 is not a finite number > 0 .*float"),
        (DefaultOutside, r"DefaultOutside.rate: the default 0.0 is not a finite number > 0"),
    ]
    for cls, message in cases:
        with pytest.raises(TypeError, match=message):
            check_config(cls, "toy", {})


# ---------------------------------------------------------------------- every real learner
@pytest.mark.parametrize("name", LEARNERS)
def test_every_learner_declares_its_parameters_once(name: str) -> None:
    cls = resolve_learner(name)
    assert dataclasses.is_dataclass(cls.params)
    instance = cls.params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, next(iter(cls.defaults)), None)
    assert dict(cls.defaults) == dataclasses.asdict(instance)
    with pytest.raises(TypeError):
        cls.defaults["epochs"] = 1  # type: ignore[index]
    learner = cls({}, n_features=3, n_labels=2)
    assert learner.config == dict(cls.defaults)
    for key, entry in declared(cls.params).items():
        assert type(learner.config[key]) is entry.type, key
    if "epochs" in cls.defaults:
        assert learner.epochs == cls.defaults["epochs"]


def _rejected(entry: Declared) -> list[Any]:
    """Values that break ``entry``'s type or rule: each end of its interval, a wrong type."""
    if entry.type is bool:
        return ["yes", 1, None]
    if entry.type is str:
        return ["__nope__", 1]
    bad: list[Any] = ["1", True]
    if entry.type is float:
        bad += [float("nan"), float("inf")]
    else:
        bad.append(float(entry.default) + 0.5)
    rule = entry.rule
    if isinstance(rule, Interval):
        step = 1 if entry.type is int else 1e-9
        if rule.low is not None:
            bad.append(rule.low - step if rule.closed in ("left", "both") else rule.low)
        if rule.high is not None:
            bad.append(rule.high + step if rule.closed in ("right", "both") else rule.high)
    return bad


@pytest.mark.parametrize(("name", "entry"), _entries(), ids=lambda v: getattr(v, "name", v))
def test_every_declared_rule_is_enforced(name: str, entry: Declared) -> None:
    cls = resolve_learner(name)
    for value in _rejected(entry):
        message = rf"model '{name}': {entry.name} must be .*, got {entry.name}="
        with pytest.raises(MimlTuneError, match=message):
            cls({entry.name: value}, n_features=3, n_labels=2)


# ------------------------------------------------------------------ the default search spaces
def _domain(raw: Any) -> tuple[str, list[Any]]:
    """``(kind, values)`` of one YAML parameter: ``choice``, a range kind, or ``fixed``."""
    if isinstance(raw, list):
        return "choice", raw
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in RANGES:
        ((kind, bounds),) = raw.items()
        return kind, list(bounds)
    return "fixed", [raw]


def test_every_model_with_a_declaration_has_a_default_space() -> None:
    assert sorted(path.stem for path in _model_spaces()) == LEARNERS


@pytest.mark.parametrize("path", _model_spaces(), ids=lambda p: p.stem)
def test_default_space_agrees_with_the_declaration(path: Path) -> None:
    """Names exist, every value obeys its declared type and rule, a fixed value is the default,
    and every searched domain holds the declared default (where a search starts)."""
    data = yaml.safe_load(path.read_text())
    assert data["model"] == path.stem
    cls = resolve_learner(path.stem)
    entries = declared(cls.params)
    unknown = sorted(set(data["params"]) - set(entries))
    assert not unknown, f"{path.name}: not declared by {cls.params.__name__}: {unknown}"
    for key, raw in data["params"].items():
        entry = entries[key]
        kind, values = _domain(raw)
        for value in values:
            assert entry.accepts(value), f"{path.name}: {key}={value!r} is not {entry.describe()}"
        if kind == "fixed":
            assert values == [entry.default], f"{path.name}: {key} fixed away from the default"
        elif kind == "choice":
            assert entry.default in values, f"{path.name}: {key} misses the default"
        else:
            assert (kind == "int") == (entry.type is int), f"{path.name}: {key} is {kind}"
            low, high = values
            assert low <= entry.default <= high, f"{path.name}: {key} misses the default"
    if "epochs" in cls.defaults:
        assert cls.defaults["epochs"] <= data["budget"]["max_epochs"], path.name


# -------------------------------------------------------------------- the models' constructors
def _model_classes() -> dict[str, type]:
    from models.bag_mean_linear import BagMeanLinear
    from models.bag_mean_mlp import BagMeanMLP
    from models.gamil_c import GAMILC
    from models.mulsupcon import MulSupCon
    from models.mulsupcon_ld import MulSupConLD
    from models.sarb import SARB

    return {
        "bag_mean_linear": BagMeanLinear,
        "bag_mean_mlp": BagMeanMLP,
        "gamil_c": GAMILC,
        "mulsupcon": MulSupCon,
        "mulsupcon_ld": MulSupConLD,
        "sarb": SARB,
    }


@pytest.mark.parametrize("name", sorted(_model_classes()))
def test_model_keywords_are_declared_hyper_parameters(name: str) -> None:
    """Every tuning knob of the torch model is a declared hyper-parameter of its learner, so a
    model keyword cannot be left to the model's own default without the declaration knowing.
    (The learners pass each one explicitly: the declaration's default is the one that holds.)"""
    model = _model_classes()[name]
    keywords = {
        p.name
        for p in inspect.signature(model).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert keywords <= set(declared(resolve_learner(name).params)), keywords
