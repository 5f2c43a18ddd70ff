"""Authorization of one connection, at each end of the tunnel (DESIGN §4, §5).

Egress (at the source gateway, per candidate source of an Import): the source is this
gateway and its client; the destination is the remote export as the Import names it, with
the Import's labels as export labels and the target peer's labels as learned by heartbeat.
Policies of the Import's namespace apply.

Ingress (at the target gateway): the source attributes are what the calling gateway sent, with
one exception that matters: ``peer.clusterlink.net/name`` is overwritten with the name from
the caller's *verified certificate*, so no peer can pose as another. The destination is the
local Export with this gateway's name and labels. Policies of the Export's namespace apply.

Pure functions over a ``Snapshot``: no I/O, cheap enough to run for every connection.
"""

from __future__ import annotations

from collections.abc import Mapping

from clusterlink.api import Export, Import, ImportSource
from clusterlink.controlplane.catalog import Snapshot
from clusterlink.policy import (
    PEER_NAME,
    ClientIdentity,
    Decision,
    destination_attributes,
    source_attributes,
)

__all__ = [
    "ClientIdentity",
    "LocalPeer",
    "egress_decision",
    "egress_destination",
    "egress_source_attributes",
    "ingress_attributes",
    "ingress_decision",
]


class LocalPeer:
    """This gateway's identity as policies see it."""

    __slots__ = ("labels", "name")

    def __init__(self, name: str, labels: Mapping[str, str]) -> None:
        self.name = name
        self.labels = dict(labels)


def egress_source_attributes(
    local: LocalPeer, client_ip: str, client: ClientIdentity | None = None
) -> dict[str, str]:
    """Attributes of a local client; sent to the target gateway with the CONNECT."""
    if client is None:
        return source_attributes(
            peer_name=local.name, peer_labels=local.labels, client_ip=client_ip
        )
    return source_attributes(
        peer_name=local.name,
        peer_labels=local.labels,
        client_ip=client_ip,
        client_namespace=client.namespace,
        client_service_account=client.service_account,
        client_labels=client.labels,
    )


def egress_destination(
    imp: Import, source: ImportSource, target_peer_labels: Mapping[str, str]
) -> dict[str, str]:
    """The destination of an egress decision (also what ``explain`` shows)."""
    return destination_attributes(
        export_name=source.export_name,
        export_namespace=source.export_namespace,
        export_labels=imp.metadata.labels,
        peer_name=source.peer,
        peer_labels=target_peer_labels,
    )


def egress_decision(
    snapshot: Snapshot,
    imp: Import,
    source: ImportSource,
    src: Mapping[str, str],
    target_peer_labels: Mapping[str, str],
) -> Decision:
    dst = egress_destination(imp, source, target_peer_labels)
    return snapshot.policies.decide(src, dst, imp.metadata.namespace)


def ingress_attributes(
    local: LocalPeer, export: Export, caller: str, claimed: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(source, destination) of an ingress decision (also what ``explain`` shows)."""
    src = {**claimed, PEER_NAME: caller}
    dst = destination_attributes(
        export_name=export.metadata.name,
        export_namespace=export.metadata.namespace,
        export_labels=export.metadata.labels,
        peer_name=local.name,
        peer_labels=local.labels,
    )
    return src, dst


def ingress_decision(
    snapshot: Snapshot,
    local: LocalPeer,
    export: Export,
    caller: str,
    claimed: Mapping[str, str],
) -> Decision:
    src, dst = ingress_attributes(local, export, caller, claimed)
    return snapshot.policies.decide(src, dst, export.metadata.namespace)
