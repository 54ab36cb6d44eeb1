"""One search name, one process at a time (issue 12, item 12): a launch takes the search's lock
before it writes anything of the search, and re-checks the storage under it; a resume takes it
before it reads the state. A second process gets one line naming the holder."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.searches import assert_one_line_error, run_main
from tuner.errors import MimlTuneError
from tuner.search.storage import hold_search_lock, search_folder

HOLD = """
import sys, time
from tuner.search.storage import hold_search_lock, search_folder
hold_search_lock(search_folder(sys.argv[1], sys.argv[2]), sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A process holding the lock of search ``birds`` under ``tmp_path/results``; stopped (by
    its PID) when the test ends."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "results"), "birds"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait(timeout=30)


def test_a_held_lock_refuses_a_second_process_and_names_it(tmp_path: Path, holder) -> None:  # type: ignore[no-untyped-def]
    folder = search_folder(str(tmp_path / "results"), "birds")
    with pytest.raises(MimlTuneError, match=f"another process \\(pid {holder.pid}\\)"):
        hold_search_lock(folder, "birds")
    # Another name under the same storage is free.
    hold_search_lock(search_folder(str(tmp_path / "results"), "other"), "other")


def test_the_lock_goes_with_its_process(tmp_path: Path, holder) -> None:  # type: ignore[no-untyped-def]
    holder.kill()
    holder.wait(timeout=30)
    folder = search_folder(str(tmp_path / "results"), "birds")
    deadline = time.monotonic() + 10
    while True:
        try:
            hold_search_lock(folder, "birds")
            break
        except MimlTuneError:
            assert time.monotonic() < deadline, "the dead holder's lock was not released"
            time.sleep(0.1)


def test_resume_of_a_search_another_process_runs_is_one_line(
    tmp_path: Path,
    holder,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    (tmp_path / "results" / "birds").mkdir(parents=True)
    result = run_main(capsys, "resume", "--name", "birds", "--storage", str(tmp_path / "results"))
    assert_one_line_error(result, "'birds'", f"pid {holder.pid}", "another --name")
