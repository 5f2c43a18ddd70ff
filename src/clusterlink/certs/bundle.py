"""The trust bundle: the fabric CAs a gateway accepts, one or more, in ``ca.pem``.

A fabric normally has one CA. Rotating it needs an overlap: for a while every gateway trusts
the old and the new CA, so that peers holding certificates of either can talk while they are
re-issued one by one. Removing the old CA from a bundle afterwards revokes, for that gateway,
every certificate the old CA issued. So ``ca.pem`` is a list of PEM certificates, and:

- every entry is a ClusterLink fabric CA (``CA:TRUE``, ``O=<fabric>``), all of one fabric:
  a bundle that mixes fabrics would make two fabrics trust each other by accident;
- an entry is known by its *fingerprint* (SHA-256 of the DER, ``SHA256:`` and 16 hex digits
  shown; a prefix of at least 8 digits selects it), because an old and a new CA of one fabric
  share their name;
- only the entries inside their validity period are trusted. The TLS contexts leave time
  checks to us (see ``handshake``), so a CA that has expired is left out of the context
  rather than relied on to fail; ``next_change`` says when that set changes next, so a
  running gateway rebuilds its contexts at that moment.

Immutable; parsing checks everything, so a ``TrustBundle`` in hand is a valid one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from clusterlink.certs._pem import as_peercert, is_ca
from clusterlink.certs.identity import fabric_of
from clusterlink.certs.validity import format_utc, validity_problem
from clusterlink.errors import CertificateError, NotFoundError

__all__ = ["TrustBundle", "ca_id", "describe_ca"]

_SHOWN_HEX_DIGITS = 16
_MIN_PREFIX_DIGITS = 8


def ca_id(ca: x509.Certificate) -> str:
    """``SHA256:<16 hex digits>``: how a CA is shown and selected."""
    return "SHA256:" + ca.fingerprint(hashes.SHA256()).hex()[:_SHOWN_HEX_DIGITS]


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """The CAs of one fabric, in file order, no duplicates."""

    fabric: str
    cas: tuple[x509.Certificate, ...]

    @classmethod
    def parse(cls, data: bytes, source: Path | str) -> TrustBundle:
        """Every certificate in ``data``; CertificateError naming ``source`` if any is unfit."""
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise CertificateError(f"{source} is not a PEM certificate bundle ({exc})") from exc
        return cls.of(certs, source)

    @classmethod
    def of(cls, certs: Iterable[x509.Certificate], source: Path | str) -> TrustBundle:
        unique: list[x509.Certificate] = []
        fabrics: set[str] = set()
        for cert in certs:
            fabric = fabric_of(as_peercert(cert))
            if not is_ca(cert) or fabric is None:
                raise CertificateError(
                    f"{source} holds a certificate that is not a ClusterLink fabric CA "
                    f"({cert.subject.rfc4514_string()})"
                )
            fabrics.add(fabric)
            if cert not in unique:
                unique.append(cert)
        if not unique:
            raise CertificateError(f"{source} holds no CA certificate")
        if len(fabrics) > 1:
            raise CertificateError(
                f"{source} mixes the CAs of fabrics {', '.join(sorted(fabrics))}; "
                "one bundle trusts one fabric"
            )
        return cls(fabric=fabrics.pop(), cas=tuple(unique))

    def pem(self, cas: Iterable[x509.Certificate] | None = None) -> bytes:
        """The PEM text of ``cas`` (default: all of them)."""
        chosen = self.cas if cas is None else cas
        return b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in chosen)

    def valid_at(self, now: datetime) -> tuple[x509.Certificate, ...]:
        return tuple(ca for ca in self.cas if _is_valid_at(ca, now))

    def trusted_at(self, now: datetime, source: Path) -> tuple[x509.Certificate, ...]:
        """``valid_at(now)``, which must not be empty; ``source`` names the bundle in errors."""
        valid = self.valid_at(now)
        if not valid:
            problems = "; ".join(self.invalid_at(now))
            raise CertificateError(f"{source} holds no CA that is valid now: {problems}")
        return valid

    def invalid_at(self, now: datetime) -> list[str]:
        """One sentence for each CA not trusted at ``now`` (expired or not valid yet)."""
        problems = []
        for ca in self.cas:
            what = f"CA {ca_id(ca)} of fabric {self.fabric}"
            problem = validity_problem(what, ca.not_valid_before_utc, ca.not_valid_after_utc, now)
            if problem is not None:
                problems.append(problem)
        return problems

    def next_change(self, now: datetime) -> datetime | None:
        """When the set of CAs valid at ``now`` changes next (None: never)."""
        moments = [
            moment
            for ca in self.cas
            for moment in (ca.not_valid_before_utc, ca.not_valid_after_utc)
            if moment > now
        ]
        return min(moments, default=None)

    def issuer_of(self, leaf: x509.Certificate, now: datetime | None) -> x509.Certificate | None:
        """The CA that signed ``leaf``, if any; only among those valid at ``now`` unless None."""
        for ca in self.cas if now is None else self.valid_at(now):
            try:
                leaf.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return ca
        return None

    def find(self, selector: str, source: Path) -> x509.Certificate:
        """The CA whose fingerprint starts with ``selector`` (``SHA256:`` optional); ``source``
        names the bundle in errors."""
        digits = selector.lower().removeprefix("sha256:").replace(":", "")
        if len(digits) < _MIN_PREFIX_DIGITS or any(c not in "0123456789abcdef" for c in digits):
            raise CertificateError(
                f"{selector!r} is neither a CA certificate file nor a fingerprint "
                f"(SHA256: and at least {_MIN_PREFIX_DIGITS} hex digits, as listed)"
            )
        matches = [
            ca for ca in self.cas if ca.fingerprint(hashes.SHA256()).hex().startswith(digits)
        ]
        if not matches:
            raise NotFoundError(f"no CA with fingerprint {selector} in {source}")
        if len(matches) > 1:
            raise CertificateError(
                f"fingerprint {selector} matches several CAs in {source}; give more digits"
            )
        return matches[0]


def describe_ca(ca: x509.Certificate) -> str:
    """``SHA256:...  valid <from> until <until>``."""
    return (
        f"{ca_id(ca)}  valid {format_utc(ca.not_valid_before_utc)} "
        f"until {format_utc(ca.not_valid_after_utc)}"
    )


def _is_valid_at(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
