"""Who is on the other end of a verified TLS connection.

The gateway learns a caller's identity only from the certificate the TLS layer has already
verified against the fabric CA, never from a request field. These functions read the dict form
that ``SSLObject.getpeercert()`` returns, because they run once per connection and the dict is
already there: no re-parsing with ``cryptography``, no allocation beyond a short list.

Identities live in URI SANs, one scheme per role:

- ``urn:clusterlink:peer:<name>``: a gateway. Its certificate also carries exactly the DNS SAN
  ``<name>``, which is what a dialing gateway checks with ``server_hostname``; the two must
  agree or the certificate names no peer at all.
- ``urn:clusterlink:admin:<name>``: the administrator of gateway ``<name>``. Such a certificate
  carries no DNS SAN and only the clientAuth usage, so it can never pass as a gateway.

Every function answers ``None`` for anything ambiguous (two peer URIs, a peer URI whose DNS SAN
differs, a certificate claiming both roles) rather than guessing; the caller then refuses.
Whether the fabric is the right one is the CA's job (a context trusts one fabric CA only);
``fabric_of`` is there for logs and for a cheap second check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clusterlink.certs.names import PeerName

__all__ = [
    "ADMIN_URI_PREFIX",
    "PEER_URI_PREFIX",
    "PeerCert",
    "admin_peer_of",
    "admin_uri",
    "fabric_of",
    "peer_name_of",
    "peer_uri",
]

PEER_URI_PREFIX = "urn:clusterlink:peer:"
ADMIN_URI_PREFIX = "urn:clusterlink:admin:"

# The dict form of a verified certificate, as ``getpeercert()`` (or asyncio's
# ``get_extra_info("peercert")``) returns it: {"subject": ((("commonName", "a"),), ...),
# "subjectAltName": (("DNS", "a"), ("URI", "urn:..."))}. An empty dict or None means no
# verified certificate.
PeerCert = Mapping[str, Any]


def peer_uri(name: str) -> str:
    return PEER_URI_PREFIX + name


def admin_uri(name: str) -> str:
    return ADMIN_URI_PREFIX + name


def peer_name_of(peercert: PeerCert | None) -> PeerName | None:
    """The gateway this certificate names, or None if it is not (exactly) a peer certificate."""
    dns, peers, admins = _san(peercert)
    if len(peers) != 1 or admins or dns != peers:
        return None
    return PeerName(peers[0])


def admin_peer_of(peercert: PeerCert | None) -> PeerName | None:
    """The gateway this certificate administers, or None if it is not an admin certificate."""
    dns, peers, admins = _san(peercert)
    if len(admins) != 1 or peers or dns:
        return None
    return PeerName(admins[0])


def fabric_of(peercert: PeerCert | None) -> str | None:
    """The fabric named in the subject (O), or None if there is not exactly one."""
    if not peercert:
        return None
    orgs = [v for rdn in peercert.get("subject", ()) for k, v in rdn if k == "organizationName"]
    return orgs[0] if len(orgs) == 1 else None


def _san(peercert: PeerCert | None) -> tuple[list[str], list[str], list[str]]:
    """Split the SAN into DNS names, peer-URI names and admin-URI names."""
    dns: list[str] = []
    peers: list[str] = []
    admins: list[str] = []
    for kind, value in peercert.get("subjectAltName", ()) if peercert else ():
        if kind == "DNS":
            dns.append(value)
        elif kind == "URI" and value.startswith(PEER_URI_PREFIX):
            peers.append(value[len(PEER_URI_PREFIX) :])
        elif kind == "URI" and value.startswith(ADMIN_URI_PREFIX):
            admins.append(value[len(ADMIN_URI_PREFIX) :])
    return dns, peers, admins
