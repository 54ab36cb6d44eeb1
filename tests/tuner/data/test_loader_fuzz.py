"""A Hypothesis fuzz of every data loader (issue 12): mutated valid files (bytes flipped, cut,
repeated or inserted) and random bytes, for MIML ARFF, Mulan ARFF and MATLAB .mat files, through
``load_dataset`` as ``--data`` reaches it. Each input loads, or raises the project's own error in
one line of at most 1,000 characters; no other exception, and none takes over the deadline."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tuner.data.test_arff import write_miml_arff
from tests.tuner.data.test_matlab import lamda
from tests.tuner.data.test_mulan import write_mulan
from tuner.data import load_dataset
from tuner.errors import MimlTuneError

_DIR = tempfile.TemporaryDirectory(prefix="miml-tune-loader-fuzz-")
_ROOT = Path(_DIR.name)


def _valid(kind: str) -> bytes:
    folder = _ROOT / f"valid-{kind}"
    folder.mkdir(exist_ok=True)
    if kind == "miml":
        bags = [[[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]], [[1.0, 2.0, 3.0]], [[0.0, 0.5, 9.0]]]
        path = write_miml_arff(folder / "toy.arff", bags, [[1, 0], [0, 1], [1, 1]])
    elif kind == "mulan":
        path = write_mulan(folder / "toy.arff")
    else:
        path = lamda(folder)
    return path.read_bytes()


VALID = {kind: _valid(kind) for kind in ("miml", "mulan", "mat")}
SUFFIX = {"miml": ".arff", "mulan": ".arff", "mat": ".mat"}

# Per loader and run: 750 mutated files and 250 random byte strings, the 1,000 inputs issue 12
# asks for (a .mat file is read in a forked child, since scipy's reader can crash on a damaged
# file: about 20 ms each). Every run draws new cases; MIML_TUNE_FUZZ_EXAMPLES=5000 (mutated files)
# fuzzes longer.
MUTATED = int(os.environ.get("MIML_TUNE_FUZZ_EXAMPLES", "750"))
EXAMPLES = {"miml": MUTATED, "mulan": MUTATED, "mat": MUTATED}
RANDOM = max(1, MUTATED // 3)

_FUZZ = settings(
    deadline=10_000,  # ms per example; an ARFF loads in ms, a crashing .mat child takes seconds
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


INSERTS = [b",", b"'", b"\\", b"{", b"}", b"\n", b"@data\n", b"nan", b"1e999", b"?", b"\x00"]


@st.composite
def _mutated(draw: st.DrawFn, kind: str) -> bytes:
    data = bytearray(VALID[kind])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "truncate"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at : at + draw(st.integers(1, 40))]
        elif action == "insert":
            data[at:at] = draw(st.sampled_from(INSERTS))
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
        else:
            del data[at:]
    return bytes(data)


def _loads_or_one_line(kind: str, data: bytes) -> None:
    folder = _ROOT / f"case-{kind}"
    folder.mkdir(exist_ok=True)
    if kind == "mulan":  # the label XML stays beside the file, as a user's would
        (folder / "toy.xml").write_bytes((_ROOT / "valid-mulan" / "toy.xml").read_bytes())
    path = folder / f"toy{SUFFIX[kind]}"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_dataset(str(path), data=str(path))
    except MimlTuneError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message[:2000]
        assert 0 < len(message) <= 1000, message[:2000]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_valid_files_load(kind: str) -> None:
    path = _ROOT / f"valid-{kind}" / f"toy{SUFFIX[kind]}"
    assert load_dataset(str(path), data=str(path)).n_bags == 3


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", sorted(VALID))
def test_fuzz_mutated_files(kind: str) -> None:
    @settings(_FUZZ, max_examples=EXAMPLES[kind])
    @given(data=_mutated(kind))
    def case(data: bytes) -> None:
        _loads_or_one_line(kind, data)

    case()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", sorted(VALID))
def test_fuzz_random_bytes(kind: str) -> None:
    @settings(_FUZZ, max_examples=RANDOM)
    @given(
        data=st.one_of(
            st.binary(max_size=300), st.binary(max_size=40).map(VALID[kind][:60].__add__)
        )
    )
    def case(data: bytes) -> None:
        _loads_or_one_line(kind, data)

    case()
