"""The byte relay between two transports: the tunnel's data phase.

Two ``RelayEnd`` protocols, one per transport, each writing what it receives into the other's
transport. This is the hot path, so a chunk costs one ``write`` and one addition:
- back-pressure without buffers: when one transport's write buffer fills, it pauses *reading*
  on the other one (``pause_writing`` -> ``pause_reading``), so memory per tunnel stays bounded
  by the transports' high-water marks;
- half-close: an EOF from one side becomes ``write_eof`` on the other (TCP FIN, or TLS
  ``close_notify`` through ``TLSTransport``), and the reverse direction keeps flowing; the
  tunnel closes when both directions have ended;
- an error (reset, truncated TLS) on one side aborts the other with a TCP RST, so a broken
  tunnel never looks like a clean end of stream.
- no timers per chunk: idle detection reads the byte counters from outside (see ``idle``).

The ``Relay`` reports its end once, through ``on_close``, with the byte counts and the reason,
then lets go of its ends and of ``on_close``: relay and ends refer to each other, and a finished
tunnel is freed by reference counting at once, not by the cycle collector some time later.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

__all__ = ["Parked", "Relay", "RelayEnd", "RelayResult", "reset"]

_LINGER_RST = struct.pack("ii", 1, 0)
_HIGH_WATER = 512 * 1024


def reset(transport: asyncio.Transport) -> None:
    """Close ``transport`` with a TCP RST (not a FIN), so the client cannot mistake it for EOF."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


@dataclass(frozen=True, slots=True)
class RelayResult:
    """How a tunnel ended; ``bytes_up`` is client -> service, ``bytes_down`` the reverse."""

    bytes_up: int
    bytes_down: int
    error: str | None  # None: both directions ended cleanly


class Parked(asyncio.Protocol):
    """Protocol of a connection waiting to join a relay: holds what arrives, forwards nothing.

    Reading is paused at once; an event loop may still deliver one chunk (uvloop starts
    reading after ``connection_made`` whatever the protocol asked), so that chunk is kept and
    reading paused again: at most one read's worth is held. An early EOF or loss is
    remembered too. The relay replays all of it when it attaches.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.early = bytearray()
        self.eof = False
        self.is_lost = False
        self.lost_with: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.early += data
        self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        return True  # half-closed: the other direction may still carry the reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_lost = True
        self.lost_with = exc


class RelayEnd(asyncio.Protocol):
    """One side of a relay; ``other`` is the end whose transport receives our bytes."""

    __slots__ = ("congested", "eof", "n_bytes", "other", "parked", "relay", "transport")

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by attach
        self.other: RelayEnd = None  # type: ignore[assignment]  # set by Relay
        self.parked: Parked | None = None
        self.n_bytes = 0
        self.eof = False
        self.congested = False  # our transport asked us to stop: the other side is paused

    def attach(self, transport: asyncio.Transport) -> None:
        previous = transport.get_protocol()
        if previous is None:
            # asyncio and uvloop drop a TCP transport's protocol once the connection is lost,
            # so a connection lost while parked comes with none (and its Parked is out of
            # reach): replay the loss, else the other side would stay open, unreported.
            previous = Parked()
            previous.is_lost = True
        self.transport = transport
        self.parked = previous if isinstance(previous, Parked) else None
        transport.set_protocol(self)
        if self.parked is None or not self.parked.is_lost:
            transport.set_write_buffer_limits(high=_HIGH_WATER)

    def replay_parked(self) -> None:
        """Deliver what arrived while parked (bytes first, then EOF or loss)."""
        parked, self.parked = self.parked, None
        if parked is None:
            return
        if parked.early:
            self.data_received(bytes(parked.early))
        if parked.is_lost:
            exc = parked.lost_with or ConnectionResetError("closed before the tunnel opened")
            self.connection_lost(exc)
        elif parked.eof:
            self.eof_received()

    def data_received(self, data: bytes) -> None:
        self.n_bytes += len(data)
        self.other.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other.transport
        if other.can_write_eof():
            other.write_eof()
        self.relay.check_done()
        return True  # keep our write direction open for the reply

    def pause_writing(self) -> None:
        self.congested = True
        self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        self.congested = False
        self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.end_lost(self, exc)


class Relay:
    """Couples two connected transports; ``client`` is the side that opened the tunnel."""

    def __init__(
        self,
        client: asyncio.Transport,
        service: asyncio.Transport,
        *,
        on_close: Callable[[RelayResult], None],
        labels: tuple[str, str, str] = ("", "", ""),
    ) -> None:
        self.up = RelayEnd(self)  # receives from the client side
        self.down = RelayEnd(self)  # receives from the service side
        self.up.other, self.down.other = self.down, self.up
        self._on_close = on_close
        self.labels = labels  # (direction, resource, peer): for metrics and the log
        self._error: str | None = None
        self._n_lost = 0
        self.up.attach(client)
        self.down.attach(service)
        self._idle_mark = (-1, -1)

    def start(self, *, to_client: bytes = b"", to_service: bytes = b"") -> None:
        """Deliver bytes that arrived during set-up, then let both sides flow."""
        if to_client:
            self.down.data_received(to_client)
        if to_service:
            self.up.data_received(to_service)
        self.up.replay_parked()
        self.down.replay_parked()
        for end in (self.up, self.down):
            # Not a side whose bytes' destination is already full: delivering what arrived
            # during set-up may have paused it, and a transport says "pause" only once.
            if not end.transport.is_closing() and not end.other.congested:
                end.transport.resume_reading()

    def check_done(self) -> None:
        if self.up.eof and self.down.eof:
            self.up.transport.close()
            self.down.transport.close()

    def end_lost(self, end: RelayEnd, exc: Exception | None) -> None:
        if exc is not None and self._error is None:
            self._error = f"{self._side_of(end)} side: {_describe(exc)}"
        other = end.other.transport
        if not other.is_closing():
            if exc is not None:
                reset(other)
            else:
                other.close()
        self._n_lost += 1
        if self._n_lost == 2:
            on_close, self._on_close = self._on_close, _ignore
            on_close(RelayResult(self.up.n_bytes, self.down.n_bytes, self._error))
            for each in (self.up, self.down):
                each.other = each.relay = None  # type: ignore[assignment]  # no more callbacks

    def _side_of(self, end: RelayEnd) -> str:
        """Who is at ``end``, for the log: one side of a gateway's relay is always the other
        gateway (the service side on egress, the client side on ingress), and an error
        there means that gateway or the link to it failed, not the client or the service."""
        direction, _, peer = self.labels
        if end is self.up:
            return f"peer {peer}" if direction == "ingress" else "client"
        return f"peer {peer}" if direction == "egress" else "service"

    def close(self, reason: str) -> None:
        """End the tunnel from outside (idle timeout, shutdown): reset both sides."""
        if self._error is None:
            self._error = reason
        reset(self.up.transport)
        reset(self.down.transport)

    def is_idle(self) -> bool:
        """True if no byte moved since the previous call (called by one periodic sweeper)."""
        mark = (self.up.n_bytes, self.down.n_bytes)
        idle, self._idle_mark = mark == self._idle_mark, mark
        return idle


def _ignore(result: RelayResult) -> None:
    pass


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
