"""Hostile and careless space files: every one is read or refused in one short line (issue 12).

Non-UTF-8 bytes, alias bombs, duplicate keys, YAML 1.2 floats, over-long search names, and a
Hypothesis fuzz of the space parser over random YAML, mutated shipped spaces and random bytes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution

from tests.searches import assert_one_line_error, run_main
from tuner.errors import MimlTuneError, short
from tuner.search.options import MAX_NAME_LENGTH, LaunchOptions, valid_name
from tuner.spec import load_space, parse_space
from tuner.spec.loader import MAX_NODES, dump_yaml, load_yaml

SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
SHIPPED = {p.name: p.read_text(encoding="utf-8") for p in sorted(SPACES.glob("*.yaml"))}
SHIPPED |= {f"models/{p.name}": p.read_text(encoding="utf-8") for p in SPACES.glob("models/*")}

BASE = """\
name: t
model: gamil_c
dataset: birds
metric: average_precision
params:
  hidden: [64, 128]
"""


def _one_short_line(exc: MimlTuneError, *fragments: str) -> str:
    text = str(exc)
    assert len(text.splitlines()) == 1 and len(text) < 1000, text[:2000]
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def _bomb(levels: int) -> str:
    """A "billion laughs" value in one flow expression: a list of nine strings, then each level
    a list of the level below and eight aliases of it, so 9**levels strings in all."""
    text = "&b0 [" + ", ".join(['"lol"'] * 9) + "]"
    for i in range(1, levels):
        text = f"&b{i} [{text}, {', '.join([f'*b{i - 1}'] * 8)}]"
    return text


# 1. Not UTF-8


def test_a_space_file_that_is_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(MimlTuneError) as caught:
        load_space(str(bad))
    _one_short_line(caught.value, "bad.yaml", "not UTF-8", "0xff", "offset 0")

    monkeypatch.chdir(tmp_path)
    result = run_main(capsys, "launch", "--space", str(bad))
    assert_one_line_error(result, "bad.yaml", "not UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # nothing written


# 2. Alias bombs and long values


def test_short_never_builds_the_full_repr_of_a_huge_value() -> None:
    bomb: object = ["lol"] * 9
    for _ in range(30):  # 9**31 strings, if anything walked it all
        bomb = [bomb] * 9
    started = time.perf_counter()
    text = short(bomb, limit=80)
    assert time.perf_counter() - started < 1
    assert text.startswith("[[[[") and text.endswith("...") and len(text) <= 83
    looped: list[object] = [1]
    looped.append(looped)
    assert short(looped) == "[1, [...]]"
    assert short("x" * 10**7, limit=20) == "'" + "x" * 19 + "..."
    assert short(10**5000).startswith("<an integer of about")
    assert short({"a": (1,), "b": "x\ny"}) == "{'a': (1,), 'b': 'x\\ny'}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["whole space", "choices", "description"])
@pytest.mark.parametrize("levels", [6, 9])
def test_an_alias_bomb_is_refused_quickly_in_one_short_line(where: str, levels: int) -> None:
    text = {
        "whole space": _bomb(levels),
        "choices": BASE + f"  lr: {_bomb(levels)}\n",
        "description": BASE + f"description: {_bomb(levels)}\n",
    }[where]
    started = time.perf_counter()
    with pytest.raises(MimlTuneError) as caught:
        parse_space(text, source="bomb.yaml")
    assert time.perf_counter() - started < 5
    _one_short_line(caught.value, "bomb.yaml", f"over {MAX_NODES:,} YAML nodes", "aliases")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("description: [" + ", ".join(["'" + "x" * 50 + "'"] * 2000) + "]", "description must"),
        ("  lr: [" + ", ".join(["[1, 2, 3]"] * 2000) + "]", "choices must be scalars"),
        ("seed: " + "9" * 4000, "seed must be an integer in"),
        ("sampler: " + "s" * 100_000, "unknown sampler"),
        ("cv: [" + ", ".join(["1"] * 5000) + "]", "cv must be a mapping"),
        ("  '" + "k" * 900 + "': 1", "unknown key params."),
    ],
)
def test_a_long_value_is_quoted_shortened(line: str, fragment: str) -> None:
    text = BASE.replace("params:\n", "params:\n" + line + "\n") if line[0] == " " else BASE + line
    with pytest.raises(MimlTuneError) as caught:
        parse_space(text, source="long.yaml")
    _one_short_line(caught.value, "long.yaml", fragment)


def test_a_space_that_contains_itself_is_refused() -> None:
    with pytest.raises(MimlTuneError) as caught:
        parse_space(BASE + "description: &d [1, *d]\n", source="loop.yaml")
    _one_short_line(caught.value, "loop.yaml", "line 7", "contains itself")


# 3. Duplicate keys


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        (BASE + "model: bag_mean_linear\n", "'model'", "lines 2 and 7"),
        (BASE + "  hidden: 256\n", "'hidden'", "lines 6 and 7"),
        (BASE + "cv: {folds: 3, folds: 5}\n", "'folds'", "lines 7 and 7"),
    ],
)
def test_a_duplicate_key_is_refused_naming_both_lines(text: str, key: str, lines: str) -> None:
    with pytest.raises(MimlTuneError) as caught:
        parse_space(text, source="dup.yaml")
    _one_short_line(caught.value, "dup.yaml", f"key {key} appears twice", lines)


def test_a_merge_key_overridden_is_not_a_duplicate() -> None:
    value = load_yaml("base: &b {x: 1, y: 2}\nmine: {<<: *b, x: 3}\n", "merge.yaml")
    assert value["mine"] == {"x": 3, "y": 2}


# 4. YAML 1.2 floats


def test_yaml_12_floats_are_numbers() -> None:
    text = BASE.replace("name: t", "name: t\nholdout: 2e-1\nscheduler: {reduction_factor: 3E0}")
    text += "  lr: 1e-3\n  weight_decay: {loguniform: [1e-5, 1E-2]}\n  tau: [.5e0, 1.e0, 2E+0]\n"
    spec = parse_space(text, source="floats.yaml")
    assert spec.fixed["lr"] == 1e-3
    assert spec.params["weight_decay"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert spec.params["tau"] == CategoricalDistribution([0.5, 1.0, 2.0])
    assert spec.holdout == 0.2 and spec.reduction_factor == 3.0
    assert load_yaml("a: '1e-3'\nb: 1e3x\nc: 10\nd: 2001-12-14\n", "s") == {
        "a": "1e-3",
        "b": "1e3x",
        "c": 10,
        "d": yaml.safe_load("2001-12-14"),
    }
    # Written back, a string that looks like such a float stays a string.
    assert load_yaml(dump_yaml({"a": "1e-3", "b": 1e-3, "c": ".5E3"}), "s") == {
        "a": "1e-3",
        "b": 1e-3,
        "c": ".5E3",
    }


def test_yaml_12_floats_survive_a_models_default_space(tmp_path: Path) -> None:
    path = tmp_path / "floats.yaml"
    path.write_text(BASE.replace("name: t", "name: t\nholdout: 2e-1\ndescription: '1e3'"))
    spec = load_space(str(path), model="bag_mean_linear")
    assert spec.holdout == 0.2 and spec.model == "bag_mean_linear"


# 5. Search names


@pytest.mark.parametrize("name", ["x" * 501, "é" * 60, "a/b", "-lead", "", "a b", "x" * 101])
def test_a_bad_search_name_is_refused_naming_the_rule(name: str) -> None:
    assert not valid_name(name)
    with pytest.raises(MimlTuneError) as caught:
        LaunchOptions(name=name).validate()
    text = _one_short_line(caught.value, "--name", f"1 to {MAX_NAME_LENGTH} ASCII letters")
    assert len(text) < 300


def test_names_up_to_the_limit_pass() -> None:
    assert valid_name("x" * MAX_NAME_LENGTH) and valid_name("birds-2.small_v1")


def test_a_long_name_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = tmp_path / "results"
    args = ("--tracking-uri", uri, "--storage", str(storage))
    result = run_main(capsys, "launch", "--space", "birds", "--name", "n" * 500, *args)
    assert_one_line_error(result, "--name 'nnnn", "(500 characters)", "1 to 100 ASCII")
    assert len(result.stderr) < 300

    # A space's own name is the search's name when --name is not given.
    space = tmp_path / "long.yaml"
    space.write_text(BASE.replace("name: t", "name: " + "s" * 500))
    result = run_main(capsys, "launch", "--space", str(space), *args)
    assert_one_line_error(result, "search name 'ssss", "(500 characters)", "set --name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.yaml"]  # nothing written


# The fuzz: every input parses or fails in one short line of the project's own error.


def _parses_or_one_line(text: str) -> None:
    try:
        parse_space(text, source="fuzz.yaml")
    except MimlTuneError as exc:
        _one_short_line(exc)


_FUZZ = settings(
    deadline=2000,  # ms per example; a normal parse takes about 10 ms
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e-3", "tpe", "asha", "max", "birds", "gamil_c", "repeats", "30m", ""]),
    st.text(max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["uniform", "loguniform", "int", "choice"]),
                st.text(min_size=1, max_size=6),
            ),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=12,
)
_TOP = ["name", "description", "model", "dataset", "metric", "mode", "cv", "holdout", "seed"]
_TOP += ["budget", "scheduler", "sampler", "known_labels", "peers", "params", "holdout_seed"]
_PARAMS = ["lr", "hidden", "heads", "layers", "tau", "weight_decay", "epochs", "pooling", "k"]


@st.composite
def _random_spaces(draw: st.DrawFn) -> str:
    """A YAML mapping of (mostly) the right keys with random values, sometimes the right ones."""
    raw = yaml.safe_load(BASE) if draw(st.integers(0, 4)) else {}
    for key in draw(st.lists(st.sampled_from(_TOP), max_size=6)):
        raw[key] = draw(_values)
    if draw(st.booleans()):
        raw["params"] = draw(st.dictionaries(st.sampled_from(_PARAMS), _values, max_size=4))
    style = draw(st.sampled_from([None, True, False]))
    return yaml.safe_dump(raw, default_flow_style=style, allow_unicode=draw(st.booleans()))


_TOKENS = ["*a", "&a", "<<: *a", "1e-3", ".nan", "!!float x", "!!binary x", "? [a]", "{", "]"]
_TOKENS += ["'", '"', "\t", "- ", ": ", "#", "%YAML 1.1", "---", "...", "\x00", "\ufeff", "~"]


@st.composite
def _mutated_spaces(draw: st.DrawFn) -> str:
    """A shipped space with a few lines deleted, repeated, swapped or spliced with YAML tokens."""
    lines = SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))].splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "repeat", "swap", "splice", "cut", "indent"]))
        if kind == "delete" and len(lines) > 1:
            del lines[i]
        elif kind == "repeat":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "splice":
            at = draw(st.integers(0, len(lines[i])))
            token = draw(st.one_of(st.sampled_from(_TOKENS), st.text(max_size=5)))
            lines[i] = lines[i][:at] + token + lines[i][at:]
        elif kind == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            lines[i] = " " * draw(st.integers(0, 4)) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    """The first parse imports the models (seconds): not an example's time."""
    parse_space(SHIPPED["birds.yaml"], source="birds.yaml")


@pytest.mark.timeout(300)
@settings(_FUZZ, max_examples=500)
@given(text=_mutated_spaces())
def test_fuzz_mutated_shipped_spaces(text: str) -> None:
    _parses_or_one_line(text)


@pytest.mark.timeout(300)
@settings(_FUZZ, max_examples=300)
@given(text=_random_spaces())
def test_fuzz_random_yaml_spaces(text: str) -> None:
    _parses_or_one_line(text)


@pytest.mark.timeout(300)
@settings(_FUZZ, max_examples=300)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("ab:- \n\t[]{},&*!'\"#|>?%@`1e.\\\x85")), max_size=60
    )
)
def test_fuzz_random_yaml_like_text(text: str) -> None:
    _parses_or_one_line(text)


_BYTES_DIR = tempfile.TemporaryDirectory(prefix="miml-tune-fuzz-")


@pytest.mark.timeout(300)
@settings(_FUZZ, max_examples=300)
@given(data=st.one_of(st.binary(max_size=200), st.binary(max_size=20).map(lambda b: b"name: " + b)))
def test_fuzz_random_bytes(data: bytes) -> None:
    path = Path(_BYTES_DIR.name) / "random.yaml"
    path.write_bytes(data)
    try:
        load_space(str(path))
    except MimlTuneError as exc:
        _one_short_line(exc)
    _parses_or_one_line(data.decode("latin-1"))
