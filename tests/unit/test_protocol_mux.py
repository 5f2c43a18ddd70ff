"""The multiplexed mode's framing, sans-io: bytes in, our events and bytes out.

Two ``MuxConnection``s wired in memory show what two gateways do with each other: streams
opened and answered, every refusal reaching the client as the basic mode's ``Verdict``, data
both ways as slices of what was received, per-stream flow control (a stalled stream stops its
sender and no other), half-close, resets, GOAWAY as a drain, stream limits and frame sizes.

Frames built by hand from the module docstring's wire format play the peer that no gateway
of ours would be: a byte-exact check of each frame type pins the format, so an accidental
change fails here and not between two gateway versions; broken, early, late and oversized
frames must be refused (one stream with the basic mode's status, or the whole connection with
a ``RemoteProtocolError``) and never crash. Every read boundary is tried, since TLS hands on
whatever arrived. The fuzz tests feed arbitrary bytes and arbitrary (often mutated) frames to
either end, driven the way ``MuxSession`` drives it, and accept only our events or
``clusterlink.errors.ProtocolError``.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol import (
    ConnectRequest,
    ExportRef,
    PeerServerConnection,
    Verdict,
    encode_attributes,
)
from clusterlink.protocol.mux import (
    DEFAULT_STREAM_WINDOW,
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

# The frame types and codes as the module docstring specifies them, written out here rather
# than imported, so that renumbering one in the engine fails these tests.
SETTINGS, OPEN, VERDICT, DATA, END, RESET, WINDOW, GOAWAY = range(8)
CANCEL, REFUSED = 0, 1
WINDOW_SETTING, MAX_STREAMS_SETTING = 1, 2
KIB, MIB = 1024, 1024 * 1024
MAX_DATA_FRAME, MAX_CONTROL_FRAME = MIB, 64 * KIB

DB = ExportRef("default", "db")
ATTRIBUTES = {"peer.clusterlink.net/name": "a", "client.clusterlink.net/ip": "10.0.0.9"}
EVENT_TYPES = (
    StreamRequest,
    StreamRefused,
    StreamVerdict,
    StreamData,
    StreamEnded,
    StreamReset,
    WindowOpened,
    ConnectionEnded,
)


# -- frames by hand ----------------------------------------------------------------------------


def frame(kind: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack("!II", kind << 24 | len(payload), stream_id) + payload


def settings_frame(*pairs: tuple[int, int]) -> bytes:
    return frame(SETTINGS, 0, b"".join(struct.pack("!HI", k, v) for k, v in pairs))


def u32(value: int) -> bytes:
    return struct.pack("!I", value)


def verdict_frame(stream_id: int, status: int, body: bytes = b"") -> bytes:
    return frame(VERDICT, stream_id, struct.pack("!H", status) + body)


def parse_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(type, stream, payload)`` of each whole frame in ``data`` (which must hold no part)."""
    frames, pos = [], 0
    while pos < len(data):
        word, stream_id = struct.unpack_from("!II", data, pos)
        length = word & 0xFFFFFF
        frames.append((word >> 24, stream_id, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    assert pos == len(data), "a frame was cut"
    return frames


def joined(conn: MuxConnection) -> bytes:
    """Everything ``conn`` has to send, as the socket would see it."""
    return b"".join(bytes(b) for b in conn.data_to_send())


def b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def b64json(payload: object) -> bytes:
    return b64(json.dumps(payload).encode())


def peer_settings(*, client_side: bool) -> bytes:
    """The SETTINGS a gateway of ours opens with (the other end of ``client_side``)."""
    return joined(MuxConnection(client_side=not client_side))


def server(**kwargs: int) -> MuxConnection:
    """A server that has read a client's SETTINGS and sent its own."""
    conn = MuxConnection(client_side=False, settings=MuxSettings(**kwargs) if kwargs else None)
    assert conn.receive_data(peer_settings(client_side=False)) == [WindowOpened(None)]
    conn.data_to_send()
    return conn


def client(*streams: int, **kwargs: int) -> MuxConnection:
    """A client that has read a server's SETTINGS and opened ``streams`` (1, 3, ...)."""
    conn = MuxConnection(client_side=True, settings=MuxSettings(**kwargs) if kwargs else None)
    assert conn.receive_data(peer_settings(client_side=True)) == [WindowOpened(None)]
    assert [conn.open_stream(DB, {}) for _ in streams] == list(streams)
    conn.data_to_send()
    return conn


# -- two gateways in memory -------------------------------------------------------------------


class Wire:
    """Client "a" and server "b"; bytes move only in ``pump``, which returns each side's
    events. Unless told otherwise the constructor pumps once, so both ends know the other's
    settings."""

    def __init__(
        self,
        *,
        client: MuxSettings | None = None,
        server: MuxSettings | None = None,
        handshake: bool = True,
    ) -> None:
        self.client = MuxConnection(client_side=True, peer_name="b", settings=client)
        self.server = MuxConnection(client_side=False, settings=server)
        if handshake:
            assert self.pump() == ([WindowOpened(None)], [WindowOpened(None)])

    def pump(self) -> tuple[list[MuxEvent], list[MuxEvent]]:
        """Move bytes both ways until both ends are quiet: (client's events, server's)."""
        at_client: list[MuxEvent] = []
        at_server: list[MuxEvent] = []
        while True:
            to_server, to_client = joined(self.client), joined(self.server)
            if not (to_server or to_client):
                return at_client, at_server
            at_server += self.server.receive_data(to_server)
            at_client += self.client.receive_data(to_client)

    def open(self, attributes: dict[str, str] | None = None) -> int:
        """A stream the server allowed."""
        attributes = ATTRIBUTES if attributes is None else attributes
        sid = self.client.open_stream(DB, attributes)
        _, at_server = self.pump()
        assert at_server == [StreamRequest(sid, ConnectRequest(DB, attributes))]
        self.server.send_verdict(sid, Verdict.allow())
        at_client, _ = self.pump()
        assert at_client == [StreamVerdict(sid, Verdict.allow())]
        return sid


def data_of(events: Sequence[MuxEvent], sid: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, StreamData) and e.stream_id == sid)


def consume_all(conn: MuxConnection, events: Sequence[MuxEvent]) -> None:
    for event in events:
        if isinstance(event, StreamData):
            conn.consumed(event.stream_id, event.flow_bytes)


# -- the wire format, byte for byte ----------------------------------------------------------


def test_each_side_opens_with_its_settings_window_then_stream_limit() -> None:
    conn = MuxConnection(client_side=True, settings=MuxSettings(stream_window_bytes=MIB))
    assert joined(conn) == bytes.fromhex(
        "00 00000c 00000000"  # SETTINGS, 12 bytes, stream 0
        "0001 00100000"  # 1 = stream window: 1 MiB
        "0002 00004e20"  # 2 = max streams: 20,000
    )
    assert joined(conn) == b""  # handed out once


def test_open_is_the_target_and_the_attributes_in_base64url_json() -> None:
    conn = client()
    assert conn.open_stream(DB, {}) == 1
    assert joined(conn) == bytes.fromhex("01 00000a 00000001") + b"default/db"
    assert conn.open_stream(DB, {"peer.clusterlink.net/name": "a"}) == 3
    payload = b"default/db\neyJwZWVyLmNsdXN0ZXJsaW5rLm5ldC9uYW1lIjoiYSJ9"
    assert len(payload) == 0x37
    assert joined(conn) == bytes.fromhex("01 000037 00000003") + payload


def test_verdicts_are_a_status_then_for_a_refusal_its_json_body() -> None:
    conn = server()
    conn.receive_data(frame(OPEN, 1, b"default/db") + frame(OPEN, 3, b"default/db"))
    conn.send_verdict(1, Verdict.allow())
    conn.send_verdict(3, Verdict.denied("no"))
    body = b'{"reason":"denied","message":"no"}'
    assert joined(conn) == (
        bytes.fromhex("02 000002 00000001 00c8") + bytes.fromhex("02 000024 00000003 0193") + body
    )


def test_data_end_reset_window_and_goaway_frames() -> None:
    wire = Wire(client=MuxSettings(stream_window_bytes=64 * KIB))
    sid, other = wire.open(), wire.open()
    wire.client.send_data(sid, b"hello")
    wire.client.end_stream(sid)
    wire.client.reset_stream(other)
    assert joined(wire.client) == bytes.fromhex(
        "03 000005 00000001 68656c6c6f"  # DATA "hello"
        "04 000000 00000001"  # END
        "05 000004 00000003 00000000"  # RESET, cancelled
    )
    wire.server.send_data(sid, b"x" * (32 * KIB))
    wire.client.consumed(sid, len(data_of(wire.pump()[0], sid)))
    assert joined(wire.client) == bytes.fromhex("06 000004 00000001 00008000")  # WINDOW 32 KiB
    wire.server.close()
    assert joined(wire.server) == bytes.fromhex("07 000004 00000000 00000003")  # GOAWAY, last 3
    wire.client.close()
    assert joined(wire.client) == bytes.fromhex("07 000004 00000000 00000000")


def test_a_refused_reset_carries_code_one() -> None:
    wire = Wire()
    sid = wire.open()
    wire.server.reset_stream(sid, refused=True)
    assert joined(wire.server) == bytes.fromhex("05 000004 00000001 00000001")


def test_hand_built_frames_of_the_documented_format_are_understood() -> None:
    conn = client(1, 3, 5)
    events = conn.receive_data(
        verdict_frame(1, 200)
        + frame(DATA, 1, b"reply")
        + frame(WINDOW, 1, u32(100))
        + verdict_frame(3, 404, b'{"reason":"not-found","message":"no export default/db"}')
        + frame(END, 1)
        + frame(RESET, 5, u32(REFUSED))
        + frame(GOAWAY, 0, u32(5))
    )
    assert events == [
        StreamVerdict(1, Verdict.allow()),
        StreamData(1, memoryview(b"reply")),
        WindowOpened(1),
        StreamVerdict(3, Verdict.not_found("no export default/db")),
        StreamEnded(1),
        StreamReset(5, REFUSED),
        ConnectionEnded(0, 5),
    ]


# -- opening a stream ------------------------------------------------------------------------


def test_an_allowed_open_gives_the_export_and_attributes_and_opens_both_ways() -> None:
    wire = Wire()
    assert wire.open() == 1
    assert wire.open(attributes={}) == 3  # no attributes: none on the wire either
    assert wire.client.send_window(1) > 0
    assert wire.server.send_window(1) > 0


REFUSALS = [
    Verdict.malformed("attributes are invalid"),
    Verdict.denied("denied by the ingress policy of peer b"),
    Verdict.not_found("no export default/db"),
    Verdict(405, "unknown-method", "only CONNECT is served"),
    Verdict(431, "too-large", "the request head is over the limit"),
    Verdict.unreachable("service of export default/db at 10.0.0.5:5432: refused"),
    Verdict.overloaded("too many tunnels; retry later \u2615 caf\u00e9"),
]


@pytest.mark.parametrize("verdict", REFUSALS, ids=lambda v: str(v.status))
def test_each_refusal_reaches_the_client_as_its_verdict_and_ends_the_stream(
    verdict: Verdict,
) -> None:
    wire = Wire(server=MuxSettings(max_concurrent_streams=1))
    sid = wire.client.open_stream(DB, ATTRIBUTES)
    wire.client.send_data(sid, b"early bytes")  # sent before the verdict, never delivered
    wire.pump()
    wire.server.send_verdict(sid, verdict)
    at_client, at_server = wire.pump()
    assert at_client == [StreamVerdict(sid, verdict)]
    assert at_server == []
    # The stream is over at both ends: nothing more goes on it, and it no longer counts
    # against the limit of one, so the connection serves the next tunnel.
    assert wire.client.send_data(sid, b"more") == 0
    assert wire.server.send_data(sid, b"more") == 0
    assert wire.client.can_open_stream
    assert wire.open() == sid + 2


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b'{"reason":"denied"}', "denied", "status 403"),
        (b'{"message":"go away"}', "refused", "go away"),
        (b"", "refused", "status 403"),
        (b"not json", "refused", "status 403"),
        (b"[1]", "refused", "status 403"),
        (b'{"reason":1}', "refused", "status 403"),
        (b"[" * 10_000, "refused", "status 403"),
    ],
)
def test_a_refusal_with_a_broken_body_keeps_its_status(
    body: bytes, reason: str, message: str
) -> None:
    conn = client(1)
    assert conn.receive_data(verdict_frame(1, 403, body)) == [
        StreamVerdict(1, Verdict(403, reason, message))
    ]


@pytest.mark.parametrize("status", [0, 100, 201, 204, 302, 399, 600, 65535])
def test_a_status_that_is_neither_200_nor_a_refusal_is_a_malformed_502(status: int) -> None:
    conn = client(1)
    assert conn.receive_data(verdict_frame(1, status)) == [
        StreamVerdict(1, Verdict(502, "malformed", f"unexpected status {status} to an OPEN"))
    ]
    assert conn.send_data(1, b"x") == 0  # the stream is gone


def test_a_second_verdict_and_a_verdict_for_an_unknown_stream_are_ignored() -> None:
    conn = client(1)
    assert conn.receive_data(verdict_frame(1, 200)) == [StreamVerdict(1, Verdict.allow())]
    assert conn.receive_data(verdict_frame(1, 403) + verdict_frame(1, 200)) == []
    assert conn.receive_data(verdict_frame(9, 200) + verdict_frame(2, 403)) == []
    assert conn.send_window(1) > 0


def test_early_tunnel_bytes_from_the_client_reach_the_server_before_its_verdict() -> None:
    wire = Wire()
    sid = wire.client.open_stream(DB, {})
    wire.client.send_data(sid, b"GET / HTTP/1.1\r\n")
    _, at_server = wire.pump()
    assert at_server == [
        StreamRequest(sid, ConnectRequest(DB, {})),
        StreamData(sid, memoryview(b"GET / HTTP/1.1\r\n")),
    ]


# -- OPENs the layer refuses itself -------------------------------------------------------------


@dataclass(frozen=True)
class BadOpen:
    """An OPEN payload that the server must refuse with 400, saying ``says``."""

    target: bytes
    attributes: bytes | None
    says: str

    @property
    def payload(self) -> bytes:
        return self.target if self.attributes is None else self.target + b"\n" + self.attributes


BAD_OPENS = {
    "empty": BadOpen(b"", None, "not <namespace>/<name>"),
    "no export name": BadOpen(b"default", None, "not <namespace>/<name>"),
    "upper-case namespace": BadOpen(b"Default/db", None, "DNS-1123 label"),
    "a third part": BadOpen(b"default/db/x", None, "DNS-1123 subdomain"),
    "a space": BadOpen(b"default/d b", None, "DNS-1123 subdomain"),
    "non-ASCII target": BadOpen("d\u00e9faut/db".encode(), None, "not ASCII"),
    "non-ASCII attributes": BadOpen(b"default/db", "\u00e9".encode(), "not ASCII"),
    "invalid UTF-8": BadOpen(b"default/\xff", None, "not ASCII"),
    "attributes not base64url": BadOpen(b"default/db", b"!!", "base64url"),
    "attributes padded": BadOpen(b"default/db", b"e30=", "base64url"),
    "attributes of a wrong length": BadOpen(b"default/db", b"e", "wrong length"),
    "empty attributes": BadOpen(b"default/db", b"", "not valid JSON"),
    "attributes not a JSON object": BadOpen(b"default/db", b64json([1]), "not a JSON object"),
    "a non-string attribute": BadOpen(b"default/db", b64json({"a": 1}), "non-string value"),
    "a lone surrogate": BadOpen(b"default/db", b64json({"a": "\ud800"}), "not valid Unicode"),
    "too many attributes": BadOpen(
        b"default/db", b64json({str(i): "x" for i in range(65)}), "65 entries"
    ),
    "attributes over 8 KiB": BadOpen(b"default/db", b"A" * (8 * KIB + 1), "over the limit"),
    "deeply nested attributes": BadOpen(b"default/db", b64(b"[" * 5000), "nested too deeply"),
    "two lines of attributes": BadOpen(b"default/db", b"e30\ne30", "base64url"),
}


def basic_mode_refusal(bad: BadOpen) -> RemoteProtocolError:
    """What the basic mode's server says to the same target and attributes header."""
    conn = PeerServerConnection()
    head = b"CONNECT " + bad.target + b" HTTP/1.1\r\nhost: b\r\n"
    if bad.attributes is not None:
        head += b"clusterlink-client-attributes: " + bad.attributes + b"\r\n"
    conn.receive_data(head + b"\r\n")
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    return caught.value


@pytest.mark.parametrize("bad", BAD_OPENS.values(), ids=BAD_OPENS.keys())
def test_a_bad_open_is_refused_by_the_layer_like_the_basic_mode_and_the_connection_serves_on(
    bad: BadOpen,
) -> None:
    conn = server(max_concurrent_streams=1)
    events = conn.receive_data(frame(OPEN, 1, bad.payload) + frame(DATA, 1, b"early"))

    (refused,) = events  # nobody has to decide, and the early bytes are dropped
    assert isinstance(refused, StreamRefused)
    assert refused.stream_id == 1
    error = refused.error
    assert (error.status, error.reason) == (400, "malformed")
    assert bad.says in str(error)
    basic = basic_mode_refusal(bad)
    assert (basic.status, basic.reason) == (error.status, error.reason)

    ((kind, sid, payload),) = parse_frames(joined(conn))
    assert (kind, sid, payload[:2]) == (VERDICT, 1, b"\x01\x90")  # 400
    assert json.loads(payload[2:]) == {"reason": "malformed", "message": str(error)}

    # Only that stream was refused, and it is gone: the next OPEN is served (limit of one).
    assert conn.receive_data(frame(OPEN, 3, b"default/db")) == [
        StreamRequest(3, ConnectRequest(DB, {}))
    ]


def test_a_refused_open_reaches_a_client_of_ours_as_a_400_verdict() -> None:
    srv, cli = server(), client(1)
    srv.receive_data(frame(OPEN, 1, b"Default/db"))
    (event,) = cli.receive_data(joined(srv))
    assert isinstance(event, StreamVerdict)
    assert (event.verdict.status, event.verdict.reason) == (400, "malformed")
    assert "DNS-1123" in event.verdict.message


def test_attributes_at_the_limit_are_accepted() -> None:
    attributes = {f"k{i:02}": "v" * 80 for i in range(64)}
    encoded = encode_attributes(attributes).encode()
    assert len(encoded) <= 8 * KIB
    conn = server()
    assert conn.receive_data(frame(OPEN, 1, b"default/db\n" + encoded)) == [
        StreamRequest(1, ConnectRequest(DB, attributes))
    ]


# -- data --------------------------------------------------------------------------------------


def test_data_crosses_both_ways_as_slices_of_what_was_received() -> None:
    wire = Wire()
    sid = wire.open()
    up, down = bytes(range(256)) * 100, b"reply" * 1000
    assert wire.client.send_data(sid, up) == len(up)
    assert wire.server.send_data(sid, bytearray(down)) == len(down)
    received = joined(wire.client)
    at_server = wire.server.receive_data(received)
    assert data_of(at_server, sid) == up
    for event in at_server:
        assert isinstance(event, StreamData)
        assert isinstance(event.data, memoryview)
        assert event.data.obj is received  # a slice, not a copy
        assert event.flow_bytes == len(event.data)
    at_client, _ = wire.pump()
    assert data_of(at_client, sid) == down


def test_an_empty_data_frame_gives_no_event() -> None:
    conn = client(1)
    assert conn.receive_data(verdict_frame(1, 200) + frame(DATA, 1)) == [
        StreamVerdict(1, Verdict.allow())
    ]


def test_send_data_of_nothing_sends_nothing() -> None:
    wire = Wire()
    sid = wire.open()
    assert wire.client.send_data(sid, b"") == 0
    assert wire.client.data_to_send() == []


def test_a_large_data_frame_is_handed_on_as_it_arrives_never_buffered() -> None:
    wire = Wire()
    sid = wire.open()
    payload = bytes(range(256)) * 400  # 102,400 bytes in one frame
    assert wire.client.send_data(sid, payload) == len(payload)
    stream = joined(wire.client)
    assert len(parse_frames(stream)) == 1
    pieces = [stream[i : i + 1000] for i in range(0, len(stream), 1000)]
    received = []
    for piece in pieces:
        events = wire.server.receive_data(piece)
        assert all(isinstance(e, StreamData) and e.data.obj is piece for e in events)
        received += events
    assert len(received) == len(pieces)  # every read gave its bytes at once
    assert data_of(received, sid) == payload


def _client_to_server(more: bytes = b"") -> bytes:
    """A client's side of a conversation, with every frame type it sends and a stray one;
    ``more`` frames go before its GOAWAY."""
    conn = MuxConnection(client_side=True)
    first = conn.open_stream(DB, ATTRIBUTES)
    conn.send_data(first, b"hello")
    second = conn.open_stream(DB, {})
    conn.send_data(second, bytes(range(256)) * 3)
    conn.end_stream(first)
    conn.reset_stream(second)
    return (
        joined(conn)
        + frame(WINDOW, first, u32(100))
        + frame(200, 7, b"from a newer peer")
        + frame(OPEN, 5, b"Default/db")
        + more
        + frame(GOAWAY, 0, u32(0))
    )


def _server_to_client() -> bytes:
    """A server's side of a conversation with streams 1, 3 and 5."""
    return (
        peer_settings(client_side=True)
        + verdict_frame(1, 200)
        + frame(DATA, 1, b"reply")
        + frame(WINDOW, 1, u32(1000))
        + verdict_frame(3, 403, b'{"reason":"denied","message":"no"}')
        + frame(9, 0)
        + frame(DATA, 1, bytes(range(256)) * 2)
        + frame(END, 1)
        + frame(RESET, 5, u32(REFUSED))
        + frame(GOAWAY, 0, u32(5))
    )


def _receiver(*, client_side: bool) -> MuxConnection:
    if not client_side:
        return MuxConnection(client_side=False)
    conn = MuxConnection(client_side=True)
    for _ in range(3):
        conn.open_stream(DB, {})
    return conn


def _read_in(chunks: Sequence[bytes], *, client_side: bool) -> list[object]:
    """The events for ``chunks``, each DATA run joined into one (stream, bytes) pair, and
    each slice checked to be of its own chunk (a refusal is its stream, status and text, as
    errors do not compare by value)."""
    conn = _receiver(client_side=client_side)
    events: list[object] = []
    for chunk in chunks:
        for event in conn.receive_data(chunk):
            if isinstance(event, StreamRefused):
                events.append((event.stream_id, event.error.status, str(event.error)))
                continue
            if not isinstance(event, StreamData):
                events.append(event)
                continue
            assert event.data.obj is chunk
            assert len(event.data) > 0
            last = events[-1] if events else None
            if isinstance(last, tuple) and len(last) == 2 and last[0] == event.stream_id:
                events[-1] = (event.stream_id, last[1] + bytes(event.data))
            else:
                events.append((event.stream_id, bytes(event.data)))
    return events


@pytest.mark.parametrize("client_side", [False, True], ids=["to a server", "to a client"])
def test_frames_cut_at_every_byte_give_the_same_events(client_side: bool) -> None:
    stream = _client_to_server() if not client_side else _server_to_client()
    whole = _read_in([stream], client_side=client_side)
    assert len(whole) > 8
    for cut in range(len(stream) + 1):
        assert _read_in([stream[:cut], stream[cut:]], client_side=client_side) == whole, cut
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    assert _read_in(one_by_one, client_side=client_side) == whole


@st.composite
def _cuts(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    bounds = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return [stream[a:b] for a, b in itertools.pairwise([0, *bounds, len(stream)])]


LARGE_CONVERSATION = _client_to_server(
    frame(OPEN, 7, b"default/db")
    + frame(DATA, 7, bytes(range(256)) * 80)  # 20 KiB
    + frame(DATA, 7, b"\x00" * 300)
    + frame(END, 7)
)


@settings(max_examples=300, deadline=None)
@given(_cuts(LARGE_CONVERSATION))
def test_frames_cut_anywhere_into_any_number_of_reads_give_the_same_events(
    chunks: list[bytes],
) -> None:
    assert _read_in(chunks, client_side=False) == _read_in([LARGE_CONVERSATION], client_side=False)


# -- flow control ------------------------------------------------------------------------------


def test_a_sender_cannot_exceed_the_peers_window() -> None:
    window = 64 * KIB
    wire = Wire(server=MuxSettings(stream_window_bytes=window))  # server "b" receives
    sid = wire.open()
    assert wire.client.send_window(sid) == window
    assert wire.client.send_data(sid, b"x" * (window + 1)) == window  # what fit
    assert wire.client.send_window(sid) == 0
    assert wire.client.send_data(sid, b"more") == 0  # stopped, not queued
    _, at_server = wire.pump()
    assert len(data_of(at_server, sid)) == window
    assert wire.pump() == ([], [])  # nothing moves while the consumer holds the bytes


def test_send_data_takes_at_most_one_frame_of_a_mebibyte() -> None:
    wire = Wire(server=MuxSettings(stream_window_bytes=4 * MIB))
    sid = wire.open()
    assert wire.client.send_data(sid, bytes(3 * MIB)) == MIB
    assert wire.client.send_window(sid) == 3 * MIB


def test_send_data_on_a_stream_that_is_not_open_for_sending_takes_nothing() -> None:
    wire = Wire()
    sid = wire.open()
    wire.client.end_stream(sid)
    assert wire.client.send_window(sid) == 0
    assert wire.client.send_data(sid, b"after END") == 0
    assert wire.client.send_data(99, b"no such stream") == 0
    assert wire.client.send_window(99) == 0
    assert joined(wire.client) == frame(END, sid)


def test_consumed_gives_credit_back_in_batches_of_half_a_window() -> None:
    window = 64 * KIB
    wire = Wire(client=MuxSettings(stream_window_bytes=window))  # client "a" receives
    sid = wire.open()
    assert wire.server.send_data(sid, b"x" * window) == window
    at_client, _ = wire.pump()
    assert len(data_of(at_client, sid)) == window

    wire.client.consumed(sid, window // 2 - 1)
    assert wire.client.data_to_send() == []  # not yet half a window
    wire.client.consumed(sid, 1)
    assert joined(wire.client) == frame(WINDOW, sid, u32(window // 2))
    wire.client.consumed(sid, 10)
    assert wire.client.data_to_send() == []

    assert wire.server.receive_data(frame(WINDOW, sid, u32(window // 2))) == [WindowOpened(sid)]
    assert wire.server.send_window(sid) == window // 2


def test_credit_given_back_lets_the_peer_send_exactly_that_much_more() -> None:
    window = 64 * KIB
    conn = client(1, stream_window_bytes=window)
    conn.receive_data(verdict_frame(1, 200) + frame(DATA, 1, bytes(window)))
    conn.consumed(1, window // 2)
    assert joined(conn) == frame(WINDOW, 1, u32(window // 2))
    conn.receive_data(frame(DATA, 1, bytes(window // 2)))  # exactly the credit
    with pytest.raises(RemoteProtocolError, match="past its flow-control window"):
        conn.receive_data(frame(DATA, 1, b"!"))


def test_a_peer_that_sends_past_the_window_breaks_the_protocol() -> None:
    conn = client(1, stream_window_bytes=64 * KIB)
    conn.receive_data(verdict_frame(1, 200) + frame(DATA, 1, bytes(64 * KIB - 1)))
    with pytest.raises(RemoteProtocolError, match="stream 1 sent past its flow-control window"):
        conn.receive_data(frame(DATA, 1, b"ab"))


def test_a_client_that_sends_past_a_servers_window_breaks_the_protocol() -> None:
    conn = server(stream_window_bytes=MIB)
    conn.receive_data(frame(OPEN, 1, b"default/db") + frame(DATA, 1, bytes(MIB)))
    with pytest.raises(RemoteProtocolError, match="past its flow-control window"):
        conn.receive_data(frame(DATA, 1, b"!"))


def test_the_peers_settings_adjust_the_window_of_streams_already_open() -> None:
    conn = MuxConnection(client_side=True)
    early = conn.open_stream(DB, {})  # before the server's SETTINGS: the default applies
    assert conn.send_window(early) == DEFAULT_STREAM_WINDOW

    assert conn.receive_data(settings_frame((WINDOW_SETTING, MIB))) == [WindowOpened(None)]
    assert conn.send_window(early) == MIB
    assert conn.send_data(early, bytes(100 * KIB)) == 100 * KIB

    conn.receive_data(settings_frame((WINDOW_SETTING, 64 * KIB)))  # shrinks below what is out
    assert conn.send_window(early) == 0
    assert conn.send_data(early, b"x") == 0
    later = conn.open_stream(DB, {})
    assert conn.send_window(later) == 64 * KIB

    conn.receive_data(settings_frame((WINDOW_SETTING, 512 * KIB)))
    assert conn.send_window(early) == 412 * KIB
    assert conn.send_window(later) == 512 * KIB


def test_a_client_may_send_the_default_window_before_a_smaller_servers_settings_arrive() -> None:
    """The docstring's rule: until the peer's SETTINGS arrive, the default window applies.
    A client that sends at once must not be cut off by a server whose window is smaller."""
    wire = Wire(server=MuxSettings(stream_window_bytes=64 * KIB), handshake=False)
    sid = wire.client.open_stream(DB, {})
    assert wire.client.send_data(sid, bytes(DEFAULT_STREAM_WINDOW + 1)) == DEFAULT_STREAM_WINDOW
    _, at_server = wire.pump()
    assert len(data_of(at_server, sid)) == DEFAULT_STREAM_WINDOW
    # Now the client knows the smaller window: it may send again only once the server's
    # consumer has taken more than it was owed.
    assert wire.client.send_window(sid) == 0
    consume_all(wire.server, at_server)
    wire.pump()
    assert wire.client.send_window(sid) == 64 * KIB


def test_a_stalled_stream_stops_only_its_own_sender() -> None:
    window = 64 * KIB
    wire = Wire(server=MuxSettings(stream_window_bytes=window))
    stalled = [wire.open() for _ in range(4)]
    for sid in stalled:
        assert wire.client.send_data(sid, bytes(window)) == window
    wire.pump()  # the server's consumer takes none of it
    assert all(wire.client.send_window(sid) == 0 for sid in stalled)

    flowing = wire.open()
    moved = 0
    for _ in range(20):
        sent = wire.client.send_data(flowing, bytes(window))
        assert sent == window
        moved += sent
        _, at_server = wire.pump()
        assert len(data_of(at_server, flowing)) == window
        consume_all(wire.server, at_server)
        wire.pump()
    assert moved == 20 * window
    assert all(wire.client.send_window(sid) == 0 for sid in stalled)


@pytest.mark.parametrize(
    ("window", "streams"), [(1023, 1), (2**31, 1), (1024, 0)], ids=["small", "huge", "no streams"]
)
def test_settings_we_could_not_announce_are_refused_at_once(window: int, streams: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        MuxSettings(stream_window_bytes=window, max_concurrent_streams=streams)


def test_a_window_that_grows_past_two_gibibytes_breaks_the_protocol() -> None:
    conn = client(1)
    conn.receive_data(frame(WINDOW, 1, u32(2**31 - 1 - conn.send_window(1))))
    with pytest.raises(RemoteProtocolError, match="past 2 GiB"):
        conn.receive_data(frame(WINDOW, 1, u32(1)))


@pytest.mark.parametrize(
    "bad",
    [
        settings_frame((WINDOW_SETTING, 1023)),
        settings_frame((WINDOW_SETTING, 2**31)),
        frame(SETTINGS, 0, b"\x00\x01\x00\x00\x04"),  # five bytes
        frame(WINDOW, 0, u32(1)),
        frame(WINDOW, 1, b"\x00\x01"),
        frame(WINDOW, 1, u32(1) + b"\x00"),
    ],
    ids=[
        "window under 1 KiB",
        "window of 2 GiB",
        "cut setting",
        "WINDOW on stream 0",
        "short WINDOW",
        "long WINDOW",
    ],
)
def test_malformed_flow_control_frames_break_the_protocol(bad: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        client(1).receive_data(bad)


def test_unknown_settings_are_ignored_and_known_ones_still_apply() -> None:
    conn = client(1)
    conn.receive_data(settings_frame((0, 7), (9, 2**32 - 1), (WINDOW_SETTING, 4 * KIB)))
    assert conn.send_window(1) == 4 * KIB


def test_a_flood_of_settings_frames_breaks_the_protocol() -> None:
    """Each one that changes the window touches every open stream: cheap to send, dear to
    receive. The first hundred (one is the norm) are taken."""
    conn = client(1, 3, 5)
    for window in range(99):  # the hundredth: the peer's first was read by ``client``
        conn.receive_data(settings_frame((WINDOW_SETTING, 4 * KIB + window)))
    with pytest.raises(RemoteProtocolError, match="more than 100 SETTINGS frames"):
        conn.receive_data(settings_frame((WINDOW_SETTING, 4 * KIB)))


def test_a_window_for_a_stream_that_is_gone_is_ignored() -> None:
    conn = client(1)
    assert conn.receive_data(frame(WINDOW, 1, u32(0)) + frame(WINDOW, 7, u32(5))) == [
        WindowOpened(1)
    ]


# -- ends ----------------------------------------------------------------------------------------


def test_client_half_close_ends_one_direction_and_the_reply_still_flows() -> None:
    wire = Wire(server=MuxSettings(max_concurrent_streams=1))
    sid = wire.open()
    wire.client.send_data(sid, b"request")
    wire.client.end_stream(sid)
    _, at_server = wire.pump()
    assert at_server == [StreamData(sid, memoryview(b"request")), StreamEnded(sid)]

    assert wire.server.send_data(sid, b"reply") == 5
    wire.server.end_stream(sid)
    at_client, _ = wire.pump()
    assert at_client == [StreamData(sid, memoryview(b"reply")), StreamEnded(sid)]
    # Both directions ended: the stream is forgotten at both ends and frees its slot.
    assert wire.client.can_open_stream
    assert wire.open() == sid + 2


def test_server_half_close_ends_one_direction_and_the_client_may_still_send() -> None:
    wire = Wire()
    sid = wire.open()
    wire.server.end_stream(sid)
    at_client, _ = wire.pump()
    assert at_client == [StreamEnded(sid)]
    assert wire.server.send_data(sid, b"after END") == 0
    assert wire.client.send_data(sid, b"upload") == 6
    wire.client.end_stream(sid)
    _, at_server = wire.pump()
    assert at_server == [StreamData(sid, memoryview(b"upload")), StreamEnded(sid)]


def test_a_stream_both_ends_ended_is_forgotten_so_late_frames_for_it_are_dropped() -> None:
    wire = Wire()
    sid = wire.open()
    wire.client.end_stream(sid)
    wire.server.end_stream(sid)
    wire.pump()
    for conn in (wire.client, wire.server):
        assert conn.send_window(sid) == 0
        conn.consumed(sid, MIB)  # no credit for a stream that is gone
        conn.end_stream(sid)
        conn.reset_stream(sid)
        assert conn.data_to_send() == []
    late = frame(DATA, sid, b"late") + frame(END, sid) + frame(WINDOW, sid, u32(9))
    assert wire.client.receive_data(late) == []
    assert wire.server.receive_data(late) == []


def test_ending_twice_sends_one_end() -> None:
    wire = Wire()
    sid = wire.open()
    wire.client.end_stream(sid)
    wire.client.end_stream(sid)
    assert joined(wire.client) == frame(END, sid)
    assert wire.server.receive_data(frame(END, sid) + frame(END, sid)) == [StreamEnded(sid)]


def test_no_credit_is_given_back_once_the_peer_has_ended() -> None:
    conn = client(1, stream_window_bytes=64 * KIB)
    conn.receive_data(verdict_frame(1, 200) + frame(DATA, 1, bytes(64 * KIB)) + frame(END, 1))
    conn.consumed(1, 64 * KIB)
    assert conn.data_to_send() == []


@pytest.mark.parametrize("split", [False, True], ids=["one read", "END and DATA apart"])
def test_data_after_the_peers_end_breaks_the_protocol(split: bool) -> None:
    conn = server()
    conn.receive_data(frame(OPEN, 1, b"default/db"))
    ended, more = frame(END, 1), frame(DATA, 1, b"more")
    with pytest.raises(RemoteProtocolError, match="DATA on stream 1 after its END"):
        if split:
            assert conn.receive_data(ended) == [StreamEnded(1)]
            conn.receive_data(more)
        else:
            conn.receive_data(ended + more)


def test_data_before_the_verdict_breaks_the_protocol_on_the_client() -> None:
    conn = client(1)
    with pytest.raises(RemoteProtocolError, match="DATA on stream 1 before its verdict"):
        conn.receive_data(frame(DATA, 1, b"too early"))


@pytest.mark.parametrize("resetter", ["client", "server"])
def test_a_reset_reaches_the_other_side_and_spares_the_other_streams(resetter: str) -> None:
    wire = Wire(server=MuxSettings(max_concurrent_streams=2))
    doomed, other = wire.open(), wire.open()
    wire.client.send_data(doomed, b"in flight")
    if resetter == "client":
        wire.client.reset_stream(doomed)
        at_client, at_server = wire.pump()
        assert at_client == []
        assert at_server == [
            StreamData(doomed, memoryview(b"in flight")),
            StreamReset(doomed, CANCEL),
        ]
    else:
        wire.server.reset_stream(doomed)
        at_client, at_server = wire.pump()
        assert at_client == [StreamReset(doomed, CANCEL)]
        assert at_server == []  # the bytes in flight for a reset stream are dropped
    assert wire.client.can_open_stream  # the reset stream is gone at both ends
    assert wire.client.send_data(doomed, b"x") == wire.server.send_data(doomed, b"x") == 0
    wire.client.send_data(other, b"still here")
    _, at_server = wire.pump()
    assert data_of(at_server, other) == b"still here"
    # Ending, resetting or acknowledging a stream that is gone is not an error.
    wire.client.reset_stream(doomed)
    wire.client.end_stream(doomed)
    wire.client.consumed(doomed, 10)
    assert wire.client.data_to_send() == []


def test_a_stream_reset_before_its_verdict_gets_no_verdict() -> None:
    wire = Wire()
    sid = wire.client.open_stream(DB, {})
    wire.pump()
    wire.server.reset_stream(sid, refused=True)
    wire.server.send_verdict(sid, Verdict.allow())  # too late: nothing is sent
    at_client, _ = wire.pump()
    assert at_client == [StreamReset(sid, REFUSED)]


def test_a_reset_without_a_code_is_a_cancel_and_one_for_no_stream_is_ignored() -> None:
    conn = client(1, 3)
    assert conn.receive_data(frame(RESET, 1) + frame(RESET, 7, u32(5))) == [StreamReset(1, CANCEL)]
    assert conn.receive_data(frame(RESET, 3, u32(77))) == [StreamReset(3, 77)]


# -- GOAWAY ------------------------------------------------------------------------------------


def test_goaway_drains_streams_already_open_go_on_and_no_new_one_opens() -> None:
    wire = Wire()
    sid = wire.open()
    wire.server.close()
    at_client, _ = wire.pump()
    assert at_client == [ConnectionEnded(error_code=0, last_stream_id=sid)]
    assert not wire.client.can_open_stream
    # The open stream goes on both ways, to its end.
    wire.client.send_data(sid, b"up")
    wire.server.send_data(sid, b"down")
    wire.client.end_stream(sid)
    wire.server.end_stream(sid)
    at_client, at_server = wire.pump()
    assert at_client == [StreamData(sid, memoryview(b"down")), StreamEnded(sid)]
    assert at_server == [StreamData(sid, memoryview(b"up")), StreamEnded(sid)]


def test_closing_our_own_side_stops_new_streams_at_once() -> None:
    wire = Wire()
    sid = wire.open()
    assert wire.client.can_open_stream
    wire.client.close()
    assert not wire.client.can_open_stream
    wire.client.close()  # one GOAWAY only
    _, at_server = wire.pump()
    assert at_server == [ConnectionEnded(error_code=0, last_stream_id=0)]
    wire.client.send_data(sid, b"still")
    _, at_server = wire.pump()
    assert data_of(at_server, sid) == b"still"


def test_an_open_that_crosses_our_goaway_is_refused_with_a_reset() -> None:
    wire = Wire()
    first = wire.open()
    wire.server.close()
    late = wire.client.open_stream(DB, {})  # sent before the GOAWAY arrived
    at_client, at_server = wire.pump()
    assert at_server == []  # nobody has to decide
    assert at_client == [ConnectionEnded(0, first), StreamReset(late, REFUSED)]
    # The refused id counts as used: a lower or equal one is still a protocol error.
    with pytest.raises(RemoteProtocolError):
        wire.server.receive_data(frame(OPEN, late, b"default/db"))


def test_goaway_without_a_last_stream_id_is_understood() -> None:
    conn = client(1)
    assert conn.receive_data(frame(GOAWAY, 0)) == [ConnectionEnded(0, 0)]
    assert not conn.can_open_stream


# -- limits --------------------------------------------------------------------------------------


def test_an_open_over_the_stream_limit_is_answered_503_overloaded_and_the_others_go_on() -> None:
    """Not a RESET: a client that gets no verdict would wait out its verdict timeout."""
    wire = Wire(server=MuxSettings(max_concurrent_streams=2), handshake=False)
    # The client opens before the server's limit reaches it.
    sids = [wire.client.open_stream(DB, {}) for _ in range(3)]
    at_client, at_server = wire.pump()
    assert at_server[:3] == [
        WindowOpened(None),
        StreamRequest(sids[0], ConnectRequest(DB, {})),
        StreamRequest(sids[1], ConnectRequest(DB, {})),
    ]
    (refused,) = at_server[3:]  # for the server's log and metrics; already answered
    assert isinstance(refused, StreamRefused)
    assert (refused.stream_id, refused.error.status, refused.error.reason) == (
        sids[2],
        503,
        "overloaded",
    )
    message = "2 streams are open on this connection, the limit"
    assert at_client == [
        WindowOpened(None),
        StreamVerdict(sids[2], Verdict(503, "overloaded", message)),
    ]
    assert not wire.client.can_open_stream  # now it knows the limit
    wire.client.reset_stream(sids[0])
    wire.pump()
    assert wire.client.can_open_stream
    assert wire.open() == 7


def test_can_open_stream_follows_the_peers_stream_limit_and_counts_half_closed_streams() -> None:
    wire = Wire(server=MuxSettings(max_concurrent_streams=2))
    first = wire.open()
    assert wire.client.can_open_stream
    second = wire.open()
    assert not wire.client.can_open_stream
    wire.client.reset_stream(first)
    wire.pump()
    assert wire.client.can_open_stream
    wire.client.end_stream(second)  # half-closed still counts ...
    wire.pump()
    wire.open()
    assert not wire.client.can_open_stream
    wire.server.end_stream(second)  # ... until both directions ended
    wire.pump()
    assert wire.client.can_open_stream


@pytest.mark.parametrize(
    ("ids", "bad"),
    [((), 0), ((), 2), ((1,), 1), ((5,), 3), ((1, 3), 4), ((), 2**32 - 2)],
    ids=["zero", "even", "repeated", "lower", "even and higher", "even and huge"],
)
def test_a_stream_id_that_is_not_new_and_odd_breaks_the_protocol(
    ids: tuple[int, ...], bad: int
) -> None:
    conn = server()
    for sid in ids:
        conn.receive_data(frame(OPEN, sid, b"default/db"))
    with pytest.raises(RemoteProtocolError, match=f"stream id {bad} is not a new odd id"):
        conn.receive_data(frame(OPEN, bad, b"default/db"))


def test_frames_only_the_other_side_sends_break_the_protocol() -> None:
    with pytest.raises(RemoteProtocolError, match="a server may not open streams"):
        client(1).receive_data(frame(OPEN, 2, b"default/db"))
    with pytest.raises(RemoteProtocolError, match="a client may not send a verdict"):
        server().receive_data(verdict_frame(1, 200))


def test_a_verdict_too_short_for_its_status_breaks_the_protocol() -> None:
    with pytest.raises(RemoteProtocolError, match="malformed VERDICT"):
        client(1).receive_data(frame(VERDICT, 1, b"\x00"))


@pytest.mark.parametrize("client_side", [False, True], ids=["server", "client"])
def test_oversized_frames_break_the_protocol_on_their_header_alone(client_side: bool) -> None:
    conn = client(1) if client_side else server()
    # At the limits, a header alone is fine: the payload is awaited.
    assert conn.receive_data(struct.pack("!II", DATA << 24 | MAX_DATA_FRAME, 1)) == []
    conn = client(1) if client_side else server()
    assert conn.receive_data(struct.pack("!II", 99 << 24 | MAX_CONTROL_FRAME, 0)) == []
    with pytest.raises(RemoteProtocolError, match="DATA frame of 1048577 bytes is over the limit"):
        (client(1) if client_side else server()).receive_data(
            struct.pack("!II", DATA << 24 | MAX_DATA_FRAME + 1, 1)
        )
    for kind in (SETTINGS, OPEN, VERDICT, END, RESET, WINDOW, GOAWAY, 99):
        with pytest.raises(RemoteProtocolError, match=f"type {kind} with 65537 bytes is too large"):
            (client(1) if client_side else server()).receive_data(
                struct.pack("!II", kind << 24 | MAX_CONTROL_FRAME + 1, 1)
            )


@pytest.mark.parametrize("kind", [8, 9, 100, 255])
def test_unknown_frame_types_are_ignored_up_to_the_control_limit(kind: int) -> None:
    wire = Wire()
    sid = wire.open()
    stray = frame(kind, sid, b"\xff" * MAX_CONTROL_FRAME) + frame(kind, 0)
    assert wire.server.receive_data(stray + frame(DATA, sid, b"after")) == [
        StreamData(sid, memoryview(b"after"))
    ]
    assert wire.client.receive_data(stray) == []


def test_data_for_a_stream_never_opened_is_dropped() -> None:
    assert server().receive_data(frame(DATA, 5, b"who?") + frame(DATA, 0, b"nobody")) == []


# -- buffers out ---------------------------------------------------------------------------------


JOIN_BELOW = 16 * KIB


def test_a_small_payload_is_joined_with_its_header_a_large_one_is_not() -> None:
    wire = Wire()
    sid = wire.open()
    small = bytes(JOIN_BELOW - 1)
    wire.client.send_data(sid, small)
    (buffer,) = wire.client.data_to_send()
    assert buffer == frame(DATA, sid, small)

    large = bytes(range(256)) * (JOIN_BELOW // 256)
    wire.client.send_data(sid, large)
    header, payload = wire.client.data_to_send()
    assert header == struct.pack("!II", DATA << 24 | len(large), sid)
    assert payload is large  # referenced, not copied

    window = wire.client.send_window(sid)
    huge = bytes(window + 1)
    assert wire.client.send_data(sid, huge) == window
    header, payload = wire.client.data_to_send()
    assert isinstance(payload, memoryview)
    assert payload.obj is huge  # the part that fit, still without a copy
    assert len(payload) == window


@pytest.mark.parametrize("size", [100, JOIN_BELOW, 100 * KIB])
def test_a_bytearray_payload_is_copied_so_its_owner_may_reuse_it(size: int) -> None:
    wire = Wire()
    sid = wire.open()
    buffer = bytearray(b"a" * size)
    assert wire.client.send_data(sid, buffer) == size
    buffer[:] = b"b" * size
    _, at_server = wire.pump()
    assert data_of(at_server, sid) == b"a" * size


def test_a_memoryview_payload_is_sent_as_given() -> None:
    wire = Wire()
    sid = wire.open()
    data = bytes(range(256)) * 100
    assert wire.client.send_data(sid, memoryview(data)[100:]) == len(data) - 100
    assert wire.client.send_data(sid, memoryview(data)[:10]) == 10
    _, at_server = wire.pump()
    assert data_of(at_server, sid) == data[100:] + data[:10]


# -- fuzz ----------------------------------------------------------------------------------------


def _assert_refusal_status(error: RemoteProtocolError) -> None:
    """As in the basic mode, a stream refused for what the peer sent is a 4xx (its fault),
    never a 5xx; the one 5xx is the stream limit (503, overloaded: try elsewhere)."""
    if error.reason == "overloaded":
        assert error.status == 503, error
    else:
        assert 400 <= error.status < 500, (error.status, error.reason, str(error))


def _drive_server(chunks: Sequence[bytes]) -> None:
    """As ``MuxSession`` does: answer each request, consume and echo data, end when ended.
    Every refusal the layer makes has a 4xx status, and goes out as a VERDICT with it."""
    conn = MuxConnection(client_side=False, settings=MuxSettings(max_concurrent_streams=4))
    refused: dict[int, int] = {}  # stream -> the status its VERDICT must carry
    try:
        for chunk in [peer_settings(client_side=False), *chunks]:
            for event in conn.receive_data(chunk):
                assert isinstance(event, EVENT_TYPES)
                if isinstance(event, StreamRequest):
                    sid = event.stream_id
                    conn.send_verdict(
                        sid, Verdict.allow() if sid % 4 == 1 else Verdict.denied("no")
                    )
                elif isinstance(event, StreamRefused):
                    _assert_refusal_status(event.error)
                    refused[event.stream_id] = event.error.status
                elif isinstance(event, StreamData):
                    assert isinstance(event.data, memoryview)
                    conn.consumed(event.stream_id, event.flow_bytes)
                    conn.send_data(event.stream_id, event.data)
                elif isinstance(event, StreamEnded):
                    conn.end_stream(event.stream_id)
            for kind, sid, payload in parse_frames(joined(conn)):
                if kind == VERDICT and sid in refused:
                    assert struct.unpack("!H", payload[:2])[0] == refused.pop(sid), payload
            assert not refused  # every refusal was answered at once
    except RemoteProtocolError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.reason, str(exc))  # the peer's fault


def _drive_client(chunks: Sequence[bytes]) -> None:
    conn = MuxConnection(client_side=True, peer_name="b")
    try:
        conn.receive_data(peer_settings(client_side=True))
        conn.open_stream(DB, ATTRIBUTES)
        conn.open_stream(DB, {})
        conn.open_stream(DB, {})
        for chunk in chunks:
            for event in conn.receive_data(chunk):
                assert isinstance(event, EVENT_TYPES)
                if isinstance(event, StreamVerdict) and event.verdict.is_allowed:
                    conn.send_data(event.stream_id, b"hello")
                elif isinstance(event, StreamVerdict):
                    # A refusal is told as the peer's 4xx or 5xx; any other status it sent
                    # is the peer's garbage, told as 502 malformed (as in the basic mode).
                    verdict = event.verdict
                    assert 400 <= verdict.status <= 599, verdict
                    if verdict.message.startswith("unexpected status"):
                        assert (verdict.status, verdict.reason) == (502, "malformed"), verdict
                elif isinstance(event, StreamData):
                    conn.consumed(event.stream_id, event.flow_bytes)
                elif isinstance(event, StreamEnded):
                    conn.end_stream(event.stream_id)
                elif isinstance(event, WindowOpened) and conn.can_open_stream:
                    conn.open_stream(DB, {})
            joined(conn)
    except RemoteProtocolError as exc:
        assert exc.reason == "malformed", (exc.status, exc.reason, str(exc))  # blamed on the peer


OPEN_PAYLOADS = [
    b"default/db",
    b"default/db\n" + encode_attributes(ATTRIBUTES).encode(),
    *(bad.payload for bad in BAD_OPENS.values()),
]
VERDICT_PAYLOADS = [
    struct.pack("!H", 200),
    struct.pack("!H", 403) + b'{"reason":"denied","message":"no"}',
    struct.pack("!H", 404) + b"[[[[",
    struct.pack("!H", 302),
    b"\x01",
    b"",
]


_STREAMS = [0, 1, 2, 3, 5, 7, 9, 2**31 - 1, 2**32 - 1]
_NUMBERS = [0, 1, 2, 1023, 1024, 65_535, 2**31 - 1, 2**31, 2**32 - 1]
_PAYLOADS = {
    SETTINGS: [
        b"",
        *(struct.pack("!HI", k, v) for k in range(4) for v in _NUMBERS),
        settings_frame((WINDOW_SETTING, 4096), (MAX_STREAMS_SETTING, 1))[8:],
    ],
    OPEN: OPEN_PAYLOADS,
    VERDICT: VERDICT_PAYLOADS,
    DATA: [b"", b"x", bytes(range(256))],
    END: [b""],
    RESET: [u32(n) for n in _NUMBERS],
    WINDOW: [u32(n) for n in _NUMBERS],
    GOAWAY: [u32(n) for n in _NUMBERS],
    8: [b"", b"from a newer peer"],
}


def _variants(payload: bytes) -> list[bytes]:
    """``payload``, and (for a mutant frame) cut short or with a byte too many."""
    return [payload, payload[: len(payload) // 2], payload + b"\x00"]


# A pool of frames, well-formed or a little off, for each type on a few streams. Drawing a
# frame is then one choice: Hypothesis's drawing is most of the time these tests take.
_FRAMES = sorted(
    {
        frame(kind, sid, variant)
        for kind, payloads in _PAYLOADS.items()
        for payload in payloads
        for variant in _variants(payload)
        for sid in _STREAMS
    },
    key=len,  # Hypothesis shrinks towards the first: the shortest
)


@st.composite
def _chunks(draw: st.DrawFn) -> list[bytes]:
    """Frames (sometimes with a byte flipped), cut into the reads a socket might give."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(_FRAMES), min_size=1, max_size=12))))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= draw(st.integers(1, 255))
    return draw(_cuts(bytes(data)))


# Four times 1,000 examples: about 6 s, nearly all of it Hypothesis drawing them.
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_BYTES = st.lists(st.binary(min_size=1, max_size=64), max_size=8)


@FUZZ
@given(_BYTES)
def test_arbitrary_bytes_to_a_server_give_events_or_a_protocol_error(chunks: list[bytes]) -> None:
    _drive_server(chunks)


@FUZZ
@given(_BYTES)
def test_arbitrary_bytes_to_a_client_give_events_or_a_protocol_error(chunks: list[bytes]) -> None:
    _drive_client(chunks)


@FUZZ
@given(_chunks())
def test_arbitrary_frames_to_a_server_give_events_or_a_protocol_error(chunks: list[bytes]) -> None:
    _drive_server(chunks)


@FUZZ
@given(_chunks())
def test_arbitrary_frames_to_a_client_give_events_or_a_protocol_error(chunks: list[bytes]) -> None:
    _drive_client(chunks)
