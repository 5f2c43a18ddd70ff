"""The documents that ``clusterlink create peer|export|import|policy`` apply.

These commands are shorthands for ``apply``: each builds one resource document (DESIGN §4)
from its flags and sends it through the same path, so the gateway validates it exactly as it
validates a file. The parsers here only split the flag syntax (``K=V,...``,
``PEER[:NS/EXPORT]``) and raise ``ValueError`` with a message for the flag; they do not
duplicate the resource rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clusterlink.kind_names import API_VERSION

if TYPE_CHECKING:
    from clusterlink.client import Document

__all__ = [
    "export_document",
    "import_document",
    "parse_gateway",
    "parse_label",
    "parse_labels",
    "parse_source",
    "peer_document",
    "policy_document",
]

MATCH_ALL: Document = {"workloadSelector": {}}


def _document(kind: str, name: str, namespace: str | None, spec: Document) -> Document:
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def parse_label(text: str) -> tuple[str, str]:
    """``K=V`` -> (K, V); the value may be empty or contain ``=``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def parse_labels(text: str) -> dict[str, str]:
    """``K=V,K2=V2`` -> {K: V, K2: V2}."""
    return dict(parse_label(item) for item in text.split(","))


def parse_source(text: str, *, namespace: str, name: str) -> Document:
    """``PEER`` or ``PEER:NS/EXPORT``; a bare peer means its export named like the import."""
    peer, sep, ref = text.partition(":")
    export_namespace, slash, export_name = ref.partition("/")
    if not peer or (sep and not (slash and export_namespace and export_name)):
        raise ValueError(f"{text!r} is not PEER or PEER:NAMESPACE/EXPORT")
    if not sep:
        export_namespace, export_name = namespace, name
    return {"peer": peer, "exportName": export_name, "exportNamespace": export_namespace}


def parse_gateway(text: str) -> Document:
    """``HOST:PORT`` or ``[V6]:PORT`` -> a Peer's gateway ``{host, port}``."""
    from clusterlink.addresses import parse_address

    host, port = parse_address(text, what="--gateway")
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be 1..65535")
    return {"host": host, "port": port}


def peer_document(*, name: str, gateways: list[Document], dials_in: bool = False) -> Document:
    spec: dict[str, object] = {"gateways": gateways}
    if dials_in:
        spec["dialsIn"] = True
    return _document("Peer", name, None, spec)


def export_document(
    *, name: str, namespace: str, host: str, port: int, protocol: str = "TCP"
) -> Document:
    spec: dict[str, object] = {"host": host, "port": port}
    if protocol != "TCP":  # TCP is the default: documents stay as they always were
        spec["protocol"] = protocol
    return _document("Export", name, namespace, spec)


def import_document(
    *,
    name: str,
    namespace: str,
    port: int,
    sources: list[str],
    lb_scheme: str,
    protocol: str = "TCP",
) -> Document:
    parsed = [parse_source(s, namespace=namespace, name=name) for s in sources]
    spec: dict[str, object] = {"port": port, "sources": parsed, "lbScheme": lb_scheme}
    if protocol != "TCP":
        spec["protocol"] = protocol
    return _document("Import", name, namespace, spec)


def policy_document(
    *,
    name: str,
    namespace: str,
    action: str,
    is_privileged: bool,
    from_labels: list[str],
    to_labels: list[str],
) -> Document:
    """Each ``--from``/``--to`` is one selector (any may match); none means "everything"."""

    def selectors(labels: list[str]) -> list[Document]:
        return [{"workloadSelector": {"matchLabels": parse_labels(t)}} for t in labels] or [
            MATCH_ALL
        ]

    spec = {"action": action, "from": selectors(from_labels), "to": selectors(to_labels)}
    if is_privileged:
        return _document("PrivilegedAccessPolicy", name, None, spec)
    return _document("AccessPolicy", name, namespace, spec)
