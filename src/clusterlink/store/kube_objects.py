"""Between the resource model and Kubernetes objects: where each resource lives in the API,
what its object looks like there, and the patch that turns one status into another.

Pure: no I/O, so that the mapping is read (and tested) apart from the store that uses it.

Where a resource lives (docs/kubernetes.md): a Peer is an object in ClusterLink's own
namespace although its key has none (the model drops it); a PrivilegedAccessPolicy is
cluster-scoped; the other kinds live in their own namespace.

What is written: ``metadata.name``, ``namespace``, ``labels`` and ``annotations``, and
``spec``. What the API or other clients put on an object (``uid``, ``resourceVersion``,
finalizers, owner references) is carried over from the object read, so that an update
never takes it away. What is read back is the same few fields plus ``status``; the rest of
the metadata is the API's business, not the resource's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clusterlink.api import (
    API_VERSION,
    KindName,
    Resource,
    ResourceKey,
    key_of,
    resource_from_dict,
    to_dict,
)
from clusterlink.errors import ValidationError

__all__ = ["decode", "encode", "key_in_model", "merge_diff", "namespace_in_api"]

# Set by the API server; never copied from one object to another.
_SERVER_FIELDS = ("managedFields", "selfLink")


def namespace_in_api(key: ResourceKey, own_namespace: str) -> str | None:
    """The object's namespace in the API (None: cluster-scoped)."""
    if key.kind == "Peer":
        return own_namespace
    return key.namespace or None


def key_in_model(kind: KindName, namespace: str, name: str) -> ResourceKey:
    """The key of the object ``namespace/name`` of ``kind`` (a Peer's namespace dropped)."""
    return ResourceKey(kind, "" if kind in ("Peer", "PrivilegedAccessPolicy") else namespace, name)


def encode(
    resource: Resource, own_namespace: str, *, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The object to write for ``resource``; ``base``, the object as read, gives the metadata
    only the API and other clients write (and the resourceVersion to update it at)."""
    document = to_dict(resource, include_status=False)
    written = document["metadata"]
    metadata = {
        key: value
        for key, value in ((base or {}).get("metadata") or {}).items()
        if key not in _SERVER_FIELDS
    }
    metadata["name"] = written["name"]
    namespace = namespace_in_api(key_of(resource), own_namespace)
    if namespace is None:
        metadata.pop("namespace", None)
    else:
        metadata["namespace"] = namespace
    metadata["labels"] = written.get("labels", {})
    metadata["annotations"] = written.get("annotations", {})
    return {
        "apiVersion": API_VERSION,
        "kind": resource.kind,
        "metadata": metadata,
        "spec": document["spec"],
    }


def decode(kind: KindName, obj: Mapping[str, Any]) -> tuple[Resource, str | None]:
    """The resource an object holds, and why its status was left out (None if it was not).

    A status that does not validate costs only the status (the gateway writes it again),
    while anything else that does not validate is a ``ValidationError``.
    """
    metadata = obj.get("metadata") or {}
    document: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion", API_VERSION),
        "kind": kind,
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "labels", "annotations")
            if metadata.get(key) is not None
        },
    }
    if "spec" in obj:
        document["spec"] = obj["spec"]
    status = obj.get("status")
    if status is None:
        return resource_from_dict(document), None
    try:
        return resource_from_dict({**document, "status": status}), None
    except ValidationError as exc:
        resource = resource_from_dict(document)  # raises if more than the status is wrong
        return resource, str(exc)


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: changed keys, and
    ``null`` for removed ones. ``new`` holds no nulls (the model's wire form leaves them out)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch
