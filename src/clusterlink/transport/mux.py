"""Multiplexed connections: streams of one mTLS connection, each seen as a transport.

``MuxSession`` is the application protocol of a ``TLSLayer`` whose ALPN is
``clusterlink-mux/1``; it drives
a sans-io ``protocol.mux.MuxConnection`` and gives every tunnel a ``StreamTransport``, a real
``asyncio.Transport``, so the relay (``dataplane.relay``) runs on a stream exactly as on a TCP
socket:

- ``write`` sends what the stream's send window allows and keeps the rest; past the
  high-water mark the producer is paused (``pause_writing``) until the peer opens the window;
- ``pause_reading`` stops *acknowledging*: the peer's window for this stream closes and it
  stops sending, while the other streams flow on; data already in flight is held (at most one
  window) and delivered on ``resume_reading``;
- ``write_eof`` is END (after the bytes still held), ``abort`` is RESET; a received RESET or
  the loss of the whole connection is ``connection_lost`` with a ``ConnectionResetError``, so
  the relay resets the other side as it would for TCP.
- received bytes are handed on as ``memoryview`` slices of the decrypted record (no copy);
  every consumer on our data path (the relay, TCP and TLS transports) takes any buffer.

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
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from clusterlink.errors import PeerUnreachable, RemoteProtocolError
from clusterlink.protocol import ExportRef, Verdict
from clusterlink.protocol.mux import (
    ConnectionEnded,
    MuxConnection,
    MuxEvent,
    MuxSettings,
    StreamData,
    StreamEnded,
    StreamRefused,
    StreamRequest,
    StreamReset,
    StreamVerdict,
    WindowOpened,
)

__all__ = ["MuxSession", "StreamTransport"]

log = logging.getLogger("clusterlink.mux")

_HIGH_WATER = 512 * 1024
# OPENs answered while the peer reads none of our bytes; beyond, it is only making us buffer.
_MAX_OPENS_UNREAD = 10_000


class _Unattached(asyncio.Protocol):
    """A stream's protocol until the relay takes it: it never gets bytes (reading paused).
    Also the protocol of a finished stream, which lets go of its real one: stream and
    protocol refer to each other, and a finished tunnel is freed by reference counting."""


_FINISHED = _Unattached()


class StreamTransport(asyncio.Transport):
    """One stream of a ``MuxSession``, with the contract of a TCP transport."""

    def __init__(self, session: MuxSession, stream_id: int) -> None:
        super().__init__()
        self._session = session
        self.stream_id = stream_id
        self._protocol: asyncio.Protocol = _Unattached()
        # Written, not yet sent (window closed): chunks as they were written, no copies.
        self._held: deque[bytes | memoryview] = deque()
        self._held_bytes = 0
        self._inbox: deque[memoryview] = deque()  # received while reading paused
        self._reading_paused = True  # until the relay attaches and resumes
        self._writing_paused = False
        self._eof_wanted = False  # write_eof() called while bytes were held
        self._sent_end = False
        self._got_end = False
        self._end_delivered = False
        self._closing = False
        self._lost: Exception | None = None  # set once the stream is gone
        self._is_gone = False
        self._high_water = _HIGH_WATER

    # -- asyncio.Transport -------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._sent_end or self._is_gone:
            return
        if isinstance(data, bytearray):
            data = bytes(data)  # its owner may change it after we return
        session = self._session
        if not self._held and not session.is_congested:
            # One DATA frame carries at most 1 MiB: a bigger write is several frames, as
            # many as the window takes now (the rest is held for the next window).
            send_data, sid, total, size = session.mux.send_data, self.stream_id, 0, len(data)
            while total < size and (
                sent := send_data(sid, memoryview(data)[total:] if total else data)
            ):
                total += sent
            session.flush()
            if total == size:
                return
            data = memoryview(data)[total:]
        self._held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes > self._high_water or session.is_congested:
            self._pause_producer()

    def write_eof(self) -> None:
        if self._sent_end or self._is_gone:
            return
        if self._held:
            self._eof_wanted = True
            return
        self._send_end()

    def can_write_eof(self) -> bool:
        return True

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        self._deliver_inbox()

    def is_reading(self) -> bool:
        return not self._reading_paused

    def close(self) -> None:
        """Like a TCP close. After the peer's END_STREAM: the held bytes, then ours.

        Before it, the peer may still be sending and nobody would read it: the stream is
        reset, as TCP answers unread data with a RST. (The relay closes a stream only after
        both directions ended, or to end a tunnel that is broken anyway.)
        """
        if self._closing or self._is_gone:
            return
        if not self._got_end:
            self.abort()
            return
        self._closing = True
        self._reading_paused = True
        if self._held:
            self._eof_wanted = True
        elif not self._sent_end:
            self._send_end()
        self._maybe_gone()

    def abort(self) -> None:
        if self._is_gone:
            return
        self._closing = True
        self._session.mux.reset_stream(self.stream_id)
        self._session.flush()
        self._gone(None)

    def is_closing(self) -> bool:
        return self._closing or self._is_gone

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        if self._is_gone:  # tell the newcomer at once that there is nothing left
            asyncio.get_running_loop().call_soon(protocol.connection_lost, self._lost)
            return
        self._protocol = protocol
        # The newcomer was told nothing: if writing must still pause, its first write says so.
        self._writing_paused = False

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "stream_id":
            return self.stream_id
        if name == "socket":  # the connection's, shared by every stream: not one stream's to
            return default  # change (``relay.reset`` would make the whole connection's end a RST)
        return self._session.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._held_bytes

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high_water = _HIGH_WATER if high is None else high

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._high_water // 4, self._high_water

    # -- driven by the session -----------------------------------------------------------------

    def _on_data(self, data: memoryview) -> None:
        if self._closing:  # nobody reads any more: hand the window back, drop the bytes
            self._session.mux.consumed(self.stream_id, len(data))
            return
        if self._reading_paused or self._inbox:
            self._inbox.append(data)
            return
        self._protocol.data_received(data)  # type: ignore[arg-type]  # any buffer will do
        self._session.mux.consumed(self.stream_id, len(data))

    def _deliver_inbox(self) -> None:
        mux = self._session.mux
        while self._inbox and not self._reading_paused:
            data = self._inbox.popleft()
            self._protocol.data_received(data)  # type: ignore[arg-type]  # any buffer will do
            mux.consumed(self.stream_id, len(data))
        self._session.flush()
        if not self._inbox and self._got_end and not self._reading_paused:
            self._deliver_end()

    def _on_end(self) -> None:
        self._got_end = True
        if not self._inbox and not self._reading_paused:
            self._deliver_end()

    def _deliver_end(self) -> None:
        if self._end_delivered or self._is_gone:
            return
        self._end_delivered = True
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()
        self._maybe_gone()

    def _pause_producer(self) -> None:
        if not self._writing_paused:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _on_window(self) -> None:
        """The window grew or the connection drained: send what is held, maybe resume."""
        mux, held = self._session.mux, self._held
        while held:
            chunk = held[0]
            sent = mux.send_data(self.stream_id, chunk)
            self._held_bytes -= sent
            if sent < len(chunk):
                held[0] = memoryview(chunk)[sent:]
                break
            held.popleft()
        if not held and self._eof_wanted and not self._sent_end:
            self._send_end()
        if (
            self._writing_paused
            and self._held_bytes <= self._high_water // 4
            and not self._session.is_congested
        ):
            self._writing_paused = False
            self._protocol.resume_writing()
        self._maybe_gone()

    def _send_end(self) -> None:
        self._sent_end = True
        self._session.mux.end_stream(self.stream_id)
        self._session.flush()
        self._maybe_gone()

    def _maybe_gone(self) -> None:
        """Both directions ended (and we stopped caring): the stream is finished.

        The peer's end counts once it was *delivered*: until then bytes may still wait in the
        inbox (reading paused, e.g. a relay not started yet), and they must not be dropped.
        """
        if self._sent_end and (self._end_delivered or self._closing) and not self._held:
            self._gone(None)

    def _gone(self, exc: Exception | None) -> None:
        if self._is_gone:
            return
        self._is_gone = True
        self._lost = exc
        self._hand_back()
        self._held.clear()
        self._held_bytes = 0
        self._session.forget(self.stream_id)
        protocol, self._protocol = self._protocol, _FINISHED
        protocol.connection_lost(exc)

    def _hand_back(self) -> None:
        """Drop the bytes nobody will read, handing their credit back to the sender."""
        mux = self._session.mux
        for data in self._inbox:
            mux.consumed(self.stream_id, len(data))
        self._inbox.clear()


class MuxSession(asyncio.Protocol):
    """The application protocol of one multiplexed mTLS connection (either end).

    Client side: ``open_stream`` sends an OPEN and returns the stream with the peer's
    verdict. Server side: ``on_request(session, event)`` is called for every valid OPEN and
    answers with ``accept`` or ``refuse``.
    """

    def __init__(
        self,
        *,
        client_side: bool,
        peer_name: str = "",
        settings: MuxSettings | None = None,
        on_request: Callable[[MuxSession, StreamRequest], None] | None = None,
        on_refused: Callable[[MuxSession, StreamRefused], None] | None = None,
    ) -> None:
        self.mux = MuxConnection(client_side=client_side, peer_name=peer_name, settings=settings)
        self.peer_name = peer_name
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, StreamTransport] = {}
        self._verdicts: dict[int, asyncio.Future[Verdict]] = {}
        self._on_request = on_request
        self._on_refused = on_refused
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
        for event in events:
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
        if isinstance(event, StreamData):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._on_data(event.data)
        elif isinstance(event, StreamEnded):
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
        elif isinstance(event, ConnectionEnded):
            # GOAWAY: the peer takes no new streams; those it already took go on. Ours that
            # it never saw will not be answered.
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
        buffers = self.mux.data_to_send()
        if buffers and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(buffers)

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if self.is_draining and not self.streams:
            self.close()

    def drain(self) -> None:
        """Retire this connection gracefully: GOAWAY now (no new streams on it), close once
        its last stream has ended. Open tunnels are not touched."""
        if not self.is_open or self.is_draining:
            return
        self.is_draining = True
        self.mux.close()
        self.flush()
        if not self.streams:
            self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default if self.transport is None else self.transport.get_extra_info(name, default)

    def close(self) -> None:
        """GOAWAY and close once the bytes are out; open streams are reset."""
        if not self.is_open:
            return
        self.mux.close()
        self.flush()
        self._close_all(ConnectionResetError("multiplexed connection closed"))
        if self.transport is not None:
            self.transport.close()

    def _close_all(self, exc: Exception) -> None:
        self.is_open = False
        for waiter in self._verdicts.values():
            if not waiter.done():
                waiter.set_exception(PeerUnreachable(f"{self.peer_name or 'peer'}: {exc}"))
        self._verdicts.clear()
        for stream in list(self.streams.values()):
            stream._gone(exc)
