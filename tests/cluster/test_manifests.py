"""Every file in ``cluster/`` parses and has the fields its kind needs; every ``miml-tune``
command in it is one the real command line accepts.

No network, no cluster: the launcher config is validated against the JSON schema shipped with
the installed Ray, the KubeRay manifests against the fields the operator needs to make a head,
a GPU worker group and a job, and command lines by click's own parser.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from tuner.cli import cli
from tuner.spec import space_names

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
YAML_FILES = sorted(
    p.relative_to(CLUSTER).as_posix() for p in [*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml")]
)
GPU = "nvidia.com/gpu"


def _load(relpath: str) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all((CLUSTER / relpath).read_text()) if d is not None]
    assert documents, f"{relpath}: no YAML document"
    for document in documents:
        assert isinstance(document, dict), f"{relpath}: a document is not a mapping"
    return documents


# ---------------------------------------------------------------- the real command line


def parse_miml_tune(argv: list[str]) -> click.Context:
    """Parse ``miml-tune ARGV`` with the real click commands, without running anything.

    Groups are walked by name; the command at the end parses its options strictly, so an
    unknown option, a missing required one or a bad value raises a click error. The command
    after ``submit ... --`` is parsed the same way.
    """
    command: click.Command = cli
    name, rest = "miml-tune", list(argv)
    parent: click.Context | None = None
    while isinstance(command, click.Group):
        if rest and rest[0].startswith("-"):
            # A group's own option (--version, --help): click acts on it and exits with 0.
            with pytest.raises(click.exceptions.Exit) as done:
                command.make_context(name, rest, parent=parent, resilient_parsing=False)
            assert done.value.exit_code == 0, f"miml-tune {shlex.join(argv)}"
            return click.Context(command, info_name=name, parent=parent)
        assert rest, f"miml-tune {shlex.join(argv)}: no subcommand"
        parent = click.Context(command, info_name=name, parent=parent)
        sub = command.get_command(parent, rest[0])
        assert sub is not None, f"miml-tune {shlex.join(argv)}: no command {rest[0]!r}"
        command, name, rest = sub, rest[0], rest[1:]
    leaf = command.make_context(name, rest, parent=parent, resilient_parsing=False)
    if command.name == "submit":
        inner = list(leaf.params["command"])
        assert inner[0] in {"launch", "resume"}, f"submit runs {inner}"
        # The job's driver runs on the cluster; without --address the search would start a
        # Ray of its own there instead of using the cluster's workers.
        assert parse_miml_tune(inner).params["address"] == "auto", f"submit runs {inner}"
    if command.name == "launch":
        space = leaf.params["space"]
        if space not in space_names() and not space.endswith((".yaml", ".yml")):
            pytest.fail(f"launch --space {space!r} is not a shipped space")
    return leaf


def miml_tune_argv(line: str) -> list[str]:
    """The arguments after ``miml-tune`` in a shell line."""
    words = shlex.split(line, comments=True)
    assert words[0] == "miml-tune", line
    return words[1:]


def test_parser_refuses_what_the_cli_refuses() -> None:
    """The checker itself: it must fail on an option or a space that does not exist."""
    parse_miml_tune(["launch", "--space", "birds", "--address", "auto"])
    parse_miml_tune(
        shlex.split("submit --address http://h:8265 -- launch --space scene --address=auto")
    )
    parse_miml_tune(["jobs", "logs", "raysubmit_1", "--address", "http://h:8265", "--follow"])
    with pytest.raises(click.NoSuchOption):
        parse_miml_tune(["launch", "--space", "birds", "--gpus", "1"])
    with pytest.raises(click.NoSuchOption):
        parse_miml_tune(["submit", "--address", "http://h:8265", "--", "launch", "--gpu", "1"])
    with pytest.raises(click.BadParameter):
        parse_miml_tune(["launch", "--space", "birds", "--gpus-per-trial", "a quarter"])
    with pytest.raises(click.MissingParameter):
        parse_miml_tune(["jobs", "list"])
    with pytest.raises(AssertionError, match="no command"):
        parse_miml_tune(["job", "list", "--address", "http://h:8265"])
    with pytest.raises(pytest.fail.Exception, match="not a shipped space"):
        parse_miml_tune(["launch", "--space", "brids"])


# ---------------------------------------------------------------- the cluster launcher


def _ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def check_launcher(relpath: str, config: dict[str, Any]) -> None:
    jsonschema.validate(config, _ray_schema())
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head in types, f"{relpath}: head_node_type {head!r} not in {sorted(types)}"
    gpu_types = [
        name
        for name, spec in types.items()
        if name != head and spec["resources"].get("GPU", 0) >= 1
    ]
    assert gpu_types, f"{relpath}: no worker node type declares GPU resources"
    for name in gpu_types:
        spec = types[name]
        low, high = spec.get("min_workers", 0), spec.get("max_workers", config["max_workers"])
        assert 0 <= low < high <= config["max_workers"], f"{relpath}: {name} does not autoscale"
    assert sum(t.get("min_workers", 0) for t in types.values()) <= config["max_workers"]

    setup = " ".join(config.get("setup_commands", []))
    assert re.search(r"pip install[^;&]*miml-tune", setup), f"{relpath}: miml-tune not installed"
    assert "download.pytorch.org/whl/cu" in setup, f"{relpath}: no CUDA build of torch"
    assert "MLFLOW_TRACKING_URI" in setup, f"{relpath}: no shared MLflow server"
    # What setup_commands install from must be copied to the node.
    assert "~/miml-tune" in config["file_mounts"], f"{relpath}: the checkout is not copied"

    head_start = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head_start and "--autoscaling-config" in head_start
    worker_start = " ".join(config["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:" in worker_start
    for line in config.get("setup_commands", []):
        if line.strip().startswith("miml-tune"):
            parse_miml_tune(miml_tune_argv(line))


# ---------------------------------------------------------------- KubeRay


def _containers(group: dict[str, Any], where: str) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = group["template"]["spec"]["containers"]
    assert containers, f"{where}: no container"
    for c in containers:
        assert c.get("image"), f"{where}: container {c.get('name')} has no image"
        resources = c.get("resources") or {}
        assert resources.get("limits") or resources.get("requests"), (
            f"{where}: container {c.get('name')} has no resources"
        )
    return containers


def _check_cluster_spec(where: str, spec: dict[str, Any]) -> None:
    assert spec.get("rayVersion"), f"{where}: no rayVersion"
    head = spec["headGroupSpec"]
    assert isinstance(head.get("rayStartParams"), dict), f"{where}: head has no rayStartParams"
    head_containers = _containers(head, f"{where}.headGroupSpec")
    ports = {p["containerPort"] for c in head_containers for p in c.get("ports", [])}
    assert 8265 in ports, f"{where}: the head exposes no dashboard port 8265"
    assert not any(GPU in (c["resources"].get("limits") or {}) for c in head_containers)

    groups = spec.get("workerGroupSpecs") or []
    gpu_groups = []
    for group in groups:
        name = f"{where}.workerGroupSpecs[{group.get('groupName')}]"
        assert group.get("groupName"), f"{name}: no groupName"
        assert isinstance(group.get("rayStartParams"), dict), f"{name}: no rayStartParams"
        low, replicas, high = group["minReplicas"], group["replicas"], group["maxReplicas"]
        assert 0 <= low <= replicas <= high, f"{name}: replicas {low} <= {replicas} <= {high}"
        for c in _containers(group, name):
            limit = (c["resources"].get("limits") or {}).get(GPU)
            if limit is not None:
                assert int(limit) >= 1, f"{name}: {GPU} limit {limit}"
                gpu_groups.append(group)
    assert gpu_groups, f"{where}: no worker group with an {GPU} limit"
    if spec.get("enableInTreeAutoscaling"):
        assert any(g["maxReplicas"] > g["minReplicas"] for g in gpu_groups), (
            f"{where}: autoscaling on, but no GPU group can grow"
        )
    for c in [*head_containers, *(c for g in groups for c in _containers(g, where))]:
        env = {e["name"] for e in c.get("env", [])}
        assert "MLFLOW_TRACKING_URI" in env, f"{where}: {c['name']} has no MLFLOW_TRACKING_URI"


def check_raycluster(relpath: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["metadata"]["name"], f"{relpath}: no metadata.name"
    _check_cluster_spec(f"{relpath}:spec", doc["spec"])
    assert doc["spec"].get("enableInTreeAutoscaling") is True, f"{relpath}: no autoscaling"
    # The README's port-forward names the head service KubeRay makes for this cluster.
    service = f"svc/{doc['metadata']['name']}-head-svc 8265:8265"
    assert service in (CLUSTER / "README.md").read_text(), f"README: no port-forward {service}"


def check_rayjob(relpath: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["metadata"]["name"], f"{relpath}: no metadata.name"
    spec = doc["spec"]
    entrypoint = spec.get("entrypoint")
    assert entrypoint, f"{relpath}: no entrypoint"
    leaf = parse_miml_tune(miml_tune_argv(entrypoint))
    assert leaf.command.name in {"launch", "resume"}, f"{relpath}: entrypoint runs {leaf}"
    # On a job's multi-node cluster the search must attach to it and keep its results shared.
    assert leaf.params["address"] == "auto", f"{relpath}: the search does not attach (--address)"
    storage = leaf.params["storage"] or ""
    assert re.match(r"^(s3|gs)://", storage), f"{relpath}: --storage {storage!r} is not shared"
    if leaf.command.name == "launch":
        assert leaf.params["gpus_per_trial"] > 0, f"{relpath}: trials ask for no GPU"
    assert spec.get("shutdownAfterJobFinishes") is True
    assert isinstance(spec.get("ttlSecondsAfterFinished"), int)
    _check_cluster_spec(f"{relpath}:spec.rayClusterSpec", spec["rayClusterSpec"])


KINDS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "RayCluster": check_raycluster,
    "RayJob": check_rayjob,
}


# ---------------------------------------------------------------- every file


def test_the_cluster_folder_has_the_three_configurations() -> None:
    assert {"aws-gpu.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml"} <= set(YAML_FILES)


@pytest.mark.parametrize("relpath", YAML_FILES)
def test_yaml_file(relpath: str) -> None:
    """Each YAML file is checked as what it is; one of no known kind fails until it has a check."""
    for doc in _load(relpath):
        if "provider" in doc and "available_node_types" in doc:
            check_launcher(relpath, doc)
        elif doc.get("kind") in KINDS:
            KINDS[doc["kind"]](relpath, doc)
        else:
            pytest.fail(
                f"{relpath}: no check for a document of kind {doc.get('kind')!r}; "
                f"add one to tests/cluster/test_manifests.py (known: launcher, {sorted(KINDS)})"
            )


def _ray_versions() -> dict[str, str]:
    versions = {}
    for relpath in YAML_FILES:
        for doc in _load(relpath):
            if "docker" in doc:
                images = [doc["docker"].get(k, "") for k in ("image", "head_image", "worker_image")]
                for image in filter(None, images):
                    versions[f"{relpath} {image}"] = image.split(":")[1].split("-")[0]
            spec = doc.get("spec", {})
            for where, cluster in (("spec", spec), ("rayClusterSpec", spec.get("rayClusterSpec"))):
                if isinstance(cluster, dict) and "rayVersion" in cluster:
                    versions[f"{relpath} {where}.rayVersion"] = str(cluster["rayVersion"])
    base = re.search(r"^FROM rayproject/ray:(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert base, "cluster/Dockerfile does not start from a rayproject/ray image"
    versions["Dockerfile FROM"] = base.group(1).split("-")[0]
    return versions


def test_one_ray_version_everywhere() -> None:
    """A job server, its workers and the image must run the same Ray."""
    versions = _ray_versions()
    assert len(versions) >= 4, versions
    assert len(set(versions.values())) == 1, versions


def test_dockerfile_installs_miml_tune_with_cuda_torch() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    runs = " ".join(re.findall(r"^RUN ((?:[^\n]*\\\n)*[^\n]*)", text, re.M))
    assert "download.pytorch.org/whl/cu" in text and "pip install --no-cache-dir torch" in runs
    assert re.search(r"pip install[^&]* \.", runs), "the checkout is not pip-installed"
    for folder in ("tuner", "models", "search_spaces"):
        assert re.search(rf"^COPY .*\b{folder}\b", text, re.M), f"{folder}/ is not copied"
    assert "miml-tune --version" in runs
    image = "registry.example.com/miml-tune:0.1.0"
    for relpath in ("kuberay/raycluster.yaml", "kuberay/rayjob.yaml"):
        assert image in (CLUSTER / relpath).read_text(), f"{relpath} does not run {image}"
    assert f"-t {image}" in (CLUSTER / "README.md").read_text()


def command_lines(text: str, *, comments_only: bool = False) -> list[str]:
    """Lines that run ``miml-tune``, in code or in comments, continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if comments_only and not line.startswith("#"):
            continue
        line = line.removeprefix("#").strip()
        if pending:
            line = pending + " " + line
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        pending = ""
        if line.startswith("miml-tune "):
            lines.append(line)
    return lines


def test_every_command_line_in_the_folder_parses() -> None:
    """Commands in the manifests' comments, the Dockerfile and the README (the manifests'
    values, such as the RayJob's entrypoint, are checked with their documents)."""
    seen: dict[str, set[str]] = {}
    for path in sorted(p for p in CLUSTER.rglob("*") if p.is_file()):
        is_yaml = path.suffix in {".yaml", ".yml"}
        for line in command_lines(path.read_text(), comments_only=is_yaml):
            argv = miml_tune_argv(line)
            parse_miml_tune(argv)
            seen.setdefault(path.relative_to(CLUSTER).as_posix(), set()).add(argv[0])
    assert {"submit", "jobs", "launch", "resume"} <= seen["README.md"], seen
    assert "submit" in seen["aws-gpu.yaml"], seen
    assert "resume" in seen["kuberay/rayjob.yaml"], seen
