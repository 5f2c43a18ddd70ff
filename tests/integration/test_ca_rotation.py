"""A fabric rotates its CA with an overlap, end to end, on running gateways.

The runbook of docs/certificates.md, step by step, with the product's own commands: a new CA
(``create fabric --rotate``), trusted by every peer besides the old one (``rotate ca-bundle
--add``), one peer re-issued from it (``rotate peer-cert``) while the other keeps its old-CA
certificate: the two talk over new connections while both CAs are trusted. Then one side takes
the old CA out of its bundle (``rotate ca-bundle --remove``): new connections from the old-CA
peer are refused, and the refusing gateway says why.

"New connections" are made on purpose: a test client presenting a peer's certificate, and the
real gateway after its Peer resource is re-applied (which drops its pooled connections and
restarts its heartbeats). The gateways check their files every 0.2 s; ``x`` beats every 0.2 s
and calls a peer unreachable after 2 misses, so its view changes within a second.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.clients import HTTPAnswer, http_over_tls, talk, tls_client_context
from tests.integration.conftest import Link, StartGateway, StartService
from tests.integration.credentials import ALPN, WATCHING, rotate, serial_in
from tests.integration.documents import peer
from tests.integration.gateways import Fabric, Gateway, cl
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

QUICK_HEARTBEATS = ("--heartbeat-interval", "0.2", "--unreachable-after", "2")


def health(gateway: Gateway, client: Path) -> HTTPAnswer:
    """``GET /healthz`` on a new connection to ``gateway``, with the certificate in ``client``."""
    context = tls_client_context(client / "cert.pem", client / "key.pem", alpn=ALPN)
    return http_over_tls(gateway.listen, context, method="GET", target="/healthz")


def bundle(fabric: Fabric, gateway: Gateway, *change: str) -> None:
    """``rotate ca-bundle`` of the gateway's peer, once the gateway has reloaded the result."""
    args = ("--name", gateway.name, "--fabric", fabric.name, "--path", str(fabric.root))
    result = cl("rotate", "ca-bundle", *args, *change).expect_ok()
    count = result.stdout.split(" trusts ")[1].split(" CA(s)")[0]
    gateway.wait_for_log(rf"reloaded the TLS credentials .* ca\.pem holds {count} CA\(s\)")


def redial(source: Gateway, target: Gateway) -> None:
    """Re-apply ``target`` as a Peer of ``source``: its pooled connections and heartbeat
    channel to the target are dropped, so what follows dials anew."""
    source.delete("peer", target.name)
    source.apply(peer(target.name, target.listen))


def count_lines(gateway: Gateway, pattern: str) -> int:
    return sum(1 for line in gateway.log().splitlines() if re.search(pattern, line))


def is_reachable(source: Gateway, name: str) -> bool | None:
    status = source.get("peer", name).get("status") or {}
    reachable: bool | None = status.get("reachable")
    return reachable


def test_peers_of_the_old_and_the_new_ca_talk_during_the_overlap_and_not_after_it(
    fabric: Fabric, start_gateway: StartGateway, start_service: StartService
) -> None:
    x = start_gateway("x", *WATCHING, *QUICK_HEARTBEATS)  # keeps its old-CA certificate
    y = start_gateway("y", *WATCHING)  # gets a certificate of the new CA
    x.apply(peer("y", y.listen))
    y.apply(peer("x", x.listen))
    link = Link(x, y, "ca-rotation")
    address = link.open("echo", start_service(echo).port, allow=True)
    assert talk(address, b"one CA").received == b"one CA"
    x_serial = serial_in(x.peer_dir / "cert.pem")

    # The overlap: a new CA, trusted by both beside the old one; y re-issued from it.
    cl("create", "fabric", "--name", fabric.name, "--path", str(fabric.root), "--rotate")
    for gateway in (x, y):
        bundle(fabric, gateway, "--add", str(fabric.path / "cert.pem"))
    rotate(fabric, y)

    assert health(y, x.peer_dir).status == 200  # an old-CA caller, a new-CA listener
    assert health(x, y.peer_dir).status == 200  # and the other way round
    accepted = rf"peer listener accepted the certificate of peer x \(serial {x_serial}\)"
    before = count_lines(y, accepted)
    redial(x, y)
    y.wait_for_log(accepted, count=before + 1)  # x's old-CA certificate, on a new connection
    wait_until(lambda: is_reachable(x, "y"), what="x reaches y again over new connections")
    assert talk(address, b"two CAs").received == b"two CAs"

    # The overlap ends at y: the old CA is no longer trusted there.
    bundle(fabric, y, "--remove", str(fabric.path / "previous_ca" / "cert.pem"))

    assert health(y, x.peer_dir).status is None
    y.wait_for_log(
        r"peer listener refused a TLS handshake: the caller's certificate does not verify "
        r"\(.*\): it was not issued by a CA in this gateway's ca\.pem"
    )
    # No redial this time: y retires the connections it accepted when its trust changes, so
    # x's kept-open connections (multiplexed, heartbeats) cannot go on being trusted.
    wait_until(
        lambda: is_reachable(x, "y") is False, what="x finds y unreachable over new connections"
    )
    refused = talk(address, b"revoked")
    assert (refused.received, refused.end) == (b"", "reset")
    assert health(x, y.peer_dir).status == 200  # y's new certificate is still good at x
