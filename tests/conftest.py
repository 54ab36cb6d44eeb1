"""Shared fixtures: the benchmark data in ../shared/data and isolated temporary state."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MIML_TUNE_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real benchmark data; tests that need it skip when it is absent."""
    if not (SHARED_DATA / "miml" / "birds.arff").is_file():
        pytest.skip(
            f"real benchmark data not found at {SHARED_DATA} "
            "(set MIML_TUNE_SHARED_DATA to the folder holding miml/ and mulan/)"
        )
    return SHARED_DATA


@dataclass(frozen=True)
class FinishedSearch:
    """A small real search on Birds, finished: its folder, store and summary."""

    workdir: Path
    uri: str
    name: str
    summary: dict[str, Any]
    terminal: str = ""  # what its standard error, a pseudo-terminal, showed


def short_tmpdir() -> Path:
    """A short temporary folder (Ray's socket paths must stay short)."""
    return Path(tempfile.mkdtemp(prefix="mt", dir="/tmp"))


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short temporary folder used as working folder, HOME and TMPDIR of CLI subprocesses."""
    path = short_tmpdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def finished_search() -> Iterator[FinishedSearch]:
    """One small real search (real CLI, local Ray, sqlite MLflow, bundled Birds) shared by the
    tests that only read it (report, promote). Tests that must change the search run their own."""
    from tests.searches import launch_small_on_a_terminal

    path = short_tmpdir()
    uri = f"sqlite:///{path / 'mlflow.db'}"
    try:
        summary, terminal = launch_small_on_a_terminal(path, uri)
        yield FinishedSearch(path, uri, summary["name"], summary, terminal)
    finally:
        shutil.rmtree(path, ignore_errors=True)
