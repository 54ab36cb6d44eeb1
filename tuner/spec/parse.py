"""Reading a space: a shipped space's name or a YAML file's path, with an optional model's
default space, parsed into a validated :class:`~tuner.spec.space.SearchSpec`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution

from tuner.errors import MimlTuneError, did_you_mean, short
from tuner.spec.domains import parse_domain
from tuner.spec.durations import parse_duration
from tuner.spec.loader import dump_yaml, load_yaml
from tuner.spec.space import (
    SearchSpec,
    check_params,
    check_settings,
    key_text,
    metric_mode,
    type_name,
)

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
    "budget": "{trials, max_epochs, concurrency, time}",
    "scheduler": "{name, grace_period, reduction_factor, fidelity, racing, racing_alpha}",
    "sampler": "the Optuna sampler",
    "known_labels": "known-label proportion p in (0, 1] of the training labels (SARB protocol)",
    "peers": "classic models scored on the same folds, e.g. [bag_mean_linear, miml_knn]",
    "params": "hyper-parameter domains",
}
_CV_KEYS = ("folds", "repeats")
_BUDGET_KEYS = ("trials", "max_epochs", "concurrency", "time")
_SCHEDULER_KEYS = (
    "name",
    "grace_period",
    "reduction_factor",
    "fidelity",
    "racing",
    "racing_alpha",
)


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
            raise MimlTuneError(f"space file {short(name_or_path)} does not exist")
        return candidate
    shipped = _spaces_dir() / f"{name_or_path.strip().lower()}.yaml"
    if not shipped.is_file():
        raise MimlTuneError(
            f"unknown space {short(name_or_path)}"
            f"{did_you_mean(name_or_path, space_names())}; shipped spaces: "
            f"{', '.join(space_names())} "
            "(or pass the path of a YAML file)"
        )
    return shipped


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MimlTuneError(f"cannot read space file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise MimlTuneError(
            f"space file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); a space file is YAML in UTF-8: save it with that encoding"
        ) from None


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
    "budget": "{trials, max_epochs, concurrency, time}: overrides the dataset space's",
    "scheduler": (
        "{name, grace_period, reduction_factor, fidelity, racing, racing_alpha}: overrides the "
        "dataset space's"
    ),
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
            f"--model {short(model)} has no default space"
            f"{did_you_mean(model, model_space_names())}; models with one: "
            f"{', '.join(model_space_names())}"
        )
    return path


def _with_model(text: str, source: str, model: str) -> SearchSpec:
    path = model_space_path(model)
    raw = load_yaml(text, source)
    if not isinstance(raw, dict):  # parse_space reports it properly
        return parse_space(text, source=source)
    default = load_yaml(_read(path), str(path))
    if not isinstance(default, dict):
        raise MimlTuneError(f"{path}: a model space must be a mapping of keys")
    _check_keys(default, _MODEL_SPACE_KEYS, str(path), "")
    if default.get("model") != path.stem:
        raise MimlTuneError(
            f"{path}: model must be {path.stem!r}, got {short(default.get('model'))}"
        )
    merged = dict(raw)
    merged["model"] = path.stem
    name = raw.get("name", "space")
    merged["name"] = f"{name}-{path.stem}" if isinstance(name, str) else name
    merged["params"] = default.get("params")
    if "description" in default:
        merged["description"] = default["description"]
    for section in ("budget", "scheduler"):
        if isinstance(default.get(section), dict):
            base = raw.get(section)
            merged[section] = {**(base if isinstance(base, dict) else {}), **default[section]}
    merged_text = dump_yaml(merged)
    return parse_space(merged_text, source=f"{source} with --model {path.stem} ({path.name})")


def parse_space(text: str, *, source: str = "<string>") -> SearchSpec:
    """Parses and validates the YAML text of a space."""
    raw = load_yaml(text, source)
    if not isinstance(raw, dict):
        raise MimlTuneError(
            f"{source}: a space file must be a mapping of keys (name: ..., model: ...), got "
            f"{short(raw)}"
        )
    _check_keys(raw, _TOP_KEYS, source, "")
    for key in ("name", "model", "dataset", "metric", "params"):
        if key not in raw:
            raise MimlTuneError(f"{source}: missing required key {key!r}")

    def get(mapping: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        value = mapping[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise MimlTuneError(
                f"{source}: {where}{key} must be {type_name(kind)}, got {short(value)}"
            )
        if not isinstance(value, kind):
            raise MimlTuneError(
                f"{source}: {where}{key} must be {type_name(kind)}, got {short(value)}"
            )
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
                f"{source}: peers must be a list of model names (possibly empty), got "
                f"{short(peers)}"
            )
        settings["peers"] = tuple(dict.fromkeys(p.strip().lower().replace("-", "_") for p in peers))
    for key in ("seed", "holdout_seed"):
        if key in raw:
            settings[key] = get(raw, key, int, "")
    for section, keys, names in (
        ("cv", _CV_KEYS, {"folds": "cv_folds", "repeats": "cv_repeats"}),
        ("budget", _BUDGET_KEYS, {k: k for k in _BUDGET_KEYS} | {"time": "time_budget"}),
        ("scheduler", _SCHEDULER_KEYS, {"name": "scheduler"} | {k: k for k in _SCHEDULER_KEYS[1:]}),
    ):
        if section not in raw:
            continue
        block = raw[section]
        if not isinstance(block, dict):
            raise MimlTuneError(f"{source}: {section} must be a mapping, got {short(block)}")
        _check_keys(block, dict.fromkeys(keys, ""), source, f"{section}.")
        for key in block:
            if section == "budget" and key == "time":
                value = block[key]
                settings["time_budget"] = parse_duration(
                    value if isinstance(value, (str, int, float)) else short(value),
                    what=f"{source}: budget.time",
                )
                continue
            kind: type | tuple[type, ...] = (
                str
                if key in ("name", "fidelity", "racing")
                else (int, float)
                if key in ("reduction_factor", "racing_alpha")
                else int
            )
            settings[names[key]] = get(block, key, kind, f"{section}.")

    settings.setdefault("mode", "")
    params_raw = raw["params"]
    if not isinstance(params_raw, dict) or not params_raw:
        raise MimlTuneError(f"{source}: params must be a non-empty mapping of hyper-parameters")
    params: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for key, value in params_raw.items():
        domain = parse_domain(value, source, f"params.{key_text(key)}")
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
        spec = dataclasses.replace(spec, mode=metric_mode(spec.metric, source))
    check_settings(spec, where=source)
    check_params(spec)
    return spec


def _check_keys(
    block: Mapping[str, Any], allowed: Mapping[str, str], source: str, prefix: str
) -> None:
    for key in block:
        if key not in allowed:
            raise MimlTuneError(
                f"{source}: unknown key {prefix}{short(key, 60)}; allowed keys: "
                f"{', '.join(allowed)}"
            )
