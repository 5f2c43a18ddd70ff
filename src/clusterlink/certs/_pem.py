"""Reading certificates and keys back, with errors a user can act on.

Loading happens once, at start-up or before issuing, so this is where the expensive and thorough
checks live (parse, key matches certificate, issued by the CA, inside its validity period).
Each failure names the file and says what to do; a raw ``ValueError`` from ``cryptography``
never reaches the user.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from clusterlink.errors import CertificateError


def read_cert(path: Path, what: str, hint: str) -> x509.Certificate:
    """The certificate at ``path``; ``what`` names it and ``hint`` says how to create it."""
    try:
        return x509.load_pem_x509_certificate(_read(path, what, hint))
    except ValueError as exc:
        raise CertificateError(f"{path} is not a PEM certificate ({exc}); {hint}") from exc


def read_key(path: Path, cert: x509.Certificate, what: str, hint: str) -> PrivateKeyTypes:
    """The private key at ``path``, which must belong to ``cert``; ``hint`` says how to fix."""
    try:
        key = serialization.load_pem_private_key(_read(path, what, hint), password=None)
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        raise CertificateError(f"{path} is not an unencrypted PEM private key ({exc})") from exc
    if key.public_key() != cert.public_key():
        raise CertificateError(
            f"{path} is not the key of the certificate beside it (files are mixed up); {hint}"
        )
    return key


def check_issued_by(cert: x509.Certificate, ca: x509.Certificate, cert_path: Path) -> None:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateError(
            f"{cert_path} was not issued by the CA beside it; "
            "the directory mixes files of different fabrics or peers"
        ) from exc


def check_valid_now(cert: x509.Certificate, path: Path, renew_hint: str) -> None:
    now = datetime.now(UTC)
    if now < cert.not_valid_before_utc:
        raise CertificateError(
            f"{path} is not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; "
            "check this host's clock"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateError(
            f"{path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; {renew_hint}"
        )


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


def _read(path: Path, what: str, hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CertificateError(
            f"no {what} in {path.parent} ({path.name} is missing); {hint}"
        ) from exc
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc.strerror or exc}") from exc
