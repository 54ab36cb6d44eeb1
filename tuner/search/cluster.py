"""The Ray runtime of a search: starting or attaching to Ray, the cluster's resources, and whether
the search's storage is shared by every node."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from tuner.errors import MimlTuneError, first_line
from tuner.search.options import LaunchOptions, host_port, parse_address
from tuner.search.storage import RunFolder, is_remote_uri, local_path


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """A quick TCP connection to ``HOST:PORT``: ``ray.init`` itself waits a long while on an
    address where nothing listens."""
    rest = address[len("ray://") :] if address.startswith("ray://") else address
    host, port = host_port(rest)
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


def start_ray(address: str | None = None) -> None:
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
        _start_embedded(quiet)
        return
    if target == "auto" and os.environ.get("RAY_ADDRESS"):
        env_address = os.environ["RAY_ADDRESS"]
        if host_port(env_address.removeprefix("ray://"))[0] is not None:
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


def _start_embedded(quiet: dict[str, Any], attempts: int = 3) -> None:
    """Starts an embedded local Ray on loopback. Ray gives its raylet a fixed 30 s to register
    and then raises a bare ``Exception``: on an overloaded machine (several launches starting at
    once on two cores) that happens, so the start is tried up to three times, then said in one
    line."""
    import ray

    # Tune reuses a trial's worker for the next trial (reuse_actors) only once the stopped
    # trial's thread has ended, and waits 2 s for it by default; the thread hands its fold
    # models' memory back first (release_memory), which on a loaded machine took longer, and
    # the next trial failed with "reuse requires reset_config()". The workers of the cluster
    # started here inherit this.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "300")
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                address="local",
                _node_ip_address="127.0.0.1",  # an embedded cluster listens on loopback only
                include_dashboard=False,
                **quiet,
            )
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc):
                raise
            with contextlib.suppress(Exception):
                ray.shutdown()  # the processes this attempt started
            if attempt == attempts:
                load = os.getloadavg()[0]
                raise MimlTuneError(
                    f"the embedded Ray did not start: {first_line(exc)} (load {load:.1f} on "
                    f"{os.cpu_count()} CPUs, {attempts} attempts); try again when the machine "
                    "is less busy, or attach to a running cluster with --address"
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
    if is_remote_uri(storage):
        return True
    path = os.path.normpath(os.path.abspath(local_path(storage)))
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


def check_shared_storage(folder: RunFolder, options: LaunchOptions) -> None:
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


def check_resources(options: LaunchOptions) -> None:
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
