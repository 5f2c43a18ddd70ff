"""The peer directory: one gateway's identity on disk (DESIGN §3).

``load_peer_dir`` is the single gate through which a gateway or the CLI starts using a
directory. It checks everything that would otherwise surface later as an opaque TLS failure on
the first connection: every file present and parseable, each key matching its certificate,
both certificates issued by ``ca.pem``, the admin certificate belonging to the same peer and
fabric, and all three inside their validity period. After it returns, ``PeerDir`` is just
names and paths; TLS contexts (``tls.py``) read the files themselves.

The peer's name and fabric come from its certificate, not from the directory's name, so a
directory may be copied or renamed freely.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clusterlink.certs._pem import (
    as_peercert,
    check_issued_by,
    check_valid_now,
    read_cert,
    read_key,
)
from clusterlink.certs.identity import admin_peer_of, fabric_of, peer_name_of
from clusterlink.certs.names import PeerName
from clusterlink.errors import CertificateError

__all__ = ["PEER_DIR_FILES", "PeerDir", "load_peer_dir"]

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CA_FILE = "ca.pem"
ADMIN_CERT_FILE = "admin/cert.pem"
ADMIN_KEY_FILE = "admin/key.pem"
# What ``create peer-cert`` writes; a directory holding any of them is never overwritten.
PEER_DIR_FILES = (CERT_FILE, KEY_FILE, CA_FILE, ADMIN_CERT_FILE, ADMIN_KEY_FILE)

_CREATE_HINT = "create the peer directory with `clusterlink create peer-cert --name PEER`"
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


def load_peer_dir(path: Path) -> PeerDir:
    """Check the peer directory at ``path`` and describe it; CertificateError if unusable."""
    if not path.is_dir():
        raise CertificateError(f"peer directory {path} does not exist; {_CREATE_HINT}")
    ca = read_cert(path / CA_FILE, "fabric CA certificate", _CREATE_HINT)
    cert = read_cert(path / CERT_FILE, "peer certificate", _CREATE_HINT)
    read_key(path / KEY_FILE, cert, "peer key", _CREATE_HINT)
    admin = read_cert(path / ADMIN_CERT_FILE, "admin certificate", _CREATE_HINT)
    read_key(path / ADMIN_KEY_FILE, admin, "admin key", _CREATE_HINT)

    identity = as_peercert(cert)
    name, fabric = peer_name_of(identity), fabric_of(identity)
    if name is None or fabric is None:
        raise CertificateError(
            f"{path / CERT_FILE} is not a ClusterLink peer certificate "
            "(it needs O=<fabric> and matching DNS and urn:clusterlink:peer: names)"
        )
    admin_identity = as_peercert(admin)
    if admin_peer_of(admin_identity) != name or fabric_of(admin_identity) != fabric:
        raise CertificateError(
            f"{path / ADMIN_CERT_FILE} is not the admin certificate of peer {name!r} "
            f"of fabric {fabric!r}; {_MIXED_HINT}"
        )
    check_valid_now(ca, path / CA_FILE, "the fabric needs a new CA and new peer certificates")
    renew = (
        f"move {path} aside and run `clusterlink create peer-cert --name {name} --fabric {fabric}`"
    )
    for leaf, file in ((cert, CERT_FILE), (admin, ADMIN_CERT_FILE)):
        check_issued_by(leaf, ca, path / file)
        check_valid_now(leaf, path / file, renew)
    return PeerDir(name=name, fabric=fabric, path=path)
