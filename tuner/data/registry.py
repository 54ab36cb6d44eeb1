"""Datasets by name: a dict of entries plus one resolver, and the loader behind ``--data``."""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuner.data.arff import read_miml_arff
from tuner.data.arff_header import _ATTRIBUTE
from tuner.data.dataset import DataWarning, MIMLDataset
from tuner.data.matlab import is_mat_file, read_miml_mat
from tuner.data.mulan import mulan_pair, read_mulan_arff
from tuner.errors import MimlTuneError

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "FORMATS",
    "DatasetEntry",
    "dataset_names",
    "detect_format",
    "load_dataset",
    "resolve_dataset",
]

Reader = Callable[..., MIMLDataset]

# Format key -> (reader, description). detect_format picks the key from a file's content.
FORMATS: dict[str, tuple[Reader, str]] = {
    "miml_arff": (read_miml_arff, "MIML ARFF (a relational bag attribute)"),
    "mulan_arff": (read_mulan_arff, "Mulan multi-label ARFF with its label XML"),
    "mat": (read_miml_mat, "MATLAB v5/v7 .mat in the LAMDA MIML layout"),
}
# Extension -> the format a file gets when its content names none (the reader then reports
# what is wrong with it), and the text of the "unsupported format" error.
_BY_EXTENSION = {".arff": "miml_arff", ".mat": "mat"}
_SUPPORTED = ".arff (MIML ARFF, or Mulan ARFF + label XML), .mat (MATLAB v5/v7, LAMDA layout)"

DATA_ENV = "MIML_TUNE_DATA"
"""Environment variable: a folder laid out like the shared data (``miml/NAME.arff``,
``mulan/NAME-train.arff``) where registered but unbundled datasets are looked up."""


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset.

    Args:
        name: canonical name, lower case.
        description: one line: what the data is and its size.
        filename: the file name users usually have it under, for error messages.
        shape: expected ``(n_bags, n_features, n_labels)``; a ``--data`` file that differs
            gets a :class:`DataWarning`.
        locate: returns the path of a bundled copy; ``None`` when the data is not bundled.
        relpath: where the file lies inside a :data:`DATA_ENV` folder, e.g.
            ``"mulan/yeast-train.arff"``; ``None`` when it is never looked up there.
        companions: files that must lie beside ``filename`` (a Mulan test file, the label
            XML), for error messages.
    """

    name: str
    description: str
    filename: str
    shape: tuple[int, int, int]
    locate: Callable[[], Path] | None = None
    relpath: str | None = None
    companions: tuple[str, ...] = ()


def _bundled_birds() -> Path:
    """The ``miml_birds.arff`` shipped inside the ``mimllearning`` distribution.

    The distribution's code is never imported (``import miml`` fails on current Pythons); its
    file list is read from the installed metadata instead.
    """
    hint = "pip install mimllearning, or pass --data PATH/TO/birds.arff"
    try:
        files = importlib.metadata.files("mimllearning")
    except importlib.metadata.PackageNotFoundError:
        raise MimlTuneError(
            f"dataset 'birds' is bundled with the mimllearning package, which is not "
            f"installed; {hint}"
        ) from None
    found = [Path(str(f.locate())) for f in files or () if f.name == "miml_birds.arff"]
    existing = [p for p in found if p.is_file()]
    if not existing:
        raise MimlTuneError(
            "dataset 'birds': the installed mimllearning package has no miml_birds.arff "
            f"(found {len(found)} listed, none on disk); reinstall it ({hint})"
        )
    return existing[0]


DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            name="birds",
            description=(
                "MLSP-2013 bird song, 257 bags (recordings) of 2-36 instances (segments), "
                "38 features, 19 labels (species); bundled with mimllearning"
            ),
            filename="birds.arff",
            shape=(257, 38, 19),
            locate=_bundled_birds,
            relpath="miml/birds.arff",
        ),
        DatasetEntry(
            name="scene",
            description=(
                "the MIML Scene set of Zhou & Zhang, 2000 bags x 9 instances, 15 features, 5 labels"
            ),
            filename="scene.arff",
            shape=(2000, 15, 5),
            relpath="miml/scene.arff",
        ),
        DatasetEntry(
            name="reuters",
            description=(
                "the MIML Reuters text set of Zhou & Zhang, 2000 bags of 2-26 instances, "
                "243 features, 7 labels"
            ),
            filename="reuters.arff",
            shape=(2000, 243, 7),
            relpath="miml/reuters.arff",
        ),
        DatasetEntry(
            name="yeast",
            description=(
                "Mulan yeast gene functions, 2417 examples (1500 train + 917 test, the test "
                "split is the holdout), 103 features, 14 labels; vector data"
            ),
            filename="yeast-train.arff",
            shape=(2417, 103, 14),
            relpath="mulan/yeast-train.arff",
            companions=("yeast-test.arff", "yeast.xml"),
        ),
        DatasetEntry(
            name="mulan_scene",
            description=(
                "Mulan scene images, 2407 examples (1211 train + 1196 test, the test split is "
                "the holdout), 294 features, 6 labels; vector data (the MIML Scene set is "
                "'scene')"
            ),
            filename="scene-train.arff",
            shape=(2407, 294, 6),
            relpath="mulan/scene-train.arff",
            companions=("scene-test.arff", "scene.xml"),
        ),
    )
}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def resolve_dataset(name: str) -> DatasetEntry:
    """The registry entry for ``name`` (case-insensitive, ``-`` and ``_`` alike).

    Raises:
        MimlTuneError: unknown name; the message lists the registered names.
    """
    key = _normalise(name)
    for entry in DATASETS.values():
        if _normalise(entry.name) == key:
            return entry
    raise MimlTuneError(
        f"unknown dataset {name!r}; registered datasets: {', '.join(dataset_names())}"
    )


def dataset_names() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(DATASETS)


def _is_registered(name: str) -> bool:
    return any(_normalise(e.name) == _normalise(name) for e in DATASETS.values())


def _arff_has_relational(path: Path) -> bool | None:
    """Whether an ARFF header declares a relational attribute; ``None``: not ARFF text."""
    seen_header = False
    try:
        with path.open("rb") as f:
            for raw in f:
                line = raw.decode("latin-1").strip()
                if not line or line.startswith("%"):
                    continue
                lowered = line.lower()
                if lowered.startswith("@data"):
                    return False if seen_header else None
                if lowered.startswith(("@relation", "@attribute", "@end")):
                    seen_header = True
                    m = _ATTRIBUTE.match(line)
                    if m is not None and m.group(2).strip().lower().startswith("relational"):
                        return True
                    continue
                return None
    except OSError:
        return None
    return False if seen_header else None


def detect_format(path: str | os.PathLike[str]) -> str | None:
    """The format of a data file, from its content: a key of :data:`FORMATS`.

    A MAT-file header means ``"mat"``; ARFF text means ``"miml_arff"`` when the header declares
    a relational (bag) attribute, else ``"mulan_arff"``. The stem of a Mulan train/test pair
    (``data/yeast`` for ``data/yeast-train.arff``) means ``"mulan_arff"``.

    Args:
        path: the file.

    Returns:
        The format key, or ``None`` when the content is none of these (or the file is absent).
    """
    path = Path(path)
    if not path.is_file():
        return "mulan_arff" if mulan_pair(path)[1] is not None else None
    try:
        with path.open("rb") as f:
            head = f.read(520)
    except OSError:
        return None
    if is_mat_file(head):
        return "mat"
    relational = _arff_has_relational(path)
    if relational is None:
        return None
    return "miml_arff" if relational else "mulan_arff"


def _read(
    path: Path,
    name: str | None,
    *,
    bag_key: str | None = None,
    label_key: str | None = None,
) -> MIMLDataset:
    """Reads ``path`` with the reader its content (else its extension) calls for."""
    if path.is_dir():
        raise MimlTuneError(f"{path}: is a directory; pass the data file inside it")
    suffix = path.suffix.lower()
    fmt = detect_format(path) or _BY_EXTENSION.get(suffix)
    if fmt is None:
        raise MimlTuneError(
            f"{path}: unsupported data format {suffix or '(no extension)'!r} (the content is "
            f"not ARFF or a MAT-file either); supported: {_SUPPORTED}"
        )
    reader, what = FORMATS[fmt]
    if fmt == "mat":
        return read_miml_mat(path, name=name, bag_key=bag_key, label_key=label_key)
    if bag_key is not None or label_key is not None:
        given = "--bag-key" if bag_key is not None else "--label-key"
        raise MimlTuneError(
            f"{path}: {given} applies to MATLAB .mat files only, but this file is {what}; "
            f"drop {given}"
        )
    return reader(path, name=name)


def _check_shape(entry: DatasetEntry, ds: MIMLDataset) -> None:
    got = (ds.n_bags, ds.n_features, ds.n_labels)
    if got != entry.shape:
        warnings.warn(
            f"{ds.source}: dataset {entry.name!r} is expected to have {entry.shape[0]} bags, "
            f"{entry.shape[1]} features and {entry.shape[2]} labels, but this file has "
            f"{got[0]}, {got[1]} and {got[2]}; check that --data points at {entry.filename}",
            DataWarning,
            stacklevel=3,
        )


def _from_env(entry: DatasetEntry) -> Path | None:
    """The entry's file inside the :data:`DATA_ENV` folder, when that variable names one."""
    root = os.environ.get(DATA_ENV)
    if not root or entry.relpath is None:
        return None
    path = Path(root).expanduser() / entry.relpath
    return path if path.is_file() else None


def _not_found(entry: DatasetEntry) -> MimlTuneError:
    beside = f" with {' and '.join(entry.companions)} beside it" if entry.companions else ""
    message = (
        f"dataset {entry.name!r} is not bundled; pass --data PATH/TO/{entry.filename}{beside} "
        f"({entry.description})"
    )
    if entry.relpath is not None:
        root = os.environ.get(DATA_ENV)
        where = f"{DATA_ENV}={root} has no {entry.relpath}" if root else f"{DATA_ENV} is unset"
        message += f", or set {DATA_ENV} to a folder holding {entry.relpath} ({where})"
    return MimlTuneError(message)


def load_dataset(
    name_or_path: str,
    *,
    data: str | os.PathLike[str] | None = None,
    bag_key: str | None = None,
    label_key: str | None = None,
) -> MIMLDataset:
    """Loads a dataset by registered name, by path, or from an explicit file.

    The reader is chosen by the file's content (see :func:`detect_format`): MIML ARFF, Mulan
    ARFF (a ``NAME-train.arff`` loads its ``NAME-test.arff`` too) or a MATLAB ``.mat``. A
    registered dataset that is not bundled is looked up in the folder named by the
    ``MIML_TUNE_DATA`` environment variable (laid out as ``miml/NAME.arff``,
    ``mulan/NAME-train.arff``).

    Args:
        name_or_path: a registered name (see :func:`dataset_names`) or a path to a data file.
        data: a file to read instead of the registered copy (``--data``). The dataset is named
            after ``name_or_path`` when that is a registered name, else by the reader (the
            file's stem, without ``-train``/``-test`` for a Mulan pair).
        bag_key: the variable holding the bags in a ``.mat`` file (``--bag-key``).
        label_key: the variable holding the bag labels in a ``.mat`` file (``--label-key``).

    Returns:
        The dataset.

    Raises:
        MimlTuneError: unknown name, a registered dataset that is neither bundled nor under
            ``MIML_TUNE_DATA`` and no ``data``, an unsupported file, ``bag_key``/``label_key``
            for a file that is not a ``.mat``, or any problem reading the file.
    """
    keys = {"bag_key": bag_key, "label_key": label_key}
    if data is not None:
        path = Path(data)
        if _is_registered(name_or_path):
            entry = resolve_dataset(name_or_path)
            ds = _read(path, entry.name, **keys)
            _check_shape(entry, ds)
            return ds
        return _read(path, None, **keys)
    if _is_registered(name_or_path):
        entry = resolve_dataset(name_or_path)
        found = _from_env(entry)
        if entry.locate is not None:
            try:
                bundled = entry.locate()
            except MimlTuneError:
                if found is None:
                    raise
            else:
                return _read(bundled, entry.name, **keys)
        if found is None:
            raise _not_found(entry)
        ds = _read(found, entry.name, **keys)
        _check_shape(entry, ds)
        return ds
    path = Path(name_or_path)
    if path.exists() or path.suffix.lower() in _BY_EXTENSION or detect_format(path):
        return _read(path, None, **keys)
    raise MimlTuneError(
        f"unknown dataset {name_or_path!r}: not a registered name and no such file; "
        f"registered datasets: {', '.join(dataset_names())}; or pass a path to a data file "
        f"({', '.join(_BY_EXTENSION)}) or --data PATH"
    )
