"""One stream of a multiplexed connection, seen as a transport: ``StreamTransport``.

Why apart from ``mux``: a tunnel's relay (``dataplane.relay``) sees only this class, and it
must keep the contract of a TCP transport exactly; that contract reads best on its own. The
connection it lives on (events, OPENs, congestion) is ``transport.mux.MuxSession``, which
creates a ``StreamTransport`` per tunnel and drives it through the methods "driven by the
session" below. A stream never reads the connection's bytes itself and never writes to the
socket: every frame goes through its session's ``mux`` and ``flush``.

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

While the session is congested (``MuxSession.is_congested``), a stream that is written to
holds the bytes and pauses its producer whatever window the peer granted (see ``mux``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clusterlink.transport.mux import MuxSession

__all__ = ["StreamTransport"]

_HIGH_WATER = 512 * 1024


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
            size = len(data)
            total = session.mux.send_data(self.stream_id, data)
            if 0 < total < size:
                # One DATA frame carries at most 1 MiB: a bigger write is several frames, as
                # many as the window takes now (the rest is held for the next window).
                send_data, sid = session.mux.send_data, self.stream_id
                while total < size and (sent := send_data(sid, memoryview(data)[total:])):
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
