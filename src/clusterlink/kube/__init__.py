"""Talking to the Kubernetes API (docs/kubernetes.md): the client configuration, the resource
classes of our CRDs, and informers that keep one kind's objects in memory.

Used by ``store.kubernetes`` (the ``Store`` contract over the API) and, later, by the
controllers of Kubernetes mode. Below everything that decides: nothing here knows what a
Peer or an Import means, and nothing here writes unless a caller asks it to. Imports only
``api``, ``errors``, ``ids`` and ``addresses`` from ClusterLink.
"""

from clusterlink.kube.client import (
    CRD_CLASSES,
    FIELD_MANAGER,
    AccessPolicyCR,
    ApiAccess,
    CustomResource,
    ExportCR,
    ImportCR,
    PeerCR,
    PrivilegedAccessPolicyCR,
    failure,
    http_status,
    load_access,
)
from clusterlink.kube.informer import (
    ApiReachability,
    Backoff,
    Change,
    ChangeType,
    Informer,
    identity,
    parse_version,
)

__all__ = [
    "CRD_CLASSES",
    "FIELD_MANAGER",
    "AccessPolicyCR",
    "ApiAccess",
    "ApiReachability",
    "Backoff",
    "Change",
    "ChangeType",
    "CustomResource",
    "ExportCR",
    "ImportCR",
    "Informer",
    "PeerCR",
    "PrivilegedAccessPolicyCR",
    "failure",
    "http_status",
    "identity",
    "load_access",
    "parse_version",
]
