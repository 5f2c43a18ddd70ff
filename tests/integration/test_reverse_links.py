"""A site that accepts no connections (``spec.dialsIn``) still exports: it keeps a link to its
peer, and the peer's tunnels to it travel over that link, on real gateways.

Here on loopback the dialling-in site *could* be dialled; what shows that it never is: its
Peer at the other site has no gateway address at all. (``tests/multisite/test_reverse_links``
drops every inbound connection to it in a network namespace.)
"""

from __future__ import annotations

import contextlib
import ssl

import pytest

from tests.integration.clients import talk
from tests.integration.conftest import StartGateway, StartService
from tests.integration.documents import access_policy, export, import_, peer
from tests.integration.gateways import Gateway
from tests.integration.hostile import GOAWAY, read_frames, settings, tls
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

NS = "reverse"
MAX_LINKS = 8  # links one peer may hold to a gateway; the oldest beyond go
REVERSE_ALPN = "clusterlink-mux-reverse/1"
REACH_S = 30.0  # a heartbeat a second, three answers to be reachable, five misses not to be


def _reachable(gateway: Gateway, peer_name: str) -> object:
    return gateway.get("peer", peer_name).get("status", {}).get("reachable")


def _peer_row(gateway: Gateway, peer_name: str) -> dict[str, object]:
    peers = gateway.cl("status", "-o", "json").expect_ok().json()["peers"]
    return next(row for row in peers if row["name"] == peer_name)


@pytest.fixture(scope="module")
def sites(start_gateway: StartGateway) -> tuple[Gateway, Gateway]:
    """``hub`` (dialled) and ``nat`` (dials in): the hub knows nat only by name."""
    hub = start_gateway("hub", "--label", "site=hub")
    nat = start_gateway("nat", "--label", "site=nat")
    hub.cl("create", "peer", "--name", "nat", "--dials-in").expect_ok()
    nat.apply(peer("hub", hub.listen))
    allow = access_policy("allow-all", NS, "allow")
    hub.apply(allow)
    nat.apply(allow)
    return hub, nat


def test_a_peer_that_dials_in_is_reachable_and_serves_its_exports_over_its_link(
    sites: tuple[Gateway, Gateway], start_service: StartService
) -> None:
    hub, nat = sites
    service = start_service(echo)
    nat.apply(export("echo", NS, service.port))
    hub.apply(import_("echo", NS, peer="nat"))

    nat.wait_for_log(r"reverse link to peer hub is up")
    wait_until(lambda: _reachable(hub, "nat") is True, what="hub: nat reachable", timeout_s=REACH_S)
    listen = wait_until(
        lambda: hub.get("import", "echo", NS).get("status", {}).get("listen"),
        what="the import listens",
    )
    host, _, port = str(listen).rpartition(":")

    exchange = talk((host, int(port)), b"over the link nat keeps")

    assert (exchange.received, exchange.end) == (b"over the link nat keeps", "eof"), exchange
    assert hub.get("peer", "nat")["spec"] == {"gateways": [], "dialsIn": True}
    row = _peer_row(hub, "nat")
    assert (row["gateways"], row["dialsIn"]) == ([], True)
    shown = hub.cl("status").expect_ok().stdout
    assert "(dials in)" in shown
    # the exporting side decided the tunnel, as for any caller
    nat.wait_for_log(rf"ingress allowed peer=hub export={NS}/echo ")


def test_the_link_comes_back_after_the_dialling_gateway_restarts(
    sites: tuple[Gateway, Gateway], start_gateway: StartGateway, start_service: StartService
) -> None:
    hub, nat = sites
    service = start_service(echo)
    nat.apply(export("again", NS, service.port))
    hub.apply(import_("again", NS, peer="nat"))
    listen = wait_until(
        lambda: hub.get("import", "again", NS).get("status", {}).get("listen"),
        what="the import listens",
    )
    host, _, port = str(listen).rpartition(":")
    address = (host, int(port))
    wait_until(lambda: _reachable(hub, "nat") is True, what="hub: nat reachable", timeout_s=REACH_S)

    nat.stop()
    wait_until(
        lambda: _reachable(hub, "nat") is False, what="hub: nat unreachable", timeout_s=REACH_S
    )
    refused = talk(address, b"nobody there")
    assert refused.received == b"" and refused.end in {"reset", "eof"}, refused

    restarted = start_gateway("nat", "--label", "site=nat")  # same peer dir, same resources
    restarted.wait_for_log(r"reverse link to peer hub is up")
    wait_until(lambda: _reachable(hub, "nat") is True, what="hub: nat back", timeout_s=REACH_S)

    def echoed() -> bool:
        return talk(address, b"back again").received == b"back again"

    wait_until(echoed, what="a tunnel over the new link", timeout_s=REACH_S)


def test_a_link_the_dialled_side_no_longer_wants_is_let_go_and_the_dialler_hears_why(
    start_gateway: StartGateway,
) -> None:
    hub = start_gateway("hub2")
    nat = start_gateway("nat2")
    hub.cl("create", "peer", "--name", "nat2", "--dials-in").expect_ok()
    nat.apply(peer("hub2", hub.listen))
    nat.wait_for_log(r"reverse link to peer hub2 is up")

    hub.apply(peer("nat2", nat.listen))  # now the hub dials nat2 itself

    line = nat.wait_for_log(r"reverse link to peer hub2 .*ended after")
    assert "does not say dialsIn: true" in line, line
    nat.wait_for_log(r"reverse link to peer hub2 let go: peer hub2 no longer asks")


def _goaway_reason(sock: ssl.SSLSocket) -> str | None:
    """The reason of the GOAWAY the gateway sends on this link, or None if the link ends
    without one."""
    sock.sendall(settings(window=256 * 1024))
    buffer = bytearray()
    with contextlib.suppress(OSError):
        for kind, _, payload in read_frames(sock, buffer):
            if kind == GOAWAY:
                return payload[4:].decode()
    return None


def test_links_from_a_peer_that_does_not_dial_in_or_past_the_limit_are_closed_with_why(
    sites: tuple[Gateway, Gateway], start_gateway: StartGateway
) -> None:
    hub, nat = sites
    other = start_gateway("other")  # a Peer of nobody
    with tls(hub.listen, other.peer_dir, REVERSE_ALPN) as sock:
        assert _goaway_reason(sock) == "peer hub has no Peer named other"

    links = [tls(hub.listen, nat.peer_dir, REVERSE_ALPN) for _ in range(MAX_LINKS + 1)]
    with contextlib.ExitStack() as stack:
        opened = [stack.enter_context(link) for link in links]
        # the oldest links (nat's own, kept by its gateway, then our first) are let go
        assert _goaway_reason(opened[0]) == f"more than {MAX_LINKS} links from peer nat"
    assert hub.process.poll() is None
