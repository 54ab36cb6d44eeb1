"""A trained learner as data: a JSON document and a file of tensors, and nothing to unpickle.

:func:`export_learner` walks the learner's attributes (less what it keeps only to train) and
writes each value as data: JSON for numbers, strings, lists and mappings; named tensors for
arrays, tensors and a torch model's ``state_dict``; a few small classes of this package (a
fitted scaler, a linear probe, an SVM's decision function) as their fields. :func:`import_learner`
builds the learner again from its registered class (``learner.build_model()`` for its torch
model) and fills it from that data. The tensors load with ``torch.load(weights_only=True)``, and
nothing in the document names code: a class is looked up in a fixed table, never imported by
name, so a model store can hold wrong numbers but cannot make loading run code of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np
import torch

from tuner.data.preprocess import InstanceStandardizer
from tuner.learners import resolve_learner
from tuner.learners.base import Learner
from tuner.learners.mimlsvm import KernelMachine
from tuner.learners.mulsupcon import LinearProbe

FORMAT = 1
# Attributes every learner keeps only to train (an optimiser's state is as large as the model).
TRAINING_ONLY = ("optimizer", "scheduler")
# The plain classes a saved learner may hold, by the name the document gives them.
DATA_CLASSES: dict[str, type] = {
    "InstanceStandardizer": InstanceStandardizer,
    "LinearProbe": LinearProbe,
    "KernelMachine": KernelMachine,
}
_NAMES = {cls: name for name, cls in DATA_CLASSES.items()}


class StateError(ValueError):
    """A saved learner that cannot be read back (a damaged or foreign document)."""


def export_learner(learner: Learner) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The learner as ``(document, tensors)``: a JSON-ready document and named CPU tensors."""
    tensors: dict[str, torch.Tensor] = {}
    drop = {*TRAINING_ONLY, *learner.training_only}
    values = {k: _encode(v, k, tensors) for k, v in vars(learner).items() if k not in drop}
    document = {
        "format": FORMAT,
        "learner": learner.name,
        "config": _encode(dict(learner.config), "config", tensors),
        "n_features": learner.n_features,
        "n_labels": learner.n_labels,
        "seed": learner.seed,
        "attributes": values,
    }
    return document, tensors


def import_learner(document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Learner:
    """The learner :func:`export_learner` wrote, on the CPU.

    Raises:
        StateError: the document is not a saved learner of this format, names a model or a
            class this package does not have, or its tensors do not fit the model.
    """
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        raise StateError(f"not a saved learner of format {FORMAT}")
    try:
        cls = resolve_learner(str(document["learner"]))
        learner = cls(
            _decode(document["config"], tensors),
            n_features=int(document["n_features"]),
            n_labels=int(document["n_labels"]),
            seed=int(document["seed"]),
            device="cpu",
        )
        attributes = document["attributes"]
        modules = {}
        for key, value in attributes.items():
            if isinstance(value, Mapping) and "__module__" in value:
                modules[key] = value
            else:
                setattr(learner, key, _decode(value, tensors))
        for key, value in modules.items():
            setattr(learner, key, _module(learner, key, value, tensors))
    except StateError:
        raise
    except Exception as exc:  # a damaged document: a missing key, a wrong type or shape
        raise StateError(f"{type(exc).__name__}: {exc}") from None
    learner.device = torch.device("cpu")
    return learner


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return _encode(value.item(), path, tensors)
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{path}: an array of Python objects cannot be saved as data")
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"__ndarray__": path}
    if isinstance(value, torch.nn.Module):
        for name, tensor in value.state_dict().items():
            tensors[f"{path}/{name}"] = tensor.detach().cpu().clone()
        return {"__module__": path, "training": value.training}
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().clone()
        return {"__tensor__": path, "requires_grad": bool(value.requires_grad)}
    if isinstance(value, torch.device):
        return {"__device__": "cpu"}
    if isinstance(value, torch.Generator):
        tensors[path] = value.get_state()
        return {"__generator__": path}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{path}: a mapping with keys other than strings")
        return {"__dict__": {k: _encode(v, f"{path}.{k}", tensors) for k, v in value.items()}}
    class_name = _NAMES.get(type(value))
    if class_name is not None:
        attrs = (
            {f.name: getattr(value, f.name) for f in fields(value)}
            if is_dataclass(value)
            else vars(value)
        )
        return {
            "__object__": class_name,
            "fields": {k: _encode(v, f"{path}.{k}", tensors) for k, v in attrs.items()},
        }
    raise TypeError(f"{path}: a {type(value).__qualname__} cannot be saved as data")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, Mapping):
        raise StateError(f"unexpected {type(value).__name__} in a saved learner")
    if "__float__" in value:
        return float(str(value["__float__"]))  # 'nan', 'inf' or '-inf'
    if "__ndarray__" in value:
        return _tensor(tensors, value["__ndarray__"]).numpy()
    if "__tensor__" in value:
        return _tensor(tensors, value["__tensor__"]).requires_grad_(bool(value["requires_grad"]))
    if "__device__" in value:
        return torch.device("cpu")
    if "__generator__" in value:
        generator = torch.Generator()
        generator.set_state(_tensor(tensors, value["__generator__"]))
        return generator
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__dict__" in value:
        return {str(k): _decode(v, tensors) for k, v in value["__dict__"].items()}
    if "__object__" in value:
        cls = DATA_CLASSES.get(str(value["__object__"]))
        if cls is None:
            raise StateError(f"a saved learner names an unknown class {value['__object__']!r}")
        obj: Any = object.__new__(cls)
        for key, field_value in value["fields"].items():
            setattr(obj, str(key), _decode(field_value, tensors))
        return obj
    raise StateError(f"unexpected mapping {sorted(value)[:3]} in a saved learner")


def _tensor(tensors: Mapping[str, torch.Tensor], key: Any) -> torch.Tensor:
    tensor = tensors.get(str(key))
    if not isinstance(tensor, torch.Tensor):
        raise StateError(f"a saved learner lacks its tensor {str(key)[:100]!r}")
    return tensor


def _module(
    learner: Learner, key: str, value: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> torch.nn.Module:
    if key != "model":
        raise StateError(f"a saved learner holds a torch model under {key!r}, not 'model'")
    module = learner.build_model()
    prefix = f"{value['__module__']}/"
    state = {k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)
    module.train(bool(value.get("training", False)))
    return module
