"""Multiplexed mode, sans-io: many tunnels as streams of one mTLS connection.

Why: with one TLS connection per tunnel, the handshake's CPU caps the rate of new
connections; here a new tunnel is one small frame each way on a connection that is already
up (the idea of Istio's HBONE). Negotiated by ALPN ``clusterlink-mux/1``; the basic mode
(``clusterlink/1``) stays served beside it.

Why not HTTP/2 (the ``h2`` library), which we tried first: measured here, it cost 2.5 times
the CPU per byte of the basic mode, mostly in copies (each DATA frame is joined with its
header, buffered, sliced and copied again on receipt), plus HPACK for every new stream. This
framing is made for the job: a DATA payload is handed on as a *slice* of the decrypted
record (no copy), and a large payload is never joined with its header.

This module is the state machine: which frame may come when, and what it does to a stream.
The wire format (frame types, header, payloads, size limits) is ``protocol.mux_frames``; the
events it returns are ``protocol.mux_events``, re-exported here.

Each side sends SETTINGS first; until the peer's arrive, ``DEFAULT_STREAM_WINDOW`` applies.
(A peer may send more, up to ``_MAX_SETTINGS_FRAMES``: each may touch every stream.)
Statuses and refusal bodies are those of the basic mode (200, 400, 403, 404, 502, 503).
An OPEN beyond our stream limit is answered ``503 overloaded`` by this layer; one that crosses
our GOAWAY is RESET (refused), since the client learns from the GOAWAY to go elsewhere.
Unknown frame types are ignored, so the protocol can grow.

Flow control is per stream and credit-based: a receiver hands credit back (WINDOW) only for
bytes its consumer has taken (``consumed``), so a stalled consumer stops its sender while the
other streams flow on. There is no connection-level window: TCP's own back-pressure covers
the connection, and per-connection memory is bounded by streams x stream window (a server
enforces at least ``DEFAULT_STREAM_WINDOW``, which a client may use before SETTINGS arrive).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol.events import ExportRef, Health, Verdict
from clusterlink.protocol.mux_events import (
    ConnectionEnded,
    MuxEvent,
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
from clusterlink.protocol.mux_frames import (
    DATA,
    END,
    GOAWAY,
    HEADER,
    JOIN_BELOW,
    MAX_CONTROL_BYTES,
    MAX_DATA_FRAME,
    MAX_STREAM_ID,
    OPEN,
    PING,
    PONG,
    RESET,
    RESET_CANCEL,
    RESET_REFUSED,
    SETTING,
    SETTING_MAX_STREAMS,
    SETTING_WINDOW,
    SETTINGS,
    U32,
    VERDICT,
    WINDOW,
    FrameReader,
    frame,
    goaway_frame,
    open_payload,
    parse_goaway,
    parse_open,
    parse_ping,
    parse_pong,
    parse_verdict,
    ping_frame,
    pong_frame,
    settings_frame,
    verdict_frame,
)

__all__ = [
    "DEFAULT_STREAM_WINDOW",
    "MUX_ALPN",
    "REVERSE_MUX_ALPN",
    "ConnectionEnded",
    "MuxConnection",
    "MuxEvent",
    "MuxSettings",
    "PingReceived",
    "PongReceived",
    "StreamData",
    "StreamEnded",
    "StreamRefused",
    "StreamRequest",
    "StreamReset",
    "StreamVerdict",
    "WindowOpened",
]

MUX_ALPN: Final = "clusterlink-mux/1"
REVERSE_MUX_ALPN: Final = "clusterlink-mux-reverse/1"
"""The multiplexed mode with the roles swapped: the gateway that dialled is the server of its
streams (a reverse link, dialled by a peer that cannot be dialled; ``dataplane.reverse_links``).
"""
DEFAULT_STREAM_WINDOW: Final = 256 * 1024

# A SETTINGS frame that changes the window touches every open stream: a few bytes for a peer,
# thousands of updates for us. One is the norm; past this many the peer is flooding.
_MAX_SETTINGS_FRAMES: Final = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxSettings:
    stream_window_bytes: int = 1024 * 1024  # most a receiver buffers for one stalled stream
    max_concurrent_streams: int = 20_000

    def __post_init__(self) -> None:
        if not 1024 <= self.stream_window_bytes < 2**31:
            raise ValueError("stream_window_bytes must be between 1 KiB and 2 GiB")
        if self.max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be positive")


class _Stream:
    """Flow-control and end-state bookkeeping of one stream."""

    __slots__ = ("answered", "local_ended", "recv_credit", "remote_ended", "send_window", "unacked")

    def __init__(self, send_window: int, recv_credit: int) -> None:
        self.send_window = send_window  # bytes we may still send
        self.recv_credit = recv_credit  # bytes the peer may still send us
        self.unacked = 0  # consumed but not yet handed back as credit
        self.local_ended = False
        self.remote_ended = False
        self.answered = False  # client: verdict received; server: verdict sent


# -- the connection ----------------------------------------------------------------------------


class MuxConnection(FrameReader):
    """One multiplexed peer connection, either end.

    Bytes in go through ``receive_data`` (``FrameReader``), which hands every frame to
    ``_on_data`` or ``_on_control`` here.
    """

    def __init__(
        self, *, client_side: bool, peer_name: str = "", settings: MuxSettings | None = None
    ) -> None:
        super().__init__()
        self.settings = settings = settings or MuxSettings()
        self._client_side = client_side
        self._peer_name = peer_name
        self._streams: dict[int, _Stream] = {}
        self._out: list[bytes | memoryview] = []
        self._next_id = 1
        self._highest_peer_id = 0
        self._peer_window = DEFAULT_STREAM_WINDOW  # the peer's receive window per stream
        self._peer_max_streams = 100  # until the peer's SETTINGS say otherwise
        self._draining = False  # GOAWAY received or sent
        self._settings_received = 0
        self._closed = False
        self._out.append(
            settings_frame(
                stream_window_bytes=settings.stream_window_bytes,
                max_concurrent_streams=settings.max_concurrent_streams,
            )
        )

    # -- bytes out -----------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes | memoryview]:
        """The frames to write, in order, as separate buffers (large payloads are not copied)."""
        out, self._out = self._out, []
        return out

    # -- frames in -----------------------------------------------------------------------------

    def _on_data(self, stream_id: int, data: memoryview, events: list[MuxEvent]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # reset or forgotten by us: the bytes are dropped
        if stream.remote_ended:
            raise RemoteProtocolError(f"DATA on stream {stream_id} after its END")
        if self._client_side and not stream.answered:
            raise RemoteProtocolError(f"DATA on stream {stream_id} before its verdict")
        stream.recv_credit -= len(data)
        if stream.recv_credit < 0:
            raise RemoteProtocolError(f"stream {stream_id} sent past its flow-control window")
        events.append(StreamData(stream_id, data))  # never empty: see receive_data

    def _on_control(
        self, kind: int, stream_id: int, payload: bytes, events: list[MuxEvent]
    ) -> None:
        if kind == SETTINGS:
            self._on_settings(payload, events)
        elif kind == OPEN:
            self._on_open(stream_id, payload, events)
        elif kind == VERDICT:
            self._on_verdict(stream_id, payload, events)
        elif kind == END:
            stream = self._streams.get(stream_id)
            if stream is not None and not stream.remote_ended:
                stream.remote_ended = True
                events.append(StreamEnded(stream_id))
                self._maybe_forget(stream_id, stream)
        elif kind == RESET:
            code = U32.unpack(payload[:4])[0] if len(payload) >= 4 else RESET_CANCEL
            if self._streams.pop(stream_id, None) is not None:
                events.append(StreamReset(stream_id, code))
        elif kind == WINDOW:
            if len(payload) != 4 or stream_id == 0:
                raise RemoteProtocolError("malformed WINDOW frame")
            stream = self._streams.get(stream_id)
            if stream is not None:
                stream.send_window += U32.unpack(payload)[0]
                if stream.send_window > MAX_STREAM_ID:
                    raise RemoteProtocolError(f"window of stream {stream_id} grew past 2 GiB")
                events.append(WindowOpened(stream_id))
        elif kind == GOAWAY:
            last, message = parse_goaway(payload)
            self._draining = True
            events.append(ConnectionEnded(0, last, message))
        elif kind == PING:
            self._on_ping_or_pong(stream_id)
            events.append(PingReceived(parse_ping(payload)))
        elif kind == PONG:
            self._on_ping_or_pong(stream_id)
            events.append(PongReceived(*parse_pong(payload)))
        # Unknown types are ignored: newer peers may send frames we do not know yet.

    @staticmethod
    def _on_ping_or_pong(stream_id: int) -> None:
        if stream_id != 0:
            raise RemoteProtocolError(f"PING or PONG on stream {stream_id}, not 0")

    def _on_settings(self, payload: bytes, events: list[MuxEvent]) -> None:
        if len(payload) % SETTING.size:
            raise RemoteProtocolError("malformed SETTINGS frame")
        self._settings_received += 1
        if self._settings_received > _MAX_SETTINGS_FRAMES:
            raise RemoteProtocolError(f"more than {_MAX_SETTINGS_FRAMES} SETTINGS frames")
        for offset in range(0, len(payload), SETTING.size):
            setting, value = SETTING.unpack_from(payload, offset)
            if setting == SETTING_WINDOW:
                if not 1024 <= value < 2**31:
                    raise RemoteProtocolError(f"stream window {value} out of range")
                delta, self._peer_window = value - self._peer_window, value
                for stream in self._streams.values():
                    stream.send_window += delta
                events.append(WindowOpened(None))
            elif setting == SETTING_MAX_STREAMS:
                self._peer_max_streams = value

    # -- server side ------------------------------------------------------------------------

    def _on_open(self, stream_id: int, payload: bytes, events: list[MuxEvent]) -> None:
        if self._client_side:
            raise RemoteProtocolError("a server may not open streams")
        if stream_id % 2 == 0 or stream_id <= self._highest_peer_id:
            raise RemoteProtocolError(f"stream id {stream_id} is not a new odd id")
        self._highest_peer_id = stream_id
        if self._draining:
            self._out.append(frame(RESET, stream_id, U32.pack(RESET_REFUSED)))
            return
        if len(self._streams) >= self.settings.max_concurrent_streams:
            # A client that keeps to our SETTINGS never gets here; one that opened before
            # they arrived, or ignores them, gets an answer it can act on at once.
            error = RemoteProtocolError(
                f"{len(self._streams)} streams are open on this connection, the limit",
                status=503,
                reason="overloaded",
            )
            self._out.append(verdict_frame(stream_id, Verdict.from_error(error)))
            events.append(StreamRefused(stream_id, error))
            return
        # A client that has not read our SETTINGS yet may send the default window's worth;
        # we cannot tell when it has, so a window of ours below the default is never enforced
        # below the default.
        credit = max(self.settings.stream_window_bytes, DEFAULT_STREAM_WINDOW)
        stream = self._streams[stream_id] = _Stream(self._peer_window, credit)
        try:
            request = parse_open(payload)
        except RemoteProtocolError as exc:
            stream.answered = True
            self.send_verdict(stream_id, Verdict.from_error(exc))
            events.append(StreamRefused(stream_id, exc))
            return
        events.append(StreamRequest(stream_id, request))

    def send_verdict(self, stream_id: int, verdict: Verdict) -> None:
        """Answer a ``StreamRequest``: 200 opens the tunnel, anything else ends the stream."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.answered = True
        self._out.append(verdict_frame(stream_id, verdict))
        if not verdict.is_allowed:
            del self._streams[stream_id]

    # -- client side ------------------------------------------------------------------------

    @property
    def can_open_stream(self) -> bool:
        """False when the peer's stream limit is reached or the connection is closing."""
        return (
            not self._draining
            and not self._closed
            and self._next_id <= MAX_STREAM_ID
            and len(self._streams) < self._peer_max_streams
        )

    def open_stream(self, export: ExportRef, attributes: Mapping[str, str]) -> int:
        """Send an OPEN for ``export``; the answer comes as a ``StreamVerdict``."""
        payload = open_payload(export, attributes)
        if len(payload) > MAX_CONTROL_BYTES:  # the peer would close the whole connection
            raise RemoteProtocolError(
                f"the client attributes of this tunnel encode to {len(payload)} bytes, "
                f"over the limit of {MAX_CONTROL_BYTES}"
            )
        sid = self._next_id
        self._next_id += 2
        self._streams[sid] = _Stream(self._peer_window, self.settings.stream_window_bytes)
        self._out.append(frame(OPEN, sid, payload))
        return sid

    def _on_verdict(self, stream_id: int, payload: bytes, events: list[MuxEvent]) -> None:
        if not self._client_side:
            raise RemoteProtocolError("a client may not send a verdict")
        stream = self._streams.get(stream_id)
        if stream is None or stream.answered:
            return  # a stream we gave up on
        verdict = parse_verdict(payload)
        stream.answered = True
        if not verdict.is_allowed:
            del self._streams[stream_id]
        events.append(StreamVerdict(stream_id, verdict))

    # -- both sides -------------------------------------------------------------------------

    def send_window(self, stream_id: int) -> int:
        """How many bytes ``send_data`` would take now for this stream."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None or stream.local_ended else max(0, stream.send_window)

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Send as much of ``data`` as the stream's window allows; returns how much was taken.

        A bytes payload is referenced, not copied, until ``data_to_send``; a bytearray
        (which its owner may change) is copied.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_ended:
            return 0
        if type(data) is bytes and 0 < len(data) < JOIN_BELOW and len(data) <= stream.send_window:
            # A small message, the common case: its frame in one piece, nothing to slice.
            stream.send_window -= len(data)
            self._out.append(HEADER.pack(DATA << 24 | len(data), stream_id) + data)
            return len(data)
        if isinstance(data, memoryview) and data.itemsize != 1:
            data = data.cast("B")  # lengths below count bytes, not items
        n = min(len(data), stream.send_window, MAX_DATA_FRAME)
        if n <= 0:
            return 0
        stream.send_window -= n
        out = self._out
        if n < JOIN_BELOW:
            payload = data if n == len(data) and isinstance(data, bytes) else bytes(data[:n])
            out.append(HEADER.pack(DATA << 24 | n, stream_id) + payload)
        else:
            out.append(HEADER.pack(DATA << 24 | n, stream_id))
            if isinstance(data, bytearray):
                out.append(bytes(data[:n]))
            else:
                out.append(data if n == len(data) else memoryview(data)[:n])
        return n

    def consumed(self, stream_id: int, flow_bytes: int) -> None:
        """The consumer took ``flow_bytes`` of this stream: the peer may send that much more.

        Credit goes back in batches of half a window, so a steady stream costs one WINDOW
        frame per half window, not one per chunk.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_ended:
            return
        stream.unacked += flow_bytes
        if stream.unacked >= self.settings.stream_window_bytes // 2:
            self._out.append(frame(WINDOW, stream_id, U32.pack(stream.unacked)))
            stream.recv_credit += stream.unacked
            stream.unacked = 0

    def end_stream(self, stream_id: int) -> None:
        """Half-close: we send no more on this stream."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_ended:
            return
        stream.local_ended = True
        self._out.append(frame(END, stream_id))
        self._maybe_forget(stream_id, stream)

    def reset_stream(self, stream_id: int, *, refused: bool = False) -> None:
        """End the stream abruptly (the relay's RST)."""
        if self._streams.pop(stream_id, None) is not None:
            code = RESET_REFUSED if refused else RESET_CANCEL
            self._out.append(frame(RESET, stream_id, U32.pack(code)))

    def send_ping(self, token: int) -> None:
        """Ask the other side for its health; it answers with a PONG of the same ``token``."""
        self._out.append(ping_frame(token))

    def send_pong(self, token: int, health: Health) -> None:
        """Answer a ``PingReceived``."""
        self._out.append(pong_frame(token, health))

    def close(self, message: str = "") -> None:
        """GOAWAY: no new streams; the caller closes the connection when the bytes are out.
        ``message`` tells the other side why, for its log."""
        if not self._closed:
            self._closed = self._draining = True
            self._out.append(goaway_frame(self._highest_peer_id, message))

    def _maybe_forget(self, stream_id: int, stream: _Stream) -> None:
        if stream.local_ended and stream.remote_ended:
            self._streams.pop(stream_id, None)
