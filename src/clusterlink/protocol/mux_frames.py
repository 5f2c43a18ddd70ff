"""The multiplexed mode's frames: the wire format, its limits, and the payloads both ways.

Why apart from ``mux``: this is the contract between gateway versions, and ``mux`` is how one
gateway keeps it. Everything here is a pure function of its arguments or a constant, so a
change to the format shows up as a change to this file alone; the state machine (which
frames may come when, flow control, stream limits) is ``protocol.mux``. The only state here
is ``FrameReader``'s place in the byte stream; what a frame means, and anything kept per
stream, is never decided here.

Wire format. Every frame is an 8-byte header and a payload::

    type: u8 | length: u24 | stream: u32          (big-endian)

    SETTINGS  0  stream 0: pairs (id: u16, value: u32); 1 = stream window, 2 = max streams
    OPEN      1  client -> server, new odd stream id: "<namespace>/<name>" and, if any
                 attributes, "\\n" + the base64url JSON of the basic mode's attribute header
    VERDICT   2  server -> client: status: u16, then for a refusal the JSON {reason, message}
    DATA      3  tunnel bytes
    END       4  half-close: the sender sends no more on this stream
    RESET     5  abort the stream: code: u32 (0 cancelled, 1 refused)
    WINDOW    6  stream != 0: increment: u32 of the sender's window for that stream
    GOAWAY    7  stream 0: last stream id: u32, then optionally why, in UTF-8; no new
                 streams on this connection
    PING     10  stream 0: token: u64; either side, answered with a PONG
    PONG     11  stream 0: the PING's token: u64, then the answering gateway's health as JSON
                 (``protocol.health_body``, as the basic mode's ``GET /healthz`` answers)

PING and PONG make the connection its own heartbeat: a
connection that is the only way to a peer (a reverse link, which that peer dialled) is
watched over itself, both ways, and what its PONG says about the peer is what a basic-mode
heartbeat would have said.

A DATA frame carries at most ``MAX_DATA_FRAME`` bytes, any other frame at most
``MAX_CONTROL_BYTES``; a peer that announces more breaks the protocol on the header alone.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Final

from clusterlink.errors import RemoteProtocolError, ValidationError
from clusterlink.protocol.attributes import decode_attributes, encode_attributes
from clusterlink.protocol.events import ConnectRequest, ExportRef, Health, Verdict
from clusterlink.protocol.health_body import decode_health, encode_health
from clusterlink.protocol.mux_events import MuxEvent
from clusterlink.protocol.wire import (
    MAX_ATTRIBUTE_BYTES,
    MAX_ATTRIBUTE_ENTRIES,
    as_string_map,
    dump_json,
    load_json_object,
)

__all__ = [
    "DATA",
    "END",
    "GOAWAY",
    "HEADER",
    "JOIN_BELOW",
    "MAX_CONTROL_BYTES",
    "MAX_DATA_FRAME",
    "MAX_STREAM_ID",
    "OPEN",
    "PING",
    "PONG",
    "RESET",
    "RESET_CANCEL",
    "RESET_REFUSED",
    "SETTING",
    "SETTINGS",
    "SETTING_MAX_STREAMS",
    "SETTING_WINDOW",
    "U32",
    "VERDICT",
    "WINDOW",
    "FrameReader",
    "frame",
    "goaway_frame",
    "open_payload",
    "parse_goaway",
    "parse_open",
    "parse_ping",
    "parse_pong",
    "parse_verdict",
    "ping_frame",
    "pong_frame",
    "settings_frame",
    "verdict_frame",
]

SETTINGS: Final = 0
OPEN: Final = 1
VERDICT: Final = 2
DATA: Final = 3
END: Final = 4
RESET: Final = 5
WINDOW: Final = 6
GOAWAY: Final = 7
PING: Final = 10
PONG: Final = 11

RESET_CANCEL: Final = 0
RESET_REFUSED: Final = 1

SETTING_WINDOW: Final = 1
SETTING_MAX_STREAMS: Final = 2

HEADER = struct.Struct("!II")  # (type << 24 | length, stream)
_U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
SETTING = struct.Struct("!HI")
MAX_CONTROL_BYTES: Final = 64 * 1024  # any frame but DATA
MAX_DATA_FRAME: Final = 1024 * 1024
JOIN_BELOW: Final = 16 * 1024  # smaller DATA payloads are sent joined with their header
MAX_STREAM_ID: Final = 2**31 - 1


# -- frames out, payloads both ways ----------------------------------------------------------------


def frame(kind: int, stream_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind << 24 | len(payload), stream_id) + payload


def settings_frame(*, stream_window_bytes: int, max_concurrent_streams: int) -> bytes:
    return frame(
        SETTINGS,
        0,
        SETTING.pack(SETTING_WINDOW, stream_window_bytes)
        + SETTING.pack(SETTING_MAX_STREAMS, max_concurrent_streams),
    )


def goaway_frame(last_stream_id: int, message: str = "") -> bytes:
    why = message.encode("utf-8", "replace")[: MAX_CONTROL_BYTES - U32.size]
    return frame(GOAWAY, 0, U32.pack(last_stream_id) + why)


def parse_goaway(payload: bytes) -> tuple[int, str]:
    """The last stream id and the reason of a GOAWAY (an older peer sends no reason)."""
    last = U32.unpack(payload[:4])[0] if len(payload) >= 4 else 0
    return last, payload[4:].decode("utf-8", "replace")


def ping_frame(token: int) -> bytes:
    return frame(PING, 0, _U64.pack(token))


def pong_frame(token: int, health: Health) -> bytes:
    return frame(PONG, 0, _U64.pack(token) + encode_health(health))


def parse_ping(payload: bytes) -> int:
    if len(payload) != _U64.size:
        raise RemoteProtocolError("malformed PING frame")
    return int(_U64.unpack(payload)[0])


def parse_pong(payload: bytes) -> tuple[int, Health]:
    if len(payload) < _U64.size:
        raise RemoteProtocolError("malformed PONG frame")
    try:
        return int(_U64.unpack(payload[:8])[0]), decode_health(payload[8:])
    except ValueError as exc:
        raise RemoteProtocolError(f"PONG with a health answer that {exc}") from None


def verdict_frame(stream_id: int, verdict: Verdict) -> bytes:
    if verdict.is_allowed:
        return frame(VERDICT, stream_id, _U16.pack(200))
    body = dump_json({"reason": verdict.reason, "message": verdict.message})
    return frame(VERDICT, stream_id, _U16.pack(verdict.status) + body)


def parse_verdict(payload: bytes) -> Verdict:
    """The verdict a VERDICT frame carries; a refusal's body is read at best effort."""
    if len(payload) < 2:
        raise RemoteProtocolError("malformed VERDICT frame")
    status = _U16.unpack(payload[:2])[0]
    return Verdict.allow() if status == 200 else _refusal(status, payload[2:])


def open_payload(export: ExportRef, attributes: Mapping[str, str]) -> bytes:
    target = f"{export.namespace}/{export.name}"
    if attributes:
        target += "\n" + encode_attributes(attributes)
    return target.encode("ascii")


def parse_open(payload: bytes) -> ConnectRequest:
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise RemoteProtocolError("OPEN target is not ASCII") from None
    target, newline, encoded = text.partition("\n")
    try:
        export = ExportRef.parse(target)
    except ValidationError as exc:
        raise RemoteProtocolError(f"bad OPEN target {target[:100]!r}: {exc}") from None
    if not newline:
        return ConnectRequest(export, {})
    attributes = decode_attributes(
        encoded, max_entries=MAX_ATTRIBUTE_ENTRIES, max_bytes=MAX_ATTRIBUTE_BYTES
    )
    return ConnectRequest(export, attributes)


def _refusal(status: int, body: bytes) -> Verdict:
    """The verdict of a refused stream, from its status and JSON body (best effort)."""
    if not 400 <= status <= 599:
        return Verdict(502, "malformed", f"unexpected status {status} to an OPEN")
    reason, message = "refused", f"status {status}"
    try:
        fields = as_string_map(load_json_object(body))
        reason, message = fields.get("reason", reason), fields.get("message", message)
    except ValueError:
        pass
    return Verdict(status, reason, message)


# -- frames in -------------------------------------------------------------------------------------


class FrameReader:
    """Cuts the bytes received into frames and hands each on to ``_on_data`` or ``_on_control``.

    A base class of ``MuxConnection`` rather than a part it calls: ``receive_data`` runs for
    every read from the socket, and its hooks are called straight from the loop below, with no
    call in between. The limits checked here are the format's; every other rule is the
    subclass's.
    """

    def __init__(self) -> None:
        self._header = bytearray()  # a frame header cut by the end of a read
        self._control: tuple[int, int, int] | None = None  # (type, stream, length) in progress
        self._control_bytes = bytearray()
        self._data_stream = 0
        self._data_left = 0  # bytes of the current DATA payload still to come

    def receive_data(self, data: bytes) -> list[MuxEvent]:
        """Events for ``data``; a ``RemoteProtocolError`` means the connection must be closed.

        ``data`` must not change afterwards: DATA events are slices of it. The parser is in
        one of three states: inside a DATA payload (its bytes are passed on as they come, so
        a large frame is never buffered), inside a control frame's payload (buffered until
        complete; they are small), or between frames (reading an 8-byte header).
        """
        events: list[MuxEvent] = []
        view = memoryview(data)
        pos, size = 0, len(view)
        while pos < size:
            if self._data_left:
                n = min(self._data_left, size - pos)
                self._data_left -= n
                self._on_data(self._data_stream, view[pos : pos + n], events)
                pos += n
                continue
            if self._control is not None:
                kind, stream_id, length = self._control
                take = min(length - len(self._control_bytes), size - pos)
                self._control_bytes += view[pos : pos + take]
                pos += take
                if len(self._control_bytes) == length:
                    payload = bytes(self._control_bytes)
                    self._control_bytes.clear()
                    self._control = None
                    self._on_control(kind, stream_id, payload, events)
                continue
            if not self._header and size - pos >= 8:
                word, stream_id = HEADER.unpack_from(view, pos)
                pos += 8
            else:
                take = min(8 - len(self._header), size - pos)
                self._header += view[pos : pos + take]
                pos += take
                if len(self._header) < 8:
                    break
                word, stream_id = HEADER.unpack(self._header)
                self._header.clear()
            kind, length = word >> 24, word & 0xFFFFFF
            if kind == DATA:
                if length > MAX_DATA_FRAME:
                    raise RemoteProtocolError(f"DATA frame of {length} bytes is over the limit")
                n = min(length, size - pos)  # what of the payload is here: passed on at once
                if n:
                    self._on_data(stream_id, view[pos : pos + n], events)
                    pos += n
                self._data_stream, self._data_left = stream_id, length - n
            elif length > MAX_CONTROL_BYTES:
                raise RemoteProtocolError(f"frame of type {kind} with {length} bytes is too large")
            elif size - pos >= length:  # the whole control frame is here: no buffering
                payload = bytes(view[pos : pos + length])
                pos += length
                self._on_control(kind, stream_id, payload, events)
            else:
                self._control = (kind, stream_id, length)
        return events

    def _on_data(self, stream_id: int, data: memoryview, events: list[MuxEvent]) -> None:
        """A piece of a DATA payload (never empty), as it arrived."""
        raise NotImplementedError

    def _on_control(
        self, kind: int, stream_id: int, payload: bytes, events: list[MuxEvent]
    ) -> None:
        """A whole frame of any type but DATA (unknown types too)."""
        raise NotImplementedError
