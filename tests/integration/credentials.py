"""Certificates as the rotation tests handle them: serials, rotations, expired credentials.

A serial is compared the way the product logs it (``serial_hex``: upper-case hex, whole
bytes). ``rotate`` goes through the CLI and returns once the gateway has said it reloaded, so a
test never races the gateway's file poll. Expired credentials come from the issuing API,
since no command makes them (this is the one place these tests import the product).
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from clusterlink.certs import PeerName, issue_peer_credentials, load_fabric, serial_hex
from tests.integration.clients import tls_client_context
from tests.integration.gateways import Fabric, Gateway, cl

__all__ = [
    "ALPN",
    "WATCHING",
    "expired_credentials",
    "presented_serial",
    "rotate",
    "serial_in",
]

ALPN = "clusterlink/1"
# Gateway flags: look at the certificate files every 0.2 s; log the certificates accepted.
WATCHING = ("--cert-check-interval", "0.2", "--log-level", "debug")


def serial_in(cert_file: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number)


def presented_serial(address: tuple[str, int], client: Path) -> str:
    """The serial of the certificate a gateway presents to a new connection (``client`` holds
    the certificate to connect with)."""
    context = tls_client_context(client / "cert.pem", client / "key.pem", alpn=ALPN)
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="gateway") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return serial_hex(x509.load_der_x509_certificate(der).serial_number)


def rotate(fabric: Fabric, gateway: Gateway) -> str:
    """``clusterlink rotate peer-cert`` for the gateway, once it has reloaded: the new serial."""
    args = ("--name", gateway.name, "--fabric", fabric.name, "--path", str(fabric.root))
    cl("rotate", "peer-cert", *args).expect_ok()
    serial = serial_in(gateway.peer_dir / "cert.pem")
    gateway.wait_for_log(rf"reloaded the TLS credentials of peer {gateway.name} .*serial {serial}")
    return serial


def expired_credentials(fabric: Fabric, peer_name: str, where: Path) -> str:
    """A certificate and key of ``peer_name`` that expired days ago, in ``where``; its serial."""
    credentials = issue_peer_credentials(
        load_fabric(fabric.root, fabric.name),
        PeerName(peer_name),
        validity=timedelta(days=1),
        now=datetime.now(UTC) - timedelta(days=10),
    )
    where.mkdir(parents=True, exist_ok=True)
    (where / "cert.pem").write_bytes(credentials.peer.cert_pem)
    (where / "key.pem").write_bytes(credentials.peer.key_pem)
    return serial_in(where / "cert.pem")
