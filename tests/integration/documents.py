"""Resource documents (DESIGN §4) as plain dicts, written the way a user writes them.

Built by hand rather than with the product's models on purpose: the tests check the contract
of the documents, so they must not share the code that parses them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ALL",
    "EXPORT_NAME",
    "EXPORT_NAMESPACE",
    "PEER_LABEL",
    "PEER_NAME",
    "Document",
    "access_policy",
    "export",
    "import_",
    "import_from",
    "peer",
    "privileged_policy",
    "selector",
    "yaml_stream",
]

API_VERSION = "clusterlink.net/v1alpha1"
PEER_NAME = "peer.clusterlink.net/name"
PEER_LABEL = "peer.clusterlink.net/labels."  # + the label's key
EXPORT_NAME = "export.clusterlink.net/name"
EXPORT_NAMESPACE = "export.clusterlink.net/namespace"

Document = dict[str, Any]


def selector(
    labels: Mapping[str, str] | None = None,
    expressions: Sequence[Mapping[str, Any]] | None = None,
) -> Document:
    """``{workloadSelector: {...}}``; with no arguments it matches everything."""
    workload: Document = {}
    if labels:
        workload["matchLabels"] = dict(labels)
    if expressions:
        workload["matchExpressions"] = [dict(e) for e in expressions]
    return {"workloadSelector": workload}


ALL = (selector(),)
"""A ``from`` or ``to`` list that matches every source or destination."""


def _document(kind: str, name: str, spec: Document, *, namespace: str | None) -> Document:
    metadata: Document = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def peer(name: str, *addresses: tuple[str, int]) -> Document:
    """A Peer whose gateways are ``addresses``, in the order they are to be tried."""
    gateways = [{"host": host, "port": port} for host, port in addresses]
    return _document("Peer", name, {"gateways": gateways}, namespace=None)


def export(name: str, namespace: str, port: int) -> Document:
    return _document("Export", name, {"host": "127.0.0.1", "port": port}, namespace=namespace)


def import_(
    name: str, namespace: str, *, peer: str, export_name: str | None = None, port: int = 0
) -> Document:
    return import_from(name, namespace, peers=[peer], export_name=export_name, port=port)


def import_from(
    name: str,
    namespace: str,
    *,
    peers: Sequence[str],
    lb_scheme: str | None = None,
    export_name: str | None = None,
    port: int = 0,
) -> Document:
    """An Import of the same export from each of ``peers`` (in this order)."""
    sources = [
        {"peer": peer, "exportName": export_name or name, "exportNamespace": namespace}
        for peer in peers
    ]
    spec: Document = {"port": port, "sources": sources}
    if lb_scheme is not None:
        spec["lbScheme"] = lb_scheme
    return _document("Import", name, spec, namespace=namespace)


def access_policy(
    name: str,
    namespace: str,
    action: str,
    *,
    from_: Sequence[Document] = ALL,
    to: Sequence[Document] = ALL,
) -> Document:
    return _policy("AccessPolicy", name, namespace, action=action, from_=from_, to=to)


def privileged_policy(
    name: str, action: str, *, from_: Sequence[Document] = ALL, to: Sequence[Document] = ALL
) -> Document:
    return _policy("PrivilegedAccessPolicy", name, None, action=action, from_=from_, to=to)


def _policy(
    kind: str,
    name: str,
    namespace: str | None,
    *,
    action: str,
    from_: Sequence[Document],
    to: Sequence[Document],
) -> Document:
    spec = {"action": action, "from": list(from_), "to": list(to)}
    return _document(kind, name, spec, namespace=namespace)


def yaml_stream(*documents: Document) -> str:
    """A multi-document YAML stream (JSON documents are valid YAML), as `apply -f -` reads."""
    return "".join(f"---\n{json.dumps(d)}\n" for d in documents)
