"""``miml-tune ui``: the MLflow UI over a finished search's sqlite store, its REST API and
artifacts, a clean stop on Ctrl-C (every process gone), and one-line refusals of bad input."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FinishedSearch
from tests.searches import assert_one_line_error, cli, cli_env
from tests.servers import assert_gone, descendants, free_port, get_json, post_json
from tuner.errors import MimlTuneError
from tuner.ui import serve_ui


def _stderr_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _read_lines(stream: object, lines: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line)


@pytest.mark.slow
def test_ui_serves_the_search_and_stops_on_ctrl_c(
    finished_search: FinishedSearch, workdir: Path
) -> None:
    search = finished_search
    port, uri = free_port(), search.uri
    err = workdir / "ui.err"
    with err.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuner.cli", "ui", "--port", str(port), "--tracking-uri", uri],
            cwd=workdir,
            env=cli_env(workdir),
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
    started: list[int] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        first = ""
        while not first and time.monotonic() < deadline:
            try:
                first = lines.get(timeout=1).strip()
            except queue.Empty:
                assert proc.poll() is None, (proc.returncode, _stderr_tail(err))
        assert first == f"MLflow UI: {url} (Ctrl-C to stop)", (first, _stderr_tail(err))
        started = descendants(proc.pid)
        assert len(started) >= 1, "the UI should run the server as a child process"

        api = f"{url}/api/2.0/mlflow"
        experiment = get_json(f"{api}/experiments/get-by-name", experiment_name=search.name)
        experiment_id = experiment["experiment"]["experiment_id"]
        # The UI opens the experiment on its runs table, not MLflow 3's GenAI traces view.
        kinds = {t["key"]: t["value"] for t in experiment["experiment"].get("tags", [])}
        assert kinds.get("mlflow.experimentKind") == "custom_model_development", kinds
        runs = post_json(
            f"{api}/runs/search", {"experiment_ids": [experiment_id], "max_results": 1000}
        )["runs"]
        roles: dict[str, list[dict]] = {}
        for run in runs:
            tags = {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}
            roles.setdefault(tags.get("miml_tune.role", ""), []).append(run)
        assert len(roles["search"]) == 1, sorted(roles)
        parent = roles["search"][0]
        assert parent["info"]["status"] == "FINISHED"
        trials = roles["trial"]
        assert parent["info"]["run_id"] == search.summary["mlflow"]["parent_run_id"]
        assert len(trials) == search.summary["trials"]["total"]
        for trial in trials:
            tags = {tag["key"]: tag["value"] for tag in trial["data"]["tags"]}
            assert tags["mlflow.parentRunId"] == parent["info"]["run_id"]

        # The search summary, through the same endpoint the UI's artifact viewer uses.
        artifact = f"{url}/get-artifact?path=best.json&run_uuid={parent['info']['run_id']}"
        with urllib.request.urlopen(artifact, timeout=30) as reply:
            summary = json.loads(reply.read())
        assert summary["name"] == search.name
        assert summary["best"]["trial_id"] == search.summary["best"]["trial_id"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            for pid in descendants(proc.pid):
                os.kill(pid, signal.SIGKILL)
            raise
    assert code == 0, (code, _stderr_tail(err))
    assert_gone([proc.pid, *started])
    rest = []
    while not lines.empty():
        rest.append(lines.get().strip())
    assert rest[-1:] == ["MLflow UI stopped"], rest
    # Direct links to each search's runs table and search run, printed after the address.
    table = f"{url}/#/experiments/{experiment_id}/runs"
    view = f"{table}?viewStateShareKey=miml-tune"
    link = f"  {search.name}: {view} (its search run: {table}/{parent['info']['run_id']})"
    assert rest[0] == "searches:" and link.strip() in rest, rest


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As the machine's notes start it: headless, no sandbox (root), and no background connections
# (the network is closed; without these flags Chromium tries many at once).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def browse(url: str, profile: Path, *, screenshot: Path | None = None, budget: int = 20_000) -> str:
    """The page at ``url`` as headless Chromium renders it (its DOM after ``budget`` ms of page
    time), and a screenshot of it where asked."""
    assert CHROMIUM is not None
    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1600,1000"]
    common.append(f"--virtual-time-budget={budget}")
    if screenshot is not None:
        subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=180, check=True)  # fmt: skip
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True,
                         timeout=180, check=True)  # fmt: skip
    return dom.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian's chromium) to load the UI in")
def test_the_ui_opens_on_the_trials_ranked_with_the_objective_column(
    finished_search: FinishedSearch, workdir: Path
) -> None:
    """In a real browser, the address `miml-tune ui` prints shows the runs table in the view the
    search saved: trial runs named trial-<id>, the objective and the searched parameters as
    columns (issue 13)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "ui", "--port", str(port),
         "--tracking-uri", finished_search.uri],
        cwd=workdir, env=cli_env(workdir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        # "MLflow UI: URL", "searches:", then a line per search of the store (other tests add
        # searches to this store): this search's.
        line = ""
        for _ in range(50):
            line = proc.stdout.readline()
            if line.strip().startswith(f"{finished_search.name}:") or not line:
                break
        assert "viewStateShareKey" in line, line
        link = line.split()[1]
        shot = Path(os.environ.get("MIML_TUNE_SCREENSHOTS", workdir)) / "mlflow-runs-table.png"
        dom = browse(link, workdir / "chromium", screenshot=shot)
        for budget in (40_000, 80_000):  # a loaded machine renders the page later
            if re.search(r"trial-[0-9a-f]{8}", dom):
                break
            dom = browse(link, workdir / "chromium", budget=budget)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert shot.stat().st_size > 10_000
    trials = set(re.findall(r"trial-[0-9a-f]{8}", dom))
    shown = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))[:1500]  # the page's text, to say why
    assert len(trials) == finished_search.summary["trials"]["total"], (sorted(trials), link, shown)
    columns = set(re.findall(r'col-id="([^"]+)"', dom))
    assert "metrics.`average_precision`" in columns, sorted(columns)
    assert "params.`lr`" in columns, sorted(columns)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port held by a listening socket for the test's duration."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_ui_refuses_a_server_uri(workdir: Path) -> None:
    result = cli(workdir, "ui", "--tracking-uri", "http://127.0.0.1:5000")
    assert_one_line_error(result, "http://127.0.0.1:5000", "already an MLflow server")


def test_ui_refuses_a_missing_store(workdir: Path) -> None:
    result = cli(workdir, "ui", "--port", str(free_port()))  # default store: ./mlflow.db
    assert_one_line_error(result, str(workdir / "mlflow.db"), "miml-tune launch")
    assert not (workdir / "mlflow.db").exists()


def test_ui_refuses_a_busy_port(workdir: Path, busy_port: int) -> None:
    store = workdir / "mlflow.db"
    store.touch()
    result = cli(workdir, "ui", "--port", str(busy_port), "--tracking-uri", f"sqlite:///{store}")
    assert_one_line_error(result, f"port {busy_port}", "already in use", "--port")


@pytest.mark.parametrize("port", [0, -1, 65536, True])
def test_serve_ui_checks_the_port(workdir: Path, port: int) -> None:
    store = workdir / "mlflow.db"
    store.touch()
    with pytest.raises(MimlTuneError, match=r"--port must be an integer in \[1, 65535\]"):
        serve_ui(f"sqlite:///{store}", port)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://mlflow.example.org", "already an MLflow server"),
        ("databricks://profile", "hosted MLflow workspace"),
        ("foo://bar", "unsupported tracking URI"),
    ],
)
def test_serve_ui_refuses_uris_it_cannot_serve(uri: str, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        serve_ui(uri, free_port())


def test_serve_ui_starts_nothing_on_bad_input(workdir: Path, busy_port: int) -> None:
    before = set(descendants(os.getpid()))
    store = workdir / "mlflow.db"
    store.touch()
    for uri, port in [
        (f"sqlite:///{workdir / 'none.db'}", free_port()),
        (f"sqlite:///{store}", busy_port),
        (str(workdir), free_port()),
    ]:
        with pytest.raises(MimlTuneError):
            serve_ui(uri, port)
    assert set(descendants(os.getpid())) <= before


@pytest.mark.slow
def test_ui_reports_a_server_that_fails_at_start(workdir: Path) -> None:
    store = workdir / "mlflow.db"
    store.write_text("not a database, " * 20)
    result = cli(workdir, "ui", "--port", str(free_port()), "--tracking-uri", f"sqlite:///{store}")
    assert_one_line_error(result, "exited at start", "file is not a database")
