"""Informers: one kind's objects, kept current in memory by list and watch.

Why: the gateway re-reads its resources on every change, and the controllers look a pod up
by address for every connection. Asking the API each time would be slow, and would fail
whenever the API is away; an informer pays one list, then follows a watch, and serves reads
from memory to any thread without I/O.

Rules, in the order an informer meets them:

1. List, and replace the cache with the result. The difference from the old cache is
   reported as changes (ADDED, MODIFIED, DELETED), so what happened while no watch was open
   (a deletion included) is never lost, however long that was.
2. Watch from the list's resourceVersion; apply each event to the cache and report it. An
   event carrying the resourceVersion already cached changes nothing and is not reported.
3. A watch the server ends (``timeoutSeconds``) is resumed by lightkube from the last
   resourceVersion seen, so nothing in between is missed. ``410 Gone`` (that version is no
   longer in the server's history) sends the informer back to 1 at once; a 410 again with
   no event since that re-list waits a back-off first, so a server stuck on 410 is not
   listed in a loop.
4. Any other failure (API unreachable, 5xx, 403 or 404 when RBAC or the CRDs are missing)
   sends it back to 1 after a back-off: exponential up to ``max_s``, jittered so that
   replicas do not retry in step, reset by a successful list. The cache is kept meanwhile.
   The first failure is one WARNING and the first success after it one INFO (shared by the
   informers of one API through ``ApiReachability``); the retries between are DEBUG.
5. Changes go to ``on_change`` on the event loop once the cache holds them; only then are
   threads waiting in ``wait_for`` woken, so a waiter sees what the callback did too.

Never: write to the API, block the loop (``on_change`` must be quick), let anything but
cancellation end ``run()``, or mutate a cached object (they are shared with every reader).
Reads and updates of the cache take one lock; a read returns its own list.

resourceVersions are opaque to Kubernetes clients in principle; ``version`` and
``wait_for_version`` compare them as integers, which every API server uses (they are etcd
revisions). One that is not an integer counts as 0: waiting for it returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar, cast

from lightkube import AsyncClient
from lightkube.core import resource as lightkube_resource
from lightkube.core.exceptions import NotReadyError

from clusterlink.ids import NamespacedName
from clusterlink.kube.client import CLIENT_ERRORS, failure, http_status

__all__ = [
    "ApiReachability",
    "Backoff",
    "Change",
    "ChangeType",
    "Informer",
    "identity",
    "parse_version",
]

log = logging.getLogger("clusterlink.kube")

R = TypeVar("R")
ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
_GONE: Final = 410
# Ask the server to end each watch after this long: lightkube resumes it at once from the
# last resourceVersion, and a connection that went quietly dead is found in bounded time.
DEFAULT_WATCH_TIMEOUT_S: Final = 290


@dataclass(frozen=True, slots=True)
class Change(Generic[R]):
    """One change of the cache: ``obj`` is the new object, or the last one for DELETED."""

    type: ChangeType
    key: NamespacedName  # namespace "" for cluster-scoped objects
    obj: R
    old: R | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """How long to wait before the n-th retry in a row (n >= 1); pure, so it is tested as a
    table: ``initial_s * factor**(n-1)`` up to ``max_s``, less up to ``jitter`` of it."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("back-off needs 0 < initial_s <= max_s, factor >= 1, 0 <= jitter < 1")

    def delay_s(self, failures: int, unit_random: float) -> float:
        """``unit_random`` in [0, 1) (``random.random()``) picks the jitter."""
        # The exponent is capped so that a very long outage does not overflow the float.
        base = min(self.max_s, self.initial_s * self.factor ** min(failures - 1, 64))
        return base * (1 - self.jitter * unit_random)


@dataclass(slots=True)
class ApiReachability:
    """Whether the API answered the last request of any informer sharing this: one line when
    that changes, not one per retry. ``clock`` is injectable for tests."""

    server: str
    clock: Callable[[], float] = time.monotonic
    reachable: bool = True
    since: float = 0.0

    def failed(self, problem: str) -> None:
        if not self.reachable:
            log.debug("still failing: %s", problem)
            return
        self.reachable, self.since = False, self.clock()
        log.warning(
            "%s; serving what was last read from the Kubernetes API and retrying with back-off",
            problem,
        )

    def succeeded(self, what: str) -> None:
        if self.reachable:
            return
        self.reachable = True
        log.info(
            "the Kubernetes API at %s answers again after %.1fs (%s re-listed)",
            self.server,
            self.clock() - self.since,
            what,
        )


def identity(obj: object) -> tuple[NamespacedName, str]:
    """(key, resourceVersion) of a lightkube object: a generic resource (a dict) or a typed
    model (whose ``metadata`` is an ``ObjectMeta``)."""
    if isinstance(obj, dict):
        metadata = obj.get("metadata") or {}
        namespace, name, version = (
            metadata.get("namespace"),
            metadata.get("name"),
            metadata.get("resourceVersion"),
        )
    else:
        meta: Any = getattr(obj, "metadata", None)
        namespace, name, version = meta.namespace, meta.name, meta.resourceVersion
    return NamespacedName(namespace or "", name or ""), version or ""


def parse_version(version: str | None) -> int:
    """A resourceVersion as an integer (see the module docstring); 0 if it is not one."""
    try:
        return int(version or 0)
    except ValueError:
        return 0


class Informer(Generic[R]):
    """The cache of one kind (in one namespace, or all; optionally with a label selector).

    ``start()`` runs it as a task on the running loop; ``stop()`` cancels it. Until the first
    list, ``synced`` is clear and the cache empty.
    """

    def __init__(
        self,
        client: AsyncClient,
        resource: type[R],
        *,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        on_change: Callable[[Sequence[Change[R]]], None] | None = None,
        reachability: ApiReachability | None = None,
        backoff: Backoff | None = None,
        watch_timeout_s: int = DEFAULT_WATCH_TIMEOUT_S,
        unit_random: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        # lightkube's overloads want a namespaced or a global class; ours is either.
        self._resource: Any = cast(Any, resource)
        info = lightkube_resource.api_info(self._resource)
        self.name = f"{info.plural}.{info.resource.group}" if info.resource.group else info.plural
        self._namespaced = issubclass(self._resource, lightkube_resource.NamespacedResource)
        self._namespace = namespace
        self._labels = dict(labels) if labels else None
        self.on_change = on_change
        self._reachability = reachability or ApiReachability(str(client.config.cluster.server))
        self._backoff = backoff or Backoff()
        self._watch_timeout_s = watch_timeout_s
        self._unit_random = unit_random
        self._cache: dict[NamespacedName, R] = {}
        self._version = 0
        self._events = 0  # watch events applied, to tell a watch that made progress
        self._changed = threading.Condition(threading.RLock())
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- reading ------------------------------------------------------------------------------

    def get(self, key: NamespacedName) -> R | None:
        with self._changed:
            return self._cache.get(key)

    def items(self) -> list[R]:
        with self._changed:
            return list(self._cache.values())

    def __len__(self) -> int:
        with self._changed:
            return len(self._cache)

    @property
    def version(self) -> int:
        """The resourceVersion the cache is current to (0 before the first list)."""
        with self._changed:
            return self._version

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """From another thread: block until ``predicate()`` holds (checked under the cache's
        lock after every change) or ``timeout_s`` passes; whether it holds."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout_s)

    def wait_for_absence(self, key: NamespacedName, timeout_s: float) -> bool:
        """From another thread: until the cache holds no object at ``key``."""
        return self.wait_for(lambda: key not in self._cache, timeout_s)

    def wait_for_version(self, version: str, timeout_s: float) -> bool:
        """From another thread: until the cache holds every change up to ``version``."""
        wanted = parse_version(version)
        return self.wait_for(lambda: self._version >= wanted, timeout_s)

    # --- running ------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=f"informer {self.name}")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """List and watch until cancelled (rules 1 to 4 of the module docstring)."""
        failures = gone_in_a_row = events_at_list = 0
        while True:
            doing = "list"
            try:
                version = await self._relist()
                events_at_list = self._events
                self._reachability.succeeded(self.name)
                failures = 0
                doing = "watch"
                await self._watch(version)
                log.debug("the watch of %s ended; re-listing", self.name)
            except CLIENT_ERRORS as exc:
                if doing == "watch" and http_status(exc) == _GONE:
                    # Re-list at once; but a 410 again with no event since the last re-list
                    # backs off, so that a server that keeps answering 410 is not hammered.
                    quiet = self._events == events_at_list
                    gone_in_a_row = gone_in_a_row + 1 if quiet else 1
                    log.debug("%s: resourceVersion too old for the watch; re-listing", self.name)
                    if gone_in_a_row > 1:
                        delay_s = self._backoff.delay_s(gone_in_a_row - 1, self._unit_random())
                        await asyncio.sleep(delay_s)
                    continue
                failures += 1
                where = self._reachability.server
                self._reachability.failed(
                    str(failure(exc, doing=f"{doing} {self.name}", server=where))
                )
            except Exception:  # a bug: say so loudly, but keep the cache current after it
                failures += 1
                log.exception("informer of %s failed; retrying", self.name)
            else:
                continue
            await asyncio.sleep(self._backoff.delay_s(failures, self._unit_random()))

    async def wait_synced(self) -> None:
        await self.synced.wait()

    # --- internals ----------------------------------------------------------------------------

    async def _relist(self) -> str:
        listing = self._client.list(self._resource, **self._where())
        fresh: dict[NamespacedName, R] = {}
        async for obj in listing:
            fresh[identity(obj)[0]] = obj
        try:
            version = listing.resourceVersion
        except NotReadyError:  # a server that gives none: the watch then starts from "now"
            version = ""
        with self._changed:
            changes = _difference(self._cache, fresh)
            self._cache = fresh
            # The list is the truth, even about the version (an API restored from a backup
            # may go back): set it, where a watch event may only move it forward.
            self._version = parse_version(version)
            self._settle(changes, version)
        self.synced.set()
        return version

    async def _watch(self, version: str) -> None:
        events = self._client.watch(
            self._resource,
            resource_version=version,
            server_timeout=self._watch_timeout_s,
            **self._where(),
        )
        # lightkube's watch is an async generator: close it so that its connection closes.
        async with contextlib.aclosing(cast(AsyncGenerator[tuple[str, R], None], events)) as stream:
            async for event_type, obj in stream:
                self._apply(event_type, obj)

    def _where(self) -> dict[str, Any]:
        where: dict[str, Any] = {}
        if self._namespaced:
            where["namespace"] = self._namespace or "*"
        if self._labels:
            where["labels"] = self._labels
        return where

    def _apply(self, event_type: str, obj: R) -> None:
        key, version = identity(obj)
        with self._changed:
            self._events += 1
            old = self._cache.get(key)
            change: Change[R] | None = None
            if event_type == "DELETED":
                if old is not None:
                    del self._cache[key]
                    change = Change("DELETED", key, obj, old)
            elif event_type in ("ADDED", "MODIFIED") and (
                old is None or identity(old)[1] != version
            ):
                self._cache[key] = obj
                change = Change("ADDED" if old is None else "MODIFIED", key, obj, old)
            # BOOKMARK (and anything new) only moves the version
            self._settle([change] if change else [], version)

    def _settle(self, changes: Sequence[Change[R]], version: str) -> None:
        """Under the lock: record the version, tell ``on_change``, then wake the waiters."""
        self._version = max(self._version, parse_version(version))
        if changes and self.on_change is not None:
            try:
                self.on_change(changes)
            except Exception:  # the callback's bug must not stop the cache from following
                log.exception("on_change of the %s informer failed", self.name)
        self._changed.notify_all()


def _difference(
    old: Mapping[NamespacedName, R], new: Mapping[NamespacedName, R]
) -> list[Change[R]]:
    """What a re-list found: added, modified (another resourceVersion), deleted."""
    changes: list[Change[R]] = []
    for key, obj in new.items():
        before = old.get(key)
        if before is None:
            changes.append(Change("ADDED", key, obj))
        elif identity(before)[1] != identity(obj)[1]:
            changes.append(Change("MODIFIED", key, obj, before))
    changes.extend(Change("DELETED", key, obj, obj) for key, obj in old.items() if key not in new)
    return changes
