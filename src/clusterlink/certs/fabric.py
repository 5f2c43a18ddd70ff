"""Creating a fabric and its peer directories on disk (DESIGN §3, a contract).

Layout, under a base directory ``DIR``::

    DIR/FABRIC/cert.pem, key.pem              the fabric CA (key 0600, directory 0700)
    DIR/FABRIC/previous_ca/cert.pem, key.pem  the CA before the last rotation, while it lasts
    DIR/FABRIC/PEER/cert.pem, key.pem, ca.pem the gateway (key 0600, directory 0700)
    DIR/FABRIC/PEER/admin/cert.pem, key.pem   this peer's administrator (key 0600, dir 0700)

``previous_ca`` cannot clash with a peer: a peer name is a DNS name, which has no ``_``.

Nothing here ever overwrites a certificate or key: losing a CA key orphans every peer of the
fabric, and losing a peer key takes a gateway down. Replacing credentials is a separate,
deliberate act (``rotation``).

A new peer trusts what the fabric trusts at that moment: its ``ca.pem`` holds the current CA
and, during a CA rotation, the previous one too, so it can talk to peers not yet re-issued.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from clusterlink.certs._fs import commit_dir
from clusterlink.certs._pem import as_peercert, check_valid_now, is_ca, read_cert, read_key
from clusterlink.certs.bundle import TrustBundle
from clusterlink.certs.identity import fabric_of
from clusterlink.certs.issuing import (
    CERT_VALIDITY,
    FabricCA,
    issue_peer_credentials,
    new_fabric_ca,
)
from clusterlink.certs.names import DEFAULT_FABRIC, validate_fabric_name, validate_peer_cert_name
from clusterlink.certs.peerdir import (
    ADMIN_CERT_FILE,
    ADMIN_KEY_FILE,
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    PEER_DIR_FILES,
)
from clusterlink.errors import AlreadyExistsError, CertificateError

__all__ = ["PREVIOUS_CA_DIR", "create_fabric", "create_peer_cert", "fabric_trust", "load_fabric"]

FABRIC_FILES = (CERT_FILE, KEY_FILE)
PREVIOUS_CA_DIR = "previous_ca"


def create_fabric(path: Path, name: str = DEFAULT_FABRIC) -> Path:
    """Create the fabric CA in ``path/name/`` and return that directory."""
    validate_fabric_name(name)
    target = path / name
    refuse_overwrite(target, FABRIC_FILES)
    ca = new_fabric_ca(name)
    commit_dir(target, public={CERT_FILE: ca.cert_pem}, secret={KEY_FILE: ca.key_pem})
    return target


def load_fabric(path: Path, fabric: str = DEFAULT_FABRIC) -> FabricCA:
    """The CA of the fabric in ``path/fabric/``, checked usable for issuing."""
    validate_fabric_name(fabric)
    directory = path / fabric
    hint = f"create it with `clusterlink create fabric --name {fabric} --path {path}`"
    cert = read_cert(directory / CERT_FILE, f"CA certificate of fabric {fabric!r}", hint)
    key = read_key(directory / KEY_FILE, cert, f"CA key of fabric {fabric!r}", hint)
    name = fabric_of(as_peercert(cert))
    if not is_ca(cert) or name is None or not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{directory / CERT_FILE} is not a ClusterLink fabric CA; {hint}")
    hint = f"rotate it with `clusterlink create fabric --name {fabric} --path {path} --rotate`"
    check_valid_now(cert, directory / CERT_FILE, f"the CA of fabric {fabric}", hint)
    return FabricCA(name=name, cert=cert, key=key)


def create_peer_cert(
    path: Path,
    peer: str,
    fabric: str = DEFAULT_FABRIC,
    *,
    validity: timedelta = CERT_VALIDITY,
) -> Path:
    """Create the peer directory ``path/fabric/peer/`` signed by that fabric's CA; return it."""
    name = validate_peer_cert_name(peer)
    ca = load_fabric(path, fabric)
    target = path / fabric / name
    refuse_overwrite(target, PEER_DIR_FILES)
    credentials = issue_peer_credentials(ca, name, validity=validity)
    commit_dir(
        target,
        public={
            CERT_FILE: credentials.peer.cert_pem,
            CA_FILE: fabric_trust(path / fabric, ca).pem(),
            ADMIN_CERT_FILE: credentials.admin.cert_pem,
        },
        secret={KEY_FILE: credentials.peer.key_pem, ADMIN_KEY_FILE: credentials.admin.key_pem},
    )
    return target


def fabric_trust(directory: Path, ca: FabricCA) -> TrustBundle:
    """What a new peer trusts: the fabric's CA ``ca`` (from ``directory``), and the previous
    one while the fabric keeps it and it is valid."""
    cas = [ca.cert]
    previous = directory / PREVIOUS_CA_DIR / CERT_FILE
    if previous.exists():
        cas.append(read_cert(previous, "previous CA certificate", f"remove {previous.parent}"))
    kept = TrustBundle.of(cas, directory).valid_at(datetime.now(UTC))
    return TrustBundle.of(kept, directory)


def refuse_overwrite(target: Path, files: tuple[str, ...]) -> None:
    for file in files:
        if (target / file).exists() or (target / file).is_symlink():
            raise AlreadyExistsError(
                f"{target / file} already exists; refusing to overwrite it "
                "(remove it first or choose another name)"
            )
