"""What a source gateway tells about the peers it tries, against real gateways on loopback.

A failover must leave a trace: every attempt at a source is logged at INFO with its outcome
and counted with its peer, whether it was denied by our egress policy, refused by the target
or missed; and a refused connection is counted with a peer, not an empty label. A peer that
answers heartbeats but refuses every tunnel (it has no Peer for us) shows as "reachable, but
not peered", not "heartbeat ok".
"""

from __future__ import annotations

import os
import socket

import pytest

from tests.integration.clients import Exchange, talk
from tests.integration.conftest import StartGateway, StartService
from tests.integration.documents import access_policy, export, import_from, peer
from tests.integration.gateways import Gateway, parse_address
from tests.integration.hostile import metric
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

NS = "default"


def _listen_address(gateway: Gateway, name: str) -> tuple[str, int]:
    def listen() -> str | None:
        status = gateway.get("import", name, NS).get("status") or {}
        return status.get("listen")

    return parse_address(wait_until(listen, what=f"import {NS}/{name} has status.listen"))


def _peer_reason(gateway_cl_status: dict[str, object], name: str) -> str:
    peers = gateway_cl_status["peers"]
    assert isinstance(peers, list)
    (entry,) = [p for p in peers if p["name"] == name]
    return str(entry.get("reason"))


def test_a_failover_logs_and_counts_every_attempt_with_its_peer(
    start_gateway: StartGateway, start_service: StartService
) -> None:
    """``web`` draws on ``deny`` (whose ingress policy refuses us), ``gone`` (no Peer of ours)
    and ``ok``, in that order: the client is served by ``ok``, and the two attempts before
    it each have a log line and a count under their own peer."""
    src = start_gateway("src", "--metrics-listen", "127.0.0.1:0")
    deny, ok = start_gateway("deny"), start_gateway("ok")
    service = start_service(echo)
    for target in (deny, ok):
        target.apply(peer("src", src.listen), export("web", NS, service.port))
    ok.apply(access_policy("allow-all", NS, "allow"))  # deny: no policy, so default deny
    src.apply(
        peer("deny", deny.listen),
        peer("ok", ok.listen),
        access_policy("allow-all", NS, "allow"),
        import_from("web", NS, peers=["deny", "gone", "ok"], lb_scheme="static"),
    )
    address = _listen_address(src, "web")
    payload = os.urandom(1000)

    assert talk(address, payload) == Exchange(payload, "eof")

    denied = src.wait_for_log(r"egress attempt import=default/web .* source=deny/default/web: ")
    assert "denied (peer deny answered 403 denied: denied by the ingress policy" in denied
    gone = src.wait_for_log(r"egress attempt import=default/web .* source=gone/default/web: ")
    assert "no peer (no Peer named 'gone' is defined)" in gone
    assert src.wait_for_log(r"egress allowed import=default/web .* source=ok/default/web ")

    def attempts(peer_name: str, outcome: str) -> float:
        labels = {"direction": "egress", "resource": "default/web", "peer": peer_name}
        return metric(src, "clusterlink_tunnel_attempts_total", **labels, outcome=outcome)

    assert attempts("deny", "denied") == 1
    assert attempts("gone", "no_peer") == 1
    assert attempts("ok", "allowed") == 1
    served = {"direction": "egress", "resource": "default/web", "peer": "ok"}
    assert metric(src, "clusterlink_connections_total", **served, outcome="allowed") == 1


def test_a_refused_connection_is_counted_with_the_peer_that_refused_it(
    start_gateway: StartGateway, start_service: StartService
) -> None:
    src = start_gateway("src2", "--metrics-listen", "127.0.0.1:0")
    target = start_gateway("closed")
    target.apply(peer("src2", src.listen), export("db", NS, start_service(echo).port))
    src.apply(
        peer("closed", target.listen),
        access_policy("allow-all", NS, "allow"),
        import_from("db", NS, peers=["closed"]),
    )

    assert talk(_listen_address(src, "db"), b"hello").end == "reset"

    src.wait_for_log(r"egress refused import=default/db ")
    counted = {"direction": "egress", "resource": "default/db"}
    assert (
        metric(src, "clusterlink_connections_total", **counted, peer="closed", outcome="denied")
        == 1
    )
    assert metric(src, "clusterlink_connections_total", **counted, peer="", outcome="denied") == 0


def test_a_peer_that_has_no_peer_for_us_is_reachable_but_not_peered(
    start_gateway: StartGateway,
) -> None:
    """``stranger`` answers our heartbeats but would refuse every tunnel, since it has no
    Peer named ``caller``: status says so, and says it no more once that Peer exists."""
    caller, stranger = start_gateway("caller"), start_gateway("stranger")
    caller.apply(peer("stranger", stranger.listen))

    def reason() -> str | None:
        said = _peer_reason(caller.cl("status", "-o", "json").json(), "stranger")
        return said if "not peered" in said else None

    said = wait_until(reason, what="caller's status says stranger is not peered")
    assert said == (
        "reachable, but not peered: peer stranger has no Peer named caller, "
        "so it refuses every tunnel from here"
    )
    table = caller.cl("status").expect_ok().stdout
    assert "reachable, but not peered" in table
    assert caller.get("peer", "stranger")["status"]["peered"] is False

    stranger.apply(peer("caller", caller.listen))
    wait_until(
        lambda: (
            _peer_reason(caller.cl("status", "-o", "json").json(), "stranger") == "heartbeat ok"
        ),
        what="caller's status says heartbeat ok once stranger has a Peer for it",
    )
    assert caller.get("peer", "stranger")["status"]["peered"] is True


def test_a_tunnel_to_a_peer_pointed_at_an_admin_port_says_which_port_to_use(
    start_gateway: StartGateway,
) -> None:
    here, there = start_gateway("here2"), start_gateway("there2")
    here.apply(
        peer("there2", there.admin),
        access_policy("allow-all", NS, "allow"),
        import_from("db", NS, peers=["there2"]),
    )

    assert talk(_listen_address(here, "db"), b"hello").end == "reset"

    refused = here.wait_for_log(r"egress refused import=default/db ")
    admin = "{}:{}".format(*there.admin)
    assert f"{admin} is an admin API port, not a peer listener" in refused
    assert "admin certificate" not in refused


def test_changing_a_peer_keeps_its_open_tunnels(
    start_gateway: StartGateway, start_service: StartService
) -> None:
    """A change of resources applies to new connections: a Peer given another gateway
    address must not cut the tunnels already open to it (multiplexed ones included)."""
    src, dst = start_gateway("keep-src"), start_gateway("keep-dst")
    dst.apply(peer("keep-src", src.listen), export("db", NS, start_service(echo).port))
    dst.apply(access_policy("allow-all", NS, "allow"))
    src.apply(
        peer("keep-dst", dst.listen),
        access_policy("allow-all", NS, "allow"),
        import_from("db", NS, peers=["keep-dst"]),
    )
    address = _listen_address(src, "db")
    with socket.create_connection(address, timeout=10) as open_tunnel:
        open_tunnel.sendall(b"before")
        assert open_tunnel.recv(6) == b"before"

        src.apply(peer("keep-dst", dst.listen, ("127.0.0.1", 9)))  # one more gateway
        src.wait_for_log(r"peer keep-dst configured")

        open_tunnel.sendall(b"after")
        assert open_tunnel.recv(5) == b"after"
    assert talk(address, b"new").end == "eof"  # and new tunnels go over new connections
