"""A real ``mlflow server`` on 127.0.0.1 (one worker): a small search and a promotion run against
it over HTTP, the runs and the registered version read back through its REST API only, the model
loaded back by alias through the server, and the server stopped by its PID."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.searches import cli, launch_small
from tests.servers import get_json, mlflow_server, post_json

pytestmark = pytest.mark.slow


def _tags(entity: dict[str, Any]) -> dict[str, str]:
    tags = entity.get("tags") or entity.get("data", {}).get("tags", [])
    return {tag["key"]: tag["value"] for tag in tags}


def test_search_and_promotion_over_http(workdir: Path) -> None:
    server_folder, client_folder = workdir / "server", workdir / "client"
    server_folder.mkdir()
    client_folder.mkdir()
    with mlflow_server(server_folder) as server:
        summary = launch_small(client_folder, server.url, name="birds-http")
        result = cli(
            client_folder,
            "promote", "--name", "birds-http", "--tracking-uri", server.url, "--json",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        promoted = json.loads(result.stdout)
        api = f"{server.url}/api/2.0/mlflow"

        # The runs, as the server has them.
        experiment = get_json(f"{api}/experiments/get-by-name", experiment_name="birds-http")
        experiment_id = experiment["experiment"]["experiment_id"]
        assert experiment_id == summary["mlflow"]["experiment_id"]
        runs = post_json(
            f"{api}/runs/search", {"experiment_ids": [experiment_id], "max_results": 1000}
        )["runs"]
        by_role: dict[str, list[dict[str, Any]]] = {}
        for run in runs:
            by_role.setdefault(_tags(run).get("miml_tune.role", ""), []).append(run)
        assert [r["info"]["status"] for r in by_role["search"]] == ["FINISHED"]
        parent_id = by_role["search"][0]["info"]["run_id"]
        assert parent_id == summary["mlflow"]["parent_run_id"]
        trials = by_role["trial"]
        assert len(trials) == summary["trials"]["total"]
        statuses = {_tags(t)["miml_tune.status"] for t in trials}
        assert statuses <= {"completed", "pruned", "error"} and "completed" in statuses
        for trial in trials:
            assert trial["info"]["status"] in ("FINISHED", "FAILED")  # none left RUNNING
            assert _tags(trial)["mlflow.parentRunId"] == parent_id
        best = [t for t in trials if _tags(t)["miml_tune.trial_id"] == summary["best"]["trial_id"]]
        assert len(best) == 1 and _tags(best[0])["miml_tune.status"] == "completed"
        [promotion] = by_role["promotion"]
        assert promotion["info"]["status"] == "FINISHED"
        assert promotion["info"]["run_id"] == promoted["run_id"]
        assert _tags(promotion)["mlflow.parentRunId"] == parent_id

        # The registered version, its lineage and the alias.
        name, version = promoted["registered_model"], promoted["version"]
        assert (name, version, promoted["alias_moved"]) == ("birds-http", 1, True)
        found = get_json(f"{api}/model-versions/get", name=name, version=str(version))
        model_version = found["model_version"]
        assert model_version["status"] == "READY"
        assert model_version["run_id"] == promoted["run_id"]
        lineage = _tags(model_version)
        assert lineage["miml_tune.parent_run_id"] == parent_id
        assert lineage["miml_tune.trial_id"] == str(summary["best"]["trial_id"])
        assert lineage["miml_tune.dataset_fingerprint"] == summary["dataset_fingerprint"]
        assert json.loads(lineage["miml_tune.config"]) == summary["best"]["config"]
        metric = summary["metric"]
        assert float(lineage[f"miml_tune.holdout.{metric}"]) == pytest.approx(
            promoted["holdout"][metric]
        )
        alias = get_json(f"{api}/registered-models/alias", name=name, alias="champion")
        assert alias["model_version"]["version"] == str(version)

        # The model files went through the server's artifact proxy, and load back from it.
        download = get_json(
            f"{api}/model-versions/get-download-uri", name=name, version=str(version)
        )["artifact_uri"]
        assert download.startswith("mlflow-artifacts:/"), download
        listing = get_json(
            f"{server.url}/api/2.0/mlflow-artifacts/artifacts",
            path=download.removeprefix("mlflow-artifacts:").lstrip("/"),
        )
        assert "MLmodel" in {entry["path"] for entry in listing["files"]}
        predicted = cli(
            client_folder,
            "predict", "--model", f"models:/{name}@champion", "--data", "birds",
            "--top-k", "2", "--tracking-uri", server.url, "--json",
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        assert json.loads(predicted.stdout)["bags"] == 257

    # Everything lives on the server's side; the client wrote no store of its own.
    assert (server_folder / "mlflow.db").is_file()
    assert any((server_folder / "mlartifacts").rglob("MLmodel"))
    assert not list(client_folder.rglob("mlflow.db")) and not (client_folder / "mlruns").exists()
