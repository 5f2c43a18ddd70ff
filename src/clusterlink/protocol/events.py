"""The peer protocol's vocabulary: what one gateway asks another and what it hears back.

These are plain values, like h11's events: frozen, compared by value, printable in a test
failure. They know nothing of bytes; ``server`` and ``client`` translate them to and from
HTTP/1.1. ``NEED_DATA`` and ``CLOSED`` are sentinels (compare with ``is``), never events.

Refusal reasons are short tokens a program can branch on; the message is for people:

==== ================ =====================================================
400  malformed        the request broke the protocol (bad head, attributes)
403  denied           ingress policy said no
404  not-found        no such export
404  unknown-path     a GET for anything but /healthz
405  unknown-method   neither GET, CONNECT nor POST /link
408  timeout          the request head did not arrive in time
413  too-large        a POST /link body is over the limit
431  too-large        the request head is over the limit
502  unreachable      the export's service did not answer
503  overloaded       the gateway sheds load
==== ================ =====================================================

``POST /link`` (a peer presenting an invitation) has refusals of its own, decided by the
control plane: ``tampered``, ``expired``, ``used``, ``wrong-peer``, ``unknown-invitation``,
``conflict``, ``malformed`` (see ``controlplane.invitations``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from clusterlink.errors import RemoteProtocolError, ValidationError
from clusterlink.ids import (
    SERVICE_PROTOCOLS,
    NamespacedName,
    ServiceProtocol,
    is_dns_label,
    is_dns_subdomain,
)

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "PROTOCOL_ATTRIBUTE",
    "ConnectRequest",
    "ExportRef",
    "Health",
    "HealthRequest",
    "LinkAnswer",
    "LinkRequest",
    "Signal",
    "Verdict",
]


class Signal(enum.Enum):
    """What ``next_event()`` returns when there is no event: wait for bytes, or stop."""

    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Signal.NEED_DATA
CLOSED: Final = Signal.CLOSED


@dataclass(frozen=True, slots=True)
class ExportRef:
    """An export on the target peer: ``<namespace>/<name>`` on the wire.

    The namespace is a DNS-1123 label, the name a DNS-1123 subdomain (Kubernetes' rules), so
    a valid reference never needs escaping in a request target or a log line.
    """

    namespace: str
    name: str

    def __post_init__(self) -> None:
        if not is_dns_label(self.namespace):
            raise ValidationError(
                f"export namespace {self.namespace!r} is not a DNS-1123 label "
                "(lower-case letters, digits and '-', at most 63)"
            )
        if not is_dns_subdomain(self.name):
            raise ValidationError(
                f"export name {self.name!r} is not a DNS-1123 subdomain "
                "(dot-separated DNS labels, at most 253)"
            )

    @classmethod
    def parse(cls, text: str) -> ExportRef:
        """``"ns/name"`` as a reference; ``ValidationError`` if it is not one."""
        namespace, slash, name = text.partition("/")
        if not slash:
            raise ValidationError(f"export reference {text!r} is not <namespace>/<name>")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> NamespacedName:
        """The export's key in this gateway's resources."""
        return NamespacedName(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class HealthRequest:
    """``GET /healthz``: a heartbeat; answer with ``send_health``."""


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """A request to open a tunnel to ``export``; answer with ``send_verdict``.

    ``attributes`` describe the source (its client and peer) for the ingress policy; an
    absent header means none.
    """

    export: ExportRef
    attributes: Mapping[str, str]

    @property
    def protocol(self) -> ServiceProtocol | None:
        """The service protocol the caller's Import speaks: ``TCP`` when the attribute is
        absent (what gateways that know only TCP send), None for a value this gateway does
        not know (the caller is newer, or broken: refuse rather than guess)."""
        value = self.attributes.get(PROTOCOL_ATTRIBUTE, "TCP")
        return next((known for known in SERVICE_PROTOCOLS if known == value), None)


PROTOCOL_ATTRIBUTE: Final = "tunnel.clusterlink.net/protocol"
"""The attribute naming a tunnel's service protocol. An attribute and not a field of its own
so that both tunnel modes carry it unchanged (a CONNECT header, a mux OPEN) and a gateway
that predates it reads a request without it as it always did: TCP."""


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """``POST /link``: the caller presents an invitation this gateway issued (``token``, whole)
    and asks to be made a Peer, reached at ``gateways``, with ``labels``.

    ``name`` is who the caller says it is; the caller's certificate says it too, and the two
    must agree: the certificate decides.
    """

    token: str
    name: str
    labels: Mapping[str, str]
    gateways: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class LinkAnswer:
    """The answer to an accepted ``LinkRequest``: who answered, its labels, and what became of
    the caller's Peer there (``created``, ``configured`` or ``unchanged``)."""

    name: str
    labels: Mapping[str, str]
    outcome: str


@dataclass(frozen=True, slots=True)
class Health:
    """A gateway's answer to a heartbeat: who it is, the labels its policies may match, and
    whether the caller is one of its Peers (``peered``).

    ``peered`` lets the caller tell "reachable and will take my tunnels" from "reachable but
    refuses every tunnel, because I am not a Peer there" without opening one. ``dials_in``:
    the answering gateway's Peer for the caller says ``dialsIn`` (it cannot reach the caller
    by itself), so the caller is to keep a reverse link to it. ``None``: the answer did not
    say (an older gateway).
    """

    name: str
    labels: Mapping[str, str]
    version: str
    peered: bool | None = None
    dials_in: bool | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to a CONNECT: ``200`` opens the tunnel, anything else refuses and closes."""

    status: int
    reason: str
    message: str

    def __post_init__(self) -> None:
        # Any other 2xx would also switch h11 to tunnel mode, and 1xx/3xx mean nothing here.
        if self.status != 200 and not 400 <= self.status <= 599:
            raise ValueError(f"verdict status {self.status} is neither 200 nor a 4xx/5xx refusal")

    @property
    def is_allowed(self) -> bool:
        return self.status == 200

    @classmethod
    def allow(cls) -> Verdict:
        return cls(200, "allowed", "")

    @classmethod
    def malformed(cls, message: str) -> Verdict:
        return cls(400, "malformed", message)

    @classmethod
    def denied(cls, message: str) -> Verdict:
        return cls(403, "denied", message)

    @classmethod
    def not_found(cls, message: str) -> Verdict:
        return cls(404, "not-found", message)

    @classmethod
    def unreachable(cls, message: str) -> Verdict:
        return cls(502, "unreachable", message)

    @classmethod
    def overloaded(cls, message: str) -> Verdict:
        return cls(503, "overloaded", message)

    @classmethod
    def from_error(cls, error: RemoteProtocolError) -> Verdict:
        """The refusal that answers a request the server could not accept."""
        return cls(error.status, error.reason, str(error))
