"""The search: a Ray Tune ``Tuner`` with an Optuna sampler and ASHA over the CV trial.

Data flow (DESIGN.md): the space is validated, the dataset is loaded and checked once in the
driver, split into development and holdout parts (the holdout never reaches a trial), the
development part goes into Ray's object store, and each trial runs the whole CV protocol of one
configuration, reporting fold means epoch by epoch. The peer model ``bag_mean_linear`` is scored
on the very same folds so that every search result can be read against it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tuner import __version__, tracking
from tuner.cv import holdout_split
from tuner.data import MIMLDataset, load_dataset
from tuner.errors import MimlTuneError
from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, mode_of
from tuner.spec import SearchSpec
from tuner.trial import CVProtocol, run_cv, tune_trainable

PEER_MODEL = "bag_mean_linear"  # the default peer
STATE_FILE = "miml_tune_search.json"
DATA_PATH_TAG = "miml_tune.data_path"


@dataclass
class LaunchOptions:
    """How to run a search (everything that is not part of the space itself)."""

    name: str | None = None
    data: str | None = None
    bag_key: str | None = None
    label_key: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    overwrite: bool = False
    progress: TextIO | None = None

    def validate(self) -> None:
        if not math.isfinite(self.cpus_per_trial) or not math.isfinite(self.gpus_per_trial):
            raise MimlTuneError(
                "--cpus-per-trial and --gpus-per-trial must be finite numbers, got "
                f"{self.cpus_per_trial} and {self.gpus_per_trial}"
            )
        if self.cpus_per_trial <= 0:
            raise MimlTuneError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise MimlTuneError(
                f"--gpus-per-trial must be >= 0 (fractions pack trials on one GPU), "
                f"got {self.gpus_per_trial}"
            )
        if self.name is not None and not _valid_name(self.name):
            raise MimlTuneError(
                f"--name {self.name!r} must be letters, digits, '-', '_' or '.', "
                "starting with a letter or digit"
            )


def _quiet_libraries() -> None:
    """Keeps the terminal for miml-tune's own lines: libraries' start-up chatter goes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _valid_name(name: str) -> bool:
    return bool(name) and name[0].isalnum() and all(c.isalnum() or c in "-_." for c in name)


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


def prepare_data(
    spec: SearchSpec,
    data: str | None,
    *,
    bag_key: str | None = None,
    label_key: str | None = None,
) -> tuple[MIMLDataset, MIMLDataset, MIMLDataset | None]:
    """Loads the space's dataset and splits it: ``(full, development, holdout)``.

    Data with an official test split (a Mulan ``NAME-train.arff`` / ``NAME-test.arff`` pair)
    keeps it as the holdout; other data holds out a stratified ``spec.holdout`` fraction
    (``None`` when that fraction is 0).
    """
    keys = {k: v for k, v in (("bag_key", bag_key), ("label_key", label_key)) if v is not None}
    full = load_dataset(spec.dataset, data=data, **keys)
    check_model_fits(spec, full)
    if full.has_test_split and full.test_mask is not None:
        dev_idx, hold_idx = np.flatnonzero(~full.test_mask), np.flatnonzero(full.test_mask)
    else:
        dev_idx, hold_idx = holdout_split(full.labels, spec.holdout, spec.holdout_seed)
    if len(dev_idx) < spec.cv_folds * 2:
        raise MimlTuneError(
            f"dataset {full.name!r} has {len(dev_idx)} development bags, too few for "
            f"{spec.cv_folds}-fold CV"
        )
    return full, full.subset(dev_idx), full.subset(hold_idx) if len(hold_idx) else None


def check_model_fits(spec: SearchSpec, data: MIMLDataset) -> None:
    """Refuses a model (or a metric) that cannot run on this kind of data, before any work."""
    from tuner.learners import Learner, learner_names, resolve_learner
    from tuner.metrics import INSTANCE_METRICS

    for model in (spec.model, *spec.peers):
        if data.is_vector and not resolve_learner(model).vector_data:
            usable = [n for n in learner_names() if resolve_learner(n).vector_data]
            fix = (
                f"run one of {', '.join(usable)} (--model)"
                if model == spec.model
                else "remove it from the space's peers"
            )
            raise MimlTuneError(
                f"model {model!r} needs bags of several instances, but dataset {data.name!r} is "
                f"vector data (one instance per example); {fix}"
            )
    if spec.metric in INSTANCE_METRICS:
        if data.instance_labels is None:
            raise MimlTuneError(
                f"metric {spec.metric!r} needs instance labels, which dataset {data.name!r} "
                "does not have; choose a bag-level metric"
            )
        if resolve_learner(spec.model).predict_instances is Learner.predict_instances:
            raise MimlTuneError(
                f"metric {spec.metric!r} scores instance predictions, which model "
                f"{spec.model!r} does not make; choose a bag-level metric or gamil_c"
            )


def launch(spec: SearchSpec, options: LaunchOptions | None = None) -> dict[str, Any]:
    """Runs a search and returns its summary (what ``miml-tune launch --json`` prints).

    Everything that can be checked is checked before anything is written: options, the dataset,
    the tracking store, the storage folder and the cluster's resources. From the moment the
    parent run exists, any failure or interruption ends it (and every trial run) as FAILED or
    KILLED: no run is left RUNNING.
    """
    options = options or LaunchOptions()
    options.validate()
    name = options.name or spec.name
    if not _valid_name(name):
        raise MimlTuneError(
            f"search name {name!r} must be letters, digits, '-', '_' or '.', starting with a "
            "letter or digit; set --name"
        )
    _quiet_libraries()
    started = time.monotonic()
    full, dev, holdout = prepare_data(
        spec, options.data, bag_key=options.bag_key, label_key=options.label_key
    )
    uri = tracking.resolve_tracking_uri(options.tracking_uri)
    tracking.check_tracking_uri(uri)
    run_dir = _check_storage(Path(options.storage or "miml-tune-results"), name, options.overwrite)
    protocol = CVProtocol(spec.cv_folds, spec.cv_repeats, spec.seed, spec.known_labels)
    _start_ray()
    _check_resources(options)

    peer_started = time.monotonic()
    metrics = search_metrics(dev)
    peers = _run_peers(spec, dev, protocol, metrics, threads=options.cpus_per_trial)
    timing = {"peer_seconds": round(time.monotonic() - peer_started, 1)}

    mlflow = tracking.client(uri)
    experiment_id = tracking.ensure_experiment(mlflow, name, uri)
    _clear_run_dir(run_dir)
    parent = mlflow.create_run(
        experiment_id,
        run_name=f"{name}-search",
        tags={
            tracking.ROLE_TAG: "search",
            "miml_tune.version": __version__,
            "miml_tune.space": spec.name,
            "miml_tune.model": spec.model,
            "miml_tune.dataset": full.name,
            "miml_tune.dataset_fingerprint": full.fingerprint(),
            "miml_tune.storage": str(run_dir),
            **_data_tags(options),
        },
    )
    parent_id = str(parent.info.run_id)
    trial_runs: Any = None
    try:
        _write_state(run_dir, status="running", parent_run_id=parent_id, tracking_uri=uri)
        _log_parent_start(mlflow, parent_id, spec, full, dev, holdout, peers)
        from tuner.callbacks import TrialRuns

        trial_runs = TrialRuns(uri, experiment_id, parent_id)
        search_started = time.monotonic()
        results = _fit(spec, dev, protocol, run_dir, trial_runs, options)
        timing["search_seconds"] = round(time.monotonic() - search_started, 1)
        board = leaderboard(results, spec.metric)
        summary = _summary(
            spec, name, full, dev, holdout, board, peers, uri, experiment_id, parent_id
        )
        summary["elapsed_seconds"] = round(time.monotonic() - started, 1)
        summary["timing"] = timing
        _log_parent_end(mlflow, parent_id, summary, board)
        mlflow.set_terminated(parent_id, "FINISHED")
        _write_state(run_dir, status="finished", parent_run_id=parent_id, tracking_uri=uri)
        return summary
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        # Each clean-up step on its own: one failing (the store itself, say) must not keep the
        # next from ending the runs.
        with contextlib.suppress(Exception):
            if trial_runs is not None:
                trial_runs.close_open_runs()
        with contextlib.suppress(Exception):
            mlflow.set_tag(parent_id, tracking.ERROR_TAG, f"{type(exc).__name__}: {exc}"[:4000])
        with contextlib.suppress(Exception):
            mlflow.set_terminated(parent_id, "KILLED" if interrupted else "FAILED")
        with contextlib.suppress(Exception):
            _write_state(
                run_dir,
                status="interrupted" if interrupted else "failed",
                parent_run_id=parent_id,
                tracking_uri=uri,
            )
        raise


def _data_tags(options: LaunchOptions) -> dict[str, str]:
    """Where the data came from, so that ``promote`` can read the same file again."""
    tags = {}
    if options.data:
        tags[DATA_PATH_TAG] = str(Path(options.data).expanduser().resolve())
    for key in ("bag_key", "label_key"):
        if getattr(options, key):
            tags[f"miml_tune.{key}"] = str(getattr(options, key))
    return tags


def _run_peers(
    spec: SearchSpec,
    dev: MIMLDataset,
    protocol: CVProtocol,
    metrics: tuple[str, ...],
    *,
    threads: float,
) -> dict[str, dict[str, float]]:
    """Every peer's CV on the search's folds, in the driver, on a trial's share of threads
    (more intra-op threads than cores made the small peers up to ten times slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        return {m: run_cv(m, {}, dev, protocol, metrics=metrics).summary for m in spec.peers}
    finally:
        torch.set_num_threads(before)


def _start_ray() -> None:
    """Embedded local Ray unless this process is already connected to a cluster."""
    import ray

    if ray.is_initialized():
        return
    # An embedded cluster keeps Ray's default token authentication (Ray writes the token
    # itself only while RAY_AUTH_MODE is unset); only the notice that it is on goes.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",  # an embedded cluster listens on loopback only
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=True,
    )


def _check_resources(options: LaunchOptions) -> None:
    """A trial that asks for more than any node has would wait forever: refuse it now."""
    import ray
    import torch

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    if options.cpus_per_trial > most_cpus:
        raise MimlTuneError(
            f"--cpus-per-trial {options.cpus_per_trial:g} exceeds the {most_cpus:g} CPUs of the "
            "largest Ray node; lower it"
        )
    if options.gpus_per_trial > most_gpus:
        raise MimlTuneError(
            f"--gpus-per-trial {options.gpus_per_trial:g} but the largest Ray node has "
            f"{most_gpus:g} GPUs; use a machine or cluster with GPUs, or --gpus-per-trial 0"
        )
    if options.gpus_per_trial > 0 and len(nodes) == 1 and not torch.cuda.is_available():
        # Ray declares GPUs (found, or declared with num_gpus) that torch cannot use: the
        # trials fall back to the CPU, each with a warning; say it once here too.
        stream = options.progress or sys.stderr
        print(
            f"warning: --gpus-per-trial {options.gpus_per_trial:g}, but this torch "
            f"({torch.__version__}) sees no CUDA device: trials will train on CPU (install a "
            "CUDA build of torch, see the README)",
            file=stream,
        )


def trials_at_once(resources: dict[str, float], options: LaunchOptions) -> int:
    """How many trials the cluster's CPUs and (logical) GPUs hold at once: with
    ``--gpus-per-trial 0.25`` four trials share each GPU."""
    slots = resources.get("CPU", 1.0) / options.cpus_per_trial
    if options.gpus_per_trial > 0:
        slots = min(slots, resources.get("GPU", 0.0) / options.gpus_per_trial)
    return max(1, int(slots + 1e-9))


def _fit(
    spec: SearchSpec,
    dev: MIMLDataset,
    protocol: CVProtocol,
    run_dir: Path,
    trial_runs: Any,
    options: LaunchOptions,
) -> Any:
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from tuner.callbacks import ProgressLine

    concurrency = spec.concurrency or trials_at_once(ray.cluster_resources(), options)
    trainable = tune.with_resources(
        tune.with_parameters(
            tune_trainable,
            data=dev,
            model=spec.model,
            protocol=protocol,
            max_epochs=spec.max_epochs,
            metrics=search_metrics(dev),
        ),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    searcher = OptunaSearch(
        metric=spec.metric,
        mode=spec.mode,
        sampler=sampler_for(spec.sampler, spec.seed, spec.trials),
        points_to_evaluate=[spec.starting_point()],
    )
    progress = ProgressLine(spec.metric, spec.trials, stream=options.progress)
    tuner = tune.Tuner(
        trainable,
        param_space=spec.param_space(),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler_for(spec),
            num_samples=spec.trials,
            max_concurrent_trials=concurrency,
            reuse_actors=True,
            # ASHA carries metric and mode itself; Tune refuses them twice.
            metric=spec.metric if spec.scheduler == "fifo" else None,
            mode=spec.mode if spec.scheduler == "fifo" else None,
        ),
        run_config=tune.RunConfig(
            name=run_dir.name,
            storage_path=str(run_dir.parent),
            callbacks=[trial_runs, progress],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )
    results = tuner.fit()
    analysis = getattr(results, "_experiment_analysis", None)  # Tune's Trial objects
    unfinished = [
        t for t in getattr(analysis, "trials", []) if t.status not in ("TERMINATED", "ERROR")
    ]
    if unfinished or len(results) < spec.trials:
        # Tune catches Ctrl-C itself, saves its state and returns: this search did not finish.
        raise KeyboardInterrupt(
            f"search interrupted with {len(results) - len(unfinished)} of {spec.trials} trials done"
        )
    return results


def leaderboard(results: Any, metric: str) -> list[dict[str, Any]]:
    """One row per trial, best first: completed trials ranked by the metric (ties: lower fold
    std, then the earlier trial), then pruned trials, then failed ones."""
    rows = []
    for order, result in enumerate(results):
        metrics = dict(result.metrics or {})
        status = "error" if result.error else "completed"
        if status == "completed" and metrics.get("epoch", 0) < metrics.get("target_epochs", 0):
            status = "pruned"
        rows.append(
            {
                "trial_id": metrics.get("trial_id") or Path(result.path).name,
                "order": order,
                "status": status,
                "epochs": metrics.get("epoch", 0),
                "config": dict(result.config or {}),
                "metrics": {
                    k: v
                    for k, v in metrics.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                },
                "error": str(result.error).splitlines()[-1][:500] if result.error else "",
            }
        )
    return rank(rows, metric)


def rank(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    sign = 1.0 if mode_of(metric) == "max" else -1.0
    status_order = {"completed": 0, "pruned": 1, "error": 2}

    def key(row: dict[str, Any]) -> tuple[float, float, float, int]:
        value = row["metrics"].get(metric, math.nan)
        std = row["metrics"].get(f"{metric}_std", math.inf)
        missing = value is None or math.isnan(value)
        return (
            status_order[row["status"]],
            math.inf if missing else -sign * value,
            std if std is not None and not math.isnan(std) else math.inf,
            row["order"],
        )

    return sorted(rows, key=key)


def _summary(
    spec: SearchSpec,
    name: str,
    full: MIMLDataset,
    dev: MIMLDataset,
    holdout: MIMLDataset | None,
    board: list[dict[str, Any]],
    peers: dict[str, dict[str, float]],
    uri: str,
    experiment_id: str,
    parent_id: str,
) -> dict[str, Any]:
    completed = [r for r in board if r["status"] == "completed"]
    if not completed:
        errors = "; ".join(r["error"] for r in board if r["error"])[:500]
        raise MimlTuneError(
            f"search {name!r} finished with no completed trial"
            + (f" (errors: {errors})" if errors else "")
        )
    best = completed[0]
    return {
        "name": name,
        "space": spec.name,
        "model": spec.model,
        "dataset": full.name,
        "dataset_fingerprint": full.fingerprint(),
        "metric": spec.metric,
        "mode": spec.mode,
        "seed": spec.seed,
        "sampler": spec.sampler,
        "scheduler": spec.scheduler,
        "cv": {"folds": spec.cv_folds, "repeats": spec.cv_repeats},
        "holdout": spec.holdout,
        "holdout_kind": "official test split" if full.has_test_split else "stratified",
        "known_labels": spec.known_labels,
        "bags": {"development": dev.n_bags, "holdout": holdout.n_bags if holdout else 0},
        "trials": {
            "total": len(board),
            **{s: sum(r["status"] == s for r in board) for s in ("completed", "pruned", "error")},
        },
        "best": {
            "trial_id": best["trial_id"],
            "epochs": best["epochs"],
            "seconds": round(float(best["metrics"].get("time_total_s", math.nan)), 1),
            "config": best["config"],
            "metrics": _mean_std(best["metrics"]),
        },
        # "peer" is the first peer (the summary's shape before there were several).
        "peer": next(
            ({"model": m, "metrics": _mean_std(v)} for m, v in peers.items()),
            {"model": None, "metrics": {}},
        ),
        "peers": {m: {"metrics": _mean_std(v)} for m, v in peers.items()},
        "mlflow": {
            "tracking_uri": uri,
            "experiment_id": experiment_id,
            "parent_run_id": parent_id,
        },
        "version": __version__,
    }


def _mean_std(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        name: {"mean": float(metrics[name]), "std": float(metrics.get(f"{name}_std", math.nan))}
        for name in (*ALL_METRICS, *INSTANCE_METRICS)
        if name in metrics
    }


def search_metrics(dev: MIMLDataset) -> tuple[str, ...]:
    """Every metric a search reports: bag-level and multi-label ones, and instance-level ones
    when the data labels its instances."""
    return (*ALL_METRICS, *(INSTANCE_METRICS if dev.instance_labels is not None else ()))


def _log_parent_start(
    mlflow: Any,
    parent_id: str,
    spec: SearchSpec,
    full: MIMLDataset,
    dev: MIMLDataset,
    holdout: MIMLDataset | None,
    peers: dict[str, dict[str, float]],
) -> None:
    from mlflow.entities import Param

    params = {
        "space": spec.name,
        "model": spec.model,
        "dataset": full.name,
        "dataset_source": full.source,
        "metric": spec.metric,
        "mode": spec.mode,
        "seed": spec.seed,
        "sampler": spec.sampler,
        "scheduler": spec.scheduler,
        "cv_folds": spec.cv_folds,
        "cv_repeats": spec.cv_repeats,
        "holdout": spec.holdout,
        "holdout_seed": spec.holdout_seed,
        "trials": spec.trials,
        "max_epochs": spec.max_epochs,
        "n_dev_bags": dev.n_bags,
        "n_holdout_bags": holdout.n_bags if holdout else 0,
        "holdout_kind": "official test split" if full.has_test_split else "stratified",
        "known_labels": spec.known_labels,
    }
    mlflow.log_batch(parent_id, params=[Param(k, str(v)) for k, v in params.items()])
    mlflow.log_text(parent_id, spec.text or json.dumps(spec.to_dict(), indent=2), "space.yaml")
    mlflow.log_dict(parent_id, spec.to_dict(), "space_effective.json")
    for i, (model, summary) in enumerate(peers.items()):
        values = tracking.numeric_metrics(summary)
        # The first peer also under plain "peer.<metric>", as before there were several.
        prefixes = [f"peer.{model}."] + (["peer."] if i == 0 else [])
        peer_metrics = {f"{p}{k}": v for p in prefixes for k, v in values.items()}
        tracking.log_metrics(mlflow, parent_id, peer_metrics, step=0)


def _log_parent_end(
    mlflow: Any, parent_id: str, summary: dict[str, Any], board: list[dict[str, Any]]
) -> None:
    best = summary["best"]
    mlflow.log_dict(parent_id, best["config"], "best_config.json")
    mlflow.log_dict(parent_id, summary, tracking.SUMMARY_ARTIFACT)
    mlflow.log_text(parent_id, leaderboard_csv(board, summary["metric"]), "leaderboard.csv")
    metrics = {f"best.{k}": v["mean"] for k, v in best["metrics"].items()}
    metrics |= {f"best.{k}_std": v["std"] for k, v in best["metrics"].items()}
    metrics |= {f"trials.{k}": float(v) for k, v in summary["trials"].items()}
    tracking.log_metrics(mlflow, parent_id, tracking.numeric_metrics(metrics), step=0)
    mlflow.set_tag(parent_id, "miml_tune.best_trial", best["trial_id"])


def leaderboard_csv(board: list[dict[str, Any]], metric: str) -> str:
    params = sorted({k for row in board for k in row["config"]})
    out = io.StringIO()
    writer = csv.writer(out)
    head = ["rank", "trial_id", "status", "epochs"]
    names = [n for n in (*ALL_METRICS, *INSTANCE_METRICS) if any(n in r["metrics"] for r in board)]
    metrics = [m for name in names for m in (name, f"{name}_std")]
    writer.writerow([*head, *metrics, *params, "error"])
    for i, row in enumerate(board, 1):
        writer.writerow(
            [i, row["trial_id"], row["status"], row["epochs"]]
            + [row["metrics"].get(m, "") for m in metrics]
            + [row["config"].get(p, "") for p in params]
            + [row["error"]]
        )
    return out.getvalue()


def _check_storage(storage: Path, name: str, overwrite: bool) -> Path:
    """The search's Tune folder ``storage/name``, checked; nothing is deleted yet.

    An existing folder is only ever replaced if it is a miml-tune search folder (it holds the
    state file) that finished, or, with ``--overwrite``, one that did not.
    """
    try:
        storage = storage.expanduser().resolve()
        if storage.exists() and not storage.is_dir():
            raise MimlTuneError(f"--storage {storage} is a file; give a folder")
        # Created only once the search starts; until then check where it would be created.
        existing = next(p for p in (storage, *storage.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise MimlTuneError(f"--storage {storage} cannot be created or written to")
        run_dir = storage / name
        if not run_dir.exists():
            return run_dir
    except OSError as exc:
        raise MimlTuneError(f"cannot use --storage {storage}: {exc.strerror or exc}") from None
    if run_dir.resolve().parent != storage or not (run_dir / STATE_FILE).is_file():
        raise MimlTuneError(
            f"{run_dir} exists and is not a miml-tune search folder; choose another --name "
            "or --storage"
        )
    status = _read_state(run_dir).get("status", "unknown")
    if status != "finished" and not overwrite:
        raise MimlTuneError(
            f"an unfinished search named {name!r} exists at {run_dir} (status: {status}); "
            "pass --overwrite to start it over, or --name to run this one under another name"
        )
    return run_dir


def _clear_run_dir(run_dir: Path) -> None:
    """Removes an earlier search's Tune state (checked by :func:`_check_storage`)."""
    if (run_dir / STATE_FILE).is_file():
        shutil.rmtree(run_dir)


def _read_state(run_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((run_dir / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def _write_state(run_dir: Path, **state: Any) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, run_dir / STATE_FILE)
