"""Attaching to a cluster and choosing storage: bad addresses and unreachable clusters fail in one
line, node-local storage is refused on a multi-node cluster (the decision tested on injected node
lists and mount tables), and a single-node cluster takes a local folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.searches import assert_one_line_error, cli
from tests.servers import free_port
from tuner.errors import MimlTuneError
from tuner.search import (
    check_storage_for_cluster,
    mount_table,
    parse_address,
    storage_is_shared,
)

MOUNTS = [
    ("/", "overlay"),
    ("/home", "ext4"),
    ("/mnt/shared", "nfs4"),
    ("/mnt/shared/scratch", "tmpfs"),
    ("/lustre", "lustre"),
    ("/buckets/data", "fuse.s3fs"),
    ("/gcs", "fuse.gcsfuse"),
]


@pytest.mark.parametrize("address", ["auto", "head:6379", "10.0.0.1:6379", "[::1]:6379"])
def test_well_formed_addresses_are_accepted(address: str) -> None:
    assert parse_address(address) == address


@pytest.mark.parametrize(
    "address",
    [
        "", "head", "head:", ":6379", "head:port", "head:0", "head:70000", "http://h:1",
        "host:²", "host:٣٣", "::1", "fe80::1", "h:6379:7", "[h:1", "h]:1", "[zz::1]:6379",
    ],
)  # fmt: skip
def test_malformed_addresses_say_what_is_allowed(address: str) -> None:
    with pytest.raises(MimlTuneError, match=r"allowed: auto or HOST:PORT"):
        parse_address(address)


def test_ray_client_addresses_point_to_submit() -> None:
    with pytest.raises(MimlTuneError, match=r"Ray Client \(ray://\) is not supported.*submit"):
        parse_address("ray://10.0.0.1:10001")


@pytest.mark.parametrize(
    ("storage", "shared"),
    [
        ("s3://bucket/results", True),
        ("gs://bucket/results", True),
        ("/mnt/shared/results", True),
        ("/mnt/shared", True),
        ("/mnt/sharedish/results", False),  # a prefix of the name, not a parent folder
        ("/mnt/shared/scratch/run", False),  # the longest mount point decides
        ("/lustre/project/x", True),
        ("/buckets/data/x", True),
        ("/gcs/x", True),
        ("/home/me/results", False),
        ("/tmp/results", False),
        ("file:///mnt/shared/results", True),
        ("file:///home/me/results", False),
    ],
)
def test_shared_storage_is_a_uri_or_a_network_file_system(storage: str, shared: bool) -> None:
    assert storage_is_shared(storage, MOUNTS) is shared


def test_node_local_storage_is_refused_on_a_multi_node_cluster_only() -> None:
    one = [{"Alive": True, "NodeID": "a"}, {"Alive": False, "NodeID": "b"}]
    two = [{"Alive": True, "NodeID": "a"}, {"Alive": True, "NodeID": "b"}]
    check_storage_for_cluster("/home/me/results", one, MOUNTS)  # one alive node: fine
    check_storage_for_cluster("/mnt/shared/results", two, MOUNTS)
    check_storage_for_cluster("s3://bucket/results", two, MOUNTS)
    # One node that cannot hold a trial (a head with no CPUs for trials): trials run elsewhere.
    with pytest.raises(MimlTuneError, match="the trials will run on other nodes"):
        check_storage_for_cluster("/home/me/results", one, MOUNTS, trials_elsewhere=True)
    check_storage_for_cluster("s3://bucket/results", one, MOUNTS, trials_elsewhere=True)
    with pytest.raises(MimlTuneError) as err:
        check_storage_for_cluster("/home/me/results", two, MOUNTS)
    message = str(err.value)
    assert "2 nodes" in message and "NFS" in message and "s3://" in message and "gs://" in message


def test_the_mount_table_of_this_machine_is_read() -> None:
    mounts = mount_table()
    assert ("/", mounts[0][1]) in mounts or any(point == "/" for point, _ in mounts)
    assert mount_table("/nonexistent/mounts") == []


def test_malformed_address_through_the_cli(workdir: Path) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result = cli(workdir, "launch", "--space", "birds", "--tracking-uri", uri, "--address", "head")
    assert_one_line_error(result, "--address 'head'", "allowed: auto")
    assert not (workdir / "mlflow.db").exists() and not (workdir / "miml-tune-results").exists()


def test_unreachable_cluster_is_one_line_from_the_port_check(workdir: Path) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    port = free_port()
    result = cli(
        workdir, "launch", "--space", "birds", "--tracking-uri", uri,
        "--address", f"127.0.0.1:{port}",
    )  # fmt: skip
    # The refusal comes from the CLI's own TCP connection to the port, made before Ray is asked
    # (whose long retries end in "cannot attach to the Ray cluster"), and it names the fix.
    line = assert_one_line_error(
        result,
        f"cannot reach the Ray cluster at --address 127.0.0.1:{port} (Connection refused)",
        "`ray status`",
    )
    assert "cannot attach" not in line
    assert not (workdir / "miml-tune-results").exists()


def test_no_cluster_for_address_auto_is_one_line(workdir: Path) -> None:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    # The CLI's TMPDIR is the test's folder, where Ray looks for a running cluster: none.
    result = cli(workdir, "launch", "--space", "birds", "--tracking-uri", uri, "--address", "auto")
    assert_one_line_error(result, "--address auto found no running Ray cluster")


def test_negative_gpus_per_trial_is_one_line(workdir: Path) -> None:
    result = cli(workdir, "launch", "--space", "birds", "--gpus-per-trial", "-1")
    assert_one_line_error(result, "--gpus-per-trial must be >= 0", "got -1")


def test_an_embedded_ray_that_times_out_starting_is_tried_again_then_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ray gives its raylet a fixed 30 s and raises a bare Exception (seen with four launches
    starting at once on two cores): tried up to three times, then said in one line. Ray's own
    start is replaced here, since a real one cannot be made to time out on purpose."""
    import ray

    from tuner.search.cluster import _start_embedded

    calls: list[dict[str, object]] = []
    failing = Exception(
        "The current node timed out during startup. This could happen because some of the "
        "raylet failed to startup or the GCS has become overloaded."
    )

    def init(**kwargs: object) -> None:
        calls.append(kwargs)
        if len(calls) < 3:
            raise failing

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    _start_embedded({})
    assert len(calls) == 3 and calls[0]["_node_ip_address"] == "127.0.0.1"

    calls.clear()
    monkeypatch.setattr(ray, "init", lambda **kwargs: (calls.append(kwargs), _raise(failing)))
    with pytest.raises(MimlTuneError) as caught:
        _start_embedded({})
    message = str(caught.value)
    assert len(calls) == 3 and "\n" not in message
    assert message.startswith("the embedded Ray did not start: The current node timed out")
    assert "3 attempts" in message and "--address" in message

    other = RuntimeError("something else")
    monkeypatch.setattr(ray, "init", lambda **kwargs: _raise(other))
    with pytest.raises(RuntimeError, match="something else"):  # not a start-up time-out
        _start_embedded({})


def _raise(exc: BaseException) -> None:
    raise exc
