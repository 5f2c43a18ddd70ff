"""Making the fabric CA and the certificates it signs, in memory.

This module only builds keys and certificates; it neither reads nor writes files (see
``fabric.py``), so creating a peer and later replacing its certificates (rotation) share one
issuing path and the profile below lives in one place.

Profile (DESIGN §3):

- Keys are ECDSA P-256: the cheapest handshake signature that every TLS 1.3 stack supports.
- The CA is self-signed, ``CA:TRUE, pathlen:0`` (it signs leaves only), keyCertSign+cRLSign,
  subject ``O=<fabric>, CN=<fabric> fabric CA``, valid 10 years.
- A peer certificate: ``O=<fabric>, CN=<peer>``, SAN ``DNS:<peer>`` and
  ``URI:urn:clusterlink:peer:<peer>``, serverAuth+clientAuth (it both serves and dials).
- An admin certificate: ``O=<fabric>, CN=admin``, SAN ``URI:urn:clusterlink:admin:<peer>``
  only and clientAuth only, so it can never pass as a gateway.
- A site's admin CA (``new_site_admin``, for a peer whose key was made at its site): self-signed,
  ``CA:TRUE, pathlen:0``, subject ``CN=<peer> admin CA``; it signs exactly one admin
  certificate, as above but without O (the site does not know its fabric yet), and its key is
  thrown away at once, so it can never sign anything else. Only that peer's admin API trusts
  it (``tls.admin_server_context``).
- Leaves are valid 2 years by default, never beyond the CA; every ``notBefore`` is set a few
  minutes back so that a peer whose clock is slightly behind accepts a fresh certificate.
- Serials are random; SKI/AKI are present so strict X.509 verifiers accept the chain.

The fabric name goes into O of every certificate, so certificates of two fabrics never look
alike even if someone trusts both CAs by mistake. CN is informational only (identities are in
the SAN); X.509 caps it at 64 characters, so a longer one is left out rather than truncated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusterlink.certs.identity import admin_uri, peer_uri
from clusterlink.certs.names import PeerName

__all__ = [
    "CA_VALIDITY",
    "CERT_VALIDITY",
    "PEER_USAGES",
    "FabricCA",
    "IssuedCert",
    "PeerCredentials",
    "SiteAdmin",
    "issue_peer_cert",
    "issue_peer_credentials",
    "leaf_key_usage",
    "new_fabric_ca",
    "new_site_admin",
    "peer_names",
]

CA_VALIDITY = timedelta(days=3650)
CERT_VALIDITY = timedelta(days=730)
_CLOCK_SKEW = timedelta(minutes=5)
_CN_MAX_CHARS = 64
PEER_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
"""A gateway both serves (its peer listener) and dials (tunnels, heartbeats)."""


@dataclass(frozen=True, slots=True)
class FabricCA:
    """The fabric's certificate authority; ``name`` is the fabric name (the CA's O)."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A freshly issued certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """Everything a peer directory holds besides ``ca.pem``: the gateway's and its admin's."""

    peer: IssuedCert
    admin: IssuedCert


@dataclass(frozen=True, slots=True)
class SiteAdmin:
    """A site's own admin CA (its certificate only: the key is gone) and the one admin
    certificate it signed."""

    ca_pem: bytes
    admin: IssuedCert


def new_fabric_ca(
    fabric: str, *, validity: timedelta = CA_VALIDITY, now: datetime | None = None
) -> FabricCA:
    """A new self-signed fabric CA; ``fabric`` must already be validated."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _subject(fabric, f"{fabric} fabric CA")
    cert = (
        _builder(subject, key.public_key(), now, now + validity)
        .issuer_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return FabricCA(name=fabric, cert=cert, key=key)


def issue_peer_credentials(
    ca: FabricCA,
    peer: PeerName,
    *,
    validity: timedelta = CERT_VALIDITY,
    now: datetime | None = None,
) -> PeerCredentials:
    """New keys and certificates for gateway ``peer`` and for its administrator."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    gateway = issue_peer_cert(ca, peer, key.public_key(), validity=validity, now=now)
    admin = _issue_admin(
        ca.cert, ca.key, _subject(ca.name, "admin"), peer, now=now, validity=validity
    )
    return PeerCredentials(peer=_issued(gateway, key), admin=admin)


def issue_peer_cert(
    ca: FabricCA,
    peer: PeerName,
    public_key: ec.EllipticCurvePublicKey,
    *,
    validity: timedelta = CERT_VALIDITY,
    now: datetime | None = None,
) -> x509.Certificate:
    """The certificate of gateway ``peer`` for ``public_key``, whoever holds its private key
    (here, or a site that sent a certificate request)."""
    return _sign_leaf(
        ca.cert,
        ca.key,
        public_key,
        subject=_subject(ca.name, peer),
        san=peer_names(peer),
        usages=list(PEER_USAGES),
        now=now or datetime.now(UTC),
        validity=validity,
    )


def new_site_admin(
    peer: PeerName, *, validity: timedelta = CERT_VALIDITY, now: datetime | None = None
) -> SiteAdmin:
    """A new admin CA for ``peer``'s own site and the admin certificate it signs; the CA's
    key is dropped when this returns (see the module)."""
    now = now or datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    subject = _named(f"{peer} admin CA", fallback="admin CA")
    ca_cert = (
        _builder(subject, ca_key.public_key(), now, now + validity + _CLOCK_SKEW)
        .issuer_name(subject)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    admin = _issue_admin(ca_cert, ca_key, _named("admin"), peer, now=now, validity=validity)
    return SiteAdmin(ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM), admin=admin)


def peer_names(peer: str) -> list[x509.GeneralName]:
    """The SAN of gateway ``peer``: its DNS name (checked by dialers) and its peer URI."""
    return [x509.DNSName(peer), x509.UniformResourceIdentifier(peer_uri(peer))]


def leaf_key_usage() -> x509.KeyUsage:
    """The key usage of every leaf: digitalSignature only (the TLS 1.3 handshake)."""
    return _key_usage(cert_sign=False)


def _issue_admin(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    peer: PeerName,
    *,
    now: datetime,
    validity: timedelta,
) -> IssuedCert:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign_leaf(
        issuer,
        issuer_key,
        key.public_key(),
        subject=subject,
        san=[x509.UniformResourceIdentifier(admin_uri(peer))],
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        now=now,
        validity=validity,
    )
    return _issued(cert, key)


def _sign_leaf(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    *,
    subject: x509.Name,
    san: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    now: datetime,
    validity: timedelta,
) -> x509.Certificate:
    not_after = min(now + validity, issuer.not_valid_after_utc)
    return (
        _builder(subject, public_key, now, not_after)
        .issuer_name(issuer.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def _issued(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> IssuedCert:
    return IssuedCert(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def _builder(
    subject: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    """The part every certificate shares: subject, key, serial, validity, SKI."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _subject(fabric: str, common_name: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, fabric)]
    if len(common_name) <= _CN_MAX_CHARS:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _named(common_name: str, *, fallback: str = "") -> x509.Name:
    """A subject of CN only (``fallback`` when ``common_name`` is too long for a CN)."""
    chosen = common_name if len(common_name) <= _CN_MAX_CHARS else fallback
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, chosen)] if chosen else [])


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """keyCertSign+cRLSign for the CA; digitalSignature (the TLS 1.3 handshake) for leaves."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
