"""A UDP flow seen as a stream transport, so that the byte relay carries it unchanged.

Why a transport and not a pump of its own: the relay (``relay``), the tunnel registry
(``tunnels``: idle sweep, revocation, records, metrics) and both tunnel modes already do
everything a flow needs once its datagrams are a byte stream. ``DatagramFlow`` is that
stream: datagrams that arrive for the flow reach its protocol framed (``protocol.datagrams``),
and the framed bytes the relay writes into it leave as datagrams. One class serves both ends:

- at the importing gateway, one flow per client address of a UDP Import, sending through the
  Import's one socket (``udp_listener``);
- at the exporting gateway, one flow per tunnel, on a socket of its own connected to the
  service (``dial_udp``), so the service's answers find their tunnel by the socket alone.

What a flow promises is UDP's: nothing is retransmitted, and memory is bounded by dropping.
While reading is paused (the tunnel is being set up, or it pushes back) arriving datagrams
wait in a queue of ``queue_datagrams``; a full queue drops its *oldest* datagram (a late
answer is worth less than a fresh one). Every drop is reported through ``on_drop`` with its
reason, for ``clusterlink_udp_datagrams_dropped_total``.

How a flow ends, the transport contract the relay relies on:
- ``write_eof`` (the other side's tunnel end closed its direction) ends the flow: UDP has no
  half-close worth keeping, and the other gateway is already done with it;
- ``finish`` (idle; the Import going away) is the quiet end: no datagram is taken in any
  more and the protocol hears EOF, so the relay ends the tunnel's direction cleanly; the flow
  ends when the other side's end follows (``write_eof``), so neither gateway records an error;
- ``close`` and ``abort`` end it at once. In every case the protocol hears
  ``connection_lost`` once, soon after, and ``on_end`` runs once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from clusterlink.addresses import Address, format_address
from clusterlink.errors import PeerUnreachable, RemoteProtocolError
from clusterlink.protocol.datagrams import MAX_DATAGRAM_BYTES, DatagramReader, frame_datagram

__all__ = [
    "MAX_SEND_BUFFER_BYTES",
    "UDP_QUEUE_DATAGRAMS",
    "DatagramFlow",
    "Drop",
    "bounded_sender",
    "count_too_large",
    "dial_udp",
]

UDP_QUEUE_DATAGRAMS = 256
"""Datagrams a flow holds while its tunnel is being set up or pushes back (see the module)."""

MAX_SEND_BUFFER_BYTES = 1024 * 1024
"""Datagrams a UDP socket may hold unsent (the kernel's buffer is full) before more are
dropped: asyncio would otherwise queue them without bound."""


class Drop(enum.StrEnum):
    """Why a datagram was dropped: the ``reason`` label of the drop counter."""

    QUEUE_FULL = "queue_full"  # the flow's queue was full: its oldest datagram went
    MAX_FLOWS = "max_flows"  # a new client while the Import had --max-connections flows
    FLOW_ENDED = "flow_ended"  # still queued when the flow ended (refused, failed, closed)
    TOO_LARGE = "too_large"  # over 65,507 bytes (possible over IPv6), never framed
    SEND_BUFFER = "send_buffer"  # the socket had MAX_SEND_BUFFER_BYTES unsent already


class _Nobody(asyncio.Protocol):
    """The protocol of a flow before one is set, and after it ended (which lets go of the
    real one, so a finished flow is freed by reference counting)."""


_NOBODY = _Nobody()


class DatagramFlow(asyncio.Transport):
    """One UDP flow, with the contract of a stream transport (see the module docstring)."""

    def __init__(
        self,
        *,
        send: Callable[[bytes], None],
        peername: Any,
        queue_datagrams: int,
        on_drop: Callable[[Drop, int], None],
        on_end: Callable[[DatagramFlow], None] = lambda _flow: None,
    ) -> None:
        super().__init__()
        self._send = send
        self._peername = peername
        self._queue: deque[bytes] = deque()
        self._queue_datagrams = queue_datagrams
        self._on_drop = on_drop
        self._on_end = on_end
        self._reader = DatagramReader()
        self._protocol: asyncio.Protocol = _NOBODY
        self._is_paused = True  # until the relay resumes it: nothing flows during set-up
        self.is_finishing = False  # ``finish`` was called: no datagram is taken in any more
        self._is_ended = False

    def start(self, protocol: asyncio.Protocol) -> None:
        """Give the flow its first protocol, as a connection is made."""
        self._protocol = protocol
        protocol.connection_made(self)

    # -- datagrams in -------------------------------------------------------------------------

    def datagram_in(self, payload: bytes) -> None:
        """A datagram for this flow: to the protocol framed, or queued while paused."""
        if self._is_ended or self.is_finishing:
            return
        if len(payload) > MAX_DATAGRAM_BYTES:
            self._on_drop(Drop.TOO_LARGE, 1)
            return
        if self._is_paused:
            if len(self._queue) >= self._queue_datagrams:
                self._queue.popleft()
                self._on_drop(Drop.QUEUE_FULL, 1)
            self._queue.append(payload)
            return
        self._protocol.data_received(frame_datagram(payload))

    # -- asyncio.Transport ----------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._is_ended:
            return
        try:
            datagrams = self._reader.feed(data)
        except RemoteProtocolError as exc:
            self._end(exc)
            return
        for datagram in datagrams:
            self._send(datagram)

    def write_eof(self) -> None:
        self._end(None)

    def can_write_eof(self) -> bool:
        return True

    def pause_reading(self) -> None:
        self._is_paused = True

    def resume_reading(self) -> None:
        if not self._is_paused or self._is_ended:
            return
        self._is_paused = False
        queue = self._queue
        while queue and not self._is_paused and not self._is_ended:
            self._protocol.data_received(frame_datagram(queue.popleft()))

    def is_reading(self) -> bool:
        return not self._is_paused

    def finish(self) -> None:
        """End quietly: take nothing more in and tell the protocol EOF (see the module)."""
        if self._is_ended or self.is_finishing:
            return
        self.is_finishing = True
        self._drop_queue()
        self._protocol.eof_received()

    def close(self) -> None:
        self._end(None)

    def abort(self) -> None:
        self._end(None)

    def is_closing(self) -> bool:
        return self._is_ended

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        if self._is_ended:  # tell the newcomer at once that there is nothing left
            asyncio.get_running_loop().call_soon(protocol.connection_lost, None)
            return
        self._protocol = protocol

    def get_protocol(self) -> asyncio.Protocol:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # No "socket": an import's socket is shared by all its flows, and nothing done to a
        # connection's socket (SO_LINGER for a reset) applies to a flow.
        return self._peername if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Nothing is buffered here to limit: datagrams leave at once, or are dropped."""

    def get_write_buffer_size(self) -> int:
        return 0

    # -- the end ------------------------------------------------------------------------------

    def _drop_queue(self) -> None:
        if self._queue:
            self._on_drop(Drop.FLOW_ENDED, len(self._queue))
            self._queue.clear()

    def _end(self, exc: Exception | None) -> None:
        if self._is_ended:
            return
        self._is_ended = True
        self._drop_queue()
        self._on_end(self)
        asyncio.get_running_loop().call_soon(self._lost, exc)

    def _lost(self, exc: Exception | None) -> None:
        protocol, self._protocol = self._protocol, _NOBODY
        protocol.connection_lost(exc)


def bounded_sender(
    transport: asyncio.DatagramTransport, on_drop: Callable[[Drop, int], None], *addr: Any
) -> Callable[[bytes], None]:
    """``send`` for a flow: through ``transport`` (to ``addr``, if given), dropping what a
    socket that cannot keep up would otherwise pile up, and nothing once it is closing."""

    def send(datagram: bytes) -> None:
        if transport.is_closing():
            return
        # asyncio's datagram transports count their unsent bytes too; typeshed omits it.
        if cast(asyncio.WriteTransport, transport).get_write_buffer_size() > MAX_SEND_BUFFER_BYTES:
            on_drop(Drop.SEND_BUFFER, 1)
            return
        if datagram:
            transport.sendto(datagram, *addr)
        else:
            _send_empty(transport, *addr)

    return send


def _send_empty(transport: asyncio.DatagramTransport, *addr: Any) -> None:
    """An empty datagram, which UDP allows (some protocols' keep-alives) and asyncio's and
    uvloop's ``sendto`` both skip: sent on the transport's socket itself, or dropped if that
    cannot send now (as UDP may)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    raw = socket.socket(fileno=sock.fileno())  # a view of the same descriptor, detached below
    try:
        with contextlib.suppress(OSError):
            raw.sendto(b"", *addr) if addr else raw.send(b"")
    finally:
        raw.detach()


def count_too_large(exc: Exception, on_drop: Callable[[Drop, int], None]) -> None:
    """A send error of a UDP socket: a datagram larger than the path allows (``EMSGSIZE``)
    was dropped whole, never cut, and is counted; other errors (an ICMP port unreachable for
    an earlier datagram) lose only that datagram, as they would without a gateway."""
    if isinstance(exc, OSError) and exc.errno == errno.EMSGSIZE:
        on_drop(Drop.TOO_LARGE, 1)


class _ServiceSocket(asyncio.DatagramProtocol):
    """The exporting gateway's socket for one flow, connected to the service."""

    def __init__(self, on_drop: Callable[[Drop, int], None]) -> None:
        self.flow: DatagramFlow | None = None
        self.on_drop = on_drop

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.flow is not None:
            self.flow.datagram_in(data)

    def error_received(self, exc: Exception) -> None:
        """The flow goes on (see ``count_too_large``)."""
        count_too_large(exc, self.on_drop)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.flow is not None and exc is not None:
            self.flow._end(exc)


async def dial_udp(
    addr: Address,
    protocol: asyncio.Protocol,
    *,
    queue_datagrams: int,
    on_drop: Callable[[Drop, int], None],
    what: str,
) -> DatagramFlow:
    """A flow to the UDP service at ``addr`` on a connected socket of its own, with
    ``protocol`` as its first protocol. Nothing is sent: UDP has no handshake, so a service
    that does not listen shows only as missing answers (the socket's ICMP errors)."""
    loop = asyncio.get_running_loop()
    service_socket = _ServiceSocket(on_drop)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: service_socket, remote_addr=addr)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise PeerUnreachable(f"{what} at {format_address(addr)}: {reason.lower()}") from exc
    flow = DatagramFlow(
        send=bounded_sender(transport, on_drop),
        peername=transport.get_extra_info("peername"),
        queue_datagrams=queue_datagrams,
        on_drop=on_drop,
        on_end=lambda _flow: transport.close(),
    )
    service_socket.flow = flow
    flow.start(protocol)
    return flow
