"""One error hierarchy for the whole product.

Every failure a user can cause or meet is a ``ClusterLinkError`` whose ``str()`` is one line
that says what happened and, where it helps, what to do next. I/O layers translate
``OSError``, ``ssl.SSLError`` and timeouts into these at the boundary (``raise ... from exc``),
so the CLI can catch ``ClusterLinkError`` in one place, print it and exit 1. A traceback
reaching the user means we have a bug.
"""

from __future__ import annotations

__all__ = [
    "AdminAPIError",
    "AlreadyExistsError",
    "BadRequest",
    "CertificateError",
    "ClusterLinkError",
    "ConflictError",
    "LinkRefused",
    "LocalProtocolError",
    "NotFoundError",
    "PeerUnreachable",
    "ProtocolError",
    "RemoteProtocolError",
    "StoreError",
    "TunnelRefused",
    "ValidationError",
]


class ClusterLinkError(Exception):
    """Base of every error the product raises on purpose."""


class ValidationError(ClusterLinkError):
    """A resource, name or argument is invalid; ``field`` is its path, e.g. ``spec.port``."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class NotFoundError(ClusterLinkError):
    """The named resource (or file) does not exist."""


class AlreadyExistsError(ClusterLinkError):
    """Creating something that must not be overwritten (a fabric, a certificate)."""


class ConflictError(ClusterLinkError):
    """The request contradicts the current state (e.g. an import port already in use)."""


class CertificateError(ClusterLinkError):
    """A certificate or key is missing, unreadable, expired or of the wrong fabric/identity."""


class StoreError(ClusterLinkError):
    """The state store could not read or write (disk full, read-only, corrupt)."""


class PeerUnreachable(ClusterLinkError):
    """A peer gateway could not be reached (connect, TLS handshake or timeout)."""


class TunnelRefused(ClusterLinkError):
    """The target gateway answered a request for a tunnel with a refusal.

    ``status`` and ``reason`` are its answer's (403 ``denied``, 404 ``not-found``, 502
    ``unreachable``, 503 ``overloaded``, ...); the message says who answered what.
    """

    def __init__(self, peer: str, *, status: int, reason: str, message: str) -> None:
        self.peer = peer
        self.status = status
        self.reason = reason
        super().__init__(f"peer {peer} answered {status} {reason}: {message}")


class ProtocolError(ClusterLinkError):
    """The peer protocol was broken; which side broke it is the subclass.

    As in h11: ``RemoteProtocolError`` is the other side's fault and is answered (``status``,
    ``reason``); ``LocalProtocolError`` is ours -- a protocol object driven out of order by
    our own code -- and is a bug to fix, never something to answer or to blame a peer for.
    Handlers of bad input catch ``RemoteProtocolError`` only.
    """

    def __init__(self, message: str, *, status: int = 400, reason: str = "malformed") -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


class RemoteProtocolError(ProtocolError):
    """The other gateway broke the peer protocol; ``status`` is the HTTP status to answer
    with, ``reason`` a short machine-readable token (``malformed``, ``too-large``, ...)."""


class LocalProtocolError(ProtocolError):
    """Our own code used a protocol object out of order (a bug: never the peer's fault)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=500, reason="internal")


class BadRequest(ClusterLinkError):
    """A request to the admin API is malformed (not the documents in it, which are
    ``ValidationError``); ``field`` names the part. Answered ``400``."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class AdminAPIError(ClusterLinkError):
    """The admin API answered with an error; ``status`` is its HTTP status."""

    def __init__(self, message: str, *, status: int, field: str | None = None) -> None:
        self.status = status
        self.field = field
        super().__init__(message)


class LinkRefused(ClusterLinkError):
    """Linking with the peer that issued an invitation did not happen, and nothing was
    created on either side.

    ``reason`` is a short token a program can branch on: the inviting peer said ``expired``,
    ``used`` (no use left), ``tampered`` (not the token it issued), ``wrong-peer`` (it invites
    another peer), ``unknown-invitation`` or ``conflict`` (a Peer of that name is in the
    way), or ``refused`` (anything else, said in the message); or this side found the token
    ``malformed`` (no token at all), ``other-fabric``, a Peer in the way (``conflict``), or the
    inviting peer ``unreachable``. ``status`` is the HTTP status that carries it.
    """

    REASONS = (
        "expired",
        "used",
        "tampered",
        "wrong-peer",
        "unknown-invitation",
        "other-fabric",
        "conflict",
        "refused",
        "unreachable",
    )

    def __init__(self, message: str, *, reason: str, status: int = 409) -> None:
        self.reason = reason
        self.status = status
        super().__init__(message)
