"""Typed identifiers that cross module boundaries, and the one DNS-name rule behind them.

Why types and not bare strings and tuples: a peer name, a resource name and a namespace are
all ``str`` to Python, and a ``(namespace, name)`` tuple is indistinguishable from any other
pair. Mixed up, they fail far from the mistake (a lookup that finds nothing, a log line that
names the wrong thing). ``PeerName`` is a ``NewType`` (free at run time, checked by mypy);
``NamespacedName`` is a frozen value with its own formatting, so ``ns/name`` is written in
one place.

Pure and dependency-free on purpose: the wire protocol, the resource models, the store and
the command line all import it, and none of them should pay for the others' imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal, NewType, get_args

__all__ = [
    "DNS_LABEL",
    "DNS_LABEL_MAX",
    "DNS_SUBDOMAIN",
    "DNS_SUBDOMAIN_MAX",
    "SERVICE_PROTOCOLS",
    "NamespacedName",
    "PeerName",
    "ServiceProtocol",
    "is_dns_label",
    "is_dns_subdomain",
]

# A peer's name is the DNS name in its certificate. Resource names share the syntax, which is
# exactly why a distinct type matters.
PeerName = NewType("PeerName", str)

# The transport protocol of an exported or imported service, as Kubernetes writes it (a
# Service port's ``protocol``). Here and not in ``api`` because the resource models, the wire
# protocol's tunnel requests and the data plane all name it, and the first two import nothing
# of each other. Absent anywhere (a document, a request of an older gateway) means TCP.
ServiceProtocol = Literal["TCP", "UDP"]
SERVICE_PROTOCOLS: Final[tuple[ServiceProtocol, ...]] = get_args(ServiceProtocol)

# DNS-1123, exactly as the Kubernetes API server checks it: a label is a-z, 0-9 and '-',
# starting and ending with a letter or digit, at most 63 characters; a subdomain is
# dot-separated labels, at most 253 characters in all (Kubernetes sets no limit per label
# there; a peer name, which is also a certificate's DNS name, adds one).
DNS_LABEL_MAX: Final = 63
DNS_SUBDOMAIN_MAX: Final = 253
DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN: Final = re.compile(rf"{DNS_LABEL.pattern}(?:\.{DNS_LABEL.pattern})*")


def is_dns_label(text: str) -> bool:
    return len(text) <= DNS_LABEL_MAX and DNS_LABEL.fullmatch(text) is not None


def is_dns_subdomain(text: str) -> bool:
    return len(text) <= DNS_SUBDOMAIN_MAX and DNS_SUBDOMAIN.fullmatch(text) is not None


@dataclass(frozen=True, slots=True, order=True)
class NamespacedName:
    """A namespaced resource's identity within its kind: printed ``namespace/name``."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
