"""Searches as Ray jobs: ``miml-tune submit`` and ``miml-tune jobs list|status|logs|stop``.

A thin layer over Ray's Job Submission API (:class:`ray.job_submission.JobSubmissionClient`)
that checks everything it can on this machine before anything reaches the cluster: the job
server's URL, the ``launch`` / ``resume`` command (parsed by the real command line, so a bad
option fails here), the files it names, the tracking store, and that the cluster answers.

The job runs ``python -m tuner.cli launch ... --address auto`` on the cluster, with this package's
code shipped in its runtime environment (``py_modules``: the ``tuner``, ``models`` and
``search_spaces`` folders of this installation, editable or not) and the files the command names
(``--data FILE``, a ``--space FILE`` and a data file that space names) copied into the job's
working folder, the command rewritten to their names there. The cluster's Python must already
have the dependencies (torch, Ray, MLflow, Optuna...): the cluster configurations in
``cluster/`` install them; the job does not pip-install anything, which would take minutes per
job.

The job server's address, token and errors are :mod:`tuner.job_server`'s.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from importlib import util as import_util
from pathlib import Path
from typing import Any

from tuner import __version__
from tuner.errors import MimlTuneError
from tuner.job_server import check_address, connect, is_loopback, talking_to

PACKAGES = ("tuner", "models", "search_spaces")
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
COMMANDS = ("launch", "resume")
# A cluster that has just started answers before its job agent is registered; Ray's job server
# then refuses submissions for a few seconds with this message.
AGENT_NOT_READY = "No available agent"
AGENT_WAIT_S = 60.0
STOP_GRACE_S = 30  # seconds an interrupted search has to end its runs before SIGKILL
STOP_WAIT_S = STOP_GRACE_S + 15.0
POLL_S = 1.0
_LOCAL_STORE_SCHEMES = ("sqlite", "file", "")

Echo = Callable[..., Any]
# Parses a command's arguments into its options by parameter name, without running it
# (``tuner.cli`` passes the real command line's parser); raises MimlTuneError on a bad option.
ParseOptions = Callable[[str, list[str]], dict[str, Any]]


def parse_command(command: list[str], parse_options: ParseOptions) -> tuple[str, dict[str, Any]]:
    """Parses ``launch ...`` / ``resume ...`` with ``parse_options``, without running it.

    Returns the command's name and its parsed options. A bad option is a one-line error here, on
    this machine, instead of a failed job on the cluster.
    """
    if not command or command[0] not in COMMANDS:
        got = command[0] if command else "nothing"
        raise MimlTuneError(
            f"submit runs `launch` or `resume` on the cluster, got {got!r}; e.g. "
            "miml-tune submit --address http://HEAD:8265 -- launch --space birds"
        )
    params = parse_options(command[0], list(command[1:]))
    _check_options(command[0], params)
    return command[0], params


def _check_options(kind: str, params: dict[str, Any]) -> None:
    """The checks ``launch`` makes of its options before it starts anything, made here."""
    from tuner.launch_checks import check_counts
    from tuner.search import LaunchOptions, parse_address

    if params.get("address"):
        parse_address(params["address"])
    if kind != "launch":
        return
    check_counts(params)
    LaunchOptions(
        name=params.get("name"),
        cpus_per_trial=params.get("cpus_per_trial", 1.0),
        gpus_per_trial=params.get("gpus_per_trial", 0.0),
        max_failures=params.get("max_failures", 2),
    ).validate()


def _check_storage(address: str, argv: list[str], params: dict[str, Any]) -> None:
    """A job runs in a temporary working folder on the head: a relative ``--storage`` (or the
    default ``./miml-tune-results``) would put the search where no later ``resume`` finds it.
    On a head that is this machine it is pinned to this machine's folder; on a remote cluster
    an absolute path or a URI is required."""
    storage = params.get("storage")
    if storage and ("://" in storage or Path(storage).is_absolute()):
        return
    if not is_loopback(address):
        raise MimlTuneError(
            f"--storage {storage or '(default ./miml-tune-results)'} is relative, and a job "
            "runs in a temporary folder on the head: pass --storage with shared storage all "
            "nodes reach (an NFS path or an s3:// / gs:// URI)"
        )
    absolute = str(Path(storage or "miml-tune-results").resolve())
    if storage:
        _set_option(argv, "--storage", absolute)
    else:
        argv += ["--storage", absolute]


def _option_value(argv: list[str], flag: str) -> int | None:
    """Index in ``argv`` of the value of ``flag`` (``--flag VALUE`` or ``--flag=VALUE``)."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return i + 1
        if arg.startswith(flag + "="):
            return i
    return None


def _set_option(argv: list[str], flag: str, value: str) -> None:
    i = _option_value(argv, flag)
    if i is None:
        return
    argv[i] = f"{flag}={value}" if argv[i].startswith(flag + "=") else value


def _check_tracking(address: str, uri: str | None) -> str | None:
    """The tracking URI the job logs to, with local stores pinned to absolute paths.

    Only the search's driver writes to MLflow, and a job's driver runs on the head node. A store
    that is a local file (``sqlite:``, ``file:``, a bare path) therefore works only when the head
    node is this machine: then the job writes the very file this machine reads afterwards (with
    ``best``, ``report``, ``promote``). On a remote cluster the file would be written on the head,
    where nobody looks, so it is refused; so is a loopback tracking server, which the job would
    look for on the head node instead of here.
    """
    if uri is None:
        return None
    from tuner import tracking

    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    parts = urllib.parse.urlsplit(uri) if scheme else None
    if parts is not None and (parts.username is not None or parts.password is not None):
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        raise MimlTuneError(
            f"--tracking-uri {shown} carries a user name or password, which the cluster's job "
            "list would show to everyone who can read it; drop them from the URI and set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
            "in the cluster's environment instead"
        )
    local_head = is_loopback(address)
    if scheme in _LOCAL_STORE_SCHEMES:
        if not local_head:
            raise MimlTuneError(
                f"--tracking-uri {uri} is a file on this machine, but a job on the cluster at "
                f"{address} logs from the head node: give a tracking server that the cluster and "
                "this machine both reach, http(s)://HOST:PORT"
            )
        return tracking.resolve_tracking_uri(uri)
    if scheme in ("http", "https") and not local_head:
        host = urllib.parse.urlsplit(uri).hostname or ""
        if is_loopback(f"http://{host}"):
            raise MimlTuneError(
                f"--tracking-uri {uri} is this machine's loopback, which a job on the cluster at "
                f"{address} would look for on the head node: give an address the cluster reaches"
            )
    return uri


def _stage_files(kind: str, argv: list[str], params: dict[str, Any]) -> Path | None:
    """Copies the local files the command names into a new folder (the job's working folder)
    and rewrites ``argv`` (and a staged space's ``dataset``) to their names there; None when the
    command names no local file."""
    if kind != "launch":
        return None
    data = params.get("data")
    data_file = Path(data).expanduser() if data else None
    if data_file is not None and not data_file.is_file():
        raise MimlTuneError(f"--data {data!r} is not a file on this machine; nothing was sent")
    space = str(params["space"])
    space_file = Path(space).expanduser()
    space_text: str | None = None
    dataset_file: Path | None = None
    from tuner.spec import load_space

    spec = load_space(space, model=params.get("model"))  # a bad space fails here, not there
    if space_file.is_file() or space_file.suffix in (".yaml", ".yml"):
        import yaml

        space_text = space_file.read_text(encoding="utf-8")
        named = Path(spec.dataset).expanduser()
        if data_file is None and named.is_file():
            dataset_file = named
            raw = yaml.safe_load(space_text)
            raw["dataset"] = _staged_name(named, space_file)
            space_text = yaml.safe_dump(raw, sort_keys=False)
    if data_file is None and space_text is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix="miml-tune-job-"))
    if data_file is not None:
        for companion in [data_file, *companion_files(data_file)]:
            shutil.copy2(companion, folder / companion.name)
        _set_option(argv, "--data", data_file.name)
    if dataset_file is not None:
        shutil.copy2(dataset_file, folder / _staged_name(dataset_file, space_file))
        for companion in companion_files(dataset_file):
            shutil.copy2(companion, folder / companion.name)
    if space_text is not None:
        name = (
            space_file.name
            if space_file.name != getattr(data_file, "name", None)
            else (f"space-{space_file.name}")
        )
        (folder / name).write_text(space_text, encoding="utf-8")
        _set_option(argv, "--space", name)
    return folder


def companion_files(data: Path) -> list[Path]:
    """The files the loaders read beside ``data``, found by name in its folder: a Mulan
    ``NAME-train.arff``'s ``NAME-test.arff`` and the label XML (``NAME.xml``, or the data
    file's own stem ``.xml`` for a MIML ARFF)."""
    stem = data.stem
    base = stem.removesuffix("-train").removesuffix("-test")
    candidates = [data.with_suffix(".xml"), data.with_name(f"{base}.xml")]
    if stem.endswith("-train"):
        candidates.append(data.with_name(f"{base}-test{data.suffix}"))
    seen: list[Path] = []
    for path in candidates:
        if path != data and path.is_file() and path not in seen:
            seen.append(path)
    return seen


def _staged_name(data: Path, space: Path) -> str:
    """The data file's name in the job's folder, kept apart from the space file's."""
    return data.name if data.name != space.name else f"data-{data.name}"


def _runtime_env(working_dir: Path | None, tracking_uri: str | None) -> dict[str, Any]:
    modules = []
    for package in PACKAGES:
        spec = import_util.find_spec(package)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if len(locations) != 1:
            raise MimlTuneError(
                f"cannot find the installed {package!r} package folder to ship to the cluster "
                f"(found {locations}); reinstall miml-tune"
            )
        modules.append(str(Path(locations[0]).resolve()))
    env_vars = {
        # `jobs stop` interrupts the search as Ctrl-C does (Ray's job supervisor reads these from
        # the job's runtime environment): the search ends its runs as KILLED and can be resumed,
        # where the default SIGTERM, then SIGKILL after 3 s, would leave them RUNNING.
        "RAY_JOB_STOP_SIGNAL": "SIGINT",
        "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S),
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        "PYTHONUNBUFFERED": "1",
    }
    if tracking_uri:
        env_vars["MLFLOW_TRACKING_URI"] = tracking_uri
    runtime_env: dict[str, Any] = {
        "py_modules": modules,
        "env_vars": env_vars,
        "excludes": ["__pycache__", "*.pyc"],
    }
    if working_dir is not None:
        runtime_env["working_dir"] = str(working_dir)
    return runtime_env


def _submission_id(kind: str, params: dict[str, Any]) -> str:
    name = params.get("name") or Path(str(params.get("space") or kind)).stem
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.")[:40] or kind
    return f"miml-tune-{slug}-{secrets.token_hex(4)}"


def submit(
    address: str,
    command: list[str],
    *,
    parse_options: ParseOptions,
    tracking_uri: str | None,
    wait: bool,
    echo: Echo,
) -> dict[str, Any]:
    """Submits ``miml-tune <command>`` as a Ray job on the cluster at ``address``.

    Args:
        address: the job server, ``http(s)://HEAD:PORT`` (the head's dashboard, 8265 by default).
        command: what follows ``--``: ``["launch", "--space", "birds", ...]`` or ``["resume",
            "--name", NAME]``. ``--address auto`` is added unless it names one, so the search
            attaches to the cluster the job runs on.
        parse_options: parses the command's arguments into its options (the CLI's parser), so a
            bad option fails here.
        tracking_uri: the MLflow store the job logs to (``MLFLOW_TRACKING_URI`` in the job). A
            file store only when the head node is this machine (see :func:`_check_tracking`).
            Without it (and without the command's own ``--tracking-uri``) the job uses the
            cluster's ``MLFLOW_TRACKING_URI``.
        wait: follow the job's output until it ends.
        echo: prints the job's output (``click.echo``).

    Returns:
        ``job_id``, ``address``, ``entrypoint``; with ``wait`` also the final ``status``.
    """
    address = check_address(address)
    argv = list(command)
    kind, params = parse_command(argv, parse_options)
    own_uri = params.get("tracking_uri")
    if tracking_uri and own_uri and tracking_uri != own_uri:
        raise MimlTuneError(
            f"submit --tracking-uri {tracking_uri} and {kind} --tracking-uri {own_uri} differ; "
            "give one of them"
        )
    uri = _check_tracking(address, tracking_uri or own_uri)
    if own_uri and uri:
        _set_option(argv, "--tracking-uri", uri)
    if not params.get("address"):
        argv += ["--address", "auto"]
    _check_storage(address, argv, params)
    working_dir = _stage_files(kind, argv, params)
    try:
        client = connect(address)
        entrypoint = shlex.join(["python", "-m", "tuner.cli", *argv])
        runtime_env = _runtime_env(working_dir, uri)
        job_id = _submission_id(kind, params)
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                with talking_to(address):
                    client.submit_job(
                        entrypoint=entrypoint,
                        submission_id=job_id,
                        runtime_env=runtime_env,
                        metadata={"miml_tune": __version__},
                    )
                break
            except MimlTuneError as exc:
                if AGENT_NOT_READY not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(POLL_S)
    finally:
        if working_dir is not None:
            shutil.rmtree(working_dir, ignore_errors=True)
    result: dict[str, Any] = {"job_id": job_id, "address": address, "entrypoint": entrypoint}
    if wait:
        echo(f"submitted job {job_id} to {address}; following its output", err=True)
        try:
            _follow(client, address, job_id, echo)
            result["status"] = _wait_terminal(client, address, job_id, timeout=None)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"job {job_id} keeps running on the cluster; `miml-tune jobs stop {job_id} "
                f"--address {address}` stops it"
            ) from None
    return result


def _follow(client: Any, address: str, job_id: str, echo: Echo) -> None:
    """Prints the job's output as it comes, until the job ends."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            echo(chunk, nl=False)

    with talking_to(address, job_id):
        asyncio.run(tail())


def _wait_terminal(client: Any, address: str, job_id: str, timeout: float | None) -> str:
    """Polls the job's status until it ends (or ``timeout`` passes); returns the last status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with talking_to(address, job_id):
            status = str(client.get_job_status(job_id))
        if status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            return status
        time.sleep(POLL_S)


def _status_name(status: Any) -> str:
    return str(getattr(status, "value", status))


def _time(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def list_jobs(address: str) -> list[dict[str, Any]]:
    """The cluster's jobs, newest first: ``job_id``, ``status``, ``start_time``, ``entrypoint``."""
    address = check_address(address)
    client = connect(address)
    with talking_to(address):
        details = client.list_jobs()
    details.sort(key=lambda d: d.start_time or 0, reverse=True)
    return [
        {
            "job_id": d.submission_id or d.job_id,
            "status": _status_name(d.status),
            "start_time": _time(d.start_time),
            "entrypoint": d.entrypoint,
        }
        for d in details
    ]


def job_status(address: str, job_id: str) -> dict[str, Any]:
    """One job's ``status`` and Ray's ``message`` about it; an unknown id is one line."""
    address = check_address(address)
    client = connect(address)
    with talking_to(address, job_id):
        info = client.get_job_info(job_id)
    return {"job_id": job_id, "status": _status_name(info.status), "message": info.message or ""}


def job_logs(address: str, job_id: str, *, follow: bool, echo: Echo) -> None:
    """Prints the job's output (its driver's stdout and stderr); ``follow`` until it ends."""
    address = check_address(address)
    client = connect(address)
    if follow:
        with talking_to(address, job_id):
            client.get_job_info(job_id)  # an unknown id is one line, not a dead web socket
        _follow(client, address, job_id, echo)
        return
    with talking_to(address, job_id):
        logs = client.get_job_logs(job_id)
    echo(logs, nl=not logs.endswith("\n"))


def stop_job(address: str, job_id: str) -> dict[str, Any]:
    """Stops a running job and waits (a little) for it to end; returns its ``status``."""
    address = check_address(address)
    client = connect(address)
    with talking_to(address, job_id):
        client.stop_job(job_id)
    status = _wait_terminal(client, address, job_id, timeout=STOP_WAIT_S)
    return {"job_id": job_id, "status": status}
