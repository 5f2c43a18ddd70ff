"""The peer directory: one gateway's identity on disk (DESIGN §3).

``load_peer_dir`` is the single gate through which a gateway or the CLI starts using a
directory. It checks everything that would otherwise surface later as an opaque TLS failure on
the first connection: every file present and parseable, each key matching its certificate,
the gateway certificate issued by a CA of the trust bundle ``ca.pem`` (one or more fabric CAs,
see ``bundle``), the admin certificate belonging to the same peer and issued either by that
bundle (``create peer-cert``: then it names the same fabric) or by the site's own admin CA
``admin/ca.pem`` (``create peer-key``: made at the site, see ``site``), and everything inside
its validity period. After it returns, ``PeerDir`` is just names and paths; TLS contexts
(``tls.py``) read the files themselves.

``read_gateway_credentials`` is the part of that gate a running gateway passes again when its
files change (``reloading``): the three files the gateway itself uses (``cert.pem``,
``key.pem``, ``ca.pem``) are read *once*, checked from those bytes, and summed up in a digest
(with ``admin/ca.pem``, which the admin API's context trusts),
so that what was checked is known to be what was read, and a later change is seen by content
(an mtime can miss a rewrite within the same second; a symlink swap keeps both).

The peer's name and fabric come from its certificate, not from the directory's name, so a
directory may be copied or renamed freely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from clusterlink.certs._pem import (
    as_peercert,
    check_valid_now,
    is_ca,
    parse_cert,
    parse_key,
    read_bytes,
    read_cert,
    read_key,
)
from clusterlink.certs.bundle import TrustBundle
from clusterlink.certs.identity import admin_peer_of, fabric_of, peer_name_of
from clusterlink.certs.names import PeerName
from clusterlink.errors import CertificateError

__all__ = [
    "PEER_DIR_FILES",
    "GatewayCredentials",
    "PeerDir",
    "gateway_files_digest",
    "load_peer_dir",
    "read_gateway_credentials",
]

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CA_FILE = "ca.pem"
ADMIN_CERT_FILE = "admin/cert.pem"
ADMIN_KEY_FILE = "admin/key.pem"
ADMIN_CA_FILE = "admin/ca.pem"  # only in a directory made by ``create peer-key``
REQUEST_FILE = "request.csr"  # likewise: what the site sends to the fabric's owner
# What ``create peer-cert`` writes; a directory holding any of them is never overwritten.
PEER_DIR_FILES = (CERT_FILE, KEY_FILE, CA_FILE, ADMIN_CERT_FILE, ADMIN_KEY_FILE)
# What a running gateway reads (the admin files serve the CLI only).
GATEWAY_FILES = (CERT_FILE, KEY_FILE, CA_FILE)
# What a change of is a change of the gateway's TLS contexts: its admin API also trusts the
# site's admin CA, where there is one.
_WATCHED_FILES = (*GATEWAY_FILES, ADMIN_CA_FILE)

_CREATE_HINT = (
    "create the peer directory with `clusterlink create peer-cert --name PEER`, or, for a key "
    "made with `clusterlink create peer-key`, install the signed certificate with "
    "`clusterlink install peer-cert`"
)
_MIXED_HINT = "the directory mixes files of different peers or fabrics"


@dataclass(frozen=True, slots=True)
class PeerDir:
    """A checked peer directory: ``name`` and ``fabric`` as its certificate states them."""

    name: PeerName
    fabric: str
    path: Path

    @property
    def cert_file(self) -> Path:
        return self.path / CERT_FILE

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    @property
    def ca_file(self) -> Path:
        return self.path / CA_FILE

    @property
    def admin_cert_file(self) -> Path:
        return self.path / ADMIN_CERT_FILE

    @property
    def admin_key_file(self) -> Path:
        return self.path / ADMIN_KEY_FILE

    @property
    def admin_ca_file(self) -> Path:
        return self.path / ADMIN_CA_FILE


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    """One checked reading of a gateway's ``cert.pem``, ``key.pem`` and ``ca.pem``.

    ``issuer`` is the CA of ``bundle`` that signed ``cert``; ``digest`` sums up the bytes the
    three files held when they were read (see ``gateway_files_digest``).
    """

    peer_dir: PeerDir
    cert: x509.Certificate
    issuer: x509.Certificate
    bundle: TrustBundle
    digest: bytes


def gateway_files_digest(path: Path) -> bytes:
    """A digest of what the gateway's files hold now; a missing or unreadable file counts as
    a state of its own (so its return is noticed too)."""
    return _digest({name: _read_or_none(path / name) for name in _WATCHED_FILES})


def read_gateway_credentials(path: Path, now: datetime | None = None) -> GatewayCredentials:
    """Read and check the gateway's own files in ``path``; CertificateError if unusable."""
    now = now or datetime.now(UTC)
    if not path.is_dir():
        raise CertificateError(f"peer directory {path} does not exist; {_CREATE_HINT}")
    data = {
        CA_FILE: read_bytes(path / CA_FILE, "fabric CA certificate", _CREATE_HINT),
        CERT_FILE: read_bytes(path / CERT_FILE, "peer certificate", _CREATE_HINT),
        KEY_FILE: read_bytes(path / KEY_FILE, "peer key", _CREATE_HINT),
    }
    bundle = TrustBundle.parse(data[CA_FILE], path / CA_FILE)
    cert = parse_cert(data[CERT_FILE], path / CERT_FILE, _CREATE_HINT)
    identity = as_peercert(cert)
    name, fabric = peer_name_of(identity), fabric_of(identity)
    if name is None or fabric is None:
        raise CertificateError(
            f"{path / CERT_FILE} is not a ClusterLink peer certificate "
            "(it needs O=<fabric> and matching DNS and urn:clusterlink:peer: names)"
        )
    parse_key(data[KEY_FILE], path / KEY_FILE, cert, _reissue_hint(name, fabric))
    if bundle.fabric != fabric:
        raise CertificateError(
            f"{path / CA_FILE} holds CAs of fabric {bundle.fabric!r} but {path / CERT_FILE} "
            f"belongs to fabric {fabric!r}; {_MIXED_HINT}"
        )
    bundle.trusted_at(now, path / CA_FILE)
    peer_dir = PeerDir(name=name, fabric=fabric, path=path)
    issuer = _check_leaf(
        cert, path / CERT_FILE, f"peer {name}", bundle=bundle, pd=peer_dir, now=now
    )
    read = {**data, ADMIN_CA_FILE: _read_or_none(path / ADMIN_CA_FILE)}
    return GatewayCredentials(peer_dir, cert, issuer, bundle, _digest(read))


def load_peer_dir(path: Path) -> PeerDir:
    """Check the peer directory at ``path`` and describe it; CertificateError if unusable."""
    now = datetime.now(UTC)
    credentials = read_gateway_credentials(path, now)
    pd = credentials.peer_dir
    admin = read_cert(path / ADMIN_CERT_FILE, "admin certificate", _CREATE_HINT)
    read_key(path / ADMIN_KEY_FILE, admin, "admin key", _CREATE_HINT)
    admin_identity = as_peercert(admin)
    owner = f"the administrator of peer {pd.name}"
    site_ca = _site_admin_ca(path, admin)
    if admin_peer_of(admin_identity) != pd.name or (
        site_ca is None and fabric_of(admin_identity) != pd.fabric
    ):
        raise CertificateError(
            f"{path / ADMIN_CERT_FILE} is not the admin certificate of peer {pd.name!r} "
            f"of fabric {pd.fabric!r}; {_MIXED_HINT}"
        )
    if site_ca is None:
        _check_leaf(admin, path / ADMIN_CERT_FILE, owner, bundle=credentials.bundle, pd=pd, now=now)
    else:
        hint = f"make the site's admin files again with `clusterlink create peer-key` ({pd.path})"
        check_valid_now(site_ca, path / ADMIN_CA_FILE, f"the admin CA of peer {pd.name}", hint, now)
        check_valid_now(admin, path / ADMIN_CERT_FILE, owner, hint, now)
    return pd


def _site_admin_ca(path: Path, admin: x509.Certificate) -> x509.Certificate | None:
    """The site's admin CA if ``admin/ca.pem`` is there and issued ``admin``; None if there is
    none (the admin certificate must then come from the fabric)."""
    file = path / ADMIN_CA_FILE
    if not file.exists():
        return None
    ca = parse_cert(read_bytes(file, "admin CA certificate", _CREATE_HINT), file, _CREATE_HINT)
    if not is_ca(ca):
        raise CertificateError(f"{file} is not a CA certificate; {_MIXED_HINT}")
    try:
        admin.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return None
    return ca


def _check_leaf(
    leaf: x509.Certificate,
    file: Path,
    owner: str,
    *,
    bundle: TrustBundle,
    pd: PeerDir,
    now: datetime,
) -> x509.Certificate:
    """The CA of ``bundle`` that issued ``leaf``, which must be valid now."""
    check_valid_now(leaf, file, owner, _reissue_hint(pd.name, pd.fabric), now)
    issuer = bundle.issuer_of(leaf, now)
    if issuer is None:
        raise CertificateError(
            f"{file} was not issued by a CA of {pd.ca_file} that is valid now: "
            f"{_MIXED_HINT}, or its CA was taken out of the bundle (see "
            "`clusterlink rotate ca-bundle`)"
        )
    return issuer


def _reissue_hint(name: str, fabric: str) -> str:
    return f"issue new ones with `clusterlink rotate peer-cert --name {name} --fabric {fabric}`"


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _digest(files: Mapping[str, bytes | None]) -> bytes:
    sha = hashlib.sha256()
    for name in _WATCHED_FILES:
        data = files[name]
        sha.update(name.encode() + (b"-" if data is None else b"%d:" % len(data) + data))
    return sha.digest()
