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
import dataclasses
import io
import json
import logging
import math
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from tuner import __version__, tracking
from tuner.cv import holdout_split
from tuner.data import MIMLDataset, load_dataset
from tuner.errors import MimlTuneError, first_line
from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, mode_of
from tuner.spec import SearchSpec
from tuner.trial import CVProtocol, run_cv, tune_trainable

PEER_MODEL = "bag_mean_linear"  # the default peer
STATE_FILE = "miml_tune_search.json"
DATA_PATH_TAG = "miml_tune.data_path"
MAX_FAILURES = 2  # retries of a trial whose worker process died (never of an error it raised)
DEFAULT_STORAGE = "miml-tune-results"


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
    max_failures: int = MAX_FAILURES
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
        if not 0 <= self.max_failures < 100:
            raise MimlTuneError(
                f"--max-failures (retries of a trial whose worker died) must be in [0, 100), "
                f"got {self.max_failures}"
            )
        if self.address is not None:
            parse_address(self.address)
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
    folder = _check_storage(options.storage, name, options.overwrite)
    protocol = CVProtocol(spec.cv_folds, spec.cv_repeats, spec.seed, spec.known_labels)
    _start_ray(options.address)
    _check_resources(options)
    _check_shared_storage(folder, options)

    peer_started = time.monotonic()
    metrics = search_metrics(dev)
    peers = _run_peers(spec, dev, protocol, metrics, threads=options.cpus_per_trial)
    timing = {"peer_seconds": round(time.monotonic() - peer_started, 1)}

    mlflow = tracking.client(uri)
    experiment_id = tracking.ensure_experiment(mlflow, name, uri)
    folder.clear()
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
            "miml_tune.storage": folder.uri,
            **_data_tags(options),
        },
    )
    parent_id = str(parent.info.run_id)
    state = {
        "name": name,
        "parent_run_id": parent_id,
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "space": spec.to_dict(),
        "space_text": spec.text,
        "data": {
            "path": str(Path(options.data).expanduser().resolve()) if options.data else None,
            "bag_key": options.bag_key,
            "label_key": options.label_key,
        },
        "dataset_fingerprint": full.fingerprint(),
        "options": {
            "cpus_per_trial": options.cpus_per_trial,
            "gpus_per_trial": options.gpus_per_trial,
            "max_failures": options.max_failures,
        },
        "peers": peers,
        "version": __version__,
    }
    run = _SearchRun(spec, name, full, dev, holdout, protocol, folder, options, state, mlflow)
    return run.execute(
        timing,
        started,
        before=lambda: _log_parent_start(mlflow, parent_id, spec, full, dev, holdout, peers),
    )


def resume(
    name: str,
    *,
    storage: str | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    data: str | None = None,
    force: bool = False,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Continues an interrupted search and returns its summary (as :func:`launch` does).

    ``data`` reads the search's data from a new path (it must be the same data: the fingerprint
    is checked). ``force`` resumes a search whose state says it runs on another machine, whose
    driver cannot be checked from here (a lost head node, a deleted pod).

    The search's state file (under ``storage/name``) holds what the launch used: the effective
    space, the data file and keys, the trial resources, the parent run. Tune restores its own
    experiment state: finished trials stay finished, unfinished ones run again, the search ends
    with the number of trials first asked for. The Optuna searcher is restored from the
    experiment folder and checked (sampler class and history) before any trial runs.
    """
    from tuner.spec import parse_space

    if address is not None:
        parse_address(address)
    _quiet_libraries()
    started = time.monotonic()
    folder = _search_folder(storage, name)
    state = folder.read_state()
    if not state:
        found = folder.searches_beside()
        raise MimlTuneError(
            f"no search named {name!r} under --storage {folder.root}; searches there: "
            f"{', '.join(found) or 'none'}"
        )
    status = _effective_status(state)
    if status == "finished":
        raise MimlTuneError(
            f"search {name} finished; nothing to resume; see `miml-tune best --name {name}`"
        )
    driver = state.get("driver") or {}
    elsewhere = driver.get("host") not in (None, socket.gethostname())
    if status == "running" and not (force and elsewhere):
        hint = (
            "; if that machine or its driver is gone, pass --force"
            if elsewhere
            else "; stop it first, or wait for it"
        )
        raise MimlTuneError(
            f"search {name} is still running (driver process {driver.get('pid')} on "
            f"{driver.get('host')}){hint}"
        )
    if "space" not in state or "parent_run_id" not in state:
        raise MimlTuneError(
            f"search {name} at {folder.uri} was started by an older miml-tune that did not "
            "record what resume needs; launch it again with --overwrite"
        )
    try:
        spec = parse_space(yaml.safe_dump(state["space"]), source=f"{folder.uri}/{STATE_FILE}")
    except MimlTuneError as exc:
        raise MimlTuneError(f"cannot resume search {name}: {exc}") from None
    spec = dataclasses.replace(spec, text=state.get("space_text") or "")
    saved_data = state.get("data") or {}
    saved = state.get("options") or {}
    options = LaunchOptions(
        name=name,
        data=data or saved_data.get("path"),
        bag_key=saved_data.get("bag_key"),
        label_key=saved_data.get("label_key"),
        tracking_uri=tracking_uri or state.get("tracking_uri"),
        storage=storage,
        address=address,
        cpus_per_trial=float(saved.get("cpus_per_trial", 1.0)),
        gpus_per_trial=float(saved.get("gpus_per_trial", 0.0)),
        max_failures=int(saved.get("max_failures", MAX_FAILURES)),
        progress=progress,
    )
    options.validate()
    full, dev, holdout = prepare_data(
        spec, options.data, bag_key=options.bag_key, label_key=options.label_key
    )
    if state.get("dataset_fingerprint") not in (None, full.fingerprint()):
        raise MimlTuneError(
            f"the data of search {name} changed since it was launched (fingerprint "
            f"{full.fingerprint()}, was {state['dataset_fingerprint']}); a resumed search must "
            "train on the same bags: restore the file, or launch again with --overwrite"
        )
    uri = tracking.resolve_tracking_uri(options.tracking_uri)
    tracking.check_tracking_uri(uri)
    mlflow = tracking.client(uri)
    parent_id = str(state["parent_run_id"])
    try:
        parent = mlflow.get_run(parent_id)
    except Exception:
        parent = None
    if parent is None or parent.data.tags.get(tracking.ROLE_TAG) != "search":
        raise MimlTuneError(
            f"the parent run {parent_id} of search {name} is not in the tracking store {uri}; "
            "pass the --tracking-uri the search logged to"
        )
    protocol = CVProtocol(spec.cv_folds, spec.cv_repeats, spec.seed, spec.known_labels)
    _start_ray(options.address)
    _check_resources(options)
    _check_shared_storage(folder, options)
    state = {**state, "tracking_uri": uri, "experiment_id": str(parent.info.experiment_id)}
    # The same parent run goes on: RUNNING again, its error tag (from the interruption) gone.
    mlflow.update_run(parent_id, status="RUNNING")
    with contextlib.suppress(Exception):
        mlflow.delete_tag(parent_id, tracking.ERROR_TAG)
    resumes = int(parent.data.tags.get("miml_tune.resumes", "0")) + 1
    mlflow.set_tag(parent_id, "miml_tune.resumes", str(resumes))
    run = _SearchRun(spec, name, full, dev, holdout, protocol, folder, options, state, mlflow)
    timing = {"peer_seconds": 0.0}
    return run.execute(timing, started, restore=True)


def _effective_status(state: dict[str, Any]) -> str:
    """The state file's status, with a ``running`` search whose driver is gone read as
    ``interrupted`` (the driver was killed, SIGKILL or a lost machine, before it could say so)."""
    status = str(state.get("status", "unknown"))
    if status != "running":
        return status
    driver = state.get("driver") or {}
    if driver.get("host") != socket.gethostname():
        # A driver on another machine cannot be checked from here; its search is only resumed
        # once it says so itself, or with --overwrite.
        return "interrupted" if not driver else "running"
    return "running" if _process_alive(driver.get("pid"), driver.get("started")) else "interrupted"


def _process_alive(pid: Any, started: Any) -> bool:
    """Whether process ``pid`` runs and is the one that started at ``started`` (a PID can be
    reused by an unrelated process after the driver died)."""
    import psutil

    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - float(started)) < 1.0
    except (psutil.Error, TypeError, ValueError):
        return False


def _driver() -> dict[str, Any]:
    import psutil

    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": psutil.Process().create_time(),
    }


class _SearchRun:
    """One run of the driver over a search (a launch, or a resume): the Tune fit inside the
    clean-up that ends the parent run and every trial run, and keeps the state file true."""

    def __init__(
        self,
        spec: SearchSpec,
        name: str,
        full: MIMLDataset,
        dev: MIMLDataset,
        holdout: MIMLDataset | None,
        protocol: CVProtocol,
        folder: RunFolder,
        options: LaunchOptions,
        state: dict[str, Any],
        mlflow: Any,
    ) -> None:
        self.spec, self.name, self.full, self.dev, self.holdout = spec, name, full, dev, holdout
        self.protocol, self.folder, self.options = protocol, folder, options
        self.state = dict(state, driver=_driver())
        self.mlflow = mlflow

    def _save(self, status: str) -> None:
        self.state["status"] = status
        self.folder.write_state(self.state)

    def execute(
        self,
        timing: dict[str, float],
        started: float,
        *,
        before: Callable[[], None] | None = None,
        restore: bool = False,
    ) -> dict[str, Any]:
        from tuner.callbacks import TrialRuns

        mlflow, parent_id, uri = (
            self.mlflow,
            self.state["parent_run_id"],
            self.state["tracking_uri"],
        )
        experiment_id = self.state["experiment_id"]
        trial_runs: Any = None
        try:
            self._save("running")
            if before is not None:
                before()
            trial_runs = TrialRuns(uri, experiment_id, parent_id, self.folder.uri)
            if restore:
                trial_runs.adopt_existing_runs(_tune_trials(self.folder))
            search_started = time.monotonic()
            results, resumed = _fit(
                self.spec, self.dev, self.protocol, self.folder, trial_runs, self.options, restore
            )
            timing["search_seconds"] = round(time.monotonic() - search_started, 1)
            board = leaderboard(results, self.spec.metric)
            peers = self.state.get("peers") or {}
            summary = _summary(
                self.spec, self.name, self.full, self.dev, self.holdout, board, peers, uri,
                experiment_id, parent_id,
            )  # fmt: skip
            summary["elapsed_seconds"] = round(time.monotonic() - started, 1)
            summary["timing"] = timing
            if resumed is not None:
                summary["resumed"] = resumed
            _log_parent_end(mlflow, parent_id, summary, board)
            mlflow.set_terminated(parent_id, "FINISHED")
            self._save("finished")
            return summary
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            # Each clean-up step on its own: one failing (the store itself, say) must not keep
            # the next from ending the runs.
            with contextlib.suppress(Exception):
                if trial_runs is not None:
                    trial_runs.close_open_runs()
            with contextlib.suppress(Exception):
                mlflow.set_tag(parent_id, tracking.ERROR_TAG, f"{type(exc).__name__}: {exc}"[:4000])
            with contextlib.suppress(Exception):
                mlflow.set_terminated(parent_id, "KILLED" if interrupted else "FAILED")
            with contextlib.suppress(Exception):
                self._save("interrupted" if interrupted else "failed")
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


def parse_address(address: str) -> str:
    """The ``ray.init`` address for ``--address``: ``auto`` or ``HOST:PORT`` (the GCS port of a
    running cluster, 6379 by default). ``ray://`` (Ray Client) is refused: under Ray Client Tune
    runs the search on the head, where miml-tune's driver-side MLflow runs, resume checks and
    clean-up do not run."""
    text = address.strip()
    if text == "auto":
        return text
    if text.startswith("ray://"):
        raise MimlTuneError(
            f"--address {address!r}: Ray Client (ray://) is not supported, the search's driver "
            "must run on the cluster; use `miml-tune submit --address http://HEAD:8265 -- "
            "launch ...`, or --address HOST:PORT (or auto) from a cluster node"
        )
    host, port = _host_port(text)
    if host is None or port is None:
        raise MimlTuneError(
            f"--address {address!r} is not a Ray cluster address; allowed: auto or HOST:PORT "
            "(the head's GCS port, 6379 by default; an IPv6 host in brackets: [::1]:6379)"
        )
    return text


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$", re.ASCII)


def _host_port(text: str) -> tuple[str | None, int | None]:
    """``(host, port)`` of ``HOST:PORT`` or ``[IPV6]:PORT``; ``(None, None)`` if malformed."""
    import ipaddress

    match = _HOST_PORT.match(text)
    if match is None or not 0 < int(match.group(2)) < 65536:
        return None, None
    host = match.group(1)
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None, None
    return host, int(match.group(2))


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """A quick TCP connection to ``HOST:PORT``: ``ray.init`` itself waits a long while on an
    address where nothing listens."""
    rest = address[len("ray://") :] if address.startswith("ray://") else address
    host, port = _host_port(rest)
    if host is None or port is None:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            reason = f"no answer in {timeout:g} s"
        raise MimlTuneError(
            f"cannot reach the Ray cluster at --address {address} ({reason}); check that its "
            "head runs (`ray status` there) and that this machine can reach the port"
        ) from None


def _start_ray(address: str | None = None) -> None:
    """Attaches to the cluster at ``address``, to the cluster of the Ray job this driver runs
    in (``RAY_ADDRESS``, set by the job supervisor), or starts an embedded local Ray."""
    import ray

    if ray.is_initialized():
        return
    # Ray's notice that token authentication is on goes (an embedded cluster keeps Ray's
    # default token authentication; Ray writes the token itself only while RAY_AUTH_MODE is
    # unset).
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    target = parse_address(address) if address is not None else None
    if target is None and os.environ.get("RAY_ADDRESS"):
        target = "auto"  # inside a Ray job: its cluster, never a second embedded one
    if target is None:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",  # an embedded cluster listens on loopback only
            include_dashboard=False,
            **quiet,  # type: ignore[arg-type]
        )
        return
    if target == "auto" and os.environ.get("RAY_ADDRESS"):
        env_address = os.environ["RAY_ADDRESS"]
        if _host_port(env_address.removeprefix("ray://"))[0] is not None:
            _check_reachable(env_address)
    elif target != "auto":
        _check_reachable(target)
    try:
        ray.init(address=target, **quiet)  # type: ignore[arg-type]
    except ConnectionError as exc:
        first = first_line(exc)
        if target == "auto":
            raise MimlTuneError(
                "--address auto found no running Ray cluster on this machine "
                f"({first}); start one with `ray start --head`, or give HOST:PORT"
            ) from None
        raise MimlTuneError(f"cannot attach to the Ray cluster at {target}: {first}") from None
    except Exception as exc:
        if type(exc).__name__ not in ("AuthenticationError", "RuntimeError", "ValueError"):
            raise
        first = first_line(exc)
        raise MimlTuneError(
            f"cannot attach to the Ray cluster at {target}: {type(exc).__name__}: {first}"
        ) from None


SHARED_FS_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "cephfs", "glusterfs",
        "beegfs", "afs", "ocfs2", "gfs2", "panfs", "wekafs", "9p", "virtiofs", "juicefs",
    }
)  # fmt: skip


def mount_table(path: str = "/proc/mounts") -> list[tuple[str, str]]:
    """``(mount point, file-system type)`` of every mount of this machine."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            # /proc/mounts escapes spaces and tabs in mount points as octal.
            point = fields[1].encode().decode("unicode_escape")
            out.append((point, fields[2]))
    return out


def storage_is_shared(storage: str, mounts: list[tuple[str, str]]) -> bool:
    """Whether every node of a cluster can see ``storage``: a URI (``s3://``, ``gs://``, ...)
    is; a local path is when the longest mount point holding it is a network or cluster file
    system (NFS, SMB, Lustre, GPFS, Ceph, GlusterFS, BeeGFS, FUSE mounts such as s3fs or
    gcsfuse, ...). Anything else is node-local."""
    if _is_uri(storage):
        return True
    path = os.path.normpath(os.path.abspath(_local_path(storage)))
    best, kind = "", ""
    for point, fs_type in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fs_type
    return kind in SHARED_FS_TYPES or kind.startswith("fuse.") or kind == "fuse"


def check_storage_for_cluster(
    storage: str,
    nodes: list[dict[str, Any]],
    mounts: list[tuple[str, str]],
    *,
    trials_elsewhere: bool = False,
) -> None:
    """Refuses node-local storage on a cluster of more than one alive node, or one whose trials
    will run on nodes still to come (``trials_elsewhere``: an attached cluster whose only node
    cannot hold a trial): trials there would write their results where the driver (and a
    resume) never sees them."""
    alive = [n for n in nodes if n.get("Alive", n.get("alive", False))]
    if (len(alive) > 1 or trials_elsewhere) and not storage_is_shared(storage, mounts):
        where = (
            f"the Ray cluster has {len(alive)} nodes"
            if len(alive) > 1
            else "the trials will run on other nodes (this one cannot hold a trial)"
        )
        raise MimlTuneError(
            f"--storage {storage} is a folder local to this node, but {where}; use shared "
            "storage: an NFS path mounted on every node, or an s3:// or gs:// URI"
        )


def _check_shared_storage(folder: RunFolder, options: LaunchOptions) -> None:
    import ray

    nodes = list(ray.nodes())
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    fits = any(
        r.get("CPU", 0.0) >= options.cpus_per_trial and r.get("GPU", 0.0) >= options.gpus_per_trial
        for r in alive
    )
    elsewhere = attached_cluster(options.address) and not fits
    check_storage_for_cluster(folder.root, nodes, mount_table(), trials_elsewhere=elsewhere)


def attached_cluster(address: str | None) -> bool:
    """Whether the search runs on a running cluster (``--address``, or inside a Ray job) rather
    than on an embedded one."""
    return address is not None or bool(os.environ.get("RAY_ADDRESS"))


def _check_resources(options: LaunchOptions) -> None:
    """A trial that asks for more than any node has would wait forever: refuse it now."""
    import ray
    import torch

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    stream = options.progress or sys.stderr
    problems = []
    if options.cpus_per_trial > most_cpus:
        problems.append(
            f"--cpus-per-trial {options.cpus_per_trial:g} exceeds the {most_cpus:g} CPUs of the "
            "largest Ray node"
        )
    if options.gpus_per_trial > most_gpus:
        problems.append(
            f"--gpus-per-trial {options.gpus_per_trial:g} but the largest Ray node has "
            f"{most_gpus:g} GPUs"
        )
    if problems and attached_cluster(options.address):
        # A cluster that autoscales (from zero workers, say) adds the nodes trials wait for.
        print(
            f"warning: {'; '.join(problems)} alive now: trials wait until the cluster's "
            "autoscaler adds such a node (pass --concurrency on a cluster that scales from zero)",
            file=stream,
        )
    elif problems:
        fix = (
            "lower it"
            if len(problems) == 1 and "cpus" in problems[0]
            else ("use a machine or cluster with GPUs, or --gpus-per-trial 0")
        )
        raise MimlTuneError(f"{problems[0]}; {fix}")
    if options.gpus_per_trial > 0 and len(nodes) == 1 and not torch.cuda.is_available():
        # Ray declares GPUs (found, or declared with num_gpus) that torch cannot use: the
        # trials fall back to the CPU, each with a warning; say it once here too.
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


def search_trainable(
    config: dict[str, Any],
    *,
    data: MIMLDataset,
    model: str,
    protocol: CVProtocol,
    max_epochs: int,
    metrics: Sequence[str],
    metric: str,
) -> None:
    """The search's Tune function: :func:`tuner.trial.tune_trainable`, with an error raised by
    the trial itself (a diverging loss, a bad configuration) announced to the driver before it
    is raised, so that the driver does not retry it: only a trial whose worker process died is
    retried (Tune's ``max_failures`` counts both kinds alike)."""
    from ray import tune

    try:
        tune_trainable(
            config, data=data, model=model, protocol=protocol, max_epochs=max_epochs,
            metrics=metrics,
        )  # fmt: skip
    except Exception as exc:
        # Tune checks that every result carries the searched metric: NaN, which the scheduler,
        # the searcher and the MLflow callback all skip.
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]
        tune.report({metric: math.nan, tracking.APPLICATION_ERROR: message})
        raise


def _fit(
    spec: SearchSpec,
    dev: MIMLDataset,
    protocol: CVProtocol,
    folder: RunFolder,
    trial_runs: Any,
    options: LaunchOptions,
    restore: bool = False,
) -> tuple[Any, dict[str, Any] | None]:
    """Runs (or, with ``restore``, continues) the Tune experiment; returns its results and, for a
    resumed search, what was restored."""
    import ray
    from ray import tune

    from tuner.callbacks import ProgressLine, SearcherCheck

    # Tune saves its experiment state at most every 10 s by default: a driver killed in between
    # would, on resume, run again trials that had finished. Every second instead (the MLflow
    # runs of finished trials are closed only once a save holds them, see TrialRuns).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    concurrency = spec.concurrency or trials_at_once(ray.cluster_resources(), options)
    trainable = tune.with_resources(
        tune.with_parameters(
            search_trainable,
            data=dev,
            model=spec.model,
            protocol=protocol,
            max_epochs=spec.max_epochs,
            metrics=search_metrics(dev),
            metric=spec.metric,
        ),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    progress = ProgressLine(spec.metric, spec.trials, stream=options.progress)
    run_config = tune.RunConfig(
        name=folder.name,
        storage_path=folder.root,
        callbacks=[trial_runs, progress],
        verbose=0,
        failure_config=tune.FailureConfig(max_failures=options.max_failures, fail_fast=False),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
    )
    resumed: dict[str, Any] | None = None
    if restore:
        tuner, searcher, resumed = _restore_tuner(spec, folder, trainable)
        progress.count_restored(resumed["trials_before"])
        internal = tuner._local_tuner
        check = SearcherCheck(searcher, resumed["sampler"], resumed["trials_before"])
        run_config.callbacks = [check, *(run_config.callbacks or [])]
        internal._run_config.callbacks = run_config.callbacks
        internal._run_config.failure_config = run_config.failure_config
        internal._run_config.verbose = 0
    else:
        searcher = _searcher(spec)
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
            run_config=run_config,
        )
    # Ray's driver prints the raylet's notices (a worker that died, say) on stdout, which is
    # the summary's (launch --json): they go to stderr, with the progress line.
    with contextlib.redirect_stdout(sys.stderr):
        results = tuner.fit()
    analysis = getattr(results, "_experiment_analysis", None)  # Tune's Trial objects
    unfinished = [
        t for t in getattr(analysis, "trials", []) if t.status not in ("TERMINATED", "ERROR")
    ]
    if unfinished or len(results) < spec.trials:
        # Tune catches Ctrl-C itself, saves its state and returns: this search did not finish.
        raise KeyboardInterrupt(
            f"search interrupted with {len(results) - len(unfinished)} of {spec.trials} trials "
            f"done; continue it with `miml-tune resume --name {folder.name}`"
        )
    if resumed is not None:
        # The searcher that ran is the one restored and checked, and it saw every trial.
        resumed["searcher"], resumed["sampler"] = describe_searcher(searcher)
        resumed["trials_after"] = finished_in_study(searcher)
    return results, resumed


def _searcher(spec: SearchSpec) -> Any:
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(
        metric=spec.metric,
        mode=spec.mode,
        sampler=sampler_for(spec.sampler, spec.seed, spec.trials),
        points_to_evaluate=[spec.starting_point()],
    )


def _restore_tuner(
    spec: SearchSpec, folder: RunFolder, trainable: Any
) -> tuple[Any, Any, dict[str, Any]]:
    """Tune's experiment restored, with the searcher restored from the experiment folder and
    checked: an Optuna searcher with the configured sampler whose study holds every trial that
    had finished. Ray Tune has restored experiments with a plain random search in place of the
    configured searcher; a search never goes on like that."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    try:
        tuner = tune.Tuner.restore(
            folder.uri,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
            param_space=spec.param_space(),
        )
    except Exception as exc:
        first = first_line(exc)
        raise MimlTuneError(
            f"cannot restore the Tune experiment at {folder.uri}: {first}; launch the search "
            "again with --overwrite"
        ) from None
    internal: Any = tuner._local_tuner
    restored = describe_searcher(internal._tune_config.search_alg)[0]
    finished = _finished_trials(folder)
    expected = type(sampler_for(spec.sampler, spec.seed, spec.trials)).__name__
    # Whatever Tune unpickled, the searcher that continues is one built as the launch built it;
    # Tune gives it the saved state of the launch's searcher (its Optuna study) as the run
    # starts, and SearcherCheck checks that before the first trial. The saved state is checked
    # here first, on a copy, so that a search that cannot go on fails before Ray does anything.
    check = _searcher(spec)
    with tempfile.TemporaryDirectory(prefix="mt-searcher-") as tmp:
        if _download_searcher_state(folder, Path(tmp)) is None:
            raise MimlTuneError(
                f"the Tune experiment at {folder.uri} holds no saved searcher state, so the "
                f"{spec.sampler} sampler's history cannot be restored; launch the search again "
                "with --overwrite"
            )
        check.restore_from_dir(tmp)
    sampler = describe_searcher(check)[1]
    told = finished_in_study(check)
    if not isinstance(check, OptunaSearch) or sampler != expected or told < len(finished):
        raise MimlTuneError(
            f"the searcher saved at {folder.uri} is {type(check).__name__} with {sampler} and "
            f"{told} finished trials, not OptunaSearch with {expected} and {len(finished)}; "
            "refusing to go on with a different search (launch again with --overwrite)"
        )
    searcher = _searcher(spec)
    internal._tune_config.search_alg = searcher
    info = {
        "searcher": type(searcher).__name__,
        "sampler": sampler,
        "trials_before": len(finished),
        "restored_by_tune": restored,
    }
    return tuner, searcher, info


def describe_searcher(searcher: Any) -> tuple[str, str]:
    """``(searcher class, sampler class)`` of a Tune searcher, through its wrappers."""
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    while isinstance(searcher, ConcurrencyLimiter | SearchGenerator):
        searcher = searcher.searcher
    return type(searcher).__name__, type(getattr(searcher, "_sampler", None)).__name__


def finished_in_study(searcher: Any) -> int:
    """Trials the searcher's Optuna study holds as finished (complete, pruned or failed)."""
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    while isinstance(searcher, ConcurrencyLimiter | SearchGenerator):
        searcher = searcher.searcher
    study = getattr(searcher, "_ot_study", None)
    return sum(t.state.is_finished() for t in study.trials) if study is not None else 0


def _download_searcher_state(folder: RunFolder, target: Path) -> Path | None:
    """Copies the newest ``searcher-state-*.pkl`` of the experiment folder into ``target``."""
    import pyarrow.fs

    entries = folder.fs.get_file_info(pyarrow.fs.FileSelector(folder.path))
    states = sorted(
        (e for e in entries if e.base_name.startswith("searcher-state-")),
        key=lambda e: e.base_name,
    )
    if not states:
        return None
    local = target / states[-1].base_name
    with folder.fs.open_input_stream(states[-1].path) as stream:
        local.write_bytes(stream.read())
    return local


def _finished_trials(folder: RunFolder) -> list[str]:
    """Ids of the trials Tune's newest experiment state records as finished or failed."""
    trials = _tune_trials(folder)
    return [k for k, v in trials.items() if v["status"] in ("TERMINATED", "ERROR")]


def _tune_trials(folder: RunFolder) -> dict[str, dict[str, Any]]:
    """Tune's newest saved experiment state: ``{trial id: {status, last_result}}``."""
    import pyarrow.fs

    entries = folder.fs.get_file_info(pyarrow.fs.FileSelector(folder.path))
    states = sorted(
        (e for e in entries if e.base_name.startswith("experiment_state-")),
        key=lambda e: e.mtime_ns or 0,
    )
    if not states:
        return {}
    with folder.fs.open_input_stream(states[-1].path) as stream:
        experiment = json.loads(stream.read())
    trials = {}
    for trial in experiment.get("trial_data", []):
        info = json.loads(trial[0]) if isinstance(trial[0], str) else trial[0]
        meta = json.loads(trial[1]) if len(trial) > 1 and isinstance(trial[1], str) else {}
        last = meta.get("last_result") if isinstance(meta, dict) else None
        if isinstance(last, str):
            with contextlib.suppress(ValueError):
                last = json.loads(last)
        trials[str(info.get("trial_id"))] = {
            "status": info.get("status"),
            "last_result": last if isinstance(last, dict) else {},
        }
    return trials


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


def _is_uri(storage: str) -> bool:
    scheme = storage.split("://", 1)[0] if "://" in storage else ""
    return bool(scheme) and scheme != "file"


def _local_path(storage: str) -> str:
    return storage[len("file://") :] if storage.startswith("file://") else storage


@dataclass(frozen=True)
class RunFolder:
    """A search's Tune folder ``ROOT/NAME``: a local path or a URI (through ``pyarrow.fs``, as
    Ray Tune itself reaches its storage). It holds Tune's experiment and the state file."""

    root: str  # the --storage value, resolved: an absolute path or a URI
    name: str
    fs: Any  # pyarrow.fs.FileSystem
    fs_root: str  # root as a path of ``fs``

    @property
    def is_uri(self) -> bool:
        return _is_uri(self.root)

    @property
    def uri(self) -> str:
        return f"{self.root.rstrip('/')}/{self.name}"

    @property
    def path(self) -> str:
        return f"{self.fs_root.rstrip('/')}/{self.name}"

    def _info(self, path: str) -> Any:
        return self.fs.get_file_info(path)

    def exists(self) -> bool:
        import pyarrow.fs

        return bool(self._info(self.path).type != pyarrow.fs.FileType.NotFound)

    def has_state(self) -> bool:
        import pyarrow.fs

        return bool(self._info(f"{self.path}/{STATE_FILE}").type == pyarrow.fs.FileType.File)

    def read_state(self) -> dict[str, Any]:
        try:
            with self.fs.open_input_stream(f"{self.path}/{STATE_FILE}") as stream:
                return dict(json.loads(stream.read()))
        except (OSError, ValueError, TypeError):
            return {}

    def write_state(self, state: dict[str, Any]) -> None:
        text = json.dumps(state, indent=2).encode()
        self.fs.create_dir(self.path, recursive=True)
        if self.is_uri:  # an object store writes an object whole
            with self.fs.open_output_stream(f"{self.path}/{STATE_FILE}") as stream:
                stream.write(text)
            return
        tmp = Path(self.path) / f".{STATE_FILE}.tmp"
        tmp.write_bytes(text)
        os.replace(tmp, Path(self.path) / STATE_FILE)

    def clear(self) -> None:
        """Removes an earlier search's Tune state (checked by :func:`_check_storage`)."""
        if self.has_state():
            self.fs.delete_dir(self.path)

    def searches_beside(self) -> list[str]:
        """Names of the miml-tune searches under the same root."""
        import pyarrow.fs

        try:
            entries = self.fs.get_file_info(pyarrow.fs.FileSelector(self.fs_root))
        except (OSError, FileNotFoundError):
            return []
        names = []
        for entry in entries:
            if entry.type == pyarrow.fs.FileType.Directory:
                info = self._info(f"{entry.path}/{STATE_FILE}")
                if info.type == pyarrow.fs.FileType.File:
                    names.append(entry.base_name)
        return sorted(names)


def _search_folder(storage: str | None, name: str) -> RunFolder:
    """The folder ``storage/name``, with ``storage`` resolved (a path made absolute)."""
    import pyarrow.fs

    value = storage or DEFAULT_STORAGE
    if _is_uri(value):
        try:
            fs, fs_root = pyarrow.fs.FileSystem.from_uri(value)
        except Exception as exc:  # ArrowInvalid, a missing cloud SDK, credentials
            first = first_line(exc)
            raise MimlTuneError(
                f"cannot use --storage {value}: {first}; give a folder or an s3:// or gs:// URI "
                "this machine can reach"
            ) from None
        return RunFolder(value.rstrip("/"), name, fs, fs_root)
    root = str(Path(_local_path(value)).expanduser().resolve())
    return RunFolder(root, name, pyarrow.fs.LocalFileSystem(), root)


def _check_storage(storage: str | None, name: str, overwrite: bool) -> RunFolder:
    """The search's Tune folder ``storage/name``, checked; nothing is deleted yet.

    An existing folder is only ever replaced if it is a miml-tune search folder (it holds the
    state file) that finished, or, with ``--overwrite``, one that did not.
    """
    folder = _search_folder(storage, name)
    try:
        if folder.is_uri:
            exists = folder.exists()
        else:
            root = Path(folder.root)
            if root.exists() and not root.is_dir():
                raise MimlTuneError(f"--storage {root} is a file; give a folder")
            # Created only once the search starts; until then check where it would be created.
            existing = next(p for p in (root, *root.parents) if p.exists())
            if not existing.is_dir() or not os.access(existing, os.W_OK):
                raise MimlTuneError(f"--storage {root} cannot be created or written to")
            run_dir = root / name
            exists = run_dir.exists()
            if exists and run_dir.resolve().parent != root:
                raise MimlTuneError(
                    f"{run_dir} exists and is not a miml-tune search folder; choose another "
                    "--name or --storage"
                )
    except OSError as exc:
        raise MimlTuneError(f"cannot use --storage {folder.root}: {exc.strerror or exc}") from None
    if not exists:
        return folder
    if not folder.has_state():
        raise MimlTuneError(
            f"{folder.uri} exists and is not a miml-tune search folder; choose another --name "
            "or --storage"
        )
    state = folder.read_state()
    status = _effective_status(state) if state else "unknown"
    driver_here = (state.get("driver") or {}).get("host") == socket.gethostname()
    if status == "running" and (driver_here or not overwrite):
        driver = state.get("driver") or {}
        raise MimlTuneError(
            f"search {name!r} at {folder.uri} is running (driver process {driver.get('pid')} on "
            f"{driver.get('host')}); stop it first, or use another --name"
        )
    if status != "finished" and not overwrite:
        raise MimlTuneError(
            f"an unfinished search named {name!r} exists at {folder.uri} (status: {status}); "
            f"continue it with `miml-tune resume --name {name}`, pass --overwrite to start it "
            "over, or --name to run this one under another name"
        )
    return folder
