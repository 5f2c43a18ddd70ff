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
    "AuthorizationDenied",
    "CertificateError",
    "ClusterLinkError",
    "ConflictError",
    "NotFoundError",
    "PeerUnreachable",
    "ProtocolError",
    "StoreError",
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


class AuthorizationDenied(ClusterLinkError):
    """A policy decision denied the connection; ``decided_by`` names the policy."""

    def __init__(self, message: str, *, decided_by: str) -> None:
        self.decided_by = decided_by
        super().__init__(message)


class ProtocolError(ClusterLinkError):
    """The other side broke the peer protocol; ``status`` is the HTTP status to answer with.

    ``reason`` is a short machine-readable token (``malformed``, ``denied``, ...).
    """

    def __init__(self, message: str, *, status: int = 400, reason: str = "malformed") -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


class AdminAPIError(ClusterLinkError):
    """The admin API answered with an error; ``status`` is its HTTP status."""

    def __init__(self, message: str, *, status: int, field: str | None = None) -> None:
        self.status = status
        self.field = field
        super().__init__(message)
