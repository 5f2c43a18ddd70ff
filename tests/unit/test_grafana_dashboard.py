"""The Grafana dashboard in docs/ queries only metrics that a gateway serves.

The dashboard is a file people import and then forget; a metric renamed in ``metrics.py``
would leave a panel silently empty. So every metric name in every query (panels and template
variables) must be one the gateway's own registry describes, with the suffixes Prometheus
gives each type (``_total`` of a counter, ``_bucket``/``_sum``/``_count`` of a histogram,
``_info`` of an info). The registry is read from its descriptions, not from samples, so a
labelled metric that has counted nothing yet still counts as served.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clusterlink.metrics import GatewayMetrics, build_labels

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "info": ("_info",),
}
# PromQL words that look like names: aggregations' modifiers, set operators, and functions
# (followed by '(' and so skipped anyway; listed for the few used without arguments).
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_KEYWORDS |= {"and", "or", "unless", "offset", "time"}


def _served() -> set[str]:
    names: set[str] = set()
    for family in GatewayMetrics().registry.collect():
        suffixes = _SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


def _queries(node: Any) -> Iterator[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "definition"} and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield value["query"]
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (label matchers, label lists after
    ``by``/``without``, ranges, strings, numbers and function calls taken out)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    text = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,[^)]*\)", r"\1", text)
    words = re.findall(r"[A-Za-z_:][\w:]*(?!\w*\s*\()", text)
    return {word for word in words if word not in _KEYWORDS}


def test_every_query_of_the_dashboard_uses_metrics_the_gateway_serves() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = list(_queries(dashboard))
    served = _served()
    assert len(queries) > 20
    missing = {name: expr for expr in queries for name in metric_names(expr) if name not in served}
    assert not missing, f"the dashboard queries metrics no gateway serves: {missing}"
    # Every query asks for at least one of ours (a typo that leaves no name would pass above).
    assert all(metric_names(expr) for expr in queries), queries


def test_the_parser_finds_names_and_only_names() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, direction) (rate("
        'clusterlink_connection_setup_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'
        " / on (instance) time() - process_start_time_seconds"
    )
    assert metric_names(expr) == {
        "clusterlink_connection_setup_seconds_bucket",
        "process_start_time_seconds",
    }
    assert metric_names("label_values(clusterlink_build_info, instance)") == {
        "clusterlink_build_info"
    }


def test_the_registry_serves_process_metrics_and_build_info() -> None:
    served = _served()
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "clusterlink_build_info",
        "clusterlink_connections_total",
    ):
        assert name in served
    assert set(build_labels()) == {"version", "python", "openssl"}
    assert all(build_labels().values())
