"""What one caller may take from a gateway at once, and what happens when it asks for more.

A gateway faces other organisations' networks, so every resource a caller can make it hold
is counted against a maximum (``DataplaneSettings``):

================================ ===================================================
connections per listener         TCP connections open on the peer listener and on each
                                 import listener (``max_connections``)
pending handshakes               TLS handshakes in progress on the peer listener
                                 (``max_pending_handshakes``)
tunnels per peer                 tunnels to and from one peer, counted from the moment
                                 one is admitted until it ends (``max_connections_per_peer``)
================================ ===================================================

Refusing is the least surprising thing each layer can do: a TCP accept over a limit is reset
at once (before any TLS work), a CONNECT or OPEN over the per-peer limit is answered ``503
overloaded`` (and the source gateway tries its next source). Timeouts are limits too and are
counted the same way. Every hit increments ``clusterlink_limit_hits_total{limit}`` and logs a
line, rate-limited per source (``throttle``), so a flood cannot flood the log.

Counting is plain integers on the event loop: no locks, nothing per byte. Each ``take`` is
matched by exactly one ``give_back``, by whoever owns the thing counted when it ends.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter

from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.log_throttle import LogThrottle
from clusterlink.logs import fields
from clusterlink.metrics import GatewayMetrics, LimitUsage

__all__ = ["PEER_LISTENER", "Limit", "Limits", "PeerTunnels", "Slots"]

log = logging.getLogger("clusterlink.limits")

PEER_LISTENER = "peers"
"""The peer listener's name in ``clusterlink_connections_open{listener}``."""


class Limit(enum.StrEnum):
    """The ``limit`` label of ``clusterlink_limit_hits_total``."""

    MAX_CONNECTIONS = "max_connections"
    MAX_CONNECTIONS_PER_PEER = "max_connections_per_peer"
    MAX_PENDING_HANDSHAKES = "max_pending_handshakes"
    MAX_STREAMS_PER_CONNECTION = "max_streams_per_connection"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    REQUEST_HEAD_TIMEOUT = "request_head_timeout"
    IDLE_TIMEOUT = "idle_timeout"


class Slots:
    """A count of things in use, against a maximum."""

    __slots__ = ("in_use", "maximum")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.in_use = 0

    def take(self) -> bool:
        """One more, if there is room; False (nothing taken) at the maximum."""
        if self.in_use >= self.maximum:
            return False
        self.in_use += 1
        return True

    def give_back(self) -> None:
        self.in_use -= 1


class PeerTunnels:
    """Tunnels per peer, both directions, each against the same maximum."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self._in_use: Counter[str] = Counter()

    def take(self, peer: str) -> bool:
        if self._in_use[peer] >= self.maximum:
            return False
        self._in_use[peer] += 1
        return True

    def give_back(self, peer: str) -> None:
        self._in_use[peer] -= 1
        if not self._in_use[peer]:
            del self._in_use[peer]

    def in_use(self, peer: str) -> int:
        return self._in_use[peer]

    def usage(self) -> dict[str, int]:
        return dict(self._in_use)


class Limits:
    """The data plane's counters, shared by the peer listener and the import listeners."""

    def __init__(self, settings: DataplaneSettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self._metrics = metrics
        self.peer_connections = Slots(settings.max_connections)
        self.pending_handshakes = Slots(settings.max_pending_handshakes)
        self.peer_tunnels = PeerTunnels(settings.max_connections_per_peer)
        self._listeners: dict[str, Slots] = {PEER_LISTENER: self.peer_connections}
        self._log = LogThrottle(log)

    def listener(self, name: str) -> Slots:
        """The connection count of the listener ``name`` (an import), made on first use.

        A listener that is closed keeps its count object for the connections it still has;
        ``forget_listener`` only stops reporting it.
        """
        slots = self._listeners.get(name)
        if slots is None:
            slots = self._listeners[name] = Slots(self.settings.max_connections)
        return slots

    def forget_listener(self, name: str) -> None:
        if name != PEER_LISTENER:
            self._listeners.pop(name, None)

    def hit(self, limit: Limit, source: str, message: str, *args: object) -> None:
        """Count a hit of ``limit`` and log ``message`` (rate-limited per ``source``; in JSON
        with ``event: limit_hit`` and the limit's name as the ``reason``)."""
        self._metrics.limit_hits.labels(limit.value).inc()
        extra = fields("limit_hit", reason=limit.value)
        self._log.log(logging.WARNING, f"{limit.value}:{source}", message, *args, extra=extra)

    def usage(self) -> LimitUsage:
        """For the metrics, at scrape time."""
        return LimitUsage(
            connections={name: slots.in_use for name, slots in self._listeners.items()},
            pending_handshakes=self.pending_handshakes.in_use,
            peer_tunnels=self.peer_tunnels.usage(),
        )
