"""How the Kubernetes store writes: one call's writes journaled, undone newest first when one
fails, and waited for until the caches hold them (read-your-writes).

A mixin of ``KubernetesStore`` (``store.kubernetes``), apart so that each module reads as one
job: that one serves the Store contract from the caches, this one does its writes. The API
has no transaction over several objects; this is the best-effort replacement described in the
store's docstring: every write of a call is recorded with what undoing it needs, and a failure
midway undoes the ones before it (created objects deleted, replaced ones put back, statuses
restored, deleted ones created again).

Writes go through lightkube's sync client from a worker thread, never the event loop (they
wait for the caches the loop fills).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lightkube import Client
from lightkube.types import PatchType

from clusterlink.api import KindName, Resource, ResourceKey, key_of, to_dict
from clusterlink.errors import NotFoundError, StoreError
from clusterlink.ids import NamespacedName
from clusterlink.kube import CRD_CLASSES, ApiAccess, Informer, failure, identity
from clusterlink.kube.client import CLIENT_ERRORS
from clusterlink.store.base import ApplyResult
from clusterlink.store.kube_objects import decode, encode, merge_diff, namespace_in_api

__all__ = ["Journal", "KubeWrites", "Write", "resource_class"]

log = logging.getLogger("clusterlink.store")

Obj = Mapping[str, Any]


@dataclass(slots=True)
class Write:
    """One write of an apply or delete, with what undoing it needs."""

    what: Literal["created", "replaced", "status", "deleted"]
    key: ResourceKey
    before: Obj | None  # the object before the write (None for created)
    after: Obj | None  # the API's answer (None for deleted)


@dataclass(slots=True)
class Journal:
    """The writes of one call, for undoing them and for waiting until the cache has them."""

    doing: str = ""  # the write under way, for its error message: "create export default/a"
    writes: list[Write] = field(default_factory=list)
    latest: dict[ResourceKey, Obj | None] = field(default_factory=dict)  # None: deleted

    def add(self, write: Write) -> None:
        self.writes.append(write)
        self.latest[write.key] = write.after


class KubeWrites:
    """The writing half of ``KubernetesStore`` (see the module docstring)."""

    # Set by KubernetesStore.
    access: ApiAccess
    namespace: str
    _closed: bool
    _client: Client | None
    _loop: asyncio.AbstractEventLoop | None
    _informers: dict[KindName, Informer[Any]]
    _visible_timeout_s: float

    def _writer(self, doing: str) -> Client:
        if self._closed or self._client is None:
            raise StoreError(f"cannot {doing}: the Kubernetes store is not started or is closed")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is self._loop:
            raise StoreError(
                f"cannot {doing} on the event loop: Kubernetes store writes wait for the "
                "cache, which the loop fills; call them through asyncio.to_thread"
            )
        return self._client

    def _where(self, key: ResourceKey) -> tuple[str, str | None]:
        return key.name, namespace_in_api(key, self.namespace)

    def _raw(self, key: ResourceKey, journal: Journal) -> Obj | None:
        """The object as last known: written in this batch, else as the cache holds it."""
        if key in journal.latest:
            return journal.latest[key]
        name, namespace = self._where(key)
        informer = self._informers[key.kind]
        return informer.get(NamespacedName(namespace or "", name))

    def _put(self, client: Client, resource: Resource, journal: Journal) -> ApplyResult:
        key = key_of(resource)
        cls = resource_class(key)
        current = self._raw(key, journal)
        if current is None:
            journal.doing = f"create {key}"
            created = client.create(cls.from_dict(encode(resource, self.namespace)))
            journal.add(Write("created", key, None, created))
            return "created"
        if _document(key.kind, current) == to_dict(resource, include_status=False):
            return "unchanged"
        journal.doing = f"update {key}"
        replaced = client.replace(cls.from_dict(encode(resource, self.namespace, base=current)))
        journal.add(Write("replaced", key, current, replaced))
        return "configured"

    def _write_status(
        self, client: Client, key: ResourceKey, status: Mapping[str, Any], journal: Journal
    ) -> None:
        current = self._raw(key, journal)
        if current is None:
            raise NotFoundError(f"{key} not found")
        if current.get("status") == status:
            return
        journal.doing = f"write the status of {key}"
        patched = self._patch_status(client, key, current, dict(status))
        journal.add(Write("status", key, current, patched))

    def _patch_status(
        self, client: Client, key: ResourceKey, current: Obj, status: dict[str, Any] | None
    ) -> Obj:
        """Merge-patch the status subresource, at ``current``'s resourceVersion."""
        name, namespace = self._where(key)
        patch = {
            "metadata": {"resourceVersion": identity(current)[1]},
            "status": merge_diff(current.get("status"), status),
        }
        patched: Obj = client.patch(
            resource_class(key).Status,
            name,
            patch,
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        return patched

    def _undo(self, client: Client, journal: Journal, exc: BaseException) -> StoreError:
        """Undo ``journal`` newest first; the error to raise for ``exc``, saying how that went."""
        error = self._failure(exc, journal.doing)
        left: builtins.list[str] = []
        for write in reversed(journal.writes):
            try:
                self._undo_one(client, write, journal)
            except CLIENT_ERRORS as undo_exc:
                left.append(str(write.key))
                log.error(
                    "could not undo the %s %s after a failed write; it stays as written: %s",
                    write.what,
                    write.key,
                    self._failure(undo_exc, f"undo {write.key}"),
                )
        if left:
            return StoreError(f"{error}; undoing the writes before it failed for {', '.join(left)}")
        self._await_visible(journal)
        count = len(journal.writes)
        if count == 1:
            return StoreError(f"{error}; the write before it was undone")
        if count:
            return StoreError(f"{error}; the {count} writes before it were undone")
        return error

    def _undo_one(self, client: Client, write: Write, journal: Journal) -> None:
        key, cls = write.key, resource_class(write.key)
        name, namespace = self._where(key)
        latest = journal.latest.get(key)
        if write.what == "created":
            client.delete(cls, name, namespace=namespace)
            journal.latest[key] = None
        elif write.what == "replaced" and write.before is not None and latest is not None:
            version = {"resourceVersion": identity(latest)[1]}
            base = {**write.before, "metadata": {**write.before["metadata"], **version}}
            journal.latest[key] = client.replace(cls.from_dict(_restorable(base)))
        elif write.what == "status" and write.before is not None and latest is not None:
            journal.latest[key] = self._patch_status(
                client, key, latest, write.before.get("status")
            )
        elif write.what == "deleted" and write.before is not None:
            recreated = client.create(cls.from_dict(_restorable(write.before, fresh=True)))
            if write.before.get("status") is not None:
                recreated = self._patch_status(client, key, recreated, write.before["status"])
            journal.latest[key] = recreated

    def _await_visible(self, journal: Journal) -> None:
        """Until the cache holds every write of ``journal`` (read-your-writes), within
        ``visible_timeout_s`` in all; past that, the writes stand and a WARNING says so."""
        deadline = time.monotonic() + self._visible_timeout_s
        for key, latest in journal.latest.items():
            name, namespace = self._where(key)
            informer = self._informers[key.kind]
            remaining = max(0.0, deadline - time.monotonic())
            if latest is None:
                seen = informer.wait_for_absence(NamespacedName(namespace or "", name), remaining)
            else:
                seen = informer.wait_for_version(identity(latest)[1], remaining)
            if not seen:
                log.warning(
                    "%s was written, but the cache has not seen it within %gs; "
                    "reads show the change once the watch catches up",
                    key,
                    self._visible_timeout_s,
                )

    def _failure(self, exc: BaseException, doing: str) -> StoreError:
        return failure(exc, doing=doing, server=self.access.server)


def resource_class(key: ResourceKey) -> Any:
    """lightkube's overloads tell namespaced from global classes; which one this is depends
    on the kind, so the class is handed over untyped."""
    return CRD_CLASSES[key.kind]


def _document(kind: KindName, obj: Obj) -> dict[str, Any] | None:
    """What ``apply`` compares: the resource an object holds, without status (None if it
    does not validate; applying a valid one then replaces it)."""
    try:
        return to_dict(decode(kind, obj)[0], include_status=False)
    except Exception:  # ValidationError, or whatever else a malformed object provokes
        return None


def _restorable(obj: Obj, *, fresh: bool = False) -> dict[str, Any]:
    """``obj`` to write again: for a re-create (``fresh``) without the fields the API set."""
    metadata = dict(obj.get("metadata") or {})
    metadata.pop("managedFields", None)
    if fresh:
        for server_field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            metadata.pop(server_field, None)
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}
