"""YAML loading that remembers line numbers, so errors can name ``file:line``.

PyYAML's nodes know where they start; plain ``safe_load`` throws that away.
Mappings come back as :class:`LineDict` (a dict with ``.line`` and
``.lines[key]``), so a mapping error points at the exact field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from syncd.errors import MappingError


class LineDict(dict[str, Any]):
    """A dict that knows the (1-based) line of itself and of each key."""

    line: int = 0
    lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    """SafeLoader (no arbitrary objects) whose mappings carry their lines."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | bool) or isinstance(key, bool):
            raise MappingError(f"keys must be text, got {key!r}", line=key_node.start_mark.line + 1)
        out[str(key)] = loader.construct_object(value_node, deep=True)
        out.lines[str(key)] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_text(path: Path) -> str:
    """The file's UTF-8 text.

    Raises:
        MappingError: the file cannot be read or is not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read: {exc}", file=str(path)) from exc


def load_yaml(path: Path, *, text: str | None = None) -> LineDict:
    """Load one YAML document whose top level is a mapping (``text``: its content,
    already read from ``path``).

    Raises:
        MappingError: unreadable file, YAML syntax error (with its line), or a
            top level that is not a mapping.
    """
    if text is None:
        text = read_text(path)
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise MappingError(f"YAML syntax: {exc.problem or exc.context}", file=str(path),
                           line=line) from None
    except MappingError as exc:
        raise exc.located(file=str(path)) from None
    if not isinstance(doc, LineDict):
        raise MappingError("top level must be a mapping", file=str(path), line=1)
    return doc
