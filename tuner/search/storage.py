"""A search's folder (``STORAGE/NAME``, a path or a URI): its state file, Tune's saved
experiment, the liveness of the driver that runs it, and the checks before a launch writes there."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.errors import MimlTuneError, first_line
from tuner.search.options import DEFAULT_STORAGE, STATE_FILE


def is_remote_uri(storage: str) -> bool:
    scheme = storage.split("://", 1)[0] if "://" in storage else ""
    return bool(scheme) and scheme != "file"


def local_path(storage: str) -> str:
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
        return is_remote_uri(self.root)

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
        """Removes an earlier search's Tune state (checked by :func:`check_storage`)."""
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


def search_folder(storage: str | None, name: str) -> RunFolder:
    """The folder ``storage/name``, with ``storage`` resolved (a path made absolute)."""
    import pyarrow.fs

    value = storage or DEFAULT_STORAGE
    if is_remote_uri(value):
        try:
            fs, fs_root = pyarrow.fs.FileSystem.from_uri(value)
        except Exception as exc:  # ArrowInvalid, a missing cloud SDK, credentials
            first = first_line(exc)
            raise MimlTuneError(
                f"cannot use --storage {value}: {first}; give a folder or an s3:// or gs:// URI "
                "this machine can reach"
            ) from None
        return RunFolder(value.rstrip("/"), name, fs, fs_root)
    root = str(Path(local_path(value)).expanduser().resolve())
    return RunFolder(root, name, pyarrow.fs.LocalFileSystem(), root)


# Search locks this process holds: lock file -> its open descriptor (released when it exits).
_HELD: dict[str, int] = {}


def hold_search_lock(folder: RunFolder, name: str) -> None:
    """Takes the search's lock for the life of this process, or fails in one line if another
    process on this machine holds it (a launch or resume of the same name under the same
    storage): the check that a search exists and its start are then one step, so two launches
    of one name never write into one folder. The lock is ``storage/.NAME.lock``, an advisory
    ``flock`` the system drops when the process ends, however it ends. Storage at a URI
    (``s3://``) is not locked."""
    import fcntl

    if folder.is_uri:
        return
    root = Path(folder.root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{name}.lock"
    if str(path) in _HELD:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise MimlTuneError(
            f"search {name!r} under {root} is being run by another process (pid {holder}); "
            "wait for it to end, or use another --name"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[str(path)] = fd


def check_storage(storage: str | None, name: str, overwrite: bool) -> RunFolder:
    """The search's Tune folder ``storage/name``, checked; nothing is deleted yet.

    An existing folder is only ever replaced if it is a miml-tune search folder (it holds the
    state file) that finished, or, with ``--overwrite``, one that did not.
    """
    folder = search_folder(storage, name)
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
    status = effective_status(state) if state else "unknown"
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


def effective_status(state: dict[str, Any]) -> str:
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


def driver_info() -> dict[str, Any]:
    import psutil

    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": psutil.Process().create_time(),
    }


def _newest(folder: RunFolder, prefix: str, *, by_time: bool = False) -> Any | None:
    """The newest file of the experiment folder whose name starts with ``prefix``: by name
    (Tune's suffix is a timestamp), or by modification time; ``None`` when there is none."""
    import pyarrow.fs

    entries = folder.fs.get_file_info(pyarrow.fs.FileSelector(folder.path))
    matching = sorted(
        (e for e in entries if e.base_name.startswith(prefix)),
        key=(lambda e: e.mtime_ns or 0) if by_time else (lambda e: e.base_name),
    )
    return matching[-1] if matching else None


def download_searcher_state(folder: RunFolder, target: Path) -> Path | None:
    """Copies the newest ``searcher-state-*.pkl`` of the experiment folder into ``target``."""
    newest = _newest(folder, "searcher-state-")
    if newest is None:
        return None
    local = target / newest.base_name
    with folder.fs.open_input_stream(newest.path) as stream:
        local.write_bytes(stream.read())
    return local


def finished_trials(folder: RunFolder) -> list[str]:
    """Ids of the trials Tune's newest experiment state records as finished or failed."""
    trials = tune_trials(folder)
    return [k for k, v in trials.items() if v["status"] in ("TERMINATED", "ERROR")]


def reopen_trial_generation(folder: RunFolder) -> bool:
    """Lets a search that its time budget ended create trials again when resumed.

    When a stopper ends an experiment, Tune marks its trial generator finished, and its
    concurrency limit still counts the trials it stopped as live; it saves both so
    (``search_gen_state-*.json``, a pickle Tune itself reads back on restore): restored as they
    are, the experiment would end at once, or wait forever for a free slot. This clears both in
    the newest saved state. Returns whether a state was rewritten."""
    import pickle

    newest = _newest(folder, "search_gen_state-")
    if newest is None:
        return False
    with folder.fs.open_input_stream(newest.path) as stream:
        state = pickle.loads(stream.read())  # Tune's own file, read as Tune's restore reads it
    if not isinstance(state, dict) or not state.get("finished"):
        return False
    state["finished"] = False
    for key, wrapper in state.items():
        # The concurrency limit still counts the trials the budget stopped as live: none is.
        if key.startswith("name:") and isinstance(wrapper, dict) and "live_trials" in wrapper:
            wrapper["live_trials"] = set()
            wrapper["num_unfinished_live_trials"] = 0
    data = pickle.dumps(state)
    if folder.is_uri:
        with folder.fs.open_output_stream(newest.path) as stream:
            stream.write(data)
        return True
    tmp = Path(newest.path).with_name(f".{newest.base_name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, newest.path)
    return True


def tune_trials(folder: RunFolder) -> dict[str, dict[str, Any]]:
    """Tune's newest saved experiment state: ``{trial id: {status, last_result}}``."""
    newest = _newest(folder, "experiment_state-", by_time=True)
    if newest is None:
        return {}
    with folder.fs.open_input_stream(newest.path) as stream:
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


def trial_histories(
    folder: RunFolder, trial_ids: Collection[str]
) -> dict[str, list[dict[str, Any]]]:
    """The rows Tune wrote to the ``result.json`` of each of ``trial_ids`` (by the ``trial_id``
    the rows carry), oldest first; a trial whose file cannot be read has none."""
    import pyarrow.fs

    wanted, out = set(trial_ids), {}
    entries = folder.fs.get_file_info(pyarrow.fs.FileSelector(folder.path, recursive=True))
    for entry in entries:
        if entry.base_name != "result.json":
            continue
        try:
            with folder.fs.open_input_stream(entry.path) as stream:
                rows = [json.loads(line) for line in stream.read().decode().splitlines() if line]
        except (OSError, ValueError):
            continue
        trial_id = str(rows[-1].get("trial_id")) if rows else ""
        if trial_id in wanted:
            out[trial_id] = rows
    return out
