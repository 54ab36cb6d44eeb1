"""Running the real CLI from tests: a short private folder as HOME and TMPDIR, a small real search
on the bundled Birds data, and the one-line error check every bad-input test makes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

# Small but real: GAMIL-C with settings that learn in a few epochs; ASHA (grace 2, factor 2)
# prunes some of the four trials, so reports have pruned learning curves to draw.
SMALL_SPACE: dict[str, Any] = {
    "name": "birds-tiny",
    "description": "a small Birds search for tests",
    "model": "gamil_c",
    "dataset": "birds",
    "metric": "average_precision",
    "mode": "max",
    "cv": {"folds": 3, "repeats": 1},
    "holdout": 0.2,
    "seed": 0,
    # One trial at a time: which trials ASHA prunes then depends on nothing but the seed.
    "budget": {"trials": 4, "max_epochs": 6, "concurrency": 1},
    "scheduler": {"name": "asha", "grace_period": 2, "reduction_factor": 2},
    "sampler": "tpe",
    "peers": ["bag_mean_linear"],
    "params": {
        "lr": [5.0e-3, 3.0e-3, 1.0e-3],
        "k": [3, 5],
        "epochs": 6,
        "batch_size": 32,
        "hidden": 64,
        "heads": 4,
        "proj_dim": 32,
        "beta": 0.1,
    },
}


def cli_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: HOME and TMPDIR inside ``workdir``."""
    env = dict(os.environ)
    env.update(
        HOME=str(workdir),
        TMPDIR=str(workdir),
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
    )
    # MLflow's set_tracking_uri / set_registry_uri in this process export these; a CLI run
    # must not inherit another test's store.
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    env.update(extra)
    return env


def cli(
    workdir: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``miml-tune ARGS`` in a fresh Python process in ``workdir``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", *args],
        cwd=workdir,
        env=env or cli_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"miml-tune {' '.join(args)} timed out; stderr tail: {err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 2 and one ``error:`` line on stderr holding every fragment; returns it."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def launch_small(
    workdir: Path, uri: str, *, name: str = "birds-tiny", **params: Any
) -> dict[str, Any]:
    """Runs :data:`SMALL_SPACE` (``params`` override its parameters) and returns the summary."""
    result = cli(workdir, "launch", "--space", str(_small_space(workdir, name, params)),
                 "--tracking-uri", uri, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def launch_small_on_a_terminal(workdir: Path, uri: str) -> tuple[dict[str, Any], str]:
    """:func:`launch_small` with its standard error on a pseudo-terminal, as a person runs it:
    the summary, and every byte the terminal received (the live table's redraws included)."""
    import pty

    path = _small_space(workdir, "birds-tiny", {})
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "launch", "--space", str(path), "--tracking-uri", uri,
         "--json"],
        cwd=workdir, env=cli_env(workdir, COLUMNS="200"), stdout=subprocess.PIPE,
        stderr=follower, text=True,
    )  # fmt: skip
    os.close(follower)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.communicate(timeout=600)[0]))
    reader.start()
    try:
        terminal = read_terminal(leader, proc)
        reader.join(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert proc.returncode == 0, terminal[-3000:]
    return dict(json.loads(out[0])), terminal


def read_terminal(leader: int, proc: subprocess.Popen[Any]) -> str:
    """Everything a pseudo-terminal received (``leader`` its reading end), until ``proc`` has
    exited and the terminal is quiet (a process it started could hold the terminal open)."""
    chunks: list[bytes] = []
    while True:
        if select.select([leader], [], [], 2.0)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # every process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode(errors="replace")


def _small_space(workdir: Path, name: str, params: dict[str, Any]) -> Path:
    space = {**SMALL_SPACE, "name": name, "params": {**SMALL_SPACE["params"], **params}}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def _entry_point(args: tuple[str, ...]) -> int:
    """``miml-tune ARGS`` through the CLI's entry point in this process; its exit status."""
    from tuner.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``miml-tune ARGS`` through the CLI's own entry point, in this process (no start-up cost
    of a fresh interpreter): its exit status and what it printed."""
    capsys.readouterr()
    code = _entry_point(args)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["miml-tune", *args], code, out, err)


def cli_here(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``miml-tune ARGS`` as :func:`cli` runs it (in ``workdir``, HOME and TMPDIR there), but
    through the CLI's entry point in this process: a fresh interpreter costs about 5 s of
    imports (torch, MLflow) a call. For commands whose process (signals, a terminal, its own
    Ray) is not what the test checks. The environment and the working folder are restored."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, {"HOME": str(workdir), "TMPDIR": str(workdir)}),
        contextlib.chdir(workdir),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # as cli_env drops them
            os.environ.pop(key, None)
        code = _entry_point(args)
    return subprocess.CompletedProcess(["miml-tune", *args], code, out.getvalue(), err.getvalue())
