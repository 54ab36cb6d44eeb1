"""A trained learner as an MLflow model: saved with its preprocessing, loaded by name, predicting.

A promoted model is an MLflow ``python_function`` model in MLflow's *loader module* form: its
data folder holds the trained learner as data (``learner.json``, the configuration, fitted
scaling and the like, and ``tensors.pt``, the weights and arrays, read with
``torch.load(weights_only=True)``; :mod:`tuner.learners.state`) plus a small JSON file of
metadata (model name, feature count, label names), and MLflow loads it by calling
:func:`_load_pyfunc` of this installed module. Loading runs no code and unpickles nothing from
the model store. Models promoted by miml-tune 0.1 (a torch pickle, loaded through a copy of
``serving_entry.py`` kept in the store) are refused unless the caller trusts the store
(``--trust-pickled-model``).

Bags do not fit a table, so the model's input is the *long* form every MIML tool can write: one
row per instance, a ``bag_id`` column and the instance features ``f0 … f{d-1}``. Its output is one
row per bag, in the order bags first appear: ``bag_id`` and one score column per label name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from tuner.errors import MimlTuneError, first_line

if TYPE_CHECKING:
    from tuner.learners import Learner

ENTRY_FILE = str(Path(__file__).with_name("serving_entry.py"))  # miml-tune 0.1's models
LOADER_MODULE = "tuner.serving"  # MLflow calls its _load_pyfunc(data folder)
LEARNER_FILE = "learner.json"
TENSORS_FILE = "tensors.pt"
PICKLED_FILE = "learner.pt"  # a model promoted by miml-tune 0.1: a torch pickle
META_FILE = "miml_tune_model.json"
BAG_COLUMN = "bag_id"


def quiet_mlflow() -> None:
    """MLflow's progress bars, INFO lines and type-hint advice are noise in a CLI's output."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ["mlflow", *logging.root.manager.loggerDict]:
        if name.startswith("mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")


def feature_columns(n_features: int) -> list[str]:
    return [f"f{j}" for j in range(n_features)]


def bags_to_frame(bags: Sequence[np.ndarray], bag_ids: Sequence[str]) -> pd.DataFrame:
    """The long form of ``bags``: one row per instance, ``bag_id`` then ``f0 … f{d-1}``."""
    if not bags:
        raise MimlTuneError("no bags to predict")
    n_features = bags[0].shape[1]
    ids = np.repeat(np.asarray(bag_ids, dtype=object), [len(b) for b in bags])
    values = np.concatenate(bags).astype(np.float32, copy=False)
    frame = pd.DataFrame(values, columns=feature_columns(n_features))
    frame.insert(0, BAG_COLUMN, ids.astype(str))
    return frame


def frame_to_bags(frame: pd.DataFrame, n_features: int) -> tuple[list[str], list[np.ndarray]]:
    """Bag ids (in order of first appearance) and bags from the long form."""
    if BAG_COLUMN not in frame.columns:
        raise MimlTuneError(
            f"model input needs a {BAG_COLUMN!r} column and feature columns f0..f{n_features - 1}"
        )
    columns = feature_columns(n_features)
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c != BAG_COLUMN and c not in set(columns)]
    if missing or extra:
        found = len(frame.columns) - 1
        raise MimlTuneError(
            f"the model takes {n_features} instance features (columns f0..f{n_features - 1}), "
            f"the input has {found} feature columns"
            + (f" (missing {missing[:3]})" if missing else f" (unexpected {extra[:3]})")
        )
    try:
        values = frame[columns].to_numpy(dtype=np.float32)
    except (TypeError, ValueError):
        raise MimlTuneError("the input's feature columns f0.. must hold numbers") from None
    if not np.isfinite(values).all():
        raise MimlTuneError("the input has missing or non-finite feature values")
    # Bags in order of first appearance; a bag's rows need not be contiguous.
    codes, uniques = pd.factorize(frame[BAG_COLUMN].astype(str), sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    bags = [np.ascontiguousarray(part) for part in np.split(values[order], bounds)]
    return [str(b) for b in uniques], bags


def save_learner(learner: Learner, folder: Path, meta: Mapping[str, Any]) -> dict[str, str]:
    """Writes the learner as data (without its training-only state) and ``meta`` into
    ``folder``; returns the files."""
    import torch

    from tuner.learners.state import export_learner

    folder.mkdir(parents=True, exist_ok=True)
    document, tensors = export_learner(learner)
    (folder / LEARNER_FILE).write_text(json.dumps(document, allow_nan=False))
    torch.save(tensors, folder / TENSORS_FILE)
    (folder / META_FILE).write_text(json.dumps(dict(meta), indent=2, sort_keys=True))
    return {name: str(folder / name) for name in (LEARNER_FILE, TENSORS_FILE, META_FILE)}


def load_learner(folder: str | os.PathLike[str], *, trust_pickled: bool = False) -> Learner:
    """The learner saved by :func:`save_learner` in ``folder``, on the CPU, read as data.

    A folder of miml-tune 0.1 (``learner.pt``, a pickle) loads only with ``trust_pickled``.
    """
    import torch

    from tuner.learners.state import StateError, import_learner

    folder = Path(folder)
    if (folder / LEARNER_FILE).is_file():
        try:
            document = json.loads((folder / LEARNER_FILE).read_text())
            tensors = torch.load(folder / TENSORS_FILE, map_location="cpu", weights_only=True)
            return import_learner(document, tensors)
        except (OSError, ValueError, RuntimeError, StateError) as exc:
            raise MimlTuneError(
                f"cannot read the saved learner in {folder}: {first_line(exc)}"
            ) from None
    if (folder / PICKLED_FILE).is_file():
        if not trust_pickled:
            raise MimlTuneError(pickled_model_message(str(folder)))
        learner: Learner = torch.load(folder / PICKLED_FILE, map_location="cpu", weights_only=False)
        learner.device = torch.device("cpu")
        return learner
    raise MimlTuneError(f"no saved learner in {folder} ({LEARNER_FILE} or {PICKLED_FILE})")


def pickled_model_message(where: str) -> str:
    return (
        f"{where} was promoted by miml-tune 0.1 as a pickle, which runs code from the model "
        "store when it loads; promote the search again to store it as data, or pass "
        "--trust-pickled-model if you trust that store"
    )


class ServedModel:
    """What MLflow's ``pyfunc`` loader returns for a miml-tune model: predicts bag scores."""

    def __init__(self, learner: Learner, meta: Mapping[str, Any]) -> None:
        self.learner, self.meta = learner, dict(meta)

    def predict(
        self, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        ids, bags = frame_to_bags(model_input, int(self.meta["n_features"]))
        return scores_frame(ids, predict_bags(self.learner, bags), self.meta["label_names"])


def _load_pyfunc(data_path: str) -> ServedModel:
    """MLflow's entry point for the loader-module form (``loader_module="tuner.serving"``)."""
    folder = Path(data_path)
    meta = json.loads((folder / META_FILE).read_text())
    return ServedModel(load_learner(folder), meta)


class MimlTuneModel(PythonModel):
    """The wrapper of models promoted by miml-tune 0.1 (loaded through ``serving_entry.py``),
    kept so that a store one trusts can still be read (``--trust-pickled-model``)."""

    def load_context(self, context: Any) -> None:
        self.served = ServedModel(
            load_learner(Path(context.artifacts["learner"]).parent, trust_pickled=True),
            json.loads(Path(context.artifacts["meta"]).read_text()),
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.served.predict(model_input, params)


def predict_bags(learner: Learner, bags: Sequence[np.ndarray]) -> np.ndarray:
    """``(n, L)`` label scores in [0, 1] of ``bags`` (0.5 is the model's decision point)."""
    import torch

    with torch.inference_mode():
        return np.asarray(learner.predict(learner.encode(list(bags))), dtype=np.float64)


def scores_frame(ids: Sequence[str], scores: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(scores, columns=list(labels))
    frame.insert(0, BAG_COLUMN, list(ids))
    return frame


def pip_requirements() -> list[str]:
    """The packages a loading process needs, pinned to the versions that trained the model."""
    from importlib import metadata

    pins = []
    for dist in ("miml-tune", "torch", "torch-geometric", "scikit-learn", "numpy", "pandas"):
        version = metadata.version(dist).split("+")[0]
        pins.append(f"{dist}=={version}")
    pins.append(f"mlflow>={metadata.version('mlflow').split('+')[0]}")
    return pins


# ------------------------------------------------------------------------------- predict
OUTPUT_SUFFIXES = (".csv", ".jsonl")
# Metrics of predicted label sets (the others rank the scores).
SET_METRICS = ("hamming_loss", "macro_f1", "hamming_accuracy", "example_f1", "micro_f1")


def _read_csv(path: str) -> pd.DataFrame:
    """A CSV in the model's input form: ``bag_id`` then ``f0 … f{d-1}``, one row per instance."""
    try:
        frame = pd.read_csv(path, dtype={BAG_COLUMN: str})
    except FileNotFoundError:
        raise MimlTuneError(f"data file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise MimlTuneError(f"cannot read {path} as CSV: {exc}") from None
    if BAG_COLUMN not in frame.columns or frame.empty:
        raise MimlTuneError(
            f"{path}: a CSV to predict needs a {BAG_COLUMN!r} column, feature columns f0, f1, ... "
            "and one row per instance"
        )
    return frame


def check_predict_options(out: str | None, threshold: float | None, top_k: int | None) -> None:
    """Refuses bad ``predict`` options before anything is loaded."""
    if out is not None and Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise MimlTuneError(
            f"--out {out}: unknown format {Path(out).suffix or '(no suffix)'}; use a .csv or "
            ".jsonl file"
        )
    if out is not None and not Path(out).expanduser().resolve().parent.is_dir():
        raise MimlTuneError(f"--out {out}: folder {Path(out).parent} does not exist")
    if out is not None and Path(out).expanduser().is_dir():
        raise MimlTuneError(f"--out {out} is a folder; give a file name ending in .csv or .jsonl")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise MimlTuneError(f"--threshold must be in (0, 1), got {threshold}")
    if top_k is not None and top_k < 1:
        raise MimlTuneError(f"--top-k must be an integer >= 1, got {top_k}")


def load_model(model_uri: str, tracking_uri: str, *, trust_pickled: bool = False) -> Any:
    """The pyfunc model at ``model_uri`` (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``runs:/ID/model`` or a local folder), or one line saying why it cannot be loaded.

    The model's description (its ``MLmodel`` file) is read first: only a miml-tune model stored
    as data is loaded; one stored as a pickle (miml-tune 0.1) only with ``trust_pickled``, and
    any other model never (loading it could run code from the store)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import get_model_info

    quiet_mlflow()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    store = tracking_uri[len("sqlite:///") :] if tracking_uri.startswith("sqlite:///") else ""
    # Opening a sqlite store that does not exist would create an empty one.
    if "://" in model_uri and store and not Path(store).is_file():
        raise MimlTuneError(
            f"model {model_uri} not found: there is no MLflow store at {tracking_uri}; "
            "pass --tracking-uri"
        )
    try:
        info = get_model_info(model_uri)
        if not (info.metadata or {}).get("miml_tune"):
            raise MimlTuneError(f"{model_uri} is not a miml-tune model (no miml_tune metadata)")
        loader = (info.flavors.get("python_function") or {}).get("loader_module")
        if loader != LOADER_MODULE and not trust_pickled:
            raise MimlTuneError(pickled_model_message(f"model {model_uri}"))
        return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as exc:
        first = first_line(exc)
        raise MimlTuneError(f"cannot load model {model_uri} from {tracking_uri}: {first}") from None


def label_sets(
    scores: np.ndarray, threshold: float | None = None, top_k: int | None = None
) -> np.ndarray:
    """``(n, L)`` 0/1 predicted label sets: scores >= ``threshold`` (0.5 by default, the
    models' own decision point); with ``top_k`` alone the ``k`` best labels of each bag; with
    both, the labels above the threshold, at most ``k`` of them."""
    if top_k is None:
        return (scores >= (0.5 if threshold is None else threshold)).astype(np.uint8)
    k = min(top_k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    chosen = np.zeros_like(scores, dtype=np.uint8)
    np.put_along_axis(chosen, order, 1, axis=1)
    if threshold is not None:
        chosen &= (scores >= threshold).astype(np.uint8)
    return chosen


def predict(
    model_uri: str,
    data: str,
    *,
    tracking_uri: str | None = None,
    out: str | None = None,
    threshold: float | None = None,
    top_k: int | None = None,
    bag_key: str | None = None,
    label_key: str | None = None,
    trust_pickled_model: bool = False,
) -> dict[str, Any]:
    """Scores every bag of the data file ``data`` with the model at ``model_uri``.

    ``data`` is any file the loaders read (labels there are used to report metrics), or a CSV
    in the model's input form (``bag_id``, ``f0 … f{d-1}``; no labels needed).

    Writes ``out`` (CSV: ``bag_id``, ``labels`` joined by ';', a ``score.<label>`` column per
    label; JSON lines: ``{"bag_id", "labels", "scores"}``) when given, and returns a summary:
    bags, labels per bag, the most predicted labels, and the metrics against the file's own
    labels when it has any. The file is written whole or not at all.
    """
    from tuner import tracking
    from tuner.data import load_dataset
    from tuner.metrics import ALL_METRICS, compute

    check_predict_options(out, threshold, top_k)
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri, existing=True)
    keys = {k: v for k, v in (("bag_key", bag_key), ("label_key", label_key)) if v is not None}
    dataset = None
    if Path(data).suffix.lower() == ".csv":  # the model's own input form, labels not needed
        frame_in = _read_csv(data)
        n_features = sum(1 for c in frame_in.columns if c != BAG_COLUMN)
    else:
        dataset = load_dataset(data, **keys)
        n_features = dataset.n_features
    model = load_model(model_uri, uri, trust_pickled=trust_pickled_model)
    meta = model.metadata.metadata["miml_tune"]
    if n_features != int(meta["n_features"]):
        raise MimlTuneError(
            f"{data} has {n_features} features per instance, the model "
            f"{model_uri} takes {meta['n_features']}; give data with the features it was trained on"
        )
    if dataset is not None:
        frame_in = bags_to_frame(dataset.bags, dataset.bag_ids)
    else:
        frame_to_bags(frame_in, n_features)  # the input's own checks, as one line each
    started = time.monotonic()
    frame = model.predict(frame_in)
    seconds = time.monotonic() - started
    labels = list(meta["label_names"])
    scores = frame[labels].to_numpy(dtype=np.float64)
    chosen = label_sets(scores, threshold, top_k)
    ids = frame[BAG_COLUMN].astype(str).tolist()
    if out is not None:
        _write_predictions(Path(out).expanduser(), ids, labels, scores, chosen)
    counts = chosen.sum(axis=0).astype(np.int64)
    result: dict[str, Any] = {
        "model_uri": model_uri,
        "model": meta["model"],
        "search": meta.get("search"),
        "data": str(data),
        "bags": len(ids),
        "labels_per_bag": round(float(chosen.sum(axis=1).mean()), 3),
        "most_predicted": {
            labels[j]: int(counts[j]) for j in np.argsort(-counts, kind="stable")[:5] if counts[j]
        },
        "threshold": threshold if threshold is not None or top_k is not None else 0.5,
        "top_k": top_k,
        "out": str(out) if out else None,
        "seconds": round(seconds, 3),
    }
    if dataset is not None and tuple(dataset.label_names) == tuple(labels) and dataset.labels.any():
        # Ranking metrics from the scores; set metrics from the label sets predicted here.
        ranking = [m for m in ALL_METRICS if m not in SET_METRICS]
        values = compute(dataset.labels, scores, names=ranking)
        values |= compute(dataset.labels, chosen.astype(np.float64), names=list(SET_METRICS))
        result["metrics"] = {k: round(v, 6) for k, v in values.items()}
        if dataset.fingerprint() == meta.get("dataset_fingerprint"):
            result["note"] = (
                "this is the search's own data: the model was trained on its development bags, "
                "so these scores are optimistic; promote's holdout scores are the honest ones"
            )
    result["rows"] = [
        {"bag_id": i, "labels": [labels[j] for j in np.flatnonzero(row)]}
        for i, row in zip(ids, chosen, strict=True)
    ]
    return result


def _write_predictions(
    path: Path, ids: Sequence[str], labels: Sequence[str], scores: np.ndarray, chosen: np.ndarray
) -> None:
    import csv

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", newline="") as handle:
            if path.suffix.lower() == ".csv":
                writer = csv.writer(handle)
                writer.writerow([BAG_COLUMN, "labels", *(f"score.{name}" for name in labels)])
                for bag, row, picked in zip(ids, scores, chosen, strict=True):
                    names = ";".join(labels[int(j)] for j in np.flatnonzero(picked))
                    writer.writerow([bag, names, *(f"{s:.6f}" for s in row)])
            else:
                for bag, row, picked in zip(ids, scores, chosen, strict=True):
                    record = {
                        BAG_COLUMN: bag,
                        "labels": [labels[int(j)] for j in np.flatnonzero(picked)],
                        "scores": {
                            name: round(float(s), 6) for name, s in zip(labels, row, strict=True)
                        },
                    }
                    handle.write(json.dumps(record) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
