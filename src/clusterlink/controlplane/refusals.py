"""Logging refused admin connections: one line per refusal, without letting anyone flood the log.

Every refusal of the admin API (a TLS handshake that failed, a ``403``) is worth a line: it is
either a misconfigured script or someone probing. But the listener is reachable by whoever
reaches its address, and a client retrying in a loop (or a scanner) would otherwise write one
warning per attempt. So:

- the first refusal of a kind from a client host in a window (60 s) is a ``WARNING``;
- repeats of it in that window are ``DEBUG`` lines (still there with ``--log-level debug``)
  and are counted; the next warning of that kind from that host says how many were held back;
- at most ``max_warnings`` warnings per window in all, so many hosts cannot flood it either;
- the table of (host, kind) is bounded; the oldest entry goes first.

Why not drop repeats altogether: an operator debugging a client still wants every attempt, and
``--log-level debug`` is how they ask for it. Why per host and kind rather than per message: the
message carries the client's port, which changes with every attempt.

Time comes from an injected clock, so the window is tested without sleeping.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RefusalLog", "describe_handshake_failure"]

_Key = tuple[str, str]


@dataclass(slots=True)
class _Seen:
    warned_at: float
    held_back: int = 0


class RefusalLog:
    """Rate-limited warnings about refused clients (see the module docstring)."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        window_s: float = 60.0,
        max_warnings: int = 20,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._window_s = window_s
        self._max_warnings = max_warnings
        self._max_keys = max_keys
        self._clock = clock
        self._seen: dict[_Key, _Seen] = {}
        self._window_started = -window_s
        self._warnings_in_window = 0

    def refused(self, host: str, kind: str, line: str) -> None:
        """Log ``line``, a refusal of ``kind`` (a short, stable token) from ``host``."""
        now = self._clock()
        if now - self._window_started >= self._window_s:
            self._window_started, self._warnings_in_window = now, 0
        key = (host, kind)
        seen = self._seen.get(key)
        is_repeat = seen is not None and now - seen.warned_at < self._window_s
        if is_repeat or self._warnings_in_window >= self._max_warnings:
            if seen is not None:
                seen.held_back += 1
            self._log.debug("%s (repeat, not warned again)", line)
            return
        held_back = seen.held_back if seen is not None else 0
        self._remember(key, _Seen(now))
        self._warnings_in_window += 1
        if held_back:
            self._log.warning("%s (and %d more like it before, logged at debug)", line, held_back)
        else:
            self._log.warning("%s", line)

    def _remember(self, key: _Key, seen: _Seen) -> None:
        self._seen.pop(key, None)
        if len(self._seen) >= self._max_keys:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = seen


def describe_handshake_failure(exc: BaseException, *, peer: str) -> tuple[str, str] | None:
    """(kind, reason) for a failed admin TLS handshake, or None if it is no refusal.

    A connection that closes before finishing the handshake (a port probe, a client giving
    up) was not refused by us and returns None; the caller logs it at debug level only.
    """
    use = f"use {peer}'s admin/cert.pem"
    if isinstance(exc, TimeoutError):
        return "timeout", f"the handshake did not finish in time ({exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "untrusted", (
            f"its certificate does not verify against this fabric's CA "
            f"({exc.verify_message or exc.reason}): a certificate of another fabric? {use}"
        )
    if not isinstance(exc, ssl.SSLError):
        return None
    reason = str(exc.reason or exc)
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "no-certificate", f"the client presented no certificate; {use}"
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNSUPPORTED_PROTOCOL"):
        return "not-tls", f"the client does not speak TLS 1.3 ({_words(reason)}); use https"
    if reason in ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE"):
        return "distrusted", (
            f"the client does not trust this gateway's certificate ({_words(reason)}): "
            "does it check it against the ca.pem of another fabric?"
        )
    if reason.startswith(("TLSV1_ALERT_", "TLSV13_ALERT_", "SSLV3_ALERT_")):
        return "alert", f"the client ended the handshake ({_words(reason)})"
    return "tls", _words(reason)


def _words(reason: str) -> str:
    return reason.lower().replace("_", " ")
