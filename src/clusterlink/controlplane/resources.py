"""Changing resources: the one path every write takes (admin API now, a controller later).

An ``apply`` is all-or-nothing across everything it touches, not just the store:

    validate every document -> bind the listeners new Imports need (not serving yet)
    -> store all documents, with the ports they lease, in one transaction -> start serving
    -> swap the catalog snapshot (next connection sees the change)

If binding fails (port taken) nothing is stored; if storing fails the bound sockets are
closed. Writes are serialized by one lock, and the store's blocking calls (SQLite with a full
sync) run in a worker thread so the data plane keeps moving meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

from clusterlink.addresses import parse_address
from clusterlink.api import Export, Import, Resource, ResourceKey, key_of, to_dict
from clusterlink.controlplane.catalog import Catalog
from clusterlink.errors import ClusterLinkError, NotFoundError, ValidationError
from clusterlink.ids import NamespacedName
from clusterlink.store import ApplyOutcome, Store

__all__ = ["ImportBinder", "PreparedImports", "ResourceService", "require_export_addresses"]

log = logging.getLogger("clusterlink.resources")


class PreparedImports(Protocol):
    @property
    def listen(self) -> Mapping[NamespacedName, str]: ...

    async def commit(self) -> None: ...

    def abort(self) -> None: ...


class ImportBinder(Protocol):
    """The data plane's side of an apply: listening sockets for Imports."""

    async def prepare(
        self, imports: Iterable[Import], *, leased: Mapping[NamespacedName, int] | None = None
    ) -> PreparedImports: ...

    def close_removed(self, keep: Iterable[NamespacedName]) -> None: ...

    def listen_address(self, key: NamespacedName) -> str | None: ...

    def port_of(self, imp: Import) -> int:
        """The port this gateway listens on for ``imp`` (0: one to lease, or to wait for)."""
        ...


def _preview_apply(store: Store, resources: Sequence[Resource]) -> list[ApplyOutcome]:
    """Each document against what is stored, the way the store's apply tells them apart."""
    outcomes = []
    for resource in resources:
        key = key_of(resource)
        try:
            stored = to_dict(store.get(key), include_status=False)
        except NotFoundError:
            outcomes.append(ApplyOutcome(key, "created"))
            continue
        same = stored == to_dict(resource, include_status=False)
        outcomes.append(ApplyOutcome(key, "unchanged" if same else "configured"))
    return outcomes


def _listen_status(listen: str) -> dict[str, Any]:
    """The status that records where an Import was bound (port 0: its lease)."""
    return {"listen": listen}


def _leased_port(imp: Import) -> int:
    if imp.status is None or not imp.status.listen:
        return 0
    try:
        return parse_address(imp.status.listen)[1]
    except ValueError:
        return 0


def require_export_addresses(resources: Sequence[Resource]) -> None:
    """A standalone gateway's check: an Export must say where its service is, since there is
    no Kubernetes Service to stand for a missing host or port."""
    for resource in resources:
        if not isinstance(resource, Export):
            continue
        for name, value in (("host", resource.spec.host), ("port", resource.spec.port)):
            if not value:
                error = ValidationError(
                    f"export {resource.metadata.key}: spec.{name} is required by a standalone "
                    "gateway (leaving it out means the Service of the Export's name, in "
                    "Kubernetes mode only)"
                )
                error.field = f"spec.{name}"
                raise error


class ResourceService:
    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        binder: ImportBinder,
        check: Callable[[Sequence[Resource]], None] = require_export_addresses,
        follows_store: bool = False,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.binder = binder
        self._check = check  # what this mode requires of applied resources, beyond the models
        # Kubernetes mode: the store changes under us and ``sync`` follows it; an apply only
        # writes (its change comes back through the store's watch like anyone else's).
        self.follows_store = follows_store
        self.unserved: dict[NamespacedName, str] = {}  # why an Import has no listener
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the state and open every Import's listener (leased ports first)."""
        if self.follows_store:
            await self.sync()
            return
        snapshot = self.catalog.reload()
        for key, imp in snapshot.imports.items():
            try:
                prepared = await self.binder.prepare([imp], leased={key: _leased_port(imp)})
            except Exception as exc:
                log.error("import %s is not served: %s", key, exc)
                continue
            await self._record_listen([imp], prepared.listen)
            await prepared.commit()

    async def sync(self) -> None:
        """The store changed under us (Kubernetes: kubectl, another replica, a target port
        the leader leased): swap in the new snapshot, serve every Import that has its port,
        stop serving the removed ones.

        Each Import on its own: one that cannot listen (its port taken on this host) is
        logged once, its reason kept in ``unserved``, and the others are served; an Import
        whose port is still to be leased (0) waits for the next change.
        """
        async with self._lock:
            snapshot = self.catalog.reload()
            unserved: dict[NamespacedName, str] = {}
            for key, imp in snapshot.imports.items():
                if not self.binder.port_of(imp):
                    unserved[key] = "waiting for its target port to be leased"
                    continue
                try:
                    prepared = await self.binder.prepare([imp])
                except ClusterLinkError as exc:
                    unserved[key] = str(exc)
                    if self.unserved.get(key) != unserved[key]:
                        log.error("import %s is not served: %s", key, exc)
                    continue
                await prepared.commit()
            self.binder.close_removed(snapshot.imports)
            self.unserved = unserved

    async def apply(self, resources: Sequence[Resource]) -> list[ApplyOutcome]:
        self._check(resources)
        if self.follows_store:
            outcomes = await asyncio.to_thread(self.store.apply, resources)
            await self.sync()
            return outcomes
        async with self._lock:
            imports = [r for r in resources if isinstance(r, Import)]
            current = self.catalog.snapshot.imports
            leased = {
                key: _leased_port(current[key])
                for key in (i.metadata.key for i in imports)
                if key in current
            }
            prepared = await self.binder.prepare(imports, leased=leased)
            statuses = {
                key_of(imp): _listen_status(prepared.listen[key])
                for imp in imports
                if (key := imp.metadata.key) in prepared.listen
            }
            try:
                outcomes = await asyncio.to_thread(
                    partial(self.store.apply, resources, statuses=statuses)
                )
            except BaseException:
                prepared.abort()
                raise
            await prepared.commit()
            self.catalog.reload()
        for outcome in outcomes:
            if outcome.result != "unchanged":
                log.info("%s", outcome)
        return outcomes

    async def preview_apply(self, resources: Sequence[Resource]) -> list[ApplyOutcome]:
        """What ``apply`` would do, after the same checks, changing nothing (``dryRun``).

        Ports are not bound: an Import whose port another process holds passes here and
        fails in the real apply."""
        self._check(resources)
        return await asyncio.to_thread(_preview_apply, self.store, resources)

    async def preview_delete(self, keys: Sequence[ResourceKey]) -> list[Resource]:
        """What ``delete`` would delete, changing nothing; ``NotFoundError`` as it would."""
        return await asyncio.to_thread(lambda: [self.store.get(key) for key in dict.fromkeys(keys)])

    async def delete(self, keys: Sequence[ResourceKey]) -> list[Resource]:
        if self.follows_store:
            deleted = await asyncio.to_thread(self.store.delete, keys)
            await self.sync()
            return deleted
        async with self._lock:
            deleted = await asyncio.to_thread(self.store.delete, keys)
            snapshot = self.catalog.reload()
            self.binder.close_removed(snapshot.imports)
        for resource in deleted:
            log.info("%s deleted", key_of(resource))
        return deleted

    async def _record_listen(
        self, imports: Sequence[Import], listen: Mapping[NamespacedName, str]
    ) -> None:
        """Keep each newly bound address in the Import's status (port 0: the lease)."""
        for imp in imports:
            key = imp.metadata.key
            if key in listen:
                status = _listen_status(listen[key])
                await asyncio.to_thread(self.store.set_status, key_of(imp), status)
