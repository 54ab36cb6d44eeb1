"""A real Ray head node for tests: ``ray start --head`` on 127.0.0.1 with its dashboard and job
server, token authentication on, everything in a short private folder, stopped by PID.

``ray start`` daemonises (GCS, raylet, dashboard, log monitor, workers, job drivers all outlive
the command), so the processes of *this* cluster are found by a marker variable in their
environment, which every process Ray starts inherits, and by the cluster's folder in their
command lines. Plain ``ray stop`` is never used: it would stop every Ray instance on the machine,
another test's included.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import assert_gone, free_port

READY_TIMEOUT_S = 120.0
MARKER = "MIML_TUNE_TEST_RAY_HEAD"


@dataclass(frozen=True)
class RayHead:
    """A running head: ``address`` is the job server's URL (what ``submit --address`` takes)."""

    address: str
    gcs_address: str
    folder: Path
    token: str | None
    env: dict[str, str] = field(repr=False)

    def client_env(self, **extra: str) -> dict[str, str]:
        """What a client process needs to talk to this cluster: the token when auth is on."""
        out = dict(extra)
        if self.token:
            out["RAY_AUTH_TOKEN"] = self.token
        return out


def cluster_pids(folder: Path) -> list[int]:
    """PIDs of the live processes of the cluster kept in ``folder``."""
    import psutil

    mark = str(folder)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid == os.getpid():
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if mark in cmdline or proc.environ().get(MARKER) == mark:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_cluster(folder: Path, timeout: float = 3.0) -> None:
    """SIGTERM to every process of the cluster in ``folder``, SIGKILL to those left after
    ``timeout``; then checks they are all gone (new ones started meanwhile included).

    GCS and raylet do not end on SIGTERM within seconds, so the grace period is short: a test
    cluster keeps nothing worth a clean shutdown."""
    import psutil

    def signal_all(kill: bool) -> list[int]:
        pids = cluster_pids(folder)
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc = psutil.Process(pid)
                proc.kill() if kill else proc.terminate()
        return pids

    seen = set(signal_all(kill=False))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = cluster_pids(folder)
        if not left:
            break
        seen.update(left)
        time.sleep(0.2)
    for _ in range(3):  # a dying raylet may still start a worker: kill until none is left
        killed = signal_all(kill=True)
        if not killed:
            break
        seen.update(killed)
        time.sleep(0.5)
    assert_gone(seen)


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _wait_ready(url: str, headers: dict[str, str], log: Path, timeout: float) -> None:
    """Polls the job server until it lists jobs (the dashboard's job module is up)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        request = urllib.request.Request(f"{url}/api/jobs/", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=3) as reply:
                if reply.status == 200:
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log.exists() else ""
    pytest.fail(f"Ray job server {url} not ready in {timeout:.0f} s ({last}): {tail}")


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, *, token: bool = True) -> Iterator[RayHead]:
    """A real Ray head on 127.0.0.1 for the ``with`` block, with the dashboard's job server.

    With ``token`` (the default, Ray's own default for a new cluster) the cluster requires the
    token in :attr:`RayHead.token`; clients pass it as ``RAY_AUTH_TOKEN``. HOME, TMPDIR and
    Ray's temp dir are a short folder under /tmp (Ray's socket paths must stay short), removed
    on exit after every process of the cluster is stopped and checked gone.
    """
    folder = Path(tempfile.mkdtemp(prefix="mtray", dir="/tmp"))
    # Every port Ray would otherwise take from a fixed default (the client server's 10001,
    # the dashboard agent's 52365) is a free one, so two test clusters never collide.
    gcs_port, dash_port, agent_port, client_port = _free_ports(4)
    secret = secrets.token_hex(32) if token else None
    env = {
        **os.environ,
        MARKER: str(folder),
        "HOME": str(folder),
        "TMPDIR": str(folder),
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_AUTH_MODE": "token" if secret else "disabled",
        # Job drivers run `python` from PATH: this interpreter's, which has miml-tune's
        # dependencies (what a real cluster's image provides).
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    if secret:
        env["RAY_AUTH_TOKEN"] = secret
    else:
        env.pop("RAY_AUTH_TOKEN", None)
    # The ray script beside this interpreter (no PATH look-up: the venv may not be activated).
    ray_bin = str(Path(sys.executable).with_name("ray"))
    command = [
        ray_bin,
        "start",
        "--head",
        "--node-ip-address",
        "127.0.0.1",
        "--port",
        str(gcs_port),
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dash_port),
        "--dashboard-agent-listen-port",
        str(agent_port),
        "--ray-client-server-port",
        str(client_port),
        "--num-cpus",
        str(num_cpus),
        "--num-gpus",
        "0",
        "--include-dashboard",
        "true",
        "--disable-usage-stats",
        "--temp-dir",
        str(folder / "ray"),
    ]
    log = folder / "ray-start.log"
    url = f"http://127.0.0.1:{dash_port}"
    try:
        with log.open("wb") as out:
            started = subprocess.run(
                command,
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=READY_TIMEOUT_S,
                check=False,
            )
        if started.returncode != 0:
            pytest.fail(f"ray start failed ({started.returncode}): {log.read_text()[-3000:]}")
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        _wait_ready(url, headers, log, READY_TIMEOUT_S)
        yield RayHead(url, f"127.0.0.1:{gcs_port}", folder, secret, env)
    finally:
        try:
            stop_cluster(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
