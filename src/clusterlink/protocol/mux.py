"""Multiplexed mode, sans-io: many tunnels as HTTP/2 streams of one mTLS connection.

Why: with one TLS connection per tunnel, the handshake's CPU caps the rate of new
connections; here a new tunnel is one HEADERS frame each way on a connection that is already
up (the approach of Istio's HBONE). Negotiated by ALPN ``h2``; the basic mode
(``clusterlink/1``) stays served beside it.

Wire format (RFC 8441 extended CONNECT, so the target needs no invented authority syntax):

    :method CONNECT   :protocol clusterlink   :scheme https
    :authority <target peer>   :path /<export-namespace>/<export-name>
    clusterlink-client-attributes: <base64url JSON>        (as in the basic mode)

answered by ``:status 200`` (then DATA frames both ways are the tunnel) or by a refusal with
the same statuses and JSON body ``{reason, message}`` as the basic mode, ending the stream.
Half-close is ``END_STREAM``; an abrupt end is ``RST_STREAM``.

Flow control is per stream: a receiver acknowledges bytes only when its consumer has taken
them, so a stalled consumer closes its stream's window and the sender stops, while the other
streams flow on. The connection-level window is made as large as HTTP/2 allows, so that
stalled streams cannot starve the connection (the memory bound is then streams x stream
window, and streams are capped by ``max_concurrent_streams``).

``MuxConnection`` wraps h2's state machine and speaks our vocabulary: it validates requests
(refusing bad ones itself, with the basic mode's statuses) and turns h2 events into the few
events a tunnel needs. No sockets, no clocks, no logging.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from clusterlink.errors import ProtocolError, ValidationError
from clusterlink.protocol.attributes import decode_attributes, encode_attributes
from clusterlink.protocol.events import ConnectRequest, ExportRef, Verdict
from clusterlink.protocol.wire import (
    ATTRIBUTES_HEADER,
    MAX_ATTRIBUTE_BYTES,
    MAX_ATTRIBUTE_ENTRIES,
    MAX_BODY_BYTES,
    as_string_map,
    dump_json,
    load_json_object,
)

__all__ = [
    "MUX_ALPN",
    "ConnectionEnded",
    "MuxConnection",
    "MuxEvent",
    "MuxSettings",
    "StreamData",
    "StreamEnded",
    "StreamRefused",
    "StreamRequest",
    "StreamReset",
    "StreamVerdict",
    "WindowOpened",
]

MUX_ALPN: Final = "h2"
_PROTOCOL: Final = b"clusterlink"
_MAX_WINDOW: Final = 2**31 - 1


# h2 formats ``repr(frame)`` for a trace log on every received frame, even when nothing
# logs it, and a DATA frame's repr hex-encodes its whole payload: three quarters of the
# CPU of a bulk transfer went there. A DATA frame is described by its size instead.
def _data_frame_repr(frame: hyperframe.frame.DataFrame) -> str:
    return f"data=<{len(frame.data)} bytes>"


hyperframe.frame.DataFrame._body_repr = _data_frame_repr  # type: ignore[method-assign,assignment]


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxSettings:
    stream_window_bytes: int = 1024 * 1024  # most a receiver buffers for one stalled stream
    max_frame_bytes: int = 256 * 1024
    max_concurrent_streams: int = 10_000


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Server side: a valid CONNECT; answer it with ``send_verdict``."""

    stream_id: int
    request: ConnectRequest


@dataclass(frozen=True, slots=True)
class StreamRefused:
    """Server side: a request this layer refused itself (already answered); for the log."""

    stream_id: int
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class StreamVerdict:
    """Client side: the answer to our CONNECT (a refusal also ends the stream)."""

    stream_id: int
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class StreamData:
    """Tunnel bytes; call ``consumed(stream_id, flow_bytes)`` once they are passed on."""

    stream_id: int
    data: bytes
    flow_bytes: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The other side half-closed the stream (it sends no more)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The other side reset the stream; it is gone."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """The send window grew: streams waiting to send may go on (``None``: all of them)."""

    stream_id: int | None


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The other side closed the connection (GOAWAY); no new streams on it."""

    error_code: int
    last_stream_id: int


MuxEvent = (
    StreamRequest
    | StreamRefused
    | StreamVerdict
    | StreamData
    | StreamEnded
    | StreamReset
    | WindowOpened
    | ConnectionEnded
)


# -- the connection ----------------------------------------------------------------------------


class MuxConnection:
    """One multiplexed peer connection, either end."""

    def __init__(
        self, *, client_side: bool, peer_name: str = "", settings: MuxSettings | None = None
    ) -> None:
        self.settings = settings = settings or MuxSettings()
        config = h2.config.H2Configuration(
            client_side=client_side, header_encoding=None, validate_inbound_headers=True
        )
        self._h2 = h2.connection.H2Connection(config)
        self._client_side = client_side
        self._authority = peer_name.encode("ascii")
        # Client side: streams whose verdict has not come yet -> (status, body so far).
        self._pending: dict[int, tuple[int, bytearray]] = {}
        codes = h2.settings.SettingCodes
        ours: dict[h2.settings.SettingCodes | int, int] = {
            codes.INITIAL_WINDOW_SIZE: settings.stream_window_bytes,
            codes.MAX_FRAME_SIZE: settings.max_frame_bytes,
            codes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
        }
        # Only a server announces extended CONNECT; only a client may refuse pushes.
        ours[codes.ENABLE_PUSH if client_side else codes.ENABLE_CONNECT_PROTOCOL] = (
            0 if client_side else 1
        )
        self._h2.initiate_connection()
        # Takes effect when the peer acknowledges it; until then both ends use the defaults.
        self._h2.update_settings(ours)
        self._h2.increment_flow_control_window(_MAX_WINDOW - self._h2.inbound_flow_control_window)

    # -- bytes in and out -----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        return self._h2.data_to_send()

    def receive_data(self, data: bytes) -> list[MuxEvent]:
        """Events for ``data``; a ``ProtocolError`` means the connection must be closed."""
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            raise ProtocolError(f"HTTP/2 protocol error from the peer: {exc}") from None
        events: list[MuxEvent] = []
        for event in h2_events:
            self._translate(event, events)
        return events

    def _translate(self, event: h2.events.Event, out: list[MuxEvent]) -> None:
        if isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            pending = self._pending.get(sid)
            if pending is not None:  # the body of a refusal
                self._h2.acknowledge_received_data(event.flow_controlled_length, sid)
                body = pending[1]
                body += event.data[: max(0, MAX_BODY_BYTES - len(body))]
            elif event.data:
                out.append(StreamData(sid, event.data, event.flow_controlled_length))
            else:  # END_STREAM's empty frame (or padding): nothing a consumer could take
                self.consumed(sid, event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            pending = self._pending.pop(event.stream_id, None)
            if pending is not None:
                self._refused(event.stream_id, _refusal(pending[0], bytes(pending[1])), out)
            else:
                out.append(StreamEnded(event.stream_id))
        elif isinstance(event, h2.events.RequestReceived):
            self._accept(event, out)
        elif isinstance(event, h2.events.ResponseReceived):
            self._answer(event, out)
        elif isinstance(event, h2.events.StreamReset):
            if self._pending.pop(event.stream_id, None) is not None:
                message = f"the peer reset the stream (HTTP/2 error {event.error_code})"
                out.append(StreamVerdict(event.stream_id, Verdict(502, "reset", message)))
            else:
                out.append(StreamReset(event.stream_id, int(event.error_code or 0)))
        elif isinstance(event, h2.events.WindowUpdated):
            out.append(WindowOpened(event.stream_id or None))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                out.append(WindowOpened(None))
        elif isinstance(event, h2.events.ConnectionTerminated):
            out.append(ConnectionEnded(int(event.error_code or 0), event.last_stream_id or 0))

    # -- server side ------------------------------------------------------------------------

    def _accept(self, event: h2.events.RequestReceived, out: list[MuxEvent]) -> None:
        sid = event.stream_id
        try:
            request = _parse_request(event.headers or [])
        except ProtocolError as exc:
            self.send_verdict(sid, Verdict.from_error(exc))
            out.append(StreamRefused(sid, exc))
            return
        if event.stream_ended is not None:
            early_end = ProtocolError("CONNECT stream ended before it was answered")
            self.send_verdict(sid, Verdict.from_error(early_end))
            out.append(StreamRefused(sid, early_end))
            return
        out.append(StreamRequest(sid, request))

    def send_verdict(self, stream_id: int, verdict: Verdict) -> None:
        """Answer a ``StreamRequest``: 200 opens the tunnel, anything else ends the stream.

        A stream that ended meanwhile (reset, or the whole connection ended with a GOAWAY, even
        in the read that carried the request) is answered with nothing: nobody is left to hear
        it, and h2 refuses to send on it.
        """
        if verdict.is_allowed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.send_headers(stream_id, [(b":status", b"200")])
            return
        body = dump_json({"reason": verdict.reason, "message": verdict.message})
        headers = [
            (b":status", str(verdict.status).encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        try:
            self._h2.send_headers(stream_id, headers)
            self._h2.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.FlowControlError:  # a peer with no window for 100 bytes
            self.reset_stream(stream_id)
        except h2.exceptions.ProtocolError:
            pass

    # -- client side ------------------------------------------------------------------------

    @property
    def can_open_stream(self) -> bool:
        """False when the peer's stream limit is reached or the connection is closing."""
        h2c = self._h2
        if self._is_closed:
            return False
        limit = h2c.remote_settings.max_concurrent_streams
        return h2c.open_outbound_streams < limit and h2c.highest_outbound_stream_id < _MAX_ID

    def open_stream(self, export: ExportRef, attributes: Mapping[str, str]) -> int:
        """Send a CONNECT for ``export``; the answer comes as a ``StreamVerdict``."""
        sid = self._h2.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", _PROTOCOL),
            (b":scheme", b"https"),
            (b":authority", self._authority),
            (b":path", f"/{export.namespace}/{export.name}".encode("ascii")),
        ]
        if attributes:
            headers.append((ATTRIBUTES_HEADER, encode_attributes(attributes).encode("ascii")))
        self._h2.send_headers(sid, headers)
        self._pending[sid] = (0, bytearray())
        return sid

    def _answer(self, event: h2.events.ResponseReceived, out: list[MuxEvent]) -> None:
        sid = event.stream_id
        status = 0
        for name, value in event.headers or []:
            if name == b":status":  # three digits, or no valid status (h2 does not check)
                status = int(value) if len(value) == 3 and value.isdigit() else 0
        if status == 200:
            self._pending.pop(sid, None)
            out.append(StreamVerdict(sid, Verdict.allow()))
        elif sid in self._pending:
            self._pending[sid] = (status, self._pending[sid][1])
            if event.stream_ended is not None:
                self._pending.pop(sid)
                self._refused(sid, _refusal(status, b""), out)

    def _refused(self, stream_id: int, verdict: Verdict, out: list[MuxEvent]) -> None:
        # The peer ended its side with the refusal; ending ours closes the stream, else it
        # would count against the peer's stream limit for the life of the connection.
        if not self._is_closed:  # (after a GOAWAY in the same read, h2 sends nothing more)
            self.end_stream(stream_id)
        out.append(StreamVerdict(stream_id, verdict))

    # -- both sides -------------------------------------------------------------------------

    @property
    def _is_closed(self) -> bool:
        """GOAWAY sent or received: h2 sends no frame of any kind any more."""
        return bool(self._h2.state_machine.state == h2.connection.ConnectionState.CLOSED)

    def send_window(self, stream_id: int) -> int:
        """How many bytes ``send_data`` would take now for this stream."""
        try:
            return self._h2.local_flow_control_window(stream_id)
        except h2.exceptions.StreamClosedError:
            return 0

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Send as much of ``data`` as the windows allow; returns how much was taken."""
        h2c = self._h2
        n = min(len(data), h2c.local_flow_control_window(stream_id))
        frame = h2c.max_outbound_frame_size
        if n == 0:
            return 0
        if n <= frame:  # the common case: one frame, no slicing
            if n == len(data) and not isinstance(data, bytearray):
                h2c.send_data(stream_id, data)
            elif n:
                h2c.send_data(stream_id, bytes(data[:n]))
            return n
        # A bytearray may be resized by its owner later: frames get their own bytes.
        view = memoryview(data if isinstance(data, bytes) else bytes(data[:n]))
        for start in range(0, n, frame):
            h2c.send_data(stream_id, view[start : min(n, start + frame)])
        return n

    def consumed(self, stream_id: int, flow_bytes: int) -> None:
        """The consumer took ``flow_bytes`` of this stream: the peer may send that much more."""
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.acknowledge_received_data(flow_bytes, stream_id)

    def end_stream(self, stream_id: int) -> None:
        """Half-close: we send no more on this stream."""
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.end_stream(stream_id)

    def reset_stream(self, stream_id: int, *, refused: bool = False) -> None:
        """End the stream abruptly (the relay's RST)."""
        self._pending.pop(stream_id, None)
        code = h2.errors.ErrorCodes.REFUSED_STREAM if refused else h2.errors.ErrorCodes.CANCEL
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, code)

    def close(self) -> None:
        """GOAWAY: no new streams; the caller closes the connection when the bytes are out."""
        self._h2.close_connection()


_MAX_ID: Final = 2**31 - 3


def _parse_request(headers: list[tuple[bytes, bytes]]) -> ConnectRequest:
    fields: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in fields and name == ATTRIBUTES_HEADER:
            raise ProtocolError(f"more than one {ATTRIBUTES_HEADER.decode()} header")
        fields[name] = value
    method = fields.get(b":method", b"")
    if method != b"CONNECT":
        raise ProtocolError(
            f"method {method.decode(errors='replace')!r} is not served on a multiplexed "
            "connection; use CONNECT with :protocol clusterlink",
            status=405,
            reason="unknown-method",
        )
    if fields.get(b":protocol") != _PROTOCOL:
        raise ProtocolError("CONNECT without :protocol clusterlink (RFC 8441) is not served")
    path = fields.get(b":path", b"")
    try:
        export = ExportRef.parse(path.decode("ascii").removeprefix("/"))
    except (UnicodeDecodeError, ValidationError) as exc:
        raise ProtocolError(f"bad :path {path[:100]!r}: {exc}") from None
    raw = fields.get(ATTRIBUTES_HEADER)
    attributes = (
        {}
        if raw is None
        else decode_attributes(
            raw, max_entries=MAX_ATTRIBUTE_ENTRIES, max_bytes=MAX_ATTRIBUTE_BYTES
        )
    )
    return ConnectRequest(export, attributes)


def _refusal(status: int, body: bytes) -> Verdict:
    """The verdict of a refused stream, from its status and JSON body (best effort)."""
    reason, message = "refused", f"HTTP/2 status {status}"
    try:
        fields = as_string_map(load_json_object(body))
        reason, message = fields.get("reason", reason), fields.get("message", message)
    except ValueError:
        pass
    if not 400 <= status <= 599:
        shown = f"status {status}" if status else "no valid :status"
        return Verdict(502, "malformed", f"unexpected answer to a CONNECT: {shown}")
    return Verdict(status, reason, message)
