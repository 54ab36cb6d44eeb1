"""The Ray job server: its URL, the token it wants, whether it answers, and its errors.

Token authentication works as with Ray's own ``ray job`` CLI: the token comes from
``RAY_AUTH_TOKEN``, else the file named by ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``
(Ray's own order). Ray's CLI sends it only when ``RAY_AUTH_MODE=token``; here a token given in
the environment is always sent, and ``~/.ray/auth_token`` also when the job server is on this
machine (a loopback address), since that file is the token of the clusters started here. The file
is not sent to other hosts unless ``RAY_AUTH_MODE=token`` says so: it is a secret of this machine's
clusters. ``RAY_AUTH_MODE=disabled`` sends nothing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner.errors import MimlTuneError

PROBE_TIMEOUT_S = 5.0


def check_address(address: str) -> str:
    """The job server URL ``http(s)://HOST:PORT``, normalised; else one line of what is allowed."""
    allowed = (
        f"--address {address!r} must be the Ray job server's URL http(s)://HOST:PORT (the head "
        "node's dashboard port, 8265 by default), e.g. http://127.0.0.1:8265"
    )
    try:
        parts = urllib.parse.urlsplit(address.strip())
        port = parts.port
    except ValueError:
        raise MimlTuneError(allowed) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port is None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise MimlTuneError(allowed)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def is_loopback(address: str) -> bool:
    """Whether the job server's host is this machine's loopback (localhost, 127.x, ::1)."""
    host = urllib.parse.urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_headers(address: str) -> dict[str, str]:
    """The ``Authorization`` header for Ray token authentication, empty when there is no token.

    See the module's docstring for where the token comes from and when it is sent.
    """
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    if mode == "disabled":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH", "").strip()
    if not token and token_path:
        try:
            token = Path(token_path).expanduser().read_text().strip()
        except OSError as exc:
            raise MimlTuneError(
                f"RAY_AUTH_TOKEN_PATH={token_path} cannot be read ({exc.strerror}); point it at "
                "the file holding the cluster's token, or set RAY_AUTH_TOKEN"
            ) from None
        if not token:
            raise MimlTuneError(
                f"RAY_AUTH_TOKEN_PATH={token_path} is empty; it must hold the cluster's token"
            )
    if not token and (mode == "token" or is_loopback(address)):
        with contextlib.suppress(OSError):
            token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    if not token and mode == "token":
        raise MimlTuneError(
            "RAY_AUTH_MODE=token but no token was found: set RAY_AUTH_TOKEN (or "
            "RAY_AUTH_TOKEN_PATH) to the cluster's token (`ray get-auth-token` on the head node "
            "prints it), or write it to ~/.ray/auth_token"
        )
    return {"Authorization": f"Bearer {token}"} if token else {}


def probe(address: str, headers: dict[str, str], timeout: float = PROBE_TIMEOUT_S) -> str:
    """Asks the job server its Ray version (a short GET of ``/api/version``); one line when it
    cannot be reached, is not a Ray job server, or refuses the token."""
    request = urllib.request.Request(f"{address}/api/version", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        raise MimlTuneError(_http_refusal(address, exc.code, bool(headers))) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise MimlTuneError(
            f"Ray job server at {address} is unreachable ({reason}); start the cluster or check "
            "--address"
        ) from None
    try:
        return str(json.loads(body)["ray_version"])
    except (ValueError, KeyError, TypeError):
        raise MimlTuneError(
            f"{address} answered but is not a Ray job server (no Ray version on /api/version); "
            "--address must be the head node's dashboard port, 8265 by default"
        ) from None


def _http_refusal(address: str, status: int, sent_token: bool) -> str:
    if status == 401 or (status == 403 and not sent_token):
        return (
            f"Ray job server at {address} requires a token (Ray token authentication): set "
            "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token; `ray get-auth-token` "
            "on the head node prints it"
        )
    if status == 403:
        return (
            f"Ray job server at {address} refused the token (HTTP 403): set RAY_AUTH_TOKEN to "
            "this cluster's token; `ray get-auth-token` on the head node prints it"
        )
    if status == 404:
        return (
            f"{address} answered but is not a Ray job server (HTTP 404 on /api/version); "
            "--address must be the head node's dashboard port, 8265 by default"
        )
    return f"Ray job server at {address} answered HTTP {status} on /api/version"


@contextlib.contextmanager
def talking_to(address: str, job_id: str | None = None) -> Iterator[None]:
    """Turns the SDK's failures into one line each (lost connection, refused token, no such job)."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError:
        raise MimlTuneError(_http_refusal(address, 401, False)) from None
    except (requests.ConnectionError, requests.Timeout, ConnectionError) as exc:
        raise MimlTuneError(
            f"Ray job server at {address} is unreachable ({type(exc).__name__}); start the "
            "cluster or check --address"
        ) from None
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        if job_id is not None and ("status code 404" in text or "does not exist" in text):
            raise MimlTuneError(
                f"no job {job_id!r} on the Ray job server at {address}; "
                f"`miml-tune jobs list --address {address}` shows its jobs"
            ) from None
        raise MimlTuneError(f"Ray job server at {address}: {text[:500]}") from None


def connect(address: str) -> Any:
    """A :class:`~ray.job_submission.JobSubmissionClient` for ``address`` after checking it.

    ``address`` wins over ``RAY_ADDRESS`` / ``RAY_API_SERVER_ADDRESS``, which the client would
    otherwise prefer (a shell inside a Ray cluster has them set).
    """
    address = check_address(address)
    headers = auth_headers(address)
    probe(address, headers)
    from ray.job_submission import JobSubmissionClient

    # The client's chatter (each package uploaded, the log web socket closed) is not ours to print.
    for name in (
        "ray.dashboard.modules.dashboard_sdk",
        "ray.dashboard.modules.job.sdk",
        "ray._private.runtime_env.packaging",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    names = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        with talking_to(address):
            return JobSubmissionClient(address, headers=headers)
    finally:
        os.environ.update(saved)
