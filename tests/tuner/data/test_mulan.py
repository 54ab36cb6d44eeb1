"""read_mulan_arff: small Mulan files written here (dense, sparse, pairs), then the real sets."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.io import arff as scipy_arff

from tuner.data import DataWarning, read_mulan_arff
from tuner.data.mulan import mulan_pair
from tuner.errors import MimlTuneError

FEATURES = ["f0", "f1", "f2"]
LABELS = ["L0", "L1"]
X = [[0.5, 1.0, -2.0], [4.0, 0.0, 6.25], [7.0, 8.0, 1e-3]]
Y = [[1, 0], [0, 1], [1, 1]]


def mulan_text(
    rows: Sequence[Sequence[Any]],
    *,
    attributes: Sequence[tuple[str, str]] | None = None,
    sparse: bool = False,
) -> str:
    """A Mulan ARFF file; ``rows`` hold one value per attribute (written with ``str``)."""
    if attributes is None:
        attributes = [(f, "numeric") for f in FEATURES] + [(n, "{0,1}") for n in LABELS]
    lines = ["@relation test"] + [f"@attribute {n} {t}" for n, t in attributes] + ["@data"]
    for row in rows:
        if sparse:
            items = [f"{j} {v}" for j, v in enumerate(row) if str(v) not in ("0", "0.0")]
            lines.append("{" + ",".join(items) + "}")
        else:
            lines.append(",".join(str(v) for v in row))
    return "\n".join(lines) + "\n"


def rows_of(x: Sequence[Sequence[Any]], y: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[*a, *b] for a, b in zip(x, y, strict=True)]


def write_label_xml(path: Path, names: Sequence[str]) -> Path:
    items = "".join(f'  <label name="{n}"/>\n' for n in names)
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<labels xmlns="http://mulan.sourceforge.net/labels">\n{items}</labels>\n'
    )
    return path


def write_mulan(
    path: Path,
    rows: Sequence[Sequence[Any]] | None = None,
    *,
    xml: Sequence[str] | None = ("L0", "L1"),
    xml_name: str | None = None,
    **kwargs: Any,
) -> Path:
    """Writes a Mulan ARFF (and its XML as ``xml_name``, default ``<stem>.xml``)."""
    path.write_text(mulan_text(rows_of(X, Y) if rows is None else rows, **kwargs))
    if xml is not None:
        write_label_xml(path.with_name(xml_name or f"{path.stem}.xml"), xml)
    return path


def write_pair(tmp_path: Path, stem: str = "toy", **kwargs: Any) -> tuple[Path, Path]:
    train = write_mulan(tmp_path / f"{stem}-train.arff", xml_name=f"{stem}.xml", **kwargs)
    test_rows = [[9.0, 9.5, 10.0, 0, 1], [-1.0, -2.0, -3.0, 1, 0]]
    test = write_mulan(tmp_path / f"{stem}-test.arff", test_rows, xml=None)
    return train, test


def one_line_error(path: Path, match: str, **kwargs: Any) -> str:
    with pytest.raises(MimlTuneError, match=match) as info:
        read_mulan_arff(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- parsing -------------------------------------------------------------------------------


def test_dense_file_becomes_one_instance_bags(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "toy.arff")
    ds = read_mulan_arff(path)
    assert ds.name == "toy" and ds.source == os.path.abspath(path)
    assert (ds.n_bags, ds.n_instances, ds.n_features, ds.n_labels) == (3, 3, 3, 2)
    assert ds.is_vector and ds.test_mask is None and not ds.has_test_split
    assert ds.bag_ids == ("1", "2", "3")
    assert ds.feature_names == ("f0", "f1", "f2") and ds.label_names == ("L0", "L1")
    for bag, row in zip(ds.bags, X, strict=True):
        assert bag.shape == (1, 3) and bag.dtype == np.float32 and bag.flags.c_contiguous
        np.testing.assert_array_equal(bag[0], np.asarray(row, dtype=np.float32))
    assert ds.labels.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, Y)


def test_sparse_file_equals_the_dense_one(tmp_path: Path) -> None:
    dense = read_mulan_arff(write_mulan(tmp_path / "dense.arff"))
    sparse_path = write_mulan(tmp_path / "sparse.arff", sparse=True)
    assert "{0 0.5,1 1.0,2 -2.0,3 1}" in sparse_path.read_text()
    assert "{0 4.0,2 6.25,4 1}" in sparse_path.read_text()  # f1 = 0 and L0 = 0 omitted
    sparse = read_mulan_arff(sparse_path)
    assert sparse.fingerprint() == dense.fingerprint()


def test_sparse_and_dense_rows_mix_and_empty_sparse_row_is_all_zero(tmp_path: Path) -> None:
    text = mulan_text(rows_of(X, Y)).replace("7.0,8.0,0.001,1,1", "{ }")
    text = text.replace("0.5,1.0,-2.0,1,0", "{1 '1.5', 4 1}")
    path = tmp_path / "mixed.arff"
    path.write_text(text)
    write_label_xml(tmp_path / "mixed.xml", LABELS)
    with pytest.warns(DataWarning, match="never positive|positive in every row"):
        ds = read_mulan_arff(path)
    np.testing.assert_array_equal(ds.bags[0], [[0.0, 1.5, 0.0]])
    np.testing.assert_array_equal(ds.bags[2], [[0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(ds.labels, [[0, 1], [0, 1], [0, 0]])


def test_labels_in_the_middle_keep_arff_order(tmp_path: Path) -> None:
    attributes = [("a", "numeric"), ("Z", "{0,1}"), ("b", "real"), ("A", "{0,1}"), ("c", "integer")]
    rows = [[1.0, 1, 2.0, 0, 3], [4.0, 0, 5.0, 1, 6], [7.0, 1, 8.0, 1, 9]]
    path = write_mulan(tmp_path / "mid.arff", rows, attributes=attributes, xml=["A", "Z"])
    ds = read_mulan_arff(path)
    assert ds.feature_names == ("a", "b", "c")
    assert ds.label_names == ("Z", "A")
    np.testing.assert_array_equal(ds.labels, [[1, 0], [0, 1], [1, 1]])
    np.testing.assert_array_equal(ds.bags[1], [[4.0, 5.0, 6.0]])


def test_nested_label_hierarchy_takes_every_label(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "tree.arff", xml=None)
    (tmp_path / "tree.xml").write_text(
        '<labels xmlns="http://mulan.sourceforge.net/labels">'
        '<label name="L0"><label name="L1"/></label></labels>'
    )
    assert read_mulan_arff(path).label_names == ("L0", "L1")


def test_explicit_xml_and_name(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "toy.arff", xml=None)
    xml = write_label_xml(tmp_path / "elsewhere.xml", ["L1", "L0"])
    ds = read_mulan_arff(path, xml=xml, name="mine")
    assert ds.name == "mine" and ds.label_names == ("L0", "L1")


def test_comments_crlf_quotes_and_spaces(tmp_path: Path) -> None:
    text = mulan_text(rows_of(X, Y)).replace(",", ", ").replace("\n", "\r\n")
    text = "% Mulan\r\n" + text.replace("@data", "@data\r\n% rows\r\n")
    text = text.replace("4.0, 0.0", "'4.0', \"0.0\"")
    (tmp_path / "crlf.arff").write_text(text)
    write_label_xml(tmp_path / "crlf.xml", LABELS)
    ds = read_mulan_arff(tmp_path / "crlf.arff")
    np.testing.assert_array_equal(ds.bags[1], [[4.0, 0.0, 6.25]])
    np.testing.assert_array_equal(ds.labels, Y)


def test_numeric_label_attribute_with_0_1_values(tmp_path: Path) -> None:
    attributes = [(f, "numeric") for f in FEATURES] + [("L0", "numeric"), ("L1", "{0,1}")]
    ds = read_mulan_arff(write_mulan(tmp_path / "num.arff", attributes=attributes))
    np.testing.assert_array_equal(ds.labels, Y)


def test_never_and_always_positive_labels_warn(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "flat.arff", rows_of(X, [[1, 0], [1, 0], [1, 0]]))
    with pytest.warns(DataWarning, match=r"never positive: 'L1'; positive in every row: 'L0'"):
        read_mulan_arff(path)


# --- train/test pairs ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["toy-train.arff", "toy-test.arff", "toy", "toy.arff"])
def test_pair_loads_both_files_whichever_is_named(tmp_path: Path, which: str) -> None:
    train, _ = write_pair(tmp_path)
    ds = read_mulan_arff(tmp_path / which)
    assert ds.name == "toy" and ds.source == os.path.abspath(train)
    assert ds.n_bags == 5
    assert ds.bag_ids == ("train-1", "train-2", "train-3", "test-1", "test-2")
    assert ds.test_mask is not None and ds.test_mask.dtype == np.bool_
    assert ds.test_mask.tolist() == [False, False, False, True, True] and ds.has_test_split
    np.testing.assert_array_equal(ds.bags[3], [[9.0, 9.5, 10.0]])
    np.testing.assert_array_equal(ds.labels, [*Y, [0, 1], [1, 0]])


def test_mulan_pair_resolution(tmp_path: Path) -> None:
    train, test = write_pair(tmp_path)
    assert mulan_pair(test) == (train, test, "toy")
    assert mulan_pair(tmp_path / "toy") == (train, test, "toy")
    lone = write_mulan(tmp_path / "solo-train.arff")
    assert mulan_pair(lone) == (lone, None, "solo")
    other = tmp_path / "plain.arff"
    assert mulan_pair(other) == (other, None, "plain")


def test_lone_train_file_reads_alone_with_the_stem_xml(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "solo-train.arff", xml_name="solo.xml")
    ds = read_mulan_arff(path)
    assert ds.name == "solo" and ds.n_bags == 3 and ds.test_mask is None
    assert ds.bag_ids == ("1", "2", "3")


def test_pair_subset_carries_the_test_mask(tmp_path: Path) -> None:
    ds = read_mulan_arff(write_pair(tmp_path)[0])
    sub = ds.subset([4, 0])
    assert sub.test_mask is not None and sub.test_mask.tolist() == [True, False]


def test_pair_with_different_attributes(tmp_path: Path) -> None:
    _, test = write_pair(tmp_path)
    test.write_text(test.read_text().replace("@attribute f1 numeric", "@attribute g1 numeric"))
    message = one_line_error(
        test, r"toy-test\.arff: attribute 2 is 'g1' \(numeric\) but in toy-train\.arff it is 'f1'"
    )
    assert "same attributes in the same order" in message


def test_pair_with_an_extra_attribute(tmp_path: Path) -> None:
    train, _ = write_pair(tmp_path)
    attributes = [(f, "numeric") for f in FEATURES] + [(n, "{0,1}") for n in LABELS]
    write_mulan(
        train, [[*r, 0] for r in rows_of(X, Y)], attributes=[*attributes, ("extra", "numeric")]
    )
    one_line_error(
        train,
        r"toy-test\.arff: declares 5 attributes but toy-train\.arff declares 6; the first "
        r"extra one is 'extra' in toy-train\.arff",
    )


def test_pair_with_a_bad_test_row_names_the_test_file(tmp_path: Path) -> None:
    train, test = write_pair(tmp_path)
    test.write_text(test.read_text().replace("-1.0,-2.0,-3.0,1,0", "-1.0,-2.0,-3.0,1,2"))
    one_line_error(train, r"toy-test\.arff line 9 \(row 2\): label 'L1' has value '2'")


# --- validation ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    one_line_error(tmp_path / "absent.arff", r"absent\.arff: no such file; check the path")


def test_not_arff(tmp_path: Path) -> None:
    path = tmp_path / "table.arff"
    path.write_text("a,b,c\n1,2,3\n")
    write_label_xml(tmp_path / "table.xml", LABELS)
    one_line_error(path, r"table\.arff: not an ARFF file: line 1 'a,b,c'")


def test_missing_xml_says_where_it_was_looked_for(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "lonely-train.arff", xml=None)
    message = one_line_error(path, r"lonely-train\.arff: the Mulan label XML .*lonely\.xml is miss")
    assert "put lonely.xml beside the file, or pass xml=PATH" in message


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("<labels><label name='L0'></labels>", r"toy\.xml: not a valid label XML \(mismatched"),
        ("<tags><label name='L0'/></tags>", r"toy\.xml: root element is <tags>, not <labels>"),
        ("<labels><label/></labels>", r'toy\.xml: a <label> element has no name="\.\.\."'),
        ("<labels/>", r"toy\.xml: names no labels"),
        ("<labels><label name='L0'/><label name='L0'/></labels>", "label 'L0' is listed twice"),
    ],
)
def test_malformed_xml(tmp_path: Path, content: str, match: str) -> None:
    path = write_mulan(tmp_path / "toy.arff", xml=None)
    (tmp_path / "toy.xml").write_text(content)
    one_line_error(path, match)


def test_xml_naming_an_absent_attribute(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "toy.arff", xml=["L0", "zebra"])
    message = one_line_error(path, r"toy\.xml: names label 'zebra' that .*toy\.arff does not")
    assert "'f0', 'f1', 'f2', 'L0', 'L1'" in message


def test_nominal_feature_that_is_not_a_label(tmp_path: Path) -> None:
    attributes = [("f0", "numeric"), ("colour", "{red,blue}"), ("L0", "{0,1}"), ("L1", "{0,1}")]
    path = write_mulan(tmp_path / "nom.arff", [[1, "red", 0, 1]], attributes=attributes)
    one_line_error(
        path, r"attribute 'colour' is declared as '\{red,blue\}', is not numeric and is not a label"
    )


def test_label_declared_with_other_values(tmp_path: Path) -> None:
    attributes = [(f, "numeric") for f in FEATURES] + [("L0", "{0,1,2}"), ("L1", "{0,1}")]
    path = write_mulan(tmp_path / "tri.arff", attributes=attributes)
    one_line_error(path, r"label attribute 'L0' \(named in tri\.xml\) is declared as '\{0,1,2\}'")


def test_relational_file_is_sent_to_the_miml_reader(tmp_path: Path) -> None:
    attributes = [("id", "{a}"), ("bag", "relational\n@attribute x numeric\n@end bag")]
    attributes += [("L0", "{0,1}"), ("L1", "{0,1}")]
    path = write_mulan(tmp_path / "miml.arff", [['a,"1.0",0,1']], attributes=attributes)
    one_line_error(path, r"has a relational \(bag\) attribute, so it is MIML ARFF.*read_miml_arff")


@pytest.mark.parametrize("value", ["2", "?", "yes", "1.0"])
def test_label_value_other_than_0_or_1(tmp_path: Path, value: str) -> None:
    path = write_mulan(tmp_path / "lab.arff", rows_of(X, [[1, 0], [0, value], [1, 1]]))
    got = r"is missing \('\?'\)" if value == "?" else f"has value '{value}'"
    one_line_error(path, rf"lab\.arff line 9 \(row 2\): label 'L1' {got}; label values must be")


def test_sparse_label_value_other_than_0_or_1(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "sl.arff", rows_of(X, [[1, 0], [0, 3], [1, 1]]), sparse=True)
    one_line_error(path, r"sl\.arff line 9 \(row 2\): label 'L1' has value '3'")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("{0 1.0,5 1}", r"sparse index 5 is out of range; the header declares 5 attributes, so "),
        ("{0 1.0,-1 1}", r"sparse index -1 is out of range"),
        ("{2 1.0,1 1}", r"sparse index 1 comes after index 2; indices must be strictly"),
        ("{1 1.0,1 2.0}", r"sparse index 1 appears twice"),
        ("{x 1.0}", r"sparse entry 'x 1\.0' has index 'x', which is not an integer"),
        ("{1}", r"sparse entry '1' is not 'INDEX VALUE'"),
        ("{1 1.0", r"sparse row '\{1 1\.0' has no closing '\}'"),
        ("{1 abc}", r"attribute 'f1' has value 'abc', which is not a number"),
    ],
)
def test_bad_sparse_rows(tmp_path: Path, row: str, match: str) -> None:
    path = write_mulan(tmp_path / "sp.arff", sparse=True)
    lines = path.read_text().splitlines()
    lines[-2] = row
    path.write_text("\n".join(lines) + "\n")
    one_line_error(path, rf"sp\.arff line 9 \(row 2\): {match}")


@pytest.mark.parametrize(
    ("row", "n"), [("4.0,0.0,6.25,0", 4), ("4.0,0.0,6.25,0,1,1", 6), ("4.0", 1)]
)
def test_dense_row_with_wrong_number_of_values(tmp_path: Path, row: str, n: int) -> None:
    path = write_mulan(tmp_path / "cnt.arff")
    path.write_text(path.read_text().replace("4.0,0.0,6.25,0,1", row))
    one_line_error(
        path,
        rf"cnt\.arff line 9 \(row 2\): has {n} values but the header declares 5 attributes "
        r"\(3 features, 2 labels\); check for a missing or extra comma",
    )


def test_non_numeric_feature_value(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "nn.arff", rows_of([X[0], X[1], [7.0, "abc", 1.0]], Y))
    one_line_error(path, r"line 10 \(row 3\): attribute 'f1' has value 'abc', which is not a num")


def test_missing_nan_and_infinite_features_are_counted(tmp_path: Path) -> None:
    x = [[0.5, "?", -2.0], [4.0, "nan", "inf"], ["?", 8.0, 1e300]]
    path = write_mulan(tmp_path / "nf.arff", rows_of(x, Y))
    message = one_line_error(
        path,
        r"nf\.arff: 5 feature value\(s\) are not finite \(3 missing \('\?'\) or NaN, 1 "
        r"infinite, 1 too large for float32\), first at line 8 \(row 1\), attribute 'f1'",
    )
    assert "impute them or drop those rows" in message


def test_missing_feature_in_a_sparse_row(tmp_path: Path) -> None:
    path = write_mulan(
        tmp_path / "sq.arff", rows_of([X[0], [4.0, "?", 6.25], X[2]], Y), sparse=True
    )
    one_line_error(path, r"1 feature value\(s\) are not finite \(1 missing.*line 9 \(row 2\), at")


def test_no_data_rows(tmp_path: Path) -> None:
    path = write_mulan(tmp_path / "empty.arff", [])
    one_line_error(path, r"empty\.arff: has no data rows \(the @data section is empty\)")


def test_only_labels_no_features(tmp_path: Path) -> None:
    attributes = [("L0", "{0,1}"), ("L1", "{0,1}")]
    path = write_mulan(tmp_path / "lab.arff", Y, attributes=attributes)
    one_line_error(path, "every attribute is a label named in lab.xml; there are no features")


# --- the real Mulan sets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "n_train", "n_test", "n_features", "label_names"),
    [
        ("yeast", 1500, 917, 103, tuple(f"Class{k}" for k in range(1, 15))),
        (
            "scene",
            1211,
            1196,
            294,
            ("Beach", "Sunset", "FallFoliage", "Field", "Mountain", "Urban"),
        ),
    ],
)
def test_real_mulan_pairs(
    shared_data: Path,
    stem: str,
    n_train: int,
    n_test: int,
    n_features: int,
    label_names: tuple[str, ...],
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = read_mulan_arff(shared_data / "mulan" / f"{stem}-test.arff")
    assert ds.name == stem
    n_labels = len(label_names)
    assert (ds.n_bags, ds.n_features, ds.n_labels) == (n_train + n_test, n_features, n_labels)
    assert ds.label_names == label_names
    assert ds.feature_names[:2] == ("Att1", "Att2")
    assert ds.is_vector and ds.test_mask is not None
    assert int(ds.test_mask.sum()) == n_test and not ds.test_mask[:n_train].any()
    assert ds.bag_ids[n_train - 1] == f"train-{n_train}" and ds.bag_ids[-1] == f"test-{n_test}"
    assert ds.labels.shape == (n_train + n_test, n_labels)
    # Every example has at least one label in both sets.
    assert ds.labels.sum(axis=1).min() >= 1


def test_real_yeast_equals_scipy(shared_data: Path) -> None:
    """The small parser agrees value for value with scipy's ARFF reader (dense files)."""
    ds = read_mulan_arff(shared_data / "mulan" / "yeast-train.arff")
    assert ds.test_mask is not None
    for part, mask in (("train", ~ds.test_mask), ("test", ds.test_mask)):
        data, meta = scipy_arff.loadarff(shared_data / "mulan" / f"yeast-{part}.arff")
        names = meta.names()
        x = np.stack([data[n] for n in names[:103]], axis=1).astype(np.float32)
        y = np.stack([data[n] == b"1" for n in names[103:]], axis=1)
        np.testing.assert_array_equal(np.concatenate([ds.bags[i] for i in np.flatnonzero(mask)]), x)
        np.testing.assert_array_equal(ds.labels[mask], y)
