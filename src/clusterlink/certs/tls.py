"""TLS contexts for the two mutual-TLS listeners and their clients.

Every context here is TLS 1.3 only, verifies the other side against the fabric CAs in the trust
bundle ``ca.pem`` (those valid now, see ``bundle``) and nothing else (no system trust store),
and presents a certificate of its own, so both ends always know who the other is:

- peer listener / dialer: both present the gateway certificate. The dialer checks the
  hostname, and the caller passes ``server_hostname=<peer name>``: a gateway reaches peer P
  only if the certificate it gets names P (DNS SAN).
- admin listener / CLI: the listener presents the gateway certificate and requires *some*
  certificate of the fabric, or one of this site's own admin CA (``admin/cert.pem`` when the
  peer's key was made at its site with ``create peer-key``: no secret of the fabric's owner is
  needed to administer one's own gateway). Which certificate may administer is decided per
  request by the admin API with ``admin_peer_of`` (so a wrong certificate gets a readable 403,
  not a handshake reset). The site's admin CA is trusted by this context only: never by the
  peer listener, never by another gateway, so what it signs can administer this peer and
  nothing else. The CLI presents ``admin/cert.pem`` and must pass
  ``server_hostname=<peer name>``.

A certificate of another fabric fails the handshake on every listener, even if the fabrics
share a name: trust is the CA key, not the O field. OpenSSL also enforces the extended key
usages, so an admin certificate (clientAuth only) cannot serve as a listener.

Server contexts select from ``alpn`` when the client offers a match and otherwise complete the
handshake without ALPN; the listener checks ``selected_alpn_protocol()`` itself. Contexts read
the files when built, so a rotated certificate takes effect in contexts built afterwards (a
running gateway builds new ones when its files change, see ``reloading``).

The peer contexts check the validity period of the other side's certificate themselves
(``handshake``), so that a refusal says whose certificate expired and when; the admin contexts
keep OpenSSL's own check, because the CLI's HTTP client drives them in ways we do not hook.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from clusterlink.certs._pem import read_bytes
from clusterlink.certs.bundle import TrustBundle
from clusterlink.certs.handshake import NO_CHECK_TIME, CheckedSSLObject, CheckedSSLSocket
from clusterlink.certs.peerdir import PeerDir
from clusterlink.errors import CertificateError

__all__ = [
    "admin_client_context",
    "admin_server_context",
    "peer_client_context",
    "peer_server_context",
]


def peer_server_context(pd: PeerDir, alpn: Sequence[str]) -> ssl.SSLContext:
    """Serves the gateway certificate; requires a client certificate of the fabric."""
    return _context(pd, server=True, cert=pd.cert_file, key=pd.key_file, alpn=alpn, is_peer=True)


def peer_client_context(pd: PeerDir, alpn: Sequence[str]) -> ssl.SSLContext:
    """Presents the gateway certificate; the server must be the peer named in server_hostname."""
    return _context(pd, server=False, cert=pd.cert_file, key=pd.key_file, alpn=alpn, is_peer=True)


def admin_server_context(pd: PeerDir) -> ssl.SSLContext:
    """Serves the gateway certificate; requires a client certificate of the fabric or of the
    site's admin CA."""
    return _context(pd, server=True, cert=pd.cert_file, key=pd.key_file, trust_site_admin=True)


def admin_client_context(pd: PeerDir) -> ssl.SSLContext:
    """Presents the admin certificate; pass ``server_hostname=pd.name`` when connecting."""
    return _context(pd, server=False, cert=pd.admin_cert_file, key=pd.admin_key_file)


def _context(
    pd: PeerDir,
    *,
    server: bool,
    cert: Path,
    key: Path,
    alpn: Sequence[str] = (),
    is_peer: bool = False,
    trust_site_admin: bool = False,
) -> ssl.SSLContext:
    # PROTOCOL_TLS_CLIENT already sets check_hostname=True and CERT_REQUIRED; a server
    # context needs CERT_REQUIRED set to demand a client certificate.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if is_peer:
        context.verify_flags |= NO_CHECK_TIME
        context.sslobject_class = CheckedSSLObject
        context.sslsocket_class = CheckedSSLSocket
    if alpn:
        context.set_alpn_protocols(list(alpn))
    trusted = _trusted_now(pd)
    if trust_site_admin and pd.admin_ca_file.exists():
        site_ca = read_bytes(pd.admin_ca_file, "admin CA certificate", _broken(pd))
        trusted += site_ca.decode("ascii", errors="replace")
    try:
        context.load_verify_locations(cadata=trusted)
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CertificateError(
            f"cannot load {cert} and its key, or the CAs it trusts, for TLS ({exc}); {_broken(pd)}"
        ) from exc
    return context


def _trusted_now(pd: PeerDir) -> str:
    """The PEM text of the CAs of ``ca.pem`` that are valid now."""
    data = read_bytes(pd.ca_file, "fabric CA certificate", _broken(pd))
    bundle = TrustBundle.parse(data, pd.ca_file)
    return bundle.pem(bundle.trusted_at(datetime.now(UTC), pd.ca_file)).decode("ascii")


def _broken(pd: PeerDir) -> str:
    return f"the peer directory {pd.path} changed or broke after it was loaded"
