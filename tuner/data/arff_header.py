"""ARFF text and header: what the MIML ARFF reader and the Mulan ARFF reader share.

Reading the file's text, splitting a data row into fields, parsing the ``@attribute`` header
(relational attributes included), and reading a Mulan label XML. Every problem is one line that
names the file and, where there is one, the fix.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tuner.errors import MimlTuneError

_ATTRIBUTE = re.compile(
    r"""@attribute\s+('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s{]+)\s*(.*)$""", re.IGNORECASE
)
_KEYWORD = re.compile(r"@(\w+)")
# One field of a data row: double-quoted, single-quoted or bare, then a separator or the end.
_FIELD = re.compile(
    r"""[ \t]*(?:"(?P<dq>[^"\\]*(?:\\.[^"\\]*)*)"|'(?P<sq>[^'\\]*(?:\\.[^'\\]*)*)'"""
    r"""|(?P<bare>[^,\t]*))[ \t]*(?P<sep>,|\t|$)"""
)
_ESCAPE = re.compile(r"\\(.)")
_NUMERIC_TYPES = ("numeric", "real", "integer")
_MAX_SHOWN = 60


@dataclass
class _Attribute:
    """One ``@attribute`` of the header."""

    name: str
    kind: str  # nominal, numeric, string, date, relational
    values: tuple[str, ...] = ()
    children: list[_Attribute] = field(default_factory=list)
    header_line: int = -1  # index into the header lines handed to scipy


def _short(value: str) -> str:
    """``repr`` of a value, cut to a readable length and always on one line."""
    if len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN] + "..."
    return repr(value)


def _names(names: list[str] | tuple[str, ...], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _read_text(path: Path) -> str:
    where = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MimlTuneError(f"{where}: no such file; check the path") from None
    except IsADirectoryError:
        raise MimlTuneError(f"{where}: is a directory; pass the .arff file inside it") from None
    except PermissionError:
        raise MimlTuneError(
            f"{where}: permission denied; make the file readable (chmod +r) or copy it"
        ) from None
    except OSError as exc:
        raise MimlTuneError(f"{where}: cannot read the file ({exc.strerror or exc})") from None
    if b"\x00" in raw[:8192]:
        raise MimlTuneError(f"{where}: is a binary file, not an ARFF text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return _ESCAPE.sub(r"\1", token[1:-1])
    return token


def _split_fields(line: str) -> tuple[list[str], list[tuple[int, int]], list[bool]]:
    """Splits a data row into field values (quotes removed, escapes kept) and their spans.

    Raises:
        ValueError: the row cannot be split (e.g. a quote is not closed).
    """
    values: list[str] = []
    spans: list[tuple[int, int]] = []
    quoted: list[bool] = []
    pos = 0
    while True:
        m = _FIELD.match(line, pos)
        if m is None:
            raise ValueError(f"cannot split it into fields near column {pos + 1}")
        if m.group("dq") is not None or m.group("sq") is not None:
            values.append(m.group("dq") if m.group("dq") is not None else m.group("sq"))
            quoted.append(True)
        else:
            values.append(m.group("bare").strip())
            quoted.append(False)
        spans.append((m.start(), m.start("sep")))
        if not m.group("sep"):
            return values, spans, quoted
        pos = m.end()


def _parse_type(where: str, name: str, spec: str) -> _Attribute:
    lowered = spec.lower()
    word = lowered.split()[0] if lowered.split() else ""
    if spec.startswith("{"):
        if not spec.rstrip().endswith("}"):
            raise MimlTuneError(f"{where}: nominal attribute {name!r} has no closing '}}'")
        try:
            values, _, _ = _split_fields(spec.rstrip()[1:-1])
        except ValueError as exc:
            raise MimlTuneError(f"{where}: nominal values of {name!r}: {exc}") from None
        return _Attribute(name, "nominal", tuple(_ESCAPE.sub(r"\1", v) for v in values))
    if word in _NUMERIC_TYPES:
        return _Attribute(name, "numeric")
    if word in ("string", "relational", "date"):
        return _Attribute(name, word)
    raise MimlTuneError(
        f"{where}: attribute {name!r} has unknown type {_short(spec)}; ARFF types are numeric, "
        "real, integer, {nominal values}, string, date and relational"
    )


def _parse_header(
    path: Path, text: str
) -> tuple[list[_Attribute], list[str], list[tuple[int, str]]]:
    """Reads the header; returns the top-level attributes, the header lines for scipy, the rows.

    Raises:
        MimlTuneError: not an ARFF file, or a malformed header.
    """
    where = str(path)
    attributes: list[_Attribute] = []
    header: list[str] = []
    open_relational: _Attribute | None = None
    seen_data = False
    rows: list[tuple[int, str]] = []
    lines = text.splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if seen_data:
            rows.append((number, line))
            continue
        keyword = _KEYWORD.match(line)
        if keyword is None:
            raise MimlTuneError(
                f"{where}: not an ARFF file: line {number} {_short(line)} is not a header line "
                "(an ARFF file starts with @relation and @attribute lines, then @data)"
            )
        kind = keyword.group(1).lower()
        at = f"{where} line {number}"
        if kind == "relation":
            header.append(line)
        elif kind == "attribute":
            m = _ATTRIBUTE.match(line)
            if m is None or not m.group(2).strip():
                raise MimlTuneError(
                    f"{at}: cannot read the attribute {_short(line)}; "
                    "expected '@attribute NAME TYPE'"
                )
            attr = _parse_type(at, _unquote(m.group(1)), m.group(2).strip())
            if open_relational is not None:
                if attr.kind == "relational":
                    raise MimlTuneError(
                        f"{at}: relational attribute {attr.name!r} is nested inside "
                        f"{open_relational.name!r}; MIML ARFF has one level of bags"
                    )
                open_relational.children.append(attr)
                header.append(line)
                continue
            attr.header_line = len(header)
            header.append(line)
            attributes.append(attr)
            if attr.kind == "relational":
                open_relational = attr
        elif kind == "end":
            closed = _unquote(line[len("@end") :])
            if open_relational is None or closed != open_relational.name:
                raise MimlTuneError(
                    f"{at}: {_short(line)} does not close an open relational attribute"
                )
            open_relational = None
            header.append(line)
        elif kind == "data":
            if open_relational is not None:
                raise MimlTuneError(
                    f"{at}: @data before '@end {open_relational.name}'; "
                    "close the relational attribute first"
                )
            seen_data = True
        else:
            raise MimlTuneError(
                f"{at}: unknown header keyword @{keyword.group(1)}; "
                "expected @relation, @attribute, @end or @data"
            )
    if not seen_data:
        if not attributes:
            raise MimlTuneError(
                f"{where}: not an ARFF file: no @attribute header and no @data section"
            )
        raise MimlTuneError(f"{where}: the ARFF header has no @data line, so there are no bags")
    names = [a.name for a in attributes]
    for attr in attributes:
        names.extend(c.name for c in attr.children)
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise MimlTuneError(
            f"{where}: attribute name {_names(duplicates)} is declared twice; "
            "attribute names must be unique"
        )
    return attributes, header, rows


def _read_label_xml(xml_path: Path, where: str, *, fix: str | None = None) -> list[str]:
    """The label names of a Mulan label XML (``<labels><label name="X"/>...</labels>``), every
    ``<label>`` of a hierarchy included, in file order.

    Args:
        xml_path: the XML file.
        where: the data file it describes.
        fix: what to tell the user when the XML does not parse.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        fix = fix or (
            f"fix it or remove it to take the trailing {{0,1}} attributes of {where} as labels"
        )
        raise MimlTuneError(f"{xml_path}: not a valid label XML ({exc}); {fix}") from None
    except OSError as exc:
        raise MimlTuneError(f"{xml_path}: cannot read the label XML ({exc.strerror})") from None

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    if local(root.tag) != "labels":
        raise MimlTuneError(
            f"{xml_path}: root element is <{local(root.tag)}>, not <labels>; a Mulan label "
            'XML looks like <labels xmlns="http://mulan.sourceforge.net/labels">'
            '<label name="X"/></labels>'
        )
    names: list[str] = []
    for element in root.iter():
        if local(element.tag) != "label":
            continue
        name = element.get("name")
        if not name:
            raise MimlTuneError(f'{xml_path}: a <label> element has no name="..." attribute')
        if name in names:
            raise MimlTuneError(f"{xml_path}: label {name!r} is listed twice")
        names.append(name)
    if not names:
        raise MimlTuneError(f'{xml_path}: names no labels; add <label name="X"/> elements')
    return names
