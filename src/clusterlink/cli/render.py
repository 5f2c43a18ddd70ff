"""Renderings of the plain dicts that commands build: JSON, YAML, or plain-text tables.

One data source, several views: a command builds its documents (or the status dict) once and
hands them here; ``-o json``/``-o yaml`` dump them unchanged, the default view picks columns
out of the same dicts. Nothing is computed only for the table.

Tables are kubectl's: upper-case headings, columns left-aligned and two spaces apart, no
box, no colour, trailing blanks removed, one row per line whether stdout is a terminal, a
pipe or a file, so ``grep`` and ``awk`` see every cell whole (a terminal wraps a long line,
nothing is ever cut). Cells are printed as they are, so an IPv6 address such as
``[::1]:8444`` keeps its brackets. No rich here: laying out columns of text needs no
library, and importing one would cost every ``get`` more than the rest of its start.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from clusterlink.client import Document, format_address

__all__ = [
    "Section",
    "Table",
    "dump",
    "render_rows",
    "render_sections",
    "render_text",
    "resource_table",
    "status_sections",
]

Column = tuple[str, Callable[[Document], object]]
_GAP = "  "


@dataclass(frozen=True, slots=True)
class Table:
    """Cells as text, ready to be laid out; ``headings`` is None for a table without a
    header row. ``min_widths`` keeps columns at least that wide (see ``render_rows``)."""

    headings: tuple[str, ...] | None
    rows: tuple[tuple[str, ...], ...]
    min_widths: tuple[int, ...] = ()


# A heading (or None) and its table; a table of None means the section is empty.
Section = tuple[str | None, Table | None]


def dump(data: object, output: str) -> str:
    """``data`` as JSON or YAML text, ending with a newline."""
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    import yaml  # here: only YAML output pays for it

    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def _at(doc: Document, path: str) -> Any:
    value: Any = doc
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _field(path: str) -> Callable[[Document], object]:
    return lambda doc: _at(doc, path)


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(_cell(item) for item in value) or "-"
    return " ".join(str(value).splitlines())  # one row, one line


def _sources(sources: object) -> str:
    if not isinstance(sources, list):
        return "-"
    return ", ".join(
        f"{s.get('peer')}:{s.get('exportNamespace')}/{s.get('exportName')}"
        for s in sources
        if isinstance(s, dict)
    )


_OPERATORS = {"In": "in", "NotIn": "notin"}


def _selector(selector: object) -> str:
    """A workload selector in kubectl's label-selector syntax; ``*`` matches everything."""
    workload = _at(selector, "workloadSelector") if isinstance(selector, dict) else None
    if not isinstance(workload, dict):
        return "?"
    terms = [f"{k}={v}" for k, v in (workload.get("matchLabels") or {}).items()]
    for expr in workload.get("matchExpressions") or []:
        key, operator = expr.get("key"), expr.get("operator")
        if operator in _OPERATORS:
            terms.append(f"{key} {_OPERATORS[operator]} ({','.join(expr.get('values') or [])})")
        else:
            terms.append(f"!{key}" if operator == "DoesNotExist" else str(key))
    return ",".join(terms) or "*"


def _selectors(selectors: object) -> str:
    return " | ".join(_selector(s) for s in selectors) if isinstance(selectors, list) else "-"


def _gateways(doc: Document) -> str:
    gateways = _at(doc, "spec.gateways") or []
    shown = [
        format_address(str(g.get("host")), g.get("port", 0))
        for g in gateways
        if isinstance(g, dict)
    ]
    return _dialling(shown, _at(doc, "spec.dialsIn"))


def _dialling(gateways: object, dials_in: object) -> str:
    """The GATEWAYS cell: a peer that dials in says so (it may have no address at all)."""
    shown = [str(g) for g in gateways] if isinstance(gateways, list) else []
    if dials_in is True:
        shown.append("(dials in)")
    return ", ".join(shown)


def _unmet(conditions: object) -> str:
    """The messages of the conditions that do not hold: why an Import may not work."""
    if not isinstance(conditions, list):
        return "-"
    return "; ".join(
        str(c.get("message") or c.get("reason"))
        for c in conditions
        if isinstance(c, dict) and c.get("status") != "True"
    )


def _rtt(value: object) -> str:
    return f"{value:.1f}ms" if isinstance(value, int | float) else "-"


_NAMESPACE: Column = ("NAMESPACE", _field("metadata.namespace"))
_NAME: Column = ("NAME", _field("metadata.name"))
_POLICY: list[Column] = [
    ("ACTION", _field("spec.action")),
    ("FROM", lambda d: _selectors(_at(d, "spec.from"))),
    ("TO", lambda d: _selectors(_at(d, "spec.to"))),
]

# Columns of `get KIND`, by kind; every cell is read from the stored document.
_RESOURCE_COLUMNS: dict[str, list[Column]] = {
    "Peer": [
        _NAME,
        ("GATEWAYS", _gateways),
        ("REACHABLE", _field("status.reachable")),
        ("LAST-SEEN", _field("status.lastSeen")),
        ("RTT", lambda d: _rtt(_at(d, "status.rttMs"))),
        ("REASON", _field("status.reason")),
    ],
    "Export": [
        _NAMESPACE,
        _NAME,
        ("HOST", _field("spec.host")),
        ("PORT", _field("spec.port")),
        ("PROTOCOL", lambda d: _at(d, "spec.protocol") or "TCP"),
    ],
    "Import": [
        _NAMESPACE,
        _NAME,
        ("PORT", _field("spec.port")),
        ("PROTOCOL", lambda d: _at(d, "spec.protocol") or "TCP"),
        ("LISTEN", _field("status.listen")),
        ("SOURCES", lambda d: _sources(_at(d, "spec.sources"))),
        ("LB", _field("spec.lbScheme")),
        ("REASON", lambda d: _unmet(_at(d, "status.conditions"))),
    ],
    "AccessPolicy": [_NAMESPACE, _NAME, *_POLICY],
    "PrivilegedAccessPolicy": [_NAME, *_POLICY],
}

# Columns that `get -o wide` adds at the end, by kind.
_WIDE_COLUMNS: dict[str, list[Column]] = {
    "Peer": [("LABELS", _field("status.labels"))],
    "Export": [("LABELS", _field("metadata.labels"))],
    "Import": [("LABELS", _field("metadata.labels"))],
    "AccessPolicy": [("LABELS", _field("metadata.labels"))],
    "PrivilegedAccessPolicy": [("LABELS", _field("metadata.labels"))],
}

# Columns of the sections of `status`, read from the rows of GET /v1/status.
_STATUS_COLUMNS: dict[str, list[Column]] = {
    "peers": [
        ("NAME", _field("name")),
        ("GATEWAYS", lambda row: _dialling(row.get("gateways"), row.get("dialsIn"))),
        ("REACHABLE", _field("reachable")),
        ("LAST-SEEN", _field("lastSeen")),
        ("RTT", lambda row: _rtt(row.get("rttMs"))),
        ("REASON", _field("reason")),
    ],
    "exports": [
        ("NAMESPACE", _field("namespace")),
        ("NAME", _field("name")),
        ("HOST", _field("host")),
        ("PORT", _field("port")),
        ("PROTOCOL", _field("protocol")),
    ],
    "imports": [
        ("NAMESPACE", _field("namespace")),
        ("NAME", _field("name")),
        ("PORT", _field("port")),
        ("PROTOCOL", _field("protocol")),
        ("LISTEN", _field("listen")),
        ("SOURCES", lambda row: _sources(row.get("sources"))),
        ("LB", _field("lbScheme")),
        ("REASON", lambda row: _unmet(row.get("conditions"))),
    ],
}

_GATEWAY_FIELDS = [
    ("name", "name"),
    ("fabric", "fabric"),
    ("version", "version"),
    ("labels", "labels"),
    ("listen", "listen"),
    ("admin", "admin"),
    ("metrics", "metrics"),
    ("import host", "importHost"),
    ("uptime", "uptimeS"),
]


def _table(
    columns: Sequence[Column],
    rows: Iterable[Document],
    *,
    header: bool = True,
    min_widths: Sequence[int] = (),
) -> Table:
    return Table(
        headings=tuple(heading for heading, _ in columns) if header else None,
        rows=tuple(tuple(_cell(value(row)) for _, value in columns) for row in rows),
        min_widths=tuple(min_widths),
    )


def render_rows(
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Document],
    *,
    header: bool = True,
    widths: list[int] | None = None,
) -> str:
    """Rows as a plain-text table, one column per (heading, key); "" for no rows.

    ``widths``, if given, carries the column widths from one call to the next (each column
    at least as wide as it was, and as its heading), so that rows printed batch by batch, as
    ``flows --follow`` does, line up under the first batch's header.
    """
    if not rows:
        return ""
    picked: list[Column] = [(heading, _field(key)) for heading, key in columns]
    table = _table(picked, rows, header=header, min_widths=widths or ())
    if widths is not None:
        natural = _widths(table)
        widths[:] = [max(w, len(h)) for w, (h, _) in zip(natural, columns, strict=True)]
    return render_text(table)


def resource_table(kind: str, documents: Sequence[Document], *, wide: bool = False) -> Table:
    """The table of ``get``: one row per document, columns chosen by ``kind`` (more if
    ``wide``)."""
    extra = _WIDE_COLUMNS[kind] if wide else []
    return _table([*_RESOURCE_COLUMNS[kind], *extra], documents)


def status_sections(status: Document) -> list[Section]:
    """The sections of ``status``: this gateway (as key/value lines), peers, exports, imports."""
    gateway = status.get("gateway") or {}
    uptime = gateway.get("uptimeS")
    shown = {**gateway, "uptimeS": f"{uptime:.0f}s" if isinstance(uptime, int | float) else None}
    rows = [{"key": label, "value": shown.get(key)} for label, key in _GATEWAY_FIELDS]
    kv: list[Column] = [("KEY", _field("key")), ("VALUE", _field("value"))]
    sections: list[Section] = [("GATEWAY", _table(kv, rows, header=False))]
    for key, columns in _STATUS_COLUMNS.items():
        items = status.get(key) or []
        sections.append(
            (f"{key.upper()} ({len(items)})", _table(columns, items) if items else None)
        )
    return sections


def _lines(table: Table) -> list[tuple[str, ...]]:
    return [*([table.headings] if table.headings is not None else []), *table.rows]


def _widths(table: Table) -> list[int]:
    """Each column as wide as its widest cell, and at least its minimum."""
    lines = _lines(table)
    return [
        max([len(line[index]) for line in lines] + list(table.min_widths[index : index + 1]))
        for index in range(len(lines[0]) if lines else 0)
    ]


def render_text(table: Table) -> str:
    """``table`` as lines of text, columns two spaces apart, no trailing blanks."""
    widths = _widths(table)
    return "".join(
        _GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in _lines(table)
    )


def render_sections(sections: Sequence[Section]) -> str:
    """Headed tables, separated by blank lines: what ``get`` of several kinds and ``status``
    print."""
    blocks = []
    for heading, table in sections:
        text = f"{heading}\n" if heading else ""
        blocks.append(text + (render_text(table) if table is not None else ""))
    return "\n".join(blocks)
