"""Reading MIML ARFF files: a bag-id attribute, one relational attribute, then labels.

A MIML ARFF file (the Weka multi-instance layout, extended with several labels) looks like::

    @relation birds
    @attribute id {2,4,5}
    @attribute bag relational
      @attribute f0 numeric
      @attribute f1 numeric
    @end bag
    @attribute BRCR {0,1}
    @attribute PAWR {0,1}
    @data
    2,"0.95,0.93\\n0.94,0.96",1,0

The numbers are parsed by :func:`scipy.io.arff.loadarff` (liac-arff cannot read relational
attributes). Around it this module does what scipy does not: it reads the header itself (with
:mod:`tuner.data.arff_header`, which the Mulan reader shares) to find the roles of the attributes
(bag id, bag, labels), checks every data row before scipy sees it (scipy silently drops surplus
values, crashes with an ``IndexError`` on an empty bag and cannot read ``string`` attributes),
and turns every problem into one line that names the file, the bag and the fix. Bag ids are
taken from the text as written; scipy is handed row numbers instead, so ids may be ``string``
attributes or non-ASCII.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured
from scipy.io import arff as scipy_arff

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
from tuner.data.dataset import DataWarning, MIMLDataset, warn_constant_labels
from tuner.errors import MimlTuneError

__all__ = ["read_miml_arff"]

# Instances inside a relational value are separated by an escaped newline.
_INSTANCE_SEP = re.compile(r"(?:\\r)?\\n")
_SCIPY_ID_NAME = "miml_tune_bag_row"


@dataclass
class _Row:
    """One data row, split into fields; ``id_span`` locates the bag id in ``text``."""

    line: int
    text: str
    fields: list[str]
    id_span: tuple[int, int]


@dataclass
class _Layout:
    id_index: int
    bag_index: int
    label_indices: list[int]
    features: list[str]


def _layout(path: Path, attributes: list[_Attribute]) -> _Layout:
    """Finds the bag id, the bag and the labels among the top-level attributes."""
    where = str(path)
    relational = [i for i, a in enumerate(attributes) if a.kind == "relational"]
    if not relational:
        raise MimlTuneError(
            f"{where}: not a MIML ARFF file: it has no relational (bag) attribute; MIML ARFF "
            "declares a bag id, then '@attribute bag relational ... @end bag', then the labels"
        )
    if len(relational) > 1:
        raise MimlTuneError(
            f"{where}: has {len(relational)} relational attributes "
            f"({_names([attributes[i].name for i in relational])}); MIML ARFF has exactly one"
        )
    bag_index = relational[0]
    bag = attributes[bag_index]
    if bag_index != 1 or attributes[0].kind not in ("nominal", "string"):
        raise MimlTuneError(
            f"{where}: the relational attribute {bag.name!r} must be preceded by exactly one "
            "bag-id attribute (nominal or string), e.g. '@attribute id string'; found "
            f"{_names([f'{a.name} ({a.kind})' for a in attributes[:bag_index]]) or 'none'}"
        )
    if not bag.children:
        raise MimlTuneError(f"{where}: the relational attribute {bag.name!r} declares no features")
    not_numeric = [f"{c.name} ({c.kind})" for c in bag.children if c.kind != "numeric"]
    if not_numeric:
        raise MimlTuneError(
            f"{where}: bag features must be numeric, but {_names(not_numeric)} is not; "
            "encode it as numbers"
        )

    rest = list(range(bag_index + 1, len(attributes)))
    xml_path = path.with_suffix(".xml")
    if xml_path.is_file():
        wanted = _read_label_xml(xml_path, where)
        by_name = {attributes[i].name: i for i in rest}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise MimlTuneError(
                f"{xml_path}: names label {_names(missing)} that {where} does not declare after "
                f"the bag; the attributes there are {_names(list(by_name)) or 'none'}"
            )
        label_indices = sorted(by_name[n] for n in wanted)
        for i in label_indices:
            attr = attributes[i]
            if not _is_binary(attr):
                raise MimlTuneError(
                    f"{where}: label attribute {attr.name!r} (named in {xml_path.name}) is "
                    f"declared as {_declared(attr)}; labels must be nominal {{0,1}}"
                )
        reason = f"not named in {xml_path.name}"
    else:
        label_indices = []
        for i in reversed(rest):
            if not _is_binary(attributes[i]):
                break
            label_indices.insert(0, i)
        if not rest:
            raise MimlTuneError(
                f"{where}: declares no label attributes; add '@attribute NAME {{0,1}}' lines "
                "after the bag"
            )
        if not label_indices:
            last = attributes[-1]
            raise MimlTuneError(
                f"{where}: no label attributes: the last attribute {last.name!r} is declared as "
                f"{_declared(last)}, but labels are the trailing nominal {{0,1}} attributes "
                f"(or those named in a {xml_path.name} beside the file)"
            )
        interrupted = [
            i
            for i in rest
            if i not in label_indices and any(_is_binary(attributes[j]) for j in rest if j < i)
        ]
        if interrupted:
            attr = attributes[interrupted[-1]]
            raise MimlTuneError(
                f"{where}: attribute {attr.name!r}, declared as {_declared(attr)}, sits among "
                "the {0,1} label attributes; labels must be nominal {0,1}: fix its "
                f"declaration, or name the labels in a {xml_path.name} beside the file"
            )
        reason = "not one of the trailing {0,1} label attributes"
    ignored = [attributes[i].name for i in rest if i not in label_indices]
    if ignored:
        warnings.warn(
            f"{where}: ignoring attribute {_names(ignored)} after the bag ({reason}); MIML "
            "ARFF holds a bag id, the bag and the labels",
            DataWarning,
            stacklevel=3,
        )
    return _Layout(0, bag_index, label_indices, [c.name for c in bag.children])


def _is_binary(attr: _Attribute) -> bool:
    return attr.kind == "nominal" and sorted(attr.values) == ["0", "1"]


def _declared(attr: _Attribute) -> str:
    return _short("{" + ",".join(attr.values) + "}") if attr.kind == "nominal" else attr.kind


def _split_instances(raw: str) -> list[str]:
    parts = _INSTANCE_SEP.split(raw) if "\\r" in raw else raw.split("\\n")
    return [s.strip() for s in parts]


def _instance_values(instance: str) -> list[str]:
    return instance.split("," if "," in instance else "\t")


def _check_rows(
    path: Path,
    attributes: list[_Attribute],
    layout: _Layout,
    lines: list[tuple[int, str]],
    unlabelled: bool = False,
) -> list[_Row]:
    """Splits and checks every data row: field count, bag id, instance sizes, label values
    (``?`` allowed for a label when ``unlabelled``)."""
    where = str(path)
    n_fields = len(attributes)
    n_features = len(layout.features)
    id_attr = attributes[layout.id_index]
    allowed_ids = set(id_attr.values) if id_attr.kind == "nominal" else None
    labels = [(i, attributes[i].name) for i in layout.label_indices]
    rows: list[_Row] = []
    for number, text in lines:
        at = f"{where} line {number}"
        if text.startswith("{"):
            raise MimlTuneError(f"{at}: sparse ARFF rows ({{...}}) are not supported")
        try:
            values, spans, quoted = _split_fields(text)
        except ValueError as exc:
            raise MimlTuneError(f"{at}: {exc}; check the quotes of the row") from None
        bag_id = _ESCAPE.sub(r"\1", values[layout.id_index])
        if len(values) != n_fields:
            raise MimlTuneError(
                f"{at} (bag {_short(bag_id)}): has {len(values)} fields but the header declares "
                f"{n_fields} attributes (bag id, bag, {len(labels)} labels); check for a missing "
                "comma or quote"
            )
        if not bag_id or (bag_id == "?" and not quoted[layout.id_index]):
            raise MimlTuneError(f"{at}: the bag id is missing; every bag needs a unique id")
        if allowed_ids is not None and bag_id not in allowed_ids:
            raise MimlTuneError(
                f"{at}: bag id {_short(bag_id)} is not among the values declared for the "
                f"nominal attribute {id_attr.name!r}; add it to the declaration or declare "
                f"'@attribute {id_attr.name} string'"
            )
        what = f"{at} (bag {_short(bag_id)})"
        raw_bag = values[layout.bag_index]
        if not raw_bag.strip() or (raw_bag.strip() == "?" and not quoted[layout.bag_index]):
            raise MimlTuneError(
                f"{what}: the bag is empty (zero instances); every bag needs at least one "
                "instance: drop the row or fill the bag"
            )
        for k, instance in enumerate(_split_instances(raw_bag), start=1):
            n_values = len(_instance_values(instance)) if instance else 0
            if n_values != n_features:
                raise MimlTuneError(
                    f"{what}: instance {k} has {n_values} feature values but the bag attribute "
                    f"declares {n_features} features; every instance needs one value per "
                    "feature (bags must all have the same feature count)"
                )
        for i, name in labels:
            value = values[i]
            if value not in ("0", "1") and not (unlabelled and value == "?"):
                got = "is missing ('?')" if value == "?" else f"has value {_short(value)}"
                raise MimlTuneError(f"{what}: label {name!r} {got}; label values must be 0 or 1")
        rows.append(_Row(number, text, values, spans[layout.id_index]))
    if not rows:
        raise MimlTuneError(f"{where}: has no bags (the @data section is empty)")
    first_line: dict[str, int] = {}
    for row in rows:
        bag_id = _ESCAPE.sub(r"\1", row.fields[layout.id_index])
        if bag_id in first_line:
            raise MimlTuneError(
                f"{where}: bag id {_short(bag_id)} appears on line {first_line[bag_id]} and "
                f"line {row.line}; bag ids must be unique"
            )
        first_line[bag_id] = row.line
    return rows


def _first_non_number(
    path: Path, layout: _Layout, rows: list[_Row], bag_ids: list[str]
) -> MimlTuneError | None:
    """The error for the first feature value that is not a number, if there is one."""
    for row, bag_id in zip(rows, bag_ids, strict=True):
        for k, instance in enumerate(_split_instances(row.fields[layout.bag_index]), start=1):
            for j, token in enumerate(_instance_values(instance)):
                token = token.strip()
                if "?" in token:
                    continue
                try:
                    float(token)
                except ValueError:
                    return MimlTuneError(
                        f"{path} line {row.line} (bag {_short(bag_id)}): instance {k}, feature "
                        f"{layout.features[j]!r} has value {_short(token)}, which is not a "
                        "number; features must be numeric"
                    )
    return None


def _scipy_parse(
    path: Path, header: list[str], id_attr: _Attribute, rows: list[_Row]
) -> np.ndarray:
    """Parses the values with scipy, the bag ids replaced by row numbers."""
    header = list(header)
    header[id_attr.header_line] = (
        f"@attribute {_SCIPY_ID_NAME} {{{','.join(str(i) for i in range(len(rows)))}}}"
    )
    body = [
        f"{row.text[: row.id_span[0]]}{i}{row.text[row.id_span[1] :]}" for i, row in enumerate(rows)
    ]
    text = "\n".join([*header, "@data", *body, ""])
    data, _ = scipy_arff.loadarff(io.StringIO(text))
    return data


def _bag_arrays(
    path: Path, layout: _Layout, data: np.ndarray, rows: list[_Row], bag_ids: list[str]
) -> tuple[np.ndarray, ...]:
    where = str(path)
    n_features = len(layout.features)
    bag_field = (data.dtype.names or ())[layout.bag_index]
    records = data[bag_field]
    # scipy stores each bag as packed float64 fields; viewing them is 10x faster than copying.
    packed = records[0].dtype == np.dtype([(n, np.float64) for n in records[0].dtype.names])
    bags: list[np.ndarray] = []
    for row, bag_id, record in zip(rows, bag_ids, records, strict=True):
        if packed and record.dtype == records[0].dtype and record.flags.c_contiguous:
            values = record.view(np.float64).reshape(record.shape[0], -1)
        else:
            values = structured_to_unstructured(record, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != n_features:
            raise MimlTuneError(
                f"{where} line {row.line} (bag {_short(bag_id)}): read {values.shape} values, "
                f"expected (instances, {n_features}); check the row's quoting"
            )
        with np.errstate(over="ignore"):  # reported below as too large for float32
            as_float32 = np.ascontiguousarray(values, dtype=np.float32)
        if not np.isfinite(as_float32).all():
            k, j = (int(x[0]) for x in np.nonzero(~np.isfinite(as_float32)))
            original = values[k, j]
            if np.isnan(original):
                problem = "is missing ('?') or NaN"
            elif np.isinf(original):
                problem = "is infinite"
            else:
                problem = f"is {original:g}, too large for float32"
            raise MimlTuneError(
                f"{where} line {row.line} (bag {_short(bag_id)}): instance {k + 1}, feature "
                f"{layout.features[j]!r} {problem}; features must be finite numbers: impute "
                "or drop the instance"
            )
        bags.append(as_float32)
    return tuple(bags)


def read_miml_arff(
    path: str | os.PathLike[str], *, name: str | None = None, unlabelled: bool = False
) -> MIMLDataset:
    """Reads a MIML ARFF file: a bag-id attribute, one relational attribute, then labels.

    The labels are the attributes named by a Mulan label XML beside the file (``<stem>.xml``)
    when there is one, otherwise the trailing nominal ``{0,1}`` attributes. Label columns keep
    the order of the ARFF attributes in both cases. Other attributes after the bag are ignored
    with a :class:`DataWarning`.

    Args:
        path: the ``.arff`` file.
        name: the dataset's name; defaults to the file's stem.
        unlabelled: a pool of bags to label (``miml-tune active query``): a label may be ``?``
            (read as 0; the caller ignores the labels).

    Returns:
        The dataset, with float32 bags and uint8 labels; ``source`` is the absolute path.

    Raises:
        MimlTuneError: missing or unreadable file, not an ARFF file, not MIML ARFF (no
            relational attribute), an empty bag, a missing / NaN / infinite feature, an instance
            with the wrong number of values, a label value other than 0/1, duplicate bag ids,
            or a label XML naming an attribute the file lacks. The message names the file and,
            where it applies, the line and the bag.

    Warns:
        DataWarning: a label that no bag carries, or that every bag carries; an attribute after
            the bag that is not a label.
    """
    path = Path(path)
    where = str(path)
    text = _read_text(path)
    attributes, header, lines = _parse_header(path, text)
    layout = _layout(path, attributes)
    rows = _check_rows(path, attributes, layout, lines, unlabelled)
    bag_ids = [_ESCAPE.sub(r"\1", row.fields[layout.id_index]) for row in rows]
    try:
        data = _scipy_parse(path, header, attributes[layout.id_index], rows)
    except Exception as exc:  # scipy raises ValueError, IndexError, csv.Error, ParseArffError
        diagnosed = _first_non_number(path, layout, rows, bag_ids)
        if diagnosed is not None:
            raise diagnosed from None
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise MimlTuneError(
            f"{where}: scipy could not parse the ARFF data ({type(exc).__name__}: "
            f"{_short(reason)}); check the file is MIML ARFF"
        ) from None
    if len(data) != len(rows) or len(data.dtype.names or ()) != len(attributes):
        raise MimlTuneError(
            f"{where}: scipy read {len(data)} rows of {len(data.dtype.names or ())} attributes, "
            f"expected {len(rows)} of {len(attributes)}; check the file's quoting"
        )
    bags = _bag_arrays(path, layout, data, rows, bag_ids)
    names = data.dtype.names or ()
    labels = np.stack([data[names[i]] == b"1" for i in layout.label_indices], axis=1).astype(
        np.uint8
    )
    label_names = tuple(attributes[i].name for i in layout.label_indices)

    if not unlabelled:
        warn_constant_labels(where, labels, label_names)
    return MIMLDataset(
        name=path.stem if name is None else name,
        bags=bags,
        labels=labels,
        bag_ids=tuple(bag_ids),
        label_names=label_names,
        feature_names=tuple(layout.features),
        source=os.path.abspath(path),
    )
