"""Attribute keys and the builders that turn who-is-talking-to-what into attributes.

Policies never see resources or connections: they see two flat ``Mapping[str, str]`` —
the *source* (the client and the peer it connects from) and the *destination* (the service
and the peer that serves it). Selectors match on these keys, so the keys are part of the
contract (DESIGN.md §4) and spelled exactly as in the original ClusterLink. They live here
and nowhere else; code that needs a key imports the constant.

Invariants:

- A source always carries ``peer.clusterlink.net/name``; client keys appear only when the
  caller knows them (a standalone gateway knows the client's address but not its pod), so a
  selector on an unknown client key sees it as absent, never as an empty string.
- Label maps become one key per label under a fixed prefix, so a user label can never
  overwrite a fixed key such as ``peer.clusterlink.net/name``.
- ``SIDES`` says, for every key and label prefix, on which side it appears: the builders
  below put nothing else on either side. A selector on a key under ``clusterlink.net`` that
  is not one of them, or on the other side's key, could never match, and silently so (a
  misspelt ``peer.clusterlink.net/nmae`` in an allow policy allows nothing; in a deny policy
  with ``NotIn`` it denies everything): ``key_problem`` says why such a key is refused.
  Keys outside ``clusterlink.net`` are the user's own and not judged here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ATTRIBUTE_DOMAIN",
    "CLIENT_IP",
    "CLIENT_LABELS_PREFIX",
    "CLIENT_NAMESPACE",
    "CLIENT_SERVICE_ACCOUNT",
    "EXPORT_LABELS_PREFIX",
    "EXPORT_NAME",
    "EXPORT_NAMESPACE",
    "PEER_LABELS_PREFIX",
    "PEER_NAME",
    "SIDES",
    "Attributes",
    "ClientIdentity",
    "Side",
    "destination_attributes",
    "key_problem",
    "source_attributes",
]

Attributes = Mapping[str, str]
"""What a selector matches against: attribute key to value."""

PEER_NAME = "peer.clusterlink.net/name"
PEER_LABELS_PREFIX = "peer.clusterlink.net/labels."

CLIENT_NAMESPACE = "client.clusterlink.net/namespace"
CLIENT_SERVICE_ACCOUNT = "client.clusterlink.net/service-account"
CLIENT_LABELS_PREFIX = "client.clusterlink.net/labels."
CLIENT_IP = "client.clusterlink.net/ip"

EXPORT_NAME = "export.clusterlink.net/name"
EXPORT_NAMESPACE = "export.clusterlink.net/namespace"
EXPORT_LABELS_PREFIX = "export.clusterlink.net/labels."

# Every attribute key is in this DNS domain (a key's prefix before '/' is it or ends in it).
ATTRIBUTE_DOMAIN = "clusterlink.net"


class Side(enum.StrEnum):
    """The end of a connection an attribute describes: ``from`` selectors see the source,
    ``to`` selectors the destination."""

    SOURCE = "source"
    DESTINATION = "destination"


_BOTH = frozenset(Side)
# Key (or label prefix, ending in '.') -> the sides that carry it; the order is the order
# in which messages list them.
SIDES: Final[Mapping[str, frozenset[Side]]] = {
    PEER_NAME: _BOTH,
    PEER_LABELS_PREFIX: _BOTH,
    CLIENT_NAMESPACE: frozenset({Side.SOURCE}),
    CLIENT_SERVICE_ACCOUNT: frozenset({Side.SOURCE}),
    CLIENT_LABELS_PREFIX: frozenset({Side.SOURCE}),
    CLIENT_IP: frozenset({Side.SOURCE}),
    EXPORT_NAME: frozenset({Side.DESTINATION}),
    EXPORT_NAMESPACE: frozenset({Side.DESTINATION}),
    EXPORT_LABELS_PREFIX: frozenset({Side.DESTINATION}),
}


def key_problem(key: str, side: Side) -> str | None:
    """Why a selector on ``side`` cannot use ``key`` (one phrase naming the key and the keys
    that side knows), or None if it can."""
    prefix, slash, _ = key.partition("/")
    if not slash or not (prefix == ATTRIBUTE_DOMAIN or prefix.endswith("." + ATTRIBUTE_DOMAIN)):
        return None  # the user's own key
    sides = _sides_of(key)
    if side in sides:
        return None
    known = f"known {side} attributes: {_listing(side)}"
    if not sides:
        return f"{key!r} is not a ClusterLink attribute ({known})"
    (other,) = sides
    return f"{key!r} is a {other} attribute, not a {side} one ({known})"


def _sides_of(key: str) -> frozenset[Side]:
    for known, sides in SIDES.items():
        is_prefix = known.endswith(".")
        if (key.startswith(known) and len(key) > len(known)) if is_prefix else key == known:
            return sides
    return frozenset()


def _listing(side: Side) -> str:
    return ", ".join(
        f"{key}<k>" if key.endswith(".") else key for key, sides in SIDES.items() if side in sides
    )


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """What the cluster says about a client (Kubernetes mode: the Pod at its address)."""

    namespace: str
    service_account: str
    labels: Mapping[str, str]


def source_attributes(
    *,
    peer_name: str,
    peer_labels: Mapping[str, str],
    client_ip: str | None = None,
    client_namespace: str | None = None,
    client_service_account: str | None = None,
    client_labels: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Attributes of the connecting side: the source peer and whatever is known of the client."""
    attrs = _prefixed(PEER_LABELS_PREFIX, peer_labels)
    if client_labels:
        attrs.update(_prefixed(CLIENT_LABELS_PREFIX, client_labels))
    attrs[PEER_NAME] = peer_name
    optional = (
        (CLIENT_IP, client_ip),
        (CLIENT_NAMESPACE, client_namespace),
        (CLIENT_SERVICE_ACCOUNT, client_service_account),
    )
    attrs.update((key, value) for key, value in optional if value is not None)
    return attrs


def destination_attributes(
    *,
    export_name: str,
    export_namespace: str,
    export_labels: Mapping[str, str],
    peer_name: str,
    peer_labels: Mapping[str, str],
) -> dict[str, str]:
    """Attributes of the target: the service (the Import on egress, the Export on ingress)
    and the peer that serves it."""
    attrs = _prefixed(PEER_LABELS_PREFIX, peer_labels)
    attrs.update(_prefixed(EXPORT_LABELS_PREFIX, export_labels))
    attrs[PEER_NAME] = peer_name
    attrs[EXPORT_NAME] = export_name
    attrs[EXPORT_NAMESPACE] = export_namespace
    return attrs


def _prefixed(prefix: str, labels: Mapping[str, str]) -> dict[str, str]:
    return {prefix + key: value for key, value in labels.items()}
