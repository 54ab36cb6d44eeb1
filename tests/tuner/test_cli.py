"""The command line: bad input is one line and exit status 2 with nothing written; listings work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from tuner.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


ARFF_HEAD = """@relation t
@attribute id {b1,b2}
@attribute bag relational
  @attribute f0 numeric
  @attribute f1 numeric
@end bag
@attribute l0 {0,1}
@attribute l1 {0,1}
@data
"""


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "notes.arff").write_text("this is just text\nnot an ARFF file\n")
    (tmp / "nan.arff").write_text(ARFF_HEAD + 'b1,"1,2\\n3,?",1,0\nb2,"1,2",0,1\n')
    (tmp / "empty.arff").write_text(ARFF_HEAD + 'b1,"",1,0\nb2,"1,2",0,1\n')
    (tmp / "keep").mkdir(exist_ok=True)
    (tmp / "typo.yaml").write_text(
        "name: t\nmodel: gamil_c\ndataset: birds\nmetric: average_precision\n"
        "params: {lr: [0.001]}\nbudjet: {trials: 2}\n"
    )
    savemat(tmp / "nobags.mat", {"segments": np.zeros((2, 3)), "labels": np.ones((2, 2))})
    bags = np.empty((3, 1), dtype=object)
    bags[0, 0], bags[1, 0], bags[2, 0] = np.ones((3, 2)), np.zeros((2, 2)), np.ones((1, 2))
    savemat(tmp / "two.mat", {"bags": bags, "labels": np.array([[1, 2], [0, 1], [1, 0]])})
    (tmp / "toy.xml").write_text(
        '<labels xmlns="http://mulan.sourceforge.net/labels">'
        '<label name="l0"></label><label name="missing"></label></labels>'
    )
    mulan = "@relation t\n@attribute a numeric\n@attribute b numeric\n@attribute l0 {0,1}\n@data\n"
    (tmp / "toy-train.arff").write_text(mulan + "1,2,1\n3,4,0\n")
    (tmp / "sp.xml").write_text(
        '<labels xmlns="http://mulan.sourceforge.net/labels"><label name="l0"></label></labels>'
    )
    (tmp / "sp-train.arff").write_text(mulan + "{0 1,1 2,2 1}\n{0 3,7 4}\n")
    launch = ["launch", "--space", "birds"]
    sarb = ["launch", "--space", "birds", "--model", "sarb"]
    return {
        "mat without bags": ([*launch, "--data", "nobags.mat"], r"nobags.mat: found no bag cell"),
        "label value 2": ([*launch, "--data", "two.mat"], r"two.mat.*2"),
        "XML names a missing attribute": (
            ["launch", "--space", "yeast_sarb_p50", "--data", "toy-train.arff"],
            r"toy.xml: names label 'missing' that toy-train.arff does not declare",
        ),
        "sparse index out of range": (
            ["launch", "--space", "yeast_sarb_p50", "--data", "sp-train.arff"],
            r"sp-train.arff.*sparse index 7 is out of range",
        ),
        "known labels 0": ([*sarb, "--known-labels", "0"], r"known_labels must be a proportion"),
        "known labels 1.5": (
            [*sarb, "--known-labels", "1.5"],
            r"known_labels must be a proportion in \(0, 1\].*got 1.5",
        ),
        "unknown model": ([*launch, "--model", "resnet"], r"--model 'resnet' has no default space"),
        "missing file": ([*launch, "--data", "nowhere.arff"], r"nowhere.arff"),
        "not an ARFF": ([*launch, "--data", "notes.arff"], r"notes.arff"),
        "NaN feature": ([*launch, "--data", "nan.arff"], r"nan.arff.*b1"),
        "empty bag": ([*launch, "--data", "empty.arff"], r"empty.arff.*b1"),
        "unknown space": (
            ["launch", "--space", "bird"],
            r"unknown space 'bird' \(did you mean birds\?\); shipped spaces",
        ),
        "space typo": (["launch", "--space", "typo.yaml"], r"typo.yaml: unknown key 'budjet'"),
        "negative trials": ([*launch, "--trials", "-1"], r"--trials must be an integer in \[1, "),
        "negative gpus": ([*launch, "--gpus-per-trial", "-1"], r"--gpus-per-trial must be >= 0"),
        "negative retries": ([*launch, "--max-failures", "-1"], r"--max-failures .* in \[0, 100\)"),
        "bad sampler": ([*launch, "--sampler", "grid"], r"unknown sampler 'grid'"),
        "bad option": (
            [*launch, "--trails", "3"],
            r"No such option .--trails.\. \(Did you mean .*'--trials'",
        ),
        "bad int": ([*launch, "--trials", "many"], r"'many' is not a valid integer"),
        "unknown dataset": (["data", "info", "imagenet"], r"unknown dataset 'imagenet'"),
        "nan cpus": ([*launch, "--cpus-per-trial", "nan"], r"must be finite numbers"),
        "huge seed": ([*launch, "--seed", str(2**40)], r"--seed must be an integer in \[0, "),
        "file store": (
            [*launch, "--tracking-uri", "file:///tmp/mlruns"],
            r"MLflow 3 refuses the file store",
        ),
        "store is a folder": ([*launch, "--tracking-uri", str(tmp)], r"is a folder; give a sqlite"),
        "storage is a file": ([*launch, "--storage", "notes.arff"], r"--storage .* is a file"),
        "foreign folder": (
            [*launch, "--storage", str(tmp), "--name", "keep", "--overwrite"],
            r"keep exists and is not a miml-tune search folder",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "mat without bags",
        "label value 2",
        "XML names a missing attribute",
        "sparse index out of range",
        "known labels 0",
        "known labels 1.5",
        "unknown model",
        "missing file",
        "not an ARFF",
        "NaN feature",
        "empty bag",
        "unknown space",
        "space typo",
        "negative trials",
        "negative gpus",
        "bad sampler",
        "bad option",
        "bad int",
        "unknown dataset",
        "nan cpus",
        "huge seed",
        "file store",
        "store is a folder",
        "storage is a file",
        "foreign folder",
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    argv, pattern = _bad_inputs(in_tmp)[case]
    before = set(in_tmp.iterdir())
    code, out, err = _run(argv, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err
    assert set(in_tmp.iterdir()) == before, "bad input must not create files (no mlflow.db)"


def test_spaces_lists_the_shipped_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["spaces"], capsys)
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split()[:5] == ["space", "model", "dataset", "params", "grid"]
    birds = next(r for r in rows if r.startswith("birds "))
    assert birds.split()[1:4] == ["gamil_c", "birds", "12"]  # 12 searched parameters
    code, out, _ = _run(["spaces", "show", "birds"], capsys)
    assert code == 0 and "metric: average_precision" in out


def test_data_info_describes_birds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["data", "info", "birds", "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert (info["n_bags"], info["n_instances"], info["n_features"], info["n_labels"]) == (
        257,
        2062,
        38,
        19,
    )
    code, text, _ = _run(["data", "info", "birds"], capsys)
    assert code == 0 and "257" in text and "BRCR" in text


def test_best_of_an_unknown_search(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{in_tmp / 'store.db'}"
    code, _, err = _run(["best", "--name", "nothing", "--tracking-uri", uri], capsys)
    assert code == 2
    assert "no MLflow store at" in err and not (in_tmp / "store.db").exists()
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).create_experiment("other")
    code, _, err = _run(["best", "--name", "nothing", "--tracking-uri", uri], capsys)
    assert code == 2
    assert "no search named 'nothing'" in err and "searches there: other" in err


def test_unreachable_tracking_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        ["launch", "--space", "birds", "--tracking-uri", "http://127.0.0.1:9", "--trials", "1"],
        capsys,
    )
    assert code == 2
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and "version" in out
    code, out, _ = _run(["launch", "--help"], capsys)
    assert code == 0 and "--gpus-per-trial" in out
    # Every search setting the space file sets says so (issue 13): where its default comes from.
    flat = " ".join(out.split())
    for key in ("budget.trials", "budget.max_epochs", "cv.folds", "cv.repeats", "seed]",
                "sampler]", "scheduler.name", "scheduler.fidelity", "scheduler.racing",
                "budget.time"):  # fmt: skip
        assert f"[the space's {key}" in flat, key
    assert "takes the space file's value" in flat


def test_relative_sqlite_uri_is_pinned_to_the_working_folder(in_tmp: Path) -> None:
    from tuner.tracking import resolve_tracking_uri

    assert resolve_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{in_tmp / 'mlflow.db'}"
    assert resolve_tracking_uri("runs.db") == f"sqlite:///{in_tmp / 'runs.db'}"
    assert resolve_tracking_uri(None) == f"sqlite:///{in_tmp / 'mlflow.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


@pytest.mark.parametrize("quiet", [False, True])
def test_on_a_terminal_launch_says_at_once_what_it_starts_and_an_error_stays_one_line(
    in_tmp: Path, quiet: bool
) -> None:
    """Under a pseudo-terminal: the first bytes name what is starting, written in place; a bad
    --data then replaces that line with the one error line (issue 13). With --quiet only the
    error line is written."""
    import os
    import pty
    import subprocess
    import sys

    from tests.searches import cli_env, read_terminal

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "launch", "--space", "birds", "--data", "nope.arff",
         *(["--quiet"] if quiet else [])],
        cwd=in_tmp, env=cli_env(in_tmp), stdin=follower, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    try:
        out = read_terminal(leader, proc)
    finally:
        proc.wait(timeout=120)
        os.close(leader)
    assert proc.returncode == 2, out
    if quiet:
        shown = out.replace("\r\x1b[K", "").strip().splitlines()  # nothing but the error
        assert len(shown) == 1 and shown[0].startswith("error: ") and "nope.arff" in shown[0], out
        return
    assert out.startswith("\r\x1b[Kmiml-tune launch: reading space birds"), out[:200]
    visible = out.split("\r\x1b[K")[-1].strip().splitlines()
    assert len(visible) == 1 and visible[0].startswith("error: ") and "nope.arff" in visible[0]
