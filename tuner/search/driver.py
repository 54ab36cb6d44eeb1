"""The driver of a search: :func:`launch` and :func:`resume`, and the clean-up that leaves no run
RUNNING whatever happens."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from tuner import __version__, tracking
from tuner.data import MIMLDataset
from tuner.errors import MimlTuneError
from tuner.search.cluster import check_resources, check_shared_storage, start_ray
from tuner.search.data import (
    Background,
    load_data,
    prepare_data,
    run_peers,
    search_metrics,
    split_data,
)
from tuner.search.options import (
    MAX_FAILURES,
    STATE_FILE,
    LaunchOptions,
    check_name,
    parse_address,
    quiet_libraries,
)
from tuner.search.storage import (
    RunFolder,
    check_storage,
    driver_info,
    effective_status,
    hold_search_lock,
    reopen_trial_generation,
    search_folder,
    trial_histories,
    tune_trials,
)
from tuner.spec import SearchSpec
from tuner.terminal import status_line

if TYPE_CHECKING:
    from tuner.trial import CVProtocol

# What the driver imports only once a search runs (Ray Tune, Optuna, torch, MLflow: about 15
# seconds on a 2-core machine), in a thread beside Ray's start instead of before it.
SEARCH_MODULES = (
    "tuner.trial",
    "tuner.search.fit",
    "tuner.search.results",
    "tuner.search.runs",
    "tuner.search.trial_runs",
    "mlflow.tracking",
)


def _protocol(spec: SearchSpec) -> CVProtocol:
    from tuner.trial import CVProtocol

    return CVProtocol(spec.cv_folds, spec.cv_repeats, spec.seed, spec.known_labels)


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
    check_name(name, "search name", "set --name")
    quiet_libraries()
    started = time.monotonic()
    full = load_data(spec, options.data, bag_key=options.bag_key, label_key=options.label_key)
    uri = tracking.resolve_tracking_uri(options.tracking_uri)
    tracking.check_tracking_uri(uri)
    folder = check_storage(options.storage, name, options.overwrite)
    status_line(
        f"search {name!r}: {full.name} read ({full.n_bags} bags); starting Ray, opening {uri}...",
        options.progress,
    )
    store_file = tracking.sqlite_file(uri)
    new_store = store_file is not None and not store_file.exists()

    def set_up() -> tuple[MIMLDataset, MIMLDataset | None, Any]:
        # Beside Ray's start, whose processes run on the other cores: the models checked
        # against the data and the split, the search's imports, the tracking store opened.
        dev, holdout = split_data(spec, full)
        for module in SEARCH_MODULES:
            importlib.import_module(module)
        return dev, holdout, tracking.open_store(uri)

    setup = Background(set_up, "set-up")
    phases: dict[str, float] = {"data_seconds": round(time.monotonic() - started, 1)}
    try:
        start_ray(options.address)
        phases["ray_seconds"] = round(time.monotonic() - started - phases["data_seconds"], 1)
        check_resources(options)
        check_shared_storage(folder, options)
        dev, holdout, mlflow = setup.result()
    except BaseException:
        with contextlib.suppress(BaseException):
            setup.result()  # never leave while that thread writes the store
        if new_store and store_file is not None:
            store_file.unlink(missing_ok=True)  # opened for this launch only: nothing in it
        raise
    from tuner.search.runs import data_tags, log_parent_start  # imported by then: instant

    protocol = _protocol(spec)
    timing = {**phases, "startup_seconds": round(time.monotonic() - started, 1)}

    # From here on this launch writes: its lock first, then the storage checked again under it
    # (another launch of this name may have started since the first check).
    hold_search_lock(folder, name)
    folder = check_storage(options.storage, name, options.overwrite)
    replaced = folder.read_state() if folder.exists() and folder.has_state() else {}
    experiment_id = tracking.ensure_experiment(mlflow, name, uri)
    if replaced:
        # Say it before anything is written: the old search's runs stay in the experiment.
        status_line("", options.progress)
        print(
            f"note: search {name!r} ran before ({replaced.get('status', 'unknown')}, parent run "
            f"{replaced.get('parent_run_id', '?')}); this launch starts it anew and adds a new "
            f"parent run to MLflow experiment {name!r} beside the old one (`miml-tune best "
            f"--name {name}` reads the new one); --name runs it under another name",
            file=options.progress or sys.stderr,
        )
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
            **data_tags(options),
        },
    )
    parent_id = str(parent.info.run_id)
    tracking.save_tuning_view(
        mlflow, experiment_id, spec.metric, spec.mode, list(spec.searched()[0])
    )
    status_line("", options.progress)
    print(tracking.where_to_watch(uri, experiment_id, name), file=options.progress or sys.stderr)
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
        "peers": None,  # filled when the peers' CV, which runs beside the trials, ends
        "version": __version__,
    }
    run = _SearchRun(spec, name, full, dev, holdout, protocol, folder, options, state, mlflow)
    return run.execute(
        timing,
        started,
        before=lambda: log_parent_start(mlflow, parent_id, spec, full, dev, holdout),
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
    time_budget: float | None = None,
) -> dict[str, Any]:
    """Continues an interrupted search and returns its summary (as :func:`launch` does).

    ``data`` reads the search's data from a new path (it must be the same data: the fingerprint
    is checked). ``force`` resumes a search whose state says it runs on another machine, whose
    driver cannot be checked from here (a lost head node, a deleted pod). A search that had a
    time budget gets it afresh, or ``time_budget`` seconds.

    The search's state file (under ``storage/name``) holds what the launch used: the effective
    space, the data file and keys, the trial resources, the parent run. Tune restores its own
    experiment state: finished trials stay finished, unfinished ones run again, the search ends
    with the number of trials first asked for. The Optuna searcher is restored from the
    experiment folder and checked (sampler class and history) before any trial runs.
    """
    from tuner.spec import parse_space

    if address is not None:
        parse_address(address)
    quiet_libraries()
    started = time.monotonic()
    folder = search_folder(storage, name)
    if folder.exists():
        hold_search_lock(folder, name)
    state = folder.read_state()
    if not state:
        found = folder.searches_beside()
        raise MimlTuneError(
            f"no search named {name!r} under --storage {folder.root}; searches there: "
            f"{', '.join(found) or 'none'}"
        )
    status = effective_status(state)
    if status == "finished":
        raise MimlTuneError(
            f"search {name} finished; nothing to resume; see `miml-tune best --name {name}`"
        )
    if status == "failed" and state.get("nothing_to_resume"):
        raise MimlTuneError(
            f"search {name} ended with every trial failed, so a resume would fail again; "
            f"nothing to resume: fix the space and launch it again with --overwrite "
            f"({state['nothing_to_resume'][:300]})"
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
    if time_budget is not None:
        spec = spec.with_overrides(time_budget=time_budget)
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
    protocol = _protocol(spec)
    start_ray(options.address)
    check_resources(options)
    check_shared_storage(folder, options)
    state = {**state, "tracking_uri": uri, "experiment_id": str(parent.info.experiment_id)}
    # The same parent run goes on: RUNNING again, its error tag (from the interruption) gone.
    mlflow.update_run(parent_id, status="RUNNING")
    with contextlib.suppress(Exception):
        mlflow.delete_tag(parent_id, tracking.ERROR_TAG)
    resumes = int(parent.data.tags.get("miml_tune.resumes", "0")) + 1
    mlflow.set_tag(parent_id, "miml_tune.resumes", str(resumes))
    if status == "budget_spent":
        reopen_trial_generation(folder)  # the budget ended it; the trials it left run now
    run = _SearchRun(spec, name, full, dev, holdout, protocol, folder, options, state, mlflow)
    timing = {"startup_seconds": round(time.monotonic() - started, 1)}
    return run.execute(timing, started, restore=True)


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
        self.state = dict(state, driver=driver_info())
        self.mlflow = mlflow

    def _peers_beside(self) -> Background:
        """The peers' CV on the search's folds, in a driver thread while the trials train: the
        first trial does not wait for it. Returns ``(peers, seconds)`` when done."""

        def run() -> tuple[dict[str, dict[str, Any]], float]:
            began = time.monotonic()
            metrics = search_metrics(self.dev)
            threads = self.options.cpus_per_trial
            peers = run_peers(self.spec, self.dev, self.protocol, metrics, threads=threads)
            return peers, round(time.monotonic() - began, 1)

        return Background(run, "peers")

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
        from tuner.search.algorithms import end_stopped_trials
        from tuner.search.budget import TimeBudget
        from tuner.search.fit import fit_tuner
        from tuner.search.racing import racing_for
        from tuner.search.results import EveryTrialFailed, leaderboard, summarise_search
        from tuner.search.runs import log_parent_end, log_peers, mlflow_dataset
        from tuner.search.trial_runs import TrialRuns

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
            budget = TimeBudget(self.spec.time_budget) if self.spec.time_budget else None
            racing = racing_for(self.spec)
            trial_runs = TrialRuns(
                uri, experiment_id, parent_id, self.folder.uri, budget,
                dataset=mlflow_dataset(self.spec, self.full), racing=racing,
            )  # fmt: skip
            if restore:
                saved = tune_trials(self.folder)
                trial_runs.adopt_existing_runs(saved)
                if racing is not None:  # the incumbent, from what finished before
                    done = [t for t, info in saved.items() if info.get("status") == "TERMINATED"]
                    for trial_id, rows in trial_histories(self.folder, done).items():
                        racing.replay(trial_id, rows)
            peer_job = None if self.state.get("peers") is not None else self._peers_beside()
            search_started = time.monotonic()
            timing["to_fit_seconds"] = round(search_started - started, 1)
            results, resumed = fit_tuner(
                self.spec, self.dev, self.protocol, self.folder, trial_runs, self.options,
                restore, budget, racing,
            )  # fmt: skip
            timing["search_seconds"] = round(time.monotonic() - search_started, 1)
            if budget is not None and budget.spent:
                end_stopped_trials(self.folder)
            trial_runs.end_open_runs(
                {str(r.metrics.get("trial_id")): dict(r.metrics) for r in results if r.metrics}
            )
            board = leaderboard(
                results, self.spec.metric, trial_runs.stopped, trial_runs.never_started
            )
            if peer_job is not None:
                self.state["peers"], timing["peer_seconds"] = peer_job.result()
                log_peers(mlflow, parent_id, self.state["peers"])
            peers = self.state.get("peers") or {}
            summary = summarise_search(
                self.spec, self.name, self.full, self.dev, self.holdout, board, peers, uri,
                experiment_id, parent_id,
            )  # fmt: skip
            summary["elapsed_seconds"] = round(time.monotonic() - started, 1)
            summary["timing"] = timing
            if resumed is not None:
                summary["resumed"] = resumed
            if racing is not None:
                summary["racing"] = racing.describe()
            short = len(board) < self.spec.trials
            if budget is not None:
                summary["time_budget"] = {
                    "seconds": budget.seconds,
                    "spent": budget.spent,
                    "trials_run": len(board),
                    "trials_asked": self.spec.trials,
                }
            log_parent_end(mlflow, parent_id, summary, board)
            mlflow.set_terminated(parent_id, "FINISHED")
            # A search its time budget ended early can go on: `resume` runs the other trials.
            self._save("budget_spent" if short else "finished")
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
            if isinstance(exc, EveryTrialFailed):
                # Its trials raised (a diverging loss, a bad value): a resume would repeat them.
                self.state["nothing_to_resume"] = str(exc)[:2000]
            with contextlib.suppress(Exception):
                self._save("interrupted" if interrupted else "failed")
            raise
