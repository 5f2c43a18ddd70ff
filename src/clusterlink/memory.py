"""Giving the memory of finished tunnels back to the operating system.

A tunnel's buffers (TLS BIOs, reads of up to 256 KiB) come from the C allocator. glibc's
``malloc`` keeps what is freed inside its heap for reuse and returns pages to the system only
from the top of the heap, so after a burst of busy tunnels a gateway sat at its peak RSS long
after the tunnels had closed (basic mode, 50 busy tunnels: 105 MiB after the load, 74 MiB
after ``malloc_trim``). ``malloc_trim(0)`` hands every free page back. It is cheap (a walk over
the heap's free chunks) but not free, so it runs only now and then, and only when tunnels
closed since the last time. On a C library without it (musl) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

__all__ = ["return_free_memory", "return_free_memory_after_tunnels"]

log = logging.getLogger("clusterlink.memory")

DEFAULT_INTERVAL_S = 10.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def return_free_memory() -> bool:
    """Hand the allocator's free pages back to the system; False where that is unsupported."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


async def return_free_memory_after_tunnels(
    closed_count: Callable[[], int], *, interval_s: float = DEFAULT_INTERVAL_S
) -> None:
    """Every ``interval_s``, if tunnels closed since the last look, return free memory."""
    if _TRIM is None:
        log.debug("no malloc_trim in this C library: freed memory stays with the allocator")
        return
    seen = closed_count()
    while True:
        await asyncio.sleep(interval_s)
        now = closed_count()
        if now != seen:
            seen = now
            return_free_memory()
