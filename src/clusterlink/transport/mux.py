"""Multiplexed connections: streams of one mTLS connection, each seen as a transport.

``MuxSession`` is the application protocol of an mTLS connection whose ALPN is
``clusterlink-mux/1`` (or the reverse links' ``clusterlink-mux-reverse/1``): a
``SocketTLSTransport`` (``transport.tls_socket``: it never half-closes), or a ``TLSLayer``
on a reverse link its gateway dialled. It drives a
sans-io ``protocol.mux.MuxConnection`` and gives every tunnel a ``StreamTransport``
(``transport.mux_stream``, re-exported here), a real ``asyncio.Transport``, so the relay
(``dataplane.relay``) runs on a stream exactly as on a TCP socket. This module is the
connection's side: it turns the connection's events into calls on its streams, answers OPENs,
and keeps what one peer may make us hold bounded; what a single stream promises its relay is
``mux_stream``'s.

When the TLS connection's own buffer fills (the peer reads slower than we write, or not at
all), every stream's producer is paused at once, and a stream that is written to meanwhile --
a new one too -- holds the bytes and pauses its producer, whatever window the peer granted:
so what waits for a peer that does not read is bounded by the connection's buffer plus one
write per stream, never by the windows it announced. The same peer can still make us answer:
every OPEN gets a VERDICT; a peer that sends ``_MAX_OPENS_UNREAD`` OPENs while not reading
is cut off. Frames are written out after each batch of incoming events and after each write,
so nothing waits for a timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from clusterlink.errors import PeerUnreachable, RemoteProtocolError
from clusterlink.protocol import ExportRef, Health, Verdict
from clusterlink.protocol.mux import (
    ConnectionEnded,
    MuxConnection,
    MuxEvent,
    MuxSettings,
    PingReceived,
    PongReceived,
    StreamData,
    StreamEnded,
    StreamRefused,
    StreamRequest,
    StreamReset,
    StreamVerdict,
    WindowOpened,
)
from clusterlink.transport.mux_stream import StreamTransport

__all__ = ["MuxSession", "StreamTransport"]

log = logging.getLogger("clusterlink.mux")

# OPENs answered while the peer reads none of our bytes; beyond, it is only making us buffer.
_MAX_OPENS_UNREAD = 10_000


class MuxSession(asyncio.Protocol):
    """The application protocol of one multiplexed mTLS connection (either end).

    Client side: ``open_stream`` sends an OPEN and returns the stream with the peer's
    verdict. Server side: ``on_request(session, event)`` is called for every valid OPEN and
    answers with ``accept`` or ``refuse``. Either side: ``ping`` asks the other for its
    health, and a PING from the other side is answered with what ``health()`` says (a session
    without ``health`` leaves PINGs unanswered).
    """

    def __init__(
        self,
        *,
        client_side: bool,
        peer_name: str = "",
        settings: MuxSettings | None = None,
        on_request: Callable[[MuxSession, StreamRequest], None] | None = None,
        on_refused: Callable[[MuxSession, StreamRefused], None] | None = None,
        health: Callable[[], Health] | None = None,
    ) -> None:
        self.mux = MuxConnection(client_side=client_side, peer_name=peer_name, settings=settings)
        self.peer_name = peer_name
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, StreamTransport] = {}
        self._verdicts: dict[int, asyncio.Future[Verdict]] = {}
        self._on_request = on_request
        self._on_refused = on_refused
        self._health = health
        self._pings: dict[int, asyncio.Future[Health]] = {}
        self._next_ping = 1
        self.goaway_message = ""  # why the other side sent GOAWAY, if it said
        self._closed: asyncio.Future[None] | None = None  # made by wait_closed
        self.is_open = True
        self.is_draining = False  # drain(): no new streams, closed when the last one ends
        self.is_congested = False  # our writes are paused: the peer reads slower than we write
        self._opens_unread = 0  # OPENs answered since we became congested

    # -- TLS side -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.flush()

    def data_received(self, data: bytes) -> None:
        if not self.is_open:
            return  # closed by us: what the TLS layer still had decrypted goes nowhere
        try:
            events = self.mux.receive_data(data)
        except RemoteProtocolError as exc:
            log.warning("closing multiplexed connection to %s: %s", self.peer_name or "?", exc)
            self.flush()
            self._close_all(ConnectionResetError(str(exc)))
            assert self.transport is not None
            self.transport.close()
            return
        streams = self.streams
        for event in events:
            if type(event) is StreamData:  # nearly every event: straight to its stream
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._on_data(event.data)
            else:
                self._handle(event)
        if self._opens_unread > _MAX_OPENS_UNREAD:
            log.warning(
                "closing multiplexed connection to %s: it sent %d new streams while reading "
                "none of our answers",
                self.peer_name or "?",
                self._opens_unread,
            )
            self._close_all(ConnectionResetError("the peer reads nothing"))
            assert self.transport is not None
            self.transport.abort()
            return
        self.flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_all(
            ConnectionResetError(f"multiplexed connection lost{f': {exc}' if exc else ''}")
        )

    def pause_writing(self) -> None:
        self.is_congested = True
        for stream in list(self.streams.values()):
            stream._pause_producer()

    def resume_writing(self) -> None:
        self.is_congested = False
        self._opens_unread = 0
        for stream in list(self.streams.values()):
            stream._on_window()
        self.flush()

    # -- events -------------------------------------------------------------------------------

    def _handle(self, event: MuxEvent) -> None:
        """Every event but ``StreamData`` (``data_received`` passes those on itself)."""
        if isinstance(event, StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._on_end()
        elif isinstance(event, WindowOpened):
            targets = (
                list(self.streams.values())
                if event.stream_id is None
                else [s for s in (self.streams.get(event.stream_id),) if s is not None]
            )
            for stream in targets:
                stream._on_window()
        elif isinstance(event, StreamReset):
            reason = f"the peer reset the stream (code {event.error_code})"
            waiter = self._verdicts.pop(event.stream_id, None)
            if waiter is not None and not waiter.done():  # an open the peer would not take
                waiter.set_exception(PeerUnreachable(f"{self.peer_name}: {reason}"))
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._gone(ConnectionResetError(reason))
        elif isinstance(event, StreamVerdict):
            waiter = self._verdicts.pop(event.stream_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.verdict)
        elif isinstance(event, StreamRequest):
            self._opens_unread += self.is_congested
            if self._on_request is None:
                self.mux.reset_stream(event.stream_id, refused=True)
            else:
                # The stream exists from now on, reading paused, so tunnel bytes the client
                # sends before the verdict are kept, never dropped.
                self.streams[event.stream_id] = StreamTransport(self, event.stream_id)
                self._on_request(self, event)
        elif isinstance(event, StreamRefused):
            self._opens_unread += self.is_congested
            if self._on_refused is not None:
                self._on_refused(self, event)
        elif isinstance(event, PingReceived):
            # Not answered while the peer does not read what we send: a PING flood from a
            # peer that never reads cannot make us buffer PONGs (it only misses answers).
            if self._health is not None and not self.is_congested:
                self.mux.send_pong(event.token, self._health())
        elif isinstance(event, PongReceived):
            pong = self._pings.pop(event.token, None)
            if pong is not None and not pong.done():
                pong.set_result(event.health)
        elif isinstance(event, ConnectionEnded):
            # GOAWAY: the peer takes no new streams; those it already took go on. Ours that
            # it never saw will not be answered.
            self.goaway_message = event.message
            who = f"peer {self.peer_name}" if self.peer_name else "the peer"
            for sid, waiter in list(self._verdicts.items()):
                if sid > event.last_stream_id and not waiter.done():
                    waiter.set_exception(PeerUnreachable(f"{who} is closing this connection"))

    # -- client side --------------------------------------------------------------------------

    @property
    def can_open_stream(self) -> bool:
        return self.is_open and self.mux.can_open_stream

    async def open_stream(
        self, export: ExportRef, attributes: Mapping[str, str]
    ) -> tuple[StreamTransport, Verdict]:
        """OPEN a new stream; the stream (reading paused) and the peer's verdict."""
        if not self.can_open_stream:
            raise PeerUnreachable(f"no more streams on this connection to {self.peer_name}")
        sid = self.mux.open_stream(export, attributes)
        stream = self.streams[sid] = StreamTransport(self, sid)
        waiter = self._verdicts[sid] = asyncio.get_running_loop().create_future()
        self.flush()
        try:
            verdict = await waiter
        except BaseException:
            self._verdicts.pop(sid, None)  # no answer will come after our reset
            stream.abort()
            raise
        if not verdict.is_allowed:
            self.forget(sid)
        return stream, verdict

    def fail_pending(self, reason: str) -> None:
        """Stop waiting for the verdicts of our opens (the peer seems gone): each fails with
        ``PeerUnreachable`` now, so its client can be served by another source at once.
        Tunnels already open are left alone."""
        for waiter in list(self._verdicts.values()):
            if not waiter.done():
                waiter.set_exception(PeerUnreachable(reason))

    async def ping(self) -> Health:
        """The other side's health, over this connection (bound the wait from outside)."""
        if not self.is_open:
            raise PeerUnreachable(f"the connection to {self.peer_name or 'the peer'} is closed")
        token, self._next_ping = self._next_ping, self._next_ping + 1
        pong: asyncio.Future[Health] = asyncio.get_running_loop().create_future()
        self._pings[token] = pong
        self.mux.send_ping(token)
        self.flush()
        try:
            return await pong
        finally:
            self._pings.pop(token, None)

    # -- server side --------------------------------------------------------------------------

    def accept(self, stream_id: int) -> StreamTransport | None:
        """Answer 200; the stream has reading paused until the relay resumes it.

        None if the stream is already gone (the client reset it while we decided).
        """
        stream = self.streams.get(stream_id)
        if stream is None or stream.is_closing():
            return None
        self.mux.send_verdict(stream_id, Verdict.allow())
        self.flush()
        return stream

    def refuse(self, stream_id: int, verdict: Verdict) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream._hand_back()  # what the client sent behind its OPEN is never read
            self.mux.send_verdict(stream_id, verdict)
            self.flush()

    # -- plumbing -----------------------------------------------------------------------------

    def flush(self) -> None:
        """Our frames to the TLS transport (which drops them once it is closing)."""
        buffers = self.mux.data_to_send()
        if buffers and self.transport is not None:
            if len(buffers) == 1:  # a message's usual frame: no joining to do
                self.transport.write(buffers[0])
            else:
                self.transport.writelines(buffers)

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if self.is_draining and not self.streams:
            self.close()

    def drain(self, message: str = "") -> None:
        """Retire this connection gracefully: GOAWAY now (no new streams on it), close once
        its last stream has ended. Open tunnels are not touched. ``message`` tells the other
        side why."""
        if not self.is_open or self.is_draining:
            return
        self.is_draining = True
        self.mux.close(message)
        self.flush()
        if not self.streams:
            self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default if self.transport is None else self.transport.get_extra_info(name, default)

    def close(self, message: str = "") -> None:
        """GOAWAY and close once the bytes are out; open streams are reset. ``message`` tells
        the other side why."""
        if not self.is_open:
            return
        self.mux.close(message)
        self.flush()
        self._close_all(ConnectionResetError("multiplexed connection closed"))
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        """Until the connection is closed or lost, whichever side ended it."""
        if not self.is_open:
            return
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed)

    def _close_all(self, exc: Exception) -> None:
        self.is_open = False
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        for waiter in self._verdicts.values():
            if not waiter.done():
                waiter.set_exception(PeerUnreachable(f"{self.peer_name or 'peer'}: {exc}"))
        self._verdicts.clear()
        for pong in self._pings.values():
            if not pong.done():
                pong.set_exception(PeerUnreachable(f"{self.peer_name or 'peer'}: {exc}"))
        self._pings.clear()
        for stream in list(self.streams.values()):
            stream._gone(exc)
