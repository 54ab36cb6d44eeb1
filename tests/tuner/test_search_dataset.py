"""Which data a search ran on, in words and in MLflow: the summary names the data file (and the
space's dataset when the file is other data), and the parent and child runs log the data as an
MLflow dataset input whose digest is its fingerprint. A real sqlite MLflow store, no Ray."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from tests.searches import SMALL_SPACE
from tuner.data import MIMLDataset
from tuner.output import format_summary
from tuner.search.results import data_file, summarise_search
from tuner.search.runs import log_parent_start, mlflow_dataset
from tuner.search.trial_runs import TrialRuns
from tuner.spec import SearchSpec, parse_space


def make_spec(dataset: str = "birds") -> SearchSpec:
    return parse_space(yaml.safe_dump({**SMALL_SPACE, "dataset": dataset}))


def make_data(source: str, name: str = "birds", n_bags: int = 12) -> MIMLDataset:
    rng = np.random.default_rng(0)
    return MIMLDataset(
        name=name,
        bags=tuple(rng.normal(size=(2 + i % 3, 4)).astype(np.float32) for i in range(n_bags)),
        labels=np.asarray([[i % 2, 1 - i % 2, i % 3 == 0] for i in range(n_bags)], np.uint8),
        bag_ids=tuple(f"b{i}" for i in range(n_bags)),
        label_names=("a", "b", "c"),
        feature_names=("f0", "f1", "f2", "f3"),
        source=source,
    )


def summary_of(spec: SearchSpec, full: MIMLDataset) -> dict:
    row = {
        "trial_id": "t1",
        "order": 0,
        "status": "completed",
        "epochs": 6,
        "protocol": "full",
        "fold_epochs": 18,
        "folds": {},
        "config": {"lr": 0.003},
        "metrics": {"average_precision": 0.7, "average_precision_std": 0.01},
        "error": "",
    }
    dev = full.subset(list(range(8)))
    hold = full.subset(list(range(8, full.n_bags)))
    return summarise_search(spec, "birds-tiny", full, dev, hold, [row], {}, "sqlite://", "1", "p")


def test_summary_names_other_data_and_the_space_dataset() -> None:
    full = make_data("/data/other.arff")
    summary = summary_of(make_spec(), full)
    assert summary["data"] == {
        "name": "other.arff",
        "path": "/data/other.arff",
        "space_dataset": "birds",
        "matches_space": False,
    }
    first = format_summary(summary).splitlines()[0]
    assert first.startswith(
        "search 'birds-tiny': gamil_c on other.arff (the space's dataset: birds) (8 development"
    ), first


@pytest.mark.parametrize(
    ("dataset", "source"),
    [
        ("birds", "/site-packages/miml/datasets/miml_birds.arff"),  # the bundled copy
        ("birds", "/shared/data/miml/birds.arff"),
        ("mulan_scene", "/shared/data/mulan/scene-train.arff"),  # the registered file name
        ("/spaces/data/my-bags.mat", "/spaces/data/my-bags.mat"),  # a space naming a file
    ],
)
def test_the_space_dataset_is_not_repeated_for_its_own_file(dataset: str, source: str) -> None:
    data = data_file(make_spec(dataset), make_data(source))
    assert data["matches_space"] and data["name"] == Path(source).name
    line = format_summary(summary_of(make_spec(dataset), make_data(source))).splitlines()[0]
    assert f"gamil_c on {Path(source).name} (8 development bags" in line, line


def test_an_older_summary_without_data_still_formats() -> None:
    summary = summary_of(make_spec(), make_data("/data/other.arff"))
    del summary["data"]
    assert "gamil_c on birds (8 development" in format_summary(summary)


@pytest.mark.slow
def test_parent_and_child_runs_log_the_data_as_a_dataset_input(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("names", artifact_location=str(tmp_path / "art"))
    parent_id = client.create_run(experiment_id).info.run_id
    spec, full = make_spec(), make_data(str(tmp_path / "other.arff"))
    log_parent_start(client, parent_id, spec, full, full.subset(range(8)), None)
    callback = TrialRuns(uri, experiment_id, parent_id, dataset=mlflow_dataset(spec, full))
    callback.on_trial_start(0, [], SimpleNamespace(trial_id="t1", config={"lr": 0.003}))
    child_id = callback.runs["t1"]

    for run_id in (parent_id, child_id):
        (logged,) = client.get_run(run_id).inputs.dataset_inputs
        assert logged.dataset.digest == full.fingerprint()
        assert logged.dataset.name == "other.arff"  # not the space's "birds"
        assert json.loads(logged.dataset.source) == {"uri": full.source}
        assert json.loads(logged.dataset.profile) == {
            "bags": 12,
            "instances": full.n_instances,
            "features": 4,
            "labels": 3,
        }
        assert {t.key: t.value for t in logged.tags} == {"mlflow.data.context": "training"}
    # The callback travels to Ray and back: what it carries must pickle.
    import pickle

    assert pickle.loads(pickle.dumps(callback)).dataset == mlflow_dataset(spec, full)


def test_the_summary_warns_when_a_peer_is_at_least_as_good_and_fits_100_columns() -> None:
    summary = summary_of(make_spec(), make_data("/data/other.arff"))
    ours = summary["best"]["metrics"]
    ours["one_error"] = {"mean": 0.4, "std": 0.02}  # a headline metric
    ours["micro_f1"] = {"mean": 0.4, "std": 0.02}  # one of the others
    better = {k: {"mean": v["mean"] + 0.01, "std": v["std"]} for k, v in ours.items()}
    worse = {k: {"mean": v["mean"] - 0.05, "std": v["std"]} for k, v in ours.items()}
    summary["peers"] = {
        "bag_mean_mlp": {"metrics": better},
        "bag_mean_linear": {"metrics": worse},
        "miml_knn": {"metrics": worse},
        "mimlsvm": {"metrics": worse},
    }
    summary["comparisons"] = {
        "bag_mean_mlp": {"verdict": "ties with", "mean_difference": -0.01, "p_value": 0.4,
                         "folds": 3},
        "bag_mean_linear": {"verdict": "beats", "mean_difference": 0.05, "p_value": 0.01,
                            "folds": 3},
    }  # fmt: skip
    text = format_summary(summary)
    lines = text.splitlines()
    warned = [line for line in lines if line.startswith("  WARNING: best ties with bag_mean_mlp")]
    assert len(warned) == 1
    assert "  best beats bag_mean_linear (mean difference +0.0500" in text
    assert "  best against miml_knn:" in text  # no per-fold values: no test, no verdict
    top = lines.index(next(line for line in lines if "mean±std" in line))
    table = lines[top : lines.index(next(line for line in lines if "* the objective" in line))]
    assert all(len(line) <= 100 for line in table), table
    assert "micro_f1" not in text and "micro_f1" in format_summary(summary, all_metrics=True)
