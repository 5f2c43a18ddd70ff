"""Rate-limited log lines: a hostile or broken caller must not be able to flood the log.

Every refusal on the peer listener is worth one line, but a caller can provoke refusals as
fast as it can open connections (garbage instead of TLS needs no certificate). Used by the
peer listener, its limits, and the certificate checks of every handshake. So lines about
one *source* (a remote address, a peer, a limit) share a budget: the first ``burst`` lines of a
window go out as they come, the rest of that window are counted, and the next line that goes
out says how many were held back. Nothing is lost silently, and nothing is scheduled: the
count rides on the next line, so a source that falls silent costs nothing.

Memory is bounded: at most ``max_sources`` sources are remembered; beyond that, windows that
have ended are forgotten first, and if all are current the oldest half goes (their held-back
counts are dropped, which is the price of a bound).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["LogThrottle"]


@dataclass(slots=True)
class _Window:
    started: float
    sent: int = 0
    held_back: int = 0


class LogThrottle:
    """At most ``burst`` lines per source per ``window_s``; the rest counted, then reported."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 5,
        window_s: float = 10.0,
        max_sources: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._window_s = window_s
        self._max_sources = max_sources
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def log(
        self,
        level: int,
        source: str,
        message: str,
        *args: object,
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        """Log ``message % args`` (with ``extra``, as ``logging`` takes it) unless ``source``
        spent its budget; True if it went out."""
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        window = self._windows.get(source)
        if window is None or now - window.started >= self._window_s:
            held_back = window.held_back if window is not None else 0
            if window is None and len(self._windows) >= self._max_sources:
                self._forget(now)
            window = self._windows[source] = _Window(now, held_back=held_back)
        if window.sent >= self._burst:
            window.held_back += 1
            return False
        window.sent += 1
        if window.held_back:
            message += " (%d similar line(s) from %s held back)"
            args = (*args, window.held_back, source)
            window.held_back = 0
        self._logger.log(level, message, *args, extra=extra)
        return True

    def _forget(self, now: float) -> None:
        ended = [key for key, w in self._windows.items() if now - w.started >= self._window_s]
        for key in ended or list(self._windows)[: len(self._windows) // 2]:
            del self._windows[key]
