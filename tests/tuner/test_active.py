"""Active learning (issue 14): the query strategies on fixed scores, the simulation on real
Birds data with a real MLflow store, and `active query` on a promoted model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FinishedSearch
from tests.searches import assert_one_line_error, cli, cli_here
from tuner.active.strategies import STRATEGIES, Pool, entropy, query
from tuner.errors import MimlTuneError


def _pool(scores: list[list[float]], vectors: list[list[float]] | None = None) -> Pool:
    s = np.asarray(scores, dtype=float)
    v = np.asarray(vectors if vectors is not None else [[float(i)] for i in range(len(s))])
    return Pool(s, v, cardinality=1.0)


def test_uncertainty_and_margin_pick_the_bags_nearest_the_decision_point() -> None:
    pool = _pool([[0.99, 0.01], [0.5, 0.5], [0.9, 0.2], [0.52, 0.9]])
    assert list(query("uncertainty", pool, 2)[0]) == [1, 3]
    assert entropy(pool.scores)[1] == pytest.approx(1.0)
    # Margin: a bag is as uncertain as its least certain label, so bag 3 (0.52) ties bag 1.
    picked, utility = query("margin", pool, 2)
    assert sorted(picked) == [1, 3] and utility[0] == pytest.approx(0.5)


def test_cardinality_and_mmc_follow_their_formulas() -> None:
    # Training cardinality 1: bag 0 predicts 3 labels, bag 1 none, bag 2 exactly one.
    pool = Pool(np.array([[0.9, 0.8, 0.7], [0.1, 0.2, 0.3], [0.9, 0.1, 0.1]]), np.eye(3), 1.0)
    picked, utility = query("cardinality", pool, 3)
    assert list(picked) == [0, 1, 2] and list(utility) == [2.0, 1.0, 0.0]
    # MMC with m = 1: y = +1 on the top label, f = 2s - 1; sum_j (1 - y_j f_j) / 2.
    _, utility = query("mmc", pool, 3)
    by_hand = [
        sum((1 - y * (2 * s - 1)) / 2 for y, s in zip(ys, row, strict=True))
        for ys, row in zip([[1, -1, -1], [-1, -1, 1], [1, -1, -1]], pool.scores, strict=True)
    ]
    assert sorted(utility, reverse=True) == pytest.approx(sorted(by_hand, reverse=True))


def test_kcenter_does_not_fill_a_batch_with_near_duplicates() -> None:
    # Ten copies of one uncertain bag and three distinct, slightly less uncertain bags.
    scores = [[0.5, 0.5]] * 10 + [[0.45, 0.55], [0.55, 0.45], [0.4, 0.6]]
    vectors = [[0.0, 0.0]] * 10 + [[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]]
    picked, _ = query("kcenter", _pool(scores, vectors), 4)
    assert sum(i < 10 for i in picked) == 1, picked
    assert len(set(picked.tolist())) == 4
    # Uncertainty alone takes four copies.
    assert all(i < 10 for i in query("uncertainty", _pool(scores, vectors), 4)[0])


def test_kcenter_never_picks_a_bag_twice_when_every_bag_is_the_same() -> None:
    pool = Pool(np.full((12, 3), 0.5), np.zeros((12, 2)), 1.0)
    picked, utility = query("kcenter", pool, 5)
    assert len(set(picked.tolist())) == 5 and np.all(np.isfinite(utility))


def test_the_labelled_start_has_exactly_the_asked_size() -> None:
    """iterstrat treats the size as a target; the start is trimmed or filled to it."""
    from tuner.active.simulate import initial_labelled

    rng = np.random.default_rng(0)
    for n, start in ((50, 0.05), (50, 0.1), (207, 0.1), (80, 0.3)):
        for seed in range(4):
            labels = (rng.random((n, 6)) < 0.2).astype(int)
            chosen = initial_labelled(labels, start, seed)
            assert len(chosen) == len(set(chosen.tolist())) == round(n * start)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_gives_distinct_bags_deterministic_for_a_seed(strategy: str) -> None:
    rng = np.random.default_rng(0)
    pool = Pool(rng.random((40, 5)), rng.normal(size=(40, 3)), 1.7)
    first = query(strategy, pool, 7, seed=3)[0]
    assert len(set(first.tolist())) == 7 and all(0 <= i < 40 for i in first)
    assert np.array_equal(first, query(strategy, pool, 7, seed=3)[0])


@pytest.mark.parametrize(
    ("strategy", "batch", "message"),
    [("entropyy", 2, "unknown query strategy 'entropyy'"), ("random", 0, "--batch must be"),
     ("random", 41, "--batch 41 is larger than the pool (40")],
)  # fmt: skip
def test_query_refuses_bad_settings_in_one_line(strategy: str, batch: int, message: str) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(MimlTuneError, match=message.replace("(", r"\(")):
        query(strategy, Pool(rng.random((40, 5)), rng.random((40, 2)), 1.0), batch)


@pytest.mark.slow
def test_simulate_on_birds_grows_the_labels_by_batch_and_never_queries_the_holdout(
    workdir: Path,
) -> None:
    """The real CLI, Birds, a fast peer, two strategies, two seeds, three rounds of 8."""
    from mlflow.tracking import MlflowClient

    from tuner.search import prepare_data
    from tuner.spec import load_space

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result = cli(
        workdir, "active", "simulate", "--space", "birds", "--model", "bag_mean_linear",
        "--strategies", "random,uncertainty", "--seeds", "2", "--rounds", "3", "--batch", "8",
        "--start", "0.1", "--tracking-uri", uri, "--out", str(workdir / "al"), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    _, dev, holdout = prepare_data(load_space("birds"), None)
    assert holdout is not None
    client = MlflowClient(uri)
    runs = client.search_runs([summary["mlflow"]["experiment_id"]])
    curves = [r for r in runs if r.data.tags.get("miml_tune.role") == "active-curve"]
    assert len(curves) == 4  # 2 strategies x 2 seeds
    for run in curves:
        history = client.get_metric_history(run.info.run_id, "average_precision")
        steps = [m.step for m in sorted(history, key=lambda m: m.step)]
        assert len(steps) == 4 and np.all(np.diff(steps) == 8), steps  # grows by the batch
        queried = Path(client.download_artifacts(run.info.run_id, "queried_bags.txt"))
        ids = queried.read_text().split()
        assert len(ids) == len(set(ids)) == 3 * 8
        assert set(ids) <= set(dev.bag_ids) and not set(ids) & set(holdout.bag_ids)
    # It learns: the last round beats the label-frequency predictor on the holdout.
    from tuner.metrics import compute

    frequency = np.tile(dev.labels.mean(axis=0), (holdout.n_bags, 1))
    baseline = compute(holdout.labels, frequency, names=["average_precision"])
    for entry in summary["strategies_summary"].values():
        last = entry["average_precision"]["curve_mean"][-1]
        assert last > baseline["average_precision"] + 0.05, (last, baseline)
    assert "vs_random" in summary["strategies_summary"]["uncertainty"]["average_precision"]
    assert (workdir / "al" / "learning_curves.png").stat().st_size > 10_000


def test_simulate_refuses_bad_settings_in_one_line(workdir: Path) -> None:
    cases = {
        "--strategies": (["--strategies", "random,entropyy"], "unknown query strategy"),
        "--rounds": (["--rounds", "40", "--batch", "10"], "more than the 207 development bags"),
        "--start": (["--start", "1.5"], "--start must be a fraction in (0, 1)"),
        "twice": (["--strategies", "random,margin,random"], "names random more than once"),
    }
    for args, message in cases.values():
        result = cli_here(workdir, "active", "simulate", "--space", "birds", "--model",
                          "bag_mean_linear", *args)  # fmt: skip
        assert_one_line_error(result, message)
    assert not (workdir / "mlflow.db").exists()  # nothing written before the checks


def _pool_arff(path: Path, bags: list[np.ndarray], label_names: list[str], labels: str) -> Path:
    """A MIML ARFF pool: every label ``labels`` (``?`` for none known)."""
    lines = ["@relation pool", "@attribute bag_id string", "@attribute bag relational"]
    lines += [f"  @attribute f{j} numeric" for j in range(bags[0].shape[1])]
    lines += ["@end bag", *(f"@attribute {name} {{0,1}}" for name in label_names), "@data"]
    for i, bag in enumerate(bags):
        inst = "\\n".join(",".join(f"{v:.6g}" for v in row) for row in bag)
        lines.append(f'pool{i},"{inst}",' + ",".join([labels] * len(label_names)))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_the_report_shows_the_newest_simulation_of_the_search_space(
    finished_search: FinishedSearch, workdir: Path
) -> None:
    """A simulation of the search's space, in a copy of its store, appears in its report (the
    files are written, not logged: the copy shares the search's artifact folder)."""
    import shutil

    from tuner.report.build import write_files
    from tuner.report.records import read_search

    shutil.copy(finished_search.workdir / "mlflow.db", workdir / "mlflow.db")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    space = finished_search.workdir / f"{finished_search.name}.yaml"
    result = cli(
        workdir, "active", "simulate", "--space", str(space), "--model", "bag_mean_linear",
        "--strategies", "random,margin", "--seeds", "2", "--rounds", "1", "--batch", "5",
        "--tracking-uri", uri,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "margin: area 0." in result.stdout and "random (Wilcoxon over 2 seeds" in result.stdout
    out = workdir / "report"
    out.mkdir()
    figures = write_files(read_search(finished_search.name, uri), out, top=3)
    assert "active_learning.png" in figures
    page = (out / "index.html").read_text()
    assert "<h2>Active learning</h2>" in page and 'src="active_learning.png"' in page
    assert (out / "active_learning.png").stat().st_size > 10_000
    data = json.loads((out / "report.json").read_text())
    assert set(data["active_learning"]["strategies_summary"]) == {"random", "margin"}


def test_a_gamil_c_curve_runs_on_birds() -> None:
    """GAMIL-C (a torch model on bag graphs) in the loop as the peers are: one query round."""
    from tuner.active.simulate import initial_labelled, run_curve
    from tuner.search import prepare_data
    from tuner.spec import load_space

    _, dev, holdout = prepare_data(load_space("birds"), None)
    assert holdout is not None
    first = initial_labelled(dev.labels, 0.2, seed=0)
    config = {"hidden": 32, "heads": 2, "layers": 2, "epochs": 2, "batch_size": 32}
    curve = run_curve("margin", 0, "gamil_c", config, dev, holdout, first, batch=5, rounds=1)
    assert curve.labelled == [len(first), len(first) + 5]
    assert len(curve.queried) == 5 and not set(curve.queried) & {dev.bag_ids[i] for i in first}
    assert all(0 < v < 1 for v in curve.metrics["average_precision"])
