"""Replacing credentials on disk: a fabric's CA, a peer's certificates, a peer's trust bundle.

These are the three moves of every rotation (the runbook is ``docs/certificates.md``):

1. ``rotate_fabric_ca``: a new CA becomes the fabric's ``cert.pem``/``key.pem``; the old one is
   kept in ``previous_ca/`` (it is still trusted everywhere and may be needed again until the
   rotation is over). A second rotation before the first is finished is refused rather than
   losing a CA key: the operator deletes ``previous_ca/`` once no peer trusts it any more.
2. ``update_ca_bundle``: add the new CA to a peer's ``ca.pem`` (an overlap: old and new are
   both trusted), and later take the old one out, which revokes for that peer every
   certificate the old CA issued. Taking out the CA that issued the peer's own certificates
   is refused: the gateway would reject its own files, and its CLI its admin certificate.
3. ``rotate_peer_cert``: new gateway and admin certificates and keys for an existing peer
   directory, from the fabric's current CA, which the peer must already trust (else the
   gateway would reject its own new certificate). The old key is not kept: a rotation
   often answers a suspected leak, a kept key is one more copy to leak, and a mistake is
   undone by issuing again, never by going back to a retired key.

Every file is replaced atomically (``_fs.replace_files``), keys 0600, so a running gateway,
which polls its files, only ever sees old or new files and picks the new ones up by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from clusterlink.certs._fs import commit_dir, replace_files
from clusterlink.certs._pem import as_peercert, is_ca, parse_cert, parse_key, read_bytes
from clusterlink.certs.bundle import TrustBundle, ca_id
from clusterlink.certs.fabric import PREVIOUS_CA_DIR, load_fabric
from clusterlink.certs.identity import fabric_of, peer_name_of
from clusterlink.certs.issuing import CERT_VALIDITY, issue_peer_credentials, new_fabric_ca
from clusterlink.certs.names import DEFAULT_FABRIC, validate_fabric_name, validate_peer_cert_name
from clusterlink.certs.peerdir import ADMIN_CERT_FILE, ADMIN_KEY_FILE, CA_FILE, CERT_FILE, KEY_FILE
from clusterlink.certs.validity import format_utc
from clusterlink.errors import AlreadyExistsError, CertificateError, NotFoundError

__all__ = [
    "BundleUpdate",
    "CARotation",
    "rotate_fabric_ca",
    "rotate_peer_cert",
    "update_ca_bundle",
]


@dataclass(frozen=True, slots=True)
class CARotation:
    """The fabric's new CA (now ``cert.pem``) and the one it replaced (now in ``previous``)."""

    new: x509.Certificate
    old: x509.Certificate
    previous: Path


@dataclass(frozen=True, slots=True)
class BundleUpdate:
    """A peer's trust bundle after an update, and what the update did to it."""

    path: Path
    bundle: TrustBundle
    added: tuple[x509.Certificate, ...]
    already_trusted: tuple[x509.Certificate, ...]
    removed: tuple[x509.Certificate, ...]
    own_issuer: x509.Certificate | None  # the CA of the peer's own certificate


def rotate_fabric_ca(path: Path, name: str = DEFAULT_FABRIC) -> CARotation:
    """Give the fabric in ``path/name/`` a new CA and keep the current one as the previous."""
    validate_fabric_name(name)
    directory = path / name
    previous = directory / PREVIOUS_CA_DIR
    hint = f"create it with `clusterlink create fabric --name {name} --path {path}`"
    cert_pem = read_bytes(directory / CERT_FILE, f"CA certificate of fabric {name!r}", hint)
    key_pem = read_bytes(directory / KEY_FILE, f"CA key of fabric {name!r}", hint)
    old = parse_cert(cert_pem, directory / CERT_FILE, hint)
    parse_key(key_pem, directory / KEY_FILE, old, hint)
    if not is_ca(old) or fabric_of(as_peercert(old)) != name:
        raise CertificateError(f"{directory / CERT_FILE} is not the CA of fabric {name!r}")
    if previous.exists() or previous.is_symlink():
        raise AlreadyExistsError(
            f"{previous} already exists: the previous CA rotation is not finished; once no "
            f"peer trusts that CA any more, delete {previous} and rotate again"
        )
    new = new_fabric_ca(name)
    commit_dir(previous, public={CERT_FILE: cert_pem}, secret={KEY_FILE: key_pem})
    replace_files(directory, public={CERT_FILE: new.cert_pem}, secret={KEY_FILE: new.key_pem})
    return CARotation(new=new.cert, old=old, previous=previous)


def rotate_peer_cert(
    path: Path,
    peer: str,
    fabric: str = DEFAULT_FABRIC,
    *,
    validity: timedelta = CERT_VALIDITY,
) -> x509.Certificate:
    """Replace the gateway and admin credentials of the peer directory ``path/fabric/peer/``
    with new ones from the fabric's current CA; return the new gateway certificate."""
    name = validate_peer_cert_name(peer)
    directory = _peer_directory(path, fabric, name)
    ca = load_fabric(path, fabric)
    bundle = _read_bundle(directory)
    if ca.cert not in bundle.cas:
        raise CertificateError(
            f"{directory / CA_FILE} does not trust CA {ca_id(ca.cert)}, the current CA of "
            f"fabric {fabric!r}, yet; add it to every peer's bundle first "
            f"(`clusterlink rotate ca-bundle --name {name} --fabric {fabric} --path {path} "
            f"--add {path / fabric / CERT_FILE}`), then rotate"
        )
    refuse_a_stranger(directory / CERT_FILE, name, fabric)
    credentials = issue_peer_credentials(ca, name, validity=validity)
    replace_files(
        directory,
        public={CERT_FILE: credentials.peer.cert_pem, ADMIN_CERT_FILE: credentials.admin.cert_pem},
        secret={KEY_FILE: credentials.peer.key_pem, ADMIN_KEY_FILE: credentials.admin.key_pem},
    )
    return x509.load_pem_x509_certificate(credentials.peer.cert_pem)


def update_ca_bundle(
    path: Path,
    peer: str,
    fabric: str = DEFAULT_FABRIC,
    *,
    add: Sequence[Path] = (),
    remove: Sequence[str] = (),
) -> BundleUpdate:
    """Add CAs (PEM files) to, and remove CAs (PEM files or fingerprints) from, the trust
    bundle of ``path/fabric/peer/``; with neither, just read it."""
    name = validate_peer_cert_name(peer)
    directory = _peer_directory(path, fabric, name)
    bundle = _read_bundle(directory)
    cas = list(bundle.cas)
    added: list[x509.Certificate] = []
    already: list[x509.Certificate] = []
    removed: list[x509.Certificate] = []
    for file in add:
        for ca in _cas_to_add(file, bundle.fabric):
            (already if ca in cas else added).append(ca)
            if ca not in cas:
                cas.append(ca)
    for selector in remove:
        for ca in _cas_to_remove(selector, bundle, directory / CA_FILE):
            if ca not in cas:
                raise NotFoundError(
                    f"CA {ca_id(ca)} is not in {directory / CA_FILE}; nothing to remove"
                )
            cas.remove(ca)
            removed.append(ca)
    rotate = f"`clusterlink rotate peer-cert --name {name} --fabric {fabric} --path {path}`"
    own_issuer = _refuse_removing_own_issuers(directory, bundle, removed, rotate)
    updated = TrustBundle.of(cas, directory / CA_FILE)
    if updated.cas != bundle.cas:
        replace_files(directory, public={CA_FILE: updated.pem()}, secret={})
    return BundleUpdate(
        path=directory / CA_FILE,
        bundle=updated,
        added=tuple(added),
        already_trusted=tuple(already),
        removed=tuple(removed),
        own_issuer=own_issuer,
    )


def _peer_directory(path: Path, fabric: str, name: str) -> Path:
    validate_fabric_name(fabric)
    directory = path / fabric / name
    if not directory.is_dir():
        raise NotFoundError(
            f"no peer directory {directory}; create it with "
            f"`clusterlink create peer-cert --name {name} --fabric {fabric} --path {path}`"
        )
    return directory


def refuse_a_stranger(current: Path, name: str, fabric: str) -> None:
    """A missing or broken certificate may be replaced; one that names someone else may not."""
    try:
        identity = as_peercert(x509.load_pem_x509_certificate(current.read_bytes()))
    except (OSError, ValueError):
        return
    owner, owner_fabric = peer_name_of(identity), fabric_of(identity)
    if (owner, owner_fabric) != (name, fabric):
        raise CertificateError(
            f"{current} is the certificate of peer {owner!r} of fabric {owner_fabric!r}, not "
            f"of peer {name!r} of fabric {fabric!r}; refusing to replace it"
        )


def _read_bundle(directory: Path) -> TrustBundle:
    hint = "copy the fabric's cert.pem there as ca.pem"
    file = directory / CA_FILE
    return TrustBundle.parse(read_bytes(file, "trust bundle", hint), file)


def _cas_to_add(file: Path, fabric: str) -> tuple[x509.Certificate, ...]:
    hint = "give the path of a fabric CA's cert.pem"
    added = TrustBundle.parse(read_bytes(file, "CA certificate", hint), file)
    if added.fabric != fabric:
        raise CertificateError(
            f"{file} holds the CA of fabric {added.fabric!r}, but this peer belongs to fabric "
            f"{fabric!r}; a bundle trusts one fabric"
        )
    now = datetime.now(UTC)
    for ca in added.cas:
        if now > ca.not_valid_after_utc:
            raise CertificateError(
                f"CA {ca_id(ca)} in {file} expired at {format_utc(ca.not_valid_after_utc)}; "
                "refusing to add a CA that nothing can be verified with"
            )
    return added.cas


def _cas_to_remove(
    selector: str, bundle: TrustBundle, source: Path
) -> tuple[x509.Certificate, ...]:
    """The CAs a ``--remove`` names: those in a PEM file, or one fingerprint."""
    file = Path(selector)
    if file.is_file():
        hint = "give a CA's cert.pem or its fingerprint"
        return TrustBundle.parse(read_bytes(file, "CA certificate", hint), file).cas
    return (bundle.find(selector, source),)


def _refuse_removing_own_issuers(
    directory: Path, bundle: TrustBundle, removed: Sequence[x509.Certificate], rotate: str
) -> x509.Certificate | None:
    """The CA that issued the peer's own certificate; refuse if it is among ``removed``
    (and the admin certificate's likewise)."""
    hint = f"rotate it with {rotate}"
    own_issuer = None
    for file in (CERT_FILE, ADMIN_CERT_FILE):
        leaf = parse_cert(read_bytes(directory / file, "certificate", hint), directory / file, hint)
        issuer = bundle.issuer_of(leaf, None)
        if issuer is not None and issuer in removed:
            raise CertificateError(
                f"CA {ca_id(issuer)} issued {directory / file}; removing it would make the "
                f"gateway refuse its own certificate: first {hint}"
            )
        if file == CERT_FILE:
            own_issuer = issuer
    return own_issuer
