"""From the best trial to a registered champion.

:func:`refit` trains the chosen configuration on the whole development data for the trial's
number of epochs, with the search's seed; :func:`score` scores it on the holdout (or the official
test split). The holdout is used here, after the search, and nowhere before.

:func:`promote` does both for the best trial of a finished search, logs the refit model as an
MLflow model (see :mod:`tuner.serving`), registers it as a new version of a registered model
with its lineage, and moves an alias (``champion``) to it only when it scores at least as well on
the same holdout as the version the alias points at.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.exceptions import MlflowException

from tuner import __version__, tracking
from tuner.data import DataWarning, MIMLDataset
from tuner.errors import MimlTuneError, first_line
from tuner.learners import Learner, resolve_learner
from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, compute, compute_instances, mode_of
from tuner.serving import quiet_mlflow
from tuner.trial import CVProtocol

DEFAULT_ALIAS = "champion"
ROLE = "promotion"
_TAG = "miml_tune."
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_ALIAS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")


def refit(
    model: str,
    config: Mapping[str, Any],
    dev: MIMLDataset,
    *,
    epochs: int,
    seed: int,
    known_labels: float = 1.0,
    device: torch.device | str = "cpu",
) -> Learner:
    """Trains ``model`` with ``config`` on all of ``dev`` for ``epochs`` epochs.

    With ``known_labels < 1`` (SARB's protocol) the development labels are hidden exactly as
    the search hid each fold's training labels.
    """
    learner_cls = resolve_learner(model)
    if "epochs" in learner_cls.defaults:
        config = {**config, "epochs": epochs}
    learner = learner_cls(
        config, n_features=dev.n_features, n_labels=dev.n_labels, seed=seed, device=device
    )
    protocol = CVProtocol(seed=seed, known_labels=known_labels)
    learner.setup(dev.bags, protocol.training_labels(dev.labels, 0, learner_cls.partial_labels))
    for _ in range(learner.epochs):
        learner.train_epoch()
    return learner


def score(
    learner: Learner, data: MIMLDataset, metrics: Sequence[str] = ALL_METRICS
) -> dict[str, float]:
    """Every metric of ``learner`` on ``data`` (holdout or official test split), and the
    instance-level ones where the data labels its instances and the learner predicts them."""
    encoded = learner.encode(data.bags)
    values = compute(data.labels, learner.predict(encoded), names=list(metrics))
    if data.instance_labels is not None:
        predicted = learner.predict_instances(encoded)
        if predicted is not None:
            values |= compute_instances(data.instance_labels, predicted, names=INSTANCE_METRICS)
    return values


@dataclass(frozen=True)
class _Search:
    """What promote needs of a finished search: its summary, parent run, space and data."""

    summary: dict[str, Any]
    parent: Any  # mlflow.entities.Run
    space: Any  # tuner.spec.SearchSpec
    full: MIMLDataset
    dev: MIMLDataset
    holdout: MIMLDataset | None


def promote(
    name: str,
    *,
    tracking_uri: str | None = None,
    alias: str = DEFAULT_ALIAS,
    force: bool = False,
    data: str | None = None,
    registered_name: str | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Refits the best trial of search ``name``, registers it, and moves ``alias`` if it is
    at least as good on the holdout as the current holder of the alias (or with ``force``).

    Everything that can be refused is checked before anything is written: the names, the
    store, the search, the data (its fingerprint must be the search's). A failure after the
    model version exists deletes that version, so the registry never keeps a half-made one and
    the alias is only ever set on a complete version.

    Returns:
        What ``miml-tune promote --json`` prints: the registered model, version, alias, whether
        the alias moved and why, the holdout and CV metrics, lineage and timings.
    """
    say = progress or (lambda _message: None)
    quiet_mlflow()
    registered_name = registered_name or name
    if not _NAME_RE.match(registered_name):
        raise MimlTuneError(
            f"registered model name {registered_name!r} must be letters, digits, '.', '_' or '-'"
        )
    if not _ALIAS_RE.match(alias) or re.fullmatch(r"[vV]\d+|latest", alias):
        raise MimlTuneError(
            f"alias {alias!r} must start with a letter or '_', hold only letters, digits, '_' "
            "or '-', and not be 'latest' or look like a version (v1)"
        )
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri, existing=True)
    started = time.monotonic()
    search = _load_search(name, uri, data)
    summary, best = search.summary, search.summary["best"]
    metric, mode = summary["metric"], summary["mode"]
    mlflow_client = tracking.client(uri)
    try:
        _check_registered_model(
            mlflow_client, registered_name, summary["dataset_fingerprint"], search.full.label_names
        )
        current = _alias_holder(mlflow_client, registered_name, alias)
    except MlflowException as exc:
        _raise_one_line(exc, f"cannot read registered model {registered_name!r} in {uri}")
        raise

    say(f"refitting trial {best['trial_id']} on {search.dev.n_bags} development bags ...")
    learner = refit(
        search.space.model,
        best["config"],
        search.dev,
        epochs=int(best["epochs"]),
        seed=search.space.seed,
        known_labels=search.space.known_labels,
    )
    refit_seconds = time.monotonic() - started
    holdout = score(learner, search.holdout) if search.holdout is not None else {}
    holdout_fingerprint = search.holdout.fingerprint() if search.holdout is not None else ""

    lineage = {
        "search": name,
        "parent_run_id": search.parent.info.run_id,
        "trial_id": str(best["trial_id"]),
        "model": search.space.model,
        "config": json.dumps(best["config"], sort_keys=True),
        "epochs": str(best["epochs"]),
        "seed": str(search.space.seed),
        "dataset": summary["dataset"],
        "dataset_fingerprint": summary["dataset_fingerprint"],
        "holdout_kind": summary["holdout_kind"] if search.holdout is not None else "none",
        "holdout_fingerprint": holdout_fingerprint,
        "label_names": json.dumps(list(search.full.label_names)),
        "metric": metric,
        "mode": mode,
        "version": __version__,
        **{f"holdout.{k}": repr(float(v)) for k, v in holdout.items() if math.isfinite(v)},
    }
    say("logging the model to MLflow ...")
    log_started = time.monotonic()
    try:
        run_id, model_uri = _log_model(mlflow_client, uri, search, learner, lineage, holdout)
    except MlflowException as exc:
        _raise_one_line(exc, "logging the model failed; nothing was registered")
        raise
    log_seconds = time.monotonic() - log_started

    register_started = time.monotonic()
    version = None
    try:
        version = _register(mlflow_client, registered_name, model_uri, run_id, lineage, summary)
        mlflow_client.set_tag(run_id, f"{_TAG}registered_version", str(version))
        mlflow_client.set_terminated(run_id, "FINISHED")
        # The decision and the move under one lock, against the holder read under it: another
        # promotion may have moved the alias during this one's refit.
        with tracking.store_lock(uri):
            current = _alias_holder(mlflow_client, registered_name, alias)
            moved, reason = _alias_decision(
                current, holdout.get(metric), holdout_fingerprint, lineage
            )
            if force and not moved:
                moved, reason = True, f"forced (--force); {reason}"
            # The last write: once the alias is on the new version, nothing is undone.
            if moved:
                mlflow_client.set_registered_model_alias(registered_name, alias, version)
        if moved:  # a store without the lock (a server): say only what holds now
            holder = _alias_holder(mlflow_client, registered_name, alias)
            if holder is None or str(holder.get("version")) != str(version):
                moved, current = False, holder
                reason = (
                    f"another promotion moved the alias to version "
                    f"{(holder or {}).get('version')} at the same time; it stays there"
                )
    except BaseException as exc:
        # Deleting a version drops its aliases too, and the alias was not moved yet: the
        # previous champion keeps it.
        with contextlib.suppress(Exception):
            if version is not None:
                mlflow_client.delete_model_version(registered_name, version)
        with contextlib.suppress(Exception):
            mlflow_client.set_terminated(run_id, "FAILED")
        _raise_one_line(exc, f"registering {registered_name!r} failed; nothing was registered")
        raise
    register_seconds = time.monotonic() - register_started
    return {
        "name": name,
        "registered_model": registered_name,
        "version": int(version),
        "alias": alias,
        "alias_moved": moved,
        "reason": reason,
        "champion_version": int(version) if moved else (current or {}).get("version"),
        "previous": current,
        "model_uri": f"models:/{registered_name}/{version}",
        "alias_uri": f"models:/{registered_name}@{alias}",
        "run_id": run_id,
        "parent_run_id": search.parent.info.run_id,
        "trial_id": best["trial_id"],
        "model": search.space.model,
        "config": best["config"],
        "epochs": best["epochs"],
        "metric": metric,
        "mode": mode,
        "holdout_kind": lineage["holdout_kind"],
        "holdout_bags": search.holdout.n_bags if search.holdout is not None else 0,
        "holdout": holdout,
        "cv": {k: v["mean"] for k, v in best["metrics"].items()},
        "tracking_uri": uri,
        "timing": {
            "refit_seconds": round(refit_seconds, 2),
            "log_seconds": round(log_seconds, 2),
            "register_seconds": round(register_seconds, 2),
            "total_seconds": round(time.monotonic() - started, 2),
        },
    }


def _raise_one_line(exc: BaseException, context: str) -> None:
    """MLflow's errors reach the user as one line (with ``context``); others propagate."""
    if isinstance(exc, MlflowException):
        first = first_line(exc)
        raise MimlTuneError(f"{context}: {first}") from None


def _check_registered_model(
    mlflow_client: Any, registered_name: str, fingerprint: str, labels: Sequence[str]
) -> None:
    """Refuses to add a version to a registered model that holds something else: a model that
    miml-tune did not register, or one trained on other data (other labels, other features)."""
    try:
        mlflow_client.get_registered_model(registered_name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return
        raise
    hint = "choose another --registered-name"
    for version in mlflow_client.search_model_versions(f"name = '{registered_name}'"):
        tags = dict(version.tags or {})
        theirs = tags.get(f"{_TAG}dataset_fingerprint")
        if theirs is None:
            raise MimlTuneError(
                f"registered model {registered_name!r} holds version {version.version}, which "
                f"miml-tune did not register; {hint}"
            )
        if theirs != fingerprint and tags.get(f"{_TAG}label_names") != json.dumps(list(labels)):
            raise MimlTuneError(
                f"registered model {registered_name!r} holds models of other data (version "
                f"{version.version}: dataset fingerprint {theirs}, this search's {fingerprint}); "
                f"{hint}"
            )


def _load_search(name: str, uri: str, data: str | None) -> _Search:
    """The latest finished search ``name``, its space, and its data split as the search did."""
    import yaml

    from tuner.search import DATA_PATH_TAG, prepare_data
    from tuner.spec import parse_space

    summary = tracking.read_summary(name, uri)
    mlflow_client = tracking.client(uri)
    parent = mlflow_client.get_run(summary["mlflow"]["parent_run_id"])
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow_client.download_artifacts(parent.info.run_id, "space_effective.json", tmp)
        effective = json.loads(Path(path).read_text())
    space = parse_space(yaml.safe_dump(effective), source=f"search {name!r}")
    tags = parent.data.tags
    source = data or tags.get(DATA_PATH_TAG)
    if source and not Path(source).expanduser().exists():
        hint = "" if data else " (the file the search read); pass --data with its new path"
        raise MimlTuneError(f"data file {source} does not exist{hint}")
    with warnings.catch_warnings():
        # The search showed the data's warnings already; other data is refused just below.
        warnings.simplefilter("ignore", DataWarning)
        full, dev, holdout = prepare_data(
            space,
            source,
            bag_key=tags.get(f"{_TAG}bag_key"),
            label_key=tags.get(f"{_TAG}label_key"),
        )
    if full.fingerprint() != summary["dataset_fingerprint"]:
        raise MimlTuneError(
            f"the data {'at ' + source if source else 'of ' + repr(space.dataset)} is not the "
            f"data search {name!r} ran on (fingerprint {full.fingerprint()}, the search's "
            f"{summary['dataset_fingerprint']}); pass --data with the file the search read"
        )
    return _Search(summary, parent, space, full, dev, holdout)


def _alias_holder(mlflow_client: Any, registered_name: str, alias: str) -> dict[str, Any] | None:
    """The version ``alias`` points at, with its holdout lineage; ``None`` if unset."""
    try:
        version = mlflow_client.get_model_version_by_alias(registered_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    tags = dict(version.tags or {})
    return {
        "version": int(version.version),
        "metric": tags.get(f"{_TAG}metric"),
        "holdout_fingerprint": tags.get(f"{_TAG}holdout_fingerprint", ""),
        "holdout": {
            k[len(f"{_TAG}holdout.") :]: float(v)
            for k, v in tags.items()
            if k.startswith(f"{_TAG}holdout.")
        },
    }


def _alias_decision(
    current: dict[str, Any] | None,
    value: float | None,
    holdout_fingerprint: str,
    lineage: Mapping[str, str],
) -> tuple[bool, str]:
    """Whether the new version takes the alias, and why (in words for the terminal)."""
    metric, mode = lineage["metric"], lineage["mode"]
    if current is None:
        return True, "no version held the alias"
    held = f"version {current['version']}"
    if not holdout_fingerprint or value is None or not math.isfinite(value):
        return False, f"this search has no holdout score to compare with {held}"
    if not current["holdout_fingerprint"]:
        return False, f"{held} has no holdout score to compare with; --force moves the alias"
    if current["holdout_fingerprint"] != holdout_fingerprint:
        return False, (
            f"{held} was scored on another holdout; the scores are not comparable "
            "(--force moves the alias)"
        )
    old = current["holdout"].get(metric)
    if old is None:
        return False, f"{held} has no holdout {metric} to compare with"
    better = value >= old if mode_of(metric) == "max" else value <= old
    relation = (">=" if mode == "max" else "<=") if better else ("<" if mode == "max" else ">")
    verdict = "takes the alias" if better else "leaves the alias"
    return better, f"holdout {metric} {value:.4f} {relation} {old:.4f} of {held}: {verdict}"


def _log_model(
    mlflow_client: Any,
    uri: str,
    search: _Search,
    learner: Learner,
    lineage: Mapping[str, str],
    holdout: Mapping[str, float],
) -> tuple[str, str]:
    """A promotion run under the search's parent run, holding the pyfunc model; returns the run
    id and the logged model's URI. The logged model is loaded back and must reproduce the
    learner's holdout scores before anything is registered."""
    import mlflow
    from mlflow.entities import Param
    from mlflow.models import infer_signature

    from tuner import serving

    quiet_mlflow()
    parent = search.parent
    run = mlflow_client.create_run(
        parent.info.experiment_id,
        run_name=f"{lineage['search']}-promote",
        tags={
            "mlflow.parentRunId": parent.info.run_id,
            tracking.ROLE_TAG: ROLE,
            **{f"{_TAG}{k}": v for k, v in lineage.items() if not k.startswith("holdout.")},
        },
    )
    run_id = str(run.info.run_id)
    try:
        params = tracking.flatten_params(search.summary["best"]["config"])
        mlflow_client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
        finite = {f"holdout.{k}": v for k, v in holdout.items() if math.isfinite(v)}
        tracking.log_metrics(mlflow_client, run_id, finite, step=0)
        # The reload check and the input example use development bags (nothing is chosen
        # with them; the holdout only scores).
        bags = list(search.dev.bags[:50])
        ids = list(search.dev.bag_ids[:50])
        expected = serving.predict_bags(learner, bags)
        # Features as float64 in the signature: what pandas and numpy give by default (float32
        # input is upcast; the model casts back to float32 itself).
        example = serving.bags_to_frame(bags[:2], ids[:2])
        example = example.astype({c: "float64" for c in example.columns[1:]})
        meta = {
            **{k: v for k, v in lineage.items() if not k.startswith("holdout.")},
            "model": search.space.model,
            "n_features": search.full.n_features,
            "label_names": list(search.full.label_names),
            "feature_names": list(search.full.feature_names),
            # Mean labels per bag of the bags it was trained on (active learning's
            # cardinality-based query strategies read it).
            "label_cardinality": round(float(search.dev.labels.sum(axis=1).mean()), 6),
        }
        signature = infer_signature(
            example, serving.scores_frame(ids[:2], expected[:2], meta["label_names"])
        )
        mlflow.set_tracking_uri(uri)
        with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_id=run_id):
            serving.save_learner(learner, Path(tmp) / "learner", meta)
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module=serving.LOADER_MODULE,
                data_path=str(Path(tmp) / "learner"),
                signature=signature,
                input_example=example,
                pip_requirements=serving.pip_requirements(),
                metadata={"miml_tune": meta},
            )
        reloaded = serving.load_model(info.model_uri, uri)
        got = reloaded.predict(serving.bags_to_frame(bags, ids))
        drift = float(np.max(np.abs(got[meta["label_names"]].to_numpy() - expected)))
        if not drift <= 1e-5:
            raise RuntimeError(
                f"the logged model does not reproduce the refit model's scores (max diff {drift})"
            )
    except BaseException:
        with contextlib.suppress(Exception):
            mlflow_client.set_terminated(run_id, "FAILED")
        raise
    return run_id, str(info.model_uri)


def _register(
    mlflow_client: Any,
    registered_name: str,
    model_uri: str,
    run_id: str,
    lineage: Mapping[str, str],
    summary: Mapping[str, Any],
) -> str:
    """A new, READY version of ``registered_name`` carrying the lineage tags (created with its
    registered model if needed; a version that does not become READY is deleted)."""
    try:
        mlflow_client.create_registered_model(
            registered_name,
            tags={f"{_TAG}search": lineage["search"]},
            description=(
                f"{summary['model']} tuned on {summary['dataset']} by miml-tune search "
                f"{lineage['search']!r} (metric {summary['metric']}, {summary['mode']})"
            ),
        )
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = mlflow_client.create_model_version(
        registered_name,
        source=model_uri,
        run_id=run_id,
        tags={
            **{f"{_TAG}{k}": v for k, v in lineage.items()},
            f"{_TAG}promotion_run_id": run_id,
        },
        description=f"trial {lineage['trial_id']} of search {lineage['search']!r}",
        model_id=model_uri.removeprefix("models:/"),
    )
    deadline = time.monotonic() + 300
    while version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(1)
        version = mlflow_client.get_model_version(registered_name, version.version)
    if version.status != "READY":
        with contextlib.suppress(Exception):
            mlflow_client.delete_model_version(registered_name, version.version)
        raise MimlTuneError(
            f"model version {version.version} of {registered_name!r} ended {version.status} "
            f"({version.status_message or 'no message'}); it was deleted"
        )
    return str(version.version)
