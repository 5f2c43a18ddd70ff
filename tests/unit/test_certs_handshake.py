"""The peer contexts' own validity check, and CA overlap: real TLS 1.3 handshakes in memory.

The other side of each handshake is a bare ``ssl`` context that presents whatever it is
given, so only our side's checks can refuse. Certificates with a validity period in the past
or the future come from the issuing API (``issue_peer_credentials(now=...)``).
"""

import logging
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from clusterlink.certs import (
    PeerDir,
    PeerName,
    create_fabric,
    create_peer_cert,
    issue_peer_credentials,
    load_fabric,
    load_peer_dir,
    peer_client_context,
    peer_name_of,
    peer_server_context,
    rotate_fabric_ca,
    serial_hex,
    update_ca_bundle,
)
from clusterlink.certs.issuing import new_fabric_ca
from tests.unit.test_certs_tls import HandshakeFailed, handshake

ALPN = ["clusterlink/1"]
PERIOD = r"\(valid from 20\S+ \S+ UTC; now 20\S+ \S+ UTC\)"


def bare_context(cert: Path, key: Path, *, server: bool) -> ssl.SSLContext:
    """Presents ``cert`` and checks nothing about the other side."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    return context


def credentials_at(base: Path, peer: str, issued_at: datetime, days: int = 1) -> Path:
    """Certificate and key of ``peer`` from the fabric ``prod`` in ``base``, valid ``days``
    from ``issued_at``; returns the directory holding them."""
    ca = load_fabric(base, "prod")
    credentials = issue_peer_credentials(
        ca, PeerName(peer), validity=timedelta(days=days), now=issued_at
    )
    directory = base / f"{peer}-{issued_at:%Y%m%d%H%M%S}"
    directory.mkdir()
    (directory / "cert.pem").write_bytes(credentials.peer.cert_pem)
    (directory / "key.pem").write_bytes(credentials.peer.key_pem)
    return directory


@pytest.fixture(name="fabric")
def fabric_fixture(tmp_path: Path) -> Path:
    create_fabric(tmp_path, "prod")
    return tmp_path


@pytest.fixture(name="b")
def b_fixture(fabric: Path) -> PeerDir:
    return load_peer_dir(create_peer_cert(fabric, "b", "prod"))


def serial_of(directory: Path) -> str:
    cert = x509.load_pem_x509_certificate((directory / "cert.pem").read_bytes())
    return serial_hex(cert.serial_number)


def test_listener_refuses_an_expired_certificate_saying_whose_it_is_and_when_it_expired(
    fabric: Path, b: PeerDir, caplog: pytest.LogCaptureFixture
) -> None:
    expired = credentials_at(fabric, "c", datetime.now(UTC) - timedelta(days=10))
    client = bare_context(expired / "cert.pem", expired / "key.pem", server=False)

    with (
        caplog.at_level(logging.WARNING, "clusterlink.certs"),
        pytest.raises(HandshakeFailed) as info,
    ):
        handshake(client, peer_server_context(b, ALPN), "b")

    error = info.value.error
    assert info.value.side == "server"
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 10  # X509_V_ERR_CERT_HAS_EXPIRED, as OpenSSL says it
    serial = serial_of(expired)
    assert re.fullmatch(
        rf"certificate of peer c \(serial {serial}\) expired at 20\S+ \S+ UTC {PERIOD}",
        error.verify_message,
    ), error.verify_message
    assert f"peer listener refused a TLS handshake: {error.verify_message}" in caplog.messages


def test_listener_refuses_a_certificate_that_is_not_valid_yet_and_points_at_the_clocks(
    fabric: Path, b: PeerDir
) -> None:
    future = credentials_at(fabric, "c", datetime.now(UTC) + timedelta(days=2))
    client = bare_context(future / "cert.pem", future / "key.pem", server=False)

    with pytest.raises(HandshakeFailed) as info:
        handshake(client, peer_server_context(b, ALPN), "b")

    error = info.value.error
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_code == 9  # X509_V_ERR_CERT_NOT_YET_VALID
    assert re.fullmatch(
        r"certificate of peer c \(serial [0-9A-F]+\) is not valid before 20\S+ \S+ UTC "
        r"\(valid from .* until .*; now .*\): check the clocks",
        error.verify_message,
    )


def test_dialer_refuses_a_peer_whose_certificate_expired_naming_it(
    fabric: Path, b: PeerDir
) -> None:
    expired = credentials_at(fabric, "c", datetime.now(UTC) - timedelta(days=10))
    server = bare_context(expired / "cert.pem", expired / "key.pem", server=True)

    with pytest.raises(HandshakeFailed) as info:
        handshake(peer_client_context(b, ALPN), server, "c")

    error = info.value.error
    assert info.value.side == "client"
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert error.verify_message.startswith("certificate of peer c (serial ")
    assert " expired at " in error.verify_message


def test_refusals_of_one_certificate_are_logged_once_a_minute_not_per_attempt(
    fabric: Path, b: PeerDir, caplog: pytest.LogCaptureFixture
) -> None:
    expired = credentials_at(fabric, "c", datetime.now(UTC) - timedelta(days=10))
    client = bare_context(expired / "cert.pem", expired / "key.pem", server=False)

    with caplog.at_level(logging.WARNING, "clusterlink.certs"):
        for _ in range(3):
            with pytest.raises(HandshakeFailed):
                handshake(client, peer_server_context(b, ALPN), "b")

    assert len([m for m in caplog.messages if serial_of(expired) in m]) == 1


def test_listener_explains_a_certificate_of_a_ca_it_does_not_trust(
    tmp_path: Path, b: PeerDir, caplog: pytest.LogCaptureFixture
) -> None:
    create_fabric(tmp_path / "other", "prod")
    stranger = create_peer_cert(tmp_path / "other", "s", "prod")
    client = bare_context(stranger / "cert.pem", stranger / "key.pem", server=False)

    with caplog.at_level(logging.WARNING, "clusterlink.certs"), pytest.raises(HandshakeFailed):
        handshake(client, peer_server_context(b, ALPN), "b")

    assert any(
        "not issued by a CA in this gateway's ca.pem (another fabric, or a CA removed from "
        "the bundle)" in message
        for message in caplog.messages
    ), caplog.messages


def test_an_accepted_certificate_is_logged_with_its_serial_at_debug_level(
    fabric: Path, b: PeerDir, caplog: pytest.LogCaptureFixture
) -> None:
    a = load_peer_dir(create_peer_cert(fabric, "a", "prod"))

    with caplog.at_level(logging.DEBUG, "clusterlink.certs"):
        handshake(peer_client_context(a, ALPN), peer_server_context(b, ALPN), "b")

    assert any(
        f"peer listener accepted the certificate of peer a (serial {serial_of(a.path)})" in m
        for m in caplog.messages
    )


def test_a_ca_of_the_bundle_that_expired_is_not_trusted(fabric: Path, b: PeerDir) -> None:
    old = new_fabric_ca("prod", validity=timedelta(days=1), now=datetime.now(UTC) - timedelta(3))
    with b.ca_file.open("ab") as bundle:
        bundle.write(old.cert_pem)

    trusted = peer_server_context(b, ALPN).get_ca_certs(binary_form=True)

    assert len(trusted) == 1
    assert trusted[0] == load_fabric(fabric, "prod").cert.public_bytes(Encoding.DER)


def test_peers_of_the_old_and_the_new_ca_talk_while_both_are_trusted(fabric: Path) -> None:
    old_ca_peer = load_peer_dir(create_peer_cert(fabric, "x", "prod"))
    rotate_fabric_ca(fabric, "prod")
    update_ca_bundle(fabric, "x", "prod", add=[fabric / "prod" / "cert.pem"])
    new_ca_peer = load_peer_dir(create_peer_cert(fabric, "y", "prod"))  # trusts both

    _, server = handshake(
        peer_client_context(old_ca_peer, ALPN), peer_server_context(new_ca_peer, ALPN), "y"
    )
    assert peer_name_of(server.getpeercert()) == "x"
    _, server = handshake(
        peer_client_context(new_ca_peer, ALPN), peer_server_context(old_ca_peer, ALPN), "x"
    )
    assert peer_name_of(server.getpeercert()) == "y"


def test_taking_the_old_ca_out_of_a_bundle_refuses_its_certificates_both_ways(
    fabric: Path,
) -> None:
    old_ca_peer = load_peer_dir(create_peer_cert(fabric, "x", "prod"))
    rotate_fabric_ca(fabric, "prod")
    update_ca_bundle(fabric, "x", "prod", add=[fabric / "prod" / "cert.pem"])
    new_ca_peer = load_peer_dir(create_peer_cert(fabric, "y", "prod"))
    update_ca_bundle(fabric, "y", "prod", remove=[str(fabric / "prod/previous_ca/cert.pem")])

    with pytest.raises(HandshakeFailed) as calling:
        handshake(
            peer_client_context(old_ca_peer, ALPN), peer_server_context(new_ca_peer, ALPN), "y"
        )
    with pytest.raises(HandshakeFailed) as called:
        handshake(
            peer_client_context(new_ca_peer, ALPN), peer_server_context(old_ca_peer, ALPN), "x"
        )

    assert calling.value.side == "server"
    assert called.value.side == "client"
    assert isinstance(called.value.error, ssl.SSLCertVerificationError)
