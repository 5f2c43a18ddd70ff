"""The dialing gateway's protocol: the bytes it sends and how it reads each answer."""

from __future__ import annotations

import pytest

from clusterlink.errors import LocalProtocolError, RemoteProtocolError
from clusterlink.protocol import (
    NEED_DATA,
    ExportRef,
    Health,
    PeerClientConnection,
    Verdict,
    encode_attributes,
)

DB = ExportRef("default", "db")
B_HEALTH = Health("b", {"zone": "eu"}, "1.0")


def _json_answer(status: int, body: bytes, *headers: bytes) -> bytes:
    length = b"content-length: %d\r\n" % len(body)
    return b"HTTP/1.1 %d X\r\n" % status + length + b"".join(headers) + b"\r\n" + body


HEALTH_ANSWER = _json_answer(
    200,
    b'{"name":"b","labels":{"zone":"eu"},"version":"1.0"}',
    b"content-type: application/json\r\n",
)


def _waiting_for_health() -> PeerClientConnection:
    conn = PeerClientConnection("b")
    conn.health_request()
    return conn


def _waiting_for_verdict() -> PeerClientConnection:
    conn = PeerClientConnection("b")
    conn.connect_request(DB, {})
    return conn


def test_health_request_bytes() -> None:
    assert PeerClientConnection("b").health_request() == (
        b"GET /healthz HTTP/1.1\r\nhost: b\r\n\r\n"
    )


def test_connect_request_bytes_carry_the_export_and_attributes() -> None:
    attributes = {"client.clusterlink.net/ip": "10.0.0.1"}

    assert PeerClientConnection("peer-b.example").connect_request(
        ExportRef("ns", "db"), attributes
    ) == (
        b"CONNECT ns/db HTTP/1.1\r\nhost: peer-b.example\r\n"
        b"clusterlink-client-attributes: " + encode_attributes(attributes).encode() + b"\r\n\r\n"
    )


def test_connect_without_attributes_sends_no_attribute_header() -> None:
    assert PeerClientConnection("b").connect_request(DB, {}) == (
        b"CONNECT default/db HTTP/1.1\r\nhost: b\r\n\r\n"
    )


def test_health_answer_is_read_even_byte_by_byte() -> None:
    conn = _waiting_for_health()
    for byte in HEALTH_ANSWER[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
    conn.receive_data(HEALTH_ANSWER[-1:])

    assert conn.next_event() == B_HEALTH
    assert conn.is_reusable


def test_a_chunked_health_answer_is_read() -> None:
    conn = _waiting_for_health()
    conn.receive_data(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b'20\r\n{"name":"b","labels":{},"version\r\n8\r\n":"1.0"}\r\n0\r\n\r\n'
    )

    assert conn.next_event() == Health("b", {}, "1.0")


def test_heartbeats_then_connect_on_one_connection() -> None:
    conn = PeerClientConnection("b")
    for _ in range(3):
        conn.health_request()
        conn.receive_data(HEALTH_ANSWER)
        assert conn.next_event() == B_HEALTH
    conn.connect_request(DB, {})
    conn.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")

    assert conn.next_event() == Verdict.allow()


def test_a_health_answer_that_closes_makes_the_connection_unusable() -> None:
    conn = _waiting_for_health()
    conn.receive_data(HEALTH_ANSWER.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1))

    assert conn.next_event() == B_HEALTH
    assert not conn.is_reusable
    with pytest.raises(LocalProtocolError):
        conn.health_request()


def test_allowed_connect_keeps_tunnel_bytes_sent_with_the_answer() -> None:
    conn = _waiting_for_verdict()
    conn.receive_data(b"HTTP/1.1 200 OK\r\n\r\nSSH-2.0-server\r\n")

    assert conn.next_event() == Verdict.allow()
    assert conn.trailing_data == b"SSH-2.0-server\r\n"
    assert not conn.is_reusable
    conn.receive_data(b"more")  # until the relay takes over, bytes keep collecting
    assert conn.trailing_data == b"SSH-2.0-server\r\nmore"


@pytest.mark.parametrize(
    "verdict",
    [
        Verdict.malformed("bad attributes"),
        Verdict.denied("no policy allows it"),
        Verdict.not_found("no export default/db"),
        Verdict.unreachable("db did not answer"),
        Verdict.overloaded("later"),
        Verdict(405, "unknown-method", "use CONNECT"),
    ],
)
def test_each_refusal_is_read_as_its_verdict(verdict: Verdict) -> None:
    conn = _waiting_for_verdict()
    body = b'{"reason":"%s","message":"%s"}' % (verdict.reason.encode(), verdict.message.encode())
    conn.receive_data(_json_answer(verdict.status, body, b"connection: close\r\n"))

    assert conn.next_event() == verdict
    assert not conn.is_reusable
    with pytest.raises(LocalProtocolError):
        conn.trailing_data  # noqa: B018 -- the property is what is under test


def test_a_refused_heartbeat_is_a_verdict() -> None:
    conn = _waiting_for_health()
    conn.receive_data(_json_answer(503, b'{"reason":"overloaded","message":"later"}'))

    assert conn.next_event() == Verdict.overloaded("later")


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed HTTP answer"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", "unexpected status 204"),
        (b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\n\r\n", "unexpected status 302"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "unexpected InformationalResponse"),
        (_json_answer(600, b'{"reason":"x","message":""}'), "unexpected status 600"),
        (_json_answer(403, b"<html>denied</html>"), "403 answer is not valid JSON"),
        (_json_answer(403, b'{"reason":"denied"}'), "lacks a string reason or message"),
        (_json_answer(403, b'{"reason":1,"message":""}'), "lacks a string reason or message"),
    ],
)
def test_answers_outside_the_protocol_fail_the_connect(answer: bytes, problem: str) -> None:
    conn = _waiting_for_verdict()
    conn.receive_data(answer)

    with pytest.raises(RemoteProtocolError, match=problem) as caught:
        conn.next_event()
    assert (caught.value.status, caught.value.reason) == (502, "malformed")
    assert not conn.is_reusable


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"[]", "health answer is not a JSON object"),
        (b'{"name":"b","version":"1"}', "lacks a string name, a labels object"),
        (b'{"name":"b","labels":[],"version":"1"}', "lacks a string name, a labels object"),
        (b'{"name":"b","labels":{},"version":1}', "lacks a string name, a labels object"),
        (b'{"name":"b","labels":{"a":1},"version":"1"}', "non-string value for 'a'"),
        (b'{"name":"b","labels":{"a":"\\udc00"},"version":"1"}', "not valid Unicode"),
        (b'{"name":"b","labels":{},"version":"1","peered":"yes"}', "peered field that is not"),
    ],
)
def test_malformed_health_answers_are_protocol_errors(body: bytes, problem: str) -> None:
    conn = _waiting_for_health()
    conn.receive_data(_json_answer(200, body))

    with pytest.raises(RemoteProtocolError, match=problem):
        conn.next_event()


def test_answer_bodies_are_bounded() -> None:
    conn = PeerClientConnection("b", max_body_bytes=10)
    conn.health_request()
    conn.receive_data(HEALTH_ANSWER)

    with pytest.raises(RemoteProtocolError, match="over the limit of 10 bytes"):
        conn.next_event()


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{"])
def test_a_peer_closing_before_answering_is_a_protocol_error(partial: bytes) -> None:
    conn = _waiting_for_health()
    conn.receive_data(partial)
    conn.receive_data(b"")

    with pytest.raises(RemoteProtocolError, match="closed the connection before answering"):
        conn.next_event()


def test_requests_out_of_turn_are_a_local_bug() -> None:
    conn = PeerClientConnection("b")
    with pytest.raises(LocalProtocolError, match="no request pending"):
        conn.next_event()

    conn.health_request()
    with pytest.raises(LocalProtocolError):
        conn.connect_request(DB, {})
