"""The state store of Kubernetes mode: the ``Store`` contract over the Kubernetes API.

Reads come from informers (``kube.informer``), one per kind, so they cost no request and keep
working while the API is away. A custom object is validated with the models when it enters
the cache; one that does not validate is left out and logged once (again only if what is
wrong changes), and one whose status alone does not validate keeps its spec. Nothing an
object holds can crash the gateway.

Writes go through the API with lightkube's sync client, from the worker thread the control
plane calls the store from (``asyncio.to_thread``); on the event loop they would wait for the
loop itself, so they refuse to run there. Each write returns once the cache holds it (up to
``visible_timeout_s``), so a read after a write sees it, as with SQLite.

``apply`` creates what the cache does not hold and replaces (PUT, at the resourceVersion
read) what differs; equal resources are "unchanged" and not written. Statuses are written
through the status subresource as merge patches at the resourceVersion read, so a status
written meanwhile by someone else is a conflict rather than overwritten. ``delete`` deletes.

All-or-nothing is best effort here: the API has no transaction over several objects. Every
document was validated before it got here, every status is validated and every key checked
before the first write, and when a write fails midway the writes already made are undone
in reverse order (created objects deleted, replaced ones put back, statuses restored,
deleted ones created again). An undo can fail too (the API went away in between); that is
logged at ERROR naming what was left, and the error raised says so. Other clients (kubectl)
may write between our writes; conflicts are refused, never merged.

``revision`` moves whenever what the store returns changes (a resource added, changed,
status included, or gone); ``on_change`` is then called on the event loop with the kinds
that changed. Services, Pods and the Lease are followed too (each optional), for the
controllers, and reported to ``on_change`` as "Service", "Pod" and "Lease"; they do not move
``revision``, which is about the gateway's own resources.

The writing itself (the journal, the undo, waiting for the caches) is ``kube_writes``.

Never: write anything but the five kinds' objects, or read the API for a query (the
caches answer).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Final, TypeVar

from lightkube import AsyncClient, Client
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Pod, Service

from clusterlink.api import (
    KindName,
    Resource,
    ResourceKey,
    key_of,
    kind_info,
    to_dict,
    with_status,
)
from clusterlink.errors import NotFoundError, StoreError
from clusterlink.ids import NamespacedName
from clusterlink.kube import (
    CRD_CLASSES,
    ApiAccess,
    ApiReachability,
    Backoff,
    Change,
    Informer,
    identity,
)
from clusterlink.kube.client import CLIENT_ERRORS
from clusterlink.store.base import ApplyOutcome
from clusterlink.store.kube_objects import (
    decode,
    key_in_model,
)
from clusterlink.store.kube_writes import Journal, KubeWrites, Write, resource_class

__all__ = ["DEFAULT_NAMESPACE", "KubernetesStore"]

log = logging.getLogger("clusterlink.store")

DEFAULT_NAMESPACE: Final = "clusterlink-system"
LEASE_KIND: Final = "Lease"
_ENDED_PHASES: Final = frozenset({"Succeeded", "Failed"})
Obj = Mapping[str, Any]
T = TypeVar("T")


class KubernetesStore(KubeWrites):
    """A :class:`~clusterlink.store.base.Store` over the Kubernetes API.

    ``await start()`` before use (it returns once every cache is filled); ``await aclose()``
    at the end. ``on_change`` may be set at any time.
    """

    def __init__(
        self,
        access: ApiAccess,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        watch_services: bool = True,
        watch_pods: bool = True,
        watch_leases: bool = True,
        backoff: Backoff | None = None,
        sync_timeout_s: float = 30.0,
        visible_timeout_s: float = 10.0,
    ) -> None:
        self.access = access
        self.namespace = namespace
        self.on_change: Callable[[frozenset[str]], None] | None = None
        self._watching = {"Service": watch_services, "Pod": watch_pods, LEASE_KIND: watch_leases}
        self._backoff = backoff
        self._sync_timeout_s = sync_timeout_s
        self._visible_timeout_s = visible_timeout_s
        self._lock = threading.Lock()  # the validated view, the revision, the pod index
        self._write_lock = threading.Lock()  # one apply, delete or set_status at a time
        self._resources: dict[ResourceKey, Resource] = {}
        self._rejected: dict[ResourceKey, str] = {}  # what was logged about a key's object
        self._revision = 0
        self._pod_ips: dict[str, set[NamespacedName]] = {}
        self._informers: dict[KindName, Informer[Any]] = {}
        self._services: Informer[Service] | None = None
        self._pods: Informer[Pod] | None = None
        self._leases: Informer[Lease] | None = None
        self._async_client: AsyncClient | None = None
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the informers and wait until each has listed once (``sync_timeout_s``)."""
        if self._loop is not None:
            raise StoreError("this Kubernetes store was started already; open another one")
        self._loop = asyncio.get_running_loop()
        self._client = self.access.sync_client()
        self._async_client = self.access.async_client()
        reachability = ApiReachability(self.access.server)  # one WARNING per outage, not eight
        follow = partial(
            Informer, self._async_client, reachability=reachability, backoff=self._backoff
        )
        for kind, resource in CRD_CLASSES.items():
            own = self.namespace if kind == "Peer" else None
            self._informers[kind] = follow(
                resource, namespace=own, on_change=partial(self._take, kind)
            )
        if self._watching["Service"]:
            self._services = follow(Service, on_change=self._tell("Service"))
        if self._watching["Pod"]:
            self._pods = follow(Pod, on_change=self._index_pods)
        if self._watching[LEASE_KIND]:
            self._leases = follow(Lease, namespace=self.namespace, on_change=self._tell(LEASE_KIND))
        informers = self._all_informers()
        for informer in informers:
            informer.start()
        synced = asyncio.gather(*(informer.wait_synced() for informer in informers))
        try:
            await asyncio.wait_for(synced, self._sync_timeout_s)
        except TimeoutError:
            await self.aclose()
            raise StoreError(
                f"the Kubernetes API at {self.access.server} ({self.access.source}) did not "
                f"answer every list within {self._sync_timeout_s:g}s; check that it is up, "
                "that ClusterLink's CRDs are installed and that its role may list them "
                "(the log says what failed)"
            ) from None

    async def aclose(self) -> None:
        """Stop the informers and close both clients; idempotent."""
        self._closed = True
        for informer in self._all_informers():
            await informer.stop()
        if self._async_client is not None:
            client, self._async_client = self._async_client, None
            await client.close()
        self.close()

    def close(self) -> None:
        """The ``Store`` protocol's close, for synchronous callers: refuses further writes and
        closes the sync client. The informers stop with ``aclose()`` (or their loop)."""
        self._closed = True
        with self._write_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # --- the Store protocol -------------------------------------------------------------------

    @property
    def revision(self) -> int:
        with self._lock:
            return self._revision

    def get(self, key: ResourceKey) -> Resource:
        with self._lock:
            found = self._resources.get(key)
            rejected = self._rejected.get(key)
        if found is not None:
            return found
        if rejected is not None:
            raise NotFoundError(
                f"{key} not found: its object in the Kubernetes API does not validate "
                f"({rejected}); fix it or delete it with kubectl"
            )
        raise NotFoundError(f"{key} not found")

    def list(self, kind: str | type[Resource], namespace: str | None = None) -> list[Resource]:
        info = kind_info(kind)
        everywhere = namespace is None or not info.namespaced
        with self._lock:
            found = [
                resource
                for key, resource in self._resources.items()
                if key.kind == info.name and (everywhere or key.namespace == namespace)
            ]
        return sorted(found, key=lambda r: (r.metadata.namespace, r.metadata.name))

    def apply(
        self,
        resources: Sequence[Resource],
        *,
        statuses: Mapping[ResourceKey, Mapping[str, Any]] | None = None,
    ) -> builtins.list[ApplyOutcome]:
        by_key = {key_of(resource): resource for resource in resources}
        if stray := [str(key) for key in statuses or {} if key not in by_key]:
            raise ValueError(f"statuses of resources not applied: {', '.join(stray)}")
        # Every status is validated before anything is written.
        wanted = {
            key: to_dict(with_status(by_key[key], status))["status"]
            for key, status in (statuses or {}).items()
        }
        client = self._writer("apply resources")
        with self._write_lock:
            journal = Journal()
            outcomes = []
            try:
                for resource in resources:
                    outcomes.append(
                        ApplyOutcome(key_of(resource), self._put(client, resource, journal))
                    )
                for key, status in wanted.items():
                    self._write_status(client, key, status, journal)
            except Exception as exc:  # whatever stopped the batch, what it wrote is undone
                raise self._undo(client, journal, exc) from exc
            self._await_visible(journal)
        return outcomes

    def delete(self, keys: Sequence[ResourceKey]) -> builtins.list[Resource]:
        unique = list(dict.fromkeys(keys))
        with self._lock:
            found = [self._resources.get(key) for key in unique]
        missing = [
            str(key) for key, resource in zip(unique, found, strict=True) if resource is None
        ]
        if missing:
            also = "; nothing was deleted" if len(unique) > 1 else ""
            raise NotFoundError(f"{', '.join(missing)} not found{also}")
        client = self._writer("delete resources")
        deleted = [resource for resource in found if resource is not None]
        with self._write_lock:
            journal = Journal()
            try:
                for key in unique:
                    before = self._raw(key, journal)
                    name, namespace = self._where(key)
                    journal.doing = f"delete {key}"
                    client.delete(resource_class(key), name, namespace=namespace)
                    journal.add(Write("deleted", key, before, None))
            except Exception as exc:  # whatever stopped the batch, what it wrote is undone
                raise self._undo(client, journal, exc) from exc
            self._await_visible(journal)
        return deleted

    def set_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        wanted = to_dict(with_status(self.get(key), status))["status"]
        client = self._writer(f"write the status of {key}")
        with self._write_lock:
            journal = Journal()
            try:
                self._write_status(client, key, wanted, journal)
            except CLIENT_ERRORS as exc:
                raise self._failure(exc, journal.doing) from exc
            self._await_visible(journal)

    # --- queries for the controllers (from the caches) ----------------------------------------

    def service(self, namespace: str, name: str) -> Service | None:
        return self._extra(self._services, "Service").get(NamespacedName(namespace, name))

    def services(self, namespace: str | None = None) -> builtins.list[Service]:
        found = self._extra(self._services, "Service").items()
        return [s for s in found if namespace is None or identity(s)[0].namespace == namespace]

    def pod_by_ip(self, ip: str) -> Pod | None:
        """The pod with this address (host-network and ended pods never count); of several
        (an address reused while the old pod is still listed), a running one first."""
        pods = self._extra(self._pods, "Pod")
        with self._lock:
            keys = sorted(self._pod_ips.get(ip, ()))
        candidates = [pod for key in keys if (pod := pods.get(key)) is not None]
        running = [
            pod for pod in candidates if pod.status is not None and pod.status.phase == "Running"
        ]
        return next(iter(running or candidates), None)

    def lease(self, name: str) -> Lease | None:
        """The Lease ``name`` in ClusterLink's namespace."""
        return self._extra(self._leases, LEASE_KIND).get(NamespacedName(self.namespace, name))

    # --- cache changes (on the event loop) ----------------------------------------------------

    def _take(self, kind: KindName, changes: Sequence[Change[Any]]) -> None:
        """Validate what an informer of our kinds changed, into the view the store serves."""
        changed = False
        with self._lock:
            for change in changes:
                key = key_in_model(kind, change.key.namespace, change.key.name)
                if change.type == "DELETED":
                    self._rejected.pop(key, None)
                    changed = self._resources.pop(key, None) is not None or changed
                    continue
                resource = self._accepted(kind, key, change.obj)
                before = self._resources.get(key)
                if resource is None:
                    changed = self._resources.pop(key, None) is not None or changed
                elif resource != before:
                    self._resources[key] = resource
                    changed = True
            if changed:
                self._revision += 1
        if changed:
            self._notify(kind)

    def _accepted(self, kind: KindName, key: ResourceKey, obj: Obj) -> Resource | None:
        """The resource an object holds, or None; what is wrong is logged once per problem."""
        try:
            resource, status_problem = decode(kind, obj)
        except Exception as exc:  # ValidationError, or whatever else a malformed object provokes
            problem = str(exc) or type(exc).__name__
        else:
            if status_problem is None:
                self._rejected.pop(key, None)
            elif self._first_time(key, status_problem):
                log.warning(
                    "%s: its status does not validate and is ignored: %s", key, status_problem
                )
            return resource
        if self._first_time(key, problem):
            log.warning(
                "%s is left out: its object in the Kubernetes API does not validate (%s); "
                "fix it or delete it with kubectl",
                key,
                problem,
            )
        return None

    def _first_time(self, key: ResourceKey, problem: str) -> bool:
        """Whether ``problem`` is news for ``key``: the same problem in a later version of
        the object (a label changed, a re-list) is not logged again."""
        first = self._rejected.get(key) != problem
        self._rejected[key] = problem
        return first

    def _tell(self, what: str) -> Callable[[Sequence[Change[Any]]], None]:
        return lambda changes: self._notify(what)

    def _index_pods(self, changes: Sequence[Change[Pod]]) -> None:
        with self._lock:
            for change in changes:
                if change.old is not None:
                    self._unindex(change.key, change.old)
                if change.type != "DELETED":
                    for ip in _pod_ips(change.obj):
                        self._pod_ips.setdefault(ip, set()).add(change.key)
        self._notify("Pod")

    def _unindex(self, key: NamespacedName, pod: Pod) -> None:
        for ip in _pod_ips(pod, every=True):
            keys = self._pod_ips.get(ip)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._pod_ips[ip]

    def _notify(self, what: str) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(frozenset({what}))
        except Exception:  # the gateway's bug must not stop the caches from following
            log.exception("on_change of the Kubernetes store failed")

    def _extra(self, informer: Informer[T] | None, what: str) -> Informer[T]:
        if informer is None:
            raise StoreError(f"this Kubernetes store does not follow {what} objects")
        return informer

    def _all_informers(self) -> builtins.list[Informer[Any]]:
        extras = [i for i in (self._services, self._pods, self._leases) if i is not None]
        return [*self._informers.values(), *extras]


def _pod_ips(pod: Pod, *, every: bool = False) -> set[str]:
    """The addresses a pod is found by; with ``every``, also those of pods that do not count."""
    status, spec = pod.status, pod.spec
    if status is None:
        return set()
    counts = every or (
        not (spec is not None and spec.hostNetwork) and status.phase not in _ENDED_PHASES
    )
    if not counts:
        return set()
    ips = {status.podIP} if status.podIP else set()
    ips.update(entry.ip for entry in status.podIPs or [] if entry.ip)
    return ips
