"""Making a report: read the search, write the files into a fresh folder, log them to the
parent run, then swap the folder in place of any earlier report."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner import tracking
from tuner.errors import MimlTuneError, first_line
from tuner.report.active import FIGURE as ACTIVE_FIGURE
from tuner.report.active import latest_simulation, section_html
from tuner.report.figures import (
    DPI,
    FIGURES,
    Curve,
    curves_figure,
    history_figure,
    importance_figure,
    leaderboard_figure,
    learning_curves,
    parallel_figure,
    peers_figure,
)
from tuner.report.importances import search_importances
from tuner.report.page import render_html, summary_table
from tuner.report.records import SearchRecord, TrialRecord, fetch_curves, read_search

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_ARTIFACT_DIR = "report"
REPORT_KIND = "miml-tune report"
DATA_FILE = "report.json"


def build_report(name: str, uri: str, out: Path | None = None, *, top: int = 5) -> dict[str, Any]:
    """Writes the report of the latest finished search ``name`` in the store ``uri``.

    Args:
        name: the search's name (its MLflow experiment).
        uri: the MLflow tracking URI.
        out: the report folder [``./miml-tune-reports/NAME``]. An existing report folder there is
            replaced; any other existing folder or file is refused.
        top: how many of the best trials the leaderboard, parallel coordinates and learning
            curves show.

    Returns:
        ``{"out": folder, "html": index.html path, "figures": [PNG paths], "table": text}``.

    Raises:
        MimlTuneError: unknown name, no finished search, ``out`` unusable, ``top`` < 1.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise MimlTuneError(f"--top must be an integer >= 1, got {top!r}")
    target = _check_out(Path(out) if out is not None else Path.cwd() / "miml-tune-reports" / name)
    with _quiet():
        record = read_search(name, uri)
        workdir = _make_workdir(target)
        try:
            figures = write_files(record, workdir, top=top)
            _log_artifacts(uri, record.parent_run_id, workdir)
            _swap_in(workdir, target)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    return {
        "out": str(target),
        "html": str(target / "index.html"),
        "figures": [str(target / f) for f in figures],
        "table": summary_table(record, top=top),
    }


def _log_artifacts(uri: str, run_id: str, folder: Path) -> None:
    try:
        tracking.client(uri).log_artifacts(run_id, str(folder), artifact_path=REPORT_ARTIFACT_DIR)
    except Exception as exc:  # the artifact store refused (permissions, a server's proxy)
        first = first_line(exc)
        raise MimlTuneError(
            f"cannot log the report to the search's parent run {run_id} in {uri}: {first}"
        ) from None


def report_figures(
    record: SearchRecord,
    ranked: list[TrialRecord],
    curves: list[Curve],
    importances: dict[str, float] | str,
    *,
    top: int,
) -> dict[str, Figure]:
    """The report's figures, by their key in ``FIGURES``."""
    return {
        "leaderboard": leaderboard_figure(record, ranked[:top]),
        "history": history_figure(record),
        "importances": importance_figure(record, importances),
        "parallel": parallel_figure(record, ranked, top),
        "curves": curves_figure(record, curves),
        "peers": peers_figure(record),
    }


def write_files(record: SearchRecord, folder: Path, *, top: int) -> list[str]:
    """Writes the figures, ``index.html`` and ``report.json`` into ``folder``; returns the PNG
    file names."""
    ranked = record.ranked()
    shown = [t for i, t in enumerate(ranked) if i < top or t.status == "pruned"]
    fetch_curves(record, shown)
    curves = learning_curves(ranked, top)
    importances = search_importances(record)
    figures = report_figures(record, ranked, curves, importances.values, top=top)
    for key, fig in figures.items():
        fig.savefig(folder / FIGURES[key], dpi=DPI)
    data = {
        "kind": REPORT_KIND,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "search": record.summary,
        "parent_run_id": record.parent_run_id,
        "leaderboard": [_trial_row(t, i) for i, t in enumerate(ranked, 1)],
        "importances": importances.values,
        "importances_source": importances.source,
        "learning_curves": [
            {
                "trial_id": c.trial_id,
                "status": c.status,
                "rank": c.rank,
                "epochs": list(c.epochs),
                "values": list(c.values),
            }
            for c in curves
        ],
        "figures": list(FIGURES.values()),
    }
    names = list(FIGURES.values())
    simulation = latest_simulation(record.uri, str(record.summary.get("space", "")), folder)
    extra = ""
    if simulation is not None:
        data["active_learning"] = simulation
        names.append(ACTIVE_FIGURE)
        extra = section_html(simulation)
    data["figures"] = names
    (folder / DATA_FILE).write_text(json.dumps(_json_safe(data), indent=2))
    (folder / "index.html").write_text(
        render_html(record, ranked, importances, top=top, extra=extra)
    )
    return names


def _trial_row(trial: TrialRecord, rank: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "trial_id": trial.trial_id,
        "run_id": trial.run_id,
        "status": trial.status,
        "epochs": trial.epochs,
        "params": trial.params,
        "metrics": trial.metrics,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _check_out(out: Path) -> Path:
    """The report folder, checked: creatable and writable, and either absent, empty or an
    earlier report (anything else is never replaced)."""
    out = out.expanduser().absolute()
    try:
        if out.exists() and not out.is_dir():
            raise MimlTuneError(f"--out {out} is a file; give a folder")
        existing = next(p for p in (out, *out.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise MimlTuneError(f"--out {out} cannot be created or written to")
        if out.is_dir():
            if not os.access(out.parent, os.W_OK | os.X_OK):
                raise MimlTuneError(f"--out {out}: its folder {out.parent} is not writable")
            if any(out.iterdir()) and not _is_report(out):
                raise MimlTuneError(
                    f"--out {out} exists and is not a miml-tune report folder; choose another "
                    "--out (only an earlier report is replaced)"
                )
    except OSError as exc:
        raise MimlTuneError(f"cannot use --out {out}: {exc.strerror or exc}") from None
    return out


def _is_report(folder: Path) -> bool:
    try:
        return json.loads((folder / DATA_FILE).read_text()).get("kind") == REPORT_KIND
    except (OSError, ValueError, AttributeError):
        return False


def _make_workdir(target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        workdir.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the report from others
        return workdir
    except OSError as exc:
        raise MimlTuneError(f"cannot write the report to {target}: {exc.strerror or exc}") from None


def _swap_in(workdir: Path, target: Path) -> None:
    """Puts the finished folder in place of ``target``; an earlier report is removed after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.replace(workdir, target)
    except OSError:
        if old is not None:
            os.replace(old / target.name, target)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No artifact progress bars on the terminal."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before_env = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before_env
