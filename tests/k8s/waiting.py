"""Bounded waiting for async tests: poll a probe on the running loop until it holds.

The code under test (informers, the store) runs on the test's own event loop, so a test must
yield to it while it waits; a blocking poll would starve it. Every wait has a deadline, and
running out of time fails with what was awaited and the last value seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], T], *, what: str, timeout_s: float = 10.0, interval_s: float = 0.02
) -> T:
    """Await until ``probe()`` returns something truthy, and return that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (value := probe()):
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout_s:g}s: {what}; last seen: {value!r:.2000}")
        await asyncio.sleep(interval_s)  # the poll's own interval
    return value
