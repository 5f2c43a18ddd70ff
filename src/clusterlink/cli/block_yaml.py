"""YAML text of the documents a gateway returns, without importing a YAML library.

``describe`` and ``-o yaml`` print what PyYAML's ``safe_dump(data, sort_keys=False,
default_flow_style=False)`` prints, and users diff and paste that text, so it must not change.
Importing PyYAML costs a command more than the rest of its start, and the documents it would
write are nearly always simple: mappings and lists of short strings, numbers, booleans and
nulls. This module writes exactly those, as PyYAML would, and hands anything else to PyYAML:
a string it is not sure PyYAML would leave plain (or quote with single quotes), a line PyYAML
might fold (longer than 80 columns), a non-string key, a scalar document.

Invariant: for any input, the text is PyYAML's; tests/unit/test_cli_block_yaml.py compares
the two on generated documents.
"""

from __future__ import annotations

import math
import re
from typing import Any, TypeGuard

__all__ = ["dump_yaml"]

_WIDTH = 80  # PyYAML's best_width: past it, a plain scalar may be folded at a space
_KEY_LIMIT = 128  # PyYAML writes a longer key as a complex key (``? key``)
# Characters that never start, end or form an indicator of a plain scalar in block context.
_SAFE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@+=,;() -]*")
_DOTTED = re.compile(r"[0-9]+(?:\.[0-9]+){2,}(?::[0-9]+)?")  # 127.0.0.1, 10.0.0.1:443
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z?")
# Words YAML 1.1 reads as booleans or null: PyYAML quotes such strings.
_WORDS = frozenset(
    form
    for word in ("yes", "no", "true", "false", "on", "off", "null")
    for form in (word, word.capitalize(), word.upper())
)


class _Unsure(Exception):
    """PyYAML may write this differently: let it."""


def dump_yaml(data: object) -> str:
    """``data`` as block-style YAML text, exactly as PyYAML's ``safe_dump`` writes it."""
    if _is_collection(data):
        try:
            lines = _Writer().block(data, 0) if data else [_empty(data)]
            return "".join(line + "\n" for line in lines)
        except _Unsure:
            pass
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _is_collection(value: object) -> TypeGuard[dict[Any, Any] | list[Any]]:
    """A mapping or a list of the exact types PyYAML's safe dumper writes as such."""
    return type(value) in (dict, list)


def _empty(value: object) -> str:
    return "{}" if type(value) is dict else "[]"


class _Writer:
    """One document's lines. A mapping or list met twice would be an anchor and an alias in
    PyYAML's text, so that is left to PyYAML."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def block(self, node: dict[Any, Any] | list[Any], indent: int) -> list[str]:
        """The lines of a non-empty mapping or list whose entries start at column ``indent``."""
        self._first_time(node)
        pad = " " * indent
        lines: list[str] = []
        if isinstance(node, dict):
            for key, value in node.items():
                if type(key) is not str or len(key) >= _KEY_LIMIT or " " in key:
                    raise _Unsure
                head = f"{pad}{_string(key)}:"
                if _is_collection(value) and value:
                    # PyYAML indents a mapping under its key, not a list
                    lines += [
                        head,
                        *self.block(value, indent + 2 if type(value) is dict else indent),
                    ]
                else:
                    lines.append(self.line(f"{head} ", value))
            return lines
        for item in node:
            if _is_collection(item) and item:
                nested = self.block(item, indent + 2)
                lines += [f"{pad}- {nested[0][indent + 2 :]}", *nested[1:]]
            else:
                lines.append(self.line(f"{pad}- ", item))
        return lines

    def line(self, head: str, value: object) -> str:
        text = self.scalar(value)
        if " " in text and len(head) + len(text) > _WIDTH:
            raise _Unsure
        return head + text

    def _first_time(self, node: object) -> None:
        if id(node) in self._seen:
            raise _Unsure
        self._seen.add(id(node))

    def scalar(self, value: object) -> str:
        if _is_collection(value):  # an empty one: written in flow style
            self._first_time(value)
            return _empty(value)
        if value is None:
            return "null"
        if type(value) is bool:
            return "true" if value else "false"
        if type(value) is int:
            return str(value)
        if type(value) is float:
            return _float(value)
        if type(value) is not str:
            raise _Unsure
        return _string(value)


def _string(value: str) -> str:
    if _TIMESTAMP.fullmatch(value) or value in _WORDS:
        return f"'{value}'"  # would read back as a date, boolean or null: quoted, as PyYAML does
    if _DOTTED.fullmatch(value):
        return value
    if not _SAFE.fullmatch(value) or value.endswith((" ", ":")) or ": " in value:
        raise _Unsure
    return value


def _float(value: float) -> str:
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value).lower()
    return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text
