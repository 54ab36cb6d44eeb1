"""MLflow tracking: one experiment per search name, a parent run per launch, a child run per trial.

Child runs are written from the driver by a Ray Tune callback, so a trial that ASHA stops, or one
that fails, is closed by the same code that opened it: no run is left RUNNING. The parent run
holds the space file, the dataset fingerprint, the package version, the seed, and at the end the
leaderboard and the best configuration.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tuner.errors import MimlTuneError, first_line

STATUS_TAG = "miml_tune.status"
ERROR_TAG = "miml_tune.error"
ROLE_TAG = "miml_tune.role"
TRIAL_TAG = "miml_tune.trial_id"
SUMMARY_ARTIFACT = "best.json"
# The key of the result a trial reports just before it raises an error of its own (see
# tuner.trial.search_trainable): the driver then fails it without retrying it.
APPLICATION_ERROR = "miml_tune_application_error"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working folder."""
    chosen = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not chosen:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if "://" not in chosen:  # a bare path: a sqlite file
        return f"sqlite:///{Path(chosen).resolve()}"
    if chosen.startswith("sqlite:///") and not chosen.startswith("sqlite:////"):
        # sqlite:///mlflow.db is relative to the working folder; pin it down once.
        return f"sqlite:///{Path(chosen[len('sqlite:///') :]).resolve()}"
    return chosen


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_tracking_uri(uri: str, timeout: float = 5.0, *, existing: bool = False) -> None:
    """Fails early, with one line, when the tracking store cannot be used: an unreachable
    server, a folder or a file that is not an SQLite database where a sqlite store should be,
    and (``existing``, for the commands that read a search back) a sqlite store that does not
    exist, which MLflow would otherwise create empty."""
    scheme = uri.split("://", 1)[0]
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
                if reply.status != 200:
                    raise MimlTuneError(f"MLflow server {uri} answered {reply.status} on /health")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MimlTuneError(
                f"MLflow tracking server {uri} is unreachable ({reason}); start it or pass "
                "another --tracking-uri"
            ) from None
        except (ValueError, http.client.InvalidURL) as exc:  # a bad port, IPv6 bracket, ...
            raise MimlTuneError(
                f"tracking URI {uri!r} is not a valid URL ({exc}); use http(s)://HOST:PORT"
            ) from None
    elif scheme == "sqlite":
        path = Path(uri.split("sqlite:///", 1)[-1])
        if path.is_dir():
            raise MimlTuneError(f"tracking store {uri} is a folder; give a sqlite file path")
        if not path.parent.is_dir():
            raise MimlTuneError(f"tracking store folder {path.parent} does not exist (from {uri})")
        if existing and not path.is_file():
            raise MimlTuneError(
                f"no MLflow store at {path}; run a search first or pass the --tracking-uri it "
                "logged to"
            )
        if not os.access(path.parent, os.W_OK):
            raise MimlTuneError(f"tracking store folder {path.parent} is not writable ({uri})")
        _check_sqlite_file(path, uri)
    elif scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise MimlTuneError(
            f"MLflow 3 refuses the file store {uri}; use sqlite:///PATH (or set "
            "MLFLOW_ALLOW_FILE_STORE=true)"
        )
    elif scheme not in ("file", "databricks", "postgresql", "mysql", "mssql"):
        raise MimlTuneError(
            f"unsupported tracking URI {uri!r}; use sqlite:///PATH, http(s)://HOST:PORT or "
            "a database URI"
        )


def _check_sqlite_file(path: Path, uri: str) -> None:
    """A non-empty file at a sqlite store's path must start as an SQLite database does."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise MimlTuneError(f"cannot read the tracking store {path}: {exc.strerror}") from None
    if head and head != SQLITE_MAGIC:
        raise MimlTuneError(
            f"tracking store {path} is not an SQLite database (it starts with {head[:8]!r}); "
            "give the path of an MLflow sqlite store, or of a file that does not exist yet"
        )


def damaged_store_message(exc: BaseException) -> str | None:
    """One line for an error that comes from a damaged sqlite database (a truncated or
    overwritten store: "database disk image is malformed"), ``None`` for any other error."""
    import sqlite3

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.DatabaseError) and not isinstance(
            current, sqlite3.OperationalError
        ):
            return (
                f"the MLflow tracking store cannot be read ({first_line(current)}); it is "
                "damaged: restore it from a copy, or pass another --tracking-uri"
            )
        if type(current).__name__ == "DatabaseError" and "malformed" in str(current):
            return (
                "the MLflow tracking store cannot be read (database disk image is malformed); "
                "it is damaged: restore it from a copy, or pass another --tracking-uri"
            )
        current = current.__cause__ or current.__context__
    return None


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store, ``None`` for other stores."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def open_store(uri: str) -> Any:
    """A client of the store ``uri``, opened: a new sqlite store gets MLflow's tables here (the
    slow part of its first use, seconds), and a store that cannot be used fails in one line.
    Nothing else is written."""
    try:
        with store_lock(uri):
            mlflow_client = client(uri)
            mlflow_client.search_experiments(max_results=1)
    except Exception as exc:  # MlflowException, a missing database driver, SQLAlchemy errors
        first = first_line(exc)
        raise MimlTuneError(f"cannot use the MLflow tracking store {uri}: {first}") from None
    return mlflow_client


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """For a sqlite store: an exclusive ``flock`` on its folder, for what two processes must
    not do at once. Opening a new store: both would create its tables and run its migrations
    (one then fails: "duplicate column name"). Moving an alias: both would decide against the
    holder they read before. Other stores have no lock here (their server orders writes)."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    import fcntl

    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def client(uri: str) -> Any:
    """A client of the store ``uri`` for runs and for the model registry alike (never a registry
    named by an inherited ``MLFLOW_REGISTRY_URI``)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(mlflow_client: Any, name: str, uri: str) -> str:
    """Id of the experiment ``name``, created (artifacts beside a sqlite store) if needed.

    This is the first use of the store, so a store that cannot be opened fails here, in one line.
    """
    try:
        return _ensure_experiment(mlflow_client, name, uri)
    except MimlTuneError:
        raise
    except Exception as exc:  # MlflowException, a missing database driver, SQLAlchemy errors
        first = first_line(exc)
        raise MimlTuneError(f"cannot use the MLflow tracking store {uri}: {first}") from None


# MLflow 3's UI opens an experiment on its GenAI traces view unless the experiment says it is
# about model development: then it opens on the runs table.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def _ensure_experiment(mlflow_client: Any, name: str, uri: str) -> str:
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(experiment.experiment_id)
        if EXPERIMENT_KIND[0] not in (experiment.tags or {}):
            mlflow_client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
        return str(experiment.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / name).as_uri()
    return str(
        mlflow_client.create_experiment(
            name, artifact_location=location, tags=dict([EXPERIMENT_KIND])
        )
    )


#: The share key of the runs-table view a search saves on its experiment; the UI opens it from
#: ``#/experiments/<id>/runs?viewStateShareKey=miml-tune``.
VIEW_KEY = "miml-tune"


def save_tuning_view(
    mlflow_client: Any, experiment_id: str, metric: str, mode: str, params: Sequence[str]
) -> None:
    """Saves on the experiment the runs-table view of a search: trials ranked by the objective,
    with the objective, its fold spread, the protocol reached, fold-epochs and the searched
    parameters as columns (MLflow's shared view state, the tag ``mlflow.sharedViewState.KEY``,
    which the UI reads when its address carries ``viewStateShareKey=KEY``)."""
    columns = [
        f"metrics.`{metric}`",
        f"metrics.`{metric}_std`",
        "metrics.`cv_repeats_done`",
        "metrics.`fold_epochs`",
        "tags.`miml_tune.status`",
        *(f"params.`{name}`" for name in params),
    ]
    view = {
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": mode == "min",
        "selectedColumns": ["attributes.`Run Name`", *columns],
    }
    mlflow_client.set_experiment_tag(
        experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(view)
    )


def runs_table_url(ui: str, experiment_id: str) -> str:
    """The address of a search's runs table, in its saved view, in the MLflow UI at ``ui``."""
    return f"{ui}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def where_to_watch(uri: str, experiment_id: str, name: str) -> str:
    """The line a search prints as it starts: its MLflow experiment, and the address of its
    runs table (on a tracking server, directly; for a local store, through ``miml-tune ui``)."""
    if uri.startswith(("http://", "https://")):
        return f"MLflow: experiment {name!r} at {runs_table_url(uri.rstrip('/'), experiment_id)}"
    default = runs_table_url("http://127.0.0.1:5000", experiment_id)
    store = "" if uri == resolve_tracking_uri(None) else f" --tracking-uri {uri}"
    return (
        f"MLflow: experiment {name!r} in {uri}; watch it with `miml-tune ui{store}`, then {default}"
    )


def log_params(mlflow_client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    """Logs ``params`` on the run in one call (values as text, cut to MLflow's 500 characters)."""
    from mlflow.entities import Param

    mlflow_client.log_batch(run_id, params=[Param(str(k), str(v)[:500]) for k, v in params.items()])


def flatten_params(config: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params: strings, nested keys joined with '.'."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update({f"{key}.{k}": v for k, v in flatten_params(value).items()})
        else:
            out[str(key)] = str(value)
    return out


def numeric_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a Tune result that are worth a metric in MLflow."""
    skip = {"epoch", "target_epochs", "training_iteration", "timestamp", "pid", "done"}
    out = {}
    for key, value in row.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key.startswith(("time_", "iterations_")) or not math.isfinite(value):
            continue
        out[key] = float(value)
    return out


def log_metrics(mlflow_client: Any, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, step) for k, v in metrics.items()]
    for start in range(0, len(batch), 500):
        mlflow_client.log_batch(run_id, metrics=batch[start : start + 500])


def log_dataset_input(
    mlflow_client: Any, run_id: str, dataset: Mapping[str, str], context: str = "training"
) -> None:
    """Logs a dataset as an input of a run, so the MLflow UI's Dataset column names it.

    Args:
        mlflow_client: an ``MlflowClient``.
        run_id: the run.
        dataset: ``name``, ``digest`` (the data's fingerprint), ``source`` (the file's path) and
            ``profile`` (a JSON object of its sizes), as :func:`tuner.search.runs.mlflow_dataset`
            gives them.
        context: the ``mlflow.data.context`` tag of the input.
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    entity = Dataset(
        name=dataset["name"],
        digest=dataset["digest"],
        source_type="local",
        source=json.dumps({"uri": dataset["source"]}),
        profile=dataset.get("profile"),
    )
    tags = [InputTag(key="mlflow.data.context", value=context)]
    mlflow_client.log_inputs(run_id, datasets=[DatasetInput(dataset=entity, tags=tags)])


def trial_error_message(trial: Any) -> str:
    """The last meaningful line of a failed trial's error (the exception type and message)."""
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file and os.path.exists(error_file):
        text = Path(error_file).read_text(errors="replace")
    if not text:
        error = trial.get_error() if hasattr(trial, "get_error") else None
        text = str(error or "unknown error")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line.split(":", 1)[0] or "Exception" in line.split(":", 1)[0]:
            return line
    return lines[-1] if lines else "unknown error"


def read_summary(name: str, uri: str) -> dict[str, Any]:
    """The summary of the latest finished search named ``name`` (what ``launch`` printed)."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise MimlTuneError(f"no MLflow store at {uri}; run a search first or pass --tracking-uri")
    mlflow_client = client(uri)
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        known = sorted(e.name for e in mlflow_client.search_experiments() if e.name != "Default")
        raise MimlTuneError(
            f"no search named {name!r} in {uri}; searches there: {', '.join(known) or 'none'}"
        )
    runs = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.{ROLE_TAG} = 'search' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise MimlTuneError(f"search {name!r} in {uri} has no finished launch yet")
    path = mlflow_client.download_artifacts(runs[0].info.run_id, SUMMARY_ARTIFACT)
    return dict(json.loads(Path(path).read_text()))
