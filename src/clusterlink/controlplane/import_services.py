"""The Kubernetes Services that stand for Imports (Kubernetes mode; pure, no I/O).

An Import is reached through an ordinary Service, as in the original:

- in ClusterLink's own namespace, a ClusterIP Service of the Import's name that selects the
  gateway pods and maps the Import's ``port`` to its ``targetPort``;
- in any other namespace, that ClusterIP Service lives in ClusterLink's namespace under a
  *system* name (``import-<name>-<namespace>-<hash>``: unique, at most 63 characters), and the
  Import's own namespace gets an ExternalName Service of the Import's name pointing at it.

Every managed Service carries ``app.kubernetes.io/managed-by: clusterlink.net`` and the labels
``clusterlink.net/import-namespace`` and ``clusterlink.net/import-name`` (two labels, since a
label value holds at most 63 characters: an Import's name does, which is why it is limited),
which is how a Service is told apart from one a user made: a Service of the same name that is
not ours is a conflict (reported in the Import's ``ImportServiceValid``), never overwritten.

This module computes what should exist (``desired_services``) and how an existing Service
compares (``ownership``); the leader does the API calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from clusterlink.api import Import
from clusterlink.ids import NamespacedName

__all__ = [
    "GATEWAY_POD_LABELS",
    "IMPORT_NAMESPACE_LABEL",
    "IMPORT_NAME_LABEL",
    "MANAGED_BY",
    "MANAGED_LABELS",
    "DesiredService",
    "desired_services",
    "import_of_service",
    "ownership",
    "system_service_name",
]

MANAGED_BY: Final = "app.kubernetes.io/managed-by"
IMPORT_NAMESPACE_LABEL: Final = "clusterlink.net/import-namespace"
IMPORT_NAME_LABEL: Final = "clusterlink.net/import-name"
MANAGED_LABELS: Final = {MANAGED_BY: "clusterlink.net"}  # as the original writes it
# The labels of the gateway pods (the Deployment of ``clusterlink deploy peer``).
GATEWAY_POD_LABELS: Final = {"app.kubernetes.io/name": "clusterlink"}

_NAME_PART: Final = 10  # characters of the Import's name and namespace in a system name


@dataclass(frozen=True, slots=True)
class DesiredService:
    """One Service an Import needs: where, what, and its manifest (a plain dict)."""

    key: NamespacedName
    manifest: Mapping[str, Any]


def system_service_name(imp: NamespacedName) -> str:
    """A unique DNS label for the ClusterIP Service of an Import of another namespace."""
    digest = hashlib.md5(str(imp).encode(), usedforsecurity=False).hexdigest()
    name, namespace = imp.name[:_NAME_PART].strip("-"), imp.namespace[:_NAME_PART].strip("-")
    return f"import-{name}-{namespace}-{digest}"


def _labels(imp: NamespacedName) -> dict[str, str]:
    return {**MANAGED_LABELS, IMPORT_NAMESPACE_LABEL: imp.namespace, IMPORT_NAME_LABEL: imp.name}


def desired_services(imp: Import, namespace: str) -> list[DesiredService]:
    """The Services ``imp`` needs when ClusterLink runs in ``namespace`` (its target port must
    be leased already)."""
    key = imp.metadata.key
    port = imp.spec.port
    system = NamespacedName(
        namespace, key.name if key.namespace == namespace else system_service_name(key)
    )
    cluster_ip = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": system.name, "namespace": namespace, "labels": _labels(key)},
        "spec": {
            "type": "ClusterIP",
            "selector": dict(GATEWAY_POD_LABELS),
            "ports": [
                {
                    "name": imp.spec.protocol.lower(),
                    "protocol": imp.spec.protocol,
                    "port": port,
                    "targetPort": imp.spec.target_port,
                }
            ],
        },
    }
    wanted = [DesiredService(system, cluster_ip)]
    if key.namespace != namespace:
        external = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": key.name, "namespace": key.namespace, "labels": _labels(key)},
            "spec": {
                "type": "ExternalName",
                "externalName": f"{system.name}.{namespace}.svc.cluster.local",
            },
        }
        wanted.append(DesiredService(key, external))
    return wanted


def import_of_service(service: Mapping[str, Any]) -> NamespacedName | None:
    """The Import a managed Service belongs to (None: not one of ours)."""
    labels = (service.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY) != MANAGED_LABELS[MANAGED_BY]:
        return None
    namespace, name = labels.get(IMPORT_NAMESPACE_LABEL), labels.get(IMPORT_NAME_LABEL)
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    return NamespacedName(namespace, name)


def ownership(
    existing: Mapping[str, Any] | None, wanted: DesiredService
) -> Literal["missing", "ours", "foreign"]:
    """How a Service found under the wanted name stands: none yet, ours (update it to the
    wanted spec if it differs), or someone else's (a conflict: leave it alone)."""
    if existing is None:
        return "missing"
    owner = import_of_service(existing)
    wanted_owner = import_of_service(wanted.manifest)
    return "ours" if owner is not None and owner == wanted_owner else "foreign"
