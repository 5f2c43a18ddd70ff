"""What ``clusterlink deploy peer`` writes: the Kubernetes objects that run one peer's gateway.

``peer`` builds them (Namespace, CRDs from ``api.crds``, ServiceAccount, RBAC, Secret,
Deployment, Service) from a :class:`PeerDeployment` and the peer's files; ``rbac`` holds the
rules the gateway is granted and why each exists. Pure: the command line reads the peer
directory and writes the YAML (``api.dump_objects``); nothing here touches a file or a
cluster. Core kinds are lightkube's typed models, so a misspelt field is a type error rather
than an object the API server refuses; the CRDs are the plain dicts ``api.crds`` generates.
"""

from clusterlink.manifests.peer import (
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    GATEWAY_POD_LABELS,
    PEER_DIR_MOUNT,
    PEER_PORT,
    RUN_AS_UID,
    IngressKind,
    PeerDeployment,
    gateway_args,
    peer_manifests,
)
from clusterlink.manifests.rbac import CLUSTER_RULES, LEASE_NAME, NAMESPACE_RULES

__all__ = [
    "CLUSTER_RULES",
    "DEFAULT_IMAGE",
    "DEFAULT_NAMESPACE",
    "GATEWAY_POD_LABELS",
    "LEASE_NAME",
    "NAMESPACE_RULES",
    "PEER_DIR_MOUNT",
    "PEER_PORT",
    "RUN_AS_UID",
    "IngressKind",
    "PeerDeployment",
    "gateway_args",
    "peer_manifests",
]
