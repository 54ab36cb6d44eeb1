"""read_miml_mat: LAMDA-style .mat files written here with scipy.io.savemat."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from tuner.data import DataWarning, read_miml_mat
from tuner.errors import MimlTuneError

BAGS = [
    np.array([[0.5, 1.0, -2.0], [1.5, 2.0, 3.25]]),
    np.array([[4.0, 5.0, 6.0]]),
    np.array([[7.0, 8.0, 9.0], [1.0, 1.0, 1.0], [0.0, -0.5, 1e-3]]),
]
LABELS01 = np.array([[1, 0], [0, 1], [1, 1]])  # (n_bags, L)


def cell(items: Sequence[Any], *, row: bool = False) -> np.ndarray:
    """A MATLAB cell vector (n x 1, or 1 x n with ``row``) holding ``items``."""
    out = np.empty((1, len(items)) if row else (len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[(0, i) if row else (i, 0)] = item
    return out


def write_mat(path: Path, **variables: Any) -> Path:
    scipy.io.savemat(path, variables)
    return path


def lamda(tmp_path: Path, name: str = "toy.mat", **override: Any) -> Path:
    """The LAMDA layout: ``bags`` (n x 1 cell) and ``targets`` (L x n, -1/+1)."""
    variables: dict[str, Any] = {"bags": cell(BAGS), "targets": 2 * LABELS01.T - 1}
    variables.update(override)
    return write_mat(tmp_path / name, **{k: v for k, v in variables.items() if v is not None})


def one_line_error(path: Path, match: str, **kwargs: Any) -> str:
    with pytest.raises(MimlTuneError, match=match) as info:
        read_miml_mat(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


# --- reading -------------------------------------------------------------------------------


def test_lamda_layout_with_plus_minus_one_targets(tmp_path: Path) -> None:
    path = lamda(tmp_path)
    ds = read_miml_mat(path)
    assert ds.name == "toy" and ds.source == os.path.abspath(path)
    assert (ds.n_bags, ds.n_instances, ds.n_features, ds.n_labels) == (3, 6, 3, 2)
    assert ds.bag_ids == ("1", "2", "3")
    assert ds.label_names == ("label_0", "label_1")
    assert ds.feature_names == ("feature_0", "feature_1", "feature_2")
    for bag, expected in zip(ds.bags, BAGS, strict=True):
        assert bag.dtype == np.float32 and bag.flags.c_contiguous
        np.testing.assert_array_equal(bag, expected.astype(np.float32))
    assert ds.labels.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, LABELS01)
    assert ds.instance_labels is None and ds.test_mask is None


@pytest.mark.parametrize("orientation", ["bags x labels", "labels x bags"])
@pytest.mark.parametrize("coding", ["0/1", "-1/+1"])
def test_label_orientation_and_coding(tmp_path: Path, orientation: str, coding: str) -> None:
    labels = LABELS01 if coding == "0/1" else 2 * LABELS01 - 1
    labels = labels if orientation == "bags x labels" else labels.T
    path = write_mat(tmp_path / "o.mat", Bags=cell(BAGS, row=True), Y=labels.astype(np.int8))
    np.testing.assert_array_equal(read_miml_mat(path).labels, LABELS01)


def test_logical_and_sparse_labels(tmp_path: Path) -> None:
    path = write_mat(
        tmp_path / "s.mat", bag=cell(BAGS), labels=scipy.sparse.csc_matrix(LABELS01.astype(float))
    )
    np.testing.assert_array_equal(read_miml_mat(path).labels, LABELS01)
    path = write_mat(tmp_path / "b.mat", bags=cell(BAGS), target=LABELS01.astype(bool))
    np.testing.assert_array_equal(read_miml_mat(path).labels, LABELS01)


def test_integer_bags_and_one_instance_bags(tmp_path: Path) -> None:
    bags = [np.array([[1, 2]], dtype=np.uint8), np.array([[3, 4]], dtype=np.int32)]
    path = write_mat(tmp_path / "i.mat", bags=cell(bags), labels=np.array([[1, 0, 1], [0, 1, 0]]))
    ds = read_miml_mat(path)
    assert ds.is_vector
    np.testing.assert_array_equal(ds.bags[1], [[3.0, 4.0]])


def test_label_names_from_a_cellstr_or_char_matrix(tmp_path: Path) -> None:
    path = lamda(tmp_path, class_name=cell(["desert", "sea"], row=True))
    assert read_miml_mat(path).label_names == ("desert", "sea")
    path = lamda(tmp_path, name="c.mat", label_names=np.array(["cat", "dog"]))
    assert read_miml_mat(path).label_names == ("cat", "dog")


def test_instance_labels_in_both_orientations(tmp_path: Path) -> None:
    upright = [np.array([[1, 0], [0, 0]]), np.array([[0, 1]]), np.array([[1, 0], [0, 1], [0, 0]])]
    expected = tuple(u.astype(np.uint8) for u in upright)
    for name, cells in (("u.mat", upright), ("t.mat", [2 * u.T - 1 for u in upright])):
        ds = read_miml_mat(lamda(tmp_path, name=name, instanceLabels=cell(cells)))
        assert ds.instance_labels is not None
        for got, want in zip(ds.instance_labels, expected, strict=True):
            assert got.dtype == np.uint8 and got.flags.c_contiguous
            np.testing.assert_array_equal(got, want)
    sub = ds.subset([2])
    assert sub.instance_labels is not None and sub.instance_labels[0].shape == (3, 2)


def test_keys_override_the_names(tmp_path: Path) -> None:
    path = write_mat(
        tmp_path / "k.mat",
        features=cell(BAGS),
        classes_matrix=LABELS01,
        labels=np.array([[5.0]]),  # a decoy under a common name
    )
    ds = read_miml_mat(path, bag_key="features", label_key="CLASSES_MATRIX", name="mine")
    assert ds.name == "mine"
    np.testing.assert_array_equal(ds.labels, LABELS01)


def test_never_positive_label_warns(tmp_path: Path) -> None:
    path = lamda(tmp_path, targets=np.array([[1, -1, 1], [-1, -1, -1]]))
    with pytest.warns(DataWarning, match=r"label never positive: 'label_1'"):
        read_miml_mat(path)


def test_square_label_matrix_warns_and_reads_rows_as_bags(tmp_path: Path) -> None:
    square = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    path = write_mat(tmp_path / "sq.mat", bags=cell(BAGS), labels=square)
    with pytest.warns(DataWarning, match=r"3x3 for 3 bags, so its orientation is ambiguous"):
        ds = read_miml_mat(path)
    np.testing.assert_array_equal(ds.labels, square)


# --- validation ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    one_line_error(tmp_path / "absent.mat", r"absent\.mat: no such file")


def test_not_a_mat_file(tmp_path: Path) -> None:
    (tmp_path / "text.mat").write_text("hello, this is not MATLAB data at all\n" * 5)
    one_line_error(tmp_path / "text.mat", r"text\.mat: not a MATLAB \.mat file: scipy cannot")


def test_v73_hdf5_file_says_how_to_resave(tmp_path: Path) -> None:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 2024 HDF5 schema 1.00"
    path = tmp_path / "big.mat"
    path.write_bytes(header.ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    message = one_line_error(path, r"big\.mat: is a MATLAB v7\.3 \(HDF5\) file")
    assert "save('big.mat', '-v7')" in message


def test_no_bag_cell_array_lists_the_variables(tmp_path: Path) -> None:
    path = write_mat(tmp_path / "nb.mat", feats=np.ones((3, 2)), targets=LABELS01)
    message = one_line_error(path, r"nb\.mat: found no bag cell array \(looked for bags, bag")
    assert "its variables are feats (3x2 double), targets (3x2 int64); pass --bag-key NAME" in (
        message.replace("float64", "double")
    )


def test_bag_variable_that_is_not_a_cell(tmp_path: Path) -> None:
    path = write_mat(tmp_path / "nc.mat", bags=np.ones((3, 2)), targets=LABELS01)
    one_line_error(path, r"variable 'bags' is a 3x2 float64, not a cell array of n_i x d inst")


def test_unknown_key(tmp_path: Path) -> None:
    message = one_line_error(
        lamda(tmp_path), r"has no variable 'B' \(given as --bag-key\)", bag_key="B"
    )
    assert "bags (3x1 cell)" in message


def test_two_candidate_label_matrices(tmp_path: Path) -> None:
    path = lamda(tmp_path, labels=LABELS01)
    one_line_error(path, r"several variables could be the label matrix: .*pass --label-key NAME")


def test_no_label_matrix(tmp_path: Path) -> None:
    path = lamda(tmp_path, targets=None)
    one_line_error(path, r"found no label matrix .*its variables are bags \(3x1 cell\); pass --l")


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([[1, 0, 2], [0, 1, 1]]), r"label matrix 'targets' has value 2 at bag 3, label 1"),
        (np.array([[1, -1, 0], [0, 1, 1]]), r"mixes -1 and 0 \(a 0 at bag 1, label 2\)"),
        (np.array([[1, 0, 0.5], [0, 1, 1]]), r"has value 0\.5 at bag 3, label 1"),
        (np.array([[1, 0, np.nan], [0, 1, 1]]), r"has value nan at bag 3, label 1"),
    ],
)
def test_bad_label_values(tmp_path: Path, labels: np.ndarray, match: str) -> None:
    message = one_line_error(lamda(tmp_path, targets=labels), match)
    assert "label values must be" in message


def test_label_count_matching_neither_orientation(tmp_path: Path) -> None:
    path = lamda(tmp_path, targets=np.ones((4, 2)))
    one_line_error(
        path, r"label matrix 'targets' is 4x2, which matches neither 3xL nor Lx3 for the 3 bags"
    )


def test_bags_with_different_feature_counts(tmp_path: Path) -> None:
    bags = [BAGS[0], np.ones((2, 4)), BAGS[2]]
    path = lamda(tmp_path, bags=cell(bags))
    one_line_error(path, r"bag 2 \(bags\{2\}\) has 4 features \(columns\) but bag 1 has 3")


@pytest.mark.parametrize("empty", [np.zeros((0, 3)), np.zeros((0, 0))])
def test_empty_bag(tmp_path: Path, empty: np.ndarray) -> None:
    path = lamda(tmp_path, bags=cell([BAGS[0], BAGS[1], empty]))
    one_line_error(path, r"bag 3 \(bags\{3\}\) is empty \(0x\d\); every bag needs at least one")


def test_empty_bag_cell_array(tmp_path: Path) -> None:
    path = write_mat(
        tmp_path / "e.mat", bags=np.empty((0, 1), dtype=object), labels=np.ones((0, 2))
    )
    one_line_error(path, r"the bag cell array 'bags' is empty; there are no bags")


@pytest.mark.parametrize(("bad", "shown"), [(np.nan, "nan"), (np.inf, "inf"), (1e300, "1e\\+300")])
def test_non_finite_feature(tmp_path: Path, bad: float, shown: str) -> None:
    bag = np.array([[1.0, 2.0, 3.0], [4.0, bad, 6.0]])
    path = lamda(tmp_path, bags=cell([BAGS[0], bag, BAGS[2]]))
    one_line_error(
        path, rf"bag 2 \(bags\{{2\}}\) has 1 non-finite value\(s\) .*first {shown} at instance 2,"
    )


def test_complex_bag(tmp_path: Path) -> None:
    path = lamda(tmp_path, bags=cell([BAGS[0] + 1j, BAGS[1], BAGS[2]]))
    one_line_error(path, r"bag 1 \(bags\{1\}\) is a complex, not a real numeric matrix")


def test_bag_cell_array_must_be_a_vector(tmp_path: Path) -> None:
    grid = np.empty((2, 2), dtype=object)
    for i in range(4):
        grid[divmod(i, 2)] = np.ones((1, 3))
    path = write_mat(tmp_path / "g.mat", bags=grid, labels=np.ones((4, 1)))
    one_line_error(path, r"cell array 'bags' is 2x2 cell; it must be a vector")


def test_instance_labels_that_fit_no_bag(tmp_path: Path) -> None:
    cells = [np.ones((2, 2)), np.ones((1, 3)), np.ones((3, 2))]
    path = lamda(tmp_path, inst_labels=cell(cells))
    one_line_error(path, r"instance labels inst_labels\{2\} are 1x3, but bag 2 has 1 instances")


def test_instance_labels_with_a_bad_value(tmp_path: Path) -> None:
    cells = [np.ones((2, 2)), np.array([[1, 7]]), np.ones((3, 2))]
    path = lamda(tmp_path, instance_labels=cell(cells))
    one_line_error(path, r"instance labels instance_labels\{2\} has value 7 at instance 1, label 2")


def test_instance_label_count_differs_from_bag_count(tmp_path: Path) -> None:
    path = lamda(tmp_path, instance_labels=cell([np.ones((2, 2))]))
    one_line_error(path, r"instance label cell array 'instance_labels' has 1 cells for 3 bags")


def test_label_names_of_the_wrong_length(tmp_path: Path) -> None:
    path = lamda(tmp_path, class_name=cell(["a", "b", "c"]))
    one_line_error(path, r"'class_name' holds 3 label names for 2 labels")


def test_same_variable_for_bags_and_labels(tmp_path: Path) -> None:
    one_line_error(
        lamda(tmp_path), "cannot both be variable 'bags'", bag_key="bags", label_key="bags"
    )


def test_a_reader_that_crashes_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scipy's MATLAB reader is C code that a damaged file can crash (fuzzing found one): it
    runs in a forked child, so a crash (here a real SIGSEGV in the child) is one line."""
    import signal

    def crash(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)

    path = lamda(tmp_path)
    monkeypatch.setattr(scipy.io, "loadmat", crash)
    message = one_line_error(path, "the MATLAB reader crashed on this file")
    assert f"exit {-signal.SIGSEGV}" in message
