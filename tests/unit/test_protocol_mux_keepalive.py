"""PING and PONG (the heartbeat of a reverse link) and the reason a GOAWAY carries, byte for
byte and through two engines in memory; the heartbeat answer's body shared by both modes."""

from __future__ import annotations

import json
import struct

import pytest

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol import Health
from clusterlink.protocol.health_body import decode_health, encode_health
from clusterlink.protocol.mux import (
    ConnectionEnded,
    MuxConnection,
    PingReceived,
    PongReceived,
    WindowOpened,
)

# Written out here rather than imported, so that renumbering one in the engine fails.
GOAWAY, PING, PONG = 7, 10, 11

HEALTH = Health("b", {"site": "b"}, "1.2.3", True, True)


def frame(kind: int, stream_id: int, payload: bytes = b"") -> bytes:
    return struct.pack("!II", kind << 24 | len(payload), stream_id) + payload


def joined(conn: MuxConnection) -> bytes:
    return b"".join(bytes(b) for b in conn.data_to_send())


def pair() -> tuple[MuxConnection, MuxConnection]:
    client, server = MuxConnection(client_side=True), MuxConnection(client_side=False)
    assert server.receive_data(joined(client)) == [WindowOpened(None)]
    assert client.receive_data(joined(server)) == [WindowOpened(None)]
    return client, server


def test_a_ping_is_a_64_bit_token_on_stream_zero_and_its_pong_returns_it_with_health() -> None:
    client, server = pair()
    client.send_ping(7)
    sent = joined(client)
    assert sent == frame(PING, 0, struct.pack("!Q", 7))
    assert server.receive_data(sent) == [PingReceived(7)]

    server.send_pong(7, HEALTH)
    answer = joined(server)
    body = {"name": "b", "labels": {"site": "b"}, "version": "1.2.3", "peered": True}
    assert answer == frame(PONG, 0, struct.pack("!Q", 7) + json.dumps(
        {**body, "dialsIn": True}, separators=(",", ":")).encode())  # fmt: skip
    assert client.receive_data(answer) == [PongReceived(7, HEALTH)]


def test_either_side_may_ping() -> None:
    client, server = pair()
    server.send_ping(1)
    assert client.receive_data(joined(server)) == [PingReceived(1)]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (frame(PING, 1, struct.pack("!Q", 1)), "PING or PONG on stream 1"),
        (frame(PING, 0, b"\x00" * 7), "malformed PING"),
        (frame(PONG, 0, b"\x00" * 4), "malformed PONG"),
        (frame(PONG, 0, struct.pack("!Q", 1) + b"{}"), "PONG with a health answer that lacks"),
        (frame(PONG, 0, struct.pack("!Q", 1) + b"not json"), "PONG with a health answer"),
    ],
)
def test_malformed_pings_and_pongs_break_the_protocol(bad: bytes, words: str) -> None:
    client, _ = pair()
    with pytest.raises(RemoteProtocolError, match=words):
        client.receive_data(bad)


def test_a_goaway_says_why_and_an_older_peers_bare_goaway_still_ends_the_connection() -> None:
    client, server = pair()
    server.close("peer a's Peer b does not say dialsIn: true")
    sent = joined(server)
    assert sent == frame(GOAWAY, 0, struct.pack("!I", 0) + b"peer a's Peer b does not say "
                         b"dialsIn: true")  # fmt: skip
    assert client.receive_data(sent) == [
        ConnectionEnded(0, 0, "peer a's Peer b does not say dialsIn: true")
    ]
    other, _ = pair()
    assert other.receive_data(frame(GOAWAY, 0, struct.pack("!I", 3))) == [ConnectionEnded(0, 3, "")]


def test_a_goaway_reason_is_cut_to_fit_a_control_frame() -> None:
    _, server = pair()
    server.close("x" * 100_000)
    (length,) = struct.unpack("!I", joined(server)[:4])
    assert (length >> 24, length & 0xFFFFFF) == (GOAWAY, 64 * 1024)


def test_the_health_body_round_trips_and_leaves_out_what_the_gateway_did_not_say() -> None:
    assert decode_health(encode_health(HEALTH)) == HEALTH
    older = Health("a", {}, "0.1.0")
    assert json.loads(encode_health(older)) == {"name": "a", "labels": {}, "version": "0.1.0"}
    assert decode_health(encode_health(older)) == older


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"name": "a", "labels": {}}', "lacks a string name, a labels object or a string"),
        (b'{"name": "a", "labels": {}, "version": "1", "dialsIn": "yes"}', "dialsIn field"),
        (b'{"name": "a", "labels": {}, "version": "1", "peered": 1}', "peered field"),
    ],
)
def test_a_bad_health_body_says_what_is_wrong(body: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        decode_health(body)
