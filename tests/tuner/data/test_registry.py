"""The dataset registry and load_dataset: names, the bundled Birds, --data, paths."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tests.tuner.data.test_arff import BAGS, LABELS, write_miml_arff
from tests.tuner.data.test_matlab import cell
from tests.tuner.data.test_mulan import write_mulan
from tuner.data import DataWarning, dataset_names, detect_format, load_dataset, read_miml_arff
from tuner.data.registry import DATA_ENV, DATASETS, resolve_dataset
from tuner.errors import MimlTuneError


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without MIML_TUNE_DATA; those that need it set it."""
    monkeypatch.delenv(DATA_ENV, raising=False)


def test_dataset_names() -> None:
    assert dataset_names() == ["birds", "mulan_scene", "reuters", "scene", "yeast"]
    assert set(DATASETS) == set(dataset_names())


@pytest.mark.parametrize("query", ["birds", "BIRDS", " Birds "])
def test_resolve_is_case_insensitive(query: str) -> None:
    assert resolve_dataset(query).name == "birds"


def test_resolve_treats_dash_and_underscore_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = DATASETS["scene"]
    monkeypatch.setitem(DATASETS, "miml_scene", dataclasses.replace(entry, name="miml_scene"))
    assert resolve_dataset("MIML-Scene").name == "miml_scene"


def test_resolve_unknown_lists_the_names() -> None:
    with pytest.raises(
        MimlTuneError, match=r"unknown dataset 'bird'; .*birds, mulan_scene, reuters, scene, yeast"
    ):
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
        (
            "yeast",
            r"dataset 'yeast' is not bundled; pass --data PATH/TO/yeast-train\.arff with "
            r"yeast-test\.arff and yeast\.xml beside it \(Mulan yeast .*2417 examples",
        ),
        (
            "mulan-scene",
            r"dataset 'mulan_scene' is not bundled; pass --data PATH/TO/scene-train\.arff with "
            r"scene-test\.arff and scene\.xml beside it \(Mulan scene .*2407 examples",
        ),
    ],
)
def test_not_bundled_says_which_file_to_pass(name: str, expected: str) -> None:
    with pytest.raises(MimlTuneError, match=expected) as info:
        load_dataset(name)
    message = str(info.value)
    assert "\n" not in message
    relpath = DATASETS[resolve_dataset(name).name].relpath
    assert message.endswith(
        f"or set {DATA_ENV} to a folder holding {relpath} ({DATA_ENV} is unset)"
    )


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
        MimlTuneError, match=r"unknown dataset 'emotions'.*birds, mulan_scene, .*--data"
    ):
        load_dataset("emotions")


def test_unsupported_extension_lists_formats(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    for call in (lambda: load_dataset(str(path)), lambda: load_dataset("scene", data=path)):
        with pytest.raises(
            MimlTuneError,
            match=r"unsupported data format '\.csv' \(the content is not ARFF or a MAT-file "
            r"either\); supported: \.arff \(MIML ARFF, or Mulan ARFF \+ label XML\), \.mat",
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


# --- the reader is chosen by content -------------------------------------------------------


def small_mat(path: Path) -> Path:
    bags = [np.asarray(b, dtype=float) for b in BAGS]
    scipy.io.savemat(path, {"bags": cell(bags), "targets": 2 * np.asarray(LABELS).T - 1})
    return path


def test_detect_format(tmp_path: Path) -> None:
    miml = write_miml_arff(tmp_path / "bags.arff", BAGS, LABELS)
    mulan = write_mulan(tmp_path / "flat.arff")
    mat = small_mat(tmp_path / "m.mat")
    (tmp_path / "note.txt").write_text("hello\n")
    assert detect_format(miml) == "miml_arff"
    assert detect_format(mulan) == "mulan_arff"
    assert detect_format(mat) == "mat"
    assert detect_format(tmp_path / "note.txt") is None
    assert detect_format(tmp_path / "absent.arff") is None


def test_detect_format_of_a_mulan_pair_stem(tmp_path: Path) -> None:
    write_mulan(tmp_path / "toy-train.arff", xml_name="toy.xml")
    write_mulan(tmp_path / "toy-test.arff", xml=None)
    assert detect_format(tmp_path / "toy") == "mulan_arff"
    ds = load_dataset(str(tmp_path / "toy"))
    assert ds.name == "toy" and ds.n_bags == 6 and ds.test_mask is not None


def test_a_relational_attribute_named_in_a_comment_or_as_a_name_is_not_miml(
    tmp_path: Path,
) -> None:
    path = write_mulan(tmp_path / "flat.arff")
    path.write_text(
        path.read_text().replace(
            "@attribute f0 numeric", "% @attribute bag relational\n@attribute relational numeric"
        )
    )
    assert detect_format(path) == "mulan_arff"
    assert load_dataset(str(path)).feature_names == ("relational", "f1", "f2")


def test_paths_load_with_the_reader_their_content_needs(tmp_path: Path) -> None:
    miml = load_dataset(str(write_miml_arff(tmp_path / "bags.arff", BAGS, LABELS)))
    assert miml.n_instances == 6 and not miml.is_vector
    mulan = load_dataset(str(write_mulan(tmp_path / "flat.arff")))
    assert mulan.is_vector and mulan.n_bags == 3 and mulan.name == "flat"
    mat = load_dataset(str(small_mat(tmp_path / "m.mat")))
    assert mat.name == "m" and mat.label_names == ("label_0", "label_1")
    for a, b in zip(mat.bags, miml.bags, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mat.labels, miml.labels)


def test_content_wins_over_the_extension(tmp_path: Path) -> None:
    disguised = small_mat(tmp_path / "m.mat").rename(tmp_path / "really_mat.arff")
    assert load_dataset("any", data=disguised).n_bags == 3
    text = write_miml_arff(tmp_path / "bags.arff", BAGS, LABELS).read_text()
    (tmp_path / "bags.dat").write_text(text)
    assert load_dataset(str(tmp_path / "bags.dat")).n_instances == 6


def test_a_file_whose_content_does_not_match_its_extension(tmp_path: Path) -> None:
    (tmp_path / "fake.mat").write_text("not matlab\n" * 20)
    with pytest.raises(MimlTuneError, match=r"fake\.mat: not a MATLAB \.mat file"):
        load_dataset(str(tmp_path / "fake.mat"))
    (tmp_path / "fake.arff").write_text("a,b\n1,2\n")
    with pytest.raises(MimlTuneError, match=r"fake\.arff: not an ARFF file: line 1"):
        load_dataset(str(tmp_path / "fake.arff"))


def test_bag_and_label_keys_reach_the_mat_reader(tmp_path: Path) -> None:
    path = tmp_path / "k.mat"
    bags = [np.asarray(b, dtype=float) for b in BAGS]
    scipy.io.savemat(path, {"segments": cell(bags), "answers": np.asarray(LABELS)})
    with pytest.raises(MimlTuneError, match=r"found no bag cell array .*pass --bag-key NAME"):
        load_dataset(str(path))
    ds = load_dataset(str(path), bag_key="segments", label_key="answers")
    assert ds.n_bags == 3
    with pytest.warns(DataWarning, match="dataset 'scene' is expected to have 2000 bags"):
        load_dataset("scene", data=path, bag_key="segments", label_key="answers")


@pytest.mark.parametrize("key", ["bag_key", "label_key"])
def test_mat_keys_for_other_files_are_refused(tmp_path: Path, key: str) -> None:
    path = write_mulan(tmp_path / "flat.arff")
    option = "--" + key.replace("_", "-")
    with pytest.raises(
        MimlTuneError,
        match=rf"flat\.arff: {option} applies to MATLAB \.mat files only, but this file is "
        rf"Mulan multi-label ARFF with its label XML; drop {option}",
    ):
        load_dataset(str(path), **{key: "x"})


# --- MIML_TUNE_DATA --------------------------------------------------------------------------


def test_data_env_folder_is_searched_for_unbundled_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mulan").mkdir()
    write_mulan(tmp_path / "mulan" / "yeast-train.arff", xml_name="yeast.xml")
    write_mulan(tmp_path / "mulan" / "yeast-test.arff", xml=None)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.warns(DataWarning, match=r"dataset 'yeast' is expected to have 2417 bags"):
        ds = load_dataset("Yeast")
    assert ds.name == "yeast" and ds.n_bags == 6 and ds.test_mask is not None
    assert ds.source == str(tmp_path / "mulan" / "yeast-train.arff")


def test_data_env_folder_without_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(
        MimlTuneError,
        match=rf"or set {DATA_ENV} to a folder holding miml/reuters\.arff "
        rf"\({DATA_ENV}={tmp_path} has no miml/reuters\.arff\)",
    ):
        load_dataset("reuters")


def test_bundled_birds_falls_back_to_the_data_env_folder(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    monkeypatch.setenv(DATA_ENV, str(shared_data))
    ds = load_dataset("birds")
    assert ds.source == str(shared_data / "miml" / "birds.arff") and ds.n_bags == 257


@pytest.mark.parametrize(
    ("name", "n_bags", "n_test", "n_features", "n_labels"),
    [("yeast", 2417, 917, 103, 14), ("mulan_scene", 2407, 1196, 294, 6)],
)
def test_real_mulan_sets_by_name(
    shared_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    n_bags: int,
    n_test: int,
    n_features: int,
    n_labels: int,
) -> None:
    monkeypatch.setenv(DATA_ENV, str(shared_data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the registered shape matches: no warning
        ds = load_dataset(name)
    assert ds.name == name and ds.is_vector
    assert (ds.n_bags, ds.n_features, ds.n_labels) == (n_bags, n_features, n_labels)
    assert ds.test_mask is not None and int(ds.test_mask.sum()) == n_test


def test_real_mulan_file_as_data_and_as_path(shared_data: Path) -> None:
    entry = DATASETS["yeast"]
    assert entry.relpath is not None
    path = shared_data / entry.relpath
    assert path.name == entry.filename
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_data = load_dataset("yeast", data=path)
    by_path = load_dataset(str(shared_data / "mulan" / "yeast-test.arff"))
    assert by_path.name == "yeast"
    assert by_data.fingerprint() == by_path.fingerprint()


@pytest.mark.parametrize("stem", ["birds", "scene", "reuters"])
def test_real_miml_files_are_sniffed_as_miml(shared_data: Path, stem: str) -> None:
    path = shared_data / "miml" / f"{stem}.arff"
    assert detect_format(path) == "miml_arff"
    assert DATASETS[stem].relpath == f"miml/{stem}.arff"


def test_real_scene_by_name_from_the_data_env(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV, str(shared_data))
    ds = load_dataset("scene")
    assert (ds.n_bags, ds.n_instances, ds.n_features, ds.n_labels) == (2000, 18000, 15, 5)
    assert not ds.is_vector and ds.test_mask is None
