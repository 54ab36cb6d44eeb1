"""What a launch is told besides its space: the options, their checks, the search's constants."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TextIO

from tuner.errors import MimlTuneError, short

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
        if self.name is not None:
            check_name(self.name, "--name")


def quiet_libraries() -> None:
    """Keeps the terminal for miml-tune's own lines: libraries' start-up chatter goes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


MAX_NAME_LENGTH = 100
NAME_RULE = (
    f"1 to {MAX_NAME_LENGTH} ASCII letters, digits, '-', '_' or '.', starting with a letter or "
    "digit"
)


def valid_name(name: str) -> bool:
    """Whether ``name`` can name a search: it becomes a folder under ``--storage`` (with
    suffixes), an MLflow experiment and run names, so it keeps to characters every file system
    and MLflow store take, and to a length well inside a file name's 255 bytes."""
    return (
        0 < len(name) <= MAX_NAME_LENGTH
        and name.isascii()
        and name[0].isalnum()
        and all(c.isalnum() or c in "-_." for c in name)
    )


def check_name(name: str, what: str, fix: str = "") -> None:
    """Raises the one-line error for a name :func:`valid_name` refuses; ``what`` says where it
    came from (``--name``), ``fix`` how to set another."""
    if not valid_name(name):
        length = f" ({len(name)} characters)" if len(name) > MAX_NAME_LENGTH else ""
        raise MimlTuneError(
            f"{what} {short(name, 40)}{length} must be {NAME_RULE}{'; ' + fix if fix else ''}"
        )


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
    host, port = host_port(text)
    if host is None or port is None:
        raise MimlTuneError(
            f"--address {address!r} is not a Ray cluster address; allowed: auto or HOST:PORT "
            "(the head's GCS port, 6379 by default; an IPv6 host in brackets: [::1]:6379)"
        )
    return text


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$", re.ASCII)


def host_port(text: str) -> tuple[str | None, int | None]:
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
