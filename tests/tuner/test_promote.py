"""Promote and predict end to end: a real small search on Birds, a real sqlite registry, the real
CLI in fresh processes, and a model loaded by alias in a Python process of its own."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import SHARED_DATA, FinishedSearch
from tests.searches import (
    SMALL_SPACE,
    assert_one_line_error,
    cli,
    cli_env,
    cli_here,
    run_main,
)
from tests.tuner.data.test_arff import write_miml_arff
from tests.tuner.test_active import _pool_arff
from tests.tuner.test_model_trust import NO_PICKLE

pytestmark = pytest.mark.slow

BIRDS = SHARED_DATA / "miml" / "birds.arff"


def _promote(search: FinishedSearch, *args: str, name: str | None = None) -> dict[str, Any]:
    result = cli_here(
        search.workdir,
        "promote", "--name", name or search.name, "--tracking-uri", search.uri, "--json", *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _versions(uri: str) -> list[tuple[str, str]]:
    client = _client(uri)
    return sorted(
        (m.name, v.version)
        for m in client.search_registered_models()
        for v in client.search_model_versions(f"name = '{m.name}'")
    )


@pytest.fixture(scope="module")
def champion(finished_search: FinishedSearch) -> Iterator[dict[str, Any]]:
    """The small search promoted once, as registered model ``champ-a``."""
    yield _promote(finished_search, "--registered-name", "champ-a")


def _holdout_and_frequency_ap() -> tuple[Any, float]:
    """The search's holdout (split exactly as the search split it) and the average precision
    there of the label-frequency predictor fitted on the development bags."""
    from tuner.metrics import compute
    from tuner.search import prepare_data
    from tuner.spec import parse_space

    _, dev, holdout = prepare_data(parse_space(yaml.safe_dump(SMALL_SPACE)), None)
    assert holdout is not None
    frequency = np.tile(dev.labels.mean(axis=0), (holdout.n_bags, 1))
    return holdout, compute(holdout.labels, frequency, names=["average_precision"])[
        "average_precision"
    ]


def test_promote_registers_a_champion_with_its_lineage(
    finished_search: FinishedSearch, champion: dict[str, Any]
) -> None:
    summary = finished_search.summary
    assert champion["registered_model"] == "champ-a" and champion["version"] == 1
    assert champion["alias_moved"] and champion["reason"] == "no version held the alias"
    assert champion["trial_id"] == summary["best"]["trial_id"]
    assert champion["config"] == summary["best"]["config"]
    assert champion["epochs"] == summary["best"]["epochs"]
    assert champion["holdout_bags"] == summary["bags"]["holdout"]

    # The refit model learned: on the 50 held-out bags it ranks labels far better than the
    # label-frequency predictor does.
    _, frequency_ap = _holdout_and_frequency_ap()
    assert champion["holdout"]["average_precision"] > frequency_ap + 0.1, (
        champion["holdout"],
        frequency_ap,
    )

    client = _client(finished_search.uri)
    version = client.get_model_version_by_alias("champ-a", "champion")
    assert str(version.version) == "1" and version.status == "READY"
    tags = version.tags
    assert tags["miml_tune.parent_run_id"] == summary["mlflow"]["parent_run_id"]
    assert tags["miml_tune.trial_id"] == summary["best"]["trial_id"]
    assert json.loads(tags["miml_tune.config"]) == summary["best"]["config"]
    assert tags["miml_tune.dataset_fingerprint"] == summary["dataset_fingerprint"]
    assert tags["miml_tune.version"] == summary["version"]
    assert tags["miml_tune.search"] == finished_search.name
    assert float(tags["miml_tune.holdout.average_precision"]) == pytest.approx(
        champion["holdout"]["average_precision"]
    )
    assert version.run_id == champion["run_id"]
    run = client.get_run(champion["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == summary["mlflow"]["parent_run_id"]
    assert run.data.tags["miml_tune.role"] == "promotion"
    assert run.data.metrics["holdout.average_precision"] == pytest.approx(
        champion["holdout"]["average_precision"]
    )


def test_a_fresh_process_loads_the_champion_by_alias_and_reproduces_the_holdout_score(
    finished_search: FinishedSearch, champion: dict[str, Any]
) -> None:
    # Every way to unpickle is refused in that process: the model is data (issue 12).
    script = (
        NO_PICKLE
        + """
import json, sys, yaml
import mlflow
from tuner.metrics import compute
from tuner.search import prepare_data
from tuner.serving import bags_to_frame
from tuner.spec import parse_space

mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/champ-a@champion")
_, _, holdout = prepare_data(parse_space(sys.argv[2]), None)
scores = model.predict(bags_to_frame(holdout.bags, holdout.bag_ids))
labels = list(holdout.label_names)
assert list(scores["bag_id"]) == list(holdout.bag_ids)
ap = compute(holdout.labels, scores[labels].to_numpy(), names=["average_precision"])
print(json.dumps({"columns": list(scores.columns), **ap}))
"""
    )
    space = yaml.safe_dump(SMALL_SPACE)
    proc = subprocess.run(
        [sys.executable, "-c", script, finished_search.uri, space],
        cwd=finished_search.workdir,
        env=cli_env(finished_search.workdir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["columns"][0] == "bag_id" and len(out["columns"]) == 1 + 19
    assert out["average_precision"] == pytest.approx(
        champion["holdout"]["average_precision"], abs=1e-9
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_writes_scores_and_label_sets_with_label_names(
    finished_search: FinishedSearch, champion: dict[str, Any], suffix: str
) -> None:
    data = str(BIRDS) if BIRDS.is_file() else "birds"
    out = finished_search.workdir / f"predictions{suffix}"
    result = cli_here(
        finished_search.workdir,
        "predict", "--model", "models:/champ-a@champion", "--data", data, "--out", str(out),
        "--tracking-uri", finished_search.uri,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predicted 257 bags" in result.stdout and f"wrote {out}" in result.stdout
    assert "against the file's own labels: average_precision" in result.stdout
    if suffix == ".csv":
        with out.open() as handle:
            rows = list(csv.DictReader(handle))
        scored = [
            ({k[6:]: float(v) for k, v in row.items() if k.startswith("score.")}, row["labels"])
            for row in rows
        ]
        parsed = [(scores, set(labels.split(";")) - {""}) for scores, labels in scored]
    else:
        records = [json.loads(line) for line in out.read_text().splitlines()]
        parsed = [(r["scores"], set(r["labels"])) for r in records]
    assert len(parsed) == 257
    assert len(parsed[0][0]) == 19 and "BRCR" in parsed[0][0]
    for scores, chosen in parsed:
        assert chosen == {k for k, v in scores.items() if v >= 0.5}
    assert any(chosen for _, chosen in parsed), "some bag has a predicted label"


def test_predict_top_k_picks_the_k_best_labels(
    finished_search: FinishedSearch, champion: dict[str, Any]
) -> None:
    result = cli_here(
        finished_search.workdir,
        "predict", "--model", "models:/champ-a/1", "--data", "birds", "--top-k", "2", "--json",
        "--tracking-uri", finished_search.uri,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["bags"] == 257 and out["labels_per_bag"] == 2.0
    assert all(len(row["labels"]) == 2 for row in out["rows"])


def test_a_worse_promotion_leaves_the_alias_and_force_moves_it(
    finished_search: FinishedSearch,
) -> None:
    first = _promote(finished_search, "--registered-name", "champ-b")
    assert first["alias_moved"]
    # The champion as a better model would have left it: its recorded holdout score (the tag
    # promote compares with) above what any model of this search reaches. Training a worse
    # search instead would cost the suite a whole launch.
    metric = "average_precision"
    client = _client(finished_search.uri)
    client.set_model_version_tag("champ-b", "1", f"miml_tune.holdout.{metric}", "0.999")
    second = _promote(finished_search, "--registered-name", "champ-b")
    assert second["holdout"][metric] < 0.999  # the premise
    assert second["version"] == 2 and not second["alias_moved"]
    assert "leaves the alias" in second["reason"] and second["champion_version"] == 1
    assert "< 0.9990 of version 1" in second["reason"], second["reason"]
    assert str(client.get_model_version_by_alias("champ-b", "champion").version) == "1"
    assert client.get_model_version("champ-b", "2").status == "READY"  # registered all the same

    forced = _promote(finished_search, "--registered-name", "champ-b", "--force")
    assert forced["version"] == 3 and forced["alias_moved"]
    assert forced["reason"].startswith("forced (--force)")
    assert str(client.get_model_version_by_alias("champ-b", "champion").version) == "3"


def test_bad_input_is_one_line_and_registers_nothing(
    finished_search: FinishedSearch,
    champion: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workdir, uri = finished_search.workdir, finished_search.uri
    before = _versions(uri)

    # An experiment whose only launch never finished (what an interrupted launch leaves).
    client = _client(uri)
    experiment = client.create_experiment("never-finished")
    run = client.create_run(experiment, tags={"miml_tune.role": "search"})
    client.set_terminated(run.info.run_id, "KILLED")

    # One through a fresh process, the rest through the same entry point in this process.
    result = cli(workdir, "promote", "--tracking-uri", uri, "--name", "no-such-search")
    assert_one_line_error(result, "no search named 'no-such-search'")

    def promote(*args: str) -> subprocess.CompletedProcess[str]:
        return run_main(capsys, "promote", "--tracking-uri", uri, *args)

    def predict(*args: str) -> subprocess.CompletedProcess[str]:
        return run_main(capsys, "predict", "--tracking-uri", uri, *args)

    assert_one_line_error(promote("--name", "never-finished"), "has no finished launch yet")
    assert_one_line_error(promote("--name", finished_search.name, "--alias", "v2"), "alias 'v2'")
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert_one_line_error(
        run_main(capsys, "promote", "--name", "x", "--tracking-uri", missing), "no MLflow store"
    )
    assert_one_line_error(
        predict("--model", "models:/no-such-model@champion", "--data", "birds"),
        "cannot load model models:/no-such-model@champion",
    )
    # Bags with 3 features per instance; the Birds model takes 38.
    other = write_miml_arff(
        tmp_path / "three.arff", [[[0.1, 0.2, 0.3]], [[1.0, 2.0, 3.0]]], [[1, 0], [0, 1]]
    )
    assert_one_line_error(
        predict("--model", "models:/champ-a@champion", "--data", str(other)),
        "has 3 features per instance",
        "takes 38",
    )
    model = ("--model", "models:/champ-a@champion", "--data", "birds")
    assert_one_line_error(predict(*model, "--threshold", "1.5"), "--threshold must be in (0, 1)")
    assert_one_line_error(predict(*model, "--top-k", "0"), "--top-k must be an integer >= 1")
    assert_one_line_error(predict(*model, "--out", str(tmp_path / "p.txt")), "use a .csv or")
    assert not list(tmp_path.glob("p.*"))
    assert _versions(uri) == before, "nothing may be registered"


def test_a_promotion_that_fails_after_registering_keeps_the_previous_champion(
    finished_search: FinishedSearch, champion: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from tuner.promote import promote

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the store went away")

    before = _versions(finished_search.uri)
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", refuse)
    with pytest.raises(ConnectionError):
        promote(finished_search.name, tracking_uri=finished_search.uri, registered_name="champ-a")
    monkeypatch.undo()
    client = _client(finished_search.uri)
    assert str(client.get_model_version_by_alias("champ-a", "champion").version) == "1"
    assert _versions(finished_search.uri) == before, "the half-made version is deleted"
    failed = client.search_runs(
        [client.get_experiment_by_name(finished_search.name).experiment_id],
        filter_string="tags.`miml_tune.role` = 'promotion' and attributes.status = 'FAILED'",
    )
    assert len(failed) == 1


def test_a_registered_model_of_other_data_is_refused(
    finished_search: FinishedSearch, champion: dict[str, Any]
) -> None:
    from tuner.errors import MimlTuneError
    from tuner.promote import promote

    client = _client(finished_search.uri)
    client.create_registered_model("foreign")
    client.create_model_version("foreign", source=str(finished_search.workdir), run_id=None)
    before = _versions(finished_search.uri)
    with pytest.raises(MimlTuneError, match="which miml-tune did not register"):
        promote(finished_search.name, tracking_uri=finished_search.uri, registered_name="foreign")
    assert _versions(finished_search.uri) == before


def test_predict_reads_unlabelled_bags_in_the_models_input_form(
    finished_search: FinishedSearch, champion: dict[str, Any], tmp_path: Path
) -> None:
    from tuner.data import load_dataset
    from tuner.serving import bags_to_frame, predict

    birds = load_dataset("birds")
    path = tmp_path / "new_bags.csv"
    bags_to_frame(birds.bags[:5], birds.bag_ids[:5]).to_csv(path, index=False)
    result = predict(
        "models:/champ-a@champion", str(path), tracking_uri=finished_search.uri, top_k=3
    )
    assert result["bags"] == 5 and "metrics" not in result
    assert [row["bag_id"] for row in result["rows"]] == list(birds.bag_ids[:5])
    assert all(len(row["labels"]) == 3 for row in result["rows"])


@pytest.mark.parametrize(
    ("mode_metric", "new", "old", "moves"),
    [
        ("average_precision", 0.70, 0.69, True),
        ("average_precision", 0.69, 0.69, True),
        ("average_precision", 0.68, 0.69, False),
        ("ranking_loss", 0.10, 0.13, True),
        ("ranking_loss", 0.20, 0.13, False),
    ],
)
def test_the_alias_decision_follows_the_metrics_direction(
    mode_metric: str, new: float, old: float, moves: bool
) -> None:
    from tuner.metrics import mode_of
    from tuner.promote import _alias_decision

    lineage = {"metric": mode_metric, "mode": mode_of(mode_metric)}
    current = {"version": 1, "holdout_fingerprint": "h", "holdout": {mode_metric: old}}
    moved, reason = _alias_decision(current, new, "h", lineage)
    assert moved is moves, reason
    # Another holdout, or none, is never compared.
    assert _alias_decision(current, new, "other", lineage)[0] is False
    assert _alias_decision(current, None, "", lineage)[0] is False
    assert _alias_decision(None, new, "h", lineage) == (True, "no version held the alias")


def test_two_promotions_at_once_end_where_their_messages_say(
    finished_search: FinishedSearch,
) -> None:
    """Both refit at once; the alias decision and move are one step under the store's lock, so
    the second to decide is judged against the first's version, and the alias ends where the
    messages, read in that order, say."""
    command = [
        sys.executable, "-m", "tuner.cli", "promote", "--name", finished_search.name,
        "--registered-name", "champ-race", "--tracking-uri", finished_search.uri, "--json",
    ]  # fmt: skip
    # One torch thread each: two processes of two threads on two cores spin in OpenMP's
    # barriers, and each refit took 20 to 80 s of CPU instead of a few.
    env = cli_env(finished_search.workdir, OMP_NUM_THREADS="1")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [
        subprocess.Popen(command, cwd=finished_search.workdir, env=env, **pipes)  # type: ignore[call-overload]
        for _ in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert sorted(r["version"] for r in results) == [1, 2]
    first = [r for r in results if r["reason"] == "no version held the alias"]
    assert len(first) == 1 and first[0]["alias_moved"], [r["reason"] for r in results]
    second = next(r for r in results if r is not first[0])
    assert f"of version {first[0]['version']}" in second["reason"], second["reason"]
    final = second if second["alias_moved"] else first[0]
    holder = _client(finished_search.uri).get_model_version_by_alias("champ-race", "champion")
    assert str(holder.version) == str(final["version"])
    assert second["champion_version"] == final["version"]


def test_active_query_ranks_a_pool_for_a_promoted_model(
    finished_search: FinishedSearch, champion: dict[str, Any]
) -> None:
    from tuner.data import load_dataset

    birds = load_dataset("birds")
    bags = list(birds.bags[:30])
    work = finished_search.workdir
    pool = _pool_arff(work / "pool.arff", bags, list(birds.label_names), "?")
    labelled = _pool_arff(work / "pool-labelled.arff", bags, list(birds.label_names), "1")
    model = "models:/champ-a@champion"
    common = ["active", "query", "--model", model, "--tracking-uri", finished_search.uri]
    out = work / "next.csv"
    kcenter = ["--batch", "5", "--strategy", "kcenter", "--seed", "1", "--json"]
    first = cli_here(work, *common, "--pool", str(pool), *kcenter, "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    chosen = [r["bag_id"] for r in json.loads(first.stdout)["rows"]]
    assert len(chosen) == len(set(chosen)) == 5 and set(chosen) <= {f"pool{i}" for i in range(30)}
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["bag_id"] for r in rows] == chosen and f"score.{birds.label_names[0]}" in rows[0]
    # Deterministic for a seed; a pool whose labels are given ranks the same (labels ignored).
    again = cli_here(work, *common, "--pool", str(labelled), *kcenter)
    assert [r["bag_id"] for r in json.loads(again.stdout)["rows"]] == chosen
    # Bad input: one line, exit 2, nothing written.
    narrow = _pool_arff(work / "narrow.arff", [b[:, :5] for b in bags], ["a"], "?")
    for args, message in (
        (["--pool", str(narrow), "--batch", "2"], "has 5 features per instance"),
        (["--pool", str(pool), "--batch", "31"], "larger than the pool (30"),
        (["--pool", str(pool), "--batch", "2", "--strategy", "best"], "unknown query strategy"),
    ):
        out.unlink(missing_ok=True)
        assert_one_line_error(cli_here(work, *common, *args, "--out", str(out)), message)
        assert not out.exists()
