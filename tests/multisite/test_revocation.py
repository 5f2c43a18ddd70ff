"""Revocation at the target (DESIGN §5, README): deleting the source's Peer, or a deny policy
against it, refuses its next connection at once; tunnels already open keep running unless
the change is made with ``--close-tunnels``, which resets them too."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from tests.integration.clients import Exchange
from tests.integration.documents import (
    PEER_NAME,
    access_policy,
    export,
    import_,
    selector,
    yaml_stream,
)
from tests.integration.services import echo
from tests.multisite.sites import ALLOW_ALL, FAST_HEALTH, Launcher, SiteGateway, apply_all
from tests.multisite.traffic import ServeIn, connect_in, talk_in

pytestmark = pytest.mark.multisite

DENY_A = access_policy("deny-a", "default", "deny", from_=[selector({PEER_NAME: "a"})])


class Tunnel:
    """A client's open connection through the import, to the echo service at b."""

    def __init__(self, gateway: SiteGateway, address: tuple[str, int]) -> None:
        self.sock = connect_in(gateway.site, address, timeout_s=5)
        self.n = 0
        assert self.is_alive(), "the new tunnel does not echo"

    def is_alive(self) -> bool:
        """One round trip: what the client sent comes back."""
        self.n += 1
        line = f"ping {self.n}\n".encode()
        self.sock.sendall(line)
        return _recv_exactly(self.sock, len(line)) == line

    def is_reset(self) -> bool:
        """Whether the tunnel ends with a reset (rather than data, a clean EOF, or nothing
        within the socket's timeout)."""
        try:
            self.sock.recv(64)
        except ConnectionResetError:
            return True
        except TimeoutError:
            pass
        return False

    def close(self) -> None:
        self.sock.close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n and (chunk := sock.recv(n - len(data))):
        data += chunk
    return data


@pytest.fixture
def pair(launcher: Launcher, serve: ServeIn) -> tuple[SiteGateway, SiteGateway, tuple[str, int]]:
    """a imports b's echo service; both allow everything in ``default``."""
    a, b = launcher.start_all("a", "b", args=FAST_HEALTH)
    apply_all(
        {
            a: [b.as_peer(), import_("echo", "default", peer="b"), ALLOW_ALL],
            b: [a.as_peer(), export("echo", "default", serve("b", echo).port), ALLOW_ALL],
        }
    )
    return a, b, a.import_address("echo")


OpenTunnel = Callable[[SiteGateway, tuple[str, int]], Tunnel]


@pytest.fixture
def tunnels() -> Iterator[OpenTunnel]:
    """``tunnels(gateway, address)``: an open Tunnel, closed when the test ends."""
    opened: list[Tunnel] = []

    def open_(gateway: SiteGateway, address: tuple[str, int]) -> Tunnel:
        tunnel = Tunnel(gateway, address)
        opened.append(tunnel)
        return tunnel

    yield open_
    for tunnel in opened:
        tunnel.close()


def _refused(exchange: Exchange) -> bool:
    return exchange.received == b"" and exchange.end == "reset"


def test_deleting_the_peer_refuses_new_connections_and_close_tunnels_resets_open_ones(
    pair: tuple[SiteGateway, SiteGateway, tuple[str, int]],
    tunnels: OpenTunnel,
) -> None:
    a, b, address = pair
    kept = tunnels(a, address)

    b.delete("peer", "a")

    assert _refused(talk_in(a.site, address, b"hello"))
    assert b.wait_for_log(r"ingress denied peer=a export=default/echo .*a is not a Peer of this")
    assert a.wait_for_log(r"egress refused import=default/echo .*403")
    assert kept.is_alive(), "an open tunnel was cut without --close-tunnels"

    b.apply(a.as_peer())  # a is a Peer again: new tunnels work
    second = tunnels(a, address)
    b.cl("delete", "peer", "a", "--close-tunnels").expect_ok()

    assert kept.is_reset() and second.is_reset()
    assert _refused(talk_in(a.site, address, b"hello"))


def test_a_deny_policy_refuses_new_connections_and_close_tunnels_resets_open_ones(
    pair: tuple[SiteGateway, SiteGateway, tuple[str, int]],
    tunnels: OpenTunnel,
) -> None:
    a, b, address = pair
    kept = tunnels(a, address)

    b.apply(DENY_A)

    assert _refused(talk_in(a.site, address, b"hello"))
    assert b.wait_for_log(
        r"ingress denied peer=a export=default/echo .*deny by policy default/deny-a"
    )
    assert kept.is_alive(), "an open tunnel was cut without --close-tunnels"

    b.cl("apply", "--close-tunnels", "-f", "-", stdin=yaml_stream(DENY_A)).expect_ok()

    assert kept.is_reset()
    assert _refused(talk_in(a.site, address, b"hello"))
