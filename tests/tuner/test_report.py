"""The search report: pure helpers on made-up trials, then the real report of a finished search
(figures, HTML, artifacts on the parent run) through the library and the real CLI."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from tests.conftest import FinishedSearch
from tests.searches import assert_one_line_error, cli, cli_here
from tuner import tracking
from tuner.errors import MimlTuneError
from tuner.report import (
    DATA_FILE,
    FIGURES,
    SearchRecord,
    TrialRecord,
    best_so_far,
    build_report,
    fetch_curves,
    importance_study,
    in_domain,
    learning_curves,
    param_importances,
    read_search,
    scaled,
    search_importances,
    space_domains,
    typed_param,
)
from tuner.report.build import write_files

DOMAINS = {
    "lr": FloatDistribution(1e-4, 1e-2, log=True),
    "k": CategoricalDistribution((3, 5, 7)),
    "layers": IntDistribution(1, 4),
}


def trial(
    i: int, value: float, status: str = "completed", curve: int = 3, **params: object
) -> TrialRecord:
    return TrialRecord(
        run_id=f"run{i}",
        trial_id=f"t{i}",
        status=status,
        start_time=i,
        epochs=curve,
        params={"lr": 1e-3, "k": 3, "layers": 2, **params},
        metrics={"average_precision": value, "average_precision_std": 0.01},
        order=i,
        curve=[(e, value * e / curve) for e in range(1, curve + 1)],
    )


# --- pure helpers ---------------------------------------------------------------------------


def test_best_so_far_follows_the_mode_and_skips_nan() -> None:
    values = [math.nan, 0.5, 0.4, 0.7, math.nan, 0.6]
    assert best_so_far(values, "max")[1:] == [0.5, 0.5, 0.7, 0.7, 0.7]
    assert math.isnan(best_so_far(values, "max")[0])
    assert best_so_far(values, "min")[1:] == [0.5, 0.4, 0.4, 0.4, 0.4]
    assert best_so_far([], "max") == []
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        best_so_far([1.0], "maximise")


def test_importance_study_holds_completed_trials_in_the_domains() -> None:
    trials = [
        trial(0, 0.5, lr=1e-4),
        trial(1, 0.6, lr=1e-3, k=5),
        trial(2, 0.7, status="pruned"),
        trial(3, math.nan, lr=2e-3),  # no metric
        trial(4, 0.8, k=9),  # outside the space (the space changed since)
        trial(5, 0.55, lr=5e-3, k=7),
    ]
    study, varying = importance_study(trials, DOMAINS, "average_precision", "max")
    assert [t.value for t in study.trials] == [0.5, 0.6, 0.55]
    assert study.direction.name == "MAXIMIZE"
    assert varying == ["lr", "k"]  # layers is 2 in every one
    assert study.trials[1].params == {"lr": 1e-3, "k": 5, "layers": 2}
    assert study.trials[0].distributions == DOMAINS  # the spec's own distributions
    minimise, _ = importance_study(trials, DOMAINS, "ranking_loss", "min")
    assert minimise.direction.name == "MINIMIZE"


def test_param_importances_find_the_parameter_that_matters() -> None:
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-4, 5e-3, 7e-4]
    trials = [
        trial(i, 0.3 + 0.1 * math.log10(lr / 1e-4), lr=lr, k=(3, 5, 7)[i % 3])
        for i, lr in enumerate(lrs)
    ]
    found = param_importances(trials, DOMAINS, "average_precision", "max")
    assert isinstance(found, dict)
    assert set(found) == {"lr", "k"}
    assert found["lr"] > 0.8 > found["k"]


def test_param_importances_say_why_when_there_are_none() -> None:
    one = param_importances([trial(0, 0.5)], DOMAINS, "average_precision", "max")
    assert one == "1 completed trial: importances need at least 2"
    same = param_importances([trial(0, 0.5), trial(1, 0.6)], DOMAINS, "average_precision", "max")
    assert same == "no parameter varies across the 2 completed trials"


def _stored_search(folder: Path, name: str, trials: list[TrialRecord], metric: str) -> str:
    """A search folder ``folder/name`` whose stored Optuna study holds ``trials`` as Ray's
    OptunaSearch records them (a trial the scheduler stopped is complete, at its last value);
    returns the folder as the parent run's storage tag names it."""
    import optuna

    from tuner.search.algorithms import study_storage
    from tuner.search.storage import search_folder

    where = search_folder(str(folder), name)
    study = optuna.create_study(study_name=name, storage=study_storage(where), direction="maximize")
    for t in trials:
        params = {k: t.params[k] for k in DOMAINS}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=DOMAINS, value=t.value(metric))
        )
    return where.uri


def test_importances_come_from_the_stored_study_when_it_holds_the_completed_trials(
    tmp_path: Path,
) -> None:
    metric = "average_precision"
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-4, 5e-3, 7e-4]
    trials = [
        trial(i, 0.3 + 0.1 * math.log10(lr / 1e-4), lr=lr, k=(3, 5, 7)[i % 3])
        for i, lr in enumerate(lrs)
    ]
    # Stopped by ASHA at a rung: complete in the stored study, left out as it is today.
    stopped = trial(8, 0.99, status="pruned", lr=1e-4, k=7)
    storage = _stored_search(tmp_path, "s", [*trials, stopped], metric)
    record = SearchRecord({"metric": metric}, {}, DOMAINS, [*trials, stopped], "p", "u", storage)

    found = search_importances(record)
    assert found.stored
    assert found.source == "importances from the search's stored Optuna study (8 complete trials)"
    rebuilt = param_importances(record.trials, DOMAINS, metric, "max")
    assert isinstance(found.values, dict) and isinstance(rebuilt, dict)
    assert found.values == pytest.approx(rebuilt)  # the same trials as the rebuild
    assert found.values["lr"] > 0.8

    # A completed trial the stored study lacks (another search of that name since): fall back.
    extra = trial(9, 0.5, lr=4e-3, k=5)
    lacking = search_importances(dataclasses.replace(record, trials=[*record.trials, extra]))
    assert not lacking.stored
    assert lacking.source == (
        "importances rebuilt from MLflow runs (9 completed trials): the stored study does not "
        "hold trial t9 as MLflow does"
    )
    gone = search_importances(dataclasses.replace(record, storage=str(tmp_path / "gone" / "s")))
    assert gone.source == (
        "importances rebuilt from MLflow runs (8 completed trials): the search's folder "
        f"{tmp_path / 'gone' / 's'} is not on this machine"
    )
    assert gone.values == pytest.approx(rebuilt)
    untagged = search_importances(dataclasses.replace(record, storage=None))
    assert untagged.source.endswith(": the parent run does not name the search's folder")
    remote = search_importances(dataclasses.replace(record, storage="s3://bucket/runs/s"))
    assert remote.source.endswith(": the search's folder s3://bucket/runs/s is not on this machine")
    (tmp_path / "empty").mkdir()
    empty = search_importances(dataclasses.replace(record, storage=str(tmp_path / "empty")))
    assert empty.source.endswith(f": {tmp_path / 'empty'} holds no stored Optuna study")


def test_learning_curves_keep_the_top_trials_and_every_pruned_one() -> None:
    ranked = [
        trial(0, 0.8, curve=6),
        trial(1, 0.7, curve=6),
        trial(2, 0.6, curve=6),
        trial(3, 0.5, status="pruned", curve=2),
        trial(4, 0.4, status="pruned", curve=4),
    ]
    curves = learning_curves(ranked, top=1)
    assert [(c.trial_id, c.status, c.rank) for c in curves] == [
        ("t0", "completed", 1),
        ("t3", "pruned", 4),
        ("t4", "pruned", 5),
    ]
    assert curves[1].epochs == (1, 2)
    assert curves[2].values[-1] == pytest.approx(0.4)


def test_scaled_maps_each_domain_kind_onto_0_1() -> None:
    assert scaled(5, DOMAINS["k"]) == 0.5
    assert scaled(7, DOMAINS["k"]) == 1.0
    assert math.isnan(scaled(9, DOMAINS["k"]))
    assert scaled(1e-3, DOMAINS["lr"]) == pytest.approx(0.5)
    assert scaled(4, DOMAINS["layers"]) == 1.0
    assert scaled(0.5, FloatDistribution(0.0, 2.0)) == 0.25
    assert scaled("x", CategoricalDistribution(("x",))) == 0.5


def test_every_axis_runs_small_to_large_and_the_metric_better_at_the_top() -> None:
    """Numeric choices listed in descending order (as the paper's lr grid is) still go up the
    axis like a numeric range; other choices keep their order (issue 13)."""
    from tuner.report.figures import _axis_labels, axis_choices

    lr = CategoricalDistribution((1e-2, 5e-3, 1e-3))
    assert axis_choices(lr) == [1e-3, 5e-3, 1e-2]
    assert scaled(1e-3, lr) == 0.0 and scaled(1e-2, lr) == 1.0
    assert axis_choices(CategoricalDistribution(("mean", "attention"))) == ["mean", "attention"]
    assert _axis_labels(None, 0.1, 0.3, "max") == [(0.0, "0.1"), (1.0, "0.3")]
    assert _axis_labels(None, 0.1, 0.3, "min") == [(1.0, "0.1"), (0.0, "0.3")]


def test_in_domain_by_kind() -> None:
    assert in_domain(5, DOMAINS["k"]) and not in_domain(9, DOMAINS["k"])
    assert not in_domain(True, CategoricalDistribution((1, 2)))
    assert in_domain(1e-3, DOMAINS["lr"]) and not in_domain(0.1, DOMAINS["lr"])
    assert in_domain(4, DOMAINS["layers"]) and not in_domain(2.5, DOMAINS["layers"])
    assert not in_domain("3", DOMAINS["layers"])


def test_params_read_back_as_their_domain_types() -> None:
    assert typed_param("5", DOMAINS["k"]) == 5
    assert typed_param("0.001", DOMAINS["lr"]) == 0.001
    assert typed_param("3", DOMAINS["layers"]) == 3
    assert typed_param("True", CategoricalDistribution((True, False))) is True
    assert typed_param("attention", None) == "attention"
    assert typed_param("32", None) == 32


def test_space_domains_cap_epochs_as_the_search_did() -> None:
    space = {
        "name": "s",
        "model": "gamil_c",
        "dataset": "birds",
        "metric": "average_precision",
        "budget": {"trials": 4, "max_epochs": 6},
        "params": {"lr": {"loguniform": [1e-4, 1e-2]}, "epochs": [5, 10, 20], "hidden": 64},
    }
    domains = space_domains(space)
    assert domains == {
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "epochs": CategoricalDistribution((5, 6)),
    }


def test_bad_out_and_top_are_one_line_errors_before_any_work(tmp_path: Path) -> None:
    nowhere = f"sqlite:///{tmp_path / 'none.db'}"
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(MimlTuneError, match="is a file; give a folder"):
        build_report("s", nowhere, file)
    with pytest.raises(MimlTuneError, match="cannot be created or written to"):
        build_report("s", nowhere, file / "sub")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(MimlTuneError, match="is not a miml-tune report folder"):
        build_report("s", nowhere, other)
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(MimlTuneError, match="--top must be an integer >= 1, got 0"):
        build_report("s", nowhere, tmp_path / "r", top=0)
    with pytest.raises(MimlTuneError, match="no MLflow store"):
        build_report("s", nowhere, tmp_path / "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "notes"]


def test_a_failed_report_leaves_no_folder_and_keeps_the_earlier_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tuner.report.build as build

    record = SearchRecord({"mlflow": {}}, {}, DOMAINS, [], "pid", "sqlite:///unused")
    monkeypatch.setattr(build, "read_search", lambda name, uri: record)

    def half_written(record: SearchRecord, folder: Path, *, top: int) -> list[str]:
        (folder / "leaderboard.png").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(build, "write_files", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report("s", "sqlite:///unused", tmp_path / "new")
    assert list(tmp_path.iterdir()) == []

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / DATA_FILE).write_text(json.dumps({"kind": build.REPORT_KIND}))
    with pytest.raises(RuntimeError, match="disk full"):
        build_report("s", "sqlite:///unused", earlier)
    assert [p.name for p in tmp_path.iterdir()] == ["earlier"]
    assert [p.name for p in earlier.iterdir()] == [DATA_FILE]


# --- the report of a real finished search -------------------------------------------------


def _check_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.stat().st_size > 5_000, path
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= 600 and height >= 250, (path.name, image.shape)
    assert image.std() > 0.01, f"{path.name} is blank"


@pytest.mark.slow
def test_report_of_a_finished_search(finished_search: FinishedSearch, workdir: Path) -> None:
    s = finished_search
    out = workdir / "reports" / "tiny"
    result = build_report(s.name, s.uri, out, top=3)

    assert result["out"] == str(out) and result["html"] == str(out / "index.html")
    assert [Path(f).name for f in result["figures"]] == list(FIGURES.values())
    for figure in result["figures"]:
        _check_png(Path(figure))
    page = (out / "index.html").read_text()
    for name in FIGURES.values():
        assert f'src="{name}"' in page
    assert not re.search(r"<script|<link|https?://", page), "the page must be self-contained"
    assert '<div class="wide"><table>' in page  # a wide leaderboard scrolls inside the page

    # The leaderboard's first row is the summary's best, with its numbers.
    best = s.summary["best"]
    first = re.search(r'<tr class="best">(.*?)</tr>', page)
    assert first is not None
    cv = best["metrics"][s.summary["metric"]]
    assert f"<td>{best['trial_id']}</td>" in first.group(1)
    assert f">{cv['mean']:.4f}<" in first.group(1) and f">{cv['std']:.4f}<" in first.group(1)
    for model, peer in s.summary["peers"].items():
        assert f"peer {model}" in page
        assert f"{peer['metrics'][s.summary['metric']]['mean']:.4f}" in page
    assert s.summary["holdout_kind"] in page and s.summary["model"] in page

    table = result["table"]
    assert best["trial_id"] in table.splitlines()[3] and f"{cv['mean']:.4f}" in table
    assert all(f"peer  {model}" in table for model in s.summary["peers"])

    data = json.loads((out / DATA_FILE).read_text())
    pruned = [c for c in data["learning_curves"] if c["status"] == "pruned"]
    assert len(pruned) == s.summary["trials"]["pruned"]

    # The same files, as artifacts of the search's parent run.
    client = tracking.client(s.uri)
    parent = s.summary["mlflow"]["parent_run_id"]
    logged = {Path(a.path).name for a in client.list_artifacts(parent, "report")}
    assert logged == {p.name for p in out.iterdir()}

    # A second report replaces the first, leaving no temporary folder beside it.
    again = build_report(s.name, s.uri, out, top=1)
    assert Path(again["html"]).is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny"]


@pytest.mark.slow
def test_report_importances_come_from_the_stored_study(
    finished_search: FinishedSearch, workdir: Path
) -> None:
    s = finished_search
    record = read_search(s.name, s.uri)
    assert record.storage is not None
    assert Path(record.storage).resolve() == (s.workdir / "miml-tune-results" / s.name).resolve()
    completed = [
        t
        for t in record.trials
        if t.status == "completed" and math.isfinite(t.value(s.summary["metric"]))
    ]
    rebuilt = param_importances(record.trials, record.domains, record.metric, record.mode)

    stored = workdir / "stored"
    stored.mkdir()
    write_files(record, stored, top=3)
    data = json.loads((stored / DATA_FILE).read_text())
    source = f"importances from the search's stored Optuna study ({len(completed)} complete trials)"
    assert data["importances_source"] == source
    assert html.escape(source) in (stored / "index.html").read_text()
    assert data["importances"] == (pytest.approx(rebuilt) if isinstance(rebuilt, dict) else rebuilt)

    # The search's folder is gone (the report runs elsewhere): rebuilt from the MLflow runs.
    gone = workdir / "gone"
    gone.mkdir()
    away = dataclasses.replace(record, storage=str(workdir / "elsewhere" / s.name))
    write_files(away, gone, top=3)
    data = json.loads((gone / DATA_FILE).read_text())
    source = (
        f"importances rebuilt from MLflow runs ({len(completed)} completed trials): the search's "
        f"folder {workdir / 'elsewhere' / s.name} is not on this machine"
    )
    assert data["importances_source"] == source
    assert html.escape(source) in (gone / "index.html").read_text()
    assert data["importances"] == (pytest.approx(rebuilt) if isinstance(rebuilt, dict) else rebuilt)


@pytest.mark.slow
def test_learning_curves_show_the_pruned_trials(finished_search: FinishedSearch) -> None:
    s = finished_search
    record = read_search(s.name, s.uri)
    assert len(record.trials) == s.summary["trials"]["total"]
    ranked = record.ranked()
    assert ranked[0].trial_id == s.summary["best"]["trial_id"]
    fetch_curves(record, ranked)
    curves = learning_curves(ranked, top=1)
    pruned = [t for t in ranked if t.status == "pruned"]
    # Whether ASHA pruned any of the four trials depends on their scores; the unit tests of
    # learning_curves cover a pruned trial either way.
    assert s.summary["trials"]["pruned"] == len(pruned)
    assert [c.trial_id for c in curves] == [ranked[0].trial_id] + [t.trial_id for t in pruned]
    best = curves[0]
    assert best.epochs == tuple(range(1, s.summary["best"]["epochs"] + 1))
    assert best.values[-1] == pytest.approx(
        s.summary["best"]["metrics"][s.summary["metric"]]["mean"]
    )
    for curve, pruned_trial in zip(curves[1:], pruned, strict=True):
        assert curve.status == "pruned"
        assert curve.epochs[-1] == pruned_trial.epochs < s.summary["best"]["epochs"]


@pytest.mark.slow
def test_report_through_the_cli(finished_search: FinishedSearch, workdir: Path) -> None:
    s = finished_search
    out = workdir / "cli-report"
    result = cli(workdir, "report", "--name", s.name, "--tracking-uri", s.uri, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert s.summary["best"]["trial_id"] in result.stdout
    assert str(out / "index.html") in result.stdout
    assert {p.name for p in out.glob("*.png")} == set(FIGURES.values())

    unknown = cli_here(workdir, "report", "--name", "no-such-search", "--tracking-uri", s.uri)
    assert_one_line_error(unknown, "no search named 'no-such-search'", s.name)
    assert not (workdir / "miml-tune-reports").exists()


def test_a_retried_trials_curve_is_its_last_attempt() -> None:
    from tuner.report import last_attempt

    assert last_attempt([(1, 0.1), (2, 0.2), (3, 0.3)]) == [(1, 0.1), (2, 0.2), (3, 0.3)]
    # Killed after epoch 3, retried from epoch 1 to 4: only the retry is drawn.
    retried = [(1, 0.1), (2, 0.2), (3, 0.3), (1, 0.15), (2, 0.25), (3, 0.35), (4, 0.4)]
    assert last_attempt(retried) == [(1, 0.15), (2, 0.25), (3, 0.35), (4, 0.4)]
    assert last_attempt([(1, 0.1), (1, 0.2)]) == [(1, 0.2)]
    assert last_attempt([]) == []


def overlapping_tick_labels(fig: Any) -> list[tuple[str, str]]:
    """Pairs of tick labels of one axis whose drawn boxes overlap (issue 13: "peer names on the
    x axis overlap into one word")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    pairs = []
    for ax in fig.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            shown = [t for t in labels if t.get_visible() and t.get_text().strip()]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in shown]
            for i, (a, box_a) in enumerate(boxes):
                for b, box_b in boxes[i + 1 :]:
                    if box_a.overlaps(box_b):
                        pairs.append((a, b))
    return pairs


def test_the_overlap_check_sees_crowded_labels() -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    ax = fig.add_subplot()
    ax.set_xticks(range(5), ["bag_mean_linear", "bag_mean_mlp", "miml_knn", "mimlsvm", "best"])
    assert overlapping_tick_labels(fig)


@pytest.mark.slow
def test_no_report_figure_has_overlapping_tick_labels(finished_search: FinishedSearch) -> None:
    """Every figure of a real report, and the peers figure with all four classic peers."""
    from tuner.report.build import report_figures
    from tuner.report.figures import learning_curves, peers_figure
    from tuner.report.records import fetch_curves, read_search

    record = read_search(finished_search.name, finished_search.uri)
    ranked = record.ranked()
    fetch_curves(record, ranked)
    curves = learning_curves(ranked, 3)
    figures = report_figures(record, ranked, curves, search_importances(record).values, top=3)
    for key, fig in figures.items():
        assert not overlapping_tick_labels(fig), key
    peers = dict(record.summary["peers"])
    (only,) = peers.values()
    crowded = dataclasses.replace(
        record,
        summary={
            **record.summary,
            "peers": {m: only for m in ("bag_mean_linear", "bag_mean_mlp", "miml_knn", "mimlsvm")},
        },
    )
    assert not overlapping_tick_labels(peers_figure(crowded))
    title = figures["importances"].axes[0].get_title()
    assert "completed trials" in title and "rough guide" in title  # 4 trials: said so


def test_the_leaderboard_has_unique_column_names() -> None:
    """A searched ``epochs`` beside the epochs each trial trained: two names, one table."""
    from tuner.report.page import leaderboard_header

    names = leaderboard_header("average_precision", ["epochs", "lr", "fold std"])
    assert len(names) == len(set(names)), names
    assert "epochs trained" in names and "epochs (param)" in names and "lr" in names
