"""Measured times of the multisite tests: where they are shown, and gateway log times.

A measurement is printed (seen with ``pytest -s``), logged (kept in the test's captured log)
and recorded as a property of the test (in JUnit XML), so a CI run keeps the numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

__all__ = ["log_time", "report", "utc_time"]


def utc_time(stamp: str) -> float:
    """``time.time()`` of a gateway's time stamp (ISO 8601 in UTC, ending in ``Z``)."""
    return datetime.fromisoformat(stamp.removesuffix("Z") + "+00:00").timestamp()


def log_time(line: str) -> float:
    """``time.time()`` of a gateway log line (text format: the time stamp comes first)."""
    return utc_time(line.split(" ", 1)[0])


_measurements = logging.getLogger("tests.multisite.measured")
_measurements.setLevel(logging.INFO)  # kept by pytest's log capture whatever the root's level


def report(record_property: Callable[[str, object], None], measured: Mapping[str, float]) -> None:
    """Show each ``what: seconds`` measured by a test."""
    for what, seconds in measured.items():
        line = f"measured: {what}: {seconds:.3f} s"
        print(line)
        _measurements.info(line)
        record_property(what, round(seconds, 3))
