"""Reading certificates and keys back, with errors a user can act on.

Loading happens at start-up, on a reload or before issuing, never per connection, so this is
where the expensive and thorough checks live (parse, key matches certificate, issued by the CA,
inside its validity period).
Each failure names the file and says what to do; a raw ``ValueError`` from ``cryptography``
never reaches the user.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from clusterlink.certs.validity import describe_cert, validity_problem
from clusterlink.errors import CertificateError


def read_cert(path: Path, what: str, hint: str) -> x509.Certificate:
    """The certificate at ``path``; ``what`` names it and ``hint`` says how to create it."""
    return parse_cert(read_bytes(path, what, hint), path, hint)


def parse_cert(data: bytes, path: Path, hint: str) -> x509.Certificate:
    """The certificate in ``data``, read from ``path``."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"{path} is not a PEM certificate ({exc}); {hint}") from exc


def read_key(path: Path, cert: x509.Certificate, what: str, hint: str) -> PrivateKeyTypes:
    """The private key at ``path``, which must belong to ``cert``; ``hint`` says how to fix."""
    return parse_key(read_bytes(path, what, hint), path, cert, hint)


def parse_key(data: bytes, path: Path, cert: x509.Certificate, hint: str) -> PrivateKeyTypes:
    """The private key in ``data`` (read from ``path``), which must belong to ``cert``."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        raise CertificateError(f"{path} is not an unencrypted PEM private key ({exc})") from exc
    if key.public_key() != cert.public_key():
        raise CertificateError(
            f"{path} is not the key of the certificate beside it (files are mixed up); {hint}"
        )
    return key


def check_valid_now(
    cert: x509.Certificate, path: Path, owner: str, renew_hint: str, now: datetime | None = None
) -> None:
    """CertificateError unless ``now`` is inside the validity period of ``cert`` (``path``)."""
    now = now or datetime.now(UTC)
    what = f"{path}: {describe_cert(cert, owner)}"
    problem = validity_problem(what, cert.not_valid_before_utc, cert.not_valid_after_utc, now)
    if problem is None:
        return
    is_expired = now > cert.not_valid_after_utc
    raise CertificateError(f"{problem}; {renew_hint}" if is_expired else problem)


def as_peercert(cert: x509.Certificate) -> dict[str, Any]:
    """The parts of ``getpeercert()``'s dict form that the identity functions read.

    Loading a directory then checks identities with exactly the code a connection uses.
    """
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    subject = tuple((("organizationName", o.value),) for o in orgs)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {"subject": subject}
    dns = [("DNS", name) for name in san.get_values_for_type(x509.DNSName)]
    uris = [("URI", uri) for uri in san.get_values_for_type(x509.UniformResourceIdentifier)]
    return {"subject": subject, "subjectAltName": tuple(dns + uris)}


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def read_bytes(path: Path, what: str, hint: str) -> bytes:
    """The contents of ``path``; a missing file says which ``what`` is missing and ``hint``."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CertificateError(
            f"no {what} in {path.parent} ({path.name} is missing); {hint}"
        ) from exc
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc.strerror or exc}") from exc
