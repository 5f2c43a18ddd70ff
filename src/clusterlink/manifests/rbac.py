"""What the gateway may do in the cluster: the least privilege of Kubernetes mode.

Each rule is there for one thing the gateway does (docs/kubernetes.md), and nothing is
granted "in case":

1. read the five kinds everywhere: the informers list and watch them in every namespace;
2. write the status of Peers, Exports and Imports (conditions, a Peer's labels), and an
   Import itself, because a leased ``targetPort`` is written back into its spec;
3. read Pods (a client's address gives its namespace, service account and labels) and
   Services (an Export without ``host`` is dialled at its Service; the Services of Imports are
   compared with what they should be), everywhere;
4. create, change and delete the Services of Imports: a ClusterIP one in ClusterLink's
   namespace, an ExternalName one in the Import's own namespace, hence cluster-wide;
5. in ClusterLink's namespace only: the Lease ``clusterlink-gateway`` that elects the replica
   that writes. Reading and renewing are limited to that name; creating cannot be (the API
   server knows no name before the object exists).

Never granted: Secrets (the peer's credentials are a mounted volume), creating or deleting
any ClusterLink resource (people do that, with kubectl), Events, Pods' exec or logs, and
anything with ``*``. Pure: builds objects, no I/O.
"""

from __future__ import annotations

from typing import Any, Final

from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)

from clusterlink.api.crds import GROUP
from clusterlink.api.kinds import KINDS, plural

__all__ = ["CLUSTER_RULES", "LEASE_NAME", "NAMESPACE_RULES", "rbac_objects"]

LEASE_NAME: Final = "clusterlink-gateway"
_READ: Final = ["get", "list", "watch"]
_WRITE: Final = ["patch", "update"]
_KINDS: Final = [plural(kind) for kind in KINDS]
_WITH_STATUS: Final = ["peers", "exports", "imports"]

CLUSTER_RULES: Final = (
    PolicyRule(apiGroups=[GROUP], resources=_KINDS, verbs=_READ),
    PolicyRule(apiGroups=[GROUP], resources=[f"{p}/status" for p in _WITH_STATUS], verbs=_WRITE),
    PolicyRule(apiGroups=[GROUP], resources=["imports"], verbs=_WRITE),
    PolicyRule(apiGroups=[""], resources=["pods", "services"], verbs=_READ),
    PolicyRule(
        apiGroups=[""], resources=["services"], verbs=["create", "update", "patch", "delete"]
    ),
)
NAMESPACE_RULES: Final = (
    PolicyRule(
        apiGroups=["coordination.k8s.io"],
        resources=["leases"],
        resourceNames=[LEASE_NAME],
        verbs=["get", "update"],
    ),
    PolicyRule(apiGroups=["coordination.k8s.io"], resources=["leases"], verbs=["create"]),
)


def rbac_objects(
    *, name: str, namespace: str, service_account: str, labels: dict[str, str]
) -> list[Any]:
    """ClusterRole and Role with their bindings to ``service_account``.

    The cluster-wide names carry the namespace, so that two peers deployed in one cluster (in
    two namespaces, as in a test cluster) do not take each other's bindings over.
    """
    cluster_name = f"{namespace}:{name}"
    subject = Subject(kind="ServiceAccount", name=service_account, namespace=namespace)
    rbac = "rbac.authorization.k8s.io"
    return [
        ClusterRole(
            metadata=ObjectMeta(name=cluster_name, labels=dict(labels)),
            rules=list(CLUSTER_RULES),
        ),
        ClusterRoleBinding(
            metadata=ObjectMeta(name=cluster_name, labels=dict(labels)),
            roleRef=RoleRef(apiGroup=rbac, kind="ClusterRole", name=cluster_name),
            subjects=[subject],
        ),
        Role(
            metadata=ObjectMeta(name=name, namespace=namespace, labels=dict(labels)),
            rules=list(NAMESPACE_RULES),
        ),
        RoleBinding(
            metadata=ObjectMeta(name=name, namespace=namespace, labels=dict(labels)),
            roleRef=RoleRef(apiGroup=rbac, kind="Role", name=name),
            subjects=[subject],
        ),
    ]
