"""The dataset registry and load_dataset: names, the bundled Birds, --data, paths."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import shutil
from pathlib import Path

import pytest

from tests.tuner.data.test_arff import BAGS, LABELS, write_miml_arff
from tuner.data import DataWarning, dataset_names, load_dataset, read_miml_arff
from tuner.data.registry import DATASETS, resolve_dataset
from tuner.errors import MimlTuneError


def test_dataset_names() -> None:
    assert dataset_names() == ["birds", "reuters", "scene"]
    assert set(DATASETS) == set(dataset_names())


@pytest.mark.parametrize("query", ["birds", "BIRDS", " Birds "])
def test_resolve_is_case_insensitive(query: str) -> None:
    assert resolve_dataset(query).name == "birds"


def test_resolve_treats_dash_and_underscore_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = DATASETS["scene"]
    monkeypatch.setitem(DATASETS, "miml_scene", dataclasses.replace(entry, name="miml_scene"))
    assert resolve_dataset("MIML-Scene").name == "miml_scene"


def test_resolve_unknown_lists_the_names() -> None:
    with pytest.raises(MimlTuneError, match=r"unknown dataset 'bird'; .*birds, reuters, scene"):
        resolve_dataset("bird")


def test_bundled_birds() -> None:
    ds = load_dataset("Birds")
    assert ds.name == "birds"
    assert Path(ds.source).name == "miml_birds.arff"
    assert (ds.n_bags, ds.n_instances, ds.n_features, ds.n_labels) == (257, 2062, 38, 19)


def test_bundled_birds_equals_the_shared_copy(shared_data: Path) -> None:
    bundled = load_dataset("birds")
    # The shared copy has birds.xml beside it; the bundled one does not. The XML lists the
    # labels in another order, but both keep ARFF attribute order, so the data is identical.
    shared = read_miml_arff(shared_data / "miml" / "birds.arff")
    assert bundled.label_names == shared.label_names
    assert bundled.bag_ids == shared.bag_ids
    assert bundled.fingerprint() == shared.fingerprint()


def test_bundled_birds_without_mimllearning(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(MimlTuneError, match="pip install mimllearning, or pass --data") as info:
        load_dataset("birds")
    assert "\n" not in str(info.value)


def test_bundled_birds_file_missing_from_the_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.metadata, "files", lambda name: [])
    with pytest.raises(MimlTuneError, match=r"has no miml_birds\.arff"):
        load_dataset("birds")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("scene", r"dataset 'scene' is not bundled; pass --data PATH/TO/scene\.arff \(.*2000 bags"),
        ("Reuters", r"dataset 'reuters' is not bundled; pass --data PATH/TO/reuters\.arff"),
    ],
)
def test_not_bundled_says_which_file_to_pass(name: str, expected: str) -> None:
    with pytest.raises(MimlTuneError, match=expected):
        load_dataset(name)


def test_registered_name_with_data(shared_data: Path) -> None:
    ds = load_dataset("SCENE", data=shared_data / "miml" / "scene.arff")
    assert ds.name == "scene"
    assert (ds.n_bags, ds.n_features, ds.n_labels) == (2000, 15, 5)


def test_registered_name_with_data_of_another_shape_warns(tmp_path: Path) -> None:
    path = write_miml_arff(tmp_path / "tiny.arff", BAGS, LABELS)
    with pytest.warns(DataWarning, match=r"dataset 'scene' is expected to have 2000 bags"):
        ds = load_dataset("scene", data=path)
    assert ds.name == "scene" and ds.n_bags == 3


def test_unregistered_name_with_data_takes_the_stem(tmp_path: Path) -> None:
    path = write_miml_arff(tmp_path / "tiny.arff", BAGS, LABELS)
    assert load_dataset("whatever", data=str(path)).name == "tiny"


def test_path_instead_of_a_name(tmp_path: Path) -> None:
    path = write_miml_arff(tmp_path / "tiny.arff", BAGS, LABELS)
    ds = load_dataset(str(path))
    assert ds.name == "tiny" and ds.n_bags == 3


def test_missing_arff_path() -> None:
    with pytest.raises(MimlTuneError, match=r"nowhere/x\.arff: no such file"):
        load_dataset("nowhere/x.arff")


def test_unknown_name_lists_names_and_mentions_paths() -> None:
    with pytest.raises(
        MimlTuneError, match=r"unknown dataset 'yeast'.*birds, reuters, scene.*--data"
    ):
        load_dataset("yeast")


def test_unsupported_extension_lists_formats(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    for call in (lambda: load_dataset(str(path)), lambda: load_dataset("scene", data=path)):
        with pytest.raises(
            MimlTuneError, match=r"unsupported data format '\.csv'; supported: \.arff"
        ):
            call()


def test_directory_as_data(tmp_path: Path) -> None:
    with pytest.raises(MimlTuneError, match="is a directory"):
        load_dataset("birds", data=tmp_path)


def test_xml_beside_a_data_copy_is_used(shared_data: Path, tmp_path: Path) -> None:
    for suffix in (".arff", ".xml"):
        shutil.copy(shared_data / "miml" / f"reuters{suffix}", tmp_path / f"r{suffix}")
    ds = load_dataset("reuters", data=tmp_path / "r.arff")
    assert ds.label_names == tuple(f"label{i}" for i in range(1, 8))
