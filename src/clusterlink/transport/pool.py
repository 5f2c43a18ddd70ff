"""Warm connections: idle, already-handshaken TLS connections to one peer gateway.

A new tunnel should cost one round trip (CONNECT -> 200), not a TCP and TLS handshake too. So
after a connection to a gateway is taken, the pool refills itself in the background, one
dial at a time (refills must not crowd out live set-ups on the event loop), up to ``size``.

States of a pooled connection (httpcore style): DIALING (a refill in flight) -> IDLE (in the
deque, watched by ``_IdleWatch``) -> taken (the caller owns it; the pool forgets it). An idle
connection that the other side closes, that receives bytes, or that is older than
``max_idle_s`` is dropped, never handed out. The peer listener waits longer than
``max_idle_s`` for a first request, so a connection handed out is not about to be closed.
A pool that is not used keeps no connections: refills happen only after a take.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from clusterlink.errors import ClusterLinkError
from clusterlink.transport.tls import TLSLayer

__all__ = ["Dialer", "WarmPool"]

Dialer = Callable[[asyncio.Protocol], Awaitable[TLSLayer]]


class _IdleWatch(asyncio.Protocol):
    """App protocol of a pooled connection while nobody uses it."""

    def __init__(self, pool: WarmPool) -> None:
        self.pool = pool
        self.layer: TLSLayer | None = None
        self.born = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        self._drop()

    def eof_received(self) -> bool:
        self._drop()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop()

    def _drop(self) -> None:
        if self.layer is not None:
            self.pool.forget(self.layer)
            self.layer.abort()


class WarmPool:
    """Idle connections to one gateway address, produced by ``dial``."""

    def __init__(self, dial: Dialer, *, size: int = 2, max_idle_s: float = 30.0) -> None:
        self._dial = dial
        self._size = size
        self._max_idle_s = max_idle_s
        self._idle: deque[tuple[TLSLayer, _IdleWatch]] = deque()
        self._refill: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def acquire(self, app: asyncio.Protocol) -> tuple[TLSLayer, bool]:
        """A connection whose app protocol is now ``app``; the flag says if it was warm.

        Either way ``app.connection_made`` has been called with the TLS transport.
        """
        layer = self._take_idle()
        self._start_refill()
        if layer is not None:
            # A warm connection looks to ``app`` exactly like a fresh one: it is told so.
            layer.transport.set_protocol(app)
            app.connection_made(layer.transport)
            return layer, True
        return await self._dial(app), False

    async def dial_fresh(self, app: asyncio.Protocol) -> TLSLayer:
        """A new connection, bypassing the idle ones (after a warm one failed)."""
        return await self._dial(app)

    def forget(self, layer: TLSLayer) -> None:
        for i, (pooled, _) in enumerate(self._idle):
            if pooled is layer:
                del self._idle[i]
                return

    def retire(self) -> None:
        """Drop the idle connections and any refill under way (made with credentials that
        were just replaced); the pool refills itself on the next take."""
        if self._refill is not None:
            self._refill.cancel()
        while self._idle:
            layer, _ = self._idle.popleft()
            layer.abort()

    def close(self) -> None:
        self._closed = True
        self.retire()

    def _take_idle(self) -> TLSLayer | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            layer, watch = self._idle.pop()  # newest first: least likely to be stale
            watch.layer = None
            if not layer.is_closing() and now - watch.born < self._max_idle_s:
                return layer
            layer.abort()
        return None

    def _start_refill(self) -> None:
        if self._closed or self._size <= 0:
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._refill_loop())

    async def _refill_loop(self) -> None:
        while not self._closed and len(self._idle) < self._size:
            watch = _IdleWatch(self)
            try:
                layer = await self._dial(watch)
            except ClusterLinkError:
                return  # the next take dials in the foreground and reports the error
            if self._closed or layer.is_closing():
                layer.abort()
                return
            watch.layer = layer
            self._idle.append((layer, watch))
