"""Limits, against real gateways started with small ones.

Each limit is filled for real -- stalled handshakes, idle TLS connections, held tunnels --
and the next comer must be refused the least surprising way (a TCP accept: reset at once; a
tunnel over the per-peer limit: skipped and the client reset, with the reason in the log),
the hit must show in ``clusterlink_limit_hits_total{limit}`` and the use in the gauges, and
what was admitted before keeps working. Once the load goes, the limit admits again.

Gateway ``b`` (the target) has ``--max-connections 8 --max-pending-handshakes 3`` and a
handshake timeout of 30 s, so a connection closed within seconds was refused, not timed out.
Gateway ``a`` (the source) has ``--max-connections 3 --max-connections-per-peer 5``. The idle
timeout gets a pair of its own, since 1 s of it would cut the held tunnels of the others.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.integration.clients import Exchange, http_over_tls, talk, tls_client_context
from tests.integration.conftest import Link, Pair, StartGateway, StartService
from tests.integration.documents import peer
from tests.integration.gateways import Fabric, Gateway
from tests.integration.hostile import BASIC_ALPN, connect_and_wait, ending, metric, raw, tls
from tests.integration.services import SendThenListen, echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

B_CONNECTIONS, B_HANDSHAKES = 8, 3
A_CONNECTIONS, A_PER_PEER = 3, 5
CLOSED = ("eof", "reset")
REFUSED_WITHIN_S = 10.0  # well below b's 30 s handshake timeout


@pytest.fixture(scope="module")
def pair(start_gateway: StartGateway) -> Pair:
    a = start_gateway(
        "a",
        "--label",
        "site=a",
        "--max-connections",
        str(A_CONNECTIONS),
        "--max-connections-per-peer",
        str(A_PER_PEER),
        "--metrics-listen",
        "127.0.0.1:0",
    )
    b = start_gateway(
        "b",
        "--label",
        "site=b",
        "--max-connections",
        str(B_CONNECTIONS),
        "--max-pending-handshakes",
        str(B_HANDSHAKES),
        "--handshake-timeout",
        "30",
        "--metrics-listen",
        "127.0.0.1:0",
    )
    a.apply(peer("b", b.listen))
    b.apply(peer("a", a.listen))
    return Pair(source=a, target=b)


def serves(address: tuple[str, int]) -> None:
    payload = os.urandom(1000)
    assert talk(address, payload) == Exchange(payload, "eof")


def hits(gateway: Gateway, limit: str) -> float:
    return metric(gateway, "clusterlink_limit_hits_total", limit=limit)


def gauge_is(gateway: Gateway, value: float, name: str, **labels: str) -> None:
    wait_until(
        lambda: metric(gateway, name, **labels) == value,
        what=f"{name}{labels} of {gateway.name} is {value:g}",
        describe=lambda _: str(metric(gateway, name, **labels)),
    )


@pytest.fixture
def echo_import(link: Link, start_service: StartService) -> tuple[str, int]:
    """A tunnel a -> b that works before the test fills a limit (so a's mux connection to b
    is up), and must keep working while it is full."""
    address = link.open("echo", start_service(echo).port, allow=True)
    serves(address)
    return address


# -- the peer listener ----------------------------------------------------------------------


def test_connections_beyond_the_pending_handshakes_limit_are_reset_at_once(
    pair: Pair, echo_import: tuple[str, int], fabric: Fabric
) -> None:
    b = pair.target
    before = hits(b, "max_pending_handshakes")
    with ExitStack() as stalled:
        for _ in range(B_HANDSHAKES):
            stalled.enter_context(raw(b.listen))  # connects, says nothing
        gauge_is(b, B_HANDSHAKES, "clusterlink_handshakes_pending")

        got = connect_and_wait(b.listen, wait_s=REFUSED_WITHIN_S)

        assert got.end in CLOSED and got.received == b"", got
        assert hits(b, "max_pending_handshakes") > before
        assert b.wait_for_log(
            r"reset 127\.0\.0\.1:\d+: 3 TLS handshakes are in progress, the limit "
            r"\(--max-pending-handshakes\)"
        )
        serves(echo_import)  # on the connection a had before

    gauge_is(b, 0, "clusterlink_handshakes_pending")
    assert health(b, fabric.path / "a") == 200  # a new connection is admitted again


def health(gateway: Gateway, cert_dir: Path) -> int | None:
    context = tls_client_context(cert_dir / "cert.pem", cert_dir / "key.pem", alpn=BASIC_ALPN)
    return http_over_tls(gateway.listen, context, method="GET", target="/healthz").status


def test_connections_beyond_the_peer_listeners_limit_are_reset_at_once(
    pair: Pair, echo_import: tuple[str, int], fabric: Fabric
) -> None:
    """Idle TLS connections (finished handshakes) fill b's listener next to a's own."""
    b = pair.target
    a_dir = fabric.path / "a"
    before = hits(b, "max_connections")
    with ExitStack() as held:
        admitted = 0
        with pytest.raises(OSError):  # the one too many: reset during its handshake
            while admitted <= B_CONNECTIONS:
                held.enter_context(tls(b.listen, a_dir, BASIC_ALPN))
                admitted += 1

        assert metric(b, "clusterlink_connections_open", listener="peers") == B_CONNECTIONS
        assert hits(b, "max_connections") > before
        assert b.wait_for_log(
            rf"reset 127\.0\.0\.1:\d+: {B_CONNECTIONS} connections are open, the limit "
            r"\(--max-connections\)"
        )
        serves(echo_import)

    wait_until(
        lambda: metric(b, "clusterlink_connections_open", listener="peers") < B_CONNECTIONS,
        what="b's connections go back down",
    )
    assert health(b, a_dir) == 200


# -- the import listeners and the per-peer limit -------------------------------------------


@pytest.fixture
def hold_imports(link: Link, start_service: StartService) -> Callable[[str], tuple[str, int]]:
    """``hold_imports(name)``: an Import of b's export ``hold``, whose service keeps every
    connection open until the client leaves."""
    link.expose("hold", start_service(SendThenListen(b"", shut_write=False)).port)
    link.allow_both()

    def add(name: str) -> tuple[str, int]:
        return link.import_(name, export_name="hold")

    return add


@pytest.fixture
def clients() -> Iterator[Callable[[tuple[str, int]], socket.socket]]:
    """``connect(address)``: a client whose tunnel is up (it got through: a byte went to the
    service and nothing came back within 0.3 s), closed when the test ends."""
    with ExitStack() as stack:

        def connect(address: tuple[str, int]) -> socket.socket:
            sock = stack.enter_context(socket.create_connection(address, timeout=10))
            sock.sendall(b"x")
            assert ending(sock, wait_s=0.3).end == "open"
            return sock

        yield connect


def test_an_import_listener_at_its_limit_resets_the_next_client_at_once(
    pair: Pair,
    link: Link,
    hold_imports: Callable[[str], tuple[str, int]],
    clients: Callable[[tuple[str, int]], socket.socket],
) -> None:
    a = pair.source
    address = hold_imports("hold")
    listener = f"import:{link.namespace}/hold"
    before = hits(a, "max_connections")
    held = [clients(address) for _ in range(A_CONNECTIONS)]
    assert metric(a, "clusterlink_connections_open", listener=listener) == A_CONNECTIONS

    got = connect_and_wait(address, wait_s=REFUSED_WITHIN_S)

    assert (got.received, got.end) == (b"", "reset"), got
    assert hits(a, "max_connections") > before
    assert a.wait_for_log(
        rf"import {link.namespace}/hold reset client 127\.0\.0\.1:\d+: {A_CONNECTIONS} "
        r"connections are open, the limit \(--max-connections\)"
    )
    for sock in held:  # the admitted ones still work
        sock.sendall(b"y")
        assert ending(sock, wait_s=0.2).end == "open"

    held.pop().close()
    gauge_is(a, A_CONNECTIONS - 1, "clusterlink_connections_open", listener=listener)
    clients(address)  # admitted again


def test_a_source_whose_peer_is_at_its_tunnel_limit_is_skipped_and_the_client_reset(
    pair: Pair,
    link: Link,
    hold_imports: Callable[[str], tuple[str, int]],
    clients: Callable[[tuple[str, int]], socket.socket],
) -> None:
    """Two imports of b (each under a's per-listener limit of 3): together they reach a's
    limit of 5 tunnels to and from b, and the sixth client is refused."""
    a = pair.source
    first, second = hold_imports("hold1"), hold_imports("hold2")
    before = hits(a, "max_connections_per_peer")
    held = [clients(first) for _ in range(3)] + [clients(second) for _ in range(2)]
    assert metric(a, "clusterlink_peer_tunnels", peer="b") == A_PER_PEER

    assert talk(second, b"z") == Exchange(b"", "reset")
    assert hits(a, "max_connections_per_peer") > before
    refused = a.wait_for_log(rf"egress refused import={link.namespace}/hold2 ")
    assert f"{A_PER_PEER} tunnels to and from peer b are open or opening" in refused
    assert "(--max-connections-per-peer)" in refused

    for sock in held:
        sock.close()
    gauge_is(a, 0, "clusterlink_peer_tunnels", peer="b")
    clients(second)  # a tunnel to b opens again


# -- idle tunnels -----------------------------------------------------------------------------


def test_an_idle_tunnel_is_reset_after_the_idle_timeout_and_a_busy_one_is_not(
    start_gateway: StartGateway, start_service: StartService
) -> None:
    """Gateway d resets tunnels idle for 1 s; c, the source, resets its client in turn."""
    c = start_gateway("c")
    d = start_gateway("d", "--idle-timeout", "1", "--metrics-listen", "127.0.0.1:0")
    c.apply(peer("d", d.listen))
    d.apply(peer("c", c.listen))
    address = Link(c, d, "idle").open("echo", start_service(echo).port, allow=True)

    with (
        socket.create_connection(address, timeout=10) as busy,
        socket.create_connection(address, timeout=10) as idle,
    ):
        idle.sendall(b"i")
        assert idle.recv(1) == b"i"
        started = time.monotonic()
        while time.monotonic() - started < 3.5:  # a byte each way every 0.25 s
            busy.sendall(b"b")
            assert busy.recv(1) == b"b"
            time.sleep(0.25)  # pacing the busy tunnel, not a wait for an event
        got = ending(idle, wait_s=10)

    assert (got.received, got.end) == (b"", "reset"), got
    assert d.wait_for_log(r"ingress closed peer=c export=idle/echo .* error='idle for 1s'")
    assert metric(d, "clusterlink_limit_hits_total", limit="idle_timeout") >= 1
