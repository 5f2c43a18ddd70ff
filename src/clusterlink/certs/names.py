"""Peer and fabric names as certificates and directories use them.

A peer name is the API's ``PeerName`` (one DNS-name rule for resources and certificates, kept
in ``clusterlink.api.names``); a certificate adds one restriction. Python's ``ssl`` treats a
``server_hostname`` shaped like an IPv4 address as an IP and never matches it against a DNS
SAN, so a peer called ``10.0.0.1`` could never be dialed: such names get no certificate.

A fabric name is one path component and the subject O of every certificate of the fabric, so
it must be safe as a directory name: no ``/``, no ``.``/``..``, no hidden names.

Validation never normalises: ``Peer-A`` is rejected with the rule rather than silently becoming
``peer-a``, so the name a user typed is the name in the certificate.
"""

from __future__ import annotations

import re

from clusterlink.api.names import PeerName, validate_peer_name
from clusterlink.errors import ValidationError

__all__ = ["DEFAULT_FABRIC", "PeerName", "validate_fabric_name", "validate_peer_cert_name"]

DEFAULT_FABRIC = "default_fabric"

_IPV4_LIKE = re.compile(r"[0-9]+(\.[0-9]+){3}")
_FABRIC = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
_FABRIC_RULE = "use 1-64 letters, digits, '_', '-' and '.', not starting with '.'"


def validate_peer_cert_name(name: str) -> PeerName:
    """Return ``name`` as a ``PeerName`` a certificate can carry, else raise ValidationError."""
    peer = validate_peer_name(name)
    if _IPV4_LIKE.fullmatch(peer):
        raise ValidationError(
            f"peer name {name!r} must not look like an IPv4 address: "
            "TLS would check it as an address, never as the certificate's name"
        )
    return peer


def validate_fabric_name(name: str) -> str:
    """Return ``name`` if it is a safe fabric name, else raise ValidationError."""
    if not _FABRIC.fullmatch(name):
        raise ValidationError(f"invalid fabric name {name!r}: {_FABRIC_RULE}")
    return name
