"""The terminal table and the target verdicts, both computed from the raw results.

One table per topology: a row per metric, a column per setup with the absolute number, then
clusterlink's ratio to stunnel and to HAProxy, then the issue's target for that row and
whether clusterlink meets it. A ratio is always clusterlink ÷ other, whatever the direction
of the metric; the target column says which way is good (``≥ 1.1x`` for a rate, ``≤ 1.0x``
for a latency). A number that was not measured (a workload left out, a setup that failed,
the CPU of a direct connection) shows as ``-``; a verdict that cannot be made shows as ``?``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.metrics import METRICS, TARGETS, Metric, judge, ratio, value_of

__all__ = ["print_tables", "verdicts"]

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
    return {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "?"}[passed]


def _table(topology: str, by_setup: Mapping[str, Any], setups: tuple[str, ...]) -> Table:
    table = Table(title=f"{topology}: absolute numbers, and clusterlink's ratio to the others")
    table.add_column("metric")
    for setup in setups:
        table.add_column(setup, justify="right")
    table.add_column("cl/stunnel", justify="right")
    table.add_column("cl/haproxy", justify="right")
    table.add_column("target (vs stunnel)")
    table.add_column("")
    for metric in METRICS:
        values = {setup: _value(by_setup, setup, metric) for setup in setups}
        mine = _value(by_setup, _CL, metric)
        stunnel = _value(by_setup, _STUNNEL, metric)
        target = _TARGETS_BY_METRIC.get(metric.key)
        table.add_row(
            metric.label,
            *(_number(values[setup], metric.decimals) for setup in setups),
            _ratio(ratio(mine, stunnel)),
            _ratio(ratio(mine, _value(by_setup, _HAPROXY, metric))),
            target.text if target else "",
            _verdict(judge(target, mine, stunnel)) if target else "",
        )
    return table


def print_tables(results: Mapping[str, Any], setups: tuple[str, ...], console: Console) -> None:
    for topology, by_setup in results["topologies"].items():
        console.print(_table(topology, by_setup, setups))
        for setup, outcome in by_setup.items():
            if outcome.get("error"):
                console.print(f"[red]{topology} {setup} failed:[/] {outcome['error']}")
    for topology, reason in results["skipped"].items():
        console.print(f"[yellow]{topology} skipped:[/] {reason}")
