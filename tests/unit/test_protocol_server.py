"""The peer listener's protocol, byte by byte: requests in, events and answers out."""

from __future__ import annotations

import json

import pytest

from clusterlink.errors import LocalProtocolError, RemoteProtocolError
from clusterlink.protocol import (
    CLOSED,
    NEED_DATA,
    ConnectRequest,
    ExportRef,
    Health,
    HealthRequest,
    PeerServerConnection,
    Verdict,
    encode_attributes,
)

HEALTH = b"GET /healthz HTTP/1.1\r\nhost: b\r\n\r\n"
CONNECT = b"CONNECT default/db HTTP/1.1\r\nhost: b\r\n\r\n"
B_HEALTH = Health("b", {"zone": "eu"}, "0.1.0")


def _connect(target: bytes, *headers: bytes) -> bytes:
    return b"CONNECT " + target + b" HTTP/1.1\r\nhost: b\r\n" + b"".join(headers) + b"\r\n"


def _answer(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, headers and body of one whole HTTP answer."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {name.lower(): value for name, value in (line.split(b": ", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def _refusal(data: bytes) -> tuple[int, str, str]:
    status, headers, body = _answer(data)
    assert headers[b"connection"] == b"close"
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body)
    fields = json.loads(body)
    return status, fields["reason"], fields["message"]


def test_health_request_is_answered_with_json() -> None:
    conn = PeerServerConnection()
    conn.receive_data(HEALTH)

    assert conn.next_event() == HealthRequest()
    status, headers, body = _answer(conn.send_health(B_HEALTH))
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    assert b"connection" not in headers
    assert json.loads(body) == {"name": "b", "labels": {"zone": "eu"}, "version": "0.1.0"}
    assert conn.next_event() is NEED_DATA


def test_heartbeats_reuse_the_connection_and_a_connect_may_follow() -> None:
    conn = PeerServerConnection()
    for _ in range(3):
        conn.receive_data(HEALTH)
        assert conn.next_event() == HealthRequest()
        assert conn.send_health(B_HEALTH).startswith(b"HTTP/1.1 200 OK\r\n")
    conn.receive_data(CONNECT)

    assert conn.next_event() == ConnectRequest(ExportRef("default", "db"), {})
    assert conn.send_verdict(Verdict.allow()) == b"HTTP/1.1 200 OK\r\n\r\n"


def test_pipelined_heartbeats_are_read_one_answer_at_a_time() -> None:
    conn = PeerServerConnection()
    conn.receive_data(HEALTH * 2 + CONNECT + b"tunnel")

    assert conn.next_event() == HealthRequest()
    assert conn.next_event() is NEED_DATA  # nothing more is read until the answer
    conn.send_health(B_HEALTH)
    assert conn.next_event() == HealthRequest()
    conn.send_health(B_HEALTH)
    assert isinstance(conn.next_event(), ConnectRequest)
    conn.send_verdict(Verdict.allow())
    assert conn.trailing_data == b"tunnel"


@pytest.mark.parametrize("before", [b"", HEALTH])
def test_a_clean_close_between_requests_is_closed(before: bytes) -> None:
    conn = PeerServerConnection()
    conn.receive_data(before)
    if before:
        assert conn.next_event() == HealthRequest()
        conn.send_health(B_HEALTH)
    conn.receive_data(b"")

    assert conn.next_event() is CLOSED
    assert conn.next_event() is CLOSED


def test_a_heartbeat_asking_to_close_ends_the_connection() -> None:
    conn = PeerServerConnection()
    conn.receive_data(b"GET /healthz HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n")

    assert conn.next_event() == HealthRequest()
    assert _answer(conn.send_health(B_HEALTH))[1][b"connection"] == b"close"
    assert conn.next_event() is CLOSED


def test_connect_with_attributes_and_tunnel_bytes_in_one_packet() -> None:
    attributes = {"client.clusterlink.net/ip": "10.1.2.3", "peer.clusterlink.net/name": "a"}
    header = b"clusterlink-client-attributes: " + encode_attributes(attributes).encode() + b"\r\n"
    conn = PeerServerConnection()
    conn.receive_data(_connect(b"team-a/db.v2", header) + b"\x00first bytes\r\n\r\n")

    assert conn.next_event() == ConnectRequest(ExportRef("team-a", "db.v2"), attributes)
    assert conn.send_verdict(Verdict.allow()) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert conn.trailing_data == b"\x00first bytes\r\n\r\n"


def test_a_connect_asking_to_close_still_gets_the_plain_200() -> None:
    conn = PeerServerConnection()
    conn.receive_data(_connect(b"default/db", b"connection: close\r\n") + b"tunnel")

    assert conn.next_event() == ConnectRequest(ExportRef("default", "db"), {})
    assert conn.send_verdict(Verdict.allow()) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert conn.trailing_data == b"tunnel"


def test_connect_fed_byte_by_byte_keeps_every_tunnel_byte() -> None:
    conn = PeerServerConnection()
    for byte in CONNECT[:-1]:
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA
    conn.receive_data(CONNECT[-1:])
    assert conn.next_event() == ConnectRequest(ExportRef("default", "db"), {})
    for byte in b"early":  # the client may send before the verdict
        conn.receive_data(bytes([byte]))
        assert conn.next_event() is NEED_DATA

    conn.send_verdict(Verdict.allow())
    assert conn.trailing_data == b"early"


def test_connect_followed_by_eof_still_opens_the_tunnel() -> None:
    conn = PeerServerConnection()
    conn.receive_data(CONNECT + b"query")
    assert isinstance(conn.next_event(), ConnectRequest)
    conn.receive_data(b"")  # the client half-closed while we decide

    assert conn.next_event() is NEED_DATA
    conn.send_verdict(Verdict.allow())
    assert conn.trailing_data == b"query"


@pytest.mark.parametrize(
    "verdict",
    [
        Verdict.denied("no policy allows a -> default/db"),
        Verdict.not_found("no export default/db"),
        Verdict.unreachable("db.local:5432 refused the connection"),
        Verdict.overloaded("too many tunnels"),
        Verdict.malformed("bad"),
    ],
)
def test_refused_connect_answers_json_and_closes(verdict: Verdict) -> None:
    conn = PeerServerConnection()
    conn.receive_data(CONNECT + b"never relayed")
    assert isinstance(conn.next_event(), ConnectRequest)

    assert _refusal(conn.send_verdict(verdict)) == (verdict.status, verdict.reason, verdict.message)
    assert conn.next_event() is CLOSED
    with pytest.raises(LocalProtocolError):
        conn.trailing_data  # noqa: B018 -- the property is what is under test


def test_refusal_status_lines_carry_standard_phrases() -> None:
    conn = PeerServerConnection()
    conn.receive_data(CONNECT)
    conn.next_event()

    assert conn.send_verdict(Verdict.denied("no")).startswith(b"HTTP/1.1 403 Forbidden\r\n")


ATTRIBUTES = b"clusterlink-client-attributes: "


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason", "problem"),
    [
        (b"garbage\r\n\r\n", 400, "malformed", "malformed HTTP request"),
        (b"GET /healthz HTTP/1.1\r\n\r\n", 400, "malformed", "Host"),
        (b"GET /healthz HTTP/1.0\r\nhost: b\r\n\r\n", 400, "malformed", "use HTTP/1.1"),
        (b"POST /healthz HTTP/1.1\r\nhost: b\r\n\r\n", 405, "unknown-method", "'POST'"),
        (b"DELETE default/db HTTP/1.1\r\nhost: b\r\n\r\n", 405, "unknown-method", "'DELETE'"),
        (b"GET /metrics HTTP/1.1\r\nhost: b\r\n\r\n", 404, "unknown-path", "'/metrics'"),
        (b"GET /healthz?x HTTP/1.1\r\nhost: b\r\n\r\n", 404, "unknown-path", "/healthz?x"),
        (
            b"GET /healthz HTTP/1.1\r\nhost: b\r\ncontent-length: 2\r\n\r\n{}",
            400,
            "malformed",
            "with a body",
        ),
        (
            _connect(b"default/db", b"transfer-encoding: chunked\r\n"),
            400,
            "malformed",
            "with a body",
        ),
        (
            _connect(b"default/db", b"content-length: " + b"9" * 5000 + b"\r\n"),
            400,
            "malformed",
            "bad Content-Length",
        ),
        (_connect(b"db"), 400, "malformed", "not <namespace>/<name>"),
        (_connect(b"/default/db"), 400, "malformed", "DNS-1123 label"),
        (_connect(b"Default/db"), 400, "malformed", "DNS-1123 label"),
        (_connect(b"default/db_1"), 400, "malformed", "DNS-1123 subdomain"),
        (_connect(b"default/db", ATTRIBUTES + b"%%%\r\n"), 400, "malformed", "base64url"),
        (
            _connect(b"default/db", ATTRIBUTES + b"WzFd\r\n"),  # [1]
            400,
            "malformed",
            "not a JSON object",
        ),
        (
            _connect(b"default/db", ATTRIBUTES + b"e30\r\n", ATTRIBUTES + b"e30\r\n"),
            400,
            "malformed",
            "more than one",
        ),
        (
            _connect(b"default/db", ATTRIBUTES + b"A" * 9000 + b"\r\n"),
            400,
            "malformed",
            "over the limit of 8192",
        ),
        (b"GET /" + b"a" * 17000, 431, "too-large", "Receive buffer too long"),
        (
            _connect(b"default/db", *[b"x-pad: " + b"a" * 1000 + b"\r\n"] * 17),
            431,
            "too-large",
            "over the limit of 16384",
        ),
    ],
)
def test_requests_that_break_the_protocol_are_refused(
    request_bytes: bytes, status: int, reason: str, problem: str
) -> None:
    conn = PeerServerConnection()
    conn.receive_data(request_bytes)

    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert (caught.value.status, caught.value.reason) == (status, reason)
    assert problem in str(caught.value)
    assert _refusal(conn.send_error(caught.value)) == (status, reason, str(caught.value))
    assert conn.next_event() is CLOSED


def test_limits_are_configurable() -> None:
    conn = PeerServerConnection(max_head_bytes=30)
    conn.receive_data(CONNECT)
    with pytest.raises(RemoteProtocolError, match="over the limit of 30"):
        conn.next_event()

    conn = PeerServerConnection(max_attribute_entries=1)
    attributes = encode_attributes({"a": "1", "b": "2"}).encode()
    conn.receive_data(_connect(b"default/db", ATTRIBUTES + attributes + b"\r\n"))
    with pytest.raises(RemoteProtocolError, match="2 entries, over the limit of 1"):
        conn.next_event()


def test_eof_inside_a_request_head_is_malformed() -> None:
    conn = PeerServerConnection()
    conn.receive_data(CONNECT[:10])
    conn.receive_data(b"")

    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert caught.value.status == 400


def test_head_requests_are_refused_without_a_body() -> None:
    conn = PeerServerConnection()
    conn.receive_data(b"HEAD /healthz HTTP/1.1\r\nhost: b\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()

    data = conn.send_error(caught.value)
    assert data.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert data.endswith(b"\r\n\r\n")


def test_the_server_may_refuse_before_any_request() -> None:
    conn = PeerServerConnection()
    conn.receive_data(CONNECT[:5])

    assert _refusal(conn.send_verdict(Verdict.overloaded("shedding load")))[0] == 503
    assert conn.next_event() is CLOSED


def test_answering_out_of_turn_is_a_local_bug() -> None:
    conn = PeerServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_health(B_HEALTH)
    with pytest.raises(LocalProtocolError):
        conn.send_verdict(Verdict.allow())

    conn.receive_data(HEALTH)
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="no CONNECT pending"):
        conn.send_verdict(Verdict.allow())


def test_a_tunnel_is_not_read_as_http() -> None:
    conn = PeerServerConnection()
    conn.receive_data(CONNECT + HEALTH)
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="no heartbeat"):
        conn.send_health(B_HEALTH)
    conn.send_verdict(Verdict.allow())

    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_verdict(Verdict.denied("too late"))
    assert conn.trailing_data == HEALTH
