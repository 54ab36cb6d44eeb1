"""``miml-tune ui``: the MLflow UI over the tracking store the searches use.

The UI is a real ``mlflow server`` in a child process: one worker and no job runner (two processes
instead of about fifteen), in its own process group so that Ctrl-C in the terminal reaches this
process only, and the server is then stopped as one group, every process of it, before returning.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import click

from tuner import tracking
from tuner.errors import MimlTuneError

HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# Schemes that name a store the server can open; anything else is refused by check_tracking_uri.
_SERVER_SCHEMES = ("http", "https")


class _StopRequested(Exception):
    """SIGTERM or SIGHUP while serving: stop the server as Ctrl-C would."""


def serve_ui(
    uri: str,
    port: int = 5000,
    *,
    host: str = "127.0.0.1",
    echo: Callable[[str], Any] = click.echo,
) -> int:
    """Runs the MLflow UI for the tracking store ``uri`` on ``host:port`` until Ctrl-C.

    Args:
        uri: The tracking store: ``sqlite:///PATH`` (which must exist: a search was run there), a
            bare path to a sqlite file, or a database URI. An ``http(s)://`` URI is refused: it
            is already a server, with its own UI.
        port: The TCP port, in ``[1, 65535]``; it must be free on ``host``.
        host: The interface to bind; the loopback one by default, so the UI is only reachable
            from this machine.
        echo: Prints the UI's URL and the stop message.

    Returns:
        0 once the server was stopped on Ctrl-C (or SIGTERM / SIGHUP) and all its processes are
        gone.

    Raises:
        MimlTuneError: bad ``uri`` or ``port``, a port in use, or a server that exits on its own
            or does not answer ``/health`` in time (with the last line of its log).
    """
    uri, command = _server_command(uri, port, host)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    url = f"http://{_url_host(host)}:{port}"
    with tempfile.TemporaryFile(mode="w+b") as log, _stop_signals():
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: Ctrl-C reaches us, not it
        )
        try:
            _wait_healthy(proc, url, log, uri)
            links = _search_links(uri, url)  # read before saying the UI is up
            echo(f"MLflow UI: {url} (Ctrl-C to stop)")
            for line in links:
                echo(line)
            code = proc.wait()
            why = (
                f"killed by {signal.Signals(-code).name}"
                if code < 0
                else f"exit status {code}: {_last_line(log)}"
            )
            raise MimlTuneError(f"the MLflow server for {uri} stopped by itself ({why})")
        except (KeyboardInterrupt, _StopRequested):
            _stop_group(proc)
            echo("MLflow UI stopped")
            return 0
        finally:
            _stop_group(proc)


def _search_links(uri: str, url: str) -> list[str]:
    """The direct address of each search's runs table and parent run in the UI at ``url``."""
    from tuner import tracking

    try:
        client = tracking.client(uri)
        parents = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string=f"tags.{tracking.ROLE_TAG} = 'search'",
            order_by=["attributes.start_time DESC"],
            max_results=100,
        )
    except Exception:  # the links are a convenience: the UI runs without them
        return []
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    lines, seen = [], set()
    for run in parents:
        experiment = run.info.experiment_id
        if experiment in seen:
            continue  # the newest search of each name
        seen.add(experiment)
        lines.append(
            f"  {names.get(experiment, experiment)}: {tracking.runs_table_url(url, experiment)} "
            f"(its search run: {url}/#/experiments/{experiment}/runs/{run.info.run_id})"
        )
    return (["searches:", *lines]) if lines else []


def _server_command(uri: str, port: int, host: str) -> tuple[str, list[str]]:
    """The resolved store URI and the ``mlflow server`` command line, after every check."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise MimlTuneError(f"--port must be an integer in [1, 65535], got {port!r}")
    if not host:
        raise MimlTuneError("host must be a non-empty interface address, e.g. 127.0.0.1")
    uri = tracking.resolve_tracking_uri(uri)
    scheme = uri.split("://", 1)[0].lower()
    if scheme in _SERVER_SCHEMES:
        raise MimlTuneError(
            f"{uri} is already an MLflow server: open it in a browser (miml-tune ui serves a "
            "sqlite or database store)"
        )
    if scheme == "databricks":
        raise MimlTuneError(f"{uri} is a hosted MLflow workspace: open its UI there")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    if scheme == "sqlite":
        path = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
        if path is None or not path.is_file():
            raise MimlTuneError(
                f"no MLflow store at {uri} (no searches yet): run `miml-tune launch` first or "
                "pass --tracking-uri"
            )
        # Experiments made by miml-tune keep their artifacts (file://) in mlartifacts/NAME
        # beside the database, which the server reads directly; the experiments created in the
        # UI get proxied mlflow-artifacts:/ locations, stored in the same folder.
        command += ["--artifacts-destination", str(path.parent / "mlartifacts")]
    else:
        tracking.check_tracking_uri(uri)
    _check_port_free(host, port)
    # No access log: the server's output is kept only for its last line, should it fail.
    command += ["--host", host, "--port", str(port), "--workers", "1"]
    command += ["--uvicorn-opts", "--no-access-log"]
    return uri, command


def _check_port_free(host: str, port: int) -> None:
    """Binds ``host:port`` as the server will (SO_REUSEADDR, as uvicorn does), then lets go."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise MimlTuneError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MimlTuneError(
                    f"port {port} on {host} is already in use; pick another with --port"
                ) from None
            raise MimlTuneError(
                f"cannot use port {port} on {host} ({exc.strerror}); pick another with --port"
            ) from None


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: IO[bytes], uri: str) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise MimlTuneError(
                f"the MLflow server for {uri} exited at start (status {code}): {_last_line(log)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2.0) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise MimlTuneError(
        f"the MLflow server for {uri} did not answer {url}/health within "
        f"{HEALTH_TIMEOUT_S:.0f} s: {_last_line(log)}"
    )


def _last_line(log: IO[bytes]) -> str:
    """The server's last exception line, else its last non-empty line.

    ``pread`` leaves the file offset alone: the server shares it and is still writing.
    """
    fd = log.fileno()
    size = os.fstat(fd).st_size
    start = max(0, size - 16384)
    text = os.pread(fd, size - start, start).decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # A traceback ends in its exception line, unless a library adds notes after it.
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if " " not in head and head.endswith(("Error", "Exception", "Exit")):
            return line
    return lines[-1] if lines else "no output"


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL what is left after STOP_TIMEOUT_S."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    if proc.returncode is not None and not _group_alive(pgid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT_S)
    # The leader is reaped; its workers may still be finishing.
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.returncode is None or _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the server cleanly too, instead of orphaning it."""

    def stop(signum: int, frame: Any) -> None:
        raise _StopRequested(signal.Signals(signum).name)

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, stop)
        except ValueError:  # not the main thread: leave the handlers alone
            break
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
