"""The benchmark's target verdicts and metric look-ups, on numbers made up here (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from bench.metrics import METRICS, TARGETS, Target, judge, ratio, value_of

AT_LEAST = Target("m", "≥ 1.1x", min_ratio=1.1)
AT_MOST = Target("m", "≤ 1.0x", max_ratio=1.0)
BOUNDED = Target("m", "≤ 30 KiB", max_value=30.0)


@pytest.mark.parametrize(
    ("target", "value", "stunnel", "passed"),
    [
        (AT_LEAST, 11.0, 10.0, True),
        (AT_LEAST, 10.9, 10.0, False),
        (AT_MOST, 10.0, 10.0, True),
        (AT_MOST, 10.1, 10.0, False),
        (BOUNDED, 30.0, None, True),
        (BOUNDED, 30.1, 1.0, False),
        (AT_LEAST, None, 10.0, None),
        (AT_LEAST, 10.0, None, None),
        (AT_LEAST, 10.0, 0.0, None),
        (BOUNDED, None, 10.0, None),
    ],
)
def test_judge_compares_with_stunnel_or_a_bound(
    target: Target, value: float | None, stunnel: float | None, passed: bool | None
) -> None:
    assert judge(target, value, stunnel) is passed


def test_ratio_is_missing_without_both_numbers() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(3.0, 0.0) is None


def test_value_of_reads_workloads_and_the_summary_with_scale() -> None:
    metrics = {m.key: m for m in METRICS}
    outcome: dict[str, Any] = {
        "workloads": {"connrate-16": {"latency_us": {"p99": 2500.0}}},
        "summary": {"tunnel_peak_rss_kib": 2048},
    }
    assert value_of(metrics["conn16_p99"], outcome) == pytest.approx(2.5)  # ms
    assert value_of(metrics["peak_rss"], outcome) == pytest.approx(2.0)  # MiB
    assert value_of(metrics["throughput_1"], outcome) is None  # not measured


def test_every_target_names_a_metric() -> None:
    assert {t.metric for t in TARGETS} <= {m.key for m in METRICS}
