"""Reading Mulan multi-label ARFF files (vector data) with their label XML.

A Mulan data set is an ordinary ARFF file whose label attributes are named by an XML file::

    @relation yeast
    @attribute Att1 numeric
    @attribute Att2 numeric
    @attribute Class1 {0,1}
    @attribute Class2 {0,1}
    @data
    0.09,-0.12,1,0
    {0 0.5,3 1}

    <labels xmlns="http://mulan.sourceforge.net/labels">
      <label name="Class1"/><label name="Class2"/>
    </labels>

Rows are dense (one value per attribute) or sparse (``{index value, ...}``, omitted values are
0). Every row becomes a bag of one instance, so vector learners and MIML learners read the same
:class:`MIMLDataset`. Mulan ships many sets as a ``NAME-train.arff`` / ``NAME-test.arff`` pair
with one ``NAME.xml``; such a pair is one dataset whose ``test_mask`` marks the official test
rows, which become the holdout.

The header is read by the MIML ARFF reader's parser; the rows by a small parser here, since
``scipy.io.arff`` cannot read sparse rows and liac-arff is slow on large files.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuner.data.arff_header import (
    _ESCAPE,
    _Attribute,
    _names,
    _parse_header,
    _read_label_xml,
    _read_text,
    _short,
    _split_fields,
)
from tuner.data.dataset import MIMLDataset, warn_constant_labels
from tuner.errors import MimlTuneError

__all__ = ["mulan_pair", "read_mulan_arff"]

_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>train|test)$", re.IGNORECASE)


@dataclass
class _Part:
    """One ARFF file of a dataset, parsed: features, labels and where each row came from."""

    path: Path
    attributes: list[_Attribute]
    label_names: list[str]  # as the XML lists them
    features: np.ndarray  # (n_rows, n_features) float32
    labels: np.ndarray  # (n_rows, n_labels) uint8


def mulan_pair(path: str | os.PathLike[str]) -> tuple[Path, Path | None, str]:
    """The files a Mulan path stands for: ``(first, test or None, dataset stem)``.

    ``NAME-train.arff``, ``NAME-test.arff`` and ``NAME`` (the common stem, when no such file
    exists) all stand for the pair ``NAME-train.arff`` + ``NAME-test.arff`` when both exist.
    Any other file stands for itself.

    Args:
        path: a file, or the stem of a train/test pair.

    Returns:
        The train (or only) file, the test file of a pair (``None`` for a single file) and the
        dataset's stem (``NAME``; the file's stem for a single file).
    """
    path = Path(path)
    m = _SPLIT.match(path.stem) if path.suffix.lower() == ".arff" else None
    if m is not None:
        stem = m.group("stem")
        train = path.with_name(f"{stem}-train{path.suffix}")
        test = path.with_name(f"{stem}-test{path.suffix}")
        if train.is_file() and test.is_file():
            return train, test, stem
        return path, None, stem
    if not path.exists():
        base = path.with_suffix("") if path.suffix.lower() == ".arff" else path
        train = base.with_name(f"{base.name}-train.arff")
        test = base.with_name(f"{base.name}-test.arff")
        if train.is_file() and test.is_file():
            return train, test, base.name
    return path, None, path.stem


def _label_names(xml_path: Path, arff: Path) -> list[str]:
    """Every ``<label name="...">`` of a Mulan label XML, hierarchies included, in file order."""
    if not xml_path.is_file():
        raise MimlTuneError(
            f"{arff}: the Mulan label XML {xml_path} is missing; Mulan ARFF needs it to tell "
            f"labels from features: put {xml_path.name} beside the file, or pass xml=PATH"
        )
    return _read_label_xml(
        xml_path,
        str(arff),
        fix='a Mulan label XML looks like <labels xmlns="http://mulan.sourceforge.net/labels">'
        '<label name="X"/></labels>',
    )


def _roles(
    path: Path, xml_path: Path, attributes: list[_Attribute], wanted: list[str]
) -> tuple[list[int], list[int]]:
    """The feature and the label attribute indices, each in ARFF order."""
    by_name = {a.name: i for i, a in enumerate(attributes)}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise MimlTuneError(
            f"{xml_path}: names label {_names(missing)} that {path} does not declare; its "
            f"attributes are {_names([a.name for a in attributes]) or 'none'}: fix the XML "
            "or pass the XML that belongs to this file"
        )
    wanted_set = set(wanted)
    labels = [i for i, a in enumerate(attributes) if a.name in wanted_set]
    for i in labels:
        attr = attributes[i]
        if not (attr.kind == "numeric" or _is_binary(attr)):
            raise MimlTuneError(
                f"{path}: label attribute {attr.name!r} (named in {xml_path.name}) is declared "
                f"as {_declared(attr)}; labels must be nominal {{0,1}} (or numeric 0/1)"
            )
    features = [i for i, a in enumerate(attributes) if a.name not in wanted_set]
    other = [attributes[i] for i in features if attributes[i].kind != "numeric"]
    if other:
        more = f" (and {len(other) - 1} more)" if len(other) > 1 else ""
        raise MimlTuneError(
            f"{path}: attribute {other[0].name!r}{more} is declared as {_declared(other[0])}, "
            f"is not numeric and is not a label named in {xml_path.name}; features must be "
            "numeric: encode it as numbers, or add it to the XML if it is a label"
        )
    if not features:
        raise MimlTuneError(
            f"{path}: every attribute is a label named in {xml_path.name}; there are no "
            "features to learn from"
        )
    return features, labels


def _is_binary(attr: _Attribute) -> bool:
    return attr.kind == "nominal" and sorted(attr.values) == ["0", "1"]


def _declared(attr: _Attribute) -> str:
    return _short("{" + ",".join(attr.values) + "}") if attr.kind == "nominal" else attr.kind


def _fields(text: str, at: str) -> list[str]:
    if "'" in text or '"' in text:
        try:
            values, _, _ = _split_fields(text)
        except ValueError as exc:
            raise MimlTuneError(f"{at}: {exc}; check the quotes of the row") from None
        return [_ESCAPE.sub(r"\1", v) for v in values]
    return [v.strip() for v in text.split(",")]


def _number(token: str, attr: _Attribute, at: str) -> float:
    if token == "?":
        return math.nan
    try:
        return float(token)
    except ValueError:
        raise MimlTuneError(
            f"{at}: attribute {attr.name!r} has value {_short(token)}, which is not a number; "
            "features must be numeric"
        ) from None


def _sparse_row(text: str, attributes: list[_Attribute], at: str) -> list[str]:
    """The dense field list of a sparse row ``{index value, ...}``; omitted values are 0."""
    if not text.endswith("}"):
        raise MimlTuneError(
            f"{at}: sparse row {_short(text)} has no closing '}}'; sparse rows look like "
            "{0 0.5,3 1}"
        )
    n = len(attributes)
    values = ["0"] * n
    body = text[1:-1].strip()
    if not body:
        return values
    previous = -1
    for item in _fields(body, at):
        parts = item.split(None, 1)
        if len(parts) != 2:
            raise MimlTuneError(
                f"{at}: sparse entry {_short(item)} is not 'INDEX VALUE'; sparse rows look "
                "like {0 0.5,3 1}"
            )
        try:
            index = int(parts[0])
        except ValueError:
            raise MimlTuneError(
                f"{at}: sparse entry {_short(item)} has index {_short(parts[0])}, which is not "
                "an integer; sparse rows look like {0 0.5,3 1}"
            ) from None
        if not 0 <= index < n:
            raise MimlTuneError(
                f"{at}: sparse index {index} is out of range; the header declares {n} "
                f"attributes, so indices run 0..{n - 1} (0-based)"
            )
        if index <= previous:
            problem = "appears twice" if index == previous else f"comes after index {previous}"
            raise MimlTuneError(
                f"{at}: sparse index {index} {problem}; indices must be strictly increasing"
            )
        previous = index
        values[index] = _ESCAPE.sub(r"\1", _unquote(parts[1].strip()))
    return values


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


def _read_part(path: Path, xml_path: Path, wanted: list[str] | None) -> _Part:
    """Parses one Mulan ARFF file; ``wanted`` are the label names (read from ``xml_path``)."""
    where = str(path)
    text = _read_text(path)
    attributes, _, rows = _parse_header(path, text)
    if any(a.kind == "relational" for a in attributes):
        raise MimlTuneError(
            f"{path}: has a relational (bag) attribute, so it is MIML ARFF, not Mulan ARFF; "
            "read it with read_miml_arff (load_dataset picks the reader by content)"
        )
    if wanted is None:
        wanted = _label_names(xml_path, path)
    feature_idx, label_idx = _roles(path, xml_path, attributes, wanted)
    if not rows:
        raise MimlTuneError(
            f"{where}: has no data rows (the @data section is empty); add rows or pass another file"
        )
    n_attrs = len(attributes)
    features = np.empty((len(rows), len(feature_idx)), dtype=np.float64)
    labels = np.empty((len(rows), len(label_idx)), dtype=np.uint8)
    feature_attrs = [attributes[i] for i in feature_idx]
    for r, (number, line) in enumerate(rows):
        at = f"{where} line {number} (row {r + 1})"
        if line.startswith("{"):
            values = _sparse_row(line, attributes, at)
        else:
            values = _fields(line, at)
            if len(values) != n_attrs:
                raise MimlTuneError(
                    f"{at}: has {len(values)} values but the header declares {n_attrs} "
                    f"attributes ({len(feature_idx)} features, {len(label_idx)} labels); check "
                    "for a missing or extra comma"
                )
        for k, i in enumerate(label_idx):
            value = values[i]
            if value == "1":
                labels[r, k] = 1
            elif value == "0":
                labels[r, k] = 0
            else:
                got = "is missing ('?')" if value == "?" else f"has value {_short(value)}"
                raise MimlTuneError(
                    f"{at}: label {attributes[i].name!r} {got}; label values must be 0 or 1"
                )
        tokens = [values[i] for i in feature_idx]
        try:
            features[r] = [float(t) for t in tokens]
        except ValueError:
            features[r] = [_number(t, a, at) for t, a in zip(tokens, feature_attrs, strict=True)]
    return _Part(path, attributes, wanted, _finite(path, features, feature_attrs, rows), labels)


def _finite(
    path: Path, values: np.ndarray, attrs: list[_Attribute], rows: list[tuple[int, str]]
) -> np.ndarray:
    """``values`` as float32, or the error that counts and locates the non-finite ones."""
    with np.errstate(over="ignore"):  # reported below as too large for float32
        as_float32 = np.ascontiguousarray(values, dtype=np.float32)
    bad = ~np.isfinite(as_float32)
    if not bad.any():
        return as_float32
    missing = np.isnan(values)
    infinite = np.isinf(values)
    counts = [
        (int(missing.sum()), "missing ('?') or NaN"),
        (int(infinite.sum()), "infinite"),
        (int((bad & ~missing & ~infinite).sum()), "too large for float32"),
    ]
    what = ", ".join(f"{n} {kind}" for n, kind in counts if n)
    r, j = (int(x[0]) for x in np.nonzero(bad))
    raise MimlTuneError(
        f"{path}: {int(bad.sum())} feature value(s) are not finite ({what}), first at line "
        f"{rows[r][0]} (row {r + 1}), attribute {attrs[j].name!r}; features must be finite "
        "numbers: impute them or drop those rows"
    )


def _same_attributes(train: _Part, test: _Part) -> None:
    """Raises unless the two files of a pair declare the same attributes in the same order."""
    a, b = train.attributes, test.attributes
    for k, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if (x.name, x.kind, x.values) != (y.name, y.kind, y.values):
            raise MimlTuneError(
                f"{test.path}: attribute {k} is {y.name!r} ({_declared(y)}) but in "
                f"{train.path.name} it is {x.name!r} ({_declared(x)}); the train and test "
                "files of a pair must declare the same attributes in the same order"
            )
    if len(a) != len(b):
        longer, extra = (train, a[len(b)]) if len(a) > len(b) else (test, b[len(a)])
        raise MimlTuneError(
            f"{test.path}: declares {len(b)} attributes but {train.path.name} declares "
            f"{len(a)}; the first extra one is {extra.name!r} in {longer.path.name}; the "
            "train and test files of a pair must declare the same attributes"
        )


def read_mulan_arff(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    xml: str | os.PathLike[str] | None = None,
) -> MIMLDataset:
    """Reads a Mulan multi-label ARFF file, or a ``NAME-train.arff`` / ``NAME-test.arff`` pair.

    The labels are the attributes the Mulan label XML names (anywhere among the attributes;
    ``<label>`` elements nested in hierarchies count too); label columns keep the order of the
    ARFF attributes. Every other attribute is a feature and must be numeric. Each row becomes a
    bag of one instance.

    Passing ``NAME-train.arff``, ``NAME-test.arff`` or the stem ``NAME`` of a pair whose two
    files exist reads both: train rows first, then test rows, with ``test_mask`` marking the
    test rows and bag ids ``train-1``... and ``test-1``.... A single file gets bag ids
    ``1``...``n`` and no ``test_mask``.

    Args:
        path: the ``.arff`` file, either file of a pair, or a pair's common stem.
        name: the dataset's name; defaults to ``NAME`` (the stem without ``-train``/``-test``).
        xml: the label XML; defaults to ``NAME.xml`` beside the file (then ``<file stem>.xml``).

    Returns:
        The dataset: ``(1, n_features)`` float32 bags, uint8 labels, ``source`` the absolute
        path of the (train) file.

    Raises:
        MimlTuneError: missing or unreadable file, not an ARFF file, a relational attribute
            (MIML ARFF: use :func:`~tuner.data.arff.read_miml_arff`), a missing or malformed
            label XML or one naming an attribute the file lacks, a non-numeric feature
            attribute, a row with the wrong number of values, a bad sparse index (not an
            integer, out of range, not increasing), a label value other than 0/1, missing / NaN
            / infinite feature values, no data rows, or a pair whose files declare different
            attributes. The message names the file and, where it applies, the line and row.

    Warns:
        DataWarning: a label no row carries, or every row carries.
    """
    first, test, stem = mulan_pair(path)
    if xml is not None:
        xml_path = Path(xml)
    else:
        xml_path = first.with_name(f"{stem}.xml")
        if not xml_path.is_file() and first.with_suffix(".xml").is_file():
            xml_path = first.with_suffix(".xml")
    # The XML is read once the file's header is known to be ARFF, so a wrong path or a file
    # of another kind is reported as such, not as a missing XML.
    parts = [_read_part(first, xml_path, None)]
    wanted = parts[0].label_names
    if test is not None:
        parts.append(_read_part(test, xml_path, wanted))
        _same_attributes(parts[0], parts[1])
    head = parts[0]
    features = np.concatenate([p.features for p in parts]) if len(parts) > 1 else head.features
    labels = np.concatenate([p.labels for p in parts]) if len(parts) > 1 else head.labels
    if test is None:
        bag_ids = tuple(str(r) for r in range(1, len(labels) + 1))
        test_mask = None
    else:
        n_train, n_test = len(parts[0].labels), len(parts[1].labels)
        bag_ids = tuple(
            [f"train-{r}" for r in range(1, n_train + 1)]
            + [f"test-{r}" for r in range(1, n_test + 1)]
        )
        test_mask = np.zeros(n_train + n_test, dtype=bool)
        test_mask[n_train:] = True
    is_label = set(wanted)
    label_names = tuple(a.name for a in head.attributes if a.name in is_label)
    feature_names = tuple(a.name for a in head.attributes if a.name not in is_label)
    where = first if test is None else f"{first} + {test.name}"
    warn_constant_labels(where, labels, label_names, unit="row")
    return MIMLDataset(
        name=stem if name is None else name,
        bags=tuple(features[r : r + 1] for r in range(len(features))),
        labels=labels,
        bag_ids=bag_ids,
        label_names=label_names,
        feature_names=feature_names,
        source=os.path.abspath(first),
        test_mask=test_mask,
    )
