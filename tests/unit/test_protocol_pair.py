"""Both ends wired together in memory: what one writes, the other reads."""

from __future__ import annotations

import pytest

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol import (
    ConnectRequest,
    ExportRef,
    Health,
    HealthRequest,
    PeerClientConnection,
    PeerServerConnection,
    Verdict,
)

DB = ExportRef("default", "db")
ATTRIBUTES = {
    "peer.clusterlink.net/name": "a",
    "peer.clusterlink.net/labels.zone": "eu-west",
    "client.clusterlink.net/ip": "10.0.0.9",
}


def _pair() -> tuple[PeerClientConnection, PeerServerConnection]:
    return PeerClientConnection("b"), PeerServerConnection()


def _heartbeat(client: PeerClientConnection, server: PeerServerConnection, health: Health) -> None:
    server.receive_data(client.health_request())
    assert server.next_event() == HealthRequest()
    client.receive_data(server.send_health(health))
    assert client.next_event() == health


def test_heartbeats_carry_name_labels_and_version_every_time() -> None:
    client, server = _pair()
    for version in ("0.1.0", "0.1.1", "0.2.0"):
        _heartbeat(client, server, Health("b", {"zone": "eu", "tier": "gold"}, version))
    assert client.is_reusable


@pytest.mark.parametrize("peered", [True, False, None])
def test_a_heartbeat_answer_says_whether_the_caller_is_peered(peered: bool | None) -> None:
    """``None``: an answer without the field, as an older gateway sends it."""
    client, server = _pair()
    _heartbeat(client, server, Health("b", {}, "0.1.0", peered))
    assert client.is_reusable


def test_allowed_connect_after_heartbeats_becomes_a_two_way_tunnel() -> None:
    client, server = _pair()
    _heartbeat(client, server, Health("b", {}, "0.1.0"))

    server.receive_data(client.connect_request(DB, ATTRIBUTES) + b"client hello")
    assert server.next_event() == ConnectRequest(DB, ATTRIBUTES)
    client.receive_data(server.send_verdict(Verdict.allow()) + b"server hello")

    assert client.next_event() == Verdict.allow()
    assert server.trailing_data == b"client hello"
    assert client.trailing_data == b"server hello"


@pytest.mark.parametrize(
    "verdict",
    [
        Verdict.malformed("attributes are invalid"),
        Verdict.denied("no policy allows a -> default/db (default deny)"),
        Verdict.not_found("no export default/db"),
        Verdict.unreachable("db.svc:5432: connection refused"),
        Verdict.overloaded("too many tunnels; retry later"),
    ],
)
def test_each_refusal_reaches_the_client_unchanged(verdict: Verdict) -> None:
    client, server = _pair()
    server.receive_data(client.connect_request(DB, ATTRIBUTES))
    assert isinstance(server.next_event(), ConnectRequest)

    client.receive_data(server.send_verdict(verdict))
    assert client.next_event() == verdict
    assert not client.is_reusable


def test_a_request_the_server_rejects_reaches_the_client_as_its_refusal() -> None:
    client, server = _pair()
    server.receive_data(client.connect_request(DB, {str(i): "x" for i in range(65)}))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()

    client.receive_data(server.send_error(caught.value))
    verdict = client.next_event()
    assert isinstance(verdict, Verdict)
    assert (verdict.status, verdict.reason) == (400, "malformed")
    assert "65 entries" in verdict.message


def test_a_refused_heartbeat_reaches_the_client_as_a_verdict() -> None:
    client, server = _pair()
    server.receive_data(client.health_request())
    assert server.next_event() == HealthRequest()

    client.receive_data(server.send_verdict(Verdict.overloaded("shedding load")))
    assert client.next_event() == Verdict.overloaded("shedding load")


def test_bytes_fed_one_at_a_time_both_ways_give_the_same_outcome() -> None:
    client, server = _pair()
    request = client.connect_request(DB, ATTRIBUTES) + b"x"
    for byte in request:
        server.receive_data(bytes([byte]))
    assert server.next_event() == ConnectRequest(DB, ATTRIBUTES)

    for byte in server.send_verdict(Verdict.allow()) + b"y":
        client.receive_data(bytes([byte]))
    assert client.next_event() == Verdict.allow()
    assert (server.trailing_data, client.trailing_data) == (b"x", b"y")
