"""YAML as a space file is read: safe loading, plus three rules PyYAML's ``safe_load`` lacks.

- **Duplicate keys are errors.** PyYAML keeps the last of two equal keys; a space that says
  ``model:`` twice would silently run the second. The error names the key and both lines.
- **YAML 1.2 floats.** PyYAML follows YAML 1.1, where ``1e-3`` (no dot, unsigned exponent) is
  a string; people write it for a learning rate. ``1e-3``, ``1E+5``, ``.5e3`` are numbers here,
  as in YAML 1.2 (and JSON). :class:`SpaceDumper` quotes strings that look like them, so a space
  written back reads back the same.
- **Alias expansion is bounded.** Aliases make a small text stand for a huge tree ("billion
  laughs": nine aliases of nine aliases of ...). Loading shares the objects, so it is fast, but
  anything that walks the value (a message quoting it, a check of every choice) would not be.
  The node graph is measured, aliases expanded, with a budget before anything is built; a
  space that refers to itself is refused too.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tuner.errors import MimlTuneError, one_line, short

MAX_NODES = 10_000  # a shipped space has about 100; the budget leaves room for big choice lists

_FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")
_FLOAT_FIRST = list("-+.0123456789")
_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping states one key twice."""

    def __init__(self, key: str, first_line: int, second_line: int) -> None:
        super().__init__(f"duplicate key {key!r} at lines {first_line} and {second_line}")
        self.key, self.first_line, self.second_line = key, first_line, second_line


class SpaceLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys and reads YAML 1.2 floats."""

    def compose_mapping_node(self, anchor: Any) -> Node:
        node = super().compose_mapping_node(anchor)
        # At composition, before merge keys (``<<``) are flattened: a merged key that the
        # mapping overrides is YAML's intent, not a duplicate.
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                continue
            line = key_node.start_mark.line + 1
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise DuplicateKeyError(key_node.value, seen[key], line)
            seen[key] = line
        return node


class SpaceDumper(yaml.SafeDumper):
    """PyYAML's safe dumper that quotes strings :class:`SpaceLoader` would read as floats."""


for _cls in (SpaceLoader, SpaceDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, _FLOAT_FIRST)


def load_yaml(text: str, source: str) -> Any:
    """The value a space file's YAML text states.

    Raises:
        MimlTuneError: one line naming ``source``: not valid YAML (with the line), a duplicate
            key (with both lines), aliases that expand past :data:`MAX_NODES`, a structure that
            contains itself, or nesting too deep to read.
    """
    loader: SpaceLoader | None = None
    try:
        loader = SpaceLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, source)
        return loader.construct_document(node)
    except MimlTuneError:
        raise
    except DuplicateKeyError as exc:
        raise MimlTuneError(
            f"{source}: key {short(exc.key, 60)} appears twice, at lines {exc.first_line} and "
            f"{exc.second_line}; keep one of them"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = f" ({one_line(exc.problem, 120)})" if exc.problem else ""
        raise MimlTuneError(
            f"{source}: not valid YAML{where}{problem}; fix the syntax there"
        ) from None
    except yaml.reader.ReaderError as exc:
        raise MimlTuneError(
            f"{source}: character {_char(exc.character)} (at offset {exc.position}) is not "
            "allowed in YAML; remove it, or write it as an escape in a double-quoted string"
        ) from None
    except yaml.YAMLError as exc:
        raise MimlTuneError(f"{source}: not valid YAML: {one_line(str(exc), 160)}") from None
    except RecursionError:
        raise MimlTuneError(
            f"{source}: YAML nested too deeply to read; a space needs a few levels at most"
        ) from None
    except (ValueError, OverflowError) as exc:  # a scalar its tag cannot hold: a bad date
        what = (
            "an integer too long to read"
            if "digits" in str(exc)
            else f"a value that cannot be what YAML says it is ({one_line(str(exc), 100)})"
        )
        raise MimlTuneError(f"{source}: {what}; quote it to make it a string") from None
    finally:
        if loader is not None:
            loader.dispose()


def _char(character: Any) -> str:
    return f"U+{character:04X}" if isinstance(character, int) else short(character, 10)


def dump_yaml(value: Any) -> str:
    """YAML text that :func:`load_yaml` reads back as ``value``."""
    return yaml.dump(value, Dumper=SpaceDumper, sort_keys=False)


def _check_size(root: Node, source: str) -> None:
    """Counts the nodes of ``root`` with every alias expanded, stopping at :data:`MAX_NODES`
    (sizes of shared nodes are memoised, so a bomb costs its text's size, not its expansion)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > MAX_NODES:
                raise MimlTuneError(
                    f"{source}: the value at line {node.start_mark.line + 1} expands to over "
                    f"{MAX_NODES:,} YAML nodes once its aliases (*name) are expanded; a space "
                    "file needs far fewer: write the values out or remove the nested aliases"
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise MimlTuneError(
                f"{source}: the value at line {node.start_mark.line + 1} contains itself through "
                "an alias (*name inside its own &name); a space file cannot be recursive"
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []
