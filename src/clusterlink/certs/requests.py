"""Certificate requests: a site asks for its gateway certificate without giving up its key.

``create peer-cert`` makes a peer's key where the fabric's CA is, which is fine on one machine
and wrong across boundaries: the key would have to travel to the site. A certificate signing
request (PKCS #10) turns that around. The site makes its key and a request that names the
peer exactly as ``issue_peer_cert`` would (DNS SAN and ``urn:clusterlink:peer:`` URI, server
and client auth, not a CA), the request travels, the certificate comes back; the key never
leaves the site.

The fabric's owner signs what a request *proves* (the key: the request is signed with it) and
only the names it *asks for* that a peer may have. ``check_peer_request`` is strict on
purpose: a request that asks for anything a peer certificate does not carry (to be a CA, a
second name, an admin identity, a subject of its own choosing, an unknown extension) is
refused whole, with what it asked for, rather than signed with the extras dropped: the
owner should learn that someone asked for more. The certificate is then built from the
fabric's own profile (``issuing``), never by copying extensions from the request.

Pure: bytes in, objects or ``CertificateError`` out; files are ``site``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from clusterlink.certs.identity import ADMIN_URI_PREFIX, PEER_URI_PREFIX, peer_uri
from clusterlink.certs.issuing import (
    CERT_VALIDITY,
    PEER_USAGES,
    FabricCA,
    issue_peer_cert,
    leaf_key_usage,
    peer_names,
)
from clusterlink.certs.names import PeerName, validate_peer_cert_name
from clusterlink.errors import CertificateError, ValidationError

__all__ = ["PeerRequest", "check_peer_request", "new_peer_request", "sign_peer_request"]

_CN_MAX_CHARS = 64
_MAKE_ONE = "make the request with `clusterlink create peer-key --name PEER` at the site"
# What a peer's request may ask for; anything else is refused by name.
_ALLOWED_EXTENSIONS = {
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
}


@dataclass(frozen=True, slots=True)
class PeerRequest:
    """A new key (PEM, stays at the site) and the request for its certificate (PEM)."""

    key_pem: bytes
    csr_pem: bytes


def new_peer_request(peer: PeerName) -> PeerRequest:
    """A new ECDSA P-256 key for gateway ``peer`` and a request naming it as the fabric
    would; ``peer`` must already be validated."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, peer)] if len(peer) <= _CN_MAX_CHARS else []
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(x509.SubjectAlternativeName(peer_names(peer)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(PEER_USAGES)), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return PeerRequest(key_pem=key_pem, csr_pem=csr.public_bytes(serialization.Encoding.PEM))


def check_peer_request(
    data: bytes, source: Path | str
) -> tuple[PeerName, x509.CertificateSigningRequest]:
    """The peer a request (PEM ``data``, read from ``source``) asks to be, once it is shown to
    ask for that and nothing more; CertificateError naming what is wrong otherwise."""
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CertificateError(
            f"{source} is not a PEM certificate request ({exc}); {_MAKE_ONE}"
        ) from exc
    if not csr.is_signature_valid:
        raise CertificateError(
            f"{source} is not signed by the key it holds (damaged or altered on the way); "
            "ask the site for its request.csr again"
        )
    _check_key(csr, source)
    extensions = _extensions(csr, source)
    peer = _requested_peer(extensions, source)
    _check_not_a_ca(extensions, source)
    _check_usages(extensions, source)
    _check_subject(csr.subject, peer, source)
    return peer, csr


def sign_peer_request(
    ca: FabricCA,
    csr: x509.CertificateSigningRequest,
    peer: PeerName,
    *,
    validity: timedelta = CERT_VALIDITY,
    now: datetime | None = None,
) -> x509.Certificate:
    """The certificate of ``peer`` for the request's key (checked by ``check_peer_request``),
    from the fabric's profile."""
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # _check_key made sure
    return issue_peer_cert(ca, peer, key, validity=validity, now=now)


def _check_key(csr: x509.CertificateSigningRequest, source: Path | str) -> None:
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return
    what = (
        f"an ECDSA key on curve {key.curve.name}"
        if isinstance(key, ec.EllipticCurvePublicKey)
        else f"a {type(key).__name__.removeprefix('_').removesuffix('PublicKey')} key"
    )
    raise CertificateError(
        f"{source} holds {what}; the fabric issues certificates for ECDSA P-256 keys only: "
        f"{_MAKE_ONE}"
    )


def _extensions(csr: x509.CertificateSigningRequest, source: Path | str) -> x509.Extensions:
    try:
        extensions = csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CertificateError(f"{source} has extensions that cannot be read ({exc})") from exc
    for extension in extensions:
        if extension.oid not in _ALLOWED_EXTENSIONS:
            name = getattr(extension.oid, "_name", None) or extension.oid.dotted_string
            raise CertificateError(
                f"{source} asks for the extension {name}, which a peer certificate does not "
                f"carry; refusing to sign it: {_MAKE_ONE}"
            )
    return extensions


def _requested_peer(extensions: x509.Extensions, source: Path | str) -> PeerName:
    """The one peer name the SAN asks for (DNS name and matching peer URI, nothing else)."""
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateError(
            f"{source} asks for no peer name: a peer's request carries the names "
            f"DNS:<peer> and URI:{PEER_URI_PREFIX}<peer>; {_MAKE_ONE}"
        ) from None
    dns = san.get_values_for_type(x509.DNSName)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if any(uri.startswith(ADMIN_URI_PREFIX) for uri in uris):
        raise CertificateError(
            f"{source} asks to be an administrator ({', '.join(uris)}); a peer's request names "
            "the gateway only, and a site makes its own admin certificate"
        )
    shown = ", ".join(_describe(name) for name in san)
    if len(dns) != 1 or len(san) != 2 or uris != [peer_uri(dns[0])]:
        raise CertificateError(
            f"{source} asks for the names {shown}; a peer's request asks for exactly "
            f"DNS:<peer> and URI:{PEER_URI_PREFIX}<peer>, nothing more: refusing to sign it"
        )
    try:
        return validate_peer_cert_name(dns[0])
    except ValidationError as exc:
        raise CertificateError(f"{source} asks for an invalid peer name: {exc}") from exc


def _check_not_a_ca(extensions: x509.Extensions, source: Path | str) -> None:
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    try:
        usage: x509.KeyUsage | None = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    signs = usage is not None and (usage.key_cert_sign or usage.crl_sign)
    if (constraints is not None and constraints.ca) or signs:
        raise CertificateError(
            f"{source} asks to be a certificate authority; a peer may not sign certificates: "
            "refusing to sign it"
        )


def _check_usages(extensions: x509.Extensions, source: Path | str) -> None:
    try:
        usages = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    extra = [u for u in usages if u not in PEER_USAGES]
    if extra:
        names = ", ".join(getattr(u, "_name", None) or u.dotted_string for u in extra)
        raise CertificateError(
            f"{source} asks for the key usages {names}; a peer's certificate serves and dials "
            "(serverAuth, clientAuth), nothing more: refusing to sign it"
        )


def _check_subject(subject: x509.Name, peer: PeerName, source: Path | str) -> None:
    """The subject may name the peer (CN) and nothing else: the fabric sets O itself."""
    for attribute in subject:
        if attribute.oid != NameOID.COMMON_NAME or attribute.value != peer:
            raise CertificateError(
                f"{source} asks for the subject {subject.rfc4514_string()!r}; a peer's "
                f"request names the peer only (CN={peer}), the fabric sets the rest: {_MAKE_ONE}"
            )


def _describe(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    return f"{type(name).__name__}:{name.value}"
