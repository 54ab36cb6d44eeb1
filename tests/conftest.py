"""Shared fixtures: the benchmark data in ../shared/data and isolated temporary state."""

from __future__ import annotations

import os
from pathlib import Path

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
