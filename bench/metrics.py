"""The rows of the report and the performance targets, as data; pure functions over results.

A ``Metric`` says where one number lives in a setup's results (workload and field path) and
how to show it. A ``Target`` is one line of the performance targets table: clusterlink's value
against stunnel's in the same run and topology (``min_ratio`` / ``max_ratio``) or against a
fixed bound (``max_value``). Judging is a pure function so that it can be tested with numbers
made up on the spot, and so the table, the JSON and the chart agree on every verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.workloads import Workload

__all__ = ["METRICS", "SUMMARY", "TARGETS", "Metric", "Target", "judge", "ratio", "value_of"]

SUMMARY = "summary"  # pseudo-workload: numbers over the whole run of a setup


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    workload: str  # a Workload value, or SUMMARY
    path: tuple[str, ...]
    scale: float = 1.0
    decimals: int = 0
    higher_is_better: bool = True


@dataclass(frozen=True, slots=True)
class Target:
    metric: str  # a Metric key
    text: str
    min_ratio: float | None = None
    max_ratio: float | None = None
    max_value: float | None = None


def _gbits(key: str, label: str, workload: Workload) -> Metric:
    return Metric(key, label, workload, ("gbit_per_s",), decimals=2)


def _rate(key: str, label: str, workload: Workload) -> Metric:
    return Metric(key, label, workload, ("rate_per_s",))


def _latency(key: str, label: str, workload: Workload, quantile: str, *, in_ms: bool) -> Metric:
    """A latency quantile; the load generator reports µs, set-up latencies read better in ms."""
    path = ("latency_us", quantile)
    return Metric(key, label, workload, path, 1e-3 if in_ms else 1.0, 2 if in_ms else 1, False)


def _cost(
    key: str, label: str, workload: str, field: str, scale: float = 1.0, *, decimals: int = 1
) -> Metric:
    return Metric(key, label, workload, (field,), scale, decimals, higher_is_better=False)


_W = Workload
METRICS: tuple[Metric, ...] = (
    _gbits("throughput_1", "throughput, 1 stream (Gbit/s)", _W.THROUGHPUT_1),
    _gbits("throughput_8", "throughput, 8 streams (Gbit/s)", _W.THROUGHPUT_8),
    _rate("rr_rate", "round trips/s, 1 connection", _W.PINGPONG),
    _latency("rr_p50", "  round trip p50 (µs)", _W.PINGPONG, "p50", in_ms=False),
    _latency("rr_p99", "  round trip p99 (µs)", _W.PINGPONG, "p99", in_ms=False),
    _rate("conn1_rate", "new connections/s, c=1", _W.CONNRATE_1),
    _latency("conn1_p50", "  set-up p50 (ms), c=1", _W.CONNRATE_1, "p50", in_ms=True),
    _latency("conn1_p99", "  set-up p99 (ms), c=1", _W.CONNRATE_1, "p99", in_ms=True),
    _rate("conn16_rate", "new connections/s, c=16", _W.CONNRATE_16),
    _latency("conn16_p50", "  set-up p50 (ms), c=16", _W.CONNRATE_16, "p50", in_ms=True),
    _latency("conn16_p99", "  set-up p99 (ms), c=16", _W.CONNRATE_16, "p99", in_ms=True),
    Metric("udp_rate", "UDP datagrams/s, 1 flow", _W.UDP, ("datagrams_per_s",)),
    _cost("udp_loss", "  UDP loss (%)", _W.UDP, "loss_percent", decimals=2),
    _cost(
        "cpu_per_gb", "tunnel CPU s per GB, 1 stream", _W.THROUGHPUT_1, "cpu_s_per_gb", decimals=2
    ),
    _cost(
        "cpu_per_1k_rt",
        "tunnel CPU s per 1,000 round trips",
        _W.PINGPONG,
        "cpu_s_per_1k_round_trips",
        decimals=3,
    ),
    _cost("cpu_s", "tunnel CPU, all workloads (s)", SUMMARY, "tunnel_cpu_s"),
    _cost("peak_rss", "tunnel peak RSS under load (MiB)", SUMMARY, "tunnel_peak_rss_kib", 1 / 1024),
    _cost("rss_growth", "  peak RSS / RSS at start", SUMMARY, "peak_over_idle_rss", decimals=2),
    _cost("idle_rss", "RSS per idle tunnel (KiB)", _W.IDLE_TUNNELS, "rss_per_tunnel_kib"),
)

TARGETS: tuple[Target, ...] = (
    Target("throughput_1", "≥ 1.0x", min_ratio=1.0),
    Target("throughput_8", "≥ 1.0x", min_ratio=1.0),
    Target("rr_rate", "≥ 1.0x", min_ratio=1.0),
    Target("rr_p50", "≤ 1.0x", max_ratio=1.0),
    Target("rr_p99", "≤ 1.0x", max_ratio=1.0),
    Target("cpu_per_gb", "≤ 1.0x", max_ratio=1.0),
    Target("cpu_per_1k_rt", "≤ 1.0x", max_ratio=1.0),
    Target("conn16_rate", "≥ 3x", min_ratio=3.0),
    Target("conn1_p99", "≤ 1.0x", max_ratio=1.0),
    Target("conn16_p99", "≤ 1.0x", max_ratio=1.0),
    Target("idle_rss", "≤ 30 KiB", max_value=30.0),
    Target("rss_growth", "≤ 1.5", max_value=1.5),
)


def value_of(metric: Metric, setup_result: Mapping[str, Any]) -> float | None:
    """The metric's value (scaled) in one setup's results, or None when it was not measured."""
    node: Any = setup_result.get("summary" if metric.workload == SUMMARY else "workloads", {})
    if metric.workload != SUMMARY:
        node = node.get(metric.workload, {})
    for key in metric.path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return None if node is None else float(node) * metric.scale


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def judge(target: Target, value: float | None, stunnel: float | None) -> bool | None:
    """Whether clusterlink's ``value`` meets ``target`` (against ``stunnel``); None: unknown."""
    if target.max_value is not None:
        return None if value is None else value <= target.max_value
    r = ratio(value, stunnel)
    if r is None:
        return None
    if target.min_ratio is not None:
        return r >= target.min_ratio
    return target.max_ratio is not None and r <= target.max_ratio
