"""read_miml_arff and MIMLDataset: small files written here, then the real MIML sets."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tuner.data import DataWarning, MIMLDataset, read_miml_arff
from tuner.errors import MimlTuneError


def miml_arff_text(
    bags: Sequence[Sequence[Sequence[Any]]],
    labels: Sequence[Sequence[Any]],
    *,
    ids: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    id_type: str = "nominal",
) -> str:
    """The text of a MIML ARFF file; values are written with ``str`` so '?' or 'abc' go in."""
    n_features = max((len(inst) for bag in bags for inst in bag), default=2)
    feature_names = feature_names or [f"f{j}" for j in range(n_features)]
    label_names = label_names or [f"L{k}" for k in range(len(labels[0]))]
    ids = ids if ids is not None else [f"b{i}" for i in range(len(bags))]
    id_decl = "{" + ",".join(dict.fromkeys(ids)) + "}" if id_type == "nominal" else "string"
    lines = ["@relation test", f"@attribute id {id_decl}", "@attribute bag relational"]
    lines += [f"  @attribute {f} numeric" for f in feature_names]
    lines += ["@end bag"]
    lines += [f"@attribute {n} {{0,1}}" for n in label_names]
    lines += ["", "@data"]
    for bag_id, bag, row_labels in zip(ids, bags, labels, strict=True):
        instances = "\\n".join(",".join(str(v) for v in inst) for inst in bag)
        id_text = bag_id if id_type == "nominal" else f"'{bag_id}'"
        lines.append(f'{id_text},"{instances}",' + ",".join(str(v) for v in row_labels))
    return "\n".join(lines) + "\n"


def write_miml_arff(
    path: Path,
    bags: Sequence[Sequence[Sequence[Any]]],
    labels: Sequence[Sequence[Any]],
    *,
    xml_labels: Sequence[str] | None = None,
    **kwargs: Any,
) -> Path:
    """Writes a MIML ARFF file (and a Mulan label XML beside it when ``xml_labels`` is given)."""
    path.write_text(miml_arff_text(bags, labels, **kwargs))
    if xml_labels is not None:
        write_label_xml(path.with_suffix(".xml"), xml_labels)
    return path


def write_label_xml(path: Path, names: Sequence[str]) -> Path:
    items = "".join(f'  <label name="{n}"/>\n' for n in names)
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<labels xmlns="http://mulan.sourceforge.net/labels">\n{items}</labels>\n'
    )
    return path


BAGS = [
    [[0.5, 1.0, -2.0], [1.5, 2.0, 3.25]],
    [[4.0, 5.0, 6.0]],
    [[7.0, 8.0, 9.0], [1.0, 1.0, 1.0], [0.0, -0.5, 1e-3]],
]
LABELS = [[1, 0], [0, 1], [1, 1]]


def small(tmp_path: Path, name: str = "small.arff", **kwargs: Any) -> Path:
    kwargs.setdefault("bags", BAGS)
    kwargs.setdefault("labels", LABELS)
    return write_miml_arff(tmp_path / name, **kwargs)


def one_line_error(path: Path, match: str) -> str:
    """Reads ``path`` expecting a MimlTuneError whose one-line message matches ``match``."""
    with pytest.raises(MimlTuneError, match=match) as info:
        read_miml_arff(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message or str(path.with_suffix(".xml")) in message
    return message


# --- parsing -------------------------------------------------------------------------------


def test_parses_ids_shapes_labels_and_names(tmp_path: Path) -> None:
    path = small(tmp_path, feature_names=["x", "y", "z"], label_names=["cat", "dog"])
    ds = read_miml_arff(path)
    assert ds.name == "small"
    assert ds.source == os.path.abspath(path)
    assert ds.bag_ids == ("b0", "b1", "b2")
    assert ds.feature_names == ("x", "y", "z")
    assert ds.label_names == ("cat", "dog")
    assert (ds.n_bags, ds.n_features, ds.n_labels, ds.n_instances) == (3, 3, 2, 6)
    assert ds.instance_counts.tolist() == [2, 1, 3]
    for bag, expected in zip(ds.bags, BAGS, strict=True):
        assert bag.dtype == np.float32 and bag.flags.c_contiguous
        np.testing.assert_array_equal(bag, np.asarray(expected, dtype=np.float32))
    assert ds.labels.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, np.asarray(LABELS))


def test_name_argument_overrides_the_stem(tmp_path: Path) -> None:
    assert read_miml_arff(small(tmp_path), name="mine").name == "mine"


def test_string_bag_ids_with_spaces_and_unicode(tmp_path: Path) -> None:
    ids = ["bag one", "zweite Tüte", "b,3"]
    ds = read_miml_arff(small(tmp_path, ids=ids, id_type="string"))
    assert ds.bag_ids == tuple(ids)
    np.testing.assert_array_equal(ds.bags[2][2], np.asarray([0.0, -0.5, 1e-3], dtype=np.float32))


def test_comments_blank_lines_crlf_and_spaces_after_commas(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).replace(",", ", ").replace("\n", "\r\n")
    text = "% a comment\r\n\r\n" + text.replace("@data", "@data\r\n% rows follow\r\n")
    (tmp_path / "spaced.arff").write_text(text)
    ds = read_miml_arff(tmp_path / "spaced.arff")
    assert ds.bag_ids == ("b0", "b1", "b2")
    np.testing.assert_array_equal(ds.bags[0], np.asarray(BAGS[0], dtype=np.float32))


def test_without_xml_labels_are_the_trailing_binary_attributes(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).replace(
        "@attribute L0", "@attribute fold {train,test}\n@attribute L0"
    )
    text = re.sub(r'(",)([01],[01])$', r"\1train,\2", text, flags=re.MULTILINE)
    (tmp_path / "fold.arff").write_text(text)
    with pytest.warns(DataWarning, match=r"ignoring attribute 'fold'.*trailing \{0,1\}"):
        ds = read_miml_arff(tmp_path / "fold.arff")
    assert ds.label_names == ("L0", "L1")
    np.testing.assert_array_equal(ds.labels, np.asarray(LABELS))


def test_xml_names_the_labels_and_arff_order_is_kept(tmp_path: Path) -> None:
    labels = [[1, 0, 1], [0, 1, 1], [1, 1, 0]]
    path = small(tmp_path, labels=labels, label_names=["a", "b", "c"], xml_labels=["c", "a"])
    with pytest.warns(DataWarning, match=r"ignoring attribute 'b'.*not named in small\.xml"):
        ds = read_miml_arff(path)
    assert ds.label_names == ("a", "c")
    np.testing.assert_array_equal(ds.labels, np.asarray(labels)[:, [0, 2]])


def test_xml_with_all_labels_in_another_order(tmp_path: Path) -> None:
    path = small(tmp_path, label_names=["a", "b"], xml_labels=["b", "a"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = read_miml_arff(path)
    assert ds.label_names == ("a", "b")


def test_never_positive_label_warns_and_data_is_returned(tmp_path: Path) -> None:
    path = small(tmp_path, labels=[[1, 0], [0, 0], [1, 0]], label_names=["seen", "ghost"])
    with pytest.warns(DataWarning, match=r"small\.arff: label never positive: 'ghost'"):
        ds = read_miml_arff(path)
    assert ds.labels[:, 1].sum() == 0


def test_always_positive_label_warns(tmp_path: Path) -> None:
    path = small(tmp_path, labels=[[1, 0], [1, 1], [1, 0]], label_names=["everywhere", "x"])
    with pytest.warns(DataWarning, match="positive in every bag: 'everywhere'"):
        read_miml_arff(path)


# --- validation: the file ------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    one_line_error(tmp_path / "absent.arff", "absent.arff: no such file")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.arff").mkdir()
    one_line_error(tmp_path / "dir.arff", "is a directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = small(tmp_path)
    path.chmod(0)
    try:
        one_line_error(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = small(tmp_path)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    one_line_error(path, "permission denied; make the file readable")


def test_csv_file_is_not_arff(tmp_path: Path) -> None:
    (tmp_path / "table.arff").write_text("a,b,c\n1,2,3\n")
    one_line_error(tmp_path / "table.arff", r"not an ARFF file: line 1 'a,b,c'")


def test_binary_file_is_not_arff(tmp_path: Path) -> None:
    (tmp_path / "blob.arff").write_bytes(b"\x89PNG\x00\x01\x02")
    one_line_error(tmp_path / "blob.arff", "binary file")


def test_header_without_data_section(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).split("@data")[0]
    (tmp_path / "nodata.arff").write_text(text)
    one_line_error(tmp_path / "nodata.arff", "no @data line")


def test_data_section_without_rows(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).split("@data")[0] + "@data\n"
    (tmp_path / "empty.arff").write_text(text)
    one_line_error(tmp_path / "empty.arff", r"has no bags")


def test_no_relational_attribute_is_not_miml(tmp_path: Path) -> None:
    text = "@relation flat\n@attribute x numeric\n@attribute L {0,1}\n@data\n1.0,0\n"
    (tmp_path / "flat.arff").write_text(text)
    one_line_error(tmp_path / "flat.arff", "not a MIML ARFF file: it has no relational")


def test_unknown_attribute_type(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).replace("@attribute L1 {0,1}", "@attribute L1 blob")
    (tmp_path / "type.arff").write_text(text)
    one_line_error(tmp_path / "type.arff", "attribute 'L1' has unknown type 'blob'")


def test_nominal_feature_is_rejected(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).replace("@attribute f1 numeric", "@attribute f1 {a,b}")
    (tmp_path / "nominal.arff").write_text(text)
    one_line_error(tmp_path / "nominal.arff", r"bag features must be numeric, but 'f1 \(nominal\)'")


def test_label_with_other_values_among_labels(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).replace("@attribute L0 {0,1}", "@attribute L0 {0,1,2}")
    text = text.replace("@attribute L1 {0,1}", "@attribute L1 {0,1}\n@attribute L2 {0,1}")
    text = re.sub(r"([01])$", r"\1,\1", text, flags=re.MULTILINE)
    (tmp_path / "ternary.arff").write_text(text)
    # L0 is not binary and L1, L2 are the trailing labels: L0 is simply not a label ...
    with pytest.warns(DataWarning, match="ignoring attribute 'L0'"):
        read_miml_arff(tmp_path / "ternary.arff")
    # ... but a non-binary attribute between binary ones is a broken label declaration.
    text = text.replace("@attribute L0 {0,1,2}", "@attribute L0 {0,1}").replace(
        "@attribute L1 {0,1}", "@attribute L1 {0,1,2}"
    )
    (tmp_path / "ternary.arff").write_text(text)
    one_line_error(
        tmp_path / "ternary.arff", r"attribute 'L1', declared as '\{0,1,2\}', sits among the"
    )


def test_no_label_attributes(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).replace("@attribute L1 {0,1}", "@attribute L1 numeric")
    (tmp_path / "nolabel.arff").write_text(text)
    one_line_error(tmp_path / "nolabel.arff", "no label attributes: the last attribute 'L1'")


# --- validation: the rows ------------------------------------------------------------------


def test_empty_bag_names_the_bag(tmp_path: Path) -> None:
    path = small(tmp_path, bags=[BAGS[0], [], BAGS[2]])
    one_line_error(path, r"line \d+ \(bag 'b1'\): the bag is empty \(zero instances\)")


def test_missing_feature_value_names_bag_and_feature(tmp_path: Path) -> None:
    bags = [BAGS[0], BAGS[1], [[7.0, 8.0, 9.0], [1.0, "?", 1.0]]]
    path = small(tmp_path, bags=bags, feature_names=["x", "y", "z"])
    one_line_error(path, r"\(bag 'b2'\): instance 2, feature 'y' is missing \('\?'\) or NaN")


def test_nan_feature(tmp_path: Path) -> None:
    path = small(tmp_path, bags=[[[0.0, "nan", 1.0]], BAGS[1], BAGS[2]])
    one_line_error(path, r"\(bag 'b0'\): instance 1, feature 'f1' is missing")


def test_infinite_feature(tmp_path: Path) -> None:
    path = small(tmp_path, bags=[BAGS[0], [[1.0, 2.0, "-inf"]], BAGS[2]])
    one_line_error(path, r"\(bag 'b1'\): instance 1, feature 'f2' is infinite")


def test_feature_too_large_for_float32(tmp_path: Path) -> None:
    path = small(tmp_path, bags=[BAGS[0], [[1.0, 1e300, 0.0]], BAGS[2]])
    one_line_error(path, r"\(bag 'b1'\): instance 1, feature 'f1' is 1e\+300, too large")


def test_non_numeric_feature(tmp_path: Path) -> None:
    path = small(tmp_path, bags=[BAGS[0], BAGS[1], [[7.0, 8.0, 9.0], [1.0, 1.0, "abc"]]])
    one_line_error(path, r"\(bag 'b2'\): instance 2, feature 'f2' has value 'abc', which is not")


def test_instance_with_extra_value(tmp_path: Path) -> None:
    path = small(tmp_path, bags=[BAGS[0], [[4.0, 5.0, 6.0, 7.0]], BAGS[2]])
    text = path.read_text().replace("@attribute f3 numeric\n", "")
    path.write_text(text)
    one_line_error(path, r"\(bag 'b1'\): instance 1 has 4 feature values but the bag .* 3")


def test_instance_with_missing_value(tmp_path: Path) -> None:
    path = small(tmp_path, bags=[BAGS[0], BAGS[1], [[7.0, 8.0, 9.0], [1.0, 1.0]]])
    one_line_error(path, r"\(bag 'b2'\): instance 2 has 2 feature values .* declares 3 features")


def test_row_with_missing_field(tmp_path: Path) -> None:
    path = small(tmp_path)
    path.write_text(path.read_text().replace('",0,1\n', '",1\n'))
    one_line_error(path, r"\(bag 'b1'\): has 3 fields but the header declares 4 attributes")


def test_label_value_outside_binary(tmp_path: Path) -> None:
    path = small(tmp_path, labels=[[1, 0], [0, 2], [1, 1]], label_names=["cat", "dog"])
    one_line_error(path, r"\(bag 'b1'\): label 'dog' has value '2'; label values must be 0 or 1")


def test_missing_label_value(tmp_path: Path) -> None:
    path = small(tmp_path, labels=[[1, 0], [0, 1], ["?", 1]], label_names=["cat", "dog"])
    one_line_error(path, r"\(bag 'b2'\): label 'cat' is missing \('\?'\)")


def test_duplicate_bag_ids(tmp_path: Path) -> None:
    path = small(tmp_path, ids=["b0", "b1", "b0"])
    one_line_error(path, r"bag id 'b0' appears on line \d+ and line \d+; bag ids must be unique")


def test_undeclared_nominal_bag_id(tmp_path: Path) -> None:
    path = small(tmp_path)
    path.write_text(path.read_text().replace("{b0,b1,b2}", "{b0,b1}"))
    one_line_error(path, r"bag id 'b2' is not among the values declared for .* 'id'")


def test_xml_naming_an_absent_label(tmp_path: Path) -> None:
    path = small(tmp_path, label_names=["a", "b"], xml_labels=["a", "zebra"])
    message = one_line_error(path, r"small\.xml: names label 'zebra' that .*small\.arff")
    assert "'a', 'b'" in message


def test_malformed_xml(tmp_path: Path) -> None:
    path = small(tmp_path)
    path.with_suffix(".xml").write_text("<labels><label name='a'></labels>")
    one_line_error(path, r"small\.xml: not a valid label XML")


def test_xml_label_that_is_not_binary(tmp_path: Path) -> None:
    path = small(tmp_path, label_names=["a", "b"], xml_labels=["a", "b"])
    path.write_text(path.read_text().replace("@attribute b {0,1}", "@attribute b {0,1,2}"))
    one_line_error(path, r"label attribute 'b' \(named in small\.xml\) is declared as '\{0,1,2\}'")


def test_scipy_parse_error_becomes_one_line(tmp_path: Path) -> None:
    text = miml_arff_text(BAGS, LABELS).replace(
        "@attribute L0", "@attribute weight numeric\n@attribute L0"
    )
    text = re.sub(r'(",)([01],[01])$', r"\1heavy,\2", text, flags=re.MULTILINE)
    (tmp_path / "weight.arff").write_text(text)
    with pytest.warns(DataWarning, match="ignoring attribute 'weight'"):
        one_line_error(tmp_path / "weight.arff", r"scipy could not parse the ARFF data")


# --- MIMLDataset ---------------------------------------------------------------------------


def test_fingerprint_ignores_ids_names_and_source(tmp_path: Path) -> None:
    a = read_miml_arff(small(tmp_path, name="a.arff"))
    b = read_miml_arff(
        small(tmp_path, name="b.arff", ids=["x", "y", "z"], feature_names=["p", "q", "r"])
    )
    assert re.fullmatch(r"[0-9a-f]{16}", a.fingerprint())
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_is_sensitive_to_values_labels_names_and_order(tmp_path: Path) -> None:
    base = read_miml_arff(small(tmp_path)).fingerprint()
    changed_value = [BAGS[0], [[4.0, 5.0, 6.0001]], BAGS[2]]
    variants: dict[str, dict[str, Any]] = {
        "value": dict(bags=changed_value),
        "label": dict(labels=[[1, 0], [0, 1], [1, 0]]),
        "label name": dict(label_names=["L0", "other"]),
        "bag order": dict(
            bags=[BAGS[1], BAGS[0], BAGS[2]], labels=[LABELS[1], LABELS[0], LABELS[2]]
        ),
        "bag split": dict(bags=[BAGS[0][:1], BAGS[0][1:] + BAGS[1], BAGS[2]]),
    }
    for what, kwargs in variants.items():
        other = read_miml_arff(small(tmp_path, name=f"v{len(what)}.arff", **kwargs))
        assert other.fingerprint() != base, what


def test_subset_keeps_the_order_of_indices(tmp_path: Path) -> None:
    ds = read_miml_arff(small(tmp_path))
    sub = ds.subset([2, 0])
    assert sub.bag_ids == ("b2", "b0")
    assert sub.bags[0] is ds.bags[2]
    np.testing.assert_array_equal(sub.labels, ds.labels[[2, 0]])
    assert (sub.name, sub.source, sub.label_names) == (ds.name, ds.source, ds.label_names)
    assert ds.subset(np.array([2, 0])).fingerprint() == sub.fingerprint()
    assert ds.subset([0, 1, 2]).fingerprint() == ds.fingerprint()
    assert sub.fingerprint() != ds.subset([0, 2]).fingerprint()


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        ([0, 3], "index 3 is out of range; allowed 0..2"),
        ([-1], "index -1 is out of range"),
        ([], "non-empty"),
        ([[0, 1]], "1-D"),
        (np.array([True, False, True]), "np.flatnonzero"),
        ([0.5], "integer bag positions"),
    ],
)
def test_subset_rejects_bad_indices(tmp_path: Path, indices: Any, match: str) -> None:
    ds = read_miml_arff(small(tmp_path))
    with pytest.raises(MimlTuneError, match=match):
        ds.subset(indices)


def test_dataset_checks_its_parts() -> None:
    bag = np.zeros((2, 3), dtype=np.float32)
    good: dict[str, Any] = dict(
        name="t",
        bags=(bag,),
        labels=np.zeros((1, 2), dtype=np.uint8),
        bag_ids=("a",),
        label_names=("x", "y"),
        feature_names=("f0", "f1", "f2"),
        source="mem",
    )
    ds = MIMLDataset(**good)
    assert repr(ds) == (
        "MIMLDataset(name='t', n_bags=1, n_instances=2, n_features=3, n_labels=2, source='mem')"
    )
    bad = {
        "bags": ((bag.astype(np.float64),), "C-contiguous 2-D float32"),
        "feature_names": (("f0",), r"expected \(n_instances >= 1, 1\)"),
        "labels": (np.zeros((1, 3), dtype=np.uint8), r"shape \(1, 2\)"),
        "bag_ids": (("a", "b"), "2 bag ids for 1 bags"),
    }
    for key, (value, match) in bad.items():
        with pytest.raises(MimlTuneError, match=match):
            MIMLDataset(**{**good, key: value})
    with pytest.raises(MimlTuneError, match="labels must be 0 or 1"):
        MIMLDataset(**{**good, "labels": np.full((1, 2), 2, dtype=np.uint8)})


# --- the real MIML sets --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "n_bags", "n_instances", "n_features", "n_labels", "first_labels"),
    [
        ("birds", 257, 2062, 38, 19, ("BRCR", "PAWR", "PSFL")),
        ("scene", 2000, 18000, 15, 5, ("desert", "mountains", "sea")),
        ("reuters", 2000, 7119, 243, 7, ("label1", "label2", "label3")),
    ],
)
def test_real_miml_sets(
    shared_data: Path,
    stem: str,
    n_bags: int,
    n_instances: int,
    n_features: int,
    n_labels: int,
    first_labels: tuple[str, ...],
) -> None:
    ds = read_miml_arff(shared_data / "miml" / f"{stem}.arff")
    assert (ds.n_bags, ds.n_instances, ds.n_features, ds.n_labels) == (
        n_bags,
        n_instances,
        n_features,
        n_labels,
    )
    assert ds.label_names[:3] == first_labels
    assert len(set(ds.bag_ids)) == n_bags
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in ds.bags)
    assert ds.labels.sum(axis=1).min() >= 0 and set(np.unique(ds.labels)) <= {0, 1}
    if stem == "scene":
        assert set(ds.instance_counts.tolist()) == {9}


def test_real_birds_values(shared_data: Path) -> None:
    ds = read_miml_arff(shared_data / "miml" / "birds.arff")
    assert ds.bag_ids[:3] == ("2", "4", "5")
    np.testing.assert_allclose(ds.bags[0][0, :4], [0.954148, 0.938716, 0.403581, 0.508965])
    np.testing.assert_allclose(ds.bags[0][1, :2], [0.941444, 0.963083])
    assert ds.instance_counts.min() == 2 and ds.instance_counts.max() == 36


def test_duplicate_attribute_names(tmp_path: Path) -> None:
    path = small(tmp_path, feature_names=["x", "y", "x"])
    one_line_error(path, r"attribute name 'x' is declared twice")
