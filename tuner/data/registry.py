"""Datasets by name: a dict of entries plus one resolver, and the loader behind ``--data``."""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuner.data.arff import read_miml_arff
from tuner.data.dataset import DataWarning, MIMLDataset
from tuner.errors import MimlTuneError

__all__ = ["DATASETS", "DatasetEntry", "dataset_names", "load_dataset", "resolve_dataset"]

Reader = Callable[..., MIMLDataset]

# File extension -> (reader, format description). More loaders (Mulan ARFF, ...) go here.
READERS: dict[str, tuple[Reader, str]] = {
    ".arff": (read_miml_arff, "MIML ARFF"),
}


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
    """

    name: str
    description: str
    filename: str
    shape: tuple[int, int, int]
    locate: Callable[[], Path] | None = None


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
        ),
        DatasetEntry(
            name="scene",
            description=(
                "the MIML Scene set of Zhou & Zhang, 2000 bags x 9 instances, 15 features, 5 labels"
            ),
            filename="scene.arff",
            shape=(2000, 15, 5),
        ),
        DatasetEntry(
            name="reuters",
            description=(
                "the MIML Reuters text set of Zhou & Zhang, 2000 bags of 2-26 instances, "
                "243 features, 7 labels"
            ),
            filename="reuters.arff",
            shape=(2000, 243, 7),
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


def _read(path: Path, name: str) -> MIMLDataset:
    """Reads ``path`` with the reader for its extension."""
    if path.is_dir():
        raise MimlTuneError(f"{path}: is a directory; pass the data file inside it")
    suffix = path.suffix.lower()
    if suffix not in READERS:
        supported = ", ".join(f"{ext} ({what})" for ext, (_, what) in READERS.items())
        raise MimlTuneError(
            f"{path}: unsupported data format {suffix or '(no extension)'!r}; "
            f"supported: {supported}"
        )
    reader, _ = READERS[suffix]
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


def load_dataset(name_or_path: str, *, data: str | os.PathLike[str] | None = None) -> MIMLDataset:
    """Loads a dataset by registered name, by path, or from an explicit file.

    Args:
        name_or_path: a registered name (see :func:`dataset_names`) or a path to a data file.
        data: a file to read instead of the registered copy (``--data``). The dataset is named
            after ``name_or_path`` when that is a registered name, else after the file's stem.

    Returns:
        The dataset.

    Raises:
        MimlTuneError: unknown name, a registered dataset that is not bundled and no ``data``,
            an unsupported file extension, or any problem reading the file.
    """
    if data is not None:
        path = Path(data)
        if _is_registered(name_or_path):
            entry = resolve_dataset(name_or_path)
            ds = _read(path, entry.name)
            _check_shape(entry, ds)
            return ds
        return _read(path, path.stem)
    if _is_registered(name_or_path):
        entry = resolve_dataset(name_or_path)
        if entry.locate is None:
            raise MimlTuneError(
                f"dataset {entry.name!r} is not bundled; pass --data PATH/TO/{entry.filename} "
                f"({entry.description})"
            )
        return _read(entry.locate(), entry.name)
    path = Path(name_or_path)
    if path.exists() or path.suffix.lower() in READERS:
        return _read(path, path.stem)
    raise MimlTuneError(
        f"unknown dataset {name_or_path!r}: not a registered name and no such file; "
        f"registered datasets: {', '.join(dataset_names())}; or pass a path to a data file "
        f"({', '.join(READERS)}) or --data PATH"
    )
