"""Joining a fabric across a boundary: every private key is made where it is used.

Three steps, each on its own machine, each touching only local files (DESIGN §10)::

    site:          create_peer_key   -> SITE/P/key.pem (0600), SITE/P/request.csr,
                                        SITE/P/admin/ca.pem, cert.pem, key.pem (0600)
    fabric owner:  sign_request      -> cert.pem + ca.pem beside the request (or in --out)
    site:          install_peer_cert -> SITE/P/cert.pem, SITE/P/ca.pem

What travels: ``request.csr`` one way, ``cert.pem`` and ``ca.pem`` back. None of them holds a
private key, so nothing secret crosses the boundary and the fabric's owner never holds a
site's key.

Administering the gateway needs an admin certificate, and the fabric's owner should not have
to make that either (it would mean another key to send). So the site makes its own admin CA,
uses it once to sign its admin certificate, and throws its key away (``issuing``); the
gateway's admin API trusts that CA for this peer only (``tls.admin_server_context``).

Invariants: nothing here overwrites a key; every check happens before anything is written,
and what is written appears whole (``_fs``: a new directory in one rename, files replaced one
by one atomically, ``cert.pem`` last), so a failed step leaves the files as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from clusterlink.certs._fs import commit_dir, replace_files
from clusterlink.certs._pem import as_peercert, check_valid_now, parse_cert, read_bytes
from clusterlink.certs.bundle import TrustBundle
from clusterlink.certs.fabric import fabric_trust, load_fabric, refuse_overwrite
from clusterlink.certs.identity import admin_peer_of, fabric_of, peer_name_of
from clusterlink.certs.issuing import CERT_VALIDITY, new_site_admin
from clusterlink.certs.names import DEFAULT_FABRIC, PeerName, validate_peer_cert_name
from clusterlink.certs.peerdir import (
    ADMIN_CA_FILE,
    ADMIN_CERT_FILE,
    ADMIN_KEY_FILE,
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    REQUEST_FILE,
    PeerDir,
    load_peer_dir,
)
from clusterlink.certs.requests import check_peer_request, new_peer_request, sign_peer_request
from clusterlink.certs.rotation import refuse_a_stranger
from clusterlink.errors import CertificateError

__all__ = [
    "SITE_FILES",
    "InstalledCert",
    "SignedRequest",
    "create_peer_key",
    "install_peer_cert",
    "sign_request",
]

SITE_FILES = (
    KEY_FILE,
    REQUEST_FILE,
    CERT_FILE,
    CA_FILE,
    ADMIN_CA_FILE,
    ADMIN_CERT_FILE,
    ADMIN_KEY_FILE,
)
"""What a site's peer directory holds once installed; ``create peer-key`` refuses if any is
there."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What ``sign_request`` issued and where it wrote it."""

    peer: PeerName
    cert: x509.Certificate
    bundle: TrustBundle
    cert_file: Path
    ca_file: Path


@dataclass(frozen=True, slots=True)
class InstalledCert:
    """The peer directory after ``install_peer_cert``, its certificate and the CA that
    issued it."""

    peer_dir: PeerDir
    cert: x509.Certificate
    issuer: x509.Certificate


def create_peer_key(path: Path, peer: str) -> Path:
    """Create ``path/peer/`` with the gateway's key and its certificate request, and the
    site's admin CA and admin certificate; return the directory."""
    name = validate_peer_cert_name(peer)
    target = path / name
    refuse_overwrite(target, SITE_FILES)
    request = new_peer_request(name)
    admin = new_site_admin(name)
    commit_dir(
        target,
        public={
            REQUEST_FILE: request.csr_pem,
            ADMIN_CA_FILE: admin.ca_pem,
            ADMIN_CERT_FILE: admin.admin.cert_pem,
        },
        secret={KEY_FILE: request.key_pem, ADMIN_KEY_FILE: admin.admin.key_pem},
    )
    return target


def sign_request(
    csr_file: Path,
    *,
    path: Path = Path(),
    fabric: str = DEFAULT_FABRIC,
    validity: timedelta = CERT_VALIDITY,
    out: Path | None = None,
) -> SignedRequest:
    """Check the request in ``csr_file`` and issue its certificate with the CA of the fabric
    in ``path/fabric/``; write ``cert.pem`` and ``ca.pem`` into ``out`` (default: beside the
    request), never over existing files."""
    hint = "ask the site for the request.csr that `clusterlink create peer-key` made"
    peer, csr = check_peer_request(read_bytes(csr_file, "certificate request", hint), csr_file)
    ca = load_fabric(path, fabric)
    target = csr_file.parent if out is None else out
    if not target.is_dir():
        raise CertificateError(f"{target} is not a directory; create it or choose another --out")
    refuse_overwrite(target, (CERT_FILE, CA_FILE))
    cert = sign_peer_request(ca, csr, peer, validity=validity)
    bundle = fabric_trust(path / fabric, ca)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    replace_files(target, public={CA_FILE: bundle.pem(), CERT_FILE: cert_pem}, secret={})
    return SignedRequest(peer, cert, bundle, target / CERT_FILE, target / CA_FILE)


def install_peer_cert(peer_dir: Path, cert_file: Path, ca_file: Path) -> InstalledCert:
    """Put the certificate ``cert_file`` and the trust bundle ``ca_file`` into ``peer_dir``
    (made by ``create_peer_key``) once they are shown to belong there; return it checked."""
    now = datetime.now(UTC)
    key_hint = "make it with `clusterlink create peer-key --name PEER` (then sign and install)"
    key_pem = read_bytes(peer_dir / KEY_FILE, "peer key", key_hint)
    hint = "use the cert.pem and ca.pem that `clusterlink sign` wrote for this site's request"
    cert_pem = read_bytes(cert_file, "certificate", hint)
    cert = parse_cert(cert_pem, cert_file, hint)
    _check_key_matches(cert, key_pem, cert_file, peer_dir / KEY_FILE)
    bundle = TrustBundle.parse(read_bytes(ca_file, "CA certificate", hint), ca_file)
    issuer = bundle.issuer_of(cert, now)
    if issuer is None:
        raise CertificateError(
            f"{ca_file} does not verify {cert_file}: no CA in it (valid now) issued that "
            "certificate; use the ca.pem that came with it from `clusterlink sign`"
        )
    peer = _check_identity(cert, bundle, peer_dir, cert_file)
    renew = f"ask the fabric's owner to sign {peer_dir / REQUEST_FILE} again"
    check_valid_now(cert, cert_file, f"peer {peer}", renew, now)
    refuse_a_stranger(peer_dir / CERT_FILE, peer, bundle.fabric)
    replace_files(peer_dir, public={CA_FILE: bundle.pem(), CERT_FILE: cert_pem}, secret={})
    return InstalledCert(load_peer_dir(peer_dir), cert, issuer)


def _check_key_matches(cert: x509.Certificate, key_pem: bytes, cert_file: Path, key: Path) -> None:
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{key} is not an unencrypted PEM private key ({exc})") from exc
    if private.public_key() != cert.public_key():
        raise CertificateError(
            f"{cert_file} does not match {key}: it certifies another key (signed from "
            "another site's request?); use the certificate signed from this directory's "
            "request.csr"
        )


def _check_identity(
    cert: x509.Certificate, bundle: TrustBundle, peer_dir: Path, cert_file: Path
) -> PeerName:
    """The peer ``cert`` names, which must be the one this directory administers."""
    identity = as_peercert(cert)
    peer, fabric = peer_name_of(identity), fabric_of(identity)
    if peer is None or fabric != bundle.fabric:
        raise CertificateError(
            f"{cert_file} is not a peer certificate of fabric {bundle.fabric!r}; use the "
            "cert.pem that `clusterlink sign` wrote"
        )
    hint = "the site's admin certificate"
    admin = parse_cert(
        read_bytes(peer_dir / ADMIN_CERT_FILE, "admin certificate", hint),
        peer_dir / ADMIN_CERT_FILE,
        hint,
    )
    admin_of = admin_peer_of(as_peercert(admin))
    if admin_of != peer:
        raise CertificateError(
            f"{cert_file} names peer {peer!r}, but {peer_dir} belongs to peer {admin_of!r}; "
            "install it into the directory that made its request"
        )
    return peer
