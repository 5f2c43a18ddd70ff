"""Who a client is, from the Pod at its address (Kubernetes mode).

A connection to an Import's port arrives from an address; in a cluster that address is a
Pod's ``status.podIP``, and the Pod says who the client is: its namespace, its service
account and its labels. Those become the client attributes of the tunnel request
(``client.clusterlink.net/namespace``, ``/service-account``, ``/labels.<k>``), so that both
gateways' policies can select on them.

Host-network pods are left out: they share their node's address with every other
host-network pod and with the node itself, so an address would not say which one it is. A
Pod that has finished (Succeeded, Failed) is left out too: its address may already belong to
a new Pod. An address that is no known Pod's gets no attributes beyond the address.

Pure: the Pods come from an informer's cache; nothing here reads the API.
"""

from __future__ import annotations

from collections.abc import Iterable

from lightkube.resources.core_v1 import Pod

from clusterlink.policy import ClientIdentity

__all__ = ["identities_by_ip", "identity_of"]

_FINISHED = frozenset({"Succeeded", "Failed"})


def identity_of(pod: Pod) -> tuple[str, ClientIdentity] | None:
    """(address, identity) of a Pod that can be told by its address; None otherwise."""
    spec, status, metadata = pod.spec, pod.status, pod.metadata
    if spec is None or status is None or metadata is None or not status.podIP:
        return None
    if spec.hostNetwork or status.phase in _FINISHED:
        return None
    identity = ClientIdentity(
        namespace=metadata.namespace or "default",
        service_account=spec.serviceAccountName or "default",
        labels=dict(metadata.labels or {}),
    )
    return status.podIP, identity


def identities_by_ip(pods: Iterable[Pod]) -> dict[str, ClientIdentity]:
    """The index of every Pod that can be told by its address."""
    index: dict[str, ClientIdentity] = {}
    for pod in pods:
        found = identity_of(pod)
        if found is not None:
            index[found[0]] = found[1]
    return index
