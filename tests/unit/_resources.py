"""Resource documents for the control-plane tests, in wire form and through the real parser.

Tests write documents as users do (camelCase dicts, as ``apply -f`` receives them), turn them
into resources with ``resource_from_dict``, store them in a real ``SQLiteStore`` and read the
catalog's snapshot back, so what is tested is what a running gateway would see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clusterlink.api import resource_from_dict
from clusterlink.controlplane.catalog import Catalog, Snapshot
from clusterlink.store import SQLiteStore

Document = dict[str, Any]


def document(
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Document:
    metadata: Document = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "clusterlink.net/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": dict(spec),
    }


def selector(labels: Mapping[str, str] | None = None, *expressions: Mapping[str, Any]) -> Document:
    """A ``from``/``to`` entry; no arguments gives ``{workloadSelector: {}}`` (everything)."""
    ws: Document = {}
    if labels:
        ws["matchLabels"] = dict(labels)
    if expressions:
        ws["matchExpressions"] = [dict(e) for e in expressions]
    return {"workloadSelector": ws}


def policy(
    name: str,
    action: str,
    *,
    from_: Sequence[Document] = (),
    to: Sequence[Document] = (),
    namespace: str = "default",
    privileged: bool = False,
) -> Document:
    """An AccessPolicy (or PrivilegedAccessPolicy); an omitted side matches everything."""
    spec = {"action": action, "from": list(from_) or [selector()], "to": list(to) or [selector()]}
    if privileged:
        return document("PrivilegedAccessPolicy", name, spec)
    return document("AccessPolicy", name, spec, namespace=namespace)


def snapshot_of(store: SQLiteStore, *documents: Document) -> Snapshot:
    """Apply ``documents`` to ``store`` and return the catalog's fresh snapshot of it."""
    store.apply([resource_from_dict(d) for d in documents])
    return Catalog(store).reload()
