"""Search specifications: a named YAML file in ``search_spaces/``, validated on load.

A space file states the model, the dataset, the metric and its direction, the cross-validation
protocol, the holdout, the budget, the scheduler, the sampler, and each hyper-parameter's domain::

    name: birds
    model: gamil_c
    dataset: birds
    metric: average_precision
    mode: max
    cv: {folds: 3, repeats: 5}
    holdout: 0.2
    seed: 0
    budget: {trials: 16, max_epochs: 30}
    scheduler: {name: asha, grace_period: 5, reduction_factor: 3}
    sampler: tpe
    params:
      batch_size: [64, 128, 256]        # a list is a categorical choice
      lr: {loguniform: [1.0e-4, 1.0e-2]} # or one of: choice, uniform, loguniform, int
      pooling: attention                # a scalar is fixed

Every key is checked: an unknown key, a wrong type, an empty domain or a name that does not
exist is a :class:`~tuner.errors.MimlTuneError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tuner.errors import MimlTuneError

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
SCHEDULERS = ("asha", "fifo")
DOMAIN_KINDS = ("choice", "uniform", "loguniform", "int")

_TOP_KEYS = {
    "name": "the space's name",
    "description": "one line shown by `miml-tune spaces`",
    "model": "a registered model",
    "dataset": "a registered dataset or a path",
    "metric": "the metric to optimise",
    "mode": "max or min; must agree with the metric",
    "cv": "{folds, repeats}",
    "holdout": "fraction held out from the search, in [0, 0.5)",
    "holdout_seed": "seed of the holdout split alone (--seed does not move the holdout)",
    "seed": "integer seed",
    "budget": "{trials, max_epochs, concurrency}",
    "scheduler": "{name, grace_period, reduction_factor}",
    "sampler": "the Optuna sampler",
    "known_labels": "known-label proportion p in (0, 1] of the training labels (SARB protocol)",
    "peers": "classic models scored on the same folds, e.g. [bag_mean_linear, miml_knn]",
    "params": "hyper-parameter domains",
}
DEFAULT_PEERS = ("bag_mean_linear",)
_CV_KEYS = ("folds", "repeats")
_BUDGET_KEYS = ("trials", "max_epochs", "concurrency")
_SCHEDULER_KEYS = ("name", "grace_period", "reduction_factor")


@dataclass(frozen=True)
class Domain:
    """One hyper-parameter's search domain.

    ``kind`` is ``choice`` (``values`` are the categories) or ``uniform`` / ``loguniform`` /
    ``int`` (``values`` is the inclusive ``(low, high)`` range).
    """

    kind: str
    values: tuple[Any, ...]

    def to_tune(self) -> Any:
        """The equivalent Ray Tune domain (converted by ``OptunaSearch`` to an Optuna one)."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        low, high = self.values
        if self.kind == "uniform":
            return tune.uniform(low, high)
        if self.kind == "loguniform":
            return tune.loguniform(low, high)
        return tune.randint(low, high + 1)  # randint's upper bound is exclusive

    @property
    def size(self) -> float:
        """Number of points (``inf`` for a continuous range)."""
        if self.kind == "choice":
            return len(self.values)
        if self.kind == "int":
            return self.values[1] - self.values[0] + 1
        return math.inf

    def to_yaml(self) -> Any:
        return list(self.values) if self.kind == "choice" else {self.kind: list(self.values)}


@dataclass(frozen=True)
class SearchSpec:
    """A validated search: what to tune, on which data, judged how, within which budget."""

    name: str
    model: str
    dataset: str
    metric: str
    mode: str
    params: dict[str, Domain]
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
    sampler: str = "tpe"
    known_labels: float = 1.0
    peers: tuple[str, ...] = DEFAULT_PEERS
    source: str = "<memory>"
    text: str = field(default="", repr=False)

    @property
    def grid_size(self) -> float:
        """Number of configurations in the searched domains (``inf`` if any is continuous)."""
        return math.prod(d.size for d in self.params.values()) if self.params else 1

    def searched(self) -> tuple[dict[str, Domain], dict[str, Any]]:
        """The searched domains and the fixed values, after the budget's epoch cap.

        ``epochs`` choices above the budget's ``max_epochs`` collapse onto it, so the sampler
        does not spend trials on values that would all train the same number of epochs, and the
        logged configuration says how long a trial really trained.
        """
        params = dict(self.params)
        fixed = dict(self.fixed)
        epochs = params.get("epochs")
        if epochs is not None and epochs.kind == "choice":
            capped = tuple(dict.fromkeys(min(int(v), self.max_epochs) for v in epochs.values))
            if len(capped) == 1:
                del params["epochs"]
                fixed["epochs"] = capped[0]
            else:
                params["epochs"] = Domain("choice", capped)
        elif isinstance(fixed.get("epochs"), int):
            fixed["epochs"] = min(fixed["epochs"], self.max_epochs)
        return params, fixed

    def param_space(self) -> dict[str, Any]:
        """Ray Tune ``param_space``: searched domains plus fixed values (epochs capped)."""
        params, fixed = self.searched()
        return {**fixed, **{k: d.to_tune() for k, d in params.items()}}

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
            values = domain.values
            if key == "epochs" and default is not None:
                default = min(int(default), self.max_epochs)
            if domain.kind == "choice":
                point[key] = default if default in values else values[0]
                continue
            low, high = values
            if default is not None and not isinstance(default, bool) and low <= default <= high:
                point[key] = default
            elif domain.kind == "int":
                point[key] = (low + high) // 2
            elif domain.kind == "loguniform":
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
        _check_settings(spec, where=f"{self.source} (with command-line options)")
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
            },
            "scheduler": {
                "name": self.scheduler,
                "grace_period": self.grace_period,
                "reduction_factor": self.reduction_factor,
            },
            "sampler": self.sampler,
            **({"known_labels": self.known_labels} if self.known_labels < 1 else {}),
            "peers": list(self.peers),
            "params": {
                **self.fixed,
                **{k: d.to_yaml() for k, d in self.params.items()},
            },
        }


def _spaces_dir() -> Path:
    return Path(str(resources.files("search_spaces")))


def space_names() -> list[str]:
    """Names of the spaces shipped in ``search_spaces/``."""
    return sorted(p.stem for p in _spaces_dir().glob("*.yaml"))


def space_path(name_or_path: str) -> Path:
    """Resolves a space name (``birds``) or the path of a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        if not candidate.is_file():
            raise MimlTuneError(f"space file {name_or_path!r} does not exist")
        return candidate
    shipped = _spaces_dir() / f"{name_or_path.strip().lower()}.yaml"
    if not shipped.is_file():
        raise MimlTuneError(
            f"unknown space {name_or_path!r}; shipped spaces: {', '.join(space_names())} "
            "(or pass the path of a YAML file)"
        )
    return shipped


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MimlTuneError(f"cannot read space file {path}: {exc.strerror}") from None


def load_space(name_or_path: str, *, model: str | None = None) -> SearchSpec:
    """Loads and validates a space by name or path.

    Args:
        name_or_path: a shipped space's name or the path of a YAML file.
        model: run this registered model instead of the space's own, on the space's dataset and
            protocol, with the model's default space (``search_spaces/models/MODEL.yaml``): its
            ``params`` replace the space's, its ``budget`` and ``scheduler`` keys override.
    """
    path = space_path(name_or_path)
    text = _read(path)
    if model is None:
        return parse_space(text, source=str(path))
    return _with_model(text, str(path), model)


_MODEL_SPACE_KEYS = {
    "model": "the registered model this default space is for",
    "description": "one line",
    "budget": "{trials, max_epochs, concurrency}: overrides the dataset space's",
    "scheduler": "{name, grace_period, reduction_factor}: overrides the dataset space's",
    "params": "hyper-parameter domains",
}


def model_space_names() -> list[str]:
    """Models that ship a default space (``search_spaces/models/*.yaml``)."""
    return sorted(p.stem for p in (_spaces_dir() / "models").glob("*.yaml"))


def model_space_path(model: str) -> Path:
    """The default space of a registered model."""
    from tuner.learners import learner_names

    key = model.strip().lower().replace("-", "_")
    path = _spaces_dir() / "models" / f"{key}.yaml"
    if key not in learner_names() or not path.is_file():
        raise MimlTuneError(
            f"--model {model!r} has no default space; models with one: "
            f"{', '.join(model_space_names())}"
        )
    return path


def _with_model(text: str, source: str, model: str) -> SearchSpec:
    path = model_space_path(model)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raw = None
    if not isinstance(raw, dict):  # parse_space reports it properly
        return parse_space(text, source=source)
    try:
        default = yaml.safe_load(_read(path))
    except yaml.YAMLError:
        raise MimlTuneError(f"{path}: not valid YAML") from None
    if not isinstance(default, dict):
        raise MimlTuneError(f"{path}: a model space must be a mapping of keys")
    _check_keys(default, _MODEL_SPACE_KEYS, str(path), "")
    if default.get("model") != path.stem:
        raise MimlTuneError(f"{path}: model must be {path.stem!r}, got {default.get('model')!r}")
    merged = dict(raw)
    merged["model"] = path.stem
    merged["name"] = f"{raw.get('name', 'space')}-{path.stem}"
    merged["params"] = default.get("params")
    if "description" in default:
        merged["description"] = default["description"]
    for section in ("budget", "scheduler"):
        if isinstance(default.get(section), dict):
            base = raw.get(section)
            merged[section] = {**(base if isinstance(base, dict) else {}), **default[section]}
    merged_text = yaml.safe_dump(merged, sort_keys=False)
    return parse_space(merged_text, source=f"{source} with --model {path.stem} ({path.name})")


def parse_space(text: str, *, source: str = "<string>") -> SearchSpec:
    """Parses and validates the YAML text of a space."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise MimlTuneError(f"{source}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise MimlTuneError(f"{source}: a space file must be a mapping of keys, got {raw!r}")
    _check_keys(raw, _TOP_KEYS, source, "")
    for key in ("name", "model", "dataset", "metric", "params"):
        if key not in raw:
            raise MimlTuneError(f"{source}: missing required key {key!r}")

    def get(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        value = mapping[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise MimlTuneError(f"{source}: {where}{key} must be {_type_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise MimlTuneError(f"{source}: {where}{key} must be {_type_name(kind)}, got {value!r}")
        return value

    settings: dict[str, Any] = {}
    for key in ("name", "description", "model", "dataset", "metric", "mode", "sampler"):
        if key in raw:
            settings[key] = get(raw, key, str, "")
    if "holdout" in raw:
        settings["holdout"] = float(get(raw, "holdout", (int, float), ""))
    if "known_labels" in raw:
        settings["known_labels"] = float(get(raw, "known_labels", (int, float), ""))
    if "peers" in raw:
        peers = raw["peers"]
        if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
            raise MimlTuneError(
                f"{source}: peers must be a list of model names (possibly empty), got {peers!r}"
            )
        settings["peers"] = tuple(dict.fromkeys(p.strip().lower().replace("-", "_") for p in peers))
    for key in ("seed", "holdout_seed"):
        if key in raw:
            settings[key] = get(raw, key, int, "")
    for section, keys, names in (
        ("cv", _CV_KEYS, {"folds": "cv_folds", "repeats": "cv_repeats"}),
        ("budget", _BUDGET_KEYS, {k: k for k in _BUDGET_KEYS}),
        ("scheduler", _SCHEDULER_KEYS, {"name": "scheduler"} | {k: k for k in _SCHEDULER_KEYS[1:]}),
    ):
        if section not in raw:
            continue
        block = raw[section]
        if not isinstance(block, dict):
            raise MimlTuneError(f"{source}: {section} must be a mapping, got {block!r}")
        _check_keys(block, dict.fromkeys(keys, ""), source, f"{section}.")
        for key in block:
            kind: type | tuple[type, ...] = (
                str if key == "name" else (int, float) if key == "reduction_factor" else int
            )
            settings[names[key]] = get(block, key, kind, f"{section}.")

    settings.setdefault("mode", "")
    params_raw = raw["params"]
    if not isinstance(params_raw, dict) or not params_raw:
        raise MimlTuneError(f"{source}: params must be a non-empty mapping of hyper-parameters")
    params: dict[str, Domain] = {}
    fixed: dict[str, Any] = {}
    for key, value in params_raw.items():
        domain = _parse_domain(value, source, f"params.{key}")
        if domain is None:
            fixed[str(key)] = value
        else:
            params[str(key)] = domain
    if not params:
        raise MimlTuneError(
            f"{source}: params fixes every hyper-parameter, so there is nothing to search; give "
            "at least one a list of choices or a range"
        )
    spec = SearchSpec(params=params, fixed=fixed, source=source, text=text, **settings)
    if not spec.mode:
        spec = dataclasses.replace(spec, mode=_metric_mode(spec.metric, source))
    _check_settings(spec, where=source)
    _check_params(spec)
    return spec


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _check_keys(
    block: Mapping[str, Any], allowed: Mapping[str, str], source: str, prefix: str
) -> None:
    for key in block:
        if key not in allowed:
            raise MimlTuneError(
                f"{source}: unknown key {prefix}{key!r}; allowed keys: {', '.join(allowed)}"
            )


def _parse_domain(value: Any, source: str, where: str) -> Domain | None:
    if isinstance(value, list):
        if not value:
            raise MimlTuneError(f"{source}: {where} is an empty list; give at least one value")
        if any(isinstance(v, (list, dict)) for v in value):
            raise MimlTuneError(f"{source}: {where} choices must be scalars, got {value!r}")
        return Domain("choice", tuple(value))
    if not isinstance(value, dict):
        return None
    if len(value) != 1 or next(iter(value)) not in DOMAIN_KINDS:
        raise MimlTuneError(
            f"{source}: {where} must be a scalar, a list of choices, or one of "
            f"{{{', '.join(f'{k}: ...' for k in DOMAIN_KINDS)}}}, got {value!r}"
        )
    kind, body = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(body, list):
            raise MimlTuneError(f"{source}: {where}.choice must be a list, got {body!r}")
        return _parse_domain(body, source, where)
    if (
        not isinstance(body, list)
        or len(body) != 2
        or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in body)
    ):
        raise MimlTuneError(f"{source}: {where}.{kind} must be [low, high] numbers, got {body!r}")
    low, high = body
    if kind == "int" and not all(isinstance(b, int) for b in body):
        raise MimlTuneError(f"{source}: {where}.int bounds must be integers, got {body!r}")
    if not low < high:
        raise MimlTuneError(
            f"{source}: {where}.{kind} is empty: low {low} must be below high {high}"
        )
    if kind == "loguniform" and low <= 0:
        raise MimlTuneError(f"{source}: {where}.loguniform needs low > 0, got {low}")
    return Domain(kind, (low, high))


def _metric_mode(metric: str, source: str) -> str:
    from tuner.metrics import METRICS

    if metric not in METRICS:
        raise MimlTuneError(
            f"{source}: unknown metric {metric!r}; metrics: {', '.join(sorted(METRICS))}"
        )
    return METRICS[metric].mode


def _check_settings(spec: SearchSpec, *, where: str) -> None:
    """Checks everything but the model's parameters (also re-run after CLI overrides)."""
    mode = _metric_mode(spec.metric, where)
    if spec.mode != mode:
        raise MimlTuneError(
            f"{where}: mode {spec.mode!r} contradicts metric {spec.metric!r}, which is "
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
            raise MimlTuneError(f"{where}: {key} must be {rule}, got {value!r}")
    if spec.scheduler not in SCHEDULERS:
        raise MimlTuneError(
            f"{where}: unknown scheduler {spec.scheduler!r}; allowed: {', '.join(SCHEDULERS)}"
        )
    if spec.sampler not in SAMPLERS:
        raise MimlTuneError(
            f"{where}: unknown sampler {spec.sampler!r}; allowed: {', '.join(SAMPLERS)}"
        )
    from tuner.learners import learner_names

    for peer in spec.peers:
        if peer not in learner_names():
            raise MimlTuneError(
                f"{where}: unknown peer {peer!r}; registered models: {', '.join(learner_names())}"
            )


def _check_params(spec: SearchSpec) -> None:
    """Checks parameter names and value types against the model's declared hyper-parameters."""
    from tuner.learners import resolve_learner

    try:
        learner = resolve_learner(spec.model)
    except MimlTuneError as exc:
        raise MimlTuneError(f"{spec.source}: model: {exc}") from None
    defaults = learner.defaults
    for key in [*spec.fixed, *spec.params]:
        if key not in defaults:
            raise MimlTuneError(
                f"{spec.source}: unknown key params.{key!r} for model {learner.name!r}; "
                f"allowed keys: {', '.join(sorted(defaults))}"
            )
    for key, value in spec.fixed.items():
        _check_value_type(spec.source, key, value, defaults[key])
    for key, domain in spec.params.items():
        if domain.kind == "choice":
            for value in domain.values:
                _check_value_type(spec.source, key, value, defaults[key])
        else:
            for bound in domain.values:
                _check_value_type(spec.source, key, bound, defaults[key])
            if isinstance(defaults[key], int) and domain.kind != "int":
                raise MimlTuneError(
                    f"{spec.source}: params.{key} takes integers; use a list or {{int: [lo, hi]}}"
                    f", not {domain.kind}"
                )
    # Let the model reject out-of-range values now rather than in the middle of the search,
    # each value judged beside the fixed ones (hidden=100 is fine with heads=5, not with 8).
    for key, values in [(k, (v,)) for k, v in spec.fixed.items()] + [
        (k, d.values) for k, d in spec.params.items()
    ]:
        for value in values:
            try:
                learner({**spec.fixed, key: value}, n_features=2, n_labels=2)
            except MimlTuneError as exc:
                raise MimlTuneError(f"{spec.source}: params.{key}: {exc}") from None


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
            f"{source}: params.{key} must be {_type_name(expected)} "
            f"(like the default {default!r}), got {value!r}"
        )
