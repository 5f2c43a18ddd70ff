"""Bounded waiting: the one way integration tests wait for something to become true.

Gateways do some things asynchronously (a listener closing, a log line being flushed), so a
test polls instead of sleeping a guessed amount. Every wait has a deadline, and running out of
time fails the test with what was awaited and the last value seen, never with a bare timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    describe: Callable[[T | None], str] = repr,
) -> T:
    """Call ``probe`` until it returns something truthy, and return that; fail after the bound."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"not within {timeout_s:g}s: {what}; last seen: {describe(value)[:2000]}"
            )
        time.sleep(interval_s)  # the poll's own interval
