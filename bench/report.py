"""The terminal table and the target verdicts, both computed from the raw results.

One table per topology: a row per metric, a column per setup with the absolute number, then
clusterlink's ratio to stunnel and to HAProxy, then the performance target for that row and
whether clusterlink meets it. A ratio is always clusterlink ÷ other, whatever the direction
of the metric; the target column says which way is good (``≥ 1.0x`` for a rate, ``≤ 1.0x``
for a latency). A number that was not measured (a workload left out, a setup that failed,
the CPU of a direct connection) shows as ``-``; a verdict that cannot be made shows as ``?``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.metrics import METRICS, TARGETS, Metric, judge, ratio, value_of

__all__ = ["markdown_tables", "print_tables", "verdicts"]

_CL, _STUNNEL, _HAPROXY = "clusterlink", "stunnel", "haproxy"
_TARGETS_BY_METRIC = {t.metric: t for t in TARGETS}
_EMPTY: Mapping[str, Any] = {}


def _value(by_setup: Mapping[str, Any], setup: str, metric: Metric) -> float | None:
    return value_of(metric, by_setup.get(setup, _EMPTY))


def verdicts(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every target judged in every topology: clusterlink vs stunnel, with the numbers."""
    judged = []
    metrics = {m.key: m for m in METRICS}
    for topology, by_setup in results["topologies"].items():
        for target in TARGETS:
            metric = metrics[target.metric]
            mine, theirs = _value(by_setup, _CL, metric), _value(by_setup, _STUNNEL, metric)
            judged.append(
                {
                    "topology": topology,
                    "metric": metric.key,
                    "label": metric.label.strip(),
                    "target": target.text,
                    "clusterlink": mine,
                    "stunnel": theirs,
                    "ratio_to_stunnel": ratio(mine, theirs),
                    "passed": judge(target, mine, theirs),
                }
            )
    return judged


def _number(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{value:,.{decimals}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "?"}[passed]


_HEADERS_AFTER_SETUPS = ("cl/stunnel", "cl/haproxy", "target (vs stunnel)", "")


def _rows(by_setup: Mapping[str, Any], setups: tuple[str, ...]) -> list[list[str]]:
    """The table's cells, metric by metric, as text (shared by the terminal and Markdown)."""
    rows = []
    for metric in METRICS:
        mine = _value(by_setup, _CL, metric)
        stunnel = _value(by_setup, _STUNNEL, metric)
        target = _TARGETS_BY_METRIC.get(metric.key)
        rows.append(
            [
                metric.label,
                *(_number(_value(by_setup, setup, metric), metric.decimals) for setup in setups),
                _ratio(ratio(mine, stunnel)),
                _ratio(ratio(mine, _value(by_setup, _HAPROXY, metric))),
                target.text if target else "",
                _verdict(judge(target, mine, stunnel)) if target else "",
            ]
        )
    return rows


def _title(topology: str) -> str:
    return f"{topology}: absolute numbers, and clusterlink's ratio to the others"


def _table(topology: str, by_setup: Mapping[str, Any], setups: tuple[str, ...]) -> Table:
    table = Table(title=_title(topology))
    table.add_column("metric")
    for header in (*setups, *_HEADERS_AFTER_SETUPS[:2]):
        table.add_column(header, justify="right")
    for header in _HEADERS_AFTER_SETUPS[2:]:
        table.add_column(header)
    colors = {"pass": "[green]pass[/]", "FAIL": "[red]FAIL[/]"}
    for row in _rows(by_setup, setups):
        table.add_row(*row[:-1], colors.get(row[-1], row[-1]))
    return table


def markdown_tables(results: Mapping[str, Any], setups: tuple[str, ...]) -> str:
    """The same tables in Markdown, for the README's results section."""
    parts = []
    for topology, by_setup in results["topologies"].items():
        header = ["metric", *setups, *_HEADERS_AFTER_SETUPS]
        lines = [
            f"**{_title(topology)}**",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---", *["---:"] * (len(setups) + 2), "---", "---"]) + "|",
        ]
        for first, *rest in _rows(by_setup, setups):
            lines.append("| " + " | ".join([first.strip(), *rest]) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def print_tables(results: Mapping[str, Any], setups: tuple[str, ...], console: Console) -> None:
    for topology, by_setup in results["topologies"].items():
        console.print(_table(topology, by_setup, setups))
        for setup, outcome in by_setup.items():
            if outcome.get("error"):
                console.print(f"[red]{topology} {setup} failed:[/] {outcome['error']}")
    for topology, reason in results["skipped"].items():
        console.print(f"[yellow]{topology} skipped:[/] {reason}")
