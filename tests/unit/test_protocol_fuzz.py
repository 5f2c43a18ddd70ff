"""Whatever bytes a peer sends, we get events or a ``RemoteProtocolError``, never a crash.

The peer listener faces any fabric member, buggy or hostile. A traceback there would be a
bug and could cost the other tunnels of the process, so these tests feed the server arbitrary
bytes and mutated valid requests and drive it the way a gateway would, and check that every
refusal is a 4xx. The dialing side gets the same treatment for answers.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol import (
    CLOSED,
    NEED_DATA,
    ConnectRequest,
    ExportRef,
    Health,
    HealthRequest,
    LinkAnswer,
    LinkRequest,
    PeerClientConnection,
    PeerServerConnection,
    Verdict,
    encode_attributes,
)

HEALTH = b"GET /healthz HTTP/1.1\r\nhost: b\r\n\r\n"
CONNECT = (
    b"CONNECT default/db HTTP/1.1\r\nhost: b\r\nclusterlink-client-attributes: "
    + encode_attributes(
        {"peer.clusterlink.net/name": "a", "client.clusterlink.net/ip": "::1"}
    ).encode()
    + b"\r\n\r\n"
)
LINK = PeerClientConnection("b").link_request(
    LinkRequest("cl-invite-v1.e30", "a", {"site": "a"}, (("127.0.0.1", 9443),))
)
VALID = [HEALTH, CONNECT, HEALTH + HEALTH + CONNECT + b"tunnel bytes", HEALTH + LINK]
FRAGMENTS = [
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b": ",
    b" ",
    b"/",
    b"\x00",
    b"\xff",
    b"=",
    b"e30",
    b"WzFd",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"content-length: 3\r\n",
    b"transfer-encoding: chunked\r\n",
    b"connection: close\r\n",
    b"upgrade: h2c\r\n",
    b"expect: 100-continue\r\n",
    b"clusterlink-client-attributes: e30\r\n",
    HEALTH,
    CONNECT,
    LINK,
    b"POST /link HTTP/1.1\r\n",
    b'{"token":',
]
B_HEALTH = Health("b", {"zone": "eu"}, "0.1.0")


def _drive(chunks: list[bytes], *, eof: bool) -> None:
    """Feed ``chunks`` as a gateway would: answer each request, stop at tunnel or close."""
    conn = PeerServerConnection()
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not NEED_DATA:
                if event is CLOSED:
                    return
                if isinstance(event, HealthRequest):
                    assert conn.send_health(B_HEALTH).startswith(b"HTTP/1.1 200 ")
                    continue
                if isinstance(event, LinkRequest):
                    assert all(isinstance(v, str) for v in event.labels.values())
                    answer = LinkAnswer("b", {}, "created")
                    assert conn.send_link_answer(answer).startswith(b"HTTP/1.1 200 ")
                    assert conn.next_event() is CLOSED
                    return
                assert isinstance(event, ConnectRequest)
                assert all(isinstance(v, str) for v in event.attributes.values())
                assert conn.send_verdict(Verdict.allow()) == b"HTTP/1.1 200 OK\r\n\r\n"
                assert isinstance(conn.trailing_data, bytes)
                return
    except RemoteProtocolError as exc:
        assert 400 <= exc.status < 500
        assert conn.send_error(exc).startswith(b"HTTP/1.1 4")
        assert conn.next_event() is CLOSED


@st.composite
def _split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if a < b]


@st.composite
def _mutated_requests(draw: st.DrawFn) -> list[bytes]:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        fragment = draw(st.sampled_from(FRAGMENTS) | st.binary(min_size=1, max_size=4))
        action = draw(st.sampled_from(["insert", "replace", "delete"]))
        if action == "insert":
            data[at:at] = fragment
        elif action == "replace":
            data[at : at + len(fragment)] = fragment
        else:
            del data[at : at + len(fragment)]
    return draw(_split(bytes(data)))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8), st.booleans())
def test_arbitrary_bytes_give_events_or_a_4xx(chunks: list[bytes], eof: bool) -> None:
    _drive(chunks, eof=eof)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_requests(), st.booleans())
def test_mutated_requests_give_events_or_a_4xx(chunks: list[bytes], eof: bool) -> None:
    _drive(chunks, eof=eof)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=64), max_size=8),
    st.sampled_from(["health", "connect", "link"]),
    st.booleans(),
)
def test_arbitrary_answers_give_events_or_a_protocol_error(
    chunks: list[bytes], request: str, eof: bool
) -> None:
    conn = PeerClientConnection("b")
    if request == "connect":
        conn.connect_request(ExportRef("default", "db"), {"a": "b"})
    elif request == "link":
        conn.link_request(LinkRequest("cl-invite-v1.e30", "a", {}, (("h", 1),)))
    else:
        conn.health_request()
    try:
        for chunk in [*chunks, b""] if eof else chunks:
            conn.receive_data(chunk)
            if (event := conn.next_event()) is not NEED_DATA:
                assert isinstance(event, Health | LinkAnswer | Verdict)
                return
    except RemoteProtocolError as exc:
        assert (exc.status, exc.reason) == (502, "malformed")


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated_requests() | st.lists(st.binary(min_size=1, max_size=64), max_size=8))
def test_a_timeout_refusal_can_be_sent_whatever_part_of_a_head_has_arrived(
    chunks: list[bytes],
) -> None:
    """The peer listener answers ``408`` when a head is not complete in time: that answer
    must be sendable at any point where the connection still waits for a head."""
    conn = PeerServerConnection()
    for chunk in chunks:
        conn.receive_data(chunk)
        try:
            while isinstance(event := conn.next_event(), HealthRequest):
                conn.send_health(B_HEALTH)
        except RemoteProtocolError:
            return  # refused at once: no deadline left to miss
        if event is not NEED_DATA:
            return  # a CONNECT or a link (decided elsewhere), or the end of the connection
    answer = conn.send_verdict(Verdict(408, "timeout", "the request head was not complete"))
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert conn.next_event() is CLOSED
