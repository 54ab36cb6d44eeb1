"""Real ``mlflow server`` processes for tests: started on a free loopback port with a sqlite store
in a temporary folder, stopped by PID (the process group the server leads), and checked gone."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HEALTH_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """PIDs of every live process below ``pid`` (children, their children, ...)."""
    try:
        import psutil
    except ImportError:
        return _proc_descendants(pid)
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _proc_descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, awaiting its parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def assert_gone(pids: Iterable[int], timeout: float = 15.0) -> None:
    """Every PID in ``pids`` ends within ``timeout`` seconds."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return
        time.sleep(0.1)
    pytest.fail(f"processes still alive after stop: {left}")


def get_json(url: str, timeout: float = 30.0, **query: Any) -> dict[str, Any]:
    """GET ``url`` (``query`` as URL parameters) and decode the JSON reply."""
    if query:
        url = f"{url}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return dict(json.loads(reply.read()))


def post_json(url: str, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """POST ``body`` as JSON to ``url`` and decode the JSON reply."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return dict(json.loads(reply.read()))


def wait_healthy(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float) -> None:
    """Polls ``url/health`` until it answers 200; fails with the server's log if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited ({proc.returncode}): {log.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/health", timeout=2) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.25)
    pytest.fail(f"mlflow server {url} not healthy in {timeout:.0f} s: {log.read_text()[-3000:]}")


def stop_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM to the process group ``proc`` leads, SIGKILL after ``timeout``; reaps ``proc``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@dataclass(frozen=True)
class MlflowServer:
    """A running server: ``url`` is the tracking URI clients use."""

    url: str
    port: int
    pid: int
    folder: Path
    log: Path


@contextlib.contextmanager
def mlflow_server(folder: Path) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` (one worker, no job runner) on 127.0.0.1, for the ``with`` block.

    The store is ``folder/mlflow.db``, the proxied artifacts go to ``folder/mlartifacts``, the log
    to ``folder/mlflow-server.log``. On exit the server's process group is stopped by PID and
    every process it had is checked gone.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "mlflow-server.log"
    env = {
        **os.environ,
        "HOME": str(folder),
        "TMPDIR": str(folder),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pids = [proc.pid]
    try:
        wait_healthy(url, proc, log, HEALTH_TIMEOUT_S)
        pids += descendants(proc.pid)
        yield MlflowServer(url, port, proc.pid, folder, log)
        pids += descendants(proc.pid)
    finally:
        stop_group(proc)
    assert_gone(pids)
