"""``POST /link`` byte by byte: a peer presenting an invitation, and the answer it gets."""

from __future__ import annotations

import json

import pytest

from clusterlink.errors import LocalProtocolError, RemoteProtocolError
from clusterlink.protocol import (
    CLOSED,
    NEED_DATA,
    HealthRequest,
    LinkAnswer,
    LinkRequest,
    PeerClientConnection,
    PeerServerConnection,
    Verdict,
)

BODY = (
    b'{"token":"cl-invite-v1.e30","name":"b","labels":{"site":"b"},'
    b'"gateways":[{"host":"127.0.0.1","port":9543}]}'
)
REQUEST = LinkRequest(
    token="cl-invite-v1.e30", name="b", labels={"site": "b"}, gateways=(("127.0.0.1", 9543),)
)
ANSWER = LinkAnswer(name="a", labels={"region": "eu"}, outcome="created")


def post(body: bytes, *headers: bytes, target: bytes = b"/link") -> bytes:
    return (
        b"POST " + target + b" HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n" % len(body) + b"".join(headers) + b"\r\n" + body
    )


def refused(data: bytes, **limits: int) -> RemoteProtocolError:
    conn = PeerServerConnection(**limits)
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    answer = conn.send_error(caught.value)
    assert answer.startswith(b"HTTP/1.1 %d " % caught.value.status)
    assert b"connection: close" in answer
    assert conn.next_event() is CLOSED
    return caught.value


def test_the_client_sends_exactly_these_bytes() -> None:
    assert PeerClientConnection("a").link_request(REQUEST) == post(BODY)


def test_a_link_request_is_read_whole_before_it_is_an_event() -> None:
    conn = PeerServerConnection()
    data = post(BODY)
    head_end = data.index(b"\r\n\r\n") + 4

    conn.receive_data(data[: head_end + 10])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(data[head_end + 10 :])
    assert conn.next_event() == REQUEST
    assert conn.next_event() is NEED_DATA  # until it is answered


def test_a_chunked_body_is_read_too() -> None:
    conn = PeerServerConnection()
    chunked = b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"
    conn.receive_data(
        b"POST /link HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n" + chunked
    )

    assert conn.next_event() == REQUEST


def test_the_answer_is_json_and_ends_the_connection() -> None:
    conn = PeerServerConnection()
    conn.receive_data(post(BODY))
    assert conn.next_event() == REQUEST

    data = conn.send_link_answer(ANSWER)

    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 200 OK",
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    assert json.loads(body) == {"name": "a", "labels": {"region": "eu"}, "outcome": "created"}
    assert conn.next_event() is CLOSED


def test_a_refusal_of_a_link_carries_its_reason_and_ends_the_connection() -> None:
    conn = PeerServerConnection()
    conn.receive_data(post(BODY))
    conn.next_event()

    data = conn.send_verdict(Verdict(410, "expired", "invitation 1 expired"))

    assert data.startswith(b"HTTP/1.1 410 Gone\r\n")
    assert data.endswith(b'{"reason":"expired","message":"invitation 1 expired"}')
    assert conn.next_event() is CLOSED


def test_heartbeats_may_come_before_a_link_on_the_same_connection() -> None:
    conn = PeerServerConnection()
    conn.receive_data(b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n" + post(BODY))

    assert conn.next_event() == HealthRequest()


def test_answering_a_link_out_of_turn_is_our_bug() -> None:
    conn = PeerServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.send_link_answer(ANSWER)
    conn.receive_data(post(BODY))
    conn.next_event()
    with pytest.raises(LocalProtocolError, match="no CONNECT pending"):
        conn.send_verdict(Verdict.allow())


@pytest.mark.parametrize(
    ("data", "status", "reason", "problem"),
    [
        (post(b"", target=b"/healthz"), 405, "unknown-method", "'POST' is not served for"),
        (post(BODY, target=b"/link2"), 405, "unknown-method", "use GET /healthz, CONNECT"),
        (b"POST /link HTTP/1.1\r\nhost: a\r\n\r\n", 400, "malformed", "without a body"),
        (post(b"[1]"), 400, "malformed", "POST /link body is not a JSON object"),
        (post(b"{"), 400, "malformed", "is not valid JSON"),
        (post(b'{"token":"t"}'), 400, "malformed", "must have exactly the fields"),
        (
            post(BODY.replace(b'"port":9543', b'"port":0')),
            400,
            "malformed",
            "gateway port 0 that is not 1..65535",
        ),
        (
            post(BODY.replace(b'"gateways":[{"host":"127.0.0.1","port":9543}]', b'"gateways":[]')),
            400,
            "malformed",
            "must list 1 to 16 gateways",
        ),
        (
            post(BODY.replace(b'{"site":"b"}', b'{"site":1}')),
            400,
            "malformed",
            "labels that are not text to text",
        ),
        (
            post(BODY.replace(b'"name":"b"', b'"name":"\\udfff"')),
            400,
            "malformed",
            "name that is not a non-empty string",
        ),
        (
            post(b"x" * 20000),
            413,
            "too-large",
            "over the limit of 16384 bytes",
        ),
    ],
    ids=[
        "POST elsewhere",
        "another path",
        "no body",
        "not an object",
        "not JSON",
        "missing fields",
        "port 0",
        "no gateways",
        "non-text label",
        "lone surrogate",
        "too large by its length",
    ],
)
def test_link_requests_that_break_the_protocol_are_refused(
    data: bytes, status: int, reason: str, problem: str
) -> None:
    error = refused(data)

    assert (error.status, error.reason) == (status, reason)
    assert problem in str(error)


def test_a_chunked_body_over_the_limit_is_refused_as_it_grows() -> None:
    conn = PeerServerConnection(max_link_body_bytes=100)
    conn.receive_data(b"POST /link HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"40\r\n" + b"x" * 64 + b"\r\n")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"40\r\n" + b"x" * 64 + b"\r\n")

    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert (caught.value.status, caught.value.reason) == (413, "too-large")


def test_eof_inside_the_body_is_malformed() -> None:
    conn = PeerServerConnection()
    conn.receive_data(post(BODY)[:-5])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")

    with pytest.raises(RemoteProtocolError) as caught:
        conn.next_event()
    assert caught.value.status == 400


def test_the_client_reads_the_answer_and_refusals() -> None:
    client = PeerClientConnection("a")
    client.link_request(REQUEST)
    server = PeerServerConnection()
    server.receive_data(post(BODY))
    server.next_event()
    answer = server.send_link_answer(ANSWER)

    client.receive_data(answer[:20])
    assert client.next_event() is NEED_DATA
    client.receive_data(answer[20:])
    assert client.next_event() == ANSWER
    assert not client.is_reusable

    refusing = PeerClientConnection("a")
    refusing.link_request(REQUEST)
    server = PeerServerConnection()
    server.receive_data(post(BODY))
    server.next_event()
    refusing.receive_data(server.send_verdict(Verdict(403, "tampered", "altered")))
    assert refusing.next_event() == Verdict(403, "tampered", "altered")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"name":"a","labels":{},"outcome":"stolen"}', "outcome 'stolen' that is none of"),
        (b'{"name":"a","labels":{}}', "must have exactly the fields labels, name, outcome"),
        (b'{"name":"a","labels":[],"outcome":"created"}', "labels that are not text to text"),
    ],
)
def test_a_malformed_link_answer_is_the_peers_protocol_error(body: bytes, problem: str) -> None:
    client = PeerClientConnection("a")
    client.link_request(REQUEST)
    client.receive_data(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)

    with pytest.raises(RemoteProtocolError) as caught:
        client.next_event()
    assert (caught.value.status, caught.value.reason) == (502, "malformed")
    assert problem in str(caught.value)
