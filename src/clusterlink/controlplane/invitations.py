"""Invitation tokens and the rules that accept or refuse them: pure, clock passed in.

Site A invites site B with a token (``clusterlink invite``); B's gateway presents it to A's
gateway (``clusterlink link``), and each creates the other's Peer. The token is text::

    cl-invite-v1.<base64url, no padding, of a JSON object>

    {"v": 1, "id": "<16 hex>", "peer": "<A>", "gateways": ["<host:port>", ...],
     "fabricCA": "SHA256:<64 hex>", "invites": "<B>", "secret": "<43 base64url>",
     "expires": "<ISO-8601 UTC>", "uses": <n>}

It holds what B needs to find A and to know it is the right A (``gateways``, ``peer``, and the
fingerprint of the CA that issued A's certificate: B dials only a gateway whose certificate
names ``peer`` and chains to a CA of its own fabric), and what A needs to know the token is
one it issued (``id``, ``secret``). Nothing in it lets its holder pass for A: no key, and the
secret only ever opens this one invitation, for the peer it names, until it expires.

A keeps of it only digests (``store.invitations``): SHA-256 of the secret and of the whole
token text. So presenting a token proves possession of the secret, and a token changed in any
way, even one whose secret is right, is "tampered". Who presents it is read from the caller's
verified certificate, never from the token or the request.

The checks, in the order they are made (each refusal is ``LinkRefused`` with its reason):

1. at B, before dialling anything: the token decodes (``malformed``) and its CA is one that
   B trusts (``other-fabric``): ``check_fabric``;
2. at A: the id is one A issued (``unknown-invitation``), then ``check_presented``: the secret
   and the whole token match what A recorded (``tampered``, compared in constant time), it has
   not expired (``expired``, by A's clock and A's record), a use is left (``used``), and the
   caller's certificate names the invited peer (``wrong-peer``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from clusterlink.addresses import Address, format_address, parse_address
from clusterlink.api import API_VERSION, Peer, resource_from_dict
from clusterlink.api.names import validate_peer_name
from clusterlink.certs import format_utc
from clusterlink.errors import BadRequest, LinkRefused, ValidationError
from clusterlink.ids import PeerName
from clusterlink.store.invitations import InvitationRecord

__all__ = [
    "MAX_GATEWAYS",
    "MAX_TOKEN_CHARS",
    "MAX_TTL_S",
    "MAX_USES",
    "TOKEN_PREFIX",
    "Invitation",
    "advertised",
    "ca_fingerprint",
    "check_fabric",
    "check_presented",
    "decode_token",
    "encode_token",
    "new_invitation",
    "peer_of",
    "record_of",
    "short_ca",
]

TOKEN_PREFIX: Final = "cl-invite-v1."
MAX_TOKEN_CHARS: Final = 4096
MAX_GATEWAYS: Final = 16
MAX_TTL_S: Final = 30 * 24 * 3600
MAX_USES: Final = 1000

_VERSION = 1
_FIELDS = ("v", "id", "peer", "gateways", "fabricCA", "invites", "secret", "expires", "uses")
_SECRET_BYTES = 32
_ID_BYTES = 8
_FINGERPRINT_PREFIX = "SHA256:"
_SHOWN_HEX_DIGITS = 16  # as certs.ca_id shows a CA
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Invitation:
    """A decoded token (see the module for the fields); ``expires_at`` is UTC, whole seconds."""

    id: str
    peer: PeerName
    gateways: tuple[Address, ...]
    fabric_ca: str  # "SHA256:" and 64 hex digits
    invited: PeerName
    secret: str
    expires_at: datetime
    uses: int


def new_invitation(
    *,
    peer: PeerName,
    gateways: tuple[Address, ...],
    fabric_ca: str,
    invited: PeerName,
    ttl_s: int,
    uses: int,
    now: datetime,
) -> Invitation:
    """A fresh invitation with a random id and secret, expiring ``ttl_s`` after ``now``."""
    return Invitation(
        id=secrets.token_hex(_ID_BYTES),
        peer=peer,
        gateways=gateways,
        fabric_ca=fabric_ca,
        invited=invited,
        secret=secrets.token_urlsafe(_SECRET_BYTES),
        expires_at=(now + timedelta(seconds=ttl_s)).replace(microsecond=0),
        uses=uses,
    )


def encode_token(invitation: Invitation) -> str:
    fields = {
        "v": _VERSION,
        "id": invitation.id,
        "peer": invitation.peer,
        "gateways": [format_address(g) for g in invitation.gateways],
        "fabricCA": invitation.fabric_ca,
        "invites": invitation.invited,
        "secret": invitation.secret,
        "expires": _iso(invitation.expires_at),
        "uses": invitation.uses,
    }
    raw = json.dumps(fields, separators=(",", ":")).encode("ascii")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_token(text: str) -> Invitation:
    """The invitation in a token; ``LinkRefused`` (``malformed``) saying what is wrong."""
    try:
        return _decode(text.strip())
    except (ValueError, ValidationError, KeyError, TypeError, RecursionError) as exc:
        raise LinkRefused(
            f"this is not a ClusterLink invitation token ({exc}); use the token exactly as "
            "`clusterlink invite` wrote it",
            reason="malformed",
            status=400,
        ) from None


def record_of(invitation: Invitation, token: str, *, now: datetime) -> InvitationRecord:
    """What the issuing gateway keeps: digests, never the secret or the token."""
    return InvitationRecord(
        id=invitation.id,
        invited=invitation.invited,
        secret_sha256=_sha256(invitation.secret),
        token_sha256=_sha256(token.strip()),
        expires_at=invitation.expires_at,
        uses=invitation.uses,
        used=0,
        created_at=now,
    )


def ca_fingerprint(ca: x509.Certificate) -> str:
    """How a token names a CA: ``SHA256:`` and the 64 hex digits of its DER's digest."""
    return _FINGERPRINT_PREFIX + ca.fingerprint(hashes.SHA256()).hex()


def short_ca(fingerprint: str) -> str:
    """``SHA256:`` and 16 hex digits, as the rest of the product shows a CA."""
    return fingerprint[: len(_FINGERPRINT_PREFIX) + _SHOWN_HEX_DIGITS]


def check_fabric(invitation: Invitation, *, trusted: frozenset[str], own: str) -> None:
    """At the invited side: the token's CA must be one this peer trusts (``trusted``, full
    fingerprints); ``own`` is the CA of this peer's certificate, named in the refusal."""
    if invitation.fabric_ca not in trusted:
        raise LinkRefused(
            f"this token is for another fabric (CA {short_ca(invitation.fabric_ca)}), this "
            f"peer belongs to fabric CA {short_ca(own)}",
            reason="other-fabric",
        )


def check_presented(
    token: str,
    invitation: Invitation,
    record: InvitationRecord,
    *,
    caller: PeerName,
    now: datetime,
) -> None:
    """At the issuing side: may ``caller`` (from its certificate) link with ``token`` (which
    decodes to ``invitation``), given what was recorded at issue? ``LinkRefused`` if not,
    with the status to answer on the peer protocol."""
    ask_again = (
        f"ask for a new one: `clusterlink invite --name {record.invited}` at {invitation.peer}"
    )
    is_secret_right = hmac.compare_digest(_sha256(invitation.secret), record.secret_sha256)
    is_token_whole = hmac.compare_digest(_sha256(token.strip()), record.token_sha256)
    if not (is_secret_right and is_token_whole):
        raise LinkRefused(
            f"the token is not the one issued for invitation {record.id} (altered or damaged "
            "on the way); use it exactly as `clusterlink invite` wrote it, or "
            f"{ask_again}",
            reason="tampered",
            status=403,
        )
    if now >= record.expires_at:
        raise LinkRefused(
            f"invitation {record.id} expired at {format_utc(record.expires_at)} (now "
            f"{format_utc(now)}); {ask_again}",
            reason="expired",
            status=410,
        )
    if record.used >= record.uses:
        raise LinkRefused(
            f"invitation {record.id} has been used already ({record.used} of {record.uses} "
            f"link(s)); {ask_again}",
            reason="used",
            status=410,
        )
    if caller != record.invited:
        raise LinkRefused(
            f"invitation {record.id} invites peer {record.invited}, but the caller's "
            f"certificate names peer {caller}; link from {record.invited}'s gateway, or ask "
            f"for an invitation for {caller}",
            reason="wrong-peer",
            status=403,
        )


def peer_of(name: str, gateways: tuple[Address, ...], labels: dict[str, str]) -> Peer:
    """The Peer that a link creates (``ValidationError`` naming the field if it cannot be
    one: a host or a label that a Peer may not have)."""
    peer = resource_from_dict(
        {
            "apiVersion": API_VERSION,
            "kind": "Peer",
            "metadata": {"name": name, "labels": labels},
            "spec": {"gateways": [{"host": host, "port": port} for host, port in gateways]},
        }
    )
    assert isinstance(peer, Peer)  # the document's kind
    return peer


def advertised(listen: str | None, given: tuple[Address, ...]) -> tuple[Address, ...]:
    """Where other sites dial this gateway: ``given`` (``--address``), else the peer
    listener's bound address, which must then name one host (``BadRequest`` if it is a
    wildcard, which says nothing to another site)."""
    if given:
        return given
    if listen is None:
        raise BadRequest("this gateway's peer listener is not bound yet", field="gateways")
    host, port = parse_address(listen)
    if host in _WILDCARD_HOSTS:
        raise BadRequest(
            f"this gateway listens on {listen}, every address of its host: say which one "
            "other sites dial with --address HOST:PORT",
            field="gateways",
        )
    return ((host, port),)


def _decode(text: str) -> Invitation:
    if len(text) > MAX_TOKEN_CHARS:
        raise ValueError(f"it is {len(text)} characters long, over {MAX_TOKEN_CHARS}")
    if not text.startswith(TOKEN_PREFIX):
        raise ValueError(f"it does not start with {TOKEN_PREFIX!r}")
    payload = text.removeprefix(TOKEN_PREFIX)
    try:
        raw = base64.b64decode(payload + "=" * (-len(payload) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("its body is not base64url") from None
    fields = json.loads(raw)
    if not isinstance(fields, dict) or sorted(fields) != sorted(_FIELDS):
        raise ValueError(f"its body is not an object of exactly {', '.join(_FIELDS)}")
    if fields["v"] != _VERSION:
        raise ValueError(f"it is version {fields['v']!r}; this gateway reads version {_VERSION}")
    gateways = fields["gateways"]
    if not isinstance(gateways, list) or not 1 <= len(gateways) <= MAX_GATEWAYS:
        raise ValueError(f"gateways must list 1 to {MAX_GATEWAYS} addresses")
    expires_at = datetime.fromisoformat(_text(fields, "expires"))
    if expires_at.tzinfo is None:
        raise ValueError("expires has no time zone")
    uses = fields["uses"]
    if type(uses) is not int or not 1 <= uses <= MAX_USES:
        raise ValueError(f"uses must be 1 to {MAX_USES}")
    fabric_ca = _text(fields, "fabricCA")
    digits = fabric_ca.removeprefix(_FINGERPRINT_PREFIX)
    if len(digits) != 64 or not fabric_ca.startswith(_FINGERPRINT_PREFIX) or not _is_hex(digits):
        raise ValueError("fabricCA is not SHA256: and 64 hex digits")
    return Invitation(
        id=_text(fields, "id"),
        peer=validate_peer_name(_text(fields, "peer")),
        gateways=tuple(_address(gateway) for gateway in gateways),
        fabric_ca=fabric_ca,
        invited=validate_peer_name(_text(fields, "invites")),
        secret=_text(fields, "secret"),
        expires_at=expires_at.astimezone(UTC),
        uses=uses,
    )


def _address(value: object) -> Address:
    if not isinstance(value, str):
        raise ValueError("gateways must be HOST:PORT strings")
    host, port = parse_address(value, what="gateway")
    if not 1 <= port <= 65535:
        raise ValueError(f"gateway {value!r}: the port must be 1..65535")
    return host, port


def _text(fields: dict[str, object], name: str) -> str:
    value = fields[name]
    if not isinstance(value, str) or not value.isascii() or not value:
        raise ValueError(f"{name} is not a non-empty ASCII string")
    return value


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("ascii", errors="replace")).hexdigest()
