"""Certificate rotation on running gateways, in both tunnel modes.

What a user sees: replacing a gateway's certificate and key (``clusterlink rotate peer-cert``)
needs no restart; open tunnels keep flowing, new connections get the new certificate (its
serial is read off the handshake, as the peer sees it); a replacement that does not hold
together is refused in the log while the gateway keeps serving with the old one; SIGHUP
reloads at once; a certificate outside its validity period is refused, on either side, with
a log line or status that says whose certificate, when it expired and the time now.

The gateways here check their files every 0.2 s and log at debug level, where the peer
listener names each certificate it accepts.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clients import http_over_tls, talk, tls_client_context
from tests.integration.conftest import Link, Pair, StartGateway, StartService, every_tunnel_mode
from tests.integration.credentials import (
    ALPN,
    WATCHING,
    expired_credentials,
    presented_serial,
    rotate,
    serial_in,
)
from tests.integration.documents import peer
from tests.integration.gateways import Fabric, cl
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

PERIOD = r"\(valid from \S+ \S+ UTC; now \S+ \S+ UTC\)"


tunnel_mode = every_tunnel_mode()


@pytest.fixture(scope="module")
def pair(start_gateway: StartGateway, tunnel_mode: str) -> Pair:
    """The usual pair, watching its certificate files closely."""
    a = start_gateway("a", "--tunnel-mode", tunnel_mode, *WATCHING)
    b = start_gateway("b", *WATCHING)
    a.apply(peer("b", b.listen))
    b.apply(peer("a", a.listen))
    return Pair(source=a, target=b)


class Echoing:
    """A connection through an import, kept open across whatever the test does meanwhile."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)

    def round_trip(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        received = b""
        while len(received) < len(data):
            chunk = self.sock.recv(len(data) - len(received))
            if not chunk:
                break
            received += chunk
        return received

    def close(self) -> None:
        self.sock.close()


def test_a_rotated_certificate_serves_new_connections_while_open_tunnels_keep_flowing(
    link: Link, fabric: Fabric, start_service: StartService
) -> None:
    address = link.open("echo", start_service(echo).port, allow=True)
    open_tunnel = Echoing(address)
    assert open_tunnel.round_trip(b"before") == b"before"
    old_serial = serial_in(link.target.peer_dir / "cert.pem")

    new_serial = rotate(fabric, link.target)

    assert new_serial != old_serial
    assert open_tunnel.round_trip(b"after the rotation") == b"after the rotation"
    assert presented_serial(link.target.listen, fabric.path / "a") == new_serial
    assert talk(address, b"a new tunnel").received == b"a new tunnel"
    open_tunnel.close()


def test_the_dialing_side_rotates_too_and_dials_new_peers_with_the_new_certificate(
    link: Link, fabric: Fabric, start_service: StartService, start_gateway: StartGateway
) -> None:
    address = link.open("echo", start_service(echo).port, allow=True)
    open_tunnel = Echoing(address)
    assert open_tunnel.round_trip(b"before") == b"before"

    new_serial = rotate(fabric, link.source)

    assert open_tunnel.round_trip(b"still here") == b"still here"
    assert talk(address, b"a new tunnel").received == b"a new tunnel"
    # a's connections to b made with the old certificate were retired: the new tunnel (and
    # the heartbeats) came over a new connection, with the new certificate.
    link.target.wait_for_log(
        rf"peer listener accepted the certificate of peer a \(serial {new_serial}\)"
    )
    c = start_gateway("c", *WATCHING)
    link.source.apply(peer("c", c.listen))  # a heartbeat: a new connection from a
    c.wait_for_log(rf"peer listener accepted the certificate of peer a \(serial {new_serial}\)")
    open_tunnel.close()
    link.source.delete("peer", "c")


def test_a_key_that_does_not_match_is_rejected_and_the_gateway_keeps_the_old_certificate(
    pair: Pair, fabric: Fabric
) -> None:
    target = pair.target
    key = target.peer_dir / "key.pem"
    in_use = serial_in(target.peer_dir / "cert.pem")
    good_key = key.read_bytes()

    shutil.copy(target.peer_dir / "admin" / "key.pem", key)
    try:
        line = target.wait_for_log(r"rejected the changed files: .*key\.pem is not the key")
        assert f"kept the TLS credentials in use (certificate serial {in_use})" in line
        assert presented_serial(target.listen, fabric.path / "a") == in_use
        answer = http_over_tls(
            target.listen,
            tls_client_context(fabric.path / "a/cert.pem", fabric.path / "a/key.pem", alpn=ALPN),
            method="GET",
            target="/healthz",
        )
        assert answer.status == 200, answer
    finally:
        key.write_bytes(good_key)


def test_sighup_reloads_the_files_at_once(start_gateway: StartGateway, fabric: Fabric) -> None:
    hup = start_gateway("hup", "--cert-check-interval", "0")  # no polling: SIGHUP only
    args = ("--name", "hup", "--fabric", fabric.name, "--path", str(fabric.root))
    cl("rotate", "peer-cert", *args).expect_ok()
    serial = serial_in(hup.peer_dir / "cert.pem")

    hup.process.send_signal(signal.SIGHUP)

    hup.wait_for_log(rf"reloaded the TLS credentials of peer hup .*serial {serial}")
    assert presented_serial(hup.listen, fabric.path / "a") == serial


def test_an_expired_certificate_of_a_caller_is_refused_saying_whose_and_since_when(
    pair: Pair, fabric: Fabric
) -> None:
    serial = expired_credentials(fabric, "a", fabric.root / "expired-a")
    client = fabric.root / "expired-a"

    answer = http_over_tls(
        pair.target.listen,
        tls_client_context(client / "cert.pem", client / "key.pem", alpn=ALPN),
        method="GET",
        target="/healthz",
    )

    assert answer.status is None, answer
    pair.target.wait_for_log(
        r"peer listener refused a TLS handshake: certificate of peer a "
        rf"\(serial {serial}\) expired at \S+ \S+ UTC {PERIOD}"
    )


class ExpiredPeer:
    """A TLS server on loopback that presents an expired certificate to whoever dials it."""

    def __init__(self, cert_dir: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_dir / "cert.pem", cert_dir / "key.pem")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                sock, _ = self.listener.accept()
                sock.settimeout(5)
                with contextlib.suppress(OSError), self.context.wrap_socket(sock, server_side=True):
                    pass  # the dialer refuses us during the handshake

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def expired_peer(fabric: Fabric) -> Iterator[tuple[ExpiredPeer, str]]:
    where = fabric.root / "expired-ghost"
    serial = expired_credentials(fabric, "ghost", where)
    server = ExpiredPeer(where)
    yield server, serial
    server.close()


def test_a_peer_presenting_an_expired_certificate_is_unreachable_saying_whose_and_when(
    pair: Pair, expired_peer: tuple[ExpiredPeer, str]
) -> None:
    server, serial = expired_peer
    pair.source.apply(peer("ghost", server.address))

    def reason() -> str | None:
        status = pair.source.get("peer", "ghost").get("status") or {}
        text = status.get("reason") or ""
        return text if "expired" in text else None

    try:
        text = wait_until(reason, what="peer ghost's status says its certificate expired")
        assert re.search(
            rf"certificate of peer ghost \(serial {serial}\) expired at \S+ \S+ UTC {PERIOD}", text
        ), text
    finally:
        pair.source.delete("peer", "ghost")
